//! Bandwidth: each viewer's link is estimated from its congestion feedback
//! and its consumers get layers that fit. A viewer behind a capped downlink
//! (`Sim::limit_downlink`: a bottleneck with a queue that drops when full)
//! ends on the low simulcast layer and keeps getting frames; raised, it
//! climbs back to the top; below the lowest layer its video pauses while
//! audio flows; two viewers on different links each get their own layer.

use crate::harness::*;
use crate::media::opus_parameters;
use mediasoup_types::rtp_parameters::MediaKind;
use simplesfu_engine::{Direction, EngineError, EngineEvent};
use simplesfu_proto::ConsumerId;
use std::time::{Duration, Instant};
use str0m::media::Pt;
use str0m::rtp::{RtpWrite, Ssrc};

/// The clock of the source: video frames every third tick (30 fps), audio
/// every second (45 packets/s).
const TICK: Duration = Duration::from_millis(11);
const AUDIO_SSRC: u32 = 3333;
/// Bytes of one frame of each temporal layer is this times [`TEMPORAL_WEIGHT`]
/// (in quarters): with L1T3 at 30 fps, about 200 kbit/s, 700 kbit/s and
/// 2 Mbit/s per simulcast layer, T0 heaviest, as encoders send.
const FRAME_BASE_BYTES: [usize; 3] = [740, 2600, 7400];
const TEMPORAL_WEIGHT: [usize; 3] = [8, 4, 3];
const MAX_PACKET: usize = 1100;

/// A sender of three-layer VP8 simulcast (L1T3, key frames when asked)
/// and Opus, and the viewers of both.
struct Call {
    sim: Sim,
    sender: PeerId,
    source: Source,
}

/// What one viewer consumes.
struct Viewer {
    peer: PeerId,
    video: Consumed,
    audio: Consumed,
}

#[derive(Default)]
struct Source {
    ticks: u64,
    frames: u64,
    seq: [u64; 4],
    picture_id: [u16; 3],
    tl0: [u8; 3],
    keyframe_due: [bool; 3],
    requests_seen: usize,
    /// Key frame requests before this are not answered (a slow encoder).
    deaf_until: Option<Instant>,
}

impl Call {
    fn new() -> Call {
        Call::with_estimation(true)
    }

    fn with_estimation(estimation: bool) -> Call {
        let mut sim = Sim::with_estimation(estimation);
        let sender = sim.connected_peer(Direction::Send);
        Call {
            sim,
            sender,
            source: Source {
                keyframe_due: [true; 3],
                ..Source::default()
            },
        }
    }

    /// Produce video and audio; the viewers added after this consume both.
    fn produce(&mut self) -> (simplesfu_proto::ProducerId, simplesfu_proto::ProducerId) {
        let video = self.sim.produce_simulcast(self.sender);
        let audio = self.sim.produce(
            self.sender,
            MediaKind::Audio,
            opus_parameters("1", AUDIO_SSRC),
        );
        (video, audio)
    }

    /// A viewer that sends congestion feedback, behind a downlink of `cap_bps`.
    fn viewer(
        &mut self,
        producers: (simplesfu_proto::ProducerId, simplesfu_proto::ProducerId),
        cap_bps: Option<u64>,
    ) -> Viewer {
        let peer = self.sim.connected_peer(Direction::Recv);
        self.sim.send_feedback(peer);
        if let Some(cap) = cap_bps {
            self.sim
                .limit_downlink(peer, cap, Duration::from_millis(100));
        }
        let video = self.sim.consume(peer, producers.0);
        let audio = self.sim.consume(peer, producers.1);
        self.sim.resume(&video);
        self.sim.resume(&audio);
        Viewer { peer, video, audio }
    }

    /// Send for `duration`.
    fn run(&mut self, duration: Duration) {
        let (sender, source) = (self.sender, &mut self.source);
        self.sim
            .every(TICK, duration, |sim, _| source.tick(sim, sender));
    }
}

