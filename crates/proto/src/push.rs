//! Pushes (server to client): `emit("mediasoupSignaling", {type, data})`, no ack.

use crate::ids::{ConsumerId, DataConsumerId, DataProducerId, PeerId, ProducerId};
use mediasoup_types::rtp_parameters::{MediaKind, RtpParameters};
use mediasoup_types::sctp_parameters::SctpStreamParameters;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One producer as listed in `availableProducers`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailableProducer {
    pub label: String,
    pub broadcast: bool,
    pub peer_id: PeerId,
    /// Extension: `audio` or `video`.
    pub kind: MediaKind,
    /// Extension: whether the producer is paused by its peer.
    pub paused: bool,
}

/// What one peer offers.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerProducers {
    pub producers: BTreeMap<ProducerId, AvailableProducer>,
    pub data_producers: BTreeMap<DataProducerId, Value>,
}

/// `availableProducers`: every peer of the room, the receiver included.
pub type AvailableProducers = BTreeMap<PeerId, PeerProducers>;

/// `createConsumer` push.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateConsumer {
    pub peer_id: PeerId,
    pub producer_id: ProducerId,
    pub id: ConsumerId,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    /// `simple` or `simulcast`, as mediasoup names consumer types.
    #[serde(rename = "type")]
    pub consumer_type: &'static str,
    pub app_data: Value,
    pub producer_paused: bool,
}

/// `createDataConsumer` push.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDataConsumer {
    pub peer_id: PeerId,
    pub data_producer_id: DataProducerId,
    pub id: DataConsumerId,
    pub sctp_stream_parameters: SctpStreamParameters,
    pub label: String,
    pub protocol: String,
    pub app_data: Value,
}

/// `consumerClosed` / `dataConsumerClosed`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerClosed {
    pub producing_peer_id: PeerId,
    /// The producer (or data producer) id the consumer consumed.
    pub producer_id: String,
}

/// **ext** `session`: the peer's id and the secret that lets a new socket
/// take the peer over after a disconnect (see "Session resume" in
/// docs/PROTOCOL.md). Sent on every (re)connect of a client that announced
/// resume support; each one replaces the previous token.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub peer_id: PeerId,
    pub resume_token: String,
    /// How long the server keeps the peer after its socket drops.
    pub resume_grace_ms: u64,
}

/// **ext** `serverShutdown`: the server is stopping; the socket closes next.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerShutdown {
    pub message: String,
}

/// **ext** `activeSpeaker`: the room's dominant speaker changed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveSpeaker {
    pub peer_id: PeerId,
}

/// **ext** one entry of `audioLevels`: a peer's speech activity, 0 (silent)
/// to 1 (talking steadily), smoothed over about half a second.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioLevel {
    pub peer_id: PeerId,
    pub level: f64,
}

/// **ext** `consumerLayersChanged`: the bandwidth allocation moved the
/// peer's consumer of `producerId` to other layers; both `null` while it is
/// paused for bandwidth (not even the lowest layer fits the peer's link).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerLayersChanged {
    pub producer_id: ProducerId,
    pub spatial_layer: Option<u8>,
    pub temporal_layer: Option<u8>,
}

/// **ext** `producerLayersWanted` (dynacast): to the publisher of a
/// simulcast producer, the highest simulcast layer any consumer on the
/// server wants now (index into its encodings, lowest first). The encodings
/// above it can stop (our client calls mediasoup-client's
/// `producer.setMaxSpatialLayer`), saving the publisher's uplink and CPU.
/// Clients that do not know it ignore it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerLayersWanted {
    pub producer_id: ProducerId,
    pub max_spatial_layer: u8,
}

/// Every push, serialized as `{type, data}`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "camelCase")]
pub enum Push {
    PeerConnection(Vec<PeerId>),
    PeerDisconnection(Vec<PeerId>),
    AvailableProducers(AvailableProducers),
    CreateConsumer(Box<CreateConsumer>),
    CreateDataConsumer(CreateDataConsumer),
    ConsumerClosed(ConsumerClosed),
    DataConsumerClosed(ConsumerClosed),
    /// Extension: see [`Session`].
    Session(Session),
    /// Extension: see [`ServerShutdown`].
    ServerShutdown(ServerShutdown),
    /// Extension: see [`ActiveSpeaker`].
    ActiveSpeaker(ActiveSpeaker),
    /// Extension: the room's speakers, loudest first, at most every 250 ms
    /// to peers that asked (`subscribeAudioLevels`).
    AudioLevels(Vec<AudioLevel>),
    /// Extension: see [`ConsumerLayersChanged`].
    ConsumerLayersChanged(ConsumerLayersChanged),
    /// Extension: see [`ProducerLayersWanted`].
    ProducerLayersWanted(ProducerLayersWanted),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_serialize_as_type_and_data() {
        let peer: PeerId = "p1".parse().expect("valid");
        let v = serde_json::to_value(Push::PeerConnection(vec![peer])).expect("serializes");
        assert_eq!(
            v,
            serde_json::json!({"type": "peerConnection", "data": ["p1"]})
        );
    }
}
