//! Session resume: the link between a peer and the socket that speaks for
//! it. A client that announces resume support (`auth: {resume: true}`) gets
//! a secret token in a `session` push; when its socket drops without a
//! goodbye, its peer (id, room, transports, producers, consumers) waits
//! `resume_grace` for a new socket that shows the token
//! (`auth: {resume: {peerId, token}}`). Meanwhile the other peers see
//! nothing, and pushes for the peer are kept (bounded) and replayed on
//! resume. A client that never announced support is cleaned up at once when
//! its socket goes, as the published v1 client expects.
//!
//! Each peer's [`Outbox`] sits behind its own mutex, so delivering a push
//! never holds the SFU-wide link table. Pushes are serialized once
//! ([`Prepared`]), however many peers they go to. Every peer's pushes wait
//! in order while its socket's send queue is full, and go out when it
//! drains: none is dropped silently (the published client could never
//! recover a lost `createConsumer`). A client that stops reading fills its
//! queue, and engine.io then closes the connection at its next heartbeat.

use serde_json::value::RawValue;
use serde_json::Value;
use simplesfu_proto::{PeerId, Push, Session, SIGNALING_EVENT};
use socketioxide::extract::SocketRef;
use socketioxide::socket::DisconnectReason;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Pushes kept for a peer whose socket is away. A peer that misses more
/// than this has lost too much to resume: it is cleaned up, and its resume
/// is refused, so the client rebuilds from scratch rather than run on a
/// state the server no longer tells it about.
pub(crate) const MAX_PENDING_PUSHES: usize = 1024;

/// What a connecting client asks for in its socket.io auth payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResumeIntent {
    /// No `resume` key: a v1 client, cleaned up as soon as its socket goes.
    Unsupported,
    /// `resume: true`: a new peer whose session may be resumed.
    Supported,
    /// `resume: {peerId, token}`: take over this peer.
    Resume { peer: PeerId, token: String },
}

/// Why a connection is refused; the text is the client's `connect_error`
/// message, and starts with a stable code a client can match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// `resume` is neither `true` nor `{peerId, token}` with string fields.
    #[error("invalid_auth: `resume` must be true or {{peerId, token}} with string values")]
    Malformed,
    /// No peer with that id waits for a resume (never existed, cleaned up
    /// after the grace period, or it lost too many pushes), or the token is
    /// not its current one. The client should connect as a new peer.
    #[error("resume_failed: this session cannot be resumed (unknown or expired, or a wrong token); connect without `resume.peerId` to start a new session")]
    Refused,
    /// Join tokens are on and the connection's token names another room
    /// than the one the session is in.
    #[error("forbidden: the join token is for another room than the session being resumed; connect without `resume.peerId` to start a new session in that room")]
    WrongRoom,
}

impl ResumeIntent {
    /// Read the `resume` key of an auth payload (anything else in it is
    /// someone else's business, e.g. the join `token`).
    pub(crate) fn from_auth(auth: Option<&Value>) -> Result<ResumeIntent, ResumeError> {
        let Some(resume) = auth.and_then(|a| a.get("resume")) else {
            return Ok(ResumeIntent::Unsupported);
        };
        match resume {
            Value::Bool(true) => Ok(ResumeIntent::Supported),
            Value::Object(m) => {
                let peer = m
                    .get("peerId")
                    .and_then(Value::as_str)
                    .and_then(|p| p.parse::<PeerId>().ok());
                let token = m.get("token").and_then(Value::as_str);
                match (peer, token) {
                    (Some(peer), Some(token)) => Ok(ResumeIntent::Resume {
                        peer,
                        token: token.to_owned(),
                    }),
                    _ => Err(ResumeError::Malformed),
                }
            }
            _ => Err(ResumeError::Malformed),
        }
    }
}

/// A fresh secret: 32 random bytes as hex.
pub(crate) fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compare secrets without leaking, through timing, how much of a guess matched.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether a socket that went away this way may come back: a client that
/// said goodbye (`socket.disconnect()`), or one the server dropped, may not.
pub(crate) fn may_come_back(reason: DisconnectReason) -> bool {
    !matches!(
        reason,
        DisconnectReason::ClientNSDisconnect
            | DisconnectReason::ServerNSDisconnect
            | DisconnectReason::ClosingServer
    )
}

