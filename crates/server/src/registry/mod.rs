//! The signaling state of every peer: which room it is in, its transports,
//! producers and consumers as the server promised them to clients.
//!
//! This is plain synchronous bookkeeping with no I/O, so the rules (who may
//! consume what, what a leave or a disconnect takes with it, what
//! `availableProducers` says) are tested here without a network or an engine.
//! Operations that change more than one peer return [`Effects`]: the pushes to
//! send and the engine objects to close, which the caller carries out after
//! releasing the lock that guards the registry.

use serde_json::Value;
use simplesfu_engine::{ConsumerInfo, DataConsumerInfo, Direction};
use simplesfu_proto::types::rtp_parameters::MediaKind;
use simplesfu_proto::{
    AvailableProducer, AvailableProducers, ConsumerClosed, ConsumerId, CreateConsumer,
    CreateDataConsumer, DataConsumerId, DataProducerId, ErrorCode, PeerId, PeerProducers,
    ProducerId, Push, RoomId, SignalingError, TransportId,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(crate) use kinds::{ConsumerKind, Data, Media};
pub(crate) use remote::RemotePeer;

mod kinds;
mod media;
mod remote;
#[cfg(test)]
mod tests;
mod transports;

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

    pub(crate) fn merge(&mut self, other: Effects) {
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
    /// Its simulcast encodings (1 without simulcast).
    pub spatial_layers: u8,
}

/// A data producer: its client appData is what `availableProducers` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataProducerEntry {
    pub app_data: Value,
}

#[derive(Debug, Clone)]
struct ConsumerEntry {
    producing_peer: PeerId,
    push: CreateConsumer,
    /// Paused by its client (consumers start paused).
    paused: bool,
    /// The highest simulcast layer its client wants (`None`: the best).
    preferred_spatial: Option<u8>,
}

#[derive(Debug, Clone)]
struct DataConsumerEntry {
    producing_peer: PeerId,
    push: CreateDataConsumer,
}

/// One peer's bookkeeping (its fields are the registry's own).
#[derive(Debug)]
pub(crate) struct PeerEntry {
    worker: WorkerIndex,
    /// The node of a peer connected to another node (rooms across nodes):
    /// it has no transports or consumers here, only its room and
    /// producers, which local peers consume through a link.
    remote: Option<std::sync::Arc<str>>,
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
    Create {
        worker: WorkerIndex,
        recv_transport: TransportId,
        producer_worker: WorkerIndex,
    },
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
    ConsumerClosed {
        producing_peer_id: producing_peer.clone(),
        producer_id: producer.to_string(),
    }
}

