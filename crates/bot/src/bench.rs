//! The benchmark harness: measure the floor, then for each server (simplesfu,
//! and Janus and the original Node.js server when given) and scenario, start
//! a fresh server per load level, run the load, sample the server's CPU and
//! memory from /proc over the measurement window, and ramp up until loss or
//! latency limits break. The server's CPU is split into its media workers
//! (simplesfu's threads `worker-N`, read from /proc/<pid>/task; the
//! original's `mediasoup-worker` child processes) and the rest, which is
//! signaling: socket.io, the room bookkeeping, HTTP. The `big-room` scenario is not a ramp: one
//! room of mostly silent audio publishers, then joiners speaking v1 as the
//! published 0.0.20 client; it checks that every pushed consumer is resumed
//! without a rate refusal, and measures time to first audio and signaling
//! CPU at steady state once per resend interval of `availableProducers`.
//! The `whep` scenario is livestream with its viewers playing over WHEP.
//! Writes report.json, report.md and plot.png into the output directory.

use crate::floor::{self, Floor};
use crate::load::{self, ConsumerReport, LoadConfig, LoadReport, Target, Window};
use crate::media::MediaOptions;
use crate::procfs::{self, ProcSample};
use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A level fails (and the ramp stops) at this loss...
pub const MAX_LOSS_PCT: f64 = 1.0;
/// ...or this p99 added latency.
pub const MAX_P99_MS: f64 = 50.0;
/// big-room: every consumer's first audio packet within this of `joinRoom`
/// (issue 17: "first audio within 1 s"). Not checked by the smoke run.
pub const MAX_FIRST_MEDIA_MS: f64 = 1000.0;
/// big-room in the smoke run: the server's request burst, below the
/// requests of a joiner (its setup plus one `resumeConsumer` per publisher),
/// so a server that counted answers to its own pushes against the rate
/// would refuse some and fail the run.
pub const SMOKE_REQUEST_BURST: u32 = 20;

/// The big-room scenario's shape (the CLI's `--big-room-*`).
#[derive(Debug, Clone)]
pub struct BigRoom {
    /// Audio-only publishers in the room.
    pub peers: u32,
    /// Publishers that talk; the others are silent (opus DTX).
    pub speakers: u32,
    /// Joiners speaking v1 as the published 0.0.20 client.
    pub joiners: u32,
    /// One level per `--available-producers-interval-ms` of the server.
    pub resend_ms: Vec<u64>,
}

impl BigRoom {
    /// The smoke run's room: small, but with more pushes than
    /// [`SMOKE_REQUEST_BURST`].
    pub fn smoke() -> BigRoom {
        BigRoom {
            peers: 30,
            speakers: 3,
            joiners: 2,
            resend_ms: vec![1000],
        }
    }
}

/// Server settings a level chooses; everything else is the server's default
/// (besides what every level sets: see `start_simplesfu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServerSettings {
    /// `--available-producers-interval-ms` (server default 1000; 0 = no periodic resend).
    pub available_producers_interval_ms: u64,
    /// `--request-burst`, when not the server's default (200).
    pub request_burst: Option<u32>,
    /// `--bandwidth-estimation` (the server's default: on).
    pub bandwidth_estimation: bool,
    /// The `defaults` scenario: the server as a user starts it, with none
    /// of the harness's own settings (its default workers, limits, room
    /// list interval and log level), unpinned, as is the bot then; only its
    /// listening addresses are given. The other fields are ignored.
    #[serde(default)]
    pub defaults: bool,
}

impl ServerSettings {
    /// The forwarding scenarios: no periodic resend (it is signaling, not
    /// forwarding), default limits.
    pub(crate) const FORWARDING: ServerSettings = ServerSettings {
        available_producers_interval_ms: 0,
        request_burst: None,
        bandwidth_estimation: true,
        defaults: false,
    };

    /// The `defaults` scenario's: nothing but the addresses.
    pub(crate) const DEFAULTS: ServerSettings = ServerSettings {
        available_producers_interval_ms: 1000,
        request_burst: None,
        bandwidth_estimation: true,
        defaults: true,
    };
}

/// The `defaults` scenario stays within the server's default limits: at
/// most this many viewers (the defaults allow 500 peers per room and 256
/// connections per address, and every bot peer comes from 127.0.0.1).
pub const DEFAULTS_MAX_VIEWERS: u32 = 200;

/// The original SimpleMediasoupPeer server as `bench/mediasoup-setup`
/// prepared it: where to find it and how to start it.
#[derive(Debug, Clone)]
pub struct MediasoupOriginal {
    /// Its npm install (`node_modules/simple-mediasoup-peer-server`), also
    /// its working directory, holding `dtls-cert.pem`/`dtls-key.pem`.
    pub server_dir: PathBuf,
    /// The mediasoup-worker binary (`MEDIASOUP_WORKER_BIN`).
    pub worker_bin: PathBuf,
    /// The launcher script (`bench/mediasoup-server.cjs`).
    pub launcher: PathBuf,
    /// The Node.js binary.
    pub node_bin: PathBuf,
}

/// The original's worker count at every level: one mediasoup worker, as
/// simplesfu's one media worker, both pinned to the same CPU.
pub const MEDIASOUP_WORKERS: usize = 1;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub out_dir: PathBuf,
    pub simplesfu_bin: PathBuf,
    /// Janus binary; None skips Janus.
    pub janus_bin: Option<PathBuf>,
    /// Janus's advertised address (an address Janus gathers, see DESIGN.md).
    pub janus_ip: IpAddr,
    /// The original Node.js server; None skips it.
    pub mediasoup: Option<MediasoupOriginal>,
    pub smoke: bool,
    pub scenarios: Vec<String>,
    pub duration: Duration,
    pub join_rate: f64,
    /// Pin the server to CPU 0 and the bot to CPU 1.
    pub pin: bool,
    /// Largest subscriber count to try in ramped scenarios.
    pub max_subscribers: u32,
    /// simplesfu's `--workers`: one ramp per count (e.g. `[1, 2]` for the
    /// scaling comparison).
    pub workers: Vec<usize>,
    /// Cap each simplesfu worker thread at this fraction of a core (see
    /// `cpucap`), so worker counts compare on a machine without a free core
    /// per worker.
    pub worker_cpu: Option<f64>,
    /// More arguments for every simplesfu started, after the harness's own.
    pub simplesfu_args: Vec<String>,
    /// Each ramp step multiplies the load by this much (at least +1).
    pub ramp_factor: f64,
    pub big_room: BigRoom,
    /// Viewers of the `constrained` scenario (a third per downlink class).
    pub constrained_viewers: u32,
}

/// The `constrained` scenario's downlinks, taken in turn by the viewers: a
/// third at 300 kbit/s, a third at 1 Mbit/s, a third unlimited (issue 13).
pub const CONSTRAINED_DOWNLINKS: [Option<u32>; 3] = [Some(300), Some(1000), None];
/// Time the server has to fit every viewer's link before the window: the
/// goal is a layer that fits within 5 s.
pub const CONSTRAINED_WARMUP: Duration = Duration::from_secs(5);
/// A level where the bot used more than this share of the CPUs it may run
/// on is marked bot-limited, and a ramp stops there: past it the bot's
/// receive work, not the server, may be what loses packets or adds latency.
pub const BOT_CPU_LIMIT_PCT: f64 = 70.0;
/// Whether the bot used more than [`BOT_CPU_LIMIT_PCT`] of the CPUs it may run on.
pub fn bot_limited(report: &crate::load::LoadReport) -> bool {
    report.bot_cpu_pct > BOT_CPU_LIMIT_PCT * report.bot_cpus.max(1) as f64
}

/// A constrained level holds when no class loses more than this (after
/// NACK repair, by the consumers' sequence numbers) or stalls.
pub const CONSTRAINED_MAX_LOSS_PCT: f64 = 2.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Simplesfu,
    Janus,
    /// The original SimpleMediasoupPeer server (Node.js on mediasoup).
    Mediasoup,
}

