//! Bandwidth: the allocation of each receive transport (`allocation/`) run
//! on its estimate, on changes of its consumers and every
//! [`ALLOCATION_INTERVAL`], and carried out: the estimator told what to probe
//! for, each video consumer's simulcast layer (switched at a key frame by
//! `LayerSwitch`), temporal layer (`TemporalFilter`) or pause for bandwidth,
//! and the change reported to the owner.

use super::{
    Consumer, ProbeNudge, Router, INITIAL_ESTIMATE, NO_FEEDBACK_AFTER, PROBE_INTERVAL_MAX,
    PROBE_INTERVAL_MIN,
};
use crate::allocation::{
    self, Demand, Layer, VideoTarget, ALLOCATION_INTERVAL, UP_HEADROOM_PERCENT,
};
use crate::api::EngineEvent;
use mediasoup_types::rtp_parameters::MediaKind;
use simplesfu_proto::{ConsumerId, TransportId};
use std::time::Instant;
use str0m::bwe::Bitrate;

/// A new `(min, desired)` for str0m's estimator is handed over only when it
/// differs from the last by more than this: the meters move a little at
/// every run, and each change re-plans str0m's padding and probes.
const BWE_CHANGE_PERCENT: u64 = 10;

impl Router {
    /// Run the allocation of receive transport `tid` and carry it out.
    pub(super) fn allocate(&mut self, now: Instant, tid: TransportId) {
        let Some(t) = self.transports.get(&tid) else {
            return;
        };
        let mut consumers: Vec<(&str, ConsumerId)> = t
            .consumers_by_mid
            .iter()
            .map(|(mid, c)| (&**mid, *c))
            .collect();
        // Input order breaks ties between equal priorities: keep it stable.
        consumers.sort_unstable();
        let demands: Vec<Demand<ConsumerId>> = consumers
            .into_iter()
            .filter_map(|(_, cid)| {
                let c = self.consumers.get(&cid)?;
                let p = self.producers.get(&c.producer_id)?;
                Some(Demand {
                    consumer: cid,
                    kind: match c.kind {
                        MediaKind::Audio => allocation::MediaKind::Audio,
                        MediaKind::Video => allocation::MediaKind::Video,
                    },
                    priority: c.priority,
                    preferred: c.preferred,
                    layers: p
                        .meter
                        .as_ref()
                        .map(|m| m.bitrates(now))
                        .unwrap_or_default(),
                    client_paused: c.paused || p.paused,
                    single_stream: !p.is_simulcast(),
                })
            })
            .collect();
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        let without_feedback = t.estimate_bps.is_none()
            && !t.unpaced
            && t.video_sent_at
                .is_some_and(|at| now.saturating_duration_since(at) >= NO_FEEDBACK_AFTER);
        if without_feedback {
            self.set_video_paced(tid, false);
        }
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        // Until the first estimate, a transport that may still get feedback
        // is held to the estimator's starting value: a viewer behind a slow
        // link that is sent the top layer meanwhile floods its link, and
        // the losses sink its estimate below the lowest layer for seconds
        // (the bench's constrained scenario). One that never gets feedback
        // (`unpaced`) is forwarded the best layer, as without estimation.
        let budget = t
            .estimate_bps
            .or_else(|| (!t.unpaced).then_some(INITIAL_ESTIMATE.as_u64()));
        let result = t.allocator.allocate(now, budget, &demands);
        let estimated = budget.is_some();
        t.allocate_at = (!demands.is_empty()).then_some(now + ALLOCATION_INTERVAL);
        // str0m's estimator gets its targets, and so probes, only once the
        // transport has sent video. Before, no stream of it can carry
        // padding, and str0m probes on SSRC 0 tagged with the video's MID:
        // Chromium binds its video receiver to that SSRC and never decodes
        // the real stream (a WHEP page that joined while the publisher's key
        // frame was late played nothing; tests/sim/bandwidth.rs).
        if let Some(estimate) = budget.filter(|_| t.video_sent_at.is_some()) {
            // `min` (str0m pads up to it) is what the chosen layers need,
            // raised towards the next step up (`next_step_bps`) but never
            // above the estimate less the up headroom. Padding to the whole
            // next step kept a capped link full (measured on
            // tests/sim/bandwidth.rs, six runs each: with the next step, back
            // on the top layer 2.9-5.0 s after a 400 kbit/s link is raised
            // and resumed 6.0-7.8 s after a 120 kbit/s one is lifted, the
            // capped link full of padding; with the chosen layers 4.5-8.6 s
            // and 5.7-7.1 s). But the chosen layers alone hold the estimate
            // down: an AIMD estimator climbs to about 1.5 times the rate
            // acknowledged, so a browser behind 400 kbit/s that fell to S0T0
            // (an estimate of 120 kbit/s after the losses of the drop) stayed
            // there 9 s. Padding below the headroom line lets the estimate
            // climb without congesting a link that the estimate describes.
            // From the start, so that str0m probes: without a target its
            // estimate holds at the starting value, which it reports once
            // and again only when it moves (seen: 4 s on a 300 kbit/s link).
            let pad_to = result
                .bwe
                .next_step_bps
                .unwrap_or(0)
                .min(estimate * 100 / (100 + UP_HEADROOM_PERCENT));
            let min = result.bwe.min_bps.max(pad_to);
            // `desired` with the up headroom: the allocation takes the
            // preferred layers only once the estimate exceeds what they need
            // by UP_HEADROOM_PERCENT, and str0m's estimate settles at about
            // the desired rate it is given (its probes aim there). Given the
            // bare need, a WHEP viewer on loopback sat at 1.35 Mbit/s, just
            // under the top layer's need plus headroom, for 30 s
            // (e2e/whip.test.mjs, about one run in three).
            let desired = result.bwe.desired_bps * (100 + UP_HEADROOM_PERCENT) / 100;
            let mut wanted = (min.min(desired), desired);
            // While the preferred layers do not fit, ask for a probe now and
            // then. str0m probes on its own at the start, in application-
            // limited periods (which the padding above prevents) and after
            // 15 s without a change; otherwise its estimate climbs only as
            // fast as its AIMD lets it (1.5 times what was acknowledged per
            // step), and a viewer whose link was raised from 400 kbit/s took
            // 6 to 15 s back to the top layer (tests/sim/bandwidth.rs). str0m
            // probes (at up to twice the estimate, for 15 ms) when the
            // desired rate rises above the last it saw: hand it a fifth more
            // for one run. A probe that does not raise the estimate doubles
            // the wait for the next, up to PROBE_INTERVAL_MAX.
            let nudge = t.estimate_bps.is_some() && result.bwe.next_step_bps.is_some();
            if !nudge {
                t.probing = ProbeNudge::default();
            } else if t.probing.due.is_none_or(|due| now >= due) {
                if t.probing.due.is_some() {
                    t.probing.interval = if estimate * 100 >= t.probing.asked_at_estimate * 110 {
                        PROBE_INTERVAL_MIN
                    } else {
                        (t.probing.interval * 2).min(PROBE_INTERVAL_MAX)
                    };
                }
                t.probing.due = Some(now + t.probing.interval);
                t.probing.asked_at_estimate = estimate;
                wanted.1 = wanted.1 * 6 / 5;
                t.bwe_applied = None;
            }
            if t.bwe_applied.is_none_or(|applied| differs(applied, wanted)) {
                t.bwe_applied = Some(wanted);
                t.rtc
                    .bwe()
                    .set_bitrate(Bitrate::bps(wanted.0), Bitrate::bps(wanted.1));
                self.mark_dirty(tid);
            }
        }
        if let Some(at) = self.transports.get(&tid).and_then(|t| t.allocate_at) {
            self.schedule(tid, at);
        }
        if !estimated {
            // No feedback: forward as without estimation, the best layer
            // sending within the preference. (The ladder would leave out a
            // layer that costs no more than the one below, which without a
            // budget to fit is no reason to withhold it.)
            for (cid, _) in result.video {
                if let Some(c) = self.consumers.get_mut(&cid) {
                    let preferred = c.preferred.unwrap_or(Layer::TOP);
                    c.spatial_cap = c.preferred.map(|p| usize::from(p.spatial));
                    if let Some(filter) = &mut c.temporal {
                        filter.set_target(preferred.temporal);
                    }
                }
            }
            return;
        }
        for (cid, target) in result.video {
            self.apply_target(now, cid, target);
        }
    }

