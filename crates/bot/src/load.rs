//! One load run: peers join at a set rate (publishers first), the run waits
//! until every receiver has media from every publisher it should, measures
//! for a fixed window, and returns a report: media (loss, latency) and what
//! became of the consumers the server pushed (resumed, refused, time to
//! first packet) and, with audio, how the server followed the publishers'
//! audio levels (`activeSpeaker`, `audioLevels` to one observing peer).
//! Viewers may also play a room over WHEP ([`crate::whep`]); their sessions
//! are DELETEd when the run ends. A progress line goes to stderr once a
//! second.

use crate::media::MediaOptions;
use crate::payload::monotonic_ns;
use crate::procfs;
use crate::sfu::{ConsumerCounters, JoinedPeer, PeerSpec};
use crate::speakers::SpeakerReport;
use crate::stats::{percent, Histogram, Kind, KindTotals, LatencySummary, ViewTotals};
use crate::transport::{RunState, TransportHandle};
use crate::whep::{WhepOptions, WhepSession};
use anyhow::bail;
use serde::Serialize;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Which server the peers talk to.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", content = "url", rename_all = "lowercase")]
pub enum Target {
    /// simplesfu at `http://host:port`.
    Simplesfu(String),
    /// Janus VideoRoom, HTTP API at `http://host:port/janus`.
    Janus(String),
    /// The original SimpleMediasoupPeer server (Node.js on mediasoup) at
    /// `http://host:port`: the same protocol v1, without simplesfu's
    /// additions (`activeSpeaker`, `audioLevels`, error codes).
    Mediasoup(String),
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Simplesfu(_) => "simplesfu",
            Target::Janus(_) => "janus",
            Target::Mediasoup(_) => "mediasoup",
        }
    }
}

/// The shape of one run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadConfig {
    pub target: Target,
    /// More nodes of one simplesfu cluster (`--server a,b,c`): the
    /// publishers connect to the target's URL, the receivers spread over
    /// these in turn. Empty: everyone on the target.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spread: Vec<String>,
    pub rooms: u32,
    pub publishers_per_room: u32,
    /// Receive-only peers per room.
    pub subscribers_per_room: u32,
    /// Viewers per room that play it over WHEP (simplesfu only), besides
    /// the subscribers: each plays the room's first video (and audio).
    pub whep_viewers_per_room: u32,
    /// How the WHEP viewers ask to play (the token stays out of reports).
    #[serde(skip)]
    pub whep: WhepOptions,
    /// Publishers also receive everyone else in their room.
    pub publishers_subscribe: bool,
    /// Subscribers speak v1 exactly as the published 0.0.20 client does.
    pub published_client: bool,
    /// The observing peer (the first receiver of the first room) asks for
    /// `audioLevels` (simplesfu only).
    pub subscribe_audio_levels: bool,
    pub media: MediaOptions,
    /// Emulated downlinks of the receivers in kbit/s, taken in turn (the
    /// i-th receiver gets `downlinks_kbps[i % len]`; None: unlimited). Empty:
    /// every receiver unlimited. A report then has one row per class.
    pub downlinks_kbps: Vec<Option<u32>>,
    /// Receivers send transport-wide congestion feedback, as browsers do.
    pub congestion_feedback: bool,
    /// From the moment every receiver has media to the measurement window:
    /// time for the server to fit each viewer's link.
    #[serde(skip)]
    pub warmup: Duration,
    /// Measurement window.
    #[serde(skip)]
    pub duration: Duration,
    /// Peers started per second.
    pub join_rate: f64,
    #[serde(skip)]
    pub local_ip: IpAddr,
    /// Print the progress line.
    #[serde(skip)]
    pub progress: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KindReport {
    pub streams: u64,
    pub packets: u64,
    pub expected: u64,
    pub lost: u64,
    pub loss_pct: f64,
    pub duplicates: u64,
    pub too_late: u64,
    pub latency: LatencySummary,
    pub kbps_per_stream: f64,
}

impl KindReport {
    fn from_totals(t: &KindTotals, seconds: f64) -> KindReport {
        KindReport {
            streams: t.streams,
            packets: t.packets,
            expected: t.expected,
            lost: t.lost,
            loss_pct: t.loss_pct(),
            duplicates: t.duplicates,
            too_late: t.too_late,
            latency: t.latency.summary_ms(),
            kbps_per_stream: if t.streams == 0 || seconds <= 0.0 {
                0.0
            } else {
                t.bytes as f64 * 8.0 / 1000.0 / seconds / t.streams as f64
            },
        }
    }
}

