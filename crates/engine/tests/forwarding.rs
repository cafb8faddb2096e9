//! Scenarios: str0m clients over real loopback UDP produce and consume
//! through a real worker, and see what a browser would see. The router's
//! decisions (key-frame requests, simulcast layers, pause and resume, data
//! waiting for its channel) are tested without sockets in `sim/`.

mod common;

use common::*;
use mediasoup_types::rtp_parameters::MediaKind;
use simplesfu_engine::{Direction, ProducerOptions};
use std::time::Duration;
use str0m::media::MediaKind as StrKind;

const WAIT: Duration = Duration::from_secs(10);

struct Scenario {
    sfu: Sfu,
    sender: ClientPeer,
}

fn connected_sender() -> Scenario {
    let sfu = Sfu::start();
    let mut sender = sfu.transport(Direction::Send, ClientCodecs::Browser);
    assert!(
        pump_until(&mut [&mut sender], WAIT, |p| p[0].connected),
        "sender connects (ICE + DTLS)"
    );
    Scenario { sfu, sender }
}

fn receiver(sfu: &Sfu) -> ClientPeer {
    let mut r = sfu.transport(Direction::Recv, ClientCodecs::Router);
    assert!(
        pump_until(&mut [&mut r], WAIT, |p| p[0].connected),
        "receiver connects"
    );
    r
}

#[test]
fn audio_and_video_reach_two_consumers_with_their_own_ssrcs_and_router_payload_types() {
    let Scenario { sfu, mut sender } = connected_sender();
    let send_id = sender.id.expect("created");
    let video = sfu
        .block(sfu.worker.produce(ProducerOptions {
            transport_id: send_id,
            kind: MediaKind::Video,
            rtp_parameters: vp8_parameters("0", 1111, 2222),
            paused: false,
        }))
        .expect("video producer");
    let audio = sfu
        .block(sfu.worker.produce(ProducerOptions {
            transport_id: send_id,
            kind: MediaKind::Audio,
            rtp_parameters: opus_parameters("1", 3333),
            paused: false,
        }))
        .expect("audio producer");
    sender.declare_send("0", StrKind::Video, 1111, Some(2222), None);
    sender.declare_send("1", StrKind::Audio, 3333, None, None);

    let mut receivers = [receiver(&sfu), receiver(&sfu)];
    let mut ssrcs = Vec::new();
    for r in receivers.iter_mut() {
        let tid = r.id.expect("created");
        let v = sfu
            .block(sfu.worker.consume(tid, video))
            .expect("video consumer");
        let a = sfu
            .block(sfu.worker.consume(tid, audio))
            .expect("audio consumer");
        assert_eq!(
            v.rtp_parameters.codecs[0].payload_type(),
            101,
            "router VP8 payload type"
        );
        assert_eq!(
            a.rtp_parameters.codecs[0].payload_type(),
            100,
            "router opus payload type"
        );
        let vs = v.rtp_parameters.encodings[0].ssrc.expect("consumer ssrc");
        let vrtx = v.rtp_parameters.encodings[0].rtx.map(|r| r.ssrc);
        let as_ = a.rtp_parameters.encodings[0].ssrc.expect("consumer ssrc");
        r.expect_receive(
            v.rtp_parameters.mid.as_deref().expect("mid"),
            StrKind::Video,
            vs,
            vrtx,
        );
        r.expect_receive(
            a.rtp_parameters.mid.as_deref().expect("mid"),
            StrKind::Audio,
            as_,
            None,
        );
        sfu.block(sfu.worker.set_consumer_paused(v.id, false))
            .expect("resume video");
        sfu.block(sfu.worker.set_consumer_paused(a.id, false))
            .expect("resume audio");
        ssrcs.push((vs, as_));
    }
    assert_ne!(ssrcs[0].0, ssrcs[1].0, "each consumer has its own SSRC");

    let mut seq = 0u64;
    let [r0, r1] = &mut receivers[..] else {
        unreachable!()
    };
    let got = pump_until(&mut [&mut sender, r0, r1], WAIT, |p| {
        seq += 1;
        p[0].send_rtp(
            1111,
            96,
            40_000 + seq,
            (seq * 3000) as u32,
            true,
            &vp8_payload(seq % 30 == 1, seq as u8),
        );
        p[0].send_rtp(
            3333,
            111,
            20_000 + seq,
            (seq * 960) as u32,
            false,
            &[seq as u8; 60],
        );
        let (v0, a0) = ssrcs[0];
        let (v1, a1) = ssrcs[1];
        p[1].received_from(v0).len() >= 20
            && p[1].received_from(a0).len() >= 20
            && p[2].received_from(v1).len() >= 20
            && p[2].received_from(a1).len() >= 20
    });
    assert!(got, "both receivers get audio and video");
    for (r, (v, a)) in receivers.iter().zip(&ssrcs) {
        assert!(
            r.received_from(*v).iter().all(|p| p.pt == 101),
            "video arrives with router payload type 101"
        );
        assert!(
            r.received_from(*a).iter().all(|p| p.pt == 100),
            "audio arrives with router payload type 100"
        );
        // Sequence numbers start low and are continuous.
        let seqs: Vec<u64> = r.received_from(*v).iter().map(|p| p.seq).collect();
        assert!(
            seqs[0] < 100,
            "consumer sequence numbers start low, got {}",
            seqs[0]
        );
    }
    let stats = sfu.block(sfu.worker.stats()).expect("stats");
    assert!(
        stats.rtp_packets_out >= 80,
        "forwarded packets are counted: {stats:?}"
    );
}

