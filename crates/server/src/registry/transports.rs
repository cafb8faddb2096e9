//! A peer's two transports in the registry: creating, connecting and
//! losing them, and which peer owns a transport.

use super::*;

impl Registry {
    /// May this peer create a transport of this direction? Gives its worker.
    pub fn check_new_transport(
        &self,
        peer: &PeerId,
        direction: Direction,
    ) -> Result<WorkerIndex, SignalingError> {
        let entry = self.peer(peer)?;
        if let Some(existing) = entry.slot(direction) {
            let which = match direction {
                Direction::Send => "send (producing)",
                Direction::Recv => "receive (consuming)",
            };
            return Err(err(
                ErrorCode::TransportAlreadyExists,
                format!(
                    "this peer already has a {which} transport ({})",
                    existing.id
                ),
            ));
        }
        Ok(entry.worker)
    }

    pub fn add_transport(
        &mut self,
        peer: &PeerId,
        direction: Direction,
        id: TransportId,
    ) -> Result<(), SignalingError> {
        self.check_new_transport(peer, direction)?;
        *self.peer_mut(peer)?.slot_mut(direction) = Some(TransportSlot {
            id,
            connected: false,
        });
        self.transport_owners.insert(id, (peer.clone(), direction));
        Ok(())
    }

    /// The peer's own transport with this id (another peer's id is "not found").
    pub fn own_transport(
        &self,
        peer: &PeerId,
        id: TransportId,
    ) -> Result<(WorkerIndex, Direction, TransportSlot), SignalingError> {
        let entry = self.peer(peer)?;
        for direction in [Direction::Send, Direction::Recv] {
            if let Some(slot) = entry.slot(direction).filter(|s| s.id == id) {
                return Ok((entry.worker, direction, slot));
            }
        }
        Err(err(
            ErrorCode::TransportNotFound,
            format!("this peer has no transport {id}"),
        ))
    }

    /// The peer's send transport `id`, connected: where producers go.
    pub fn producing_transport(
        &self,
        peer: &PeerId,
        id: TransportId,
    ) -> Result<WorkerIndex, SignalingError> {
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

    pub fn check_connect(
        &self,
        peer: &PeerId,
        id: TransportId,
    ) -> Result<WorkerIndex, SignalingError> {
        let (worker, _, slot) = self.own_transport(peer, id)?;
        if slot.connected {
            return Err(err(
                ErrorCode::TransportAlreadyConnected,
                format!("transport {id} is connected already"),
            ));
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

    pub(super) fn recv_for_consuming(
        &self,
        me: &PeerEntry,
    ) -> Result<(WorkerIndex, TransportId), SignalingError> {
        let Some(recv) = me.recv else {
            return Err(err(
                ErrorCode::NoReceiveTransport,
                "create a receive transport (consuming: true) before consuming",
            ));
        };
        Ok((me.worker, recv.id))
    }

    /// Whether the peer's receive transport got its `connectWebRtcTransport`.
    pub fn recv_connected(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .and_then(|p| p.recv)
            .is_some_and(|t| t.connected)
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
                let producers: Vec<ProducerId> =
                    std::mem::take(&mut entry.producers).into_keys().collect();
                let data_producers: Vec<DataProducerId> = std::mem::take(&mut entry.data_producers)
                    .into_keys()
                    .collect();
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
                    effects.push(
                        &peer,
                        Push::ConsumerClosed(closed(&c.producing_peer, producer)),
                    );
                }
                for (producer, c) in std::mem::take(&mut entry.data_consumers) {
                    effects.push(
                        &peer,
                        Push::DataConsumerClosed(closed(&c.producing_peer, producer)),
                    );
                }
            }
        }
        Some((peer, effects))
    }
}
