//! Scenarios: str0m clients over real loopback UDP produce and consume
//! through a real worker, and see what a browser would see.

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
    assert!(pump_until(&mut [&mut sender], WAIT, |p| p[0].connected), "sender connects (ICE + DTLS)");
    Scenario { sfu, sender }
}

fn receiver(sfu: &Sfu) -> ClientPeer {
    let mut r = sfu.transport(Direction::Recv, ClientCodecs::Router);
    assert!(pump_until(&mut [&mut r], WAIT, |p| p[0].connected), "receiver connects");
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
        let v = sfu.block(sfu.worker.consume(tid, video)).expect("video consumer");
        let a = sfu.block(sfu.worker.consume(tid, audio)).expect("audio consumer");
        assert_eq!(v.rtp_parameters.codecs[0].payload_type(), 101, "router VP8 payload type");
        assert_eq!(a.rtp_parameters.codecs[0].payload_type(), 100, "router opus payload type");
        let vs = v.rtp_parameters.encodings[0].ssrc.expect("consumer ssrc");
        let vrtx = v.rtp_parameters.encodings[0].rtx.map(|r| r.ssrc);
        let as_ = a.rtp_parameters.encodings[0].ssrc.expect("consumer ssrc");
        r.expect_receive(v.rtp_parameters.mid.as_deref().expect("mid"), StrKind::Video, vs, vrtx);
        r.expect_receive(a.rtp_parameters.mid.as_deref().expect("mid"), StrKind::Audio, as_, None);
        sfu.block(sfu.worker.set_consumer_paused(v.id, false)).expect("resume video");
        sfu.block(sfu.worker.set_consumer_paused(a.id, false)).expect("resume audio");
        ssrcs.push((vs, as_));
    }
    assert_ne!(ssrcs[0].0, ssrcs[1].0, "each consumer has its own SSRC");

    let mut seq = 0u64;
    let [r0, r1] = &mut receivers[..] else { unreachable!() };
    let got = pump_until(&mut [&mut sender, r0, r1], WAIT, |p| {
        seq += 1;
        p[0].send_rtp(1111, 96, 40_000 + seq, (seq * 3000) as u32, true, &vp8_payload(seq % 30 == 1, seq as u8));
        p[0].send_rtp(3333, 111, 20_000 + seq, (seq * 960) as u32, false, &[seq as u8; 60]);
        let (v0, a0) = ssrcs[0];
        let (v1, a1) = ssrcs[1];
        p[1].received_from(v0).len() >= 20
            && p[1].received_from(a0).len() >= 20
            && p[2].received_from(v1).len() >= 20
            && p[2].received_from(a1).len() >= 20
    });
    assert!(got, "both receivers get audio and video");
    for (r, (v, a)) in receivers.iter().zip(&ssrcs) {
        assert!(r.received_from(*v).iter().all(|p| p.pt == 101), "video arrives with router payload type 101");
        assert!(r.received_from(*a).iter().all(|p| p.pt == 100), "audio arrives with router payload type 100");
        // Sequence numbers start low and are continuous.
        let seqs: Vec<u64> = r.received_from(*v).iter().map(|p| p.seq).collect();
        assert!(seqs[0] < 100, "consumer sequence numbers start low, got {}", seqs[0]);
    }
    let stats = sfu.block(sfu.worker.stats()).expect("stats");
    assert!(stats.rtp_packets_out >= 80, "forwarded packets are counted: {stats:?}");
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
    let info = sfu.block(sfu.worker.consume(receiver.id.expect("created"), producer)).expect("consumer");
    let consumer_ssrc = receiver.expect_consumer(&info);
    VideoPair { sfu, sender, receiver, producer, consumer: info.id, consumer_ssrc }
}

/// Send video until `done` holds; returns whether it did.
fn stream_pair(pair: &mut VideoPair, seq: &mut u64, timeout: Duration, done: impl FnMut(&ClientPeer, &ClientPeer) -> bool) -> bool {
    stream_video(&mut pair.sender, &mut pair.receiver, seq, timeout, done)
}