impl Registry {
    pub fn counts(&self) -> RegistryCounts {
        let local = self.peers.values().filter(|p| p.remote.is_none());
        let mut c = RegistryCounts {
            peers: local.clone().count(),
            rooms: self.local_room_count(),
            ..Default::default()
        };
        for p in local {
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
                remote: None,
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
        self.peer(peer)
            .map(|p| p.producers.len() + p.data_producers.len())
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
    pub fn join_room(
        &mut self,
        peer: &PeerId,
        room: &RoomId,
        auto_consume: bool,
    ) -> Result<Effects, SignalingError> {
        self.peer_mut(peer)?.auto_consume = auto_consume;
        let current = self.peer(peer)?.room.clone();
        let mut effects = Effects::default();
        if current.as_ref() == Some(room) {
            // Nothing changed for the others: only the joiner hears the list again.
            effects.push(
                peer,
                Push::AvailableProducers(self.available_producers(room)),
            );
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
        self.rooms
            .entry(room.clone())
            .or_default()
            .push(peer.clone());
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

        let remaining: Vec<PeerId> = self
            .members(room)
            .into_iter()
            .filter(|p| p != peer)
            .collect();
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
        let own_data_producers: Vec<DataProducerId> =
            leaver.data_producers.keys().copied().collect();
        for (producer, c) in own_consumers {
            effects.close_consumers.push((worker, c.push.id));
            effects.push(
                peer,
                Push::ConsumerClosed(closed(&c.producing_peer, producer)),
            );
        }
        for (producer, c) in own_data_consumers {
            effects.close_data_consumers.push((worker, c.push.id));
            effects.push(
                peer,
                Push::DataConsumerClosed(closed(&c.producing_peer, producer)),
            );
        }
        if !remaining.is_empty() {
            effects.push(peer, Push::PeerDisconnection(remaining.clone()));
        }

        for other_id in &remaining {
            effects.push(other_id, Push::PeerDisconnection(vec![peer.clone()]));
            let Some(other) = self.peers.get_mut(other_id) else {
                continue;
            };
            for producer in &own_producers {
                if let Some(c) = other.consumers.remove(producer) {
                    effects.close_consumers.push((other.worker, c.push.id));
                    effects.pushes.push((
                        other_id.clone(),
                        Push::ConsumerClosed(closed(peer, producer)),
                    ));
                }
            }
            for producer in &own_data_producers {
                if let Some(c) = other.data_consumers.remove(producer) {
                    effects.close_data_consumers.push((other.worker, c.push.id));
                    effects.pushes.push((
                        other_id.clone(),
                        Push::DataConsumerClosed(closed(peer, producer)),
                    ));
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
        let transports: Vec<TransportId> = [entry.send, entry.recv]
            .into_iter()
            .flatten()
            .map(|t| t.id)
            .collect();
        for t in &transports {
            self.transport_owners.remove(t);
        }
        Some(RemovedPeer {
            worker: entry.worker,
            transports,
            effects,
        })
    }

    /// Remove every consumer of `producer` and tell their peers. With
    /// `close_in_engine`, also ask the engine to close them (not needed when
    /// the engine closes them along with their producer).
    fn drop_consumers_of(
        &mut self,
        producing_peer: &PeerId,
        producer: ProducerId,
        close_in_engine: bool,
    ) -> Effects {
        let mut effects = Effects::default();
        for (peer_id, entry) in self.peers.iter_mut() {
            if let Some(c) = entry.consumers.remove(&producer) {
                if close_in_engine {
                    effects.close_consumers.push((entry.worker, c.push.id));
                }
                effects.push(
                    peer_id,
                    Push::ConsumerClosed(closed(producing_peer, producer)),
                );
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
                effects.push(
                    peer_id,
                    Push::DataConsumerClosed(closed(producing_peer, producer)),
                );
            }
        }
        effects
    }

    /// How many peers are placed on each of `workers` workers.
    pub fn peers_per_worker(&self, workers: usize) -> Vec<usize> {
        let mut counts = vec![0; workers];
        for p in self.peers.values().filter(|p| p.remote.is_none()) {
            if let Some(c) = counts.get_mut(p.worker) {
                *c += 1;
            }
        }
        counts
    }

    /// Producers of `producing` (all, or just `only`) that `consumer` gets automatically.
    fn wanted(
        &self,
        consumer: &PeerId,
        producing: &PeerId,
        only: Option<ProducerId>,
    ) -> Vec<AutoConsume> {
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
            .map(|(id, _)| AutoConsume {
                consumer: consumer.clone(),
                producing_peer: producing.clone(),
                producer: *id,
            })
            .collect()
    }

    /// The `availableProducers` push of a room: every member, with what it offers.
    pub fn available_producers(&self, room: &RoomId) -> AvailableProducers {
        let mut out = AvailableProducers::new();
        for peer_id in self.members(room) {
            let Some(peer) = self.peers.get(&peer_id) else {
                continue;
            };
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

    /// Rooms with at least one peer of this node.
    pub fn room_ids(&self) -> Vec<RoomId> {
        self.rooms
            .iter()
            .filter(|(_, members)| self.has_local(members))
            .map(|(room, _)| room.clone())
            .collect()
    }

    fn local_room_count(&self) -> usize {
        self.rooms
            .values()
            .filter(|members| self.has_local(members))
            .count()
    }

    fn has_local(&self, members: &[PeerId]) -> bool {
        members
            .iter()
            .any(|m| self.peers.get(m).is_some_and(|p| p.remote.is_none()))
    }
}
