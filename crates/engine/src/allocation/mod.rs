//! Bandwidth allocation for one receive transport: which simulcast and
//! temporal layer each of its video consumers forwards, given the transport's
//! bandwidth estimate, and what to tell str0m's estimator to probe for.
//! Plain code with time as an input; the router feeds it and carries out what
//! it decides.
//!
//! # The algorithm
//!
//! Each consumer's producer offers a *ladder* of layers, lowest first:
//! spatial layer by spatial layer, and within each its temporal layers
//! (S0T0, S0T1, S0T2, S1T1, S1T2, …), keeping only layers that are sending
//! (their measured bitrate, from [`meter::LayerMeter`], is not zero) and
//! within the consumer's preferred layers. Above the lowest spatial layer,
//! T0 is left out where a higher temporal layer may be taken: with browsers'
//! L1T3, T0 is a quarter of the frame rate, and a viewer should not drop to
//! 7.5 fps to gain resolution. A layer's cost is its measured bitrate
//! including the temporal layers below it. A layer that costs no more than
//! the step below it is left out (720p at 7.5 fps can cost less than 360p at
//! 30 fps): taking it would trade smoothness for resolution without using
//! more of the link, and every step up must cost more for the filling below
//! to grow with the budget.
//!
//! Video with nothing to choose from (a producer without simulcast whose
//! stream has no temporal layers, as browsers send a camera by default) is
//! forwarded as it is, like mediasoup's simple consumers: its measured
//! bitrate is taken off the estimate first, with audio's, and it is never
//! paused for bandwidth. Pausing it would be the only lever, and a browser
//! test showed the trap: a viewer that had paused a peer got no video of it
//! for 20 s after resuming, because with little sent meanwhile the estimate
//! had fallen below the camera's one layer and nothing made it climb.
//!
//! Audio comes first: every audio consumer's measured bitrate, at least
//! [`AUDIO_RESERVE_BPS`] while it sends at all, is taken off the estimate.
//! Audio is never paused for bandwidth; when the estimate does not even cover
//! audio, video gets nothing.
//!
//! What is left is filled in a fixed order (`fill`):
//! 1. *admission*: in priority order (highest first, then input order), each
//!    video consumer gets the lowest layer of its ladder if it fits; one that
//!    does not is paused for bandwidth, and the next one is tried;
//! 2. *raising*: rounds in priority order, where each consumer goes up as
//!    many steps of its ladder as its priority (so among equals, everyone goes
//!    up one step before anyone goes up twice, and a consumer of priority 3
//!    goes up three steps per round to one step of a consumer of priority 1).
//!    A consumer at the top of its ladder (or at its ceiling, below) leaves
//!    the rounds; the first step that does not fit ends the filling. Stopping
//!    there instead of trying smaller steps of others makes the result grow
//!    with the budget for every consumer, which is what keeps the up and down
//!    decisions below from flapping.
//!
//! Each run computes two fillings:
//! - `up`: the estimate less [`UP_HEADROOM_PERCENT`], every ladder to its top:
//!   what the consumers could have with headroom;
//! - `fit`: the whole estimate, but no consumer above its current layer (a
//!   paused one stays paused). A consumer new to the allocation (or whose
//!   preference just went up) may go up to its place in `up` at once, so a new
//!   viewer starts right away at its share, taking it from the others if need
//!   be.
//!
//! Going down is immediate: `fit` is applied at every run, so as soon as the
//! current layers need more than the estimate, consumers go down (lowest
//! priority first, the top steps first). Except when the estimate did not
//! fall since the layers were chosen and only their measured cost rose (the
//! key frame a switch up asked for is in the meter for a second): then the
//! layers are held for [`COST_RISE_HOLD`] before going down. And except a
//! pause: a playing consumer whose lowest layer no longer fits stays on it
//! for [`PAUSE_HOLD`] (while the estimate covers half of it), since a dip
//! of the estimate after a probe would otherwise freeze the viewer for longer
//! than the dip. Going up waits: while `up` puts some
//! consumer above `fit`, the headroom must last [`UP_HOLD`], after which `up`
//! is applied as a whole (which may also even out unequal shares). A down
//! restarts the wait. Temporal steps within a consumer's spatial layer go up
//! sooner: with [`TEMPORAL_HEADROOM_PERCENT`] held for [`TEMPORAL_HOLD`],
//! since a frame rate taken back costs nothing. A paused consumer resumes
//! the same way as `up`, when its lowest
//! layer fits with headroom for [`RESUME_HOLD`] (shorter: a paused viewer sees
//! nothing); this is the hysteresis that keeps a viewer on the edge from
//! flickering between paused and playing.
//!
//! Without an estimate (the client does not send transport-wide congestion
//! control feedback) every consumer gets the top of its ladder, as before
//! bandwidth estimation existed.
//!
//! The result also says what to hand `rtc.bwe().set_bitrate(min, desired)`:
//! `min` is what the chosen layers need (with audio), `desired` what the
//! preferred layers need, so str0m probes towards the quality the viewer
//! would like. `next_step_bps` is the total after the first step `up` could
//! not take, for a caller that wants str0m to pad up to it before the step.

pub(crate) mod meter;
pub(crate) mod temporal;

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Simulcast layers a producer may have (browsers send up to three).
pub(crate) const MAX_SPATIAL_LAYERS: usize = 3;
/// Temporal layers per spatial layer (browsers send VP8 L1T3).
pub(crate) const MAX_TEMPORAL_LAYERS: usize = 3;