impl Source {
    fn tick(&mut self, sim: &mut Sim, sender: PeerId) {
        let now = sim.now;
        let requests = &sim.peer(sender).keyframe_requests;
        let deaf = self.deaf_until.is_some_and(|until| now < until);
        for request in &requests[self.requests_seen..] {
            if deaf {
                continue;
            }
            match request.rid.as_ref().map(|rid| rid.to_string()) {
                Some(rid) => {
                    if let Some(layer) = ["r0", "r1", "r2"].iter().position(|r| *r == rid) {
                        self.keyframe_due[layer] = true;
                    }
                }
                None => self.keyframe_due = [true; 3],
            }
        }
        self.requests_seen = requests.len();
        let mut api = sim.peer_mut(sender).rtc.direct_api();
        if self.ticks % 2 == 0 {
            let seq = next(&mut self.seq[3]);
            let stream = api
                .stream_tx(&Ssrc::from(AUDIO_SSRC))
                .expect("audio stream");
            stream.write_rtp(RtpWrite::new(
                Pt::from(111),
                seq.into(),
                (seq * 960) as u32,
                now,
                vec![0x11; 90],
            ));
        }
        if self.ticks % 3 == 0 {
            let tid = [0u8, 2, 1, 2][(self.frames % 4) as usize];
            for layer in 0..3 {
                let key = std::mem::take(&mut self.keyframe_due[layer]);
                let tid = if key { 0 } else { tid };
                if tid == 0 {
                    self.tl0[layer] = self.tl0[layer].wrapping_add(1);
                }
                self.picture_id[layer] = (self.picture_id[layer] + 1) & 0x7fff;
                let size = FRAME_BASE_BYTES[layer] * TEMPORAL_WEIGHT[usize::from(tid)] / 4;
                let packets = size.div_ceil(MAX_PACKET);
                let stream = api
                    .stream_tx(&Ssrc::from(SIMULCAST_SSRC + layer as u32))
                    .expect("video stream");
                for k in 0..packets {
                    let payload = vp8_packet(
                        self.picture_id[layer],
                        self.tl0[layer],
                        tid,
                        k == 0,
                        key,
                        size / packets,
                        layer as u8,
                    );
                    let seq = next(&mut self.seq[layer]);
                    let write = RtpWrite::new(
                        Pt::from(96),
                        seq.into(),
                        (self.frames * 3000) as u32,
                        now,
                        payload,
                    )
                    .marker(k + 1 == packets)
                    .nackable(true);
                    stream.write_rtp(write);
                }
            }
            self.frames += 1;
        }
        self.ticks += 1;
    }
}

fn next(counter: &mut u64) -> u64 {
    *counter += 1;
    *counter
}

/// One packet of an L1T3 frame: 15-bit PictureID, TL0PICIDX, TID with the
/// sync bit on every upper-layer frame, the VP8 header (P bit) in the first
/// packet; the last byte names the simulcast layer.
fn vp8_packet(
    picture_id: u16,
    tl0: u8,
    tid: u8,
    start: bool,
    key: bool,
    len: usize,
    layer: u8,
) -> Vec<u8> {
    let mut p = vec![
        if start { 0x90 } else { 0x80 },
        0xe0,
        0x80 | (picture_id >> 8) as u8,
        picture_id as u8,
        tl0,
    ];
    p.push(tid << 6 | u8::from(tid > 0) << 5);
    p.push(if key { 0x00 } else { 0x01 });
    p.resize(len.max(8) - 1, 0x55);
    p.push(layer);
    p
}

/// What a viewer got from `from` on: video frames (marker bits), the
/// simulcast layers of its video packets, audio packets.
struct Got {
    frames: usize,
    layers: Vec<u8>,
    audio: usize,
    video_bytes: usize,
}

/// When the viewer's last video packet not of `layer` arrived, after `from`.
fn last_other_than(sim: &Sim, viewer: &Viewer, layer: u8, from: Instant) -> Option<Duration> {
    let peer = sim.peer(viewer.peer);
    let video = peer.received_from(viewer.video.ssrc);
    video
        .iter()
        .filter(|p| p.at >= from && p.payload.last() != Some(&layer))
        .map(|p| p.at - from)
        .last()
}

fn got(sim: &Sim, viewer: &Viewer, from: Instant) -> Got {
    let peer = sim.peer(viewer.peer);
    let video: Vec<_> = peer
        .received_from(viewer.video.ssrc)
        .into_iter()
        .filter(|p| p.at >= from)
        .collect();
    let mut layers: Vec<u8> = video
        .iter()
        .filter_map(|p| p.payload.last().copied())
        .collect();
    layers.dedup();
    Got {
        frames: video.iter().filter(|p| p.marker).count(),
        video_bytes: video.iter().map(|p| p.payload.len()).sum(),
        layers,
        audio: peer
            .received_from(viewer.audio.ssrc)
            .iter()
            .filter(|p| p.at >= from)
            .count(),
    }
}

