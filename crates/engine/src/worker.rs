//! A worker: one thread, one UDP socket, one [`Router`]. Commands arrive on a
//! channel and are answered through oneshot replies; datagrams and timers are
//! handled in the same loop, so no lock is ever taken on the packet path.

use crate::api::RemoteNumbering;
use crate::api::*;
use crate::router::{ForwardedPacket, PipedDataProducer, PipedProducer, Router, RouterConfig};
use mediasoup_types::data_structures::{DtlsParameters, IceParameters};
use mediasoup_types::rtp_parameters::RtpCapabilitiesFinalized;
use simplesfu_proto::{ConsumerId, DataConsumerId, DataProducerId, ProducerId, TransportId};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use str0m::net::Protocol;
use tokio::sync::{mpsc, oneshot};

use crate::tcp::{self, IceTcpLimits, TcpCounters};
use crate::udp;

/// How to start a worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// A name for logs and metrics (e.g. `worker-0`).
    pub name: String,
    /// Address the UDP socket binds to.
    pub listen_ip: IpAddr,
    /// UDP port; 0 picks a free one.
    pub port: u16,
    /// Addresses put in ICE candidates, in order of preference: this
    /// machine's addresses, or the public ones behind NAT. Each gets a UDP
    /// and a TCP candidate; loopback addresses rank last. Not empty.
    pub announced_ips: Vec<IpAddr>,
    /// Offer the UDP candidate. Off only to force ICE over TCP (tests, or
    /// networks known to drop UDP).
    pub udp: bool,
    /// Accept ICE over TCP (RFC 6544 passive candidate, RFC 4571 framing) on
    /// the same port number as UDP, for networks that block UDP.
    pub tcp: bool,
    /// Limits of the ICE-TCP listener (connections, deadlines, queue).
    pub ice_tcp_limits: IceTcpLimits,
    /// Estimate viewers' bandwidth and choose layers that fit
    /// ([`RouterConfig::bandwidth_estimation`]).
    pub bandwidth_estimation: bool,
}

