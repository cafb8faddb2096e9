//! [`Sfu`]: the SFU as a library object. It owns the media workers, the
//! signaling registry and one request queue per peer, attaches to a
//! socketioxide [`SocketIo`], and carries out what registry operations ask
//! for (pushes, engine closes, `availableProducers` refreshes).
//!
//! Concurrency: socketioxide runs each incoming message in its own task, so
//! every peer has an async queue (a `tokio::sync::Mutex<()>`) that its
//! requests, its disconnect cleanup and engine events about its transports
//! take in turn; one peer's requests therefore run in the order they were
//! sent. The registry sits behind a std mutex held only for bookkeeping, never
//! across an `.await`. Work that touches another peer's consumers takes that
//! peer's queue in a task of its own, so no task ever holds two queues.

use crate::auth::{AuthError, Grant, Right, TokenSecret, TokenVerifier};
use crate::errors::{from_engine, SfuError};
use crate::limits::{Limits, RequestRate};
use crate::metrics::{request_label, Metrics};
use crate::registry::{AutoConsume, ConsumePlan, Effects, Registry, RegistryCounts, WorkerIndex};
use crate::extract::{BoundedAuth, BoundedRequest, RequestLimit, MAX_AUTH_BYTES};
use crate::session::{may_come_back, Delivery, Outbox, Prepared, ResumeError, ResumeIntent};
use serde_json::Value;
use simplesfu_engine::{EngineError, EngineEvent, Worker, WorkerHandle, WorkerSettings};
use simplesfu_proto::{
    success_ack, RequestType, ServerShutdown, CreateConsumer, CreateDataConsumer, DataProducerId, ErrorCode, PeerId, ProducerId,
    Push, Request, RoomId, SignalingError, SIGNALING_EVENT,
};
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::socket::DisconnectReason;
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// More media workers than this is a configuration mistake.
pub const MAX_WORKERS: usize = 256;

/// A request that has not been answered after this long gets an
/// `internal_error` ack: the client must always hear back.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// How the SFU's media side is set up.
#[derive(Debug, Clone)]
pub struct SfuOptions {
    /// Media worker threads, each with its own UDP socket. A peer is placed on
    /// the least-loaded worker; a consumer of a producer on another worker
    /// receives its packets through a pipe between the two.
    pub workers: usize,
    /// Address the workers' UDP sockets bind to.
    pub rtc_listen_ip: IpAddr,
    /// UDP port of worker 0; worker `i` uses `rtc_port + i`. 0 picks free ports.
    pub rtc_port: u16,
    /// Addresses put in ICE candidates (each gets a UDP and a TCP
    /// candidate), e.g. the public addresses behind NAT. Empty: the listen
    /// address, or when that is the wildcard (0.0.0.0 / ::) every address
    /// of this machine in its family plus loopback, so that browsers on
    /// this machine (Firefox ignores loopback candidates) and on the LAN
    /// reach the server.
    pub announced_ips: Vec<IpAddr>,
    /// Offer ICE over UDP.
    pub ice_udp: bool,
    /// Offer ICE over TCP (passive candidates, same port numbers as UDP).
    pub ice_tcp: bool,
    /// Resend `availableProducers` to every room this often (`None`: only on
    /// changes). Clients that pick their consumers from it (ours) retry a
    /// failed `createConsumer` on each copy; the published 0.0.20 client
    /// ignores it. The original server sent it every second.
    pub available_producers_interval: Option<Duration>,
    /// Shared secret of join tokens. `Some`: a connection without a valid
    /// token is refused, and a peer may only do what its token allows.
    pub token_secret: Option<TokenSecret>,
    /// Limits on rooms, peers and request rates.
    pub limits: Limits,
    /// `Some`: `GET /metrics` needs `Authorization: Bearer <token>`.
    pub metrics_token: Option<TokenSecret>,
    /// How long the peer of a client that announced resume support
    /// (`auth: {resume: true}`) outlives a dropped socket, waiting for the
    /// client to come back. Zero: cleaned up at once, like v1 clients.
    pub resume_grace: Duration,
}

impl Default for SfuOptions {
    fn default() -> Self {
        Self {
            workers: default_workers(),
            rtc_listen_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            rtc_port: 40000,
            announced_ips: Vec::new(),
            ice_udp: true,
            ice_tcp: true,
            available_producers_interval: Some(Duration::from_millis(1000)),
            token_secret: None,
            limits: Limits::default(),
            metrics_token: None,
            resume_grace: Duration::from_millis(15_000),
        }
    }
}

/// One worker per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

impl SfuOptions {
    /// The addresses announced in ICE candidates (see [`Self::announced_ips`]);
    /// lists the network interfaces when none are configured.
    pub fn effective_announced_ips(&self) -> Vec<IpAddr> {
        if !self.announced_ips.is_empty() {
            return self.announced_ips.clone();
        }
        let lan = if self.rtc_listen_ip.is_unspecified() { crate::netif::lan_addresses() } else { Vec::new() };
        crate::netif::default_announced_ips(self.rtc_listen_ip, &lan)
    }
}

/// Counters for `/health` and metrics.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SfuStats {
    pub workers: usize,
    #[serde(flatten)]
    pub signaling: RegistryCounts,
}

/// What the SFU keeps per connected socket.
struct PeerLink {
    /// The socket speaking for the peer and the pushes waiting for it.
    outbox: Arc<Mutex<Outbox>>,
    /// Serializes this peer's requests (see the module doc).
    queue: Arc<tokio::sync::Mutex<()>>,
    /// What the peer's join token allows (`None`: tokens are off).
    grant: Option<Grant>,
    /// The request rate limiter of this connection.
    rate: Arc<Mutex<RequestRate>>,
}

