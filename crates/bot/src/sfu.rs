//! Drives one bot peer against simplesfu (protocol v1) the way a browser with
//! mediasoup-client does: router capabilities, a send and/or a receive
//! transport, `connectWebRtcTransport` as DTLS client, `produce` with
//! Chrome-like RTP parameters, `joinRoom`, then every `createConsumer` push is
//! declared on the receive transport and resumed at once, each push on its
//! own without waiting for the previous answer, as the published 0.0.20
//! client does. What became of the pushed consumers (resumed, refused for
//! the request rate) is counted per peer.

use crate::link::Downlink;
use crate::media::{MediaOptions, PeerMedia};
use crate::signaling::{Refused, SocketIoClient};
use crate::transport::{self, Command, RunState, TransportHandle};
use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use simplesfu_proto::ErrorCode;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use str0m::config::Fingerprint;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, MediaKind, Mid, Pt, Rid};
use str0m::rtp::{Extension, ExtensionMap, Ssrc};
use str0m::{Candidate, IceCreds, Rtc};
use tokio::sync::watch;

/// One peer's part in a run.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    pub room: String,
    pub publish: bool,
    pub subscribe: bool,
    /// Unique per run: the high bits of this peer's stream ids.
    pub index: u32,
    /// Publishers in this peer's room (Janus subscribers wait for them).
    pub room_publishers: u32,
    /// A publisher whose audio is silent (opus DTX).
    pub silent: bool,
    /// A publisher's place among its room's publishers (0, 1, ...): which
    /// level of the schedule it sends.
    pub place: u32,
    /// This peer records the `activeSpeaker` and `audioLevels` pushes it
    /// receives (one per run).
    pub observer: bool,
    /// Ask for `audioLevels` pushes (`subscribeAudioLevels`).
    pub subscribe_audio_levels: bool,
    /// Speak v1 exactly as the published 0.0.20 client does, which also
    /// creates a send transport when it has nothing to send.
    pub published_client: bool,
    /// The receive transport sits behind an emulated downlink of this many
    /// kbit/s ([`crate::link`]).
    pub downlink_kbps: Option<u32>,
    /// The receive transport sends transport-wide congestion feedback, as
    /// browsers do, so the server estimates its downlink.
    pub congestion_feedback: bool,
    /// A viewer that plays the room over WHEP ([`crate::whep`]) instead of
    /// speaking protocol v1.
    pub whep: bool,
}

/// What became of the consumers the server pushed to one peer.
#[derive(Debug, Default)]
pub struct ConsumerCounters {
    /// `createConsumer` pushes received.
    pub pushed: AtomicU64,
    /// `resumeConsumer` acked with success.
    pub resumed: AtomicU64,
    /// `resumeConsumer` refused with `limit_reached`: 0.0.20 gives up on
    /// those, and the track stays black.
    pub refused_for_rate: AtomicU64,
    /// Any other failure to consume or resume.
    pub failed: AtomicU64,
}

/// What a joined peer leaves behind for the run to read.
pub struct JoinedPeer {
    /// The server's id for this peer (what `activeSpeaker` names); empty
    /// for Janus.
    pub peer_id: String,
    pub send: Option<TransportHandle>,
    pub recv: Option<TransportHandle>,
    pub consumers: Arc<ConsumerCounters>,
}

/// Payload types and extension ids a mediasoup-client in Chrome sends with.
pub mod browser {
    use str0m::format::Codec;
    use str0m::media::{Frequency, Pt};
    use str0m::rtp::ExtensionMap;
    use str0m::RtcConfig;

    pub const OPUS: u8 = 111;
    pub const VP8: u8 = 96;
    pub const VP8_RTX: u8 = 97;

