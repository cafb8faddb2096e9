//! ICE-TCP against strangers: anyone can open a connection before proving
//! anything, so the worker closes connections over its caps at once, closes
//! those that send no valid binding request in time, and closes
//! authenticated ones that go idle. A client that does its part keeps its
//! connection and its media, and clients behind one address (a NAT) are
//! not refused for each other once they have authenticated.

mod common;

use common::*;
use simplesfu_engine::{
    Direction, IceTcpLimits, WebRtcTransportInfo, WebRtcTransportOptions, WorkerSettings,
    WorkerStats,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use str0m::ice::{StunMessage, TransId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longer than any close the tests wait for.
const WAIT: Duration = Duration::from_secs(5);

fn sfu_with(limits: IceTcpLimits) -> Sfu {
    Sfu::start_with(WorkerSettings {
        ice_tcp_limits: limits,
        ..WorkerSettings::new("worker-0", LOOPBACK, 0, LOOPBACK)
    })
}

fn tcp_addr(sfu: &Sfu) -> SocketAddr {
    sfu.worker.tcp_addr().expect("ICE-TCP is on")
}

/// A connection to `server` from `source` (any 127.x.y.z works on loopback).
async fn connect_from(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("bind a loopback source");
    socket
        .connect(server)
        .await
        .expect("the kernel accepts the connection")
}

/// Whether the server closes the connection (EOF or reset) within `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Whether the connection is still open: nothing to read, and no EOF.
fn still_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

async fn stats(sfu: &Sfu) -> WorkerStats {
    sfu.worker.stats().await.expect("worker runs")
}

/// Ask the worker for its figures until `done` holds (the accept loop and
/// connection tasks report asynchronously).
async fn stats_until(sfu: &Sfu, done: impl Fn(&WorkerStats) -> bool) -> WorkerStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = stats(sfu).await;
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn connections_over_the_caps_are_closed_by_the_server() {
    let sfu = sfu_with(IceTcpLimits {
        max_connections: 3,
        max_unauthenticated_per_source: 2,
        auth_timeout: Duration::from_secs(60),
        ..IceTcpLimits::default()
    });
    let server = tcp_addr(&sfu);
    let (one, two, three) = (
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
    );
    sfu.block(async {
        let a1 = connect_from(one, server).await;
        let a2 = connect_from(one, server).await;
        let mut a3 = connect_from(one, server).await;
        assert!(
            closed_by_server(&mut a3, WAIT).await,
            "a third stranger from one address is closed"
        );
        assert!(
            still_open(&a1) && still_open(&a2),
            "the first two from that address stay"
        );

        let b1 = connect_from(two, server).await;
        let mut c1 = connect_from(three, server).await;
        assert!(
            closed_by_server(&mut c1, WAIT).await,
            "a fourth connection to the worker is closed"
        );
        assert!(still_open(&b1), "the third one stays");
        let s = stats(&sfu).await;
        assert_eq!((s.tcp_connections, s.tcp_connections_refused), (3, 2));

        // A connection that ends frees its place for anyone.
        drop(a1);
        let s = stats_until(&sfu, |s| s.tcp_connections == 2).await;
        assert_eq!(
            s.tcp_connections, 2,
            "the closed connection is no longer counted"
        );
        let c2 = connect_from(three, server).await;
        let s = stats_until(&sfu, |s| s.tcp_connections == 3).await;
        assert_eq!(
            (s.tcp_connections, s.tcp_connections_refused),
            (3, 2),
            "the new one is admitted"
        );
        assert!(still_open(&c2) && still_open(&a2) && still_open(&b1));
    });
}

/// A binding request as a browser sends it to `transport`, keyed with
/// `password`, framed for ICE-TCP (RFC 4571); built by str0m's own STUN code.
fn binding_request(transport: &WebRtcTransportInfo, password: &str) -> Vec<u8> {
    let username = format!("{}:client", transport.ice_parameters.username_fragment);
    let request =
        StunMessage::binding_request(&username, TransId::new(), true, 7, 0x6e00_1eff, true);
    let hmac = |key: &[u8], payloads: &[&[u8]]| {
        str0m::crypto::from_feature_flags()
            .sha1_hmac_provider
            .sha1_hmac(key, payloads)
    };
    let mut buf = [0u8; 512];
    let n = request
        .to_bytes(Some(password.as_bytes()), &mut buf, hmac)
        .expect("a binding request fits");
    let mut framed = (n as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&buf[..n]);
    framed
}

/// A send transport's ICE parameters, as signaling gives them to a client.
fn transport(sfu: &Sfu) -> WebRtcTransportInfo {
    sfu.block(sfu.worker.create_webrtc_transport(WebRtcTransportOptions {
        direction: Direction::Send,
        enable_sctp: false,
        force_tcp: false,
    }))
    .expect("transport")
}

#[test]
fn connections_without_a_valid_binding_request_are_closed_at_the_deadline() {
    let auth_timeout = Duration::from_millis(400);
    let sfu = sfu_with(IceTcpLimits {
        auth_timeout,
        ..IceTcpLimits::default()
    });
    let server = tcp_addr(&sfu);
    let forged = binding_request(&transport(&sfu), "not-the-password");
    sfu.block(async {
        let started = Instant::now();
        let mut silent = connect_from(Ipv4Addr::LOCALHOST, server).await;
        let mut garbage = connect_from(Ipv4Addr::LOCALHOST, server).await;
        let mut forger = connect_from(Ipv4Addr::LOCALHOST, server).await;
        garbage
            .write_all(&[0x00, 0x04, 0xde, 0xad, 0xbe, 0xef])
            .await
            .expect("write");
        forger.write_all(&forged).await.expect("write");
        // Keep knocking with the forged request: it must not keep the connection.
        let forger_closed = async {
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if closed_by_server(&mut forger, Duration::from_millis(100)).await {
                    return true;
                }
                if forger.write_all(&forged).await.is_err() {
                    return true;
                }
            }
            false
        };
        let (silent_closed, garbage_closed, forger_closed) = tokio::join!(
            closed_by_server(&mut silent, WAIT),
            closed_by_server(&mut garbage, WAIT),
            forger_closed
        );
        assert!(silent_closed, "a connection that sends nothing is closed");
        assert!(garbage_closed, "a connection that sends no STUN is closed");
        assert!(
            forger_closed,
            "a connection whose binding requests fail MESSAGE-INTEGRITY is closed"
        );
        assert!(started.elapsed() >= auth_timeout, "not before the deadline");
        let s = stats_until(&sfu, |s| s.tcp_connections == 0).await;
        assert_eq!(
            (s.tcp_connections, s.tcp_connections_closed_unauthenticated),
            (0, 3)
        );
    });
}

#[test]
fn an_authenticated_connection_outlives_the_deadline_and_is_closed_when_idle() {
    let auth_timeout = Duration::from_millis(300);
    let sfu = sfu_with(IceTcpLimits {
        auth_timeout,
        idle_timeout: Duration::from_millis(800),
        ..IceTcpLimits::default()
    });
    let ResumedVideo {
        mut sender,
        mut receiver,
        consumer_ssrc,
    } = sfu.resumed_video(true);

    // Media flows for three times the authentication deadline.
    let until = Instant::now() + auth_timeout * 3;
    let mut seq = 0;
    stream_video(&mut sender, &mut receiver, &mut seq, WAIT, |_, _| {
        Instant::now() > until
    });
    let before = receiver.received_from(consumer_ssrc).len();
    let more = stream_video(&mut sender, &mut receiver, &mut seq, WAIT, |_, r| {
        r.received_from(consumer_ssrc).len() >= before + 20
    });
    assert!(
        before > 0 && more,
        "video still crosses both ICE-TCP legs after the deadline"
    );
    let s = sfu.block(stats(&sfu));
    assert_eq!(
        (s.tcp_connections, s.tcp_connections_closed_unauthenticated),
        (2, 0)
    );

    // The sender goes silent: the server closes its connection.
    assert!(
        sender.tcp_closed_by_server(WAIT),
        "an idle connection is closed"
    );
    let s = sfu.block(stats_until(&sfu, |s| s.tcp_connections_closed_idle >= 1));
    assert!(s.tcp_connections_closed_idle >= 1);
    assert_eq!(s.tcp_connections_closed_unauthenticated, 0);
}

#[test]
fn authenticated_clients_behind_one_address_do_not_count_against_its_cap_on_strangers() {
    let sfu = sfu_with(IceTcpLimits {
        max_unauthenticated_per_source: 1,
        ..IceTcpLimits::default()
    });
    let mut sender = sfu.transport_with(&sfu.worker, Direction::Send, ClientCodecs::Browser, true);
    assert!(
        pump_until(&mut [&mut sender], WAIT, |p| p[0].connected),
        "the first client connects over TCP"
    );
    let mut receiver = sfu.transport_with(&sfu.worker, Direction::Recv, ClientCodecs::Router, true);
    assert!(
        pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| p[1].connected),
        "a second client from the same address connects while the first holds its connection"
    );
    let server = tcp_addr(&sfu);
    sfu.block(async {
        let stranger = connect_from(Ipv4Addr::LOCALHOST, server).await;
        let mut another = connect_from(Ipv4Addr::LOCALHOST, server).await;
        assert!(
            closed_by_server(&mut another, WAIT).await,
            "a second stranger from that address is closed"
        );
        assert!(
            still_open(&stranger),
            "the first stranger waits for its deadline"
        );
        let s = stats(&sfu).await;
        assert_eq!((s.tcp_connections, s.tcp_connections_refused), (3, 1));
    });
}