impl ServerKind {
    /// Why this server sits out `scenario`, if it does.
    pub fn skips(self, scenario: &str) -> Option<&'static str> {
        match (self, scenario) {
            (ServerKind::Janus, "constrained" | "estimation") => {
                Some("the bot's Janus driver sends no simulcast")
            }
            (ServerKind::Mediasoup, "estimation") => Some(
                "the scenario compares simplesfu with and without its estimation; the original cannot turn mediasoup's off",
            ),
            (ServerKind::Janus, "whep") => Some(
                "the viewers play over WHEP, which this Janus (its VideoRoom over the HTTP API) does not serve",
            ),
            (ServerKind::Mediasoup, "whep") => {
                Some("the viewers play over WHEP, which the original server does not speak")
            }
            (ServerKind::Janus | ServerKind::Mediasoup, "cluster") => {
                Some("the scenario is simplesfu over several nodes")
            }
            (ServerKind::Janus | ServerKind::Mediasoup, "defaults") => {
                Some("the scenario is simplesfu as a user starts it; livestream has the same load for every server")
            }
            _ => None,
        }
    }

    /// The levels this server runs of a scenario's: all for simplesfu; the
    /// original takes each load once, since the levels of one load differ
    /// only in simplesfu's settings (big-room's resend interval,
    /// constrained's estimation), which it does not have.
    fn levels(self, levels: &[Level]) -> Vec<Level> {
        let mut v: Vec<Level> = Vec::new();
        for l in levels {
            if self != ServerKind::Mediasoup || !v.iter().any(|o| o.load == l.load) {
                v.push(*l);
            }
        }
        v
    }
}

/// One load level of one scenario against one server.
#[derive(Debug, Clone, Serialize)]
pub struct LevelResult {
    pub server: ServerKind,
    /// simplesfu's or the original's worker count (None for Janus).
    pub workers: Option<usize>,
    pub scenario: String,
    /// The ramped quantity: subscribers per room, or rooms for the meeting;
    /// publishers in the room for big-room.
    pub load: u32,
    /// The server settings the harness chose for this level.
    pub settings: Option<ServerSettings>,
    /// Received (forwarded) streams at this level.
    pub streams: u64,
    pub server_cpu_s: f64,
    /// Server CPU in the window, percent of one core.
    pub server_cpu_pct: f64,
    /// Of which the media workers: simplesfu's threads, the original's
    /// mediasoup-worker processes (None for Janus).
    pub workers_cpu_pct: Option<f64>,
    /// And the rest: signaling (simplesfu; the original's node process).
    pub signaling_cpu_pct: Option<f64>,
    pub server_rss_mb: f64,
    pub forwarded_packets: u64,
    pub cpu_us_per_forwarded_packet: f64,
    pub forwarded_packets_per_cpu_s: f64,
    pub floor_multiple: f64,
    pub loss_pct: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub passed: bool,
    /// The bot used more than [`BOT_CPU_LIMIT_PCT`] of the CPU it has:
    /// its own work, not the server, may set the level's figures.
    #[serde(default)]
    pub bot_limited: bool,
    pub report: LoadReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub date: String,
    pub smoke: bool,
    pub machine: Machine,
    pub floor: Floor,
    pub pinned: bool,
    /// The per-worker CPU cap of the run, fraction of a core.
    pub worker_cpu: Option<f64>,
    /// The simplesfu binary measured, as given.
    pub simplesfu_bin: String,
    /// Arguments given to every simplesfu besides the harness's own.
    #[serde(default)]
    pub simplesfu_args: Vec<String>,
    /// /proc/loadavg's 1-minute load at the start and the end of the run:
    /// anything above the bot and server's own says the machine was shared.
    pub load_average: (f64, f64),
    /// What the original server was, when it ran.
    pub mediasoup: Option<MediasoupVersions>,
    pub levels: Vec<LevelResult>,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let nproc = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count()
        .max(1);
    Machine {
        nproc,
        cpu_model,
        kernel,
    }
}

/// The machine's 1-minute load average (0 when unreadable).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A server process the harness started; killed on drop.
struct RunningServer {
    child: Child,
    pid: String,
    target: Target,
    /// The child leads its own process group, which holds its own children
    /// (the original's mediasoup workers): stop the whole group.
    group: bool,
    /// Dropped after the server has been stopped (fields drop after `drop`).
    cap: Option<crate::cpucap::CpuCap>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        let target = if self.group { -pid } else { pid };
        // SAFETY: kill(2) on our own child (or the process group it leads):
        // SIGTERM lets it shut down cleanly.
        unsafe { libc::kill(target, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut exited = false;
        while Instant::now() < deadline {
            if !exited {
                exited = matches!(self.child.try_wait(), Ok(Some(_)));
            }
            // SAFETY: signal 0 only asks whether the group still has members.
            if exited && (!self.group || unsafe { libc::kill(-pid, 0) } != 0) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.group {
            // SAFETY: as above; what is left of the group after 5 s.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pinned_command(bin: &Path, pin: bool) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn start_simplesfu(
    bin: &Path,
    pin: bool,
    workers: usize,
    settings: ServerSettings,
    extra: &[String],
    log: &Path,
) -> anyhow::Result<RunningServer> {
    start_simplesfu_with(bin, pin, workers, settings, extra, &[], log)
}

fn start_simplesfu_with(
    bin: &Path,
    pin: bool,
    workers: usize,
    settings: ServerSettings,
    extra: &[String],
    env: &[(&str, &str)],
    log: &Path,
) -> anyhow::Result<RunningServer> {
    let mut command = pinned_command(bin, pin && !settings.defaults);
    command.envs(env.iter().copied());
    command.args([
        "--http-listen",
        "127.0.0.1:0",
        "--rtc-listen-ip",
        "127.0.0.1",
        "--rtc-port",
        "0",
    ]);
    let stderr = if settings.defaults {
        // Its default log level (info): into a file beside the report.
        let file = std::fs::File::create(log)
            .with_context(|| format!("could not create {}", log.display()))?;
        Stdio::from(file)
    } else {
        command
            .args(["--workers", &workers.to_string()])
            .args([
                "--log-level",
                "error",
                // The livestream ramps past the default room limit (500 peers).
                "--max-peers-per-room",
                "1000000",
            ])
            // Every bot peer comes from 127.0.0.1: past the default 256
            // connections (and WHIP/WHEP sessions) per address. Through the
            // environment, which an older build (--simplesfu-bin) ignores.
            .env("SIMPLESFU_MAX_CONNECTIONS_PER_IP", "1000000")
            .args([
                "--available-producers-interval-ms",
                &settings.available_producers_interval_ms.to_string(),
            ]);
        if let Some(burst) = settings.request_burst {
            command.args(["--request-burst", &burst.to_string()]);
        }
        if !settings.bandwidth_estimation {
            command.arg("--bandwidth-estimation=false");
        }
        Stdio::inherit()
    };
    command.args(extra);
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| {
            format!(
                "could not start {} (build it with `cargo build --release -p simplesfu`)",
                bin.display()
            )
        })?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let pid = child.id().to_string();
    let mut server = RunningServer {
        child,
        pid,
        target: Target::Simplesfu(String::new()),
        group: false,
        cap: None,
    };
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("the server printed no address")?;
    let url = line
        .trim()
        .strip_prefix("simplesfu listening on ")
        .ok_or_else(|| anyhow!("unexpected first line from simplesfu: `{}`", line.trim()))?;
    server.target = Target::Simplesfu(url.to_string());
    Ok(server)
}

/// Nodes in the `cluster` scenario: the publisher's and two for the viewers.
const CLUSTER_NODES: usize = 3;
/// How long the cluster's nodes may take to see each other.
const CLUSTER_READY_WAIT: Duration = Duration::from_secs(15);

/// The `cluster` scenario's nodes after the first, and the Redis they share.
struct ClusterRest {
    nodes: Vec<RunningServer>,
    redis: Child,
}

impl ClusterRest {
    fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|n| match &n.target {
                Target::Simplesfu(url) => Some(url.clone()),
                _ => None,
            })
            .collect()
    }
}

impl Drop for ClusterRest {
    fn drop(&mut self) {
        // The nodes first (each says goodbye on Redis), then Redis.
        self.nodes.clear();
        let _ = self.redis.kill();
        let _ = self.redis.wait();
    }
}

/// Why the `cluster` scenario cannot run here, if it cannot.
pub fn cluster_unavailable() -> Option<&'static str> {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("redis-server").is_file())
    });
    (!found).then_some("redis-server is not installed (apt-get install redis-server)")
}

