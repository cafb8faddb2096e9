//! Simulcast: a consumer forwards the highest layer that is sending and
//! switches only at a key frame of its new layer, forwarding the old one
//! meanwhile; a layer that stops for 1.5 s is left at the next key frame of
//! the one below; VP8 picture numbering stays continuous across switches
//! and a resume.

use crate::harness::*;
use crate::media::{vp8_numbered_payload, vp8_payload};
use simplesfu_engine::Direction;
use std::time::Duration;
use str0m::media::Rid;

const FRAME: Duration = Duration::from_millis(40);

/// A simulcast sender and a viewer with a resumed consumer of it, on a
/// router that does not estimate bandwidth: these tests are about switching
/// layers, not the layers an estimate allows (tests/sim/bandwidth.rs).
struct Scenario {
    sim: Sim,
    sender: PeerId,
    viewer: PeerId,
    consumer: Consumed,
}

fn scenario() -> Scenario {
    let mut sim = Sim::with_estimation(false);
    let sender = sim.connected_peer(Direction::Send);
    let producer = sim.produce_simulcast(sender);
    let viewer = sim.connected_peer(Direction::Recv);
    let consumer = sim.consume(viewer, producer);
    sim.resume(&consumer);
    Scenario {
        sim,
        sender,
        viewer,
        consumer,
    }
}

/// The layers the viewer got, as runs: [2, 1, 2] means r2, then r1, then r2.
/// A payload's fill byte (or last byte) names its layer.
fn layer_runs(layers: impl Iterator<Item = u8>) -> Vec<u8> {
    let mut runs: Vec<u8> = Vec::new();
    for layer in layers {
        if runs.last() != Some(&layer) {
            runs.push(layer);
        }
    }
    runs
}

fn is_keyframe(payload: &[u8]) -> bool {
    payload[1] & 0x01 == 0
}

#[test]
fn a_consumer_forwards_the_highest_layer_from_its_keyframe_on() {
    let Scenario {
        mut sim,
        sender,
        viewer,
        consumer,
    } = scenario();
    sim.every(FRAME, Duration::from_secs(2), |sim, n| {
        for layer in 0..3u32 {
            // Key frames every 20 frames; the fill byte names the layer.
            let payload = vp8_payload(n % 20 == 7, layer as u8);
            sim.send_vp8(
                sender,
                SIMULCAST_SSRC + layer,
                1000 * u64::from(layer) + n,
                (n * 3600) as u32,
                payload,
            );
        }
    });
    let received = sim.peer(viewer).received_from(consumer.ssrc);
    assert!(
        received.len() >= 30,
        "the viewer gets the stream: {}",
        received.len()
    );
    assert_eq!(
        layer_runs(received.iter().map(|p| p.payload[2])),
        [2],
        "only the highest layer (r2) is forwarded"
    );
    assert!(
        is_keyframe(&received[0].payload),
        "forwarding starts at a key frame"
    );
}

