//! A peer's connection lifecycle: checking a connecting socket (auth
//! payload size, join token), admitting it as a new peer or resuming one,
//! its request and disconnect handlers, the grace period, shutdown, and the
//! sweeps and watchers that clean peers up when their socket or transports
//! go away.

use super::*;

impl Sfu {
    /// Refuse a connection whose auth payload was over [`MAX_AUTH_BYTES`]
    /// (see [`BoundedAuth`]): it was never parsed.
    pub fn check_auth_size(
        &self,
        auth: &Result<Option<Value>, usize>,
    ) -> Result<(), AuthPayloadTooLarge> {
        match auth {
            Err(size) => {
                self.inner.metrics.refused("payload_too_large");
                tracing::info!(size, "connection refused: auth payload too large");
                Err(AuthPayloadTooLarge(*size))
            }
            Ok(_) => Ok(()),
        }
    }

    /// Check the join token in a connecting socket's auth payload
    /// (`{token}`) and keep its grant for [`Sfu::on_connect`]. With tokens
    /// off this accepts everyone. Call it from a connect middleware that runs
    /// before the one calling `on_connect`; an `Err` refuses the connection,
    /// and its text is the client's `connect_error` message.
    pub fn authenticate(&self, socket: &SocketRef, auth: Option<&Value>) -> Result<(), AuthError> {
        let Some(verifier) = &self.inner.verifier else {
            return Ok(());
        };
        match verifier.verify_auth_payload(auth) {
            Ok(grant) => {
                socket.extensions.insert(grant);
                Ok(())
            }
            Err(error) => {
                self.inner.metrics.refused(error.reason());
                tracing::info!(reason = error.reason(), "connection refused");
                Err(error)
            }
        }
    }

    /// Make `socket` a peer: register it and its `mediasoupSignaling` and
    /// disconnect handlers. Call this from your own namespace handler when
    /// you do not use [`Sfu::attach`]. It replaces any disconnect handler
    /// already set on the socket (socketioxide keeps one per socket). The
    /// peer is cleaned up as soon as its socket goes (no session resume; see
    /// [`Sfu::on_connect_with_auth`]).
    pub fn on_connect(&self, socket: SocketRef) {
        self.admit(socket, ResumeIntent::Unsupported);
    }

    /// [`Sfu::on_connect`] that also honours session resume as the client's
    /// socket.io `auth` payload asks (`{resume: true}` or `{resume: {peerId,
    /// token}}`, see docs/PROTOCOL.md). Call it from a connect middleware; an
    /// `Err` refuses the connection with its text as the `connect_error`
    /// message. Then call [`Sfu::on_connected`] from the connect handler.
    pub fn on_connect_with_auth(
        &self,
        socket: SocketRef,
        auth: Option<&Value>,
    ) -> Result<(), ResumeError> {
        let intent = ResumeIntent::from_auth(auth)
            .inspect_err(|_| self.inner.metrics.refused("invalid_auth"))?;
        match intent {
            ResumeIntent::Resume { peer, token } => {
                self.resume(socket, peer, &token).inspect_err(|error| {
                    self.inner.metrics.refused("resume_failed");
                    tracing::info!(%error, "resume refused");
                })
            }
            intent => {
                self.admit(socket, intent);
                Ok(())
            }
        }
    }

    /// Once the client knows it is connected: send what waited for it (the
    /// `session` push, pushes missed while away) and, after a resume, the
    /// room's `availableProducers` again.
    pub fn on_connected(&self, socket: &SocketRef) {
        let Some(peer) = socket.extensions.get::<PeerId>() else {
            return;
        };
        let outbox = self.links().get(&peer).and_then(|l| l.outbox.clone());
        let Some(outbox) = outbox else { return };
        let delivery = lock(&outbox).flush(&peer);
        if delivery == Delivery::Overflowed {
            self.end_session(&peer);
            return;
        }
        if socket.extensions.get::<Resumed>().is_some() {
            let available = {
                let registry = self.registry();
                registry
                    .room_of(&peer)
                    .map(|room| registry.available_producers(&room))
            };
            if let Some(available) = available {
                self.push(&peer, &Push::AvailableProducers(available));
            }
        }
    }

