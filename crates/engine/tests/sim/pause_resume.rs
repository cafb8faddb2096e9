//! Pause and resume of a consumer: nothing is forwarded while paused, and
//! after a resume the viewer sees one continuous stream: the next sequence
//! number, and a timestamp that moved on by the time that passed, whatever
//! the producer sent meanwhile.

use crate::harness::*;
use crate::media::vp8_payload;
use std::time::Duration;

const FRAME: Duration = Duration::from_millis(40);
/// RTP ticks per frame at 90 kHz.
const FRAME_TICKS: u32 = 3600;

#[test]
fn a_resumed_consumer_continues_its_sequence_numbers_and_its_timestamps_follow_the_clock() {
    let mut sim = Sim::new();
    let (sender, viewer, consumer) = sim.video_to_viewer();
    let mut frame = 0u64;
    let mut stream = |sim: &mut Sim, duration: Duration| {
        sim.every(FRAME, duration, |sim, _| {
            // The producer's own numbers start high, as a browser's do.
            sim.send_vp8(
                sender,
                VIDEO_SSRC,
                40_000 + frame,
                1_000_000 + frame as u32 * FRAME_TICKS,
                vp8_payload(frame.is_multiple_of(25), 1),
            );
            frame += 1;
        });
        sim.advance(2 * LATENCY);
    };
    sim.resume(&consumer);
    stream(&mut sim, Duration::from_secs(1));
    let before_pause = sim.peer(viewer).received_from(consumer.ssrc).len();
    assert!(
        before_pause >= 20,
        "video flows once resumed: {before_pause} packets"
    );

    sim.pause(&consumer);
    stream(&mut sim, Duration::from_secs(2));
    assert_eq!(
        sim.peer(viewer).received_from(consumer.ssrc).len(),
        before_pause,
        "a paused consumer gets nothing"
    );

    let requests = sim.peer(sender).keyframe_requests.len();
    sim.resume(&consumer);
    stream(&mut sim, Duration::from_secs(1));
    assert!(
        sim.peer(sender).keyframe_requests.len() > requests,
        "the resume asks for a key frame"
    );

    let received = sim.peer(viewer).received_from(consumer.ssrc);
    assert!(
        received.len() >= before_pause + 20,
        "video flows again after the resume"
    );
    assert!(
        received[0].seq < 100,
        "consumer sequence numbers start low: {}",
        received[0].seq
    );
    for pair in received.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "one sequence, no gap, across the pause"
        );
    }
    for pair in received[..before_pause]
        .windows(2)
        .chain(received[before_pause..].windows(2))
    {
        assert_eq!(
            pair[1].timestamp.wrapping_sub(pair[0].timestamp),
            FRAME_TICKS,
            "timestamps as the producer's within a run"
        );
    }
    let (last, first) = (received[before_pause - 1], received[before_pause]);
    let gap = first.at - last.at;
    let expected = (gap.as_micros() * 90 / 1000) as u32;
    let jump = first.timestamp.wrapping_sub(last.timestamp);
    assert!(jump.abs_diff(expected) <= 90, "across the pause the timestamp moves by the time passed ({gap:?} = {expected} ticks), got {jump}");
}
