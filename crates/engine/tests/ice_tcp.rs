//! ICE over TCP: a client that can only reach the TCP port still sends and
//! receives media.

mod common;

use common::*;
use mediasoup_types::data_structures::Protocol;
use simplesfu_engine::{Direction, WebRtcTransportOptions};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn transports_offer_a_passive_tcp_candidate_below_udp() {
    let sfu = Sfu::start();
    let info = sfu
        .block(sfu.worker.create_webrtc_transport(WebRtcTransportOptions { direction: Direction::Send, enable_sctp: true }))
        .expect("transport");
    let udp = info.ice_candidates.iter().find(|c| c.protocol == Protocol::Udp).expect("udp candidate");
    let tcp = info.ice_candidates.iter().find(|c| c.protocol == Protocol::Tcp).expect("tcp candidate");
    assert_eq!(tcp.tcp_type, Some(mediasoup_types::data_structures::IceCandidateTcpType::Passive));
    assert!(tcp.priority < udp.priority, "browsers prefer UDP");
    assert_eq!(Some(tcp.port), sfu.worker.tcp_addr().map(|a| a.port()));
}

#[test]
fn media_flows_over_ice_tcp_both_ways() {
    let sfu = Sfu::start();
    let mut sender = sfu.transport_with(&sfu.worker, Direction::Send, ClientCodecs::Browser, true);
    let mut receiver = sfu.transport_with(&sfu.worker, Direction::Recv, ClientCodecs::Router, true);
    assert!(
        pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| p[0].connected && p[1].connected),
        "ICE and DTLS complete over TCP"
    );
    let producer = sfu.produce_video(&sfu.worker, &mut sender);
    let info = sfu.block(sfu.worker.consume(receiver.id.expect("created"), producer)).expect("consumer");
    let ssrc = receiver.expect_consumer(&info);
    sfu.block(sfu.worker.set_consumer_paused(info.id, false)).expect("resume");
    let mut seq = 0u64;
    let got = pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| {
        seq += 1;
        p[0].send_rtp(1111, 96, 5_000 + seq, (seq * 3000) as u32, true, &vp8_payload(false, seq as u8));
        p[1].received_from(ssrc).len() >= 20
    });
    assert!(got, "video crosses the SFU over TCP on both legs");
}
