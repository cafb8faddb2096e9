//! Scenarios of the registry's rules, without a network or an engine.

use super::*;
use simplesfu_proto::types::rtp_parameters::RtpParameters;
use simplesfu_proto::types::sctp_parameters::SctpStreamParameters;

fn pid(s: &str) -> PeerId {
    s.parse().expect("valid peer id")
}

fn rid(s: &str) -> RoomId {
    s.parse().expect("valid room id")
}

fn video(label: &str) -> ProducerEntry {
    ProducerEntry {
        kind: MediaKind::Video,
        label: label.into(),
        broadcast: false,
        paused: false,
        spatial_layers: 1,
    }
}

fn types_of(effects: &Effects, to: &str) -> Vec<String> {
    effects
        .pushes
        .iter()
        .filter(|(p, _)| p.as_str() == to)
        .map(|(_, push)| {
            serde_json::to_value(push).expect("serializes")["type"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

fn registry_with(peers: &[&str]) -> Registry {
    let mut r = Registry::default();
    for p in peers {
        r.add_peer(pid(p), 0);
    }
    r
}

fn with_transports(r: &mut Registry, peer: &str) -> (TransportId, TransportId) {
    let (send, recv) = (TransportId::new(), TransportId::new());
    r.add_transport(&pid(peer), Direction::Send, send)
        .expect("first send transport");
    r.add_transport(&pid(peer), Direction::Recv, recv)
        .expect("first recv transport");
    r.mark_connected(&pid(peer), send);
    (send, recv)
}

fn consumer_info(producer: ProducerId) -> ConsumerInfo {
    ConsumerInfo {
        id: ConsumerId::new(),
        producer_id: producer,
        kind: MediaKind::Video,
        rtp_parameters: RtpParameters::default(),
        consumer_type: "simple",
        producer_paused: false,
    }
}

/// `b` consumes a fresh video producer of `a`; gives (producer, consumer).
fn consume(r: &mut Registry, a: &str, b: &str) -> (ProducerId, ConsumerId) {
    let producer = ProducerId::new();
    r.add_producer(&pid(a), producer, video("cam"))
        .expect("producer added");
    let ConsumePlan::Create { recv_transport, .. } = r
        .plan_consume::<Media>(&pid(b), &pid(a), producer)
        .expect("may consume")
    else {
        panic!("expected a new consumer")
    };
    let info = consumer_info(producer);
    let id = info.id;
    r.add_consumer::<Media>(&pid(b), &pid(a), recv_transport, info)
        .expect("consumer recorded");
    (producer, id)
}

#[test]
fn joining_tells_the_joiner_everyone_and_everyone_the_joiner() {
    let mut r = registry_with(&["a", "b", "c"]);
    let first = r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    assert!(
        types_of(&first, "a").is_empty(),
        "nobody to announce to the first peer"
    );
    r.join_room(&pid("b"), &rid("x"), true).expect("joins");
    let third = r.join_room(&pid("c"), &rid("x"), true).expect("joins");
    let to_c: Vec<_> = third
        .pushes
        .iter()
        .filter(|(p, _)| p.as_str() == "c")
        .collect();
    assert!(
        matches!(&to_c[..], [(_, Push::PeerConnection(ids))] if ids == &vec![pid("a"), pid("b")])
    );
    assert_eq!(types_of(&third, "a"), vec!["peerConnection"]);
    assert_eq!(types_of(&third, "b"), vec!["peerConnection"]);
    assert_eq!(third.rooms_changed, BTreeSet::from([rid("x")]));
}

#[test]
fn joining_another_room_leaves_the_first() {
    let mut r = registry_with(&["a", "b"]);
    r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    r.join_room(&pid("b"), &rid("x"), true).expect("joins");
    let moved = r.join_room(&pid("a"), &rid("y"), true).expect("joins");
    assert_eq!(types_of(&moved, "b"), vec!["peerDisconnection"]);
    assert_eq!(types_of(&moved, "a"), vec!["peerDisconnection"]);
    assert_eq!(r.members(&rid("x")), vec![pid("b")]);
    assert_eq!(r.members(&rid("y")), vec![pid("a")]);
    assert_eq!(moved.rooms_changed, BTreeSet::from([rid("x"), rid("y")]));
}

#[test]
fn rejoining_the_same_room_changes_nothing() {
    let mut r = registry_with(&["a", "b"]);
    r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    r.join_room(&pid("b"), &rid("x"), true).expect("joins");
    let again = r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    assert!(types_of(&again, "b").is_empty(), "the others hear nothing");
    assert_eq!(
        types_of(&again, "a"),
        vec!["availableProducers"],
        "the joiner hears the list again"
    );
    assert!(again.rooms_changed.is_empty(), "no room-wide resend");
    assert_eq!(r.members(&rid("x")), vec![pid("a"), pid("b")]);
}

#[test]
fn leaving_a_room_one_is_not_in_is_refused() {
    let mut r = registry_with(&["a"]);
    let e = r.leave_room(&pid("a")).expect_err("not in room");
    assert_eq!(e.code, ErrorCode::NotInRoom);
}

#[test]
fn last_peer_out_removes_the_room() {
    let mut r = registry_with(&["a"]);
    r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    r.leave_room(&pid("a")).expect("leaves");
    assert!(r.room_ids().is_empty());
    assert_eq!(r.counts().rooms, 0);
}

#[test]
fn consuming_needs_same_room_and_a_receive_transport() {
    let mut r = registry_with(&["a", "b", "c"]);
    r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    r.join_room(&pid("b"), &rid("x"), true).expect("joins");
    r.join_room(&pid("c"), &rid("y"), true).expect("joins");
    with_transports(&mut r, "a");
    let producer = ProducerId::new();
    r.add_producer(&pid("a"), producer, video("cam"))
        .expect("added");

    let e = r
        .plan_consume::<Media>(&pid("b"), &pid("a"), producer)
        .expect_err("no recv transport");
    assert_eq!(e.code, ErrorCode::NoReceiveTransport);
    with_transports(&mut r, "c");
    let e = r
        .plan_consume::<Media>(&pid("c"), &pid("a"), producer)
        .expect_err("other room");
    assert_eq!(e.code, ErrorCode::ProducerNotInRoom);
    with_transports(&mut r, "b");
    let e = r
        .plan_consume::<Media>(&pid("b"), &pid("a"), ProducerId::new())
        .expect_err("unknown producer");
    assert_eq!(e.code, ErrorCode::ProducerNotFound);
    assert!(matches!(
        r.plan_consume::<Media>(&pid("b"), &pid("a"), producer),
        Ok(ConsumePlan::Create { .. })
    ));
}

#[test]
fn a_second_consume_of_the_same_producer_returns_the_first_consumer() {
    let mut r = registry_with(&["a", "b"]);
    r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    r.join_room(&pid("b"), &rid("x"), true).expect("joins");
    with_transports(&mut r, "a");
    with_transports(&mut r, "b");
    let (producer, consumer) = consume(&mut r, "a", "b");
    match r
        .plan_consume::<Media>(&pid("b"), &pid("a"), producer)
        .expect("may consume")
    {
        ConsumePlan::Existing(push) => {
            assert_eq!(push.id, consumer);
            assert_eq!(push.app_data["label"], "cam");
            assert_eq!(push.app_data["peerId"], "a");
        }
        ConsumePlan::Create { .. } => panic!("must not create a duplicate"),
    }
    assert_eq!(r.counts().consumers, 1);
}

#[test]
fn a_consumer_made_while_its_producer_closed_is_refused() {
    let mut r = registry_with(&["a", "b"]);
    r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    r.join_room(&pid("b"), &rid("x"), true).expect("joins");
    with_transports(&mut r, "a");
    let (_, recv) = with_transports(&mut r, "b");
    let producer = ProducerId::new();
    r.add_producer(&pid("a"), producer, video("cam"))
        .expect("added");
    r.remove_producer(&pid("a"), producer).expect("removed");
    let e = r
        .add_consumer::<Media>(&pid("b"), &pid("a"), recv, consumer_info(producer))
        .expect_err("gone");
    assert_eq!(e.code, ErrorCode::ProducerNotFound);
    assert_eq!(r.counts().consumers, 0);
}

#[test]
fn closing_a_producer_tells_its_consumers() {
    let mut r = registry_with(&["a", "b"]);
    r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    r.join_room(&pid("b"), &rid("x"), true).expect("joins");
    with_transports(&mut r, "a");
    with_transports(&mut r, "b");
    let (producer, _) = consume(&mut r, "a", "b");
    let effects = r
        .remove_producer(&pid("a"), producer)
        .expect("own producer");
    assert_eq!(types_of(&effects, "b"), vec!["consumerClosed"]);
    assert!(
        effects.close_consumers.is_empty(),
        "the engine closes a producer's consumers itself"
    );
    assert_eq!(effects.rooms_changed, BTreeSet::from([rid("x")]));
    let e = r
        .remove_producer(&pid("b"), ProducerId::new())
        .expect_err("not b's");
    assert_eq!(e.code, ErrorCode::ProducerNotFound);
}

#[test]
fn leaving_closes_consumers_both_ways() {
    let mut r = registry_with(&["a", "b"]);
    r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    r.join_room(&pid("b"), &rid("x"), true).expect("joins");
    with_transports(&mut r, "a");
    with_transports(&mut r, "b");
    consume(&mut r, "a", "b");
    consume(&mut r, "b", "a");
    let effects = r.leave_room(&pid("a")).expect("leaves");
    assert_eq!(
        types_of(&effects, "a"),
        vec!["consumerClosed", "peerDisconnection"]
    );
    assert_eq!(
        types_of(&effects, "b"),
        vec!["peerDisconnection", "consumerClosed"]
    );
    assert_eq!(effects.close_consumers.len(), 2);
    assert_eq!(r.counts().consumers, 0);
    assert_eq!(r.counts().producers, 2, "producers survive a leave");
}

#[test]
fn removing_a_peer_cleans_up_everything() {
    let mut r = registry_with(&["a", "b"]);
    r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    r.join_room(&pid("b"), &rid("x"), true).expect("joins");
    let (send, recv) = with_transports(&mut r, "a");
    with_transports(&mut r, "b");
    consume(&mut r, "a", "b");
    let removed = r.remove_peer(&pid("a")).expect("known peer");
    assert_eq!(removed.transports, vec![send, recv]);
    assert_eq!(
        types_of(&removed.effects, "b"),
        vec!["peerDisconnection", "consumerClosed"]
    );
    assert_eq!(removed.effects.rooms_changed, BTreeSet::from([rid("x")]));
    let counts = r.counts();
    assert_eq!(
        (
            counts.peers,
            counts.producers,
            counts.consumers,
            counts.transports
        ),
        (1, 0, 0, 2)
    );
    assert!(
        r.transport_closed(send).is_none(),
        "its transports are forgotten"
    );
    assert!(r.remove_peer(&pid("a")).is_none());
}

#[test]
fn transports_are_one_per_direction_and_private() {
    let mut r = registry_with(&["a", "b"]);
    let (send, recv) = with_transports(&mut r, "a");
    let e = r
        .check_new_transport(&pid("a"), Direction::Send)
        .expect_err("second send");
    assert_eq!(e.code, ErrorCode::TransportAlreadyExists);
    let e = r.own_transport(&pid("b"), send).expect_err("a's transport");
    assert_eq!(e.code, ErrorCode::TransportNotFound);
    let e = r
        .producing_transport(&pid("a"), recv)
        .expect_err("recv transport");
    assert_eq!(e.code, ErrorCode::WrongTransportDirection);
    r.add_transport(&pid("b"), Direction::Send, TransportId::new())
        .expect("b's own");
    let b_send = r
        .own_transport(&pid("b"), r.peers[&pid("b")].send.expect("set").id)
        .expect("own")
        .2
        .id;
    let e = r
        .producing_transport(&pid("b"), b_send)
        .expect_err("not connected");
    assert_eq!(e.code, ErrorCode::TransportNotConnected);
    assert_eq!(
        r.producing_transport(&pid("a"), send).expect("connected"),
        0
    );
    let e = r
        .check_connect(&pid("a"), send)
        .expect_err("connected twice");
    assert_eq!(e.code, ErrorCode::TransportAlreadyConnected);
}

#[test]
fn a_dead_send_transport_takes_its_producers_along() {
    let mut r = registry_with(&["a", "b"]);
    r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    r.join_room(&pid("b"), &rid("x"), true).expect("joins");
    let (send, _) = with_transports(&mut r, "a");
    with_transports(&mut r, "b");
    consume(&mut r, "a", "b");
    let (owner, effects) = r.transport_closed(send).expect("known transport");
    assert_eq!(owner, pid("a"));
    assert_eq!(types_of(&effects, "b"), vec!["consumerClosed"]);
    assert_eq!(r.counts().producers, 0);
    r.check_new_transport(&pid("a"), Direction::Send)
        .expect("may create a new send transport");
}

#[test]
fn available_producers_lists_every_member_with_its_offer() {
    let mut r = registry_with(&["a", "b", "c"]);
    r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    r.join_room(&pid("b"), &rid("x"), true).expect("joins");
    r.join_room(&pid("c"), &rid("y"), true).expect("joins");
    let producer = ProducerId::new();
    r.add_producer(
        &pid("a"),
        producer,
        ProducerEntry {
            broadcast: true,
            ..video("stage")
        },
    )
    .expect("added");
    let data = DataProducerId::new();
    r.add_data_producer(
        &pid("b"),
        data,
        DataProducerEntry {
            app_data: serde_json::json!({"type": "data"}),
        },
    )
    .expect("added");
    r.set_producer_paused(&pid("a"), producer, true)
        .expect("own producer");
    let json = serde_json::to_value(r.available_producers(&rid("x"))).expect("serializes");
    assert_eq!(
        json[pid("a").as_str()]["producers"][producer.to_string()],
        serde_json::json!({"label": "stage", "broadcast": true, "peerId": "a", "kind": "video", "paused": true})
    );
    assert_eq!(json["b"]["producers"], serde_json::json!({}));
    assert_eq!(
        json["b"]["dataProducers"][data.to_string()],
        serde_json::json!({"type": "data"})
    );
    assert!(
        json.get("c").is_none(),
        "peers of other rooms are not listed"
    );
}

#[test]
fn data_consumers_follow_the_same_rules() {
    let mut r = registry_with(&["a", "b"]);
    r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    r.join_room(&pid("b"), &rid("x"), true).expect("joins");
    with_transports(&mut r, "a");
    let (_, recv) = with_transports(&mut r, "b");
    let data = DataProducerId::new();
    r.add_data_producer(
        &pid("a"),
        data,
        DataProducerEntry {
            app_data: serde_json::json!({}),
        },
    )
    .expect("added");
    assert!(matches!(
        r.plan_consume::<Data>(&pid("b"), &pid("a"), data),
        Ok(ConsumePlan::Create { .. })
    ));
    let info = DataConsumerInfo {
        id: DataConsumerId::new(),
        data_producer_id: data,
        sctp_stream_parameters: serde_json::from_value::<SctpStreamParameters>(
            serde_json::json!({"streamId": 1, "ordered": true}),
        )
        .expect("valid"),
        label: "chat".into(),
        protocol: "json".into(),
    };
    r.add_consumer::<Data>(&pid("b"), &pid("a"), recv, info)
        .expect("recorded");
    assert!(matches!(
        r.plan_consume::<Data>(&pid("b"), &pid("a"), data),
        Ok(ConsumePlan::Existing(_))
    ));
    let removed = r.remove_peer(&pid("a")).expect("known");
    assert_eq!(
        types_of(&removed.effects, "b"),
        vec!["peerDisconnection", "dataConsumerClosed"]
    );
}

#[test]
fn auto_consume_follows_the_joiners_choice_and_broadcast() {
    let mut r = registry_with(&["a", "b", "c"]);
    for p in ["a", "b", "c"] {
        with_transports(&mut r, p);
    }
    let cam = ProducerId::new();
    let stage = ProducerId::new();
    r.add_producer(&pid("a"), cam, video("cam")).expect("added");
    r.add_producer(
        &pid("a"),
        stage,
        ProducerEntry {
            broadcast: true,
            ..video("stage")
        },
    )
    .expect("added");
    r.join_room(&pid("a"), &rid("x"), true).expect("joins");
    r.join_room(&pid("b"), &rid("x"), true).expect("joins");
    let for_b: Vec<_> = r
        .auto_consume_on_join(&pid("b"))
        .into_iter()
        .map(|t| t.producer)
        .collect();
    assert_eq!(
        for_b.len(),
        2,
        "an auto-consuming joiner gets every producer"
    );
    r.join_room(&pid("c"), &rid("x"), false).expect("joins");
    let for_c: Vec<_> = r
        .auto_consume_on_join(&pid("c"))
        .into_iter()
        .filter(|t| t.consumer == pid("c"))
        .map(|t| t.producer)
        .collect();
    assert_eq!(
        for_c,
        vec![stage],
        "autoConsume: false still gets broadcast producers"
    );
    let mic = ProducerId::new();
    r.add_producer(&pid("b"), mic, video("mic")).expect("added");
    let targets: Vec<_> = r
        .auto_consume_on_produce(&pid("b"), mic)
        .into_iter()
        .map(|t| t.consumer)
        .collect();
    assert_eq!(targets, vec![pid("a")]);
}

#[test]
fn a_remote_peer_joins_produces_and_leaves_like_a_local_one_for_the_local_peers() {
    let mut r = registry_with(&["local"]);
    with_transports(&mut r, "local");
    r.join_room(&pid("local"), &rid("hall"), true)
        .expect("local joins");
    let node: std::sync::Arc<str> = "node-b".into();
    let joined = r
        .add_remote_peer(&pid("far"), node.clone(), 0, &rid("hall"))
        .expect("remote joins");
    assert_eq!(types_of(&joined, "local"), vec!["peerConnection"]);
    assert_eq!(r.node_of(&pid("far")), Some(node.clone()));
    assert_eq!(r.node_of(&pid("local")), None);
    // A peer id in use here is not mirrored.
    assert!(r
        .add_remote_peer(&pid("local"), node.clone(), 0, &rid("hall"))
        .is_err());

    // Its producer: the local peer consumes it without being asked.
    let producer = ProducerId::new();
    let (_, targets) = r
        .add_remote_producer(&pid("far"), producer, video("cam"))
        .expect("remote producer");
    assert_eq!(
        targets,
        vec![AutoConsume {
            consumer: pid("local"),
            producing_peer: pid("far"),
            producer
        }]
    );
    assert!(r.available_producers(&rid("hall"))[&pid("far")]
        .producers
        .contains_key(&producer));
    // It is not a local producer (no other node asks this one to relay it).
    assert_eq!(r.local_producer_worker(producer), None);
    let ConsumePlan::Create { recv_transport, .. } = r
        .plan_consume::<Media>(&pid("local"), &pid("far"), producer)
        .expect("may consume")
    else {
        panic!("a new consumer")
    };
    let info = consumer_info(producer);
    let consumer = info.id;
    r.add_consumer::<Media>(&pid("local"), &pid("far"), recv_transport, info)
        .expect("recorded");

    // Counted as nobody's load here, listed as nobody's room to tell others.
    assert_eq!(r.counts().peers, 1);
    assert_eq!(r.local_rooms()[&rid("hall")].len(), 1);
    assert_eq!(r.remote_peers()[&pid("far")].producers.len(), 1);

    // Its node says it left: the local peer hears it, and the consumer closes in the engine too.
    let left = r.remove_remote_peer(&pid("far"));
    assert_eq!(
        types_of(&left, "local"),
        vec!["consumerClosed", "peerDisconnection"]
    );
    assert_eq!(left.close_consumers, vec![(0, consumer)]);
    assert!(r.remote_peers().is_empty());
    // A local peer is never removed as a remote one.
    assert!(r.remove_remote_peer(&pid("local")).pushes.is_empty());
    assert_eq!(r.counts().peers, 1);
}

#[test]
fn a_lost_link_takes_the_consumers_of_its_nodes_producers_and_media_is_consumed_again() {
    let mut r = registry_with(&["local"]);
    let (_, recv) = with_transports(&mut r, "local");
    r.join_room(&pid("local"), &rid("hall"), true)
        .expect("local joins");
    r.add_remote_peer(&pid("far"), "node-b".into(), 0, &rid("hall"))
        .expect("remote joins");
    r.add_remote_peer(&pid("other"), "node-c".into(), 0, &rid("hall"))
        .expect("a peer of a third node joins");
    let producer = ProducerId::new();
    r.add_remote_producer(&pid("far"), producer, video("cam"))
        .expect("remote producer");
    let data = DataProducerId::new();
    r.add_remote_data_producer(
        &pid("far"),
        data,
        DataProducerEntry {
            app_data: serde_json::json!({"chat": true}),
        },
    )
    .expect("remote data producer");
    assert_eq!(
        r.available_producers(&rid("hall"))[&pid("far")].data_producers[&data],
        serde_json::json!({"chat": true}),
        "announced to the local peers"
    );
    assert_eq!(r.local_data_producer_worker(data), None, "not a local one");
    let other_producer = ProducerId::new();
    r.add_remote_producer(&pid("other"), other_producer, video("cam"))
        .expect("the third node's producer");
    let info = consumer_info(producer);
    let consumer = info.id;
    r.add_consumer::<Media>(&pid("local"), &pid("far"), recv, info)
        .expect("recorded");
    let other_info = consumer_info(other_producer);
    r.add_consumer::<Media>(&pid("local"), &pid("other"), recv, other_info)
        .expect("recorded");
    let data_consumer = DataConsumerId::new();
    r.add_consumer::<Data>(
        &pid("local"),
        &pid("far"),
        recv,
        DataConsumerInfo {
            id: data_consumer,
            data_producer_id: data,
            sctp_stream_parameters: serde_json::from_value::<SctpStreamParameters>(
                serde_json::json!({"streamId": 1, "ordered": true}),
            )
            .expect("valid"),
            label: "chat".into(),
            protocol: String::new(),
        },
    )
    .expect("recorded");

    let (effects, targets) = r.link_gone("node-b");
    assert_eq!(
        types_of(&effects, "local"),
        vec!["consumerClosed", "dataConsumerClosed"]
    );
    assert_eq!(effects.close_consumers, vec![(0, consumer)]);
    assert_eq!(effects.close_data_consumers, vec![(0, data_consumer)]);
    assert_eq!(
        targets,
        vec![AutoConsume {
            consumer: pid("local"),
            producing_peer: pid("far"),
            producer
        }],
        "the video is consumed again (over a new link)"
    );
    assert!(
        matches!(
            r.plan_consume::<Data>(&pid("local"), &pid("far"), data),
            Ok(ConsumePlan::Create { .. })
        ),
        "the client may ask for the data consumer again"
    );
    assert!(
        matches!(
            r.plan_consume::<Media>(&pid("local"), &pid("other"), other_producer),
            Ok(ConsumePlan::Existing(_))
        ),
        "the third node's producer is still consumed"
    );

    // The remote data producer goes: announced gone.
    let gone = r
        .remove_remote_data_producer(&pid("far"), data)
        .expect("known peer");
    assert!(gone.rooms_changed.contains(&rid("hall")));
    assert!(r.available_producers(&rid("hall"))[&pid("far")]
        .data_producers
        .is_empty());
}
