//! Synthesized SDP offers that describe a client's send transport to str0m.
//!
//! str0m fixes its payload-type table when an `Rtc` is built, but a browser
//! sends with its own payload types and header-extension ids, known only at
//! `produce`. So on every `produce` we write the offer the browser would have
//! written for its send transport (every m-line produced so far, in the same
//! order) and hand it to str0m's SDP API, discarding the answer. The traps,
//! each guarded here:
//! - the ICE credentials in the offer must be exactly the remote credentials
//!   already set, or str0m takes the offer for an ICE restart;
//! - no `a=ice-lite` (str0m refuses two ICE-lite ends);
//! - m-lines never change order between offers;
//! - a closed producer's m-line is rejected (port 0, outside BUNDLE), and
//!   only a rejected m-line may be given to a new producer (str0m accepts a
//!   new mid in a stopped slot, RFC 8829 §5.2.2), so churn does not grow
//!   the offer.

use mediasoup_types::rtp_parameters::{
    MediaKind, RtcpFeedback, RtpCodecParameters, RtpCodecParametersParametersValue, RtpParameters,
};
use std::fmt::Write;

/// What an m-line of the send transport carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaState {
    /// A live producer.
    Sending,
    /// A closed producer whose slot str0m has not released yet.
    Inactive,
    /// A closed producer's slot, released: port 0 and outside BUNDLE, so
    /// str0m stops the media and lets a new mid take the slot.
    Rejected,
}

/// One m-line of the send transport: a producer, live or closed.
pub(crate) struct SendMedia<'a> {
    pub mid: &'a str,
    pub kind: MediaKind,
    pub rtp_parameters: &'a RtpParameters,
    pub state: MediaState,
}

/// What the offer says about the remote end (the browser).
pub(crate) struct RemoteEnd<'a> {
    pub ice_ufrag: &'a str,
    pub ice_pwd: &'a str,
    /// `sha-256 AB:CD:...`
    pub fingerprint: &'a str,
    /// `active` when the browser is the DTLS client, `passive` otherwise.
    pub setup: &'a str,
}

/// The offer text. `session_version` must grow with every offer.
pub(crate) fn send_transport_offer(
    remote: &RemoteEnd<'_>,
    media: &[SendMedia<'_>],
    session_version: u64,
) -> String {
    let mut s = String::with_capacity(1024 + media.len() * 1024);
    let bundled: Vec<&str> = media
        .iter()
        .filter(|m| m.state != MediaState::Rejected)
        .map(|m| m.mid)
        .collect();
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=- 4611731400430051336 {session_version} IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    );
    if !bundled.is_empty() {
        let _ = write!(s, "a=group:BUNDLE {}\r\n", bundled.join(" "));
    }
    let _ = write!(s, "a=msid-semantic: WMS *\r\n");
    for m in media {
        write_media(&mut s, remote, m);
    }
    s
}

fn write_media(s: &mut String, remote: &RemoteEnd<'_>, m: &SendMedia<'_>) {
    let kind = match m.kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    };
    let pts: Vec<String> = m
        .rtp_parameters
        .codecs
        .iter()
        .map(|c| c.payload_type().to_string())
        .collect();
    let port = if m.state == MediaState::Rejected {
        0
    } else {
        9
    };
    let _ = write!(
        s,
        "m={kind} {port} UDP/TLS/RTP/SAVPF {}\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:{}\r\na=setup:{}\r\na=mid:{}\r\n",
        pts.join(" "),
        remote.ice_ufrag,
        remote.ice_pwd,
        remote.fingerprint,
        remote.setup,
        m.mid
    );
    for ext in &m.rtp_parameters.header_extensions {
        let _ = write!(s, "a=extmap:{} {}\r\n", ext.id, ext.uri.as_str());
    }
    let direction = if m.state == MediaState::Sending {
        "sendonly"
    } else {
        "inactive"
    };
    let _ = write!(s, "a={direction}\r\na=rtcp-mux\r\na=rtcp-rsize\r\n");
    for codec in &m.rtp_parameters.codecs {
        write_codec(s, codec);
    }
    if m.state == MediaState::Rejected {
        // Its streams are gone: no SSRCs or rids to declare.
        return;
    }
    let cname = m
        .rtp_parameters
        .rtcp
        .cname
        .as_deref()
        .unwrap_or("simplesfu");
    let encodings = &m.rtp_parameters.encodings;
    let rids: Vec<&str> = encodings.iter().filter_map(|e| e.rid.as_deref()).collect();
    if !rids.is_empty() && rids.len() == encodings.len() {
        for rid in &rids {
            let _ = write!(s, "a=rid:{rid} send\r\n");
        }
        let _ = write!(s, "a=simulcast:send {}\r\n", rids.join(";"));
    } else {
        for e in encodings {
            let Some(ssrc) = e.ssrc else { continue };
            if let Some(rtx) = e.rtx {
                let _ = write!(s, "a=ssrc-group:FID {ssrc} {}\r\n", rtx.ssrc);
                let _ = write!(
                    s,
                    "a=ssrc:{ssrc} cname:{cname}\r\na=ssrc:{} cname:{cname}\r\n",
                    rtx.ssrc
                );
            } else {
                let _ = write!(s, "a=ssrc:{ssrc} cname:{cname}\r\n");
            }
        }
    }
}

