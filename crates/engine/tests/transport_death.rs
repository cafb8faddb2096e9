//! A transport that dies on its own (the client closes DTLS) is reported as
//! `EngineEvent::TransportClosed`, naming the producers that went with it and
//! the consumers on other transports that lost their producer, so the server
//! can tell those consumers' peers (`consumerClosed`) instead of leaving them
//! waiting for media that will never come.

mod common;

use common::*;
use mediasoup_types::rtp_parameters::MediaKind;
use simplesfu_engine::{Direction, EngineEvent, ProducerOptions, Worker, WorkerSettings};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_send_transport_closed_by_its_client_is_reported_with_its_producers_and_their_consumers() {
    let sfu = Sfu::start();
    let (worker, mut events) =
        Worker::spawn(WorkerSettings::new("watched", LOOPBACK, 0, LOOPBACK)).expect("worker");
    let mut sender = sfu.transport_on(&worker, Direction::Send, ClientCodecs::Browser);
    let mut receiver = sfu.transport_on(&worker, Direction::Recv, ClientCodecs::Router);
    assert!(
        pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| p[0].connected
            && p[1].connected),
        "both connect"
    );
    let send_id = sender.id.expect("created");
    let producer = sfu
        .block(worker.produce(ProducerOptions {
            transport_id: send_id,
            kind: MediaKind::Video,
            rtp_parameters: vp8_parameters("0", 1111, 2222),
            paused: false,
        }))
        .expect("producer");
    let consumer = sfu
        .block(worker.consume(receiver.id.expect("created"), producer))
        .expect("consumer");

    sender
        .rtc
        .close()
        .expect("the client closes (DTLS close_notify)");
    let mut reported = None;
    let deadline = std::time::Instant::now() + WAIT;
    while reported.is_none() && std::time::Instant::now() < deadline {
        sender.pump();
        receiver.pump();
        if let Ok(event) = events.try_recv() {
            reported = Some(event);
        }
    }
    let Some(EngineEvent::TransportClosed {
        transport_id,
        producers_closed,
        consumers_closed,
        ..
    }) = reported
    else {
        panic!("no TransportClosed event within {WAIT:?}");
    };
    assert_eq!(transport_id, send_id);
    assert_eq!(producers_closed, vec![producer]);
    assert_eq!(
        consumers_closed,
        vec![consumer.id],
        "the consumer on the other transport went with its producer"
    );
    let stats = sfu.block(worker.stats()).expect("stats");
    assert_eq!(
        (stats.transports, stats.producers, stats.consumers),
        (1, 0, 0),
        "only the receive transport is left"
    );
}
