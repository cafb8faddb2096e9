//! Per-consumer forwarding decisions: which simulcast layer to forward and
//! how to rewrite sequence numbers, timestamps and VP8 picture numbering so
//! the receiver sees one continuous stream across layer switches, pauses and
//! resumes.

use crate::allocation::temporal::Vp8Temporal;
use std::time::Instant;
use str0m::format::Codec;
use str0m::rtp::{Vp8Descriptor, Vp8Patch};

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
        LayerSwitch {
            simulcast,
            current: if simulcast { None } else { Some(0) },
        }
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
            return Decision {
                forward: true,
                switched: false,
                want_keyframe: None,
            };
        }
        let target = best.unwrap_or(layer);
        match self.current {
            Some(cur) if cur == target => Decision {
                forward: layer == cur,
                switched: false,
                want_keyframe: None,
            },
            _ if layer == target && keyframe => {
                self.current = Some(target);
                Decision {
                    forward: true,
                    switched: true,
                    want_keyframe: None,
                }
            }
            Some(cur) => Decision {
                forward: layer == cur,
                switched: false,
                want_keyframe: Some(target),
            },
            None => Decision {
                forward: false,
                switched: false,
                want_keyframe: Some(target),
            },
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
    pub fn rewrite(
        &mut self,
        now: Instant,
        in_seq: u64,
        in_ts: u32,
        clock_rate: u32,
    ) -> Option<(u64, u32)> {
        if !self.started {
            // str0m expects outgoing numbers below 65536 unless the rollover counter is signalled.
            self.started = true;
            self.base_in = in_seq;
            self.base_out = 1;
            self.ts_offset = 0;
        } else if self.rebase {
            self.rebase = false;
            let elapsed = self
                .last_out_at
                .map(|t| now.saturating_duration_since(t))
                .unwrap_or_default();
            let ticks =
                ((elapsed.as_micros() as u64 * clock_rate as u64) / 1_000_000).max(1) as u32;
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

/// The VP8 payload descriptor of one incoming packet, parsed once before
/// fan-out (and carried through pipes) so each consumer only does arithmetic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vp8Info {
    descriptor: Vp8Descriptor,
    /// The PictureID field is 7 bits wide (M bit clear).
    short_picture_id: bool,
    keyframe: bool,
    /// What the temporal filter needs; `None` when our own parse disagrees
    /// with str0m's (the packet then bypasses the filter).
    temporal: Option<Vp8Temporal>,
}

impl Vp8Info {
    /// `None` for a payload whose descriptor does not parse (truncated,
    /// garbage): such a packet is forwarded as it came.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let descriptor = Vp8Descriptor::parse(payload).ok()?;
        // str0m keeps the width private; a PictureID always sits right after
        // the required and the extension octet, its M bit first.
        let short_picture_id =
            descriptor.picture_id().is_some() && payload.get(2).is_some_and(|b| b & 0x80 == 0);
        let keyframe = descriptor.starts_keyframe(payload);
        Some(Vp8Info {
            descriptor,
            short_picture_id,
            keyframe,
            temporal: Vp8Temporal::parse(payload),
        })
    }

    /// First packet of a key frame.
    pub fn keyframe(&self) -> bool {
        self.keyframe
    }

    /// Temporal layer index, sync bit, frame start and PictureID.
    pub fn temporal(&self) -> Option<&Vp8Temporal> {
        self.temporal.as_ref()
    }
}

/// The numbering one consumer sends for one packet (`None`: field absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Vp8Numbers {
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
    pub key_idx: Option<u8>,
}

/// One wrapping counter of the VP8 descriptor as a consumer sends it:
/// outgoing = incoming + offset, modulo its width.
#[derive(Debug, Clone)]
struct WrappingCounter {
    mask: u16,
    offset: u16,
    /// The newest value sent so far.
    newest_out: Option<u16>,
    /// The next value comes from a new source: continue after `newest_out`.
    rebase: bool,
}

impl WrappingCounter {
    fn new(bits: u32) -> Self {
        WrappingCounter {
            mask: (1 << bits) - 1,
            offset: 0,
            newest_out: None,
            rebase: false,
        }
    }

