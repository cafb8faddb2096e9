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

/// A binding request naming `ufrag`, keyed with the transport's `password`
/// (USERNAME, PRIORITY, ICE-CONTROLLING, USE-CANDIDATE, MESSAGE-INTEGRITY,
/// FINGERPRINT): str0m answers it, so the router learns the path, which is
/// what lets later datagrams from it reach str0m.
fn binding_request(ufrag: &str, password: &str) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    m.extend_from_slice(&[7; 12]);
    let attr = |m: &mut Vec<u8>, kind: u16, value: &[u8]| {
        m.extend_from_slice(&kind.to_be_bytes());
        m.extend_from_slice(&(value.len() as u16).to_be_bytes());
        m.extend_from_slice(value);
        m.resize(m.len().div_ceil(4) * 4, 0);
    };
    attr(&mut m, 0x0006, format!("{ufrag}:fuzz").as_bytes());
    attr(&mut m, 0x0024, &0x6e00_1eff_u32.to_be_bytes());
    attr(&mut m, 0x802a, &0x0102_0304_0506_0708_u64.to_be_bytes());
    attr(&mut m, 0x0025, &[]);
    // The header's length: up to MESSAGE-INTEGRITY for its HMAC, then to FINGERPRINT.
    let set_len = |m: &mut Vec<u8>, len: usize| m[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    let body = m.len() - 20;
    set_len(&mut m, body + 24);
    let tag = str0m::crypto::from_feature_flags().sha1_hmac_provider.sha1_hmac(password.as_bytes(), &[&m]);
    attr(&mut m, 0x0008, &tag);
    set_len(&mut m, body + 32);
    let mut crc = !0u32;
    for &byte in &m {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    attr(&mut m, 0x8028, &(!crc ^ 0x5354_554e).to_be_bytes());
    m
}

fuzz_target!(|data: &[u8]| {
    let local: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    let known: SocketAddr = "127.0.0.1:50000".parse().expect("address");
    let unknown: SocketAddr = "127.0.0.1:50001".parse().expect("address");
    let mut now = Instant::now();
    let mut router = Router::new(RouterConfig { local_addr: local, announced_ips: vec![local.ip()], udp: true, tcp_port: Some(local.port()), bandwidth_estimation: true });
    let info = router
        .create_transport(now, WebRtcTransportOptions { direction: Direction::Send, enable_sctp: true, force_tcp: false })
        .expect("a transport");
    let dtls: DtlsParameters = serde_json::from_value(serde_json::json!({
        "role": "client",
        "fingerprints": [{"algorithm": "sha-256", "value": vec!["AB"; 32].join(":")}]
    }))
    .expect("DTLS parameters");
    router.connect_transport(info.id, dtls).expect("connected");
    let request = binding_request(&info.ice_parameters.username_fragment, &info.ice_parameters.password);
    let mut answered = false;
    router.handle_datagram(now, Protocol::Udp, known, &request);
    router.drain(now, |_, to, _| answered |= to == known);
    assert!(answered, "the genuine binding request is answered, so the path is learned");

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
