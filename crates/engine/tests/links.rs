//! Links between nodes over real UDP: two workers that share nothing but
//! the network (as two nodes would), a link between them, a producer on
//! node A relayed to node B and consumed there by a client.

mod common;

use common::*;
use mediasoup_types::sctp_parameters::SctpStreamParameters;
use simplesfu_engine::{
    DataProducerOptions, Direction, EngineError, EngineEvent, LinkInfo, LinkOptions,
    RelayedDataProducer, RelayedProducer, Worker, WorkerHandle, WorkerSettings,
};
use simplesfu_proto::{DataProducerId, ProducerId, TransportId};
use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::media::MediaKind as StrKind;
use tokio::sync::mpsc::UnboundedReceiver;

const WAIT: Duration = Duration::from_secs(10);

struct Nodes {
    sfu: Sfu,
    /// Node B's worker and its events.
    b: WorkerHandle,
    b_events: UnboundedReceiver<EngineEvent>,
    /// The link's ends: on A (waits) and on B (connects).
    link_a: TransportId,
    link_b: TransportId,
}

fn creds(ufrag: &str, password: &str) -> (String, String) {
    (ufrag.into(), password.into())
}

/// Node A (the `Sfu`'s worker) and node B, each with its own socket, and a
/// link between them that B connects, both told the other's fingerprint.
fn linked_nodes() -> Nodes {
    linked_nodes_via(|a| a)
}

/// Like [`linked_nodes`], B connecting to `route(A's address)`.
fn linked_nodes_via(route: impl FnOnce(SocketAddr) -> SocketAddr) -> Nodes {
    let sfu = Sfu::start();
    let (b, b_events) = Worker::spawn(WorkerSettings::new("node-b", LOOPBACK, 0, LOOPBACK))
        .expect("node B binds a loopback port");
    let (a_ufrag, a_pass) = creds("linkA", "link-a-password-0123456789");
    let (b_ufrag, b_pass) = creds("linkB", "link-b-password-0123456789");
    let LinkInfo {
        id: link_a,
        fingerprint: fp_a,
    } = sfu
        .block(sfu.worker.create_link(LinkOptions {
            local_ufrag: a_ufrag.clone(),
            local_password: a_pass.clone(),
            remote_ufrag: b_ufrag.clone(),
            remote_password: b_pass.clone(),
            connect_to: None,
        }))
        .expect("link end on A");
    let LinkInfo {
        id: link_b,
        fingerprint: fp_b,
    } = sfu
        .block(b.create_link(LinkOptions {
            local_ufrag: b_ufrag,
            local_password: b_pass,
            remote_ufrag: a_ufrag,
            remote_password: a_pass,
            connect_to: Some(route(sfu.worker.local_addr())),
        }))
        .expect("link end on B");
    sfu.block(sfu.worker.connect_link(link_a, fp_b))
        .expect("A pins B's fingerprint");
    sfu.block(b.connect_link(link_b, fp_a))
        .expect("B pins A's fingerprint");
    Nodes {
        sfu,
        b,
        b_events,
        link_a,
        link_b,
    }
}

/// Relay `producer` from A to B over the link.
fn relay(n: &Nodes, producer: ProducerId) -> RelayedProducer {
    let relayed = n
        .sfu
        .block(n.sfu.worker.relay_producer(n.link_a, producer))
        .expect("relay on A");
    // What crosses between nodes is JSON (over Redis, in the server).
    let wire = serde_json::to_string(&relayed).expect("serializes");
    let relayed: RelayedProducer = serde_json::from_str(&wire).expect("parses");
    n.sfu
        .block(n.b.accept_relayed_producer(n.link_b, relayed.clone()))
        .expect("mirror on B");
    relayed
}

fn send_frame(p: &mut [&mut ClientPeer], seq: u64) {
    p[0].send_rtp(
        1111,
        96,
        40_000 + seq,
        (seq * 3000) as u32,
        true,
        &vp8_payload(false, seq as u8),
    );
}