pub(crate) struct Inner {
    pub(crate) workers: Vec<WorkerHandle>,
    registry: Mutex<Registry>,
    links: Mutex<HashMap<PeerId, PeerLink>>,
    verifier: Option<TokenVerifier>,
    pub(crate) limits: Limits,
    pub(crate) metrics: Metrics,
    pub(crate) metrics_token: Option<TokenSecret>,
    resume_grace: Duration,
    /// When each room's `availableProducers` was last sent (see
    /// [`Sfu::send_available_producers`]).
    room_lists: Mutex<HashMap<RoomId, RoomListState>>,
}

/// The pacing of one room's `availableProducers`.
#[derive(Debug, Clone, Copy)]
struct RoomListState {
    last_sent: Option<tokio::time::Instant>,
    /// A send is scheduled for when the interval has passed.
    scheduled: bool,
}

/// A room's `availableProducers` goes out at most this often.
const ROOM_LIST_MIN_INTERVAL: Duration = Duration::from_millis(200);

/// How often pushes waiting for a full send queue are retried.
const STALLED_FLUSH_PERIOD: Duration = Duration::from_millis(250);

/// The SFU. Cheap to clone; all clones are the same SFU.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let (layer, io) = simplesfu::socket_io_builder().build_layer();
/// let sfu = simplesfu::Sfu::attach(&io, simplesfu::SfuOptions::default())?;
/// let app = axum::Router::<()>::new().layer(layer);
/// # let _ = (sfu, app); Ok(()) }
/// ```
#[derive(Clone)]
pub struct Sfu {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Sfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sfu").field("workers", &self.inner.workers).finish_non_exhaustive()
    }
}

impl Sfu {
    /// Start the media workers and attach the SFU to `io`'s default
    /// namespace: every socket that connects to "/" becomes a peer. This is
    /// the one call an application needs (the original `new MediasoupManager(io)`).
    ///
    /// If the application has its own "/" handler, use [`Sfu::new`] instead and
    /// call [`Sfu::on_connect`] from a connect middleware of that handler
    /// (`handler.with(...)`): socketioxide runs the handler itself only after
    /// the client is told it is connected, and requests sent before
    /// `on_connect` ran would be lost.
    pub fn attach(io: &SocketIo, options: SfuOptions) -> Result<Sfu, SfuError> {
        let sfu = Sfu::new(options)?;
        let handle = sfu.clone();
        // socketioxide sends the CONNECT packet before it runs the connect
        // handler (in a task of its own), so a client may emit before a
        // handler registered there exists and its request would be lost.
        // Middlewares run before the CONNECT packet: register there. The
        // last `.with` runs first: a refused token never reaches `on_connect`.
        // The auth payload is parsed only when it is small (BoundedAuth); a
        // larger one is refused by the first middleware before anything else.
        let verifier = sfu.clone();
        let connected = sfu.clone();
        let sizer = sfu.clone();
        io.ns(
            "/",
            (async move |socket: SocketRef| connected.on_connected(&socket))
                .with(async move |socket: SocketRef, BoundedAuth(auth): BoundedAuth| {
                    handle.on_connect_with_auth(socket, auth.ok().flatten().as_ref())
                })
                .with(async move |socket: SocketRef, BoundedAuth(auth): BoundedAuth| {
                    verifier.authenticate(&socket, auth.ok().flatten().as_ref())
                })
                .with(async move |BoundedAuth(auth): BoundedAuth| sizer.check_auth_size(&auth)),
        );
        Ok(sfu)
    }

