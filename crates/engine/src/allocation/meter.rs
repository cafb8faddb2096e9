//! The bitrate meter of one producer: bytes per (spatial, temporal) layer over
//! a sliding window, with time as an input, read as each layer's bitrate
//! including the lower temporal layers it depends on.
//!
//! The window is [`WINDOW_MS`] split into [`BUCKET_MS`] buckets, so recording
//! a packet is one addition and reading walks a fixed array: no allocation on
//! the packet path. A layer that stops (a paused or disabled encoding) loses
//! its bytes bucket by bucket and reads zero one window after its last packet.
//! A layer that started less than a window ago is measured over the time since
//! its first packet (at least [`MIN_SPAN_MS`]), not over the whole window,
//! which would read a new layer at a fraction of its rate and let the
//! allocator pick a layer the link cannot carry.

use super::{Layer, LayerBitrates, MAX_SPATIAL_LAYERS, MAX_TEMPORAL_LAYERS};
use std::time::Instant;

/// Length of one bucket.
pub(crate) const BUCKET_MS: u64 = 100;
/// Buckets in the window.
const BUCKETS: usize = 10;
/// The sliding window: about 30 frames at 30 fps, 7 or 8 frames of T0, and
/// short enough that a stopped layer reads zero within it (the allocator must
/// move its viewers down within 2 s).
pub(crate) const WINDOW_MS: u64 = BUCKET_MS * BUCKETS as u64;
/// The shortest span a young layer is measured over, so its first key frame
/// does not read as tens of megabits.
pub(crate) const MIN_SPAN_MS: u64 = 200;
/// Bytes each packet costs on the wire beyond its RTP header and payload:
/// IPv4 (20) + UDP (8) + the SRTP authentication tag (10). The estimate the
/// bitrates are compared with counts whole datagrams.
pub(crate) const WIRE_OVERHEAD_BYTES: u64 = 20 + 8 + 10;

type PerLayer<T> = [[T; MAX_TEMPORAL_LAYERS]; MAX_SPATIAL_LAYERS];

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which bucket-length slot since the meter's origin these bytes belong to.
    slot: u64,
    bytes: PerLayer<u64>,
}

/// One producer's meter; feed it every RTP packet of every layer.
#[derive(Debug, Clone)]
pub(crate) struct LayerMeter {
    origin: Instant,
    buckets: [Bucket; BUCKETS],
    /// Per layer, milliseconds since `origin` of the first and the last packet
    /// of its current run (a run ends after a window without packets).
    first_ms: PerLayer<Option<u64>>,
    last_ms: PerLayer<Option<u64>>,
}

impl LayerMeter {
    pub fn new(now: Instant) -> Self {
        LayerMeter {
            origin: now,
            buckets: [Bucket::default(); BUCKETS],
            first_ms: Default::default(),
            last_ms: Default::default(),
        }
    }

    /// Count one packet of `layer`: `rtp_bytes` is the RTP packet as received
    /// (header and payload). A non-VP8 or non-temporal stream is all
    /// temporal layer 0. Layers beyond 3 × 3 are not counted (and return
    /// false): nothing can be allocated for them either. Neither is a packet
    /// given a time a window older than one already counted.
    pub fn record(&mut self, now: Instant, layer: Layer, rtp_bytes: usize) -> bool {
        let (s, t) = (layer.spatial as usize, layer.temporal as usize);
        if s >= MAX_SPATIAL_LAYERS || t >= MAX_TEMPORAL_LAYERS {
            return false;
        }
        let ms = self.ms(now);
        let slot = ms / BUCKET_MS;
        let bucket = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if bucket.slot > slot {
            // A packet from before the window (time went backwards): not counted.
            return false;
        }
        if bucket.slot < slot {
            *bucket = Bucket {
                slot,
                bytes: Default::default(),
            };
        }
        bucket.bytes[s][t] += rtp_bytes as u64 + WIRE_OVERHEAD_BYTES;
        if self.last_ms[s][t].is_none_or(|last| ms.saturating_sub(last) >= WINDOW_MS) {
            self.first_ms[s][t] = Some(ms);
        }
        self.last_ms[s][t] = Some(ms);
        true
    }