    /// An `Rtc` in RTP mode (packets are counted, not decoded) with a
    /// browser's numbering: opus and VP8 (+RTX) at these payload types and
    /// str0m's standard extension ids.
    pub fn rtc_config() -> RtcConfig {
        let mut config = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .set_extension_map(ExtensionMap::standard());
        let c = config.codec_config();
        c.add_config(
            Pt::from(OPUS),
            None,
            Codec::Opus,
            Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            Default::default(),
        );
        c.add_config(
            Pt::from(VP8),
            Some(Pt::from(VP8_RTX)),
            Codec::Vp8,
            Frequency::NINETY_KHZ,
            None,
            Default::default(),
        );
        config
    }
}

fn extension_for(uri: &str) -> Option<Extension> {
    Some(match uri {
        "urn:ietf:params:rtp-hdrext:sdes:mid" => Extension::RtpMid,
        "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" => Extension::RtpStreamId,
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id" => Extension::RepairedRtpStreamId,
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time" => Extension::AbsoluteSendTime,
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01" => {
            Extension::TransportSequenceNumber
        }
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level" => Extension::AudioLevel,
        "urn:3gpp:video-orientation" => Extension::VideoOrientation,
        _ => return None,
    })
}

/// Router payload types (opus, VP8, VP8 rtx) and header extensions, from the
/// router RTP capabilities: what a receive transport must understand.
pub struct RouterCodecs {
    pub opus: u8,
    pub vp8: u8,
    pub vp8_rtx: Option<u8>,
    pub extensions: Vec<(u8, Extension)>,
}

impl RouterCodecs {
    pub fn from_capabilities(caps: &Value) -> anyhow::Result<RouterCodecs> {
        let codecs = caps["codecs"]
            .as_array()
            .ok_or_else(|| anyhow!("router capabilities have no codecs"))?;
        let pt_of = |mime: &str| {
            codecs
                .iter()
                .find(|c| {
                    c["mimeType"]
                        .as_str()
                        .is_some_and(|m| m.eq_ignore_ascii_case(mime))
                })
                .and_then(|c| c["preferredPayloadType"].as_u64())
                .map(|pt| pt as u8)
        };
        let opus = pt_of("audio/opus").ok_or_else(|| anyhow!("the router offers no opus"))?;
        let vp8 = pt_of("video/VP8").ok_or_else(|| anyhow!("the router offers no VP8"))?;
        let vp8_rtx = codecs
            .iter()
            .find(|c| {
                c["mimeType"]
                    .as_str()
                    .is_some_and(|m| m.eq_ignore_ascii_case("video/rtx"))
                    && c["parameters"]["apt"].as_u64() == Some(vp8 as u64)
            })
            .and_then(|c| c["preferredPayloadType"].as_u64())
            .map(|pt| pt as u8);
        let mut extensions: Vec<(u8, Extension)> = Vec::new();
        for e in caps["headerExtensions"].as_array().into_iter().flatten() {
            let (Some(id), Some(ext)) = (
                e["preferredId"].as_u64(),
                e["uri"].as_str().and_then(extension_for),
            ) else {
                continue;
            };
            if !extensions.iter().any(|(i, _)| *i as u64 == id) {
                extensions.push((id as u8, ext));
            }
        }
        Ok(RouterCodecs {
            opus,
            vp8,
            vp8_rtx,
            extensions,
        })
    }
}

/// Which side a client transport plays, i.e. which payload types it knows.
pub enum ClientCodecs<'a> {
    Browser,
    Router(&'a RouterCodecs),
}