    /// Start the media workers and background tasks without attaching to a
    /// namespace. Must run inside a tokio runtime.
    pub fn new(options: SfuOptions) -> Result<Sfu, SfuError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SfuError::NoRuntime)?;
        if options.workers == 0 || options.workers > MAX_WORKERS {
            return Err(SfuError::UnsupportedWorkerCount(options.workers));
        }
        let announced_ips = options.effective_announced_ips();
        tracing::info!(addresses = announced_ips.len(), "ICE candidates announce this many addresses");
        tracing::debug!(?announced_ips, "announced addresses");
        let mut workers = Vec::with_capacity(options.workers);
        let mut event_streams = Vec::with_capacity(options.workers);
        for index in 0..options.workers {
            let port = if options.rtc_port == 0 {
                0
            } else {
                u16::try_from(usize::from(options.rtc_port) + index).unwrap_or(0)
            };
            let settings = WorkerSettings {
                announced_ips: announced_ips.clone(),
                name: format!("worker-{index}"),
                listen_ip: options.rtc_listen_ip,
                port,
                udp: options.ice_udp,
                tcp: options.ice_tcp,
                ice_tcp_limits: Default::default(),
            };
            let (handle, events) =
                Worker::spawn(settings).map_err(|source| SfuError::WorkerSpawn { index, port, source })?;
            workers.push(handle);
            event_streams.push(events);
        }
        let sfu = Sfu {
            inner: Arc::new(Inner {
                workers,
                registry: Mutex::new(Registry::default()),
                links: Mutex::new(HashMap::new()),
                verifier: options.token_secret.as_ref().map(TokenVerifier::new),
                limits: options.limits.clone(),
                metrics: Metrics::default(),
                metrics_token: options.metrics_token.clone(),
                resume_grace: options.resume_grace,
                room_lists: Mutex::new(HashMap::new()),
            }),
        };
        for (index, events) in event_streams.into_iter().enumerate() {
            runtime.spawn(watch_engine_events(Arc::downgrade(&sfu.inner), index, events));
        }
        runtime.spawn(sweep_orphans(Arc::downgrade(&sfu.inner)));
        runtime.spawn(flush_stalled(Arc::downgrade(&sfu.inner)));
        if let Some(period) = options.available_producers_interval.filter(|p| !p.is_zero()) {
            runtime.spawn(resend_available_producers(Arc::downgrade(&sfu.inner), period));
        }
        Ok(sfu)
    }

    /// Refuse a connection whose auth payload was over [`MAX_AUTH_BYTES`]
    /// (see [`BoundedAuth`]): it was never parsed.
    pub fn check_auth_size(&self, auth: &Result<Option<Value>, usize>) -> Result<(), AuthPayloadTooLarge> {
        match auth {
            Err(size) => {
                self.inner.metrics.refused("payload_too_large");
                tracing::info!(size, "connection refused: auth payload too large");
                Err(AuthPayloadTooLarge(*size))
            }
            Ok(_) => Ok(()),
        }
    }

    /// Check the join token in a connecting socket's auth payload
    /// (`{token}`) and keep its grant for [`Sfu::on_connect`]. With tokens
    /// off this accepts everyone. Call it from a connect middleware that runs
    /// before the one calling `on_connect`; an `Err` refuses the connection,
    /// and its text is the client's `connect_error` message.
    pub fn authenticate(&self, socket: &SocketRef, auth: Option<&Value>) -> Result<(), AuthError> {
        let Some(verifier) = &self.inner.verifier else { return Ok(()) };
        match verifier.verify_auth_payload(auth) {
            Ok(grant) => {
                socket.extensions.insert(grant);
                Ok(())
            }
            Err(error) => {
                self.inner.metrics.refused(error.reason());
                tracing::info!(reason = error.reason(), "connection refused");
                Err(error)
            }
        }
    }

    /// Make `socket` a peer: register it and its `mediasoupSignaling` and
    /// disconnect handlers. Call this from your own namespace handler when
    /// you do not use [`Sfu::attach`]. It replaces any disconnect handler
    /// already set on the socket (socketioxide keeps one per socket). The
    /// peer is cleaned up as soon as its socket goes (no session resume; see
    /// [`Sfu::on_connect_with_auth`]).
    pub fn on_connect(&self, socket: SocketRef) {
        self.admit(socket, ResumeIntent::Unsupported);
    }

    /// [`Sfu::on_connect`] that also honours session resume as the client's
    /// socket.io `auth` payload asks (`{resume: true}` or `{resume: {peerId,
    /// token}}`, see docs/PROTOCOL.md). Call it from a connect middleware; an
    /// `Err` refuses the connection with its text as the `connect_error`
    /// message. Then call [`Sfu::on_connected`] from the connect handler.
    pub fn on_connect_with_auth(&self, socket: SocketRef, auth: Option<&Value>) -> Result<(), ResumeError> {
        let intent = ResumeIntent::from_auth(auth).inspect_err(|_| self.inner.metrics.refused("invalid_auth"))?;
        match intent {
            ResumeIntent::Resume { peer, token } => self.resume(socket, peer, &token).inspect_err(|error| {
                self.inner.metrics.refused("resume_failed");
                tracing::info!(%error, "resume refused");
            }),
            intent => {
                self.admit(socket, intent);
                Ok(())
            }
        }
    }

    /// Once the client knows it is connected: send what waited for it (the
    /// `session` push, pushes missed while away) and, after a resume, the
    /// room's `availableProducers` again.
    pub fn on_connected(&self, socket: &SocketRef) {
        let Some(peer) = socket.extensions.get::<PeerId>() else { return };
        let outbox = self.links().get(&peer).map(|l| l.outbox.clone());
        let Some(outbox) = outbox else { return };
        let delivery = lock(&outbox).flush(&peer);
        if delivery == Delivery::Overflowed {
            self.end_session(&peer);
            return;
        }
        if socket.extensions.get::<Resumed>().is_some() {
            let available = {
                let registry = self.registry();
                registry.room_of(&peer).map(|room| registry.available_producers(&room))
            };
            if let Some(available) = available {
                self.push(&peer, &Push::AvailableProducers(available));
            }
        }
    }

    /// A new peer for this socket.
    fn admit(&self, socket: SocketRef, intent: ResumeIntent) {
        // Never the socket id: that is the engine.io session id, which a
        // long-polling client proves itself with, and peer ids are told to
        // every member of a room.
        let peer = PeerId::random();
        let grant = socket.extensions.get::<Grant>();
        if self.inner.verifier.is_some() && grant.is_none() {
            // Only reachable when an application calls on_connect without
            // authenticate: fail closed.
            tracing::error!(peer = %peer, "join tokens are on but Sfu::authenticate did not run for this socket; disconnecting it");
            let _ = socket.disconnect();
            return;
        }
        let worker = {
            let mut registry = self.registry();
            let placed = least_loaded(&registry.peers_per_worker(self.inner.workers.len()), &self.inner.workers);
            // With every worker gone the peer still gets a place, so each of
            // its media requests is answered with `worker_stopped`'s error.
            let worker = placed.unwrap_or_else(|| {
                tracing::error!(peer = %peer, "no media worker is running; this peer's media requests will fail until the server restarts");
                0
            });
            registry.add_peer(peer.clone(), worker);
            worker
        };
        let resumable = intent == ResumeIntent::Supported && !self.inner.resume_grace.is_zero();
        self.inner.metrics.connected();
        tracing::info!(peer = %peer, worker, resumable, room = grant.as_ref().map(|g| g.room.as_str()), "peer connected");
        let rate = Arc::new(Mutex::new(RequestRate::new(self.inner.limits.bucket(Instant::now()))));
        let outbox = Outbox::new(socket.clone(), resumable, &peer, self.inner.resume_grace);
        self.links().insert(
            peer.clone(),
            PeerLink {
                outbox: Arc::new(Mutex::new(outbox)),
                queue: Arc::new(tokio::sync::Mutex::new(())),
                grant,
                rate,
            },
        );
        self.speak_for(&socket, peer);
    }

    /// A new socket takes over `peer`, whose token it shows.
    /// With join tokens on, the new connection's token must name the room
    /// the session is in, and its grant replaces the old one (rights may
    /// have changed since).
    fn resume(&self, socket: SocketRef, peer: PeerId, token: &str) -> Result<(), ResumeError> {
        let grant = socket.extensions.get::<Grant>();
        if self.inner.verifier.is_some() {
            let Some(grant) = &grant else { return Err(ResumeError::Refused) };
            if self.registry().room_of(&peer).is_some_and(|room| room != grant.room) {
                return Err(ResumeError::WrongRoom);
            }
        }
        let replaced = {
            let mut links = self.links();
            let link = links.get_mut(&peer).ok_or(ResumeError::Refused)?;
            let replaced = lock(&link.outbox).take_over(&peer, token, socket.clone(), self.inner.resume_grace)?;
            if self.inner.verifier.is_some() {
                link.grant = grant;
            }
            replaced
        };
        if replaced.connected() {
            // The old connection is not known to be dead yet (a network
            // change): this one wins, and the old one's disconnect is ignored.
            let _ = replaced.disconnect();
        }
        tracing::info!(peer = %peer, "peer resumed its session");
        socket.extensions.insert(Resumed);
        self.speak_for(&socket, peer);
        Ok(())
    }

    /// Requests on `socket` act for `peer`; its disconnect may end the peer.
    fn speak_for(&self, socket: &SocketRef, peer: PeerId) {
        socket.extensions.insert(peer.clone());
        socket.extensions.insert(RequestLimit(self.inner.limits.max_request_bytes));
        let sfu = self.clone();
        let id = peer.clone();
        socket.on(SIGNALING_EVENT, move |BoundedRequest(raw): BoundedRequest, ack: AckSender| {
            let (sfu, id) = (sfu.clone(), id.clone());
            async move { sfu.on_request(&id, raw, ack).await }
        });
        let sfu = self.clone();
        let sid = socket.id;
        socket.on_disconnect(move |reason: DisconnectReason| {
            sfu.on_socket_gone(&peer, sid, reason);
            std::future::ready(())
        });
    }

    /// A socket went: clean its peer up now, or after the grace period if
    /// the client may resume, or not at all if another socket took over.
    fn on_socket_gone(&self, peer: &PeerId, sid: socketioxide::socket::Sid, reason: DisconnectReason) {
        enum Next {
            Nothing,
            Wait(u64),
            CleanUp,
        }
        let next = {
            let links = self.links();
            match links.get(peer) {
                None => Next::Nothing,
                Some(link) => {
                    let mut outbox = lock(&link.outbox);
                    if outbox.socket.id != sid {
                        Next::Nothing
                    } else if outbox.resumable && !outbox.overflowed && may_come_back(reason) {
                        Next::Wait(outbox.leave())
                    } else {
                        Next::CleanUp
                    }
                }
            }
        };
        let sfu = self.clone();
        let peer = peer.clone();
        match next {
            Next::Nothing => {}
            Next::Wait(generation) => {
                tracing::info!(peer = %peer, ?reason, grace_ms = self.inner.resume_grace.as_millis(), "peer's socket dropped; waiting for a resume");
                let grace = self.inner.resume_grace;
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    let expired = sfu.links().get(&peer).is_some_and(|l| {
                        let outbox = lock(&l.outbox);
                        outbox.away && outbox.generation == generation
                    });
                    if expired {
                        sfu.remove_peer(&peer, "no resume within the grace period").await;
                    }
                });
            }
            // Cleanup waits for the peer's queue; do not hold up socketioxide meanwhile.
            Next::CleanUp => drop(tokio::spawn(async move { sfu.remove_peer(&peer, reason_text(reason)).await })),
        }
    }

    /// The peer missed too many pushes (away, or not reading): clean it up
    /// now, and close its socket if it is still there (when its queue is
    /// still full, engine.io's next heartbeat closes the connection).
    fn end_session(&self, peer: &PeerId) {
        self.inner.metrics.refused("too_many_pushes_waiting");
        let socket = self.links().get(peer).map(|l| lock(&l.outbox).socket.clone());
        if let Some(socket) = socket {
            let _ = socket.disconnect();
        }
        let sfu = self.clone();
        let peer = peer.clone();
        tokio::spawn(async move { sfu.remove_peer(&peer, "too many pushes missed").await });
    }

    /// Counters of peers, rooms, transports, producers and consumers.
    pub fn stats(&self) -> SfuStats {
        SfuStats { workers: self.inner.workers.len(), signaling: self.registry().counts() }
    }

    /// The UDP addresses the media workers listen on.
    pub fn rtc_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.inner.workers.iter().map(WorkerHandle::local_addr).collect()
    }

    /// Say goodbye to every client (a `serverShutdown` push) and clean
    /// every peer up, closing its transports; peers whose socket is away
    /// (waiting for a resume) too. Sockets are not disconnected: the caller
    /// then stops serving, and the connections drop as they would if the
    /// server had crashed, which socket.io-client retries by itself, so the
    /// pages of both clients come back once the server is up again (a
    /// server disconnect is never retried: after a deploy the published
    /// client would stay dead until reloaded). Returns when every peer is
    /// gone or `within` has passed.
    pub async fn close(&self, message: &str, within: Duration) {
        let peers: Vec<(PeerId, Arc<Mutex<Outbox>>)> =
            self.links().iter().map(|(id, link)| (id.clone(), link.outbox.clone())).collect();
        tracing::info!(peers = peers.len(), "telling every client the server stops");
        let goodbye = Push::ServerShutdown(ServerShutdown { message: message.to_owned() });
        for (_, outbox) in &peers {
            let outbox = lock(outbox);
            // Straight to the socket: nothing queued matters any more.
            if !outbox.away {
                let _ = outbox.socket.emit(SIGNALING_EVENT, &goodbye);
            }
        }
        let cleanups: Vec<_> = peers
            .into_iter()
            .map(|(peer, _)| {
                let sfu = self.clone();
                tokio::spawn(async move { sfu.remove_peer(&peer, "the server is stopping").await })
            })
            .collect();
        let all = futures_join_all(cleanups);
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!(peers = self.links().len(), "peers still being cleaned up at shutdown");
        }
    }

    /// Stop the media workers (transports die with them).
    pub fn shutdown(&self) {
        for worker in &self.inner.workers {
            worker.shutdown();
        }
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves bookkeeping that is still
        // structurally valid; keep serving rather than poisoning every peer.
        self.inner.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn links(&self) -> MutexGuard<'_, HashMap<PeerId, PeerLink>> {
        self.inner.links.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The worker at `index`, if it still runs.
    pub(crate) fn worker(&self, index: WorkerIndex) -> Result<&WorkerHandle, SignalingError> {
        let worker = self
            .inner
            .workers
            .get(index)
            .ok_or_else(|| SignalingError::new(ErrorCode::InternalError, "no such media worker"))?;
        if worker.is_alive() {
            Ok(worker)
        } else {
            Err(worker_stopped(&self.inner.workers))
        }
    }

    fn queue_of(&self, peer: &PeerId) -> Option<Arc<tokio::sync::Mutex<()>>> {
        self.links().get(peer).map(|l| l.queue.clone())
    }

    /// What the peer's token allows; `None` when tokens are off.
    pub(crate) fn grant_of(&self, peer: &PeerId) -> Option<Grant> {
        self.links().get(peer).and_then(|l| l.grant.clone())
    }

    /// Refuse with `forbidden` unless the peer's token allows `right`.
    pub(crate) fn require(&self, peer: &PeerId, right: Right) -> Result<(), SignalingError> {
        crate::auth::require(self.grant_of(peer).as_ref(), right)
    }

    /// Take a token from the peer's rate limiter (a `resumeConsumer` that
    /// answers a pushed consumer takes none).
    fn within_rate(&self, peer: &PeerId, label: &str) -> bool {
        let rate = self.links().get(peer).map(|l| l.rate.clone());
        let Some(rate) = rate else { return true };
        let mut rate = lock(&rate);
        rate.try_take(Instant::now(), label == RequestType::ResumeConsumer.as_str())
    }

    /// One request, start to ack. Always acks exactly once.
    /// One request: `raw` is its JSON, or the size of a message too large
    /// to be parsed at all (see [`BoundedRequest`]).
    async fn on_request(&self, peer: &PeerId, raw: Result<Value, usize>, ack: AckSender) {
        let label = raw.as_ref().map_or("invalid", request_label);
        self.inner.metrics.request(label);
        let parsed = if !self.within_rate(peer, label) {
            tracing::debug!(peer = %peer, request = label, "request rate limit reached");
            Err(self.inner.limits.rate_exceeded())
        } else {
            match &raw {
                Ok(raw) => Request::parse_limited(raw, self.inner.limits.max_request_bytes),
                Err(size) => Err(SignalingError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("request is about {size} bytes; the limit is {} (limits.max_request_bytes)", self.inner.limits.max_request_bytes),
                )),
            }
        };
        let outcome = match parsed {
            Err(e) => Err(e),
            Ok(request) => {
                let kind = request.request_type().as_str();
                match self.queue_of(peer) {
                    None => Err(SignalingError::new(ErrorCode::PeerNotFound, "this peer is disconnecting")),
                    Some(queue) => {
                        let _turn = queue.lock().await;
                        let (sfu, id) = (self.clone(), peer.clone());
                        let work = async move { sfu.dispatch(&id, request).await };
                        crate::panics::contained(peer, kind, REQUEST_DEADLINE, work).await
                    }
                }
                .inspect(|_| tracing::debug!(peer = %peer, request = kind, "request done"))
            }
        };
        let body = match outcome {
            Ok(fields) => success_ack(fields),
            Err(error) => {
                self.inner.metrics.error(error.code.as_str());
                tracing::debug!(peer = %peer, code = error.code.as_str(), message = %error.message, "request refused");
                error.to_ack()
            }
        };
        if let Err(error) = ack.send(&body) {
            // The client is gone, or its send queue is full: it sent requests
            // faster than it read the answers (SOCKET_IO_BUFFER_PACKETS). It
            // will never hear back; counted in /metrics (acks_dropped_total),
            // logged loudly once so a flood cannot flood the log too.
            if self.inner.metrics.ack_dropped() {
                tracing::warn!(peer = %peer, %error, "could not send an ack (more are counted in acks_dropped_total, logged at debug)");
            } else {
                tracing::debug!(peer = %peer, %error, "could not send ack");
            }
        }
    }

    /// Send a push to one peer (dropped if it is gone; kept while a
    /// resumable peer's socket is away).
    pub(crate) fn push(&self, peer: &PeerId, push: &Push) {
        if matches!(push, Push::CreateConsumer(_)) {
            let rate = self.links().get(peer).map(|l| l.rate.clone());
            if let Some(rate) = rate {
                lock(&rate).owe_answer();
            }
        }
        if let Some(prepared) = Prepared::new(push) {
            self.push_prepared(peer, &prepared);
        }
    }

    fn push_prepared(&self, peer: &PeerId, push: &Prepared) {
        let outbox = self.links().get(peer).map(|l| l.outbox.clone());
        let Some(outbox) = outbox else { return };
        let delivery = lock(&outbox).deliver(peer, push);
        if delivery == Delivery::Overflowed {
            self.end_session(peer);
        }
    }

    /// Send every member of `room` the room's `availableProducers`, at most
    /// once per [`ROOM_LIST_MIN_INTERVAL`]: a change within that time is
    /// sent once it has passed, together with any others, so a client that
    /// churns (re-joins, pauses, produces) cannot make the server send the
    /// whole room list to every member faster than that. The list is
    /// serialized once for all members.
    pub(crate) fn send_available_producers(&self, room: &RoomId) {
        let now = tokio::time::Instant::now();
        let wait = {
            let mut lists = lock(&self.inner.room_lists);
            let state = lists.entry(room.clone()).or_insert(RoomListState { last_sent: None, scheduled: false });
            if state.scheduled {
                return; // the send already scheduled will carry this change
            }
            match state.last_sent.map(|at| at + ROOM_LIST_MIN_INTERVAL).filter(|due| *due > now) {
                None => {
                    state.last_sent = Some(now);
                    None
                }
                Some(due) => {
                    state.scheduled = true;
                    Some(due)
                }
            }
        };
        match wait {
            None => self.send_room_list_now(room),
            Some(due) => {
                let (sfu, room) = (self.clone(), room.clone());
                tokio::spawn(async move {
                    tokio::time::sleep_until(due).await;
                    if let Some(state) = lock(&sfu.inner.room_lists).get_mut(&room) {
                        state.scheduled = false;
                        state.last_sent = Some(tokio::time::Instant::now());
                    }
                    sfu.send_room_list_now(&room);
                });
            }
        }
    }

    fn send_room_list_now(&self, room: &RoomId) {
        let (members, available) = {
            let registry = self.registry();
            (registry.members(room), registry.available_producers(room))
        };
        if members.is_empty() {
            lock(&self.inner.room_lists).remove(room);
            return;
        }
        let Some(push) = Prepared::new(&Push::AvailableProducers(available)) else { return };
        for member in &members {
            self.push_prepared(member, &push);
        }
    }

    /// Send pushes that waited because a socket's send queue was full.
    fn flush_stalled(&self) {
        let stalled: Vec<(PeerId, Arc<Mutex<Outbox>>)> = self
            .links()
            .iter()
            .map(|(peer, link)| (peer.clone(), link.outbox.clone()))
            .collect();
        for (peer, outbox) in stalled {
            let mut outbox = lock(&outbox);
            if outbox.stalled() && outbox.flush(&peer) == Delivery::Overflowed {
                drop(outbox);
                self.end_session(&peer);
            }
        }
    }

    /// Carry out what a registry operation asked for.
    pub(crate) async fn apply(&self, effects: Effects) {
        for (worker, id) in effects.close_consumers {
            if let Ok(w) = self.worker(worker) {
                match w.close_consumer(id).await {
                    Ok(()) | Err(EngineError::ConsumerNotFound(_)) => {}
                    Err(error) => tracing::warn!(consumer = %id, %error, "could not close consumer"),
                }
            }
        }
        for (worker, id) in effects.close_data_consumers {
            if let Ok(w) = self.worker(worker) {
                match w.close_data_consumer(id).await {
                    Ok(()) | Err(EngineError::DataConsumerNotFound(_)) => {}
                    Err(error) => tracing::warn!(data_consumer = %id, %error, "could not close data consumer"),
                }
            }
        }
        for (peer, push) in &effects.pushes {
            self.push(peer, push);
        }
        for room in &effects.rooms_changed {
            self.send_available_producers(room);
        }
    }

    /// The peer's consumer of `producer`: the existing one, or a new one from
    /// the engine (created paused).
    pub(crate) async fn consumer_for(
        &self,
        peer: &PeerId,
        producing_peer: &PeerId,
        producer: ProducerId,
    ) -> Result<CreateConsumer, SignalingError> {
        let plan = self.registry().plan_consume(peer, producing_peer, producer)?;
        let (worker, recv_transport, producer_worker) = match plan {
            ConsumePlan::Existing(push) => return Ok(push),
            ConsumePlan::Create { worker, recv_transport, producer_worker } => (worker, recv_transport, producer_worker),
        };
        let engine = self.worker(worker)?;
        if producer_worker != worker {
            // mediasoup's pipeToRouter: once per producer and worker, idempotent.
            self.worker(producer_worker)?.pipe_producer(producer, engine).await.map_err(from_engine)?;
        }
        let info = engine.consume(recv_transport, producer).await.map_err(from_engine)?;
        let consumer = info.id;
        let recorded = self.registry().add_consumer(peer, producing_peer, recv_transport, info);
        if recorded.is_err() {
            // The producer, the room or the transport went away meanwhile.
            let _ = engine.close_consumer(consumer).await;
        }
        recorded
    }

    pub(crate) async fn data_consumer_for(
        &self,
        peer: &PeerId,
        producing_peer: &PeerId,
        producer: DataProducerId,
    ) -> Result<CreateDataConsumer, SignalingError> {
        let plan = self.registry().plan_consume_data(peer, producing_peer, producer)?;
        let (worker, recv_transport, producer_worker) = match plan {
            ConsumePlan::Existing(push) => return Ok(push),
            ConsumePlan::Create { worker, recv_transport, producer_worker } => (worker, recv_transport, producer_worker),
        };
        let engine = self.worker(worker)?;
        if producer_worker != worker {
            self.worker(producer_worker)?.pipe_data_producer(producer, engine).await.map_err(from_engine)?;
        }
        let info = engine.consume_data(recv_transport, producer).await.map_err(from_engine)?;
        let consumer = info.id;
        let recorded = self.registry().add_data_consumer(peer, producing_peer, recv_transport, info);
        if recorded.is_err() {
            let _ = engine.close_data_consumer(consumer).await;
        }
        recorded
    }

    /// Create consumers nobody asked for (see "Who consumes what" in
    /// docs/PROTOCOL.md) and push them. Each consuming peer's queue is taken
    /// in a task of its own, so this never waits on two queues at once.
    pub(crate) fn auto_consume(&self, targets: Vec<AutoConsume>) {
        let mut by_peer: HashMap<PeerId, Vec<AutoConsume>> = HashMap::new();
        for target in targets {
            by_peer.entry(target.consumer.clone()).or_default().push(target);
        }
        for (peer, targets) in by_peer {
            if self.require(&peer, Right::Subscribe).is_err() {
                continue;
            }
            let sfu = self.clone();
            tokio::spawn(async move {
                let Some(queue) = sfu.queue_of(&peer) else { return };
                let _turn = queue.lock().await;
                for t in targets {
                    match sfu.consumer_for(&peer, &t.producing_peer, t.producer).await {
                        Ok(push) => sfu.push(&peer, &Push::CreateConsumer(Box::new(push))),
                        Err(error) => tracing::debug!(
                            peer = %peer, producer = %t.producer, code = error.code.as_str(), "automatic consumer not created"
                        ),
                    }
                }
            });
        }
    }

    /// Disconnect cleanup: after the peer's last request, leave its room,
    /// close its transports (the engine closes what lived on them) and tell
    /// the peers that consumed from it.
    async fn remove_peer(&self, peer: &PeerId, reason: &'static str) {
        let link = self.links().remove(peer);
        if let Some(link) = &link {
            let _turn = link.queue.lock().await;
            self.cleanup_peer(peer).await;
        } else {
            self.cleanup_peer(peer).await;
        }
        tracing::info!(peer = %peer, reason, "peer disconnected");
    }

    async fn cleanup_peer(&self, peer: &PeerId) {
        let Some(removed) = self.registry().remove_peer(peer) else { return };
        if let Ok(engine) = self.worker(removed.worker) {
            for transport in removed.transports {
                match engine.close_transport(transport).await {
                    Ok(_) | Err(EngineError::TransportNotFound(_)) => {}
                    Err(error) => tracing::warn!(peer = %peer, %error, "could not close transport"),
                }
            }
        }
        self.apply(removed.effects).await;
    }

    async fn on_engine_event(&self, worker: WorkerIndex, event: EngineEvent) {
        match event {
            EngineEvent::TransportClosed { transport_id, reason, .. } => {
                let owner = self.registry().transport_owner(transport_id);
                let Some(owner) = owner else { return };
                tracing::info!(peer = %owner, worker, transport = %transport_id, %reason, "transport closed by the engine");
                let Some(queue) = self.queue_of(&owner) else { return };
                let _turn = queue.lock().await;
                let closed = self.registry().transport_closed(transport_id);
                if let Some((_, effects)) = closed {
                    self.apply(effects).await;
                }
            }
        }
    }
}

