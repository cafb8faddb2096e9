//! The benchmark report in Markdown: machine, floor, one table per scenario,
//! the largest load each server held, and ratios at equal load; for
//! big-room, consumers, refusals, time to first audio and signaling CPU;
//! for whep, the WHEP sessions and the cost beside livestream's viewers.

use crate::bench::{
    server_label, BenchReport, LevelResult, ServerKind, ServerSettings, BOT_CPU_LIMIT_PCT,
    CONSTRAINED_MAX_LOSS_PCT, CONSTRAINED_WARMUP, MAX_FIRST_MEDIA_MS, MAX_LOSS_PCT, MAX_P99_MS,
};
use crate::load::{downlink_name, layers_name};
use std::fmt::Write;

/// A level's server: [`server_label`], or simplesfu at its defaults.
fn level_label(l: &LevelResult) -> String {
    if l.settings.is_some_and(|s| s.defaults) {
        "simplesfu (defaults)".into()
    } else {
        server_label(l.server, l.workers)
    }
}

/// Server memory per peer a level added over `prev` (the same server's
/// previous level of the scenario): the RSS difference over the peer
/// difference, in kB. Each level starts a fresh server.
pub fn kb_per_added_peer(l: &LevelResult, prev: Option<&LevelResult>) -> Option<f64> {
    let prev = prev?;
    let peers = l.report.peers.checked_sub(prev.report.peers)?;
    (peers > 0).then(|| (l.server_rss_mb - prev.server_rss_mb) * 1024.0 / peers as f64)
}

fn row(l: &LevelResult, prev: Option<&LevelResult>) -> String {
    format!(
        "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.0} | {:.2} | {:.0} | {:.1} | {:.0} | {} | {:.0} | {} |\n",
        level_label(l),
        l.load,
        l.streams,
        l.loss_pct,
        l.p50_ms,
        l.p99_ms,
        l.max_ms,
        l.server_cpu_pct,
        l.cpu_us_per_forwarded_packet,
        l.forwarded_packets_per_cpu_s,
        l.floor_multiple,
        l.server_rss_mb,
        kb_per_added_peer(l, prev)
            .map(|kb| format!("{kb:.0}"))
            .unwrap_or_else(|| "-".into()),
        l.report.bot_cpu_pct,
        held(l)
    )
}

/// Largest load of `scenario` that `server` (with `workers`) held within the limits.
pub fn largest_held<'a>(
    r: &'a BenchReport,
    scenario: &str,
    server: ServerKind,
    workers: Option<usize>,
) -> Option<&'a LevelResult> {
    r.levels
        .iter()
        .filter(|l| {
            l.scenario == scenario && l.server == server && l.workers == workers && l.passed
        })
        .max_by_key(|l| l.load)
}

/// The servers measured in `scenario`, in run order.
fn servers_of(r: &BenchReport, scenario: &str) -> Vec<(ServerKind, Option<usize>)> {
    let mut v = Vec::new();
    for l in r.levels.iter().filter(|l| l.scenario == scenario) {
        if !v.contains(&(l.server, l.workers)) {
            v.push((l.server, l.workers));
        }
    }
    v
}

/// "Load held with N workers ÷ load held with the fewest", per scenario, when
/// several worker counts ran.
fn scaling_table(r: &BenchReport, names: &[&str]) -> String {
    let mut s = String::new();
    for name in names {
        let ours: Vec<Option<usize>> = servers_of(r, name)
            .into_iter()
            .filter(|(k, _)| *k == ServerKind::Simplesfu)
            .map(|(_, w)| w)
            .collect();
        if ours.len() < 2 {
            continue;
        }
        let base = largest_held(r, name, ServerKind::Simplesfu, ours[0]);
        for w in &ours {
            let held = largest_held(r, name, ServerKind::Simplesfu, *w);
            let ratio = match (held, base) {
                (Some(h), Some(b)) if b.report.received_packets_per_s > 0.0 => {
                    format!(
                        "{:.2}",
                        h.report.received_packets_per_s / b.report.received_packets_per_s
                    )
                }
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} |",
                w.unwrap_or(1),
                held.map(|h| h.load.to_string())
                    .unwrap_or_else(|| "none".into()),
                held.map(|h| format!("{:.0}", h.report.received_packets_per_s))
                    .unwrap_or_else(|| "-".into()),
                ratio
            );
        }
    }
    if s.is_empty() {
        return s;
    }
    let cap = match r.worker_cpu {
        Some(f) => format!(" Every worker thread was capped at {f} of a core (cgroup CPU quota)."),
        None => String::new(),
    };
    format!(
        "## Scaling with workers\n\nLargest load held by each worker count; the ratio compares forwarded packets/s at that load with the fewest workers'.{cap}\n\n| scenario | workers | largest load held | packets/s forwarded | ratio |\n|---|---|---|---|---|\n{s}\n"
    )
}

/// "a / b" to two places, or "-" without a divisor.
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

