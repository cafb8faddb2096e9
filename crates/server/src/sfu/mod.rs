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
use crate::extract::{BoundedAuth, BoundedRequest, RequestLimit, MAX_AUTH_BYTES};
use crate::limits::{Limits, RequestRate};
use crate::metrics::{request_label, Metrics};
use crate::registry::{AutoConsume, ConsumePlan, Effects, Registry, RegistryCounts, WorkerIndex};
use crate::session::{may_come_back, Delivery, Outbox, Prepared, ResumeError, ResumeIntent};
use serde_json::Value;
use simplesfu_engine::{EngineError, EngineEvent, Worker, WorkerHandle, WorkerSettings};
use simplesfu_proto::{
    success_ack, ConsumerLayersChanged, DataProducerId, ErrorCode, PeerId, ProducerId, Push,
    Request, RequestType, RoomId, ServerShutdown, SignalingError, SIGNALING_EVENT,
};
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;
use socketioxide::SocketIo;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

mod connection;
mod consuming;
mod dynacast;
mod placement;
mod pushes;
mod requests;
mod speakers;

pub use connection::AuthPayloadTooLarge;
use connection::{sweep_orphans, watch_engine_events};
use placement::{least_loaded, worker_stopped};
use pushes::{flush_stalled, resend_available_producers, RoomListState};
use speakers::{speaker_ticks, Speakers};

/// More media workers than this is a configuration mistake.
pub const MAX_WORKERS: usize = 256;

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
    /// Estimate each viewer's bandwidth and send it the layers that fit
    /// (docs/ENGINE.md "Bandwidth allocation"). Off: the best layer for
    /// everyone, at less CPU per forwarded packet.
    pub bandwidth_estimation: bool,
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
    /// STUN/TURN servers told to WHIP and WHEP clients in `Link` headers.
    pub ice_servers: Vec<crate::config::IceServer>,
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
            bandwidth_estimation: true,
            available_producers_interval: Some(Duration::from_millis(1000)),
            token_secret: None,
            limits: Limits::default(),
            metrics_token: None,
            resume_grace: Duration::from_millis(15_000),
            ice_servers: Vec::new(),
        }
    }
}

/// One worker per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}