#[test]
fn a_consumer_pli_reaches_the_producer_as_a_keyframe_request() {
    let mut pair = video_pair();
    pair.sfu.block(pair.sfu.worker.set_consumer_paused(pair.consumer, false)).expect("resume");
    let ssrc = pair.consumer_ssrc;
    let mut seq = 0;
    assert!(stream_pair(&mut pair, &mut seq, WAIT, |_, r| r.received_from(ssrc).len() >= 5), "video flows");
    let before = pair.sender.keyframe_requests;
    // Past the throttle window of the resume's own request.
    std::thread::sleep(Duration::from_millis(600));
    pair.receiver.request_keyframe(ssrc);
    assert!(
        stream_pair(&mut pair, &mut seq, WAIT, |s, _| s.keyframe_requests > before),
        "the sender sees a key-frame request after the receiver's PLI"
    );
}

#[test]
fn pause_stops_packets_and_resume_restarts_them_with_a_keyframe_request() {
    let mut pair = video_pair();
    let ssrc = pair.consumer_ssrc;
    let mut seq = 0;
    // Created paused: nothing arrives.
    assert!(!stream_pair(&mut pair, &mut seq, Duration::from_millis(700), |_, r| !r.received_from(ssrc).is_empty()));
    let requests_before = pair.sender.keyframe_requests;
    pair.sfu.block(pair.sfu.worker.set_consumer_paused(pair.consumer, false)).expect("resume");
    assert!(stream_pair(&mut pair, &mut seq, WAIT, |s, r| r.received_from(ssrc).len() >= 10 && s.keyframe_requests > requests_before),
        "resume brings packets and a key-frame request");
    pair.sfu.block(pair.sfu.worker.set_consumer_paused(pair.consumer, true)).expect("pause");
    // Let packets in flight land, then nothing more may arrive.
    stream_pair(&mut pair, &mut seq, Duration::from_millis(200), |_, _| false);
    let count = pair.receiver.received_from(ssrc).len();
    stream_pair(&mut pair, &mut seq, Duration::from_millis(700), |_, _| false);
    assert_eq!(pair.receiver.received_from(ssrc).len(), count, "a paused consumer receives nothing");
    std::thread::sleep(Duration::from_millis(600));
    let requests_before = pair.sender.keyframe_requests;
    pair.sfu.block(pair.sfu.worker.set_consumer_paused(pair.consumer, false)).expect("resume again");
    assert!(stream_pair(&mut pair, &mut seq, WAIT, |s, r| r.received_from(ssrc).len() >= count + 10 && s.keyframe_requests > requests_before),
        "packets and a key-frame request come back after resume");
    // The receiver sees one continuous sequence across the pause.
    let seqs: Vec<u64> = pair.receiver.received_from(ssrc).iter().map(|p| p.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] <= 3), "no jump in sequence numbers across the pause: {seqs:?}");
}

#[test]
fn closing_the_producer_closes_its_consumers() {
    let mut pair = video_pair();
    pair.sfu.block(pair.sfu.worker.set_consumer_paused(pair.consumer, false)).expect("resume");
    let ssrc = pair.consumer_ssrc;
    let mut seq = 0;
    assert!(stream_pair(&mut pair, &mut seq, WAIT, |_, r| r.received_from(ssrc).len() >= 5));
    let closed = pair.sfu.block(pair.sfu.worker.close_producer(pair.producer)).expect("close");
    assert_eq!(closed.consumers, vec![pair.consumer], "the consumer went with its producer");
    assert_eq!(
        pair.sfu.block(pair.sfu.worker.set_consumer_paused(pair.consumer, false)),
        Err(simplesfu_engine::EngineError::ConsumerNotFound(pair.consumer))
    );
    stream_pair(&mut pair, &mut seq, Duration::from_millis(200), |_, _| false);
    let count = pair.receiver.received_from(ssrc).len();
    stream_pair(&mut pair, &mut seq, Duration::from_millis(500), |_, _| false);
    assert_eq!(pair.receiver.received_from(ssrc).len(), count, "nothing is forwarded after close");
    let stats = pair.sfu.block(pair.sfu.worker.stats()).expect("stats");
    assert_eq!((stats.producers, stats.consumers), (0, 0));
}

