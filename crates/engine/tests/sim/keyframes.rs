//! Key-frame requests: a viewer's PLI reaches the sender, at most once per
//! layer per 500 ms however many viewers ask; resuming a video consumer asks
//! for one; so does a receive transport that connects after its consumer was
//! resumed, since what was forwarded before never reached the viewer.

use crate::harness::*;
use crate::media::vp8_payload;
use simplesfu_engine::Direction;
use std::time::Duration;

const FRAME: Duration = Duration::from_millis(40);

/// Frame `n` of the standard video: one packet, a key frame every 50.
fn send_frame(sim: &mut Sim, sender: PeerId, n: u64) {
    sim.send_vp8(
        sender,
        VIDEO_SSRC,
        10_000 + n,
        (n * 3600) as u32,
        vp8_payload(n.is_multiple_of(50), n as u8),
    );
}

#[test]
fn plis_from_many_viewers_reach_the_sender_at_most_once_per_half_second() {
    let mut sim = Sim::new();
    let sender = sim.connected_peer(Direction::Send);
    let producer = sim.produce_video(sender);
    let viewers = sim.resumed_viewers(producer, 3);
    let mut frame = 0;
    sim.every(FRAME, Duration::from_secs(1), |sim, _| {
        send_frame(sim, sender, frame);
        frame += 1;
    });
    assert!(
        viewers
            .iter()
            .all(|(v, c)| !sim.peer(*v).received_from(c.ssrc).is_empty()),
        "video flows to every viewer"
    );

    // Every viewer sends a PLI with every frame for two seconds: 150 PLIs.
    let before = sim.peer(sender).keyframe_requests.len();
    sim.every(FRAME, Duration::from_secs(2), |sim, _| {
        send_frame(sim, sender, frame);
        frame += 1;
        for (viewer, consumer) in &viewers {
            sim.request_keyframe(*viewer, consumer.ssrc);
        }
    });
    sim.advance(FRAME);
    let requests = &sim.peer(sender).keyframe_requests[before..];
    assert!(
        (3..=5).contains(&requests.len()),
        "about one request per 500 ms reaches the sender: {requests:?}"
    );
    for pair in requests.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(500),
            "requests at least 500 ms apart, got {gap:?}"
        );
    }
}

#[test]
fn resuming_a_video_consumer_asks_the_sender_for_a_keyframe_at_once() {
    let mut sim = Sim::new();
    let (sender, viewer, consumer) = sim.video_to_viewer();
    let mut frame = 0;
    sim.every(FRAME, Duration::from_secs(1), |sim, _| {
        send_frame(sim, sender, frame);
        frame += 1;
    });
    assert!(
        sim.peer(viewer).received.is_empty(),
        "a consumer is created paused"
    );
    let before = sim.peer(sender).keyframe_requests.len();
    let resumed_at = sim.now;
    sim.resume(&consumer);
    assert!(
        sim.run_until(Duration::from_secs(1), |s| s
            .peer(sender)
            .keyframe_requests
            .len()
            > before),
        "a request comes"
    );
    let asked = sim.peer(sender).keyframe_requests[before].at - resumed_at;
    assert!(
        asked <= 3 * LATENCY,
        "the request reaches the sender one hop after the resume, took {asked:?}"
    );
}

#[test]
fn a_viewer_that_connects_after_its_consumer_was_resumed_gets_a_keyframe_requested_for_it() {
    let mut sim = Sim::new();
    let sender = sim.connected_peer(Direction::Send);
    let producer = sim.produce_video(sender);
    // The viewer's transport exists, but its client has not run ICE or DTLS
    // yet: the consumer is created and resumed before it can carry media.
    let viewer = sim.add_peer(Direction::Recv, false);
    let consumer = sim.consume(viewer, producer);
    sim.resume(&consumer);
    // The sender streams on, past the throttle window of the resume's own request.
    let mut frame = 0;
    sim.every(FRAME, Duration::from_secs(1), |sim, _| {
        send_frame(sim, sender, frame);
        frame += 1;
    });
    let before = sim.peer(sender).keyframe_requests.len();
    sim.go_online(viewer);
    let connected = sim.run_until(Duration::from_secs(5), |s| s.peer(viewer).connected);
    assert!(connected, "the viewer connects");
    let connected_at = sim.now;
    sim.every(FRAME, Duration::from_millis(200), |sim, _| {
        send_frame(sim, sender, frame);
        frame += 1;
    });
    let requests = &sim.peer(sender).keyframe_requests[before..];
    assert!(
        requests
            .iter()
            .any(|r| r.at >= connected_at && r.at - connected_at <= 3 * LATENCY),
        "the sender is asked for a key frame as the viewer connects: {requests:?}"
    );
    assert!(
        !sim.peer(viewer).received_from(consumer.ssrc).is_empty(),
        "and the viewer gets the video"
    );
}
