//! Audio levels and the active speaker, as a run sees them: the levels bot
//! publishers put in the `ssrc-audio-level` header extension (RFC 6464), set
//! per publisher and changed during the run by a schedule; and what one
//! observing peer of the first room received in return (`activeSpeaker`,
//! `audioLevels`), turned into how long the server took to follow each
//! step of the schedule.
//!
//! Schedule times count from the start of the measurement window, so a step
//! happens when every publisher is sending and every receiver has media;
//! the levels before the first timed step hold from the first packet.

use serde::Serialize;
use std::time::Duration;

/// Level of a talking publisher when no schedule says otherwise: normal
/// speech into a headset.
pub const DEFAULT_TALKING_DBOV: i8 = -30;
/// Level of a silent publisher (opus DTX comfort noise): the quietest there is.
pub const SILENT_DBOV: i8 = -127;
/// Packets at this level or louder carry the extension's voice flag, as a
/// sender's voice activity detector would set it.
pub const VOICE_DBOV: i8 = -50;

/// One step: from `at` (None: from the start), the level of each publisher
/// of a room in publishing order, in dBov (0 the loudest, -127 silence); the
/// last value repeats for the publishers after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LevelStep {
    #[serde(serialize_with = "serialize_at_ms")]
    pub at: Option<Duration>,
    pub levels_dbov: Vec<i8>,
}

fn serialize_at_ms<S: serde::Serializer>(at: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&at.map(|d| d.as_millis() as u64), s)
}

/// The publishers' levels over a run (the CLI's `--audio-levels`). Empty:
/// talking publishers at [`DEFAULT_TALKING_DBOV`], silent ones at [`SILENT_DBOV`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LevelSchedule {
    pub steps: Vec<LevelStep>,
}

impl std::str::FromStr for LevelSchedule {
    type Err = String;

    /// Steps separated by spaces, each `[<seconds>s:]<dBov>,<dBov>,...`:
    /// `-80 0s:-20,-80 4s:-80,-20,-80` is everyone quiet until the window
    /// starts, then the first publisher loud, then at 4 s the second one.
    fn from_str(text: &str) -> Result<LevelSchedule, String> {
        let mut steps: Vec<LevelStep> = Vec::new();
        for (i, step) in text.split_whitespace().enumerate() {
            let (at, levels) = match step.split_once(':') {
                Some((at, levels)) => {
                    let seconds = at
                        .strip_suffix('s')
                        .and_then(|s| s.parse::<f64>().ok())
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .ok_or_else(|| {
                            format!("step `{step}`: the time must be seconds like `4s` or `2.5s`")
                        })?;
                    (Some(Duration::from_secs_f64(seconds)), levels)
                }
                None if i == 0 => (None, step),
                None => {
                    return Err(format!(
                        "step `{step}`: only the first step may go without a time (`4s:{step}`)"
                    ))
                }
            };
            let levels_dbov = levels
                .split(',')
                .map(|l| match l.parse::<i8>() {
                    Ok(dbov) if (-127..=0).contains(&dbov) => Ok(dbov),
                    _ => Err(format!(
                        "step `{step}`: `{l}` is not a level from -127 to 0 dBov"
                    )),
                })
                .collect::<Result<Vec<i8>, String>>()?;
            if let (Some(at), Some(last)) = (at, steps.last().and_then(|s| s.at)) {
                if at <= last {
                    return Err(format!("step `{step}`: times must grow"));
                }
            }
            steps.push(LevelStep { at, levels_dbov });
        }
        if steps.is_empty() {
            return Err("an empty schedule: give levels like `-20,-80`".into());
        }
        Ok(LevelSchedule { steps })
    }
}

impl LevelStep {
    /// The level of the `publisher`-th publisher of a room in this step.
    pub fn level_of(&self, publisher: u32) -> i8 {
        let i = (publisher as usize).min(self.levels_dbov.len().saturating_sub(1));
        self.levels_dbov.get(i).copied().unwrap_or(SILENT_DBOV)
    }