/// Going up needs the estimate to exceed what the new layers need by this
/// much: a TWCC estimate wanders by about a tenth from one second to the
/// next, and a layer's measured bitrate swings with its key frames, so a layer
/// chosen with less margin would soon not fit and be left again.
pub(crate) const UP_HEADROOM_PERCENT: u64 = 15;
/// How long the headroom must last before going up: longer than a probe
/// (which raises the estimate briefly) and than the estimator's back-off after
/// a drop, so one good second does not bring a switch up and a switch down.
/// It also spaces out the key frames a spatial switch costs the publisher.
pub(crate) const UP_HOLD: Duration = Duration::from_secs(3);
/// For this long after a transport's first estimate, as long as nothing had
/// to go down, going up waits only [`STARTUP_UP_HOLD`]: str0m's start-up
/// probes find the link within a second or two, and with the whole
/// [`UP_HOLD`] per step a viewer on a fast link reached the top layer 4 to 9
/// s after joining (`simplesfu-bot run --simulcast --audio --downlinks 0`).
/// The first step down ends the start-up: from there on the estimate is known
/// to describe a link that fills.
pub(crate) const STARTUP: Duration = Duration::from_secs(6);
/// The hold of a step up during [`STARTUP`]: long enough that a probe that
/// overshoots does not bring a switch up and straight back.
pub(crate) const STARTUP_UP_HOLD: Duration = Duration::from_millis(500);
/// A temporal step up within a consumer's spatial layer needs only this
/// headroom: taking a frame rate back costs nothing (the filter drops frames
/// from the next one on, no key frame is asked for), so the margin only has
/// to cover the estimate's wander, not the cost of a switch.
pub(crate) const TEMPORAL_HEADROOM_PERCENT: u64 = 5;
/// And this hold, for the same reason.
pub(crate) const TEMPORAL_HOLD: Duration = Duration::from_secs(1);
/// The hold when the step up resumes a consumer paused for bandwidth: a
/// paused viewer sees nothing, which is worse than a switch too early, and
/// its lowest layer is the smallest step there is. Still long enough that a
/// viewer on the edge does not flicker.
pub(crate) const RESUME_HOLD: Duration = Duration::from_secs(1);
/// When the layers held need more than the estimate although the estimate
/// did not fall (by more than [`ESTIMATE_FALL_PERCENT`] since they were
/// chosen), their measured bitrate rose: most often the key frame that a
/// switch up itself asked for, which the 1 s meter window carries for a
/// second. Going down waits this long for such a rise to pass; a fall of the
/// estimate still goes down at once.
pub(crate) const COST_RISE_HOLD: Duration = Duration::from_millis(1500);
/// A fall of the estimate by more than this since the layers were chosen is
/// a fall of the link, not noise.
pub(crate) const ESTIMATE_FALL_PERCENT: u64 = 5;
/// The least kept for an audio consumer that sends: Opus speech at 32 kbit/s
/// plus about 20 kbit/s of IP/UDP/RTP headers at 50 packets/s, so that an
/// audio stream in silence (DTX) keeps room for when its speaker talks again.
pub(crate) const AUDIO_RESERVE_BPS: u64 = 50_000;
/// A consumer playing its lowest layer when that no longer fits is kept on it
/// this long before it is paused for bandwidth, while the estimate still
/// covers half of that layer: an estimate dips for a moment after a probe
/// overshoots a slow link (seen in the bench: 290 to 132 kbit/s within 50 ms
/// and back within a second), and a pause costs the viewer far more than a
/// second of a layer that is slightly too big (a paused consumer resumes only
/// after [`RESUME_HOLD`] and a key frame: a freeze of 1 to 1.5 s). Below half,
/// the link has collapsed and video pauses at once.
pub(crate) const PAUSE_HOLD: Duration = Duration::from_secs(1);
/// How often the router should run the allocation when no estimate arrives:
/// layer bitrates change as encoders adapt, and a producer's stopped layer
/// must be noticed (the meter reads it as zero within its 1 s window).
pub(crate) const ALLOCATION_INTERVAL: Duration = Duration::from_millis(500);

/// A spatial (simulcast) and temporal layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Layer {
    pub spatial: u8,
    pub temporal: u8,
}

impl Layer {
    /// The highest layer there can be.
    pub const TOP: Layer = Layer::new(MAX_SPATIAL_LAYERS as u8 - 1, MAX_TEMPORAL_LAYERS as u8 - 1);

    pub const fn new(spatial: u8, temporal: u8) -> Self {
        Layer { spatial, temporal }
    }

    /// Each of the two indexes capped by `other`'s.
    fn min_each(self, other: Layer) -> Layer {
        Layer::new(
            self.spatial.min(other.spatial),
            self.temporal.min(other.temporal),
        )
    }
}

/// Bitrate (bits/s) of each layer of a producer, including the lower temporal
/// layers it depends on; zero for a layer that is not sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LayerBitrates([[u64; MAX_TEMPORAL_LAYERS]; MAX_SPATIAL_LAYERS]);

impl LayerBitrates {
    /// `None` for a layer that is not sending or does not exist.
    pub fn get(&self, layer: Layer) -> Option<u64> {
        let rate = *self
            .0
            .get(layer.spatial as usize)?
            .get(layer.temporal as usize)?;
        (rate > 0).then_some(rate)
    }

    /// Set a layer's bitrate; a layer beyond 3 × 3 is ignored.
    pub fn set(&mut self, layer: Layer, bps: u64) {
        if let Some(rate) = self
            .0
            .get_mut(layer.spatial as usize)
            .and_then(|s| s.get_mut(layer.temporal as usize))
        {
            *rate = bps;
        }
    }

    /// The highest bitrate of any layer (an audio producer has one layer).
    fn highest(&self) -> u64 {
        self.0.iter().flatten().copied().max().unwrap_or(0)
    }

    /// The sending layers up to `cap`, lowest first, with their cost, each
    /// costing more than the one before. Above the lowest spatial layer that
    /// sends, a spatial layer's T0 is left out when a higher temporal layer of
    /// it may be taken: going up in resolution never costs more than half the
    /// frame rate (a quarter-rate 360p is no better to watch than a
    /// full-rate 180p, and browsers' L1T3 makes T0 a quarter).
    fn ladder(&self, cap: Layer) -> Vec<(Layer, u64)> {
        let mut ladder: Vec<(Layer, u64)> = Vec::new();
        for spatial in 0..=cap.spatial.min(Layer::TOP.spatial) {
            let rungs: Vec<(Layer, u64)> = (0..=cap.temporal.min(Layer::TOP.temporal))
                .filter_map(|temporal| {
                    let layer = Layer::new(spatial, temporal);
                    self.get(layer).map(|rate| (layer, rate))
                })
                .collect();
            let skip = usize::from(!ladder.is_empty() && rungs.len() > 1);
            for &(layer, rate) in &rungs[skip..] {
                if ladder.last().is_none_or(|(_, below)| rate > *below) {
                    ladder.push((layer, rate));
                }
            }
        }
        ladder
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaKind {
    Audio,
    Video,
}

/// One consumer of the transport, as the allocation sees it at one run.
#[derive(Debug, Clone)]
pub(crate) struct Demand<K> {
    pub consumer: K,
    pub kind: MediaKind,
    /// 1..=255 (0 is taken as 1); higher goes up first.
    pub priority: u8,
    /// The highest layer the client wants; `None`: the best there is.
    pub preferred: Option<Layer>,
    /// The producer's layers, from its [`meter::LayerMeter`].
    pub layers: LayerBitrates,
    /// Paused by its client: it takes nothing.
    pub client_paused: bool,
    /// Its producer sends a single stream (no simulcast).
    pub single_stream: bool,
}

/// What a video consumer should forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VideoTarget {
    /// Forward up to this layer.
    Layer(Layer),
    /// Not even its lowest layer fits: forward no video until it does.
    PausedForBandwidth,
    /// Paused by its client, or its producer sends nothing it may have.
    Idle,
}

/// What to hand `rtc.bwe().set_bitrate(minimum, desired)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BweTargets {
    /// What the chosen layers (and audio) need.
    pub min_bps: u64,
    /// What the preferred layers (and audio) need; at least `min_bps`.
    pub desired_bps: u64,
    /// The total after the next step up that did not fit, if any.
    pub next_step_bps: Option<u64>,
}

