//! Producers and consumers (media and data) in the registry: who may
//! consume what, the consumers the server makes without being asked, and
//! what closing a producer or a consumer takes with it.

use super::*;

impl Registry {
    /// Record a new producer; gives the room to refresh (if any).
    pub fn add_producer(
        &mut self,
        peer: &PeerId,
        id: ProducerId,
        producer: ProducerEntry,
    ) -> Result<Effects, SignalingError> {
        let entry = self.peer_mut(peer)?;
        entry.producers.insert(id, producer);
        let mut effects = Effects::default();
        effects.rooms_changed.extend(entry.room.clone());
        Ok(effects)
    }

    pub fn add_data_producer(
        &mut self,
        peer: &PeerId,
        id: DataProducerId,
        producer: DataProducerEntry,
    ) -> Result<Effects, SignalingError> {
        let entry = self.peer_mut(peer)?;
        entry.data_producers.insert(id, producer);
        let mut effects = Effects::default();
        effects.rooms_changed.extend(entry.room.clone());
        Ok(effects)
    }

    pub fn own_producer(
        &self,
        peer: &PeerId,
        id: ProducerId,
    ) -> Result<WorkerIndex, SignalingError> {
        let entry = self.peer(peer)?;
        if entry.producers.contains_key(&id) {
            Ok(entry.worker)
        } else {
            Err(err(
                ErrorCode::ProducerNotFound,
                format!("this peer has no producer {id}"),
            ))
        }
    }

    /// Forget a producer the engine closed (with its consumers).
    pub fn remove_producer(
        &mut self,
        peer: &PeerId,
        id: ProducerId,
    ) -> Result<Effects, SignalingError> {
        self.own_producer(peer, id)?;
        let entry = self.peer_mut(peer)?;
        entry.producers.remove(&id);
        let room = entry.room.clone();
        let mut effects = self.drop_consumers_of(peer, id, false);
        effects.rooms_changed.extend(room);
        Ok(effects)
    }

    pub fn set_producer_paused(
        &mut self,
        peer: &PeerId,
        id: ProducerId,
        paused: bool,
    ) -> Result<Effects, SignalingError> {
        let entry = self.peer_mut(peer)?;
        let producer = entry.producers.get_mut(&id).ok_or_else(|| {
            err(
                ErrorCode::ProducerNotFound,
                format!("this peer has no producer {id}"),
            )
        })?;
        let mut effects = Effects::default();
        if producer.paused != paused {
            producer.paused = paused;
            effects.rooms_changed.extend(entry.room.clone());
        }
        Ok(effects)
    }

    /// Check that `consumer` may consume `producer` of `producing_peer`.
    pub(super) fn check_same_room(
        &self,
        consumer: &PeerId,
        producing_peer: &PeerId,
    ) -> Result<(&PeerEntry, &PeerEntry), SignalingError> {
        let me = self.peer(consumer)?;
        let Some(my_room) = me.room.as_ref() else {
            return Err(err(ErrorCode::NotInRoom, "join a room before consuming"));
        };
        let Some(them) = self.peers.get(producing_peer) else {
            return Err(err(
                ErrorCode::PeerNotFound,
                format!("no peer `{producing_peer}`"),
            ));
        };
        if them.room.as_ref() != Some(my_room) {
            return Err(err(
                ErrorCode::ProducerNotInRoom,
                format!("peer `{producing_peer}` is not in room `{my_room}`"),
            ));
        }
        Ok((me, them))
    }

    /// What creating a consumer of `producer` (media or data, see
    /// [`ConsumerKind`]) takes: the existing consumer's push, or where to make one.
    pub fn plan_consume<K: ConsumerKind>(
        &self,
        consumer: &PeerId,
        producing_peer: &PeerId,
        producer: K::ProducerId,
    ) -> Result<ConsumePlan<K::Push>, SignalingError> {
        let (me, them) = self.check_same_room(consumer, producing_peer)?;
        if !K::produces(them, producer) {
            return Err(err(
                ErrorCode::ProducerNotFound,
                format!("peer `{producing_peer}` has no {} {producer}", K::PRODUCER),
            ));
        }
        if let Some(push) = K::existing(me, them, producer) {
            return Ok(ConsumePlan::Existing(push));
        }
        let (worker, recv_transport) = self.recv_for_consuming(me)?;
        Ok(ConsumePlan::Create {
            worker,
            recv_transport,
            producer_worker: them.worker,
        })
    }

    /// Record the consumer the engine made, unless the world changed while
    /// it was being made (then the caller closes it in the engine).
    pub fn add_consumer<K: ConsumerKind>(
        &mut self,
        consumer: &PeerId,
        producing_peer: &PeerId,
        recv_transport: TransportId,
        info: K::Info,
    ) -> Result<K::Push, SignalingError> {
        let (me, them) = self.check_same_room(consumer, producing_peer)?;
        let producer = K::producer_of(&info);
        if !K::produces(them, producer) {
            return Err(err(
                ErrorCode::ProducerNotFound,
                format!("{} {producer} closed meanwhile", K::PRODUCER),
            ));
        }
        if me.recv.map(|t| t.id) != Some(recv_transport) {
            return Err(err(
                ErrorCode::NoReceiveTransport,
                "the receive transport closed meanwhile",
            ));
        }
        let push = K::push(them, producing_peer, info);
        K::record(
            self.peer_mut(consumer)?,
            producing_peer,
            producer,
            push.clone(),
        );
        Ok(push)
    }