    /// Map `input`; the first value after a rebase becomes `newest_out + step`,
    /// later ones keep that offset, so every packet of one picture (and a
    /// late or repeated one) maps to the same number.
    fn map(&mut self, input: u16, step: u16) -> u16 {
        let input = input & self.mask;
        if std::mem::take(&mut self.rebase) {
            if let Some(newest) = self.newest_out {
                self.offset = newest.wrapping_add(step).wrapping_sub(input) & self.mask;
            }
        }
        let out = input.wrapping_add(self.offset) & self.mask;
        if self
            .newest_out
            .is_none_or(|newest| self.is_newer(out, newest))
        {
            self.newest_out = Some(out);
        }
        out
    }

    /// `a` is ahead of `b` by less than half the range.
    fn is_newer(&self, a: u16, b: u16) -> bool {
        let ahead = a.wrapping_sub(b) & self.mask;
        ahead != 0 && ahead <= self.mask / 2
    }
}

/// Rewrites the VP8 PictureID, TL0PICIDX and KEYIDX of one consumer. Each
/// simulcast layer numbers its pictures on its own, so at a layer switch (or
/// resume) the receiver would see them jump, often backwards, and libwebrtc
/// takes the new layer's frames for old ones and freezes until a later key
/// frame. The consumer instead continues its own numbering: the first picture
/// after a rebase is the last one sent + 1 (TL0PICIDX and KEYIDX likewise).
///
/// If that first packet is not a key frame (a non-simulcast consumer resumed
/// mid-stream) the PictureID and TL0PICIDX skip one extra number, so the
/// receiver sees a missing picture and waits for the requested key frame
/// instead of decoding a delta frame against the wrong reference.
///
/// Counting is done in 15 bits. A 7-bit PictureID is first extended against
/// the previous one of the same source, and the field carries the low 7 bits
/// of the result, which continue modulo 128 whenever the 15-bit count
/// continues: so 7-bit and 15-bit layers mix, and the field keeps its width
/// (the payload is never resized).
#[derive(Debug, Clone)]
pub(crate) struct Vp8Rewriter {
    picture_id: WrappingCounter,
    tl0_pic_idx: WrappingCounter,
    key_idx: WrappingCounter,
    /// The newest incoming PictureID of the current source, extended to 15 bits.
    newest_in_picture_id: Option<u16>,
}

impl Vp8Rewriter {
    pub fn new() -> Self {
        Vp8Rewriter {
            picture_id: WrappingCounter::new(15),
            tl0_pic_idx: WrappingCounter::new(8),
            key_idx: WrappingCounter::new(5),
            newest_in_picture_id: None,
        }
    }

    /// The next packet comes from a different source (layer switch) or after
    /// a gap (resume); call it where `SeqRewriter::rebase` is called.
    pub fn rebase(&mut self) {
        self.picture_id.rebase = true;
        self.tl0_pic_idx.rebase = true;
        self.key_idx.rebase = true;
        self.newest_in_picture_id = None;
    }

    /// The numbers to send for a packet.
    #[cfg(test)]
    pub fn map(&mut self, vp8: &Vp8Info) -> Vp8Numbers {
        self.map_as(vp8, None)
    }

    /// As [`Vp8Rewriter::map`], with `picture_id` (the temporal filter's
    /// closed-up number, same width) in place of the descriptor's.
    fn map_as(&mut self, vp8: &Vp8Info, picture_id: Option<u16>) -> Vp8Numbers {
        let step = if vp8.keyframe { 1 } else { 2 };
        let picture_id = picture_id.or(vp8.descriptor.picture_id()).map(|id| {
            let extended = self.extend_picture_id(id, vp8.short_picture_id);
            let out = self.picture_id.map(extended, step);
            if vp8.short_picture_id {
                out & 0x7f
            } else {
                out
            }
        });
        Vp8Numbers {
            picture_id,
            tl0_pic_idx: vp8
                .descriptor
                .tl0_pic_idx()
                .map(|v| self.tl0_pic_idx.map(v.into(), step) as u8),
            key_idx: vp8
                .descriptor
                .key_idx()
                .map(|v| self.key_idx.map(v.into(), 1) as u8),
        }
    }

