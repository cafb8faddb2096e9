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

    let mut receivers = vec![receiver(&sfu), receiver(&sfu)];
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