#[test]
fn video_crosses_a_link_key_frames_come_back_and_close_reaches_the_far_viewer() {
    let mut n = linked_nodes();
    let mut sender = n.sfu.transport(Direction::Send, ClientCodecs::Browser);
    let mut viewer = n
        .sfu
        .transport_on(&n.b, Direction::Recv, ClientCodecs::Router);
    assert!(
        pump_until(&mut [&mut sender, &mut viewer], WAIT, |p| p[0].connected
            && p[1].connected),
        "both clients connect"
    );
    let producer = n.sfu.produce_video(&n.sfu.worker, &mut sender);

    // B does not know the producer until it is relayed.
    assert_eq!(
        n.sfu
            .block(n.b.consume(viewer.id.expect("created"), producer))
            .map(|c| c.id),
        Err(EngineError::ProducerNotFound(producer))
    );
    let relayed = relay(&n, producer);
    assert_eq!(relayed.layers.len(), 1);
    assert!(relayed.layers[0].1.is_some(), "video crosses with RTX");
    // Relaying again describes the same relay.
    assert_eq!(
        n.sfu
            .block(n.sfu.worker.relay_producer(n.link_a, producer))
            .expect("relay again"),
        relayed
    );

    let info = n
        .sfu
        .block(n.b.consume(viewer.id.expect("created"), producer))
        .expect("consumer on B");
    let ssrc = viewer.expect_consumer(&info);
    let requests_before = sender.keyframe_requests;
    n.sfu
        .block(n.b.set_consumer_paused(info.id, false))
        .expect("resume");
    let mut seq = 0u64;
    let got = pump_until(&mut [&mut sender, &mut viewer], WAIT, |p| {
        seq += 1;
        send_frame(p, seq);
        p[1].received_from(ssrc).len() >= 30 && p[0].keyframe_requests > requests_before
    });
    assert!(
        got,
        "the viewer on B gets the video from A, and the key-frame request of its resume reaches the sender on A"
    );
    let received = viewer.received_from(ssrc);
    assert!(
        received.iter().all(|r| r.pt == 101),
        "the router's payload type on B"
    );
    // On loopback nothing is lost: the payloads arrive whole, in order.
    for pair in received.windows(2) {
        let (a, b) = (pair[0].payload[2], pair[1].payload[2]);
        assert_eq!(pair[1].seq, pair[0].seq + 1, "consecutive numbers");
        assert_eq!(b, a.wrapping_add(1), "consecutive frames");
        assert_eq!(&pair[1].payload[..], &vp8_payload(false, b)[..]);
    }

    // Pausing on A reaches B: a new consumer there sees it, and nothing flows.
    n.sfu
        .block(n.sfu.worker.set_producer_paused(producer, true))
        .expect("pause on A");
    let paused_seen = pump_until(&mut [&mut sender, &mut viewer], WAIT, |p| {
        seq += 1;
        send_frame(p, seq);
        let probe = n
            .sfu
            .block(n.b.consume(p[1].id.expect("created"), producer));
        let paused = probe.as_ref().is_ok_and(|c| c.producer_paused);
        if let Ok(c) = probe {
            let _ = n.sfu.block(n.b.close_consumer(c.id));
        }
        paused
    });
    assert!(paused_seen, "the mirror on B follows the pause");
    let count = viewer.received_from(ssrc).len();
    pump_until(
        &mut [&mut sender, &mut viewer],
        Duration::from_millis(300),
        |p| {
            seq += 1;
            send_frame(p, seq);
            false
        },
    );
    assert!(
        viewer.received_from(ssrc).len() <= count + 2,
        "nothing crosses while paused"
    );
    let requests_before = sender.keyframe_requests;
    n.sfu
        .block(n.sfu.worker.set_producer_paused(producer, false))
        .expect("resume on A");
    let flowing = pump_until(&mut [&mut sender, &mut viewer], WAIT, |p| {
        seq += 1;
        send_frame(p, seq);
        p[1].received_from(ssrc).len() >= count + 20 && p[0].keyframe_requests > requests_before
    });
    assert!(
        flowing,
        "video flows again after the resume, from a key frame"
    );

    // Closing the producer on A closes its mirror and the viewer's consumer on B.
    n.sfu
        .block(n.sfu.worker.close_producer(producer))
        .expect("close on A");
    let mut closed = None;
    let gone = pump_until(&mut [&mut sender, &mut viewer], WAIT, |_| {
        while let Ok(event) = n.b_events.try_recv() {
            if let EngineEvent::RelayedProducerClosed {
                link_id,
                producer_id,
                consumers_closed,
            } = event
            {
                closed = Some((link_id, producer_id, consumers_closed));
            }
        }
        closed.is_some()
    });
    assert!(gone, "B reports the relayed producer closed");
    assert_eq!(
        closed,
        Some((n.link_b, producer, vec![info.id])),
        "with the viewer's consumer"
    );
    let stats = n.sfu.block(n.b.stats()).expect("stats");
    assert_eq!((stats.producers, stats.consumers), (0, 0));
}

