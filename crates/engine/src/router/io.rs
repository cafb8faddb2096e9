//! Demux and I/O: which transport a datagram is for (STUN by ufrag, after
//! checking MESSAGE-INTEGRITY; the rest by learned path), the timer heap,
//! polling str0m and draining what it sends, and the events of a transport
//! (RTP, key-frame requests, data channels, connection, death).

use super::{
    Router, Transport, IDLE_TIMEOUT, IMMEDIATE_ROUNDS, IMMEDIATE_SLACK, INITIAL_ESTIMATE,
    MAX_PATHS_PER_TRANSPORT, UNKNOWN_REMOTE_PASSWORD,
};
use crate::api::EngineEvent;
use crate::stun;
use crate::worker::Command;
use mediasoup_types::rtp_parameters::MediaKind;
use simplesfu_proto::{ProducerId, TransportId};
use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::Instant;
use str0m::bwe::{Bitrate, BweKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output};

impl Router {
    /// A datagram arrived: on the UDP socket, or a whole RFC 4571 frame on an
    /// ICE-TCP connection (`proto` says which). True when it came on a path
    /// the transport learned from a binding request str0m answered (its
    /// MESSAGE-INTEGRITY holds), this one included. The worker keeps an
    /// ICE-TCP connection open only while it sends such datagrams, so a
    /// transport holds at most as many as it has path slots.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        data: &[u8],
    ) -> bool {
        let tid = match stun::binding_request_username(data) {
            Some(username) => {
                // USERNAME is `ourUfrag:theirUfrag`.
                let mut parts = username.splitn(2, ':');
                let local = parts.next().unwrap_or_default();
                let remote = parts.next().unwrap_or_default();
                let Some(&tid) = self.by_ufrag.get(local) else {
                    self.stats.datagrams_dropped += 1;
                    return false;
                };
                let Some(t) = self.transports.get_mut(&tid) else {
                    self.stats.datagrams_dropped += 1;
                    return false;
                };
                // Nothing below may act on a request whose password is
                // wrong: a stranger who saw or guessed the ufrags could
                // otherwise set a wrong remote ufrag before the client's
                // first check (str0m would then refuse the client) or end an
                // ICE restart on their own address. str0m would ignore such
                // a request anyway; count it, so probing shows.
                if !stun::integrity_holds(data, &t.local_pass) {
                    self.stats.datagrams_dropped += 1;
                    return false;
                }
                if std::mem::take(&mut t.ice_restarting) {
                    for path in forget_other_paths(t, (proto, source)) {
                        if self.by_addr.get(&path) == Some(&tid) {
                            self.by_addr.remove(&path);
                        }
                    }
                    // The restarted client may come with a new ufrag.
                    t.remote_creds_placeholder = true;
                }
                learn_remote_ufrag(t, remote);
                t.last_consent = Some(now);
                tid
            }
            None => match self.by_addr.get(&(proto, source)) {
                Some(&tid) => tid,
                None => {
                    self.stats.datagrams_dropped += 1;
                    return false;
                }
            },
        };
        let Some(t) = self.transports.get_mut(&tid) else {
            self.stats.datagrams_dropped += 1;
            return false;
        };
        let destination = self.candidates.destination(proto, self.config.local_addr);
        let receive = match Receive::new(proto, source, destination, data) {
            Ok(r) => r,
            Err(_) => {
                self.stats.datagrams_dropped += 1;
                return false;
            }
        };
        if let Err(error) = t.rtc.handle_input(Input::Receive(now, receive)) {
            self.stats.datagrams_dropped += 1;
            tracing::debug!(transport = %tid, %error, "datagram refused");
        }
        let path = (proto, source);
        let new_path = stun::is_stun(data)
            && !t.addrs.contains(&path)
            && t.addrs.len() < MAX_PATHS_PER_TRANSPORT;
        let sent_before = self.outbox.len();
        // str0m keeps only the last input's event unless it is polled after
        // every input: poll the receiving transport now. The consumers it
        // writes to are polled once per batch, in `drain`.
        self.poll_transport(now, tid);
        // Learn a path only from a request str0m answered, i.e. whose
        // MESSAGE-INTEGRITY checked out: a stranger who saw the ufrag cannot
        // fill the transport's path slots.
        let answered = self.outbox[sent_before..]
            .iter()
            .any(|(p, to, _)| *p == proto && *to == source);
        if !answered && stun::binding_request_username(data).is_some() {
            // str0m ignores a request whose integrity fails: count it, so a
            // stranger probing a known ufrag shows in the worker's figures.
            self.stats.datagrams_dropped += 1;
        }
        if new_path && answered {
            if let Some(t) = self.transports.get_mut(&tid) {
                t.addrs.push(path);
                self.by_addr.insert(path, tid);
            }
        }
        self.by_addr.get(&path) == Some(&tid)
    }

    /// Time passed: drive every transport whose timer is due (polling a
    /// transport feeds it the timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.report_audio_levels(now);
        while let Some(&Reverse((at, tid))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            // Entries superseded by an earlier one, or of closed transports, are stale.
            let due = match self.transports.get_mut(&tid) {
                Some(t) if t.scheduled == Some(at) => {
                    t.scheduled = None;
                    true
                }
                _ => false,
            };
            if due {
                self.mark_dirty(tid);
                if self
                    .transports
                    .get(&tid)
                    .and_then(|t| t.allocate_at)
                    .is_some_and(|at| at <= now)
                {
                    self.allocate(now, tid);
                }
            }
        }
    }

    /// When the router next needs [`Router::handle_timeout`] (never later
    /// than a short idle period).
    pub fn next_timeout(&self, now: Instant) -> Instant {
        let idle = now + IDLE_TIMEOUT;
        let next = self
            .timers
            .peek()
            .map_or(idle, |Reverse((at, _))| (*at).min(idle));
        self.audio_levels.due().map_or(next, |due| due.min(next))
    }

    /// Hand out the audio levels gathered, once their report is due.
    pub(super) fn report_audio_levels(&mut self, now: Instant) {
        if let Some(reports) = self.audio_levels.take_due(now) {
            self.events.push(EngineEvent::AudioLevels(reports));
        }
    }

    /// Keep the heap's entry for `tid` at or before `at`. A later entry that
    /// fires early only makes the transport be polled early, which is harmless.
    pub(super) fn schedule(&mut self, tid: TransportId, at: Instant) {
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        if t.scheduled.is_none_or(|s| at < s) {
            t.scheduled = Some(at);
            self.timers.push(Reverse((at, tid)));
        }
    }

    /// Poll every transport that has work, then hand every datagram to
    /// `send`. Consumers written to by a whole batch of input are polled once.
    pub fn drain(&mut self, now: Instant, send: impl FnMut(Protocol, SocketAddr, Vec<u8>)) {
        self.drain_some(now, usize::MAX, send);
    }

    /// Like [`Router::drain`], but hands the datagrams to `send` as soon as
    /// polled transports have produced `flush_at` of them, and then returns
    /// false: the caller sends them and calls again, with a fresh `now`. So
    /// a frame fanned out to many viewers starts leaving after the first
    /// few transports are polled, not after all of them (the first viewer
    /// of 200 waited for the whole fan-out). A transport's datagrams are
    /// never split, so they stay one GSO group. True when nothing is left.
    pub fn drain_some(
        &mut self,
        now: Instant,
        flush_at: usize,
        mut send: impl FnMut(Protocol, SocketAddr, Vec<u8>),
    ) -> bool {
        for (_, sink, packets) in self.pipe_outbox.iter_mut() {
            if !packets.is_empty() {
                // A worker that is gone drops the batch; its pipes go at the next packet.
                let _ = sink.send(Command::PipePackets(std::mem::take(packets)));
            }
        }
        for tid in std::mem::take(&mut self.reallocate) {
            self.allocate(now, tid);
        }
        let mut done = true;
        while let Some(tid) = self.dirty.pop() {
            self.dirty_set.remove(&tid);
            self.poll_transport(now, tid);
            if self.outbox.len() >= flush_at && !self.dirty.is_empty() {
                done = false;
                break;
            }
        }
        for (proto, to, bytes) in self.outbox.drain(..) {
            send(proto, to, bytes);
        }
        done
    }

    /// Events for the owner of the worker.
    pub fn take_events(&mut self) -> Vec<EngineEvent> {
        std::mem::take(&mut self.events)
    }

    /// A receive transport's bandwidth estimate, read every
    /// [`super::ESTIMATE_READ_INTERVAL`]: the allocation runs when it moved.
    fn on_estimate(&mut self, now: Instant, tid: TransportId, estimate: Bitrate) {
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        // str0m holds its starting value until feedback moves it. A client
        // that sends none (a bot, an old client) must keep its layers
        // rather than be held to the starting guess forever.
        if t.estimate_bps.is_none() && estimate == INITIAL_ESTIMATE {
            return;
        }
        let estimate = estimate.as_u64();
        let previous = t.estimate_bps.replace(estimate);
        // The first estimate paces what went unpaced before it (single
        // streams, see `consume`), as does feedback after none.
        if t.unpaced || previous.is_none() {
            self.set_video_paced(tid, true);
        }
        if previous == Some(estimate) {
            return;
        }
        tracing::debug!(transport = %tid, estimate_bps = estimate, "bandwidth estimate");
        self.allocate(now, tid);
    }

    /// Poll one transport until str0m has nothing more; datagrams go to the
    /// outbox, events are handled (which may mark other transports dirty).
    fn poll_transport(&mut self, now: Instant, tid: TransportId) {
        if let Some(t) = self.transports.get_mut(&tid) {
            // str0m releases written RTP and queued feedback only on a
            // timeout input; feeding it only when its timer was due delayed
            // forwarded packets (p99 went from 12 ms to 130+ ms in the bench).
            if let Err(error) = t.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(transport = %tid, %error, "timeout handling failed");
            }
        }
        let mut rounds = 0;
        loop {
            let Some(t) = self.transports.get_mut(&tid) else {
                return;
            };
            match t.rtc.poll_output() {
                Ok(Output::Timeout(at))
                    if at <= now + IMMEDIATE_SLACK && rounds < IMMEDIATE_ROUNDS =>
                {
                    // With bandwidth estimation, str0m's pacer hands out one
                    // packet per timeout input and asks for the next one a
                    // microsecond later (time must move between packets).
                    // Feeding it here keeps a frame's packets in this drain
                    // (one GSO batch, no trip through the timer heap per
                    // packet); the bound keeps one transport from holding the
                    // worker.
                    rounds += 1;
                    if let Err(error) = t.rtc.handle_input(Input::Timeout(at.max(now))) {
                        tracing::debug!(transport = %tid, %error, "timeout handling failed");
                    }
                }
                Ok(Output::Timeout(at)) => {
                    let at = t.allocate_at.map_or(at, |due| due.min(at));
                    self.schedule(tid, at);
                    break;
                }
                Ok(Output::Transmit(tx)) => {
                    self.outbox
                        .push((tx.proto, tx.destination, tx.contents.into()))
                }
                Ok(Output::Event(event)) => self.handle_event(now, tid, event),
                Err(error) => {
                    tracing::debug!(transport = %tid, %error, "transport failed");
                    self.transport_died(tid, format!("media engine error: {error}"));
                    return;
                }
            }
        }
        let alive = self.transports.get(&tid).is_some_and(|t| t.rtc.is_alive());
        if !alive {
            self.transport_died(
                tid,
                "the connection closed (ICE timeout or DTLS close)".into(),
            );
        }
    }

    fn transport_died(&mut self, tid: TransportId, reason: String) {
        if let Ok((closed, producers)) = self.remove_transport(tid) {
            tracing::info!(transport = %tid, %reason, "transport closed by the engine");
            self.events.push(EngineEvent::TransportClosed {
                transport_id: tid,
                reason,
                producers_closed: producers,
                consumers_closed: closed.consumers,
            });
        }
    }

    fn handle_event(&mut self, now: Instant, tid: TransportId, event: Event) {
        match event {
            Event::RtpPacket(packet) => self.forward_rtp(now, tid, packet),
            Event::KeyframeRequest(req) => {
                let consumer = self
                    .transports
                    .get(&tid)
                    .and_then(|t| t.consumers_by_mid.get(&req.mid))
                    .copied();
                if let Some(c) = consumer.and_then(|cid| self.consumers.get(&cid)) {
                    let (producer, layer) = (c.producer_id, c.layers.current());
                    self.request_keyframe(now, producer, layer);
                } else if let Some((producer, layer)) = self.relay_of(tid, req.mid, req.rid) {
                    // The far end of a link wants a key frame of a layer it relays.
                    self.request_keyframe(now, producer, layer);
                }
            }
            // The estimate str0m reports in this event is averaged over the
            // values of the last 3 s, which delayed every step down and up
            // by seconds; its stats carry the estimate itself.
            Event::EgressBitrateEstimate(BweKind::Twcc { .. }) => {}
            Event::PeerStats(stats) => {
                if let Some(estimate) = stats.bwe_tx {
                    self.on_estimate(now, tid, estimate);
                }
            }
            Event::ChannelOpen(channel, _) => self.on_channel_open(tid, channel),
            Event::ChannelData(data) => {
                self.on_channel_data(now, tid, data.id, data.binary, &data.data)
            }
            Event::ChannelBufferedAmountLow(_) => {
                self.on_send_buffer_low(tid);
                self.on_link_control_open(tid);
            }
            Event::IceConnectionStateChange(state) => {
                tracing::debug!(transport = %tid, ?state, "ICE state");
                if state == IceConnectionState::Disconnected {
                    tracing::debug!(transport = %tid, "ICE disconnected");
                }
            }
            Event::Connected => {
                tracing::debug!(transport = %tid, "ICE and DTLS connected");
                self.on_transport_connected(now, tid);
            }
            _ => {}
        }
    }

    /// A transport became usable. Its resumed video consumers were created
    /// before it could carry media, so the key frame they started from never
    /// reached the viewer: ask their producers for a new one now rather than
    /// leave the viewer waiting for the sender's next periodic key frame.
    fn on_transport_connected(&mut self, now: Instant, tid: TransportId) {
        let Some(t) = self.transports.get(&tid) else {
            return;
        };
        let wanted: Vec<(ProducerId, Option<usize>)> = t
            .consumers_by_mid
            .values()
            .filter_map(|cid| self.consumers.get(cid))
            .filter(|c| !c.paused && c.kind == MediaKind::Video)
            .map(|c| (c.producer_id, c.layers.current()))
            .collect();
        for (producer, layer) in wanted {
            self.request_keyframe(now, producer, layer);
        }
    }
}

