//! Several announced addresses: a worker bound to the wildcard address
//! offers a candidate for each, and a client that reaches it through any of
//! them, not only the one str0m holds, gets media both ways.

mod common;

use common::*;
use mediasoup_types::data_structures::Protocol;
use simplesfu_engine::{Direction, EngineError, WebRtcTransportOptions, Worker, WorkerSettings};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
/// Linux routes all of 127.0.0.0/8 to loopback: a second address without setup.
const SECOND_LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

#[test]
fn a_client_on_a_later_announced_address_gets_media() {
    let sfu = Sfu::start();
    let settings = WorkerSettings {
        announced_ips: vec![SECOND_LOOPBACK, LOOPBACK],
        ..WorkerSettings::new("wildcard", IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, LOOPBACK)
    };
    let (worker, _events) = Worker::spawn(settings).expect("worker binds the wildcard address");
    let options = |direction| WebRtcTransportOptions {
        direction,
        enable_sctp: true,
        force_tcp: false,
    };
    let mut sender_info = sfu
        .block(worker.create_webrtc_transport(options(Direction::Send)))
        .expect("send transport");
    let announced: Vec<(&str, Protocol)> = sender_info
        .ice_candidates
        .iter()
        .map(|c| (c.address.as_str(), c.protocol))
        .collect();
    assert_eq!(
        announced,
        [
            ("127.0.0.2", Protocol::Udp),
            ("127.0.0.1", Protocol::Udp),
            ("127.0.0.2", Protocol::Tcp),
            ("127.0.0.1", Protocol::Tcp)
        ]
    );
    // Both clients use 127.0.0.1, the second address: str0m holds only the first.
    sender_info
        .ice_candidates
        .retain(|c| c.address == "127.0.0.1");
    let mut receiver_info = sfu
        .block(worker.create_webrtc_transport(options(Direction::Recv)))
        .expect("recv transport");
    receiver_info
        .ice_candidates
        .retain(|c| c.address == "127.0.0.1");
    let mut sender = sfu.client_for(&worker, &sender_info, ClientCodecs::Browser, false);
    let mut receiver = sfu.client_for(&worker, &receiver_info, ClientCodecs::Router, false);
    assert!(
        pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| p[0].connected
            && p[1].connected),
        "ICE and DTLS complete through the second address"
    );
    let ssrc = sfu.consume_resumed_video(&worker, &mut sender, &mut receiver);
    let got = stream_video(&mut sender, &mut receiver, &mut 0, WAIT, |_, r| {
        r.received_from(ssrc).len() >= 20
    });
    assert!(got, "video crosses the SFU through the second address");
}

#[test]
fn force_tcp_offers_only_tcp_candidates_and_connects_over_them() {
    let sfu = Sfu::start();
    let forced = |direction| WebRtcTransportOptions {
        direction,
        enable_sctp: true,
        force_tcp: true,
    };
    let sender_info = sfu
        .block(sfu.worker.create_webrtc_transport(forced(Direction::Send)))
        .expect("send transport");
    assert!(!sender_info.ice_candidates.is_empty());
    assert!(
        sender_info
            .ice_candidates
            .iter()
            .all(|c| c.protocol == Protocol::Tcp),
        "{:?}",
        sender_info.ice_candidates
    );
    let receiver_info = sfu
        .block(sfu.worker.create_webrtc_transport(forced(Direction::Recv)))
        .expect("recv transport");
    let mut sender = sfu.client_for(&sfu.worker, &sender_info, ClientCodecs::Browser, true);
    let mut receiver = sfu.client_for(&sfu.worker, &receiver_info, ClientCodecs::Router, true);
    assert!(
        pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| p[0].connected
            && p[1].connected),
        "connected over TCP"
    );

    let udp_only = WorkerSettings {
        tcp: false,
        ..WorkerSettings::new("udp-only", LOOPBACK, 0, LOOPBACK)
    };
    let (udp_only, _events) = Worker::spawn(udp_only).expect("worker");
    let refused = sfu.block(udp_only.create_webrtc_transport(forced(Direction::Send)));
    assert!(
        matches!(refused, Err(EngineError::TcpUnavailable)),
        "{refused:?}"
    );
}