#[test]
fn every_simulcast_layer_crosses_and_the_far_viewer_gets_the_top_one() {
    let n = linked_nodes();
    let mut sender = n.sfu.transport(Direction::Send, ClientCodecs::Browser);
    let mut viewer = n
        .sfu
        .transport_on(&n.b, Direction::Recv, ClientCodecs::Router);
    assert!(
        pump_until(&mut [&mut sender, &mut viewer], WAIT, |p| p[0].connected
            && p[1].connected),
        "both clients connect"
    );
    let producer = n
        .sfu
        .block(n.sfu.worker.produce(simplesfu_engine::ProducerOptions {
            transport_id: sender.id.expect("created"),
            kind: mediasoup_types::rtp_parameters::MediaKind::Video,
            rtp_parameters: vp8_simulcast_parameters("0"),
            paused: false,
        }))
        .expect("simulcast producer");
    for layer in 0..3u32 {
        sender.declare_send(
            "0",
            StrKind::Video,
            5000 + layer,
            None,
            Some(&format!("r{layer}")),
        );
    }
    let relayed = relay(&n, producer);
    assert_eq!(relayed.layers.len(), 3, "every layer is relayed");
    let info = n
        .sfu
        .block(n.b.consume(viewer.id.expect("created"), producer))
        .expect("consumer on B");
    let ssrc = viewer.expect_consumer(&info);
    n.sfu
        .block(n.b.set_consumer_paused(info.id, false))
        .expect("resume");
    let mut frame = 0u64;
    let got_top = pump_until(&mut [&mut sender, &mut viewer], WAIT, |p| {
        frame += 1;
        for layer in 0..3u8 {
            p[0].send_rtp(
                5000 + layer as u32,
                96,
                1000 + frame,
                (frame * 3000) as u32,
                true,
                &vp8_numbered_payload(frame as u16, frame as u8, 0, frame % 10 == 1, layer),
            );
        }
        p[1].received_from(ssrc)
            .iter()
            .filter(|r| r.payload.last() == Some(&2))
            .count()
            >= 10
    });
    assert!(got_top, "the viewer on B gets the top layer from A");
}

#[test]
fn closing_a_link_closes_what_it_brought_and_the_origin_goes_on() {
    let n = linked_nodes();
    let mut sender = n.sfu.transport(Direction::Send, ClientCodecs::Browser);
    let mut near = n.sfu.transport(Direction::Recv, ClientCodecs::Router);
    let mut far = n
        .sfu
        .transport_on(&n.b, Direction::Recv, ClientCodecs::Router);
    assert!(
        pump_until(&mut [&mut sender, &mut near, &mut far], WAIT, |p| p
            .iter()
            .all(|c| c.connected)),
        "the clients connect"
    );
    let producer = n.sfu.produce_video(&n.sfu.worker, &mut sender);
    relay(&n, producer);
    let far_info = n
        .sfu
        .block(n.b.consume(far.id.expect("created"), producer))
        .expect("consumer on B");
    let near_info = n
        .sfu
        .block(n.sfu.worker.consume(near.id.expect("created"), producer))
        .expect("consumer on A");
    let near_ssrc = near.expect_consumer(&near_info);
    n.sfu
        .block(n.sfu.worker.set_consumer_paused(near_info.id, false))
        .expect("resume");

    // Node A is gone, as far as B knows: B closes its end of the link.
    let closed = n
        .sfu
        .block(n.b.close_transport(n.link_b))
        .expect("close the link on B");
    assert_eq!(
        closed.consumers,
        vec![far_info.id],
        "the far viewer's consumer goes"
    );
    assert_eq!(
        n.sfu
            .block(n.b.consume(far.id.expect("created"), producer))
            .map(|c| c.id),
        Err(EngineError::ProducerNotFound(producer)),
        "and the mirror with it"
    );
    // A closes its end too; its own viewer keeps the video.
    n.sfu
        .block(n.sfu.worker.close_transport(n.link_a))
        .expect("close the link on A");
    let mut seq = 0;
    let flowing = pump_until(&mut [&mut sender, &mut near, &mut far], WAIT, |p| {
        seq += 1;
        send_frame(p, seq);
        p[1].received_from(near_ssrc).len() >= 20
    });
    assert!(flowing, "the viewer on A keeps its video");
}

