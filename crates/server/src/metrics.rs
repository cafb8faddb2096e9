//! Counters the signaling layer keeps (requests by type, error acks by code,
//! connections accepted and refused) and the `/metrics` page in the
//! Prometheus text format, which adds the registry's gauges and each media
//! worker's counters.

use crate::sfu::Sfu;
use serde_json::Value;
use simplesfu_proto::RequestType;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Signaling counters. Labels come from fixed sets (request types, error
/// codes, refusal reasons), never from client text, so a client cannot grow
/// the page.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<&'static str, u64>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    connections: AtomicU64,
    acks_dropped: AtomicU64,
}

fn bump(map: &Mutex<BTreeMap<&'static str, u64>>, key: &'static str) {
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *map.entry(key).or_default() += 1;
}

fn snapshot(map: &Mutex<BTreeMap<&'static str, u64>>) -> BTreeMap<&'static str, u64> {
    map.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// The request type a raw message names: one of the protocol's, `unknown`
/// for any other text, `invalid` when there is no string `type`.
pub(crate) fn request_label(raw: &Value) -> &'static str {
    match raw.get("type").and_then(Value::as_str) {
        Some(name) => RequestType::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .map_or("unknown", RequestType::as_str),
        None => "invalid",
    }
}

impl Metrics {
    pub(crate) fn request(&self, label: &'static str) {
        bump(&self.requests, label);
    }

    pub(crate) fn error(&self, code: &'static str) {
        bump(&self.errors, code);
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        bump(&self.refused, reason);
    }

    pub(crate) fn connected(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Count an ack that could not be queued; true for the first one ever
    /// (the caller logs that one loudly and the rest quietly).
    pub(crate) fn ack_dropped(&self) -> bool {
        self.acks_dropped.fetch_add(1, Ordering::Relaxed) == 0
    }
}

/// Writes one metric family: its HELP and TYPE lines, then its samples.
struct Page(String);

impl Page {
    fn family(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = (String, u64)>,
    ) {
        let _ = writeln!(
            self.0,
            "# HELP simplesfu_{name} {help}\n# TYPE simplesfu_{name} {kind}"
        );
        for (labels, value) in samples {
            let _ = writeln!(self.0, "simplesfu_{name}{labels} {value}");
        }
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help, [(String::new(), value)]);
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The `/metrics` page.
pub(crate) async fn render(sfu: &Sfu) -> String {
    let mut page = Page(String::new());
    let counts = sfu.registry().counts();
    for (name, help, value) in [
        ("peers", "Connected peers.", counts.peers),
        ("rooms", "Rooms with at least one peer.", counts.rooms),
        ("transports", "WebRTC transports.", counts.transports),
        ("producers", "Audio and video producers.", counts.producers),
        ("consumers", "Audio and video consumers.", counts.consumers),
        ("data_producers", "Data producers.", counts.data_producers),
        ("data_consumers", "Data consumers.", counts.data_consumers),
        ("workers", "Media worker threads.", sfu.inner.workers.len()),
    ] {
        page.single(name, "gauge", help, count(value));
    }

    let mut per_worker = Vec::with_capacity(sfu.inner.workers.len());
    for (index, worker) in sfu.inner.workers.iter().enumerate() {
        // A worker that is gone reports nothing rather than zeros.
        let stats = worker.stats().await.ok();
        per_worker.push((format!("{{worker=\"{index}\"}}"), worker.load(), stats));
    }
    let worker_family =
        |page: &mut Page,
         name: &str,
         kind: &str,
         help: &str,
         pick: &dyn Fn(&simplesfu_engine::WorkerStats) -> u64| {
            let samples = per_worker
                .iter()
                .filter_map(|(l, _, s)| s.as_ref().map(|s| (l.clone(), pick(s))));
            page.family(name, kind, help, samples.collect::<Vec<_>>());
        };
    page.family(
        "worker_load",
        "gauge",
        "Load of each media worker (transports and consumers), used to place new peers.",
        per_worker
            .iter()
            .map(|(l, load, _)| (l.clone(), count(*load)))
            .collect::<Vec<_>>(),
    );
    worker_family(
        &mut page,
        "worker_transports",
        "gauge",
        "Transports on each media worker.",
        &|s| count(s.transports),
    );
    worker_family(
        &mut page,
        "worker_consumers",
        "gauge",
        "Consumers on each media worker (pipes included).",
        &|s| count(s.consumers),
    );
    worker_family(
        &mut page,
        "rtp_packets_received_total",
        "counter",
        "RTP packets received from clients.",
        &|s| s.rtp_packets_in,
    );
    worker_family(
        &mut page,
        "rtp_packets_sent_total",
        "counter",
        "RTP packets sent to clients.",
        &|s| s.rtp_packets_out,
    );
    worker_family(
        &mut page,
        "rtp_bytes_received_total",
        "counter",
        "RTP payload bytes received from producers.",
        &|s| s.rtp_bytes_in,
    );
    worker_family(
        &mut page,
        "rtp_bytes_sent_total",
        "counter",
        "RTP payload bytes forwarded to consumers.",
        &|s| s.rtp_bytes_out,
    );
    worker_family(
        &mut page,
        "worker_cpu_microseconds_total",
        "counter",
        "CPU time used by each media worker thread, in microseconds.",
        &|s| s.cpu_time_us,
    );
    worker_family(
        &mut page,
        "data_messages_received_total",
        "counter",
        "Data channel messages received.",
        &|s| s.data_messages_in,
    );
    worker_family(
        &mut page,
        "data_messages_sent_total",
        "counter",
        "Data channel messages sent.",
        &|s| s.data_messages_out,
    );
    worker_family(
        &mut page,
        "data_messages_dropped_total",
        "counter",
        "Data channel messages dropped, oldest first, because a data consumer's queue (1 MiB or 256 messages while its channel is not open or its send buffer is full) was full.",
        &|s| s.data_messages_dropped,
    );
    worker_family(
        &mut page,
        "datagrams_dropped_total",
        "counter",
        "UDP datagrams dropped: for no transport, or unparseable.",
        &|s| s.datagrams_dropped,
    );
    worker_family(
        &mut page,
        "ice_tcp_connections",
        "gauge",
        "ICE-TCP connections open on each media worker.",
        &|s| s.tcp_connections,
    );
    for (name, help, pick) in [
        (
            "ice_tcp_connections_refused_total",
            "ICE-TCP connections closed at once: the worker had as many as allowed, or their source address as many not yet authenticated.",
            (|s| s.tcp_connections_refused) as fn(&simplesfu_engine::WorkerStats) -> u64,
        ),
        (
            "ice_tcp_connections_unauthenticated_total",
            "ICE-TCP connections closed because no binding request with valid MESSAGE-INTEGRITY came in time.",
            |s| s.tcp_connections_closed_unauthenticated,
        ),
        (
            "ice_tcp_connections_idle_total",
            "Authenticated ICE-TCP connections closed after going idle.",
            |s| s.tcp_connections_closed_idle,
        ),
        (
            "ice_tcp_frames_dropped_total",
            "ICE-TCP frames dropped because the queue to the media worker was full.",
            |s| s.tcp_frames_dropped,
        ),
        (
            "ice_tcp_accept_errors_total",
            "Failed accepts on the ICE-TCP listener (at the file descriptor limit, each is followed by a 100 ms pause).",
            |s| s.tcp_accept_errors,
        ),
    ] {
        worker_family(&mut page, name, "counter", help, &pick);
    }
    worker_family(
        &mut page,
        "layer_switches_total",
        "counter",
        "Changes of a video consumer's forwarded layers by the bandwidth allocation (pauses for bandwidth and their ends included).",
        &|s| s.layer_switches,
    );
    worker_family(
        &mut page,
        "consumers_paused_for_bandwidth",
        "gauge",
        "Video consumers paused because not even their lowest layer fits their viewer's link (their audio goes on).",
        &|s| s.consumers_paused_for_bandwidth,
    );
    // A histogram of what is now, not of events: each receive transport
    // with an estimate counts once, in the buckets its latest estimate is in.
    let _ = writeln!(
        page.0,
        "# HELP simplesfu_bandwidth_estimate_bps Bandwidth estimates of the receive transports now (bits/s), one sample per transport with an estimate.\n# TYPE simplesfu_bandwidth_estimate_bps histogram"
    );
    for (labels, _, stats) in &per_worker {
        let Some(s) = stats else { continue };
        let worker = labels.trim_start_matches('{').trim_end_matches('}');
        let bounds = simplesfu_engine::ESTIMATE_BUCKETS_BPS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_string()]);
        for (bound, count) in bounds.zip(s.estimate_buckets) {
            let _ = writeln!(
                page.0,
                "simplesfu_bandwidth_estimate_bps_bucket{{{worker},le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            page.0,
            "simplesfu_bandwidth_estimate_bps_sum{{{worker}}} {}",
            s.estimate_sum_bps
        );
        let total = s.estimate_buckets[simplesfu_engine::ESTIMATE_BUCKETS_BPS.len()];
        let _ = writeln!(
            page.0,
            "simplesfu_bandwidth_estimate_bps_count{{{worker}}} {total}"
        );
    }

    let metrics = &sfu.inner.metrics;
    page.single(
        "connections_total",
        "counter",
        "Signaling connections accepted.",
        metrics.connections.load(Ordering::Relaxed),
    );
    let labelled = |label: &str, map: BTreeMap<&'static str, u64>| {
        map.into_iter()
            .map(|(k, v)| (format!("{{{label}=\"{k}\"}}"), v))
            .collect::<Vec<_>>()
    };
    page.family(
        "connections_refused_total",
        "counter",
        "Connections refused or ended by the server, by reason: at the HTTP door (server_full, address_full), for the join token (missing, expired, not_yet_valid, bad_signature, malformed), for the connect payload (payload_too_large, invalid_auth, resume_failed), or for a client that let too many pushes wait (too_many_pushes_waiting).",
        labelled("reason", snapshot(&metrics.refused)),
    );
    if let Some(cluster) = sfu.cluster() {
        page.single(
            "cluster_redis_up",
            "gauge",
            "1 while this node's last heartbeat reached the cluster's Redis, else 0.",
            u64::from(cluster.redis == "connected"),
        );
        page.single(
            "cluster_nodes",
            "gauge",
            "Live nodes of the cluster as this node sees them, itself included.",
            count(cluster.nodes.len()),
        );
        page.single(
            "cluster_nodes_departed_total",
            "counter",
            "Nodes found gone (stopped, or their heartbeat expired) since this node started.",
            cluster.departed,
        );
        page.single(
            "cluster_rooms_served",
            "gauge",
            "Rooms this node serves in the cluster (holds the claim of).",
            count(cluster.rooms_served),
        );
    }
    page.single(
        "acks_dropped_total",
        "counter",
        "Acks not delivered because the client's socket.io send queue was full (a client sending requests faster than it reads the answers).",
        metrics.acks_dropped.load(Ordering::Relaxed),
    );
    page.family(
        "requests_total",
        "counter",
        "Signaling requests, by type.",
        labelled("type", snapshot(&metrics.requests)),
    );
    page.family(
        "request_errors_total",
        "counter",
        "Signaling requests answered with an error, by code.",
        labelled("code", snapshot(&metrics.errors)),
    );
    page.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_labels_come_from_a_fixed_set() {
        assert_eq!(request_label(&json!({"type": "joinRoom"})), "joinRoom");
        assert_eq!(request_label(&json!({"type": "dropTables"})), "unknown");
        assert_eq!(request_label(&json!(42)), "invalid");
    }
}
