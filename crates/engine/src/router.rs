//! The router: every transport, producer and consumer of one worker, and the
//! forwarding between them. Plain synchronous code with time as an input: the
//! worker feeds it commands, datagrams and timeouts, then drains what it has
//! to send.

use crate::api::*;
use crate::candidates::HostCandidates;
use crate::capabilities::{ext_id, pt, router_rtp_capabilities};
use crate::forward::{is_keyframe_start, LayerSwitch, SeqRewriter, Vp8Info, Vp8Rewriter};
use crate::pending::PendingMessages;
use crate::rtp_params::{check_producer_parameters, consumer_rtp_parameters, ConsumerRtp};
use crate::sdp::{send_transport_offer, MediaState, RemoteEnd, SendMedia};
use crate::stun;
use crate::worker::Command;
use mediasoup_types::data_structures::{
    DtlsFingerprint, DtlsParameters, DtlsRole, IceParameters,
};
use mediasoup_types::rtp_parameters::{MediaKind, RtpCapabilitiesFinalized, RtpCodecParameters, RtpParameters};
use mediasoup_types::sctp_parameters::{SctpParameters, SctpStreamParameters};
use simplesfu_proto::{ConsumerId, DataConsumerId, DataProducerId, ProducerId, TransportId};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::config::Fingerprint;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, KeyframeRequestKind, MediaKind as StrMediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, ExtensionValues, RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc};

/// Minimum gap between two key-frame requests sent to one producer layer.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// A simulcast layer with no packet for this long is taken as stopped.
const LAYER_INACTIVE_AFTER: Duration = Duration::from_millis(1500);
/// SCTP port announced to clients (the conventional one).
const SCTP_PORT: u16 = 5000;
const SCTP_MAX_MESSAGE_SIZE: u32 = 262_144;
const SCTP_STREAMS: u16 = 1024;
/// m-lines one send transport carries at once: live producers, and closed
/// ones whose slot str0m has not released. A released slot is reused, so
/// only producers alive together count; each `produce` and `closeProducer`
/// writes and parses an offer with all of them on the worker thread.
const MAX_SEND_MEDIA: usize = 64;
/// Network paths one transport may learn (UDP and TCP, address changes).
const MAX_PATHS_PER_TRANSPORT: usize = 8;
/// How far ahead the worker sleeps when nothing is scheduled.
const IDLE_TIMEOUT: Duration = Duration::from_millis(500);
/// The remote ICE password is never sent by mediasoup-client; ICE-lite never
/// needs it, but str0m and the SDP both want one.
const UNKNOWN_REMOTE_PASSWORD: &str = "simplesfu-remote-password-unknown";

/// Where the router's socket is and what its ICE candidates say.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The socket's bound address.
    pub local_addr: SocketAddr,
    /// Addresses announced in ICE candidates, in order of preference
    /// (loopback ones rank last): this machine's addresses, or the public
    /// addresses behind NAT. Each gets a UDP and a TCP candidate.
    pub announced_ips: Vec<IpAddr>,
    /// Offer UDP candidates, on `local_addr`'s port (off only to force ICE over TCP).
    pub udp: bool,
    /// The port of the passive ICE-TCP candidates, if TCP is on.
    pub tcp_port: Option<u16>,
}

struct Transport {
    direction: Direction,
    rtc: Rtc,
    local_ufrag: String,
    /// Our ICE password: a binding request's MESSAGE-INTEGRITY is checked
    /// with it before the router acts on the request.
    local_pass: String,
    /// Remote ICE credentials as set in str0m; `placeholder` until the first STUN request.
    remote_creds: Option<IceCreds>,
    remote_creds_placeholder: bool,
    /// Set by an ICE restart until the first binding request with the new
    /// ufrag: that request may name a new remote ufrag, and the paths
    /// learned before stop being used (see [`Router::restart_ice`]).
    ice_restarting: bool,
    /// Set by connect: the browser's fingerprint (`sha-256 AB:..`) and our DTLS role.
    dtls: Option<DtlsSetup>,
    sctp: bool,
    /// Network paths (protocol, remote address) learned from STUN requests.
    addrs: Vec<(Protocol, SocketAddr)>,
    /// The earliest time this transport has in the timer heap.
    scheduled: Option<Instant>,
    /// Send transports: m-lines in order, live and closed; a released
    /// (rejected) one is the next producer's.
    send_media: Vec<SendMediaEntry>,
    /// Send transports: incoming SSRC to (producer, layer).
    ssrc_routes: HashMap<Ssrc, (ProducerId, usize)>,
    /// Recv transports: consumer by mid.
    consumers_by_mid: HashMap<Mid, ConsumerId>,
    next_consumer_mid: u64,
    used_ssrcs: HashSet<u32>,
    /// Data channels on this transport.
    channels: HashMap<ChannelId, DataRoute>,
    used_stream_ids: HashSet<u16>,
    offer_version: u64,
}

struct DtlsSetup {
    remote_fingerprint: String,
    browser_is_client: bool,
}

struct SendMediaEntry {
    mid: String,
    kind: MediaKind,
    rtp_parameters: RtpParameters,
    producer: Option<ProducerId>,
    state: MediaState,
}

#[derive(Clone, Copy)]
enum DataRoute {
    Producer(DataProducerId),
    Consumer(DataConsumerId),
}

struct Layer {
    rid: Option<Rid>,
    ssrc: Option<u32>,
    last_packet: Option<Instant>,
    last_keyframe_request: Option<Instant>,
}

/// Where a producer's packets come from.
enum ProducerSource {
    /// A send transport of this worker.
    Transport(TransportId),
    /// A producer of another worker, piped here; key-frame requests go back
    /// through the origin worker's command channel.
    Pipe(UnboundedSender<Command>),
}

/// A worker this producer's packets are piped to.
struct PipeOut {
    worker: Arc<str>,
    sink: UnboundedSender<Command>,
}

struct Producer {
    source: ProducerSource,
    pipes: Vec<PipeOut>,
    kind: MediaKind,
    mid: Mid,
    codec: Codec,
    /// Browser payload type to router payload type.
    pt_map: HashMap<u8, Pt>,
    router_codec: RtpCodecParameters,
    router_rtx_pt: Option<u8>,
    msid_stream: Option<String>,
    max_bitrate: Option<u64>,
    layers: Vec<Layer>,
    paused: bool,
    consumers: Vec<ConsumerId>,
}

impl Producer {
    fn transport_id(&self) -> Option<TransportId> {
        match self.source {
            ProducerSource::Transport(tid) => Some(tid),
            ProducerSource::Pipe(_) => None,
        }
    }

    fn is_simulcast(&self) -> bool {
        self.layers.len() > 1
    }

    /// The highest layer that is sending (encodings are ordered low to high).
    fn best_layer(&self, now: Instant) -> Option<usize> {
        (0..self.layers.len()).rev().find(|&i| {
            self.layers[i]
                .last_packet
                .is_some_and(|t| now.saturating_duration_since(t) < LAYER_INACTIVE_AFTER)
        })
    }
}

struct Consumer {
    producer_id: ProducerId,
    transport_id: TransportId,
    kind: MediaKind,
    mid: Mid,
    ssrc: Ssrc,
    paused: bool,
    layers: LayerSwitch,
    seq: SeqRewriter,
    /// Used only when the producer's codec is VP8.
    vp8: Vp8Rewriter,
}

struct DataProducer {
    /// The send transport and channel it arrives on; `None` for a data
    /// producer piped in from another worker.
    source: Option<(TransportId, ChannelId)>,
    pipes: Vec<PipeOut>,
    params: SctpStreamParameters,
    label: String,
    protocol: String,
    consumers: Vec<DataConsumerId>,
}

struct DataConsumer {
    data_producer_id: DataProducerId,
    transport_id: TransportId,
    channel: ChannelId,
    open: bool,
    pending: PendingMessages,
}

/// One RTP packet on its way from a producer to consumers (and pipes).
#[derive(Clone)]
pub(crate) struct ForwardedPacket {
    producer_id: ProducerId,
    layer: usize,
    seq_no: u64,
    timestamp: u32,
    marker: bool,
    /// Already the router's payload type.
    router_pt: Pt,
    /// First packet of a key frame (only looked at for simulcast; known for
    /// every VP8 packet whose descriptor parses).
    keyframe: bool,
    /// The VP8 payload descriptor, parsed once for every consumer; `None` for
    /// other codecs and for payloads whose descriptor does not parse.
    vp8: Option<Vp8Info>,
    arrival: Instant,
    ext: ExtensionValues,
    payload: Arc<[u8]>,
}