/// The result of one run.
#[derive(Debug, Clone)]
pub(crate) struct Allocation<K> {
    /// Every video consumer of the input, in input order.
    pub video: Vec<(K, VideoTarget)>,
    pub bwe: BweTargets,
}

impl<K: PartialEq> Allocation<K> {
    /// The target of one consumer.
    #[cfg(test)]
    pub fn target(&self, consumer: &K) -> Option<VideoTarget> {
        self.video
            .iter()
            .find(|(k, _)| k == consumer)
            .map(|(_, t)| *t)
    }
}

/// The allocator of one receive transport: remembers what it chose last and
/// since when going up has been possible.
#[derive(Debug)]
pub(crate) struct Allocator<K> {
    held: HashMap<K, Held>,
    /// Since when `up` has been above `fit` without a break.
    headroom_since: Option<Instant>,
    /// The estimate when the held layers were last changed.
    chosen_at_estimate: Option<u64>,
    /// Since when the held layers have needed more than an estimate that did
    /// not fall (see [`COST_RISE_HOLD`]).
    cost_rise_since: Option<Instant>,
    /// Since when a temporal step up has fitted (see [`TEMPORAL_HOLD`]).
    temporal_since: Option<Instant>,
    /// Since when a playing consumer's lowest layer has not fitted (see [`PAUSE_HOLD`]).
    pause_since: Option<Instant>,
    /// The first run with an estimate, while the start-up lasts (see [`STARTUP`]).
    startup_since: Option<Instant>,
    /// The start-up is over (its time ran out or something went down).
    started: bool,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    /// `None`: paused for bandwidth.
    layer: Option<Layer>,
    /// The preference it was chosen under.
    cap: Layer,
}

/// A video consumer taking part in this run.
struct Entry {
    input: usize,
    ladder: Vec<(Layer, u64)>,
    /// Its preference, within what exists.
    cap: Layer,
    priority: u8,
    /// Its place on the ladder now; `None`: paused.
    current: Option<usize>,
    /// New to the allocation, or its preference went up: may go up at once.
    eager: bool,
}

impl<K: Copy + Eq + Hash> Allocator<K> {
    pub fn new() -> Self {
        Allocator {
            held: HashMap::new(),
            headroom_since: None,
            chosen_at_estimate: None,
            cost_rise_since: None,
            temporal_since: None,
            pause_since: None,
            startup_since: None,
            started: false,
        }
    }

    /// Run the allocation: `estimate_bps` is the transport's latest estimate
    /// (`None` before the first or when it has no estimator), `demands` every
    /// consumer of the transport. Call it on every estimate, on every change
    /// of consumers, preferences, priorities or pauses, and every
    /// [`ALLOCATION_INTERVAL`].
    pub fn allocate(
        &mut self,
        now: Instant,
        estimate_bps: Option<u64>,
        demands: &[Demand<K>],
    ) -> Allocation<K> {
        let audio_bps: u64 = demands
            .iter()
            .filter(|d| d.kind == MediaKind::Audio && !d.client_paused)
            .map(|d| match d.layers.highest() {
                0 => 0,
                rate => rate.max(AUDIO_RESERVE_BPS),
            })
            .sum();

        let mut entries = Vec::new();
        // Video with nothing to choose from: forwarded as it is, its bitrate
        // taken off the estimate first like audio's.
        let mut fixed = Vec::new();
        let mut fixed_bps = 0;
        for (input, d) in demands.iter().enumerate() {
            if d.kind != MediaKind::Video || d.client_paused {
                continue;
            }
            let cap = d.preferred.unwrap_or(Layer::TOP).min_each(Layer::TOP);
            let ladder = d.layers.ladder(cap);
            if ladder.is_empty() {
                continue;
            }
            if d.single_stream && ladder.len() == 1 {
                fixed.push((input, ladder[0].0));
                fixed_bps += ladder[0].1;
                continue;
            }
            let held = self.held.get(&d.consumer);
            // A layer that stopped or a lower preference: the highest step not above the held layer.
            let current = held
                .and_then(|h| h.layer)
                .and_then(|layer| ladder.iter().rposition(|(l, _)| *l <= layer));
            let eager =
                held.is_none_or(|h| cap.spatial > h.cap.spatial || cap.temporal > h.cap.temporal);
            entries.push(Entry {
                input,
                ladder,
                cap,
                priority: d.priority.max(1),
                current,
                eager,
            });
        }

        let (chosen, next_step) = match estimate_bps {
            None => {
                self.headroom_since = None;
                self.chosen_at_estimate = None;
                self.cost_rise_since = None;
                self.temporal_since = None;
                self.pause_since = None;
                (
                    entries.iter().map(|e| Some(e.ladder.len() - 1)).collect(),
                    None,
                )
            }
            Some(estimate) => self.choose(now, &entries, estimate, audio_bps + fixed_bps),
        };
        let reserved = audio_bps + fixed_bps;
        let used = cost(&entries, &chosen);
        let preferred_bps: u64 = entries
            .iter()
            .map(|e| e.ladder.last().map_or(0, |(_, rate)| *rate))
            .sum();
        let next_step_bps = next_step.map(|video| reserved + video);

        // Remember the choice; forget consumers that left or idle.
        let mut targets = vec![VideoTarget::Idle; demands.len()];
        let mut held = HashMap::with_capacity(entries.len());
        for (e, pos) in entries.iter().zip(&chosen) {
            let layer = pos.map(|p| e.ladder[p].0);
            held.insert(demands[e.input].consumer, Held { layer, cap: e.cap });
            targets[e.input] = layer.map_or(VideoTarget::PausedForBandwidth, VideoTarget::Layer);
        }
        self.held = held;
        for (input, layer) in fixed {
            targets[input] = VideoTarget::Layer(layer);
        }

        let min_bps = reserved + used;
        Allocation {
            video: demands
                .iter()
                .zip(targets)
                .filter(|(d, _)| d.kind == MediaKind::Video)
                .map(|(d, t)| (d.consumer, t))
                .collect(),
            bwe: BweTargets {
                min_bps,
                desired_bps: (reserved + preferred_bps).max(min_bps),
                next_step_bps,
            },
        }
    }