    /// A new peer for this socket.
    pub(crate) fn admit(&self, socket: SocketRef, intent: ResumeIntent) {
        // Never the socket id: that is the engine.io session id, which a
        // long-polling client proves itself with, and peer ids are told to
        // every member of a room.
        let peer = PeerId::random();
        let grant = socket.extensions.get::<Grant>();
        if self.inner.verifier.is_some() && grant.is_none() {
            // Only reachable when an application calls on_connect without
            // authenticate: fail closed.
            tracing::error!(peer = %peer, "join tokens are on but Sfu::authenticate did not run for this socket; disconnecting it");
            let _ = socket.disconnect();
            return;
        }
        let worker = {
            let mut registry = self.registry();
            let placed = least_loaded(
                &registry.peers_per_worker(self.inner.workers.len()),
                &self.inner.workers,
            );
            // With every worker gone the peer still gets a place, so each of
            // its media requests is answered with `worker_stopped`'s error.
            let worker = placed.unwrap_or_else(|| {
                tracing::error!(peer = %peer, "no media worker is running; this peer's media requests will fail until the server restarts");
                0
            });
            registry.add_peer(peer.clone(), worker);
            worker
        };
        let resumable = intent == ResumeIntent::Supported && !self.inner.resume_grace.is_zero();
        self.inner.metrics.connected();
        tracing::info!(peer = %peer, worker, resumable, room = grant.as_ref().map(|g| g.room.as_str()), "peer connected");
        let rate = Arc::new(Mutex::new(RequestRate::new(
            self.inner.limits.bucket(Instant::now()),
        )));
        let outbox = Outbox::new(socket.clone(), resumable, &peer, self.inner.resume_grace);
        self.links().insert(
            peer.clone(),
            PeerLink {
                outbox: Some(Arc::new(Mutex::new(outbox))),
                queue: Arc::new(tokio::sync::Mutex::new(())),
                grant,
                rate,
            },
        );
        self.speak_for(&socket, peer);
    }

    /// A new socket takes over `peer`, whose token it shows.
    /// With join tokens on, the new connection's token must name the room
    /// the session is in, and its grant replaces the old one (rights may
    /// have changed since).
    pub(crate) fn resume(
        &self,
        socket: SocketRef,
        peer: PeerId,
        token: &str,
    ) -> Result<(), ResumeError> {
        let grant = socket.extensions.get::<Grant>();
        if self.inner.verifier.is_some() {
            let Some(grant) = &grant else {
                return Err(ResumeError::Refused);
            };
            if self
                .registry()
                .room_of(&peer)
                .is_some_and(|room| room != grant.room)
            {
                return Err(ResumeError::WrongRoom);
            }
        }
        let replaced = {
            let mut links = self.links();
            let link = links.get_mut(&peer).ok_or(ResumeError::Refused)?;
            let outbox = link.outbox.clone().ok_or(ResumeError::Refused)?;
            let replaced =
                lock(&outbox).take_over(&peer, token, socket.clone(), self.inner.resume_grace)?;
            if self.inner.verifier.is_some() {
                link.grant = grant;
            }
            replaced
        };
        if replaced.connected() {
            // The old connection is not known to be dead yet (a network
            // change): this one wins, and the old one's disconnect is ignored.
            let _ = replaced.disconnect();
        }
        tracing::info!(peer = %peer, "peer resumed its session");
        socket.extensions.insert(Resumed);
        self.speak_for(&socket, peer);
        Ok(())
    }