/// What one class of receivers (one downlink) saw of their video.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClassReport {
    /// The class's emulated downlink in kbit/s (None: unlimited).
    pub downlink_kbps: Option<u32>,
    pub receivers: u64,
    /// Video received, kbit/s per receiver.
    pub video_kbps: f64,
    /// Video lost after repair, from the consumers' own sequence numbers.
    pub video_loss_pct: f64,
    /// Audio lost (stamp counters).
    pub audio_loss_pct: f64,
    /// Video consumers on each simulcast layer (index) at the end of the window.
    pub final_layers: Vec<u64>,
    pub layer_switches: u64,
    /// Waits of more than 200 ms between frames, summed over the class's
    /// video consumers (a stall lasting to the end of the window included).
    pub frame_gaps_over_200ms: u64,
    pub max_frame_gap_ms: f64,
    /// Video consumers the class should have had that delivered nothing in the window.
    pub video_consumers_missing: u64,
    pub video_latency: LatencySummary,
    /// Datagrams the emulated downlink dropped (its queue full), percent of
    /// those that reached it.
    pub link_drop_pct: f64,
}

impl ClassReport {
    /// The layer most of the class ended on.
    pub fn usual_layer(&self) -> Option<usize> {
        self.final_layers
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .max_by_key(|(_, n)| **n)
            .map(|(i, _)| i)
    }
}

/// Receivers whose own first-media summary the report lists, at most.
pub const RECEIVERS_LISTED: usize = 16;

/// What became of the consumers the server pushed (simplesfu only), and how
/// long each took from `joinRoom` to its first packet.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConsumerReport {
    /// `createConsumer` pushes received.
    pub pushed: u64,
    /// `resumeConsumer` acked with success.
    pub resumed: u64,
    /// `resumeConsumer` refused with `limit_reached`.
    pub refused_for_rate: u64,
    /// Other failures to consume or resume.
    pub failed: u64,
    /// Streams that delivered at least one packet, over all receivers.
    pub with_media: u64,
    /// From `joinRoom` to each stream's first packet, all receivers.
    pub join_to_first_media: LatencySummary,
    /// The same per receiver, when there are at most [`RECEIVERS_LISTED`].
    pub per_receiver: Vec<LatencySummary>,
}

impl ConsumerReport {
    fn add(&mut self, c: &ConsumerCounters) {
        self.pushed += c.pushed.load(Ordering::Relaxed);
        self.resumed += c.resumed.load(Ordering::Relaxed);
        self.refused_for_rate += c.refused_for_rate.load(Ordering::Relaxed);
        self.failed += c.failed.load(Ordering::Relaxed);
    }
}

/// What became of the WHEP viewers' sessions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WhepReport {
    /// Sessions the server answered with `201 Created`.
    pub sessions: u64,
    /// From sending the POST to reading the answer, per session.
    pub post_to_answer: LatencySummary,
    /// Sessions whose DELETE the server confirmed when the run ended.
    pub deleted: u64,
    /// The first DELETE that failed (or did not finish in time).
    pub delete_error: Option<String>,
}

impl WhepReport {
    /// How many sessions were deleted, and the first failure if any:
    /// `200` or `198 (first failure: ...)`.
    pub fn deleted_text(&self) -> String {
        match &self.delete_error {
            Some(e) => format!("{} (first failure: {e})", self.deleted),
            None => self.deleted.to_string(),
        }
    }
}

/// How long the run waits for the WHEP viewers' DELETEs at its end.
const WHEP_DELETE_WAIT: Duration = Duration::from_secs(10);

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub config: LoadConfig,
    pub duration_s: f64,
    pub peers: u64,
    pub peers_joined: u64,
    pub join_failures: u64,
    pub first_error: Option<String>,
    /// Streams the receivers should get (each receiver: each other publisher's audio/video).
    pub expected_streams: u64,
    /// Streams that delivered at least one packet in the window.
    pub receiving_streams: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub received_packets_per_s: f64,
    pub loss_pct: f64,
    pub latency: LatencySummary,
    pub video: KindReport,
    pub audio: KindReport,
    /// From `joinRoom` to the first stamped packet, per receiver.
    pub join_to_first_packet: LatencySummary,
    pub consumers: ConsumerReport,
    pub receivers_without_media: u64,
    /// Signaling the peers received in the window (socket.io text, all
    /// peers), kB per second: mostly `availableProducers` at steady state.
    pub signaling_kb_per_s: f64,
    /// The bot's own CPU use in the window, percent of one core.
    pub bot_cpu_pct: f64,
    /// Number of CPUs the bot may use.
    pub bot_cpus: usize,
    /// What the observing peer saw of the active speaker and audio levels
    /// (simplesfu with audio only).
    pub speakers: Option<SpeakerReport>,
    /// `audioLevels` pushes to peers that did not ask for them (any is a
    /// server bug).
    pub audio_levels_unasked: u64,
    /// One row per downlink class, when the run has downlinks.
    pub classes: Vec<ClassReport>,
    /// The WHEP viewers' sessions, when the run has any.
    pub whep: Option<WhepReport>,
}

/// Edges of the measurement window, for a caller that samples the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Start,
    End,
}

struct Peer {
    spec: PeerSpec,
    joined: JoinedPeer,
    /// A WHEP viewer's session.
    whep: Option<WhepSession>,
}