    /// The publisher this step makes the only loud one: louder than every
    /// other of the room's `publishers`, and loud enough to be speech
    /// ([`VOICE_DBOV`]). None when nobody (or several equally) qualify.
    pub fn loudest(&self, publishers: u32) -> Option<u32> {
        let mut by_level: Vec<(i8, u32)> = (0..publishers).map(|p| (self.level_of(p), p)).collect();
        by_level.sort_unstable_by(|a, b| b.cmp(a));
        match by_level.as_slice() {
            [(top, p), rest @ ..]
                if *top >= VOICE_DBOV && rest.first().is_none_or(|(next, _)| next < top) =>
            {
                Some(*p)
            }
            _ => None,
        }
    }
}

impl LevelSchedule {
    /// One publisher's timeline: (from when, level), the untimed start first.
    pub fn for_publisher(&self, publisher: u32, silent: bool) -> PublisherLevels {
        let default = if silent {
            SILENT_DBOV
        } else {
            DEFAULT_TALKING_DBOV
        };
        let mut start = default;
        let mut changes = Vec::new();
        for step in &self.steps {
            match step.at {
                None => start = step.level_of(publisher),
                Some(at) => changes.push((at, step.level_of(publisher))),
            }
        }
        PublisherLevels { start, changes }
    }

    /// The timed steps.
    pub fn timed(&self) -> impl Iterator<Item = (Duration, &LevelStep)> {
        self.steps.iter().filter_map(|s| s.at.map(|at| (at, s)))
    }
}

/// The levels one publisher sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherLevels {
    /// Before the first change (and before the window starts).
    pub start: i8,
    /// From each time after the window start, this level.
    pub changes: Vec<(Duration, i8)>,
}

impl PublisherLevels {
    /// The level `since_window` after the window started (None: not yet).
    pub fn at(&self, since_window: Option<Duration>) -> i8 {
        let Some(t) = since_window else {
            return self.start;
        };
        self.changes
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .map_or(self.start, |(_, level)| *level)
    }
}

/// What the observer received, stamped with CLOCK_MONOTONIC nanoseconds.
#[derive(Debug, Clone, Default)]
pub struct ObserverLog {
    pub active_speaker: Vec<(u64, String)>,
    /// Each `audioLevels` push: when, and its peer ids and levels in order.
    pub audio_levels: Vec<(u64, Vec<(String, f64)>)>,
}

/// One `activeSpeaker` push, as the report gives it.
#[derive(Debug, Clone, Serialize)]
pub struct SpeakerPush {
    /// Since the window start (negative: before it).
    pub at_ms: f64,
    /// The publisher's place in its room (None: not one of the bot's publishers).
    pub publisher: Option<u32>,
}

/// How the server followed one timed step of the schedule.
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    pub at_ms: f64,
    /// The publisher the step makes the only loud one.
    pub loudest: Option<u32>,
    /// From the step to the first `activeSpeaker` naming `loudest` (None:
    /// not within the step, or nobody to follow).
    pub followed_ms: Option<f64>,
    /// `activeSpeaker` pushes during the step (until the next step or the
    /// window's end): 1 when followed without flapping.
    pub pushes: usize,
}

/// `audioLevels` pushes the observer received in the window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LevelPushes {
    pub count: usize,
    /// Mean, shortest and longest time between two pushes.
    pub mean_interval_ms: f64,
    pub min_interval_ms: f64,
    pub max_interval_ms: f64,
    /// Pushes whose entries are not loudest first.
    pub not_loudest_first: usize,
    /// Pushes whose first entry is the publisher the schedule makes the only
    /// loud one at that moment.
    pub led_by_loudest: usize,
}

/// The speaker part of a run's report.
#[derive(Debug, Clone, Serialize)]
pub struct SpeakerReport {
    /// The observer asked for `audioLevels` (`subscribeAudioLevels`).
    pub observer_subscribed: bool,
    pub active_speaker: Vec<SpeakerPush>,
    pub steps: Vec<StepOutcome>,
    pub audio_levels: LevelPushes,
}