    /// Requests on `socket` act for `peer`; its disconnect may end the peer.
    pub(crate) fn speak_for(&self, socket: &SocketRef, peer: PeerId) {
        socket.extensions.insert(peer.clone());
        socket
            .extensions
            .insert(RequestLimit(self.inner.limits.max_request_bytes));
        let sfu = self.clone();
        let id = peer.clone();
        socket.on(
            SIGNALING_EVENT,
            move |BoundedRequest(raw): BoundedRequest, ack: AckSender| {
                let (sfu, id) = (sfu.clone(), id.clone());
                async move { sfu.on_request(&id, raw, ack).await }
            },
        );
        let sfu = self.clone();
        let sid = socket.id;
        socket.on_disconnect(move |reason: DisconnectReason| {
            sfu.on_socket_gone(&peer, sid, reason);
            std::future::ready(())
        });
    }

    /// A new peer without a socket (a WHIP publisher): placed like any
    /// peer, with `grant` for its requests; its pushes go nowhere.
    pub(crate) fn admit_without_socket(&self, grant: Option<Grant>) -> PeerId {
        let peer = PeerId::random();
        {
            let mut registry = self.registry();
            let worker = least_loaded(
                &registry.peers_per_worker(self.inner.workers.len()),
                &self.inner.workers,
            )
            .unwrap_or(0);
            registry.add_peer(peer.clone(), worker);
        }
        self.inner.metrics.connected();
        let rate = Arc::new(Mutex::new(RequestRate::new(
            self.inner.limits.bucket(Instant::now()),
        )));
        self.links().insert(
            peer.clone(),
            PeerLink {
                outbox: None,
                queue: Arc::new(tokio::sync::Mutex::new(())),
                grant,
                rate,
            },
        );
        peer
    }