/// A connection refused because its auth payload was over
/// [`MAX_AUTH_BYTES`]; the text is the client's `connect_error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("payload_too_large: the connection's auth payload is {0} bytes; the most is {MAX_AUTH_BYTES}")]
pub struct AuthPayloadTooLarge(pub usize);

/// Wait for every task (their panics are the tasks' own business).
async fn futures_join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// Marks a socket that resumed a session (for [`Sfu::on_connected`]).
#[derive(Debug, Clone, Copy)]
struct Resumed;

/// A peer's outbox, even if a panic poisoned it (its queue stays usable).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn reason_text(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::ClientNSDisconnect => "the client disconnected",
        DisconnectReason::ServerNSDisconnect => "the server disconnected it",
        DisconnectReason::ClosingServer => "the server is stopping",
        DisconnectReason::HeartbeatTimeout => "heartbeat timeout",
        _ => "the connection closed",
    }
}

/// The worker for a new peer: the running one with the least load, where
/// load is the peers placed on it plus its transports and consumers (see
/// `WorkerHandle::load`). Counting placed peers spreads a burst of
/// connections before any of them has created a transport. A worker whose
/// thread died (a panic) is skipped: every request to it would fail.
/// `None` when no worker runs.
fn least_loaded(peers_per_worker: &[usize], workers: &[WorkerHandle]) -> Option<WorkerIndex> {
    let loads: Vec<Option<usize>> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| w.is_alive().then(|| peers_per_worker.get(i).copied().unwrap_or(0) + w.load()))
        .collect();
    pick_least(&loads)
}

