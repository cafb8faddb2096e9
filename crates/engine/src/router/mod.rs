//! The router: every transport, producer and consumer of one worker, and the
//! forwarding between them. Plain synchronous code with time as an input: the
//! worker feeds it commands, datagrams and timeouts, then drains what it has
//! to send.
//!
//! This file owns the state (the router's maps and what each entry holds)
//! and the command dispatch; each concern's methods live beside it:
//! `transports`, `producers`, `consumers`, `data`, `io` (demux, timers,
//! polling, transport events), `forwarding` (fan-out, key-frame requests),
//! `bandwidth` (the allocation per receive transport) and `pipes` (between
//! workers).

mod bandwidth;
mod consumers;
mod data;
mod forwarding;
mod io;
mod levels;
mod links;
mod pipes;
mod producers;
mod transports;

use crate::allocation::meter::LayerMeter;
use crate::allocation::temporal::TemporalFilter;
use crate::allocation::{Allocator, Layer as AllocLayer};
use crate::api::{Direction, EngineEvent, WorkerStats, ESTIMATE_BUCKETS_BPS};
use crate::candidates::HostCandidates;
use crate::capabilities::router_rtp_capabilities;
use crate::forward::{LayerSwitch, SeqRewriter, Vp8Info, Vp8Rewriter};
use crate::pending::PendingMessages;
use crate::sdp::MediaState;
use crate::worker::Command;
use mediasoup_types::rtp_parameters::{
    MediaKind, RtpCapabilitiesFinalized, RtpCodecParameters, RtpParameters,
};
use mediasoup_types::sctp_parameters::SctpStreamParameters;
use simplesfu_proto::{ConsumerId, DataConsumerId, DataProducerId, ProducerId, TransportId};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::bwe::Bitrate;
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Mid, Pt, Rid};
use str0m::net::Protocol;
use str0m::rtp::{ExtensionValues, Ssrc};
use str0m::{IceCreds, Rtc};
use tokio::sync::mpsc::UnboundedSender;

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
/// The estimate str0m starts a receive transport's estimator from, and the
/// allocation's budget until feedback moves it (a transport that gets no
/// feedback is then forwarded its preferred layers, as without
/// estimation); from the first feedback on, str0m probes upwards from here.
const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(600);
/// How often a receive transport's estimate is read from str0m (its stats
/// carry the estimate itself; the event is a 3 s average, see `io.rs`).
const ESTIMATE_READ_INTERVAL: Duration = Duration::from_millis(200);
/// While a receive transport's preferred layers do not fit, str0m is asked
/// for a probe this often at first (see `Router::allocate`), and half as often
/// after each probe that did not raise the estimate, down to
/// [`PROBE_INTERVAL_MAX`]. The longest wait is also how long a viewer whose
/// link opens may wait for the first probe (a successful one is followed up
/// by str0m at twice the rate at once): with 8 s, a viewer that had sat 20 s
/// behind 400 kbit/s took over 15 s back to the top layer once in a
/// clean-clone CI run of `e2e/constrained.test.mjs`.
const PROBE_INTERVAL_MIN: Duration = Duration::from_secs(2);
const PROBE_INTERVAL_MAX: Duration = Duration::from_secs(4);
/// A receive transport that first sent video this long ago and still has no
/// estimate gets no congestion feedback (a browser's first comes within
/// about 100 ms of the probes that follow the first video packet).
const NO_FEEDBACK_AFTER: Duration = Duration::from_secs(1);
/// A str0m timeout this close is taken at once while polling a transport
/// (its pacer's next packet is due a microsecond after the last).
const IMMEDIATE_SLACK: Duration = Duration::from_micros(100);
/// At most this many such timeouts per poll of one transport: a key frame of
/// the top layer is about 100 packets, and a batch of input may hold several
/// frames.
const IMMEDIATE_ROUNDS: usize = 1024;
/// How long a video consumer keeps the packets it sent, to resend what its
/// viewer reports lost (NACK). Every consumer keeps its own copy of each
/// packet, so this is most of the memory a viewer costs (str0m's default is
/// 3 s; see docs/ENGINE.md for what it cost in the bench). A NACK comes
/// about one round trip after the loss (the receiver notices the gap at the
/// next packet), so 500 ms answers viewers up to about 400 ms away; a
/// retransmission older than that would come too late to play anyway
/// (browsers' jitter buffers hold a few hundred ms). Tested under loss with
/// a 200 ms round trip (`tests/sim/repair.rs`).
const RTX_CACHE_AGE: Duration = Duration::from_millis(500);
/// And at most this many packets: 1.3 s at 200 packets/s, more than a key
/// frame of a high layer (about 100). The cache's slot array (about 350
/// bytes a slot) grows until the age limit keeps it steady, at most to this
/// (`bench/heap-profile`: 13 MB of such arrays at 200 viewers, 66 KB each).
const RTX_CACHE_PACKETS: usize = 256;
/// str0m's default: drop queued resends when they exceed 15% of what is sent.
const RTX_RATIO_CAP: f32 = 0.15;
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
    /// Estimate each viewer's bandwidth (transport-wide congestion control)
    /// and choose its layers to fit (see docs/ENGINE.md "Bandwidth
    /// allocation"). Off: every viewer gets the best layer it prefers, as
    /// before estimation existed, at less CPU per forwarded packet.
    pub bandwidth_estimation: bool,
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
    /// Recv transports: splits the bandwidth estimate over the consumers.
    allocator: Allocator<ConsumerId>,
    /// Recv transports: str0m's latest TWCC estimate, bits/s.
    estimate_bps: Option<u64>,
    /// The `(min, desired)` last handed to `rtc.bwe().set_bitrate`.
    bwe_applied: Option<(u64, u64)>,
    /// Recv transports: when a video packet was first written to one of its
    /// streams, which str0m can then pad and probe with (see
    /// `Router::allocate`).
    video_sent_at: Option<Instant>,
    /// When the allocation runs next without another cause (its meters move).
    allocate_at: Option<Instant>,
    /// Recv transports numbered after a client's offer (WHEP): router
    /// payload type to the client's.
    pt_out: Option<HashMap<Pt, Pt>>,
    /// ... and the client's mids not yet taken by a consumer.
    planned_mids: Option<Vec<(MediaKind, String)>>,
    /// When the client last proved it still wants this transport: the last
    /// binding request whose MESSAGE-INTEGRITY held (ICE consent, RFC 7675).
    last_consent: Option<Instant>,
    /// Video goes out unpaced: no feedback came (see `Router::set_video_paced`).
    unpaced: bool,
    /// Recv transports: the probes asked of str0m while the preferred layers
    /// do not fit (see `Router::allocate`).
    probing: ProbeNudge,
    /// Set on a link to another node (see `links`): what it relays.
    link: Option<Box<links::LinkState>>,
}

