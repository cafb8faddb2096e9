//! The simplesfu media engine: a selective forwarding unit in mediasoup's
//! vocabulary (Worker, Router, WebRtcTransport, Producer, Consumer,
//! DataProducer, DataConsumer) on the sans-IO WebRTC stack str0m.
//!
//! A [`Worker`] is one thread that owns a UDP socket, its router and every
//! transport on it; nothing else touches that state. Callers talk to it through
//! a cloneable [`WorkerHandle`] whose async methods send a command and await
//! the reply. The router itself ([`Router`]) is plain, synchronous code with
//! time as an input, so tests can drive it directly: `tests/sim` does, with
//! str0m clients and a simulated clock, and no sockets.
//!
//! This crate knows nothing about socket.io or rooms: who may consume what is
//! decided by the caller.

// Wired into the router once it is split into modules (issue 13).
mod allocation;
mod api;
mod candidates;
mod capabilities;
mod forward;
mod pending;
mod router;
mod rtp_params;
mod sdp;
mod stun;
mod tcp;
mod udp;
mod worker;

pub use api::{
    AudioLevelReport, ClosedProducer, ConsumerInfo, DataConsumerInfo, DataProducerOptions,
    Direction, EngineError, EngineEvent, LinkInfo, LinkOptions, ProducerOptions,
    RelayedDataProducer, RelayedProducer, RemoteNumbering, WebRtcTransportInfo,
    WebRtcTransportOptions, WorkerStats, ESTIMATE_BUCKETS_BPS,
};
pub use capabilities::router_rtp_capabilities;
pub use router::{Router, RouterConfig};
pub use rtp_params::{codec_supported, extension_supported, router_payload_type};
pub use tcp::IceTcpLimits;
pub use worker::{Worker, WorkerHandle, WorkerSettings};
