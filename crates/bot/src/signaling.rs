//! A small socket.io v4 client over a plain WebSocket (engine.io v4, no HTTP
//! long-polling): connect to the default namespace, emit events with acks,
//! receive pushes, answer pings. It speaks just what protocol v1 needs and
//! keeps one task per connection.
//!
//! Wire forms used: `0{...}` open, `40` / `40{"sid"}` namespace connect,
//! `2`/`3` ping/pong, `42<id>["event",data]` emit with ack, `43<id>[reply]`
//! ack, `42["event",data]` push, `41` disconnect.

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// The server answered a request with an error ack `{error: {code, message}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub request: String,
    /// The protocol's error code, e.g. `limit_reached`.
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` refused: {} ({})",
            self.request, self.message, self.code
        )
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// The refusal in `error`, if the server refused a request.
    pub fn of(error: &anyhow::Error) -> Option<&Refused> {
        error.downcast_ref::<Refused>()
    }
}

/// A connected socket.io client.
pub struct SocketIoClient {
    /// The socket id (the peer id of protocol v1).
    pub sid: String,
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_ack: AtomicU64,
}

/// The `ws://` URL of the socket.io endpoint of an `http://host:port` server URL.
pub fn websocket_url(server: &str) -> anyhow::Result<String> {
    let rest = server
        .strip_prefix("http://")
        .map(|r| ("ws://", r))
        .or_else(|| server.strip_prefix("ws://").map(|r| ("ws://", r)))
        .ok_or_else(|| {
            anyhow!("server URL `{server}` must start with http:// (e.g. http://127.0.0.1:3000)")
        })?;
    let host = rest.1.trim_end_matches('/');
    Ok(format!(
        "{}{host}/socket.io/?EIO=4&transport=websocket",
        rest.0
    ))
}

impl SocketIoClient {
    /// Connect to `server` (`http://host:port`); events other than acks go to
    /// the returned receiver as `(event, data)`. Every text frame received
    /// adds its length to `received_bytes`.
    pub async fn connect(
        server: &str,
        received_bytes: Arc<AtomicU64>,
    ) -> anyhow::Result<(SocketIoClient, mpsc::UnboundedReceiver<(String, Value)>)> {
        let url = websocket_url(server)?;
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        .map_err(|_| anyhow!("timed out connecting to {url}: is the server running?"))?
        .with_context(|| format!("could not open the WebSocket {url}: is the server running?"))?;
        let (mut sink, mut stream) = ws.split();

        let open = next_text(&mut stream)
            .await
            .context("no engine.io open packet")?;
        if !open.starts_with('0') {
            bail!("expected an engine.io open packet, got `{open}`");
        }
        sink.send(Message::text("40"))
            .await
            .context("could not send the socket.io connect")?;
        let sid = loop {
            let msg = next_text(&mut stream)
                .await
                .context("no socket.io connect reply")?;
            if msg == "2" {
                sink.send(Message::text("3")).await.context("pong")?;
                continue;
            }
            let Some(body) = msg.strip_prefix("40") else {
                if msg.starts_with("44") {
                    bail!("the server refused the socket.io connection: {msg}");
                }
                continue;
            };
            let v: Value = serde_json::from_str(body).context("bad socket.io connect reply")?;
            break v["sid"].as_str().unwrap_or_default().to_string();
        };

        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();
        let pending_reader = pending.clone();
        let pong_tx = out_tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    out = out_rx.recv() => match out {
                        Some(text) => if sink.send(Message::text(text)).await.is_err() { break },
                        None => { let _ = sink.send(Message::text("41")).await; let _ = sink.close().await; break }
                    },
                    msg = stream.next() => match msg {
                        Some(Ok(Message::Text(t))) => {
                            received_bytes.fetch_add(t.len() as u64, Ordering::Relaxed);
                            handle_incoming(t.as_str(), &pending_reader, &push_tx, &pong_tx)
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => {}
                    },
                }
            }
            // Dropping the pending senders fails every waiting request.
            if let Ok(mut p) = pending_reader.lock() {
                p.clear();
            }
        });
        Ok((
            SocketIoClient {
                sid,
                out: out_tx,
                pending,
                next_ack: AtomicU64::new(1),
            },
            push_rx,
        ))
    }

    /// Emit `event` with `data` and wait for the ack's first argument.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        data: Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| anyhow!("signaling state poisoned"))?
            .insert(id, tx);
        let text = format!("42{id}{}", json!([event, data]));
        self.out
            .send(text)
            .map_err(|_| anyhow!("the signaling connection is closed"))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => {
                bail!("the signaling connection closed before the server answered `{event}`")
            }
            Err(_) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.remove(&id);
                }
                bail!("no ack for `{event}` within {timeout:?}: the server is overloaded or stuck")
            }
        }
    }

    /// One protocol v1 request: `{type, data}` on `mediasoupSignaling`; the
    /// success ack, or the error ack turned into an error.
    pub async fn request(&self, kind: &str, data: Value) -> anyhow::Result<Value> {
        self.request_within(kind, data, Duration::from_secs(30))
            .await
    }

    /// [`Self::request`] with its own ack timeout.
    pub async fn request_within(
        &self,
        kind: &str,
        data: Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let ack = self
            .emit_with_ack(
                simplesfu_proto::SIGNALING_EVENT,
                json!({"type": kind, "data": data}),
                timeout,
            )
            .await
            .with_context(|| format!("request `{kind}`"))?;
        success_of(kind, ack)
    }
}

