//! What a receiver measures from the stamps it reads: loss per sent stream
//! (gaps in the embedded counter, reordering and duplicates tolerated),
//! added latency (receive time minus send time, one clock), bytes, and the
//! time from joining to the first packet. Plain data, no I/O, mergeable, so
//! the numbers are tested here from known packet streams.

use crate::payload::Stamp;
use serde::Serialize;
use std::collections::HashMap;

/// A latency histogram with about 1% resolution: 1 µs buckets below 1 ms,
/// then 128 buckets per power of two. Mergeable across receivers.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum_us: u128,
    max_us: u64,
}

const LINEAR: u64 = 1024;
const SUB_BITS: u32 = 7;

fn bucket_of(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let e = 63 - us.leading_zeros(); // >= 10
    let sub = (us >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (LINEAR + (e as u64 - 10) * (1 << SUB_BITS) + sub) as usize
}

/// The middle of a bucket, in µs.
fn value_of(bucket: usize) -> u64 {
    let b = bucket as u64;
    if b < LINEAR {
        return b;
    }
    let e = (b - LINEAR) / (1 << SUB_BITS) + 10;
    let sub = (b - LINEAR) % (1 << SUB_BITS);
    let width = 1u64 << (e - SUB_BITS as u64);
    (1u64 << e) + sub * width + width / 2
}

impl Histogram {
    /// Record one latency, in µs.
    pub fn record_us(&mut self, us: u64) {
        let b = bucket_of(us);
        if self.buckets.len() <= b {
            self.buckets.resize(b + 1, 0);
        }
        self.buckets[b] += 1;
        self.count += 1;
        self.sum_us += us as u128;
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value below which a fraction `q` (0..=1) of the samples fall, in µs
    /// (within the bucket resolution); 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return value_of(i).min(self.max_us);
            }
        }
        self.max_us
    }

    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    pub fn mean_us(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.count as f64
        }
    }

    /// p50, p99 and max in milliseconds.
    pub fn summary_ms(&self) -> LatencySummary {
        LatencySummary {
            samples: self.count,
            p50_ms: self.quantile_us(0.50) as f64 / 1000.0,
            p99_ms: self.quantile_us(0.99) as f64 / 1000.0,
            max_ms: self.max_us as f64 / 1000.0,
            mean_ms: self.mean_us() / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// How far back (in counter values) a late packet still counts as received.
/// 1024 packets are 5 s of video at 200 packets/s.
pub const REORDER_WINDOW: u64 = 1024;
const WORDS: usize = (REORDER_WINDOW / 64) as usize;

/// What happened to one packet of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    New,
    Duplicate,
    /// Older than the reorder window: counted as lost, as a jitter buffer would.
    TooLate,
}

/// Loss accounting for one sent stream, from the counters that arrive.
/// Expected packets are those from the lowest to the highest counter seen;
/// a stream that stops arriving is not counted as lost after its last packet.
#[derive(Debug, Clone)]
pub struct StreamCounter {
    first: u64,
    highest: u64,
    seen: [u64; WORDS],
    unique: u64,
    duplicates: u64,
    too_late: u64,
}

impl StreamCounter {
    pub fn new(first: u64) -> StreamCounter {
        let mut c = StreamCounter {
            first,
            highest: first,
            seen: [0; WORDS],
            unique: 1,
            duplicates: 0,
            too_late: 0,
        };
        c.set(first);
        c
    }

    fn bit(counter: u64) -> (usize, u64) {
        let slot = counter % REORDER_WINDOW;
        ((slot / 64) as usize, 1u64 << (slot % 64))
    }

    fn set(&mut self, counter: u64) {
        let (w, m) = Self::bit(counter);
        self.seen[w] |= m;
    }

    fn is_set(&self, counter: u64) -> bool {
        let (w, m) = Self::bit(counter);
        self.seen[w] & m != 0
    }

    pub fn record(&mut self, counter: u64) -> Arrival {
        if counter > self.highest {
            if counter - self.highest >= REORDER_WINDOW {
                self.seen = [0; WORDS];
            } else {
                for c in self.highest + 1..counter {
                    let (w, m) = Self::bit(c);
                    self.seen[w] &= !m;
                }
            }
            self.highest = counter;
            self.set(counter);
            self.unique += 1;
            return Arrival::New;
        }
        if self.highest - counter >= REORDER_WINDOW {
            self.too_late += 1;
            return Arrival::TooLate;
        }
        if counter < self.first {
            // Reordered ahead of the first packet we saw: the stream started earlier.
            for c in counter..self.first {
                let (w, m) = Self::bit(c);
                self.seen[w] &= !m;
            }
            self.first = counter;
        } else if self.is_set(counter) {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.set(counter);
        self.unique += 1;
        Arrival::New
    }

    pub fn expected(&self) -> u64 {
        self.highest - self.first + 1
    }

    pub fn unique(&self) -> u64 {
        self.unique
    }

    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.unique)
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    pub fn too_late(&self) -> u64 {
        self.too_late
    }
}

/// `part` as a percentage of `whole` (0 when there is no whole).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Media kind of a received stream, for separate audio and video numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Audio,
    Video,
}