    /// Places on the ladders, and what the video would need after the first
    /// step up that does not fit with headroom.
    fn choose(
        &mut self,
        now: Instant,
        entries: &[Entry],
        estimate: u64,
        audio_bps: u64,
    ) -> (Vec<Option<usize>>, Option<u64>) {
        let tops: Vec<Option<usize>> = entries.iter().map(|e| Some(e.ladder.len() - 1)).collect();
        let up_budget =
            (estimate.saturating_mul(100) / (100 + UP_HEADROOM_PERCENT)).saturating_sub(audio_bps);
        let (up, blocked) = fill(entries, up_budget, &tops);
        let next_step = blocked.map(|extra| cost(entries, &up) + extra);
        let ceilings: Vec<Option<usize>> = entries
            .iter()
            .zip(&up)
            .map(|(e, up)| {
                if e.eager {
                    e.current.max(*up)
                } else {
                    e.current
                }
            })
            .collect();
        let video_budget = estimate.saturating_sub(audio_bps);
        let (mut fit, _) = fill(entries, video_budget, &ceilings);
        let pause_due = self.hold_pauses(now, entries, video_budget, &mut fit);

        let went_down = entries.iter().zip(&fit).any(|(e, fit)| *fit < e.current);
        let can_go_up = up.iter().zip(&fit).any(|(up, fit)| up > fit);
        let startup_since = *self.startup_since.get_or_insert(now);
        if went_down || now.saturating_duration_since(startup_since) >= STARTUP {
            self.started = true;
        }
        if went_down {
            self.headroom_since = None;
            self.temporal_since = None;
            let fell = self
                .chosen_at_estimate
                .is_none_or(|at| estimate * 100 < at * (100 - ESTIMATE_FALL_PERCENT));
            let since = *self.cost_rise_since.get_or_insert(now);
            if !fell && !pause_due && now.saturating_duration_since(since) < COST_RISE_HOLD {
                // The layers cost more, the link did not shrink: hold them
                // (a consumer new to the allocation still takes its place).
                let held = entries
                    .iter()
                    .zip(&fit)
                    .map(|(e, fit)| if e.eager { *fit } else { e.current })
                    .collect();
                return (held, next_step);
            }
            self.cost_rise_since = None;
            self.chosen_at_estimate = Some(estimate);
            return (fit, next_step);
        }
        self.cost_rise_since = None;
        let mut choice = fit.clone();
        // Temporal steps within each consumer's spatial layer: a frame rate
        // taken back costs nothing (frames are dropped from the next one
        // on; no key frame is asked for), so they need less headroom and a
        // shorter hold than the whole `up`.
        let temporal_ceilings: Vec<Option<usize>> = entries
            .iter()
            .zip(&choice)
            .map(|(e, place)| {
                let spatial = e.ladder[(*place)?].0.spatial;
                e.ladder.iter().rposition(|(l, _)| l.spatial == spatial)
            })
            .collect();
        let temporal_budget = (estimate.saturating_mul(100) / (100 + TEMPORAL_HEADROOM_PERCENT))
            .saturating_sub(audio_bps);
        let (temporal, _) = fill(entries, temporal_budget, &temporal_ceilings);
        let temporal_raises =
            temporal.iter().zip(&choice).all(|(t, c)| t >= c) && temporal != choice;
        if temporal_raises {
            let since = *self.temporal_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= TEMPORAL_HOLD {
                self.temporal_since = None;
                choice = temporal;
            }
        } else {
            self.temporal_since = None;
        }
        if can_go_up {
            let since = *self.headroom_since.get_or_insert(now);
            let resumes = up
                .iter()
                .zip(&fit)
                .any(|(up, fit)| fit.is_none() && up.is_some());
            let hold = match (resumes, self.started) {
                (true, _) => RESUME_HOLD,
                (false, false) => STARTUP_UP_HOLD,
                (false, true) => UP_HOLD,
            };
            if now.saturating_duration_since(since) >= hold {
                self.headroom_since = None;
                self.temporal_since = None;
                self.chosen_at_estimate = Some(estimate);
                return (up, next_step);
            }
        } else {
            self.headroom_since = None;
        }
        if choice.iter().zip(entries).any(|(c, e)| *c != e.current) {
            self.chosen_at_estimate = Some(estimate);
        }
        (choice, next_step)
    }
}

impl<K> Allocator<K> {
    /// Keeps on their lowest layer, for [`PAUSE_HOLD`], the consumers that
    /// `fit` pauses while they play, as long as `video_budget` covers half of
    /// that layer. Held consumers are over the budget: the estimate is taken
    /// to be dipping, not the link to have shrunk. True when the hold is over
    /// and the pauses are due now (not to be held again as a rise of cost).
    fn hold_pauses(
        &mut self,
        now: Instant,
        entries: &[Entry],
        video_budget: u64,
        fit: &mut [Option<usize>],
    ) -> bool {
        let pausing: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].current.is_some() && fit[i].is_none())
            .collect();
        if pausing.is_empty() {
            self.pause_since = None;
            return false;
        }
        let since = *self.pause_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= PAUSE_HOLD {
            self.pause_since = None;
            return true;
        }
        for i in pausing {
            if video_budget.saturating_mul(2) >= entries[i].ladder[0].1 {
                fit[i] = Some(0);
            }
        }
        false
    }
}

/// The bitrate of the chosen places.
fn cost(entries: &[Entry], places: &[Option<usize>]) -> u64 {
    entries
        .iter()
        .zip(places)
        .filter_map(|(e, p)| p.map(|p| e.ladder[p].1))
        .sum()
}

