//! The signaling state of every peer: which room it is in, its transports,
//! producers and consumers as the server promised them to clients.
//!
//! This is plain synchronous bookkeeping with no I/O, so the rules (who may
//! consume what, what a leave or a disconnect takes with it, what
//! `availableProducers` says) are tested here without a network or an engine.
//! Operations that change more than one peer return [`Effects`]: the pushes to
//! send and the engine objects to close, which the caller carries out after
//! releasing the lock that guards the registry.

use simplesfu_engine::{ConsumerInfo, DataConsumerInfo, Direction};
use simplesfu_proto::types::rtp_parameters::MediaKind;
use simplesfu_proto::{
    AvailableProducer, AvailableProducers, ConsumerClosed, ConsumerId, CreateConsumer,
    CreateDataConsumer, DataConsumerId, DataProducerId, ErrorCode, PeerId, PeerProducers,
    ProducerId, Push, RoomId, SignalingError, TransportId,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Index of a media worker in the SFU's worker list.
pub(crate) type WorkerIndex = usize;

/// What an operation asks the caller to do once the registry lock is released.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Pushes, in order, to the named peers.
    pub pushes: Vec<(PeerId, Push)>,
    /// Consumers the engine must close (their peers were told already).
    pub close_consumers: Vec<(WorkerIndex, ConsumerId)>,
    /// Data consumers the engine must close.
    pub close_data_consumers: Vec<(WorkerIndex, DataConsumerId)>,
    /// Rooms whose `availableProducers` changed.
    pub rooms_changed: BTreeSet<RoomId>,
}

impl Effects {
    fn push(&mut self, to: &PeerId, push: Push) {
        self.pushes.push((to.clone(), push));
    }

    fn merge(&mut self, other: Effects) {
        self.pushes.extend(other.pushes);
        self.close_consumers.extend(other.close_consumers);
        self.close_data_consumers.extend(other.close_data_consumers);
        self.rooms_changed.extend(other.rooms_changed);
    }
}

/// One of a peer's two transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TransportSlot {
    pub id: TransportId,
    pub connected: bool,
}

/// A producer as the room sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub kind: MediaKind,
    pub label: String,
    pub broadcast: bool,
    pub paused: bool,
}

/// A data producer: its client appData is what `availableProducers` lists.
#[derive(Debug, Clone)]
pub(crate) struct DataProducerEntry {
    pub app_data: Value,
}

#[derive(Debug, Clone)]
struct ConsumerEntry {
    producing_peer: PeerId,
    push: CreateConsumer,
}

#[derive(Debug, Clone)]
struct DataConsumerEntry {
    producing_peer: PeerId,
    push: CreateDataConsumer,
}

#[derive(Debug)]
struct PeerEntry {
    worker: WorkerIndex,
    room: Option<RoomId>,
    /// Whether the server creates consumers for this peer without being asked.
    auto_consume: bool,
    send: Option<TransportSlot>,
    recv: Option<TransportSlot>,
    producers: BTreeMap<ProducerId, ProducerEntry>,
    data_producers: BTreeMap<DataProducerId, DataProducerEntry>,
    /// Keyed by the producer consumed: one consumer per (peer, producer).
    consumers: BTreeMap<ProducerId, ConsumerEntry>,
    data_consumers: BTreeMap<DataProducerId, DataConsumerEntry>,
}

impl PeerEntry {
    fn slot(&self, direction: Direction) -> Option<TransportSlot> {
        match direction {
            Direction::Send => self.send,
            Direction::Recv => self.recv,
        }
    }

    fn slot_mut(&mut self, direction: Direction) -> &mut Option<TransportSlot> {
        match direction {
            Direction::Send => &mut self.send,
            Direction::Recv => &mut self.recv,
        }
    }
}

/// What the caller must do to create a consumer, or the one that exists.
#[derive(Debug)]
pub(crate) enum ConsumePlan<P> {
    /// The peer consumes this producer already: re-send this push.
    Existing(P),
    /// Ask the engine for a consumer on this worker and receive transport;
    /// the producer lives on `producer_worker` (piped over first when it differs).
    Create { worker: WorkerIndex, recv_transport: TransportId, producer_worker: WorkerIndex },
}

/// A consumer the server creates without being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AutoConsume {
    pub consumer: PeerId,
    pub producing_peer: PeerId,
    pub producer: ProducerId,
}

/// Everything a removed peer leaves behind for the caller to clean up.
#[derive(Debug)]
pub(crate) struct RemovedPeer {
    pub worker: WorkerIndex,
    /// Closing these in the engine closes the peer's producers and consumers.
    pub transports: Vec<TransportId>,
    pub effects: Effects,
}

/// Counters for `/health`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCounts {
    pub peers: usize,
    pub rooms: usize,
    pub transports: usize,
    pub producers: usize,
    pub consumers: usize,
    pub data_producers: usize,
    pub data_consumers: usize,
}

/// All peers and rooms.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    peers: HashMap<PeerId, PeerEntry>,
    /// Members in join order (the order `peerConnection` lists them).
    rooms: HashMap<RoomId, Vec<PeerId>>,
    transport_owners: HashMap<TransportId, (PeerId, Direction)>,
}

fn err(code: ErrorCode, message: impl Into<String>) -> SignalingError {
    SignalingError::new(code, message)
}

fn peer_gone() -> SignalingError {
    err(ErrorCode::PeerNotFound, "this peer is disconnecting")
}

fn closed(producing_peer: &PeerId, producer: impl ToString) -> ConsumerClosed {
    ConsumerClosed { producing_peer_id: producing_peer.clone(), producer_id: producer.to_string() }
}

impl Registry {
    pub fn counts(&self) -> RegistryCounts {
        let mut c = RegistryCounts { peers: self.peers.len(), rooms: self.rooms.len(), ..Default::default() };
        for p in self.peers.values() {
            c.transports += usize::from(p.send.is_some()) + usize::from(p.recv.is_some());
            c.producers += p.producers.len();
            c.consumers += p.consumers.len();
            c.data_producers += p.data_producers.len();
            c.data_consumers += p.data_consumers.len();
        }
        c
    }