/// Totals for one kind of media, summed over streams and receivers.
#[derive(Debug, Clone, Default)]
pub struct KindTotals {
    pub streams: u64,
    pub packets: u64,
    pub bytes: u64,
    pub expected: u64,
    pub unique: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub too_late: u64,
    pub latency: Histogram,
}

impl KindTotals {
    pub fn merge(&mut self, o: &KindTotals) {
        self.streams += o.streams;
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.expected += o.expected;
        self.unique += o.unique;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.too_late += o.too_late;
        self.latency.merge(&o.latency);
    }

    /// Lost packets as a percentage of expected ones.
    pub fn loss_pct(&self) -> f64 {
        percent(self.lost, self.expected)
    }
}

/// A gap between frames longer than this is a stall a viewer sees.
pub const FRAME_GAP_NS: u64 = 200_000_000;

/// One video consumer as its viewer sees it: loss from the consumer's own
/// RTP sequence numbers, which the server keeps continuous across layer
/// switches and temporal filtering (so a stream counter per sent layer
/// would count every switch back up as loss), measured after NACK repair;
/// which simulcast layer arrives; and the waits between frames.
#[derive(Debug, Clone)]
pub struct ConsumerView {
    /// None until the first packet.
    seq: Option<StreamCounter>,
    bytes: u64,
    last_frame_ns: u64,
    gaps_over: u64,
    max_gap_ns: u64,
    layer: Option<u32>,
    layer_switches: u64,
}

impl ConsumerView {
    fn new(window_start_ns: u64) -> ConsumerView {
        ConsumerView {
            seq: None,
            bytes: 0,
            last_frame_ns: window_start_ns,
            gaps_over: 0,
            max_gap_ns: 0,
            layer: None,
            layer_switches: 0,
        }
    }

    fn frame_gap(&mut self, at_ns: u64) {
        let gap = at_ns.saturating_sub(self.last_frame_ns);
        if gap > FRAME_GAP_NS {
            self.gaps_over += 1;
        }
        self.max_gap_ns = self.max_gap_ns.max(gap);
    }

    fn on_packet(&mut self, seq: u64, payload: &[u8], layer: Option<u32>, recv_ns: u64) {
        let arrival = match &mut self.seq {
            Some(c) => c.record(seq),
            None => {
                self.seq = Some(StreamCounter::new(seq));
                Arrival::New
            }
        };
        if arrival != Arrival::New {
            return;
        }
        self.bytes += payload.len() as u64;
        if crate::payload::is_vp8_frame_start(payload) && recv_ns > self.last_frame_ns {
            self.frame_gap(recv_ns);
            self.last_frame_ns = recv_ns;
        }
        if let Some(layer) = layer {
            if self.layer.is_some_and(|l| l != layer) {
                self.layer_switches += 1;
            }
            self.layer = Some(layer);
        }
    }
}