/// Admission then raising, as the module doc says, within `budget`, no
/// consumer above its ceiling (`None`: stays paused). Returns the places and
/// the extra bitrate of the first step that did not fit (an admission or a
/// raise), if any.
fn fill(
    entries: &[Entry],
    budget: u64,
    ceilings: &[Option<usize>],
) -> (Vec<Option<usize>>, Option<u64>) {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    // Stable: equal priorities keep their input order.
    order.sort_by_key(|&i| std::cmp::Reverse(entries[i].priority));
    let mut places: Vec<Option<usize>> = vec![None; entries.len()];
    let mut left = i128::from(budget);
    let mut blocked = None;

    for &i in &order {
        if ceilings[i].is_none() {
            continue;
        }
        let lowest = entries[i].ladder[0].1;
        if i128::from(lowest) <= left {
            places[i] = Some(0);
            left -= i128::from(lowest);
        } else if blocked.is_none() {
            blocked = Some(lowest);
        }
    }

    loop {
        let mut raised = false;
        for &i in &order {
            let Some(ceiling) = ceilings[i] else { continue };
            for _ in 0..entries[i].priority {
                let Some(place) = places[i].filter(|&p| p < ceiling) else {
                    break;
                };
                let ladder = &entries[i].ladder;
                let step = i128::from(ladder[place + 1].1) - i128::from(ladder[place].1);
                if step > left {
                    let step = u64::try_from(step).unwrap_or(0);
                    return (places, blocked.or(Some(step)));
                }
                places[i] = Some(place + 1);
                left -= step;
                raised = true;
            }
        }
        if !raised {
            return (places, blocked);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KBPS: u64 = 1000;

    /// A browser's three-layer simulcast, L1T3 each; cumulative kbit/s:
    /// S0 60/100/150, S1 250/400/500, S2 700/1100/1500.
    fn simulcast() -> LayerBitrates {
        let mut r = LayerBitrates::default();
        let rates = [[60, 100, 150], [250, 400, 500], [700, 1100, 1500]];
        for (s, row) in rates.iter().enumerate() {
            for (t, kbps) in row.iter().enumerate() {
                r.set(Layer::new(s as u8, t as u8), kbps * KBPS);
            }
        }
        r
    }

    fn opus() -> LayerBitrates {
        let mut r = LayerBitrates::default();
        r.set(Layer::new(0, 0), 40 * KBPS);
        r
    }

    fn video(consumer: u32) -> Demand<u32> {
        Demand {
            consumer,
            kind: MediaKind::Video,
            priority: 1,
            preferred: None,
            layers: simulcast(),
            client_paused: false,
            single_stream: false,
        }
    }

    fn video_with_priority(consumer: u32, priority: u8) -> Demand<u32> {
        Demand {
            priority,
            ..video(consumer)
        }
    }

    fn audio(consumer: u32) -> Demand<u32> {
        Demand {
            consumer,
            kind: MediaKind::Audio,
            priority: 1,
            preferred: None,
            layers: opus(),
            client_paused: false,
            single_stream: true,
        }
    }

    const fn l(spatial: u8, temporal: u8) -> VideoTarget {
        VideoTarget::Layer(Layer::new(spatial, temporal))
    }

    /// A transport driven in milliseconds.
    struct Transport {
        t0: Instant,
        allocator: Allocator<u32>,
        demands: Vec<Demand<u32>>,
    }

    impl Transport {
        fn new(demands: Vec<Demand<u32>>) -> Self {
            Transport {
                t0: Instant::now(),
                allocator: Allocator::new(),
                demands,
            }
        }

        fn at(&mut self, ms: u64, estimate_kbps: Option<u64>) -> Allocation<u32> {
            let now = self.t0 + Duration::from_millis(ms);
            self.allocator
                .allocate(now, estimate_kbps.map(|k| k * KBPS), &self.demands)
        }

        /// Runs every ALLOCATION_INTERVAL in [from, to) at one estimate; the targets of `consumer`.
        fn during(
            &mut self,
            from: u64,
            to: u64,
            estimate_kbps: u64,
            consumer: u32,
        ) -> Vec<(u64, VideoTarget)> {
            let step = ALLOCATION_INTERVAL.as_millis() as u64;
            (from..to)
                .step_by(step as usize)
                .map(|ms| {
                    (
                        ms,
                        self.at(ms, Some(estimate_kbps))
                            .target(&consumer)
                            .expect("a video consumer"),
                    )
                })
                .collect()
        }
    }

    /// The first time `target` appears, in ms.
    fn first(runs: &[(u64, VideoTarget)], target: VideoTarget) -> Option<u64> {
        runs.iter().find(|(_, t)| *t == target).map(|(ms, _)| *ms)
    }

    #[test]
    fn a_viewer_whose_estimate_drops_goes_down_at_once_and_up_only_after_the_hold() {
        let mut t = Transport::new(vec![audio(1), video(2)]);
        // 2 Mbit/s: the top layer from the first run.
        assert_eq!(t.at(0, Some(2000)).target(&2), Some(l(2, 2)));
        // Down to 400 kbit/s: 350 for video, so S0 at T2 (150) at once (S1
        // starts at T1, 400; its T0 is not on the ladder).
        let a = t.at(1000, Some(400));
        assert_eq!(a.target(&2), Some(l(0, 2)));
        assert_eq!(
            a.bwe.min_bps,
            (50 + 150) * KBPS,
            "audio reserve + the chosen layer"
        );
        assert_eq!(
            a.bwe.desired_bps,
            (50 + 1500) * KBPS,
            "audio reserve + the preferred layer"
        );
        // It stays there at 400 kbit/s: S1T1 (400) does not fit.
        assert!(t
            .during(1500, 5000, 400, 2)
            .iter()
            .all(|(_, target)| *target == l(0, 2)));
        // Back to 2 Mbit/s: the top again only after UP_HOLD of headroom.
        let runs = t.during(5000, 10_000, 2000, 2);
        assert_eq!(
            first(&runs, l(2, 2)),
            Some(5000 + UP_HOLD.as_millis() as u64),
            "{runs:?}"
        );
        assert!(runs
            .iter()
            .take_while(|(_, target)| *target != l(2, 2))
            .all(|(_, target)| *target == l(0, 2)));
    }

    #[test]
    fn a_cost_that_rises_under_a_steady_estimate_is_held_a_while_and_a_falling_estimate_lowers_at_once(
    ) {
        let mut t = Transport::new(vec![video(1)]);
        assert_eq!(t.at(0, Some(2000)).target(&1), Some(l(2, 2)));
        // A key frame of the top layer: its meter reads 2100 for a second.
        t.demands[0].layers.set(Layer::new(2, 2), 2100 * KBPS);
        assert_eq!(
            t.at(500, Some(2000)).target(&1),
            Some(l(2, 2)),
            "held: the estimate did not fall"
        );
        assert_eq!(t.at(1500, Some(2000)).target(&1), Some(l(2, 2)));
        // The rise passed: nothing moves.
        t.demands[0].layers.set(Layer::new(2, 2), 1500 * KBPS);
        assert_eq!(t.at(2000, Some(2000)).target(&1), Some(l(2, 2)));
        // A rise that lasts goes down once COST_RISE_HOLD is over.
        t.demands[0].layers.set(Layer::new(2, 2), 2100 * KBPS);
        let hold = COST_RISE_HOLD.as_millis() as u64;
        assert_eq!(t.at(2500, Some(2000)).target(&1), Some(l(2, 2)));
        assert_eq!(
            t.at(2500 + hold - 100, Some(2000)).target(&1),
            Some(l(2, 2))
        );
        assert_eq!(t.at(2500 + hold, Some(2000)).target(&1), Some(l(2, 1)));
        // Up again later (a temporal step: after TEMPORAL_HOLD); then the
        // estimate falls by a tenth while the cost is high: down at once.
        t.demands[0].layers.set(Layer::new(2, 2), 1500 * KBPS);
        let runs = t.during(5000, 10_000, 2000, 1);
        assert_eq!(
            first(&runs, l(2, 2)),
            Some(5000 + TEMPORAL_HOLD.as_millis() as u64),
            "{runs:?}"
        );
        t.demands[0].layers.set(Layer::new(2, 2), 1900 * KBPS);
        assert_eq!(t.at(10_000, Some(1800)).target(&1), Some(l(2, 1)));
    }

    #[test]
    fn headroom_that_breaks_off_restarts_the_wait() {
        let mut t = Transport::new(vec![video(1)]);
        let s = STARTUP.as_millis() as u64;
        assert!(t
            .during(0, s + 500, 300, 1)
            .iter()
            .all(|(_, target)| *target == l(0, 2)));
        // 2.5 s of headroom, one run without, then headroom again.
        assert!(t
            .during(s + 1000, s + 3500, 2000, 1)
            .iter()
            .all(|(_, target)| *target == l(0, 2)));
        assert_eq!(t.at(s + 3500, Some(300)).target(&1), Some(l(0, 2)));
        let runs = t.during(s + 4000, s + 8000, 2000, 1);
        assert_eq!(
            first(&runs, l(2, 2)),
            Some(s + 4000 + UP_HOLD.as_millis() as u64)
        );
    }

    #[test]
    fn a_new_transport_climbs_with_its_first_estimates_until_something_goes_down() {
        let mut t = Transport::new(vec![audio(1), video(2)]);
        // The starting budget (600 kbit/s): S1T2 (500) does not fit with headroom, S1T1 does.
        assert_eq!(t.at(0, Some(600)).target(&2), Some(l(1, 1)));
        // The start-up probes find a fast link: the top after STARTUP_UP_HOLD, not UP_HOLD.
        let runs = t.during(500, 3000, 3000, 2);
        assert_eq!(
            first(&runs, l(2, 2)),
            Some(500 + STARTUP_UP_HOLD.as_millis() as u64),
            "{runs:?}"
        );
        // A step down (to what fits without headroom) ends the start-up: the next climb takes UP_HOLD.
        assert_eq!(t.at(3000, Some(600)).target(&2), Some(l(1, 2)));
        let runs = t.during(3500, 8000, 3000, 2);
        assert_eq!(
            first(&runs, l(2, 2)),
            Some(3500 + UP_HOLD.as_millis() as u64),
            "{runs:?}"
        );
    }

    #[test]
    fn temporal_steps_need_less_headroom_and_a_shorter_hold_than_spatial_ones() {
        let mut t = Transport::new(vec![video(1)]);
        assert_eq!(
            t.at(0, Some(560)).target(&1),
            Some(l(1, 1)),
            "500 is S1T2 but 560 lacks headroom for it"
        );
        // 3% above S1T2's need for a long time: no raise (a temporal step needs 5%).
        assert!(t
            .during(500, 10_000, 515, 1)
            .iter()
            .all(|(_, target)| *target == l(1, 1)));
        // 10% above: S1T2 after TEMPORAL_HOLD, though a spatial step would need 15%.
        let runs = t.during(10_000, 14_000, 550, 1);
        assert_eq!(
            first(&runs, l(1, 2)),
            Some(10_000 + TEMPORAL_HOLD.as_millis() as u64),
            "{runs:?}"
        );
        assert!(
            runs.iter()
                .all(|(_, target)| *target == l(1, 1) || *target == l(1, 2)),
            "never a spatial step: {runs:?}"
        );
        // S1T2 needs 500: an estimate of 499 takes it down a temporal layer at once.
        assert_eq!(t.at(14_000, Some(499)).target(&1), Some(l(1, 1)));
        // A spatial step (S2T1, 1100) still takes UP_HOLD with 15% of headroom.
        let runs = t.during(15_000, 20_000, 1300, 1);
        assert_eq!(
            first(&runs, l(1, 2)),
            Some(15_000 + TEMPORAL_HOLD.as_millis() as u64),
            "{runs:?}"
        );
        assert_eq!(
            first(&runs, l(2, 1)),
            Some(15_000 + UP_HOLD.as_millis() as u64),
            "{runs:?}"
        );
    }

    #[test]
    fn two_viewers_of_priority_1_and_3_on_1_mbit() {
        let mut t = Transport::new(vec![video(1), video_with_priority(2, 3)]);
        let a = t.at(0, Some(1000));
        // Priority 3 goes up three steps per round to one: S1T2 (500) and S0T1 (100);
        // the next step of the first, S2T1 (1100), does not fit.
        assert_eq!(a.target(&2), Some(l(1, 2)));
        assert_eq!(a.target(&1), Some(l(0, 1)));
        assert!(a.bwe.min_bps <= 1000 * KBPS * 100 / 115);
        // The order of the consumers does not matter.
        t.demands.reverse();
        let mut t2 = Transport::new(t.demands.clone());
        let b = t2.at(0, Some(1000));
        assert_eq!((b.target(&1), b.target(&2)), (a.target(&1), a.target(&2)));
    }

    #[test]
    fn equal_priorities_share_fairly() {
        let mut t = Transport::new(vec![video(1), video(2), video(3)]);
        let a = t.at(0, Some(1400));
        // Everyone one step before anyone two: all three at S1T1 (3 × 400 ≤ 1400 / 1.15, and
        // one more step, 1300, is not).
        for consumer in 1..=3 {
            assert_eq!(a.target(&consumer), Some(l(1, 1)), "{a:?}");
        }
    }

    #[test]
    fn a_new_viewer_starts_at_once_with_its_share() {
        let mut t = Transport::new(vec![video(1)]);
        assert_eq!(t.at(0, Some(2000)).target(&1), Some(l(2, 2)));
        // A second video consumer joins: it gets video in the same run, its
        // share with headroom (S1T2, 500: one more step each would be S2T1
        // for both, 2200), and the first keeps what still fits beside it.
        t.demands.push(video(2));
        let a = t.at(500, Some(2000));
        assert_eq!(a.target(&2), Some(l(1, 2)));
        assert_eq!(
            a.target(&1),
            Some(l(2, 2)),
            "the first keeps what still fits beside it"
        );
        assert!(a.bwe.min_bps <= 2000 * KBPS);
        // Nothing flaps afterwards.
        for ms in (1000..10_000).step_by(500) {
            let a = t.at(ms, Some(2000));
            assert_eq!((a.target(&1), a.target(&2)), (Some(l(2, 2)), Some(l(1, 2))));
        }
        // With less, the first gives up its top step for the second: 1500 + 500 > 1800.
        let a = t.at(10_000, Some(1800));
        assert_eq!((a.target(&1), a.target(&2)), (Some(l(2, 1)), Some(l(1, 2))));
    }

    #[test]
    fn audio_keeps_its_share() {
        let mut t = Transport::new(vec![audio(1), audio(2), audio(3), video(4)]);
        // 3 × 50 kbit/s for audio first; 300 with headroom leaves 110 for video: S0T1.
        let a = t.at(0, Some(300));
        assert_eq!(a.target(&4), Some(l(0, 1)));
        assert_eq!(
            a.video.len(),
            1,
            "audio consumers are never given a target, so never paused"
        );
        assert_eq!(a.bwe.min_bps, (150 + 100) * KBPS);
        // 180: 30 left for video, below its lowest layer (60) but half of
        // it: held on that layer for PAUSE_HOLD, then paused; audio is still counted.
        let a = t.at(500, Some(180));
        assert_eq!(a.target(&4), Some(l(0, 0)));
        assert_eq!(a.bwe.min_bps, (150 + 60) * KBPS);
        let a = t.at(500 + PAUSE_HOLD.as_millis() as u64, Some(180));
        assert_eq!(a.target(&4), Some(VideoTarget::PausedForBandwidth));
        assert_eq!(a.bwe.min_bps, 150 * KBPS);
        // An estimate below audio alone: still no audio change, video still paused.
        let a = t.at(2000, Some(100));
        assert_eq!(a.target(&4), Some(VideoTarget::PausedForBandwidth));
        assert_eq!(a.bwe.min_bps, 150 * KBPS);
        // A silent audio producer (nothing measured) reserves nothing.
        t.demands[0].layers = LayerBitrates::default();
        assert_eq!(t.at(2500, Some(100)).bwe.min_bps, 100 * KBPS);
    }

    #[test]
    fn video_without_layers_is_forwarded_as_it_is_and_the_rest_share_what_is_left() {
        let mut camera = video(1);
        camera.single_stream = true;
        camera.layers = LayerBitrates::default();
        camera.layers.set(Layer::new(0, 0), 1500 * KBPS);
        let mut t = Transport::new(vec![camera, video(2)]);
        // 600 kbit/s: the camera's one layer does not fit, but it is not
        // paused; the simulcast consumer beside it gets what is left (none).
        let a = t.at(0, Some(600));
        assert_eq!(a.target(&1), Some(l(0, 0)));
        assert_eq!(a.target(&2), Some(VideoTarget::PausedForBandwidth));
        assert_eq!(a.bwe.min_bps, 1500 * KBPS, "its rate is counted");
        // 2 Mbit/s: with headroom, 2000 / 1.15 - 1500 = 239 left for the
        // other: S0T2 (150), resumed after RESUME_HOLD.
        let runs = t.during(500, 3000, 2000, 2);
        assert_eq!(
            first(&runs, l(0, 2)),
            Some(500 + RESUME_HOLD.as_millis() as u64),
            "{runs:?}"
        );
        assert_eq!(t.at(3000, Some(2000)).target(&1), Some(l(0, 0)));
    }

    #[test]
    fn the_preferred_layer_caps_the_allocation() {
        let mut thumbnail = video(1);
        thumbnail.preferred = Some(Layer::new(0, 2));
        let mut t = Transport::new(vec![thumbnail, video(2)]);
        let a = t.at(0, Some(10_000));
        assert_eq!(a.target(&1), Some(l(0, 2)));
        assert_eq!(a.target(&2), Some(l(2, 2)));
        assert_eq!(
            a.bwe.desired_bps,
            (150 + 1500) * KBPS,
            "desired is what the preferences need"
        );
        // A temporal preference caps every spatial layer's temporal layer.
        t.demands[1].preferred = Some(Layer::new(2, 0));
        assert_eq!(
            t.at(500, Some(10_000)).target(&2),
            Some(l(2, 0)),
            "lowered at once"
        );
        // Raised again: at once, since the headroom is there (no hold for a preference).
        t.demands[1].preferred = None;
        assert_eq!(t.at(1000, Some(10_000)).target(&2), Some(l(2, 2)));
        // A preference beyond what exists means the top.
        t.demands[0].preferred = Some(Layer::new(9, 9));
        assert_eq!(t.at(1500, Some(10_000)).target(&1), Some(l(2, 2)));
    }

    #[test]
    fn pause_below_the_lowest_layer_and_resume_with_hysteresis() {
        let mut t = Transport::new(vec![video(1)]);
        assert_eq!(t.at(0, Some(2000)).target(&1), Some(l(2, 2)));
        // 50 kbit/s: not even S0T0 (60) fits: down to it at once, paused
        // after PAUSE_HOLD (50 is more than half of it: maybe a dip).
        assert_eq!(t.at(500, Some(50)).target(&1), Some(l(0, 0)));
        assert_eq!(t.at(1000, Some(50)).target(&1), Some(l(0, 0)));
        let a = t.at(500 + PAUSE_HOLD.as_millis() as u64, Some(50));
        assert_eq!(a.target(&1), Some(VideoTarget::PausedForBandwidth));
        assert_eq!(a.bwe.min_bps, 0);
        assert_eq!(
            a.bwe.next_step_bps,
            Some(60 * KBPS),
            "what resuming would take"
        );
        // 65: S0T0 fits, but not with headroom (65 / 1.15 = 56): stays paused.
        assert!(t
            .during(1000, 10_000, 65, 1)
            .iter()
            .all(|(_, target)| *target == VideoTarget::PausedForBandwidth));
        // 80 (69 with headroom): resumes at S0T0 after the (shorter) resume hold, not before.
        let runs = t.during(10_000, 15_000, 80, 1);
        assert_eq!(
            first(&runs, l(0, 0)),
            Some(10_000 + RESUME_HOLD.as_millis() as u64)
        );
        assert_eq!(
            runs.iter()
                .filter(|(_, target)| *target == VideoTarget::PausedForBandwidth)
                .count(),
            2
        );
        // An estimate below half of S0T0: the link collapsed, paused at once.
        assert_eq!(
            t.at(15_000, Some(29)).target(&1),
            Some(VideoTarget::PausedForBandwidth)
        );
    }

    #[test]
    fn a_dip_of_the_estimate_below_the_lowest_layer_does_not_pause() {
        let mut t = Transport::new(vec![audio(1), video(2)]);
        // 300 kbit/s: S0T2 (150) with the audio reserve (50).
        assert_eq!(t.at(0, Some(300)).target(&2), Some(l(0, 2)));
        // A probe overshoots the link: 90 for 800 ms (40 for video, below
        // S0T0 but above half of it): down to S0T0, never paused.
        for ms in [500, 800, 1100, 1300] {
            assert_eq!(t.at(ms, Some(90)).target(&2), Some(l(0, 0)), "at {ms} ms");
        }
        let runs = t.during(1500, 4000, 300, 2);
        assert!(
            runs.iter()
                .all(|(_, target)| matches!(target, VideoTarget::Layer(_))),
            "{runs:?}"
        );
        // A dip lasting longer than PAUSE_HOLD pauses.
        let mut t = Transport::new(vec![audio(1), video(2)]);
        t.at(0, Some(300));
        let runs = t.during(500, 3000, 90, 2);
        assert_eq!(
            first(&runs, VideoTarget::PausedForBandwidth),
            Some(500 + PAUSE_HOLD.as_millis() as u64),
            "{runs:?}"
        );
    }

    #[test]
    fn the_lowest_priority_is_paused_first() {
        let mut t = Transport::new(vec![video(1), video_with_priority(2, 2)]);
        let a = t.at(0, Some(100));
        assert_eq!(a.target(&2), Some(l(0, 0)));
        assert_eq!(a.target(&1), Some(VideoTarget::PausedForBandwidth));
    }

    #[test]
    fn a_consumer_that_does_not_fit_does_not_pause_the_others() {
        // A non-simulcast screen share at 1.2 Mbit/s and a simulcast camera, 800 kbit/s.
        let mut screen = video(1);
        screen.layers = LayerBitrates::default();
        screen.layers.set(Layer::new(0, 0), 1200 * KBPS);
        let mut t = Transport::new(vec![screen, video(2)]);
        let a = t.at(0, Some(800));
        assert_eq!(a.target(&1), Some(VideoTarget::PausedForBandwidth));
        assert_eq!(a.target(&2), Some(l(1, 2)));
    }

    #[test]
    fn a_layer_that_stops_moves_its_viewers_down_and_an_idle_producer_takes_nothing() {
        let mut t = Transport::new(vec![video(1), video(2)]);
        assert_eq!(t.at(0, Some(10_000)).target(&1), Some(l(2, 2)));
        // The publisher stops its top encoding (the meter reads zero).
        for temporal in 0..3 {
            t.demands[0].layers.set(Layer::new(2, temporal), 0);
        }
        assert_eq!(t.at(500, Some(10_000)).target(&1), Some(l(1, 2)));
        // A producer that sends nothing, and a consumer paused by its client: idle, no bitrate.
        t.demands[0].layers = LayerBitrates::default();
        t.demands[1].client_paused = true;
        let a = t.at(1000, Some(10_000));
        assert_eq!(
            a.video,
            vec![(1, VideoTarget::Idle), (2, VideoTarget::Idle)]
        );
        assert_eq!((a.bwe.min_bps, a.bwe.desired_bps), (0, 0));
        // Resumed by its client: video again in the same run.
        t.demands[1].client_paused = false;
        assert_eq!(t.at(1500, Some(10_000)).target(&2), Some(l(2, 2)));
    }

    #[test]
    fn without_an_estimate_every_viewer_gets_its_preferred_layers() {
        let mut thumbnail = video(1);
        thumbnail.preferred = Some(Layer::new(0, 1));
        let mut t = Transport::new(vec![thumbnail, video(2)]);
        let a = t.at(0, None);
        assert_eq!((a.target(&1), a.target(&2)), (Some(l(0, 1)), Some(l(2, 2))));
        assert_eq!(a.bwe.next_step_bps, None);
        // The first estimate takes over; a low one lowers at once.
        assert_eq!(t.at(500, Some(300)).target(&2), Some(l(0, 2)));
    }

    #[test]
    fn next_step_is_what_the_first_step_beyond_the_headroom_needs() {
        let mut t = Transport::new(vec![video(1)]);
        // 400 with headroom is 347: S0T2 (150); the next step is S1T1 (400).
        let a = t.at(0, Some(400));
        assert_eq!(a.target(&1), Some(l(0, 2)));
        assert_eq!(a.bwe.next_step_bps, Some(400 * KBPS));
        // At the top there is no next step.
        assert_eq!(t.at(500, Some(10_000)).bwe.next_step_bps, None);
    }

    #[test]
    fn metered_layers_feed_the_allocation_and_a_disabled_encoding_moves_the_viewer_within_the_window(
    ) {
        use meter::{LayerMeter, WINDOW_MS};
        let t0 = Instant::now();
        let mut meter = LayerMeter::new(t0);
        let mut allocator = Allocator::new();
        // A publisher's three encodings, 30 fps L1T3, one packet per frame; bytes per
        // frame chosen so the layers read about S0 100, S1 400, S2 1200 kbit/s with all temporal layers.
        let frame_bytes = [420, 1670, 5000];
        let run = |meter: &mut LayerMeter, from_ms: u64, to_ms: u64, spatial_layers: u8| {
            for frame in from_ms / 33..to_ms / 33 {
                for spatial in 0..spatial_layers {
                    let temporal = [0, 2, 1, 2][frame as usize % 4];
                    let now = t0 + Duration::from_millis(frame * 33);
                    meter.record(
                        now,
                        Layer::new(spatial, temporal),
                        frame_bytes[spatial as usize],
                    );
                }
            }
        };
        run(&mut meter, 0, 3000, 3);
        let allocate =
            |allocator: &mut Allocator<u32>, meter: &LayerMeter, ms: u64, estimate_kbps: u64| {
                let now = t0 + Duration::from_millis(ms);
                let demand = Demand {
                    layers: meter.bitrates(now),
                    ..video(1)
                };
                allocator
                    .allocate(now, Some(estimate_kbps * KBPS), &[demand])
                    .target(&1)
            };
        // 600 kbit/s: S1 with all its frames (410). S2 at T0 (300) is cheaper, so it is no step up.
        assert_eq!(allocate(&mut allocator, &meter, 3000, 600), Some(l(1, 2)));
        assert_eq!(
            allocate(&mut allocator, &meter, 3000, 300),
            Some(l(1, 1)),
            "T0 and T1 are half the frames of S1"
        );
        assert_eq!(
            allocate(&mut allocator, &meter, 3000, 5000),
            Some(l(1, 1)),
            "up waits for the hold"
        );
        // The publisher disables S1 and S2 (dynacast, or its own CPU adaptation).
        run(&mut meter, 3000, 3000 + WINDOW_MS + 100, 1);
        assert_eq!(
            allocate(&mut allocator, &meter, 3000 + WINDOW_MS + 100, 5000),
            Some(l(0, 2))
        );
    }

    #[test]
    fn a_layer_no_dearer_than_the_step_below_is_skipped() {
        let mut cheap_top = LayerBitrates::default();
        for (layer, kbps) in [((0, 0), 100), ((0, 1), 300), ((1, 0), 250), ((1, 1), 600)] {
            cheap_top.set(Layer::new(layer.0, layer.1), kbps * KBPS);
        }
        let ladder: Vec<Layer> = cheap_top
            .ladder(Layer::TOP)
            .into_iter()
            .map(|(layer, _)| layer)
            .collect();
        assert_eq!(
            ladder,
            vec![Layer::new(0, 0), Layer::new(0, 1), Layer::new(1, 1)]
        );
    }

    #[test]
    fn a_priority_of_0_counts_as_1_and_consumers_that_leave_are_forgotten() {
        let mut t = Transport::new(vec![video_with_priority(1, 0), video(2)]);
        let a = t.at(0, Some(1000));
        assert_eq!(a.target(&1), Some(l(1, 1)));
        assert_eq!(a.target(&2), Some(l(1, 1)));
        t.demands.clear();
        t.at(500, Some(1000));
        assert!(t.allocator.held.is_empty());
    }
}