    /// The patch that gives a packet this consumer's numbering, or `None` when
    /// it goes out as it came.
    /// `picture_id`: the temporal filter's closed-up PictureID, if it dropped any.
    pub fn rewrite(&mut self, vp8: &Vp8Info, picture_id: Option<u16>) -> Option<Vp8Patch> {
        let out = self.map_as(vp8, picture_id);
        let d = &vp8.descriptor;
        if out.picture_id == d.picture_id()
            && out.tl0_pic_idx == d.tl0_pic_idx()
            && out.key_idx == d.key_idx()
        {
            return None;
        }
        let mut patch = d.patch();
        if let Some(v) = out.picture_id {
            patch = patch.picture_id(v);
        }
        if let Some(v) = out.tl0_pic_idx {
            patch = patch.tl0_pic_idx(v);
        }
        if let Some(v) = out.key_idx {
            patch = patch.key_idx(v);
        }
        // Every value was masked to its field's width, so this cannot fail;
        // if it ever did, the packet would go out unpatched.
        patch.build().ok()
    }

    fn extend_picture_id(&mut self, id: u16, short: bool) -> u16 {
        let extended = match (short, self.newest_in_picture_id) {
            (true, Some(newest)) => {
                // The nearest 15-bit value with these low 7 bits.
                let mut delta = id.wrapping_sub(newest) & 0x7f;
                if delta >= 0x40 {
                    delta = delta.wrapping_sub(0x80);
                }
                newest.wrapping_add(delta) & 0x7fff
            }
            _ => id & 0x7fff,
        };
        let ahead = extended.wrapping_sub(self.newest_in_picture_id.unwrap_or(extended)) & 0x7fff;
        if self.newest_in_picture_id.is_none() || (ahead != 0 && ahead < 0x4000) {
            self.newest_in_picture_id = Some(extended);
        }
        extended
    }
}

