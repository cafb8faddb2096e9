//! What a publishing peer sends: bitrate and packet rate turned into frames,
//! packets per frame and payload sizes per layer, plus the SSRCs and stream
//! ids of one peer; audio talks (a packet every 20 ms) or stays silent the
//! way opus DTX does (a small packet every 400 ms), each audio packet
//! carrying its level (see [`crate::speakers`]). Shared by the simplesfu
//! and Janus drivers.

use crate::payload::{MAX_PAYLOAD, MIN_PAYLOAD};
use crate::speakers::{LevelSchedule, PublisherLevels};
use crate::transport::{AudioPlan, MediaPlan, VideoLayer};
use serde::Serialize;
use std::time::Duration;

/// Media options of a run (the CLI's).
#[derive(Debug, Clone, Serialize)]
pub struct MediaOptions {
    /// Send video (top layer bitrate and packet rate below).
    pub video: bool,
    pub video_bitrate_bps: u64,
    pub video_packets_per_s: u32,
    pub fps: u32,
    pub audio: bool,
    /// Three VP8 layers r0, r1, r2 (1/16, 1/4 and all of the bitrate and packet rate).
    pub simulcast: bool,
    /// Publishers per room that talk; the others are silent (opus DTX: one
    /// small packet every [`DTX_INTERVAL`]). None: every publisher talks.
    pub speakers_per_room: Option<u32>,
    /// The audio levels publishers send, by their place in the room.
    pub audio_levels: LevelSchedule,
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            video: true,
            video_bitrate_bps: 1_500_000,
            video_packets_per_s: 200,
            fps: 25,
            audio: false,
            simulcast: false,
            speakers_per_room: None,
            audio_levels: LevelSchedule::default(),
        }
    }
}

/// Audio: 50 packets/s of 20 ms, 80-byte payloads (32 kbit/s).
pub const AUDIO_PAYLOAD: usize = 80;
/// Talking audio: one packet per 20 ms frame.
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// Silent audio: opus with DTX sends one comfort-noise frame every 400 ms.
pub const DTX_INTERVAL: Duration = Duration::from_millis(400);
/// A DTX frame is a few bytes; ours carries the stamp as well.
pub const DTX_PAYLOAD: usize = MIN_PAYLOAD;

/// Stream id layout: peer index in the high 24 bits, then 0 = audio, 1.. = video layers.
pub fn stream_id(peer_index: u32, slot: u32) -> u32 {
    (peer_index << 8) | slot
}

#[derive(Debug, Clone)]
pub struct VideoStream {
    pub ssrc: u32,
    pub rtx: u32,
    pub stream_id: u32,
    pub packets_per_frame: u32,
    pub payload_size: usize,
}

#[derive(Debug, Clone)]
pub struct AudioStream {
    pub ssrc: u32,
    pub stream_id: u32,
}

/// One publishing peer's streams.
#[derive(Debug, Clone)]
pub struct PeerMedia {
    pub video: Vec<VideoStream>,
    pub audio: Option<AudioStream>,
    pub cname: String,
    pub fps: u32,
    /// Audio as opus DTX in silence (see [`DTX_INTERVAL`]).
    pub silent: bool,
    /// The levels the audio carries (None: the default for talking or silent).
    levels: Option<PublisherLevels>,
    video_pt: u8,
    audio_pt: u8,
}

impl PeerMedia {
    pub fn new(o: &MediaOptions, peer_index: u32) -> PeerMedia {
        let fps = o.fps.clamp(1, 120);
        let base = 0x1000_0000u32.wrapping_add(peer_index.wrapping_mul(16));
        let layers: &[u32] = if !o.video {
            &[]
        } else if o.simulcast {
            &[16, 4, 1]
        } else {
            &[1]
        };
        let video = layers
            .iter()
            .enumerate()
            .map(|(i, &div)| {
                let pps = (o.video_packets_per_s / div).max(fps);
                let packets_per_frame = pps.div_ceil(fps).max(1);
                let bytes_per_s = o.video_bitrate_bps / 8 / div as u64;
                let payload_size = (bytes_per_s / (packets_per_frame as u64 * fps as u64)) as usize;
                VideoStream {
                    ssrc: base + 2 * i as u32,
                    rtx: base + 2 * i as u32 + 1,
                    stream_id: stream_id(peer_index, 1 + i as u32),
                    packets_per_frame,
                    payload_size: payload_size.clamp(MIN_PAYLOAD, MAX_PAYLOAD),
                }
            })
            .collect();
        let audio = o.audio.then(|| AudioStream {
            ssrc: base + 8,
            stream_id: stream_id(peer_index, 0),
        });
        PeerMedia {
            video,
            audio,
            cname: format!("bot-{peer_index}"),
            fps,
            silent: false,
            levels: None,
            video_pt: crate::sfu::browser::VP8,
            audio_pt: crate::sfu::browser::OPUS,
        }
    }