/// Build the client `Rtc` for a transport described by simplesfu's
/// `transportInfo`: controlling ICE agent with the server's credentials and
/// candidate, DTLS client checking the server's sha-256 fingerprint.
pub fn client_rtc(info: &Value, codecs: ClientCodecs, local: SocketAddr) -> anyhow::Result<Rtc> {
    let config = match codecs {
        ClientCodecs::Browser => browser::rtc_config(),
        ClientCodecs::Router(r) => {
            let mut config = Rtc::builder().set_rtp_mode(true).clear_codecs();
            let mut map = ExtensionMap::empty();
            for (id, ext) in &r.extensions {
                map.set(*id, ext.clone());
            }
            config = config.set_extension_map(map);
            let c = config.codec_config();
            c.add_config(
                Pt::from(r.opus),
                None,
                Codec::Opus,
                Frequency::FORTY_EIGHT_KHZ,
                Some(2),
                FormatParams::default(),
            );
            c.add_config(
                Pt::from(r.vp8),
                r.vp8_rtx.map(Pt::from),
                Codec::Vp8,
                Frequency::NINETY_KHZ,
                None,
                FormatParams::default(),
            );
            config
        }
    };
    let mut rtc = config.build(Instant::now());
    let candidate = info["iceCandidates"]
        .as_array()
        .and_then(|c| {
            c.iter().find(|c| {
                c["protocol"]
                    .as_str()
                    .unwrap_or("udp")
                    .eq_ignore_ascii_case("udp")
            })
        })
        .ok_or_else(|| anyhow!("the transport has no UDP ICE candidate"))?;
    let ip: IpAddr = candidate["address"]
        .as_str()
        .or_else(|| candidate["ip"].as_str())
        .ok_or_else(|| anyhow!("ICE candidate without an address"))?
        .parse()
        .context("ICE candidate address is not an IP")?;
    let port = candidate["port"]
        .as_u64()
        .ok_or_else(|| anyhow!("ICE candidate without a port"))? as u16;
    rtc.add_local_candidate(Candidate::host(local, "udp").context("local candidate")?);
    rtc.add_remote_candidate(
        Candidate::host(SocketAddr::new(ip, port), "udp").context("server candidate")?,
    );
    let ice = &info["iceParameters"];
    let creds = IceCreds {
        ufrag: ice["usernameFragment"]
            .as_str()
            .ok_or_else(|| anyhow!("no usernameFragment"))?
            .to_string(),
        pass: ice["password"]
            .as_str()
            .ok_or_else(|| anyhow!("no ICE password"))?
            .to_string(),
    };
    let fp = info["dtlsParameters"]["fingerprints"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["algorithm"] == "sha-256"))
        .and_then(|f| f["value"].as_str())
        .ok_or_else(|| anyhow!("the server offered no sha-256 fingerprint"))?;
    let fp: Fingerprint = format!("sha-256 {fp}")
        .parse()
        .map_err(|e: String| anyhow!("bad server fingerprint: {e}"))?;
    let mut api = rtc.direct_api();
    api.set_remote_ice_credentials(creds);
    api.set_ice_controlling(true);
    api.set_remote_fingerprint(fp);
    api.start_dtls(true).context("could not start DTLS")?;
    Ok(rtc)
}

/// `{role: "client", fingerprints: [{algorithm: "sha-256", value}]}` of a client Rtc.
pub fn dtls_parameters(rtc: &mut Rtc) -> Value {
    let fp = rtc.direct_api().local_dtls_fingerprint().clone();
    let value = fp
        .bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    json!({"role": "client", "fingerprints": [{"algorithm": "sha-256", "value": value}]})
}