    /// A socket went: clean its peer up now, or after the grace period if
    /// the client may resume, or not at all if another socket took over.
    pub(crate) fn on_socket_gone(
        &self,
        peer: &PeerId,
        sid: socketioxide::socket::Sid,
        reason: DisconnectReason,
    ) {
        enum Next {
            Nothing,
            Wait(u64),
            CleanUp,
        }
        let next = {
            let links = self.links();
            match links.get(peer).and_then(|l| l.outbox.as_ref()) {
                None => Next::Nothing,
                Some(outbox) => {
                    let mut outbox = lock(outbox);
                    if outbox.socket.id != sid {
                        Next::Nothing
                    } else if outbox.resumable && !outbox.overflowed && may_come_back(reason) {
                        Next::Wait(outbox.leave())
                    } else {
                        Next::CleanUp
                    }
                }
            }
        };
        let sfu = self.clone();
        let peer = peer.clone();
        match next {
            Next::Nothing => {}
            Next::Wait(generation) => {
                tracing::info!(peer = %peer, ?reason, grace_ms = self.inner.resume_grace.as_millis(), "peer's socket dropped; waiting for a resume");
                let grace = self.inner.resume_grace;
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    let expired = sfu
                        .links()
                        .get(&peer)
                        .and_then(|l| l.outbox.as_ref())
                        .is_some_and(|outbox| {
                            let outbox = lock(outbox);
                            outbox.away && outbox.generation == generation
                        });
                    if expired {
                        sfu.remove_peer(&peer, "no resume within the grace period")
                            .await;
                    }
                });
            }
            // Cleanup waits for the peer's queue; do not hold up socketioxide meanwhile.
            Next::CleanUp => drop(tokio::spawn(async move {
                sfu.remove_peer(&peer, reason_text(reason)).await
            })),
        }
    }

    /// The peer missed too many pushes (away, or not reading): clean it up
    /// now, and close its socket if it is still there (when its queue is
    /// still full, engine.io's next heartbeat closes the connection).
    pub(crate) fn end_session(&self, peer: &PeerId) {
        self.inner.metrics.refused("too_many_pushes_waiting");
        let socket = self
            .links()
            .get(peer)
            .and_then(|l| l.outbox.as_ref().map(|o| lock(o).socket.clone()));
        if let Some(socket) = socket {
            let _ = socket.disconnect();
        }
        let sfu = self.clone();
        let peer = peer.clone();
        tokio::spawn(async move { sfu.remove_peer(&peer, "too many pushes missed").await });
    }

    /// Say goodbye to every client (a `serverShutdown` push) and clean
    /// every peer up, closing its transports; peers whose socket is away
    /// (waiting for a resume) too. Sockets are not disconnected: the caller
    /// then stops serving, and the connections drop as they would if the
    /// server had crashed, which socket.io-client retries by itself, so the
    /// pages of both clients come back once the server is up again (a
    /// server disconnect is never retried: after a deploy the published
    /// client would stay dead until reloaded). Returns when every peer is
    /// gone or `within` has passed.
    pub async fn close(&self, message: &str, within: Duration) {
        let peers: Vec<(PeerId, Option<Arc<Mutex<Outbox>>>)> = self
            .links()
            .iter()
            .map(|(id, link)| (id.clone(), link.outbox.clone()))
            .collect();
        tracing::info!(peers = peers.len(), "telling every client the server stops");
        let goodbye = Push::ServerShutdown(ServerShutdown {
            message: message.to_owned(),
        });
        for outbox in peers.iter().filter_map(|(_, o)| o.as_ref()) {
            let outbox = lock(outbox);
            // Straight to the socket: nothing queued matters any more.
            if !outbox.away {
                let _ = outbox.socket.emit(SIGNALING_EVENT, &goodbye);
            }
        }
        let cleanups: Vec<_> = peers
            .into_iter()
            .map(|(peer, _)| {
                let sfu = self.clone();
                tokio::spawn(async move { sfu.remove_peer(&peer, "the server is stopping").await })
            })
            .collect();
        let all = futures_join_all(cleanups);
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!(
                peers = self.links().len(),
                "peers still being cleaned up at shutdown"
            );
        }
    }

    /// Disconnect cleanup: after the peer's last request, leave its room,
    /// close its transports (the engine closes what lived on them) and tell
    /// the peers that consumed from it.
    pub(crate) async fn remove_peer(&self, peer: &PeerId, reason: &'static str) {
        self.forget_speaker(peer);
        self.whip_sessions().remove_peer(peer);
        let link = self.links().remove(peer);
        if let Some(link) = &link {
            let _turn = link.queue.lock().await;
            self.cleanup_peer(peer).await;
        } else {
            self.cleanup_peer(peer).await;
        }
        tracing::info!(peer = %peer, reason, "peer disconnected");
    }

    pub(crate) async fn cleanup_peer(&self, peer: &PeerId) {
        let Some(removed) = self.registry().remove_peer(peer) else {
            return;
        };
        if let Ok(engine) = self.worker(removed.worker) {
            for transport in removed.transports {
                match engine.close_transport(transport).await {
                    Ok(_) | Err(EngineError::TransportNotFound(_)) => {}
                    Err(error) => tracing::warn!(peer = %peer, %error, "could not close transport"),
                }
            }
        }
        self.apply(removed.effects).await;
    }

    pub(crate) async fn on_engine_event(&self, worker: WorkerIndex, event: EngineEvent) {
        match event {
            EngineEvent::TransportClosed {
                transport_id,
                reason,
                ..
            } => {
                let owner = self.registry().transport_owner(transport_id);
                let Some(owner) = owner else {
                    if let Some(node) = self
                        .inner
                        .span
                        .get()
                        .and_then(|span| span.link_closed(transport_id))
                    {
                        // A link to another node (it has no peer).
                        self.link_gone(&node).await;
                    }
                    return;
                };
                tracing::info!(peer = %owner, worker, transport = %transport_id, %reason, "transport closed by the engine");
                let Some(queue) = self.queue_of(&owner) else {
                    return;
                };
                let _turn = queue.lock().await;
                let closed = self.registry().transport_closed(transport_id);
                if let Some((_, effects)) = closed {
                    self.apply(effects).await;
                }
            }
            EngineEvent::AudioLevels(reports) => self.on_audio_levels(reports),
            // The registry hears of it from the producer's node (its state
            // no longer lists the producer), which closes the consumers'
            // entries and tells their peers.
            EngineEvent::RelayedProducerClosed {
                link_id,
                producer_id,
                ..
            } => {
                tracing::debug!(worker, link = %link_id, producer = %producer_id, "relayed producer closed");
                if let Some(span) = self.inner.span.get() {
                    span.relay_closed(producer_id);
                }
            }
            EngineEvent::RelayedDataProducerClosed {
                link_id,
                data_producer_id,
                ..
            } => {
                tracing::debug!(worker, link = %link_id, data_producer = %data_producer_id, "relayed data producer closed");
                if let Some(span) = self.inner.span.get() {
                    span.data_relay_closed(data_producer_id);
                }
            }
            EngineEvent::ConsumerLayersChanged {
                transport_id,
                consumer_id,
                producer_id,
                spatial_layer,
                temporal_layer,
            } => {
                let owner = self.registry().transport_owner(transport_id);
                let Some(owner) = owner else { return };
                // A consumer closed (or replaced) meanwhile is not reported.
                if self
                    .registry()
                    .consumer_of(&owner, producer_id)
                    .ok()
                    .map(|(_, c)| c)
                    != Some(consumer_id)
                {
                    return;
                }
                let push = ConsumerLayersChanged {
                    producer_id,
                    spatial_layer,
                    temporal_layer,
                };
                self.push(&owner, &Push::ConsumerLayersChanged(push));
            }
        }
    }
}