/// simplesfu (its first worker count) against `other` at each load both
/// ran in `scenario`: CPU per forwarded packet and CPU, loss and p99 side by
/// side. Empty when they share no load.
fn ratio_table(r: &BenchReport, scenario: &str, other: ServerKind) -> String {
    let first = servers_of(r, scenario)
        .into_iter()
        .find(|(k, _)| *k == ServerKind::Simplesfu)
        .map(|(_, w)| w);
    let (name, short) = match other {
        ServerKind::Mediasoup => ("the original server (mediasoup)", "original"),
        _ => ("Janus", "Janus"),
    };
    let mut rows = String::new();
    for o in r.levels.iter().filter(|l| {
        l.scenario == scenario && l.server == ServerKind::Simplesfu && Some(l.workers) == first
    }) {
        let Some(t) = r
            .levels
            .iter()
            .find(|l| l.scenario == scenario && l.server == other && l.load == o.load)
        else {
            continue;
        };
        let _ = writeln!(
            rows,
            "| {} | {} | {} | {:.2} / {:.2} | {:.1} / {:.1} |",
            o.load,
            ratio(o.cpu_us_per_forwarded_packet, t.cpu_us_per_forwarded_packet),
            ratio(o.server_cpu_s, t.server_cpu_s),
            o.loss_pct,
            t.loss_pct,
            o.p99_ms,
            t.p99_ms
        );
    }
    if rows.is_empty() {
        return rows;
    }
    let target = if other == ServerKind::Mediasoup {
        format!(" Issue 18's target: a µs/pkt ratio of at most {ORIGINAL_RATIO_TARGET}.")
    } else {
        String::new()
    };
    format!(
        "\nAt equal load (simplesfu ÷ {name}; below 1 means simplesfu is cheaper):{target}\n\n| load | µs/pkt ratio | CPU ratio | loss % ours / {short} | p99 ms ours / {short} |\n|---|---|---|---|---|\n{rows}"
    )
}

/// simplesfu's CPU per forwarded packet, as a share of the original server's
/// at the same load, that issue 18 sets as the goal.
pub const ORIGINAL_RATIO_TARGET: f64 = 0.25;

/// How the original server ran, when it did.
fn original_settings(r: &BenchReport) -> String {
    let Some(v) = &r.mediasoup else {
        return String::new();
    };
    format!(
        "- mediasoup (original): npm `simple-mediasoup-peer-server` {} on mediasoup {}, Node.js {}, built and patched by `bench/mediasoup-setup` (an ECDSA P-256 DTLS certificate, its router-0 consumer fix, the worker count from `NUM_WORKERS`; the worker's BIO fix for Debian's OpenSSL), otherwise at its defaults: {} mediasoup worker, on 127.0.0.1, started by `bench/mediasoup-server.cjs`. Its CPU is summed over its process tree: node (counted as signaling) and its mediasoup-worker children (counted as workers), all pinned where simplesfu is; its RSS is the tree's sum. It sits out `estimation` (nothing to turn off) and runs each load of big-room and constrained once (their levels differ only in simplesfu's settings). Its `joinRoom` adds a peer to the room only once that peer's consumers exist, so two peers of a meeting whose joins overlap never get each other's consumers: at the bot's join rate part of a meeting's streams never arrive and count as lost.\n",
        v.server, v.mediasoup, v.node, crate::bench::MEDIASOUP_WORKERS
    )
}

/// "1000 ms", or "off" for 0.
fn resend(settings: Option<ServerSettings>) -> String {
    match settings.map(|s| s.available_producers_interval_ms) {
        Some(0) => "off".into(),
        Some(ms) => format!("{ms} ms"),
        None => "-".into(),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

/// The big-room table: consumers, refusals, time to first audio, and the
/// server's CPU split into signaling and media workers.
fn big_room_section(r: &BenchReport) -> String {
    let mut s = String::from("## big-room\n\n");
    let levels: Vec<&LevelResult> = r
        .levels
        .iter()
        .filter(|l| l.scenario == "big-room")
        .collect();
    if let Some(l) = levels.first() {
        let c = &l.report.config;
        let _ = writeln!(
            s,
            "One room: {} audio-only publishers ({} talking at 50 packets/s, the others silent: opus DTX, one packet every 400 ms), then {} joiner(s) speaking v1 as the published 0.0.20 client (the server pushes a consumer per publisher; each push answered at once with `resumeConsumer`, no retry). Request limits are the server's defaults{}. A row passes with every consumer resumed and delivering audio, no `limit_reached`, first audio of every consumer within {MAX_FIRST_MEDIA_MS:.0} ms of `joinRoom`, loss < {MAX_LOSS_PCT}%. Signaling CPU is the server's CPU minus its media worker threads' (`worker-N`, from /proc/<pid>/task/*/stat) over the {:.0} s window at steady state.\n",
            c.publishers_per_room,
            c.media.speakers_per_room.unwrap_or(c.publishers_per_room).min(c.publishers_per_room),
            c.subscribers_per_room,
            match l.settings.and_then(|s| s.request_burst) {
                Some(b) => format!(", except a request burst of {b}"),
                None => String::new(),
            },
            l.report.duration_s
        );
    }
    let _ = writeln!(
        s,
        "| server | publishers | joiners | availableProducers resend | consumers pushed | resumed | limit_reached | with audio | first audio p50 ms | max ms | per joiner max ms | loss % | server CPU % | signaling CPU % | workers CPU % | signaling kB/s to peers | RSS MB | bot CPU % | held |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for l in &levels {
        let c = &l.report.consumers;
        let per_joiner: Vec<String> = c
            .per_receiver
            .iter()
            .map(|j| format!("{:.0}", j.max_ms))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {:.2} | {:.1} | {} | {} | {:.0} | {:.0} | {:.0} | {} |",
            server_label(l.server, l.workers),
            l.report.config.publishers_per_room,
            l.report.config.subscribers_per_room,
            resend(l.settings),
            c.pushed,
            c.resumed,
            c.refused_for_rate,
            c.with_media,
            c.join_to_first_media.p50_ms,
            c.join_to_first_media.max_ms,
            if per_joiner.is_empty() { "-".into() } else { per_joiner.join(", ") },
            l.loss_pct,
            l.server_cpu_pct,
            pct(l.signaling_cpu_pct),
            pct(l.workers_cpu_pct),
            l.report.signaling_kb_per_s,
            l.server_rss_mb,
            l.report.bot_cpu_pct,
            held(l)
        );
    }
    for l in &levels {
        if let Err(e) = crate::bench::check_consumers(l) {
            let _ = writeln!(
                s,
                "- {} with resend {}: {e}",
                server_label(l.server, l.workers),
                resend(l.settings)
            );
        }
        if let Some(error) = &l.report.first_error {
            let _ = writeln!(
                s,
                "- {} with resend {}: {} of {} peers failed to join; first error: {error}",
                server_label(l.server, l.workers),
                resend(l.settings),
                l.report.join_failures,
                l.report.peers
            );
        }
    }
    s += "\n";
    s
}

/// The "held" column: yes, **no**, or bot-limited (see [`BOT_CPU_LIMIT_PCT`]).
fn held(l: &LevelResult) -> &'static str {
    match (l.passed, l.bot_limited) {
        (_, true) => "bot-limited",
        (true, false) => "yes",
        (false, false) => "**no**",
    }
}