#[test]
fn a_switch_up_waits_for_the_new_layers_keyframe_and_forwards_the_old_layer_meanwhile() {
    let Scenario {
        mut sim,
        sender,
        viewer,
        consumer,
    } = scenario();
    let send = |sim: &mut Sim, n: u64, layers: &[u32], top_keyframe_at: u64| {
        for &layer in layers {
            // r0 and r1 key frames once both are sending, every second.
            let key = if layer == 2 {
                n == top_keyframe_at
            } else {
                n % 25 == 5
            };
            sim.send_vp8(
                sender,
                SIMULCAST_SSRC + layer,
                1000 * u64::from(layer) + n,
                (n * 3600) as u32,
                vp8_payload(key, layer as u8),
            );
        }
    };
    // r0 and r1 only: the viewer gets r1.
    let mut frame = 0;
    sim.every(FRAME, Duration::from_secs(1), |sim, _| {
        send(sim, frame, &[0, 1], u64::MAX);
        frame += 1;
    });
    assert_eq!(
        layer_runs(
            sim.peer(viewer)
                .received_from(consumer.ssrc)
                .iter()
                .map(|p| p.payload[2])
        ),
        [1]
    );

    // r2 starts with delta frames; its first key frame comes 600 ms later.
    let requests_before = sim.peer(sender).keyframe_requests.len();
    let top_keyframe_at = frame + 15;
    let received_before = sim.peer(viewer).received_from(consumer.ssrc).len();
    sim.every(FRAME, Duration::from_millis(560), |sim, _| {
        send(sim, frame, &[0, 1, 2], top_keyframe_at);
        frame += 1;
    });
    let meanwhile = sim.peer(viewer).received_from(consumer.ssrc);
    assert!(
        meanwhile.len() >= received_before + 12,
        "r1 keeps flowing while r2 has no key frame"
    );
    assert!(
        meanwhile.iter().all(|p| p.payload[2] == 1),
        "nothing of r2 before its key frame"
    );
    let asked_r2 = sim.peer(sender).keyframe_requests[requests_before..]
        .iter()
        .any(|r| r.rid == Some(Rid::from("r2")));
    assert!(
        asked_r2,
        "the router asks r2 for a key frame: {:?}",
        &sim.peer(sender).keyframe_requests[requests_before..]
    );

    sim.every(FRAME, Duration::from_millis(400), |sim, _| {
        send(sim, frame, &[0, 1, 2], top_keyframe_at);
        frame += 1;
    });
    let received = sim.peer(viewer).received_from(consumer.ssrc);
    assert_eq!(
        layer_runs(received.iter().map(|p| p.payload[2])),
        [1, 2],
        "switched up once"
    );
    let first_r2 = received
        .iter()
        .find(|p| p.payload[2] == 2)
        .expect("r2 arrives");
    assert!(
        is_keyframe(&first_r2.payload),
        "the switch happens at r2's key frame"
    );
    for pair in received.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "one sequence across the switch"
        );
    }
}

#[test]
fn a_stopped_top_layer_is_left_after_one_and_a_half_seconds_at_the_next_lower_keyframe() {
    let Scenario {
        mut sim,
        sender,
        viewer,
        consumer,
    } = scenario();
    let mut frame = 0;
    let mut send = |sim: &mut Sim, layers: &[u32]| {
        for &layer in layers {
            // Key frames of every layer every 10 frames (400 ms), the first
            // once all three are sending.
            let payload = vp8_payload(frame % 10 == 5, layer as u8);
            sim.send_vp8(
                sender,
                SIMULCAST_SSRC + layer,
                1000 * u64::from(layer) + frame,
                (frame * 3600) as u32,
                payload,
            );
        }
        frame += 1;
    };
    sim.every(FRAME, Duration::from_secs(1), |sim, _| {
        send(sim, &[0, 1, 2])
    });
    let last_r2 = sim
        .peer(viewer)
        .received_from(consumer.ssrc)
        .last()
        .expect("r2 flows")
        .at;
    sim.every(FRAME, Duration::from_secs(3), |sim, _| send(sim, &[0, 1]));
    let received = sim.peer(viewer).received_from(consumer.ssrc);
    assert_eq!(
        layer_runs(received.iter().map(|p| p.payload[2])),
        [2, 1],
        "down to r1 once r2 stopped"
    );
    let first_r1 = received
        .iter()
        .find(|p| p.payload[2] == 1)
        .expect("r1 arrives");
    let waited = first_r1.at - last_r2;
    assert!(
        waited >= Duration::from_millis(1500)
            && waited <= Duration::from_millis(1500) + 10 * FRAME + 2 * LATENCY,
        "r2 counts as sending for 1.5 s, then r1 follows at its next key frame; waited {waited:?}"
    );
    assert!(
        is_keyframe(&first_r1.payload),
        "the switch happens at a key frame of r1"
    );
}

/// What the receiver's frame reference finder reads: (PictureID, TL0PICIDX, KEYIDX).
fn vp8_numbers(p: &[u8]) -> (u16, u8, u8) {
    assert_eq!(
        (p[0] & 0x80, p[1]),
        (0x80, 0xf0),
        "descriptor layout kept: {:02x?}",
        &p[..6]
    );
    assert_eq!(p[2] & 0x80, 0x80, "the PictureID stays 15 bits wide");
    (
        (u16::from(p[2] & 0x7f) << 8) | u16::from(p[3]),
        p[4],
        p[5] & 0x1f,
    )
}