#[test]
fn descriptions_and_links_that_do_not_hold_are_refused() {
    let n = linked_nodes();
    let mut sender = n.sfu.transport(Direction::Send, ClientCodecs::Browser);
    assert!(
        pump_until(&mut [&mut sender], WAIT, |p| p[0].connected),
        "the sender connects"
    );
    let producer = n.sfu.produce_video(&n.sfu.worker, &mut sender);
    let good = n
        .sfu
        .block(n.sfu.worker.relay_producer(n.link_a, producer))
        .expect("relay");
    let refused = |relayed: RelayedProducer| {
        n.sfu
            .block(n.b.accept_relayed_producer(n.link_b, relayed))
            .expect_err("refused")
    };
    let mut zero_ssrc = good.clone();
    zero_ssrc.layers[0].0 = 0;
    let mut too_many = good.clone();
    too_many.layers = (1..=10).map(|s| (s, None)).collect();
    let mut bad_mid = good.clone();
    bad_mid.mid = "a b".into();
    let mut audio_as_video = good.clone();
    audio_as_video.kind = mediasoup_types::rtp_parameters::MediaKind::Audio;
    for bad in [zero_ssrc, too_many, bad_mid, audio_as_video] {
        assert!(
            matches!(refused(bad), EngineError::InvalidLink(_)),
            "a description that does not hold"
        );
    }
    // Not a link: a client's transport.
    assert!(matches!(
        n.sfu.block(
            n.sfu
                .worker
                .relay_producer(sender.id.expect("created"), producer)
        ),
        Err(EngineError::InvalidLink(_))
    ));
    // A producer is not relayed back over the link it came from.
    n.sfu
        .block(n.b.accept_relayed_producer(n.link_b, good.clone()))
        .expect("mirror");
    assert!(matches!(
        n.sfu.block(n.b.relay_producer(n.link_b, producer)),
        Err(EngineError::InvalidLink(_))
    ));
    // Credentials with a colon or empty, a fingerprint that does not parse.
    let bad_creds = LinkOptions {
        local_ufrag: "a:b".into(),
        local_password: "p".repeat(22),
        remote_ufrag: "c".into(),
        remote_password: String::new(),
        connect_to: None,
    };
    assert!(matches!(
        n.sfu.block(n.sfu.worker.create_link(bad_creds)),
        Err(EngineError::InvalidLink(_))
    ));
    let spare = n
        .sfu
        .block(n.sfu.worker.create_link(LinkOptions {
            local_ufrag: "spare".into(),
            local_password: "spare-password-0123456789".into(),
            remote_ufrag: "other".into(),
            remote_password: "other-password-0123456789".into(),
            connect_to: None,
        }))
        .expect("a spare link");
    assert!(matches!(
        n.sfu.block(
            n.sfu
                .worker
                .connect_link(spare.id, "sha-256 nonsense".into())
        ),
        Err(EngineError::InvalidLink(_))
    ));
    // B links to A's address once.
    assert!(matches!(
        n.sfu.block(n.b.create_link(LinkOptions {
            local_ufrag: "again".into(),
            local_password: "again-password-0123456789".into(),
            remote_ufrag: "linkA".into(),
            remote_password: "link-a-password-0123456789".into(),
            connect_to: Some(n.sfu.worker.local_addr()),
        })),
        Err(EngineError::InvalidLink(_))
    ));
}

