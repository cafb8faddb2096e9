//! VP8 temporal layer filtering for one consumer: which packets of the
//! forwarded simulcast layer to send for a target temporal layer, where the
//! consumer may move up or down a temporal layer, and the renumbering that
//! keeps the dropped packets from showing as losses.
//!
//! Browsers send VP8 L1T3 per simulcast layer: T0 at a quarter of the frame
//! rate references only T0, T1 references T0 (and T1), T2 references T0 and
//! T1 and is never referenced. Dropping every frame above the target keeps
//! the rest decodable. Switching rules:
//! - down: at the first packet of any frame; the frames above the new target
//!   are then dropped whole (a half-sent frame would be a loss the receiver
//!   NACKs).
//! - up by one layer, to `current + 1`: at the first packet of a frame of
//!   that layer with the layer-sync bit (Y), which depends only on T0. A sync
//!   frame of a layer two above is not enough: the next frames of the layer
//!   between reference frames of it that were not sent.
//! - up to the target at once: at the first packet of a key frame.
//!
//! The descriptor's N bit (discardable) is not used: the temporal index says
//! the same for L1T3 and is present in every packet of a frame.
//!
//! Renumbering: the receiver sees a gap in sequence numbers as loss (it
//! NACKs, the send cache cannot answer, and the loss shows in its stats and
//! its congestion feedback) and, for VP8, a gap in PictureIDs as a missing frame, which libwebrtc's
//! reference finder may wait for before it decodes a T1 frame. So each
//! dropped packet shifts later sequence numbers down by one and each dropped
//! picture later PictureIDs, and the filter hands the forwarder the closed-up
//! numbers as the *incoming* ones: `SeqRewriter::rewrite` and the VP8
//! PictureID mapping then continue to work as if the dropped packets never
//! existed. A packet dropped after a newer one was already forwarded (reordered
//! on the way in) cannot be closed up, its number was already given out; it
//! stays a gap.

use std::collections::VecDeque;

/// Highest VP8 temporal layer index (2 bits in the descriptor).
const MAX_TID: u8 = 3;
/// Packets or pictures older than this behind the newest are refused: the
/// record of dropped numbers is kept for this long only (5 s at 200 packets/s).
const HORIZON: u64 = 1000;

/// What the temporal filter needs from one VP8 payload descriptor (RFC 7741).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Vp8Temporal {
    /// Temporal layer index; 0 when the descriptor has no T field.
    pub tid: u8,
    /// Layer sync (Y): this frame references only T0 frames.
    pub sync: bool,
    /// First packet of a frame (S set, partition 0).
    pub frame_start: bool,
    /// First packet of a key frame.
    pub keyframe: bool,
    /// PictureID and whether it is 15 bits wide.
    pub picture_id: Option<(u16, bool)>,
}

impl Vp8Temporal {
    /// `None` for a payload whose descriptor does not parse; forward such a
    /// packet through [`TemporalFilter::pass`].
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let b0 = *payload.first()?;
        let frame_start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
        let mut info = Vp8Temporal {
            tid: 0,
            sync: false,
            frame_start,
            keyframe: false,
            picture_id: None,
        };
        let mut i = 1;
        if b0 & 0x80 != 0 {
            let x = *payload.get(i)?;
            i += 1;
            let (has_pid, has_tl0, has_tid, has_key_idx) =
                (x & 0x80 != 0, x & 0x40 != 0, x & 0x20 != 0, x & 0x10 != 0);
            if has_tl0 && !has_tid {
                return None;
            }
            if has_pid {
                let high = *payload.get(i)?;
                i += 1;
                info.picture_id = Some(if high & 0x80 != 0 {
                    let low = *payload.get(i)?;
                    i += 1;
                    ((u16::from(high & 0x7f) << 8) | u16::from(low), true)
                } else {
                    (u16::from(high), false)
                });
            }
            if has_tl0 {
                payload.get(i)?;
                i += 1;
            }
            if has_tid || has_key_idx {
                let t = *payload.get(i)?;
                i += 1;
                if has_tid {
                    info.tid = t >> 6;
                    info.sync = t & 0x20 != 0;
                }
            }
        }
        // The VP8 payload header follows; its P bit is 0 on a key frame.
        let header = *payload.get(i)?;
        info.keyframe = frame_start && header & 0x01 == 0;
        Some(info)
    }
}