#[test]
fn a_data_message_reaches_every_data_consumer() {
    let Scenario { sfu, mut sender } = connected_sender();
    let send_channel = sender.open_channel(3, "chat");
    let data_producer = sfu
        .block(sfu.worker.produce_data(simplesfu_engine::DataProducerOptions {
            transport_id: sender.id.expect("created"),
            sctp_stream_parameters: mediasoup_types::sctp_parameters::SctpStreamParameters::new_ordered(3),
            label: "chat".into(),
            protocol: String::new(),
        }))
        .expect("data producer");
    let mut receivers = [receiver(&sfu), receiver(&sfu)];
    let mut channels = Vec::new();
    for r in receivers.iter_mut() {
        let info = sfu.block(sfu.worker.consume_data(r.id.expect("created"), data_producer)).expect("data consumer");
        assert_eq!(info.label, "chat");
        channels.push(r.open_channel(info.sctp_stream_parameters.stream_id, "chat"));
    }
    let [r0, r1] = &mut receivers[..] else { unreachable!() };
    let mut sent = false;
    let got = pump_until(&mut [&mut sender, r0, r1], WAIT, |p| {
        if !sent && p[0].channel_open.contains(&send_channel) {
            sent = p[0].write_data(send_channel, b"hello from the producer");
        }
        p[1..].iter().all(|r| r.data.iter().any(|(_, d)| d == b"hello from the producer"))
    });
    assert!(got, "both data consumers receive the message (sent: {sent})");
}

/// A VP8 simulcast producer (r0, r1, r2 on SSRCs 5000..5002, mid "0") on
/// `sender`'s transport, its layers declared on the sending side.
fn simulcast_producer(sfu: &Sfu, sender: &mut ClientPeer) -> simplesfu_proto::ProducerId {
    let producer = sfu
        .block(sfu.worker.produce(ProducerOptions {
            transport_id: sender.id.expect("created"),
            kind: MediaKind::Video,
            rtp_parameters: vp8_simulcast_parameters("0"),
            paused: false,
        }))
        .expect("simulcast producer");
    for (i, rid) in ["r0", "r1", "r2"].iter().enumerate() {
        sender.declare_send("0", StrKind::Video, 5000 + i as u32, None, Some(rid));
    }
    producer
}

#[test]
fn simulcast_forwards_the_highest_layer_from_its_keyframe_on() {
    let Scenario { sfu, mut sender } = connected_sender();
    let producer = simulcast_producer(&sfu, &mut sender);
    let mut r = receiver(&sfu);
    let info = sfu.block(sfu.worker.consume(r.id.expect("created"), producer)).expect("consumer");
    assert_eq!(info.consumer_type, "simulcast");
    let ssrc = r.expect_consumer(&info);
    sfu.block(sfu.worker.set_consumer_paused(info.id, false)).expect("resume");
    let mut seq = 0u64;
    let got = pump_until(&mut [&mut sender, &mut r], WAIT, |p| {
        seq += 1;
        for layer in 0..3u32 {
            // Key frames every 20 packets; the payload's fill byte names the layer.
            let key = seq.is_multiple_of(20);
            p[0].send_rtp(5000 + layer, 96, 1000 * layer as u64 + seq, (seq * 3000) as u32, true, &vp8_payload(key, layer as u8));
        }
        p[1].received_from(ssrc).len() >= 15
    });
    assert!(got, "the consumer receives the simulcast stream");
    let received = r.received_from(ssrc);
    assert!(received.iter().all(|p| p.payload[2] == 2), "only the highest layer (r2) is forwarded");
    assert_eq!(received[0].payload[1] & 0x01, 0, "forwarding starts at a key frame");
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
    socket.send_to(&[0, 1, 0, 200, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], server).expect("send");
    let got = pump_until(&mut [&mut sender], WAIT, |_| {
        sfu.block(sfu.worker.stats()).map(|s| s.datagrams_dropped >= 51).unwrap_or(false)
    });
    assert!(got, "every garbage datagram is counted as dropped");
    // The worker still serves its transport.
    let producer = sfu.block(sfu.worker.produce(ProducerOptions {
        transport_id: sender.id.expect("created"),
        kind: MediaKind::Audio,
        rtp_parameters: opus_parameters("0", 3333),
        paused: false,
    }));
    assert!(producer.is_ok(), "the worker still works after garbage: {producer:?}");
}

