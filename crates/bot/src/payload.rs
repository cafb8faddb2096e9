//! The synthetic media the bot sends: VP8-like and opus-like RTP payloads whose
//! last bytes are a stamp (magic, stream id, sequence counter, send time), so a
//! receiver measures loss and latency whatever the server did to the headers.
//!
//! The stamp sits at the end of the payload because an SFU may rewrite the
//! VP8 payload descriptor at the front (PictureID, TL0PICIDX) but never the
//! end of the payload.

/// Marks a bot payload ("SFUB").
pub const MAGIC: [u8; 4] = *b"SFUB";
/// Bytes of the stamp at the end of every payload.
pub const STAMP_LEN: usize = 24;
/// Smallest payload the bot writes: a VP8 key-frame header plus the stamp.
pub const MIN_PAYLOAD: usize = 16 + STAMP_LEN;
/// Largest payload: leaves room for RTP header, extensions and SRTP tag in a 1280-byte datagram.
pub const MAX_PAYLOAD: usize = 1150;

/// What a receiver reads back from a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Which sent stream (publisher and layer) this packet belongs to.
    pub stream: u32,
    /// Per-stream packet counter, from 0, +1 per packet.
    pub counter: u64,
    /// `monotonic_ns()` when the sender wrote the packet.
    pub sent_ns: u64,
}

/// Nanoseconds of CLOCK_MONOTONIC: one clock for every process on the machine,
/// so a sender and a receiver in different processes can compare stamps.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn push_stamp(buf: &mut Vec<u8>, stamp: Stamp) {
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&stamp.stream.to_be_bytes());
    buf.extend_from_slice(&stamp.counter.to_be_bytes());
    buf.extend_from_slice(&stamp.sent_ns.to_be_bytes());
}

/// The stamp at the end of `payload`, if it is a bot payload.
pub fn read_stamp(payload: &[u8]) -> Option<Stamp> {
    let tail = payload
        .len()
        .checked_sub(STAMP_LEN)
        .map(|start| &payload[start..])?;
    if tail[..4] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_be_bytes([tail[i], tail[i + 1], tail[i + 2], tail[i + 3]]);
    let u64_at = |i: usize| ((u32_at(i) as u64) << 32) | u32_at(i + 4) as u64;
    Some(Stamp {
        stream: u32_at(4),
        counter: u64_at(8),
        sent_ns: u64_at(16),
    })
}

/// Where a video packet sits in its frame.
#[derive(Debug, Clone, Copy)]
pub struct Vp8Packet {
    /// 15-bit PictureID of the frame.
    pub picture_id: u16,
    /// First packet of the frame (VP8 descriptor S bit, payload header present).
    pub start: bool,
    /// The frame is a key frame.
    pub keyframe: bool,
}

/// Size of packet `index` of a frame of `total` payload bytes split into
/// `count` packets the way libwebrtc's packetizer does ("about equally"):
/// sizes differ by at most one byte, the larger ones last.
pub fn split_about_equally(total: usize, count: usize, index: usize) -> usize {
    let count = count.max(1);
    let (base, larger) = (total / count, total % count);
    if index >= count - larger {
        base + 1
    } else {
        base
    }
}

/// A VP8 RTP payload of `size` bytes (clamped to [MIN_PAYLOAD, MAX_PAYLOAD]):
/// descriptor with a 15-bit PictureID as Chrome writes it, a VP8 payload
/// header on the first packet of a frame (key frames with the start code and a
/// 1280x720 size), zero fill, then the stamp.
pub fn vp8_payload(size: usize, packet: Vp8Packet, stamp: Stamp) -> Vec<u8> {
    let size = size.clamp(MIN_PAYLOAD, MAX_PAYLOAD);
    let mut p = Vec::with_capacity(size);
    // X=1, S at bit 4, partition index 0; I=1; M=1 + 15-bit PictureID.
    p.push(0x80 | if packet.start { 0x10 } else { 0 });
    p.push(0x80);
    p.push(0x80 | ((packet.picture_id >> 8) as u8 & 0x7f));
    p.push(packet.picture_id as u8);
    if packet.start {
        if packet.keyframe {
            // P=0 (key frame), version 0, show_frame=1; size fields; start code; 1280x720.
            p.extend_from_slice(&[0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02]);
        } else {
            p.extend_from_slice(&[0x11, 0x00, 0x00]);
        }
    }
    p.resize(size - STAMP_LEN, 0);
    push_stamp(&mut p, stamp);
    p
}

