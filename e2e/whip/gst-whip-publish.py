#!/usr/bin/python3
"""A WHIP publisher on GStreamer's webrtcbin: H264 and Opus test sources,
published to a WHIP endpoint (RFC 9725), for the browser tests.

Debian 12's `simple-whip-client` (meetecho's GStreamer WHIP client) cannot
start there: it links libsoup 2.4, while webrtcbin's libnice pulls in
libsoup 3 (through gupnp-igd), and libsoup 3 aborts a process that holds
both ("libsoup2 symbols detected"). This script drives the same webrtcbin
(the same SDP offer, ICE, DTLS and RTP stack) and speaks WHIP over Python's
own HTTP client, so the media side is GStreamer's, not ours.

One setting differs from webrtcbin's defaults: its DTLS certificate. GStreamer
1.22 generates an RSA certificate, and str0m's DTLS (dimpl) accepts ECDSA
certificates only (so do many WebRTC stacks; browsers and OBS use ECDSA), so
the handshake fails ("no client certificate received" on the server). The
script gives each DTLS element an ECDSA P-256 certificate made with openssl
as soon as webrtcbin creates it; webrtcbin 1.22 has by then taken the
fingerprint for its offer from the certificate it generated, so the offer's
`a=fingerprint` lines are replaced with the new certificate's.

    gst-whip-publish.py URL [--token T] [--seconds N] [--video-only]

Prints `WHIP_LOCATION <url>` once the answer is applied and
`WHIP_CONNECTED` when ICE connects; on exit (after --seconds, SIGTERM or
SIGINT) ends the session with DELETE. Exits 2 with the server's status and
message when the POST is refused.
"""

import argparse
import os
import signal
import subprocess
import tempfile
import sys
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

VIDEO = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1 "
    "! videoconvert ! queue ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=800 "
    "! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 aggregate-mode=zero-latency "
    "! application/x-rtp,media=video,encoding-name=H264,payload=96 ! webrtc."
)
AUDIO = (
    "audiotestsrc is-live=true wave=sine freq=440 volume=0.3 ! audioconvert ! audioresample "
    "! opusenc ! rtpopuspay ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! webrtc."
)


def log(*parts):
    print(*parts, flush=True)


def ecdsa_pem():
    """A self-signed ECDSA P-256 certificate and its key in PEM, and the
    certificate's SHA-256 fingerprint as SDP writes it."""
    with tempfile.TemporaryDirectory() as scratch:
        key, cert = os.path.join(scratch, "key.pem"), os.path.join(scratch, "cert.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=whip-test"],
            check=True, capture_output=True,
        )
        fingerprint = subprocess.run(
            ["openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"],
            check=True, capture_output=True, text=True,
        ).stdout.strip().split("=", 1)[1]
        with open(cert) as c, open(key) as k:
            return c.read() + k.read(), fingerprint


class Publisher:
    def __init__(self, url, token, seconds, video_only):
        self.url = url
        self.token = token
        self.location = None
        self.loop = GLib.MainLoop()
        self.status = 0
        description = "webrtcbin name=webrtc bundle-policy=max-bundle " + VIDEO
        if not video_only:
            description += " " + AUDIO
        self.pem, self.fingerprint = ecdsa_pem()
        self.pipe = Gst.parse_launch(description)
        self.webrtc = self.pipe.get_by_name("webrtc")
        self.webrtc.connect("deep-element-added", self.on_element_added)
        elements = self.webrtc.iterate_recurse()
        while True:
            result, element = elements.next()
            if result != Gst.IteratorResult.OK:
                break
            self.on_element_added(self.webrtc, None, element)
        for transceiver_index in range(2 if not video_only else 1):
            transceiver = self.webrtc.emit("get-transceiver", transceiver_index)
            if transceiver is not None:
                transceiver.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::ice-connection-state", self.on_ice_state)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)
        if seconds > 0:
            GLib.timeout_add_seconds(seconds, self.stop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, self.stop)
        self.offered = False

    def headers(self, content_type=None):
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        return headers

    def on_element_added(self, _bin, _sub_bin, element):
        factory = element.get_factory()
        if factory is not None and factory.get_name() == "dtlssrtpdec":
            element.set_property("pem", self.pem)

    def on_negotiation_needed(self, element):
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, element, None)
        element.emit("create-offer", None, promise)

    def on_offer_created(self, promise, element, _):
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        element.emit("set-local-description", offer, Gst.Promise.new())

    def on_gathering(self, element, _):
        # No trickle: the offer goes once every candidate is in it.
        state = element.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not self.offered:
            self.offered = True
            GLib.idle_add(self.post_offer)

    def post_offer(self):
        offer = self.webrtc.get_property("local-description").sdp.as_text()
        offer = "".join(
            "a=fingerprint:sha-256 " + self.fingerprint + "\r\n" if line.startswith("a=fingerprint:") else line
            for line in offer.splitlines(keepends=True)
        )
        request = urllib.request.Request(
            self.url, data=offer.encode(), method="POST", headers=self.headers("application/sdp")
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = response.read().decode()
                self.location = urllib.parse.urljoin(self.url, response.headers["Location"])
        except urllib.error.HTTPError as e:
            log("WHIP_REFUSED", e.code, e.read().decode(errors="replace"))
            self.status = 2
            self.loop.quit()
            return False
        except OSError as e:
            log("WHIP_FAILED", e)
            self.status = 2
            self.loop.quit()
            return False
        _, sdp = GstSdp.SDPMessage.new_from_text(answer)
        description = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        self.webrtc.emit("set-remote-description", description, Gst.Promise.new())
        log("WHIP_LOCATION", self.location)
        return False

    def on_ice_state(self, element, _):
        state = element.get_property("ice-connection-state")
        if state in (GstWebRTC.WebRTCICEConnectionState.CONNECTED, GstWebRTC.WebRTCICEConnectionState.COMPLETED):
            log("WHIP_CONNECTED")
        elif state == GstWebRTC.WebRTCICEConnectionState.FAILED:
            log("WHIP_ICE_FAILED")

    def on_error(self, _bus, message):
        error, debug = message.parse_error()
        log("GST_ERROR", error.message, debug)
        self.status = 1
        self.stop()

    def stop(self):
        if self.location:
            request = urllib.request.Request(self.location, method="DELETE", headers=self.headers())
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    log("WHIP_DELETED", response.status)
            except (urllib.error.HTTPError, OSError) as e:
                log("WHIP_DELETE_FAILED", e)
            self.location = None
        self.loop.quit()
        return False

    def run(self):
        self.pipe.set_state(Gst.State.PLAYING)
        self.loop.run()
        self.pipe.set_state(Gst.State.NULL)
        return self.status


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--token")
    parser.add_argument("--seconds", type=int, default=0)
    parser.add_argument("--video-only", action="store_true")
    args = parser.parse_args()
    Gst.init(None)
    sys.exit(Publisher(args.url, args.token, args.seconds, args.video_only).run())


if __name__ == "__main__":
    main()