/// A Redis for the cluster on a free loopback port, without persistence
/// (kill the child to stop it).
pub fn start_redis() -> anyhow::Result<(Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("no free port for Redis")?
        .port();
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("could not start redis-server (apt-get install redis-server)")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("redis-server did not listen on port {port} within 5 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((child, port))
}

/// Redis and three simplesfu nodes sharing it and a fresh secret, each
/// with one worker (pinned as the single server is); returns once every
/// node sees the three. The first node is the publisher's.
fn start_cluster(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    pin: bool,
    settings: ServerSettings,
    extra: &[String],
    out_dir: &Path,
) -> anyhow::Result<(RunningServer, ClusterRest)> {
    let (redis, port) = start_redis()?;
    let mut secret = [0u8; 24];
    rand::Rng::fill(&mut rand::rng(), &mut secret[..]);
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let redis_url = format!("redis://127.0.0.1:{port}");
    let mut rest = ClusterRest {
        nodes: Vec::new(),
        redis,
    };
    for i in 1..=CLUSTER_NODES {
        let mut args = extra.to_vec();
        args.extend([
            "--cluster-redis-url".to_owned(),
            redis_url.clone(),
            "--cluster-node-id".to_owned(),
            format!("bench-node-{i}"),
        ]);
        let node = start_simplesfu_with(
            bin,
            pin,
            1,
            settings,
            &args,
            &[("SIMPLESFU_CLUSTER_SECRET", &secret)],
            &out_dir.join(format!("simplesfu-cluster-{i}.log")),
        )?;
        rest.nodes.push(node);
    }
    let urls = rest.urls();
    rt.block_on(async {
        let deadline = Instant::now() + CLUSTER_READY_WAIT;
        for url in &urls {
            loop {
                let seen = cluster_nodes_seen(url).await.unwrap_or(0);
                if seen >= CLUSTER_NODES {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("node {url} saw {seen} of the {CLUSTER_NODES} cluster nodes after {CLUSTER_READY_WAIT:?}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    })?;
    let first = rest.nodes.remove(0);
    Ok((first, rest))
}

/// How many nodes `url`'s /health lists in its cluster.
async fn cluster_nodes_seen(url: &str) -> anyhow::Result<usize> {
    let health = crate::http::HttpUrl::parse(url)?.with_path("/health");
    let response = crate::http::request("GET", &health, &[], &[], Duration::from_secs(2)).await?;
    let body: serde_json::Value = serde_json::from_str(&response.text())?;
    Ok(body["cluster"]["nodes"]
        .as_array()
        .map(|n| n.len())
        .unwrap_or(0))
}

/// Janus's configuration for loopback: HTTP transport on 127.0.0.1:8088,
/// only the VideoRoom plugin, a bounded RTP port range, ICE restricted to
/// `ip` (Janus ignores loopback interfaces when gathering).
pub fn write_janus_config(dir: &Path, ip: IpAddr) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let lib = "/usr/lib/x86_64-linux-gnu/janus";
    let janus = format!(
        r#"general: {{
	configs_folder = "{dir}"
	plugins_folder = "{lib}/plugins"
	transports_folder = "{lib}/transports"
	events_folder = "{lib}/events"
	loggers_folder = "{lib}/loggers"
	debug_level = 2
	session_timeout = 120
}}
media: {{
	ipv6 = false
	rtp_port_range = "20000-29999"
	no_media_timer = 5
}}
nat: {{
	nice_debug = false
	ice_enforce_list = "{ip}"
	ignore_mdns = true
}}
plugins: {{
	disable = "libjanus_audiobridge.so,libjanus_echotest.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_nosip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so,libjanus_duktape.so,libjanus_lua.so"
}}
transports: {{
	disable = "libjanus_websockets.so,libjanus_pfunix.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_rabbitmq.so"
}}
events: {{
	broadcast = false
}}
loggers: {{
	disable = "libjanus_jsonlog.so"
}}
"#,
        dir = dir.display()
    );
    let http = "general: {\n\tjson = \"plain\"\n\tbase_path = \"/janus\"\n\thttp = true\n\tport = 8088\n\tip = \"127.0.0.1\"\n\thttps = false\n}\nadmin: {\n\tadmin_http = false\n}\n";
    let videoroom = "general: {\n}\n";
    std::fs::write(dir.join("janus.jcfg"), janus)?;
    std::fs::write(dir.join("janus.transport.http.jcfg"), http)?;
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), videoroom)?;
    Ok(())
}

fn start_janus(
    bin: &Path,
    config_dir: &Path,
    log: &Path,
    pin: bool,
) -> anyhow::Result<RunningServer> {
    let log_file = std::fs::File::create(log)
        .with_context(|| format!("could not create {}", log.display()))?;
    let child = pinned_command(bin, pin)
        .arg("-F")
        .arg(config_dir)
        .arg("-o")
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("could not start {} (apt-get install janus)", bin.display()))?;
    let pid = child.id().to_string();
    let server = RunningServer {
        child,
        pid,
        target: Target::Janus("http://127.0.0.1:8088/janus".into()),
        group: false,
        cap: None,
    };
    // Ready when its HTTP API answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect("127.0.0.1:8088").is_ok() {
            std::thread::sleep(Duration::from_millis(300));
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "Janus did not open 127.0.0.1:8088 within 20 s; see {}",
        log.display()
    )
}

/// What the launcher prints once the original server listens.
const MEDIASOUP_READY: &str = "simple-mediasoup-peer-server listening on ";

/// The original server's URL and worker count from the launcher's line
/// `simple-mediasoup-peer-server listening on http://127.0.0.1:PORT workers=N`.
pub fn parse_mediasoup_ready(line: &str) -> Option<(String, usize)> {
    let rest = line.trim().strip_prefix(MEDIASOUP_READY)?;
    let mut words = rest.split_whitespace();
    let url = words.next()?.to_string();
    let workers = words
        .find_map(|w| w.strip_prefix("workers="))?
        .parse()
        .ok()?;
    Some((url, workers))
}

/// The environment the original server runs with: one worker, everything
/// on 127.0.0.1, an HTTP port the system picks.
pub fn mediasoup_env(ms: &MediasoupOriginal) -> Vec<(&'static str, String)> {
    vec![
        ("MEDIASOUP_WORKER_BIN", ms.worker_bin.display().to_string()),
        // Read by config.js as bench/mediasoup-setup patched it.
        ("NUM_WORKERS", MEDIASOUP_WORKERS.to_string()),
        // The workers' ICE candidates (config.js's listenInfos).
        ("LISTEN_IP", "127.0.0.1".into()),
        // The launcher's HTTP side.
        ("HOST", "127.0.0.1".into()),
        ("PORT", "0".into()),
    ]
}

/// Start the original server (node, the launcher, the npm install) in its
/// own process group, pinned like simplesfu (its workers inherit the
/// affinity), and wait for its line saying where it listens. Everything it
/// prints goes to `log`.
fn start_mediasoup(ms: &MediasoupOriginal, log: &Path, pin: bool) -> anyhow::Result<RunningServer> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    // Appended: one server per level, every level's output kept.
    let mut log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("could not open {}", log.display()))?;
    let mut command = pinned_command(&ms.node_bin, pin);
    command
        .arg(&ms.launcher)
        .arg(&ms.server_dir)
        .current_dir(&ms.server_dir)
        .envs(mediasoup_env(ms))
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(log_file.try_clone()?);
    let mut child = command.spawn().with_context(|| {
        format!(
            "could not start {} {} (bench/mediasoup-setup prepares the original server)",
            ms.node_bin.display(),
            ms.launcher.display()
        )
    })?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let pid = child.id().to_string();
    let mut server = RunningServer {
        child,
        pid,
        target: Target::Mediasoup(String::new()),
        group: true,
        cap: None,
    };
    // config.js prints before the launcher does, and the server keeps
    // printing: read every line into the log (a full pipe would stall it).
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut ready = Some(ready_tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log_file, "{line}");
            if let Some(parsed) = parse_mediasoup_ready(&line) {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(parsed);
                }
            }
        }
    });
    let (url, workers) = ready_rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| {
            anyhow!(
                "the original server did not say it listens within 30 s; see {}",
                log.display()
            )
        })?;
    if workers != MEDIASOUP_WORKERS {
        bail!(
            "the original server started {workers} workers, not {MEDIASOUP_WORKERS}: is its config.js patched (bench/mediasoup-setup)?"
        );
    }
    server.target = Target::Mediasoup(url);
    Ok(server)
}

/// The original server's versions, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct MediasoupVersions {
    pub server: String,
    pub mediasoup: String,
    pub node: String,
}

impl MediasoupVersions {
    fn of(ms: &MediasoupOriginal) -> MediasoupVersions {
        let package = |name: &str| {
            std::fs::read_to_string(
                ms.server_dir
                    .join("node_modules")
                    .join(name)
                    .join("package.json"),
            )
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into())
        };
        let node = Command::new(&ms.node_bin)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        MediasoupVersions {
            server: package("simple-mediasoup-peer-server"),
            mediasoup: package("mediasoup"),
            node,
        }
    }
}

/// The peers of one level.
struct Shape {
    rooms: u32,
    publishers: u32,
    subscribers: u32,
    /// Publishers also receive each other.
    meeting: bool,
    /// Subscribers speak v1 as the published 0.0.20 client.
    published_client: bool,
    media: MediaOptions,
    /// The viewers' emulated downlinks, taken in turn (empty: unlimited).
    downlinks_kbps: Vec<Option<u32>>,
    /// Viewers send congestion feedback (TWCC), as browsers do.
    congestion_feedback: bool,
    warmup: Duration,
    /// The subscribers play over WHEP instead of protocol v1.
    whep: bool,
}