    fn apply_target(&mut self, now: Instant, cid: ConsumerId, target: VideoTarget) {
        let Some(c) = self.consumers.get_mut(&cid) else {
            return;
        };
        let layers = match target {
            VideoTarget::Idle => return,
            VideoTarget::PausedForBandwidth => {
                c.paused_for_bandwidth = true;
                (None, None)
            }
            VideoTarget::Layer(layer) => {
                let resumed = std::mem::take(&mut c.paused_for_bandwidth);
                if set_layer(c, layer) || resumed {
                    tracing::debug!(consumer = %cid, spatial = layer.spatial, temporal = layer.temporal, "consumer target changed");
                }
                if resumed {
                    // As a resume: continue the numbering, start at a key frame.
                    c.layers.restart();
                    c.restart_stream();
                    let producer = c.producer_id;
                    self.request_keyframe(now, producer, Some(usize::from(layer.spatial)));
                }
                // Reported when the forwarding reaches it (a spatial switch
                // waits for a key frame, a temporal one for a sync frame).
                return;
            }
        };
        self.report_layers(cid, layers);
    }

    /// Report the layers a consumer forwards now (`(None, None)`: paused for
    /// bandwidth), when they changed; counted in `layer_switches`.
    pub(super) fn report_layers(&mut self, cid: ConsumerId, layers: (Option<u8>, Option<u8>)) {
        let Some(c) = self.consumers.get_mut(&cid) else {
            return;
        };
        if c.reported_layers != Some(layers) {
            c.reported_layers = Some(layers);
            self.stats.layer_switches += 1;
            tracing::debug!(consumer = %cid, spatial = ?layers.0, temporal = ?layers.1, "consumer layers changed");
            self.events.push(EngineEvent::ConsumerLayersChanged {
                transport_id: c.transport_id,
                consumer_id: cid,
                producer_id: c.producer_id,
                spatial_layer: layers.0,
                temporal_layer: layers.1,
            });
        }
    }
}