/// The layers the router last reported for a consumer (`None`: none yet).
fn reported(sim: &Sim, consumer: ConsumerId) -> Option<(Option<u8>, Option<u8>)> {
    sim.events.iter().rev().find_map(|e| match e {
        EngineEvent::ConsumerLayersChanged {
            consumer_id,
            spatial_layer,
            temporal_layer,
            ..
        } if *consumer_id == consumer => Some((*spatial_layer, *temporal_layer)),
        _ => None,
    })
}

#[test]
fn a_viewer_on_a_slow_link_gets_the_low_layer_and_climbs_back_when_the_link_is_raised() {
    let mut call = Call::new();
    let producers = call.produce();
    let viewer = call.viewer(producers, Some(400_000));
    let start = call.sim.now;
    call.run(Duration::from_secs(6));
    let settled = call.sim.now;
    call.run(Duration::from_secs(4));
    let slow = got(&call.sim, &viewer, settled);
    let left_higher =
        last_other_than(&call.sim, &viewer, 0, start).expect("it starts higher, before feedback");
    assert!(
        left_higher < Duration::from_secs(4),
        "on the low layer within 4 s: {left_higher:?}"
    );
    assert_eq!(slow.layers, [0], "then only the low layer");
    // At least the base temporal layer (7.5 fps): how far str0m's estimate
    // undershoots the link after the start varies from run to run.
    assert!(
        slow.frames >= 4 * 7,
        "frames keep coming: {} in 4 s",
        slow.frames
    );
    assert!(
        slow.video_bytes * 8 / 4 < 400_000 - 50_000,
        "the video fits beside the audio: {} bit/s",
        slow.video_bytes * 2
    );
    assert!(
        slow.audio >= 4 * 44,
        "audio untouched: {} packets in 4 s",
        slow.audio
    );
    assert_eq!(
        reported(&call.sim, viewer.video.id).map(|r| r.0),
        Some(Some(0)),
        "consumerLayersChanged says so"
    );

    // As long again on the slow link as the browser test sits there: the
    // probes asked for while the top layer does not fit back off meanwhile
    // (to one every `PROBE_INTERVAL_MAX`), which is what a viewer whose link
    // opens waits for at worst.
    call.run(Duration::from_secs(12));
    call.sim
        .limit_downlink(viewer.peer, 5_000_000, Duration::from_millis(100));
    // How fast str0m's estimate climbs after the losses of the slow link
    // varies from run to run with the random SSRCs and keys: its AIMD, the
    // probes the router asks for while a step up is blocked (every 2 to 8 s),
    // and the allocation's holds. 2.8 to 10.4 s (median 4.3) in 12 runs of
    // `cargo test -p simplesfu-engine --test sim a_viewer_on_a_slow_link --
    // --nocapture` (the line below); 8.7 to 15.7 s (median 11) in 16 runs
    // before the router read the estimate itself and asked for probes.
    let raise = call.sim.now;
    call.run(Duration::from_secs(20));
    let back_on_top =
        last_other_than(&call.sim, &viewer, 2, raise).expect("it was on the low layer");
    eprintln!("back on the top layer {back_on_top:?} after the link was raised");
    assert!(
        back_on_top < Duration::from_secs(17),
        "the top layer within 17 s of a 5 Mbit/s link: {back_on_top:?}"
    );
    let top = got(
        &call.sim,
        &viewer,
        raise + back_on_top + Duration::from_millis(1),
    );
    assert_eq!(top.layers, [2], "and it stays there");
    let on_top = Duration::from_secs(20) - back_on_top;
    // It may reach the top resolution at its base frame rate and add the
    // upper temporal layers after another hold.
    assert!(
        top.frames as f64 >= on_top.as_secs_f64() * 7.0,
        "frames keep coming: {} in {on_top:?}",
        top.frames
    );
    assert_eq!(
        reported(&call.sim, viewer.video.id).map(|r| r.0),
        Some(Some(2))
    );
}