/// Whether an RTP payload is the first packet of a key frame.
pub(crate) fn is_keyframe_start(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => vp8_keyframe_start(payload),
        Codec::Vp9 => payload
            .first()
            .is_some_and(|b| b & 0x40 == 0 && b & 0x08 != 0),
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
        let (seq, ts) = s
            .rewrite(t0 + Duration::from_millis(100), 7, 555, 90_000)
            .expect("forwarded");
        assert_eq!(seq, 3);
        assert_eq!(ts, 1000 + 9000);
        // Older than the switch point: dropped.
        assert_eq!(s.rewrite(t0, 6, 555, 90_000), None);
    }

    #[test]
    fn simulcast_switches_only_on_a_keyframe_of_the_target() {
        let mut l = LayerSwitch::new(true);
        // Nothing forwarded until a key frame of the best layer.
        assert_eq!(
            l.accept(2, Some(2), false),
            Decision {
                forward: false,
                switched: false,
                want_keyframe: Some(2)
            }
        );
        assert!(!l.accept(0, Some(2), true).forward);
        assert_eq!(
            l.accept(2, Some(2), true),
            Decision {
                forward: true,
                switched: true,
                want_keyframe: None
            }
        );
        // The top layer stops: keep forwarding it until the lower one brings a key frame.
        assert_eq!(
            l.accept(1, Some(1), false),
            Decision {
                forward: false,
                switched: false,
                want_keyframe: Some(1)
            }
        );
        assert!(l.accept(1, Some(1), true).switched);
        assert_eq!(l.current(), Some(1));
    }

    /// A VP8 payload: descriptor with the given fields, then the payload
    /// header (P bit) and filler. `start`: first packet of a picture.
    fn vp8(
        picture_id: Option<(u16, bool)>,
        tl0: Option<u8>,
        key_idx: Option<u8>,
        start: bool,
        key: bool,
    ) -> Vec<u8> {
        let mut p = vec![if start { 0x90 } else { 0x80 }];
        let has_t = tl0.is_some() || key_idx.is_some();
        p.push(
            (picture_id.is_some() as u8) << 7
                | (tl0.is_some() as u8) << 6
                | (has_t as u8) << 5
                | (key_idx.is_some() as u8) << 4,
        );
        match picture_id {
            Some((id, true)) => p.extend([0x80 | (id >> 8) as u8, id as u8]),
            Some((id, false)) => p.push(id as u8 & 0x7f),
            None => {}
        }
        if let Some(t) = tl0 {
            p.push(t);
        }
        if has_t {
            // TID 0, Y 0, KEYIDX.
            p.push(key_idx.unwrap_or(0) & 0x1f);
        }
        p.push(if key { 0x00 } else { 0x01 });
        p.extend([0xab; 20]);
        p
    }

    fn map(r: &mut Vp8Rewriter, payload: &[u8]) -> Vp8Numbers {
        r.map(&Vp8Info::parse(payload).expect("valid descriptor"))
    }

    fn pictures(r: &mut Vp8Rewriter, ids: impl Iterator<Item = u16>, first_key: bool) -> Vec<u16> {
        ids.enumerate()
            .map(|(i, id)| {
                map(
                    r,
                    &vp8(Some((id, true)), None, None, true, first_key && i == 0),
                )
                .picture_id
                .expect("picture id")
            })
            .collect()
    }

    #[test]
    fn vp8_picture_id_continues_across_a_switch_between_unrelated_layers() {
        let mut r = Vp8Rewriter::new();
        // Layer 2 starts the consumer: sent as it comes.
        assert_eq!(
            pictures(&mut r, 20_000..20_005, true),
            vec![20_000, 20_001, 20_002, 20_003, 20_004]
        );
        // Switch to layer 0, whose numbers are far behind: continue at +1.
        r.rebase();
        assert_eq!(
            pictures(&mut r, 300..303, true),
            vec![20_005, 20_006, 20_007]
        );
        // And to layer 1, far ahead.
        r.rebase();
        assert_eq!(pictures(&mut r, 31_000..31_002, true), vec![20_008, 20_009]);
        // A late packet of a picture from after the switch point maps consistently.
        assert_eq!(pictures(&mut r, 31_000..31_001, false), vec![20_008]);
    }

    #[test]
    fn vp8_picture_id_wraps_at_15_bits() {
        let mut r = Vp8Rewriter::new();
        assert_eq!(pictures(&mut r, 0x7ffd..0x7fff, true), vec![0x7ffd, 0x7ffe]);
        r.rebase();
        // 10, 11, 12 become 0x7fff, 0, 1.
        assert_eq!(pictures(&mut r, 10..13, true), vec![0x7fff, 0, 1]);
        // The incoming layer wraps too.
        r.rebase();
        let ids = [0x7ffe, 0x7fff, 0, 1].into_iter();
        assert_eq!(pictures(&mut r, ids, true), vec![2, 3, 4, 5]);
    }

    #[test]
    fn vp8_every_packet_of_a_picture_keeps_one_picture_id() {
        let mut r = Vp8Rewriter::new();
        map(&mut r, &vp8(Some((5000, true)), Some(9), None, true, true));
        r.rebase();
        // A three-packet key frame of the new layer, then a delta frame.
        let frame = [
            vp8(Some((77, true)), Some(200), None, true, true),
            vp8(Some((77, true)), Some(200), None, false, true),
            vp8(Some((77, true)), Some(200), None, false, true),
        ];
        for p in &frame {
            assert_eq!(
                map(&mut r, p),
                Vp8Numbers {
                    picture_id: Some(5001),
                    tl0_pic_idx: Some(10),
                    key_idx: None
                }
            );
        }
        let next = map(&mut r, &vp8(Some((78, true)), Some(201), None, true, false));
        assert_eq!((next.picture_id, next.tl0_pic_idx), (Some(5002), Some(11)));
    }

    #[test]
    fn vp8_tl0picidx_continues_and_wraps_at_255() {
        let mut r = Vp8Rewriter::new();
        let tl0 = |r: &mut Vp8Rewriter, pid: u16, t: u8, key: bool| {
            map(r, &vp8(Some((pid, true)), Some(t), None, true, key))
                .tl0_pic_idx
                .expect("tl0")
        };
        assert_eq!(tl0(&mut r, 1, 253, true), 253);
        assert_eq!(tl0(&mut r, 2, 254, false), 254);
        r.rebase();
        // The new layer's key frame is TL0 number 17: it becomes 255, then 0.
        assert_eq!(tl0(&mut r, 900, 17, true), 255);
        // A higher temporal layer frame repeats the TL0PICIDX it depends on.
        assert_eq!(tl0(&mut r, 901, 17, false), 255);
        assert_eq!(tl0(&mut r, 902, 18, false), 0);
        assert_eq!(tl0(&mut r, 903, 19, false), 1);
    }

    #[test]
    fn vp8_keyidx_continues_modulo_32() {
        let mut r = Vp8Rewriter::new();
        let key_idx = |r: &mut Vp8Rewriter, pid: u16, k: u8| {
            map(r, &vp8(Some((pid, true)), Some(1), Some(k), true, true))
                .key_idx
                .expect("keyidx")
        };
        assert_eq!(key_idx(&mut r, 1, 30), 30);
        assert_eq!(key_idx(&mut r, 2, 31), 31);
        r.rebase();
        assert_eq!(key_idx(&mut r, 500, 4), 0);
        assert_eq!(key_idx(&mut r, 501, 5), 1);
    }

    #[test]
    fn vp8_resume_on_a_delta_frame_leaves_a_gap() {
        let mut r = Vp8Rewriter::new();
        map(&mut r, &vp8(Some((100, true)), Some(50), None, true, true));
        r.rebase();
        // Not a key frame: the receiver must see a missing picture and TL0.
        let out = map(&mut r, &vp8(Some((400, true)), Some(80), None, true, false));
        assert_eq!((out.picture_id, out.tl0_pic_idx), (Some(102), Some(52)));
    }

    #[test]
    fn vp8_seven_bit_picture_ids_keep_their_width_and_continue() {
        let mut r = Vp8Rewriter::new();
        let short = |r: &mut Vp8Rewriter, id: u16, key: bool| {
            map(r, &vp8(Some((id, false)), None, None, true, key))
                .picture_id
                .expect("id")
        };
        // A 15-bit layer first, then a 7-bit one: low 7 bits of the continued count.
        assert_eq!(pictures(&mut r, 0x1234..0x1235, true), vec![0x1234]);
        r.rebase();
        assert_eq!(short(&mut r, 120, true), 0x35);
        // The 7-bit source wraps (127 -> 0) and the output keeps counting.
        let outs: Vec<u16> = (121..=127)
            .chain(0..3)
            .map(|id| short(&mut r, id, false))
            .collect();
        assert_eq!(outs, (0x36..0x40).collect::<Vec<_>>());
        // Back to a 15-bit layer: continues the 15-bit count after 0x123f.
        r.rebase();
        assert_eq!(pictures(&mut r, 9..10, true), vec![0x1240]);
    }

    #[test]
    fn vp8_patch_writes_the_mapped_numbers() {
        let mut r = Vp8Rewriter::new();
        let first = vp8(Some((7000, true)), Some(3), Some(2), true, true);
        let info = Vp8Info::parse(&first).expect("valid");
        assert_eq!(
            r.rewrite(&info, None),
            None,
            "a consumer's first source goes out unchanged"
        );
        r.rebase();
        let next = vp8(Some((12, true)), Some(200), Some(9), true, true);
        let info = Vp8Info::parse(&next).expect("valid");
        let expected = info
            .descriptor
            .patch()
            .picture_id(7001)
            .tl0_pic_idx(4)
            .key_idx(3)
            .build()
            .expect("fits");
        assert_eq!(r.rewrite(&info, None), Some(expected));
    }

    #[test]
    fn vp8_garbage_is_not_parsed_and_never_panics() {
        let mut r = Vp8Rewriter::new();
        map(&mut r, &vp8(Some((5, true)), Some(1), Some(1), true, true));
        r.rebase();
        // Truncated descriptors, L without T, empty.
        for bad in [
            &[][..],
            &[0x90],
            &[0x90, 0xf0, 0x80],
            &[0x90, 0x40, 0x05, 0x00],
            &[0x90, 0x80, 0x81],
        ] {
            assert!(Vp8Info::parse(bad).is_none(), "{bad:02x?}");
        }
        // Pseudo-random payloads: whatever parses maps and patches without panicking.
        let mut x: u32 = 0x1234_5678;
        for len in 0..2000usize {
            let payload: Vec<u8> = (0..len % 12)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            if let Some(info) = Vp8Info::parse(&payload) {
                let _ = r.rewrite(&info, None);
                if len % 7 == 0 {
                    r.rebase();
                }
            }
        }
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
