//! Loss repair: what a viewer's link loses, the viewer asks for again (NACK)
//! and the router resends from its retransmission cache, which is bounded by
//! time (`RTX_CACHE_AGE`) to keep memory per viewer small. The cache still
//! covers a link with a 200 ms round trip.

use crate::harness::*;
use crate::media::vp8_payload;
use std::collections::BTreeSet;
use std::time::Duration;

const FRAME: Duration = Duration::from_millis(33);
/// Packets per frame: a 720p frame is several datagrams.
const PACKETS_PER_FRAME: u64 = 4;

#[test]
fn a_viewer_behind_a_lossy_link_with_a_200_ms_round_trip_gets_every_packet() {
    let mut sim = Sim::new();
    let (sender, viewer, consumer) = sim.video_to_viewer();
    sim.resume(&consumer);
    // One datagram in 20 lost, 100 ms each way (the way back is the
    // harness's own, nearly nothing; the NACK's trip is the link's).
    sim.lossy_downlink(viewer, 20, Duration::from_millis(100));
    let mut seq = 0u64;
    let mut frame = 0u64;
    sim.every(FRAME, Duration::from_secs(4), |sim, _| {
        for i in 0..PACKETS_PER_FRAME {
            let key = frame.is_multiple_of(100) && i == 0;
            sim.send_vp8(
                sender,
                VIDEO_SSRC,
                10_000 + seq,
                (frame * 3000) as u32,
                vp8_payload(key, seq as u8),
            );
            seq += 1;
        }
        frame += 1;
    });
    // Let the last repairs land.
    sim.advance(Duration::from_millis(600));
    let lost = sim.peer(viewer).downlink.as_ref().map_or(0, |l| l.dropped);
    assert!(lost >= 20, "the link lost datagrams: {lost}");
    let got: BTreeSet<u64> = sim
        .peer(viewer)
        .received_from(consumer.ssrc)
        .iter()
        .map(|p| p.seq)
        .collect();
    let (first, last) = (
        *got.first().expect("video arrived"),
        *got.last().expect("video arrived"),
    );
    let missing: Vec<u64> = (first..=last).filter(|s| !got.contains(s)).collect();
    assert!(missing.is_empty(), "every packet arrives, lost ones resent: missing {missing:?} of {first}..={last} ({lost} lost on the link)");
    assert!(
        last - first + 1 >= 4 * 30 * PACKETS_PER_FRAME - 2 * PACKETS_PER_FRAME,
        "the whole stream: {first}..={last}"
    );
}
