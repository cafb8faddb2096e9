//! A WHEP viewer (draft-ietf-wish-whep) against simplesfu: a str0m `Rtc`
//! negotiated with str0m's SDP API as a browser's `RTCPeerConnection` would
//! be. The bot writes a recvonly offer (one video and/or one audio m-line,
//! BUNDLE, its own payload types and extension ids), POSTs it to
//! `/whep/<room>`, accepts the `201 Created` answer and runs the transport
//! like any other receiver, so what arrives is counted exactly as for the
//! socket.io viewers. The server is ICE-lite, so the bot is the full,
//! controlling ICE agent with a host candidate on the socket it binds; the
//! server's answer says `a=setup:passive`, so the bot is the DTLS client.
//! str0m sends receiver reports, NACKs and transport-wide congestion
//! feedback (the answer keeps `transport-cc`) by default, as a browser.
//! At the end of the run the session is DELETEd at its `Location`.

use crate::http::{self, encode_segment, HttpUrl};
use crate::link::Downlink;
use crate::media::MediaOptions;
use crate::sfu::{ConsumerCounters, JoinedPeer, PeerSpec};
use crate::transport::{self, RunState};
use anyhow::{anyhow, bail, Context};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};
use tokio::sync::watch;

/// How long one WHEP request may take (the server joins, creates and
/// connects a transport and its consumers before it answers).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// How WHEP viewers ask to play.
#[derive(Clone, Default)]
pub struct WhepOptions {
    /// `Authorization: Bearer <token>` (a token with the subscribe right,
    /// when the server runs with tokens).
    pub token: Option<String>,
    /// The query of the POST (`peer=<id>` or `label=<label>`), without `?`.
    pub query: Option<String>,
}

/// Never the token itself: configurations get printed.
impl std::fmt::Debug for WhepOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhepOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("query", &self.query)
            .finish()
    }
}

/// A playing session: what the run reads and how it ends.
pub struct WhepSession {
    /// From sending the POST to the answer read, ms.
    pub answer_ms: f64,
    /// The DELETE sent when the run stops: Ok once the server confirmed.
    pub leave: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The viewer's `Rtc`: RTP mode (the packets are counted, not decoded),
/// opus and VP8 (+RTX) at a browser's payload types, str0m's standard
/// extension ids, and a host candidate on `local`.
pub fn viewer_rtc(local: SocketAddr) -> anyhow::Result<Rtc> {
    let config = crate::sfu::browser::rtc_config();
    let mut rtc = config.build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").context("local candidate")?);
    Ok(rtc)
}

/// The recvonly offer: a video m-line, then an audio m-line, as asked.
pub fn offer(
    rtc: &mut Rtc,
    video: bool,
    audio: bool,
) -> anyhow::Result<(SdpOffer, SdpPendingOffer)> {
    let mut api = rtc.sdp_api();
    if video {
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    }
    if audio {
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    }
    api.apply()
        .ok_or_else(|| anyhow!("nothing to play: neither video nor audio asked"))
}

/// The m-lines of an answer the server plays (sendonly or sendrecv, port
/// not 0): the consumers it created for this viewer.
pub fn playing_lines(answer: &str) -> u64 {
    let mut count = 0;
    let mut current: Option<(bool, bool)> = None; // (port open, sending)
    let mut finish = |m: Option<(bool, bool)>| {
        if let Some((open, sending)) = m {
            count += (open && sending) as u64;
        }
    };
    for line in answer.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            finish(current.take());
            let port = m.split_whitespace().nth(1).unwrap_or("0");
            current = Some((port != "0", false));
        } else if let Some((_, sending)) = current.as_mut() {
            if matches!(line, "a=sendonly" | "a=sendrecv") {
                *sending = true;
            }
        }
    }
    finish(current);
    count
}

/// The POST's URL: `<server>/whep/<room>[?<query>]`.
pub fn endpoint(server: &str, room: &str, query: Option<&str>) -> anyhow::Result<HttpUrl> {
    let base = HttpUrl::parse(server)?;
    let prefix = base
        .path
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_end_matches('/');
    let mut path = format!("{prefix}/whep/{}", encode_segment(room));
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        path.push('?');
        path.push_str(q.trim_start_matches('?'));
    }
    Ok(base.with_path(&path))
}

fn auth_header(token: &Option<String>) -> Option<String> {
    token.as_ref().map(|t| format!("Bearer {t}"))
}

/// End a session: DELETE at its Location, 200 (or 204) expected.
pub async fn delete(session: &HttpUrl, token: &Option<String>) -> anyhow::Result<()> {
    let auth = auth_header(token);
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let r = http::request("DELETE", session, &headers, b"", REQUEST_TIMEOUT).await?;
    if !(200..300).contains(&r.status) {
        bail!("DELETE {} answered {}", session.path, r.describe());
    }
    Ok(())
}