    /// Use other payload types (Janus negotiates its own).
    pub fn with_payload_types(mut self, video_pt: u8, audio_pt: u8) -> PeerMedia {
        self.video_pt = video_pt;
        self.audio_pt = audio_pt;
        self
    }

    /// A publisher that stays silent: audio as opus DTX.
    pub fn with_silence(mut self, silent: bool) -> PeerMedia {
        self.silent = silent;
        self
    }

    /// The levels this publisher's audio carries.
    pub fn with_levels(mut self, levels: PublisherLevels) -> PeerMedia {
        self.levels = Some(levels);
        self
    }

    /// The sending plan for the transport task.
    pub fn plan(&self) -> MediaPlan {
        MediaPlan {
            video: self
                .video
                .iter()
                .map(|v| VideoLayer {
                    ssrc: v.ssrc,
                    pt: self.video_pt,
                    stream_id: v.stream_id,
                    packets_per_frame: v.packets_per_frame,
                    payload_size: v.payload_size,
                })
                .collect(),
            fps: self.fps,
            audio: self.audio.as_ref().map(|a| AudioPlan {
                ssrc: a.ssrc,
                pt: self.audio_pt,
                stream_id: a.stream_id,
                payload_size: if self.silent {
                    DTX_PAYLOAD
                } else {
                    AUDIO_PAYLOAD
                },
                interval: if self.silent {
                    DTX_INTERVAL
                } else {
                    AUDIO_INTERVAL
                },
                levels: self
                    .levels
                    .clone()
                    .unwrap_or_else(|| LevelSchedule::default().for_publisher(0, self.silent)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_give_about_200_packets_and_1_5_mbps() {
        let m = PeerMedia::new(&MediaOptions::default(), 3);
        let v = &m.video[0];
        assert_eq!(v.packets_per_frame * m.fps, 200);
        let bps = v.payload_size as u64 * 8 * 200;
        assert!((1_400_000..=1_550_000).contains(&bps), "{bps}");
        assert_eq!(v.stream_id, (3 << 8) | 1);
    }

    #[test]
    fn simulcast_has_three_smaller_layers() {
        let m = PeerMedia::new(
            &MediaOptions {
                simulcast: true,
                audio: true,
                ..Default::default()
            },
            0,
        );
        assert_eq!(m.video.len(), 3);
        assert!(m.video[0].packets_per_frame < m.video[2].packets_per_frame);
        assert!(m.video[0].payload_size <= m.video[2].payload_size);
        assert_eq!(m.plan().audio.map(|a| a.stream_id), Some(0));
    }

    #[test]
    fn silent_publishers_send_dtx_sized_audio_every_400_ms() {
        let o = MediaOptions {
            video: false,
            audio: true,
            ..Default::default()
        };
        let talking = PeerMedia::new(&o, 1).plan().audio.expect("audio");
        let silent = PeerMedia::new(&o, 1)
            .with_silence(true)
            .plan()
            .audio
            .expect("audio");
        assert_eq!(
            (talking.interval, talking.payload_size),
            (AUDIO_INTERVAL, AUDIO_PAYLOAD)
        );
        assert_eq!(
            (silent.interval, silent.payload_size),
            (DTX_INTERVAL, DTX_PAYLOAD)
        );
        assert_eq!(
            silent.stream_id, talking.stream_id,
            "same stream, fewer packets"
        );
    }
}