    pub fn add_peer(&mut self, peer: PeerId, worker: WorkerIndex) {
        self.peers.insert(
            peer,
            PeerEntry {
                worker,
                room: None,
                auto_consume: true,
                send: None,
                recv: None,
                producers: BTreeMap::new(),
                data_producers: BTreeMap::new(),
                consumers: BTreeMap::new(),
                data_consumers: BTreeMap::new(),
            },
        );
    }

    /// The peer's producers, media and data together (for the producer limit).
    pub fn producer_count(&self, peer: &PeerId) -> Result<usize, SignalingError> {
        self.peer(peer).map(|p| p.producers.len() + p.data_producers.len())
    }

    pub fn worker_of(&self, peer: &PeerId) -> Result<WorkerIndex, SignalingError> {
        self.peers.get(peer).map(|p| p.worker).ok_or_else(peer_gone)
    }

    pub fn room_of(&self, peer: &PeerId) -> Option<RoomId> {
        self.peers.get(peer).and_then(|p| p.room.clone())
    }

    pub fn members(&self, room: &RoomId) -> Vec<PeerId> {
        self.rooms.get(room).cloned().unwrap_or_default()
    }

    fn peer(&self, peer: &PeerId) -> Result<&PeerEntry, SignalingError> {
        self.peers.get(peer).ok_or_else(peer_gone)
    }

    fn peer_mut(&mut self, peer: &PeerId) -> Result<&mut PeerEntry, SignalingError> {
        self.peers.get_mut(peer).ok_or_else(peer_gone)
    }

    /// Join `room`, leaving the current room first (as the original server
    /// did). Joining the room one is in already changes nothing.
    pub fn join_room(&mut self, peer: &PeerId, room: &RoomId, auto_consume: bool) -> Result<Effects, SignalingError> {
        self.peer_mut(peer)?.auto_consume = auto_consume;
        let current = self.peer(peer)?.room.clone();
        let mut effects = Effects::default();
        if current.as_ref() == Some(room) {
            // Nothing changed for the others: only the joiner hears the list again.
            effects.push(peer, Push::AvailableProducers(self.available_producers(room)));
            return Ok(effects);
        }
        if current.is_some() {
            effects.merge(self.leave_room(peer)?);
        }
        let existing = self.members(room);
        for other in &existing {
            effects.push(other, Push::PeerConnection(vec![peer.clone()]));
        }
        if !existing.is_empty() {
            effects.push(peer, Push::PeerConnection(existing));
        }
        self.rooms.entry(room.clone()).or_default().push(peer.clone());
        self.peer_mut(peer)?.room = Some(room.clone());
        effects.rooms_changed.insert(room.clone());
        Ok(effects)
    }

    /// Leave the current room: close every consumer between the leaver and
    /// the peers it no longer shares a room with, and tell both sides.
    pub fn leave_room(&mut self, peer: &PeerId) -> Result<Effects, SignalingError> {
        let entry = self.peer(peer)?;
        let Some(room) = entry.room.clone() else {
            return Err(err(ErrorCode::NotInRoom, "this peer is in no room"));
        };
        let room = &room;
        let worker = entry.worker;
        let mut effects = Effects::default();

        let remaining: Vec<PeerId> = self.members(room).into_iter().filter(|p| p != peer).collect();
        if remaining.is_empty() {
            self.rooms.remove(room);
        } else {
            self.rooms.insert(room.clone(), remaining.clone());
        }

        let leaver = self.peer_mut(peer)?;
        leaver.room = None;
        let own_consumers = std::mem::take(&mut leaver.consumers);
        let own_data_consumers = std::mem::take(&mut leaver.data_consumers);
        let own_producers: Vec<ProducerId> = leaver.producers.keys().copied().collect();
        let own_data_producers: Vec<DataProducerId> = leaver.data_producers.keys().copied().collect();
        for (producer, c) in own_consumers {
            effects.close_consumers.push((worker, c.push.id));
            effects.push(peer, Push::ConsumerClosed(closed(&c.producing_peer, producer)));
        }
        for (producer, c) in own_data_consumers {
            effects.close_data_consumers.push((worker, c.push.id));
            effects.push(peer, Push::DataConsumerClosed(closed(&c.producing_peer, producer)));
        }
        if !remaining.is_empty() {
            effects.push(peer, Push::PeerDisconnection(remaining.clone()));
        }

        for other_id in &remaining {
            effects.push(other_id, Push::PeerDisconnection(vec![peer.clone()]));
            let Some(other) = self.peers.get_mut(other_id) else { continue };
            for producer in &own_producers {
                if let Some(c) = other.consumers.remove(producer) {
                    effects.close_consumers.push((other.worker, c.push.id));
                    effects.pushes.push((other_id.clone(), Push::ConsumerClosed(closed(peer, producer))));
                }
            }
            for producer in &own_data_producers {
                if let Some(c) = other.data_consumers.remove(producer) {
                    effects.close_data_consumers.push((other.worker, c.push.id));
                    effects.pushes.push((other_id.clone(), Push::DataConsumerClosed(closed(peer, producer))));
                }
            }
        }
        if !remaining.is_empty() {
            effects.rooms_changed.insert(room.clone());
        }
        Ok(effects)
    }