#[test]
fn a_link_below_the_lowest_layer_pauses_video_while_audio_flows_and_video_resumes_when_it_is_lifted(
) {
    let mut call = Call::new();
    let producers = call.produce();
    let viewer = call.viewer(producers, Some(120_000));
    call.run(Duration::from_secs(8));
    let paused = call.sim.now;
    call.run(Duration::from_secs(3));
    let starved = got(&call.sim, &viewer, paused);
    assert_eq!(
        reported(&call.sim, viewer.video.id),
        Some((None, None)),
        "consumerLayersChanged: paused for bandwidth"
    );
    assert_eq!(
        starved.frames, 0,
        "no video on a link below the lowest layer"
    );
    assert!(
        starved.audio >= 3 * 44,
        "audio keeps flowing: {} packets in 3 s",
        starved.audio
    );

    call.sim
        .limit_downlink(viewer.peer, 5_000_000, Duration::from_millis(100));
    let lifted = call.sim.now;
    call.run(Duration::from_secs(16));
    let resumed = got(&call.sim, &viewer, lifted);
    assert!(
        resumed.frames >= 20,
        "video resumes: {} frames in 16 s",
        resumed.frames
    );
    // The resumed stream's timestamps continue by the time paused (seconds);
    // retransmissions of what the slow link lost come with older ones.
    let video = call.sim.peer(viewer.peer).received_from(viewer.video.ssrc);
    let paused_at = video
        .iter()
        .filter(|p| p.at <= lifted)
        .map(|p| p.timestamp)
        .max()
        .expect("video before the pause");
    let resumed_at = paused_at + 90_000;
    let before = video
        .iter()
        .filter(|p| p.timestamp < resumed_at)
        .map(|p| p.seq)
        .max()
        .unwrap_or(0);
    let first = video
        .iter()
        .find(|p| p.timestamp >= resumed_at)
        .expect("video after the pause");
    assert!(
        first.at - lifted < Duration::from_secs(14),
        "within 14 s: {:?}",
        first.at - lifted
    );
    // The gap is what the slow link lost just before the pause: nothing
    // (a gap of 1) in 24 of 25 runs here, and once 17 packets, when a probe
    // (one at least every 4 s while video is paused) had filled the queue
    // as the pause came. A restarted numbering would jump by thousands.
    eprintln!("numbering across the pause: {before}, then {}", first.seq);
    assert!(first.seq > before && first.seq - before <= 32, "the numbering continues across the pause (less what the slow link lost): {before}, then {}", first.seq);
    assert_eq!(
        (first.payload[0] & 0x10, first.payload[6] & 0x01),
        (0x10, 0),
        "from the start of a key frame"
    );
    assert!(matches!(
        reported(&call.sim, viewer.video.id),
        Some((Some(_), Some(_)))
    ));
}

#[test]
fn two_viewers_on_different_links_each_get_their_own_layer() {
    let mut call = Call::new();
    let producers = call.produce();
    let slow = call.viewer(producers, Some(400_000));
    let fast = call.viewer(producers, Some(10_000_000));
    call.run(Duration::from_secs(12));
    let settled = call.sim.now;
    call.run(Duration::from_secs(3));
    let (slow_got, fast_got) = (
        got(&call.sim, &slow, settled),
        got(&call.sim, &fast, settled),
    );
    assert_eq!(slow_got.layers, [0], "the slow viewer on the low layer");
    assert_eq!(
        fast_got.layers,
        [2],
        "the fast viewer on the top layer, not lowered by the slow one"
    );
    assert!(
        slow_got.frames >= 3 * 7 && fast_got.frames >= 3 * 28,
        "both get frames: {} and {}",
        slow_got.frames,
        fast_got.frames
    );
}