/// The filter's verdict on one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TemporalDecision {
    /// Send it, as if it had come with these numbers: give `seq` to
    /// `SeqRewriter::rewrite` and `picture_id` (same width as the packet's)
    /// to the VP8 PictureID mapping in place of the packet's own.
    Forward {
        seq: u64,
        picture_id: Option<u16>,
    },
    Drop,
}

/// Temporal layer selection of one consumer (of a VP8 producer).
#[derive(Debug, Clone)]
pub(crate) struct TemporalFilter {
    target: u8,
    /// The highest temporal layer being forwarded; `None` after a restart
    /// until the first frame starts.
    current: Option<u8>,
    seqs: GapCloser,
    pictures: GapCloser,
    /// The newest PictureID of the current source, extended to 64 bits.
    newest_picture: Option<u64>,
}

impl TemporalFilter {
    /// A filter forwarding up to temporal layer `target`.
    pub fn new(target: u8) -> Self {
        TemporalFilter {
            target: target.min(MAX_TID),
            current: None,
            seqs: GapCloser::default(),
            pictures: GapCloser::default(),
            newest_picture: None,
        }
    }

    /// The allocator's choice; takes effect at the next switch point.
    pub fn set_target(&mut self, target: u8) {
        self.target = target.min(MAX_TID);
    }

    /// The temporal layer it moves to (or holds).
    pub fn target(&self) -> u8 {
        self.target
    }

    /// The temporal layer being forwarded now.
    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// Waiting to move up: the target is above what is forwarded. Should a
    /// publisher send no sync frames, only a key frame ends the wait; the
    /// router may ask for one when this lasts.
    #[cfg(test)]
    pub fn waiting_to_move_up(&self) -> bool {
        self.current.is_some_and(|current| current < self.target)
    }

    /// The next packet comes from a different source (simulcast switch) or
    /// after a gap (resume): call it where `SeqRewriter::rebase` is called,
    /// before filtering that packet. The new source's numbers are unrelated,
    /// so the record of dropped ones starts over.
    pub fn restart(&mut self) {
        self.current = None;
        self.seqs = GapCloser::default();
        self.pictures = GapCloser::default();
        self.newest_picture = None;
    }

    /// Decide for a VP8 packet with extended sequence number `seq`.
    pub fn filter(&mut self, seq: u64, vp8: &Vp8Temporal) -> TemporalDecision {
        if vp8.frame_start {
            self.switch_at_frame_start(vp8);
        }
        let picture = vp8
            .picture_id
            .map(|(id, long)| (self.extend_picture_id(id, long), long));
        let forward = self.current.is_some_and(|current| vp8.tid <= current);
        if !forward {
            self.seqs.dropped(seq);
            if let Some((picture, _)) = picture {
                self.pictures.dropped(picture);
            }
            return TemporalDecision::Drop;
        }
        let Some(seq) = self.seqs.map(seq) else {
            return TemporalDecision::Drop;
        };
        let picture_id = match picture {
            Some((picture, long)) => match self.pictures.map(picture) {
                Some(closed) => Some((closed & if long { 0x7fff } else { 0x7f }) as u16),
                None => return TemporalDecision::Drop,
            },
            None => None,
        };
        TemporalDecision::Forward { seq, picture_id }
    }

    /// A packet that is not filtered (its descriptor did not parse) still
    /// gets the closed-up sequence number; `None`: too old to number.
    pub fn pass(&mut self, seq: u64) -> Option<u64> {
        self.seqs.map(seq)
    }