    /// Forget a peer: leave its room, drop its producers (telling their
    /// consumers) and hand back its transports for the engine to close.
    pub fn remove_peer(&mut self, peer: &PeerId) -> Option<RemovedPeer> {
        let mut effects = Effects::default();
        if let Ok(left) = self.leave_room(peer) {
            effects.merge(left);
        }
        let entry = self.peers.remove(peer)?;
        // Consumers of this peer's producers by peers outside its room cannot
        // exist (leaving closes them), but the registry stays consistent even
        // if that rule changes.
        for producer in entry.producers.keys() {
            effects.merge(self.drop_consumers_of(peer, *producer, false));
        }
        for producer in entry.data_producers.keys() {
            effects.merge(self.drop_data_consumers_of(peer, *producer, false));
        }
        let transports: Vec<TransportId> = [entry.send, entry.recv].into_iter().flatten().map(|t| t.id).collect();
        for t in &transports {
            self.transport_owners.remove(t);
        }
        Some(RemovedPeer { worker: entry.worker, transports, effects })
    }

    /// Remove every consumer of `producer` and tell their peers. With
    /// `close_in_engine`, also ask the engine to close them (not needed when
    /// the engine closes them along with their producer).
    fn drop_consumers_of(&mut self, producing_peer: &PeerId, producer: ProducerId, close_in_engine: bool) -> Effects {
        let mut effects = Effects::default();
        for (peer_id, entry) in self.peers.iter_mut() {
            if let Some(c) = entry.consumers.remove(&producer) {
                if close_in_engine {
                    effects.close_consumers.push((entry.worker, c.push.id));
                }
                effects.push(peer_id, Push::ConsumerClosed(closed(producing_peer, producer)));
            }
        }
        effects
    }

    fn drop_data_consumers_of(
        &mut self,
        producing_peer: &PeerId,
        producer: DataProducerId,
        close_in_engine: bool,
    ) -> Effects {
        let mut effects = Effects::default();
        for (peer_id, entry) in self.peers.iter_mut() {
            if let Some(c) = entry.data_consumers.remove(&producer) {
                if close_in_engine {
                    effects.close_data_consumers.push((entry.worker, c.push.id));
                }
                effects.push(peer_id, Push::DataConsumerClosed(closed(producing_peer, producer)));
            }
        }
        effects
    }

    /// May this peer create a transport of this direction? Gives its worker.
    pub fn check_new_transport(&self, peer: &PeerId, direction: Direction) -> Result<WorkerIndex, SignalingError> {
        let entry = self.peer(peer)?;
        if let Some(existing) = entry.slot(direction) {
            let which = match direction {
                Direction::Send => "send (producing)",
                Direction::Recv => "receive (consuming)",
            };
            return Err(err(
                ErrorCode::TransportAlreadyExists,
                format!("this peer already has a {which} transport ({})", existing.id),
            ));
        }
        Ok(entry.worker)
    }

    pub fn add_transport(&mut self, peer: &PeerId, direction: Direction, id: TransportId) -> Result<(), SignalingError> {
        self.check_new_transport(peer, direction)?;
        *self.peer_mut(peer)?.slot_mut(direction) = Some(TransportSlot { id, connected: false });
        self.transport_owners.insert(id, (peer.clone(), direction));
        Ok(())
    }

    /// The peer's own transport with this id (another peer's id is "not found").
    pub fn own_transport(&self, peer: &PeerId, id: TransportId) -> Result<(WorkerIndex, Direction, TransportSlot), SignalingError> {
        let entry = self.peer(peer)?;
        for direction in [Direction::Send, Direction::Recv] {
            if let Some(slot) = entry.slot(direction).filter(|s| s.id == id) {
                return Ok((entry.worker, direction, slot));
            }
        }
        Err(err(ErrorCode::TransportNotFound, format!("this peer has no transport {id}")))
    }

    /// The peer's send transport `id`, connected: where producers go.
    pub fn producing_transport(&self, peer: &PeerId, id: TransportId) -> Result<WorkerIndex, SignalingError> {
        let (worker, direction, slot) = self.own_transport(peer, id)?;
        if direction != Direction::Send {
            return Err(err(
                ErrorCode::WrongTransportDirection,
                format!("transport {id} is a receive transport; produce on the send transport (producing: true)"),
            ));
        }
        if !slot.connected {
            return Err(err(
                ErrorCode::TransportNotConnected,
                format!("transport {id} is not connected; call connectWebRtcTransport first"),
            ));
        }
        Ok(worker)
    }

    pub fn check_connect(&self, peer: &PeerId, id: TransportId) -> Result<WorkerIndex, SignalingError> {
        let (worker, _, slot) = self.own_transport(peer, id)?;
        if slot.connected {
            return Err(err(ErrorCode::TransportAlreadyConnected, format!("transport {id} is connected already")));
        }
        Ok(worker)
    }

    pub fn mark_connected(&mut self, peer: &PeerId, id: TransportId) {
        if let Some(entry) = self.peers.get_mut(peer) {
            for slot in [&mut entry.send, &mut entry.recv].into_iter().flatten() {
                if slot.id == id {
                    slot.connected = true;
                }
            }
        }
    }

    /// Record a new producer; gives the room to refresh (if any).
    pub fn add_producer(&mut self, peer: &PeerId, id: ProducerId, producer: ProducerEntry) -> Result<Effects, SignalingError> {
        let entry = self.peer_mut(peer)?;
        entry.producers.insert(id, producer);
        let mut effects = Effects::default();
        effects.rooms_changed.extend(entry.room.clone());
        Ok(effects)
    }

    pub fn add_data_producer(&mut self, peer: &PeerId, id: DataProducerId, producer: DataProducerEntry) -> Result<Effects, SignalingError> {
        let entry = self.peer_mut(peer)?;
        entry.data_producers.insert(id, producer);
        let mut effects = Effects::default();
        effects.rooms_changed.extend(entry.room.clone());
        Ok(effects)
    }

    pub fn own_producer(&self, peer: &PeerId, id: ProducerId) -> Result<WorkerIndex, SignalingError> {
        let entry = self.peer(peer)?;
        if entry.producers.contains_key(&id) {
            Ok(entry.worker)
        } else {
            Err(err(ErrorCode::ProducerNotFound, format!("this peer has no producer {id}")))
        }
    }