impl ConsumerView {
    /// This consumer alone at the end of the window (`end_ns`).
    fn totals(&self, end_ns: u64) -> ViewTotals {
        let mut v = self.clone();
        v.frame_gap(end_ns);
        let mut final_layers = Vec::new();
        if let Some(layer) = v.layer {
            final_layers.resize(layer as usize + 1, 0);
            final_layers[layer as usize] = 1;
        }
        ViewTotals {
            consumers: 1,
            expected: v.seq.as_ref().map_or(0, StreamCounter::expected),
            lost: v.seq.as_ref().map_or(0, StreamCounter::lost),
            bytes: v.bytes,
            frame_gaps: v.gaps_over,
            max_frame_gap_ns: v.max_gap_ns,
            layer_switches: v.layer_switches,
            final_layers,
        }
    }
}

/// What a class of viewers (the same downlink) saw of their video, summed.
#[derive(Debug, Clone, Default)]
pub struct ViewTotals {
    /// Video consumers that delivered in the window.
    pub consumers: u64,
    pub expected: u64,
    pub lost: u64,
    pub bytes: u64,
    /// Waits between frames over [`FRAME_GAP_NS`], the tail of the window included.
    pub frame_gaps: u64,
    pub max_frame_gap_ns: u64,
    pub layer_switches: u64,
    /// How many consumers ended the window on each simulcast layer (index = layer).
    pub final_layers: Vec<u64>,
}

impl ViewTotals {
    pub fn merge(&mut self, o: &ViewTotals) {
        self.consumers += o.consumers;
        self.expected += o.expected;
        self.lost += o.lost;
        self.bytes += o.bytes;
        self.frame_gaps += o.frame_gaps;
        self.max_frame_gap_ns = self.max_frame_gap_ns.max(o.max_frame_gap_ns);
        self.layer_switches += o.layer_switches;
        if self.final_layers.len() < o.final_layers.len() {
            self.final_layers.resize(o.final_layers.len(), 0);
        }
        for (a, b) in self.final_layers.iter_mut().zip(&o.final_layers) {
            *a += b;
        }
    }

    pub fn loss_pct(&self) -> f64 {
        percent(self.lost, self.expected)
    }
}

/// Everything one receiving transport measured.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    streams: HashMap<u32, (Kind, StreamCounter)>,
    latency: HashMap<Kind, Histogram>,
    packets: HashMap<Kind, u64>,
    bytes: HashMap<Kind, u64>,
    /// When the peer sent `joinRoom` (monotonic ns).
    pub joined_ns: Option<u64>,
    /// When the first stamped packet arrived (monotonic ns), measured or not.
    pub first_packet_ns: Option<u64>,
    /// When each sent stream's first packet arrived (monotonic ns), measured
    /// or not: one entry per consumer that delivered media.
    first_by_stream: HashMap<u32, u64>,
    /// Packets without a bot stamp (not ours, or cut).
    pub unstamped: u64,
    /// Video consumers by SSRC, in the measurement window.
    views: HashMap<u32, ConsumerView>,
}

impl ReceiverStats {
    /// Count one packet. Outside the measurement window (`window_start_ns`
    /// None) only the first-packet time is kept, so ramp-up does not count as
    /// loss; inside it, a packet sent before the window started (a
    /// retransmission, or a sender's padding made of old packets) counts for
    /// nothing, or it would read as a new packet seconds late.
    pub fn on_packet(
        &mut self,
        kind: Kind,
        payload: &[u8],
        recv_ns: u64,
        window_start_ns: Option<u64>,
    ) {
        let Some(stamp) = crate::payload::read_stamp(payload) else {
            self.unstamped += 1;
            return;
        };
        self.first_packet_ns.get_or_insert(recv_ns);
        self.first_by_stream.entry(stamp.stream).or_insert(recv_ns);
        if window_start_ns.is_some_and(|start| stamp.sent_ns >= start) {
            self.on_stamp(kind, stamp, payload.len(), recv_ns);
        }
    }