/// A connection refused because its auth payload was over
/// [`MAX_AUTH_BYTES`]; the text is the client's `connect_error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "payload_too_large: the connection's auth payload is {0} bytes; the most is {MAX_AUTH_BYTES}"
)]
pub struct AuthPayloadTooLarge(pub usize);

/// Wait for every task (their panics are the tasks' own business).
pub(super) async fn futures_join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// Marks a socket that resumed a session (for [`Sfu::on_connected`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Resumed;

pub(super) fn reason_text(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::ClientNSDisconnect => "the client disconnected",
        DisconnectReason::ServerNSDisconnect => "the server disconnected it",
        DisconnectReason::ClosingServer => "the server is stopping",
        DisconnectReason::HeartbeatTimeout => "heartbeat timeout",
        _ => "the connection closed",
    }
}

pub(super) async fn watch_engine_events(
    sfu: Weak<Inner>,
    worker: WorkerIndex,
    mut events: UnboundedReceiver<EngineEvent>,
) {
    while let Some(event) = events.recv().await {
        let Some(inner) = sfu.upgrade() else { break };
        Sfu { inner }.on_engine_event(worker, event).await;
    }
}

/// How often peers whose socket never finished connecting are looked for.
pub(super) const ORPHAN_SWEEP_PERIOD: Duration = Duration::from_secs(5);

/// Peers are registered in a connect middleware, before socketioxide sends
/// the CONNECT packet; when that send fails (the client is already gone),
/// socketioxide drops the socket without running its disconnect handler.
/// A peer whose socket is seen not connected (and not away for a resume) at
/// two sweeps in a row is such an orphan: clean it up.
pub(super) async fn sweep_orphans(sfu: Weak<Inner>) {
    let mut ticker = tokio::time::interval(ORPHAN_SWEEP_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut suspects: std::collections::HashSet<PeerId> = std::collections::HashSet::new();
    loop {
        ticker.tick().await;
        let Some(inner) = sfu.upgrade() else { break };
        let sfu = Sfu { inner };
        let unconnected: Vec<PeerId> = sfu
            .links()
            .iter()
            .filter(|(_, link)| {
                link.outbox.as_ref().is_some_and(|outbox| {
                    let outbox = lock(outbox);
                    !outbox.away && !outbox.socket.connected()
                })
            })
            .map(|(peer, _)| peer.clone())
            .collect();
        for peer in unconnected.iter().filter(|p| suspects.contains(*p)) {
            let (sfu, peer) = (sfu.clone(), peer.clone());
            tokio::spawn(async move {
                sfu.remove_peer(&peer, "its connection never completed")
                    .await
            });
        }
        suspects = unconnected.into_iter().collect();
    }
}
