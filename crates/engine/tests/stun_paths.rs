//! A transport learns a network path (where non-STUN datagrams are accepted
//! from) only from a STUN binding request that str0m answered, i.e. whose
//! MESSAGE-INTEGRITY checked out against the transport's ICE password. A
//! stranger who saw the USERNAME on the wire (both ufrags) but not the
//! password can neither redirect the media nor fill the transport's path
//! slots, which would keep its real client from moving to a new address.
//! Nor can they act before the client: the router checks MESSAGE-INTEGRITY
//! itself before it learns the client's ufrag from a request or ends an ICE
//! restart on the request's path.

mod common;

use common::*;
use simplesfu_engine::Direction;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
/// More than a transport's path slots (8), so a stranger whose requests were
/// learned would fill them all.
const ATTACKERS: usize = 9;

/// A full ICE binding request as a controlling browser sends it: USERNAME,
/// PRIORITY, ICE-CONTROLLING, USE-CANDIDATE (if `nominate`), then
/// MESSAGE-INTEGRITY keyed with `password` and FINGERPRINT.
fn binding_request(username: &str, password: &str, transaction: u8, nominate: bool) -> Vec<u8> {
    let mut attrs = Vec::new();
    let mut attr = |kind: u16, value: &[u8]| {
        attrs.extend_from_slice(&kind.to_be_bytes());
        attrs.extend_from_slice(&(value.len() as u16).to_be_bytes());
        attrs.extend_from_slice(value);
        attrs.resize(attrs.len().div_ceil(4) * 4, 0);
    };
    attr(0x0006, username.as_bytes());
    attr(0x0024, &0x6e00_1eff_u32.to_be_bytes());
    attr(0x802a, &0x1234_5678_9abc_def0_u64.to_be_bytes());
    if nominate {
        attr(0x0025, &[]);
    }
    let mut m = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    m.extend_from_slice(&[transaction; 12]);
    m.extend_from_slice(&attrs);
    // The length covers MESSAGE-INTEGRITY when it is computed, then FINGERPRINT too.
    m[2..4].copy_from_slice(&((attrs.len() + 24) as u16).to_be_bytes());
    let hmac = str0m::crypto::from_feature_flags()
        .sha1_hmac_provider
        .sha1_hmac(password.as_bytes(), &[&m]);
    m.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    m.extend_from_slice(&hmac);
    m[2..4].copy_from_slice(&((attrs.len() + 32) as u16).to_be_bytes());
    let fingerprint = crc32(&m) ^ 0x5354_554e;
    m.extend_from_slice(&[0x80, 0x28, 0x00, 0x04]);
    m.extend_from_slice(&fingerprint.to_be_bytes());
    m
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The full USERNAME a client's checks carry: `serverUfrag:clientUfrag`.
fn username_of(peer: &mut ClientPeer) -> String {
    format!(
        "{}:{}",
        peer.server_ice.username_fragment,
        peer.rtc.direct_api().local_ice_credentials().ufrag
    )
}

/// Everything that arrived on `socket` (it has a short read timeout).
fn datagrams_on(socket: &UdpSocket) -> usize {
    let mut buf = [0u8; 2000];
    let mut n = 0;
    while socket.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

#[test]
fn stun_requests_without_the_password_neither_redirect_media_nor_take_path_slots() {
    let sfu = Sfu::start();
    let mut sender = sfu.transport(Direction::Send, ClientCodecs::Browser);
    let mut receiver = sfu.transport(Direction::Recv, ClientCodecs::Router);
    assert!(
        pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| p[0].connected
            && p[1].connected),
        "both connect"
    );
    let producer = sfu.produce_video(&sfu.worker, &mut sender);
    let info = sfu
        .block(sfu.worker.consume(receiver.id.expect("created"), producer))
        .expect("consumer");
    let ssrc = receiver.expect_consumer(&info);
    sfu.block(sfu.worker.set_consumer_paused(info.id, false))
        .expect("resume");
    let mut seq = 0u64;
    let mut send = |p: &mut ClientPeer| {
        seq += 1;
        p.send_rtp(
            1111,
            96,
            10_000 + seq,
            (seq * 3000) as u32,
            true,
            &vp8_payload(seq % 30 == 1, seq as u8),
        );
    };
    assert!(
        pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| {
            send(&mut *p[0]);
            p[1].received_from(ssrc).len() >= 10
        }),
        "video flows"
    );

    // Strangers who saw both transports' USERNAMEs on the wire send checks
    // that would nominate their own address, keyed with a guessed password.
    let server = SocketAddr::new(LOOPBACK, sfu.worker.local_addr().port());
    let attackers: Vec<UdpSocket> = (0..ATTACKERS)
        .map(|_| {
            let socket = UdpSocket::bind((LOOPBACK, 0)).expect("attacker socket");
            socket
                .set_read_timeout(Some(Duration::from_millis(2)))
                .expect("timeout");
            socket
        })
        .collect();
    let forged = [
        binding_request(&username_of(&mut sender), "not-the-password", 1, true),
        binding_request(&username_of(&mut receiver), "not-the-password", 2, true),
    ];
    let dropped_before = sfu
        .block(sfu.worker.stats())
        .expect("stats")
        .datagrams_dropped;
    let mut forged_sent = 0u64;
    let before = receiver.received_from(ssrc).len();
    pump_until(
        &mut [&mut sender, &mut receiver],
        Duration::from_millis(300),
        |p| {
            for socket in &attackers {
                for request in &forged {
                    socket.send_to(request, server).expect("send");
                    forged_sent += 1;
                }
            }
            send(&mut *p[0]);
            false
        },
    );
    assert!(
        pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| {
            send(&mut *p[0]);
            p[1].received_from(ssrc).len() >= before + 20
        }),
        "the real viewer keeps getting video during and after the forged checks"
    );

    // The real sender moves to a new address without an ICE restart. Its
    // checks carry the password, so its new path is learned: the forged
    // requests took none of the transport's path slots.
    sender.move_to_new_socket();
    let before = receiver.received_from(ssrc).len();
    assert!(
        pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| {
            send(&mut *p[0]);
            p[1].received_from(ssrc).len() >= before + 20
        }),
        "video from the sender's new address reaches the viewer"
    );

    for (i, socket) in attackers.iter().enumerate() {
        assert_eq!(
            datagrams_on(socket),
            0,
            "attacker {i} got neither a STUN answer nor media"
        );
    }
    let dropped = sfu
        .block(sfu.worker.stats())
        .expect("stats")
        .datagrams_dropped
        - dropped_before;
    assert!(
        dropped >= forged_sent,
        "every forged request is counted as dropped: {dropped} of {forged_sent}"
    );

    // The same request keyed with the transport's real password is answered:
    // the forged ones failed on their password, not on their form.
    let control = UdpSocket::bind((LOOPBACK, 0)).expect("socket");
    control.set_read_timeout(Some(WAIT)).expect("timeout");
    let genuine = binding_request(
        &username_of(&mut receiver),
        &receiver.server_ice.password.clone(),
        3,
        false,
    );
    control.send_to(&genuine, server).expect("send");
    let mut buf = [0u8; 1500];
    let (n, _) = control
        .recv_from(&mut buf)
        .expect("an answer to the genuine request");
    assert_eq!(
        (&buf[..2], &buf[8..20]),
        (&[0x01, 0x01][..], &[3u8; 12][..]),
        "a binding success for our transaction ({n} bytes)"
    );
}

