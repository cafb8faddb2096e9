//! ICE restart: when a client's network path changes, `restart_ice` gives
//! the transport new ICE credentials; the client restarts ICE from a new
//! address and media flows again on the same producer and consumer.

mod common;

use common::*;
use mediasoup_types::rtp_parameters::MediaKind;
use simplesfu_engine::{Direction, EngineError, ProducerOptions};
use std::time::Duration;
use str0m::media::MediaKind as StrKind;

const WAIT: Duration = Duration::from_secs(10);

/// A connected sender producing VP8 and a connected receiver consuming it.
struct Call {
    sfu: Sfu,
    sender: ClientPeer,
    receiver: ClientPeer,
    /// The receiver's SSRC of the consumer.
    ssrc: u32,
    seq: u64,
}

impl Call {
    fn start() -> Call {
        let sfu = Sfu::start();
        let mut sender = sfu.transport(Direction::Send, ClientCodecs::Browser);
        let mut receiver = sfu.transport(Direction::Recv, ClientCodecs::Router);
        assert!(
            pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| p[0].connected
                && p[1].connected),
            "both ends connect (ICE + DTLS)"
        );
        let producer = sfu
            .block(sfu.worker.produce(ProducerOptions {
                transport_id: sender.id.expect("created"),
                kind: MediaKind::Video,
                rtp_parameters: vp8_parameters("0", 1111, 2222),
                paused: false,
            }))
            .expect("producer");
        sender.declare_send("0", StrKind::Video, 1111, Some(2222), None);
        let info = sfu
            .block(sfu.worker.consume(receiver.id.expect("created"), producer))
            .expect("consumer");
        let ssrc = info.rtp_parameters.encodings[0].ssrc.expect("ssrc");
        receiver.expect_receive(
            info.rtp_parameters.mid.as_deref().expect("mid"),
            StrKind::Video,
            ssrc,
            info.rtp_parameters.encodings[0].rtx.map(|r| r.ssrc),
        );
        sfu.block(sfu.worker.set_consumer_paused(info.id, false))
            .expect("resume");
        Call {
            sfu,
            sender,
            receiver,
            ssrc,
            seq: 0,
        }
    }

    /// Send video until the receiver has `more` packets more than now.
    fn media_flows(&mut self, more: usize) -> bool {
        let target = self.receiver.received_from(self.ssrc).len() + more;
        let (ssrc, seq) = (self.ssrc, &mut self.seq);
        pump_until(&mut [&mut self.sender, &mut self.receiver], WAIT, |p| {
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
}

#[test]
fn after_a_restart_on_a_new_path_media_flows_again_without_producing_anew() {
    let mut call = Call::start();
    assert!(call.media_flows(20), "video flows before the restart");
    let stats_before = call.sfu.block(call.sfu.worker.stats()).expect("stats");

    for side in [Direction::Recv, Direction::Send] {
        let peer = match side {
            Direction::Recv => &mut call.receiver,
            Direction::Send => &mut call.sender,
        };
        let tid = peer.id.expect("created");
        let params = call
            .sfu
            .block(call.sfu.worker.restart_ice(tid))
            .expect("restart");
        assert_eq!(params.ice_lite, Some(true));
        peer.restart_ice_on_new_path(&params);
        assert!(
            call.media_flows(20),
            "video flows again after restarting the {side:?} transport's ICE"
        );
    }

    let stats_after = call.sfu.block(call.sfu.worker.stats()).expect("stats");
    assert_eq!(
        (
            stats_after.transports,
            stats_after.producers,
            stats_after.consumers
        ),
        (
            stats_before.transports,
            stats_before.producers,
            stats_before.consumers
        ),
        "the same transports, producer and consumer carry the media"
    );
}

#[test]
fn each_restart_gives_new_credentials_and_unknown_transports_are_refused() {
    let mut call = Call::start();
    let tid = call.receiver.id.expect("created");
    let first = call
        .sfu
        .block(call.sfu.worker.restart_ice(tid))
        .expect("restart");
    let second = call
        .sfu
        .block(call.sfu.worker.restart_ice(tid))
        .expect("restart again");
    assert_ne!(first.username_fragment, second.username_fragment);
    assert_ne!(first.password, second.password);
    call.receiver.restart_ice_on_new_path(&second);
    assert!(call.media_flows(10), "the latest credentials connect");

    call.sfu
        .block(call.sfu.worker.close_transport(tid))
        .expect("close");
    let error = call
        .sfu
        .block(call.sfu.worker.restart_ice(tid))
        .expect_err("closed transport");
    assert_eq!(error, EngineError::TransportNotFound(tid));
}