    fn on_stamp(&mut self, kind: Kind, stamp: Stamp, len: usize, recv_ns: u64) {
        *self.packets.entry(kind).or_default() += 1;
        *self.bytes.entry(kind).or_default() += len as u64;
        let arrival = match self.streams.get_mut(&stamp.stream) {
            Some((_, c)) => c.record(stamp.counter),
            None => {
                self.streams
                    .insert(stamp.stream, (kind, StreamCounter::new(stamp.counter)));
                Arrival::New
            }
        };
        if arrival == Arrival::New {
            let us = recv_ns.saturating_sub(stamp.sent_ns) / 1000;
            self.latency.entry(kind).or_default().record_us(us);
        }
    }

    /// Count one video packet of the consumer `ssrc` as the viewer sees it
    /// (inside the window that started at `window_start_ns` only).
    pub fn on_video_rtp(
        &mut self,
        ssrc: u32,
        seq: u64,
        payload: &[u8],
        recv_ns: u64,
        window_start_ns: Option<u64>,
    ) {
        let Some(start) = window_start_ns else { return };
        // Stream ids end in the sent slot: 1.. are the video layers.
        let layer =
            crate::payload::read_stamp(payload).and_then(|s| (s.stream & 0xff).checked_sub(1));
        self.views
            .entry(ssrc)
            .or_insert_with(|| ConsumerView::new(start))
            .on_packet(seq, payload, layer, recv_ns);
    }

    /// The video consumers' totals at the end of the window (`end_ns`): a
    /// stall that lasts to the end counts too.
    pub fn view_totals(&self, end_ns: u64) -> ViewTotals {
        let mut t = ViewTotals::default();
        for v in self.views.values() {
            t.merge(&v.totals(end_ns));
        }
        t
    }

    /// Time from join to first packet, in ms, if both happened.
    pub fn join_to_first_ms(&self) -> Option<f64> {
        Some(self.first_packet_ns?.saturating_sub(self.joined_ns?) as f64 / 1e6)
    }

    /// Streams that delivered at least one packet, measured or not.
    pub fn streams_seen(&self) -> usize {
        self.first_by_stream.len()
    }

    /// Time from join to each stream's first packet, in ms (one per stream
    /// that delivered), if the join time is known.
    pub fn join_to_first_per_stream_ms(&self) -> Vec<f64> {
        let Some(joined) = self.joined_ns else {
            return Vec::new();
        };
        self.first_by_stream
            .values()
            .map(|&t| t.saturating_sub(joined) as f64 / 1e6)
            .collect()
    }

    /// Totals per kind.
    pub fn totals(&self, kind: Kind) -> KindTotals {
        let mut t = KindTotals {
            packets: self.packets.get(&kind).copied().unwrap_or(0),
            bytes: self.bytes.get(&kind).copied().unwrap_or(0),
            latency: self.latency.get(&kind).cloned().unwrap_or_default(),
            ..Default::default()
        };
        for (k, c) in self.streams.values() {
            if *k == kind {
                t.streams += 1;
                t.expected += c.expected();
                t.unique += c.unique();
                t.lost += c.lost();
                t.duplicates += c.duplicates();
                t.too_late += c.too_late();
            }
        }
        t
    }

