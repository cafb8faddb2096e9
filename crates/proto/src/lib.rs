//! Wire messages of the simplesfu signaling protocol (version 1, the protocol of
//! the published `simple-mediasoup-peer-client`) and the typed ids they carry.
//!
//! Everything here is plain data: parsing a request never touches server state,
//! so a malformed request is refused before anything changes. Parameter shapes
//! (RTP, DTLS, SCTP) are mediasoup's, from the `mediasoup-types` crate.

mod ack;
mod ids;
mod push;
mod request;

pub use ack::{success_ack, ErrorCode, SignalingError};
pub use ids::{
    ConsumerId, DataConsumerId, DataProducerId, IdParseError, PeerId, ProducerId, RoomId,
    TransportId,
};
pub use push::{
    ActiveSpeaker, AudioLevel, AvailableProducer, AvailableProducers, ConsumerClosed,
    ConsumerLayersChanged, CreateConsumer, CreateDataConsumer, PeerProducers, ProducerLayersWanted,
    Push, ServerShutdown, Session,
};
pub use request::{
    ConnectWebRtcTransport, CreateConsumerRequest, CreateWebRtcTransport, JoinRoom, Produce,
    ProduceAppData, ProduceData, ProducerRef, Request, RequestType, SetConsumerPreferredLayers,
    SetConsumerPriority, SubscribeAudioLevels, TransportRef, MAX_APP_DATA_BYTES, MAX_LABEL_BYTES,
    MAX_REQUEST_BYTES,
};

/// mediasoup's parameter types, re-exported so users of this crate name one source.
pub use mediasoup_types as types;

/// The one socket.io event name that carries every request and push.
pub const SIGNALING_EVENT: &str = "mediasoupSignaling";