/// A UDP hop between B and A that loses every `every`-th media datagram
/// from A to B (RTP of more than 100 bytes; ICE, DTLS and feedback pass),
/// as a lossy path between data centres would. It stops with `stop` or
/// after a minute.
struct LossyHop {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

impl LossyHop {
    fn start(a: SocketAddr, every: u64) -> LossyHop {
        let socket = UdpSocket::bind((LOOPBACK, 0)).expect("hop binds");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let addr = socket.local_addr().expect("hop address");
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let (stop2, dropped2) = (stop.clone(), dropped.clone());
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(60);
            let mut b: Option<SocketAddr> = None;
            let mut media = 0u64;
            let mut buf = [0u8; 2048];
            while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let datagram = &buf[..len];
                if from == a {
                    let rtp = len > 100 && (128..192).contains(&datagram[0]);
                    if rtp {
                        media += 1;
                        if media % every == 0 {
                            dropped2.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                    if let Some(b) = b {
                        let _ = socket.send_to(datagram, b);
                    }
                } else {
                    b = Some(from);
                    let _ = socket.send_to(datagram, a);
                }
            }
        });
        LossyHop {
            addr,
            stop,
            dropped,
        }
    }
}

impl Drop for LossyHop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn what_the_path_between_nodes_loses_is_resent_over_the_link() {
    let mut hop = None;
    let n = linked_nodes_via(|a| {
        let h = LossyHop::start(a, 10);
        let addr = h.addr;
        hop = Some(h);
        addr
    });
    let hop = hop.expect("hop started");
    let mut sender = n.sfu.transport(Direction::Send, ClientCodecs::Browser);
    let mut viewer = n
        .sfu
        .transport_on(&n.b, Direction::Recv, ClientCodecs::Router);
    assert!(
        pump_until(&mut [&mut sender, &mut viewer], WAIT, |p| p[0].connected
            && p[1].connected),
        "both clients connect"
    );
    let producer = n.sfu.produce_video(&n.sfu.worker, &mut sender);
    relay(&n, producer);
    let info = n
        .sfu
        .block(n.b.consume(viewer.id.expect("created"), producer))
        .expect("consumer on B");
    let ssrc = viewer.expect_consumer(&info);
    n.sfu
        .block(n.b.set_consumer_paused(info.id, false))
        .expect("resume");
    // 200 frames, one packet each, 5 ms apart.
    let mut seq = 0u64;
    let mut next = Instant::now();
    pump_until(&mut [&mut sender, &mut viewer], WAIT, |p| {
        if seq < 200 && Instant::now() >= next {
            seq += 1;
            send_frame(p, seq);
            next += Duration::from_millis(5);
        }
        seq >= 200
    });
    // Then time for the last resends.
    pump_until(
        &mut [&mut sender, &mut viewer],
        Duration::from_millis(500),
        |_| false,
    );
    assert!(
        hop.dropped.load(Ordering::Relaxed) >= 15,
        "the hop lost media on the way: {}",
        hop.dropped.load(Ordering::Relaxed)
    );
    // The viewer's numbers start where its consumer joined (after its key
    // frame wait, if any); from its first packet on, none is missing.
    let seqs: BTreeSet<u64> = viewer.received_from(ssrc).iter().map(|r| r.seq).collect();
    let (first, last) = (
        *seqs.first().expect("packets"),
        *seqs.last().expect("packets"),
    );
    let missing: Vec<u64> = (first..=last).filter(|s| !seqs.contains(s)).collect();
    assert!(
        last - first >= 150,
        "most frames reached the viewer: {first}..={last}"
    );
    assert!(
        missing.is_empty(),
        "every packet the hop lost was resent over the link: missing {missing:?}"
    );
}

fn data_producer(
    sfu: &Sfu,
    worker: &WorkerHandle,
    sender: &ClientPeer,
    label: &str,
) -> DataProducerId {
    sfu.block(worker.produce_data(DataProducerOptions {
        transport_id: sender.id.expect("created"),
        sctp_stream_parameters: SctpStreamParameters::new_ordered(0),
        label: label.into(),
        protocol: String::new(),
    }))
    .expect("data producer")
}

