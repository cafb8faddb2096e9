//! RTP parameters, as pure functions: a producer's parameters checked against
//! the router's capabilities (including what may reach the synthesized SDP
//! offer), the codec match and payload-type mapping, and the parameters of a
//! consumer. No transport or str0m session here, so all of it is unit-tested
//! below.

use crate::api::EngineError;
use crate::capabilities::ext_id;
use mediasoup_types::rtp_parameters::{
    MediaKind, MimeType, MimeTypeVideo, RtcpFeedback, RtcpParameters, RtpCapabilitiesFinalized,
    RtpCodecCapabilityFinalized, RtpCodecParameters, RtpEncodingParameters,
    RtpEncodingParametersRtx, RtpHeaderExtensionParameters, RtpHeaderExtensionUri, RtpParameters,
};
use std::collections::{HashMap, HashSet};
use str0m::format::Codec;
use str0m::media::Pt;

/// What a producer's parameters come to on this router.
pub(crate) struct CheckedProducer {
    pub codec: Codec,
    /// Browser payload type to router payload type.
    pub pt_map: HashMap<u8, Pt>,
    pub router_codec: RtpCodecParameters,
    pub router_rtx_pt: Option<u8>,
}

/// Validate a producer's RTP parameters against the router and work out the
/// payload-type mapping from the browser's numbers to the router's.
pub(crate) fn check_producer_parameters(
    caps: &RtpCapabilitiesFinalized,
    kind: MediaKind,
    rtp: &RtpParameters,
) -> Result<CheckedProducer, EngineError> {
    let bad = |m: String| EngineError::InvalidRtpParameters(m);
    let mid = rtp
        .mid
        .as_deref()
        .ok_or_else(|| bad("rtpParameters.mid is required".into()))?;
    if mid.is_empty()
        || mid.len() > 16
        || !mid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad(format!(
            "mid {mid:?} must be 1 to 16 letters, digits, '-' or '_'"
        )));
    }
    if rtp.encodings.is_empty() || rtp.encodings.len() > 4 {
        return Err(bad(
            "rtpParameters.encodings must have 1 to 4 entries".into()
        ));
    }
    // Client text that ends up in the SDP offer given to str0m: one token
    // each, so no value can add lines (say, other ICE credentials) to it.
    let sdp_token =
        |text: &str| text.len() <= 64 && text.chars().all(|c| c.is_ascii_graphic() && c != ';');
    if let Some(cname) = rtp.rtcp.cname.as_deref() {
        if !sdp_token(cname) {
            return Err(bad(
                "rtcp.cname must be at most 64 visible ASCII characters".into(),
            ));
        }
    }
    for codec in &rtp.codecs {
        for (key, value) in codec.parameters().iter() {
            let text_ok = match value {
                mediasoup_types::rtp_parameters::RtpCodecParametersParametersValue::String(v) => {
                    sdp_token(v)
                }
                mediasoup_types::rtp_parameters::RtpCodecParametersParametersValue::Number(_) => {
                    true
                }
            };
            if !sdp_token(key) || key.contains('=') || !text_ok {
                return Err(bad(format!(
                    "codec parameter {key:?} has characters an SDP fmtp line cannot carry"
                )));
            }
        }
    }
    let with_rid = rtp.encodings.iter().filter(|e| e.rid.is_some()).count();
    if with_rid != 0 && with_rid != rtp.encodings.len() {
        return Err(bad("either every encoding has a rid or none has".into()));
    }
    for e in &rtp.encodings {
        match (&e.rid, e.ssrc) {
            (Some(rid), _)
                if rid.is_empty()
                    || rid.len() > 8
                    || !rid.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                return Err(bad(format!("rid {rid:?} must be 1 to 8 letters or digits")));
            }
            (None, None) => return Err(bad("each encoding needs an ssrc or a rid".into())),
            (None, Some(0)) => return Err(bad("ssrc 0 is not allowed".into())),
            _ => {}
        }
    }
    if rtp.encodings.len() > 1 && kind == MediaKind::Audio {
        return Err(bad("audio producers take one encoding".into()));
    }
    let mut seen_pt = HashSet::new();
    for c in &rtp.codecs {
        if !seen_pt.insert(c.payload_type())
            || !(35..=127).contains(&c.payload_type())
            || (64..=95).contains(&c.payload_type())
        {
            return Err(bad(format!(
                "payload type {} is duplicated or outside the dynamic range",
                c.payload_type()
            )));
        }
    }
    for ext in &rtp.header_extensions {
        if ext.id == 0 || ext.id > 14 {
            return Err(bad(format!(
                "header extension id {} must be between 1 and 14",
                ext.id
            )));
        }
    }
    let media = rtp
        .codecs
        .iter()
        .find(|c| !c.is_rtx())
        .ok_or_else(|| bad("no media codec in rtpParameters.codecs".into()))?;
    let media_kind = match media.mime_type() {
        MimeType::Audio(_) => MediaKind::Audio,
        MimeType::Video(_) => MediaKind::Video,
    };
    if media_kind != kind {
        return Err(bad(format!(
            "codec {} does not match kind {kind:?}",
            media.mime_type().as_str()
        )));
    }
    let router = caps
        .codecs
        .iter()
        .find(|rc| codec_matches(rc, media))
        .ok_or_else(|| {
            bad(format!(
                "codec {} is not supported by this router",
                media.mime_type().as_str()
            ))
        })?;
    let router_pt = router.preferred_payload_type();
    let router_rtx_pt = caps.codecs.iter().find_map(|rc| {
        (rc.is_rtx() && rc.parameters().get("apt") == Some(&(router_pt as u32).into()))
            .then(|| rc.preferred_payload_type())
    });
    let mut pt_map = HashMap::new();
    pt_map.insert(media.payload_type(), Pt::from(router_pt));
    // Repaired packets arrive unwrapped by str0m with the media payload type, but map RTX too.
    for c in rtp.codecs.iter().filter(|c| c.is_rtx()) {
        if c.parameters().get("apt") == Some(&(media.payload_type() as u32).into()) {
            pt_map.insert(c.payload_type(), Pt::from(router_pt));
        }
    }
    let codec = codec_of(media);
    let router_codec = match router {
        RtpCodecCapabilityFinalized::Audio {
            mime_type,
            preferred_payload_type,
            clock_rate,
            channels,
            rtcp_feedback,
            ..
        } => {
            RtpCodecParameters::Audio {
                mime_type: *mime_type,
                payload_type: *preferred_payload_type,
                clock_rate: *clock_rate,
                channels: *channels,
                // mediasoup keeps the producer's codec parameters (e.g. opus useinbandfec).
                parameters: media.parameters().clone(),
                // transport-cc stays: str0m numbers every packet of a
                // transport, audio too, for its estimate, and a receiver that
                // does not count the audio ones reports them all as lost.
                rtcp_feedback: rtcp_feedback
                    .iter()
                    .copied()
                    .filter(|f| *f != RtcpFeedback::Nack)
                    .collect(),
            }
        }
        RtpCodecCapabilityFinalized::Video {
            mime_type,
            preferred_payload_type,
            clock_rate,
            parameters,
            rtcp_feedback,
        } => RtpCodecParameters::Video {
            mime_type: *mime_type,
            payload_type: *preferred_payload_type,
            clock_rate: *clock_rate,
            parameters: parameters.clone(),
            rtcp_feedback: rtcp_feedback
                .iter()
                .copied()
                .filter(|f| *f != RtcpFeedback::GoogRemb)
                .collect(),
        },
    };
    Ok(CheckedProducer {
        codec,
        pt_map,
        router_codec,
        router_rtx_pt,
    })
}