    fn switch_at_frame_start(&mut self, vp8: &Vp8Temporal) {
        let current = match self.current {
            // After a restart: everything from a key frame, else T0 until a sync frame.
            None if vp8.keyframe => self.target,
            None => 0,
            Some(_) if vp8.keyframe => self.target,
            Some(current) if current > self.target => self.target,
            Some(current) if current < self.target && vp8.sync && vp8.tid == current + 1 => vp8.tid,
            Some(current) => current,
        };
        self.current = Some(current);
    }

    /// The nearest 64-bit value to the newest PictureID with these low 15
    /// (or 7) bits, so wraps and width changes keep counting.
    fn extend_picture_id(&mut self, id: u16, long: bool) -> u64 {
        let bits = if long { 15 } else { 7 };
        let modulus = 1u64 << bits;
        let extended = match self.newest_picture {
            // Start high, so values before the first one do not underflow.
            None => (1 << 32) + u64::from(id),
            Some(newest) => {
                let ahead = (u64::from(id).wrapping_sub(newest)) & (modulus - 1);
                if ahead < modulus / 2 {
                    newest + ahead
                } else {
                    newest - (modulus - ahead)
                }
            }
        };
        if self.newest_picture.is_none_or(|newest| extended > newest) {
            self.newest_picture = Some(extended);
        }
        extended
    }
}

/// Closes the gaps dropped values leave in a numbering: a kept value moves
/// down by the number of dropped values below it.
#[derive(Debug, Clone, Default)]
struct GapCloser {
    /// Dropped values, ascending, newer than `newest - HORIZON`.
    dropped: VecDeque<u64>,
    /// Dropped values forgotten from the front of `dropped`.
    forgotten: u64,
    /// The newest value seen, kept or dropped.
    newest: Option<u64>,
}

impl GapCloser {
    /// Record a dropped value. Only a value newer than all seen so far can be
    /// closed up; an older one was already counted in what was sent after it.
    fn dropped(&mut self, value: u64) {
        if self.newest.is_some_and(|newest| value <= newest) {
            return;
        }
        self.newest = Some(value);
        self.dropped.push_back(value);
        while self
            .dropped
            .front()
            .is_some_and(|&oldest| oldest + HORIZON < value)
        {
            self.dropped.pop_front();
            self.forgotten += 1;
        }
    }