/// What a worker needs to mirror a producer of another worker.
pub(crate) struct PipedProducer {
    id: ProducerId,
    kind: MediaKind,
    codec: Codec,
    router_codec: RtpCodecParameters,
    router_rtx_pt: Option<u8>,
    msid_stream: Option<String>,
    max_bitrate: Option<u64>,
    layers: usize,
    paused: bool,
}

/// What a worker needs to mirror a data producer of another worker.
pub(crate) struct PipedDataProducer {
    id: DataProducerId,
    params: SctpStreamParameters,
    label: String,
    protocol: String,
}

/// All media state of one worker.
pub struct Router {
    config: RouterConfig,
    candidates: HostCandidates,
    caps: RtpCapabilitiesFinalized,
    transports: HashMap<TransportId, Transport>,
    by_ufrag: HashMap<String, TransportId>,
    by_addr: HashMap<(Protocol, SocketAddr), TransportId>,
    producers: HashMap<ProducerId, Producer>,
    consumers: HashMap<ConsumerId, Consumer>,
    data_producers: HashMap<DataProducerId, DataProducer>,
    data_consumers: HashMap<DataConsumerId, DataConsumer>,
    dirty: Vec<TransportId>,
    dirty_set: HashSet<TransportId>,
    /// When transports want a timeout input: a min-heap with stale entries
    /// skipped (see `schedule`), so the loop never scans every transport.
    timers: BinaryHeap<Reverse<(Instant, TransportId)>>,
    /// Datagrams produced by polling, handed out by `drain`.
    outbox: Vec<(Protocol, SocketAddr, Vec<u8>)>,
    /// Packets for other workers' pipes, one batch per worker, sent by
    /// `drain` as one command: one channel send (and at most one wake-up of
    /// that worker) per loop iteration instead of one per packet.
    pipe_outbox: Vec<(Arc<str>, UnboundedSender<Command>, Vec<ForwardedPacket>)>,
    events: Vec<EngineEvent>,
    stats: WorkerStats,
}

impl Router {
    /// An empty router listening (through its worker) on `config.local_addr`.
    pub fn new(config: RouterConfig) -> Self {
        let udp_port = config.udp.then_some(config.local_addr.port());
        Router {
            candidates: HostCandidates::new(&config.announced_ips, udp_port, config.tcp_port),
            config,
            caps: router_rtp_capabilities(),
            transports: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            producers: HashMap::new(),
            consumers: HashMap::new(),
            data_producers: HashMap::new(),
            data_consumers: HashMap::new(),
            dirty: Vec::new(),
            dirty_set: HashSet::new(),
            timers: BinaryHeap::new(),
            outbox: Vec::with_capacity(256),
            pipe_outbox: Vec::new(),
            events: Vec::new(),
            stats: WorkerStats::default(),
        }
    }

    /// The router's RTP capabilities.
    pub fn rtp_capabilities(&self) -> &RtpCapabilitiesFinalized {
        &self.caps
    }

    /// Counters.
    pub fn stats(&self) -> WorkerStats {
        WorkerStats {
            transports: self.transports.len(),
            producers: self.producers.len(),
            consumers: self.consumers.len(),
            data_producers: self.data_producers.len(),
            data_consumers: self.data_consumers.len(),
            ..self.stats
        }
    }

    /// The transport has work (written RTP, data, feedback, API calls, a due
    /// timer): poll it in `drain`.
    fn mark_dirty(&mut self, id: TransportId) {
        if self.dirty_set.insert(id) {
            self.dirty.push(id);
        }
    }