/// Whether a producer with this codec would be accepted by a router with
/// `caps` (what [`check_producer_parameters`] matches on: mime type, clock
/// rate, channels, H264 packetization mode and profile, VP9 profile).
/// The str0m codec of a (checked, supported) codec's parameters.
pub(crate) fn codec_of(codec: &RtpCodecParameters) -> Codec {
    match codec.mime_type() {
        MimeType::Audio(_) => Codec::Opus,
        MimeType::Video(MimeTypeVideo::Vp8) => Codec::Vp8,
        MimeType::Video(MimeTypeVideo::Vp9) => Codec::Vp9,
        MimeType::Video(MimeTypeVideo::H264) => Codec::H264,
        MimeType::Video(_) => Codec::Vp8,
    }
}

pub fn codec_supported(caps: &RtpCapabilitiesFinalized, codec: &RtpCodecParameters) -> bool {
    !codec.is_rtx() && caps.codecs.iter().any(|rc| codec_matches(rc, codec))
}

/// The router's payload type (and its RTX payload type) for a codec the
/// router takes, as [`codec_supported`] matches it.
pub fn router_payload_type(
    caps: &RtpCapabilitiesFinalized,
    codec: &RtpCodecParameters,
) -> Option<(u8, Option<u8>)> {
    if codec.is_rtx() {
        return None;
    }
    let router = caps.codecs.iter().find(|rc| codec_matches(rc, codec))?;
    let pt = router.preferred_payload_type();
    let rtx = caps.codecs.iter().find_map(|rc| {
        (rc.is_rtx() && rc.parameters().get("apt") == Some(&(pt as u32).into()))
            .then(|| rc.preferred_payload_type())
    });
    Some((pt, rtx))
}