impl SfuOptions {
    /// The addresses announced in ICE candidates (see [`Self::announced_ips`]);
    /// lists the network interfaces when none are configured.
    pub fn effective_announced_ips(&self) -> Vec<IpAddr> {
        if !self.announced_ips.is_empty() {
            return self.announced_ips.clone();
        }
        let lan = if self.rtc_listen_ip.is_unspecified() {
            crate::netif::lan_addresses()
        } else {
            Vec::new()
        };
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
    /// The socket speaking for the peer and the pushes waiting for it;
    /// `None` for a peer without a socket (a WHIP session), whose pushes
    /// go nowhere.
    outbox: Option<Arc<Mutex<Outbox>>>,
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
    pub(crate) verifier: Option<TokenVerifier>,
    /// WHIP publishers (peers without a socket).
    whip: Mutex<crate::whip::WhipSessions>,
    /// The cluster this node takes part in, if any (`Sfu::set_cluster`).
    pub(crate) cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    /// Rooms across nodes, when the cluster shares a secret.
    pub(crate) span: std::sync::OnceLock<Arc<crate::span::Span>>,
    /// The addresses ICE candidates announce (the first is where other
    /// nodes reach this node's links).
    announced_ips: Vec<IpAddr>,
    pub(crate) limits: Limits,
    pub(crate) metrics: Metrics,
    pub(crate) metrics_token: Option<TokenSecret>,
    resume_grace: Duration,
    /// When each room's `availableProducers` was last sent (see
    /// [`Sfu::send_available_producers`]).
    room_lists: Mutex<HashMap<RoomId, RoomListState>>,
    /// Each room's speaker detection and who wants audio levels.
    speakers: Mutex<Speakers>,
    /// What each simulcast publisher was told it needs to send.
    dynacast: Mutex<dynacast::Dynacast>,
    /// The `Link` headers of WHIP and WHEP answers (ICE servers).
    pub(crate) ice_server_links: Vec<axum::http::HeaderValue>,
}

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
        f.debug_struct("Sfu")
            .field("workers", &self.inner.workers)
            .finish_non_exhaustive()
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
                .with(
                    async move |socket: SocketRef, BoundedAuth(auth): BoundedAuth| {
                        handle.on_connect_with_auth(socket, auth.ok().flatten().as_ref())
                    },
                )
                .with(
                    async move |socket: SocketRef, BoundedAuth(auth): BoundedAuth| {
                        verifier.authenticate(&socket, auth.ok().flatten().as_ref())
                    },
                )
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
        tracing::info!(
            addresses = announced_ips.len(),
            "ICE candidates announce this many addresses"
        );
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
                bandwidth_estimation: options.bandwidth_estimation,
            };
            let (handle, events) =
                Worker::spawn(settings).map_err(|source| SfuError::WorkerSpawn {
                    index,
                    port,
                    source,
                })?;
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
                speakers: Mutex::new(Speakers::default()),
                dynacast: Mutex::new(dynacast::Dynacast::default()),
                whip: Mutex::new(crate::whip::WhipSessions::default()),
                cluster: std::sync::OnceLock::new(),
                span: std::sync::OnceLock::new(),
                announced_ips: announced_ips.clone(),
                ice_server_links: options
                    .ice_servers
                    .iter()
                    .filter(|s| {
                        s.validate()
                            .inspect_err(|error| tracing::warn!(%error, "ICE server left out"))
                            .is_ok()
                    })
                    .filter_map(|s| axum::http::HeaderValue::from_str(&s.link()).ok())
                    .collect(),
            }),
        };
        for (index, events) in event_streams.into_iter().enumerate() {
            runtime.spawn(watch_engine_events(
                Arc::downgrade(&sfu.inner),
                index,
                events,
            ));
        }
        runtime.spawn(sweep_orphans(Arc::downgrade(&sfu.inner)));
        runtime.spawn(flush_stalled(Arc::downgrade(&sfu.inner)));
        runtime.spawn(speaker_ticks(Arc::downgrade(&sfu.inner)));
        runtime.spawn(dynacast::dynacast_ticks(Arc::downgrade(&sfu.inner)));
        runtime.spawn(crate::whip::consent_sweeps(Arc::downgrade(&sfu.inner)));
        if let Some(period) = options
            .available_producers_interval
            .filter(|p| !p.is_zero())
        {
            runtime.spawn(resend_available_producers(
                Arc::downgrade(&sfu.inner),
                period,
            ));
        }
        Ok(sfu)
    }

    /// Counters of peers, rooms, transports, producers and consumers.
    pub fn stats(&self) -> SfuStats {
        SfuStats {
            workers: self.inner.workers.len(),
            signaling: self.registry().counts(),
        }
    }

    /// This node's view of its cluster (`None`: a single node).
    pub fn cluster(&self) -> Option<crate::cluster::ClusterView> {
        self.inner.cluster.get().map(|c| c.view())
    }

    /// Make this SFU a node of `cluster` (once; `Cluster::start` does it).
    pub(crate) fn set_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.inner.cluster.set(cluster);
    }

    pub(crate) fn set_span(&self, span: Arc<crate::span::Span>) {
        let _ = self.inner.span.set(span);
    }

    /// Where other nodes reach this node's links: its first announced
    /// address that is not loopback, else the first.
    pub(crate) fn link_ip(&self) -> Option<IpAddr> {
        let ips = &self.inner.announced_ips;
        ips.iter()
            .find(|ip| !ip.is_loopback())
            .or(ips.first())
            .copied()
    }

    /// The UDP addresses the media workers listen on.
    pub fn rtc_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.inner
            .workers
            .iter()
            .map(WorkerHandle::local_addr)
            .collect()
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
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn links(&self) -> MutexGuard<'_, HashMap<PeerId, PeerLink>> {
        self.inner
            .links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The worker at `index`, if it still runs.
    pub(crate) fn worker(&self, index: WorkerIndex) -> Result<&WorkerHandle, SignalingError> {
        let worker =
            self.inner.workers.get(index).ok_or_else(|| {
                SignalingError::new(ErrorCode::InternalError, "no such media worker")
            })?;
        if worker.is_alive() {
            Ok(worker)
        } else {
            Err(worker_stopped(&self.inner.workers))
        }
    }

    pub(crate) fn whip_sessions(&self) -> MutexGuard<'_, crate::whip::WhipSessions> {
        lock(&self.inner.whip)
    }

    pub(crate) fn queue_of(&self, peer: &PeerId) -> Option<Arc<tokio::sync::Mutex<()>>> {
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
}

/// A peer's outbox, even if a panic poisoned it (its queue stays usable).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Build a success ack's fields from pairs.
pub(crate) fn fields<const N: usize>(pairs: [(&str, Value); N]) -> serde_json::Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