/// Index of the smallest load among the live workers (`Some`); the first
/// one on ties.
fn pick_least(loads: &[Option<usize>]) -> Option<WorkerIndex> {
    loads
        .iter()
        .enumerate()
        .filter_map(|(i, load)| load.map(|load| (load, i)))
        .min()
        .map(|(_, i)| i)
}

/// The error for a request that needs a worker that has stopped.
fn worker_stopped(workers: &[WorkerHandle]) -> SignalingError {
    let message = if workers.iter().any(WorkerHandle::is_alive) {
        "the media worker serving this peer has stopped; connect again as a new peer (not a session resume) to be placed on a running worker"
    } else {
        "no media worker is running on this server; it needs a restart (see the server logs)"
    };
    SignalingError::new(ErrorCode::InternalError, message)
}

async fn watch_engine_events(sfu: Weak<Inner>, worker: WorkerIndex, mut events: UnboundedReceiver<EngineEvent>) {
    while let Some(event) = events.recv().await {
        let Some(inner) = sfu.upgrade() else { break };
        Sfu { inner }.on_engine_event(worker, event).await;
    }
}

/// How often peers whose socket never finished connecting are looked for.
const ORPHAN_SWEEP_PERIOD: Duration = Duration::from_secs(5);

/// Peers are registered in a connect middleware, before socketioxide sends
/// the CONNECT packet; when that send fails (the client is already gone),
/// socketioxide drops the socket without running its disconnect handler.
/// A peer whose socket is seen not connected (and not away for a resume) at
/// two sweeps in a row is such an orphan: clean it up.
async fn sweep_orphans(sfu: Weak<Inner>) {
    let mut ticker = tokio::time::interval(ORPHAN_SWEEP_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut suspects: std::collections::HashSet<PeerId> = std::collections::HashSet::new();
    loop {
        ticker.tick().await;
        let Some(inner) = sfu.upgrade() else { break };
        let sfu = Sfu { inner };
        let unconnected: Vec<PeerId> = sfu
            .links()
            .iter()
            .filter(|(_, link)| {
                let outbox = lock(&link.outbox);
                !outbox.away && !outbox.socket.connected()
            })
            .map(|(peer, _)| peer.clone())
            .collect();
        for peer in unconnected.iter().filter(|p| suspects.contains(*p)) {
            let (sfu, peer) = (sfu.clone(), peer.clone());
            tokio::spawn(async move { sfu.remove_peer(&peer, "its connection never completed").await });
        }
        suspects = unconnected.into_iter().collect();
    }
}

async fn flush_stalled(sfu: Weak<Inner>) {
    let mut ticker = tokio::time::interval(STALLED_FLUSH_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = sfu.upgrade() else { break };
        Sfu { inner }.flush_stalled();
    }
}

async fn resend_available_producers(sfu: Weak<Inner>, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(inner) = sfu.upgrade() else { break };
        let sfu = Sfu { inner };
        let rooms = sfu.registry().room_ids();
        for room in &rooms {
            sfu.send_available_producers(room);
        }
    }
}