    /// The peer's consumer of `producer`.
    pub fn consumer_of(
        &self,
        peer: &PeerId,
        producer: ProducerId,
    ) -> Result<(WorkerIndex, ConsumerId), SignalingError> {
        let entry = self.peer(peer)?;
        entry
            .consumers
            .get(&producer)
            .map(|c| (entry.worker, c.push.id))
            .ok_or_else(|| {
                err(
                    ErrorCode::ConsumerNotFound,
                    format!("this peer does not consume producer {producer}"),
                )
            })
    }

    /// Its client paused or resumed the peer's consumer of `producer`.
    pub fn set_consumer_paused(&mut self, peer: &PeerId, producer: ProducerId, paused: bool) {
        if let Some(c) = self
            .peer_mut(peer)
            .ok()
            .and_then(|p| p.consumers.get_mut(&producer))
        {
            c.paused = paused;
        }
    }

    /// Its client set the preferred simulcast layer of its consumer of `producer`.
    pub fn set_consumer_preferred_spatial(
        &mut self,
        peer: &PeerId,
        producer: ProducerId,
        spatial: u8,
    ) {
        if let Some(c) = self
            .peer_mut(peer)
            .ok()
            .and_then(|p| p.consumers.get_mut(&producer))
        {
            c.preferred_spatial = Some(spatial);
        }
    }

    /// Dynacast: for every simulcast video producer, its publisher and the
    /// highest simulcast layer any consumer wants: the top, or its preferred
    /// layer when it set one; a consumer its client paused wants nothing.
    /// With no consumer wanting anything, the lowest layer (a viewer who
    /// comes starts on it at once).
    /// Each entry: (publisher, producer, wanted layer, its top layer).
    pub fn wanted_layers(&self) -> Vec<(PeerId, ProducerId, u8, u8)> {
        let mut wanted: HashMap<ProducerId, u8> = HashMap::new();
        for peer in self.peers.values() {
            for (producer, c) in peer.consumers.iter().filter(|(_, c)| !c.paused) {
                let want = c.preferred_spatial.unwrap_or(u8::MAX);
                wanted
                    .entry(*producer)
                    .and_modify(|w| *w = (*w).max(want))
                    .or_insert(want);
            }
        }
        let mut out = Vec::new();
        for (owner, peer) in &self.peers {
            for (id, p) in peer
                .producers
                .iter()
                .filter(|(_, p)| p.kind == MediaKind::Video && p.spatial_layers > 1)
            {
                let top = p.spatial_layers - 1;
                out.push((
                    owner.clone(),
                    *id,
                    wanted.get(id).map_or(0, |w| (*w).min(top)),
                    top,
                ));
            }
        }
        out
    }

    /// Forget the peer's consumer of `producer`; the peer is told with a
    /// `consumerClosed` push, as the original server did.
    pub fn remove_consumer(
        &mut self,
        peer: &PeerId,
        producer: ProducerId,
    ) -> Result<(WorkerIndex, ConsumerId, Effects), SignalingError> {
        let entry = self.peer_mut(peer)?;
        let c = entry.consumers.remove(&producer).ok_or_else(|| {
            err(
                ErrorCode::ConsumerNotFound,
                format!("this peer does not consume producer {producer}"),
            )
        })?;
        let mut effects = Effects::default();
        effects.push(
            peer,
            Push::ConsumerClosed(closed(&c.producing_peer, producer)),
        );
        Ok((entry.worker, c.push.id, effects))
    }

    /// Consumers the server creates without being asked when `peer` joined
    /// its room: the joiner gets the others' producers, the others get the
    /// joiner's. Peers that joined with `autoConsume: false` get only
    /// broadcast producers; peers without a receive transport get nothing.
    pub fn auto_consume_on_join(&self, peer: &PeerId) -> Vec<AutoConsume> {
        let Some(room) = self.room_of(peer) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for other in self.members(&room).into_iter().filter(|o| o != peer) {
            out.extend(self.wanted(peer, &other, None));
            out.extend(self.wanted(&other, peer, None));
        }
        out
    }

    /// Consumers the server creates without being asked for a new producer.
    pub fn auto_consume_on_produce(&self, peer: &PeerId, producer: ProducerId) -> Vec<AutoConsume> {
        let Some(room) = self.room_of(peer) else {
            return Vec::new();
        };
        self.members(&room)
            .into_iter()
            .filter(|o| o != peer)
            .flat_map(|o| self.wanted(&o, peer, Some(producer)))
            .collect()
    }
}