    /// The closed-up value of a kept one; `None` when it is older than the
    /// record (its shift is no longer known).
    fn map(&mut self, value: u64) -> Option<u64> {
        if let Some(newest) = self.newest {
            if value + HORIZON < newest {
                return None;
            }
        }
        if self.newest.is_none_or(|newest| value > newest) {
            self.newest = Some(value);
        }
        let below = self.forgotten + self.dropped.partition_point(|&d| d < value) as u64;
        Some(value - below)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One packet of an L1T3 stream: PictureID (15 bits), TL0PICIDX, TID/Y.
    fn packet(picture_id: u16, tid: u8, sync: bool, start: bool, key: bool) -> Vec<u8> {
        let mut p = vec![if start { 0x90 } else { 0x80 }, 0xe0];
        p.extend([0x80 | (picture_id >> 8) as u8, picture_id as u8, 7]);
        p.push(tid << 6 | (sync as u8) << 5);
        p.push(if key { 0x00 } else { 0x01 });
        p.extend([0xab; 10]);
        p
    }

    fn info(p: &[u8]) -> Vp8Temporal {
        Vp8Temporal::parse(p).expect("valid descriptor")
    }

    /// The L1T3 pattern libwebrtc sends: T0 T2 T1 T2, repeated; the first
    /// frame of each upper layer after `sync_from` carries Y.
    fn l1t3_tid(frame: u16) -> u8 {
        [0, 2, 1, 2][frame as usize % 4]
    }

    /// Feeds `frames` one-packet frames starting at PictureID/seq `first`,
    /// returns (tid, decision) per frame.
    fn run(
        f: &mut TemporalFilter,
        first: u16,
        frames: u16,
        key_at: Option<u16>,
        sync_at: &[u16],
    ) -> Vec<(u8, TemporalDecision)> {
        (first..first + frames)
            .map(|n| {
                let tid = if key_at == Some(n) { 0 } else { l1t3_tid(n) };
                let p = packet(n, tid, sync_at.contains(&n), true, key_at == Some(n));
                (tid, f.filter(u64::from(n), &info(&p)))
            })
            .collect()
    }

    fn forwarded(out: &[(u8, TemporalDecision)]) -> Vec<(u8, u64, Option<u16>)> {
        out.iter()
            .filter_map(|(tid, d)| match d {
                TemporalDecision::Forward { seq, picture_id } => Some((*tid, *seq, *picture_id)),
                TemporalDecision::Drop => None,
            })
            .collect()
    }

    #[test]
    fn parses_tid_sync_start_and_keyframe() {
        assert_eq!(
            info(&packet(300, 2, true, true, false)),
            Vp8Temporal {
                tid: 2,
                sync: true,
                frame_start: true,
                keyframe: false,
                picture_id: Some((300, true))
            }
        );
        assert!(info(&packet(1, 0, false, true, true)).keyframe);
        // A continuation packet is neither a frame start nor a key frame.
        let cont = info(&packet(1, 0, false, false, true));
        assert!(!cont.frame_start && !cont.keyframe);
        // No extension: TID 0, no PictureID; a 7-bit PictureID.
        assert_eq!(info(&[0x10, 0x00, 1]).tid, 0);
        assert_eq!(info(&[0x90, 0x80, 0x05, 0x01]).picture_id, Some((5, false)));
        // Truncated or malformed (L without T).
        for bad in [
            &[][..],
            &[0x90],
            &[0x90, 0xe0, 0x80, 1, 2],
            &[0x90, 0x40, 1, 0],
        ] {
            assert_eq!(Vp8Temporal::parse(bad), None, "{bad:02x?}");
        }
    }

    #[test]
    fn target_t0_forwards_a_quarter_of_the_frames_without_gaps_in_numbers() {
        let mut f = TemporalFilter::new(0);
        let out = run(&mut f, 100, 12, Some(100), &[]);
        // Frames 100, 104, 108 (T0) go; their numbers are consecutive.
        assert_eq!(
            forwarded(&out),
            vec![
                (0, 100, Some(100)),
                (0, 101, Some(101)),
                (0, 102, Some(102))
            ]
        );
    }

    #[test]
    fn target_t1_drops_only_t2() {
        let mut f = TemporalFilter::new(1);
        let out = run(&mut f, 0, 8, Some(0), &[]);
        let tids: Vec<u8> = forwarded(&out).iter().map(|(t, ..)| *t).collect();
        assert_eq!(tids, vec![0, 1, 0, 1]);
        let seqs: Vec<u64> = forwarded(&out).iter().map(|(_, s, _)| *s).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3]);
    }

    #[test]
    fn moving_up_waits_for_a_sync_frame_of_the_next_layer() {
        let mut f = TemporalFilter::new(0);
        run(&mut f, 0, 8, Some(0), &[]);
        f.set_target(2);
        assert_eq!(
            (f.target(), f.current()),
            (2, Some(0)),
            "the target waits for a switch point"
        );
        assert!(f.waiting_to_move_up());
        // Frames 8..16: T2 at 9 and 11 and T1 at 10 without sync: still T0 only.
        let out = run(&mut f, 8, 4, None, &[]);
        assert_eq!(forwarded(&out).len(), 1);
        assert_eq!(f.current(), Some(0));
        // A T2 sync frame (13) is not enough from T0; the T1 sync frame (14) is.
        let out = run(&mut f, 12, 4, None, &[13, 14]);
        assert_eq!(
            forwarded(&out).iter().map(|(t, ..)| *t).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(f.current(), Some(1));
        // Then T2 at its next sync frame (17).
        let out = run(&mut f, 16, 4, None, &[17]);
        assert_eq!(
            forwarded(&out).iter().map(|(t, ..)| *t).collect::<Vec<_>>(),
            vec![0, 2, 1, 2]
        );
        assert_eq!(f.current(), Some(2));
        assert!(!f.waiting_to_move_up());
    }

    #[test]
    fn a_key_frame_moves_straight_to_the_target() {
        let mut f = TemporalFilter::new(0);
        run(&mut f, 0, 4, Some(0), &[]);
        f.set_target(2);
        let out = run(&mut f, 4, 4, Some(4), &[]);
        assert_eq!(forwarded(&out).len(), 4);
        assert_eq!(f.current(), Some(2));
    }

    #[test]
    fn moving_down_happens_at_the_next_frame_not_inside_one() {
        let mut f = TemporalFilter::new(2);
        run(&mut f, 0, 1, Some(0), &[]);
        // A T2 frame of three packets starts; the target drops in the middle.
        let first = f.filter(1, &info(&packet(1, 2, false, true, false)));
        f.set_target(0);
        let rest = [2, 3].map(|seq| f.filter(seq, &info(&packet(1, 2, false, false, false))));
        assert!(matches!(first, TemporalDecision::Forward { .. }));
        assert!(
            rest.iter()
                .all(|d| matches!(d, TemporalDecision::Forward { .. })),
            "the frame is finished"
        );
        // The next frame (T1) is dropped, the one after (T0) goes with closed-up numbers.
        assert_eq!(
            f.filter(4, &info(&packet(2, 1, false, true, false))),
            TemporalDecision::Drop
        );
        assert_eq!(
            f.filter(5, &info(&packet(3, 0, false, true, false))),
            TemporalDecision::Forward {
                seq: 4,
                picture_id: Some(2)
            }
        );
        assert_eq!(f.current(), Some(0));
    }

    #[test]
    fn after_a_restart_it_waits_for_a_frame_start_and_numbers_anew() {
        let mut f = TemporalFilter::new(2);
        run(&mut f, 0, 8, Some(0), &[]);
        f.restart();
        // A continuation packet of a frame that started before: not sent.
        assert_eq!(
            f.filter(5000, &info(&packet(900, 0, false, false, false))),
            TemporalDecision::Drop
        );
        // A delta frame start: T0 only until a sync frame.
        assert!(matches!(
            f.filter(5001, &info(&packet(901, 0, false, true, false))),
            TemporalDecision::Forward { .. }
        ));
        assert_eq!(
            f.filter(5002, &info(&packet(902, 2, false, true, false))),
            TemporalDecision::Drop
        );
        // A key frame: everything up to the target.
        assert_eq!(
            f.filter(5003, &info(&packet(903, 0, false, true, true))),
            TemporalDecision::Forward {
                seq: 5001,
                picture_id: Some(901)
            }
        );
        assert_eq!(
            f.filter(5004, &info(&packet(904, 2, false, true, false))),
            TemporalDecision::Forward {
                seq: 5002,
                picture_id: Some(902)
            }
        );
    }

    #[test]
    fn a_late_packet_of_a_kept_frame_keeps_its_closed_up_number() {
        let mut f = TemporalFilter::new(0);
        run(&mut f, 0, 1, Some(0), &[]);
        // Frame 1 (T0) has packets 10 and 11; 11 arrives first, then T2 frame 2 (12, dropped), then 10.
        let a = f.filter(11, &info(&packet(1, 0, false, false, false)));
        f.filter(12, &info(&packet(2, 2, false, true, false)));
        let b = f.filter(10, &info(&packet(1, 0, false, true, false)));
        let c = f.filter(13, &info(&packet(3, 0, false, true, false)));
        assert_eq!(
            a,
            TemporalDecision::Forward {
                seq: 11,
                picture_id: Some(1)
            }
        );
        assert_eq!(
            b,
            TemporalDecision::Forward {
                seq: 10,
                picture_id: Some(1)
            }
        );
        // 12 was dropped and closed up: 13 follows 11 directly; picture 3 follows 1.
        assert_eq!(
            c,
            TemporalDecision::Forward {
                seq: 12,
                picture_id: Some(2)
            }
        );
    }

    #[test]
    fn a_late_dropped_packet_leaves_its_gap_rather_than_reuse_a_number() {
        let mut f = TemporalFilter::new(0);
        run(&mut f, 0, 1, Some(0), &[]);
        // 21 (T0) overtakes 20 (the last packet of a T2 frame whose first packet is lost).
        assert_eq!(
            f.filter(21, &info(&packet(5, 0, false, true, false))),
            TemporalDecision::Forward {
                seq: 21,
                picture_id: Some(5)
            }
        );
        assert_eq!(
            f.filter(20, &info(&packet(4, 2, false, false, false))),
            TemporalDecision::Drop
        );
        // 22 still maps to 22: number 20 stays a gap, 21 is not given twice.
        assert_eq!(
            f.filter(22, &info(&packet(6, 0, false, true, false))),
            TemporalDecision::Forward {
                seq: 22,
                picture_id: Some(6)
            }
        );
    }

    #[test]
    fn picture_ids_wrap_and_keep_their_width() {
        let mut f = TemporalFilter::new(0);
        // 15-bit IDs around the wrap: T0 at 0x7ffe, T2 0x7fff dropped, T0 at 0 becomes 0x7fff.
        let mut next = |seq: u64, id: u16, tid: u8, key: bool| {
            f.filter(seq, &info(&packet(id, tid, false, true, key)))
        };
        next(1, 0x7ffe, 0, true);
        assert_eq!(next(2, 0x7fff, 2, false), TemporalDecision::Drop);
        assert_eq!(
            next(3, 0, 0, false),
            TemporalDecision::Forward {
                seq: 2,
                picture_id: Some(0x7fff)
            }
        );
        assert_eq!(
            next(4, 1, 0, false),
            TemporalDecision::Forward {
                seq: 3,
                picture_id: Some(0)
            }
        );
        // 7-bit IDs: 127 (T0), 0 (T2, dropped), 1 (T0) becomes 0.
        let mut f = TemporalFilter::new(0);
        let short = |id: u8, tid: u8, key: bool| {
            vec![0x90, 0xa0, id, tid << 6, if key { 0 } else { 1 }, 0xab]
        };
        f.filter(1, &info(&short(127, 0, true)));
        assert_eq!(
            f.filter(2, &info(&short(0, 2, false))),
            TemporalDecision::Drop
        );
        assert_eq!(
            f.filter(3, &info(&short(1, 0, false))),
            TemporalDecision::Forward {
                seq: 2,
                picture_id: Some(0)
            }
        );
    }

    #[test]
    fn a_stream_without_temporal_layers_passes_whole() {
        let mut f = TemporalFilter::new(0);
        for seq in 0..10u64 {
            let p = [
                0x90,
                0x80,
                0x80 | (seq >> 8) as u8,
                seq as u8,
                if seq == 0 { 0 } else { 1 },
                0xab,
            ];
            assert_eq!(
                f.filter(seq, &info(&p)),
                TemporalDecision::Forward {
                    seq,
                    picture_id: Some(seq as u16)
                }
            );
        }
        assert_eq!(f.pass(10), Some(10));
    }

    #[test]
    fn numbers_far_behind_the_record_are_refused() {
        let mut f = TemporalFilter::new(0);
        run(&mut f, 0, 1, Some(0), &[]);
        f.filter(5000, &info(&packet(1, 0, false, true, false)));
        assert_eq!(f.pass(5000 - HORIZON - 1), None);
        // Thousands of dropped packets are remembered in bounded memory and still counted.
        for seq in 5001..10_001 {
            f.filter(seq, &info(&packet(2, 2, false, seq == 5001, false)));
        }
        assert!(f.seqs.dropped.len() as u64 <= HORIZON + 1);
        assert_eq!(
            f.filter(10_001, &info(&packet(3, 0, false, true, false))),
            TemporalDecision::Forward {
                seq: 5001,
                picture_id: Some(2)
            }
        );
    }
}
