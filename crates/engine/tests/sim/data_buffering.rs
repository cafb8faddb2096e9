//! Data messages for a data consumer whose channel is not open yet wait for
//! it, bounded by bytes as well as by count: a producer that floods a
//! consumer that has not connected costs the worker about 1 MiB, not
//! 256 x 256 KiB. The consumer then gets the newest messages, in order.

use crate::harness::*;
use mediasoup_types::sctp_parameters::SctpStreamParameters;
use simplesfu_engine::{DataConsumerInfo, DataProducerOptions, Direction};
use std::time::Duration;
use str0m::channel::ChannelId;

/// A connected sender with a data producer on stream 3, and an offline
/// viewer with a data consumer of it: (sim, sender, its channel, viewer, the consumer).
fn feed() -> (Sim, PeerId, ChannelId, PeerId, DataConsumerInfo) {
    let mut sim = Sim::new();
    let sender = sim.connected_peer(Direction::Send);
    let channel = sim.open_channel(sender, 3, "feed");
    let data_producer = sim
        .router
        .produce_data(DataProducerOptions {
            transport_id: sim.peer(sender).transport,
            sctp_stream_parameters: SctpStreamParameters::new_ordered(3),
            label: "feed".into(),
            protocol: String::new(),
        })
        .expect("data producer");
    // The viewer's client stays silent, so its channel cannot open.
    let viewer = sim.add_peer(Direction::Recv, false);
    let info = sim
        .router
        .consume_data(sim.peer(viewer).transport, data_producer)
        .expect("data consumer");
    sim.open_channel(viewer, info.sctp_stream_parameters.stream_id, "feed");
    (sim, sender, channel, viewer, info)
}

/// Write `messages` on the sender's channel as fast as it takes them, and
/// let the router receive them all.
fn send_all(sim: &mut Sim, sender: PeerId, channel: ChannelId, messages: &[Vec<u8>]) {
    let mut written = 0;
    let deadline = sim.now + Duration::from_secs(10);
    while written < messages.len() {
        assert!(
            sim.now < deadline,
            "the sender's channel took only {written} messages"
        );
        if sim.peer(sender).channel_open.contains(&channel)
            && sim.write_data(sender, channel, &messages[written])
        {
            written += 1;
        } else {
            sim.advance(Duration::from_millis(10));
        }
    }
    let all_in = sim.run_until(Duration::from_secs(10), |s| {
        s.router.stats().data_messages_in == messages.len() as u64
    });
    assert!(all_in, "the router received every message");
}

/// The number a message carries in its first 8 bytes.
fn number(message: &[u8]) -> usize {
    u64::from_be_bytes(message[..8].try_into().expect("8 bytes")) as usize
}

fn message(i: usize, size: usize) -> Vec<u8> {
    let mut m = vec![i as u8; size];
    m[..8].copy_from_slice(&(i as u64).to_be_bytes());
    m
}

#[test]
fn messages_sent_before_the_consumers_channel_opens_arrive_once_it_opens_in_order() {
    let (mut sim, sender, channel, viewer, _) = feed();
    let messages: Vec<Vec<u8>> = (0..5).map(|i| message(i, 100)).collect();
    send_all(&mut sim, sender, channel, &messages);
    assert!(sim.peer(viewer).data.is_empty());
    sim.go_online(viewer);
    let got = sim.run_until(Duration::from_secs(5), |s| {
        s.peer(viewer).data.len() == messages.len()
    });
    assert!(
        got,
        "every message waited for the channel: {} arrived",
        sim.peer(viewer).data.len()
    );
    let received: Vec<usize> = sim
        .peer(viewer)
        .data
        .iter()
        .map(|(_, d)| number(d))
        .collect();
    assert_eq!(received, [0, 1, 2, 3, 4], "in order, none twice");
    assert_eq!(sim.router.stats().data_messages_dropped, 0);
}

#[test]
fn a_consumer_that_connects_late_gets_the_newest_megabyte_in_order() {
    // 40 messages of 60 kB (below the 64 KiB str0m takes per message): 2.4 MB.
    const MESSAGES: usize = 40;
    let (mut sim, sender, channel, viewer, _) = feed();
    let messages: Vec<Vec<u8>> = (0..MESSAGES).map(|i| message(i, 60_000)).collect();
    send_all(&mut sim, sender, channel, &messages);
    sim.go_online(viewer);
    let last = &messages[MESSAGES - 1];
    let got_last = sim.run_until(Duration::from_secs(10), |s| {
        s.peer(viewer).data.iter().any(|(_, d)| d == last)
    });
    assert!(
        got_last,
        "the newest message reaches the consumer once it connects"
    );
    let data = &sim.peer(viewer).data;
    let received: Vec<usize> = data.iter().map(|(_, d)| number(d)).collect();
    let bytes: usize = data.iter().map(|(_, d)| d.len()).sum();
    assert!(
        bytes <= 1 << 20,
        "at most 1 MiB waited for the consumer ({} messages)",
        received.len()
    );
    assert!(received.len() >= 2, "more than the newest message is kept");
    let first = MESSAGES - received.len();
    assert_eq!(
        received,
        (first..MESSAGES).collect::<Vec<_>>(),
        "the newest, in order, none twice"
    );
    assert_eq!(
        sim.router.stats().data_messages_dropped,
        first as u64,
        "the dropped ones are counted"
    );
}
