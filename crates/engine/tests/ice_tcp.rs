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
        .block(sfu.worker.create_webrtc_transport(WebRtcTransportOptions {
            direction: Direction::Send,
            enable_sctp: true,
            force_tcp: false,
        }))
        .expect("transport");
    let udp = info
        .ice_candidates
        .iter()
        .find(|c| c.protocol == Protocol::Udp)
        .expect("udp candidate");
    let tcp = info
        .ice_candidates
        .iter()
        .find(|c| c.protocol == Protocol::Tcp)
        .expect("tcp candidate");
    assert_eq!(
        tcp.tcp_type,
        Some(mediasoup_types::data_structures::IceCandidateTcpType::Passive)
    );
    assert!(tcp.priority < udp.priority, "browsers prefer UDP");
    assert_eq!(Some(tcp.port), sfu.worker.tcp_addr().map(|a| a.port()));
}

#[test]
fn media_flows_over_ice_tcp_both_ways() {
    let sfu = Sfu::start();
    let ResumedVideo {
        mut sender,
        mut receiver,
        consumer_ssrc,
    } = sfu.resumed_video(true);
    let got = stream_video(&mut sender, &mut receiver, &mut 0, WAIT, |_, r| {
        r.received_from(consumer_ssrc).len() >= 20
    });
    assert!(got, "video crosses the SFU over TCP on both legs");
}