impl Shape {
    fn new(
        rooms: u32,
        publishers: u32,
        subscribers: u32,
        meeting: bool,
        media: MediaOptions,
    ) -> Shape {
        Shape {
            rooms,
            publishers,
            subscribers,
            meeting,
            published_client: false,
            media,
            downlinks_kbps: Vec::new(),
            congestion_feedback: false,
            warmup: Duration::from_secs(1),
            whep: false,
        }
    }
}

/// One level of a scenario: its load and the server settings it runs with.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Level {
    load: u32,
    settings: ServerSettings,
}

/// A scenario: its name, its levels and the peers of each.
struct Scenario {
    name: &'static str,
    /// The levels grow: stop at the first that fails.
    ramped: bool,
    levels: Vec<Level>,
    shape: Box<dyn Fn(u32) -> Shape>,
}

fn forwarding_levels(loads: Vec<u32>) -> Vec<Level> {
    loads
        .into_iter()
        .map(|load| Level {
            load,
            settings: ServerSettings::FORWARDING,
        })
        .collect()
}

/// Loads from `start` up to `max`, each step `factor` times the last (at least +1).
fn ramp(start: u32, max: u32, factor: f64) -> Vec<u32> {
    let mut v = Vec::new();
    let mut n = start;
    while n <= max {
        v.push(n);
        n = ((n as f64 * factor).round() as u32).max(n + 1);
    }
    v
}

fn scenarios(
    smoke: bool,
    max_subscribers: u32,
    factor: f64,
    big_room: &BigRoom,
    constrained_viewers: u32,
) -> Vec<Scenario> {
    let ramp = |start: u32| forwarding_levels(ramp(start, max_subscribers, factor));
    let audio = MediaOptions {
        video: false,
        audio: true,
        ..Default::default()
    };
    let meeting_size = if smoke { 3 } else { 10 };
    let audio_publishers = if smoke { 2 } else { 10 };
    let room = if smoke {
        BigRoom::smoke()
    } else {
        big_room.clone()
    };
    let big_room_levels = room
        .resend_ms
        .iter()
        .map(|&ms| Level {
            load: room.peers,
            settings: ServerSettings {
                available_producers_interval_ms: ms,
                request_burst: smoke.then_some(SMOKE_REQUEST_BURST),
                bandwidth_estimation: true,
                defaults: false,
            },
        })
        .collect();
    // The constrained and estimation scenarios: with the server's
    // estimation, then without; the smoke run only with.
    let estimation_levels: Vec<Level> = [true, false]
        .into_iter()
        .take(if smoke { 1 } else { 2 })
        .map(|bandwidth_estimation| Level {
            load: if smoke { 3 } else { constrained_viewers.max(3) },
            settings: ServerSettings {
                bandwidth_estimation,
                ..ServerSettings::FORWARDING
            },
        })
        .collect();
    let speakers = room.speakers;
    let joiners = room.joiners;
    let big_room_media = MediaOptions {
        speakers_per_room: Some(speakers),
        ..audio.clone()
    };
    vec![
        Scenario {
            name: "livestream",
            ramped: true,
            levels: if smoke {
                forwarding_levels(vec![2])
            } else {
                ramp(50)
            },
            shape: Box::new(|n| Shape::new(1, 1, n, false, MediaOptions::default())),
        },
        Scenario {
            name: "cluster",
            ramped: true,
            // livestream's publisher and load over three nodes: the
            // publisher on the first, the viewers on the other two, so every
            // packet crosses a link between nodes. The same loads, so the
            // report sets each level beside livestream's.
            levels: if smoke {
                forwarding_levels(vec![2])
            } else {
                ramp(50)
            },
            shape: Box::new(|n| Shape::new(1, 1, n, false, MediaOptions::default())),
        },
        Scenario {
            name: "defaults",
            ramped: true,
            // livestream's shape, the server as a user runs it.
            levels: if smoke {
                vec![2]
            } else {
                self::ramp(50, max_subscribers.min(DEFAULTS_MAX_VIEWERS), factor)
            }
            .into_iter()
            .map(|load| Level {
                load,
                settings: ServerSettings::DEFAULTS,
            })
            .collect(),
            shape: Box::new(|n| Shape::new(1, 1, n, false, MediaOptions::default())),
        },
        Scenario {
            name: "whep",
            ramped: true,
            // livestream's publisher and load, its viewers over WHEP.
            levels: if smoke {
                forwarding_levels(vec![2])
            } else {
                ramp(50)
            },
            shape: Box::new(|n| Shape {
                whep: true,
                ..Shape::new(1, 1, n, false, MediaOptions::default())
            }),
        },
        Scenario {
            name: "meeting",
            ramped: true,
            levels: if smoke {
                forwarding_levels(vec![1])
            } else {
                forwarding_levels(ramp_rooms(factor))
            },
            shape: Box::new(move |rooms| {
                Shape::new(rooms, meeting_size, 0, true, MediaOptions::default())
            }),
        },
        Scenario {
            name: "audio-only",
            ramped: true,
            levels: if smoke {
                forwarding_levels(vec![2])
            } else {
                ramp(50)
            },
            shape: Box::new(move |n| Shape::new(1, audio_publishers, n, false, audio.clone())),
        },
        Scenario {
            name: "big-room",
            ramped: false,
            levels: big_room_levels,
            shape: Box::new(move |peers| Shape {
                published_client: true,
                ..Shape::new(1, peers, joiners, false, big_room_media.clone())
            }),
        },
        Scenario {
            name: "constrained",
            ramped: false,
            // With the server's estimation, then without (what every viewer
            // got before it): what estimation costs and what it buys. The
            // smoke run checks the first only.
            levels: estimation_levels.clone(),
            shape: simulcast_viewers_behind(&CONSTRAINED_DOWNLINKS),
        },
        Scenario {
            name: "estimation",
            ramped: false,
            // What estimation costs, on the same packets: the constrained
            // scenario's publisher and viewers, every link unlimited, so the
            // viewers get the top layer with estimation as without it.
            levels: estimation_levels,
            shape: simulcast_viewers_behind(&[None]),
        },
    ]
}

/// The constrained and estimation scenarios' peers: one publisher of
/// three-layer simulcast and audio, and the viewers, taking `downlinks` in
/// turn, sending congestion feedback, measured after CONSTRAINED_WARMUP.
fn simulcast_viewers_behind(downlinks: &'static [Option<u32>]) -> Box<dyn Fn(u32) -> Shape> {
    Box::new(move |viewers| Shape {
        downlinks_kbps: downlinks.to_vec(),
        congestion_feedback: true,
        warmup: CONSTRAINED_WARMUP,
        ..Shape::new(
            1,
            1,
            viewers,
            false,
            MediaOptions {
                simulcast: true,
                audio: true,
                ..Default::default()
            },
        )
    })
}

fn ramp_rooms(factor: f64) -> Vec<u32> {
    ramp(1, 16, factor)
}

/// Every thread of this process (the bot's runtime included) onto `cpus`;
/// true when every thread took it. The bench pins the bot to CPU 1 at its
/// start, and the `defaults` scenario unpins it for its levels.
fn set_process_affinity(cpus: &[usize]) -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    let mut all = true;
    // SAFETY: cpu_set_t is plain data; sched_setaffinity on this process's
    // own threads only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        for task in tasks.flatten() {
            if let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<i32>().ok())
            {
                all &=
                    libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0;
            }
        }
    }
    all
}

fn pin_self_to_cpu1() -> bool {
    set_process_affinity(&[1])
}

