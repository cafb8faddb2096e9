//! The benchmark harness: measure the floor, then for each server (simplesfu,
//! and Janus when given) and scenario, start a fresh server per load level,
//! run the load, sample the server's CPU and memory from /proc over the
//! measurement window, and ramp up until loss or latency limits break.
//! Writes report.json, report.md and plot.png into the output directory.

use crate::floor::{self, Floor};
use crate::load::{self, LoadConfig, LoadReport, Target, Window};
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

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub out_dir: PathBuf,
    pub simplesfu_bin: PathBuf,
    /// Janus binary; None skips Janus.
    pub janus_bin: Option<PathBuf>,
    /// Janus's advertised address (an address Janus gathers, see DESIGN.md).
    pub janus_ip: IpAddr,
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
    /// Each ramp step multiplies the load by this much (at least +1).
    pub ramp_factor: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Simplesfu,
    Janus,
}

/// One load level of one scenario against one server.
#[derive(Debug, Clone, Serialize)]
pub struct LevelResult {
    pub server: ServerKind,
    /// simplesfu's worker count (None for Janus).
    pub workers: Option<usize>,
    pub scenario: String,
    /// The ramped quantity: subscribers per room, or rooms for the meeting.
    pub load: u32,
    /// Received (forwarded) streams at this level.
    pub streams: u64,
    pub server_cpu_s: f64,
    /// Server CPU in the window, percent of one core.
    pub server_cpu_pct: f64,
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
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let nproc = cpuinfo.lines().filter(|l| l.starts_with("processor")).count().max(1);
    Machine { nproc, cpu_model, kernel }
}

/// A server process the harness started; killed on drop.
struct RunningServer {
    child: Child,
    pid: String,
    target: Target,
    /// Dropped after the server has been stopped (fields drop after `drop`).
    cap: Option<crate::cpucap::CpuCap>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid: SIGTERM lets it shut down cleanly.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
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

fn start_simplesfu(bin: &Path, pin: bool, workers: usize) -> anyhow::Result<RunningServer> {
    let mut child = pinned_command(bin, pin)
        .args(["--workers", &workers.to_string()])
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--rtc-listen-ip",
            "127.0.0.1",
            "--rtc-port",
            "0",
            "--log-level",
            "error",
            "--available-producers-interval-ms",
            "0",
            // The livestream ramps past the default room limit (500 peers).
            "--max-peers-per-room",
            "1000000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!("could not start {} (build it with `cargo build --release -p simplesfu`)", bin.display())
        })?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let pid = child.id().to_string();
    let mut server = RunningServer { child, pid, target: Target::Simplesfu(String::new()), cap: None };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).context("the server printed no address")?;
    let url = line
        .trim()
        .strip_prefix("simplesfu listening on ")
        .ok_or_else(|| anyhow!("unexpected first line from simplesfu: `{}`", line.trim()))?;
    server.target = Target::Simplesfu(url.to_string());
    Ok(server)
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

fn start_janus(bin: &Path, config_dir: &Path, log: &Path, pin: bool) -> anyhow::Result<RunningServer> {
    let log_file = std::fs::File::create(log).with_context(|| format!("could not create {}", log.display()))?;
    let child = pinned_command(bin, pin)
        .arg("-F")
        .arg(config_dir)
        .arg("-o")
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("could not start {} (apt-get install janus)", bin.display()))?;
    let pid = child.id().to_string();
    let server = RunningServer { child, pid, target: Target::Janus("http://127.0.0.1:8088/janus".into()), cap: None };
    // Ready when its HTTP API answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect("127.0.0.1:8088").is_ok() {
            std::thread::sleep(Duration::from_millis(300));
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("Janus did not open 127.0.0.1:8088 within 20 s; see {}", log.display())
}