/// Which pushes the outbox treats specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PushKind {
    /// `session`: only the newest matters, and it goes first.
    Session,
    /// `availableProducers`: the whole room list; only the newest matters.
    AvailableProducers,
    Other,
}

/// A push serialized once, to be sent to one peer or to a whole room.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    kind: PushKind,
    json: Arc<RawValue>,
}

impl Prepared {
    /// Serialize `push`; `None` (logged) if it cannot be, which no push
    /// type of the protocol does.
    pub fn new(push: &Push) -> Option<Prepared> {
        let kind = match push {
            Push::Session(_) => PushKind::Session,
            Push::AvailableProducers(_) => PushKind::AvailableProducers,
            _ => PushKind::Other,
        };
        match serde_json::value::to_raw_value(push) {
            Ok(json) => Some(Prepared {
                kind,
                json: Arc::from(json),
            }),
            Err(error) => {
                tracing::error!(%error, "could not serialize a push");
                None
            }
        }
    }

    #[cfg(test)]
    fn type_name(&self) -> String {
        serde_json::from_str::<Value>(self.json.get())
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// Why a push could not be handed to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmitError {
    /// The socket's send queue is full: the client reads slower than it is sent to.
    Full,
    /// The socket is not connected (yet, or any more).
    Closed,
}

/// Something pushes can be emitted to: the peer's socket (a fake in tests).
pub(crate) trait PushSink {
    fn emit_push(&self, push: &Prepared) -> Result<(), EmitError>;
}

impl PushSink for SocketRef {
    fn emit_push(&self, push: &Prepared) -> Result<(), EmitError> {
        use socketioxide::{SendError, SocketError};
        match self.emit(SIGNALING_EVENT, &*push.json) {
            Ok(()) => Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull)) => Err(EmitError::Full),
            Err(_) => Err(EmitError::Closed),
        }
    }
}

/// Where a peer's pushes go.
pub(crate) struct Outbox<S = SocketRef> {
    /// The socket currently speaking for the peer.
    pub socket: S,
    /// The client announced resume support.
    pub resumable: bool,
    /// The current resume token (resumable peers only).
    token: String,
    /// Pushes not delivered yet, oldest first: the socket is away, not yet
    /// connected, or its send buffer was full.
    pending: VecDeque<Prepared>,
    /// Bumped whenever the socket leaves or is replaced, so a grace timer
    /// from an earlier absence does nothing.
    pub generation: u64,
    /// The socket dropped and no new one has taken over.
    pub away: bool,
    /// More than [`MAX_PENDING_PUSHES`] waited: the session cannot resume.
    pub overflowed: bool,
}

/// What delivering a push came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    Done,
    /// The peer missed too much while away; end its session.
    Overflowed,
}

impl<S: PushSink> Outbox<S> {
    pub fn new(socket: S, resumable: bool, peer: &PeerId, grace: Duration) -> Outbox<S> {
        let mut outbox = Outbox {
            socket,
            resumable,
            token: String::new(),
            pending: VecDeque::new(),
            generation: 0,
            away: false,
            overflowed: false,
        };
        if resumable {
            outbox.rotate_token(peer, grace);
        }
        outbox
    }

    /// A new token, announced in a `session` push ahead of anything pending.
    fn rotate_token(&mut self, peer: &PeerId, grace: Duration) {
        self.token = new_token();
        self.pending.retain(|p| p.kind != PushKind::Session);
        let session = Push::Session(Session {
            peer_id: peer.clone(),
            resume_token: self.token.clone(),
            resume_grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
        });
        if let Some(session) = Prepared::new(&session) {
            self.pending.push_front(session);
        }
    }

    /// Hand a push to the socket, or keep it, in order, until the socket
    /// takes it (while it connects, while its send queue is full, and for
    /// resumable peers while it is away).
    pub fn deliver(&mut self, peer: &PeerId, push: &Prepared) -> Delivery {
        if self.overflowed {
            return Delivery::Overflowed;
        }
        if push.kind == PushKind::AvailableProducers {
            // An older room list waiting would only describe the past.
            self.pending
                .retain(|p| p.kind != PushKind::AvailableProducers);
        }
        self.pending.push_back(push.clone());
        self.flush(peer)
    }

