//! Scenarios with two workers: a consumer on one worker receives a producer
//! of the other through a pipe.

mod common;

use common::*;
use simplesfu_engine::{Direction, EngineError, WorkerHandle};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A sender on worker 0 and a receiver on a second worker, both connected.
fn sender_and_far_receiver() -> (Sfu, WorkerHandle, ClientPeer, ClientPeer) {
    let sfu = Sfu::start();
    let other = spawn_worker("worker-1");
    let mut sender = sfu.transport(Direction::Send, ClientCodecs::Browser);
    let mut receiver = sfu.transport_on(&other, Direction::Recv, ClientCodecs::Router);
    assert!(
        pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| p[0].connected
            && p[1].connected),
        "both connect"
    );
    (sfu, other, sender, receiver)
}

#[test]
fn peers_on_two_workers_see_each_others_media_and_close_ends_the_pipe() {
    let (sfu, other, mut sender, mut receiver) = sender_and_far_receiver();

    let producer = sfu.produce_video(&sfu.worker, &mut sender);

    // Without a pipe the other worker does not know the producer.
    assert_eq!(
        sfu.block(other.consume(receiver.id.expect("created"), producer))
            .map(|c| c.id)
            .map_err(|e| e.clone()),
        Err(EngineError::ProducerNotFound(producer))
    );
    sfu.block(sfu.worker.pipe_producer(producer, &other))
        .expect("pipe");
    // Piping twice is a no-op.
    sfu.block(sfu.worker.pipe_producer(producer, &other))
        .expect("pipe again");
    let info = sfu
        .block(other.consume(receiver.id.expect("created"), producer))
        .expect("consumer on worker 1");
    let ssrc = receiver.expect_consumer(&info);
    let requests_before = sender.keyframe_requests;
    sfu.block(other.set_consumer_paused(info.id, false))
        .expect("resume");

    let mut seq = 0u64;
    let got = pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| {
        seq += 1;
        p[0].send_rtp(
            1111,
            96,
            30_000 + seq,
            (seq * 3000) as u32,
            true,
            &vp8_payload(false, seq as u8),
        );
        p[1].received_from(ssrc).len() >= 20 && p[0].keyframe_requests > requests_before
    });
    assert!(
        got,
        "video crosses the pipe, and the resume's key-frame request travels back to the sender"
    );
    assert!(
        receiver.received_from(ssrc).iter().all(|r| r.pt == 101),
        "router payload type on the far worker"
    );

    let closed = sfu
        .block(sfu.worker.close_producer(producer))
        .expect("close");
    assert!(
        closed.consumers.is_empty(),
        "no consumer lived on the producer's own worker"
    );
    // The far worker drops its mirror and the consumer with it.
    let gone = pump_until(&mut [&mut sender, &mut receiver], WAIT, |_| {
        sfu.block(other.stats())
            .map(|s| s.producers == 0 && s.consumers == 0)
            .unwrap_or(false)
    });
    assert!(
        gone,
        "closing the producer closes the pipe and the remote consumer"
    );
    let count = receiver.received_from(ssrc).len();
    let mut seq2 = seq;
    pump_until(
        &mut [&mut sender, &mut receiver],
        Duration::from_millis(500),
        |p| {
            seq2 += 1;
            p[0].send_rtp(
                1111,
                96,
                30_000 + seq2,
                (seq2 * 3000) as u32,
                true,
                &vp8_payload(false, 1),
            );
            false
        },
    );
    assert!(
        receiver.received_from(ssrc).len() <= count + 2,
        "nothing more crosses a closed pipe"
    );
}

