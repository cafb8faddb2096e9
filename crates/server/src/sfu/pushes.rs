//! Pushes to peers: one peer (`push`), a room's `availableProducers` paced
//! and serialized once, pushes waiting for a full send queue, and carrying
//! out a registry operation's effects.

use super::*;

/// The pacing of one room's `availableProducers`.
#[derive(Debug, Clone, Copy)]
pub(super) struct RoomListState {
    last_sent: Option<tokio::time::Instant>,
    /// A send is scheduled for when the interval has passed.
    scheduled: bool,
}

/// A room's `availableProducers` goes out at most this often.
pub(super) const ROOM_LIST_MIN_INTERVAL: Duration = Duration::from_millis(200);

/// How often pushes waiting for a full send queue are retried.
pub(super) const STALLED_FLUSH_PERIOD: Duration = Duration::from_millis(250);

impl Sfu {
    /// Send a push to one peer (dropped if the peer is gone; kept, in
    /// order, while its socket's send queue is full or a resumable peer's
    /// socket is away). A `createConsumer` also owes the peer one
    /// `resumeConsumer` free of the rate limit.
    pub(crate) fn push(&self, peer: &PeerId, push: &Push) {
        if matches!(push, Push::CreateConsumer(_)) {
            let rate = self.links().get(peer).map(|l| l.rate.clone());
            if let Some(rate) = rate {
                lock(&rate).owe_answer();
            }
        }
        if let Some(prepared) = Prepared::new(push) {
            self.push_prepared(peer, &prepared);
        }
    }

    pub(crate) fn push_prepared(&self, peer: &PeerId, push: &Prepared) {
        let outbox = self.links().get(peer).and_then(|l| l.outbox.clone());
        let Some(outbox) = outbox else { return };
        let delivery = lock(&outbox).deliver(peer, push);
        if delivery == Delivery::Overflowed {
            self.end_session(peer);
        }
    }

    /// Send every member of `room` the room's `availableProducers`, at most
    /// once per [`ROOM_LIST_MIN_INTERVAL`]: a change within that time is
    /// sent once it has passed, together with any others, so a client that
    /// churns (re-joins, pauses, produces) cannot make the server send the
    /// whole room list to every member faster than that. The list is
    /// serialized once for all members.
    pub(crate) fn send_available_producers(&self, room: &RoomId) {
        if let Some(span) = self.inner.span.get() {
            span.changed();
        }
        let now = tokio::time::Instant::now();
        let wait = {
            let mut lists = lock(&self.inner.room_lists);
            let state = lists.entry(room.clone()).or_insert(RoomListState {
                last_sent: None,
                scheduled: false,
            });
            if state.scheduled {
                return; // the send already scheduled will carry this change
            }
            match state
                .last_sent
                .map(|at| at + ROOM_LIST_MIN_INTERVAL)
                .filter(|due| *due > now)
            {
                None => {
                    state.last_sent = Some(now);
                    None
                }
                Some(due) => {
                    state.scheduled = true;
                    Some(due)
                }
            }
        };
        match wait {
            None => self.send_room_list_now(room),
            Some(due) => {
                let (sfu, room) = (self.clone(), room.clone());
                tokio::spawn(async move {
                    tokio::time::sleep_until(due).await;
                    if let Some(state) = lock(&sfu.inner.room_lists).get_mut(&room) {
                        state.scheduled = false;
                        state.last_sent = Some(tokio::time::Instant::now());
                    }
                    sfu.send_room_list_now(&room);
                });
            }
        }
    }

    pub(crate) fn send_room_list_now(&self, room: &RoomId) {
        let (members, available) = {
            let registry = self.registry();
            (registry.members(room), registry.available_producers(room))
        };
        if members.is_empty() {
            lock(&self.inner.room_lists).remove(room);
            return;
        }
        let Some(push) = Prepared::new(&Push::AvailableProducers(available)) else {
            return;
        };
        for member in &members {
            self.push_prepared(member, &push);
        }
    }

    /// Send pushes that waited because a socket's send queue was full.
    pub(crate) fn flush_stalled(&self) {
        let stalled: Vec<(PeerId, Arc<Mutex<Outbox>>)> = self
            .links()
            .iter()
            .filter_map(|(peer, link)| Some((peer.clone(), link.outbox.clone()?)))
            .collect();
        for (peer, outbox) in stalled {
            let mut outbox = lock(&outbox);
            if outbox.stalled() && outbox.flush(&peer) == Delivery::Overflowed {
                drop(outbox);
                self.end_session(&peer);
            }
        }
    }

    /// Carry out what a registry operation asked for.
    pub(crate) async fn apply(&self, effects: Effects) {
        for (worker, id) in effects.close_consumers {
            if let Ok(w) = self.worker(worker) {
                match w.close_consumer(id).await {
                    Ok(()) | Err(EngineError::ConsumerNotFound(_)) => {}
                    Err(error) => {
                        tracing::warn!(consumer = %id, %error, "could not close consumer")
                    }
                }
            }
        }
        for (worker, id) in effects.close_data_consumers {
            if let Ok(w) = self.worker(worker) {
                match w.close_data_consumer(id).await {
                    Ok(()) | Err(EngineError::DataConsumerNotFound(_)) => {}
                    Err(error) => {
                        tracing::warn!(data_consumer = %id, %error, "could not close data consumer")
                    }
                }
            }
        }
        for (peer, push) in &effects.pushes {
            self.push(peer, push);
        }
        for room in &effects.rooms_changed {
            self.send_available_producers(room);
        }
    }
}

pub(super) async fn flush_stalled(sfu: Weak<Inner>) {
    let mut ticker = tokio::time::interval(STALLED_FLUSH_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = sfu.upgrade() else { break };
        Sfu { inner }.flush_stalled();
    }
}

pub(super) async fn resend_available_producers(sfu: Weak<Inner>, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(inner) = sfu.upgrade() else { break };
        let sfu = Sfu { inner };
        let rooms = sfu.registry().room_ids();
        for room in &rooms {
            sfu.send_available_producers(room);
        }
    }
}