impl SpeakerReport {
    /// `publishers`: the peer ids of the observer's room's publishers in
    /// publishing order; times relative to `window_start_ns`, the window
    /// lasting `window`.
    pub fn new(
        log: &ObserverLog,
        schedule: &LevelSchedule,
        publishers: &[String],
        window_start_ns: u64,
        window: Duration,
        subscribed: bool,
    ) -> SpeakerReport {
        let ms = |ns: u64| (ns as f64 - window_start_ns as f64) / 1e6;
        let place = |peer: &str| publishers.iter().position(|p| p == peer).map(|p| p as u32);
        let active_speaker: Vec<SpeakerPush> = log
            .active_speaker
            .iter()
            .map(|(ns, peer)| SpeakerPush {
                at_ms: ms(*ns),
                publisher: place(peer),
            })
            .collect();
        let window_ms = window.as_secs_f64() * 1000.0;
        let timed: Vec<(f64, &LevelStep)> = schedule
            .timed()
            .map(|(at, s)| (at.as_secs_f64() * 1000.0, s))
            .collect();
        let step_end = |i: usize| timed.get(i + 1).map_or(window_ms, |(at, _)| *at);
        let n = publishers.len() as u32;
        let steps = timed
            .iter()
            .enumerate()
            .map(|(i, (at, step))| {
                let (from, to) = (*at, step_end(i));
                let during: Vec<&SpeakerPush> = active_speaker
                    .iter()
                    .filter(|p| p.at_ms >= from && p.at_ms < to)
                    .collect();
                let loudest = step.loudest(n);
                let followed_ms = loudest.and_then(|l| {
                    during
                        .iter()
                        .find(|p| p.publisher == Some(l))
                        .map(|p| p.at_ms - from)
                });
                StepOutcome {
                    at_ms: from,
                    loudest,
                    followed_ms,
                    pushes: during.len(),
                }
            })
            .collect();
        let current_loudest = |at: f64| {
            let step = timed
                .iter()
                .take_while(|(from, _)| *from <= at)
                .last()
                .map(|(_, s)| *s)
                .or_else(|| schedule.steps.first().filter(|s| s.at.is_none()));
            step.map_or_else(
                || {
                    LevelStep {
                        at: None,
                        levels_dbov: vec![DEFAULT_TALKING_DBOV],
                    }
                    .loudest(n)
                },
                |s| s.loudest(n),
            )
        };
        let in_window: Vec<&(u64, Vec<(String, f64)>)> = log
            .audio_levels
            .iter()
            .filter(|(ns, _)| (0.0..=window_ms).contains(&ms(*ns)))
            .collect();
        let intervals: Vec<f64> = in_window
            .windows(2)
            .map(|w| (w[1].0 as f64 - w[0].0 as f64) / 1e6)
            .collect();
        let audio_levels = LevelPushes {
            count: in_window.len(),
            mean_interval_ms: if intervals.is_empty() {
                0.0
            } else {
                intervals.iter().sum::<f64>() / intervals.len() as f64
            },
            min_interval_ms: intervals.iter().copied().reduce(f64::min).unwrap_or(0.0),
            max_interval_ms: intervals.iter().copied().reduce(f64::max).unwrap_or(0.0),
            not_loudest_first: in_window
                .iter()
                .filter(|(_, levels)| levels.windows(2).any(|w| w[0].1 < w[1].1))
                .count(),
            led_by_loudest: in_window
                .iter()
                .filter(|(ns, levels)| {
                    let loudest = current_loudest(ms(*ns));
                    loudest.is_some() && levels.first().and_then(|(peer, _)| place(peer)) == loudest
                })
                .count(),
        };
        SpeakerReport {
            observer_subscribed: subscribed,
            active_speaker,
            steps,
            audio_levels,
        }
    }