    /// Forget a producer the engine closed (with its consumers).
    pub fn remove_producer(&mut self, peer: &PeerId, id: ProducerId) -> Result<Effects, SignalingError> {
        self.own_producer(peer, id)?;
        let entry = self.peer_mut(peer)?;
        entry.producers.remove(&id);
        let room = entry.room.clone();
        let mut effects = self.drop_consumers_of(peer, id, false);
        effects.rooms_changed.extend(room);
        Ok(effects)
    }

    pub fn set_producer_paused(&mut self, peer: &PeerId, id: ProducerId, paused: bool) -> Result<Effects, SignalingError> {
        let entry = self.peer_mut(peer)?;
        let producer = entry
            .producers
            .get_mut(&id)
            .ok_or_else(|| err(ErrorCode::ProducerNotFound, format!("this peer has no producer {id}")))?;
        let mut effects = Effects::default();
        if producer.paused != paused {
            producer.paused = paused;
            effects.rooms_changed.extend(entry.room.clone());
        }
        Ok(effects)
    }

    /// Check that `consumer` may consume `producer` of `producing_peer`.
    fn check_same_room(&self, consumer: &PeerId, producing_peer: &PeerId) -> Result<(&PeerEntry, &PeerEntry), SignalingError> {
        let me = self.peer(consumer)?;
        let Some(my_room) = me.room.as_ref() else {
            return Err(err(ErrorCode::NotInRoom, "join a room before consuming"));
        };
        let Some(them) = self.peers.get(producing_peer) else {
            return Err(err(ErrorCode::PeerNotFound, format!("no peer `{producing_peer}`")));
        };
        if them.room.as_ref() != Some(my_room) {
            return Err(err(
                ErrorCode::ProducerNotInRoom,
                format!("peer `{producing_peer}` is not in room `{my_room}`"),
            ));
        }
        Ok((me, them))
    }

    fn recv_for_consuming(&self, me: &PeerEntry) -> Result<(WorkerIndex, TransportId), SignalingError> {
        let Some(recv) = me.recv else {
            return Err(err(
                ErrorCode::NoReceiveTransport,
                "create a receive transport (consuming: true) before consuming",
            ));
        };
        Ok((me.worker, recv.id))
    }

    /// How many peers are placed on each of `workers` workers.
    pub fn peers_per_worker(&self, workers: usize) -> Vec<usize> {
        let mut counts = vec![0; workers];
        for p in self.peers.values() {
            if let Some(c) = counts.get_mut(p.worker) {
                *c += 1;
            }
        }
        counts
    }

    pub fn plan_consume(
        &self,
        consumer: &PeerId,
        producing_peer: &PeerId,
        producer: ProducerId,
    ) -> Result<ConsumePlan<CreateConsumer>, SignalingError> {
        let (me, them) = self.check_same_room(consumer, producing_peer)?;
        let Some(entry) = them.producers.get(&producer) else {
            return Err(err(
                ErrorCode::ProducerNotFound,
                format!("peer `{producing_peer}` has no producer {producer}"),
            ));
        };
        if let Some(existing) = me.consumers.get(&producer) {
            let mut push = existing.push.clone();
            push.producer_paused = entry.paused;
            return Ok(ConsumePlan::Existing(push));
        }
        let (worker, recv_transport) = self.recv_for_consuming(me)?;
        Ok(ConsumePlan::Create { worker, recv_transport, producer_worker: them.worker })
    }

    /// Record the consumer the engine made, unless the world changed while
    /// it was being made (then the caller closes it in the engine).
    pub fn add_consumer(
        &mut self,
        consumer: &PeerId,
        producing_peer: &PeerId,
        recv_transport: TransportId,
        info: ConsumerInfo,
    ) -> Result<CreateConsumer, SignalingError> {
        let (me, them) = self.check_same_room(consumer, producing_peer)?;
        let Some(entry) = them.producers.get(&info.producer_id) else {
            return Err(err(ErrorCode::ProducerNotFound, format!("producer {} closed meanwhile", info.producer_id)));
        };
        if me.recv.map(|t| t.id) != Some(recv_transport) {
            return Err(err(ErrorCode::NoReceiveTransport, "the receive transport closed meanwhile"));
        }
        let push = CreateConsumer {
            peer_id: producing_peer.clone(),
            producer_id: info.producer_id,
            id: info.id,
            kind: info.kind,
            rtp_parameters: info.rtp_parameters,
            consumer_type: info.consumer_type,
            app_data: serde_json::json!({
                "label": entry.label,
                "broadcast": entry.broadcast,
                "peerId": producing_peer,
            }),
            producer_paused: info.producer_paused || entry.paused,
        };
        let me = self.peer_mut(consumer)?;
        me.consumers
            .insert(info.producer_id, ConsumerEntry { producing_peer: producing_peer.clone(), push: push.clone() });
        Ok(push)
    }

    pub fn plan_consume_data(
        &self,
        consumer: &PeerId,
        producing_peer: &PeerId,
        producer: DataProducerId,
    ) -> Result<ConsumePlan<CreateDataConsumer>, SignalingError> {
        let (me, them) = self.check_same_room(consumer, producing_peer)?;
        if !them.data_producers.contains_key(&producer) {
            return Err(err(
                ErrorCode::ProducerNotFound,
                format!("peer `{producing_peer}` has no data producer {producer}"),
            ));
        }
        if let Some(existing) = me.data_consumers.get(&producer) {
            return Ok(ConsumePlan::Existing(existing.push.clone()));
        }
        let (worker, recv_transport) = self.recv_for_consuming(me)?;
        Ok(ConsumePlan::Create { worker, recv_transport, producer_worker: them.worker })
    }

