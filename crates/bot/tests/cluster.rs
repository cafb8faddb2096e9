//! The bot across the nodes of a cluster (issue 16): Debian's redis-server
//! and two simplesfu nodes sharing it and a secret; `--server a,b` puts the
//! publisher on node a and the viewers (socket.io and WHEP) on node b, so
//! every stream they get was relayed between the nodes.

mod common;

use common::health;
use simplesfu_bot::bench;
use std::process::Child;
use std::time::{Duration, Instant};

const SECRET: &str = "bot-cluster-test-secret-0123456789abcdef";

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The bench's redis-server; None (after saying why) without it.
fn start_redis() -> Option<(Redis, u16)> {
    if let Some(why) = bench::cluster_unavailable() {
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let (child, port) = bench::start_redis().expect("redis-server starts");
    Some((Redis(child), port))
}

#[test]
fn viewers_on_another_node_get_the_publishers_streams_over_socket_io_and_whep() {
    let Some((_redis, port)) = start_redis() else {
        return;
    };
    let redis_url = format!("redis://127.0.0.1:{port}");
    let node = |id: &str| {
        common::start_server_with(
            &["--cluster-redis-url", &redis_url, "--cluster-node-id", id],
            &[("SIMPLESFU_CLUSTER_SECRET", SECRET)],
        )
    };
    let Some(a) = node("node-a") else { return };
    let Some(b) = node("node-b") else { return };
    let deadline = Instant::now() + Duration::from_secs(10);
    for url in [&a.url, &b.url] {
        while health(url)["cluster"]["nodes"].as_array().map(Vec::len) != Some(2) {
            assert!(Instant::now() < deadline, "{url} sees both nodes");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let report = common::run_bot_at(
        &format!("{},{}", a.url, b.url),
        &[
            "--publishers",
            "1",
            "--subscribers",
            "2",
            "--whep-viewers",
            "1",
            "--audio",
            "--duration",
            "3",
            // node-b hears of node-a's producers a few ms after they are
            // made (their state crosses Redis): a WHEP POST before that is
            // answered 404 "nothing to play yet", as on one node before
            // the publisher.
            "--join-rate",
            "4",
        ],
    );
    assert_eq!(report["peers_joined"], 4, "{report:#}");
    assert_eq!(
        report["expected_streams"], 6,
        "three viewers, video and audio"
    );
    assert_eq!(
        report["receiving_streams"], 6,
        "every viewer on node-b gets both streams from node-a: {report:#}"
    );
    for kind in ["video", "audio"] {
        let loss = report[kind]["loss_pct"].as_f64().expect("loss");
        assert!(
            loss < 5.0,
            "{kind} loss {loss}% across the nodes: {report:#}"
        );
    }
    assert_eq!(report["whep"]["sessions"], 1, "{report:#}");
    // The viewers were on node-b only: node-a has the link's other end.
    let span = |url: &str| health(url)["cluster"]["span"].clone();
    assert_eq!(span(&b.url)["links"], 1, "{:#}", span(&b.url));
    assert_eq!(span(&a.url)["links"], 1, "{:#}", span(&a.url));
}
