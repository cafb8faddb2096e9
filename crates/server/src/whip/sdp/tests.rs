use super::*;
use simplesfu_proto::types::data_structures::{DtlsParameters, IceCandidate, IceParameters};

/// An offer as GStreamer's webrtcbin 1.22 writes it (H264 + Opus, max-bundle:
/// the audio m-line is port 0 and `a=bundle-only`), candidates trimmed.
const GSTREAMER: &str = "v=0\r\no=- 5171666989335245746 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
a=ice-options:trickle\r\na=group:BUNDLE video0 audio1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\n\
a=ice-ufrag:RNKK1R5mcLWAl3tFg7ZBVEw/lSStl1wV\r\na=ice-pwd:Zj3/JMY6sliBxVTSSJ1yNppMb8SUCRrf\r\n\
a=rtcp-mux\r\na=rtcp-rsize\r\na=sendonly\r\na=rtpmap:96 H264/90000\r\na=rtcp-fb:96 nack pli\r\n\
a=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 transport-cc\r\na=framerate:30\r\n\
a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LAHtoCgL/lwFqDAwNSgAAAAwCAAAAeR4sXUA==,aM48gA==;profile-level-id=42c01e;level-asymmetry-allowed=1\r\n\
a=ssrc:3837323408 msid:user1286363371@host-e89950f webrtctransceiver0\r\n\
a=ssrc:3837323408 cname:user1286363371@host-e89950f\r\na=mid:video0\r\n\
a=fingerprint:sha-256 2F:C7:9A:EE:EA:44:9B:C7:57:E5:07:EB:1F:AE:7E:C7:86:87:8C:AF:4D:E2:F5:40:1F:74:9B:78:32:D3:1B:72\r\n\
a=rtcp-mux-only\r\na=candidate:1 1 UDP 2015363327 192.0.2.2 46316 typ host\r\n\
m=audio 0 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\n\
a=ice-ufrag:RNKK1R5mcLWAl3tFg7ZBVEw/lSStl1wV\r\na=ice-pwd:Zj3/JMY6sliBxVTSSJ1yNppMb8SUCRrf\r\n\
a=bundle-only\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=sendonly\r\na=rtpmap:111 OPUS/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\na=fmtp:111 sprop-stereo=0;sprop-maxcapturerate=48000\r\n\
a=ssrc:800563368 msid:user1286363371@host-e89950f webrtctransceiver1\r\n\
a=ssrc:800563368 cname:user1286363371@host-e89950f\r\na=mid:audio1\r\n\
a=fingerprint:sha-256 2F:C7:9A:EE:EA:44:9B:C7:57:E5:07:EB:1F:AE:7E:C7:86:87:8C:AF:4D:E2:F5:40:1F:74:9B:78:32:D3:1B:72\r\n\
a=rtcp-mux-only\r\n";

/// The shape of a browser's offer: Opus, then VP8 with RTX sent as three
/// simulcast layers named `h`, `q`, `f` in that order, and a data channel.
const BROWSER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1 2\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=ice-options:trickle\r\n\
a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\r\n\
a=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendonly\r\na=msid:stream audio-track\r\n\
a=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
a=ssrc:1001 cname:browser\r\na=ssrc:1001 msid:stream audio-track\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 45\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\r\n\
a=setup:actpass\r\na=mid:1\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r\n\
a=extmap:13 http://www.webrtc.org/experiments/rtp-hdrext/color-space\r\n\
a=sendonly\r\na=msid:stream video-track\r\na=rtcp-mux\r\na=rtcp-rsize\r\n\
a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 ccm fir\r\n\
a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
a=rtpmap:45 AV1/90000\r\n\
a=rid:h send\r\na=rid:q send\r\na=rid:f send\r\na=simulcast:send h;q;f\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=sctp-port:5000\r\n";

fn everything() -> RouterSupport<'static> {
    let caps: &'static _ = Box::leak(Box::new(simplesfu_engine::router_rtp_capabilities()));
    RouterSupport {
        codec: Box::leak(Box::new(move |c: &RtpCodecParameters| {
            simplesfu_engine::codec_supported(caps, c)
        })),
        extension: Box::leak(Box::new(move |k, u: &RtpHeaderExtensionUri| {
            simplesfu_engine::extension_supported(caps, k, u)
        })),
    }
}