    pub(crate) fn handle_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::CreateTransport(o, r) => drop(r.send(self.create_transport(now, o))),
            Command::ConnectTransport(id, d, r) => drop(r.send(self.connect_transport(id, d))),
            Command::RestartIce(id, r) => drop(r.send(self.restart_ice(id))),
            Command::CloseTransport(id, r) => drop(r.send(self.close_transport(id))),
            Command::Produce(o, r) => drop(r.send(self.produce(o))),
            Command::PauseProducer(id, p, r) => drop(r.send(self.set_producer_paused(now, id, p))),
            Command::CloseProducer(id, r) => drop(r.send(self.close_producer(id))),
            Command::Consume(t, p, r) => drop(r.send(self.consume(t, p))),
            Command::PauseConsumer(id, p, r) => drop(r.send(self.set_consumer_paused(now, id, p))),
            Command::CloseConsumer(id, r) => drop(r.send(self.close_consumer(id))),
            Command::ProduceData(o, r) => drop(r.send(self.produce_data(o))),
            Command::CloseDataProducer(id, r) => drop(r.send(self.close_data_producer(id))),
            Command::ConsumeData(t, p, r) => drop(r.send(self.consume_data(t, p))),
            Command::CloseDataConsumer(id, r) => drop(r.send(self.close_data_consumer(id))),
            Command::PipeOut(id, worker, sink, r) => drop(r.send(self.pipe_out(id, worker, sink))),
            Command::PipeIn(piped, origin, r) => {
                self.pipe_in(piped, origin);
                drop(r.send(Ok(())))
            }
            Command::PipePackets(packets) => {
                for packet in packets {
                    self.on_pipe_packet(now, packet);
                }
            }
            Command::PipeClose(id) => self.on_pipe_close(id),
            Command::PipeKeyframe(id, layer) => self.request_keyframe(now, id, layer),
            Command::DataPipeOut(id, worker, sink, r) => drop(r.send(self.data_pipe_out(id, worker, sink))),
            Command::DataPipeIn(piped, r) => {
                self.data_pipe_in(piped);
                drop(r.send(Ok(())))
            }
            Command::PipeData(id, binary, data) => {
                if self.data_producers.get(&id).is_some_and(|d| d.source.is_none()) {
                    self.fan_out_data(id, binary, &data);
                }
            }
            Command::DataPipeClose(id) => self.on_data_pipe_close(id),
            Command::Stats(r) => drop(r.send(self.stats())),
            Command::Shutdown => {}
        }
    }

    // ---------------------------------------------------------------- transports

    /// Create a WebRTC transport.
    pub fn create_transport(
        &mut self,
        now: Instant,
        options: WebRtcTransportOptions,
    ) -> Result<WebRtcTransportInfo, EngineError> {
        let mut rtc = build_rtc(now);
        let creds = rtc.direct_api().local_ice_credentials();
        let (ice_candidates, str0m_candidates) = self.candidates.for_transport(options.force_tcp)?;
        for candidate in str0m_candidates {
            rtc.add_local_candidate(candidate);
        }
        let fingerprint = rtc.direct_api().local_dtls_fingerprint().clone();
        let dtls_fingerprint = to_mediasoup_fingerprint(&fingerprint)?;
        let id = TransportId::new();
        let info = WebRtcTransportInfo {
            id,
            ice_parameters: IceParameters {
                username_fragment: creds.ufrag.clone(),
                password: creds.pass.clone(),
                ice_lite: Some(true),
            },
            ice_candidates,
            dtls_parameters: DtlsParameters { role: DtlsRole::Auto, fingerprints: vec![dtls_fingerprint] },
            sctp_parameters: options.enable_sctp.then_some(SctpParameters {
                port: SCTP_PORT,
                max_send_message_size: SCTP_MAX_MESSAGE_SIZE,
                max_receive_message_size: SCTP_MAX_MESSAGE_SIZE,
                send_buffer_size: SCTP_MAX_MESSAGE_SIZE,
                per_stream_send_queue_limit: SCTP_MAX_MESSAGE_SIZE,
                max_receiver_window_buffer_size: SCTP_MAX_MESSAGE_SIZE,
                is_data_channel: true,
                os: SCTP_STREAMS,
                mis: SCTP_STREAMS,
                max_message_size: SCTP_MAX_MESSAGE_SIZE,
            }),
        };
        self.by_ufrag.insert(creds.ufrag.clone(), id);
        self.transports.insert(
            id,
            Transport {
                direction: options.direction,
                rtc,
                local_ufrag: creds.ufrag,
                local_pass: creds.pass,
                remote_creds: None,
                remote_creds_placeholder: false,
                ice_restarting: false,
                dtls: None,
                sctp: options.enable_sctp,
                addrs: Vec::new(),
                scheduled: None,
                send_media: Vec::new(),
                ssrc_routes: HashMap::new(),
                consumers_by_mid: HashMap::new(),
                next_consumer_mid: 0,
                used_ssrcs: HashSet::from([1234]),
                channels: HashMap::new(),
                used_stream_ids: HashSet::new(),
                offer_version: 1,
            },
        );
        self.mark_dirty(id);
        tracing::debug!(transport = %id, direction = ?options.direction, "transport created");
        Ok(info)
    }

    /// Give a transport the client's DTLS parameters and start DTLS (and SCTP).
    pub fn connect_transport(&mut self, id: TransportId, dtls: DtlsParameters) -> Result<(), EngineError> {
        let t = self.transports.get_mut(&id).ok_or(EngineError::TransportNotFound(id))?;
        if t.dtls.is_some() {
            return Err(EngineError::AlreadyConnected(id));
        }
        // mediasoup-client uses the last fingerprint it is given; prefer sha-256 among the client's.
        let chosen = dtls
            .fingerprints
            .iter()
            .find(|f| matches!(f, DtlsFingerprint::Sha256 { .. }))
            .or_else(|| dtls.fingerprints.iter().find(|f| matches!(f, DtlsFingerprint::Sha1 { .. })))
            .ok_or_else(|| {
                EngineError::InvalidDtlsParameters("no sha-256 or sha-1 fingerprint among the client's".into())
            })?;
        let remote = from_mediasoup_fingerprint(chosen);
        let browser_is_client = !matches!(dtls.role, DtlsRole::Server);
        let remote_fingerprint = remote.to_string();
        let mut api = t.rtc.direct_api();
        api.set_remote_fingerprint(remote);
        // The browser as DTLS client means we are the passive (server) end.
        api.start_dtls(!browser_is_client).map_err(|e| EngineError::Internal(format!("DTLS start failed: {e}")))?;
        if t.sctp {
            // As SCTP client both ends sent INIT and opening took a second; the DTLS server is the SCTP server.
            api.start_sctp(!browser_is_client);
        }
        t.dtls = Some(DtlsSetup { remote_fingerprint, browser_is_client });
        self.mark_dirty(id);
        tracing::debug!(transport = %id, "transport connected");
        Ok(())
    }

    /// New local ICE credentials for a transport. Requests with the old ufrag
    /// no longer reach it. The first request with the new one may carry a new
    /// remote ufrag (browsers restart their side too), and the paths learned
    /// before it are dropped: str0m keeps a nominated pair while it had a
    /// request in the last 15 s and prefers it at equal priority, so without
    /// this media would keep going to the broken path. A dropped address is
    /// ignored by this transport from then on. DTLS, SCTP, producers and
    /// consumers stay as they are.
    pub fn restart_ice(&mut self, id: TransportId) -> Result<IceParameters, EngineError> {
        let t = self.transports.get_mut(&id).ok_or(EngineError::TransportNotFound(id))?;
        let creds = IceCreds::new();
        t.rtc.direct_api().set_local_ice_credentials(creds.clone());
        let old = std::mem::replace(&mut t.local_ufrag, creds.ufrag.clone());
        t.local_pass = creds.pass.clone();
        t.ice_restarting = true;
        self.by_ufrag.remove(&old);
        self.by_ufrag.insert(creds.ufrag.clone(), id);
        self.mark_dirty(id);
        tracing::debug!(transport = %id, "ICE restarted");
        Ok(IceParameters { username_fragment: creds.ufrag, password: creds.pass, ice_lite: Some(true) })
    }

    /// Close a transport with everything on it.
    pub fn close_transport(&mut self, id: TransportId) -> Result<ClosedProducer, EngineError> {
        let (closed, _) = self.remove_transport(id)?;
        Ok(closed)
    }

    fn remove_transport(&mut self, id: TransportId) -> Result<(ClosedProducer, Vec<ProducerId>), EngineError> {
        if !self.transports.contains_key(&id) {
            return Err(EngineError::TransportNotFound(id));
        }
        let producers: Vec<ProducerId> =
            self.producers.iter().filter(|(_, p)| p.transport_id() == Some(id)).map(|(pid, _)| *pid).collect();
        let mut closed = ClosedProducer::default();
        for pid in &producers {
            if let Ok(c) = self.remove_producer(*pid, false) {
                closed.consumers.extend(c.consumers);
            }
        }
        let consumers: Vec<ConsumerId> =
            self.consumers.iter().filter(|(_, c)| c.transport_id == id).map(|(cid, _)| *cid).collect();
        for cid in consumers {
            let _ = self.close_consumer(cid);
        }
        let data_producers: Vec<DataProducerId> =
            self.data_producers.iter().filter(|(_, d)| d.source.is_some_and(|(t, _)| t == id)).map(|(k, _)| *k).collect();
        for d in data_producers {
            let _ = self.close_data_producer(d);
        }
        let data_consumers: Vec<DataConsumerId> =
            self.data_consumers.iter().filter(|(_, d)| d.transport_id == id).map(|(k, _)| *k).collect();
        for d in data_consumers {
            let _ = self.close_data_consumer(d);
        }
        if let Some(mut t) = self.transports.remove(&id) {
            t.rtc.disconnect();
            self.by_ufrag.remove(&t.local_ufrag);
            for path in t.addrs {
                if self.by_addr.get(&path) == Some(&id) {
                    self.by_addr.remove(&path);
                }
            }
        }
        self.dirty_set.remove(&id);
        self.dirty.retain(|d| *d != id);
        tracing::debug!(transport = %id, "transport closed");
        Ok((closed, producers))
    }

    fn transport_mut(&mut self, id: TransportId, direction: Direction) -> Result<&mut Transport, EngineError> {
        let t = self.transports.get_mut(&id).ok_or(EngineError::TransportNotFound(id))?;
        if t.direction != direction {
            return Err(EngineError::WrongDirection(id));
        }
        Ok(t)
    }

    // ---------------------------------------------------------------- producers

    /// Start receiving a track on a send transport.
    pub fn produce(&mut self, options: ProducerOptions) -> Result<ProducerId, EngineError> {
        let tid = options.transport_id;
        let caps = self.caps.clone();
        let t = self.transport_mut(tid, Direction::Send)?;
        if t.dtls.is_none() {
            return Err(EngineError::NotConnected(tid));
        }
        let checked = check_producer_parameters(&caps, options.kind, &options.rtp_parameters)?;
        let mid_text = options.rtp_parameters.mid.clone().unwrap_or_default();
        if t.send_media.iter().any(|m| m.mid == mid_text) {
            return Err(EngineError::InvalidRtpParameters(format!("mid {mid_text:?} is already used on this transport")));
        }
        if let Some(ssrc) = ssrcs_of(&options.rtp_parameters).find(|ssrc| t.used_ssrcs.contains(ssrc)) {
            return Err(EngineError::InvalidRtpParameters(format!("ssrc {ssrc} is already used on this transport")));
        }
        // A closed producer's released m-line takes the new one, so
        // produce/close churn does not grow the offer.
        let slot = t.send_media.iter().position(|m| m.state == MediaState::Rejected);
        if slot.is_none() && t.send_media.len() >= MAX_SEND_MEDIA {
            return Err(EngineError::TooManyProducers { transport: tid, limit: MAX_SEND_MEDIA });
        }
        // The remote ICE credentials in the offer must equal those set in str0m.
        if t.remote_creds.is_none() {
            let placeholder = IceCreds { ufrag: "pending".into(), pass: UNKNOWN_REMOTE_PASSWORD.into() };
            t.rtc.direct_api().set_remote_ice_credentials(placeholder.clone());
            t.remote_creds = Some(placeholder);
            t.remote_creds_placeholder = true;
        }
        let producer_id = ProducerId::new();
        let entry = SendMediaEntry {
            mid: mid_text.clone(),
            kind: options.kind,
            rtp_parameters: options.rtp_parameters.clone(),
            producer: Some(producer_id),
            state: MediaState::Sending,
        };
        let recycled = match slot {
            Some(i) => Some((i, std::mem::replace(&mut t.send_media[i], entry))),
            None => {
                t.send_media.push(entry);
                None
            }
        };
        if let Err(e) = apply_send_offer(tid, t) {
            match recycled {
                Some((i, old)) => t.send_media[i] = old,
                None => drop(t.send_media.pop()),
            }
            return Err(e);
        }
        if let Some((_, old)) = recycled {
            // str0m dropped the old mid's streams with the slot.
            for ssrc in ssrcs_of(&old.rtp_parameters) {
                t.used_ssrcs.remove(&ssrc);
            }
        }
        t.used_ssrcs.extend(ssrcs_of(&options.rtp_parameters));
        let layers = options
            .rtp_parameters
            .encodings
            .iter()
            .map(|e| Layer {
                rid: e.rid.as_deref().map(Rid::from),
                ssrc: e.ssrc,
                last_packet: None,
                last_keyframe_request: None,
            })
            .collect();
        let producer = Producer {
            source: ProducerSource::Transport(tid),
            pipes: Vec::new(),
            kind: options.kind,
            mid: Mid::from(mid_text.as_str()),
            codec: checked.codec,
            pt_map: checked.pt_map,
            router_codec: checked.router_codec,
            router_rtx_pt: checked.router_rtx_pt,
            msid_stream: options.rtp_parameters.msid.as_deref().and_then(|m| m.split(' ').next()).map(str::to_owned),
            max_bitrate: options.rtp_parameters.encodings.iter().filter_map(|e| e.max_bitrate).max(),
            layers,
            paused: options.paused,
            consumers: Vec::new(),
        };
        self.producers.insert(producer_id, producer);
        self.mark_dirty(tid);
        tracing::debug!(producer = %producer_id, transport = %tid, mid = %mid_text, "producer created");
        Ok(producer_id)
    }

    /// Pause or resume a producer. Resuming asks for a key frame for its consumers.
    pub fn set_producer_paused(&mut self, now: Instant, id: ProducerId, paused: bool) -> Result<(), EngineError> {
        let p = self.producers.get_mut(&id).ok_or(EngineError::ProducerNotFound(id))?;
        let was = p.paused;
        p.paused = paused;
        if was && !paused && p.kind == MediaKind::Video {
            self.request_keyframe(now, id, None);
        }
        Ok(())
    }

    /// Close a producer and all its consumers.
    pub fn close_producer(&mut self, id: ProducerId) -> Result<ClosedProducer, EngineError> {
        self.remove_producer(id, true)
    }

    /// Close a producer; with `release_slot`, tell str0m at once that its
    /// m-line is rejected, so the next `produce` can reuse it (not worth an
    /// offer when the whole transport goes).
    fn remove_producer(&mut self, id: ProducerId, release_slot: bool) -> Result<ClosedProducer, EngineError> {
        let p = self.producers.remove(&id).ok_or(EngineError::ProducerNotFound(id))?;
        for pipe in &p.pipes {
            let _ = pipe.sink.send(Command::PipeClose(id));
        }
        if let Some((tid, t)) = p.transport_id().and_then(|tid| Some((tid, self.transports.get_mut(&tid)?))) {
            t.ssrc_routes.retain(|_, (pid, _)| *pid != id);
            if let Some(i) = t.send_media.iter().position(|m| m.producer == Some(id)) {
                t.send_media[i].producer = None;
                t.send_media[i].state = MediaState::Inactive;
                // Without a live m-line there is no BUNDLE group, which str0m
                // requires: the slot is then released by the next produce.
                if release_slot && t.send_media.iter().any(|m| m.state == MediaState::Sending) {
                    if let Err(error) = apply_send_offer(tid, t) {
                        tracing::debug!(producer = %id, transport = %tid, %error, "m-line of a closed producer not released");
                    }
                }
            }
        }
        let mut closed = ClosedProducer::default();
        for cid in p.consumers {
            self.remove_consumer(cid);
            closed.consumers.push(cid);
        }
        tracing::debug!(producer = %id, consumers = closed.consumers.len(), "producer closed");
        Ok(closed)
    }

    // ---------------------------------------------------------------- consumers

    /// Create a consumer of `producer_id` on receive transport `tid`. It starts paused.
    pub fn consume(&mut self, tid: TransportId, producer_id: ProducerId) -> Result<ConsumerInfo, EngineError> {
        let producer = self.producers.get(&producer_id).ok_or(EngineError::ProducerNotFound(producer_id))?;
        let kind = producer.kind;
        let router_codec = producer.router_codec.clone();
        let router_rtx_pt = producer.router_rtx_pt;
        let simulcast = producer.is_simulcast();
        let producer_paused = producer.paused;
        let msid_stream = producer.msid_stream.clone();
        let max_bitrate = producer.max_bitrate;
        let layer_count = producer.layers.len();
        let t = self.transport_mut(tid, Direction::Recv)?;
        let mid_text = t.next_consumer_mid.to_string();
        t.next_consumer_mid += 1;
        let mid = Mid::from(mid_text.as_str());
        let mut api = t.rtc.direct_api();
        let ssrc = fresh_ssrc(&mut t.used_ssrcs, || api.new_ssrc());
        let rtx = router_rtx_pt.map(|_| fresh_ssrc(&mut t.used_ssrcs, || api.new_ssrc()));
        let str0m_kind = match kind {
            MediaKind::Audio => StrMediaKind::Audio,
            MediaKind::Video => StrMediaKind::Video,
        };
        api.declare_media(mid, str0m_kind);
        api.declare_stream_tx(ssrc, rtx, mid, None);
        let cname = t.rtc.media(mid).map(|m| m.cname().to_owned());
        let consumer_id = ConsumerId::new();
        t.consumers_by_mid.insert(mid, consumer_id);
        let rtp_parameters = consumer_rtp_parameters(ConsumerRtp {
            kind,
            mid: mid_text,
            router_codec,
            router_rtx_pt,
            ssrc: *ssrc,
            rtx: rtx.map(|r| *r),
            cname,
            msid: msid_stream.map(|s| format!("{s} {consumer_id}")),
            max_bitrate,
            layer_count,
        });
        self.consumers.insert(
            consumer_id,
            Consumer {
                producer_id,
                transport_id: tid,
                kind,
                mid,
                ssrc,
                paused: true,
                layers: LayerSwitch::new(simulcast),
                seq: SeqRewriter::new(),
                vp8: Vp8Rewriter::new(),
            },
        );
        if let Some(p) = self.producers.get_mut(&producer_id) {
            p.consumers.push(consumer_id);
        }
        self.mark_dirty(tid);
        tracing::debug!(consumer = %consumer_id, producer = %producer_id, transport = %tid, "consumer created");
        Ok(ConsumerInfo {
            id: consumer_id,
            producer_id,
            kind,
            rtp_parameters,
            consumer_type: if simulcast { "simulcast" } else { "simple" },
            producer_paused,
        })
    }

    /// Pause or resume a consumer. Resuming a video consumer asks for a key frame.
    pub fn set_consumer_paused(&mut self, now: Instant, id: ConsumerId, paused: bool) -> Result<(), EngineError> {
        let c = self.consumers.get_mut(&id).ok_or(EngineError::ConsumerNotFound(id))?;
        c.paused = paused;
        let (kind, producer) = (c.kind, c.producer_id);
        if !paused && kind == MediaKind::Video {
            // The decoder needs a key frame to start (or restart) after a gap.
            c.layers.restart();
            self.request_keyframe(now, producer, None);
        }
        if !paused {
            if let Some(c) = self.consumers.get_mut(&id) {
                // Continue right after the last packet sent, whatever the producer sent meanwhile.
                c.seq.rebase();
                c.vp8.rebase();
            }
        }
        Ok(())
    }

    /// Close one consumer.
    pub fn close_consumer(&mut self, id: ConsumerId) -> Result<(), EngineError> {
        if !self.consumers.contains_key(&id) {
            return Err(EngineError::ConsumerNotFound(id));
        }
        self.remove_consumer(id);
        Ok(())
    }

    fn remove_consumer(&mut self, id: ConsumerId) {
        let Some(c) = self.consumers.remove(&id) else { return };
        if let Some(p) = self.producers.get_mut(&c.producer_id) {
            p.consumers.retain(|x| *x != id);
        }
        if let Some(t) = self.transports.get_mut(&c.transport_id) {
            t.consumers_by_mid.remove(&c.mid);
            t.rtc.direct_api().remove_media(c.mid);
            self.mark_dirty(c.transport_id);
        }
    }

    // ---------------------------------------------------------------- data

    /// Start receiving data on a send transport's SCTP stream.
    pub fn produce_data(&mut self, o: DataProducerOptions) -> Result<DataProducerId, EngineError> {
        let tid = o.transport_id;
        let t = self.transport_mut(tid, Direction::Send)?;
        if !t.sctp {
            return Err(EngineError::InvalidSctpParameters("the transport was created without SCTP".into()));
        }
        if t.dtls.is_none() {
            return Err(EngineError::NotConnected(tid));
        }
        let stream_id = o.sctp_stream_parameters.stream_id;
        if stream_id >= SCTP_STREAMS || t.used_stream_ids.contains(&stream_id) {
            return Err(EngineError::InvalidSctpParameters(format!(
                "stream id {stream_id} is in use or out of range (0..{SCTP_STREAMS})"
            )));
        }
        let reliability = reliability_of(&o.sctp_stream_parameters)?;
        let channel = t.rtc.direct_api().create_data_channel(ChannelConfig {
            label: o.label.clone(),
            ordered: o.sctp_stream_parameters.ordered,
            reliability,
            negotiated: Some(stream_id),
            protocol: o.protocol.clone(),
        });
        t.used_stream_ids.insert(stream_id);
        let id = DataProducerId::new();
        t.channels.insert(channel, DataRoute::Producer(id));
        self.data_producers.insert(
            id,
            DataProducer {
                source: Some((tid, channel)),
                pipes: Vec::new(),
                params: o.sctp_stream_parameters,
                label: o.label,
                protocol: o.protocol,
                consumers: Vec::new(),
            },
        );
        self.mark_dirty(tid);
        Ok(id)
    }

    /// Close a data producer and its data consumers.
    pub fn close_data_producer(&mut self, id: DataProducerId) -> Result<Vec<DataConsumerId>, EngineError> {
        let d = self.data_producers.remove(&id).ok_or(EngineError::DataProducerNotFound(id))?;
        for pipe in &d.pipes {
            let _ = pipe.sink.send(Command::DataPipeClose(id));
        }
        if let Some((tid, channel)) = d.source {
            if let Some(t) = self.transports.get_mut(&tid) {
                close_channel(t, channel, d.params.stream_id);
                self.mark_dirty(tid);
            }
        }
        for cid in &d.consumers {
            self.remove_data_consumer(*cid);
        }
        Ok(d.consumers)
    }

    /// Create a data consumer on receive transport `tid`; the server picks the stream id.
    pub fn consume_data(&mut self, tid: TransportId, dp: DataProducerId) -> Result<DataConsumerInfo, EngineError> {
        let producer = self.data_producers.get(&dp).ok_or(EngineError::DataProducerNotFound(dp))?;
        let (params, label, protocol) = (producer.params, producer.label.clone(), producer.protocol.clone());
        let t = self.transport_mut(tid, Direction::Recv)?;
        if !t.sctp {
            return Err(EngineError::InvalidSctpParameters("the receive transport was created without SCTP".into()));
        }
        let stream_id = (0..SCTP_STREAMS)
            .find(|s| !t.used_stream_ids.contains(s))
            .ok_or_else(|| EngineError::InvalidSctpParameters("no free SCTP stream id left".into()))?;
        let reliability = reliability_of(&params)?;
        let channel = t.rtc.direct_api().create_data_channel(ChannelConfig {
            label: label.clone(),
            ordered: params.ordered,
            reliability,
            negotiated: Some(stream_id),
            protocol: protocol.clone(),
        });
        t.used_stream_ids.insert(stream_id);
        let id = DataConsumerId::new();
        t.channels.insert(channel, DataRoute::Consumer(id));
        self.data_consumers.insert(
            id,
            DataConsumer { data_producer_id: dp, transport_id: tid, channel, open: false, pending: PendingMessages::default() },
        );
        if let Some(p) = self.data_producers.get_mut(&dp) {
            p.consumers.push(id);
        }
        self.mark_dirty(tid);
        Ok(DataConsumerInfo {
            id,
            data_producer_id: dp,
            sctp_stream_parameters: SctpStreamParameters { stream_id, ..params },
            label,
            protocol,
        })
    }

    /// Close one data consumer.
    pub fn close_data_consumer(&mut self, id: DataConsumerId) -> Result<(), EngineError> {
        if !self.data_consumers.contains_key(&id) {
            return Err(EngineError::DataConsumerNotFound(id));
        }
        self.remove_data_consumer(id);
        Ok(())
    }

    fn remove_data_consumer(&mut self, id: DataConsumerId) {
        let Some(d) = self.data_consumers.remove(&id) else { return };
        if let Some(p) = self.data_producers.get_mut(&d.data_producer_id) {
            p.consumers.retain(|x| *x != id);
        }
        if let Some(t) = self.transports.get_mut(&d.transport_id) {
            let stream_id = t.rtc.direct_api().sctp_stream_id_by_channel_id(d.channel);
            if let Some(stream_id) = stream_id {
                close_channel(t, d.channel, stream_id);
            }
            self.mark_dirty(d.transport_id);
        }
    }

    // ---------------------------------------------------------------- I/O

    /// A datagram arrived: on the UDP socket, or a whole RFC 4571 frame on an
    /// ICE-TCP connection (`proto` says which). True when it came on a path
    /// the transport learned from a binding request str0m answered (its
    /// MESSAGE-INTEGRITY holds), this one included. The worker keeps an
    /// ICE-TCP connection open only while it sends such datagrams, so a
    /// transport holds at most as many as it has path slots.
    pub fn handle_datagram(&mut self, now: Instant, proto: Protocol, source: SocketAddr, data: &[u8]) -> bool {
        let tid = match stun::binding_request_username(data) {
            Some(username) => {
                // USERNAME is `ourUfrag:theirUfrag`.
                let mut parts = username.splitn(2, ':');
                let local = parts.next().unwrap_or_default();
                let remote = parts.next().unwrap_or_default();
                let Some(&tid) = self.by_ufrag.get(local) else {
                    self.stats.datagrams_dropped += 1;
                    return false;
                };
                let Some(t) = self.transports.get_mut(&tid) else {
                    self.stats.datagrams_dropped += 1;
                    return false;
                };
                // Nothing below may act on a request whose password is
                // wrong: a stranger who saw or guessed the ufrags could
                // otherwise set a wrong remote ufrag before the client's
                // first check (str0m would then refuse the client) or end an
                // ICE restart on their own address. str0m would ignore such
                // a request anyway; count it, so probing shows.
                if !stun::integrity_holds(data, &t.local_pass) {
                    self.stats.datagrams_dropped += 1;
                    return false;
                }
                if std::mem::take(&mut t.ice_restarting) {
                    for path in forget_other_paths(t, (proto, source)) {
                        if self.by_addr.get(&path) == Some(&tid) {
                            self.by_addr.remove(&path);
                        }
                    }
                    // The restarted client may come with a new ufrag.
                    t.remote_creds_placeholder = true;
                }
                learn_remote_ufrag(t, remote);
                tid
            }
            None => match self.by_addr.get(&(proto, source)) {
                Some(&tid) => tid,
                None => {
                    self.stats.datagrams_dropped += 1;
                    return false;
                }
            },
        };
        let Some(t) = self.transports.get_mut(&tid) else {
            self.stats.datagrams_dropped += 1;
            return false;
        };
        let destination = self.candidates.destination(proto, self.config.local_addr);
        let receive = match Receive::new(proto, source, destination, data) {
            Ok(r) => r,
            Err(_) => {
                self.stats.datagrams_dropped += 1;
                return false;
            }
        };
        if let Err(error) = t.rtc.handle_input(Input::Receive(now, receive)) {
            self.stats.datagrams_dropped += 1;
            tracing::debug!(transport = %tid, %error, "datagram refused");
        }
        let path = (proto, source);
        let new_path = stun::is_stun(data) && !t.addrs.contains(&path) && t.addrs.len() < MAX_PATHS_PER_TRANSPORT;
        let sent_before = self.outbox.len();
        // str0m keeps only the last input's event unless it is polled after
        // every input: poll the receiving transport now. The consumers it
        // writes to are polled once per batch, in `drain`.
        self.poll_transport(now, tid);
        // Learn a path only from a request str0m answered, i.e. whose
        // MESSAGE-INTEGRITY checked out: a stranger who saw the ufrag cannot
        // fill the transport's path slots.
        let answered = self.outbox[sent_before..].iter().any(|(p, to, _)| *p == proto && *to == source);
        if !answered && stun::binding_request_username(data).is_some() {
            // str0m ignores a request whose integrity fails: count it, so a
            // stranger probing a known ufrag shows in the worker's figures.
            self.stats.datagrams_dropped += 1;
        }
        if new_path && answered {
            if let Some(t) = self.transports.get_mut(&tid) {
                t.addrs.push(path);
                self.by_addr.insert(path, tid);
            }
        }
        self.by_addr.get(&path) == Some(&tid)
    }

    /// Time passed: drive every transport whose timer is due (polling a
    /// transport feeds it the timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, tid))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            // Entries superseded by an earlier one, or of closed transports, are stale.
            let due = match self.transports.get_mut(&tid) {
                Some(t) if t.scheduled == Some(at) => {
                    t.scheduled = None;
                    true
                }
                _ => false,
            };
            if due {
                self.mark_dirty(tid);
            }
        }
    }

    /// When the router next needs [`Router::handle_timeout`] (never later
    /// than a short idle period).
    pub fn next_timeout(&self, now: Instant) -> Instant {
        let idle = now + IDLE_TIMEOUT;
        self.timers.peek().map_or(idle, |Reverse((at, _))| (*at).min(idle))
    }

    /// Keep the heap's entry for `tid` at or before `at`. A later entry that
    /// fires early only makes the transport be polled early, which is harmless.
    fn schedule(&mut self, tid: TransportId, at: Instant) {
        let Some(t) = self.transports.get_mut(&tid) else { return };
        if t.scheduled.is_none_or(|s| at < s) {
            t.scheduled = Some(at);
            self.timers.push(Reverse((at, tid)));
        }
    }

    /// Poll every transport that has work, then hand every datagram to
    /// `send`. Consumers written to by a whole batch of input are polled once.
    pub fn drain(&mut self, now: Instant, mut send: impl FnMut(Protocol, SocketAddr, Vec<u8>)) {
        for (_, sink, packets) in self.pipe_outbox.iter_mut() {
            if !packets.is_empty() {
                // A worker that is gone drops the batch; its pipes go at the next packet.
                let _ = sink.send(Command::PipePackets(std::mem::take(packets)));
            }
        }
        while let Some(tid) = self.dirty.pop() {
            self.dirty_set.remove(&tid);
            self.poll_transport(now, tid);
        }
        for (proto, to, bytes) in self.outbox.drain(..) {
            send(proto, to, bytes);
        }
    }

    /// Events for the owner of the worker.
    pub fn take_events(&mut self) -> Vec<EngineEvent> {
        std::mem::take(&mut self.events)
    }

    /// Poll one transport until str0m has nothing more; datagrams go to the
    /// outbox, events are handled (which may mark other transports dirty).
    fn poll_transport(&mut self, now: Instant, tid: TransportId) {
        if let Some(t) = self.transports.get_mut(&tid) {
            // str0m releases written RTP and queued feedback only on a
            // timeout input; feeding it only when its timer was due delayed
            // forwarded packets (p99 went from 12 ms to 130+ ms in the bench).
            if let Err(error) = t.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(transport = %tid, %error, "timeout handling failed");
            }
        }
        loop {
            let Some(t) = self.transports.get_mut(&tid) else { return };
            match t.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    self.schedule(tid, at);
                    break;
                }
                Ok(Output::Transmit(tx)) => self.outbox.push((tx.proto, tx.destination, tx.contents.into())),
                Ok(Output::Event(event)) => self.handle_event(now, tid, event),
                Err(error) => {
                    tracing::debug!(transport = %tid, %error, "transport failed");
                    self.transport_died(tid, format!("media engine error: {error}"));
                    return;
                }
            }
        }
        let alive = self.transports.get(&tid).is_some_and(|t| t.rtc.is_alive());
        if !alive {
            self.transport_died(tid, "the connection closed (ICE timeout or DTLS close)".into());
        }
    }

    fn transport_died(&mut self, tid: TransportId, reason: String) {
        if let Ok((closed, producers)) = self.remove_transport(tid) {
            tracing::info!(transport = %tid, %reason, "transport closed by the engine");
            self.events.push(EngineEvent::TransportClosed {
                transport_id: tid,
                reason,
                producers_closed: producers,
                consumers_closed: closed.consumers,
            });
        }
    }

    fn handle_event(&mut self, now: Instant, tid: TransportId, event: Event) {
        match event {
            Event::RtpPacket(packet) => self.forward_rtp(now, tid, packet),
            Event::KeyframeRequest(req) => {
                let consumer = self.transports.get(&tid).and_then(|t| t.consumers_by_mid.get(&req.mid)).copied();
                if let Some(c) = consumer.and_then(|cid| self.consumers.get(&cid)) {
                    let (producer, layer) = (c.producer_id, c.layers.current());
                    self.request_keyframe(now, producer, layer);
                }
            }
            Event::ChannelOpen(channel, _) => self.on_channel_open(tid, channel),
            Event::ChannelData(data) => self.on_channel_data(tid, data.id, data.binary, &data.data),
            Event::ChannelBufferedAmountLow(_) => self.on_send_buffer_low(tid),
            Event::IceConnectionStateChange(state) => {
                tracing::debug!(transport = %tid, ?state, "ICE state");
                if state == IceConnectionState::Disconnected {
                    tracing::debug!(transport = %tid, "ICE disconnected");
                }
            }
            Event::Connected => {
                tracing::debug!(transport = %tid, "ICE and DTLS connected");
                self.on_transport_connected(now, tid);
            }
            _ => {}
        }
    }

    /// A transport became usable. Its resumed video consumers were created
    /// before it could carry media, so the key frame they started from never
    /// reached the viewer: ask their producers for a new one now rather than
    /// leave the viewer waiting for the sender's next periodic key frame.
    fn on_transport_connected(&mut self, now: Instant, tid: TransportId) {
        let Some(t) = self.transports.get(&tid) else { return };
        let wanted: Vec<(ProducerId, Option<usize>)> = t
            .consumers_by_mid
            .values()
            .filter_map(|cid| self.consumers.get(cid))
            .filter(|c| !c.paused && c.kind == MediaKind::Video)
            .map(|c| (c.producer_id, c.layers.current()))
            .collect();
        for (producer, layer) in wanted {
            self.request_keyframe(now, producer, layer);
        }
    }

    // ---------------------------------------------------------------- forwarding

    fn route_of(&mut self, tid: TransportId, ssrc: Ssrc) -> Option<(ProducerId, usize)> {
        let t = self.transports.get_mut(&tid)?;
        if let Some(route) = t.ssrc_routes.get(&ssrc) {
            return Some(*route);
        }
        let (mid, rid) = {
            let stream = t.rtc.direct_api().stream_rx(&ssrc).map(|s| (s.mid(), s.rid()))?;
            stream
        };
        let mid_text = mid.to_string();
        let producer_id = t.send_media.iter().find(|m| m.mid == mid_text).and_then(|m| m.producer)?;
        let producer = self.producers.get(&producer_id)?;
        let layer = producer
            .layers
            .iter()
            .position(|l| (rid.is_some() && l.rid == rid) || l.ssrc == Some(*ssrc))
            .or(if producer.layers.len() == 1 { Some(0) } else { None })?;
        t.ssrc_routes.insert(ssrc, (producer_id, layer));
        Some((producer_id, layer))
    }

    fn forward_rtp(&mut self, now: Instant, tid: TransportId, packet: RtpPacket) {
        self.stats.rtp_packets_in += 1;
        let Some((producer_id, layer)) = self.route_of(tid, packet.header.ssrc) else {
            self.stats.datagrams_dropped += 1;
            return;
        };
        self.stats.rtp_bytes_in += packet.payload.len() as u64;
        let Some(producer) = self.producers.get(&producer_id) else { return };
        let Some(&router_pt) = producer.pt_map.get(&*packet.header.payload_type) else {
            return;
        };
        let vp8 = if producer.codec == Codec::Vp8 { Vp8Info::parse(&packet.payload) } else { None };
        let keyframe = match &vp8 {
            Some(vp8) => vp8.keyframe(),
            None => producer.is_simulcast() && is_keyframe_start(producer.codec, &packet.payload),
        };
        let packet = ForwardedPacket {
            producer_id,
            layer,
            seq_no: *packet.seq_no,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            router_pt,
            keyframe,
            vp8,
            arrival: packet.timestamp,
            ext: ExtensionValues {
                audio_level: packet.header.ext_vals.audio_level,
                voice_activity: packet.header.ext_vals.voice_activity,
                video_orientation: packet.header.ext_vals.video_orientation,
                ..Default::default()
            },
            payload: packet.payload,
        };
        self.fan_out(now, packet);
    }

    /// A packet of a producer (own or piped in): to every pipe and every
    /// consumer that wants it.
    fn fan_out(&mut self, now: Instant, packet: ForwardedPacket) {
        let (producer_id, layer) = (packet.producer_id, packet.layer);
        let Some(producer) = self.producers.get_mut(&producer_id) else { return };
        let first_of_layer = producer.layers[layer].last_packet.is_none();
        producer.layers[layer].last_packet = Some(now);
        if producer.paused {
            return;
        }
        // A pipe whose worker is gone is dropped on the first failed send.
        producer.pipes.retain(|pipe| !pipe.sink.is_closed());
        for pipe in &producer.pipes {
            match self.pipe_outbox.iter_mut().find(|(worker, _, _)| *worker == pipe.worker) {
                Some((_, _, batch)) => batch.push(packet.clone()),
                None => self.pipe_outbox.push((pipe.worker.clone(), pipe.sink.clone(), vec![packet.clone()])),
            }
        }
        let best = producer.best_layer(now);
        let video = producer.kind == MediaKind::Video;
        let simulcast = producer.is_simulcast();
        let clock = if video { 90_000 } else { 48_000 };
        let consumers = producer.consumers.clone();
        if first_of_layer && simulcast {
            // A layer that just started: consumers that want it need its key frame.
            self.request_keyframe(now, producer_id, Some(layer));
        }
        let mut wants_keyframe = None;
        for cid in consumers {
            let Some(c) = self.consumers.get_mut(&cid) else { continue };
            if c.paused {
                continue;
            }
            let decision = c.layers.accept(layer, best, packet.keyframe);
            if decision.want_keyframe.is_some() {
                wants_keyframe = decision.want_keyframe;
            }
            if !decision.forward {
                continue;
            }
            if decision.switched {
                c.seq.rebase();
                c.vp8.rebase();
            }
            let Some((seq_no, time)) = c.seq.rewrite(now, packet.seq_no, packet.timestamp, clock) else {
                continue;
            };
            let vp8_patch = packet.vp8.as_ref().and_then(|vp8| c.vp8.rewrite(vp8));
            let (consumer_tid, ssrc) = (c.transport_id, c.ssrc);
            let Some(t) = self.transports.get_mut(&consumer_tid) else { continue };
            let mut api = t.rtc.direct_api();
            let Some(stream) = api.stream_tx(&ssrc) else { continue };
            let mut write = RtpWrite::new(packet.router_pt, seq_no.into(), time, packet.arrival, packet.payload.clone())
                .marker(packet.marker)
                .ext_vals(packet.ext.clone())
                .nackable(video);
            if let Some(patch) = vp8_patch {
                // Applied while str0m serialises: the shared payload is not copied.
                write = write.vp8_patch(patch);
            }
            stream.write_rtp(write);
            self.stats.rtp_packets_out += 1;
            self.stats.rtp_bytes_out += packet.payload.len() as u64;
            self.mark_dirty(consumer_tid);
        }
        if let Some(target) = wants_keyframe {
            self.request_keyframe(now, producer_id, Some(target));
        }
    }

    // ---------------------------------------------------------------- pipes

    /// Start piping `id`'s packets to another worker (once per worker) and
    /// describe the producer so that worker can mirror it.
    pub(crate) fn pipe_out(
        &mut self,
        id: ProducerId,
        worker: Arc<str>,
        sink: UnboundedSender<Command>,
    ) -> Result<PipedProducer, EngineError> {
        let p = self.producers.get_mut(&id).ok_or(EngineError::ProducerNotFound(id))?;
        if !p.pipes.iter().any(|pipe| pipe.worker == worker) {
            p.pipes.push(PipeOut { worker, sink });
        }
        Ok(PipedProducer {
            id,
            kind: p.kind,
            codec: p.codec,
            router_codec: p.router_codec.clone(),
            router_rtx_pt: p.router_rtx_pt,
            msid_stream: p.msid_stream.clone(),
            max_bitrate: p.max_bitrate,
            layers: p.layers.len(),
            paused: p.paused,
        })
    }

    /// Mirror a producer of another worker so local transports can consume it.
    pub(crate) fn pipe_in(&mut self, piped: PipedProducer, origin: UnboundedSender<Command>) {
        if self.producers.contains_key(&piped.id) {
            return;
        }
        let layers = (0..piped.layers)
            .map(|_| Layer { rid: None, ssrc: None, last_packet: None, last_keyframe_request: None })
            .collect();
        self.producers.insert(
            piped.id,
            Producer {
                source: ProducerSource::Pipe(origin),
                pipes: Vec::new(),
                kind: piped.kind,
                mid: Mid::from("pipe"),
                codec: piped.codec,
                pt_map: HashMap::new(),
                router_codec: piped.router_codec,
                router_rtx_pt: piped.router_rtx_pt,
                msid_stream: piped.msid_stream,
                max_bitrate: piped.max_bitrate,
                layers,
                paused: piped.paused,
                consumers: Vec::new(),
            },
        );
        tracing::debug!(producer = %piped.id, "producer piped in from another worker");
    }

    fn on_pipe_packet(&mut self, now: Instant, packet: ForwardedPacket) {
        match self.producers.get(&packet.producer_id) {
            Some(p) if matches!(p.source, ProducerSource::Pipe(_)) && packet.layer < p.layers.len() => {
                self.fan_out(now, packet)
            }
            // Not mirrored (yet or any more): nobody here wants it.
            _ => {}
        }
    }

    /// Start piping a data producer's messages to another worker (once per worker).
    pub(crate) fn data_pipe_out(
        &mut self,
        id: DataProducerId,
        worker: Arc<str>,
        sink: UnboundedSender<Command>,
    ) -> Result<PipedDataProducer, EngineError> {
        let d = self.data_producers.get_mut(&id).ok_or(EngineError::DataProducerNotFound(id))?;
        if !d.pipes.iter().any(|pipe| pipe.worker == worker) {
            d.pipes.push(PipeOut { worker, sink });
        }
        Ok(PipedDataProducer { id, params: d.params, label: d.label.clone(), protocol: d.protocol.clone() })
    }

    /// Mirror a data producer of another worker.
    pub(crate) fn data_pipe_in(&mut self, piped: PipedDataProducer) {
        self.data_producers.entry(piped.id).or_insert(DataProducer {
            source: None,
            pipes: Vec::new(),
            params: piped.params,
            label: piped.label,
            protocol: piped.protocol,
            consumers: Vec::new(),
        });
    }

    fn on_data_pipe_close(&mut self, id: DataProducerId) {
        if self.data_producers.get(&id).is_some_and(|d| d.source.is_none()) {
            let _ = self.close_data_producer(id);
        }
    }

    fn on_pipe_close(&mut self, id: ProducerId) {
        if self.producers.get(&id).is_some_and(|p| matches!(p.source, ProducerSource::Pipe(_))) {
            let _ = self.close_producer(id);
        }
    }

    /// Ask a producer for a key frame (PLI), at most once per interval per layer.
    /// `layer: None` means every layer.
    fn request_keyframe(&mut self, now: Instant, producer_id: ProducerId, layer: Option<usize>) {
        let Some(p) = self.producers.get_mut(&producer_id) else { return };
        if p.kind != MediaKind::Video {
            return;
        }
        let range = match layer {
            Some(l) if l < p.layers.len() => l..l + 1,
            _ => 0..p.layers.len(),
        };
        let tid = match &p.source {
            ProducerSource::Transport(tid) => *tid,
            ProducerSource::Pipe(origin) => {
                for l in range {
                    let layer = &mut p.layers[l];
                    if layer.last_keyframe_request.is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL) {
                        continue;
                    }
                    layer.last_keyframe_request = Some(now);
                    let _ = origin.send(Command::PipeKeyframe(producer_id, Some(l)));
                }
                return;
            }
        };
        let Some(t) = self.transports.get_mut(&tid) else { return };
        for l in range {
            let layer = &mut p.layers[l];
            if layer.last_keyframe_request.is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL) {
                continue;
            }
            let mut api = t.rtc.direct_api();
            let stream = match layer.ssrc {
                Some(ssrc) => api.stream_rx(&Ssrc::from(ssrc)),
                None => api.stream_rx_by_mid(p.mid, layer.rid),
            };
            if let Some(stream) = stream {
                stream.request_keyframe(KeyframeRequestKind::Pli);
                layer.last_keyframe_request = Some(now);
            }
        }
        self.mark_dirty(tid);
    }

    fn on_channel_open(&mut self, tid: TransportId, channel: ChannelId) {
        let route = self.transports.get(&tid).and_then(|t| t.channels.get(&channel)).copied();
        if let Some(DataRoute::Consumer(cid)) = route {
            if let Some(c) = self.data_consumers.get_mut(&cid) {
                c.open = true;
            }
            self.flush_data_consumer(cid);
        }
    }

    /// The association's send buffer drained: its data consumers (the
    /// buffer is shared by all channels) write what waited for room.
    fn on_send_buffer_low(&mut self, tid: TransportId) {
        let waiting: Vec<DataConsumerId> = self
            .data_consumers
            .iter()
            .filter(|(_, c)| c.transport_id == tid && c.open && !c.pending.is_empty())
            .map(|(cid, _)| *cid)
            .collect();
        for cid in waiting {
            self.flush_data_consumer(cid);
        }
    }

    fn on_channel_data(&mut self, tid: TransportId, channel: ChannelId, binary: bool, data: &[u8]) {
        let route = self.transports.get(&tid).and_then(|t| t.channels.get(&channel)).copied();
        let Some(DataRoute::Producer(pid)) = route else { return };
        self.stats.data_messages_in += 1;
        self.fan_out_data(pid, binary, data);
    }

    /// A message of a data producer (own or piped in): to every pipe and
    /// every data consumer.
    fn fan_out_data(&mut self, pid: DataProducerId, binary: bool, data: &[u8]) {
        let consumers = match self.data_producers.get_mut(&pid) {
            Some(p) => {
                if !p.pipes.is_empty() {
                    let shared: Arc<[u8]> = data.into();
                    p.pipes.retain(|pipe| pipe.sink.send(Command::PipeData(pid, binary, shared.clone())).is_ok());
                }
                p.consumers.clone()
            }
            None => return,
        };
        for cid in consumers {
            if let Some(c) = self.data_consumers.get_mut(&cid) {
                self.stats.data_messages_dropped += c.pending.push(binary, data.to_vec());
            }
            self.flush_data_consumer(cid);
        }
    }

    fn flush_data_consumer(&mut self, cid: DataConsumerId) {
        let Some(c) = self.data_consumers.get_mut(&cid) else { return };
        let Some(t) = self.transports.get_mut(&c.transport_id) else { return };
        while let Some((binary, data)) = c.pending.front() {
            let Some(mut channel) = t.rtc.channel(c.channel) else { break };
            match channel.write(*binary, data) {
                Ok(true) => {
                    c.pending.pop_front();
                    self.stats.data_messages_out += 1;
                }
                // Not open yet or the send buffer is full: keep it for later.
                Ok(false) | Err(_) => break,
            }
        }
        let tid = c.transport_id;
        self.mark_dirty(tid);
    }
}

