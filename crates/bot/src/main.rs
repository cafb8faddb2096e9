//! The `simplesfu-bot` command: `run` a load against a server, measure the
//! `floor` cost of forwarding a packet on this machine, or run the `bench`
//! harness. Only wiring here.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use simplesfu_bot::load::{self, LoadConfig, Target};
use simplesfu_bot::media::MediaOptions;
use simplesfu_bot::speakers::LevelSchedule;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "simplesfu-bot",
    version,
    about = "Load-test peers and benchmark harness for simplesfu"
)]
struct Cli {
    /// Log level or tracing filter (logs go to stderr).
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one load against a server and print a summary.
    Run(RunArgs),
    /// Measure the floor: CPU µs of one 1200-byte loopback UDP send (sendmmsg)
    /// plus one AES-256-GCM seal of 1200 bytes.
    Floor {
        /// Packets per measurement round.
        #[arg(long, default_value_t = 200_000)]
        packets: usize,
    },
    /// The benchmark harness (bench/run calls this): scenarios against
    /// simplesfu and optionally Janus, report into --out.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Output directory (report.md, report.json, plot.png).
    #[arg(long)]
    out: PathBuf,
    /// The simplesfu binary to start.
    #[arg(long)]
    simplesfu_bin: PathBuf,
    /// The Janus binary; without it, Janus is not measured.
    #[arg(long)]
    janus_bin: Option<PathBuf>,
    /// The address Janus gathers as its ICE candidate.
    #[arg(long, default_value = "127.0.0.2")]
    janus_ip: IpAddr,
    /// Also measure the original SimpleMediasoupPeer server (Node.js on
    /// mediasoup) installed here by bench/mediasoup-setup: its npm install,
    /// also its working directory with the DTLS certificate.
    #[arg(long, requires_all = ["mediasoup_worker_bin", "mediasoup_launcher"])]
    mediasoup_dir: Option<PathBuf>,
    /// The original's mediasoup-worker binary.
    #[arg(long, requires = "mediasoup_dir")]
    mediasoup_worker_bin: Option<PathBuf>,
    /// The script that starts the original (bench/mediasoup-server.cjs).
    #[arg(long, requires = "mediasoup_dir")]
    mediasoup_launcher: Option<PathBuf>,
    /// The Node.js binary that runs the original.
    #[arg(long, default_value = "node")]
    node_bin: PathBuf,
    /// Tiny load for a few seconds: checks the harness, measures nothing useful.
    #[arg(long)]
    smoke: bool,
    /// Only these scenarios (livestream, meeting, audio-only, big-room,
    /// constrained, estimation, whep); default all.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Measurement window per level, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Peers joining per second.
    #[arg(long, default_value_t = 100.0)]
    join_rate: f64,
    /// Largest subscriber count tried by ramped scenarios.
    #[arg(long, default_value_t = 1600)]
    max_subscribers: u32,
    /// Do not pin the server to CPU 0 and the bot to CPU 1.
    #[arg(long)]
    no_pin: bool,
    /// Media workers of the simplesfu under test (its `--workers`); a list
    /// (`1,2`) ramps each count and adds a scaling table. With more than one
    /// worker, either run with --no-pin on a machine with a free core per
    /// worker and for the bot, or cap every worker with --worker-cpu.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    workers: Vec<usize>,
    /// Cap each simplesfu worker thread at this fraction of a core (cgroup v1
    /// cpu quota, needs root), so 1 and 2 workers compare on a 2-core machine.
    #[arg(long)]
    worker_cpu: Option<f64>,
    /// Each ramp step multiplies the load by this factor (at least +1).
    #[arg(long, default_value_t = 2.0)]
    ramp_factor: f64,
    /// big-room: audio-only publishers in the room.
    #[arg(long, default_value_t = 300)]
    big_room_peers: u32,
    /// big-room: publishers that talk (50 packets/s); the others are silent
    /// (opus DTX, a packet every 400 ms).
    #[arg(long, default_value_t = 3)]
    big_room_speakers: u32,
    /// big-room: joiners speaking v1 as the published 0.0.20 client, entering
    /// the full room.
    #[arg(long, default_value_t = 3)]
    big_room_joiners: u32,
    /// big-room: one level per value of the server's
    /// --available-producers-interval-ms (1000 is its default; 0 turns the
    /// periodic resend off).
    #[arg(long, value_delimiter = ',', default_value = "1000,0")]
    big_room_resend_ms: Vec<u64>,
    /// Viewers in the `constrained` scenario, a third each behind a 300
    /// kbit/s, a 1 Mbit/s and an unlimited emulated downlink.
    #[arg(long, default_value_t = 30)]
    constrained_viewers: u32,
    /// One more argument for every simplesfu started (repeat it; e.g.
    /// `--simplesfu-arg=--bandwidth-estimation`); the report names them.
    #[arg(long, allow_hyphen_values = true)]
    simplesfu_arg: Vec<String>,
}