/// One VP8 producer and one resumed consumer on a second transport.
struct VideoPair {
    sfu: Sfu,
    sender: ClientPeer,
    receiver: ClientPeer,
    producer: simplesfu_proto::ProducerId,
    consumer: simplesfu_proto::ConsumerId,
    consumer_ssrc: u32,
}

fn video_pair() -> VideoPair {
    let Scenario { sfu, mut sender } = connected_sender();
    let producer = sfu.produce_video(&sfu.worker, &mut sender);
    let mut receiver = receiver(&sfu);
    let info = sfu
        .block(sfu.worker.consume(receiver.id.expect("created"), producer))
        .expect("consumer");
    let consumer_ssrc = receiver.expect_consumer(&info);
    VideoPair {
        sfu,
        sender,
        receiver,
        producer,
        consumer: info.id,
        consumer_ssrc,
    }
}

/// Send video until `done` holds; returns whether it did.
fn stream_pair(
    pair: &mut VideoPair,
    seq: &mut u64,
    timeout: Duration,
    done: impl FnMut(&ClientPeer, &ClientPeer) -> bool,
) -> bool {
    stream_video(&mut pair.sender, &mut pair.receiver, seq, timeout, done)
}

#[test]
fn closing_the_producer_closes_its_consumers() {
    let mut pair = video_pair();
    pair.sfu
        .block(pair.sfu.worker.set_consumer_paused(pair.consumer, false))
        .expect("resume");
    let ssrc = pair.consumer_ssrc;
    let mut seq = 0;
    assert!(stream_pair(&mut pair, &mut seq, WAIT, |_, r| r
        .received_from(ssrc)
        .len()
        >= 5));
    let closed = pair
        .sfu
        .block(pair.sfu.worker.close_producer(pair.producer))
        .expect("close");
    assert_eq!(
        closed.consumers,
        vec![pair.consumer],
        "the consumer went with its producer"
    );
    assert_eq!(
        pair.sfu
            .block(pair.sfu.worker.set_consumer_paused(pair.consumer, false)),
        Err(simplesfu_engine::EngineError::ConsumerNotFound(
            pair.consumer
        ))
    );
    stream_pair(&mut pair, &mut seq, Duration::from_millis(200), |_, _| {
        false
    });
    let count = pair.receiver.received_from(ssrc).len();
    stream_pair(&mut pair, &mut seq, Duration::from_millis(500), |_, _| {
        false
    });
    assert_eq!(
        pair.receiver.received_from(ssrc).len(),
        count,
        "nothing is forwarded after close"
    );
    let stats = pair.sfu.block(pair.sfu.worker.stats()).expect("stats");
    assert_eq!((stats.producers, stats.consumers), (0, 0));
}

#[test]
fn a_data_message_reaches_every_data_consumer() {
    let Scenario { sfu, mut sender } = connected_sender();
    let send_channel = sender.open_channel(3, "chat");
    let data_producer = sfu
        .block(
            sfu.worker
                .produce_data(simplesfu_engine::DataProducerOptions {
                    transport_id: sender.id.expect("created"),
                    sctp_stream_parameters:
                        mediasoup_types::sctp_parameters::SctpStreamParameters::new_ordered(3),
                    label: "chat".into(),
                    protocol: String::new(),
                }),
        )
        .expect("data producer");
    let mut receivers = [receiver(&sfu), receiver(&sfu)];
    let mut channels = Vec::new();
    for r in receivers.iter_mut() {
        let info = sfu
            .block(
                sfu.worker
                    .consume_data(r.id.expect("created"), data_producer),
            )
            .expect("data consumer");
        assert_eq!(info.label, "chat");
        channels.push(r.open_channel(info.sctp_stream_parameters.stream_id, "chat"));
    }
    let [r0, r1] = &mut receivers[..] else {
        unreachable!()
    };
    let mut sent = false;
    let got = pump_until(&mut [&mut sender, r0, r1], WAIT, |p| {
        if !sent && p[0].channel_open.contains(&send_channel) {
            sent = p[0].write_data(send_channel, b"hello from the producer");
        }
        p[1..]
            .iter()
            .all(|r| r.data.iter().any(|(_, d)| d == b"hello from the producer"))
    });
    assert!(
        got,
        "both data consumers receive the message (sent: {sent})"
    );
}

