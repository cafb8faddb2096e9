//! Drives one bot peer against Janus's VideoRoom plugin over its HTTP API, so
//! one load runs against both servers. Publisher: session, handle, create the
//! room (idempotent), `joinandconfigure` with an SDP offer written by str0m's
//! SDP API; Janus's answer comes by long poll. Subscriber: `join` as
//! subscriber to every publisher of the room (multistream, one
//! PeerConnection), answer Janus's offer with str0m, `start`. Media is the
//! same stamped synthetic media as against simplesfu. Simulcast is not driven
//! here.

use crate::link::Downlink;
use crate::media::{MediaOptions, PeerMedia};
use crate::sfu::{JoinedPeer, PeerSpec};
use crate::transport::{self, Command, MediaPlan, RunState, VideoLayer};
use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

static TRANSACTION: AtomicU64 = AtomicU64::new(1);

/// `http://host:port/path` → (host:port, /path).
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("Janus URL `{url}` must start with http://"))?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h.to_string(), format!("/{p}")))
        .unwrap_or((rest.to_string(), "/".into()));
    Ok((host, path.trim_end_matches('/').to_string()))
}

/// One HTTP/1.1 request with `Connection: close`; the JSON body of the reply.
async fn http(method: &str, host: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let mut stream = TcpStream::connect(host)
        .await
        .with_context(|| format!("could not connect to Janus at {host}: is it running?"))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP reply from Janus"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("Janus answered {}", head.lines().next().unwrap_or(""));
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    serde_json::from_str(&body).with_context(|| format!("Janus sent non-JSON: {body}"))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// A Janus session with one long-poll reader.
struct Session {
    host: String,
    base: String,
    id: u64,
}

impl Session {
    async fn create(url: &str) -> anyhow::Result<Session> {
        let (host, base) = split_url(url)?;
        let reply = http(
            "POST",
            &host,
            &base,
            Some(&json!({"janus": "create", "transaction": tx()})),
        )
        .await?;
        let id = reply["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("Janus did not create a session: {reply}"))?;
        Ok(Session { host, base, id })
    }

    async fn attach(&self) -> anyhow::Result<u64> {
        let reply = self
            .post(
                None,
                json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
            )
            .await?;
        reply["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("Janus did not attach the VideoRoom plugin: {reply}"))
    }

    async fn post(&self, handle: Option<u64>, mut body: Value) -> anyhow::Result<Value> {
        body["transaction"] = json!(tx());
        let path = match handle {
            Some(h) => format!("{}/{}/{h}", self.base, self.id),
            None => format!("{}/{}", self.base, self.id),
        };
        let reply = http("POST", &self.host, &path, Some(&body)).await?;
        if reply["janus"] == "error" {
            bail!("Janus refused {}: {}", body["janus"], reply["error"]);
        }
        Ok(reply)
    }

    /// A synchronous plugin request; the plugin's data.
    async fn request(&self, handle: u64, body: Value) -> anyhow::Result<Value> {
        let reply = self
            .post(Some(handle), json!({"janus": "message", "body": body}))
            .await?;
        let data = reply["plugindata"]["data"].clone();
        if data["videoroom"] == "event" && data.get("error").is_some() {
            bail!(
                "VideoRoom refused {}: {} ({})",
                body["request"],
                data["error"],
                data["error_code"]
            );
        }
        Ok(data)
    }

    /// An asynchronous plugin request; waits for the event that carries a JSEP.
    async fn request_jsep(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<(Value, Value)> {
        let mut msg = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        self.post(Some(handle), msg).await?;
        self.wait_jsep(handle).await
    }

    async fn wait_jsep(&self, handle: u64) -> anyhow::Result<(Value, Value)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let path = format!("{}/{}?maxev=5", self.base, self.id);
            let reply = http("GET", &self.host, &path, None).await?;
            let events = match reply {
                Value::Array(a) => a,
                other => vec![other],
            };
            for e in events {
                if e["sender"].as_u64() != Some(handle) {
                    continue;
                }
                let data = &e["plugindata"]["data"];
                if data.get("error").is_some() {
                    bail!(
                        "VideoRoom error: {} ({})",
                        data["error"],
                        data["error_code"]
                    );
                }
                if e.get("jsep").is_some() {
                    return Ok((data.clone(), e["jsep"].clone()));
                }
            }
        }
        bail!("Janus sent no SDP within 30 s")
    }
}

fn tx() -> String {
    format!("t{}", TRANSACTION.fetch_add(1, Ordering::Relaxed))
}

fn room_number(room: &str) -> u64 {
    1000 + room
        .rsplit('-')
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0)
}

fn client_rtc(local: SocketAddr) -> anyhow::Result<Rtc> {
    let config = crate::sfu::browser::rtc_config();
    let mut rtc = config.build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").context("local candidate")?);
    Ok(rtc)
}

fn pt_of(rtc: &Rtc, codec: Codec) -> Option<u8> {
    rtc.codec_config()
        .iter()
        .find(|p| p.spec().codec == codec)
        .map(|p| *p.pt())
}

/// Join Janus as `spec` says; subscribers subscribe to every publisher of the room.
pub async fn join(
    url: &str,
    spec: &PeerSpec,
    options: &MediaOptions,
    local_ip: IpAddr,
    run: Arc<RunState>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinedPeer> {
    if options.simulcast {
        bail!("the Janus driver does not send simulcast; run without --simulcast");
    }
    let session = Arc::new(Session::create(url).await?);
    let room = room_number(&spec.room);
    let mut send = None;
    let mut own_feed = None;
    if spec.publish {
        let handle = session.attach().await?;
        let created = session
            .request(handle, json!({"request": "create", "room": room, "publishers": 1000, "bitrate": 0, "fir_freq": 0,
                                     "audiocodec": "opus", "videocodec": "vp8", "notify_joining": false}))
            .await;
        if let Err(e) = created {
            // 427: the room exists already (another publisher created it).
            if !e.to_string().contains("427") {
                return Err(e);
            }
        }
        let (socket, local) = transport::bind(local_ip).await?;
        let mut rtc = client_rtc(local)?;
        let mut api = rtc.sdp_api();
        let video_mid = options
            .video
            .then(|| api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
        let audio_mid = options
            .audio
            .then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| anyhow!("str0m made no offer (no media?)"))?;
        let (data, jsep) = session
            .request_jsep(
                handle,
                json!({"request": "joinandconfigure", "room": room, "ptype": "publisher", "display": format!("bot-{}", spec.index),
                       "audio": options.audio, "video": options.video}),
                Some(json!({"type": "offer", "sdp": offer.to_sdp_string()})),
            )
            .await?;
        own_feed = data["id"].as_u64();
        let answer = SdpAnswer::from_sdp_string(
            jsep["sdp"]
                .as_str()
                .ok_or_else(|| anyhow!("Janus sent a JSEP without SDP"))?,
        )?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .context("str0m refused Janus's answer")?;
        let _ = session
            .post(
                Some(handle),
                json!({"janus": "trickle", "candidate": {"completed": true}}),
            )
            .await;
        let media = PeerMedia::new(options, spec.index);
        let (vpt, apt) = (
            pt_of(&rtc, Codec::Vp8).unwrap_or(96),
            pt_of(&rtc, Codec::Opus).unwrap_or(111),
        );
        let mut plan: MediaPlan = media.with_payload_types(vpt, apt).plan();
        // str0m picked the SSRCs of SDP-negotiated media.
        if let Some(mid) = video_mid {
            let ssrc = rtc
                .direct_api()
                .stream_tx_by_mid(mid, None)
                .map(|s| *s.ssrc())
                .ok_or_else(|| anyhow!("no video stream after negotiation"))?;
            for l in plan.video.iter_mut() {
                *l = VideoLayer { ssrc, ..l.clone() };
            }
        }
        if let (Some(mid), Some(a)) = (audio_mid, plan.audio.as_mut()) {
            a.ssrc = rtc
                .direct_api()
                .stream_tx_by_mid(mid, None)
                .map(|s| *s.ssrc())
                .ok_or_else(|| anyhow!("no audio stream after negotiation"))?;
        }
        let h = transport::spawn(rtc, socket, local, None, run.clone(), stop.clone());
        h.commands
            .send(Command::Send(plan))
            .map_err(|_| anyhow!("the send transport stopped"))?;
        send = Some(h);
    }

    let mut recv = None;
    if spec.subscribe {
        let handle = session.attach().await?;
        // Wait (bounded) for the room's publishers: in a meeting they join concurrently.
        let want = spec.room_publishers.saturating_sub(spec.publish as u32) as usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        let feeds = loop {
            let list = session
                .request(handle, json!({"request": "listparticipants", "room": room}))
                .await?;
            let feeds: Vec<u64> = list["participants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["publisher"] == true)
                .filter_map(|p| p["id"].as_u64())
                .filter(|id| Some(*id) != own_feed)
                .collect();
            if feeds.len() >= want || Instant::now() >= deadline {
                break feeds;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        if feeds.is_empty() {
            bail!("no publisher in Janus room {room} to subscribe to");
        }
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let joined_ns = crate::payload::monotonic_ns();
        let (_, jsep) = session
            .request_jsep(
                handle,
                json!({"request": "join", "room": room, "ptype": "subscriber", "streams": streams}),
                None,
            )
            .await?;
        let (socket, local) = transport::bind(local_ip).await?;
        let mut rtc = client_rtc(local)?;
        let offer = SdpOffer::from_sdp_string(
            jsep["sdp"]
                .as_str()
                .ok_or_else(|| anyhow!("Janus sent a JSEP without SDP"))?,
        )?;
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .context("str0m refused Janus's offer")?;
        session
            .post(Some(handle), json!({"janus": "message", "body": {"request": "start"}, "jsep": {"type": "answer", "sdp": answer.to_sdp_string()}}))
            .await?;
        let _ = session
            .post(
                Some(handle),
                json!({"janus": "trickle", "candidate": {"completed": true}}),
            )
            .await;
        let h = transport::spawn(
            rtc,
            socket,
            local,
            spec.downlink_kbps.map(Downlink::new),
            run.clone(),
            stop.clone(),
        );
        if let Ok(mut s) = h.stats.lock() {
            s.joined_ns = Some(joined_ns);
        }
        recv = Some(h);
    }

    // Keep the session alive (Janus times out idle sessions) until the run stops.
    let keepalive = session.clone();
    let mut stop_keepalive = stop;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop_keepalive.changed() => break,
                _ = tokio::time::sleep(Duration::from_secs(20)) => {
                    let _ = keepalive.post(None, json!({"janus": "keepalive"})).await;
                }
            }
        }
        let _ = keepalive.post(None, json!({"janus": "destroy"})).await;
    });
    Ok(JoinedPeer {
        peer_id: String::new(),
        send,
        recv,
        consumers: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_rooms_and_chunks() {
        assert_eq!(
            split_url("http://127.0.0.1:8088/janus").expect("valid"),
            ("127.0.0.1:8088".into(), "/janus".into())
        );
        assert_eq!(room_number("bench-3"), 1003);
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