/// A request's ack: the success ack, or its error turned into [`Refused`].
/// Protocol v1 errors are `{code, message}`; the original Node.js server
/// answers `{error: "text"}`, whose text is the message (code `unspecified`).
fn success_of(kind: &str, ack: Value) -> anyhow::Result<Value> {
    let Some(err) = ack.get("error") else {
        return Ok(ack);
    };
    let (code, message) = match err {
        Value::String(text) => ("unspecified".to_string(), text.clone()),
        Value::Object(_) => (
            err["code"].as_str().unwrap_or("?").to_string(),
            err["message"]
                .as_str()
                .map_or_else(|| err.to_string(), str::to_string),
        ),
        other => ("unspecified".to_string(), other.to_string()),
    };
    Err(Refused {
        request: kind.to_string(),
        code,
        message,
    }
    .into())
}

async fn next_text<S>(stream: &mut S) -> anyhow::Result<String>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Err(_) => bail!("the server sent nothing for 10 s"),
            Ok(None) => bail!("the server closed the connection"),
            Ok(Some(Err(e))) => return Err(e).context("WebSocket error"),
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.as_str().to_string()),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Dispatch one engine.io text packet.
fn handle_incoming(
    text: &str,
    pending: &Pending,
    pushes: &mpsc::UnboundedSender<(String, Value)>,
    out: &mpsc::UnboundedSender<String>,
) {
    match parse_packet(text) {
        Some(Packet::Ping) => {
            let _ = out.send("3".into());
        }
        Some(Packet::Ack(id, value)) => {
            let waiter = pending.lock().ok().and_then(|mut p| p.remove(&id));
            if let Some(w) = waiter {
                let _ = w.send(value);
            }
        }
        Some(Packet::Event(name, value)) => {
            let _ = pushes.send((name, value));
        }
        None => {}
    }
}

#[derive(Debug, PartialEq)]
enum Packet {
    Ping,
    Ack(u64, Value),
    Event(String, Value),
}

fn parse_packet(text: &str) -> Option<Packet> {
    if text == "2" {
        return Some(Packet::Ping);
    }
    let body = text.strip_prefix('4')?;
    let kind = body.chars().next()?;
    let rest = &body[1..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = rest[..digits].parse::<u64>().ok();
    let args: Value = serde_json::from_str(&rest[digits..]).ok()?;
    let mut args = match args {
        Value::Array(a) => a.into_iter(),
        _ => return None,
    };
    match (kind, id) {
        ('3', Some(id)) => Some(Packet::Ack(id, args.next().unwrap_or(Value::Null))),
        ('2', _) => {
            let name = args.next()?.as_str()?.to_string();
            Some(Packet::Event(name, args.next().unwrap_or(Value::Null)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_acks_pushes_and_pings() {
        assert_eq!(parse_packet("2"), Some(Packet::Ping));
        assert_eq!(
            parse_packet(r#"4317[{"success":true}]"#),
            Some(Packet::Ack(17, json!({"success": true})))
        );
        assert_eq!(
            parse_packet(r#"42["mediasoupSignaling",{"type":"peerConnection","data":["a"]}]"#),
            Some(Packet::Event(
                "mediasoupSignaling".into(),
                json!({"type": "peerConnection", "data": ["a"]})
            ))
        );
        assert_eq!(parse_packet("40{\"sid\":\"x\"}"), None);
        assert_eq!(parse_packet("nonsense"), None);
    }

    #[test]
    fn error_acks_become_refusals_with_their_code() {
        let ok = success_of("joinRoom", json!({"success": true})).expect("success ack");
        assert_eq!(ok["success"], true);
        let ack = json!({"error": {"code": "limit_reached", "message": "too many requests"}});
        let err = success_of("resumeConsumer", ack).expect_err("error ack");
        let refused = Refused::of(&err).expect("a refusal");
        assert_eq!(
            (refused.request.as_str(), refused.code.as_str()),
            ("resumeConsumer", "limit_reached")
        );
        assert_eq!(
            err.to_string(),
            "`resumeConsumer` refused: too many requests (limit_reached)"
        );
        // The original server's errors are plain strings.
        let err = success_of("createWebRtcTransport", json!({"error": "no such room"}))
            .expect_err("error ack");
        assert_eq!(
            err.to_string(),
            "`createWebRtcTransport` refused: no such room (unspecified)"
        );
    }

    #[test]
    fn websocket_url_from_server_url() {
        assert_eq!(
            websocket_url("http://127.0.0.1:3000/").expect("valid"),
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"
        );
        assert!(websocket_url("127.0.0.1:3000").is_err());
    }
}
