//! Peers of other nodes (rooms across nodes, docs/CLUSTER.md): each node
//! tells the others its rooms, their peers and producers (`crate::span`),
//! and each mirrors the remote peers of the rooms it has peers in, so that
//! its own peers get the usual pushes (`peerConnection`,
//! `availableProducers`, `peerDisconnection`, `consumerClosed`) and
//! automatic consumers, computed here as for local peers. A remote peer
//! has no transports and no consumers here; its producers are consumed
//! through the link to its node, on the worker that holds the link.

use super::*;
use std::sync::Arc;

/// A remote peer as its node describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemotePeer {
    pub node: Arc<str>,
    pub room: RoomId,
    pub producers: BTreeMap<ProducerId, ProducerEntry>,
    pub data_producers: BTreeMap<DataProducerId, DataProducerEntry>,
}

/// One local peer as the other nodes should see it.
pub(crate) struct LocalPeer {
    pub peer: PeerId,
    pub producers: BTreeMap<ProducerId, ProducerEntry>,
    pub data_producers: BTreeMap<DataProducerId, DataProducerEntry>,
}

/// This node's rooms as the others should see them: each room's local
/// peers (in join order) with their producers and data producers.
pub(crate) type LocalRooms = BTreeMap<RoomId, Vec<LocalPeer>>;

impl Registry {
    /// What this node tells the others.
    pub fn local_rooms(&self) -> LocalRooms {
        let mut out = LocalRooms::new();
        for (room, members) in &self.rooms {
            let local: Vec<_> = members
                .iter()
                .filter_map(|m| {
                    let p = self.peers.get(m).filter(|p| p.remote.is_none())?;
                    Some(LocalPeer {
                        peer: m.clone(),
                        producers: p.producers.clone(),
                        data_producers: p.data_producers.clone(),
                    })
                })
                .collect();
            if !local.is_empty() {
                out.insert(room.clone(), local);
            }
        }
        out
    }

    /// The remote peers mirrored here.
    pub fn remote_peers(&self) -> BTreeMap<PeerId, RemotePeer> {
        self.peers
            .iter()
            .filter_map(|(id, p)| {
                Some((
                    id.clone(),
                    RemotePeer {
                        node: p.remote.clone()?,
                        room: p.room.clone()?,
                        producers: p.producers.clone(),
                        data_producers: p.data_producers.clone(),
                    },
                ))
            })
            .collect()
    }

    /// The worker of the local peer that produces data producer `id`.
    pub fn local_data_producer_worker(&self, id: DataProducerId) -> Option<WorkerIndex> {
        self.peers
            .values()
            .find(|p| p.remote.is_none() && p.data_producers.contains_key(&id))
            .map(|p| p.worker)
    }

    /// The worker of the local peer that produces `producer`.
    pub fn local_producer_worker(&self, producer: ProducerId) -> Option<WorkerIndex> {
        self.peers
            .values()
            .find(|p| p.remote.is_none() && p.producers.contains_key(&producer))
            .map(|p| p.worker)
    }

    /// The node of a remote peer (`None`: a local peer, or none).
    pub fn node_of(&self, peer: &PeerId) -> Option<Arc<str>> {
        self.peers.get(peer).and_then(|p| p.remote.clone())
    }