/// mediasoup-client never sends its ICE credentials: learn the ufrag from the
/// first binding request (USERNAME is `ours:theirs`) whose MESSAGE-INTEGRITY
/// holds, which the caller has checked.
fn learn_remote_ufrag(t: &mut Transport, remote: &str) {
    if remote.is_empty() {
        return;
    }
    let known = t.remote_creds.as_ref().map(|c| c.ufrag.as_str());
    if known == Some(remote) {
        return;
    }
    if known.is_some() && !t.remote_creds_placeholder {
        // A different ufrag after the real one: an ICE restart we did not
        // negotiate. Keep the first; str0m refuses the request's integrity.
        return;
    }
    let creds = IceCreds {
        ufrag: remote.to_owned(),
        pass: UNKNOWN_REMOTE_PASSWORD.into(),
    };
    t.rtc.direct_api().set_remote_ice_credentials(creds.clone());
    t.remote_creds = Some(creds);
    t.remote_creds_placeholder = false;
}

/// After an ICE restart: stop using every path but `keep` (their candidate
/// pairs go, so str0m nominates the new path). Gives the paths dropped.
fn forget_other_paths(
    t: &mut Transport,
    keep: (Protocol, SocketAddr),
) -> Vec<(Protocol, SocketAddr)> {
    let stale: Vec<_> = t.addrs.iter().copied().filter(|p| *p != keep).collect();
    t.addrs.retain(|p| *p == keep);
    for (proto, addr) in &stale {
        // The remote candidate str0m made from the requests of that path.
        let candidate = Candidate::from_parts(
            String::new(),
            1,
            *proto,
            0,
            *addr,
            str0m::CandidateKind::PeerReflexive,
            None,
            None,
            None,
        );
        t.rtc.direct_api().invalidate_candidate(&candidate);
    }
    stale
}