fn expected_streams_per_receiver(cfg: &LoadConfig, spec: &PeerSpec) -> u64 {
    let kinds = cfg.media.video as u64 + cfg.media.audio as u64;
    if spec.whep {
        // One m-line per kind, each playing one producer of the room.
        return if cfg.publishers_per_room > 0 {
            kinds
        } else {
            0
        };
    }
    let others = if spec.publish {
        cfg.publishers_per_room.saturating_sub(1)
    } else {
        cfg.publishers_per_room
    };
    others as u64 * kinds
}

fn room_name(r: u32) -> String {
    format!("bench-{r}")
}

/// Every peer of the run: publishers first, then subscribers, then WHEP
/// viewers; the first protocol v1 receiver of the first room observes the
/// active speaker.
fn peer_specs(cfg: &LoadConfig) -> Vec<PeerSpec> {
    let mut specs = Vec::new();
    let mut index = 0;
    let mut receivers = 0;
    for (publish, whep) in [(true, false), (false, false), (false, true)] {
        for r in 0..cfg.rooms {
            let n = match (publish, whep) {
                (true, _) => cfg.publishers_per_room,
                (false, false) => cfg.subscribers_per_room,
                (false, true) => cfg.whep_viewers_per_room,
            };
            for i in 0..n {
                let subscribe = !publish || cfg.publishers_subscribe;
                let downlink_kbps = match (subscribe, cfg.downlinks_kbps.len()) {
                    (true, len) if len > 0 => {
                        receivers += 1;
                        cfg.downlinks_kbps[(receivers - 1) % len]
                    }
                    _ => None,
                };
                specs.push(PeerSpec {
                    room: room_name(r),
                    publish,
                    subscribe,
                    index,
                    room_publishers: cfg.publishers_per_room,
                    silent: publish
                        && cfg
                            .media
                            .speakers_per_room
                            .is_some_and(|speakers| i >= speakers),
                    place: if publish { i } else { 0 },
                    observer: false,
                    subscribe_audio_levels: false,
                    published_client: !publish && !whep && cfg.published_client,
                    downlink_kbps,
                    // A WHEP viewer negotiates transport-cc as a browser does.
                    congestion_feedback: subscribe && (whep || cfg.congestion_feedback),
                    whep,
                });
                index += 1;
            }
        }
    }
    if let Some(observer) = specs
        .iter_mut()
        .find(|s| s.room == room_name(0) && s.subscribe && !s.whep)
    {
        observer.observer = true;
        observer.subscribe_audio_levels = cfg.subscribe_audio_levels;
    }
    specs
}

/// The node `spec` connects to: the target's URL for a publisher (or
/// without `spread`), else the spread's URLs in turn.
fn url_of(cfg: &LoadConfig, spec: &PeerSpec, url: &str) -> String {
    match cfg.spread.len() {
        0 => url.to_owned(),
        _ if spec.publish => url.to_owned(),
        n => cfg.spread[spec.index as usize % n].clone(),
    }
}

async fn join_peer(
    cfg: &LoadConfig,
    spec: &PeerSpec,
    run: Arc<RunState>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(JoinedPeer, Option<WhepSession>)> {
    match &cfg.target {
        Target::Simplesfu(url) if !cfg.spread.is_empty() => {
            let url = url_of(cfg, spec, url);
            if spec.whep {
                let (peer, session) =
                    crate::whep::join(&url, spec, &cfg.media, &cfg.whep, cfg.local_ip, run, stop)
                        .await?;
                return Ok((peer, Some(session)));
            }
            crate::sfu::join(&url, spec, &cfg.media, cfg.local_ip, run, stop)
                .await
                .map(|p| (p, None))
        }
        Target::Simplesfu(url) if spec.whep => {
            let (peer, session) =
                crate::whep::join(url, spec, &cfg.media, &cfg.whep, cfg.local_ip, run, stop)
                    .await?;
            Ok((peer, Some(session)))
        }
        _ if spec.whep => bail!("WHEP viewers play from simplesfu only"),
        Target::Simplesfu(url) | Target::Mediasoup(url) => {
            crate::sfu::join(url, spec, &cfg.media, cfg.local_ip, run, stop)
                .await
                .map(|p| (p, None))
        }
        Target::Janus(url) => crate::janus::join(url, spec, &cfg.media, cfg.local_ip, run, stop)
            .await
            .map(|p| (p, None)),
    }
}

/// Wait (bounded) for every WHEP viewer's DELETE, sent once the run stopped.
async fn end_whep_sessions(peers: &mut [Peer]) -> WhepReport {
    let mut report = WhepReport::default();
    let mut answers = Histogram::default();
    let deadline = Instant::now() + WHEP_DELETE_WAIT;
    for session in peers.iter_mut().filter_map(|p| p.whep.as_mut()) {
        report.sessions += 1;
        answers.record_us((session.answer_ms * 1000.0) as u64);
        let left = deadline.saturating_duration_since(Instant::now());
        let outcome = match tokio::time::timeout(left, &mut session.leave).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("{e:#}")),
            Ok(Err(e)) => Err(format!("the DELETE task failed: {e}")),
            Err(_) => {
                session.leave.abort();
                Err(format!(
                    "no answer to the DELETE within {WHEP_DELETE_WAIT:?}"
                ))
            }
        };
        match outcome {
            Ok(()) => report.deleted += 1,
            Err(e) => {
                report.delete_error.get_or_insert(e);
            }
        }
    }
    report.post_to_answer = answers.summary_ms();
    report
}

