//! One frame fanned out to many viewers: the router hands its datagrams
//! over in batches while it is still polling the other viewers' transports
//! (`Router::drain_some`), so the first viewers do not wait for the whole
//! fan-out; a transport's datagrams stay together (one GSO group), and
//! every viewer gets the whole frame.

use crate::harness::*;
use crate::media::vp8_payload;
use simplesfu_engine::Direction;
use std::collections::{BTreeSet, HashMap};

const VIEWERS: usize = 12;
const FRAME_PACKETS: u64 = 3;

#[test]
fn a_frame_to_many_viewers_leaves_in_batches_of_whole_transports_and_reaches_everyone() {
    // Without the estimator's pacer, a viewer's packets leave at its first poll.
    let mut sim = Sim::with_estimation(false);
    let sender = sim.connected_peer(Direction::Send);
    let producer = sim.produce_video(sender);
    let viewers = sim.resumed_viewers(producer, VIEWERS);
    sim.advance(2 * LATENCY);

    // Hand over after 8 datagrams: the frame's 36 must leave in several batches.
    sim.flush_at = 8;
    let first = sim.router_sent.len();
    for packet in 0..FRAME_PACKETS {
        sim.send_vp8(
            sender,
            VIDEO_SSRC,
            40_000 + packet,
            1_000_000,
            vp8_payload(packet == 0, 1),
        );
    }
    sim.advance(2 * LATENCY);

    for (viewer, consumer) in &viewers {
        let got = sim.peer(*viewer).received_from(consumer.ssrc).len();
        assert_eq!(
            got, FRAME_PACKETS as usize,
            "viewer {viewer} gets the whole frame"
        );
    }
    let mut handovers_of: HashMap<PeerId, BTreeSet<usize>> = HashMap::new();
    for sent in &sim.router_sent[first..] {
        if let Some(peer) = sent.to.filter(|p| viewers.iter().any(|(v, _)| v == p)) {
            handovers_of.entry(peer).or_default().insert(sent.handover);
        }
    }
    let all: BTreeSet<usize> = handovers_of.values().flatten().copied().collect();
    assert!(
        all.len() >= 3,
        "the fan-out left in batches while polling: {all:?}"
    );
    for (viewer, handovers) in &handovers_of {
        assert_eq!(
            handovers.len(),
            1,
            "viewer {viewer}'s datagrams leave together: {handovers:?}"
        );
    }

    // Unlimited (the default of `drain`): one hand-over for everyone.
    sim.flush_at = usize::MAX;
    let first = sim.router_sent.len();
    for packet in FRAME_PACKETS..2 * FRAME_PACKETS {
        sim.send_vp8(
            sender,
            VIDEO_SSRC,
            40_000 + packet,
            1_003_600,
            vp8_payload(false, 1),
        );
    }
    sim.advance(2 * LATENCY);
    let batches: BTreeSet<usize> = sim.router_sent[first..]
        .iter()
        .filter(|s| s.to.is_some_and(|p| viewers.iter().any(|(v, _)| *v == p)))
        .map(|s| s.handover)
        .collect();
    assert_eq!(
        batches.len(),
        1,
        "without a limit the frame leaves in one hand-over: {batches:?}"
    );
}
