//! produce/close churn on one send transport: a closed producer's m-line is
//! reused by the next one, so the offer str0m parses on every `produce`
//! stays as long as the producers alive together, however many came and
//! went; a transport that asks for more at once gets a coded error.

mod common;

use common::*;
use mediasoup_types::rtp_parameters::MediaKind;
use simplesfu_engine::{Direction, EngineError, ProducerOptions};
use simplesfu_proto::{ProducerId, TransportId};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
/// More cycles than the m-lines a send transport may hold at once.
const CYCLES: u32 = 100;

fn produce(
    sfu: &Sfu,
    transport: TransportId,
    mid: &str,
    ssrc: u32,
) -> Result<ProducerId, EngineError> {
    sfu.block(sfu.worker.produce(ProducerOptions {
        transport_id: transport,
        kind: MediaKind::Video,
        rtp_parameters: vp8_parameters(mid, ssrc, ssrc + 1),
        paused: false,
    }))
}

/// Produce and close `cycles` producers, each with a mid and SSRCs of its
/// own (from `first_ssrc` on).
fn churn(sfu: &Sfu, transport: TransportId, tag: &str, first_ssrc: u32, cycles: u32) {
    for i in 0..cycles {
        let producer = produce(sfu, transport, &format!("{tag}{i}"), first_ssrc + 2 * i)
            .unwrap_or_else(|e| panic!("produce at cycle {i}: {e}"));
        sfu.block(sfu.worker.close_producer(producer))
            .expect("close");
    }
}

#[test]
fn producers_in_reused_m_lines_reach_their_consumers_and_churn_does_not_disturb_a_live_one() {
    let sfu = Sfu::start();
    let mut sender = sfu.transport(Direction::Send, ClientCodecs::Browser);
    let mut receiver = sfu.transport(Direction::Recv, ClientCodecs::Router);
    assert!(
        pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| p[0].connected
            && p[1].connected),
        "connected"
    );
    let tid = sender.id.expect("created");
    churn(&sfu, tid, "before", 100_000, CYCLES);

    let producer = sfu.produce_video(&sfu.worker, &mut sender);
    let info = sfu
        .block(sfu.worker.consume(receiver.id.expect("created"), producer))
        .expect("consumer");
    let ssrc = receiver.expect_consumer(&info);
    sfu.block(sfu.worker.set_consumer_paused(info.id, false))
        .expect("resume");
    let mut seq = 0u64;
    let mut video_reaches = |sender: &mut ClientPeer, receiver: &mut ClientPeer, packets: usize| {
        let wanted = receiver.received_from(ssrc).len() + packets;
        stream_video(sender, receiver, &mut seq, WAIT, |_, r| {
            r.received_from(ssrc).len() >= wanted
        })
    };
    assert!(
        video_reaches(&mut sender, &mut receiver, 20),
        "video of a producer in a reused m-line crosses the SFU"
    );

    churn(&sfu, tid, "beside", 300_000, CYCLES);
    assert!(
        video_reaches(&mut sender, &mut receiver, 20),
        "the live producer still flows after others churned beside it"
    );
}

#[test]
fn a_send_transport_refuses_more_producers_at_once_than_its_limit_with_a_coded_error() {
    let sfu = Sfu::start();
    let sender = sfu.transport(Direction::Send, ClientCodecs::Browser);
    let tid = sender.id.expect("created");
    // Churn first: closed producers do not count against the limit.
    churn(&sfu, tid, "gone", 100_000, CYCLES);

    let mut live = Vec::new();
    let limit = loop {
        let i = live.len() as u32;
        match produce(&sfu, tid, &format!("live{i}"), 500_000 + 2 * i) {
            Ok(producer) => live.push(producer),
            Err(EngineError::TooManyProducers { transport, limit }) => {
                assert_eq!(transport, tid);
                break limit;
            }
            Err(other) => panic!("producer {i} refused for another reason: {other}"),
        }
        assert!(live.len() <= 200, "no limit on producers alive together");
    };
    assert_eq!(
        live.len(),
        limit,
        "exactly `limit` producers alive together"
    );
    assert!(
        limit >= 16,
        "room for what a legitimate client produces (limit {limit})"
    );
    let refused = produce(&sfu, tid, "one-more", 900_000).expect_err("over the limit");
    assert!(
        refused.to_string().contains("create a new send transport"),
        "the message says what to do: {refused}"
    );

    // Closing one makes room on this transport; a new send transport has its own.
    sfu.block(sfu.worker.close_producer(live[0]))
        .expect("close");
    produce(&sfu, tid, "replacement", 910_000).expect("a freed m-line is reused");
    let fresh = sfu.transport(Direction::Send, ClientCodecs::Browser);
    produce(&sfu, fresh.id.expect("created"), "0", 920_000)
        .expect("a new send transport takes producers");
}
