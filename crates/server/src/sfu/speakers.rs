//! Active speaker and audio levels per room: the workers report the levels
//! their audio producers sent; each room's [`SpeakerDetector`] turns them
//! into a dominant speaker (an `activeSpeaker` push to the room when it
//! changes) and levels (`audioLevels` pushes, at most every 250 ms, to the
//! peers that asked with `subscribeAudioLevels`). Rooms span workers, so
//! this lives here, above them.

use super::*;
use crate::speaker::SpeakerDetector;
use simplesfu_engine::AudioLevelReport;
use simplesfu_proto::{ActiveSpeaker, AudioLevel};
use std::collections::HashSet;

/// How often speakers are decided.
const SPEAKER_TICK: Duration = Duration::from_millis(125);
/// `audioLevels` go out every this many ticks (250 ms).
const LEVELS_EVERY_TICKS: u64 = 2;
/// Audio time one packet of a report stands for (browsers send 20 ms packets).
const PACKET_AUDIO: Duration = Duration::from_millis(20);
/// The most audio time one report stands for.
const MAX_REPORT_SPAN: Duration = Duration::from_millis(250);

/// Each room's detector and who wants levels.
#[derive(Debug, Default)]
pub(crate) struct Speakers {
    rooms: HashMap<RoomId, SpeakerDetector>,
    level_subscribers: HashSet<PeerId>,
}

impl Sfu {
    fn speakers(&self) -> MutexGuard<'_, Speakers> {
        lock(&self.inner.speakers)
    }

    /// Levels a worker reported: each producer's peer and room are looked
    /// up (a producer not in a room counts for nothing).
    pub(crate) fn on_audio_levels(&self, reports: Vec<AudioLevelReport>) {
        let now = Instant::now();
        let located: Vec<(RoomId, PeerId, AudioLevelReport)> = {
            let registry = self.registry();
            reports
                .into_iter()
                .filter_map(|r| {
                    let peer = registry.transport_owner(r.transport_id)?;
                    let room = registry.room_of(&peer)?;
                    Some((room, peer, r))
                })
                .collect()
        };
        let mut speakers = self.speakers();
        for (room, peer, report) in located {
            let span = PACKET_AUDIO
                .saturating_mul(report.packets)
                .min(MAX_REPORT_SPAN);
            speakers.rooms.entry(room).or_default().observe_for(
                &peer,
                now,
                i16::from(report.level_dbov),
                report.voice,
                span,
            );
        }
    }

    /// `subscribeAudioLevels`: start or stop this peer's `audioLevels` pushes.
    pub(crate) fn subscribe_audio_levels(&self, peer: &PeerId, enabled: bool) {
        let mut speakers = self.speakers();
        if enabled {
            speakers.level_subscribers.insert(peer.clone());
        } else {
            speakers.level_subscribers.remove(peer);
        }
    }

    /// The peer is gone: no more levels for it.
    pub(crate) fn forget_speaker(&self, peer: &PeerId) {
        self.speakers().level_subscribers.remove(peer);
    }

    /// The room's dominant speaker now, for a peer that joins it.
    pub(crate) fn active_speaker(&self, room: &RoomId) -> Option<PeerId> {
        self.speakers()
            .rooms
            .get(room)
            .and_then(|d| d.dominant().cloned())
    }

    /// Decide every room's speaker; with `with_levels`, send levels too.
    fn speaker_tick(&self, now: Instant, with_levels: bool) {
        let rooms: Vec<RoomId> = self.speakers().rooms.keys().cloned().collect();
        for room in rooms {
            let members = self.registry().members(&room);
            let (changed, levels, subscribers) = {
                let mut speakers = self.speakers();
                let Some(detector) = speakers.rooms.get_mut(&room) else {
                    continue;
                };
                detector.retain(&members);
                let changed = detector.tick(now);
                let levels = with_levels
                    .then(|| detector.levels())
                    .filter(|l| !l.is_empty());
                if detector.is_empty() {
                    speakers.rooms.remove(&room);
                }
                let subscribers: Vec<PeerId> = members
                    .iter()
                    .filter(|m| speakers.level_subscribers.contains(*m))
                    .cloned()
                    .collect();
                (changed, levels, subscribers)
            };
            if let Some(peer_id) = changed {
                tracing::debug!(room = %room, speaker = %peer_id, "active speaker");
                if let Some(push) = Prepared::new(&Push::ActiveSpeaker(ActiveSpeaker { peer_id })) {
                    for member in &members {
                        self.push_prepared(member, &push);
                    }
                }
            }
            if let (Some(levels), false) = (levels, subscribers.is_empty()) {
                let levels = levels
                    .into_iter()
                    .map(|(peer_id, level)| AudioLevel {
                        peer_id,
                        level: (level * 1000.0).round() / 1000.0,
                    })
                    .collect();
                if let Some(push) = Prepared::new(&Push::AudioLevels(levels)) {
                    for subscriber in &subscribers {
                        self.push_prepared(subscriber, &push);
                    }
                }
            }
        }
    }
}

pub(super) async fn speaker_ticks(sfu: Weak<Inner>) {
    let mut ticker = tokio::time::interval(SPEAKER_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for count in 0u64.. {
        ticker.tick().await;
        let Some(inner) = sfu.upgrade() else { break };
        Sfu { inner }.speaker_tick(Instant::now(), count % LEVELS_EVERY_TICKS == 0);
    }
}