#[test]
fn bursts_of_packets_are_forwarded_without_loss() {
    // A video frame arrives as a burst of packets that the worker reads in one
    // batch; every one of them must reach the consumer (str0m keeps only the
    // last event unless it is polled after each input).
    let mut pair = video_pair();
    pair.sfu.block(pair.sfu.worker.set_consumer_paused(pair.consumer, false)).expect("resume");
    let ssrc = pair.consumer_ssrc;
    assert!(pump_until(&mut [&mut pair.sender, &mut pair.receiver], WAIT, |p| p[0].connected && p[1].connected));
    for frame in 0..50u64 {
        for k in 0..8u64 {
            let seq = frame * 8 + k + 1;
            pair.sender.send_rtp(1111, 96, 1000 + seq, (frame * 3000) as u32, k == 7, &vp8_payload(false, 1));
        }
        // One pump flushes the whole frame to the socket at once.
        pair.sender.pump();
        pair.receiver.pump();
    }
    let all = pump_until(&mut [&mut pair.sender, &mut pair.receiver], WAIT, |p| p[1].received_from(ssrc).len() >= 400);
    let stats = pair.sfu.block(pair.sfu.worker.stats()).expect("stats");
    assert!(all, "all 400 packets arrive, got {} ({stats:?})", pair.receiver.received_from(ssrc).len());
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
    assert!(matches!(refused, Err(simplesfu_engine::EngineError::InvalidRtpParameters(_))), "{refused:?}");
    let mut rtp = opus_parameters("0", 3333);
    if let mediasoup_types::rtp_parameters::RtpCodecParameters::Audio { parameters, .. } = &mut rtp.codecs[0] {
        parameters.insert("minptime", "10\r\na=setup:passive");
    }
    let refused = sfu.block(sfu.worker.produce(ProducerOptions {
        transport_id: sender.id.expect("created"),
        kind: MediaKind::Audio,
        rtp_parameters: rtp,
        paused: false,
    }));
    assert!(matches!(refused, Err(simplesfu_engine::EngineError::InvalidRtpParameters(_))), "{refused:?}");
    // The transport still takes a well-formed producer.
    let ok = sfu.block(sfu.worker.produce(ProducerOptions {
        transport_id: sender.id.expect("created"),
        kind: MediaKind::Audio,
        rtp_parameters: opus_parameters("0", 3333),
        paused: false,
    }));
    assert!(ok.is_ok(), "{ok:?}");
}

/// A simulcast VP8 payload as libwebrtc sends it: 15-bit PictureID,
/// TL0PICIDX, TID 0 with KEYIDX, then the payload header (P bit) and filler
/// whose last byte names the layer.
fn vp8_numbered_payload(picture_id: u16, tl0_pic_idx: u8, key_idx: u8, keyframe: bool, layer: u8) -> Vec<u8> {
    let mut p = vec![0x90, 0xf0, 0x80 | (picture_id >> 8) as u8 & 0x7f, picture_id as u8, tl0_pic_idx, key_idx & 0x1f];
    p.push(if keyframe { 0x00 } else { 0x01 });
    p.extend(std::iter::repeat_n(0x55, 50));
    p.push(layer);
    p
}

/// What the receiver's frame reference finder reads: (PictureID, TL0PICIDX, KEYIDX).
fn vp8_numbers(p: &[u8]) -> (u16, u8, u8) {
    assert_eq!((p[0] & 0x80, p[1]), (0x80, 0xf0), "descriptor layout kept: {:02x?}", &p[..6]);
    assert_eq!(p[2] & 0x80, 0x80, "the PictureID stays 15 bits wide");
    ((u16::from(p[2] & 0x7f) << 8) | u16::from(p[3]), p[4], p[5] & 0x1f)
}