#[test]
fn a_preferred_layer_caps_what_a_viewer_gets_and_bad_preferences_are_refused() {
    let mut call = Call::new();
    let producers = call.produce();
    let viewer = call.viewer(producers, None);
    let now = call.sim.now;
    call.sim
        .router
        .set_consumer_preferred_layers(now, viewer.video.id, 0, Some(1))
        .expect("a thumbnail's layers");
    call.run(Duration::from_secs(5));
    let settled = call.sim.now;
    call.run(Duration::from_secs(2));
    let thumbnail = got(&call.sim, &viewer, settled);
    assert_eq!(
        thumbnail.layers,
        [0],
        "the low layer on a link that could carry the top"
    );
    assert!(
        (25..=35).contains(&thumbnail.frames),
        "T0 and T1: 15 fps, {} frames in 2 s",
        thumbnail.frames
    );

    let refused = |result: Result<(), EngineError>| result.expect_err("refused").to_string();
    let message = refused(call.sim.router.set_consumer_preferred_layers(
        now,
        viewer.video.id,
        3,
        None,
    ));
    assert!(message.contains("3 spatial"), "{message}");
    assert!(refused(call.sim.router.set_consumer_preferred_layers(
        now,
        viewer.video.id,
        0,
        Some(3)
    ))
    .contains("S0T3"));
    assert!(refused(
        call.sim
            .router
            .set_consumer_preferred_layers(now, viewer.audio.id, 0, None)
    )
    .contains("0 spatial"));
    assert_eq!(
        call.sim
            .router
            .set_consumer_priority(now, viewer.video.id, 0),
        Err(EngineError::InvalidPriority(0))
    );
    call.sim
        .router
        .set_consumer_priority(now, viewer.video.id, 255)
        .expect("the highest priority");
}

#[test]
fn with_estimation_off_a_viewer_gets_the_best_layer_whatever_its_link() {
    // The operator's switch (rtc.bandwidth_estimation = false): no
    // estimate, no allocation, the top layer as before estimation existed.
    let mut call = Call::with_estimation(false);
    let producers = call.produce();
    let viewer = call.viewer(producers, Some(400_000));
    call.run(Duration::from_secs(6));
    let from = call.sim.now;
    call.run(Duration::from_secs(2));
    assert_eq!(
        got(&call.sim, &viewer, from).layers,
        [2],
        "the top layer, though the link cannot carry it"
    );
    assert_eq!(
        reported(&call.sim, viewer.video.id),
        None,
        "no layer changes reported"
    );
}

/// str0m probes with padding on SSRC 0, tagged with the video's MID, when no
/// stream of the transport has sent a packet it could pad with. Chromium
/// then binds its video receiver to SSRC 0 and never decodes the real
/// stream: a WHEP page that joined while the publisher's key frame was late
/// played nothing for 30 s (e2e/whip.test.mjs under load; in a capture, 14
/// packets on SSRC 0 came 27 ms before the first video packet, and the
/// page's inbound-rtp counted exactly those 14). So the estimator gets its
/// targets, and probes, only once the transport has sent video.
#[test]
fn a_viewer_is_sent_no_probe_on_ssrc_0_before_its_first_video_packet_and_is_probed_after() {
    let mut call = Call::new();
    let producers = call.produce();
    let _first = call.viewer(producers, None);
    call.run(Duration::from_secs(3));
    // The next viewer joins while the encoder takes a second for a key frame.
    call.source.deaf_until = Some(call.sim.now + Duration::from_secs(1));
    let joined = call.sim.now;
    let viewer = call.viewer(producers, None);
    call.run(Duration::from_secs(8));
    let to_viewer: Vec<&Sent> = call
        .sim
        .router_sent
        .iter()
        .filter(|s| s.to == Some(viewer.peer) && s.at >= joined)
        .collect();
    let on_ssrc_0 = to_viewer.iter().filter(|s| s.rtp_ssrc == Some(0)).count();
    assert_eq!(on_ssrc_0, 0, "no RTP on SSRC 0 reaches the viewer");
    // Probes and padding go on the video's RTX stream instead, and the
    // viewer, which starts on what the starting estimate allows, ends on
    // the top layer.
    let media = [viewer.video.ssrc, viewer.audio.ssrc];
    let repair = to_viewer
        .iter()
        .filter(|s| s.rtp_ssrc.is_some_and(|ssrc| !media.contains(&ssrc)))
        .count();
    assert!(repair > 0, "padding on the RTX stream");
    let got = got(&call.sim, &viewer, joined);
    assert!(got.frames >= 6 * 20, "frames: {}", got.frames);
    assert_eq!(
        reported(&call.sim, viewer.video.id).map(|r| r.0),
        Some(Some(2)),
        "the top layer once probed"
    );
}