    /// Each layer's bitrate in bits/s, including the lower temporal layers of
    /// its spatial layer; zero for a layer that sent nothing in the window.
    pub fn bitrates(&self, now: Instant) -> LayerBitrates {
        let ms = self.ms(now);
        let slot = ms / BUCKET_MS;
        let mut bytes: PerLayer<u64> = Default::default();
        for bucket in &self.buckets {
            // A bucket not rewritten for a window is stale, whatever it holds.
            if bucket.slot <= slot && slot - bucket.slot < BUCKETS as u64 {
                for (sum, b) in bytes
                    .iter_mut()
                    .flatten()
                    .zip(bucket.bytes.iter().flatten())
                {
                    *sum += b;
                }
            }
        }
        // The window runs from the start of its oldest bucket to now.
        let window_start = (slot + 1).saturating_sub(BUCKETS as u64) * BUCKET_MS;
        let window_span = ms - window_start;
        let mut rates = LayerBitrates::default();
        for (s, (own_bytes, firsts)) in bytes.iter().zip(&self.first_ms).enumerate() {
            let mut below = 0;
            for (t, (&own, &first)) in own_bytes.iter().zip(firsts).enumerate() {
                let Some(first) = first.filter(|_| own > 0) else {
                    continue;
                };
                let span = window_span.min(ms - first.min(ms)).max(MIN_SPAN_MS);
                let own_bps = own * 8 * 1000 / span;
                below += own_bps;
                rates.set(Layer::new(s as u8, t as u8), below);
            }
        }
        rates
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const fn l(spatial: u8, temporal: u8) -> Layer {
        Layer::new(spatial, temporal)
    }

    /// A steady stream of one layer: packets of `wire_bytes` (overhead
    /// included) every `every_ms` in [from_ms, to_ms).
    struct Stream {
        layer: Layer,
        wire_bytes: u64,
        every_ms: u64,
        from_ms: u64,
        to_ms: u64,
    }

    const fn stream(
        layer: Layer,
        wire_bytes: u64,
        every_ms: u64,
        from_ms: u64,
        to_ms: u64,
    ) -> Stream {
        Stream {
            layer,
            wire_bytes,
            every_ms,
            from_ms,
            to_ms,
        }
    }

    /// Feeds the streams' packets in time order, as they would arrive.
    fn feed(m: &mut LayerMeter, t0: Instant, streams: &[Stream]) {
        let mut packets: Vec<(u64, Layer, u64)> = streams
            .iter()
            .flat_map(|s| {
                (s.from_ms..s.to_ms)
                    .step_by(s.every_ms as usize)
                    .map(|at| (at, s.layer, s.wire_bytes))
            })
            .collect();
        packets.sort_by_key(|(at, ..)| *at);
        for (at, layer, wire_bytes) in packets {
            assert!(m.record(
                t0 + Duration::from_millis(at),
                layer,
                (wire_bytes - WIRE_OVERHEAD_BYTES) as usize
            ));
        }
    }

    fn kbps(rates: &LayerBitrates, layer: Layer) -> u64 {
        rates.get(layer).unwrap_or(0) / 1000
    }

    #[test]
    fn three_temporal_layers_read_with_what_they_depend_on() {
        let t0 = Instant::now();
        let mut m = LayerMeter::new(t0);
        // L1T3 at 30 fps: T0 7.5 fps, T1 7.5 fps, T2 15 fps; 1000-byte packets.
        // T0: 1000 B every 133 ms ≈ 60 kbit/s; T1 ≈ 60; T2: every 66 ms ≈ 121.
        feed(
            &mut m,
            t0,
            &[
                stream(l(0, 0), 1000, 133, 0, 3000),
                stream(l(0, 1), 1000, 133, 66, 3000),
                stream(l(0, 2), 1000, 66, 33, 3000),
            ],
        );
        let r = m.bitrates(t0 + Duration::from_millis(3000));
        assert!((55..=65).contains(&kbps(&r, l(0, 0))), "{r:?}");
        assert!(
            (115..=125).contains(&kbps(&r, l(0, 1))),
            "T1 includes T0: {r:?}"
        );
        assert!(
            (235..=250).contains(&kbps(&r, l(0, 2))),
            "T2 includes T0 and T1: {r:?}"
        );
        assert_eq!(
            r.get(l(1, 0)),
            None,
            "a spatial layer that never sent is absent"
        );
    }

    #[test]
    fn a_stopped_layer_decays_and_reads_zero_within_the_window() {
        let t0 = Instant::now();
        let mut m = LayerMeter::new(t0);
        // Two simulcast layers at 100 and 500 kbit/s (125-byte and 625-byte packets every 10 ms).
        feed(
            &mut m,
            t0,
            &[
                stream(l(0, 0), 125, 10, 0, 2000),
                stream(l(1, 0), 625, 10, 0, 2000),
            ],
        );
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!((495..=505).contains(&kbps(&m.bitrates(at(2000)), l(1, 0))));
        // Half a window after it stopped: about half.
        feed(&mut m, t0, &[stream(l(0, 0), 125, 10, 2000, 2500)]);
        let half = kbps(&m.bitrates(at(2500)), l(1, 0));
        assert!((200..=300).contains(&half), "{half}");
        // One window after its last packet: gone. The other layer is untouched.
        feed(&mut m, t0, &[stream(l(0, 0), 125, 10, 2500, 3000)]);
        let r = m.bitrates(at(2000 + WINDOW_MS));
        assert_eq!(r.get(l(1, 0)), None);
        assert!((95..=105).contains(&kbps(&r, l(0, 0))));
    }

    #[test]
    fn a_young_layer_is_measured_since_its_first_packet() {
        let t0 = Instant::now();
        let mut m = LayerMeter::new(t0);
        // Steady 200 kbit/s (250-byte packets every 10 ms) for 300 ms only.
        feed(&mut m, t0, &[stream(l(0, 0), 250, 10, 5000, 5300)]);
        let r = m.bitrates(t0 + Duration::from_millis(5300));
        // Over the whole window it would read 60 kbit/s.
        assert!((190..=210).contains(&kbps(&r, l(0, 0))), "{r:?}");
        // Its first packet alone is spread over MIN_SPAN_MS, not over a millisecond.
        let mut m = LayerMeter::new(t0);
        m.record(
            t0 + Duration::from_millis(7000),
            l(0, 0),
            5000 - WIRE_OVERHEAD_BYTES as usize,
        );
        let r = m.bitrates(t0 + Duration::from_millis(7000));
        assert_eq!(kbps(&r, l(0, 0)), 5000 * 8 / MIN_SPAN_MS);
    }

    #[test]
    fn a_layer_that_resumes_after_a_silence_starts_a_new_run() {
        let t0 = Instant::now();
        let mut m = LayerMeter::new(t0);
        // 200 kbit/s for 1 s, silent for 10 s (stale buckets must not count), then again for 400 ms.
        feed(
            &mut m,
            t0,
            &[
                stream(l(0, 0), 250, 10, 0, 1000),
                stream(l(0, 0), 250, 10, 11_000, 11_400),
            ],
        );
        let r = m.bitrates(t0 + Duration::from_millis(11_400));
        assert!((190..=210).contains(&kbps(&r, l(0, 0))), "{r:?}");
    }

    #[test]
    fn wire_overhead_is_counted_and_out_of_range_layers_are_ignored() {
        let t0 = Instant::now();
        let mut m = LayerMeter::new(t0);
        // 100 packets of 62 RTP bytes in one window: 100 B each on the wire.
        for i in 0..100 {
            assert!(m.record(t0 + Duration::from_millis(i * 10), l(0, 0), 62));
        }
        assert!(!m.record(t0, l(3, 0), 1000));
        assert!(!m.record(t0, l(0, 3), 1000));
        let r = m.bitrates(t0 + Duration::from_millis(1000));
        assert_eq!(kbps(&r, l(0, 0)), 80);
        assert_eq!(r, {
            let mut only = LayerBitrates::default();
            only.set(l(0, 0), r.get(l(0, 0)).unwrap_or(0));
            only
        });
    }

    #[test]
    fn a_packet_from_before_the_window_is_not_counted() {
        let t0 = Instant::now();
        let mut m = LayerMeter::new(t0);
        assert!(m.record(t0 + Duration::from_millis(5000), l(0, 0), 100));
        assert!(!m.record(t0 + Duration::from_millis(3000), l(0, 0), 100));
        // Late by less than a window: counted.
        assert!(m.record(t0 + Duration::from_millis(4500), l(0, 0), 100));
    }

    #[test]
    fn time_before_the_origin_is_taken_as_the_origin() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut m = LayerMeter::new(t0);
        m.record(t0 - Duration::from_secs(1), l(0, 0), 1000);
        assert!(m
            .bitrates(t0 - Duration::from_secs(5))
            .get(l(0, 0))
            .is_some());
    }
}