#[test]
fn a_transport_keeps_no_more_authenticated_connections_than_its_path_slots() {
    const SLOTS: usize = 8;
    let sfu = sfu_with(IceTcpLimits {
        auth_timeout: Duration::from_millis(400),
        ..IceTcpLimits::default()
    });
    let server = tcp_addr(&sfu);
    let info = transport(&sfu);
    let request = binding_request(&info, &info.ice_parameters.password);
    sfu.block(async {
        let mut connections = Vec::new();
        for i in 0..SLOTS + 2 {
            let mut c = connect_from(Ipv4Addr::LOCALHOST, server).await;
            c.write_all(&request).await.expect("write");
            if i < SLOTS {
                // Answered before the next one connects, so these take the slots.
                let mut len = [0u8; 2];
                tokio::time::timeout(WAIT, c.read_exact(&mut len))
                    .await
                    .expect("answered in time")
                    .expect("answered");
                let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
                c.read_exact(&mut answer).await.expect("the whole answer");
            }
            connections.push(c);
        }
        for (i, c) in connections.iter_mut().enumerate().skip(SLOTS) {
            assert!(
                closed_by_server(c, WAIT).await,
                "connection {i} holds no path of the transport and is closed"
            );
        }
        for (i, c) in connections.iter().enumerate().take(SLOTS) {
            assert!(still_open(c), "connection {i} holds a path and stays");
        }
        let s = stats_until(&sfu, |s| {
            s.tcp_connections_closed_unauthenticated == 2 && s.tcp_connections == SLOTS as u64
        })
        .await;
        assert_eq!(
            (s.tcp_connections, s.tcp_connections_closed_unauthenticated),
            (SLOTS as u64, 2)
        );
    });
}