/// Whether the router forwards this header extension for `kind`.
pub fn extension_supported(
    caps: &RtpCapabilitiesFinalized,
    kind: MediaKind,
    uri: &RtpHeaderExtensionUri,
) -> bool {
    caps.header_extensions
        .iter()
        .any(|e| e.kind == kind && e.uri == *uri)
}

/// Whether the router codec can carry the producer's (mime type, clock rate,
/// channels, and the parameters that change the bitstream).
fn codec_matches(router: &RtpCodecCapabilityFinalized, producer: &RtpCodecParameters) -> bool {
    let same_mime = match (router, producer) {
        (
            RtpCodecCapabilityFinalized::Audio {
                mime_type: a,
                channels: ca,
                ..
            },
            RtpCodecParameters::Audio {
                mime_type: b,
                channels: cb,
                ..
            },
        ) => a == b && ca == cb,
        (
            RtpCodecCapabilityFinalized::Video { mime_type: a, .. },
            RtpCodecParameters::Video { mime_type: b, .. },
        ) => a == b,
        _ => false,
    };
    if !same_mime || router.clock_rate() != producer.clock_rate() || router.is_rtx() {
        return false;
    }
    let param = |p: &mediasoup_types::rtp_parameters::RtpCodecParametersParameters, k: &str| {
        p.get(k).map(|v| match v {
            mediasoup_types::rtp_parameters::RtpCodecParametersParametersValue::String(s) => {
                s.to_string()
            }
            mediasoup_types::rtp_parameters::RtpCodecParametersParametersValue::Number(n) => {
                n.to_string()
            }
        })
    };
    match producer.mime_type() {
        MimeType::Video(MimeTypeVideo::H264) => {
            let pm = |p| param(p, "packetization-mode").unwrap_or_else(|| "0".into());
            let profile = |p| {
                param(p, "profile-level-id").map(|s| s.get(..2).unwrap_or("").to_ascii_lowercase())
            };
            pm(router.parameters()) == pm(producer.parameters())
                && profile(router.parameters()) == profile(producer.parameters())
        }
        MimeType::Video(MimeTypeVideo::Vp9) => {
            let profile = |p| param(p, "profile-id").unwrap_or_else(|| "0".into());
            profile(router.parameters()) == profile(producer.parameters())
        }
        _ => true,
    }
}

/// What a consumer's RTP parameters are made of.
pub(crate) struct ConsumerRtp {
    pub kind: MediaKind,
    pub mid: String,
    pub router_codec: RtpCodecParameters,
    pub router_rtx_pt: Option<u8>,
    pub ssrc: u32,
    pub rtx: Option<u32>,
    pub cname: Option<String>,
    pub msid: Option<String>,
    pub max_bitrate: Option<u64>,
    /// The producer's simulcast layers (1 when not simulcast).
    pub layer_count: usize,
}