/// Whether `payload` starts a VP8 frame (S=1, partition 0): what a viewer
/// times frames by.
pub fn is_vp8_frame_start(payload: &[u8]) -> bool {
    payload
        .first()
        .is_some_and(|b0| b0 & 0x10 != 0 && b0 & 0x07 == 0)
}

/// Whether `payload` starts a VP8 key frame (S=1, partition 0, P=0).
pub fn is_vp8_keyframe_start(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    if b0 & 0x10 == 0 || b0 & 0x07 != 0 {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = payload.get(1) else {
            return false;
        };
        i = 2;
        if x & 0x80 != 0 {
            match payload.get(i) {
                Some(&m) if m & 0x80 != 0 => i += 2,
                Some(_) => i += 1,
                None => return false,
            }
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    payload.get(i).is_some_and(|h| h & 0x01 == 0)
}

/// An opus-like payload of `size` bytes (clamped): a TOC byte, fill, the stamp.
pub fn opus_payload(size: usize, stamp: Stamp) -> Vec<u8> {
    let size = size.clamp(1 + STAMP_LEN, MAX_PAYLOAD);
    let mut p = Vec::with_capacity(size);
    p.push(0x78); // config 15 (CELT FB 20 ms), mono, one frame
    p.resize(size - STAMP_LEN, 0);
    push_stamp(&mut p, stamp);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_at_the_end_of_the_payload() {
        let stamp = Stamp {
            stream: 0x0102_0304,
            counter: 1 << 40 | 7,
            sent_ns: u64::MAX - 3,
        };
        let p = vp8_payload(
            900,
            Vp8Packet {
                picture_id: 300,
                start: true,
                keyframe: true,
            },
            stamp,
        );
        assert_eq!(p.len(), 900);
        assert_eq!(read_stamp(&p), Some(stamp));
        let a = opus_payload(80, stamp);
        assert_eq!(a.len(), 80);
        assert_eq!(read_stamp(&a), Some(stamp));
        assert_eq!(read_stamp(&a[..70]), None, "a cut payload has no stamp");
        assert_eq!(read_stamp(b"short"), None);
    }

    #[test]
    fn key_frames_are_recognisable_like_the_server_does() {
        let stamp = Stamp {
            stream: 1,
            counter: 0,
            sent_ns: 0,
        };
        let key = vp8_payload(
            500,
            Vp8Packet {
                picture_id: 0x1234,
                start: true,
                keyframe: true,
            },
            stamp,
        );
        let delta = vp8_payload(
            500,
            Vp8Packet {
                picture_id: 0x1234,
                start: true,
                keyframe: false,
            },
            stamp,
        );
        let middle = vp8_payload(
            500,
            Vp8Packet {
                picture_id: 0x1234,
                start: false,
                keyframe: true,
            },
            stamp,
        );
        assert!(is_vp8_keyframe_start(&key));
        assert!(!is_vp8_keyframe_start(&delta));
        assert!(!is_vp8_keyframe_start(&middle));
        assert!(
            is_vp8_frame_start(&key) && is_vp8_frame_start(&delta) && !is_vp8_frame_start(&middle)
        );
        // The engine's own example of a key frame start.
        assert!(is_vp8_keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x10]));
    }

    #[test]
    fn frames_split_about_equally_with_the_larger_packets_last() {
        let sizes: Vec<usize> = (0..4).map(|i| split_about_equally(4002, 4, i)).collect();
        assert_eq!(sizes, vec![1000, 1000, 1001, 1001]);
        assert_eq!(sizes.iter().sum::<usize>(), 4002);
        assert_eq!(split_about_equally(900, 1, 0), 900);
        assert_eq!(split_about_equally(900, 0, 0), 900);
    }

    #[test]
    fn sizes_are_clamped() {
        let stamp = Stamp {
            stream: 1,
            counter: 0,
            sent_ns: 0,
        };
        let p = vp8_payload(
            5,
            Vp8Packet {
                picture_id: 1,
                start: true,
                keyframe: true,
            },
            stamp,
        );
        assert_eq!(p.len(), MIN_PAYLOAD);
        assert_eq!(read_stamp(&p), Some(stamp));
        assert_eq!(
            vp8_payload(
                10_000,
                Vp8Packet {
                    picture_id: 1,
                    start: false,
                    keyframe: false
                },
                stamp
            )
            .len(),
            MAX_PAYLOAD
        );
    }
}
