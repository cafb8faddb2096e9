//! Consumers the server makes: for a peer that asks, and the automatic ones
//! (see "Who consumes what" in docs/PROTOCOL.md), piping producers between
//! workers when needed.

use super::*;
use crate::registry::{ConsumerKind, Data, Media};
use simplesfu_engine::{ConsumerInfo, DataConsumerInfo};
use simplesfu_proto::{ConsumerId, DataConsumerId, TransportId};
use std::future::Future;

impl Sfu {
    /// The peer's consumer of `producer`: the existing one, or a new one
    /// from the engine (created paused). The same steps for media and data
    /// consumers; [`EngineConsumer`] names the engine calls that differ.
    pub(crate) async fn consumer_for<K: EngineConsumer>(
        &self,
        peer: &PeerId,
        producing_peer: &PeerId,
        producer: K::ProducerId,
    ) -> Result<K::Push, SignalingError> {
        let plan = self
            .registry()
            .plan_consume::<K>(peer, producing_peer, producer)?;
        let (worker, recv_transport, producer_worker) = match plan {
            ConsumePlan::Existing(push) => return Ok(push),
            ConsumePlan::Create {
                worker,
                recv_transport,
                producer_worker,
            } => (worker, recv_transport, producer_worker),
        };
        K::relay(self, producing_peer, producer).await?;
        let engine = self.worker(worker)?;
        if producer_worker != worker {
            // mediasoup's pipeToRouter: once per producer and worker, idempotent.
            K::pipe(self.worker(producer_worker)?, producer, engine)
                .await
                .map_err(from_engine)?;
        }
        let info = K::consume(engine, recv_transport, producer)
            .await
            .map_err(from_engine)?;
        let consumer = K::consumer_id(&info);
        let recorded =
            self.registry()
                .add_consumer::<K>(peer, producing_peer, recv_transport, info);
        if recorded.is_err() {
            // The producer, the room or the transport went away meanwhile.
            K::close(engine, consumer).await;
        }
        recorded
    }

    /// The link to `node` closed: the local consumers of its peers'
    /// producers went with it (see `Registry::link_gone`).
    pub(crate) async fn link_gone(&self, node: &str) {
        let (effects, targets) = self.registry().link_gone(node);
        self.apply(effects).await;
        self.auto_consume(targets);
    }

    /// Create consumers nobody asked for (see "Who consumes what" in
    /// docs/PROTOCOL.md) and push them. Each consuming peer's queue is taken
    /// in a task of its own, so this never waits on two queues at once.
    pub(crate) fn auto_consume(&self, targets: Vec<AutoConsume>) {
        let mut by_peer: HashMap<PeerId, Vec<AutoConsume>> = HashMap::new();
        for target in targets {
            by_peer
                .entry(target.consumer.clone())
                .or_default()
                .push(target);
        }
        for (peer, targets) in by_peer {
            if self.require(&peer, Right::Subscribe).is_err() {
                continue;
            }
            let sfu = self.clone();
            tokio::spawn(async move {
                let Some(queue) = sfu.queue_of(&peer) else {
                    return;
                };
                let _turn = queue.lock().await;
                for t in targets {
                    match sfu
                        .consumer_for::<Media>(&peer, &t.producing_peer, t.producer)
                        .await
                    {
                        Ok(push) => sfu.push(&peer, &Push::CreateConsumer(Box::new(push))),
                        Err(error) => tracing::debug!(
                            peer = %peer, producer = %t.producer, code = error.code.as_str(), "automatic consumer not created"
                        ),
                    }
                }
            });
        }
    }
}

/// The engine's side of making a consumer of one [`ConsumerKind`].
pub(crate) trait EngineConsumer: ConsumerKind {
    /// The consumer's id in the engine.
    type ConsumerId: Copy + Send;
    fn consumer_id(info: &Self::Info) -> Self::ConsumerId;
    /// Make `producer` (of worker `from`) consumable on worker `to`.
    fn pipe(
        from: &WorkerHandle,
        producer: Self::ProducerId,
        to: &WorkerHandle,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn consume(
        engine: &WorkerHandle,
        transport: TransportId,
        producer: Self::ProducerId,
    ) -> impl Future<Output = Result<Self::Info, EngineError>> + Send;
    /// Close a consumer nobody will use (its failure changes nothing).
    fn close(engine: &WorkerHandle, consumer: Self::ConsumerId) -> impl Future<Output = ()> + Send;
    /// A producer of a peer on another node: have it relayed to the link
    /// worker first (nothing for a local peer's).
    fn relay(
        sfu: &Sfu,
        producing_peer: &PeerId,
        producer: Self::ProducerId,
    ) -> impl Future<Output = Result<(), SignalingError>> + Send;
}

impl EngineConsumer for Media {
    type ConsumerId = ConsumerId;
    fn consumer_id(info: &ConsumerInfo) -> ConsumerId {
        info.id
    }
    async fn pipe(
        from: &WorkerHandle,
        producer: ProducerId,
        to: &WorkerHandle,
    ) -> Result<(), EngineError> {
        from.pipe_producer(producer, to).await
    }
    async fn consume(
        engine: &WorkerHandle,
        transport: TransportId,
        producer: ProducerId,
    ) -> Result<ConsumerInfo, EngineError> {
        engine.consume(transport, producer).await
    }
    async fn close(engine: &WorkerHandle, consumer: ConsumerId) {
        let _ = engine.close_consumer(consumer).await;
    }
    async fn relay(
        sfu: &Sfu,
        producing_peer: &PeerId,
        producer: ProducerId,
    ) -> Result<(), SignalingError> {
        let node = sfu.registry().node_of(producing_peer);
        match (node, sfu.inner.span.get()) {
            (Some(node), Some(span)) => span.ensure_relay(sfu, &node, producer).await,
            _ => Ok(()),
        }
    }
}

impl EngineConsumer for Data {
    type ConsumerId = DataConsumerId;
    fn consumer_id(info: &DataConsumerInfo) -> DataConsumerId {
        info.id
    }
    async fn pipe(
        from: &WorkerHandle,
        producer: DataProducerId,
        to: &WorkerHandle,
    ) -> Result<(), EngineError> {
        from.pipe_data_producer(producer, to).await
    }
    async fn consume(
        engine: &WorkerHandle,
        transport: TransportId,
        producer: DataProducerId,
    ) -> Result<DataConsumerInfo, EngineError> {
        engine.consume_data(transport, producer).await
    }
    async fn close(engine: &WorkerHandle, consumer: DataConsumerId) {
        let _ = engine.close_data_consumer(consumer).await;
    }
    async fn relay(
        sfu: &Sfu,
        producing_peer: &PeerId,
        producer: DataProducerId,
    ) -> Result<(), SignalingError> {
        let node = sfu.registry().node_of(producing_peer);
        match (node, sfu.inner.span.get()) {
            (Some(node), Some(span)) => span.ensure_data_relay(sfu, &node, producer).await,
            _ => Ok(()),
        }
    }
}
