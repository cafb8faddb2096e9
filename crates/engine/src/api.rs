//! The engine's public vocabulary: options, infos and errors of each operation.

use mediasoup_types::data_structures::{DtlsParameters, IceCandidate, IceParameters};
use mediasoup_types::rtp_parameters::{
    MediaKind, RtpCodecParameters, RtpHeaderExtensionUri, RtpParameters,
};
use mediasoup_types::sctp_parameters::{SctpParameters, SctpStreamParameters};
use serde::{Deserialize, Serialize};
use simplesfu_proto::{ConsumerId, DataConsumerId, DataProducerId, ProducerId, TransportId};
use std::net::SocketAddr;

/// Which way media flows on a transport, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The client sends (producers live here).
    Send,
    /// The client receives (consumers live here).
    Recv,
}

/// Options of [`crate::WorkerHandle::create_webrtc_transport`].
#[derive(Debug, Clone, Copy)]
pub struct WebRtcTransportOptions {
    pub direction: Direction,
    /// Open an SCTP association for data channels.
    pub enable_sctp: bool,
    /// Offer only the TCP candidates (the client asked for `forceTcp`).
    pub force_tcp: bool,
}

/// A receive transport for a client that writes its own SDP offer (WHEP):
/// it is sent with the client's payload types and header-extension ids, and
/// its consumers take the client's mids, instead of the router's numbering
/// that mediasoup-client adopts.
#[derive(Debug, Clone, Default)]
pub struct RemoteNumbering {
    /// `(router payload type, client payload type, client RTX payload type)`
    /// for each router codec the client offered.
    pub payload_types: Vec<(u8, u8, Option<u8>)>,
    /// The header extensions the client offered, with its ids.
    pub extensions: Vec<(RtpHeaderExtensionUri, u8)>,
    /// The client's m-lines in order: each new consumer takes the first
    /// free one of its kind, and there are no other consumers.
    pub mids: Vec<(MediaKind, String)>,
}

/// What the client needs to build its side of a transport.
#[derive(Debug, Clone)]
pub struct WebRtcTransportInfo {
    pub id: TransportId,
    pub ice_parameters: IceParameters,
    pub ice_candidates: Vec<IceCandidate>,
    pub dtls_parameters: DtlsParameters,
    pub sctp_parameters: Option<SctpParameters>,
}

/// Options of [`crate::WorkerHandle::create_link`]: one end of a link
/// between two nodes (see docs/ENGINE.md "Links between nodes"). Both ends
/// are given both pairs of ICE credentials (the nodes derive them from
/// their shared secret), so a stranger's binding request fails integrity
/// on either end.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    pub local_ufrag: String,
    pub local_password: String,
    pub remote_ufrag: String,
    pub remote_password: String,
    /// `Some`: this end connects to the far end's worker at this address
    /// (full ICE, controlling; DTLS and SCTP client). `None`: this end
    /// waits for the far end (ICE-lite, like every client transport).
    pub connect_to: Option<SocketAddr>,
}

/// One end of a node link, as [`crate::WorkerHandle::create_link`] made it.
#[derive(Debug, Clone)]
pub struct LinkInfo {
    /// The link's id: it is a transport of the worker, closed with
    /// `close_transport` and reported in
    /// [`EngineEvent::TransportClosed`] like one.
    pub id: TransportId,
    /// This end's DTLS fingerprint (`sha-256 AB:CD:..`), for the far end's
    /// [`crate::WorkerHandle::connect_link`].
    pub fingerprint: String,
}

/// What the far end of a link needs to mirror a producer relayed to it
/// ([`crate::WorkerHandle::relay_producer`] gives it,
/// [`crate::WorkerHandle::accept_relayed_producer`] takes it). It crosses
/// between nodes, so it serializes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayedProducer {
    /// The producer's id, kept by its mirror.
    pub id: ProducerId,
    pub kind: MediaKind,
    /// The router codec its packets carry (router payload type).
    pub codec: RtpCodecParameters,
    pub rtx_payload_type: Option<u8>,
    pub msid_stream: Option<String>,
    pub max_bitrate: Option<u64>,
    pub paused: bool,
    /// The link's m-line for it.
    pub mid: String,
    /// One per layer, low to high: the SSRC it crosses the link with and
    /// its RTX SSRC (video).
    pub layers: Vec<(u32, Option<u32>)>,
}

/// What the far end of a link needs to mirror a data producer relayed to
/// it ([`crate::WorkerHandle::relay_data_producer`] gives it,
/// [`crate::WorkerHandle::accept_relayed_data_producer`] takes it). Its
/// messages cross on the link's SCTP association, on `stream_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayedDataProducer {
    /// The data producer's id, kept by its mirror.
    pub id: DataProducerId,
    /// The stream on the link, and the producer's own reliability.
    pub sctp_stream_parameters: SctpStreamParameters,
    pub label: String,
    pub protocol: String,
}