/// Run the whole benchmark and write the report files.
pub fn run(opts: BenchOptions) -> anyhow::Result<BenchReport> {
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("could not create {}", opts.out_dir.display()))?;
    let load_at_start = load_average();
    let all_cpus: Vec<usize> = (0..procfs::allowed_cpus()).collect();
    let pinned = opts.pin && procfs::allowed_cpus() >= 2 && pin_self_to_cpu1();
    eprintln!("bench: measuring the floor");
    let floor = floor::measure(if opts.smoke { 20_000 } else { 200_000 })?;
    eprintln!(
        "bench: floor {:.2} µs per packet (UDP send {:.2} + AES-GCM seal {:.2}); unbatched {:.2} µs (sendto {:.2})",
        floor.floor_us, floor.udp_send_us, floor.aes_gcm_seal_us, floor.floor_single_us, floor.udp_sendto_us
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(procfs::allowed_cpus())
        .enable_all()
        .build()
        .context("could not start the async runtime")?;

    let mut servers: Vec<(ServerKind, Option<usize>)> = opts
        .workers
        .iter()
        .map(|&w| (ServerKind::Simplesfu, Some(w.max(1))))
        .collect();
    if opts.janus_bin.is_some() {
        servers.push((ServerKind::Janus, None));
    }
    if opts.mediasoup.is_some() {
        servers.push((ServerKind::Mediasoup, Some(MEDIASOUP_WORKERS)));
    }
    let mut levels = Vec::new();
    for scenario in scenarios(
        opts.smoke,
        opts.max_subscribers,
        opts.ramp_factor,
        &opts.big_room,
        opts.constrained_viewers,
    ) {
        if !opts.scenarios.is_empty() && !opts.scenarios.iter().any(|s| s == scenario.name) {
            continue;
        }
        for &(kind, workers) in &servers {
            let label = server_label(kind, workers);
            if let Some(why) = kind.skips(scenario.name) {
                eprintln!("bench: {label} skipped in {}: {why}", scenario.name);
                continue;
            }
            for Level {
                load: level,
                settings,
            } in kind.levels(&scenario.levels)
            {
                if settings.defaults && workers != servers[0].1 {
                    eprintln!(
                        "bench: {label} skipped in {}: the server runs its default workers, once",
                        scenario.name
                    );
                    break;
                }
                let cluster = kind == ServerKind::Simplesfu && scenario.name == "cluster";
                if cluster && workers != servers[0].1 {
                    eprintln!(
                        "bench: {label} skipped in cluster: its nodes run one worker each, once"
                    );
                    break;
                }
                if let Some(why) = cluster.then(cluster_unavailable).flatten() {
                    eprintln!("bench: {label} skipped in cluster: {why}");
                    break;
                }
                let shape = (scenario.shape)(level);
                eprintln!("bench: {label} {} load {level}", scenario.name);
                let unpinned = pinned && settings.defaults;
                if unpinned {
                    set_process_affinity(&all_cpus);
                }
                let mut cluster_rest: Option<ClusterRest> = None;
                let server = match kind {
                    ServerKind::Simplesfu if cluster => {
                        let (first, rest) = start_cluster(
                            &rt,
                            &opts.simplesfu_bin,
                            pinned,
                            settings,
                            &opts.simplesfu_args,
                            &opts.out_dir,
                        )?;
                        cluster_rest = Some(rest);
                        first
                    }
                    ServerKind::Simplesfu if settings.defaults => start_simplesfu(
                        &opts.simplesfu_bin,
                        pinned,
                        0,
                        settings,
                        &[],
                        &opts
                            .out_dir
                            .join(format!("simplesfu-{}-{level}.log", scenario.name)),
                    )?,
                    ServerKind::Simplesfu => {
                        let w = workers.unwrap_or(1);
                        let mut server = start_simplesfu(
                            &opts.simplesfu_bin,
                            pinned,
                            w,
                            settings,
                            &opts.simplesfu_args,
                            &opts.out_dir.join("simplesfu.log"),
                        )?;
                        if let Some(fraction) = opts.worker_cpu {
                            let pid: u32 = server.pid.parse().context("server pid")?;
                            server.cap = Some(crate::cpucap::cap_workers(pid, w, fraction)?);
                        }
                        server
                    }
                    ServerKind::Janus => {
                        let bin = opts
                            .janus_bin
                            .as_ref()
                            .ok_or_else(|| anyhow!("no Janus binary"))?;
                        let dir = opts.out_dir.join("janus-config");
                        write_janus_config(&dir, opts.janus_ip)?;
                        start_janus(bin, &dir, &opts.out_dir.join("janus.log"), pinned)?
                    }
                    ServerKind::Mediasoup => {
                        let ms = opts
                            .mediasoup
                            .as_ref()
                            .ok_or_else(|| anyhow!("no original server"))?;
                        start_mediasoup(ms, &opts.out_dir.join("mediasoup.log"), pinned)?
                    }
                };
                let cfg = LoadConfig {
                    target: server.target.clone(),
                    spread: cluster_rest
                        .as_ref()
                        .map(ClusterRest::urls)
                        .unwrap_or_default(),
                    rooms: shape.rooms,
                    publishers_per_room: shape.publishers,
                    subscribers_per_room: if shape.whep { 0 } else { shape.subscribers },
                    whep_viewers_per_room: if shape.whep { shape.subscribers } else { 0 },
                    whep: crate::whep::WhepOptions::default(),
                    publishers_subscribe: shape.meeting,
                    published_client: shape.published_client,
                    subscribe_audio_levels: false,
                    media: shape.media,
                    downlinks_kbps: shape.downlinks_kbps,
                    congestion_feedback: shape.congestion_feedback,
                    warmup: shape.warmup,
                    duration: opts.duration,
                    join_rate: opts.join_rate,
                    // libnice (Janus) never pairs with a candidate on the loopback
                    // interface: the bot binds Janus's address then (seen here).
                    local_ip: if kind == ServerKind::Janus {
                        opts.janus_ip
                    } else {
                        IpAddr::from([127, 0, 0, 1])
                    },
                    progress: true,
                };
                let mut samples: Vec<ServerSample> = Vec::new();
                // Every node of a cluster: its CPU and memory are the sum.
                let pids: Vec<String> = std::iter::once(server.pid.clone())
                    .chain(
                        cluster_rest
                            .iter()
                            .flat_map(|c| c.nodes.iter().map(|n| n.pid.clone())),
                    )
                    .collect();
                let report = rt.block_on(load::run(cfg, &mut |edge| {
                    if let Ok(s) = ServerSample::take_all(&pids, kind) {
                        samples.push(s);
                    }
                    let _ = edge == Window::End;
                }));
                drop(server);
                drop(cluster_rest);
                if unpinned {
                    set_process_affinity(&[1]);
                }
                let report = match report {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("bench: the load failed: {e:#}");
                        break;
                    }
                };
                let settings = (kind == ServerKind::Simplesfu).then_some(settings);
                let result = level_result(
                    kind,
                    // The defaults run the server's own worker count.
                    if settings.is_some_and(|s| s.defaults) {
                        None
                    } else {
                        workers
                    },
                    scenario.name,
                    level,
                    settings,
                    &samples,
                    report,
                    &floor,
                );
                eprintln!(
                    "bench: {label} {} {level}: loss {:.2}%, p99 {:.1} ms, server CPU {:.0}%, {:.2} µs/packet ({:.1}x floor){}",
                    scenario.name,
                    result.loss_pct,
                    result.p99_ms,
                    result.server_cpu_pct,
                    result.cpu_us_per_forwarded_packet,
                    result.floor_multiple,
                    match (result.passed, result.bot_limited) {
                        (true, false) => String::new(),
                        (false, false) => " -- limit reached".into(),
                        (_, true) => format!(
                            " -- the bot is the limit (its CPU {:.0}% of {} CPU(s) it may use); the ramp stops",
                            result.report.bot_cpu_pct, result.report.bot_cpus
                        ),
                    }
                );
                let stop = !result.passed || result.bot_limited;
                levels.push(result);
                if stop && scenario.ramped {
                    break;
                }
            }
        }
    }
    let report = BenchReport {
        date: date_string(),
        smoke: opts.smoke,
        machine: machine(),
        floor,
        pinned,
        worker_cpu: opts.worker_cpu,
        simplesfu_bin: opts.simplesfu_bin.display().to_string(),
        simplesfu_args: opts.simplesfu_args.clone(),
        load_average: (load_at_start, load_average()),
        mediasoup: opts.mediasoup.as_ref().map(MediasoupVersions::of),
        levels,
    };
    std::fs::write(
        opts.out_dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(
        opts.out_dir.join("report.md"),
        crate::report::markdown(&report),
    )?;
    if let Err(e) = crate::plot::draw(&report, &opts.out_dir.join("plot.png")) {
        eprintln!("bench: could not draw the plot: {e:#}");
    }
    if opts.smoke {
        check_smoke(&report)?;
    }
    Ok(report)
}

/// The smoke run's promise: every scenario ran, media got through, loss is
/// low, and every consumer the server pushed was resumed at the first try
/// and delivered media (no `limit_reached`).
pub fn check_smoke(report: &BenchReport) -> anyhow::Result<()> {
    if report.levels.is_empty() {
        bail!("smoke: no level was measured");
    }
    for l in &report.levels {
        check_consumers(l).map_err(|e| anyhow!("smoke: {:?} {}: {e}", l.server, l.scenario))?;
        if l.forwarded_packets == 0 {
            bail!(
                "smoke: {:?} {} forwarded no packets: {}",
                l.server,
                l.scenario,
                l.report
                    .first_error
                    .as_deref()
                    .unwrap_or("no error reported")
            );
        }
        if l.loss_pct >= 5.0 {
            bail!(
                "smoke: {:?} {} lost {:.1}% of packets (limit 5%)",
                l.server,
                l.scenario,
                l.loss_pct
            );
        }
        check_layers_fit(l).map_err(|e| anyhow!("smoke: {:?} {}: {e}", l.server, l.scenario))?;
        check_whep_sessions(l).map_err(|e| anyhow!("smoke: {:?} {}: {e}", l.server, l.scenario))?;
    }
    eprintln!(
        "bench: smoke OK: {} levels, media forwarded, loss below 5%, every pushed consumer resumed without a refusal",
        report.levels.len()
    );
    Ok(())
}