    /// Whether pushes wait for a socket that is there (its queue was full).
    pub fn stalled(&self) -> bool {
        !self.away && !self.pending.is_empty()
    }

    /// Send what is pending, in order, until the socket refuses.
    pub fn flush(&mut self, peer: &PeerId) -> Delivery {
        while let Some(next) = self.pending.front() {
            if self.away {
                break;
            }
            match self.socket.emit_push(next) {
                Ok(()) => {
                    self.pending.pop_front();
                }
                Err(error) => {
                    tracing::trace!(peer = %peer, ?error, "push kept for later");
                    break;
                }
            }
        }
        if self.pending.len() > MAX_PENDING_PUSHES {
            self.overflowed = true;
            self.pending.clear();
            tracing::info!(peer = %peer, "too many pushes waiting (the client was away or did not read); the session ends");
            return Delivery::Overflowed;
        }
        Delivery::Done
    }

    /// The socket went away; gives the generation a grace timer must match.
    pub fn leave(&mut self) -> u64 {
        self.generation += 1;
        self.away = true;
        self.generation
    }

    /// A new socket showing `token` takes over: gives the socket it replaces.
    pub fn take_over(
        &mut self,
        peer: &PeerId,
        token: &str,
        socket: S,
        grace: Duration,
    ) -> Result<S, ResumeError> {
        if !self.resumable || self.overflowed || !same_secret(&self.token, token) {
            return Err(ResumeError::Refused);
        }
        let old = std::mem::replace(&mut self.socket, socket);
        self.generation += 1;
        self.away = false;
        self.rotate_token(peer, grace);
        Ok(old)
    }

    #[cfg(test)]
    fn pending_types(&self) -> Vec<String> {
        self.pending.iter().map(Prepared::type_name).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_auth_payload_says_what_the_client_wants() {
        assert_eq!(ResumeIntent::from_auth(None), Ok(ResumeIntent::Unsupported));
        assert_eq!(
            ResumeIntent::from_auth(Some(&json!({"token": "x"}))),
            Ok(ResumeIntent::Unsupported)
        );
        assert_eq!(
            ResumeIntent::from_auth(Some(&json!({"resume": true}))),
            Ok(ResumeIntent::Supported)
        );
        assert_eq!(
            ResumeIntent::from_auth(Some(&json!({"resume": {"peerId": "p1", "token": "t"}}))),
            Ok(ResumeIntent::Resume {
                peer: "p1".parse().expect("valid"),
                token: "t".into()
            })
        );
        for bad in [
            json!({"resume": false}),
            json!({"resume": "yes"}),
            json!({"resume": {"peerId": "p1"}}),
            json!({"resume": {"peerId": 3, "token": "t"}}),
        ] {
            assert_eq!(
                ResumeIntent::from_auth(Some(&bad)),
                Err(ResumeError::Malformed),
                "{bad}"
            );
        }
        assert!(ResumeError::Refused
            .to_string()
            .starts_with("resume_failed:"));
    }

    #[test]
    fn tokens_are_long_random_and_compared_whole() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(same_secret(&a, &a.clone()));
        assert!(!same_secret(&a, &b));
        assert!(!same_secret(&a, &a[..63]));
    }

    #[test]
    fn only_an_unannounced_drop_may_come_back() {
        assert!(may_come_back(DisconnectReason::TransportClose));
        assert!(may_come_back(DisconnectReason::HeartbeatTimeout));
        assert!(!may_come_back(DisconnectReason::ClientNSDisconnect));
        assert!(!may_come_back(DisconnectReason::ServerNSDisconnect));
    }

    /// A socket stand-in that accepts pushes only while `up`.
    #[derive(Default)]
    struct FakeSocket {
        up: std::cell::Cell<bool>,
        sent: std::cell::RefCell<Vec<String>>,
    }

    impl PushSink for FakeSocket {
        fn emit_push(&self, push: &Prepared) -> Result<(), EmitError> {
            if !self.up.get() {
                return Err(EmitError::Closed);
            }
            self.sent.borrow_mut().push(push.type_name());
            Ok(())
        }
    }