// -------------------------------------------------------------------- helpers

/// The SSRCs (media and RTX) a producer's encodings declare.
fn ssrcs_of(rtp: &RtpParameters) -> impl Iterator<Item = u32> + '_ {
    rtp.encodings.iter().flat_map(|e| e.ssrc.into_iter().chain(e.rtx.map(|r| r.ssrc)))
}

/// Hand str0m the offer that describes the send transport's m-lines as they
/// are now (see `sdp.rs`), discarding the answer. Closed producers' m-lines
/// go in rejected, which frees their slots, as long as a live one holds the
/// BUNDLE group (str0m wants one).
fn apply_send_offer(tid: TransportId, t: &mut Transport) -> Result<(), EngineError> {
    let (Some(dtls), Some(creds)) = (&t.dtls, &t.remote_creds) else {
        return Err(EngineError::NotConnected(tid));
    };
    let release = t.send_media.iter().any(|m| m.state == MediaState::Sending);
    let offered = |state| if release && state == MediaState::Inactive { MediaState::Rejected } else { state };
    let media: Vec<SendMedia<'_>> = t
        .send_media
        .iter()
        .map(|m| SendMedia { mid: &m.mid, kind: m.kind, rtp_parameters: &m.rtp_parameters, state: offered(m.state) })
        .collect();
    t.offer_version += 1;
    let remote = RemoteEnd {
        ice_ufrag: &creds.ufrag,
        ice_pwd: &creds.pass,
        fingerprint: &dtls.remote_fingerprint,
        setup: if dtls.browser_is_client { "active" } else { "passive" },
    };
    let offer_text = send_transport_offer(&remote, &media, t.offer_version);
    let offer = SdpOffer::from_sdp_string(&offer_text)
        .map_err(|e| EngineError::InvalidRtpParameters(format!("parameters do not form a valid SDP: {e}")))?;
    t.rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| EngineError::InvalidRtpParameters(format!("str0m refused the media description: {e}")))?;
    for m in &mut t.send_media {
        m.state = offered(m.state);
    }
    Ok(())
}