/// The constrained table: per level (estimation on, off) and downlink class,
/// what the viewers got; then what estimation costs per forwarded packet.
/// The `estimation` scenario has the same tables: one class, unlimited.
fn constrained_section(r: &BenchReport, name: &str) -> String {
    let mut s = format!("## {name}\n\n");
    let levels: Vec<&LevelResult> = r.levels.iter().filter(|l| l.scenario == name).collect();
    let same_packets = name == "estimation";
    if same_packets {
        s += "What estimation costs on the same packets: the constrained scenario's publisher, its viewers all on unlimited links (sending congestion feedback, so with estimation the server paces, pads and probes towards them), with and without the server's estimation. Both sides forward the top layer once the estimate has climbed (5 s of warm-up).\n\n";
    }
    if let Some(l) = levels.first().filter(|_| !same_packets) {
        let c = &l.report.config;
        let _ = writeln!(
            s,
            "One publisher sending three-layer simulcast (r0 {:.0}, r1 {:.0}, r2 {:.0} kbit/s) and audio; {} viewers taking in turn an emulated downlink of {} (the bot queues what arrives, 100 ms of the link's rate, and drops what overflows, as a home router does; the viewers send transport-wide congestion feedback, as browsers do, and NACK what is lost). The window starts {:.0} s after every viewer has media: the server has that long to fit each link. \"No video\" counts the class's video consumers that delivered nothing in the window (paused for bandwidth throughout). Loss is counted on each consumer's own sequence numbers after NACK repair; a gap is a wait of more than 200 ms between frames (one lasting to the end of the window included). A level holds when no class loses more than {CONSTRAINED_MAX_LOSS_PCT}% of video or audio and none has a gap. Without estimation every viewer gets the top layer, as before issue 13.\n",
            c.media.video_bitrate_bps as f64 / 16.0 / 1000.0,
            c.media.video_bitrate_bps as f64 / 4.0 / 1000.0,
            c.media.video_bitrate_bps as f64 / 1000.0,
            c.subscribers_per_room,
            c.downlinks_kbps.iter().map(|d| downlink_name(*d)).collect::<Vec<_>>().join(", "),
            CONSTRAINED_WARMUP.as_secs_f64(),
        );
    }
    let _ = writeln!(
        s,
        "| server | estimation | downlink | viewers | video kbit/s | final layers | no video | layer switches | video loss % | audio loss % | gaps > 200 ms | max gap ms | video p50 / p99 ms | link drops % |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    // The original's mediasoup always estimates.
    let estimation = |l: &LevelResult| {
        if l.settings.is_none_or(|s| s.bandwidth_estimation) {
            "on"
        } else {
            "off"
        }
    };
    let label = |l: &LevelResult| server_label(l.server, l.workers);
    for l in &levels {
        for c in &l.report.classes {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {:.2} | {:.2} | {} | {:.0} | {:.1} / {:.1} | {:.2} |",
                label(l),
                estimation(l),
                downlink_name(c.downlink_kbps),
                c.receivers,
                c.video_kbps,
                layers_name(&c.final_layers),
                c.video_consumers_missing,
                c.layer_switches,
                c.video_loss_pct,
                c.audio_loss_pct,
                c.frame_gaps_over_200ms,
                c.max_frame_gap_ms,
                c.video_latency.p50_ms,
                c.video_latency.p99_ms,
                c.link_drop_pct
            );
        }
    }
    let _ = writeln!(
        s,
        "\n| server | estimation | server CPU % | µs/pkt | x floor | RSS MB | bot CPU % | held |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for l in &levels {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.2} | {:.1} | {:.0} | {:.0} | {} |",
            label(l),
            estimation(l),
            l.server_cpu_pct,
            l.cpu_us_per_forwarded_packet,
            l.floor_multiple,
            l.server_rss_mb,
            l.report.bot_cpu_pct,
            held(l)
        );
    }
    let ours = |on: &str| {
        levels
            .iter()
            .find(|l| l.server == ServerKind::Simplesfu && estimation(l) == on)
    };
    let (on, off) = (ours("on"), ours("off"));
    if let (Some(on), Some(off)) = (on, off) {
        if off.cpu_us_per_forwarded_packet > 0.0 {
            let _ = writeln!(
                s,
                "\nEstimation costs {:+.0}% CPU per forwarded packet here ({}).",
                100.0 * (on.cpu_us_per_forwarded_packet / off.cpu_us_per_forwarded_packet - 1.0),
                if same_packets {
                    "the same packets both sides"
                } else {
                    "the packets differ: without it the slow viewers are sent layers their links drop"
                }
            );
        }
    }
    // "estimation on" for simplesfu's rows, the server's name for another's.
    let row_name = |l: &LevelResult| match l.server {
        ServerKind::Simplesfu => format!("estimation {}", estimation(l)),
        _ => label(l),
    };
    for l in &levels {
        if let Err(e) = crate::bench::check_layers_fit(l) {
            let _ = writeln!(s, "- {}: {e}", row_name(l));
        }
        if let Some(error) = &l.report.first_error {
            let _ = writeln!(
                s,
                "- {}: {} of {} peers failed to join; first error: {error}",
                row_name(l),
                l.report.join_failures,
                l.report.peers
            );
        }
    }
    s += "\n";
    s
}