/// Every WHEP viewer got a session, and every session was DELETEd with the
/// server's confirmation when the level ended (nothing to check without
/// WHEP viewers).
pub fn check_whep_sessions(l: &LevelResult) -> anyhow::Result<()> {
    let Some(w) = &l.report.whep else {
        return Ok(());
    };
    let c = &l.report.config;
    let viewers = c.rooms as u64 * c.whep_viewers_per_room as u64;
    if w.sessions < viewers {
        bail!("{} of {viewers} WHEP viewers got a session", w.sessions);
    }
    if w.deleted < w.sessions {
        bail!(
            "{} of {} WHEP sessions deleted: {}",
            w.deleted,
            w.sessions,
            w.delete_error.as_deref().unwrap_or("no error reported")
        );
    }
    Ok(())
}

/// Behind emulated downlinks with the server's estimation on, the viewers on
/// the slowest link end below the top layer (or paused for bandwidth), and
/// the unlimited ones above them: each gets its own link's layer, the slow
/// one does not lower the fast one (without estimation every viewer gets
/// the top layer; nothing to check without classes or estimation). The
/// unlimited ones start from the estimator's starting budget and may take
/// longer than a short window to reach the top; the bench's table says when.
pub fn check_layers_fit(l: &LevelResult) -> anyhow::Result<()> {
    if l.settings.is_some_and(|s| !s.bandwidth_estimation) {
        return Ok(());
    }
    let classes = &l.report.classes;
    let (Some(slowest), Some(unlimited)) = (
        classes
            .iter()
            .filter(|c| c.downlink_kbps.is_some())
            .min_by_key(|c| c.downlink_kbps),
        classes.iter().find(|c| c.downlink_kbps.is_none()),
    ) else {
        return Ok(());
    };
    let top = if l.report.config.media.simulcast {
        2
    } else {
        0
    };
    let (slow_layer, free_layer) = (slowest.usual_layer(), unlimited.usual_layer());
    if slow_layer.is_some_and(|s| s >= top) {
        bail!(
            "viewers at {} kbit/s ended on layer {}, which does not fit",
            slowest.downlink_kbps.unwrap_or(0),
            slow_layer.unwrap_or(0)
        );
    }
    if free_layer <= slow_layer {
        bail!("unlimited viewers ended on layer {free_layer:?}, not above the slowest ({slow_layer:?})");
    }
    Ok(())
}

/// Every consumer the server pushed was resumed without a refusal and
/// delivered media (simplesfu and the original; Janus pushes none).
pub fn check_consumers(l: &LevelResult) -> anyhow::Result<()> {
    let expected = if l.server == ServerKind::Janus {
        0
    } else {
        l.report.expected_streams
    };
    consumers_ok(&l.report.consumers, expected)
}

/// [`check_consumers`] for `expected` consumers.
fn consumers_ok(c: &ConsumerReport, expected: u64) -> anyhow::Result<()> {
    if c.refused_for_rate > 0 {
        bail!(
            "{} of {} resumeConsumer refused with limit_reached",
            c.refused_for_rate,
            c.pushed
        );
    }
    if c.resumed < c.pushed || c.failed > 0 {
        bail!(
            "{} of {} pushed consumers resumed ({} other failures)",
            c.resumed,
            c.pushed,
            c.failed
        );
    }
    if c.pushed < expected {
        bail!("{} consumers pushed, {expected} expected", c.pushed);
    }
    if c.with_media < expected {
        bail!("{} of {expected} consumers delivered media", c.with_media);
    }
    Ok(())
}

/// "simplesfu", "simplesfu ×2" (workers), "Janus", or "mediasoup (original)".
pub fn server_label(server: ServerKind, workers: Option<usize>) -> String {
    match (server, workers) {
        (ServerKind::Simplesfu, Some(w)) if w > 1 => format!("simplesfu ×{w}"),
        (ServerKind::Simplesfu, _) => "simplesfu".into(),
        (ServerKind::Janus, _) => "Janus".into(),
        (ServerKind::Mediasoup, _) => "mediasoup (original)".into(),
    }
}

/// The server's CPU and memory at one edge of the measurement window.
#[derive(Debug, Clone, Copy)]
struct ServerSample {
    process: ProcSample,
    /// CPU seconds of the media worker threads (simplesfu).
    workers_cpu_s: Option<f64>,
}

impl ServerSample {
    /// The sum over several processes (the nodes of a cluster).
    fn take_all(pids: &[String], kind: ServerKind) -> anyhow::Result<ServerSample> {
        let mut total = ServerSample {
            process: ProcSample {
                cpu_s: 0.0,
                rss_bytes: 0,
            },
            workers_cpu_s: None,
        };
        for pid in pids {
            let s = ServerSample::take(pid, kind)?;
            total.process.cpu_s += s.process.cpu_s;
            total.process.rss_bytes += s.process.rss_bytes;
            if let Some(w) = s.workers_cpu_s {
                *total.workers_cpu_s.get_or_insert(0.0) += w;
            }
        }
        Ok(total)
    }