#[test]
fn vp8_picture_numbering_stays_continuous_across_simulcast_switches_and_a_resume() {
    let Scenario {
        mut sim,
        sender,
        viewer,
        consumer,
    } = scenario();
    // Each layer numbers its pictures on its own, as libwebrtc's simulcast
    // encoders do; the top layer's PictureID wraps past 0x7fff.
    const PICTURE_ID: [u16; 3] = [100, 20_000, 0x7fe0];
    const TL0: [u8; 3] = [10, 200, 250];
    const KEY_IDX: [u8; 3] = [0, 17, 30];
    let mut frame = 0u64;
    let mut send = |sim: &mut Sim, layers: &[u32]| {
        frame += 1;
        let key = frame.is_multiple_of(20);
        for &layer in layers {
            let l = layer as usize;
            let payload = vp8_numbered_payload(
                PICTURE_ID[l].wrapping_add(frame as u16) & 0x7fff,
                TL0[l].wrapping_add(frame as u8),
                KEY_IDX[l].wrapping_add((frame / 20) as u8),
                key,
                layer as u8,
            );
            sim.send_vp8(
                sender,
                SIMULCAST_SSRC + layer,
                1000 * (u64::from(layer) + 1) + frame,
                (frame * 3600) as u32,
                payload,
            );
        }
    };
    let runs = |sim: &Sim| {
        layer_runs(
            sim.peer(viewer)
                .received_from(consumer.ssrc)
                .iter()
                .map(|p| *p.payload.last().expect("payload")),
        )
    };

    sim.every(FRAME, Duration::from_secs(2), |sim, _| {
        send(sim, &[0, 1, 2])
    });
    assert_eq!(runs(&sim), [2], "the top layer flows first");
    // The top layer stops: after 1.5 s the consumer drops to r1 at its key frame.
    sim.every(FRAME, Duration::from_secs(3), |sim, _| send(sim, &[0, 1]));
    assert_eq!(runs(&sim), [2, 1], "the consumer switches down to r1");
    // The top layer comes back: the consumer switches up at its key frame.
    sim.every(FRAME, Duration::from_secs(2), |sim, _| {
        send(sim, &[0, 1, 2])
    });
    assert_eq!(runs(&sim), [2, 1, 2], "the consumer switches back up to r2");
    // Pause, let the producer run on, resume: forwarding restarts at a key frame.
    sim.pause(&consumer);
    sim.every(FRAME, Duration::from_millis(500), |sim, _| {
        send(sim, &[0, 1, 2])
    });
    let before = sim.peer(viewer).received_from(consumer.ssrc).len();
    sim.resume(&consumer);
    sim.every(FRAME, Duration::from_secs(2), |sim, _| {
        send(sim, &[0, 1, 2])
    });
    assert!(
        sim.peer(viewer).received_from(consumer.ssrc).len() >= before + 20,
        "packets come back after the resume"
    );

    let received = sim.peer(viewer).received_from(consumer.ssrc);
    let numbers: Vec<(u16, u8, u8)> = received.iter().map(|p| vp8_numbers(&p.payload)).collect();
    // Every packet here is a whole picture with TID 0: PictureID and
    // TL0PICIDX advance by exactly one, KEYIDX by at most one.
    for (w, pair) in numbers.windows(2).zip(received.windows(2)) {
        let (a, b) = (w[0], w[1]);
        let at = (pair[0].seq, pair[1].seq);
        assert_eq!(
            b.0.wrapping_sub(a.0) & 0x7fff,
            1,
            "PictureID continues at {at:?}: {a:?} -> {b:?}"
        );
        assert_eq!(
            b.1.wrapping_sub(a.1),
            1,
            "TL0PICIDX continues at {at:?}: {a:?} -> {b:?}"
        );
        assert!(
            b.2.wrapping_sub(a.2) & 0x1f <= 1,
            "KEYIDX continues at {at:?}: {a:?} -> {b:?}"
        );
    }
    assert!(
        numbers.windows(2).any(|w| w[1].0 < w[0].0),
        "the PictureID wrapped past 0x7fff on the way"
    );
}