/// Wait until the worker has counted `more` dropped datagrams since `before`.
fn wait_for_drops(sfu: &Sfu, before: u64, more: u64) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if sfu
            .block(sfu.worker.stats())
            .expect("stats")
            .datagrams_dropped
            >= before + more
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A connected sender producing VP8, and a receiver with its consumer
/// resumed: returns the receiver's SSRC of the video.
fn start_video(sfu: &Sfu, sender: &mut ClientPeer, receiver: &mut ClientPeer) -> u32 {
    assert!(
        pump_until(&mut [&mut *sender, &mut *receiver], WAIT, |p| p[0]
            .connected
            && p[1].connected),
        "both connect"
    );
    let producer = sfu.produce_video(&sfu.worker, sender);
    let info = sfu
        .block(sfu.worker.consume(receiver.id.expect("created"), producer))
        .expect("consumer");
    let ssrc = receiver.expect_consumer(&info);
    sfu.block(sfu.worker.set_consumer_paused(info.id, false))
        .expect("resume");
    ssrc
}

/// Send video from `sender` until `receiver` has `more` packets of `ssrc` more than now.
fn video_flows(
    sender: &mut ClientPeer,
    receiver: &mut ClientPeer,
    ssrc: u32,
    seq: &mut u64,
    more: usize,
) -> bool {
    let target = receiver.received_from(ssrc).len() + more;
    pump_until(&mut [sender, receiver], WAIT, |p| {
        *seq += 1;
        let s = *seq;
        p[0].send_rtp(
            1111,
            96,
            10_000 + s,
            (s * 3000) as u32,
            true,
            &vp8_payload(s % 30 == 1, s as u8),
        );
        p[1].received_from(ssrc).len() >= target
    })
}