impl WorkerSettings {
    /// UDP and TCP candidates on `port` (0: any free port) for one address.
    pub fn new(
        name: impl Into<String>,
        listen_ip: IpAddr,
        port: u16,
        announced_ip: IpAddr,
    ) -> Self {
        WorkerSettings {
            name: name.into(),
            listen_ip,
            port,
            announced_ips: vec![announced_ip],
            udp: true,
            tcp: true,
            ice_tcp_limits: IceTcpLimits::default(),
            bandwidth_estimation: true,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

pub(crate) enum Command {
    CreateTransport(
        WebRtcTransportOptions,
        Option<Box<RemoteNumbering>>,
        Reply<WebRtcTransportInfo>,
    ),
    ConnectTransport(TransportId, DtlsParameters, Reply<()>),
    RestartIce(TransportId, Reply<IceParameters>),
    LastConsent(TransportId, Reply<Option<Instant>>),
    CloseTransport(TransportId, Reply<ClosedProducer>),
    Produce(ProducerOptions, Reply<ProducerId>),
    PauseProducer(ProducerId, bool, Reply<()>),
    CloseProducer(ProducerId, Reply<ClosedProducer>),
    Consume(TransportId, ProducerId, Reply<ConsumerInfo>),
    PauseConsumer(ConsumerId, bool, Reply<()>),
    CloseConsumer(ConsumerId, Reply<()>),
    SetConsumerPreferredLayers(ConsumerId, u8, Option<u8>, Reply<()>),
    SetConsumerPriority(ConsumerId, u8, Reply<()>),
    ProduceData(DataProducerOptions, Reply<DataProducerId>),
    CloseDataProducer(DataProducerId, Reply<Vec<DataConsumerId>>),
    ConsumeData(TransportId, DataProducerId, Reply<DataConsumerInfo>),
    CloseDataConsumer(DataConsumerId, Reply<()>),
    PipeOut(
        ProducerId,
        Arc<str>,
        mpsc::UnboundedSender<Command>,
        Reply<PipedProducer>,
    ),
    PipeIn(PipedProducer, mpsc::UnboundedSender<Command>, Reply<()>),
    PipePackets(Vec<ForwardedPacket>),
    PipeClose(ProducerId),
    /// The origin paused (true) or resumed (false) a piped producer.
    PipePaused(ProducerId, bool),
    PipeKeyframe(ProducerId, Option<usize>),
    DataPipeOut(
        DataProducerId,
        Arc<str>,
        mpsc::UnboundedSender<Command>,
        Reply<PipedDataProducer>,
    ),
    DataPipeIn(PipedDataProducer, Reply<()>),
    PipeData(DataProducerId, bool, Arc<[u8]>),
    DataPipeClose(DataProducerId),
    CreateLink(Box<LinkOptions>, Reply<LinkInfo>),
    ConnectLink(TransportId, String, Reply<()>),
    RelayOut(TransportId, ProducerId, Reply<RelayedProducer>),
    RelayIn(TransportId, Box<RelayedProducer>, Reply<()>),
    RelayDataOut(TransportId, DataProducerId, Reply<RelayedDataProducer>),
    RelayDataIn(TransportId, Box<RelayedDataProducer>, Reply<()>),
    Stats(oneshot::Sender<WorkerStats>),
    Shutdown,
}

/// A cloneable handle to a running worker.
#[derive(Clone)]
pub struct WorkerHandle {
    name: Arc<str>,
    commands: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    rtp_capabilities: Arc<RtpCapabilitiesFinalized>,
    load: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("name", &self.name)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// Starts workers.
#[derive(Debug)]
pub struct Worker;

impl Worker {
    /// Bind the UDP socket and start the worker thread. Events the engine
    /// reports on its own arrive on the returned receiver.
    pub fn spawn(
        settings: WorkerSettings,
    ) -> io::Result<(WorkerHandle, mpsc::UnboundedReceiver<EngineEvent>)> {
        let socket = std::net::UdpSocket::bind(SocketAddr::new(settings.listen_ip, settings.port))?;
        socket.set_nonblocking(true)?;
        let local_addr = socket.local_addr()?;
        if settings.announced_ips.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a worker needs at least one address to announce",
            ));
        }
        let tcp_listener = if settings.tcp {
            // The same port number as UDP when it is free, so one number is opened in firewalls.
            let listener =
                std::net::TcpListener::bind(SocketAddr::new(settings.listen_ip, local_addr.port()))
                    .or_else(|_| {
                        std::net::TcpListener::bind(SocketAddr::new(settings.listen_ip, 0))
                    })?;
            listener.set_nonblocking(true)?;
            Some(listener)
        } else {
            None
        };
        let announced_tcp_addr = match &tcp_listener {
            Some(l) => Some(SocketAddr::new(
                settings.announced_ips[0],
                l.local_addr()?.port(),
            )),
            None => None,
        };
        if !settings.udp && announced_tcp_addr.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a worker needs UDP or TCP (or both)",
            ));
        }
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let router = Router::new(RouterConfig {
            local_addr,
            announced_ips: settings.announced_ips.clone(),
            udp: settings.udp,
            tcp_port: announced_tcp_addr.map(|a| a.port()),
            bandwidth_estimation: settings.bandwidth_estimation,
        });
        let rtp_capabilities = Arc::new(router.rtp_capabilities().clone());
        let name: Arc<str> = settings.name.clone().into();
        let thread_name = settings.name.clone();
        let load = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let load_gauge = load.clone();
        std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(error) => {
                        tracing::error!(%error, "worker could not start its runtime");
                        return;
                    }
                };
                let tcp = tcp_listener.map(|listener| (listener, settings.ice_tcp_limits));
                runtime.block_on(run(router, socket, tcp, cmd_rx, event_tx, load_gauge));
            })?;
        tracing::info!(worker = %name, port = local_addr.port(), tcp_port = ?announced_tcp_addr.map(|a| a.port()), "worker started");
        Ok((
            WorkerHandle {
                name,
                commands: cmd_tx,
                local_addr,
                tcp_addr: announced_tcp_addr,
                rtp_capabilities,
                load,
            },
            event_rx,
        ))
    }
}

