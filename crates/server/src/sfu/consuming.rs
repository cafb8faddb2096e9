//! Consumers the server makes: for a peer that asks, and the automatic ones
//! (see "Who consumes what" in docs/PROTOCOL.md), piping producers between
//! workers when needed.

use super::*;

impl Sfu {
    /// The peer's consumer of `producer`: the existing one, or a new one from
    /// the engine (created paused).
    pub(crate) async fn consumer_for(
        &self,
        peer: &PeerId,
        producing_peer: &PeerId,
        producer: ProducerId,
    ) -> Result<CreateConsumer, SignalingError> {
        let plan = self.registry().plan_consume(peer, producing_peer, producer)?;
        let (worker, recv_transport, producer_worker) = match plan {
            ConsumePlan::Existing(push) => return Ok(push),
            ConsumePlan::Create { worker, recv_transport, producer_worker } => (worker, recv_transport, producer_worker),
        };
        let engine = self.worker(worker)?;
        if producer_worker != worker {
            // mediasoup's pipeToRouter: once per producer and worker, idempotent.
            self.worker(producer_worker)?.pipe_producer(producer, engine).await.map_err(from_engine)?;
        }
        let info = engine.consume(recv_transport, producer).await.map_err(from_engine)?;
        let consumer = info.id;
        let recorded = self.registry().add_consumer(peer, producing_peer, recv_transport, info);
        if recorded.is_err() {
            // The producer, the room or the transport went away meanwhile.
            let _ = engine.close_consumer(consumer).await;
        }
        recorded
    }

    pub(crate) async fn data_consumer_for(
        &self,
        peer: &PeerId,
        producing_peer: &PeerId,
        producer: DataProducerId,
    ) -> Result<CreateDataConsumer, SignalingError> {
        let plan = self.registry().plan_consume_data(peer, producing_peer, producer)?;
        let (worker, recv_transport, producer_worker) = match plan {
            ConsumePlan::Existing(push) => return Ok(push),
            ConsumePlan::Create { worker, recv_transport, producer_worker } => (worker, recv_transport, producer_worker),
        };
        let engine = self.worker(worker)?;
        if producer_worker != worker {
            self.worker(producer_worker)?.pipe_data_producer(producer, engine).await.map_err(from_engine)?;
        }
        let info = engine.consume_data(recv_transport, producer).await.map_err(from_engine)?;
        let consumer = info.id;
        let recorded = self.registry().add_data_consumer(peer, producing_peer, recv_transport, info);
        if recorded.is_err() {
            let _ = engine.close_data_consumer(consumer).await;
        }
        recorded
    }

    /// Create consumers nobody asked for (see "Who consumes what" in
    /// docs/PROTOCOL.md) and push them. Each consuming peer's queue is taken
    /// in a task of its own, so this never waits on two queues at once.
    pub(crate) fn auto_consume(&self, targets: Vec<AutoConsume>) {
        let mut by_peer: HashMap<PeerId, Vec<AutoConsume>> = HashMap::new();
        for target in targets {
            by_peer.entry(target.consumer.clone()).or_default().push(target);
        }
        for (peer, targets) in by_peer {
            if self.require(&peer, Right::Subscribe).is_err() {
                continue;
            }
            let sfu = self.clone();
            tokio::spawn(async move {
                let Some(queue) = sfu.queue_of(&peer) else { return };
                let _turn = queue.lock().await;
                for t in targets {
                    match sfu.consumer_for(&peer, &t.producing_peer, t.producer).await {
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