fn receivers_of(peers: &[Peer]) -> impl Iterator<Item = (&PeerSpec, &TransportHandle)> {
    peers
        .iter()
        .filter_map(|p| p.joined.recv.as_ref().map(|r| (&p.spec, r)))
}

fn packets_sent(peers: &[Peer]) -> u64 {
    peers
        .iter()
        .filter_map(|p| p.joined.send.as_ref())
        .map(|s| s.counters.packets_sent.load(Ordering::Relaxed))
        .sum()
}

fn packets_received(peers: &[Peer]) -> u64 {
    receivers_of(peers)
        .map(|(_, r)| r.stats.lock().map(|s| s.packets()).unwrap_or(0))
        .sum()
}

/// Neither a level schedule nor level pushes asked for: nothing to say about speakers.
fn speakers_unasked(cfg: &LoadConfig) -> bool {
    cfg.media.audio_levels.steps.is_empty() && !cfg.subscribe_audio_levels
}

fn progress(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{line}");
    let _ = err.flush();
}

/// Run one load. `window` is called at the start and the end of the
/// measurement window (the harness samples the server there).
pub async fn run(cfg: LoadConfig, window: &mut dyn FnMut(Window)) -> anyhow::Result<LoadReport> {
    let run_state = Arc::new(RunState::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let specs = peer_specs(&cfg);
    let total = specs.len() as u64;
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / cfg.join_rate.max(0.1));
    let cfg = Arc::new(cfg);

    // Join: publishers first (all of them before any subscriber, as a live
    // stream would be), paced; each join in its own task.
    let (publishers, subscribers): (Vec<_>, Vec<_>) = specs.into_iter().partition(|s| s.publish);
    let mut peers = Vec::new();
    let mut failures = 0u64;
    let mut failed_expected = 0u64;
    let mut first_error = None;
    let mut next = Instant::now();
    let mut started_joins = 0u64;
    for group in [publishers, subscribers] {
        let mut tasks = tokio::task::JoinSet::new();
        for spec in group {
            tokio::time::sleep_until(next.into()).await;
            next = Instant::now().max(next) + interval;
            let (task_cfg, run_state, stop) = (cfg.clone(), run_state.clone(), stop_rx.clone());
            tasks.spawn(async move {
                let r = tokio::time::timeout(
                    Duration::from_secs(60),
                    join_peer(&task_cfg, &spec, run_state, stop),
                )
                .await;
                let r = r.unwrap_or_else(|_| Err(anyhow::anyhow!("join timed out after 60 s")));
                (spec, r)
            });
            started_joins += 1;
            if cfg.progress && started_joins % 10 == 1 {
                progress(&format!(
                    "[{:6.1}s] joining {}/{} peers",
                    started.elapsed().as_secs_f64(),
                    started_joins,
                    total
                ));
            }
        }
        while let Some(res) = tasks.join_next().await {
            match res {
                Ok((spec, Ok((joined, whep)))) => peers.push(Peer { spec, joined, whep }),
                Ok((spec, Err(e))) => {
                    failures += 1;
                    if spec.subscribe {
                        failed_expected += expected_streams_per_receiver(&cfg, &spec);
                    }
                    tracing::debug!(peer = spec.index, error = %e, "join failed");
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
                Err(e) => {
                    failures += 1;
                    first_error.get_or_insert_with(|| format!("join task failed: {e}"));
                }
            }
        }
    }

    // Settle: wait (bounded) until every receiver has media from every
    // stream it should get, then one more second.
    let settle_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = receivers_of(&peers)
            .filter(|(spec, r)| {
                let expected = expected_streams_per_receiver(&cfg, spec);
                r.stats
                    .lock()
                    .map(|s| (s.streams_seen() as u64) < expected)
                    .unwrap_or(true)
            })
            .count();
        if cfg.progress {
            progress(&format!(
                "[{:6.1}s] {} peers joined, {} failed, {} receivers waiting for media",
                started.elapsed().as_secs_f64(),
                peers.len(),
                failures,
                waiting
            ));
        }
        if waiting == 0 || Instant::now() >= settle_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let warmup_end = Instant::now() + cfg.warmup;
    while Instant::now() < warmup_end {
        if cfg.progress {
            progress(&format!(
                "[{:6.1}s] warming up for {:.0} s",
                started.elapsed().as_secs_f64(),
                cfg.warmup.as_secs_f64()
            ));
        }
        tokio::time::sleep(
            warmup_end
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1)),
        )
        .await;
    }

    // Measure.
    let bot_before = procfs::sample("self").ok();
    let sent_before = packets_sent(&peers);
    let signaling_before = run_state.signaling_bytes.load(Ordering::Relaxed);
    window(Window::Start);
    let window_start_ns = monotonic_ns();
    run_state
        .window_start_ns
        .store(window_start_ns, Ordering::Relaxed);
    run_state.measuring.store(true, Ordering::Relaxed);
    let window_start = Instant::now();
    let mut last_rx = 0;
    while window_start.elapsed() < cfg.duration {
        tokio::time::sleep(
            Duration::from_secs(1).min(cfg.duration.saturating_sub(window_start.elapsed())),
        )
        .await;
        if cfg.progress {
            let rx = packets_received(&peers);
            let mut video = KindTotals::default();
            for (_, r) in receivers_of(&peers) {
                if let Ok(s) = r.stats.lock() {
                    video.merge(&s.totals(Kind::Video));
                    video.merge(&s.totals(Kind::Audio));
                }
            }
            progress(&format!(
                "[{:6.1}s] measuring {:4.1}/{:.0}s: {} peers, {} pkt/s received, loss {:.2}%, p99 {:.1} ms",
                started.elapsed().as_secs_f64(),
                window_start.elapsed().as_secs_f64(),
                cfg.duration.as_secs_f64(),
                peers.len(),
                rx - last_rx,
                video.loss_pct(),
                video.latency.summary_ms().p99_ms
            ));
            last_rx = rx;
        }
    }
    run_state.measuring.store(false, Ordering::Relaxed);
    let window_end_ns = monotonic_ns();
    window(Window::End);
    let seconds = window_start.elapsed().as_secs_f64();
    let sent = packets_sent(&peers) - sent_before;
    let signaling = run_state.signaling_bytes.load(Ordering::Relaxed) - signaling_before;
    let bot_after = procfs::sample("self").ok();
    if cfg.progress {
        eprintln!();
    }

    // Collect.
    let (mut video, mut audio) = (KindTotals::default(), KindTotals::default());
    let mut join_times = Histogram::default();
    // Streams of receivers that never joined count as expected and missing.
    let mut expected_streams = failed_expected;
    let mut without_media = 0;
    let mut consumers = ConsumerReport::default();
    let mut first_media = Histogram::default();
    let listed = receivers_of(&peers).count() <= RECEIVERS_LISTED;
    for peer in &peers {
        consumers.add(&peer.joined.consumers);
    }
    for (spec, r) in receivers_of(&peers) {
        expected_streams += expected_streams_per_receiver(&cfg, spec);
        let Ok(s) = r.stats.lock() else { continue };
        video.merge(&s.totals(Kind::Video));
        audio.merge(&s.totals(Kind::Audio));
        match s.join_to_first_ms() {
            Some(ms) => join_times.record_us((ms * 1000.0) as u64),
            None if expected_streams_per_receiver(&cfg, spec) > 0 => without_media += 1,
            None => {}
        }
        consumers.with_media += s.streams_seen() as u64;
        let mut mine = Histogram::default();
        for ms in s.join_to_first_per_stream_ms() {
            mine.record_us((ms * 1000.0) as u64);
        }
        first_media.merge(&mine);
        if listed {
            consumers.per_receiver.push(mine.summary_ms());
        }
    }
    consumers.join_to_first_media = first_media.summary_ms();
    let classes = class_reports(&cfg, &peers, seconds, window_end_ns);
    let speakers = (cfg.media.audio && matches!(cfg.target, Target::Simplesfu(_))).then(|| {
        let mut publishers = vec![String::new(); cfg.publishers_per_room as usize];
        for p in peers
            .iter()
            .filter(|p| p.spec.publish && p.spec.room == room_name(0))
        {
            if let Some(slot) = publishers.get_mut(p.spec.place as usize) {
                slot.clone_from(&p.joined.peer_id);
            }
        }
        let log = run_state
            .observer
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        SpeakerReport::new(
            &log,
            &cfg.media.audio_levels,
            &publishers,
            window_start_ns,
            cfg.duration,
            cfg.subscribe_audio_levels,
        )
    });
    let _ = stop_tx.send(true);
    let whep = if cfg.whep_viewers_per_room > 0 {
        Some(end_whep_sessions(&mut peers).await)
    } else {
        None
    };
    let mut all = video.clone();
    all.merge(&audio);
    let bot_cpu_pct = match (bot_before, bot_after) {
        (Some(a), Some(b)) if seconds > 0.0 => 100.0 * (b.cpu_s - a.cpu_s) / seconds,
        _ => 0.0,
    };
    // Give the transports a moment to stop before the caller tears the server down.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cfg = Arc::try_unwrap(cfg).unwrap_or_else(|c| (*c).clone());
    Ok(LoadReport {
        duration_s: seconds,
        peers: total,
        peers_joined: peers.len() as u64,
        join_failures: failures,
        first_error,
        expected_streams,
        receiving_streams: all.streams,
        packets_sent: sent,
        packets_received: all.packets,
        received_packets_per_s: all.packets as f64 / seconds.max(1e-9),
        loss_pct: all.loss_pct(),
        latency: all.latency.summary_ms(),
        video: KindReport::from_totals(&video, seconds),
        audio: KindReport::from_totals(&audio, seconds),
        join_to_first_packet: join_times.summary_ms(),
        consumers,
        receivers_without_media: without_media,
        signaling_kb_per_s: signaling as f64 / 1000.0 / seconds.max(1e-9),
        bot_cpu_pct,
        bot_cpus: procfs::allowed_cpus(),
        speakers,
        audio_levels_unasked: run_state.audio_levels_unasked.load(Ordering::Relaxed),
        classes,
        whep,
        config: cfg,
    })
}