async fn run(
    mut router: Router,
    socket: std::net::UdpSocket,
    tcp_listener: Option<(std::net::TcpListener, IceTcpLimits)>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<EngineEvent>,
    load: Arc<std::sync::atomic::AtomicUsize>,
) {
    let socket = match tokio::net::UdpSocket::from_std(socket) {
        Ok(s) => s,
        Err(error) => {
            tracing::error!(%error, "worker could not register its UDP socket");
            return;
        }
    };
    let tcp_counters = Arc::new(TcpCounters::default());
    let queue = tcp_listener
        .as_ref()
        .map_or(1, |(_, limits)| limits.queue.max(1));
    let (tcp_events_tx, mut tcp_events) = mpsc::channel(queue);
    if let Some((listener, limits)) = tcp_listener {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => drop(tokio::spawn(tcp::accept_loop(
                listener,
                limits,
                tcp_events_tx,
                tcp_counters.clone(),
            ))),
            Err(error) => tracing::error!(%error, "worker could not register its TCP listener"),
        }
    }
    let mut tcp_connections = tcp::Connections::default();
    let mut received = udp::RecvBatch::new();
    let mut outgoing: Vec<(SocketAddr, Vec<u8>)> = Vec::with_capacity(256);
    loop {
        let deadline = router.next_timeout(Instant::now());
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
        tokio::select! {
            biased;
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                if !dispatch(&mut router, &tcp_counters, cmd) {
                    break;
                }
                // Take what else is queued (a burst of piped packets from another
                // worker) before polling, so consumers are polled once per burst
                // and a frame's packets leave as one GSO group, as for UDP reads.
                let mut stop = false;
                for _ in 1..COMMAND_BATCH {
                    match commands.try_recv() {
                        Ok(cmd) => {
                            if !dispatch(&mut router, &tcp_counters, cmd) {
                                stop = true;
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
                if stop {
                    break;
                }
            }
            res = udp::recv(&socket, &mut received) => {
                match res {
                    Ok(()) => {
                        let now = Instant::now();
                        for (source, datagram) in received.iter() {
                            router.handle_datagram(now, Protocol::Udp, source, datagram);
                        }
                    }
                    Err(error) => tracing::debug!(%error, "udp receive failed"),
                }
            }
            Some(event) = tcp_events.recv() => {
                if let Some((source, frame)) = tcp_connections.handle(event) {
                    let now = Instant::now();
                    if router.handle_datagram(now, Protocol::Tcp, source, &frame) {
                        tcp_connections.mark_valid(source, now);
                    }
                }
            }
            _ = sleep => router.handle_timeout(Instant::now()),
        }
        // Polled transports' datagrams leave in batches of FLUSH_AT while
        // the rest are polled: the first viewers of a frame do not wait for
        // the whole fan-out.
        loop {
            let done = drain(
                &mut router,
                Instant::now(),
                &mut outgoing,
                &mut tcp_connections,
            );
            if !outgoing.is_empty() {
                udp::send(&socket, &mut outgoing).await;
            }
            if done {
                break;
            }
        }
        for event in router.take_events() {
            let _ = events.send(event);
        }
        load.store(router.load(), std::sync::atomic::Ordering::Relaxed);
    }
    tracing::info!("worker stopped");
}

/// Commands handled per loop iteration at most (then the loop polls, sends
/// and looks at the socket again).
const COMMAND_BATCH: usize = 64;

/// Handle one command; false for shutdown.
fn dispatch(router: &mut Router, tcp: &TcpCounters, cmd: Command) -> bool {
    match cmd {
        Command::Shutdown => return false,
        Command::Stats(reply) => {
            let read = |counter: &std::sync::atomic::AtomicU64| {
                counter.load(std::sync::atomic::Ordering::Relaxed)
            };
            // Answered here, on the worker thread, so the CPU time is this thread's.
            let _ = reply.send(WorkerStats {
                cpu_time_us: thread_cpu_time_us(),
                tcp_connections: read(&tcp.open),
                tcp_connections_refused: read(&tcp.refused),
                tcp_connections_closed_unauthenticated: read(&tcp.closed_unauthenticated),
                tcp_connections_closed_idle: read(&tcp.closed_idle),
                tcp_frames_dropped: read(&tcp.frames_dropped),
                tcp_accept_errors: read(&tcp.accept_errors),
                ..router.stats()
            });
        }
        cmd => router.handle_command(Instant::now(), cmd),
    }
    true
}

/// CPU time of the calling thread, in microseconds (0 where unknown).
fn thread_cpu_time_us() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec we own.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000;
        }
    }
    0
}

