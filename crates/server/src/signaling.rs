//! The `mediasoupSignaling` request handlers: one small function per request
//! type that checks the request against the registry, asks the engine, records
//! the outcome and names the fields of the success ack. Parsing happened
//! before (in `simplesfu-proto`); acking happens after (in `sfu`).

use crate::auth::{require_room, Right};
use crate::errors::from_engine;
use crate::registry::{Data, DataProducerEntry, Media, ProducerEntry};
use crate::sfu::{fields, Sfu};
use serde_json::{Map, Value};
use simplesfu_engine::{DataProducerOptions, Direction, ProducerOptions, WebRtcTransportOptions};
use simplesfu_proto::{
    ConnectWebRtcTransport, CreateConsumerRequest, CreateWebRtcTransport, DataProducerId,
    ErrorCode, JoinRoom, PeerId, Produce, ProduceData, ProducerId, ProducerRef, Push, Request,
    RoomId, SetConsumerPreferredLayers, SetConsumerPriority, SignalingError, TransportRef,
};

type Reply = Result<Map<String, Value>, SignalingError>;

fn no_fields() -> Reply {
    Ok(Map::new())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, SignalingError> {
    serde_json::to_value(value).map_err(|error| {
        tracing::error!(%error, "could not serialize a reply");
        SignalingError::new(ErrorCode::InternalError, "could not encode the reply")
    })
}

impl Sfu {
    pub(crate) async fn dispatch(&self, peer: &PeerId, request: Request) -> Reply {
        match request {
            Request::JoinRoom(r) => self.join_room(peer, r).await,
            Request::LeaveRoom(r) => self.leave_room(peer, r).await,
            Request::GetRouterRtpCapabilities => self.router_rtp_capabilities(peer),
            Request::CreateWebRtcTransport(r) => self.create_webrtc_transport(peer, r).await,
            Request::ConnectWebRtcTransport(r) => self.connect_webrtc_transport(peer, r).await,
            Request::Produce(r) => self.produce(peer, *r).await,
            Request::ProduceData(r) => self.produce_data(peer, r).await,
            Request::CreateConsumer(r) => self.create_consumer(peer, r).await,
            Request::CreateDataConsumer(r) => self.create_data_consumer(peer, r).await,
            Request::PauseConsumer(r) => self.set_consumer_paused(peer, r, true).await,
            Request::ResumeConsumer(r) => self.set_consumer_paused(peer, r, false).await,
            Request::CloseConsumer(r) => self.close_consumer(peer, r).await,
            Request::CloseProducer(r) => self.close_producer(peer, r).await,
            Request::PauseProducer(r) => self.set_producer_paused(peer, r, true).await,
            Request::ResumeProducer(r) => self.set_producer_paused(peer, r, false).await,
            Request::RestartIce(r) => self.restart_ice(peer, r).await,
            Request::SetConsumerPreferredLayers(r) => {
                self.set_consumer_preferred_layers(peer, r).await
            }
            Request::SetConsumerPriority(r) => self.set_consumer_priority(peer, r).await,
            Request::SubscribeAudioLevels(r) => {
                self.subscribe_audio_levels(peer, r.enabled);
                no_fields()
            }
        }
    }

    /// Unless the peer opts out (`autoConsume: false`), the server creates
    /// the consumers between the joiner and the room: the published client
    /// never asks for them.
    async fn join_room(&self, peer: &PeerId, r: JoinRoom) -> Reply {
        let auto_consume = r.auto_consume.unwrap_or(true);
        require_room(self.grant_of(peer).as_ref(), &r.room_id)?;
        // A peer whose media worker has stopped could never send or receive:
        // say so now rather than announce it to the room.
        let worker = self.registry().worker_of(peer)?;
        self.worker(worker)?;
        if let Some(cluster) = self.inner.cluster.get() {
            // Without a shared secret, a room lives on the node that has it.
            if let Err(place) = cluster.claim_room(r.room_id.as_str()).await {
                let at = if place.url.is_empty() {
                    String::new()
                } else {
                    format!(" at {}", place.url)
                };
                return Err(SignalingError::new(
                    ErrorCode::RoomOnAnotherNode,
                    format!(
                        "room {} is served by node {}{at}: connect to that node to join it (GET /cluster/rooms/<room> on any node says where a room is)",
                        r.room_id, place.node
                    ),
                ));
            }
        }
        let (effects, targets) = {
            let mut registry = self.registry();
            let members = registry.members(&r.room_id);
            if members.len() >= self.inner.limits.peers_per_room && !members.contains(peer) {
                return Err(self.inner.limits.room_full());
            }
            let effects = registry.join_room(peer, &r.room_id, auto_consume)?;
            (effects, registry.auto_consume_on_join(peer))
        };
        tracing::info!(peer = %peer, room = %r.room_id, auto_consume, "joined room");
        self.apply(effects).await;
        if let Some(span) = self.inner.span.get() {
            // The room's peers on other nodes, known already, appear now.
            span.reconcile(self).await;
        }
        if let Some(peer_id) = self.active_speaker(&r.room_id) {
            self.push(
                peer,
                &Push::ActiveSpeaker(simplesfu_proto::ActiveSpeaker { peer_id }),
            );
        }
        self.auto_consume(targets);
        no_fields()
    }

    /// Leaves the current room whatever `roomId` says (the published client
    /// sends a wrongly nested one).
    async fn leave_room(&self, peer: &PeerId, _named: Option<RoomId>) -> Reply {
        let room = self.registry().room_of(peer);
        let effects = self.registry().leave_room(peer)?;
        tracing::info!(peer = %peer, room = ?room.map(|r| r.to_string()), "left room");
        self.apply(effects).await;
        no_fields()
    }

    /// The capabilities go in `routerRtpCapabilities`, and their fields
    /// (`codecs`, `headerExtensions`) also at the top of the ack: the
    /// published client hands the whole ack to `device.load`, which ignores
    /// the extra keys.
    fn router_rtp_capabilities(&self, peer: &PeerId) -> Reply {
        let worker = self.registry().worker_of(peer)?;
        let caps = to_json(self.worker(worker)?.rtp_capabilities())?;
        let mut out = caps.as_object().cloned().unwrap_or_default();
        out.insert("routerRtpCapabilities".into(), caps);
        // How a client learns its own peer id (it is not the socket id).
        out.insert("peerId".into(), Value::String(peer.to_string()));
        Ok(out)
    }

    /// Like the capabilities, the transport is both `transportInfo` and the
    /// top-level fields, which is what the published client reads.
    async fn create_webrtc_transport(&self, peer: &PeerId, r: CreateWebRtcTransport) -> Reply {
        let direction = match (r.producing, r.consuming) {
            (true, false) => Direction::Send,
            (false, true) => Direction::Recv,
            _ => {
                return Err(SignalingError::new(
                    ErrorCode::InvalidRequest,
                    "set exactly one of `producing` (send transport) and `consuming` (receive transport) to true",
                ))
            }
        };
        let worker = self.registry().check_new_transport(peer, direction)?;
        let engine = self.worker(worker)?;
        // Always: mediasoup-client 3.24 no longer sends sctpCapabilities, and
        // a transport without SCTP could never carry data channels.
        let enable_sctp = true;
        let info = engine
            .create_webrtc_transport(WebRtcTransportOptions {
                direction,
                enable_sctp,
                force_tcp: r.force_tcp,
            })
            .await
            .map_err(from_engine)?;
        let recorded = self.registry().add_transport(peer, direction, info.id);
        if let Err(error) = recorded {
            let _ = engine.close_transport(info.id).await;
            return Err(error);
        }
        tracing::debug!(peer = %peer, transport = %info.id, ?direction, enable_sctp, "transport created");
        let mut transport = fields([
            ("id", to_json(&info.id)?),
            ("iceParameters", to_json(&info.ice_parameters)?),
            ("iceCandidates", to_json(&info.ice_candidates)?),
            ("dtlsParameters", to_json(&info.dtls_parameters)?),
        ]);
        if let Some(sctp) = &info.sctp_parameters {
            transport.insert("sctpParameters".into(), to_json(sctp)?);
        }
        let mut out = transport.clone();
        out.insert("transportInfo".into(), Value::Object(transport));
        Ok(out)
    }

    /// New ICE parameters for one of the peer's transports (mediasoup's
    /// `transport.restartIce()`); producers and consumers stay.
    async fn restart_ice(&self, peer: &PeerId, r: TransportRef) -> Reply {
        let (worker, _, _) = self.registry().own_transport(peer, r.transport_id)?;
        let ice_parameters = self
            .worker(worker)?
            .restart_ice(r.transport_id)
            .await
            .map_err(from_engine)?;
        tracing::debug!(peer = %peer, transport = %r.transport_id, "ICE restarted");
        Ok(fields([("iceParameters", to_json(&ice_parameters)?)]))
    }

    async fn connect_webrtc_transport(&self, peer: &PeerId, r: ConnectWebRtcTransport) -> Reply {
        let worker = self.registry().check_connect(peer, r.transport_id)?;
        self.worker(worker)?
            .connect_webrtc_transport(r.transport_id, r.dtls_parameters)
            .await
            .map_err(from_engine)?;
        self.registry().mark_connected(peer, r.transport_id);
        tracing::debug!(peer = %peer, transport = %r.transport_id, "transport connected");
        no_fields()
    }

    /// Producing needs the token's right and room under the producer limit;
    /// the peer's queue keeps the count from changing until the producer is recorded.
    fn check_new_producer(&self, peer: &PeerId, right: Right) -> Result<(), SignalingError> {
        self.require(peer, right)?;
        if self.registry().producer_count(peer)? >= self.inner.limits.producers_per_peer {
            return Err(self.inner.limits.too_many_producers());
        }
        Ok(())
    }

    async fn produce(&self, peer: &PeerId, r: Produce) -> Reply {
        self.check_new_producer(peer, Right::Publish)?;
        let worker = self.registry().producing_transport(peer, r.transport_id)?;
        let engine = self.worker(worker)?;
        let spatial_layers =
            u8::try_from(r.rtp_parameters.encodings.len().max(1)).unwrap_or(u8::MAX);
        let options = ProducerOptions {
            transport_id: r.transport_id,
            kind: r.kind,
            rtp_parameters: r.rtp_parameters,
            paused: false,
        };
        let id = engine.produce(options).await.map_err(from_engine)?;
        let entry = ProducerEntry {
            kind: r.kind,
            label: r.app_data.label.unwrap_or_default(),
            broadcast: r.app_data.broadcast,
            paused: false,
            spatial_layers,
        };
        let broadcast = entry.broadcast;
        let recorded = self.registry().add_producer(peer, id, entry);
        let effects = match recorded {
            Ok(effects) => effects,
            Err(error) => {
                let _ = engine.close_producer(id).await;
                return Err(error);
            }
        };
        tracing::info!(peer = %peer, producer = %id, kind = ?r.kind, broadcast, "producing");
        self.apply(effects).await;
        let targets = self.registry().auto_consume_on_produce(peer, id);
        self.auto_consume(targets);
        Ok(fields([("id", to_json(&id)?)]))
    }

    async fn produce_data(&self, peer: &PeerId, r: ProduceData) -> Reply {
        self.check_new_producer(peer, Right::Data)?;
        let worker = self.registry().producing_transport(peer, r.transport_id)?;
        let engine = self.worker(worker)?;
        let options = DataProducerOptions {
            transport_id: r.transport_id,
            sctp_stream_parameters: r.sctp_stream_parameters,
            label: r.label,
            protocol: r.protocol,
        };
        let id = engine.produce_data(options).await.map_err(from_engine)?;
        let app_data = if r.app_data.is_null() {
            Value::Object(Map::new())
        } else {
            r.app_data
        };
        let recorded = self
            .registry()
            .add_data_producer(peer, id, DataProducerEntry { app_data });
        let effects = match recorded {
            Ok(effects) => effects,
            Err(error) => {
                let _ = engine.close_data_producer(id).await;
                return Err(error);
            }
        };
        tracing::info!(peer = %peer, data_producer = %id, "producing data");
        self.apply(effects).await;
        Ok(fields([("id", to_json(&id)?)]))
    }

    /// The consumer arrives as a `createConsumer` push (also when it existed
    /// already: asking twice re-sends the same consumer).
    async fn create_consumer(&self, peer: &PeerId, r: CreateConsumerRequest<ProducerId>) -> Reply {
        self.require(peer, Right::Subscribe)?;
        let push = self
            .consumer_for::<Media>(peer, &r.producing_peer_id, r.producer_id)
            .await?;
        tracing::debug!(peer = %peer, producer = %r.producer_id, consumer = %push.id, "consuming");
        self.push(peer, &Push::CreateConsumer(Box::new(push)));
        no_fields()
    }

    async fn create_data_consumer(
        &self,
        peer: &PeerId,
        r: CreateConsumerRequest<DataProducerId>,
    ) -> Reply {
        self.require(peer, Right::Data)?;
        let push = self
            .consumer_for::<Data>(peer, &r.producing_peer_id, r.producer_id)
            .await?;
        tracing::debug!(peer = %peer, data_producer = %r.producer_id, data_consumer = %push.id, "consuming data");
        self.push(peer, &Push::CreateDataConsumer(push));
        no_fields()
    }

    /// Resuming needs the receive transport connected: the key frame asked
    /// for at resume must not arrive before the client can receive it. The
    /// request cannot wait for the connect, which queues behind it.
    async fn set_consumer_paused(&self, peer: &PeerId, r: ProducerRef, paused: bool) -> Reply {
        let (worker, consumer) = self.registry().consumer_of(peer, r.producer_id)?;
        if !paused && !self.registry().recv_connected(peer) {
            return Err(SignalingError::new(
                ErrorCode::TransportNotConnected,
                "the receive transport is not connected; call connectWebRtcTransport for it, then resumeConsumer",
            ));
        }
        self.worker(worker)?
            .set_consumer_paused(consumer, paused)
            .await
            .map_err(from_engine)?;
        self.registry()
            .set_consumer_paused(peer, r.producer_id, paused);
        tracing::debug!(peer = %peer, consumer = %consumer, paused, "consumer paused state");
        Ok(fields([("paused", Value::Bool(paused))]))
    }

    async fn set_consumer_preferred_layers(
        &self,
        peer: &PeerId,
        r: SetConsumerPreferredLayers,
    ) -> Reply {
        let (worker, consumer) = self.registry().consumer_of(peer, r.producer_id)?;
        let engine = self.worker(worker)?;
        engine
            .set_consumer_preferred_layers(consumer, r.spatial_layer, r.temporal_layer)
            .await
            .map_err(from_engine)?;
        self.registry()
            .set_consumer_preferred_spatial(peer, r.producer_id, r.spatial_layer);
        tracing::debug!(peer = %peer, consumer = %consumer, spatial = r.spatial_layer, temporal = ?r.temporal_layer, "preferred layers");
        no_fields()
    }

    async fn set_consumer_priority(&self, peer: &PeerId, r: SetConsumerPriority) -> Reply {
        let (worker, consumer) = self.registry().consumer_of(peer, r.producer_id)?;
        self.worker(worker)?
            .set_consumer_priority(consumer, r.priority)
            .await
            .map_err(from_engine)?;
        tracing::debug!(peer = %peer, consumer = %consumer, priority = r.priority, "consumer priority");
        no_fields()
    }

    /// Like the original server, the peer also gets a `consumerClosed` push.
    async fn close_consumer(&self, peer: &PeerId, r: ProducerRef) -> Reply {
        let (worker, consumer, effects) = self.registry().remove_consumer(peer, r.producer_id)?;
        match self.worker(worker)?.close_consumer(consumer).await {
            Ok(()) | Err(simplesfu_engine::EngineError::ConsumerNotFound(_)) => {}
            Err(error) => return Err(from_engine(error)),
        }
        self.apply(effects).await;
        no_fields()
    }

    /// The registry forgets the producer before the engine closes it, so a
    /// consumer being made for it meanwhile is refused and closed (see
    /// `Sfu::consumer_for`).
    async fn close_producer(&self, peer: &PeerId, r: ProducerRef) -> Reply {
        let worker = self.registry().own_producer(peer, r.producer_id)?;
        let effects = self.registry().remove_producer(peer, r.producer_id)?;
        match self.worker(worker)?.close_producer(r.producer_id).await {
            Ok(_) | Err(simplesfu_engine::EngineError::ProducerNotFound(_)) => {}
            Err(error) => {
                tracing::warn!(peer = %peer, producer = %r.producer_id, %error, "engine could not close producer")
            }
        }
        tracing::info!(peer = %peer, producer = %r.producer_id, "producer closed");
        self.apply(effects).await;
        no_fields()
    }

    async fn set_producer_paused(&self, peer: &PeerId, r: ProducerRef, paused: bool) -> Reply {
        let worker = self.registry().own_producer(peer, r.producer_id)?;
        self.worker(worker)?
            .set_producer_paused(r.producer_id, paused)
            .await
            .map_err(from_engine)?;
        let effects = self
            .registry()
            .set_producer_paused(peer, r.producer_id, paused)?;
        tracing::debug!(peer = %peer, producer = %r.producer_id, paused, "producer paused state");
        self.apply(effects).await;
        Ok(fields([("paused", Value::Bool(paused))]))
    }
}
