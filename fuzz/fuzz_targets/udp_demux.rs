//! The UDP demux path: arbitrary datagrams at a router that has a connected
//! transport (DTLS started, a path learned from a binding request), from that
//! path and from an unknown one, over UDP and ICE-TCP framing, with time
//! moving on. Nothing may panic; garbage is dropped and counted.
//!
//! Input format: repeated [control byte][datagram bytes]; the control byte's
//! low 6 bits times 24 give the datagram length (capped by what is left),
//! bit 6 picks the known path, bit 7 picks TCP.

#![no_main]

use libfuzzer_sys::fuzz_target;
use simplesfu_engine::{Direction, Router, RouterConfig, WebRtcTransportOptions};
use simplesfu_proto::types::data_structures::DtlsParameters;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::net::Protocol;

/// A binding request naming `ufrag` (its integrity is wrong: enough for the
/// router to learn the path, which is what lets later datagrams reach str0m).
fn binding_request(ufrag: &str) -> Vec<u8> {
    let username = format!("{ufrag}:fuzz");
    let mut attrs = vec![0x00, 0x06];
    attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attrs.extend_from_slice(username.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    attrs.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    attrs.extend_from_slice(&[0xab; 20]);
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    m.extend_from_slice(&[7; 12]);
    m.extend_from_slice(&attrs);
    m
}

fuzz_target!(|data: &[u8]| {
    let local: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    let known: SocketAddr = "127.0.0.1:50000".parse().expect("address");
    let unknown: SocketAddr = "127.0.0.1:50001".parse().expect("address");
    let mut now = Instant::now();
    let mut router = Router::new(RouterConfig { local_addr: local, announced_addr: local, udp: true, announced_tcp_addr: Some(local) });
    let info = router
        .create_transport(now, WebRtcTransportOptions { direction: Direction::Send, enable_sctp: true })
        .expect("a transport");
    let dtls: DtlsParameters = serde_json::from_value(serde_json::json!({
        "role": "client",
        "fingerprints": [{"algorithm": "sha-256", "value": vec!["AB"; 32].join(":")}]
    }))
    .expect("DTLS parameters");
    router.connect_transport(info.id, dtls).expect("connected");
    router.handle_datagram(now, Protocol::Udp, known, &binding_request(&info.ice_parameters.username_fragment));
    router.drain(now, |_, _, _| {});

    let mut rest = data;
    while let Some((&control, tail)) = rest.split_first() {
        let len = (usize::from(control & 0x3f) * 24).min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        rest = tail;
        let source = if control & 0x40 != 0 { known } else { unknown };
        let proto = if control & 0x80 != 0 { Protocol::Tcp } else { Protocol::Udp };
        router.handle_datagram(now, proto, source, datagram);
        router.drain(now, |_, _, _| {});
        now += Duration::from_millis(7);
        router.handle_timeout(now);
        router.drain(now, |_, _, _| {});
    }
    let stats = router.stats();
    assert_eq!(stats.transports, 1, "garbage never closes or adds transports");
});