fn transport() -> WebRtcTransportInfo {
    WebRtcTransportInfo {
        id: simplesfu_proto::TransportId::new(),
        ice_parameters: IceParameters {
            username_fragment: "ourufrag".into(),
            password: "ourpasswordourpassword00".into(),
            ice_lite: Some(true),
        },
        ice_candidates: vec![IceCandidate {
            foundation: "udpcandidate".into(),
            priority: 1076302079,
            address: "192.0.2.1".into(),
            protocol: Protocol::Udp,
            port: 40000,
            r#type: simplesfu_proto::types::data_structures::IceCandidateType::Host,
            tcp_type: None,
        }],
        dtls_parameters: DtlsParameters {
            role: DtlsRole::Auto,
            fingerprints: vec![DtlsFingerprint::Sha256 { value: [0xAB; 32] }],
        },
        sctp_parameters: None,
    }
}

#[test]
fn a_gstreamer_offer_becomes_an_h264_and_an_opus_producer() {
    let offer = parse_offer(GSTREAMER).expect("parses");
    assert_eq!(offer.ice_ufrag, "RNKK1R5mcLWAl3tFg7ZBVEw/lSStl1wV");
    assert_eq!(
        offer.client_role,
        DtlsRole::Client,
        "actpass: we are the DTLS server"
    );
    let plans = plan(&offer, &everything());
    let Plan::Produce {
        kind,
        rtp_parameters,
        codec,
        rtx,
        ..
    } = &plans[0]
    else {
        panic!("video refused: {:?}", plans[0]);
    };
    assert_eq!(*kind, MediaKind::Video);
    assert_eq!(codec.pt, 96);
    assert!(rtx.is_none());
    assert_eq!(
        codec.fmtp,
        vec![
            ("packetization-mode".into(), "1".into()),
            ("profile-level-id".into(), "42c01e".into()),
            ("level-asymmetry-allowed".into(), "1".into()),
        ],
        "sprop-parameter-sets is not carried on"
    );
    let json = serde_json::to_value(rtp_parameters.as_ref()).expect("serializes");
    assert_eq!(json["mid"], "video0");
    assert_eq!(json["codecs"][0]["mimeType"], "video/H264");
    assert_eq!(json["encodings"][0]["ssrc"], 3837323408u32);
    assert_eq!(json["rtcp"]["cname"], "user1286363371@host-e89950f");
    let Plan::Produce {
        kind,
        rtp_parameters,
        ..
    } = &plans[1]
    else {
        panic!(
            "a bundle-only audio m-line is offered, not rejected: {:?}",
            plans[1]
        );
    };
    assert_eq!(*kind, MediaKind::Audio);
    let json = serde_json::to_value(rtp_parameters.as_ref()).expect("serializes");
    assert_eq!(json["codecs"][0]["mimeType"], "audio/opus", "OPUS is opus");
    assert_eq!(json["codecs"][0]["channels"], 2);
}