/// The consumer's RTP parameters as mediasoup would build them: router
/// payload types, the router's send extensions for the kind, one encoding.
pub(crate) fn consumer_rtp_parameters(c: ConsumerRtp) -> RtpParameters {
    use RtpHeaderExtensionUri as Uri;
    let mut codecs = vec![c.router_codec.clone()];
    if let (Some(rtx_pt), Some(_)) = (c.router_rtx_pt, c.rtx) {
        let mut params = mediasoup_types::rtp_parameters::RtpCodecParametersParameters::default();
        params.insert("apt", c.router_codec.payload_type() as u32);
        codecs.push(RtpCodecParameters::Video {
            mime_type: MimeTypeVideo::Rtx,
            payload_type: rtx_pt,
            clock_rate: c.router_codec.clock_rate(),
            parameters: params,
            rtcp_feedback: vec![],
        });
    }
    let ext = |uri, id: u8| RtpHeaderExtensionParameters {
        uri,
        id: id as u16,
        encrypt: false,
    };
    let header_extensions = match c.kind {
        MediaKind::Audio => vec![
            ext(Uri::AbsSendTime, ext_id::ABS_SEND_TIME),
            ext(Uri::TransportWideCcDraft01, ext_id::TRANSPORT_CC),
            ext(Uri::SsrcAudioLevel, ext_id::AUDIO_LEVEL),
        ],
        MediaKind::Video => vec![
            ext(Uri::AbsSendTime, ext_id::ABS_SEND_TIME),
            ext(Uri::TransportWideCcDraft01, ext_id::TRANSPORT_CC),
            ext(Uri::VideoOrientation, ext_id::VIDEO_ORIENTATION),
        ],
    };
    let encoding = RtpEncodingParameters {
        ssrc: Some(c.ssrc),
        rtx: c.rtx.map(|ssrc| RtpEncodingParametersRtx { ssrc }),
        max_bitrate: c.max_bitrate,
        scalability_mode: if c.layer_count > 1 {
            format!("L{}T3", c.layer_count).parse().unwrap_or_default()
        } else {
            Default::default()
        },
        ..Default::default()
    };
    RtpParameters {
        mid: Some(c.mid),
        codecs,
        header_extensions,
        encodings: vec![encoding],
        rtcp: RtcpParameters {
            cname: c.cname,
            reduced_size: true,
        },
        msid: c.msid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::{pt, router_rtp_capabilities};
    use serde_json::json;

    /// VP8 with RTX as Chromium and mediasoup-client send it.
    fn browser_vp8() -> serde_json::Value {
        json!({
            "mid": "0",
            "codecs": [
                {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000, "parameters": {},
                 "rtcpFeedback": [{"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"}]},
                {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}, "rtcpFeedback": []}
            ],
            "headerExtensions": [{"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false}],
            "encodings": [{"ssrc": 1111, "rtx": {"ssrc": 2222}}],
            "rtcp": {"cname": "c", "reducedSize": true}
        })
    }

    fn browser_opus() -> serde_json::Value {
        json!({
            "mid": "1",
            "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2,
                        "parameters": {"minptime": 10, "useinbandfec": 1}, "rtcpFeedback": []}],
            "headerExtensions": [],
            "encodings": [{"ssrc": 3333}],
            "rtcp": {"cname": "c", "reducedSize": true}
        })
    }

    fn parse(v: serde_json::Value) -> RtpParameters {
        serde_json::from_value(v).expect("well-formed RTP parameters")
    }

    fn check(kind: MediaKind, v: serde_json::Value) -> Result<CheckedProducer, EngineError> {
        check_producer_parameters(&router_rtp_capabilities(), kind, &parse(v))
    }

    /// The refusal's message, for a producer that must be refused.
    fn refusal(kind: MediaKind, v: serde_json::Value) -> String {
        match check(kind, v) {
            Err(EngineError::InvalidRtpParameters(message)) => message,
            Err(other) => panic!("refused with the wrong error: {other:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn browser_vp8_maps_its_media_and_rtx_payload_types_to_the_router_vp8() {
        let checked = check(MediaKind::Video, browser_vp8()).expect("accepted");
        assert_eq!(checked.codec, Codec::Vp8);
        assert_eq!(checked.pt_map.get(&96), Some(&Pt::from(pt::VP8)));
        assert_eq!(
            checked.pt_map.get(&97),
            Some(&Pt::from(pt::VP8)),
            "repaired packets carry the media type"
        );
        assert_eq!(checked.router_codec.payload_type(), pt::VP8);
        assert_eq!(checked.router_rtx_pt, Some(pt::VP8_RTX));
        let feedback = checked.router_codec.rtcp_feedback();
        assert!(
            !feedback.contains(&RtcpFeedback::GoogRemb),
            "consumers get transport-cc, not REMB: {feedback:?}"
        );
    }

    #[test]
    fn opus_keeps_the_producers_parameters_and_drops_nack() {
        let checked = check(MediaKind::Audio, browser_opus()).expect("accepted");
        assert_eq!(checked.codec, Codec::Opus);
        assert_eq!(checked.router_codec.payload_type(), pt::OPUS);
        assert_eq!(checked.router_rtx_pt, None);
        assert!(
            checked
                .router_codec
                .parameters()
                .get("useinbandfec")
                .is_some(),
            "in-band FEC stays on"
        );
        assert!(!checked
            .router_codec
            .rtcp_feedback()
            .contains(&RtcpFeedback::Nack));
    }

    #[test]
    fn text_that_would_add_lines_to_the_sdp_offer_is_refused() {
        let mut v = browser_vp8();
        v["rtcp"]["cname"] = json!("x\r\na=ice-ufrag:evil");
        assert!(refusal(MediaKind::Video, v).contains("cname"));
        let mut v = browser_opus();
        v["codecs"][0]["parameters"]["minptime"] = json!("10\r\na=setup:passive");
        assert!(refusal(MediaKind::Audio, v).contains("fmtp"));
        let mut v = browser_vp8();
        v["mid"] = json!("0\r\n");
        assert!(refusal(MediaKind::Video, v).contains("mid"));
    }

    #[test]
    fn malformed_encodings_payload_types_and_extension_ids_are_refused_with_a_reason() {
        let cases: Vec<(MediaKind, fn(&mut serde_json::Value), &str)> = vec![
            (
                MediaKind::Video,
                |v| v["encodings"] = json!([{"rid": "r0"}, {"ssrc": 5}]),
                "rid",
            ),
            (
                MediaKind::Video,
                |v| v["encodings"] = json!([{}]),
                "ssrc or a rid",
            ),
            (
                MediaKind::Video,
                |v| v["encodings"] = json!([{"ssrc": 0}]),
                "ssrc 0",
            ),
            (MediaKind::Video, |v| v["encodings"] = json!([]), "1 to 4"),
            (
                MediaKind::Video,
                |v| v["codecs"][1]["payloadType"] = json!(96),
                "payload type 96",
            ),
            (
                MediaKind::Video,
                |v| v["codecs"][0]["payloadType"] = json!(72),
                "payload type 72",
            ),
            (
                MediaKind::Video,
                |v| v["headerExtensions"][0]["id"] = json!(15),
                "between 1 and 14",
            ),
            (
                MediaKind::Audio,
                |v| v["encodings"] = json!([{"ssrc": 1}, {"ssrc": 2}]),
                "one encoding",
            ),
            (MediaKind::Audio, |_| {}, "does not match kind"),
        ];
        for (kind, change, reason) in cases {
            let mut v = if kind == MediaKind::Audio && reason == "one encoding" {
                browser_opus()
            } else {
                browser_vp8()
            };
            change(&mut v);
            let message = refusal(kind, v);
            assert!(
                message.contains(reason),
                "expected {reason:?} in {message:?}"
            );
        }
    }

    #[test]
    fn h264_matches_by_packetization_mode_and_profile_and_vp9_by_profile_id() {
        let h264 = |profile: &str, mode: u32| {
            let mut v = browser_vp8();
            v["codecs"] = json!([{"mimeType": "video/H264", "payloadType": 102, "clockRate": 90000,
                "parameters": {"packetization-mode": mode, "profile-level-id": profile}, "rtcpFeedback": []}]);
            check(MediaKind::Video, v)
        };
        let baseline = h264("42e01f", 1).expect("constrained baseline, mode 1");
        assert_eq!(
            (baseline.codec, baseline.router_codec.payload_type()),
            (Codec::H264, pt::H264)
        );
        let high = h264("4d0032", 1).expect("main profile");
        assert_eq!(high.router_codec.payload_type(), pt::H264_HIGH);
        assert!(
            h264("42e01f", 0).is_err(),
            "packetization-mode 0 is not offered"
        );
        assert!(h264("640032", 1).is_err(), "no router codec for profile 64");

        let vp9 = |profile: u32| {
            let mut v = browser_vp8();
            v["codecs"] = json!([{"mimeType": "video/VP9", "payloadType": 98, "clockRate": 90000,
                "parameters": {"profile-id": profile}, "rtcpFeedback": []}]);
            check(MediaKind::Video, v)
        };
        assert_eq!(
            vp9(0).expect("profile 0").router_codec.payload_type(),
            pt::VP9
        );
        assert!(vp9(2).is_err(), "profile 2 is not offered");
    }

    fn consumer(
        kind: MediaKind,
        checked: &CheckedProducer,
        rtx: Option<u32>,
        layer_count: usize,
    ) -> RtpParameters {
        consumer_rtp_parameters(ConsumerRtp {
            kind,
            mid: "3".into(),
            router_codec: checked.router_codec.clone(),
            router_rtx_pt: checked.router_rtx_pt,
            ssrc: 7777,
            rtx,
            cname: Some("str0m-cname".into()),
            msid: Some("stream consumer".into()),
            max_bitrate: Some(900_000),
            layer_count,
        })
    }

    #[test]
    fn a_video_consumer_gets_the_router_codec_its_rtx_and_one_encoding() {
        let checked = check(MediaKind::Video, browser_vp8()).expect("accepted");
        let p = consumer(MediaKind::Video, &checked, Some(8888), 1);
        let pts: Vec<u8> = p.codecs.iter().map(|c| c.payload_type()).collect();
        assert_eq!(pts, [pt::VP8, pt::VP8_RTX]);
        assert_eq!(
            p.codecs[1].parameters().get("apt"),
            Some(&u32::from(pt::VP8).into())
        );
        assert_eq!(p.encodings.len(), 1);
        assert_eq!(
            (p.encodings[0].ssrc, p.encodings[0].rtx.map(|r| r.ssrc)),
            (Some(7777), Some(8888))
        );
        assert_eq!(p.encodings[0].max_bitrate, Some(900_000));
        assert_eq!(
            (p.mid.as_deref(), p.rtcp.cname.as_deref()),
            (Some("3"), Some("str0m-cname"))
        );
        let ids: Vec<u16> = p.header_extensions.iter().map(|e| e.id).collect();
        assert_eq!(
            ids,
            [
                ext_id::ABS_SEND_TIME,
                ext_id::TRANSPORT_CC,
                ext_id::VIDEO_ORIENTATION
            ]
            .map(u16::from)
        );
    }

    #[test]
    fn a_simulcast_consumer_announces_its_layers_and_audio_has_no_rtx() {
        let checked = check(MediaKind::Video, browser_vp8()).expect("accepted");
        let p = consumer(MediaKind::Video, &checked, Some(8888), 3);
        assert_eq!(p.encodings[0].scalability_mode.to_string(), "L3T3");
        let audio = check(MediaKind::Audio, browser_opus()).expect("accepted");
        let p = consumer(MediaKind::Audio, &audio, None, 1);
        assert_eq!(p.codecs.len(), 1);
        let ids: Vec<u16> = p.header_extensions.iter().map(|e| e.id).collect();
        assert_eq!(
            ids,
            [
                ext_id::ABS_SEND_TIME,
                ext_id::TRANSPORT_CC,
                ext_id::AUDIO_LEVEL
            ]
            .map(u16::from)
        );
    }
}