    pub fn add_data_consumer(
        &mut self,
        consumer: &PeerId,
        producing_peer: &PeerId,
        recv_transport: TransportId,
        info: DataConsumerInfo,
    ) -> Result<CreateDataConsumer, SignalingError> {
        let (me, them) = self.check_same_room(consumer, producing_peer)?;
        let Some(entry) = them.data_producers.get(&info.data_producer_id) else {
            return Err(err(
                ErrorCode::ProducerNotFound,
                format!("data producer {} closed meanwhile", info.data_producer_id),
            ));
        };
        if me.recv.map(|t| t.id) != Some(recv_transport) {
            return Err(err(ErrorCode::NoReceiveTransport, "the receive transport closed meanwhile"));
        }
        let push = CreateDataConsumer {
            peer_id: producing_peer.clone(),
            data_producer_id: info.data_producer_id,
            id: info.id,
            sctp_stream_parameters: info.sctp_stream_parameters,
            label: info.label,
            protocol: info.protocol,
            app_data: entry.app_data.clone(),
        };
        let me = self.peer_mut(consumer)?;
        me.data_consumers.insert(
            info.data_producer_id,
            DataConsumerEntry { producing_peer: producing_peer.clone(), push: push.clone() },
        );
        Ok(push)
    }

    /// The peer's consumer of `producer`.
    pub fn consumer_of(&self, peer: &PeerId, producer: ProducerId) -> Result<(WorkerIndex, ConsumerId), SignalingError> {
        let entry = self.peer(peer)?;
        entry
            .consumers
            .get(&producer)
            .map(|c| (entry.worker, c.push.id))
            .ok_or_else(|| err(ErrorCode::ConsumerNotFound, format!("this peer does not consume producer {producer}")))
    }

