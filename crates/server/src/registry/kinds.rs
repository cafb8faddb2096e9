//! Media and data consumers are made by the same rules (same room, the
//! producer exists, one consumer per producer, the receive transport); a
//! [`ConsumerKind`] names what differs: the ids, the engine's answer, the
//! push the client gets and where the peer keeps it.

use super::*;

/// One kind of consumer: [`Media`] or [`Data`].
pub(crate) trait ConsumerKind {
    /// The producer a consumer of this kind consumes.
    type ProducerId: Copy + Ord + std::fmt::Display + Send + Sync + 'static;
    /// What the engine answers when it made the consumer.
    type Info: Send;
    /// The push that tells the client about its consumer.
    type Push: Clone + Send;
    /// "producer" or "data producer", for error messages.
    const PRODUCER: &'static str;

    /// Whether `peer` has producer `id`.
    fn produces(peer: &PeerEntry, id: Self::ProducerId) -> bool;
    /// The push of `me`'s consumer of `them`'s producer `id`, if it exists.
    fn existing(me: &PeerEntry, them: &PeerEntry, id: Self::ProducerId) -> Option<Self::Push>;
    /// The producer the engine's consumer consumes.
    fn producer_of(info: &Self::Info) -> Self::ProducerId;
    /// The push for a new consumer of `them`'s producer.
    fn push(them: &PeerEntry, producing_peer: &PeerId, info: Self::Info) -> Self::Push;
    /// Keep the consumer in `me`'s entry.
    fn record(
        me: &mut PeerEntry,
        producing_peer: &PeerId,
        producer: Self::ProducerId,
        push: Self::Push,
    );
}

/// Audio and video consumers (`createConsumer`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Media;

/// Data consumers (`createDataConsumer`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Data;

impl ConsumerKind for Media {
    type ProducerId = ProducerId;
    type Info = ConsumerInfo;
    type Push = CreateConsumer;
    const PRODUCER: &'static str = "producer";

    fn produces(peer: &PeerEntry, id: ProducerId) -> bool {
        peer.producers.contains_key(&id)
    }

    /// Asking twice re-sends the consumer, with the producer's paused state as it is now.
    fn existing(me: &PeerEntry, them: &PeerEntry, id: ProducerId) -> Option<CreateConsumer> {
        let mut push = me.consumers.get(&id)?.push.clone();
        push.producer_paused = them.producers.get(&id).is_some_and(|p| p.paused);
        Some(push)
    }

    fn producer_of(info: &ConsumerInfo) -> ProducerId {
        info.producer_id
    }

    fn push(them: &PeerEntry, producing_peer: &PeerId, info: ConsumerInfo) -> CreateConsumer {
        let producer = them.producers.get(&info.producer_id);
        let (label, broadcast, paused) = producer.map_or(("", false, false), |p| {
            (p.label.as_str(), p.broadcast, p.paused)
        });
        CreateConsumer {
            peer_id: producing_peer.clone(),
            producer_id: info.producer_id,
            id: info.id,
            kind: info.kind,
            rtp_parameters: info.rtp_parameters,
            consumer_type: info.consumer_type,
            app_data: serde_json::json!({
                "label": label,
                "broadcast": broadcast,
                "peerId": producing_peer,
            }),
            producer_paused: info.producer_paused || paused,
        }
    }

    fn record(
        me: &mut PeerEntry,
        producing_peer: &PeerId,
        producer: ProducerId,
        push: CreateConsumer,
    ) {
        let entry = ConsumerEntry {
            producing_peer: producing_peer.clone(),
            push,
            paused: true,
            preferred_spatial: None,
        };
        me.consumers.insert(producer, entry);
    }
}

impl ConsumerKind for Data {
    type ProducerId = DataProducerId;
    type Info = DataConsumerInfo;
    type Push = CreateDataConsumer;
    const PRODUCER: &'static str = "data producer";

    fn produces(peer: &PeerEntry, id: DataProducerId) -> bool {
        peer.data_producers.contains_key(&id)
    }

    fn existing(
        me: &PeerEntry,
        _them: &PeerEntry,
        id: DataProducerId,
    ) -> Option<CreateDataConsumer> {
        me.data_consumers.get(&id).map(|c| c.push.clone())
    }

    fn producer_of(info: &DataConsumerInfo) -> DataProducerId {
        info.data_producer_id
    }

    fn push(
        them: &PeerEntry,
        producing_peer: &PeerId,
        info: DataConsumerInfo,
    ) -> CreateDataConsumer {
        let app_data = them
            .data_producers
            .get(&info.data_producer_id)
            .map(|p| p.app_data.clone())
            .unwrap_or(Value::Null);
        CreateDataConsumer {
            peer_id: producing_peer.clone(),
            data_producer_id: info.data_producer_id,
            id: info.id,
            sctp_stream_parameters: info.sctp_stream_parameters,
            label: info.label,
            protocol: info.protocol,
            app_data,
        }
    }

    fn record(
        me: &mut PeerEntry,
        producing_peer: &PeerId,
        producer: DataProducerId,
        push: CreateDataConsumer,
    ) {
        me.data_consumers.insert(
            producer,
            DataConsumerEntry {
                producing_peer: producing_peer.clone(),
                push,
            },
        );
    }
}