/// What the whep scenario is, above its table.
const WHEP_INTRO: &str = "livestream's publisher (socket.io, protocol v1) and load, its viewers playing over WHEP instead: each POSTs a recvonly offer written by str0m's SDP API to `/whep/<room>`, accepts the answer (the bot is the controlling ICE agent and the DTLS client) and DELETEs its session at the end. Unlike livestream's viewers, which send no congestion feedback, a WHEP viewer negotiates transport-cc as a browser does, so the server also estimates its downlink.\n\n";

/// The WHEP sessions of each whep level: answered, time to the answer, ended.
fn whep_sessions(r: &BenchReport) -> String {
    let mut rows = String::new();
    for l in r.levels.iter().filter(|l| l.scenario == "whep") {
        let Some(w) = &l.report.whep else { continue };
        let _ = writeln!(
            rows,
            "| {} | {} | {} | {:.1} / {:.1} | {} |",
            server_label(l.server, l.workers),
            l.load,
            w.sessions,
            w.post_to_answer.p50_ms,
            w.post_to_answer.max_ms,
            w.deleted_text()
        );
    }
    if rows.is_empty() {
        return rows;
    }
    format!("\nWHEP sessions (POST to `201 Created` with the answer, while the viewers join at the bench's join rate; DELETE when the level ends):\n\n| server | load | sessions | POST to answer p50 / max ms | deleted |\n|---|---|---|---|---|\n{rows}")
}

/// whep beside livestream at each load both ran (same server and workers):
/// CPU per forwarded packet, and memory per viewer from the RSS difference.
fn whep_beside_livestream(r: &BenchReport) -> String {
    let mut rows = String::new();
    for w in r.levels.iter().filter(|l| l.scenario == "whep") {
        let Some(l) = r.levels.iter().find(|l| {
            l.scenario == "livestream"
                && l.server == w.server
                && l.workers == w.workers
                && l.load == w.load
        }) else {
            continue;
        };
        let _ = writeln!(
            rows,
            "| {} | {} | {:.2} / {:.2} | {} | {:.0} / {:.0} | {:+.0} |",
            server_label(w.server, w.workers),
            w.load,
            l.cpu_us_per_forwarded_packet,
            w.cpu_us_per_forwarded_packet,
            ratio(w.cpu_us_per_forwarded_packet, l.cpu_us_per_forwarded_packet),
            l.server_rss_mb,
            w.server_rss_mb,
            (w.server_rss_mb - l.server_rss_mb) * 1024.0 / w.load.max(1) as f64
        );
    }
    if rows.is_empty() {
        return rows;
    }
    format!("\nBeside livestream at the same load (socket.io viewers / WHEP viewers; the ratio is WHEP's µs/pkt over socket.io's; the last column is the RSS difference per viewer):\n\n| server | load | µs/pkt livestream / whep | ratio | RSS MB livestream / whep | kB per viewer, whep - livestream |\n|---|---|---|---|---|---|\n{rows}")
}

/// What the cluster scenario is, above its table.
const CLUSTER_INTRO: &str = "livestream's publisher and load over three simplesfu nodes that share a Redis (redis-server on loopback) and a `cluster.secret`: the publisher connects to node 1, the viewers to nodes 2 and 3 in turn, so every packet crosses a link between nodes (relayed once per node, docs/CLUSTER.md). One worker per node, every node pinned where the single server is; server CPU and RSS are the sum over the three nodes, and µs/pkt is that CPU over the packets the viewers received.\n\n";

/// The cluster beside livestream at each load both ran: loss, and the
/// latency the hop between nodes adds.
fn cluster_beside_livestream(r: &BenchReport) -> String {
    let mut rows = String::new();
    for c in r.levels.iter().filter(|l| l.scenario == "cluster") {
        let Some(l) = r.levels.iter().find(|l| {
            l.scenario == "livestream"
                && l.server == ServerKind::Simplesfu
                && l.workers == Some(1)
                && l.load == c.load
        }) else {
            continue;
        };
        let _ = writeln!(
            rows,
            "| {} | {:.2} / {:.2} | {:.2} / {:.2} | {:+.2} | {:.2} / {:.2} | {:+.2} | {:.2} / {:.2} | {:.0} / {:.0} |",
            c.load,
            l.loss_pct,
            c.loss_pct,
            l.p50_ms,
            c.p50_ms,
            c.p50_ms - l.p50_ms,
            l.p99_ms,
            c.p99_ms,
            c.p99_ms - l.p99_ms,
            l.cpu_us_per_forwarded_packet,
            c.cpu_us_per_forwarded_packet,
            l.server_rss_mb,
            c.server_rss_mb,
        );
    }
    if rows.is_empty() {
        return rows;
    }
    format!("\nBeside livestream at the same load (one node, one worker / three nodes; \"added\" is the cluster's figure less the single node's: what the hop adds, less what splitting the fan-out over two nodes saves):\n\n| viewers | loss % one node / cluster | p50 ms one node / cluster | p50 added ms | p99 ms one node / cluster | p99 added ms | µs/pkt one node / cluster | RSS MB one node / cluster |\n|---|---|---|---|---|---|---|---|\n{rows}")
}

