//! Audio levels the producers of this worker send (RFC 6464
//! `ssrc-audio-level`, parsed by str0m into `audio_level` and
//! `voice_activity`), gathered per producer and reported as one
//! [`EngineEvent::AudioLevels`] about every [`LEVEL_REPORT_PERIOD`] for
//! the producers that sent any. The engine only counts; deciding who
//! speaks is the server's (rooms span workers).

use crate::api::AudioLevelReport;
use simplesfu_proto::{ProducerId, TransportId};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often levels are reported.
pub(crate) const LEVEL_REPORT_PERIOD: Duration = Duration::from_millis(100);

/// One producer's readings since the last report.
#[derive(Debug, Clone, Copy)]
struct Gathered {
    transport_id: TransportId,
    sum_dbov: u32,
    packets: u32,
    voiced: u32,
    voice_known: u32,
}

/// Readings waiting for the next report.
#[derive(Debug, Default)]
pub(crate) struct AudioLevels {
    pending: HashMap<ProducerId, Gathered>,
    /// When the next report is due; `None` while nothing waits.
    due: Option<Instant>,
}

impl AudioLevels {
    /// One audio packet's level (str0m's `audio_level`: 0 to -127, in dBov)
    /// and voice flag. A packet without a level, or with one outside that
    /// range (a broken or hostile sender), counts for nothing.
    pub fn record(
        &mut self,
        now: Instant,
        transport_id: TransportId,
        producer_id: ProducerId,
        level: Option<i8>,
        voice: Option<bool>,
    ) {
        let Some(level) = level.filter(|l| (-127..=0).contains(l)) else {
            return;
        };
        let g = self.pending.entry(producer_id).or_insert(Gathered {
            transport_id,
            sum_dbov: 0,
            packets: 0,
            voiced: 0,
            voice_known: 0,
        });
        g.sum_dbov += u32::from(level.unsigned_abs());
        g.packets += 1;
        if let Some(voice) = voice {
            g.voice_known += 1;
            g.voiced += u32::from(voice);
        }
        self.due.get_or_insert(now + LEVEL_REPORT_PERIOD);
    }

    /// When [`AudioLevels::take_due`] next has something to give.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The report, once it is due: each producer's mean level over its packets.
    pub fn take_due(&mut self, now: Instant) -> Option<Vec<AudioLevelReport>> {
        if self.due.is_none_or(|due| now < due) {
            return None;
        }
        self.due = None;
        let reports = self
            .pending
            .drain()
            .map(|(producer_id, g)| AudioLevelReport {
                transport_id: g.transport_id,
                producer_id,
                level_dbov: u8::try_from(g.sum_dbov / g.packets.max(1)).unwrap_or(127),
                voice: (g.voice_known > 0).then_some(g.voiced * 2 >= g.voice_known),
                packets: g.packets,
            })
            .collect();
        Some(reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_averaged_per_producer_and_reported_once_per_period() {
        let start = Instant::now();
        let (t, loud, quiet) = (TransportId::new(), ProducerId::new(), ProducerId::new());
        let mut levels = AudioLevels::default();
        assert_eq!(levels.due(), None, "nothing to report");
        for i in 0..5u64 {
            let now = start + Duration::from_millis(20 * i);
            levels.record(now, t, loud, Some(-20), Some(true));
            levels.record(now, t, quiet, Some(-90), Some(i == 0));
        }
        assert_eq!(levels.due(), Some(start + LEVEL_REPORT_PERIOD));
        assert!(
            levels.take_due(start + Duration::from_millis(99)).is_none(),
            "not yet"
        );
        let mut reports = levels.take_due(start + LEVEL_REPORT_PERIOD).expect("due");
        reports.sort_by_key(|r| r.level_dbov);
        assert_eq!(reports.len(), 2);
        assert_eq!(
            (
                reports[0].producer_id,
                reports[0].level_dbov,
                reports[0].voice,
                reports[0].packets
            ),
            (loud, 20, Some(true), 5)
        );
        assert_eq!(
            (
                reports[1].producer_id,
                reports[1].level_dbov,
                reports[1].voice
            ),
            (quiet, 90, Some(false))
        );
        assert_eq!(levels.due(), None, "emptied");
        assert!(levels.take_due(start + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn readings_outside_the_range_or_missing_count_for_nothing() {
        let now = Instant::now();
        let mut levels = AudioLevels::default();
        for level in [None, Some(1), Some(i8::MAX), Some(i8::MIN)] {
            levels.record(now, TransportId::new(), ProducerId::new(), level, None);
        }
        assert_eq!(levels.due(), None);
        levels.record(now, TransportId::new(), ProducerId::new(), Some(-127), None);
        let reports = levels.take_due(now + LEVEL_REPORT_PERIOD).expect("due");
        assert_eq!((reports[0].level_dbov, reports[0].voice), (127, None));
    }
}