#[test]
fn data_crosses_a_link_both_ways_in_order_and_closing_reaches_the_far_end() {
    let mut n = linked_nodes();
    // A client on each node sends on its stream 0 and receives what the
    // other node's client sends.
    let mut sender_a = n.sfu.transport(Direction::Send, ClientCodecs::Browser);
    let mut viewer_a = n.sfu.transport(Direction::Recv, ClientCodecs::Router);
    let mut sender_b = n
        .sfu
        .transport_on(&n.b, Direction::Send, ClientCodecs::Browser);
    let mut viewer_b = n
        .sfu
        .transport_on(&n.b, Direction::Recv, ClientCodecs::Router);
    assert!(
        pump_until(
            &mut [&mut sender_a, &mut viewer_a, &mut sender_b, &mut viewer_b],
            WAIT,
            |p| p.iter().all(|c| c.connected)
        ),
        "the clients connect"
    );
    let out_a = sender_a.open_channel(0, "chat-a");
    let out_b = sender_b.open_channel(0, "chat-b");
    let on_a = data_producer(&n.sfu, &n.sfu.worker, &sender_a, "chat-a");
    let on_b = data_producer(&n.sfu, &n.b, &sender_b, "chat-b");

    // A relays its data producer to B, and B its own to A, over one link.
    let a_to_b = n
        .sfu
        .block(n.sfu.worker.relay_data_producer(n.link_a, on_a))
        .expect("relay on A");
    let wire = serde_json::to_string(&a_to_b).expect("serializes");
    let a_to_b: RelayedDataProducer = serde_json::from_str(&wire).expect("parses");
    assert_eq!(a_to_b.label, "chat-a");
    assert_eq!(
        n.sfu
            .block(n.sfu.worker.relay_data_producer(n.link_a, on_a)),
        Ok(a_to_b.clone()),
        "relaying twice describes the same stream"
    );
    n.sfu
        .block(n.b.accept_relayed_data_producer(n.link_b, a_to_b.clone()))
        .expect("mirror on B");
    let b_to_a = n
        .sfu
        .block(n.b.relay_data_producer(n.link_b, on_b))
        .expect("relay on B");
    assert_ne!(
        a_to_b.sctp_stream_parameters.stream_id % 2,
        b_to_a.sctp_stream_parameters.stream_id % 2,
        "the two ends take streams of their own parity"
    );
    n.sfu
        .block(n.sfu.worker.accept_relayed_data_producer(n.link_a, b_to_a))
        .expect("mirror on A");
    assert_eq!(
        n.sfu.block(n.b.relay_data_producer(n.link_b, on_a)),
        Err(EngineError::InvalidLink(format!(
            "data producer {on_a} comes from link {}: it is not relayed back",
            n.link_b
        ))),
        "a mirror is not relayed back where it came from"
    );

    let at_b = n
        .sfu
        .block(n.b.consume_data(viewer_b.id.expect("created"), on_a))
        .expect("data consumer on B");
    viewer_b.open_channel(at_b.sctp_stream_parameters.stream_id, "chat-a");
    let at_a = n
        .sfu
        .block(
            n.sfu
                .worker
                .consume_data(viewer_a.id.expect("created"), on_b),
        )
        .expect("data consumer on A");
    viewer_a.open_channel(at_a.sctp_stream_parameters.stream_id, "chat-b");

    let mut sent = (0u32, 0u32);
    let got = pump_until(
        &mut [&mut sender_a, &mut viewer_a, &mut sender_b, &mut viewer_b],
        WAIT,
        |p| {
            // Messages sent before the far consumer's channel is up may be
            // lost like any message to a channel not open: send until 20
            // came through each way.
            if p[0].channel_open.contains(&out_a) && sent.0 < 200 {
                let message = format!("a{}", sent.0);
                if p[0].write_data(out_a, message.as_bytes()) {
                    sent.0 += 1;
                }
            }
            if p[2].channel_open.contains(&out_b) && sent.1 < 200 {
                let message = format!("b{}", sent.1);
                if p[2].write_data(out_b, message.as_bytes()) {
                    sent.1 += 1;
                }
            }
            p[3].data.len() >= 20 && p[1].data.len() >= 20
        },
    );
    assert!(got, "messages cross both ways: sent {sent:?}");
    let numbers = |c: &ClientPeer, prefix: char| -> Vec<u32> {
        c.data
            .iter()
            .map(|(_, d)| {
                let text = String::from_utf8(d.clone()).expect("text");
                text.strip_prefix(prefix)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("a message of the other node: {text}"))
            })
            .collect()
    };
    for (received, prefix) in [
        (numbers(&viewer_b, 'a'), 'a'),
        (numbers(&viewer_a, 'b'), 'b'),
    ] {
        assert!(
            received.windows(2).all(|w| w[1] == w[0] + 1),
            "in order and without a gap ({prefix}): {received:?}"
        );
    }

    // A's client closes its data producer: B's mirror goes, with its consumer.
    n.sfu
        .block(n.sfu.worker.close_data_producer(on_a))
        .expect("close on A");
    let mut closed = None;
    pump_until(
        &mut [&mut sender_a, &mut viewer_a, &mut sender_b, &mut viewer_b],
        WAIT,
        |_| {
            while let Ok(event) = n.b_events.try_recv() {
                if let EngineEvent::RelayedDataProducerClosed {
                    link_id,
                    data_producer_id,
                    data_consumers_closed,
                } = event
                {
                    closed = Some((link_id, data_producer_id, data_consumers_closed));
                }
            }
            closed.is_some()
        },
    );
    assert_eq!(
        closed,
        Some((n.link_b, on_a, vec![at_b.id])),
        "B hears of the close and closes the far data consumer"
    );
    assert_eq!(
        n.sfu
            .block(n.b.consume_data(viewer_b.id.expect("created"), on_a))
            .map(|c| c.id),
        Err(EngineError::DataProducerNotFound(on_a)),
        "the mirror is gone"
    );
}