impl Router {
    /// Pace the transport's video through str0m's pacer, or not. It is paced
    /// from the start: the pacer spreads a frame's burst over the link, and
    /// unpaced, a viewer behind a shaped link lost the bursts of the layer
    /// it was leaving before the first estimate, and its estimate fell below
    /// the lowest layer (tests/sim/bandwidth.rs failed). But the pacer holds
    /// video to a rate derived from the estimate, which without feedback
    /// never leaves the starting 600 kbit/s: a 1.5 Mbit/s stream queued 1.3 s
    /// deep and lost a fifth of its packets (`bench/run --scenarios
    /// livestream`, whose bot sends no feedback). So a transport still
    /// without an estimate [`NO_FEEDBACK_AFTER`] after its first video
    /// packet goes unpaced, until an estimate comes. (From the first video
    /// packet, not the connection: str0m probes only from then on, see
    /// `Router::allocate`, and its estimate does not move before.)
    pub(super) fn set_video_paced(&mut self, tid: TransportId, paced: bool) {
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        t.unpaced = !paced;
        if !paced && t.bwe_applied.take().is_some() {
            // The target handed over before the first estimate: no padding
            // or probes towards it for a client that sends no feedback.
            t.rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::ZERO);
        }
        for cid in t.consumers_by_mid.values() {
            let Some(c) = self
                .consumers
                .get(cid)
                .filter(|c| c.kind == MediaKind::Video)
            else {
                continue;
            };
            if let Some(stream) = t.rtc.direct_api().stream_tx(&c.ssrc) {
                stream.set_unpaced(!paced);
            }
        }
    }
}

/// The allocator's layer into the forwarding: the simulcast layer is switched
/// to at its next key frame, the temporal one at the filter's next switch point.
/// True when the target changed.
fn set_layer(c: &mut Consumer, layer: Layer) -> bool {
    let changed = c.spatial_cap != Some(usize::from(layer.spatial))
        || c.temporal
            .as_ref()
            .is_some_and(|f| f.target() != layer.temporal);
    c.spatial_cap = Some(usize::from(layer.spatial));
    if let Some(filter) = &mut c.temporal {
        filter.set_target(layer.temporal);
    }
    changed
}

/// Whether two `(min, desired)` pairs differ by more than [`BWE_CHANGE_PERCENT`].
fn differs(a: (u64, u64), b: (u64, u64)) -> bool {
    let far = |x: u64, y: u64| x.abs_diff(y) * 100 > x.max(y) * BWE_CHANGE_PERCENT;
    far(a.0, b.0) || far(a.1, b.1)
}