/// Poll every transport with work; UDP datagrams wait in `outgoing` for one
/// batched send, TCP frames go to their connection's writer.
fn drain(
    router: &mut Router,
    now: Instant,
    outgoing: &mut Vec<(SocketAddr, Vec<u8>)>,
    tcp: &mut tcp::Connections,
) -> bool {
    router.drain_some(now, FLUSH_AT, |proto, to, bytes| match proto {
        Protocol::Udp => outgoing.push((to, bytes)),
        _ => tcp.send(to, bytes),
    })
}

/// Datagrams polled before they are sent while more transports wait to be
/// polled: about 8 viewers' worth of a video frame, a few sendmmsg calls.
/// Smaller batches cost a syscall per few datagrams; larger ones make the
/// last of them wait for more encryption.
const FLUSH_AT: usize = 64;

impl WorkerHandle {
    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The UDP address the worker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The announced address of the ICE-TCP candidate, when TCP is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The router's RTP capabilities, as mediasoup-client's `Device.load` wants them.
    pub fn rtp_capabilities(&self) -> &RtpCapabilitiesFinalized {
        &self.rtp_capabilities
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| EngineError::WorkerGone)?;
        rx.await.map_err(|_| EngineError::WorkerGone)?
    }

    /// Create a WebRTC transport (ICE-lite, DTLS, SRTP, optional SCTP).
    pub async fn create_webrtc_transport(
        &self,
        options: WebRtcTransportOptions,
    ) -> Result<WebRtcTransportInfo, EngineError> {
        self.call(|r| Command::CreateTransport(options, None, r))
            .await
    }

    /// A receive transport numbered after a client's own offer (WHEP):
    /// see [`RemoteNumbering`].
    pub async fn create_numbered_transport(
        &self,
        options: WebRtcTransportOptions,
        numbering: RemoteNumbering,
    ) -> Result<WebRtcTransportInfo, EngineError> {
        self.call(|r| Command::CreateTransport(options, Some(Box::new(numbering)), r))
            .await
    }

    /// Give the transport the client's DTLS parameters and start DTLS.
    pub async fn connect_webrtc_transport(
        &self,
        id: TransportId,
        dtls_parameters: DtlsParameters,
    ) -> Result<(), EngineError> {
        self.call(|r| Command::ConnectTransport(id, dtls_parameters, r))
            .await
    }

    /// Give the transport new local ICE credentials (mediasoup's
    /// `restartIce`): the client restarts ICE with them and media flows again
    /// over whatever path its new checks find, without producing anew.
    pub async fn restart_ice(&self, id: TransportId) -> Result<IceParameters, EngineError> {
        self.call(|r| Command::RestartIce(id, r)).await
    }

    /// When the transport's client last proved it still wants it (see
    /// [`crate::Router::last_consent`]); `None`: never.
    pub async fn last_consent(&self, id: TransportId) -> Result<Option<Instant>, EngineError> {
        self.call(|r| Command::LastConsent(id, r)).await
    }

    /// Close a transport with everything on it.
    pub async fn close_transport(&self, id: TransportId) -> Result<ClosedProducer, EngineError> {
        self.call(|r| Command::CloseTransport(id, r)).await
    }

    /// Start receiving a track on a send transport.
    pub async fn produce(&self, options: ProducerOptions) -> Result<ProducerId, EngineError> {
        self.call(|r| Command::Produce(options, r)).await
    }

    /// Pause (true) or resume (false) a producer.
    pub async fn set_producer_paused(
        &self,
        id: ProducerId,
        paused: bool,
    ) -> Result<(), EngineError> {
        self.call(|r| Command::PauseProducer(id, paused, r)).await
    }

    /// Close a producer and all its consumers.
    pub async fn close_producer(&self, id: ProducerId) -> Result<ClosedProducer, EngineError> {
        self.call(|r| Command::CloseProducer(id, r)).await
    }

    /// Create a consumer of `producer` on receive transport `transport`. It starts paused.
    pub async fn consume(
        &self,
        transport: TransportId,
        producer: ProducerId,
    ) -> Result<ConsumerInfo, EngineError> {
        self.call(|r| Command::Consume(transport, producer, r))
            .await
    }

    /// Pause (true) or resume (false) a consumer; resuming video asks for a key frame.
    pub async fn set_consumer_paused(
        &self,
        id: ConsumerId,
        paused: bool,
    ) -> Result<(), EngineError> {
        self.call(|r| Command::PauseConsumer(id, paused, r)).await
    }

    /// The highest simulcast (and temporal) layer a video consumer may get;
    /// the bandwidth allocation never goes above it.
    pub async fn set_consumer_preferred_layers(
        &self,
        id: ConsumerId,
        spatial: u8,
        temporal: Option<u8>,
    ) -> Result<(), EngineError> {
        self.call(|r| Command::SetConsumerPreferredLayers(id, spatial, temporal, r))
            .await
    }

    /// A consumer's share of its transport's bandwidth, 1..=255 (higher first).
    pub async fn set_consumer_priority(
        &self,
        id: ConsumerId,
        priority: u8,
    ) -> Result<(), EngineError> {
        self.call(|r| Command::SetConsumerPriority(id, priority, r))
            .await
    }

    /// Close one consumer.
    pub async fn close_consumer(&self, id: ConsumerId) -> Result<(), EngineError> {
        self.call(|r| Command::CloseConsumer(id, r)).await
    }

    /// Start receiving data on a send transport's SCTP stream.
    pub async fn produce_data(
        &self,
        options: DataProducerOptions,
    ) -> Result<DataProducerId, EngineError> {
        self.call(|r| Command::ProduceData(options, r)).await
    }

    /// Close a data producer and its data consumers (returned).
    pub async fn close_data_producer(
        &self,
        id: DataProducerId,
    ) -> Result<Vec<DataConsumerId>, EngineError> {
        self.call(|r| Command::CloseDataProducer(id, r)).await
    }

    /// Create a data consumer of `data_producer` on receive transport `transport`.
    pub async fn consume_data(
        &self,
        transport: TransportId,
        data_producer: DataProducerId,
    ) -> Result<DataConsumerInfo, EngineError> {
        self.call(|r| Command::ConsumeData(transport, data_producer, r))
            .await
    }

    /// Close one data consumer.
    pub async fn close_data_consumer(&self, id: DataConsumerId) -> Result<(), EngineError> {
        self.call(|r| Command::CloseDataConsumer(id, r)).await
    }

    /// Make `producer` (of this worker) consumable on worker `to`: its packets
    /// are piped there and key-frame requests travel back. Done once per
    /// producer and destination; closing the producer closes the pipe and the
    /// consumers on the other side. A no-op when `to` is this worker.
    pub async fn pipe_producer(
        &self,
        producer: ProducerId,
        to: &WorkerHandle,
    ) -> Result<(), EngineError> {
        if self.name == to.name {
            return Ok(());
        }
        let sink = to.commands.clone();
        let piped = self
            .call(|r| Command::PipeOut(producer, to.name.clone(), sink, r))
            .await?;
        let origin = self.commands.clone();
        to.call(|r| Command::PipeIn(piped, origin, r)).await
    }

    /// One end of a link to another node (docs/ENGINE.md "Links between
    /// nodes"): a str0m session over this worker's socket that carries
    /// relayed producers, with SRTP, NACK/RTX and key-frame requests, and a
    /// control channel for closing and pausing them. Give its fingerprint
    /// to the far end, then [`WorkerHandle::connect_link`] with theirs.
    pub async fn create_link(&self, options: LinkOptions) -> Result<LinkInfo, EngineError> {
        self.call(|r| Command::CreateLink(Box::new(options), r))
            .await
    }

    /// Start DTLS (and SCTP) on a link, pinned to the far end's
    /// fingerprint (`sha-256 AB:CD:..`).
    pub async fn connect_link(
        &self,
        link: TransportId,
        remote_fingerprint: String,
    ) -> Result<(), EngineError> {
        self.call(|r| Command::ConnectLink(link, remote_fingerprint, r))
            .await
    }

    /// Relay `producer` (of this worker, its own or piped in) over `link`,
    /// every layer, once per link: give the description to the far end's
    /// [`WorkerHandle::accept_relayed_producer`]. Closing and pausing the
    /// producer reach the far end over the link's control channel.
    pub async fn relay_producer(
        &self,
        link: TransportId,
        producer: ProducerId,
    ) -> Result<RelayedProducer, EngineError> {
        self.call(|r| Command::RelayOut(link, producer, r)).await
    }

    /// Mirror a producer the far end of `link` relays here (same id): local
    /// transports consume it, and other workers get it by
    /// [`WorkerHandle::pipe_producer`], as any producer of this worker.
    pub async fn accept_relayed_producer(
        &self,
        link: TransportId,
        relayed: RelayedProducer,
    ) -> Result<(), EngineError> {
        self.call(|r| Command::RelayIn(link, Box::new(relayed), r))
            .await
    }

    /// Relay a data producer of this worker over `link` (once per link; the
    /// same description again after that): its messages cross on an SCTP
    /// stream of the link's association. Closing it closes its mirror.
    pub async fn relay_data_producer(
        &self,
        link: TransportId,
        data_producer: DataProducerId,
    ) -> Result<RelayedDataProducer, EngineError> {
        self.call(|r| Command::RelayDataOut(link, data_producer, r))
            .await
    }

    /// Mirror a data producer the far end of `link` relays here (same id):
    /// local transports consume it, other workers get it by
    /// [`WorkerHandle::pipe_data_producer`].
    pub async fn accept_relayed_data_producer(
        &self,
        link: TransportId,
        relayed: RelayedDataProducer,
    ) -> Result<(), EngineError> {
        self.call(|r| Command::RelayDataIn(link, Box::new(relayed), r))
            .await
    }

    /// Make `data_producer` (of this worker) consumable on worker `to`: its
    /// messages are piped there. Once per data producer and destination; a
    /// no-op when `to` is this worker.
    pub async fn pipe_data_producer(
        &self,
        data_producer: DataProducerId,
        to: &WorkerHandle,
    ) -> Result<(), EngineError> {
        if self.name == to.name {
            return Ok(());
        }
        let sink = to.commands.clone();
        let piped = self
            .call(|r| Command::DataPipeOut(data_producer, to.name.clone(), sink, r))
            .await?;
        to.call(|r| Command::DataPipeIn(piped, r)).await
    }

    /// How busy the worker is, for placing new peers: transports plus
    /// consumers, updated by the worker as they come and go.
    pub fn load(&self) -> usize {
        self.load.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the worker thread still runs. A worker that panicked or
    /// stopped has dropped its command channel, so every request to it fails
    /// with [`EngineError::WorkerGone`]; place new peers elsewhere.
    pub fn is_alive(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Resolves once the worker thread has stopped (panicked, shut down).
    pub async fn stopped(&self) {
        self.commands.closed().await
    }

    /// The worker's counters.
    pub async fn stats(&self) -> Result<WorkerStats, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Stats(tx))
            .map_err(|_| EngineError::WorkerGone)?;
        rx.await.map_err(|_| EngineError::WorkerGone)
    }

    /// Stop the worker thread (transports die with it).
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }
}