/// A producer paused when it is piped (a camera turned off before a viewer
/// on another worker joined) forwards to that viewer once it resumes.
#[test]
fn a_producer_piped_while_paused_reaches_the_far_worker_once_resumed() {
    let (sfu, other, mut sender, mut receiver) = sender_and_far_receiver();
    let producer = sfu.produce_video(&sfu.worker, &mut sender);
    sfu.block(sfu.worker.set_producer_paused(producer, true))
        .expect("pause");
    sfu.block(sfu.worker.pipe_producer(producer, &other))
        .expect("pipe");
    let info = sfu
        .block(other.consume(receiver.id.expect("created"), producer))
        .expect("consumer on worker 1");
    assert!(info.producer_paused, "the far consumer sees the pause");
    let ssrc = receiver.expect_consumer(&info);
    sfu.block(other.set_consumer_paused(info.id, false))
        .expect("resume the consumer");

    let mut seq = 0u64;
    let mut send = |p: &mut [&mut ClientPeer]| {
        seq += 1;
        p[0].send_rtp(
            1111,
            96,
            30_000 + seq,
            (seq * 3000) as u32,
            true,
            &vp8_payload(seq == 1, seq as u8),
        );
    };
    pump_until(
        &mut [&mut sender, &mut receiver],
        Duration::from_millis(500),
        |p| {
            send(p);
            false
        },
    );
    assert!(
        receiver.received_from(ssrc).is_empty(),
        "nothing while the producer is paused"
    );

    sfu.block(sfu.worker.set_producer_paused(producer, false))
        .expect("resume the producer");
    let got = pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| {
        send(p);
        p[1].received_from(ssrc).len() >= 20
    });
    assert!(got, "video crosses the pipe after the producer resumed");
}

#[test]
fn load_counts_transports_and_consumers() {
    let sfu = Sfu::start();
    assert_eq!(sfu.worker.load(), 0);
    let _a = sfu.transport(Direction::Send, ClientCodecs::Browser);
    let _b = sfu.transport(Direction::Recv, ClientCodecs::Router);
    // The gauge is updated by the worker after each command.
    sfu.block(sfu.worker.stats()).expect("stats");
    assert_eq!(sfu.worker.load(), 2);
}

#[test]
fn data_messages_cross_a_pipe_to_another_worker() {
    let sfu = Sfu::start();
    let other = spawn_worker("worker-1");
    let mut sender = sfu.transport(Direction::Send, ClientCodecs::Browser);
    let mut receiver = sfu.transport_on(&other, Direction::Recv, ClientCodecs::Router);
    let send_channel = sender.open_channel(0, "chat");
    let data_producer = sfu
        .block(
            sfu.worker
                .produce_data(simplesfu_engine::DataProducerOptions {
                    transport_id: sender.id.expect("created"),
                    sctp_stream_parameters:
                        mediasoup_types::sctp_parameters::SctpStreamParameters::new_ordered(0),
                    label: "chat".into(),
                    protocol: String::new(),
                }),
        )
        .expect("data producer on worker 0");
    sfu.block(sfu.worker.pipe_data_producer(data_producer, &other))
        .expect("data pipe");
    let info = sfu
        .block(other.consume_data(receiver.id.expect("created"), data_producer))
        .expect("data consumer on worker 1");
    assert_eq!(info.label, "chat");
    receiver.open_channel(info.sctp_stream_parameters.stream_id, "chat");
    let mut sent = 0;
    let got = pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| {
        if p[0].channel_open.contains(&send_channel)
            && sent < 50
            && p[0].write_data(send_channel, b"across workers")
        {
            sent += 1;
        }
        p[1].data.iter().any(|(_, d)| d == b"across workers")
    });
    assert!(
        got,
        "the message reaches the data consumer on the other worker"
    );
    sfu.block(sfu.worker.close_data_producer(data_producer))
        .expect("close");
    let gone = pump_until(&mut [&mut sender, &mut receiver], WAIT, |_| {
        sfu.block(other.stats())
            .map(|s| s.data_producers == 0 && s.data_consumers == 0)
            .unwrap_or(false)
    });
    assert!(
        gone,
        "closing the data producer closes the far data consumer"
    );
}