/// Options of [`crate::WorkerHandle::produce`].
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    pub transport_id: TransportId,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    pub paused: bool,
}

/// What the consuming client needs for `recvTransport.consume()`.
#[derive(Debug, Clone)]
pub struct ConsumerInfo {
    pub id: ConsumerId,
    pub producer_id: ProducerId,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    /// `simple` or `simulcast`.
    pub consumer_type: &'static str,
    pub producer_paused: bool,
}

/// Options of [`crate::WorkerHandle::produce_data`].
#[derive(Debug, Clone)]
pub struct DataProducerOptions {
    pub transport_id: TransportId,
    pub sctp_stream_parameters: SctpStreamParameters,
    pub label: String,
    pub protocol: String,
}

/// What the consuming client needs for `recvTransport.consumeData()`.
#[derive(Debug, Clone)]
pub struct DataConsumerInfo {
    pub id: DataConsumerId,
    pub data_producer_id: DataProducerId,
    pub sctp_stream_parameters: SctpStreamParameters,
    pub label: String,
    pub protocol: String,
}

/// What a closed producer took with it.
#[derive(Debug, Clone, Default)]
pub struct ClosedProducer {
    /// Consumers of other transports that were closed because their producer closed.
    pub consumers: Vec<ConsumerId>,
}

/// Counters of one worker, for placement and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub transports: usize,
    pub producers: usize,
    pub consumers: usize,
    pub data_producers: usize,
    pub data_consumers: usize,
    pub rtp_packets_in: u64,
    pub rtp_packets_out: u64,
    /// RTP payload bytes received from producers.
    pub rtp_bytes_in: u64,
    /// RTP payload bytes forwarded to consumers.
    pub rtp_bytes_out: u64,
    /// CPU time the worker thread has used, in microseconds.
    pub cpu_time_us: u64,
    pub data_messages_in: u64,
    pub data_messages_out: u64,
    /// Data messages dropped, oldest first, because a data consumer's queue
    /// (while its channel is not open or its send buffer is full) was full.
    pub data_messages_dropped: u64,
    /// UDP datagrams that belonged to no transport or could not be parsed.
    pub datagrams_dropped: u64,
    /// ICE-TCP connections open now.
    pub tcp_connections: u64,
    /// ICE-TCP connections closed at once because the worker or their
    /// source already had as many as allowed.
    pub tcp_connections_refused: u64,
    /// ICE-TCP connections closed because no valid binding request came in time.
    pub tcp_connections_closed_unauthenticated: u64,
    /// Authenticated ICE-TCP connections closed after going idle.
    pub tcp_connections_closed_idle: u64,
    /// ICE-TCP frames dropped because the queue to the worker was full.
    pub tcp_frames_dropped: u64,
    /// Failed `accept` calls on the ICE-TCP listener (at the fd limit, each
    /// is followed by a short back-off).
    pub tcp_accept_errors: u64,
    /// Changes of a video consumer's forwarded layers by the bandwidth
    /// allocation (a pause for bandwidth and its end included).
    pub layer_switches: u64,
    /// Video consumers paused now because not even their lowest layer fits
    /// their viewer's link.
    pub consumers_paused_for_bandwidth: u64,
    /// Receive transports with a bandwidth estimate now, by estimate: how
    /// many are at or below each of [`ESTIMATE_BUCKETS_BPS`] (cumulative, as
    /// Prometheus histograms count), then all of them.
    pub estimate_buckets: [u64; ESTIMATE_BUCKETS_BPS.len() + 1],
    /// The sum of those estimates, bits/s.
    pub estimate_sum_bps: u64,
}

/// The bucket bounds of [`WorkerStats::estimate_buckets`], bits/s.
pub const ESTIMATE_BUCKETS_BPS: [u64; 8] = [
    150_000, 300_000, 500_000, 1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000,
];

/// Events the engine reports without being asked.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// A transport died on its own (ICE timeout, DTLS failure, DTLS close).
    /// Its producers and consumers are closed; `consumers_closed` lists the
    /// consumers on other transports that went with its producers.
    TransportClosed {
        transport_id: TransportId,
        reason: String,
        producers_closed: Vec<ProducerId>,
        consumers_closed: Vec<ConsumerId>,
    },
    /// The audio levels audio producers sent (RFC 6464 `ssrc-audio-level`)
    /// since the previous report; reported about every 100 ms for the
    /// producers that sent any.
    AudioLevels(Vec<AudioLevelReport>),
    /// The bandwidth allocation moved a video consumer to other layers
    /// (mediasoup's consumer `layerschange`): the simulcast and temporal
    /// layer it forwards from the next switch point on, both `None` while it
    /// is paused for bandwidth (not even its lowest layer fits the viewer's
    /// estimate).
    ConsumerLayersChanged {
        /// The receive transport the consumer lives on.
        transport_id: TransportId,
        consumer_id: ConsumerId,
        producer_id: ProducerId,
        spatial_layer: Option<u8>,
        temporal_layer: Option<u8>,
    },
    /// The far end of a link closed a producer it relayed here: its mirror
    /// is closed with the consumers of it on this worker
    /// (`consumers_closed`; piped copies on other workers close too).
    RelayedProducerClosed {
        link_id: TransportId,
        producer_id: ProducerId,
        consumers_closed: Vec<ConsumerId>,
    },
    /// The far end of a link closed a data producer it relayed here: its
    /// mirror is closed with its data consumers on this worker.
    RelayedDataProducerClosed {
        link_id: TransportId,
        data_producer_id: DataProducerId,
        data_consumers_closed: Vec<DataConsumerId>,
    },
}