fn build_rtc(now: Instant) -> Rtc {
    let mut exts = ExtensionMap::empty();
    exts.set(ext_id::MID, Extension::RtpMid);
    exts.set(ext_id::RID, Extension::RtpStreamId);
    exts.set(ext_id::REPAIRED_RID, Extension::RepairedRtpStreamId);
    exts.set(ext_id::ABS_SEND_TIME, Extension::AbsoluteSendTime);
    exts.set(ext_id::TRANSPORT_CC, Extension::TransportSequenceNumber);
    exts.set(ext_id::AUDIO_LEVEL, Extension::AudioLevel);
    exts.set(ext_id::VIDEO_ORIENTATION, Extension::VideoOrientation);
    let mut config = Rtc::builder()
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .clear_codecs()
        .set_extension_map(exts)
        .set_stats_interval(None);
    let codecs = config.codec_config();
    codecs.add_config(
        pt::OPUS.into(),
        None,
        Codec::Opus,
        Frequency::FORTY_EIGHT_KHZ,
        Some(2),
        FormatParams { min_p_time: Some(10), use_inband_fec: Some(true), ..Default::default() },
    );
    codecs.add_config(pt::VP8.into(), Some(pt::VP8_RTX.into()), Codec::Vp8, Frequency::NINETY_KHZ, None, FormatParams::default());
    codecs.add_config(
        pt::VP9.into(),
        Some(pt::VP9_RTX.into()),
        Codec::Vp9,
        Frequency::NINETY_KHZ,
        None,
        FormatParams { profile_id: Some(0), ..Default::default() },
    );
    codecs.add_h264(pt::H264.into(), Some(pt::H264_RTX.into()), true, 0x42e01f);
    codecs.add_h264(pt::H264_HIGH.into(), Some(pt::H264_HIGH_RTX.into()), true, 0x4d0032);
    config.build(now)
}

