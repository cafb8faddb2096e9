//! Data messages for a data consumer whose channel is not open yet wait
//! for it, bounded by bytes as well as by count: a producer that floods a
//! consumer that has not connected costs the worker about 1 MiB, not
//! 256 x 256 KiB. The consumer then gets the newest messages, in order.

mod common;

use common::*;
use mediasoup_types::sctp_parameters::SctpStreamParameters;
use simplesfu_engine::{DataProducerOptions, Direction};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const MESSAGES: usize = 40;
/// Below the 64 KiB str0m takes per message; 40 of them make 2.4 MB.
const SIZE: usize = 60_000;

#[test]
fn a_consumer_that_connects_late_gets_the_newest_megabyte_in_order() {
    let sfu = Sfu::start();
    let mut sender = sfu.transport(Direction::Send, ClientCodecs::Browser);
    let send_channel = sender.open_channel(3, "feed");
    let data_producer = sfu
        .block(sfu.worker.produce_data(DataProducerOptions {
            transport_id: sender.id.expect("created"),
            sctp_stream_parameters: SctpStreamParameters::new_ordered(3),
            label: "feed".into(),
            protocol: String::new(),
        }))
        .expect("data producer");
    // The receiver's client end stays silent, so its channel cannot open.
    let mut receiver = sfu.transport(Direction::Recv, ClientCodecs::Router);
    let info = sfu.block(sfu.worker.consume_data(receiver.id.expect("created"), data_producer)).expect("data consumer");
    receiver.open_channel(info.sctp_stream_parameters.stream_id, "feed");

    let message = |i: usize| {
        let mut m = vec![i as u8; SIZE];
        m[..8].copy_from_slice(&(i as u64).to_be_bytes());
        m
    };
    let mut written = 0;
    let all_in = pump_until(&mut [&mut sender], WAIT, |p| {
        while written < MESSAGES && p[0].channel_open.contains(&send_channel) && p[0].write_data(send_channel, &message(written)) {
            written += 1;
        }
        written == MESSAGES && sfu.block(sfu.worker.stats()).expect("stats").data_messages_in == MESSAGES as u64
    });
    assert!(all_in, "the SFU received every message ({written} written)");

    let last = message(MESSAGES - 1);
    let got_last = pump_until(&mut [&mut sender, &mut receiver], WAIT, |p| p[1].data.iter().any(|(_, d)| *d == last));
    assert!(got_last, "the newest message reaches the consumer once it connects");
    let received: Vec<usize> = receiver
        .data
        .iter()
        .map(|(_, d)| u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) as usize)
        .collect();
    let bytes: usize = receiver.data.iter().map(|(_, d)| d.len()).sum();
    assert!(bytes <= 1 << 20, "at most 1 MiB waited for the consumer ({} messages)", received.len());
    assert!(received.len() >= 2, "more than the newest message is kept");
    let first = MESSAGES - received.len();
    assert_eq!(received, (first..MESSAGES).collect::<Vec<_>>(), "the newest, in order, none twice");
    let stats = sfu.block(sfu.worker.stats()).expect("stats");
    assert_eq!(stats.data_messages_dropped, first as u64, "the dropped ones are counted");
}