/// One row per downlink class (none without downlinks), classes in the
/// order the configuration names them.
fn class_reports(
    cfg: &LoadConfig,
    peers: &[Peer],
    seconds: f64,
    window_end_ns: u64,
) -> Vec<ClassReport> {
    let mut classes: Vec<Option<u32>> = Vec::new();
    for d in &cfg.downlinks_kbps {
        if !classes.contains(d) {
            classes.push(*d);
        }
    }
    classes
        .into_iter()
        .map(|downlink_kbps| {
            let (mut views, mut audio, mut latency) = (
                ViewTotals::default(),
                KindTotals::default(),
                Histogram::default(),
            );
            let (mut receivers, mut expected_video, mut dropped, mut delivered) =
                (0u64, 0u64, 0u64, 0u64);
            for (spec, r) in
                receivers_of(peers).filter(|(spec, _)| spec.downlink_kbps == downlink_kbps)
            {
                receivers += 1;
                if cfg.media.video {
                    expected_video +=
                        expected_streams_per_receiver(cfg, spec) / (1 + cfg.media.audio as u64);
                }
                dropped += r.counters.link_dropped.load(Ordering::Relaxed);
                delivered += r.counters.link_delivered.load(Ordering::Relaxed);
                let Ok(s) = r.stats.lock() else { continue };
                views.merge(&s.view_totals(window_end_ns));
                audio.merge(&s.totals(Kind::Audio));
                latency.merge(&s.totals(Kind::Video).latency);
            }
            ClassReport {
                downlink_kbps,
                receivers,
                video_kbps: if receivers == 0 {
                    0.0
                } else {
                    views.bytes as f64 * 8.0 / 1000.0 / seconds.max(1e-9) / receivers as f64
                },
                video_loss_pct: views.loss_pct(),
                audio_loss_pct: audio.loss_pct(),
                final_layers: views.final_layers.clone(),
                layer_switches: views.layer_switches,
                frame_gaps_over_200ms: views.frame_gaps,
                max_frame_gap_ms: views.max_frame_gap_ns as f64 / 1e6,
                video_consumers_missing: expected_video.saturating_sub(views.consumers),
                video_latency: latency.summary_ms(),
                link_drop_pct: percent(dropped, dropped + delivered),
            }
        })
        .collect()
}