/// Play `spec.room` over WHEP from simplesfu at `server` until `stop`,
/// then end the session.
pub async fn join(
    server: &str,
    spec: &PeerSpec,
    options: &MediaOptions,
    whep: &WhepOptions,
    local_ip: IpAddr,
    run: Arc<RunState>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(JoinedPeer, WhepSession)> {
    let url = endpoint(server, &spec.room, whep.query.as_deref())?;
    let (socket, local) = transport::bind(local_ip).await?;
    let mut rtc = viewer_rtc(local)?;
    let (offer, pending) = offer(&mut rtc, options.video, options.audio)?;
    let auth = auth_header(&whep.token);
    let mut headers = vec![
        ("Content-Type", "application/sdp"),
        ("Accept", "application/sdp"),
    ];
    if let Some(a) = auth.as_deref() {
        headers.push(("Authorization", a));
    }
    let joined_ns = crate::payload::monotonic_ns();
    let asked = Instant::now();
    let response = http::request(
        "POST",
        &url,
        &headers,
        offer.to_sdp_string().as_bytes(),
        REQUEST_TIMEOUT,
    )
    .await
    .with_context(|| format!("WHEP POST {}", url.path))?;
    let answer_ms = asked.elapsed().as_secs_f64() * 1000.0;
    if response.status != 201 {
        bail!("WHEP POST {} answered {}", url.path, response.describe());
    }
    let session = response
        .header("location")
        .ok_or_else(|| anyhow!("WHEP POST {}: 201 without a Location", url.path))
        .and_then(|l| url.resolve(l));
    let session = session?;
    let answer_text = response.text();
    let accepted = SdpAnswer::from_sdp_string(&answer_text)
        .context("the WHEP answer is not SDP str0m reads")
        .and_then(|answer| {
            rtc.sdp_api()
                .accept_answer(pending, answer)
                .context("str0m refused the WHEP answer")
        });
    if let Err(e) = accepted {
        // The server holds a session for us: end it rather than leave it
        // to the consent timeout.
        let _ = delete(&session, &whep.token).await;
        return Err(e);
    }
    let consumers = Arc::new(ConsumerCounters::default());
    // The server creates and resumes the consumers itself before it answers.
    let playing = playing_lines(&answer_text);
    consumers.pushed.store(playing, Ordering::Relaxed);
    consumers.resumed.store(playing, Ordering::Relaxed);
    let handle = transport::spawn(
        rtc,
        socket,
        local,
        spec.downlink_kbps.map(Downlink::new),
        run,
        stop.clone(),
    );
    if let Ok(mut s) = handle.stats.lock() {
        s.joined_ns = Some(joined_ns);
    }
    let token = whep.token.clone();
    let mut stop = stop;
    let leave = tokio::spawn(async move {
        // Ends on the stop signal, or when the run dropped its sender.
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                break;
            }
        }
        delete(&session, &token).await
    });
    Ok((
        JoinedPeer {
            peer_id: String::new(),
            send: None,
            recv: Some(handle),
            consumers,
        },
        WhepSession { answer_ms, leave },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    /// The m-line sections of an SDP text, each with its lines.
    fn sections(sdp: &str) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = vec![Vec::new()];
        for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
            if line.starts_with("m=") {
                out.push(Vec::new());
            }
            if let Some(last) = out.last_mut() {
                last.push(line.to_string());
            }
        }
        out
    }

    #[test]
    fn the_offer_is_what_a_whep_server_reads() {
        let mut rtc = viewer_rtc(local()).expect("rtc");
        let (written, _) = offer(&mut rtc, true, true).expect("offer");
        let sdp = written.to_sdp_string();
        let s = sections(&sdp);
        assert_eq!(s.len(), 3, "session, video, audio:\n{sdp}");
        let session = &s[0];
        let (video, audio) = (&s[1], &s[2]);
        assert!(video[0].starts_with("m=video ") && video[0].contains("UDP/TLS/RTP/SAVPF"));
        assert!(audio[0].starts_with("m=audio "));
        let has = |lines: &[String], prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
        let value = |lines: &[String], prefix: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
                .map(str::to_string)
        };
        let mids: Vec<String> = [video, audio]
            .iter()
            .map(|m| value(m, "a=mid:").expect("a mid per m-line"))
            .collect();
        assert_eq!(
            value(session, "a=group:BUNDLE "),
            Some(mids.join(" ")),
            "one BUNDLE of both"
        );
        for m in [video, audio] {
            assert!(has(m, "a=recvonly"), "{m:?}");
            assert!(has(m, "a=rtcp-mux"));
            for attribute in ["a=ice-ufrag:", "a=ice-pwd:", "a=setup:actpass"] {
                assert!(
                    has(m, attribute) || has(session, attribute),
                    "{attribute}: {sdp}"
                );
            }
            assert!(
                value(m, "a=fingerprint:")
                    .or_else(|| value(session, "a=fingerprint:"))
                    .is_some_and(|f| f.starts_with("sha-256 ")),
                "{sdp}"
            );
        }
        assert!(!sdp.contains("a=ice-lite"), "a full ICE agent");
        assert!(
            has(video, "a=candidate:") || has(session, "a=candidate:"),
            "the host candidate of the bound socket: {sdp}"
        );
        assert!(sdp.contains("127.0.0.1 40000 typ host"), "{sdp}");
        // The client's own numbering.
        assert!(video[0].split_whitespace().any(|f| f == "96"));
        assert!(has(video, "a=rtpmap:96 VP8/90000"));
        assert!(has(video, "a=rtpmap:97 rtx/90000"));
        assert!(has(video, "a=fmtp:97 apt=96"));
        assert!(has(video, "a=rtcp-fb:96 transport-cc"));
        assert!(has(video, "a=rtcp-fb:96 nack pli"));
        assert!(has(audio, "a=rtpmap:111 opus/48000/2"));
        assert!(has(
            video,
            "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
        ));
        assert!(has(video, "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid"));
        assert!(
            !video
                .iter()
                .any(|l| l.contains("H264") || l.contains("AV1")),
            "only the codecs configured"
        );
    }

    #[test]
    fn video_only_offers_one_m_line() {
        let mut rtc = viewer_rtc(local()).expect("rtc");
        let (written, _) = offer(&mut rtc, true, false).expect("offer");
        let sdp = written.to_sdp_string();
        assert_eq!(sdp.matches("\nm=").count(), 1, "{sdp}");
        assert!(offer(&mut viewer_rtc(local()).expect("rtc"), false, false).is_err());
    }

    /// What simplesfu answers (its shape: crates/server/src/whip/sdp.rs).
    fn server_answer(offer: &str, rejected_audio: bool) -> String {
        let s = sections(offer);
        let mid = |i: usize| {
            s[i].iter()
                .find_map(|l| l.strip_prefix("a=mid:"))
                .expect("mid")
                .to_string()
        };
        let bundle = if rejected_audio {
            mid(1)
        } else {
            format!("{} {}", mid(1), mid(2))
        };
        let fp = "sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
        let mut a = format!(
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=simplesfu\r\nt=0 0\r\na=ice-lite\r\na=group:BUNDLE {bundle}\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:srvufrag\r\na=ice-pwd:serverpasswordserverpassword\r\n\
             a=fingerprint:{fp}\r\na=setup:passive\r\na=mid:{}\r\n\
             a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
             a=sendonly\r\na=msid:s t\r\na=rtcp-mux\r\na=rtcp-rsize\r\n\
             a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
             a=ssrc-group:FID 1111 2222\r\na=ssrc:1111 cname:c\r\na=ssrc:2222 cname:c\r\n\
             a=candidate:1 1 udp 2130706431 127.0.0.1 41000 typ host\r\na=end-of-candidates\r\n",
            mid(1)
        );
        if rejected_audio {
            a += &format!(
                "m=audio 0 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:{}\r\na=inactive\r\n",
                mid(2)
            );
        } else {
            a += &format!(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:srvufrag\r\na=ice-pwd:serverpasswordserverpassword\r\n\
                 a=fingerprint:{fp}\r\na=setup:passive\r\na=mid:{}\r\na=sendonly\r\na=msid:s a\r\na=rtcp-mux\r\n\
                 a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=ssrc:3333 cname:c\r\n",
                mid(2)
            );
        }
        a
    }

    #[test]
    fn str0m_takes_the_servers_answer_and_expects_its_ssrcs() {
        let mut rtc = viewer_rtc(local()).expect("rtc");
        let (written, pending) = offer(&mut rtc, true, true).expect("offer");
        let text = server_answer(&written.to_sdp_string(), false);
        assert_eq!(playing_lines(&text), 2);
        let answer = SdpAnswer::from_sdp_string(&text).expect("SDP");
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("accepted");
        let mut api = rtc.direct_api();
        for ssrc in [1111u32, 3333] {
            assert!(
                api.stream_rx(&ssrc.into()).is_some(),
                "the answer's a=ssrc {ssrc} is expected"
            );
        }
    }

    #[test]
    fn rejected_lines_are_not_counted_as_playing() {
        let mut rtc = viewer_rtc(local()).expect("rtc");
        let (written, _) = offer(&mut rtc, true, true).expect("offer");
        assert_eq!(
            playing_lines(&server_answer(&written.to_sdp_string(), true)),
            1
        );
        assert_eq!(playing_lines("v=0\r\nm=video 9 X 96\r\na=recvonly\r\n"), 0);
        assert_eq!(playing_lines(""), 0);
    }

    #[test]
    fn endpoints_name_the_room_and_the_choice() {
        assert_eq!(
            endpoint("http://127.0.0.1:3000", "bench-0", None)
                .expect("url")
                .path,
            "/whep/bench-0"
        );
        assert_eq!(
            endpoint("http://h:1/sfu/", "my room", Some("label=stage"))
                .expect("url")
                .path,
            "/sfu/whep/my%20room?label=stage",
            "under the server's path, the room encoded"
        );
        assert!(endpoint("ws://h:1", "r", None).is_err());
    }
}