/// Build a success ack's fields from pairs.
pub(crate) fn fields<const N: usize>(pairs: [(&str, Value); N]) -> serde_json::Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[cfg(test)]
mod placement_tests {
    use super::*;

    #[test]
    fn a_worker_with_more_load_is_not_chosen() {
        assert_eq!(pick_least(&[Some(3), Some(1), Some(2)]), Some(1));
        assert_eq!(pick_least(&[Some(0), Some(0)]), Some(0), "ties go to the first worker");
        assert_eq!(pick_least(&[Some(5), Some(5), Some(4)]), Some(2));
    }

    #[test]
    fn a_dead_worker_is_never_chosen() {
        assert_eq!(pick_least(&[None, Some(7), Some(3)]), Some(2), "the idle worker is dead");
        assert_eq!(pick_least(&[None, Some(9)]), Some(1));
        assert_eq!(pick_least(&[None, None]), None, "no worker runs");
        assert_eq!(pick_least(&[]), None);
    }

    fn two_workers() -> Sfu {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Sfu::new(SfuOptions {
            workers: 2,
            rtc_listen_ip: loopback,
            rtc_port: 0,
            announced_ips: vec![loopback],
            available_producers_interval: None,
            ..SfuOptions::default()
        })
        .expect("two workers start")
    }