/// Which simplesfu settings of this run differ from the server's defaults.
fn non_default_settings(r: &BenchReport) -> String {
    let bursts: Vec<String> = {
        let mut b: Vec<u32> = r
            .levels
            .iter()
            .filter_map(|l| l.settings?.request_burst)
            .collect();
        b.dedup();
        b.iter()
            .map(|b| format!(", `--request-burst {b}` in big-room"))
            .collect()
    };
    let extra: String = r.simplesfu_args.iter().map(|a| format!(" `{a}`")).collect();
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(" Given for this run, on every simplesfu:{extra}.")
    };
    format!(
        "- simplesfu's settings besides its defaults: `--workers` as labelled, `--log-level error`, `--max-peers-per-room 1000000` (the livestream ramps past the default 500), `SIMPLESFU_MAX_CONNECTIONS_PER_IP=1000000` (every bot peer comes from 127.0.0.1; the default allows 256 connections and WHIP/WHEP sessions per address), `--available-producers-interval-ms 0` in the forwarding scenarios (default 1000: the periodic room list is signaling, not forwarding) and as given per row in big-room{}{}. Request limits are the defaults otherwise (50 requests/s, burst 200).{extra}\n",
        bursts.concat(),
        if r.levels.iter().any(|l| l.settings.is_some_and(|s| !s.bandwidth_estimation)) {
            ", `--bandwidth-estimation=false` in the constrained and estimation rows that say estimation off"
        } else {
            ""
        }
    )
}