#[test]
fn vp8_picture_numbering_stays_continuous_across_simulcast_switches_and_a_resume() {
    let Scenario { sfu, mut sender } = connected_sender();
    let producer = simulcast_producer(&sfu, &mut sender);
    let mut r = receiver(&sfu);
    let info = sfu.block(sfu.worker.consume(r.id.expect("created"), producer)).expect("consumer");
    let ssrc = r.expect_consumer(&info);
    sfu.block(sfu.worker.set_consumer_paused(info.id, false)).expect("resume");

    // Each layer numbers its pictures on its own, as libwebrtc's simulcast
    // encoders do; the top layer's PictureID wraps past 0x7fff.
    const PICTURE_ID: [u16; 3] = [100, 20_000, 0x7fe0];
    const TL0: [u8; 3] = [10, 200, 250];
    const KEY_IDX: [u8; 3] = [0, 17, 30];
    let mut frame = 0u64;
    let mut seqs = [0u64; 3];
    let mut send = |p: &mut [&mut ClientPeer], layers: &[u32]| {
        frame += 1;
        let key = frame.is_multiple_of(20);
        for &layer in layers {
            let l = layer as usize;
            seqs[l] += 1;
            let payload = vp8_numbered_payload(
                PICTURE_ID[l].wrapping_add(frame as u16) & 0x7fff,
                TL0[l].wrapping_add(frame as u8),
                KEY_IDX[l].wrapping_add((frame / 20) as u8),
                key,
                layer as u8,
            );
            p[0].send_rtp(5000 + layer, 96, 1000 * (layer as u64 + 1) + seqs[l], (frame * 3000) as u32, true, &payload);
        }
    };
    let layers_seen = |r: &ClientPeer| -> Vec<u8> {
        let mut runs: Vec<u8> = Vec::new();
        for p in r.received_from(ssrc) {
            let layer = *p.payload.last().expect("payload");
            if runs.last() != Some(&layer) {
                runs.push(layer);
            }
        }
        runs
    };
    let count_of_last_run = |r: &ClientPeer| {
        let received = r.received_from(ssrc);
        let last = received.last().map(|p| *p.payload.last().expect("payload"));
        received.iter().rev().take_while(|p| p.payload.last() == last.as_ref()).count()
    };

    let got = pump_until(&mut [&mut sender, &mut r], WAIT, |p| {
        send(p, &[0, 1, 2]);
        count_of_last_run(p[1]) >= 20
    });
    assert!(got && layers_seen(&r) == [2], "the top layer flows first: {:?}", layers_seen(&r));

    // The top layer stops: after its inactivity timeout the consumer drops to
    // the middle layer at that layer's key frame.
    let got = pump_until(&mut [&mut sender, &mut r], WAIT, |p| {
        send(p, &[0, 1]);
        layers_seen(p[1]) == [2, 1] && count_of_last_run(p[1]) >= 20
    });
    assert!(got, "the consumer switches down to r1: {:?}", layers_seen(&r));

    // The top layer comes back: the consumer switches up at its key frame.
    let got = pump_until(&mut [&mut sender, &mut r], WAIT, |p| {
        send(p, &[0, 1, 2]);
        layers_seen(p[1]) == [2, 1, 2] && count_of_last_run(p[1]) >= 20
    });
    assert!(got, "the consumer switches back up to r2: {:?}", layers_seen(&r));

    // Pause, let the producer run on, resume: forwarding restarts at a key frame.
    sfu.block(sfu.worker.set_consumer_paused(info.id, true)).expect("pause");
    pump_until(&mut [&mut sender, &mut r], Duration::from_millis(300), |p| {
        send(p, &[0, 1, 2]);
        false
    });
    let before = r.received_from(ssrc).len();
    sfu.block(sfu.worker.set_consumer_paused(info.id, false)).expect("resume");
    let got = pump_until(&mut [&mut sender, &mut r], WAIT, |p| {
        send(p, &[0, 1, 2]);
        p[1].received_from(ssrc).len() >= before + 20
    });
    assert!(got, "packets come back after resume");

    let mut received: Vec<&ReceivedRtp> = r.received_from(ssrc);
    received.sort_by_key(|p| p.seq);
    let numbers: Vec<(u16, u8, u8)> = received.iter().map(|p| vp8_numbers(&p.payload)).collect();
    // Every packet here is a whole picture with TID 0: PictureID and
    // TL0PICIDX advance by exactly one, KEYIDX by at most one.
    for (w, pair) in numbers.windows(2).zip(received.windows(2)) {
        let (a, b) = (w[0], w[1]);
        let at = (pair[0].seq, pair[1].seq);
        assert_eq!(b.0.wrapping_sub(a.0) & 0x7fff, 1, "PictureID continues at {at:?}: {a:?} -> {b:?}");
        assert_eq!(b.1.wrapping_sub(a.1), 1, "TL0PICIDX continues at {at:?}: {a:?} -> {b:?}");
        assert!(b.2.wrapping_sub(a.2) & 0x1f <= 1, "KEYIDX continues at {at:?}: {a:?} -> {b:?}");
    }
    assert!(numbers.windows(2).any(|w| w[1].0 < w[0].0), "the PictureID wrapped past 0x7fff on the way");
}
