//! What both test harnesses share: the parameters and payloads a browser
//! produces with (as Chromium and mediasoup-client send them), and the str0m
//! client end of a transport, configured from the server's transport info.
//! No sockets and no clock here: the UDP harness (`common/mod.rs`) and the
//! sans-IO one (`sim/harness.rs`) each bring their own.

#![allow(dead_code)]

use mediasoup_types::data_structures::{DtlsFingerprint, DtlsParameters, DtlsRole};
use mediasoup_types::rtp_parameters::{MediaKind, RtpParameters};
use simplesfu_engine::WebRtcTransportInfo;
use std::time::Instant;
use str0m::config::Fingerprint;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, MediaKind as StrKind, Pt};
use str0m::rtp::{Extension, ExtensionMap};
use str0m::{IceCreds, Rtc};

/// Which payload types the client end uses: the browser's own when sending,
/// the router's when receiving.
#[derive(Clone, Copy)]
pub enum ClientCodecs {
    Browser,
    Router,
}

/// The client end of the server transport `info`: ICE controlling with the
/// server's credentials, DTLS client and SCTP started. The caller adds the
/// candidates of its own network and feeds it time from its own clock.
pub fn client_rtc(info: &WebRtcTransportInfo, codecs: ClientCodecs, now: Instant) -> Rtc {
    let mut config = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .set_extension_map(ExtensionMap::standard());
    let c = config.codec_config();
    match codecs {
        ClientCodecs::Browser => {
            c.add_config(
                Pt::from(111),
                None,
                Codec::Opus,
                Frequency::FORTY_EIGHT_KHZ,
                Some(2),
                FormatParams::default(),
            );
            c.add_config(
                Pt::from(96),
                Some(Pt::from(97)),
                Codec::Vp8,
                Frequency::NINETY_KHZ,
                None,
                FormatParams::default(),
            );
        }
        ClientCodecs::Router => {
            c.add_config(
                Pt::from(100),
                None,
                Codec::Opus,
                Frequency::FORTY_EIGHT_KHZ,
                Some(2),
                FormatParams::default(),
            );
            c.add_config(
                Pt::from(101),
                Some(Pt::from(102)),
                Codec::Vp8,
                Frequency::NINETY_KHZ,
                None,
                FormatParams::default(),
            );
        }
    }
    // The server's RTP uses its own extension ids on receive transports.
    if let ClientCodecs::Router = codecs {
        let mut exts = ExtensionMap::empty();
        exts.set(1, Extension::RtpMid);
        exts.set(4, Extension::AbsoluteSendTime);
        exts.set(5, Extension::TransportSequenceNumber);
        exts.set(10, Extension::AudioLevel);
        exts.set(11, Extension::VideoOrientation);
        config = config.set_extension_map(exts);
    }
    let mut rtc = config.build(now);
    let mut api = rtc.direct_api();
    api.set_remote_ice_credentials(IceCreds {
        ufrag: info.ice_parameters.username_fragment.clone(),
        pass: info.ice_parameters.password.clone(),
    });
    api.set_ice_controlling(true);
    let fp = match &info.dtls_parameters.fingerprints[0] {
        DtlsFingerprint::Sha256 { value } => Fingerprint {
            hash_func: "sha-256".into(),
            bytes: value.to_vec(),
        },
        other => panic!("server offered {other:?}"),
    };
    api.set_remote_fingerprint(fp);
    api.start_dtls(true).expect("dtls");
    api.start_sctp(true);
    rtc
}

/// What `connectWebRtcTransport` carries for `rtc`: role client and its fingerprint.
pub fn dtls_parameters(rtc: &mut Rtc) -> DtlsParameters {
    let fp = rtc.direct_api().local_dtls_fingerprint().clone();
    let value: [u8; 32] = fp.bytes.as_slice().try_into().expect("sha-256");
    DtlsParameters {
        role: DtlsRole::Client,
        fingerprints: vec![DtlsFingerprint::Sha256 { value }],
    }
}

/// Realistic producer RTP parameters as Chromium + mediasoup-client send them.
pub fn vp8_parameters(mid: &str, ssrc: u32, rtx: u32) -> RtpParameters {
    serde_json::from_value(serde_json::json!({
        "mid": mid,
        "codecs": [
            {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000, "parameters": {},
             "rtcpFeedback": [{"type": "transport-cc", "parameter": ""}, {"type": "ccm", "parameter": "fir"},
                              {"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"}]},
            {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}, "rtcpFeedback": []}
        ],
        "headerExtensions": [
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false},
            {"uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2, "encrypt": false},
            {"uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3, "encrypt": false}
        ],
        "encodings": [{"ssrc": ssrc, "rtx": {"ssrc": rtx}}],
        "rtcp": {"cname": "test-cname", "reducedSize": true}
    }))
    .expect("valid VP8 parameters")
}

pub fn opus_parameters(mid: &str, ssrc: u32) -> RtpParameters {
    serde_json::from_value(serde_json::json!({
        "mid": mid,
        "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2,
                    "parameters": {"minptime": 10, "useinbandfec": 1}, "rtcpFeedback": []}],
        "headerExtensions": [
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false},
            {"uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1, "encrypt": false}
        ],
        "encodings": [{"ssrc": ssrc}],
        "rtcp": {"cname": "test-cname", "reducedSize": true}
    }))
    .expect("valid opus parameters")
}

pub fn vp8_simulcast_parameters(mid: &str) -> RtpParameters {
    serde_json::from_value(serde_json::json!({
        "mid": mid,
        "codecs": [
            {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000, "parameters": {},
             "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"}]}
        ],
        "headerExtensions": [
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false},
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": 10, "encrypt": false},
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", "id": 11, "encrypt": false}
        ],
        "encodings": [{"rid": "r0"}, {"rid": "r1"}, {"rid": "r2"}],
        "rtcp": {"cname": "", "reducedSize": true}
    }))
    .expect("valid simulcast parameters")
}

/// A VP8 payload: descriptor with S=1, PID=0 and a payload header whose P bit
/// says key frame (true) or delta frame (false).
pub fn vp8_payload(keyframe: bool, fill: u8) -> Vec<u8> {
    let mut p = vec![0x10, if keyframe { 0x00 } else { 0x01 }];
    p.extend(std::iter::repeat_n(fill, 100));
    p
}

/// A simulcast VP8 payload as libwebrtc sends it: 15-bit PictureID,
/// TL0PICIDX, TID 0 with KEYIDX, then the payload header (P bit) and filler
/// whose last byte names the layer.
pub fn vp8_numbered_payload(
    picture_id: u16,
    tl0_pic_idx: u8,
    key_idx: u8,
    keyframe: bool,
    layer: u8,
) -> Vec<u8> {
    let mut p = vec![
        0x90,
        0xf0,
        0x80 | (picture_id >> 8) as u8 & 0x7f,
        picture_id as u8,
        tl0_pic_idx,
        key_idx & 0x1f,
    ];
    p.push(if keyframe { 0x00 } else { 0x01 });
    p.extend(std::iter::repeat_n(0x55, 50));
    p.push(layer);
    p
}

pub fn kind_of(kind: MediaKind) -> StrKind {
    match kind {
        MediaKind::Audio => StrKind::Audio,
        MediaKind::Video => StrKind::Video,
    }
}