fn video_parameters(media: &PeerMedia, simulcast: bool, mid: &str) -> Value {
    let mut exts = vec![
        json!({"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false, "parameters": {}}),
        json!({"uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2, "encrypt": false, "parameters": {}}),
        json!({"uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3, "encrypt": false, "parameters": {}}),
    ];
    let encodings: Vec<Value> = if simulcast {
        exts.push(json!({"uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": 10, "encrypt": false, "parameters": {}}));
        exts.push(json!({"uri": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", "id": 11, "encrypt": false, "parameters": {}}));
        media
            .video
            .iter()
            .enumerate()
            .map(|(i, _)| json!({"rid": format!("r{i}"), "active": true}))
            .collect()
    } else {
        media
            .video
            .iter()
            .map(|l| json!({"ssrc": l.ssrc, "rtx": {"ssrc": l.rtx}}))
            .collect()
    };
    json!({
        "mid": mid,
        "codecs": [
            {"mimeType": "video/VP8", "payloadType": browser::VP8, "clockRate": 90000, "parameters": {},
             "rtcpFeedback": [{"type": "goog-remb", "parameter": ""}, {"type": "transport-cc", "parameter": ""},
                              {"type": "ccm", "parameter": "fir"}, {"type": "nack", "parameter": ""}, {"type": "nack", "parameter": "pli"}]},
            {"mimeType": "video/rtx", "payloadType": browser::VP8_RTX, "clockRate": 90000, "parameters": {"apt": browser::VP8}, "rtcpFeedback": []}
        ],
        "headerExtensions": exts,
        "encodings": encodings,
        "rtcp": {"cname": media.cname, "reducedSize": true}
    })
}

fn audio_parameters(media: &PeerMedia, ssrc: u32, mid: &str) -> Value {
    json!({
        "mid": mid,
        "codecs": [{"mimeType": "audio/opus", "payloadType": browser::OPUS, "clockRate": 48000, "channels": 2,
                    "parameters": {"minptime": 10, "useinbandfec": 1}, "rtcpFeedback": [{"type": "transport-cc", "parameter": ""}]}],
        "headerExtensions": [
            {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false, "parameters": {}},
            {"uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2, "encrypt": false, "parameters": {}},
            {"uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3, "encrypt": false, "parameters": {}},
            {"uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1, "encrypt": false, "parameters": {}}
        ],
        "encodings": [{"ssrc": ssrc, "dtx": false}],
        "rtcp": {"cname": media.cname, "reducedSize": true}
    })
}

/// A created and connected transport whose task has not started yet.
struct NewTransport {
    id: String,
    rtc: Rtc,
    socket: tokio::net::UdpSocket,
    local: SocketAddr,
}

/// What mediasoup-client sends with every `createWebRtcTransport`
/// (`device.sctpCapabilities`); the original Node.js server reads
/// `sctpCapabilities.numStreams` and fails without it.
fn sctp_capabilities() -> serde_json::Value {
    json!({"numStreams": {"OS": 1024, "MIS": 1024}})
}

async fn create_transport(
    client: &SocketIoClient,
    producing: bool,
    codecs: ClientCodecs<'_>,
    local_ip: IpAddr,
) -> anyhow::Result<NewTransport> {
    let ack = client
        .request(
            "createWebRtcTransport",
            json!({"forceTcp": false, "producing": producing, "consuming": !producing, "sctpCapabilities": sctp_capabilities()}),
        )
        .await?;
    let info = &ack["transportInfo"];
    let id = info["id"]
        .as_str()
        .ok_or_else(|| anyhow!("transportInfo without id"))?
        .to_string();
    let (socket, local) = transport::bind(local_ip).await?;
    let mut rtc = client_rtc(info, codecs, local)?;
    let dtls = dtls_parameters(&mut rtc);
    client
        .request(
            "connectWebRtcTransport",
            json!({"transportId": id, "dtlsParameters": dtls}),
        )
        .await?;
    Ok(NewTransport {
        id,
        rtc,
        socket,
        local,
    })
}

/// Connect one peer to simplesfu at `server`, publish and/or subscribe as
/// `spec` says, and keep handling its pushes until `stop`.
pub async fn join(
    server: &str,
    spec: &PeerSpec,
    options: &MediaOptions,
    local_ip: IpAddr,
    run: Arc<RunState>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinedPeer> {
    let (client, mut pushes) = SocketIoClient::connect(server, run.signaling_bytes.clone()).await?;
    let client = Arc::new(client);
    // Workaround: simplesfu can run its connect handler after it has told the
    // client it is connected, and then drops a request sent at once (seen in
    // a few % of connections). The first request is idempotent: retry it.
    let mut caps = Err(anyhow!("not asked"));
    for _ in 0..3 {
        caps = client
            .request_within(
                "getRouterRtpCapabilities",
                Value::Null,
                std::time::Duration::from_secs(3),
            )
            .await;
        if caps.is_ok() {
            break;
        }
    }
    let caps = caps?;
    let peer_id = caps["peerId"].as_str().unwrap_or_default().to_string();
    let router = RouterCodecs::from_capabilities(&caps["routerRtpCapabilities"])?;

    let mut send = None;
    if !spec.publish && spec.published_client {
        // 0.0.20 makes its send transport whatever it has to send, and
        // connects it only when it produces.
        let request = json!({"forceTcp": false, "producing": true, "consuming": false, "sctpCapabilities": sctp_capabilities()});
        client.request("createWebRtcTransport", request).await?;
    }
    if spec.publish {
        let media = PeerMedia::new(options, spec.index)
            .with_silence(spec.silent)
            .with_levels(options.audio_levels.for_publisher(spec.place, spec.silent));
        let mut t = create_transport(&client, true, ClientCodecs::Browser, local_ip).await?;
        // mids in produce order, as mediasoup-client assigns them: video first.
        let video_mid = (!media.video.is_empty()).then(|| "0".to_string());
        let audio_mid = media
            .audio
            .as_ref()
            .map(|_| if video_mid.is_some() { "1" } else { "0" }.to_string());
        if let Some(mid) = &video_mid {
            let mid = Mid::from(mid.as_str());
            t.rtc.direct_api().declare_media(mid, MediaKind::Video);
            for (i, l) in media.video.iter().enumerate() {
                let rid = options
                    .simulcast
                    .then(|| Rid::from(format!("r{i}").as_str()));
                t.rtc.direct_api().declare_stream_tx(
                    Ssrc::from(l.ssrc),
                    Some(Ssrc::from(l.rtx)),
                    mid,
                    rid,
                );
            }
        }
        if let (Some(mid), Some(a)) = (&audio_mid, &media.audio) {
            let mid = Mid::from(mid.as_str());
            t.rtc.direct_api().declare_media(mid, MediaKind::Audio);
            t.rtc
                .direct_api()
                .declare_stream_tx(Ssrc::from(a.ssrc), None, mid, None);
        }
        let handle = transport::spawn(t.rtc, t.socket, t.local, None, run.clone(), stop.clone());
        if let Some(mid) = &video_mid {
            let params = video_parameters(&media, options.simulcast, mid);
            client
                .request("produce", json!({"transportId": t.id, "kind": "video", "rtpParameters": params, "appData": {"label": "video", "broadcast": false}}))
                .await?;
        }
        if let (Some(mid), Some(a)) = (&audio_mid, &media.audio) {
            let params = audio_parameters(&media, a.ssrc, mid);
            client
                .request("produce", json!({"transportId": t.id, "kind": "audio", "rtpParameters": params, "appData": {"label": "audio", "broadcast": false}}))
                .await?;
        }
        handle
            .commands
            .send(Command::Send(media.plan()))
            .map_err(|_| anyhow!("the send transport stopped"))?;
        send = Some(handle);
    }

    let mut recv = None;
    if spec.subscribe {
        let mut t =
            create_transport(&client, false, ClientCodecs::Router(&router), local_ip).await?;
        if spec.congestion_feedback {
            t.rtc.direct_api().enable_twcc_feedback();
        }
        let downlink = spec.downlink_kbps.map(Downlink::new);
        recv = Some(transport::spawn(
            t.rtc,
            t.socket,
            t.local,
            downlink,
            run.clone(),
            stop.clone(),
        ));
    }

    if let Some(r) = &recv {
        if let Ok(mut s) = r.stats.lock() {
            s.joined_ns = Some(crate::payload::monotonic_ns());
        }
    }
    if spec.subscribe_audio_levels {
        client
            .request("subscribeAudioLevels", json!({"enabled": true}))
            .await?;
    }
    client
        .request("joinRoom", json!({"roomId": spec.room}))
        .await?;

    let consumers = Arc::new(ConsumerCounters::default());
    let recv_for_pushes = recv.clone();
    let counters = consumers.clone();
    let mut stop_pushes = stop.clone();
    let (observer, asked_for_levels) = (spec.observer, spec.subscribe_audio_levels);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop_pushes.changed() => break,
                push = pushes.recv() => {
                    let Some((_, msg)) = push else { break };
                    if msg["type"] == "audioLevels" && !asked_for_levels {
                        run.audio_levels_unasked.fetch_add(1, Ordering::Relaxed);
                    }
                    if observer {
                        observe(&run, &msg);
                    }
                    if msg["type"] != "createConsumer" {
                        continue;
                    }
                    counters.pushed.fetch_add(1, Ordering::Relaxed);
                    let Some(recv) = recv_for_pushes.clone() else { continue };
                    // Answered at once, not after the previous answer: a
                    // room's worth of pushes becomes a burst of resumes.
                    let (client, counters) = (client.clone(), counters.clone());
                    tokio::spawn(async move {
                        let outcome = consume(&client, &recv, &msg["data"]).await;
                        counters.count(outcome);
                    });
                }
            }
        }
    });
    Ok(JoinedPeer {
        peer_id,
        send,
        recv,
        consumers,
    })
}

/// The observer's record of an `activeSpeaker` or `audioLevels` push.
fn observe(run: &RunState, msg: &Value) {
    let now = crate::payload::monotonic_ns();
    let Ok(mut log) = run.observer.lock() else {
        return;
    };
    match msg["type"].as_str() {
        Some("activeSpeaker") => log.active_speaker.push((
            now,
            msg["data"]["peerId"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )),
        Some("audioLevels") => {
            let levels = msg["data"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| {
                    (
                        l["peerId"].as_str().unwrap_or_default().to_string(),
                        l["level"].as_f64().unwrap_or(f64::NAN),
                    )
                })
                .collect();
            log.audio_levels.push((now, levels));
        }
        _ => {}
    }
}

impl ConsumerCounters {
    /// Count the outcome of one consume-and-resume (no retry, as 0.0.20).
    fn count(&self, outcome: anyhow::Result<()>) {
        match outcome {
            Ok(()) => self.resumed.fetch_add(1, Ordering::Relaxed),
            Err(e)
                if Refused::of(&e).is_some_and(|r| r.code == ErrorCode::LimitReached.as_str()) =>
            {
                tracing::debug!(error = %e, "consumer refused for the request rate");
                self.refused_for_rate.fetch_add(1, Ordering::Relaxed)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not consume");
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Declare a pushed consumer on the receive transport and resume it.
async fn consume(
    client: &SocketIoClient,
    recv: &TransportHandle,
    data: &Value,
) -> anyhow::Result<()> {
    let params = &data["rtpParameters"];
    let kind = match data["kind"].as_str() {
        Some("audio") => MediaKind::Audio,
        Some("video") => MediaKind::Video,
        other => bail!("createConsumer with kind {other:?}"),
    };
    let mid = params["mid"]
        .as_str()
        .ok_or_else(|| anyhow!("createConsumer without rtpParameters.mid"))?
        .to_string();
    let encoding = &params["encodings"][0];
    let ssrc = encoding["ssrc"]
        .as_u64()
        .ok_or_else(|| anyhow!("createConsumer without an SSRC"))? as u32;
    let rtx = encoding["rtx"]["ssrc"].as_u64().map(|s| s as u32);
    recv.commands
        .send(Command::Expect {
            mid,
            kind,
            ssrc,
            rtx,
        })
        .map_err(|_| anyhow!("the receive transport stopped"))?;
    let producer_id = data["producerId"].clone();
    client
        .request("resumeConsumer", json!({"producerId": producer_id}))
        .await?;
    Ok(())
}

/// Whether a transport is connected (DTLS up).
pub fn is_connected(t: &TransportHandle) -> bool {
    t.counters.connected.load(Ordering::Relaxed)
}