    fn prepared(push: Push) -> Prepared {
        Prepared::new(&push).expect("serializes")
    }

    fn p(id: &str) -> PeerId {
        id.parse().expect("valid peer id")
    }

    #[test]
    fn pushes_wait_in_order_while_away_and_are_replayed_on_resume() {
        let peer = p("p1");
        let grace = Duration::from_secs(15);
        let mut outbox = Outbox::new(FakeSocket::default(), true, &peer, grace);
        assert_eq!(
            outbox.pending_types(),
            vec!["session"],
            "not connected yet: the session push waits"
        );
        outbox.socket.up.set(true);
        outbox.flush(&peer);
        assert_eq!(*outbox.socket.sent.borrow(), vec!["session"]);
        let first_token = outbox.token.clone();

        outbox.leave();
        outbox.deliver(&peer, &prepared(Push::PeerConnection(vec![p("p2")])));
        outbox.deliver(
            &peer,
            &prepared(Push::AvailableProducers(Default::default())),
        );
        outbox.deliver(&peer, &prepared(Push::PeerDisconnection(vec![p("p2")])));
        outbox.deliver(
            &peer,
            &prepared(Push::AvailableProducers(Default::default())),
        );
        assert_eq!(
            outbox.pending_types(),
            vec!["peerConnection", "peerDisconnection", "availableProducers"],
            "only the newest room list waits"
        );

        let wrong = outbox.take_over(&peer, "not-the-token", FakeSocket::default(), grace);
        assert_eq!(wrong.err(), Some(ResumeError::Refused));
        let new_socket = FakeSocket::default();
        new_socket.up.set(true);
        let old = outbox
            .take_over(&peer, &first_token, new_socket, grace)
            .expect("the right token resumes");
        assert_eq!(
            *old.sent.borrow(),
            vec!["session"],
            "the old socket got nothing more"
        );
        outbox.flush(&peer);
        assert_eq!(
            *outbox.socket.sent.borrow(),
            vec![
                "session",
                "peerConnection",
                "peerDisconnection",
                "availableProducers"
            ]
        );
        assert_ne!(outbox.token, first_token, "each resume gives a new token");
        let reused = outbox.take_over(&peer, &first_token, FakeSocket::default(), grace);
        assert_eq!(
            reused.err(),
            Some(ResumeError::Refused),
            "an old token does not work twice"
        );
    }

    #[test]
    fn a_peer_that_misses_too_much_cannot_resume() {
        let peer = p("p1");
        let mut outbox = Outbox::new(FakeSocket::default(), true, &peer, Duration::from_secs(15));
        let token = outbox.token.clone();
        outbox.leave();
        let closed = Push::PeerDisconnection(vec![p("p2")]);
        let mut last = Delivery::Done;
        for _ in 0..=MAX_PENDING_PUSHES {
            last = outbox.deliver(&peer, &prepared(closed.clone()));
        }
        assert_eq!(last, Delivery::Overflowed);
        let resumed = outbox.take_over(
            &peer,
            &token,
            FakeSocket::default(),
            Duration::from_secs(15),
        );
        assert_eq!(resumed.err(), Some(ResumeError::Refused));
    }

    #[test]
    fn a_v1_peer_gets_no_session_and_loses_no_push_while_its_socket_refuses() {
        let peer = p("p1");
        let mut outbox = Outbox::new(FakeSocket::default(), false, &peer, Duration::from_secs(15));
        assert!(
            outbox.pending_types().is_empty(),
            "no session push for a v1 client"
        );
        outbox.deliver(&peer, &prepared(Push::PeerConnection(vec![p("p2")])));
        assert_eq!(
            outbox.pending_types(),
            vec!["peerConnection"],
            "kept while the socket refuses (its queue is full)"
        );
        assert!(outbox.stalled());
        outbox.socket.up.set(true);
        outbox.deliver(&peer, &prepared(Push::PeerDisconnection(vec![p("p2")])));
        assert_eq!(
            *outbox.socket.sent.borrow(),
            vec!["peerConnection", "peerDisconnection"],
            "in order"
        );
        assert!(!outbox.stalled());
    }
}