fn write_codec(s: &mut String, codec: &RtpCodecParameters) {
    let pt = codec.payload_type();
    let mime = codec.mime_type();
    let name = mime.as_str().split('/').nth(1).unwrap_or("unknown");
    match codec {
        RtpCodecParameters::Audio { channels, .. } if channels.get() > 1 => {
            let _ = write!(
                s,
                "a=rtpmap:{pt} {name}/{}/{}\r\n",
                codec.clock_rate(),
                channels
            );
        }
        _ => {
            let _ = write!(s, "a=rtpmap:{pt} {name}/{}\r\n", codec.clock_rate());
        }
    }
    for fb in codec.rtcp_feedback() {
        if *fb == RtcpFeedback::Unsupported {
            continue;
        }
        let (kind, param) = fb.as_type_parameter();
        if param.is_empty() {
            let _ = write!(s, "a=rtcp-fb:{pt} {kind}\r\n");
        } else {
            let _ = write!(s, "a=rtcp-fb:{pt} {kind} {param}\r\n");
        }
    }
    let fmtp: Vec<String> = codec
        .parameters()
        .iter()
        .map(|(k, v)| match v {
            RtpCodecParametersParametersValue::String(text) => format!("{k}={text}"),
            RtpCodecParametersParametersValue::Number(n) => format!("{k}={n}"),
        })
        .collect();
    if !fmtp.is_empty() {
        let _ = write!(s, "a=fmtp:{pt} {}\r\n", fmtp.join(";"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp8_simulcast() -> RtpParameters {
        serde_json::from_value(serde_json::json!({
            "mid": "1",
            "codecs": [
                {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000, "parameters": {},
                 "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"}]},
                {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}, "rtcpFeedback": []}
            ],
            "headerExtensions": [{"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false}],
            "encodings": [{"rid": "r0"}, {"rid": "r1"}, {"rid": "r2"}],
            "rtcp": {"cname": "c", "reducedSize": true}
        }))
        .expect("valid parameters")
    }

    #[test]
    fn offer_describes_simulcast_with_rids_and_no_ssrcs() {
        let rtp = vp8_simulcast();
        let remote = RemoteEnd {
            ice_ufrag: "uf",
            ice_pwd: "pw",
            fingerprint: "sha-256 AA:BB",
            setup: "active",
        };
        let sdp = send_transport_offer(
            &remote,
            &[SendMedia {
                mid: "1",
                kind: MediaKind::Video,
                rtp_parameters: &rtp,
                state: MediaState::Sending,
            }],
            2,
        );
        assert!(sdp.contains("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"));
        assert!(sdp.contains("a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"));
        assert!(sdp.contains("a=rtcp-fb:96 nack pli\r\n"));
        assert!(sdp.contains("a=simulcast:send r0;r1;r2\r\n"));
        assert!(!sdp.contains("a=ssrc"));
        assert!(!sdp.contains("ice-lite"));
        str0m::change::SdpOffer::from_sdp_string(&sdp).expect("str0m parses our offer");
    }

    #[test]
    fn a_rejected_m_line_has_port_zero_and_stays_out_of_bundle() {
        let rtp = vp8_simulcast();
        let remote = RemoteEnd {
            ice_ufrag: "uf",
            ice_pwd: "pw",
            fingerprint: "sha-256 AA:BB",
            setup: "active",
        };
        let line = |mid, state| SendMedia {
            mid,
            kind: MediaKind::Video,
            rtp_parameters: &rtp,
            state,
        };
        let sdp = send_transport_offer(
            &remote,
            &[
                line("0", MediaState::Rejected),
                line("1", MediaState::Sending),
            ],
            3,
        );
        assert!(sdp.contains("a=group:BUNDLE 1\r\n"));
        assert!(sdp.contains("m=video 0 UDP/TLS/RTP/SAVPF 96 97\r\n"));
        assert_eq!(
            sdp.matches("a=simulcast:send").count(),
            1,
            "only the live m-line declares streams"
        );
        str0m::change::SdpOffer::from_sdp_string(&sdp).expect("str0m parses our offer");

        let none_left = send_transport_offer(&remote, &[line("0", MediaState::Rejected)], 4);
        assert!(
            !none_left.contains("a=group:BUNDLE"),
            "no empty BUNDLE group"
        );
        str0m::change::SdpOffer::from_sdp_string(&none_left).expect("str0m parses our offer");
    }
}
