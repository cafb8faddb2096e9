//! A viewer whose receive transport connects (ICE and DTLS done) after its
//! consumers were created and resumed has missed the key frame those
//! consumers started from: the router asks each producer for a new one at
//! that moment, so the viewer gets a picture at once instead of waiting for
//! the sender's next periodic key frame.

mod common;

use common::*;
use simplesfu_engine::Direction;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_consumer_waiting_for_its_transport_gets_a_keyframe_when_the_transport_connects() {
    let sfu = Sfu::start();
    let mut sender = sfu.transport(Direction::Send, ClientCodecs::Browser);
    assert!(pump_until(&mut [&mut sender], WAIT, |p| p[0].connected), "sender connects");
    let producer = sfu.produce_video(&sfu.worker, &mut sender);
    // The viewer's receive transport exists, but its client has not run ICE
    // or DTLS yet: the consumer is created and resumed before it can carry media.
    let mut receiver = sfu.transport(Direction::Recv, ClientCodecs::Router);
    let info = sfu.block(sfu.worker.consume(receiver.id.expect("created"), producer)).expect("consumer");
    let ssrc = receiver.expect_consumer(&info);
    sfu.block(sfu.worker.set_consumer_paused(info.id, false)).expect("resume");
    // The sender streams on while the viewer is not connected, past the
    // throttle window of the resume's own key-frame request.
    let mut seq = 0u64;
    let mut send = |p: &mut ClientPeer| {
        seq += 1;
        p.send_rtp(1111, 96, 10_000 + seq, (seq * 3000) as u32, true, &vp8_payload(false, seq as u8));
    };
    pump_until(&mut [&mut sender], Duration::from_millis(700), |p| {
        send(&mut *p[0]);
        false
    });
    assert!(!receiver.connected);
    let before = sender.keyframe_requests;
    let got = pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| {
        send(&mut *p[0]);
        p[1].connected && p[0].keyframe_requests > before && !p[1].received_from(ssrc).is_empty()
    });
    assert!(
        got,
        "once the viewer connects, the sender is asked for a key frame (requests: {} -> {}, connected: {}, received: {})",
        before,
        sender.keyframe_requests,
        receiver.connected,
        receiver.received_from(ssrc).len()
    );
}