#[test]
fn a_browser_offer_keeps_simulcast_lowest_first_and_refuses_what_it_cannot_take() {
    let offer = parse_offer(BROWSER).expect("parses");
    let plans = plan(&offer, &everything());
    assert_eq!(plans.len(), 3);
    let Plan::Produce {
        rtp_parameters,
        extmaps,
        ..
    } = &plans[0]
    else {
        panic!("audio refused: {:?}", plans[0]);
    };
    assert_eq!(rtp_parameters.codecs.len(), 1, "opus only, not red");
    assert_eq!(extmaps.len(), 3);
    let Plan::Produce {
        rtp_parameters,
        codec,
        rtx,
        extmaps,
        ..
    } = &plans[1]
    else {
        panic!("video refused: {:?}", plans[1]);
    };
    assert_eq!(codec.name, "VP8");
    assert_eq!(rtx.as_ref().map(|r| r.pt), Some(97));
    let rids: Vec<_> = rtp_parameters
        .encodings
        .iter()
        .map(|e| e.rid.clone().unwrap_or_default())
        .collect();
    assert_eq!(rids, ["q", "h", "f"], "quarter, half, full");
    assert!(
        !extmaps.iter().any(|(_, uri)| uri.contains("color-space")),
        "unknown extensions are left out"
    );
    assert!(matches!(&plans[2], Plan::Reject(why) if why.contains("application")));

    let answer = write_answer(&offer, &plans, &transport());
    assert!(answer.starts_with("v=0\r\n"));
    assert!(answer.contains("a=ice-lite\r\n"));
    assert!(answer.contains("a=group:BUNDLE 0 1\r\n"));
    assert!(answer.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"));
    assert!(answer.contains("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"));
    assert!(answer.contains("m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"));
    assert!(answer.contains("a=setup:passive\r\n"));
    assert!(answer.contains("a=ice-ufrag:ourufrag\r\n"));
    assert!(answer.contains("a=simulcast:recv h;q;f\r\n"));
    assert!(answer.contains("a=rid:q recv\r\n"));
    assert!(answer.contains("a=recvonly\r\n"));
    assert!(answer.contains("a=rtcp-fb:96 nack pli\r\n"));
    assert!(
        answer.contains("a=candidate:udpcandidate 1 udp 1076302079 192.0.2.1 40000 typ host\r\n")
    );
    assert_eq!(
        answer.matches("a=candidate:").count(),
        1,
        "once, in the first bundled m-line"
    );
    // m-lines in the offer's order.
    let order: Vec<&str> = answer.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(order.len(), 3);
    assert!(order[0].starts_with("m=audio") && order[2].starts_with("m=application"));
}

#[test]
fn offers_that_cannot_be_used_are_refused_with_the_reason() {
    let cases: [(&str, &str); 7] = [
        ("", "empty"),
        ("hello", "not an SDP offer"),
        ("s=-\r\n", "v=0"),
        ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n", "ice-ufrag"),
        (
            "v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
            "fingerprint",
        ),
        (
            "v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 12:34\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
            "fingerprint",
        ),
        ("v=0\r\na=rtpmap:96 VP8/90000\r\n", "no m-line"),
    ];
    for (text, expected) in cases {
        let error = parse_offer(text).expect_err(text);
        assert!(
            error.0.contains(expected),
            "{text:?}: {:?} should mention {expected:?}",
            error.0
        );
    }
    let too_many = format!(
        "v=0\r\n{}",
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n".repeat(MAX_MEDIA + 1)
    );
    assert!(parse_offer(&too_many)
        .expect_err("17 m-lines")
        .0
        .contains("more than"));
    let too_big = "a".repeat(MAX_OFFER_BYTES + 1);
    assert!(parse_offer(&too_big).is_err());
    let bad_pt = BROWSER.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:300 VP8/90000");
    assert!(parse_offer(&bad_pt)
        .expect_err("pt 300")
        .0
        .contains("payload type"));
}

#[test]
fn an_offer_with_no_codec_the_router_forwards_rejects_each_m_line() {
    let text = BROWSER
        .replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 H265/90000")
        .replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 PCMU/8000");
    let offer = parse_offer(&text).expect("parses");
    let plans = plan(&offer, &everything());
    assert!(
        plans.iter().all(|p| matches!(p, Plan::Reject(_))),
        "{plans:?}"
    );
    assert!(matches!(&plans[1], Plan::Reject(why) if why.contains("H265")));
}

#[test]
fn simulcast_layers_are_ordered_lowest_first_when_the_names_say_so() {
    let v = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(order_rids(&v(&["f", "h", "q"])), v(&["q", "h", "f"]));
    assert_eq!(order_rids(&v(&["h", "m", "l"])), v(&["l", "m", "h"]));
    assert_eq!(order_rids(&v(&["high", "low"])), v(&["low", "high"]));
    assert_eq!(order_rids(&v(&["r0", "r1", "r2"])), v(&["r0", "r1", "r2"]));
    assert_eq!(
        order_rids(&v(&["b", "a"])),
        v(&["b", "a"]),
        "unknown names: as offered"
    );
}

#[test]
fn a_restart_fragment_carries_the_new_credentials_and_the_candidates() {
    let body = "a=ice-ufrag:newufrag\r\na=ice-pwd:newpasswordnewpassword00\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n";
    assert_eq!(
        fragment_credentials(body),
        (
            Some("newufrag".into()),
            Some("newpasswordnewpassword00".into())
        )
    );
    let fragment = write_restart_fragment(
        "u1",
        "p1",
        Some(("audio 9 UDP/TLS/RTP/SAVPF 111", "0")),
        &transport(),
    );
    assert!(fragment.contains("a=ice-ufrag:u1\r\na=ice-pwd:p1\r\n"));
    assert!(fragment.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"));
    assert!(fragment.contains("a=end-of-candidates"));
}

/// A WHEP player's offer: video (VP8 with RTX, and AV1) then audio, with
/// its own payload types and extension ids.
const PLAYER: &str = "v=0\r\no=- 3 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE v a\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 98 99 100\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:play\r\n\
a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\r\n\
a=setup:actpass\r\na=mid:v\r\na=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=extmap:7 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:13 http://www.webrtc.org/experiments/rtp-hdrext/color-space\r\n\
a=recvonly\r\na=rtcp-mux\r\na=rtpmap:98 VP8/90000\r\na=rtcp-fb:98 nack\r\na=rtpmap:99 rtx/90000\r\n\
a=fmtp:99 apt=98\r\na=rtpmap:100 AV1/90000\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 109\r\nc=IN IP4 0.0.0.0\r\na=mid:a\r\n\
a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=recvonly\r\na=rtcp-mux\r\n\
a=rtpmap:109 opus/48000/2\r\na=fmtp:109 minptime=10;useinbandfec=1\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:d\r\n";

#[test]
fn a_player_offer_numbers_the_transport_with_its_own_payload_types_ids_and_mids() {
    let offer = parse_offer(PLAYER).expect("parses");
    let caps = simplesfu_engine::router_rtp_capabilities();
    let router_pt = |c: &RtpCodecParameters| simplesfu_engine::router_payload_type(&caps, c);
    let extension =
        |k, u: &RtpHeaderExtensionUri| simplesfu_engine::extension_supported(&caps, k, u);
    let (numbering, refused) = playback_numbering(&offer, &router_pt, &extension);
    // Router VP8 is 101 (RTX 102), opus 100: sent as the player's 98/99 and 109.
    assert_eq!(
        numbering.payload_types,
        vec![(101, 98, Some(99)), (100, 109, None)]
    );
    assert_eq!(
        numbering.extensions,
        vec![
            (RtpHeaderExtensionUri::Mid, 9),
            (RtpHeaderExtensionUri::TransportWideCcDraft01, 7)
        ],
        "the extensions the router sends, with the player's ids; color-space is not one"
    );
    assert_eq!(
        numbering.mids,
        vec![
            (MediaKind::Video, "v".to_owned()),
            (MediaKind::Audio, "a".to_owned())
        ]
    );
    assert_eq!(refused.len(), 3);
    assert!(refused[0].is_none() && refused[1].is_none());
    assert!(refused[2]
        .as_deref()
        .is_some_and(|r| r.contains("application")));

    let lines = vec![
        Playback::Send {
            pt: 98,
            rtx_pt: Some(99),
            ssrc: 11,
            rtx_ssrc: Some(12),
            cname: "c".into(),
            msid: ("peer".into(), "producer".into()),
        },
        Playback::Reject("no Audio producer left to play".into()),
        Playback::Reject("data".into()),
    ];
    let answer = write_playback_answer(&offer, &lines, &numbering, &transport());
    assert!(answer.contains("a=group:BUNDLE v\r\n"));
    assert!(answer.contains("m=video 9 UDP/TLS/RTP/SAVPF 98 99\r\n"));
    assert!(answer.contains("a=sendonly\r\na=msid:peer producer\r\n"));
    assert!(answer.contains("a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"));
    assert!(!answer.contains("color-space"));
    assert!(answer.contains("a=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=98\r\n"));
    assert!(answer.contains("a=ssrc-group:FID 11 12\r\n"));
    assert!(answer.contains("m=audio 0 UDP/TLS/RTP/SAVPF 109\r\n"));
    assert!(!answer.contains("AV1"), "only the codec sent is answered");
}

#[test]
fn a_player_offer_that_sends_or_offers_no_codec_we_forward_plays_nothing() {
    let caps = simplesfu_engine::router_rtp_capabilities();
    let router_pt = |c: &RtpCodecParameters| simplesfu_engine::router_payload_type(&caps, c);
    let extension =
        |k, u: &RtpHeaderExtensionUri| simplesfu_engine::extension_supported(&caps, k, u);
    let sending = parse_offer(&PLAYER.replace("a=recvonly", "a=sendonly")).expect("parses");
    let (numbering, refused) = playback_numbering(&sending, &router_pt, &extension);
    assert!(numbering.mids.is_empty());
    assert!(refused[0]
        .as_deref()
        .is_some_and(|r| r.contains("recvonly")));
    let av1_only = parse_offer(
        &PLAYER
            .replace("a=rtpmap:98 VP8/90000", "a=rtpmap:98 H265/90000")
            .replace("a=rtpmap:109 opus/48000/2", "a=rtpmap:109 PCMA/8000"),
    )
    .expect("parses");
    let (numbering, refused) = playback_numbering(&av1_only, &router_pt, &extension);
    assert!(numbering.mids.is_empty() && numbering.payload_types.is_empty());
    assert!(refused[0].as_deref().is_some_and(|r| r.contains("codec")));
}