/// "unlimited" or "300 kbit/s".
pub fn downlink_name(kbps: Option<u32>) -> String {
    kbps.map_or_else(|| "unlimited".to_string(), |k| format!("{k} kbit/s"))
}

/// "r0 3, r2 1": how many consumers ended on each layer.
pub fn layers_name(final_layers: &[u64]) -> String {
    let named: Vec<String> = final_layers
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| format!("r{i} {n}"))
        .collect();
    if named.is_empty() {
        "none".to_string()
    } else {
        named.join(", ")
    }
}

impl LoadReport {
    /// Streams that never delivered count as fully lost: a receiver that gets
    /// nothing is the worst loss there is.
    pub fn effective_loss_pct(&self) -> f64 {
        if self.expected_streams == 0 {
            return self.loss_pct;
        }
        let missing = self.expected_streams.saturating_sub(self.receiving_streams) as f64
            / self.expected_streams as f64;
        let delivered = 1.0 - missing;
        100.0 * (missing + delivered * self.loss_pct / 100.0)
    }

    /// A human summary table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let c = &self.config;
        t += &format!(
            "{} | rooms {} x ({} publishers{} + {} subscribers{}) | video {} | audio {}\n",
            c.target.name(),
            c.rooms,
            c.publishers_per_room,
            if c.publishers_subscribe {
                " also receiving"
            } else {
                ""
            },
            c.subscribers_per_room,
            if c.whep_viewers_per_room > 0 {
                format!(" + {} WHEP viewers", c.whep_viewers_per_room)
            } else {
                String::new()
            },
            if c.media.video {
                format!(
                    "{} kbit/s {} pkt/s{}",
                    c.media.video_bitrate_bps / 1000,
                    c.media.video_packets_per_s,
                    if c.media.simulcast { " simulcast" } else { "" }
                )
            } else {
                "off".to_string()
            },
            if c.media.audio { "on" } else { "off" },
        );
        t += &format!(
            "peers joined {}/{} ({} failed{}) | streams receiving {}/{} | window {:.1} s\n",
            self.peers_joined,
            self.peers,
            self.join_failures,
            self.first_error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default(),
            self.receiving_streams,
            self.expected_streams,
            self.duration_s
        );
        t += "kind   streams   packets    lost  loss%   p50 ms   p99 ms   max ms  kbit/s/stream\n";
        for (name, k) in [("video", &self.video), ("audio", &self.audio)] {
            if k.streams == 0 && k.packets == 0 {
                continue;
            }
            t += &format!(
                "{name:<6} {:>7} {:>9} {:>7} {:>6.2} {:>8.2} {:>8.2} {:>8.2} {:>14.0}\n",
                k.streams,
                k.packets,
                k.lost,
                k.loss_pct,
                k.latency.p50_ms,
                k.latency.p99_ms,
                k.latency.max_ms,
                k.kbps_per_stream
            );
        }
        t += &format!(
            "sent {} pkt, received {} pkt ({:.0}/s) | join to first packet p50 {:.0} ms, max {:.0} ms, {} receivers without media | bot CPU {:.0}% of one core ({} CPUs)\n",
            self.packets_sent,
            self.packets_received,
            self.received_packets_per_s,
            self.join_to_first_packet.p50_ms,
            self.join_to_first_packet.max_ms,
            self.receivers_without_media,
            self.bot_cpu_pct,
            self.bot_cpus
        );
        let c = &self.consumers;
        if c.pushed > 0 {
            t += &format!(
                "consumers pushed {}, resumed {}, refused for the rate (limit_reached) {}, other failures {}, with media {} | join to first packet per consumer p50 {:.0} ms, max {:.0} ms\n",
                c.pushed, c.resumed, c.refused_for_rate, c.failed, c.with_media, c.join_to_first_media.p50_ms, c.join_to_first_media.max_ms
            );
        }
        if let Some(s) = self
            .speakers
            .as_ref()
            .filter(|_| !speakers_unasked(&self.config))
        {
            t += &s.table();
        }
        if !self.classes.is_empty() {
            t += "downlink      receivers  video kbit/s  video loss%  audio loss%  final layers      switches  gaps>200ms  max gap ms  link drop%\n";
            for c in &self.classes {
                t += &format!(
                    "{:<13} {:>9} {:>13.0} {:>12.2} {:>12.2}  {:<16} {:>9} {:>11} {:>11.0} {:>11.2}\n",
                    downlink_name(c.downlink_kbps),
                    c.receivers,
                    c.video_kbps,
                    c.video_loss_pct,
                    c.audio_loss_pct,
                    layers_name(&c.final_layers),
                    c.layer_switches,
                    c.frame_gaps_over_200ms,
                    c.max_frame_gap_ms,
                    c.link_drop_pct
                );
            }
        }
        if let Some(w) = &self.whep {
            t += &format!(
                "WHEP sessions {} (POST to answer p50 {:.0} ms, max {:.0} ms), deleted at the end {}\n",
                w.sessions,
                w.post_to_answer.p50_ms,
                w.post_to_answer.max_ms,
                w.deleted_text()
            );
        }
        if self.audio_levels_unasked > 0 {
            t += &format!(
                "audioLevels pushes to peers that did not ask: {}\n",
                self.audio_levels_unasked
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(publishers: u32, subscribers: u32, meeting: bool) -> LoadConfig {
        LoadConfig {
            spread: Vec::new(),
            target: Target::Simplesfu("http://127.0.0.1:1".into()),
            rooms: 2,
            publishers_per_room: publishers,
            subscribers_per_room: subscribers,
            whep_viewers_per_room: 0,
            whep: WhepOptions::default(),
            publishers_subscribe: meeting,
            published_client: false,
            subscribe_audio_levels: false,
            media: MediaOptions {
                audio: true,
                ..Default::default()
            },
            downlinks_kbps: Vec::new(),
            congestion_feedback: false,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(1),
            join_rate: 10.0,
            local_ip: IpAddr::from([127, 0, 0, 1]),
            progress: false,
        }
    }

    #[test]
    fn with_several_nodes_publishers_stay_on_the_first_and_receivers_spread_over_the_others() {
        let mut live = cfg(1, 4, false);
        live.spread = vec!["http://node-2".into(), "http://node-3".into()];
        let specs = peer_specs(&live);
        let first = "http://127.0.0.1:1";
        let urls: Vec<String> = specs.iter().map(|s| url_of(&live, s, first)).collect();
        for (spec, url) in specs.iter().zip(&urls) {
            if spec.publish {
                assert_eq!(url, first, "a publisher on the first node");
            } else {
                assert_ne!(url, first, "a receiver on another node");
            }
        }
        let on = |node: &str| urls.iter().filter(|u| *u == node).count();
        assert_eq!(
            (on("http://node-2"), on("http://node-3")),
            (4, 4),
            "in turn: {urls:?}"
        );
        live.spread.clear();
        assert!(specs.iter().all(|s| url_of(&live, s, first) == first));
    }

    #[test]
    fn peers_and_expected_streams_per_scenario() {
        let live = cfg(1, 3, false);
        let specs = peer_specs(&live);
        assert_eq!(specs.len(), 8);
        assert!(
            specs[2].observer && !specs[2].publish,
            "the first subscriber of the first room observes"
        );
        assert!(
            specs[..2].iter().all(|s| s.publish && !s.subscribe),
            "publishers come first"
        );
        assert_eq!(
            expected_streams_per_receiver(&live, &specs[5]),
            2,
            "audio + video of the one publisher"
        );
        let meeting = cfg(10, 0, true);
        let specs = peer_specs(&meeting);
        assert_eq!(specs.len(), 20);
        assert!(specs.iter().all(|s| s.publish && s.subscribe));
        assert_eq!(
            expected_streams_per_receiver(&meeting, &specs[0]),
            18,
            "9 others x 2 kinds"
        );
        let ids: std::collections::HashSet<u32> = specs.iter().map(|s| s.index).collect();
        assert_eq!(ids.len(), 20, "unique stream id prefixes");
        let observers: Vec<&PeerSpec> = specs.iter().filter(|s| s.observer).collect();
        assert_eq!(observers.len(), 1, "one observer per run");
        assert_eq!(
            (observers[0].room.as_str(), observers[0].place),
            ("bench-0", 0),
            "the first publisher receives in a meeting"
        );
        let places: Vec<u32> = specs
            .iter()
            .filter(|s| s.room == "bench-1")
            .map(|s| s.place)
            .collect();
        assert_eq!(
            places,
            (0..10).collect::<Vec<u32>>(),
            "each room's publishers in order: their levels"
        );
    }

    #[test]
    fn whep_viewers_come_last_play_one_stream_per_kind_and_never_observe() {
        let mut c = cfg(2, 1, false);
        c.whep_viewers_per_room = 2;
        let specs = peer_specs(&c);
        let roles: Vec<(bool, bool)> = specs.iter().map(|s| (s.publish, s.whep)).collect();
        assert_eq!(
            roles,
            [
                vec![(true, false); 4],
                vec![(false, false); 2],
                vec![(false, true); 4]
            ]
            .concat(),
            "publishers, subscribers, then WHEP viewers of every room"
        );
        let viewer = specs.iter().find(|s| s.whep).expect("a WHEP viewer");
        assert!(viewer.subscribe && !viewer.published_client);
        assert!(
            viewer.congestion_feedback,
            "negotiates transport-cc as a browser"
        );
        assert_eq!(
            expected_streams_per_receiver(&c, viewer),
            2,
            "the room's first video and audio, not every publisher's"
        );
        assert_eq!(
            expected_streams_per_receiver(&cfg(0, 0, false), viewer),
            0,
            "nothing to play in an empty room"
        );
        let observer = specs.iter().find(|s| s.observer).expect("an observer");
        assert!(!observer.whep, "a WHEP viewer hears no socket.io pushes");
        let mut only_whep = cfg(1, 0, false);
        only_whep.whep_viewers_per_room = 3;
        assert!(
            peer_specs(&only_whep).iter().all(|s| !s.observer),
            "no protocol v1 receiver, no observer"
        );
    }

    #[test]
    fn receivers_take_the_downlinks_in_turn_and_only_receivers_give_feedback() {
        let mut c = cfg(1, 4, false);
        c.downlinks_kbps = vec![Some(300), Some(1000), None];
        c.congestion_feedback = true;
        let specs = peer_specs(&c);
        let links: Vec<Option<u32>> = specs
            .iter()
            .filter(|s| s.subscribe)
            .map(|s| s.downlink_kbps)
            .collect();
        assert_eq!(
            links,
            vec![
                Some(300),
                Some(1000),
                None,
                Some(300),
                Some(1000),
                None,
                Some(300),
                Some(1000)
            ],
            "across rooms too"
        );
        assert!(specs
            .iter()
            .filter(|s| s.publish)
            .all(|s| s.downlink_kbps.is_none() && !s.congestion_feedback));
        assert!(specs
            .iter()
            .filter(|s| s.subscribe)
            .all(|s| s.congestion_feedback));
        assert!(
            peer_specs(&cfg(1, 2, false))
                .iter()
                .all(|s| s.downlink_kbps.is_none() && !s.congestion_feedback),
            "off by default"
        );
    }

    #[test]
    fn big_rooms_have_few_speakers_and_joiners_like_the_published_client() {
        let mut big = cfg(10, 2, false);
        big.rooms = 1;
        big.published_client = true;
        big.media = MediaOptions {
            video: false,
            audio: true,
            speakers_per_room: Some(3),
            ..Default::default()
        };
        let specs = peer_specs(&big);
        let talking: Vec<bool> = specs
            .iter()
            .filter(|s| s.publish)
            .map(|s| !s.silent)
            .collect();
        assert_eq!(
            talking.iter().filter(|&&t| t).count(),
            3,
            "3 of 10 publishers talk"
        );
        let joiners: Vec<&PeerSpec> = specs.iter().filter(|s| !s.publish).collect();
        assert!(joiners
            .iter()
            .all(|j| j.published_client && j.subscribe && !j.silent));
        assert_eq!(
            expected_streams_per_receiver(&big, joiners[0]),
            10,
            "one audio consumer per publisher"
        );
    }
}