    /// Lines for the run's summary table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        for s in &self.steps {
            let who = s
                .loudest
                .map_or("nobody loud".to_string(), |p| format!("publisher {p} loud"));
            let followed = s.followed_ms.map_or("not followed".to_string(), |ms| {
                format!("announced after {ms:.0} ms")
            });
            t += &format!("speaker step at {:.1} s ({who}): {followed}, {} activeSpeaker push(es) in the step\n", s.at_ms / 1000.0, s.pushes);
        }
        let l = &self.audio_levels;
        t += &format!(
            "audioLevels to the observer ({}): {} pushes, every {:.0} ms (min {:.0}, max {:.0}), {} not loudest first, {} led by the loud publisher\n",
            if self.observer_subscribed { "subscribed" } else { "not subscribed" },
            l.count,
            l.mean_interval_ms,
            l.min_interval_ms,
            l.max_interval_ms,
            l.not_loudest_first,
            l.led_by_loudest
        );
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(text: &str) -> LevelSchedule {
        text.parse().expect("a valid schedule")
    }

    #[test]
    fn a_schedule_gives_each_publisher_its_levels_over_time() {
        let s = schedule("-80 0s:-20,-80 4s:-80,-20,-80");
        let first = s.for_publisher(0, false);
        let second = s.for_publisher(1, false);
        let fifth = s.for_publisher(4, false);
        assert_eq!(first.at(None), -80, "before the window: the untimed step");
        assert_eq!(
            (
                first.at(Some(Duration::ZERO)),
                second.at(Some(Duration::ZERO))
            ),
            (-20, -80)
        );
        assert_eq!(
            (
                first.at(Some(Duration::from_secs(4))),
                second.at(Some(Duration::from_secs(5)))
            ),
            (-80, -20)
        );
        assert_eq!(
            fifth.at(Some(Duration::from_secs(5))),
            -80,
            "the last value repeats"
        );
        assert_eq!(s.steps[2].loudest(3), Some(1));
        assert_eq!(s.steps[0].loudest(3), None, "nobody is loud");
        assert_eq!(
            schedule("-20,-20,-80").steps[0].loudest(3),
            None,
            "two equally loud"
        );
    }

    #[test]
    fn without_a_schedule_talkers_speak_and_silent_publishers_are_silent() {
        let s = LevelSchedule::default();
        assert_eq!(
            s.for_publisher(0, false).at(Some(Duration::from_secs(9))),
            DEFAULT_TALKING_DBOV
        );
        assert_eq!(s.for_publisher(0, true).at(None), SILENT_DBOV);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (text, says) in [
            ("", "empty"),
            ("-20,+5", "not a level"),
            ("-20 -80", "only the first step"),
            ("2s:-20 1s:-80", "times must grow"),
            ("xs:-20", "seconds"),
            ("-128", "not a level"),
        ] {
            let err = text.parse::<LevelSchedule>().expect_err(text);
            assert!(err.contains(says), "`{text}`: {err}");
        }
    }

    #[test]
    fn the_report_times_each_step_and_the_level_pushes() {
        let s = schedule("-80 0s:-20,-80 4s:-80,-20");
        let peers = vec!["a".to_string(), "b".to_string()];
        let start = 10_000_000_000u64;
        let at = |ms: u64| start + ms * 1_000_000;
        let log = ObserverLog {
            active_speaker: vec![(at(700), "a".into()), (at(5_100), "b".into())],
            audio_levels: vec![
                (at(250), vec![("a".into(), 0.5), ("b".into(), 0.0)]),
                (at(500), vec![("a".into(), 0.9), ("b".into(), 0.0)]),
                (at(4_750), vec![("a".into(), 0.1), ("b".into(), 0.6)]),
            ],
        };
        let r = SpeakerReport::new(&log, &s, &peers, start, Duration::from_secs(8), true);
        assert_eq!(r.steps.len(), 2);
        assert_eq!(
            (
                r.steps[0].loudest,
                r.steps[0].followed_ms,
                r.steps[0].pushes
            ),
            (Some(0), Some(700.0), 1)
        );
        assert_eq!(
            (
                r.steps[1].loudest,
                r.steps[1].followed_ms.map(f64::round),
                r.steps[1].pushes
            ),
            (Some(1), Some(1100.0), 1)
        );
        let l = &r.audio_levels;
        assert_eq!(
            (
                l.count,
                l.min_interval_ms,
                l.max_interval_ms,
                l.not_loudest_first,
                l.led_by_loudest
            ),
            (3, 250.0, 4250.0, 1, 2)
        );
    }
}