    /// Mirror a peer of another node in `room` (`worker`: the one that
    /// holds the link to its node). Its room's local peers hear of it as of
    /// a joiner; a peer id in use here is refused (`Err` with no effect).
    pub fn add_remote_peer(
        &mut self,
        peer: &PeerId,
        node: Arc<str>,
        worker: WorkerIndex,
        room: &RoomId,
    ) -> Result<Effects, SignalingError> {
        if self.peers.contains_key(peer) {
            return Err(err(
                ErrorCode::InvalidRequest,
                format!("peer id `{peer}` is in use on this node"),
            ));
        }
        self.add_peer(peer.clone(), worker);
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.remote = Some(node);
        }
        self.join_room(peer, room, false)
    }

    /// A remote peer's producer, and the local peers that consume it
    /// without being asked.
    pub fn add_remote_producer(
        &mut self,
        peer: &PeerId,
        id: ProducerId,
        producer: ProducerEntry,
    ) -> Result<(Effects, Vec<AutoConsume>), SignalingError> {
        let effects = self.add_producer(peer, id, producer)?;
        Ok((effects, self.auto_consume_on_produce(peer, id)))
    }

    /// A remote peer's producer is gone: its local consumers close (in the
    /// engine too: the mirror may outlive this news by a moment).
    pub fn remove_remote_producer(
        &mut self,
        peer: &PeerId,
        id: ProducerId,
    ) -> Result<Effects, SignalingError> {
        let entry = self.peer_mut(peer)?;
        if entry.producers.remove(&id).is_none() {
            return Ok(Effects::default());
        }
        let room = entry.room.clone();
        let mut effects = self.drop_consumers_of(peer, id, true);
        effects.rooms_changed.extend(room);
        Ok(effects)
    }

    /// A remote peer's data producer: announced to its room's local peers
    /// (`availableProducers`), whose clients ask for its data consumers.
    pub fn add_remote_data_producer(
        &mut self,
        peer: &PeerId,
        id: DataProducerId,
        producer: DataProducerEntry,
    ) -> Result<Effects, SignalingError> {
        self.add_data_producer(peer, id, producer)
    }

    /// A remote peer's data producer is gone: its local data consumers close.
    pub fn remove_remote_data_producer(
        &mut self,
        peer: &PeerId,
        id: DataProducerId,
    ) -> Result<Effects, SignalingError> {
        let entry = self.peer_mut(peer)?;
        if entry.data_producers.remove(&id).is_none() {
            return Ok(Effects::default());
        }
        let room = entry.room.clone();
        let mut effects = self.drop_data_consumers_of(peer, id, true);
        effects.rooms_changed.extend(room);
        Ok(effects)
    }

    /// A remote peer left (or its node did): as a local peer's removal.
    /// Its local consumers close in the engine too.
    pub fn remove_remote_peer(&mut self, peer: &PeerId) -> Effects {
        let (producers, data_producers): (Vec<ProducerId>, Vec<DataProducerId>) =
            match self.peers.get(peer) {
                Some(p) if p.remote.is_some() => (
                    p.producers.keys().copied().collect(),
                    p.data_producers.keys().copied().collect(),
                ),
                _ => return Effects::default(),
            };
        let mut effects = Effects::default();
        for id in producers {
            if let Ok(e) = self.remove_remote_producer(peer, id) {
                effects.merge(e);
            }
        }
        for id in data_producers {
            if let Ok(e) = self.remove_remote_data_producer(peer, id) {
                effects.merge(e);
            }
        }
        if let Some(removed) = self.remove_peer(peer) {
            effects.merge(removed.effects);
        }
        effects
    }
}

impl Registry {
    /// The link to `node` closed: every local consumer and data consumer of
    /// a producer of that node's peers went with it (on every worker: the
    /// mirrors were piped on). Their peers are told, the engine closes
    /// what may be left, and what is consumed without being asked is
    /// consumed again (over a new link). Data consumers are asked for by
    /// their clients again.
    pub fn link_gone(&mut self, node: &str) -> (Effects, Vec<AutoConsume>) {
        let remote: std::collections::HashSet<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.remote.as_deref() == Some(node))
            .map(|(id, _)| id.clone())
            .collect();
        let mut effects = Effects::default();
        let mut again = Vec::new();
        for (peer_id, entry) in self.peers.iter_mut() {
            if entry.remote.is_some() {
                continue;
            }
            let gone: Vec<ProducerId> = entry
                .consumers
                .iter()
                .filter(|(_, c)| remote.contains(&c.producing_peer))
                .map(|(p, _)| *p)
                .collect();
            for producer in gone {
                if let Some(c) = entry.consumers.remove(&producer) {
                    effects.close_consumers.push((entry.worker, c.push.id));
                    effects.push(
                        peer_id,
                        Push::ConsumerClosed(closed(&c.producing_peer, producer)),
                    );
                    again.push((peer_id.clone(), c.producing_peer, producer));
                }
            }
            let gone: Vec<DataProducerId> = entry
                .data_consumers
                .iter()
                .filter(|(_, c)| remote.contains(&c.producing_peer))
                .map(|(p, _)| *p)
                .collect();
            for producer in gone {
                if let Some(c) = entry.data_consumers.remove(&producer) {
                    effects.close_data_consumers.push((entry.worker, c.push.id));
                    effects.push(
                        peer_id,
                        Push::DataConsumerClosed(closed(&c.producing_peer, producer)),
                    );
                }
            }
        }
        let targets = again
            .into_iter()
            .flat_map(|(peer, producing, producer)| self.wanted(&peer, &producing, Some(producer)))
            .collect();
        (effects, targets)
    }
}
