//! Per-consumer forwarding decisions: which simulcast layer to forward and
//! how to rewrite sequence numbers and timestamps so the receiver sees one
//! continuous stream across layer switches, pauses and resumes.

use std::time::Instant;
use str0m::format::Codec;

/// What to do with one incoming packet for one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub forward: bool,
    /// The consumer moved to a new source layer with this packet.
    pub switched: bool,
    /// A layer whose key frame the consumer waits for.
    pub want_keyframe: Option<usize>,
}

/// Layer selection of one consumer: forward the best layer that is sending,
/// switching only at the first packet of a key frame of the target layer and
/// forwarding the old layer meanwhile.
#[derive(Debug, Clone)]
pub(crate) struct LayerSwitch {
    simulcast: bool,
    current: Option<usize>,
}

impl LayerSwitch {
    pub fn new(simulcast: bool) -> Self {
        LayerSwitch { simulcast, current: if simulcast { None } else { Some(0) } }
    }

    /// The layer being forwarded, if any.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// Start over (after a resume): a simulcast consumer waits for a key frame again.
    pub fn restart(&mut self) {
        if self.simulcast {
            self.current = None;
        }
    }

    /// Decide for a packet of `layer`; `best` is the highest layer now sending.
    pub fn accept(&mut self, layer: usize, best: Option<usize>, keyframe: bool) -> Decision {
        if !self.simulcast {
            return Decision { forward: true, switched: false, want_keyframe: None };
        }
        let target = best.unwrap_or(layer);
        match self.current {
            Some(cur) if cur == target => Decision { forward: layer == cur, switched: false, want_keyframe: None },
            _ if layer == target && keyframe => {
                self.current = Some(target);
                Decision { forward: true, switched: true, want_keyframe: None }
            }
            Some(cur) => Decision { forward: layer == cur, switched: false, want_keyframe: Some(target) },
            None => Decision { forward: false, switched: false, want_keyframe: Some(target) },
        }
    }
}

/// Rewrites (extended) sequence numbers and RTP timestamps of one consumer.
#[derive(Debug, Clone)]
pub(crate) struct SeqRewriter {
    started: bool,
    rebase: bool,
    base_in: u64,
    base_out: u64,
    ts_offset: u32,
    last_out_seq: u64,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
}

impl SeqRewriter {
    pub fn new() -> Self {
        SeqRewriter {
            started: false,
            rebase: false,
            base_in: 0,
            base_out: 0,
            ts_offset: 0,
            last_out_seq: 0,
            last_out_ts: 0,
            last_out_at: None,
        }
    }

    /// The next packet comes from a different source (layer switch) or after a
    /// gap (resume): continue right after what was sent last.
    pub fn rebase(&mut self) {
        if self.started {
            self.rebase = true;
        }
    }

    /// Map an incoming (extended seq, timestamp) to the outgoing pair, or
    /// `None` for a packet older than the last rebase point.
    pub fn rewrite(&mut self, now: Instant, in_seq: u64, in_ts: u32, clock_rate: u32) -> Option<(u64, u32)> {
        if !self.started {
            // str0m expects outgoing numbers below 65536 unless the rollover counter is signalled.
            self.started = true;
            self.base_in = in_seq;
            self.base_out = 1;
            self.ts_offset = 0;
        } else if self.rebase {
            self.rebase = false;
            let elapsed = self.last_out_at.map(|t| now.saturating_duration_since(t)).unwrap_or_default();
            let ticks = ((elapsed.as_micros() as u64 * clock_rate as u64) / 1_000_000).max(1) as u32;
            self.base_in = in_seq;
            self.base_out = self.last_out_seq + 1;
            self.ts_offset = self.last_out_ts.wrapping_add(ticks).wrapping_sub(in_ts);
        }
        if in_seq < self.base_in {
            return None;
        }
        let out_seq = self.base_out + (in_seq - self.base_in);
        let out_ts = in_ts.wrapping_add(self.ts_offset);
        if out_seq > self.last_out_seq || self.last_out_at.is_none() {
            self.last_out_seq = out_seq;
            self.last_out_ts = out_ts;
            self.last_out_at = Some(now);
        }
        Some((out_seq, out_ts))
    }
}

/// Whether an RTP payload is the first packet of a key frame.
pub(crate) fn is_keyframe_start(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => vp8_keyframe_start(payload),
        Codec::Vp9 => payload.first().is_some_and(|b| b & 0x40 == 0 && b & 0x08 != 0),
        Codec::H264 => h264_keyframe_start(payload),
        // Unknown: take every packet as a switch point.
        _ => true,
    }
}

fn vp8_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let (extended, start, partition) = (b0 & 0x80 != 0, b0 & 0x10 != 0, b0 & 0x07);
    if !start || partition != 0 {
        return false;
    }
    let mut i = 1;
    if extended {
        let Some(&x) = p.get(1) else { return false };
        i = 2;
        if x & 0x80 != 0 {
            // PictureID: 15 bits when its M bit is set.
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    // VP8 payload header: P bit 0 means key frame.
    p.get(i).is_some_and(|b| b & 0x01 == 0)
}

fn h264_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1f {
        5 | 7 => true,
        24 => {
            // STAP-A: 16-bit sizes, each followed by a NAL unit.
            let mut i = 1;
            while i + 2 < p.len() {
                let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                if matches!(p[i + 2] & 0x1f, 5 | 7) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => p.get(1).is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == 5),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sequence_starts_low_and_stays_continuous_across_a_switch() {
        let t0 = Instant::now();
        let mut s = SeqRewriter::new();
        assert_eq!(s.rewrite(t0, 50_000, 1000, 90_000), Some((1, 1000)));
        assert_eq!(s.rewrite(t0, 50_001, 1000, 90_000), Some((2, 1000)));
        s.rebase();
        // The new source has unrelated numbers; 100 ms later.
        let (seq, ts) = s.rewrite(t0 + Duration::from_millis(100), 7, 555, 90_000).expect("forwarded");
        assert_eq!(seq, 3);
        assert_eq!(ts, 1000 + 9000);
        // Older than the switch point: dropped.
        assert_eq!(s.rewrite(t0, 6, 555, 90_000), None);
    }

    #[test]
    fn simulcast_switches_only_on_a_keyframe_of_the_target() {
        let mut l = LayerSwitch::new(true);
        // Nothing forwarded until a key frame of the best layer.
        assert_eq!(l.accept(2, Some(2), false), Decision { forward: false, switched: false, want_keyframe: Some(2) });
        assert!(!l.accept(0, Some(2), true).forward);
        assert_eq!(l.accept(2, Some(2), true), Decision { forward: true, switched: true, want_keyframe: None });
        // The top layer stops: keep forwarding it until the lower one brings a key frame.
        assert_eq!(l.accept(1, Some(1), false), Decision { forward: false, switched: false, want_keyframe: Some(1) });
        assert!(l.accept(1, Some(1), true).switched);
        assert_eq!(l.current(), Some(1));
    }

    #[test]
    fn detects_vp8_and_h264_keyframes() {
        // VP8: X=1,S=1,PID=0; I=1 with 15-bit picture id; payload header P=0.
        assert!(vp8_keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x10]));
        assert!(!vp8_keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x11]));
        assert!(!vp8_keyframe_start(&[0x80, 0x80, 0x81, 0x23, 0x10]));
        assert!(h264_keyframe_start(&[0x65, 0]));
        assert!(h264_keyframe_start(&[0x7c, 0x85]));
        assert!(!h264_keyframe_start(&[0x41, 0]));
    }
}