#[test]
fn relayed_data_descriptions_that_do_not_hold_are_refused() {
    let n = linked_nodes();
    let mut sender = n.sfu.transport(Direction::Send, ClientCodecs::Browser);
    assert!(
        pump_until(&mut [&mut sender], WAIT, |p| p[0].connected),
        "the sender connects"
    );
    let on_a = data_producer(&n.sfu, &n.sfu.worker, &sender, "chat");
    let good = n
        .sfu
        .block(n.sfu.worker.relay_data_producer(n.link_a, on_a))
        .expect("relay on A");
    let refused = |relayed: RelayedDataProducer| {
        matches!(
            n.sfu
                .block(n.b.accept_relayed_data_producer(n.link_b, relayed)),
            Err(EngineError::InvalidLink(_))
        )
    };
    let mut own_parity = good.clone();
    own_parity.sctp_stream_parameters.stream_id += 1;
    assert!(refused(own_parity), "a stream of B's own parity");
    let mut control = good.clone();
    control.sctp_stream_parameters.stream_id = 0;
    assert!(refused(control), "the control stream");
    let mut huge = good.clone();
    huge.sctp_stream_parameters.stream_id = 60_000;
    assert!(refused(huge), "a stream out of range");
    let mut long = good.clone();
    long.label = "x".repeat(2000);
    assert!(refused(long), "a label over 1024 bytes");
    let unknown = TransportId::new();
    assert_eq!(
        n.sfu
            .block(n.b.accept_relayed_data_producer(unknown, good.clone())),
        Err(EngineError::TransportNotFound(unknown)),
        "a link B does not have"
    );
    n.sfu
        .block(n.b.accept_relayed_data_producer(n.link_b, good.clone()))
        .expect("the good one");
    n.sfu
        .block(n.b.accept_relayed_data_producer(n.link_b, good))
        .expect("twice is the same mirror");
}

#[test]
fn the_connecting_end_keeps_checking_so_the_waiting_end_sees_consent() {
    // The server closes the waiting end of a link after 30 s without an ICE
    // check from the far end (RFC 7675 consent): a healthy link must get
    // them far more often than that.
    let n = linked_nodes();
    let mut sender = n.sfu.transport(Direction::Send, ClientCodecs::Browser);
    let started = Instant::now();
    let mut seen = Vec::new();
    pump_until(&mut [&mut sender], Duration::from_secs(12), |_| {
        if let Ok(Some(at)) = n.sfu.block(n.sfu.worker.last_consent(n.link_a)) {
            if seen.last() != Some(&at) {
                seen.push(at);
            }
        }
        false
    });
    let last = *seen.last().expect("the waiting end saw ICE checks");
    assert!(
        Instant::now().saturating_duration_since(last) < Duration::from_secs(5),
        "a check within the last 5 s of {:?}",
        started.elapsed()
    );
    eprintln!("{} ICE checks seen in {:?}", seen.len(), started.elapsed());
    let longest = seen
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .max()
        .unwrap_or_default();
    assert!(
        longest < Duration::from_secs(10),
        "checks keep coming (longest gap {longest:?}, {} checks in 12 s)",
        seen.len()
    );
}