    /// Packets counted so far (all kinds), for progress lines.
    pub fn packets(&self) -> u64 {
        self.packets.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{opus_payload, vp8_payload, Vp8Packet};

    fn counter_of(seq: &[u64]) -> StreamCounter {
        let mut c = StreamCounter::new(seq[0]);
        for &s in &seq[1..] {
            c.record(s);
        }
        c
    }

    #[test]
    fn a_clean_stream_has_no_loss() {
        let seq: Vec<u64> = (10..1010).collect();
        let c = counter_of(&seq);
        assert_eq!(
            (c.expected(), c.unique(), c.lost(), c.duplicates()),
            (1000, 1000, 0, 0)
        );
    }

    #[test]
    fn gaps_are_loss() {
        let seq: Vec<u64> = (0..100).filter(|s| s % 10 != 3).collect(); // 10 missing
        let c = counter_of(&seq);
        assert_eq!((c.expected(), c.unique(), c.lost()), (100, 90, 10));
        let c = counter_of(&[0, 1, 2, 500, 501]);
        assert_eq!(c.lost(), 497);
    }

    #[test]
    fn reordering_is_not_loss_and_duplicates_are_not_received_twice() {
        let c = counter_of(&[0, 2, 1, 3, 5, 4, 4, 6, 6, 6]);
        assert_eq!(
            (c.expected(), c.unique(), c.lost(), c.duplicates()),
            (7, 7, 0, 3)
        );
        // Reordered before the first packet seen: the stream starts earlier.
        let c = counter_of(&[5, 6, 3, 4, 7]);
        assert_eq!((c.expected(), c.unique(), c.lost()), (5, 5, 0));
        let c = counter_of(&[5, 6, 3, 7]);
        assert_eq!((c.expected(), c.lost()), (5, 1), "4 never came");
    }

    #[test]
    fn too_late_packets_count_as_lost_and_the_window_wraps_cleanly() {
        let mut seq: Vec<u64> = (0..3000).filter(|&s| s != 100).collect();
        seq.push(100); // 2900 packets late
        let c = counter_of(&seq);
        assert_eq!((c.lost(), c.too_late(), c.duplicates()), (1, 1, 0));
        // Across many window wraps, a late-but-inside-window packet still fills its gap.
        let mut seq: Vec<u64> = (0..5000).filter(|&s| s != 4000).collect();
        seq.insert(4500, 4000);
        let c = counter_of(&seq);
        assert_eq!((c.lost(), c.duplicates(), c.too_late()), (0, 0, 0));
    }

    #[test]
    fn viewers_see_loss_by_consumer_sequence_layers_and_stalls() {
        let mut r = ReceiverStats::default();
        let start = 1_000_000_000u64;
        let ms = 1_000_000u64;
        let frame = |stream: u32, counter: u64, start_of_frame: bool| {
            vp8_payload(
                500,
                Vp8Packet {
                    picture_id: counter as u16,
                    start: start_of_frame,
                    keyframe: false,
                },
                Stamp {
                    stream,
                    counter,
                    sent_ns: 0,
                },
            )
        };
        // Before the window: not counted.
        r.on_video_rtp(9, 1, &frame(0x103, 0, true), start - ms, None);
        // Top layer (slot 3), two packets a frame every 40 ms, seq 10..;
        // then the server switches to the low layer (slot 1) with the
        // sequence continuing; its own counters start elsewhere, which is
        // no loss. Seq 15 is lost; a stall of 300 ms before seq 20.
        let mut t = start;
        for seq in 10..20u64 {
            t += 20 * ms;
            if seq == 15 {
                continue;
            }
            let slot = if seq < 14 { 0x103 } else { 0x101 };
            r.on_video_rtp(
                9,
                seq,
                &frame(slot, 1000 + seq, seq % 2 == 0),
                t,
                Some(start),
            );
        }
        t += 300 * ms;
        for seq in 20..24u64 {
            r.on_video_rtp(9, seq, &frame(0x101, seq, seq % 2 == 0), t, Some(start));
            t += 20 * ms;
        }
        r.on_video_rtp(9, 21, &frame(0x101, 21, false), t, Some(start)); // a duplicate (RTX) is no packet
        let v = r.view_totals(t + 100 * ms);
        assert_eq!((v.consumers, v.expected, v.lost), (1, 14, 1));
        assert!((v.loss_pct() - 100.0 / 14.0).abs() < 1e-9);
        assert_eq!(v.final_layers, vec![1], "ends on layer 0");
        assert_eq!(v.layer_switches, 1);
        assert_eq!(v.frame_gaps, 1, "the 300 ms stall, not the 40 ms frames");
        assert!(
            v.max_frame_gap_ns >= 300 * ms && v.max_frame_gap_ns < 400 * ms,
            "{}",
            v.max_frame_gap_ns
        );
        assert_eq!(v.bytes, 13 * 500);
        // A viewer frozen until the end of the window: the tail is a stall too.
        let frozen = r.view_totals(t + 1000 * ms);
        assert_eq!(frozen.frame_gaps, 2);
    }

    #[test]
    fn histogram_quantiles_within_one_percent() {
        let mut h = Histogram::default();
        for us in 1..=100_000u64 {
            h.record_us(us);
        }
        for (q, want) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.01, 1_000.0)] {
            let got = h.quantile_us(q) as f64;
            assert!(
                (got - want).abs() / want < 0.01,
                "q{q}: got {got}, want {want}"
            );
        }
        assert_eq!(h.max_us(), 100_000);
        let mut small = Histogram::default();
        for us in [100, 200, 300, 400] {
            small.record_us(us);
        }
        assert_eq!(small.quantile_us(0.5), 200);
        assert_eq!(small.quantile_us(1.0), 400);
        let mut merged = Histogram::default();
        merged.merge(&small);
        merged.merge(&h);
        assert_eq!(merged.count(), 100_004);
    }

    #[test]
    fn receiver_measures_loss_latency_and_join_time_from_stamped_packets() {
        let mut r = ReceiverStats {
            joined_ns: Some(1_000_000),
            ..Default::default()
        };
        let t0 = 10_000_000u64;
        // Before the window: only the first packet time counts.
        let warm = vp8_payload(
            500,
            Vp8Packet {
                picture_id: 1,
                start: true,
                keyframe: true,
            },
            Stamp {
                stream: 7,
                counter: 0,
                sent_ns: t0,
            },
        );
        r.on_packet(Kind::Video, &warm, t0 + 1_000_000, None);
        // Video stream 7: counters 1..=100 except 50, one duplicate, 2 ms latency each.
        for c in (1..=100u64).filter(|&c| c != 50).chain([60]) {
            let sent = t0 + c * 5_000_000;
            let p = vp8_payload(
                1000,
                Vp8Packet {
                    picture_id: c as u16,
                    start: false,
                    keyframe: false,
                },
                Stamp {
                    stream: 7,
                    counter: c,
                    sent_ns: sent,
                },
            );
            r.on_packet(Kind::Video, &p, sent + 2_000_000, Some(t0));
        }
        // Audio stream 8: counters 0..10, latency 1 ms.
        for c in 0..10u64 {
            let p = opus_payload(
                80,
                Stamp {
                    stream: 8,
                    counter: c,
                    sent_ns: t0 + c,
                },
            );
            r.on_packet(Kind::Audio, &p, t0 + c + 1_000_000, Some(t0));
        }
        r.on_packet(Kind::Audio, b"not ours", t0, Some(t0));
        // Sent before the window (a resend, or padding made of old packets): nothing.
        let old = opus_payload(
            80,
            Stamp {
                stream: 8,
                counter: 10,
                sent_ns: t0 - 1,
            },
        );
        r.on_packet(Kind::Audio, &old, t0 + 5_000_000_000, Some(t0));
        let v = r.totals(Kind::Video);
        assert_eq!(
            (
                v.streams,
                v.packets,
                v.expected,
                v.unique,
                v.lost,
                v.duplicates
            ),
            (1, 100, 100, 99, 1, 1)
        );
        assert!((v.loss_pct() - 1.0).abs() < 1e-9);
        let lat = v.latency.summary_ms();
        assert_eq!(lat.samples, 99, "duplicates do not count twice");
        assert!(
            (lat.p50_ms - 2.0).abs() < 0.03 && (lat.max_ms - 2.0).abs() < 1e-9,
            "{lat:?}"
        );
        let a = r.totals(Kind::Audio);
        assert_eq!((a.packets, a.lost, a.bytes), (10, 0, 800));
        assert!((a.latency.summary_ms().p99_ms - 1.0).abs() < 0.01);
        assert_eq!(r.unstamped, 1);
        assert_eq!(r.join_to_first_ms(), Some(10.0));
        assert_eq!(r.streams_seen(), 2, "video 7 and audio 8");
        assert_eq!(
            r.join_to_first_per_stream_ms(),
            vec![10.0, 10.0],
            "each stream's first packet, 10 ms after the join"
        );
    }
}