#[derive(Args)]
struct RunArgs {
    /// simplesfu's URL (http://host:port). Several, comma-separated, are
    /// nodes of one cluster (sharing Redis and `cluster.secret`): the
    /// publishers connect to the first, the receivers to the others in turn.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:3000")]
    server: Vec<String>,
    /// Drive Janus VideoRoom at this HTTP API URL (http://host:8088/janus) instead of simplesfu.
    #[arg(long)]
    janus: Option<String>,
    /// The server at --server is the original SimpleMediasoupPeer server
    /// (same protocol, no `activeSpeaker`: no speaker report).
    #[arg(long, conflicts_with = "janus")]
    original: bool,
    /// Number of rooms.
    #[arg(long, default_value_t = 1)]
    rooms: u32,
    /// Publishers per room.
    #[arg(long, default_value_t = 1)]
    publishers: u32,
    /// Receive-only subscribers per room.
    #[arg(long, default_value_t = 2)]
    subscribers: u32,
    /// Viewers per room that play the room over WHEP (`POST
    /// /whep/<room>`, simplesfu only), besides --subscribers: each offers
    /// recvonly video (and audio with --audio) and plays the room's first
    /// producers; its session is DELETEd at the end. With a server that
    /// runs with tokens, a token with the subscribe right goes in the
    /// environment variable SIMPLESFU_BOT_WHEP_TOKEN.
    #[arg(long, default_value_t = 0)]
    whep_viewers: u32,
    /// The WHEP POST's query: `peer=<peerId>` or `label=<label>`.
    #[arg(long, requires = "whep_viewers")]
    whep_query: Option<String>,
    // From the environment, not a flag: a token stays out of the process list.
    #[arg(skip = std::env::var("SIMPLESFU_BOT_WHEP_TOKEN").ok())]
    whep_token: Option<String>,
    /// Publishers also receive every other publisher of their room (a meeting).
    #[arg(long)]
    meeting: bool,
    /// Video bitrate of a publisher, bits per second (the top layer with --simulcast).
    #[arg(long, default_value_t = 1_500_000)]
    bitrate: u64,
    /// Video packets per second of a publisher.
    #[arg(long, default_value_t = 200)]
    packet_rate: u32,
    /// Video frames per second (packets are sent in per-frame bursts).
    #[arg(long, default_value_t = 25)]
    fps: u32,
    /// Do not send video.
    #[arg(long)]
    no_video: bool,
    /// Also send opus-like audio (50 packets/s).
    #[arg(long)]
    audio: bool,
    /// Send three VP8 simulcast layers (r0, r1, r2).
    #[arg(long)]
    simulcast: bool,
    /// Only this many publishers per room talk; the others send silent audio
    /// (opus DTX: a packet every 400 ms). Default: everyone talks.
    #[arg(long)]
    speakers: Option<u32>,
    /// Subscribers speak v1 exactly as the published 0.0.20 client does.
    #[arg(long)]
    published_client: bool,
    /// Audio levels the publishers send (ssrc-audio-level), by their place in
    /// the room, in dBov (0 loudest, -127 silence), the last value repeating:
    /// steps `[<seconds>s:]<dBov>,<dBov>,...` separated by spaces, times from
    /// the start of the measurement window. `-20,-80` keeps the first
    /// publisher loud and the rest quiet; `-80 0s:-20,-80 4s:-80,-20,-80`
    /// makes the first loud when the window starts, then the second at 4 s.
    /// The report says when the server announced each loud publisher.
    /// Default: talking publishers at -30 dBov, silent ones (--speakers) at -127.
    #[arg(long, allow_hyphen_values = true, value_name = "SCHEDULE")]
    audio_levels: Option<LevelSchedule>,
    /// The observing peer (the first receiver of the first room) asks for
    /// `audioLevels` pushes; the report times them.
    #[arg(long)]
    subscribe_audio_levels: bool,
    /// Emulated downlinks of the receivers in kbit/s, taken in turn
    /// (`300,1000,0`: a third each at 300 kbit/s, 1 Mbit/s and unlimited; 0
    /// is unlimited). Each receiver's datagrams queue (100 ms of the rate)
    /// and leave at the rate; what overflows is dropped. The report gets one
    /// row per class: video bitrate, loss, final layers, stalls.
    #[arg(long, value_delimiter = ',')]
    downlinks: Vec<u32>,
    /// Receivers send transport-wide congestion feedback (TWCC), as browsers
    /// do, so the server estimates their downlinks (on by default with
    /// --downlinks).
    #[arg(long)]
    congestion_feedback: Option<bool>,
    /// Seconds between every receiver having media and the measurement window.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Measurement window in seconds (after everyone joined and media flows).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Peers joining per second.
    #[arg(long, default_value_t = 50.0)]
    join_rate: f64,
    /// Local address the bot's UDP sockets bind to.
    #[arg(long, default_value = "127.0.0.1")]
    local_ip: IpAddr,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log_level)
        .with_context(|| format!("invalid log level `{}`", cli.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Run(args) => run_load(args),
        Command::Floor { packets } => {
            let f = simplesfu_bot::floor::measure(packets.max(1000))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&f).context("floor to JSON")?
            );
            Ok(())
        }
        Command::Bench(b) => {
            let report = simplesfu_bot::bench::run(simplesfu_bot::bench::BenchOptions {
                out_dir: b.out.clone(),
                simplesfu_bin: b.simplesfu_bin,
                janus_bin: b.janus_bin,
                janus_ip: b.janus_ip,
                mediasoup: match (
                    b.mediasoup_dir,
                    b.mediasoup_worker_bin,
                    b.mediasoup_launcher,
                ) {
                    (Some(server_dir), Some(worker_bin), Some(launcher)) => {
                        Some(simplesfu_bot::bench::MediasoupOriginal {
                            server_dir,
                            worker_bin,
                            launcher,
                            node_bin: b.node_bin,
                        })
                    }
                    _ => None,
                },
                smoke: b.smoke,
                scenarios: b.scenarios,
                duration: Duration::from_secs_f64(b.duration.max(1.0)),
                join_rate: b.join_rate,
                pin: !b.no_pin,
                max_subscribers: b.max_subscribers,
                workers: b.workers,
                worker_cpu: b.worker_cpu,
                simplesfu_args: b.simplesfu_arg,
                ramp_factor: b.ramp_factor.max(1.01),
                big_room: simplesfu_bot::bench::BigRoom {
                    peers: b.big_room_peers.max(1),
                    speakers: b.big_room_speakers,
                    joiners: b.big_room_joiners.max(1),
                    resend_ms: b.big_room_resend_ms,
                },
                constrained_viewers: b.constrained_viewers,
            })?;
            eprintln!(
                "bench: {} levels measured; report in {}",
                report.levels.len(),
                b.out.join("report.md").display()
            );
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(simplesfu_bot::procfs::allowed_cpus())
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

fn run_load(a: RunArgs) -> anyhow::Result<()> {
    if a.whep_viewers > 0 && (a.janus.is_some() || a.original) {
        anyhow::bail!("--whep-viewers plays from simplesfu only (not with --janus or --original)");
    }
    let mut urls = a.server.into_iter();
    let first = urls.next().context("--server needs a URL")?;
    let spread: Vec<String> = urls.collect();
    if !spread.is_empty() && (a.janus.is_some() || a.original) {
        anyhow::bail!("several --server URLs are nodes of one simplesfu cluster (not with --janus or --original)");
    }
    let target = match a.janus {
        Some(url) => Target::Janus(url),
        None if a.original => Target::Mediasoup(first),
        None => Target::Simplesfu(first),
    };
    let cfg = LoadConfig {
        target,
        spread,
        rooms: a.rooms,
        publishers_per_room: a.publishers,
        subscribers_per_room: a.subscribers,
        whep_viewers_per_room: a.whep_viewers,
        whep: simplesfu_bot::whep::WhepOptions {
            token: a.whep_token,
            query: a.whep_query,
        },
        publishers_subscribe: a.meeting,
        published_client: a.published_client,
        subscribe_audio_levels: a.subscribe_audio_levels,
        media: MediaOptions {
            video: !a.no_video,
            video_bitrate_bps: a.bitrate,
            video_packets_per_s: a.packet_rate,
            fps: a.fps,
            audio: a.audio,
            simulcast: a.simulcast,
            speakers_per_room: a.speakers,
            audio_levels: a.audio_levels.unwrap_or_default(),
        },
        congestion_feedback: a.congestion_feedback.unwrap_or(!a.downlinks.is_empty()),
        downlinks_kbps: a.downlinks.iter().map(|&k| (k > 0).then_some(k)).collect(),
        warmup: Duration::from_secs_f64(a.warmup.max(0.0)),
        duration: Duration::from_secs_f64(a.duration.max(0.5)),
        join_rate: a.join_rate,
        local_ip: a.local_ip,
        progress: !a.quiet,
    };
    let report = runtime()?.block_on(load::run(cfg, &mut |_| {}))?;
    print!("{}", report.table());
    if let Some(path) = a.json {
        let text = serde_json::to_string_pretty(&report).context("report to JSON")?;
        std::fs::write(&path, text)
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    Ok(())
}