fn to_mediasoup_fingerprint(f: &Fingerprint) -> Result<DtlsFingerprint, EngineError> {
    let value: [u8; 32] = f
        .bytes
        .as_slice()
        .try_into()
        .map_err(|_| EngineError::Internal(format!("unexpected local fingerprint {}", f.hash_func)))?;
    Ok(DtlsFingerprint::Sha256 { value })
}

fn from_mediasoup_fingerprint(f: &DtlsFingerprint) -> Fingerprint {
    let (hash_func, bytes) = match f {
        DtlsFingerprint::Sha1 { value } => ("sha-1", value.to_vec()),
        DtlsFingerprint::Sha224 { value } => ("sha-224", value.to_vec()),
        DtlsFingerprint::Sha256 { value } => ("sha-256", value.to_vec()),
        DtlsFingerprint::Sha384 { value } => ("sha-384", value.to_vec()),
        DtlsFingerprint::Sha512 { value } => ("sha-512", value.to_vec()),
    };
    Fingerprint { hash_func: hash_func.into(), bytes }
}

/// mediasoup-client never sends its ICE credentials: learn the ufrag from the
/// first binding request (USERNAME is `ours:theirs`) whose MESSAGE-INTEGRITY
/// holds, which the caller has checked.
fn learn_remote_ufrag(t: &mut Transport, remote: &str) {
    if remote.is_empty() {
        return;
    }
    let known = t.remote_creds.as_ref().map(|c| c.ufrag.as_str());
    if known == Some(remote) {
        return;
    }
    if known.is_some() && !t.remote_creds_placeholder {
        // A different ufrag after the real one: an ICE restart we did not
        // negotiate. Keep the first; str0m refuses the request's integrity.
        return;
    }
    let creds = IceCreds { ufrag: remote.to_owned(), pass: UNKNOWN_REMOTE_PASSWORD.into() };
    t.rtc.direct_api().set_remote_ice_credentials(creds.clone());
    t.remote_creds = Some(creds);
    t.remote_creds_placeholder = false;
}