pub fn markdown(r: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# simplesfu benchmark {}\n", r.date);
    if r.smoke {
        let _ = writeln!(s, "**Smoke run**: tiny load, possibly debug binaries. These numbers check that the harness works; they are not benchmarks.\n");
    }
    let _ = writeln!(
        s,
        "- Machine: {} CPUs, {}, Linux {}; load average {:.2} at the start, {:.2} at the end",
        r.machine.nproc, r.machine.cpu_model, r.machine.kernel, r.load_average.0, r.load_average.1
    );
    let _ = writeln!(s, "- simplesfu binary: `{}`", r.simplesfu_bin);
    let _ = writeln!(
        s,
        "- Audio packets carry `ssrc-audio-level` as a browser's do: talking publishers at {} dBov, silent ones at {} dBov.",
        crate::speakers::DEFAULT_TALKING_DBOV,
        crate::speakers::SILENT_DBOV
    );
    let _ = writeln!(
        s,
        "- Floor: {:.2} µs per forwarded packet = {:.2} µs loopback UDP send (sendmmsg, 1200 B) + {:.2} µs AES-256-GCM seal (1200 B), i.e. {:.0} packets per CPU-second; without batching (one `sendto` per datagram) {:.2} µs = {:.2} + {:.2}",
        r.floor.floor_us,
        r.floor.udp_send_us,
        r.floor.aes_gcm_seal_us,
        r.floor.packets_per_cpu_s,
        r.floor.floor_single_us,
        r.floor.udp_sendto_us,
        r.floor.aes_gcm_seal_us
    );
    let _ = writeln!(
        s,
        "- Server pinned to CPU 0 and bot to CPU 1: {}. Limits per level: loss < {MAX_LOSS_PCT}% (streams that never arrive count as lost), p99 added latency < {MAX_P99_MS} ms, no failed joins.",
        if r.pinned { "yes" } else { "no" }
    );
    let _ = writeln!(
        s,
        "- µs/pkt is server CPU time per packet the bot received from it (forwarded). A level where the bot's CPU exceeds {BOT_CPU_LIMIT_PCT}% of what it may use is marked bot-limited, and a ramp stops there: its figures may be the bot's, not the server's. kB per added peer is the server's RSS difference to the same server's previous level of the table over the peers it added (each level starts a fresh server): what one more viewer costs in memory."
    );
    if r.levels
        .iter()
        .any(|l| l.settings.is_some_and(|s| s.defaults))
    {
        s += "- simplesfu (defaults): the server as a user starts it, given only its listening addresses (`--http-listen 127.0.0.1:0 --rtc-listen-ip 127.0.0.1 --rtc-port 0`): its default workers (one per CPU), limits, room list interval (1000 ms) and log level (info, into a file beside the report); it and the bot are not pinned and share every CPU. Its loads stay within the default limits (500 peers per room, 256 connections per address).\n";
    }
    if r.levels.iter().any(|l| l.server == ServerKind::Simplesfu) {
        s += &non_default_settings(r);
    }
    s += &original_settings(r);
    s += "\n";
    let mut names: Vec<&str> = Vec::new();
    for l in &r.levels {
        if !names.contains(&l.scenario.as_str()) {
            names.push(&l.scenario);
        }
    }
    for name in &names {
        if *name == "big-room" {
            s += &big_room_section(r);
            continue;
        }
        if matches!(*name, "constrained" | "estimation") {
            s += &constrained_section(r, name);
            continue;
        }
        let _ = writeln!(s, "## {name}\n");
        if *name == "whep" {
            s += WHEP_INTRO;
        }
        if *name == "cluster" {
            s += CLUSTER_INTRO;
        }
        let _ = writeln!(
            s,
            "| server | load | streams | loss % | p50 ms | p99 ms | max ms | server CPU % | µs/pkt | pkt/CPU-s | x floor | RSS MB | kB per added peer | bot CPU % | held |"
        );
        let _ = writeln!(
            s,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let mut prev: Option<&LevelResult> = None;
        for l in r.levels.iter().filter(|l| l.scenario == *name) {
            let same = prev.filter(|p| p.server == l.server && p.workers == l.workers);
            s += &row(l, same);
            prev = Some(l);
        }
        s += "\n";
        // Why a level failed, when the bot saw an error (e.g. a server limit).
        for l in r.levels.iter().filter(|l| l.scenario == *name) {
            if let Some(error) = &l.report.first_error {
                let _ = writeln!(
                    s,
                    "- {} at {}: {} of {} peers failed to join; first error: {error}",
                    server_label(l.server, l.workers),
                    l.load,
                    l.report.join_failures,
                    l.report.peers
                );
            }
        }
        for (server, workers) in servers_of(r, name) {
            let label = match largest_held(r, name, server, workers) {
                Some(l) => level_label(l),
                None => server_label(server, workers),
            };
            match largest_held(r, name, server, workers) {
                Some(l) => {
                    let _ = writeln!(
                        s,
                        "- {label}: largest load held: {} ({} streams, {:.0} packets/s forwarded)",
                        l.load, l.streams, l.report.received_packets_per_s
                    );
                }
                None => {
                    let _ = writeln!(s, "- {label}: held no level");
                }
            }
        }
        s += &ratio_table(r, name, ServerKind::Janus);
        s += &ratio_table(r, name, ServerKind::Mediasoup);
        if *name == "whep" {
            s += &whep_sessions(r);
            s += &whep_beside_livestream(r);
        }
        if *name == "cluster" {
            s += &cluster_beside_livestream(r);
        }
        s += "\n";
    }
    s += &scaling_table(r, &names);
    s += "![loss and latency against load](plot.png)\n";
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bench::Machine;
    use crate::floor::Floor;
    use crate::load::{ConsumerReport, KindReport, LoadConfig, LoadReport, Target};
    use crate::media::MediaOptions;
    use crate::stats::LatencySummary;
    use std::time::Duration;

    fn latency(p50_ms: f64, max_ms: f64) -> LatencySummary {
        LatencySummary {
            samples: 300,
            p50_ms,
            p99_ms: max_ms,
            max_ms,
            mean_ms: p50_ms,
        }
    }

    fn big_room_level(resend_ms: u64, consumers: ConsumerReport, passed: bool) -> LevelResult {
        let settings = ServerSettings {
            available_producers_interval_ms: resend_ms,
            request_burst: None,
            bandwidth_estimation: true,
            defaults: false,
        };
        let mut l = sample_level("big-room", settings);
        l.streams = consumers.with_media;
        l.report.receiving_streams = consumers.with_media;
        l.report.consumers = consumers;
        l.passed = passed;
        l
    }

    /// A level of `scenario` with made-up figures: a big room's by default.
    pub(crate) fn sample_level(scenario: &str, settings: ServerSettings) -> LevelResult {
        let config = LoadConfig {
            spread: Vec::new(),
            target: Target::Simplesfu("http://127.0.0.1:1".into()),
            rooms: 1,
            publishers_per_room: 300,
            subscribers_per_room: 1,
            whep_viewers_per_room: 0,
            whep: Default::default(),
            publishers_subscribe: false,
            published_client: true,
            subscribe_audio_levels: false,
            media: MediaOptions {
                video: false,
                audio: true,
                speakers_per_room: Some(3),
                ..Default::default()
            },
            downlinks_kbps: Vec::new(),
            congestion_feedback: false,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            join_rate: 100.0,
            local_ip: [127, 0, 0, 1].into(),
            progress: false,
        };
        let report = LoadReport {
            config,
            duration_s: 10.0,
            peers: 301,
            peers_joined: 301,
            join_failures: 0,
            first_error: None,
            expected_streams: 300,
            receiving_streams: 0,
            packets_sent: 9000,
            packets_received: 9000,
            received_packets_per_s: 900.0,
            loss_pct: 0.0,
            latency: LatencySummary::default(),
            video: KindReport::default(),
            audio: KindReport::default(),
            join_to_first_packet: LatencySummary::default(),
            consumers: ConsumerReport::default(),
            receivers_without_media: 0,
            signaling_kb_per_s: if settings.available_producers_interval_ms > 0 {
                20_700.0
            } else {
                0.0
            },
            bot_cpu_pct: 30.0,
            bot_cpus: 2,
            speakers: None,
            audio_levels_unasked: 0,
            classes: Vec::new(),
            whep: None,
        };
        LevelResult {
            server: ServerKind::Simplesfu,
            workers: Some(1),
            scenario: scenario.into(),
            load: 300,
            settings: Some(settings),
            streams: report.receiving_streams,
            server_cpu_s: 1.2,
            server_cpu_pct: 12.0,
            workers_cpu_pct: Some(10.3),
            signaling_cpu_pct: Some(1.7),
            server_rss_mb: 109.0,
            forwarded_packets: 9000,
            cpu_us_per_forwarded_packet: 133.0,
            forwarded_packets_per_cpu_s: 7500.0,
            floor_multiple: 48.0,
            loss_pct: 0.0,
            p50_ms: 0.5,
            p99_ms: 1.0,
            max_ms: 2.0,
            passed: true,
            bot_limited: false,
            report,
        }
    }

    #[test]
    fn the_cluster_sits_beside_livestream_with_what_the_hop_adds() {
        let level = |scenario: &str, p50: f64, p99: f64| {
            let mut l = sample_level(scenario, ServerSettings::FORWARDING);
            l.load = 10;
            l.workers = Some(1);
            l.p50_ms = p50;
            l.p99_ms = p99;
            l
        };
        let md = markdown(&bench_report(vec![
            level("livestream", 1.5, 4.0),
            level("cluster", 1.9, 5.0),
        ]));
        let section = md.split("## cluster").nth(1).expect("a cluster section");
        assert!(
            section.contains("three simplesfu nodes"),
            "what the scenario is"
        );
        let row = section
            .lines()
            .find(|l| l.starts_with("| 10 |"))
            .unwrap_or_else(|| panic!("a comparison row: {section}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[3], "1.50 / 1.90", "{row}");
        assert_eq!(cells[4], "+0.40", "the hop adds 0.4 ms at p50: {row}");
        assert_eq!(cells[6], "+1.00", "{row}");
        let alone = markdown(&bench_report(vec![level("cluster", 1.9, 5.0)]));
        assert!(!alone.contains("Beside livestream"));
    }

    #[test]
    fn whep_sits_beside_livestream_with_its_sessions() {
        let level = |scenario: &str, us: f64, rss: f64| {
            let mut l = sample_level(scenario, ServerSettings::FORWARDING);
            l.load = 100;
            l.cpu_us_per_forwarded_packet = us;
            l.server_rss_mb = rss;
            l
        };
        let live = level("livestream", 8.0, 60.0);
        let mut whep = level("whep", 10.0, 80.0);
        whep.report.whep = Some(crate::load::WhepReport {
            sessions: 100,
            post_to_answer: latency(6.0, 40.0),
            deleted: 99,
            delete_error: Some("DELETE /whep/bench-0/x answered 404 Not Found".into()),
        });
        let md = markdown(&bench_report(vec![live, whep]));
        let section = md.split("## whep").nth(1).expect("a whep section");
        assert!(section.contains("over WHEP"), "what the scenario is");
        assert!(
            section.contains("| simplesfu | 100 | 100 | 6.0 / 40.0 | 99 (first failure: DELETE /whep/bench-0/x answered 404 Not Found) |"),
            "{section}"
        );
        assert!(
            section.contains("| simplesfu | 100 | 8.00 / 10.00 | 1.25 | 60 / 80 | +205 |"),
            "µs/pkt side by side, 20 MB more for 100 viewers: {section}"
        );
        let alone = markdown(&bench_report(vec![level("whep", 10.0, 80.0)]));
        assert!(
            !alone.contains("Beside livestream"),
            "nothing to compare without livestream"
        );
    }

    #[test]
    fn a_level_where_the_bot_used_most_of_its_cpu_is_marked_bot_limited() {
        let mut l = sample_level("livestream", ServerSettings::FORWARDING);
        l.report.bot_cpus = 1;
        l.report.bot_cpu_pct = 69.0;
        assert!(!crate::bench::bot_limited(&l.report));
        l.report.bot_cpu_pct = 85.0;
        assert!(
            crate::bench::bot_limited(&l.report),
            "85% of the one CPU it may use"
        );
        l.report.bot_cpus = 2;
        assert!(
            !crate::bench::bot_limited(&l.report),
            "85% of two CPUs is under 70% of them"
        );
        l.report.bot_cpus = 1;
        l.bot_limited = crate::bench::bot_limited(&l.report);
        assert_eq!(held(&l), "bot-limited");
        let md = markdown(&bench_report(vec![l]));
        assert!(md.contains("| bot-limited |"), "{md}");
    }

    #[test]
    fn rows_show_the_memory_each_added_peer_cost() {
        let level = |load: u32, rss_mb: f64| {
            let mut l = sample_level("livestream", ServerSettings::FORWARDING);
            l.load = load;
            l.report.peers = load as u64 + 1;
            l.server_rss_mb = rss_mb;
            l
        };
        let (a, b) = (level(100, 60.0), level(200, 100.0));
        // 40 MB over 100 more peers.
        let kb = kb_per_added_peer(&b, Some(&a)).expect("peers added");
        assert!((kb - 409.6).abs() < 1e-9, "{kb}");
        assert_eq!(kb_per_added_peer(&a, None), None);
        assert_eq!(kb_per_added_peer(&a, Some(&a)), None, "no peer added");
        let md = markdown(&bench_report(vec![a, b]));
        assert!(md.contains("| kB per added peer |"), "{md}");
        assert!(md.contains("| 60 | - |"), "{md}");
        assert!(md.contains("| 100 | 410 |"), "{md}");
        let mut d = level(50, 30.0);
        d.scenario = "defaults".into();
        d.settings = Some(ServerSettings::DEFAULTS);
        let md = markdown(&bench_report(vec![d]));
        assert!(md.contains("| simplesfu (defaults) | 50 |"), "{md}");
        assert!(md.contains("as a user starts it"), "{md}");
    }

    #[test]
    fn constrained_rows_show_each_class_and_what_estimation_costs() {
        use crate::load::ClassReport;
        let level = |estimation: bool, cpu: f64, classes: Vec<ClassReport>| {
            let mut l = sample_level(
                "constrained",
                ServerSettings {
                    bandwidth_estimation: estimation,
                    ..ServerSettings::FORWARDING
                },
            );
            l.report.config.media = MediaOptions {
                simulcast: true,
                audio: true,
                ..Default::default()
            };
            l.report.config.downlinks_kbps = vec![Some(300), None];
            l.report.config.subscribers_per_room = 2;
            l.cpu_us_per_forwarded_packet = cpu;
            l.report.classes = classes;
            l
        };
        let slow = ClassReport {
            downlink_kbps: Some(300),
            receivers: 1,
            video_kbps: 94.0,
            final_layers: vec![1],
            ..Default::default()
        };
        let free = ClassReport {
            downlink_kbps: None,
            receivers: 1,
            video_kbps: 1500.0,
            final_layers: vec![0, 0, 1],
            ..Default::default()
        };
        let flooded = ClassReport {
            video_kbps: 280.0,
            video_loss_pct: 41.5,
            frame_gaps_over_200ms: 7,
            final_layers: vec![0, 0, 1],
            ..slow.clone()
        };
        let md = markdown(&bench_report(vec![
            level(true, 5.5, vec![slow, free.clone()]),
            level(false, 5.0, vec![flooded, free]),
        ]));
        assert!(md.contains("## constrained"), "{md}");
        assert!(
            md.contains(
                "| simplesfu | on | 300 kbit/s | 1 | 94 | r0 1 | 0 | 0 | 0.00 | 0.00 | 0 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| simplesfu | off | 300 kbit/s | 1 | 280 | r2 1 | 0 | 0 | 41.50 | 0.00 | 7 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("Estimation costs +10% CPU per forwarded packet"),
            "{md}"
        );
        assert!(
            md.contains(
                "`--bandwidth-estimation=false` in the constrained and estimation rows that say estimation off"
            ),
            "{md}"
        );
        assert!(!md.contains("- estimation on: "), "the layers fit: {md}");
    }

    fn bench_report(levels: Vec<LevelResult>) -> BenchReport {
        BenchReport {
            date: "2026-11-28T09-41-01".into(),
            smoke: false,
            machine: Machine {
                nproc: 2,
                cpu_model: "AMD EPYC".into(),
                kernel: "6.18".into(),
            },
            floor: Floor {
                udp_send_us: 2.6,
                udp_sendto_us: 3.1,
                aes_gcm_seal_us: 0.15,
                floor_us: 2.75,
                packets_per_cpu_s: 363_636.0,
                floor_single_us: 3.25,
            },
            pinned: true,
            worker_cpu: None,
            simplesfu_bin: "target/release/simplesfu".into(),
            simplesfu_args: vec![],
            load_average: (0.5, 0.7),
            mediasoup: None,
            levels,
        }
    }

    #[test]
    fn the_original_sits_beside_simplesfu_with_the_ratio_against_the_target() {
        let level = |server: ServerKind, load: u32, us_per_packet: f64, passed: bool| {
            let mut l = sample_level("livestream", ServerSettings::FORWARDING);
            l.server = server;
            l.load = load;
            l.cpu_us_per_forwarded_packet = us_per_packet;
            l.passed = passed;
            if server != ServerKind::Simplesfu {
                l.settings = None;
            }
            l
        };
        let mut r = bench_report(vec![
            level(ServerKind::Simplesfu, 50, 10.0, true),
            level(ServerKind::Simplesfu, 100, 12.0, true),
            level(ServerKind::Mediasoup, 50, 40.0, true),
            level(ServerKind::Mediasoup, 100, 36.0, false),
        ]);
        r.mediasoup = Some(crate::bench::MediasoupVersions {
            server: "0.0.20".into(),
            mediasoup: "3.19.3".into(),
            node: "v20.20.2".into(),
        });
        let md = markdown(&r);
        assert!(md.contains("| mediasoup (original) | 50 |"), "{md}");
        assert!(
            md.contains("- mediasoup (original): largest load held: 50"),
            "{md}"
        );
        assert!(
            md.contains("At equal load (simplesfu ÷ the original server (mediasoup); below 1 means simplesfu is cheaper): Issue 18's target: a µs/pkt ratio of at most 0.25."),
            "{md}"
        );
        assert!(
            md.contains("| load | µs/pkt ratio | CPU ratio | loss % ours / original | p99 ms ours / original |"),
            "{md}"
        );
        assert!(md.contains("| 50 | 0.25 |"), "{md}");
        assert!(md.contains("| 100 | 0.33 |"), "{md}");
        assert!(
            !md.contains("simplesfu ÷ Janus"),
            "no Janus table without Janus: {md}"
        );
        assert!(
            md.contains(
                "npm `simple-mediasoup-peer-server` 0.0.20 on mediasoup 3.19.3, Node.js v20.20.2"
            ),
            "{md}"
        );
        assert!(md.contains("1 mediasoup worker, on 127.0.0.1"), "{md}");
        r.mediasoup = None;
        assert!(
            !markdown(&r).contains("npm `simple-mediasoup-peer-server`"),
            "no settings line for a server that did not run"
        );
    }

    #[test]
    fn big_room_rows_show_refusals_first_audio_and_signaling_cpu() {
        let all = ConsumerReport {
            pushed: 300,
            resumed: 300,
            with_media: 300,
            join_to_first_media: latency(275.0, 589.0),
            per_receiver: vec![latency(275.0, 589.0)],
            ..Default::default()
        };
        let refused = ConsumerReport {
            resumed: 263,
            refused_for_rate: 37,
            with_media: 263,
            ..all.clone()
        };
        let md = markdown(&bench_report(vec![
            big_room_level(1000, all, true),
            big_room_level(0, refused, false),
        ]));
        assert!(md.contains("## big-room"), "{md}");
        assert!(md.contains("300 audio-only publishers (3 talking"), "{md}");
        assert!(
            md.contains("| simplesfu | 300 | 1 | 1000 ms | 300 | 300 | 0 | 300 | 275 | 589 | 589 | 0.00 | 12.0 | 1.7 | 10.3 | 20700 |"),
            "{md}"
        );
        assert!(
            md.contains("| simplesfu | 300 | 1 | off | 300 | 263 | 37 | 263 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "- simplesfu with resend off: 37 of 300 resumeConsumer refused with limit_reached"
            ),
            "{md}"
        );
        assert!(
            md.contains("as given per row in big-room. Request limits are the defaults"),
            "{md}"
        );
        assert!(
            !md.contains("largest load held: 300"),
            "big-room is not a ramp: {md}"
        );
    }
}