/// A scenario: its name and the load config for one level.
struct Scenario {
    name: &'static str,
    levels: Vec<u32>,
    config: fn(u32, bool) -> (u32, u32, u32, bool, MediaOptions),
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

fn scenarios(smoke: bool, max_subscribers: u32, factor: f64) -> Vec<Scenario> {
    let ramp = |start: u32| ramp(start, max_subscribers, factor);
    // (rooms, publishers per room, subscribers per room, publishers subscribe, media)
    vec![
        Scenario {
            name: "livestream",
            levels: if smoke { vec![2] } else { ramp(50) },
            config: |n, _| (1, 1, n, false, MediaOptions::default()),
        },
        Scenario {
            name: "meeting",
            levels: if smoke { vec![1] } else { ramp_rooms(factor) },
            config: |rooms, smoke| (rooms, if smoke { 3 } else { 10 }, 0, true, MediaOptions::default()),
        },
        Scenario {
            name: "audio-only",
            levels: if smoke { vec![2] } else { ramp(50) },
            config: |n, smoke| {
                (
                    1,
                    if smoke { 2 } else { 10 },
                    n,
                    false,
                    MediaOptions { video: false, audio: true, ..Default::default() },
                )
            },
        },
    ]
}

fn ramp_rooms(factor: f64) -> Vec<u32> {
    ramp(1, 16, factor)
}

fn pin_self_to_cpu1() -> bool {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity on this process only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(1, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Run the whole benchmark and write the report files.
pub fn run(opts: BenchOptions) -> anyhow::Result<BenchReport> {
    std::fs::create_dir_all(&opts.out_dir).with_context(|| format!("could not create {}", opts.out_dir.display()))?;
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

    let mut servers: Vec<(ServerKind, Option<usize>)> =
        opts.workers.iter().map(|&w| (ServerKind::Simplesfu, Some(w.max(1)))).collect();
    if opts.janus_bin.is_some() {
        servers.push((ServerKind::Janus, None));
    }
    let mut levels = Vec::new();
    for scenario in scenarios(opts.smoke, opts.max_subscribers, opts.ramp_factor) {
        if !opts.scenarios.is_empty() && !opts.scenarios.iter().any(|s| s == scenario.name) {
            continue;
        }
        for &(kind, workers) in &servers {
            let label = server_label(kind, workers);
            for &level in &scenario.levels {
                let (rooms, publishers, subscribers, meeting, media) = (scenario.config)(level, opts.smoke);
                eprintln!("bench: {label} {} load {level}", scenario.name);
                let server = match kind {
                    ServerKind::Simplesfu => {
                        let w = workers.unwrap_or(1);
                        let mut server = start_simplesfu(&opts.simplesfu_bin, pinned, w)?;
                        if let Some(fraction) = opts.worker_cpu {
                            let pid: u32 = server.pid.parse().context("server pid")?;
                            server.cap = Some(crate::cpucap::cap_workers(pid, w, fraction)?);
                        }
                        server
                    }
                    ServerKind::Janus => {
                        let bin = opts.janus_bin.as_ref().ok_or_else(|| anyhow!("no Janus binary"))?;
                        let dir = opts.out_dir.join("janus-config");
                        write_janus_config(&dir, opts.janus_ip)?;
                        start_janus(bin, &dir, &opts.out_dir.join("janus.log"), pinned)?
                    }
                };
                let cfg = LoadConfig {
                    target: server.target.clone(),
                    rooms,
                    publishers_per_room: publishers,
                    subscribers_per_room: subscribers,
                    publishers_subscribe: meeting,
                    media,
                    duration: opts.duration,
                    join_rate: opts.join_rate,
                    // libnice (Janus) never pairs with a candidate on the loopback
                    // interface: the bot binds Janus's address then (seen here).
                    local_ip: if kind == ServerKind::Janus { opts.janus_ip } else { IpAddr::from([127, 0, 0, 1]) },
                    progress: true,
                };
                let mut samples: Vec<ProcSample> = Vec::new();
                let pid = server.pid.clone();
                let report = rt.block_on(load::run(cfg, &mut |edge| {
                    if let Ok(s) = procfs::sample(&pid) {
                        samples.push(s);
                    }
                    let _ = edge == Window::End;
                }));
                drop(server);
                let report = match report {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("bench: the load failed: {e:#}");
                        break;
                    }
                };
                let result = level_result(kind, workers, scenario.name, level, &samples, report, &floor);
                eprintln!(
                    "bench: {label} {} {level}: loss {:.2}%, p99 {:.1} ms, server CPU {:.0}%, {:.2} µs/packet ({:.1}x floor){}",
                    scenario.name,
                    result.loss_pct,
                    result.p99_ms,
                    result.server_cpu_pct,
                    result.cpu_us_per_forwarded_packet,
                    result.floor_multiple,
                    if result.passed { "" } else { " -- limit reached" }
                );
                let passed = result.passed;
                levels.push(result);
                if !passed {
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
        levels,
    };
    std::fs::write(opts.out_dir.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    std::fs::write(opts.out_dir.join("report.md"), crate::report::markdown(&report))?;
    if let Err(e) = crate::plot::draw(&report, &opts.out_dir.join("plot.png")) {
        eprintln!("bench: could not draw the plot: {e:#}");
    }
    if opts.smoke {
        check_smoke(&report)?;
    }
    Ok(report)
}

/// The smoke run's promise: every scenario ran, media got through, loss is low.
pub fn check_smoke(report: &BenchReport) -> anyhow::Result<()> {
    if report.levels.is_empty() {
        bail!("smoke: no level was measured");
    }
    for l in &report.levels {
        if l.forwarded_packets == 0 {
            bail!(
                "smoke: {:?} {} forwarded no packets: {}",
                l.server,
                l.scenario,
                l.report.first_error.as_deref().unwrap_or("no error reported")
            );
        }
        if l.loss_pct >= 5.0 {
            bail!("smoke: {:?} {} lost {:.1}% of packets (limit 5%)", l.server, l.scenario, l.loss_pct);
        }
    }
    eprintln!("bench: smoke OK: {} levels, media forwarded, loss below 5%", report.levels.len());
    Ok(())
}

/// "simplesfu", "simplesfu ×2" (workers), or "Janus".
pub fn server_label(server: ServerKind, workers: Option<usize>) -> String {
    match (server, workers) {
        (ServerKind::Simplesfu, Some(w)) if w > 1 => format!("simplesfu ×{w}"),
        (ServerKind::Simplesfu, _) => "simplesfu".into(),
        (ServerKind::Janus, _) => "Janus".into(),
    }
}

fn level_result(
    server: ServerKind,
    workers: Option<usize>,
    scenario: &str,
    load: u32,
    samples: &[ProcSample],
    report: LoadReport,
    floor: &Floor,
) -> LevelResult {
    let (cpu_s, rss) = match samples {
        [a, b, ..] => (b.cpu_s - a.cpu_s, b.rss_bytes),
        _ => (0.0, 0),
    };
    let forwarded = report.packets_received;
    let per_packet = if forwarded > 0 { cpu_s * 1e6 / forwarded as f64 } else { 0.0 };
    let loss = report.effective_loss_pct();
    let passed = loss < MAX_LOSS_PCT && report.latency.p99_ms < MAX_P99_MS && report.join_failures == 0;
    LevelResult {
        server,
        workers,
        scenario: scenario.to_string(),
        load,
        streams: report.receiving_streams,
        server_cpu_s: cpu_s,
        server_cpu_pct: 100.0 * cpu_s / report.duration_s.max(1e-9),
        server_rss_mb: rss as f64 / 1048576.0,
        forwarded_packets: forwarded,
        cpu_us_per_forwarded_packet: per_packet,
        forwarded_packets_per_cpu_s: if cpu_s > 0.0 { forwarded as f64 / cpu_s } else { 0.0 },
        floor_multiple: if floor.floor_us > 0.0 { per_packet / floor.floor_us } else { 0.0 },
        loss_pct: loss,
        p50_ms: report.latency.p50_ms,
        p99_ms: report.latency.p99_ms,
        max_ms: report.latency.max_ms,
        passed,
        report,
    }
}

/// UTC date and time, e.g. 2026-11-24T06-50-00 (no external time crate).
pub fn date_string() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
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
    format!("{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_double_up_to_the_maximum() {
        let s = scenarios(false, 800, 2.0);
        assert_eq!(s[0].levels, vec![50, 100, 200, 400, 800]);
        assert_eq!(s[1].levels, vec![1, 2, 4, 8, 16]);
        let smoke = scenarios(true, 800, 2.0);
        assert!(smoke.iter().all(|s| s.levels.len() == 1));
    }

    #[test]
    fn finer_ramps_step_at_least_one() {
        assert_eq!(
            ramp(50, 120, 1.25),
            vec![50, 63, 79, 99, 124].into_iter().filter(|&n| n <= 120).collect::<Vec<_>>()
        );
        assert_eq!(ramp(1, 6, 1.25), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn labels_name_the_worker_count() {
        assert_eq!(server_label(ServerKind::Simplesfu, Some(1)), "simplesfu");
        assert_eq!(server_label(ServerKind::Simplesfu, Some(2)), "simplesfu ×2");
        assert_eq!(server_label(ServerKind::Janus, None), "Janus");
    }

    #[test]
    fn janus_config_restricts_ice_and_plugins() {
        let dir = std::env::temp_dir().join(format!("janus-cfg-test-{}", std::process::id()));
        write_janus_config(&dir, IpAddr::from([127, 0, 0, 2])).expect("written");
        let main = std::fs::read_to_string(dir.join("janus.jcfg")).expect("janus.jcfg");
        assert!(main.contains("ice_enforce_list = \"127.0.0.2\""));
        assert!(main.contains("libjanus_streaming.so"), "the streaming plugin (ports 5002/5004) is disabled");
        assert!(std::fs::read_to_string(dir.join("janus.transport.http.jcfg")).expect("http").contains("port = 8088"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dates_are_civil() {
        let d = date_string();
        assert_eq!(d.len(), 19, "{d}");
        assert!(d.starts_with("20"));
    }
}