    async fn stop(worker: &WorkerHandle) {
        worker.shutdown();
        tokio::time::timeout(Duration::from_secs(5), worker.stopped()).await.expect("the worker thread stops");
    }

    /// New peers go to a running worker, however idle a dead one looks; a
    /// peer whose worker stopped is told what to do, at once.
    #[tokio::test]
    async fn new_peers_go_to_a_running_worker_and_requests_to_a_dead_one_get_a_clear_error() {
        let sfu = two_workers();
        let workers = &sfu.inner.workers;
        assert_eq!(least_loaded(&[5, 0], workers), Some(1), "both run: the less loaded one");
        stop(&workers[1]).await;
        assert!(!workers[1].is_alive());
        assert_eq!(least_loaded(&[5, 0], workers), Some(0), "the idle worker is dead: the busy, running one");

        let peer: PeerId = "peer-on-a-dead-worker".parse().expect("a valid peer id");
        sfu.registry().add_peer(peer.clone(), 1);
        let join = Request::parse(&serde_json::json!({"type": "joinRoom", "data": {"roomId": "r"}})).expect("valid");
        let error = sfu.dispatch(&peer, join).await.expect_err("its worker is gone");
        assert_eq!(error.code, ErrorCode::InternalError);
        assert!(error.message.contains("connect again as a new peer"), "{}", error.message);
        let caps = Request::parse(&serde_json::json!({"type": "getRouterRtpCapabilities"})).expect("valid");
        assert_eq!(sfu.dispatch(&peer, caps).await.expect_err("its worker is gone").code, ErrorCode::InternalError);

        stop(&workers[0]).await;
        assert_eq!(least_loaded(&[0, 0], workers), None, "no worker runs");
        let join = Request::parse(&serde_json::json!({"type": "joinRoom", "data": {"roomId": "r"}})).expect("valid");
        let error = sfu.dispatch(&peer, join).await.expect_err("no worker runs");
        assert!(error.message.contains("restart"), "{}", error.message);
    }
}
