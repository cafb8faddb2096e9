//! The router's RTP capabilities: what mediasoup-client loads with
//! `Device.load({routerRtpCapabilities})`, and the header-extension ids that
//! receive transports are configured with (one source for both).

use mediasoup_types::rtp_parameters::{
    MediaKind, MimeTypeAudio, MimeTypeVideo, RtcpFeedback, RtpCapabilitiesFinalized,
    RtpCodecCapabilityFinalized, RtpCodecParametersParameters, RtpHeaderExtension,
    RtpHeaderExtensionDirection, RtpHeaderExtensionUri,
};
use std::num::{NonZeroU32, NonZeroU8};

/// Header extension ids, as mediasoup numbers them.
pub(crate) mod ext_id {
    pub const MID: u8 = 1;
    pub const RID: u8 = 2;
    pub const REPAIRED_RID: u8 = 3;
    pub const ABS_SEND_TIME: u8 = 4;
    pub const TRANSPORT_CC: u8 = 5;
    pub const AUDIO_LEVEL: u8 = 10;
    pub const VIDEO_ORIENTATION: u8 = 11;
}

/// Router payload types.
pub(crate) mod pt {
    pub const OPUS: u8 = 100;
    pub const VP8: u8 = 101;
    pub const VP8_RTX: u8 = 102;
    pub const VP9: u8 = 103;
    pub const VP9_RTX: u8 = 104;
    pub const H264: u8 = 105;
    pub const H264_RTX: u8 = 106;
    pub const H264_HIGH: u8 = 107;
    pub const H264_HIGH_RTX: u8 = 108;
}

fn hz(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).expect("clock rates are non-zero constants")
}

fn video_feedback() -> Vec<RtcpFeedback> {
    vec![
        RtcpFeedback::Nack,
        RtcpFeedback::NackPli,
        RtcpFeedback::CcmFir,
        RtcpFeedback::GoogRemb,
        RtcpFeedback::TransportCc,
    ]
}

fn video(
    mime_type: MimeTypeVideo,
    pt: u8,
    params: RtpCodecParametersParameters,
) -> RtpCodecCapabilityFinalized {
    RtpCodecCapabilityFinalized::Video {
        mime_type,
        preferred_payload_type: pt,
        clock_rate: hz(90_000),
        parameters: params,
        rtcp_feedback: video_feedback(),
    }
}

fn rtx(apt: u8, pt: u8) -> RtpCodecCapabilityFinalized {
    let mut params = RtpCodecParametersParameters::default();
    params.insert("apt", apt as u32);
    RtpCodecCapabilityFinalized::Video {
        mime_type: MimeTypeVideo::Rtx,
        preferred_payload_type: pt,
        clock_rate: hz(90_000),
        parameters: params,
        rtcp_feedback: vec![],
    }
}

fn h264(profile_level_id: &'static str, pt: u8) -> RtpCodecCapabilityFinalized {
    let mut params = RtpCodecParametersParameters::default();
    params.insert("packetization-mode", 1u32);
    params.insert("profile-level-id", profile_level_id);
    params.insert("level-asymmetry-allowed", 1u32);
    video(MimeTypeVideo::H264, pt, params)
}

fn ext(
    kind: MediaKind,
    uri: RtpHeaderExtensionUri,
    id: u8,
    direction: RtpHeaderExtensionDirection,
) -> RtpHeaderExtension {
    RtpHeaderExtension {
        kind,
        uri,
        preferred_id: id as u16,
        preferred_encrypt: false,
        direction,
    }
}

/// The router RTP capabilities: opus, VP8, VP9, H264 (baseline and high, with
/// RTX for video) and the usual header extensions.
pub fn router_rtp_capabilities() -> RtpCapabilitiesFinalized {
    use RtpHeaderExtensionDirection::*;
    use RtpHeaderExtensionUri as Uri;
    let mut opus_params = RtpCodecParametersParameters::default();
    opus_params.insert("useinbandfec", 1u32);
    let mut vp9_params = RtpCodecParametersParameters::default();
    vp9_params.insert("profile-id", 0u32);
    let codecs = vec![
        RtpCodecCapabilityFinalized::Audio {
            mime_type: MimeTypeAudio::Opus,
            preferred_payload_type: pt::OPUS,
            clock_rate: hz(48_000),
            channels: NonZeroU8::new(2).expect("two channels"),
            parameters: opus_params,
            rtcp_feedback: vec![RtcpFeedback::Nack, RtcpFeedback::TransportCc],
        },
        video(
            MimeTypeVideo::Vp8,
            pt::VP8,
            RtpCodecParametersParameters::default(),
        ),
        rtx(pt::VP8, pt::VP8_RTX),
        video(MimeTypeVideo::Vp9, pt::VP9, vp9_params),
        rtx(pt::VP9, pt::VP9_RTX),
        h264("42e01f", pt::H264),
        rtx(pt::H264, pt::H264_RTX),
        h264("4d0032", pt::H264_HIGH),
        rtx(pt::H264_HIGH, pt::H264_HIGH_RTX),
    ];
    let header_extensions = vec![
        ext(MediaKind::Audio, Uri::Mid, ext_id::MID, SendRecv),
        ext(MediaKind::Video, Uri::Mid, ext_id::MID, SendRecv),
        ext(MediaKind::Video, Uri::RtpStreamId, ext_id::RID, RecvOnly),
        ext(
            MediaKind::Video,
            Uri::RepairRtpStreamId,
            ext_id::REPAIRED_RID,
            RecvOnly,
        ),
        ext(
            MediaKind::Audio,
            Uri::AbsSendTime,
            ext_id::ABS_SEND_TIME,
            SendRecv,
        ),
        ext(
            MediaKind::Video,
            Uri::AbsSendTime,
            ext_id::ABS_SEND_TIME,
            SendRecv,
        ),
        ext(
            MediaKind::Audio,
            Uri::TransportWideCcDraft01,
            ext_id::TRANSPORT_CC,
            SendRecv,
        ),
        ext(
            MediaKind::Video,
            Uri::TransportWideCcDraft01,
            ext_id::TRANSPORT_CC,
            SendRecv,
        ),
        ext(
            MediaKind::Audio,
            Uri::SsrcAudioLevel,
            ext_id::AUDIO_LEVEL,
            SendRecv,
        ),
        ext(
            MediaKind::Video,
            Uri::VideoOrientation,
            ext_id::VIDEO_ORIENTATION,
            SendRecv,
        ),
    ];
    RtpCapabilitiesFinalized {
        codecs,
        header_extensions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_serialize_as_mediasoup_json() {
        let caps = serde_json::to_value(router_rtp_capabilities()).expect("serializes");
        let codecs = caps["codecs"].as_array().expect("codecs array");
        assert_eq!(codecs[0]["mimeType"], "audio/opus");
        assert_eq!(codecs[0]["kind"], "audio");
        assert_eq!(codecs[0]["preferredPayloadType"], 100);
        assert_eq!(codecs[2]["mimeType"], "video/rtx");
        assert_eq!(codecs[2]["parameters"]["apt"], 101);
        let exts = caps["headerExtensions"]
            .as_array()
            .expect("extensions array");
        assert!(exts
            .iter()
            .any(|e| e["uri"] == "urn:ietf:params:rtp-hdrext:sdes:mid" && e["preferredId"] == 1));
    }
}