/// One audio producer's levels over one report period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioLevelReport {
    /// The send transport the producer lives on.
    pub transport_id: TransportId,
    pub producer_id: ProducerId,
    /// Mean level of its packets in -dBov (0 is the loudest, 127 silence).
    pub level_dbov: u8,
    /// Whether most packets said "voice" (the extension's V bit), when the
    /// sender sets it.
    pub voice: Option<bool>,
    /// Packets the mean is over.
    pub packets: u32,
}

/// Errors of the engine's operations. Each variant names the ids involved
/// and says what misuse causes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No transport with this id on this worker (never created or closed).
    #[error("transport {0} not found")]
    TransportNotFound(TransportId),
    /// The operation needs a transport of the other direction.
    #[error("transport {0} has the wrong direction for this operation")]
    WrongDirection(TransportId),
    /// `connect` was already called for this transport.
    #[error("transport {0} is already connected")]
    AlreadyConnected(TransportId),
    /// The operation needs `connect` first.
    #[error("transport {0} is not connected yet; connect it first")]
    NotConnected(TransportId),
    /// The DTLS parameters carry no usable fingerprint.
    #[error("unusable DTLS parameters: {0}")]
    InvalidDtlsParameters(String),
    /// The RTP parameters cannot be forwarded (unsupported codec, no encodings, ...).
    #[error("unusable RTP parameters: {0}")]
    InvalidRtpParameters(String),
    /// The SCTP stream parameters cannot be used (bad or duplicate stream id, no SCTP).
    #[error("unusable SCTP parameters: {0}")]
    InvalidSctpParameters(String),
    /// No producer with this id on this worker.
    #[error("producer {0} not found")]
    ProducerNotFound(ProducerId),
    /// No consumer with this id on this worker.
    #[error("consumer {0} not found")]
    ConsumerNotFound(ConsumerId),
    /// Preferred layers beyond what the consumer's producer sends: a spatial
    /// layer at or above its number of encodings, a temporal layer above 2,
    /// or any layer for an audio consumer.
    #[error("consumer {consumer} has no layer S{spatial}T{temporal}: its producer has {spatial_layers} spatial and {temporal_layers} temporal layers")]
    LayersOutOfRange {
        consumer: ConsumerId,
        spatial: u8,
        temporal: u8,
        spatial_layers: usize,
        temporal_layers: usize,
    },
    /// A priority of 0 (priorities are 1..=255).
    #[error("priority must be 1..=255, not {0}")]
    InvalidPriority(u8),
    /// No data producer with this id on this worker.
    #[error("data producer {0} not found")]
    DataProducerNotFound(DataProducerId),
    /// No data consumer with this id on this worker.
    #[error("data consumer {0} not found")]
    DataConsumerNotFound(DataConsumerId),
    /// The send transport already carries as many producers as one may at
    /// once (a closed producer's m-line is reused by the next one). Close a
    /// producer, or produce on a new send transport.
    #[error("send transport {transport} already carries {limit} producers; close one or create a new send transport")]
    TooManyProducers {
        transport: TransportId,
        limit: usize,
    },
    /// A transport asked for TCP candidates only (`forceTcp`) on a worker
    /// that does not offer ICE over TCP.
    #[error("ICE over TCP is off on this server; create the transport without forceTcp")]
    TcpUnavailable,
    /// The worker thread is gone (it stopped or crashed).
    #[error("the media worker is not running")]
    WorkerGone,
    /// A transport numbered after a client's offer (WHEP) has no m-line
    /// left for another consumer of this kind.
    #[error("transport {0} has no m-line left for another {1:?} consumer")]
    NoMediaSlot(TransportId, MediaKind),
    /// A link operation that cannot be done: the transport is not a link,
    /// the far end's description or fingerprint does not hold, or the
    /// address is linked already.
    #[error("link: {0}")]
    InvalidLink(String),
    /// Something inside str0m refused the operation.
    #[error("media engine failure: {0}")]
    Internal(String),
}