#[test]
fn a_forged_check_before_the_clients_first_one_does_not_lock_the_client_out() {
    let sfu = Sfu::start();
    // Both transports are created and connected by signaling, but their
    // clients have not sent a check yet: the router knows no remote ufrag.
    let mut sender = sfu.transport(Direction::Send, ClientCodecs::Browser);
    let mut receiver = sfu.transport(Direction::Recv, ClientCodecs::Router);
    // A stranger who knows the server's ufrags (they are in the signaling,
    // or guessed) checks first, naming a client ufrag of their own, keyed
    // with a password they do not know.
    let server = SocketAddr::new(LOOPBACK, sfu.worker.local_addr().port());
    let attacker = UdpSocket::bind((LOOPBACK, 0)).expect("attacker socket");
    attacker
        .set_read_timeout(Some(Duration::from_millis(2)))
        .expect("timeout");
    let dropped_before = sfu
        .block(sfu.worker.stats())
        .expect("stats")
        .datagrams_dropped;
    for (i, peer) in [&sender, &receiver].into_iter().enumerate() {
        let username = format!("{}:forgedufrag", peer.server_ice.username_fragment);
        attacker
            .send_to(
                &binding_request(&username, "not-the-password", 10 + i as u8, true),
                server,
            )
            .expect("send");
    }
    assert!(
        wait_for_drops(&sfu, dropped_before, 2),
        "the worker has seen and dropped both forged checks"
    );

    // The real clients now connect and the video gets through.
    let ssrc = start_video(&sfu, &mut sender, &mut receiver);
    let mut seq = 0;
    assert!(
        video_flows(&mut sender, &mut receiver, ssrc, &mut seq, 20),
        "video flows from the real sender to the real viewer"
    );
    assert_eq!(
        datagrams_on(&attacker),
        0,
        "the stranger got neither a STUN answer nor media"
    );
}

#[test]
fn a_forged_check_with_the_new_ufrag_does_not_end_an_ice_restart() {
    let sfu = Sfu::start();
    let mut sender = sfu.transport(Direction::Send, ClientCodecs::Browser);
    let mut receiver = sfu.transport(Direction::Recv, ClientCodecs::Router);
    let ssrc = start_video(&sfu, &mut sender, &mut receiver);
    let mut seq = 0;
    assert!(
        video_flows(&mut sender, &mut receiver, ssrc, &mut seq, 20),
        "video flows"
    );

    // The viewer's transport restarts ICE; before the viewer's first check
    // with the new ufrag, a stranger sends one (the new ufrag leaked or was
    // guessed) with the wrong password, nominating their own address.
    let params = sfu
        .block(sfu.worker.restart_ice(receiver.id.expect("created")))
        .expect("restart");
    let server = SocketAddr::new(LOOPBACK, sfu.worker.local_addr().port());
    let attacker = UdpSocket::bind((LOOPBACK, 0)).expect("attacker socket");
    attacker
        .set_read_timeout(Some(Duration::from_millis(2)))
        .expect("timeout");
    let dropped_before = sfu
        .block(sfu.worker.stats())
        .expect("stats")
        .datagrams_dropped;
    let username = format!("{}:forgedufrag", params.username_fragment);
    attacker
        .send_to(
            &binding_request(&username, "not-the-password", 20, true),
            server,
        )
        .expect("send");
    assert!(
        wait_for_drops(&sfu, dropped_before, 1),
        "the worker has seen and dropped the forged check"
    );

    // The transport still sends to the viewer's old path until the viewer
    // itself restarts from its new one.
    assert!(
        video_flows(&mut sender, &mut receiver, ssrc, &mut seq, 20),
        "the viewer keeps getting video on its old path after the forged check"
    );
    receiver.restart_ice_on_new_path(&params);
    assert!(
        video_flows(&mut sender, &mut receiver, ssrc, &mut seq, 20),
        "video reaches the viewer's new path after its own restart"
    );
    assert_eq!(
        datagrams_on(&attacker),
        0,
        "the stranger got neither a STUN answer nor media"
    );
}