/// When to ask str0m's estimator for a probe next, and what came of the last.
#[derive(Debug, Clone, Copy)]
struct ProbeNudge {
    due: Option<Instant>,
    interval: Duration,
    /// The estimate when the last probe was asked for.
    asked_at_estimate: u64,
}

impl Default for ProbeNudge {
    fn default() -> Self {
        ProbeNudge {
            due: None,
            interval: PROBE_INTERVAL_MIN,
            asked_at_estimate: 0,
        }
    }
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
    /// A link's control channel (closing and pausing of relayed producers).
    LinkControl,
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
    /// Links to other nodes this producer is relayed over.
    relays: Vec<links::RelayOut>,
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
    /// Bitrate per (spatial, temporal) layer; from the first packet on.
    meter: Option<LayerMeter>,
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
    /// Bandwidth allocation: 1..=255, higher goes up first.
    priority: u8,
    /// The highest layers the client wants; `None`: the best there is.
    preferred: Option<AllocLayer>,
    /// The allocator's simulcast layer; `None` before its first choice: the
    /// best layer sending.
    spatial_cap: Option<usize>,
    /// Not even the lowest layer fits the viewer's link: no video.
    paused_for_bandwidth: bool,
    /// VP8 consumers: the allocator's temporal layer, applied per frame.
    temporal: Option<TemporalFilter>,
    /// The layers last reported in `ConsumerLayersChanged`.
    reported_layers: Option<(Option<u8>, Option<u8>)>,
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
    /// Its SCTP stream (str0m knows a channel's only once the association
    /// is up, so it is kept here to be freed on close).
    stream_id: u16,
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
    /// Audio levels waiting for their report (see `levels`).
    audio_levels: levels::AudioLevels,
    stats: WorkerStats,
    /// Receive transports whose consumers changed without a `now` at hand:
    /// their allocation runs in `drain`.
    reallocate: HashSet<TransportId>,
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
            audio_levels: levels::AudioLevels::default(),
            stats: WorkerStats::default(),
            reallocate: HashSet::new(),
        }
    }

    /// The router's RTP capabilities.
    pub fn rtp_capabilities(&self) -> &RtpCapabilitiesFinalized {
        &self.caps
    }

    /// Counters.
    /// What placement counts as this worker's load: its transports and
    /// consumers. Read after every loop iteration, so O(1) (the full
    /// [`Router::stats`] walks every transport and consumer).
    pub fn load(&self) -> usize {
        self.transports.len() + self.consumers.len()
    }

    pub fn stats(&self) -> WorkerStats {
        let mut estimate_buckets = [0; ESTIMATE_BUCKETS_BPS.len() + 1];
        let mut estimate_sum_bps = 0u64;
        for estimate in self.transports.values().filter_map(|t| t.estimate_bps) {
            for (bucket, bound) in estimate_buckets
                .iter_mut()
                .zip(ESTIMATE_BUCKETS_BPS.iter().chain([&u64::MAX]))
            {
                *bucket += u64::from(estimate <= *bound);
            }
            estimate_sum_bps = estimate_sum_bps.saturating_add(estimate);
        }
        WorkerStats {
            transports: self.transports.len(),
            producers: self.producers.len(),
            consumers: self.consumers.len(),
            data_producers: self.data_producers.len(),
            data_consumers: self.data_consumers.len(),
            consumers_paused_for_bandwidth: self
                .consumers
                .values()
                .filter(|c| c.paused_for_bandwidth)
                .count() as u64,
            estimate_buckets,
            estimate_sum_bps,
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
            Command::CreateTransport(o, numbering, r) => {
                drop(r.send(self.create_numbered_transport(now, o, numbering.map(|n| *n))))
            }
            Command::ConnectTransport(id, d, r) => drop(r.send(self.connect_transport(id, d))),
            Command::RestartIce(id, r) => drop(r.send(self.restart_ice(id))),
            Command::LastConsent(id, r) => drop(r.send(self.last_consent(id))),
            Command::CloseTransport(id, r) => drop(r.send(self.close_transport(id))),
            Command::Produce(o, r) => drop(r.send(self.produce(o))),
            Command::PauseProducer(id, p, r) => drop(r.send(self.set_producer_paused(now, id, p))),
            Command::CloseProducer(id, r) => drop(r.send(self.close_producer(id))),
            Command::Consume(t, p, r) => drop(r.send(self.consume(t, p))),
            Command::PauseConsumer(id, p, r) => drop(r.send(self.set_consumer_paused(now, id, p))),
            Command::CloseConsumer(id, r) => drop(r.send(self.close_consumer(id))),
            Command::SetConsumerPreferredLayers(id, s, t, r) => {
                drop(r.send(self.set_consumer_preferred_layers(now, id, s, t)))
            }
            Command::SetConsumerPriority(id, p, r) => {
                drop(r.send(self.set_consumer_priority(now, id, p)))
            }
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
            Command::PipePaused(id, paused) => self.on_pipe_paused(id, paused),
            Command::PipeKeyframe(id, layer) => self.request_keyframe(now, id, layer),
            Command::DataPipeOut(id, worker, sink, r) => {
                drop(r.send(self.data_pipe_out(id, worker, sink)))
            }
            Command::DataPipeIn(piped, r) => {
                self.data_pipe_in(piped);
                drop(r.send(Ok(())))
            }
            Command::PipeData(id, binary, data) => {
                if self
                    .data_producers
                    .get(&id)
                    .is_some_and(|d| d.source.is_none())
                {
                    self.fan_out_data(id, binary, &data);
                }
            }
            Command::DataPipeClose(id) => self.on_data_pipe_close(id),
            Command::CreateLink(o, r) => drop(r.send(self.create_link(now, *o))),
            Command::ConnectLink(id, fingerprint, r) => {
                drop(r.send(self.connect_link(id, &fingerprint)))
            }
            Command::RelayOut(link, producer, r) => drop(r.send(self.relay_out(link, producer))),
            Command::RelayIn(link, relayed, r) => drop(r.send(self.relay_in(link, *relayed))),
            Command::RelayDataOut(link, dp, r) => drop(r.send(self.relay_data_out(link, dp))),
            Command::RelayDataIn(link, relayed, r) => {
                drop(r.send(self.relay_data_in(link, *relayed)))
            }
            Command::Stats(r) => drop(r.send(self.stats())),
            Command::Shutdown => {}
        }
    }
}