/// After an ICE restart: stop using every path but `keep` (their candidate
/// pairs go, so str0m nominates the new path). Gives the paths dropped.
fn forget_other_paths(t: &mut Transport, keep: (Protocol, SocketAddr)) -> Vec<(Protocol, SocketAddr)> {
    let stale: Vec<_> = t.addrs.iter().copied().filter(|p| *p != keep).collect();
    t.addrs.retain(|p| *p == keep);
    for (proto, addr) in &stale {
        // The remote candidate str0m made from the requests of that path.
        let candidate = Candidate::from_parts(
            String::new(),
            1,
            *proto,
            0,
            *addr,
            str0m::CandidateKind::PeerReflexive,
            None,
            None,
            None,
        );
        t.rtc.direct_api().invalidate_candidate(&candidate);
    }
    stale
}

fn fresh_ssrc(used: &mut HashSet<u32>, mut next: impl FnMut() -> Ssrc) -> Ssrc {
    loop {
        let s = next();
        if *s != 0 && used.insert(*s) {
            return s;
        }
    }
}

fn reliability_of(p: &SctpStreamParameters) -> Result<Reliability, EngineError> {
    match (p.max_packet_life_time, p.max_retransmits) {
        (None, None) => Ok(Reliability::Reliable),
        (Some(lifetime), None) => Ok(Reliability::MaxPacketLifetime { lifetime }),
        (None, Some(retransmits)) => Ok(Reliability::MaxRetransmits { retransmits }),
        (Some(_), Some(_)) => Err(EngineError::InvalidSctpParameters(
            "maxPacketLifeTime and maxRetransmits cannot both be set".into(),
        )),
    }
}

fn close_channel(t: &mut Transport, channel: ChannelId, stream_id: u16) {
    t.channels.remove(&channel);
    t.used_stream_ids.remove(&stream_id);
    t.rtc.direct_api().close_data_channel(channel);
}