    fn take(pid: &str, kind: ServerKind) -> anyhow::Result<ServerSample> {
        match kind {
            ServerKind::Simplesfu => Ok(ServerSample {
                process: procfs::sample(pid)?,
                workers_cpu_s: Some(procfs::threads_cpu_s(
                    pid.parse().context("server pid")?,
                    "worker-",
                )?),
            }),
            ServerKind::Janus => Ok(ServerSample {
                process: procfs::sample(pid)?,
                workers_cpu_s: None,
            }),
            // node forwards nothing itself: its mediasoup-worker children do.
            ServerKind::Mediasoup => {
                let tree = procfs::sample_tree(pid.parse().context("server pid")?)?;
                Ok(ServerSample {
                    process: tree.total,
                    workers_cpu_s: Some(tree.descendants_cpu_s),
                })
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn level_result(
    server: ServerKind,
    workers: Option<usize>,
    scenario: &str,
    load: u32,
    settings: Option<ServerSettings>,
    samples: &[ServerSample],
    report: LoadReport,
    floor: &Floor,
) -> LevelResult {
    let (cpu_s, workers_cpu_s, rss) = match samples {
        [a, b, ..] => (
            b.process.cpu_s - a.process.cpu_s,
            b.workers_cpu_s.zip(a.workers_cpu_s).map(|(b, a)| b - a),
            b.process.rss_bytes,
        ),
        _ => (0.0, None, 0),
    };
    let pct = |s: f64| 100.0 * s / report.duration_s.max(1e-9);
    let forwarded = report.packets_received;
    let per_packet = if forwarded > 0 {
        cpu_s * 1e6 / forwarded as f64
    } else {
        0.0
    };
    let constrained = !report.classes.is_empty();
    // Behind emulated links, a viewer's loss is its consumers' (stamp
    // counters per sent layer count every switch back up as loss), and the
    // links' queues add latency by design.
    let loss = if constrained {
        report
            .classes
            .iter()
            .map(|c| c.video_loss_pct.max(c.audio_loss_pct))
            .fold(0.0, f64::max)
    } else {
        report.effective_loss_pct()
    };
    let mut passed = report.join_failures == 0
        && if constrained {
            report.classes.iter().all(|c| {
                c.video_loss_pct <= CONSTRAINED_MAX_LOSS_PCT
                    && c.audio_loss_pct <= CONSTRAINED_MAX_LOSS_PCT
                    && c.frame_gaps_over_200ms == 0
                    && c.video_consumers_missing == 0
            })
        } else {
            loss < MAX_LOSS_PCT && report.latency.p99_ms < MAX_P99_MS
        };
    let mut result = LevelResult {
        server,
        workers,
        scenario: scenario.to_string(),
        load,
        settings,
        streams: report.receiving_streams,
        server_cpu_s: cpu_s,
        server_cpu_pct: pct(cpu_s),
        workers_cpu_pct: workers_cpu_s.map(pct),
        // Both sides count in clock ticks: a difference below one tick is 0.
        signaling_cpu_pct: workers_cpu_s.map(|w| pct((cpu_s - w).max(0.0))),
        server_rss_mb: rss as f64 / 1048576.0,
        forwarded_packets: forwarded,
        cpu_us_per_forwarded_packet: per_packet,
        forwarded_packets_per_cpu_s: if cpu_s > 0.0 {
            forwarded as f64 / cpu_s
        } else {
            0.0
        },
        floor_multiple: if floor.floor_us > 0.0 {
            per_packet / floor.floor_us
        } else {
            0.0
        },
        loss_pct: loss,
        p50_ms: report.latency.p50_ms,
        p99_ms: report.latency.p99_ms,
        max_ms: report.latency.max_ms,
        passed: false,
        bot_limited: false,
        report,
    };
    result.bot_limited = bot_limited(&result.report);
    passed &= check_consumers(&result).is_ok();
    if scenario == "big-room" {
        passed &= result.report.consumers.join_to_first_media.max_ms < MAX_FIRST_MEDIA_MS;
    }
    result.passed = passed;
    result
}

/// UTC date and time, e.g. 2026-11-24T06-50-00 (no external time crate).
pub fn date_string() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(s: &Scenario) -> Vec<u32> {
        s.levels.iter().map(|l| l.load).collect()
    }

    fn big_room() -> BigRoom {
        BigRoom {
            peers: 300,
            speakers: 3,
            joiners: 1,
            resend_ms: vec![1000, 0],
        }
    }

    #[test]
    fn ramps_double_up_to_the_maximum() {
        let s = scenarios(false, 800, 2.0, &big_room(), 30);
        let named = |name: &str| s.iter().find(|s| s.name == name).expect("scenario");
        assert_eq!(loads(named("livestream")), vec![50, 100, 200, 400, 800]);
        assert_eq!(loads(named("meeting")), vec![1, 2, 4, 8, 16]);
        assert!(s[0]
            .levels
            .iter()
            .all(|l| l.settings == ServerSettings::FORWARDING));
        let smoke = scenarios(true, 800, 2.0, &big_room(), 30);
        assert!(smoke.iter().all(|s| s.levels.len() == 1));
    }

    #[test]
    fn cluster_is_livestream_over_three_nodes_for_simplesfu_only() {
        for smoke in [false, true] {
            let s = scenarios(smoke, 800, 2.0, &big_room(), 30);
            let named = |name: &str| s.iter().find(|s| s.name == name).expect("scenario");
            let (live, cluster) = (named("livestream"), named("cluster"));
            assert!(cluster.ramped);
            assert_eq!(cluster.levels, live.levels, "the same loads and settings");
            let (l, c) = ((live.shape)(50), (cluster.shape)(50));
            assert_eq!(
                (c.rooms, c.publishers, c.subscribers, c.meeting),
                (l.rooms, l.publishers, l.subscribers, l.meeting)
            );
        }
        assert!(ServerKind::Janus.skips("cluster").is_some());
        assert!(ServerKind::Mediasoup.skips("cluster").is_some());
        assert!(ServerKind::Simplesfu.skips("cluster").is_none());
    }

    #[test]
    fn whep_is_livestream_with_its_viewers_over_whep_and_simplesfu_only() {
        for smoke in [false, true] {
            let s = scenarios(smoke, 800, 2.0, &big_room(), 30);
            let named = |name: &str| s.iter().find(|s| s.name == name).expect("scenario");
            let (live, whep) = (named("livestream"), named("whep"));
            assert!(whep.ramped);
            assert_eq!(whep.levels, live.levels, "the same loads and settings");
            let (l, w) = ((live.shape)(50), (whep.shape)(50));
            assert!(w.whep && !l.whep);
            assert_eq!(
                (w.rooms, w.publishers, w.subscribers, w.meeting),
                (l.rooms, l.publishers, l.subscribers, l.meeting)
            );
            assert_eq!(
                (w.media.video, w.media.audio, w.media.video_bitrate_bps),
                (l.media.video, l.media.audio, l.media.video_bitrate_bps)
            );
        }
        assert!(ServerKind::Janus.skips("whep").is_some());
        assert!(ServerKind::Mediasoup.skips("whep").is_some());
        assert!(ServerKind::Simplesfu.skips("whep").is_none());
    }

    #[test]
    fn defaults_is_livestream_within_the_default_limits_for_simplesfu_only() {
        let s = scenarios(false, 800, 2.0, &big_room(), 30);
        let named = |name: &str| s.iter().find(|s| s.name == name).expect("scenario");
        let (live, defaults) = (named("livestream"), named("defaults"));
        assert_eq!(loads(defaults), vec![50, 100, 200]);
        assert!(defaults.levels.iter().all(|l| l.settings.defaults));
        assert!(live.levels.iter().all(|l| !l.settings.defaults));
        let (l, d) = ((live.shape)(100), (defaults.shape)(100));
        assert_eq!(
            (d.rooms, d.publishers, d.subscribers, d.meeting, d.whep),
            (l.rooms, l.publishers, l.subscribers, l.meeting, l.whep)
        );
        let small = scenarios(false, 120, 2.0, &big_room(), 30);
        let defaults = small
            .iter()
            .find(|s| s.name == "defaults")
            .expect("scenario");
        assert_eq!(loads(defaults), vec![50, 100]);
        assert!(ServerKind::Janus.skips("defaults").is_some());
        assert!(ServerKind::Mediasoup.skips("defaults").is_some());
        assert!(ServerKind::Simplesfu.skips("defaults").is_none());
    }

    #[test]
    fn whep_sessions_must_all_start_and_end() {
        let mut l = crate::report::tests::sample_level("whep", ServerSettings::FORWARDING);
        assert!(check_whep_sessions(&l).is_ok(), "no WHEP viewers");
        l.report.config.whep_viewers_per_room = 2;
        let session = |sessions, deleted| crate::load::WhepReport {
            sessions,
            deleted,
            delete_error: (deleted < sessions).then(|| "DELETE timed out".to_string()),
            ..Default::default()
        };
        l.report.whep = Some(session(2, 2));
        assert!(check_whep_sessions(&l).is_ok());
        l.report.whep = Some(session(2, 1));
        assert_eq!(
            check_whep_sessions(&l)
                .expect_err("one left behind")
                .to_string(),
            "1 of 2 WHEP sessions deleted: DELETE timed out"
        );
        l.report.whep = Some(session(1, 1));
        assert!(
            check_whep_sessions(&l).is_err(),
            "a viewer without a session"
        );
    }

    #[test]
    fn big_room_runs_once_per_resend_interval_with_default_limits() {
        let s = scenarios(false, 800, 2.0, &big_room(), 30);
        let room = s.iter().find(|s| s.name == "big-room").expect("big-room");
        assert!(!room.ramped);
        let resend: Vec<u64> = room
            .levels
            .iter()
            .map(|l| l.settings.available_producers_interval_ms)
            .collect();
        assert_eq!(resend, vec![1000, 0]);
        assert!(room
            .levels
            .iter()
            .all(|l| l.load == 300 && l.settings.request_burst.is_none()));
        let shape = (room.shape)(300);
        assert_eq!(
            (shape.rooms, shape.publishers, shape.subscribers),
            (1, 300, 1)
        );
        assert!(shape.published_client && !shape.meeting && !shape.media.video);
        assert_eq!(shape.media.speakers_per_room, Some(3));
        // The smoke room pushes more consumers than its burst allows requests.
        let smoke = scenarios(true, 800, 2.0, &big_room(), 30);
        let room = smoke
            .iter()
            .find(|s| s.name == "big-room")
            .expect("big-room");
        let level = room.levels[0];
        assert_eq!(level.settings.request_burst, Some(SMOKE_REQUEST_BURST));
        assert!(level.load > SMOKE_REQUEST_BURST);
    }

    #[test]
    fn constrained_runs_with_and_without_estimation_behind_three_downlinks() {
        let s = scenarios(false, 800, 2.0, &big_room(), 30);
        let c = s
            .iter()
            .find(|s| s.name == "constrained")
            .expect("constrained");
        assert!(!c.ramped);
        let estimation: Vec<bool> = c
            .levels
            .iter()
            .map(|l| l.settings.bandwidth_estimation)
            .collect();
        assert_eq!(estimation, vec![true, false]);
        let shape = (c.shape)(30);
        assert_eq!((shape.publishers, shape.subscribers), (1, 30));
        assert!(shape.media.simulcast && shape.media.audio && shape.congestion_feedback);
        assert_eq!(shape.downlinks_kbps, vec![Some(300), Some(1000), None]);
        assert_eq!(shape.warmup, CONSTRAINED_WARMUP);
        let smoke = scenarios(true, 800, 2.0, &big_room(), 30);
        let c = smoke
            .iter()
            .find(|s| s.name == "constrained")
            .expect("constrained");
        assert_eq!(
            c.levels
                .iter()
                .map(|l| (l.load, l.settings.bandwidth_estimation))
                .collect::<Vec<_>>(),
            vec![(3, true)]
        );
    }

    #[test]
    fn estimation_compares_the_same_viewers_on_unlimited_links_with_and_without() {
        let s = scenarios(false, 800, 2.0, &big_room(), 30);
        let e = s
            .iter()
            .find(|s| s.name == "estimation")
            .expect("estimation");
        let levels: Vec<(u32, bool)> = e
            .levels
            .iter()
            .map(|l| (l.load, l.settings.bandwidth_estimation))
            .collect();
        assert_eq!(levels, vec![(30, true), (30, false)]);
        let shape = (e.shape)(30);
        assert!(shape.media.simulcast && shape.media.audio && shape.congestion_feedback);
        assert_eq!(
            shape.downlinks_kbps,
            vec![None],
            "every viewer unlimited: the same layers both sides"
        );
        let smoke = scenarios(true, 800, 2.0, &big_room(), 30);
        let e = smoke
            .iter()
            .find(|s| s.name == "estimation")
            .expect("the smoke run covers it");
        assert_eq!(e.levels.len(), 1);
    }

    #[test]
    fn layers_fit_when_the_slow_end_below_the_top_and_the_unlimited_on_it() {
        use crate::load::ClassReport;
        let class = |downlink_kbps: Option<u32>, final_layers: Vec<u64>| ClassReport {
            downlink_kbps,
            receivers: 1,
            final_layers,
            ..Default::default()
        };
        let level = |classes: Vec<ClassReport>, bandwidth_estimation: bool| {
            let mut l = crate::report::tests::sample_level(
                "constrained",
                ServerSettings {
                    bandwidth_estimation,
                    ..ServerSettings::FORWARDING
                },
            );
            l.report.config.media.simulcast = true;
            l.report.classes = classes;
            l
        };
        let fit = vec![
            class(Some(300), vec![1]),
            class(Some(1000), vec![0, 1]),
            class(None, vec![0, 0, 1]),
        ];
        assert!(check_layers_fit(&level(fit, true)).is_ok());
        let paused = vec![class(Some(300), vec![]), class(None, vec![0, 0, 1])];
        assert!(
            check_layers_fit(&level(paused, true)).is_ok(),
            "paused for bandwidth fits too"
        );
        let top_everywhere = vec![class(Some(300), vec![0, 0, 1]), class(None, vec![0, 0, 1])];
        let e = check_layers_fit(&level(top_everywhere.clone(), true))
            .expect_err("the top layer does not fit 300 kbit/s");
        assert_eq!(
            e.to_string(),
            "viewers at 300 kbit/s ended on layer 2, which does not fit"
        );
        assert!(
            check_layers_fit(&level(top_everywhere, false)).is_ok(),
            "nothing to check without estimation"
        );
        let climbing = vec![class(Some(300), vec![1]), class(None, vec![0, 1])];
        assert!(
            check_layers_fit(&level(climbing, true)).is_ok(),
            "still climbing from the starting budget"
        );
        let lowered = vec![class(Some(300), vec![1]), class(None, vec![1])];
        let e = check_layers_fit(&level(lowered, true))
            .expect_err("the slow viewer lowered the fast one");
        assert_eq!(
            e.to_string(),
            "unlimited viewers ended on layer Some(0), not above the slowest (Some(0))"
        );
    }

    #[test]
    fn finer_ramps_step_at_least_one() {
        assert_eq!(
            ramp(50, 120, 1.25),
            vec![50, 63, 79, 99, 124]
                .into_iter()
                .filter(|&n| n <= 120)
                .collect::<Vec<_>>()
        );
        assert_eq!(ramp(1, 6, 1.25), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_refused_or_silent_consumer_fails_the_level() {
        let all_good = ConsumerReport {
            pushed: 300,
            resumed: 300,
            with_media: 300,
            ..Default::default()
        };
        assert!(consumers_ok(&all_good, 300).is_ok());
        let refused = ConsumerReport {
            resumed: 263,
            refused_for_rate: 37,
            ..all_good.clone()
        };
        let e = consumers_ok(&refused, 300).expect_err("refusals fail");
        assert_eq!(
            e.to_string(),
            "37 of 300 resumeConsumer refused with limit_reached"
        );
        let black = ConsumerReport {
            with_media: 299,
            ..all_good.clone()
        };
        assert_eq!(
            consumers_ok(&black, 300)
                .expect_err("one without audio")
                .to_string(),
            "299 of 300 consumers delivered media"
        );
        let missing = ConsumerReport {
            pushed: 290,
            resumed: 290,
            with_media: 290,
            ..Default::default()
        };
        assert!(
            consumers_ok(&missing, 300).is_err(),
            "a consumer never pushed fails too"
        );
    }

    #[test]
    fn labels_name_the_worker_count() {
        assert_eq!(server_label(ServerKind::Simplesfu, Some(1)), "simplesfu");
        assert_eq!(server_label(ServerKind::Simplesfu, Some(2)), "simplesfu ×2");
        assert_eq!(server_label(ServerKind::Janus, None), "Janus");
        assert_eq!(
            server_label(ServerKind::Mediasoup, Some(1)),
            "mediasoup (original)"
        );
    }

    #[test]
    fn the_original_runs_each_load_once_and_sits_out_estimation() {
        let s = scenarios(false, 800, 2.0, &big_room(), 30);
        let levels_of = |name: &str, kind: ServerKind| {
            let scenario = s.iter().find(|s| s.name == name).expect("scenario");
            kind.levels(&scenario.levels)
        };
        assert_eq!(
            levels_of("big-room", ServerKind::Mediasoup).len(),
            1,
            "no resend interval to vary"
        );
        assert_eq!(levels_of("big-room", ServerKind::Simplesfu).len(), 2);
        assert_eq!(levels_of("big-room", ServerKind::Janus).len(), 2);
        let constrained = levels_of("constrained", ServerKind::Mediasoup);
        assert_eq!(constrained.len(), 1, "mediasoup's estimation is always on");
        assert!(constrained[0].settings.bandwidth_estimation);
        assert_eq!(
            levels_of("livestream", ServerKind::Mediasoup),
            levels_of("livestream", ServerKind::Simplesfu),
            "ramps are the same"
        );
        assert!(ServerKind::Mediasoup.skips("estimation").is_some());
        assert!(ServerKind::Mediasoup.skips("constrained").is_none());
        assert!(ServerKind::Janus.skips("constrained").is_some());
        assert!(ServerKind::Simplesfu.skips("estimation").is_none());
    }

    #[test]
    fn the_original_says_where_it_listens_and_runs_one_worker_on_loopback() {
        assert_eq!(
            parse_mediasoup_ready(
                "simple-mediasoup-peer-server listening on http://127.0.0.1:41234 workers=1 routers=1\n"
            ),
            Some(("http://127.0.0.1:41234".to_string(), 1))
        );
        assert_eq!(parse_mediasoup_ready("Local IP Address:  127.0.0.1"), None);
        assert_eq!(
            parse_mediasoup_ready("simple-mediasoup-peer-server listening on http://x"),
            None,
            "no worker count"
        );
        let ms = MediasoupOriginal {
            server_dir: "/cache/server".into(),
            worker_bin: "/cache/bin/mediasoup-worker-3.19.3".into(),
            launcher: "bench/mediasoup-server.cjs".into(),
            node_bin: "node".into(),
        };
        let env = mediasoup_env(&ms);
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("NUM_WORKERS"), Some("1"));
        assert_eq!(get("LISTEN_IP"), Some("127.0.0.1"));
        assert_eq!(get("HOST"), Some("127.0.0.1"));
        assert_eq!(
            get("MEDIASOUP_WORKER_BIN"),
            Some("/cache/bin/mediasoup-worker-3.19.3")
        );
    }

    #[test]
    fn janus_config_restricts_ice_and_plugins() {
        let dir = std::env::temp_dir().join(format!("janus-cfg-test-{}", std::process::id()));
        write_janus_config(&dir, IpAddr::from([127, 0, 0, 2])).expect("written");
        let main = std::fs::read_to_string(dir.join("janus.jcfg")).expect("janus.jcfg");
        assert!(main.contains("ice_enforce_list = \"127.0.0.2\""));
        assert!(
            main.contains("libjanus_streaming.so"),
            "the streaming plugin (ports 5002/5004) is disabled"
        );
        assert!(
            std::fs::read_to_string(dir.join("janus.transport.http.jcfg"))
                .expect("http")
                .contains("port = 8088")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dates_are_civil() {
        let d = date_string();
        assert_eq!(d.len(), 19, "{d}");
        assert!(d.starts_with("20"));
    }
}