#[test]
fn garbage_datagrams_are_dropped_and_counted() {
    let Scenario { sfu, mut sender } = connected_sender();
    let socket = std::net::UdpSocket::bind((LOOPBACK, 0)).expect("socket");
    let server = sfu.worker.local_addr();
    let server = std::net::SocketAddr::new(LOOPBACK, server.port());
    for i in 0..50u8 {
        socket.send_to(&[i; 37], server).expect("send");
    }
    // A truncated STUN header with a valid cookie.
    socket
        .send_to(
            &[
                0, 1, 0, 200, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
            ],
            server,
        )
        .expect("send");
    let got = pump_until(&mut [&mut sender], WAIT, |_| {
        sfu.block(sfu.worker.stats())
            .map(|s| s.datagrams_dropped >= 51)
            .unwrap_or(false)
    });
    assert!(got, "every garbage datagram is counted as dropped");
    // The worker still serves its transport.
    let producer = sfu.block(sfu.worker.produce(ProducerOptions {
        transport_id: sender.id.expect("created"),
        kind: MediaKind::Audio,
        rtp_parameters: opus_parameters("0", 3333),
        paused: false,
    }));
    assert!(
        producer.is_ok(),
        "the worker still works after garbage: {producer:?}"
    );
}

#[test]
fn bursts_of_packets_are_forwarded_without_loss() {
    // A video frame arrives as a burst of packets that the worker reads in one
    // batch; every one of them must reach the consumer (str0m keeps only the
    // last event unless it is polled after each input).
    let mut pair = video_pair();
    pair.sfu
        .block(pair.sfu.worker.set_consumer_paused(pair.consumer, false))
        .expect("resume");
    let ssrc = pair.consumer_ssrc;
    assert!(pump_until(
        &mut [&mut pair.sender, &mut pair.receiver],
        WAIT,
        |p| p[0].connected && p[1].connected
    ));
    for frame in 0..50u64 {
        for k in 0..8u64 {
            let seq = frame * 8 + k + 1;
            pair.sender.send_rtp(
                1111,
                96,
                1000 + seq,
                (frame * 3000) as u32,
                k == 7,
                &vp8_payload(false, 1),
            );
        }
        // One pump flushes the whole frame to the socket at once.
        pair.sender.pump();
        pair.receiver.pump();
    }
    let all = pump_until(&mut [&mut pair.sender, &mut pair.receiver], WAIT, |p| {
        p[1].received_from(ssrc).len() >= 400
    });
    let stats = pair.sfu.block(pair.sfu.worker.stats()).expect("stats");
    assert!(
        all,
        "all 400 packets arrive, got {} ({stats:?})",
        pair.receiver.received_from(ssrc).len()
    );
}

#[test]
fn parameters_that_would_inject_sdp_lines_are_refused() {
    let Scenario { sfu, sender } = connected_sender();
    let mut rtp = vp8_parameters("0", 1111, 2222);
    rtp.rtcp.cname = Some("x\r\na=ice-ufrag:evil".into());
    let refused = sfu.block(sfu.worker.produce(ProducerOptions {
        transport_id: sender.id.expect("created"),
        kind: MediaKind::Video,
        rtp_parameters: rtp,
        paused: false,
    }));
    assert!(
        matches!(
            refused,
            Err(simplesfu_engine::EngineError::InvalidRtpParameters(_))
        ),
        "{refused:?}"
    );
    let mut rtp = opus_parameters("0", 3333);
    if let mediasoup_types::rtp_parameters::RtpCodecParameters::Audio { parameters, .. } =
        &mut rtp.codecs[0]
    {
        parameters.insert("minptime", "10\r\na=setup:passive");
    }
    let refused = sfu.block(sfu.worker.produce(ProducerOptions {
        transport_id: sender.id.expect("created"),
        kind: MediaKind::Audio,
        rtp_parameters: rtp,
        paused: false,
    }));
    assert!(
        matches!(
            refused,
            Err(simplesfu_engine::EngineError::InvalidRtpParameters(_))
        ),
        "{refused:?}"
    );
    // The transport still takes a well-formed producer.
    let ok = sfu.block(sfu.worker.produce(ProducerOptions {
        transport_id: sender.id.expect("created"),
        kind: MediaKind::Audio,
        rtp_parameters: opus_parameters("0", 3333),
        paused: false,
    }));
    assert!(ok.is_ok(), "{ok:?}");
}