    /// Whether the peer's receive transport got its `connectWebRtcTransport`.
    pub fn recv_connected(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).and_then(|p| p.recv).is_some_and(|t| t.connected)
    }

    /// Forget the peer's consumer of `producer`; the peer is told with a
    /// `consumerClosed` push, as the original server did.
    pub fn remove_consumer(&mut self, peer: &PeerId, producer: ProducerId) -> Result<(WorkerIndex, ConsumerId, Effects), SignalingError> {
        let entry = self.peer_mut(peer)?;
        let c = entry
            .consumers
            .remove(&producer)
            .ok_or_else(|| err(ErrorCode::ConsumerNotFound, format!("this peer does not consume producer {producer}")))?;
        let mut effects = Effects::default();
        effects.push(peer, Push::ConsumerClosed(closed(&c.producing_peer, producer)));
        Ok((entry.worker, c.push.id, effects))
    }

    pub fn transport_owner(&self, id: TransportId) -> Option<PeerId> {
        self.transport_owners.get(&id).map(|(peer, _)| peer.clone())
    }

    /// The peer lost a transport on its own (ICE or DTLS failure): forget it
    /// and what lived on it. The engine closed all of it already.
    pub fn transport_closed(&mut self, id: TransportId) -> Option<(PeerId, Effects)> {
        let (peer, direction) = self.transport_owners.remove(&id)?;
        let entry = self.peers.get_mut(&peer)?;
        *entry.slot_mut(direction) = None;
        let mut effects = Effects::default();
        match direction {
            Direction::Send => {
                let producers: Vec<ProducerId> = std::mem::take(&mut entry.producers).into_keys().collect();
                let data_producers: Vec<DataProducerId> =
                    std::mem::take(&mut entry.data_producers).into_keys().collect();
                effects.rooms_changed.extend(entry.room.clone());
                for p in producers {
                    effects.merge(self.drop_consumers_of(&peer, p, false));
                }
                for p in data_producers {
                    effects.merge(self.drop_data_consumers_of(&peer, p, false));
                }
            }
            Direction::Recv => {
                for (producer, c) in std::mem::take(&mut entry.consumers) {
                    effects.push(&peer, Push::ConsumerClosed(closed(&c.producing_peer, producer)));
                }
                for (producer, c) in std::mem::take(&mut entry.data_consumers) {
                    effects.push(&peer, Push::DataConsumerClosed(closed(&c.producing_peer, producer)));
                }
            }
        }
        Some((peer, effects))
    }

    /// Consumers the server creates without being asked when `peer` joined
    /// its room: the joiner gets the others' producers, the others get the
    /// joiner's. Peers that joined with `autoConsume: false` get only
    /// broadcast producers; peers without a receive transport get nothing.
    pub fn auto_consume_on_join(&self, peer: &PeerId) -> Vec<AutoConsume> {
        let Some(room) = self.room_of(peer) else { return Vec::new() };
        let mut out = Vec::new();
        for other in self.members(&room).into_iter().filter(|o| o != peer) {
            out.extend(self.wanted(peer, &other, None));
            out.extend(self.wanted(&other, peer, None));
        }
        out
    }

    /// Consumers the server creates without being asked for a new producer.
    pub fn auto_consume_on_produce(&self, peer: &PeerId, producer: ProducerId) -> Vec<AutoConsume> {
        let Some(room) = self.room_of(peer) else { return Vec::new() };
        self.members(&room)
            .into_iter()
            .filter(|o| o != peer)
            .flat_map(|o| self.wanted(&o, peer, Some(producer)))
            .collect()
    }

    /// Producers of `producing` (all, or just `only`) that `consumer` gets automatically.
    fn wanted(&self, consumer: &PeerId, producing: &PeerId, only: Option<ProducerId>) -> Vec<AutoConsume> {
        let (Some(me), Some(them)) = (self.peers.get(consumer), self.peers.get(producing)) else {
            return Vec::new();
        };
        if me.recv.is_none() {
            return Vec::new();
        }
        them.producers
            .iter()
            .filter(|(id, p)| only.is_none_or(|o| o == **id) && (me.auto_consume || p.broadcast))
            .filter(|(id, _)| !me.consumers.contains_key(id))
            .map(|(id, _)| AutoConsume { consumer: consumer.clone(), producing_peer: producing.clone(), producer: *id })
            .collect()
    }

    /// The `availableProducers` push of a room: every member, with what it offers.
    pub fn available_producers(&self, room: &RoomId) -> AvailableProducers {
        let mut out = AvailableProducers::new();
        for peer_id in self.members(room) {
            let Some(peer) = self.peers.get(&peer_id) else { continue };
            let mut offer = PeerProducers::default();
            for (id, p) in &peer.producers {
                offer.producers.insert(
                    *id,
                    AvailableProducer {
                        label: p.label.clone(),
                        broadcast: p.broadcast,
                        peer_id: peer_id.clone(),
                        kind: p.kind,
                        paused: p.paused,
                    },
                );
            }
            for (id, d) in &peer.data_producers {
                offer.data_producers.insert(*id, d.app_data.clone());
            }
            out.insert(peer_id, offer);
        }
        out
    }

    pub fn room_ids(&self) -> Vec<RoomId> {
        self.rooms.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simplesfu_proto::types::rtp_parameters::RtpParameters;
    use simplesfu_proto::types::sctp_parameters::SctpStreamParameters;

    fn pid(s: &str) -> PeerId {
        s.parse().expect("valid peer id")
    }

    fn rid(s: &str) -> RoomId {
        s.parse().expect("valid room id")
    }

    fn video(label: &str) -> ProducerEntry {
        ProducerEntry { kind: MediaKind::Video, label: label.into(), broadcast: false, paused: false }
    }

    fn types_of(effects: &Effects, to: &str) -> Vec<String> {
        effects
            .pushes
            .iter()
            .filter(|(p, _)| p.as_str() == to)
            .map(|(_, push)| serde_json::to_value(push).expect("serializes")["type"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    fn registry_with(peers: &[&str]) -> Registry {
        let mut r = Registry::default();
        for p in peers {
            r.add_peer(pid(p), 0);
        }
        r
    }

    fn with_transports(r: &mut Registry, peer: &str) -> (TransportId, TransportId) {
        let (send, recv) = (TransportId::new(), TransportId::new());
        r.add_transport(&pid(peer), Direction::Send, send).expect("first send transport");
        r.add_transport(&pid(peer), Direction::Recv, recv).expect("first recv transport");
        r.mark_connected(&pid(peer), send);
        (send, recv)
    }

    fn consumer_info(producer: ProducerId) -> ConsumerInfo {
        ConsumerInfo {
            id: ConsumerId::new(),
            producer_id: producer,
            kind: MediaKind::Video,
            rtp_parameters: RtpParameters::default(),
            consumer_type: "simple",
            producer_paused: false,
        }
    }

    /// `b` consumes a fresh video producer of `a`; gives (producer, consumer).
    fn consume(r: &mut Registry, a: &str, b: &str) -> (ProducerId, ConsumerId) {
        let producer = ProducerId::new();
        r.add_producer(&pid(a), producer, video("cam")).expect("producer added");
        let ConsumePlan::Create { recv_transport, .. } =
            r.plan_consume(&pid(b), &pid(a), producer).expect("may consume")
        else {
            panic!("expected a new consumer")
        };
        let info = consumer_info(producer);
        let id = info.id;
        r.add_consumer(&pid(b), &pid(a), recv_transport, info).expect("consumer recorded");
        (producer, id)
    }

    #[test]
    fn joining_tells_the_joiner_everyone_and_everyone_the_joiner() {
        let mut r = registry_with(&["a", "b", "c"]);
        let first = r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        assert!(types_of(&first, "a").is_empty(), "nobody to announce to the first peer");
        r.join_room(&pid("b"), &rid("x"), true).expect("joins");
        let third = r.join_room(&pid("c"), &rid("x"), true).expect("joins");
        let to_c: Vec<_> = third.pushes.iter().filter(|(p, _)| p.as_str() == "c").collect();
        assert!(matches!(&to_c[..], [(_, Push::PeerConnection(ids))] if ids == &vec![pid("a"), pid("b")]));
        assert_eq!(types_of(&third, "a"), vec!["peerConnection"]);
        assert_eq!(types_of(&third, "b"), vec!["peerConnection"]);
        assert_eq!(third.rooms_changed, BTreeSet::from([rid("x")]));
    }

    #[test]
    fn joining_another_room_leaves_the_first() {
        let mut r = registry_with(&["a", "b"]);
        r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        r.join_room(&pid("b"), &rid("x"), true).expect("joins");
        let moved = r.join_room(&pid("a"), &rid("y"), true).expect("joins");
        assert_eq!(types_of(&moved, "b"), vec!["peerDisconnection"]);
        assert_eq!(types_of(&moved, "a"), vec!["peerDisconnection"]);
        assert_eq!(r.members(&rid("x")), vec![pid("b")]);
        assert_eq!(r.members(&rid("y")), vec![pid("a")]);
        assert_eq!(moved.rooms_changed, BTreeSet::from([rid("x"), rid("y")]));
    }

    #[test]
    fn rejoining_the_same_room_changes_nothing() {
        let mut r = registry_with(&["a", "b"]);
        r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        r.join_room(&pid("b"), &rid("x"), true).expect("joins");
        let again = r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        assert!(types_of(&again, "b").is_empty(), "the others hear nothing");
        assert_eq!(types_of(&again, "a"), vec!["availableProducers"], "the joiner hears the list again");
        assert!(again.rooms_changed.is_empty(), "no room-wide resend");
        assert_eq!(r.members(&rid("x")), vec![pid("a"), pid("b")]);
    }

    #[test]
    fn leaving_a_room_one_is_not_in_is_refused() {
        let mut r = registry_with(&["a"]);
        let e = r.leave_room(&pid("a")).expect_err("not in room");
        assert_eq!(e.code, ErrorCode::NotInRoom);
    }

    #[test]
    fn last_peer_out_removes_the_room() {
        let mut r = registry_with(&["a"]);
        r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        r.leave_room(&pid("a")).expect("leaves");
        assert!(r.room_ids().is_empty());
        assert_eq!(r.counts().rooms, 0);
    }

    #[test]
    fn consuming_needs_same_room_and_a_receive_transport() {
        let mut r = registry_with(&["a", "b", "c"]);
        r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        r.join_room(&pid("b"), &rid("x"), true).expect("joins");
        r.join_room(&pid("c"), &rid("y"), true).expect("joins");
        with_transports(&mut r, "a");
        let producer = ProducerId::new();
        r.add_producer(&pid("a"), producer, video("cam")).expect("added");

        let e = r.plan_consume(&pid("b"), &pid("a"), producer).expect_err("no recv transport");
        assert_eq!(e.code, ErrorCode::NoReceiveTransport);
        with_transports(&mut r, "c");
        let e = r.plan_consume(&pid("c"), &pid("a"), producer).expect_err("other room");
        assert_eq!(e.code, ErrorCode::ProducerNotInRoom);
        with_transports(&mut r, "b");
        let e = r.plan_consume(&pid("b"), &pid("a"), ProducerId::new()).expect_err("unknown producer");
        assert_eq!(e.code, ErrorCode::ProducerNotFound);
        assert!(matches!(r.plan_consume(&pid("b"), &pid("a"), producer), Ok(ConsumePlan::Create { .. })));
    }

    #[test]
    fn a_second_consume_of_the_same_producer_returns_the_first_consumer() {
        let mut r = registry_with(&["a", "b"]);
        r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        r.join_room(&pid("b"), &rid("x"), true).expect("joins");
        with_transports(&mut r, "a");
        with_transports(&mut r, "b");
        let (producer, consumer) = consume(&mut r, "a", "b");
        match r.plan_consume(&pid("b"), &pid("a"), producer).expect("may consume") {
            ConsumePlan::Existing(push) => {
                assert_eq!(push.id, consumer);
                assert_eq!(push.app_data["label"], "cam");
                assert_eq!(push.app_data["peerId"], "a");
            }
            ConsumePlan::Create { .. } => panic!("must not create a duplicate"),
        }
        assert_eq!(r.counts().consumers, 1);
    }

    #[test]
    fn a_consumer_made_while_its_producer_closed_is_refused() {
        let mut r = registry_with(&["a", "b"]);
        r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        r.join_room(&pid("b"), &rid("x"), true).expect("joins");
        with_transports(&mut r, "a");
        let (_, recv) = with_transports(&mut r, "b");
        let producer = ProducerId::new();
        r.add_producer(&pid("a"), producer, video("cam")).expect("added");
        r.remove_producer(&pid("a"), producer).expect("removed");
        let e = r.add_consumer(&pid("b"), &pid("a"), recv, consumer_info(producer)).expect_err("gone");
        assert_eq!(e.code, ErrorCode::ProducerNotFound);
        assert_eq!(r.counts().consumers, 0);
    }

    #[test]
    fn closing_a_producer_tells_its_consumers() {
        let mut r = registry_with(&["a", "b"]);
        r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        r.join_room(&pid("b"), &rid("x"), true).expect("joins");
        with_transports(&mut r, "a");
        with_transports(&mut r, "b");
        let (producer, _) = consume(&mut r, "a", "b");
        let effects = r.remove_producer(&pid("a"), producer).expect("own producer");
        assert_eq!(types_of(&effects, "b"), vec!["consumerClosed"]);
        assert!(effects.close_consumers.is_empty(), "the engine closes a producer's consumers itself");
        assert_eq!(effects.rooms_changed, BTreeSet::from([rid("x")]));
        let e = r.remove_producer(&pid("b"), ProducerId::new()).expect_err("not b's");
        assert_eq!(e.code, ErrorCode::ProducerNotFound);
    }

    #[test]
    fn leaving_closes_consumers_both_ways() {
        let mut r = registry_with(&["a", "b"]);
        r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        r.join_room(&pid("b"), &rid("x"), true).expect("joins");
        with_transports(&mut r, "a");
        with_transports(&mut r, "b");
        consume(&mut r, "a", "b");
        consume(&mut r, "b", "a");
        let effects = r.leave_room(&pid("a")).expect("leaves");
        assert_eq!(types_of(&effects, "a"), vec!["consumerClosed", "peerDisconnection"]);
        assert_eq!(types_of(&effects, "b"), vec!["peerDisconnection", "consumerClosed"]);
        assert_eq!(effects.close_consumers.len(), 2);
        assert_eq!(r.counts().consumers, 0);
        assert_eq!(r.counts().producers, 2, "producers survive a leave");
    }

    #[test]
    fn removing_a_peer_cleans_up_everything() {
        let mut r = registry_with(&["a", "b"]);
        r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        r.join_room(&pid("b"), &rid("x"), true).expect("joins");
        let (send, recv) = with_transports(&mut r, "a");
        with_transports(&mut r, "b");
        consume(&mut r, "a", "b");
        let removed = r.remove_peer(&pid("a")).expect("known peer");
        assert_eq!(removed.transports, vec![send, recv]);
        assert_eq!(types_of(&removed.effects, "b"), vec!["peerDisconnection", "consumerClosed"]);
        assert_eq!(removed.effects.rooms_changed, BTreeSet::from([rid("x")]));
        let counts = r.counts();
        assert_eq!((counts.peers, counts.producers, counts.consumers, counts.transports), (1, 0, 0, 2));
        assert!(r.transport_closed(send).is_none(), "its transports are forgotten");
        assert!(r.remove_peer(&pid("a")).is_none());
    }

    #[test]
    fn transports_are_one_per_direction_and_private() {
        let mut r = registry_with(&["a", "b"]);
        let (send, recv) = with_transports(&mut r, "a");
        let e = r.check_new_transport(&pid("a"), Direction::Send).expect_err("second send");
        assert_eq!(e.code, ErrorCode::TransportAlreadyExists);
        let e = r.own_transport(&pid("b"), send).expect_err("a's transport");
        assert_eq!(e.code, ErrorCode::TransportNotFound);
        let e = r.producing_transport(&pid("a"), recv).expect_err("recv transport");
        assert_eq!(e.code, ErrorCode::WrongTransportDirection);
        r.add_transport(&pid("b"), Direction::Send, TransportId::new()).expect("b's own");
        let b_send = r.own_transport(&pid("b"), r.peers[&pid("b")].send.expect("set").id).expect("own").2.id;
        let e = r.producing_transport(&pid("b"), b_send).expect_err("not connected");
        assert_eq!(e.code, ErrorCode::TransportNotConnected);
        assert_eq!(r.producing_transport(&pid("a"), send).expect("connected"), 0);
        let e = r.check_connect(&pid("a"), send).expect_err("connected twice");
        assert_eq!(e.code, ErrorCode::TransportAlreadyConnected);
    }

    #[test]
    fn a_dead_send_transport_takes_its_producers_along() {
        let mut r = registry_with(&["a", "b"]);
        r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        r.join_room(&pid("b"), &rid("x"), true).expect("joins");
        let (send, _) = with_transports(&mut r, "a");
        with_transports(&mut r, "b");
        consume(&mut r, "a", "b");
        let (owner, effects) = r.transport_closed(send).expect("known transport");
        assert_eq!(owner, pid("a"));
        assert_eq!(types_of(&effects, "b"), vec!["consumerClosed"]);
        assert_eq!(r.counts().producers, 0);
        r.check_new_transport(&pid("a"), Direction::Send).expect("may create a new send transport");
    }

    #[test]
    fn available_producers_lists_every_member_with_its_offer() {
        let mut r = registry_with(&["a", "b", "c"]);
        r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        r.join_room(&pid("b"), &rid("x"), true).expect("joins");
        r.join_room(&pid("c"), &rid("y"), true).expect("joins");
        let producer = ProducerId::new();
        r.add_producer(&pid("a"), producer, ProducerEntry { broadcast: true, ..video("stage") }).expect("added");
        let data = DataProducerId::new();
        r.add_data_producer(
            &pid("b"),
            data,
            DataProducerEntry { app_data: serde_json::json!({"type": "data"}) },
        )
        .expect("added");
        r.set_producer_paused(&pid("a"), producer, true).expect("own producer");
        let json = serde_json::to_value(r.available_producers(&rid("x"))).expect("serializes");
        assert_eq!(
            json[pid("a").as_str()]["producers"][producer.to_string()],
            serde_json::json!({"label": "stage", "broadcast": true, "peerId": "a", "kind": "video", "paused": true})
        );
        assert_eq!(json["b"]["producers"], serde_json::json!({}));
        assert_eq!(json["b"]["dataProducers"][data.to_string()], serde_json::json!({"type": "data"}));
        assert!(json.get("c").is_none(), "peers of other rooms are not listed");
    }

    #[test]
    fn data_consumers_follow_the_same_rules() {
        let mut r = registry_with(&["a", "b"]);
        r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        r.join_room(&pid("b"), &rid("x"), true).expect("joins");
        with_transports(&mut r, "a");
        let (_, recv) = with_transports(&mut r, "b");
        let data = DataProducerId::new();
        r.add_data_producer(
            &pid("a"),
            data,
            DataProducerEntry { app_data: serde_json::json!({}) },
        )
        .expect("added");
        assert!(matches!(r.plan_consume_data(&pid("b"), &pid("a"), data), Ok(ConsumePlan::Create { .. })));
        let info = DataConsumerInfo {
            id: DataConsumerId::new(),
            data_producer_id: data,
            sctp_stream_parameters: serde_json::from_value::<SctpStreamParameters>(serde_json::json!({"streamId": 1, "ordered": true}))
                .expect("valid"),
            label: "chat".into(),
            protocol: "json".into(),
        };
        r.add_data_consumer(&pid("b"), &pid("a"), recv, info).expect("recorded");
        assert!(matches!(r.plan_consume_data(&pid("b"), &pid("a"), data), Ok(ConsumePlan::Existing(_))));
        let removed = r.remove_peer(&pid("a")).expect("known");
        assert_eq!(types_of(&removed.effects, "b"), vec!["peerDisconnection", "dataConsumerClosed"]);
    }

    #[test]
    fn auto_consume_follows_the_joiners_choice_and_broadcast() {
        let mut r = registry_with(&["a", "b", "c"]);
        for p in ["a", "b", "c"] {
            with_transports(&mut r, p);
        }
        let cam = ProducerId::new();
        let stage = ProducerId::new();
        r.add_producer(&pid("a"), cam, video("cam")).expect("added");
        r.add_producer(&pid("a"), stage, ProducerEntry { broadcast: true, ..video("stage") }).expect("added");
        r.join_room(&pid("a"), &rid("x"), true).expect("joins");
        r.join_room(&pid("b"), &rid("x"), true).expect("joins");
        let for_b: Vec<_> = r.auto_consume_on_join(&pid("b")).into_iter().map(|t| t.producer).collect();
        assert_eq!(for_b.len(), 2, "an auto-consuming joiner gets every producer");
        r.join_room(&pid("c"), &rid("x"), false).expect("joins");
        let for_c: Vec<_> = r.auto_consume_on_join(&pid("c")).into_iter().filter(|t| t.consumer == pid("c")).map(|t| t.producer).collect();
        assert_eq!(for_c, vec![stage], "autoConsume: false still gets broadcast producers");
        let mic = ProducerId::new();
        r.add_producer(&pid("b"), mic, video("mic")).expect("added");
        let targets: Vec<_> = r.auto_consume_on_produce(&pid("b"), mic).into_iter().map(|t| t.consumer).collect();
        assert_eq!(targets, vec![pid("a")]);
    }
}
