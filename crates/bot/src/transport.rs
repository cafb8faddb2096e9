//! One client-side WebRTC transport: a str0m `Rtc` (RTP mode) on its own
//! loopback UDP socket, driven by one tokio task. It sends the synthetic media
//! of a [`MediaPlan`] and counts what arrives into a [`ReceiverStats`].
//! A receiving transport may sit behind an emulated slow [`Downlink`].
//! Signaling (ours or Janus's) builds the `Rtc`; this module only runs it.

use crate::link::Downlink;
use crate::payload::{
    monotonic_ns, opus_payload, split_about_equally, vp8_payload, Stamp, Vp8Packet,
};
use crate::speakers::{PublisherLevels, VOICE_DBOV};
use crate::stats::{Kind, ReceiverStats};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::media::{MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

/// A key frame at least this often, so late joiners and layer switches never wait long.
const KEYFRAME_INTERVAL: Duration = Duration::from_secs(3);

/// One video encoding (a simulcast layer, or the only one).
#[derive(Debug, Clone)]
pub struct VideoLayer {
    pub ssrc: u32,
    pub pt: u8,
    pub stream_id: u32,
    pub packets_per_frame: u32,
    pub payload_size: usize,
}

/// The audio stream of a publishing transport.
#[derive(Debug, Clone)]
pub struct AudioPlan {
    pub ssrc: u32,
    pub pt: u8,
    pub stream_id: u32,
    pub payload_size: usize,
    /// One packet this often (20 ms talking, 400 ms for opus DTX in silence).
    pub interval: Duration,
    /// The level each packet carries in `ssrc-audio-level` (when negotiated).
    pub levels: PublisherLevels,
}

/// What a publishing transport sends.
#[derive(Debug, Clone, Default)]
pub struct MediaPlan {
    pub video: Vec<VideoLayer>,
    pub fps: u32,
    pub audio: Option<AudioPlan>,
}

/// Run-wide switches every transport reads.
#[derive(Debug, Default)]
pub struct RunState {
    /// Inside the measurement window: count loss and latency.
    pub measuring: AtomicBool,
    /// Bytes of signaling (socket.io text frames) every peer received.
    pub signaling_bytes: Arc<AtomicU64>,
    /// `monotonic_ns()` at the start of the measurement window (0: not yet):
    /// the origin of the audio level schedule.
    pub window_start_ns: AtomicU64,
    /// What the observing peer received (`activeSpeaker`, `audioLevels`).
    pub observer: Mutex<crate::speakers::ObserverLog>,
    /// `audioLevels` pushes to peers that never asked for them.
    pub audio_levels_unasked: AtomicU64,
}

impl RunState {
    /// Time since the measurement window started, if it has.
    pub fn since_window(&self) -> Option<Duration> {
        match self.window_start_ns.load(Ordering::Relaxed) {
            0 => None,
            start => Some(Duration::from_nanos(monotonic_ns().saturating_sub(start))),
        }
    }
}

/// Counters a transport publishes while it runs.
#[derive(Debug, Default)]
pub struct TransportCounters {
    pub connected: AtomicBool,
    pub failed: AtomicBool,
    pub packets_sent: AtomicU64,
    pub keyframe_requests: AtomicU64,
    /// In the measurement window: datagrams the emulated downlink dropped
    /// (its queue was full) and those it delivered.
    pub link_dropped: AtomicU64,
    pub link_delivered: AtomicU64,
}

/// Commands to a running transport.
#[derive(Debug)]
pub enum Command {
    /// Receive a stream (a consumer): declare its media and SSRCs.
    Expect {
        mid: String,
        kind: MediaKind,
        ssrc: u32,
        rtx: Option<u32>,
    },
    /// Start sending (after the producers exist).
    Send(MediaPlan),
}

/// The handle a driver keeps for a running transport.
#[derive(Clone)]
pub struct TransportHandle {
    pub commands: mpsc::UnboundedSender<Command>,
    pub stats: Arc<Mutex<ReceiverStats>>,
    pub counters: Arc<TransportCounters>,
}

/// Bind a loopback UDP socket for a client transport.
pub async fn bind(ip: std::net::IpAddr) -> anyhow::Result<(UdpSocket, SocketAddr)> {
    let socket = UdpSocket::bind((ip, 0)).await.map_err(|e| {
        anyhow::anyhow!(
            "could not bind a UDP socket on {ip}: {e} (too many open files? raise `ulimit -n`)"
        )
    })?;
    let local = socket.local_addr()?;
    Ok((socket, local))
}

/// Start the task that runs `rtc` on `socket` until `stop` turns true;
/// what arrives crosses `downlink` first, when there is one.
pub fn spawn(
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    downlink: Option<Downlink>,
    run: Arc<RunState>,
    stop: watch::Receiver<bool>,
) -> TransportHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = TransportHandle {
        commands: tx,
        stats: Arc::new(Mutex::new(ReceiverStats::default())),
        counters: Arc::new(TransportCounters::default()),
    };
    let state = State {
        rtc,
        local,
        kinds: HashMap::new(),
        sender: None,
        stats: handle.stats.clone(),
        counters: handle.counters.clone(),
        run,
        downlink,
        recv_ns: monotonic_ns(),
    };
    tokio::spawn(run_transport(state, socket, rx, stop));
    handle
}

struct Sender {
    plan: MediaPlan,
    next_video: Instant,
    next_audio: Instant,
    frame: u64,
    audio_packets: u64,
    keyframe_due: bool,
    last_keyframe: Instant,
    /// Per video layer: packets sent (the stamp counter and RTP sequence).
    layer_packets: Vec<u64>,
}

struct State {
    rtc: Rtc,
    local: SocketAddr,
    kinds: HashMap<u32, Kind>,
    sender: Option<Sender>,
    stats: Arc<Mutex<ReceiverStats>>,
    counters: Arc<TransportCounters>,
    run: Arc<RunState>,
    downlink: Option<Downlink>,
    /// When the datagram being handled arrived (monotonic ns): after the
    /// downlink, when there is one.
    recv_ns: u64,
}

async fn run_transport(
    mut s: State,
    socket: UdpSocket,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        if !s.deliver_due(Instant::now(), &socket) {
            break;
        }
        let Some(timeout) = s.drain(&socket) else {
            break;
        };
        let mut wake = timeout;
        if let Some(snd) = &s.sender {
            if s.rtc.is_connected() {
                wake = wake.min(snd.next_video).min(snd.next_audio);
            }
        }
        if let Some(departure) = s.downlink.as_ref().and_then(Downlink::next_departure) {
            wake = wake.min(departure);
        }
        let now = Instant::now();
        let sleep_for = wake
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
        tokio::select! {
            _ = stop.changed() => break,
            cmd = commands.recv() => match cmd {
                Some(cmd) => s.apply(cmd),
                None => break,
            },
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                s.arrive(from, &buf[..n]);
                // Take whatever else is queued, bounded, before draining.
                for _ in 0..32 {
                    let Some(timeout) = s.drain(&socket) else { break };
                    let _ = timeout;
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => s.arrive(from, &buf[..n]),
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep(sleep_for) => {
                let now = Instant::now();
                s.send_due(now, &socket);
                if s.rtc.handle_input(Input::Timeout(now)).is_err() {
                    s.fail("timeout handling failed");
                    break;
                }
            }
        }
    }
    s.rtc.disconnect();
}

impl State {
    fn fail(&self, why: &str) {
        if !self.counters.failed.swap(true, Ordering::Relaxed) {
            tracing::warn!(reason = why, "client transport failed");
        }
    }

    /// A datagram came off the socket: onto the downlink, or handled now.
    fn arrive(&mut self, from: SocketAddr, data: &[u8]) {
        match &mut self.downlink {
            Some(link) => {
                if !link.offer(Instant::now(), from, data)
                    && self.run.measuring.load(Ordering::Relaxed)
                {
                    self.counters.link_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => self.receive(from, data),
        }
    }

    /// Handle the datagrams that have crossed the downlink by `now`, each
    /// drained before the next as str0m wants; false if the Rtc died.
    fn deliver_due(&mut self, now: Instant, socket: &UdpSocket) -> bool {
        while let Some((from, data)) = self.downlink.as_mut().and_then(|l| l.take_due(now)) {
            if self.run.measuring.load(Ordering::Relaxed) {
                self.counters.link_delivered.fetch_add(1, Ordering::Relaxed);
            }
            self.receive(from, &data);
            if self.drain(socket).is_none() {
                return false;
            }
        }
        true
    }

    fn receive(&mut self, from: SocketAddr, data: &[u8]) {
        self.recv_ns = monotonic_ns();
        let Ok(recv) = Receive::new(Protocol::Udp, from, self.local, data) else {
            return;
        };
        if let Err(e) = self.rtc.handle_input(Input::Receive(Instant::now(), recv)) {
            tracing::debug!(error = %e, "client rtc refused a datagram");
        }
    }

    /// Poll until str0m asks for a timeout; None if the Rtc died.
    fn drain(&mut self, socket: &UdpSocket) -> Option<Instant> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Some(t),
                Ok(Output::Transmit(t)) => {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(e)) => self.on_event(e),
                Err(e) => {
                    self.fail(&e.to_string());
                    return None;
                }
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        let recv_ns = self.recv_ns;
        match e {
            Event::Connected => self.counters.connected.store(true, Ordering::Relaxed),
            Event::RtpPacket(p) => {
                let ssrc = *p.header.ssrc;
                let kind = match self.kinds.get(&ssrc) {
                    Some(k) => *k,
                    None => {
                        let kind = self
                            .rtc
                            .direct_api()
                            .stream_rx(&p.header.ssrc)
                            .map(|s| s.mid())
                            .and_then(|mid| self.rtc.media(mid).map(|m| m.kind()))
                            .map(kind_of)
                            .unwrap_or(Kind::Video);
                        self.kinds.insert(ssrc, kind);
                        kind
                    }
                };
                let measuring = self.run.measuring.load(Ordering::Relaxed);
                let window = measuring.then(|| self.run.window_start_ns.load(Ordering::Relaxed));
                if let Ok(mut st) = self.stats.lock() {
                    st.on_packet(kind, &p.payload, recv_ns, window);
                    if kind == Kind::Video {
                        st.on_video_rtp(ssrc, *p.seq_no, &p.payload, recv_ns, window);
                    }
                }
            }
            Event::KeyframeRequest(_) => {
                self.counters
                    .keyframe_requests
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(snd) = &mut self.sender {
                    snd.keyframe_due = true;
                }
            }
            _ => {}
        }
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::Expect {
                mid,
                kind,
                ssrc,
                rtx,
            } => {
                let mid = Mid::from(mid.as_str());
                if self.rtc.media(mid).is_none() {
                    self.rtc.direct_api().declare_media(mid, kind);
                }
                let mut api = self.rtc.direct_api();
                if api.stream_rx(&Ssrc::from(ssrc)).is_none() {
                    api.expect_stream_rx(Ssrc::from(ssrc), rtx.map(Ssrc::from), mid, None);
                }
                self.kinds.insert(ssrc, kind_of(kind));
            }
            Command::Send(plan) => {
                let now = Instant::now();
                self.sender = Some(Sender {
                    layer_packets: vec![0; plan.video.len()],
                    next_video: now,
                    next_audio: now,
                    frame: 0,
                    audio_packets: 0,
                    keyframe_due: true,
                    last_keyframe: now,
                    plan,
                });
            }
        }
    }

    /// Write the frames that are due. Nothing is sent before DTLS is up.
    fn send_due(&mut self, now: Instant, socket: &UdpSocket) {
        if !self.rtc.is_connected() {
            return;
        }
        let Some(mut snd) = self.sender.take() else {
            return;
        };
        let fps = snd.plan.fps.max(1) as u64;
        let frame_interval = Duration::from_nanos(1_000_000_000 / fps);
        let mut sent = 0u64;
        while snd.next_video <= now && !snd.plan.video.is_empty() {
            let keyframe = snd.keyframe_due
                || now.duration_since(snd.last_keyframe) >= KEYFRAME_INTERVAL
                || snd.frame == 0;
            if keyframe {
                snd.keyframe_due = false;
                snd.last_keyframe = now;
            }
            let ts = (snd.frame * 90_000 / fps) as u32;
            let picture_id = (snd.frame & 0x7fff) as u16;
            for (li, layer) in snd.plan.video.iter().enumerate() {
                for i in 0..layer.packets_per_frame {
                    let counter = snd.layer_packets[li];
                    snd.layer_packets[li] += 1;
                    let stamp = Stamp {
                        stream: layer.stream_id,
                        counter,
                        sent_ns: monotonic_ns(),
                    };
                    // Frame sizes vary by a few bytes and are split like libwebrtc
                    // splits them, so packets of a frame differ by up to one byte
                    // (the server's GSO grouping sees what it sees from browsers).
                    let n = layer.packets_per_frame as usize;
                    let frame_bytes = layer.payload_size * n + (snd.frame as usize % n);
                    let size = split_about_equally(frame_bytes, n, i as usize);
                    let payload = vp8_payload(
                        size,
                        Vp8Packet {
                            picture_id,
                            start: i == 0,
                            keyframe,
                        },
                        stamp,
                    );
                    let marker = i + 1 == layer.packets_per_frame;
                    self.write(
                        layer.ssrc,
                        layer.pt,
                        counter,
                        ts,
                        marker,
                        payload,
                        now,
                        ExtensionValues::default(),
                    );
                    self.drain(socket);
                    sent += 1;
                }
            }
            snd.frame += 1;
            snd.next_video += frame_interval;
        }
        while snd.next_audio <= now {
            let Some(audio) = &snd.plan.audio else {
                snd.next_audio = now + Duration::from_secs(3600);
                break;
            };
            let (ssrc, pt, interval) = (audio.ssrc, audio.pt, audio.interval);
            let counter = snd.audio_packets;
            snd.audio_packets += 1;
            let payload = opus_payload(
                audio.payload_size,
                Stamp {
                    stream: audio.stream_id,
                    counter,
                    sent_ns: monotonic_ns(),
                },
            );
            // Sequence numbers stay contiguous in DTX; the 48 kHz timestamp jumps the silence.
            let ts = counter * interval.as_micros() as u64 * 48 / 1000;
            let level = audio.levels.at(self.run.since_window());
            let ext = ExtensionValues {
                audio_level: Some(level),
                voice_activity: Some(level >= VOICE_DBOV),
                ..Default::default()
            };
            self.write(ssrc, pt, counter, ts as u32, false, payload, now, ext);
            self.drain(socket);
            sent += 1;
            snd.next_audio += interval;
        }
        // Far behind (a stalled runtime): skip ahead instead of bursting.
        if now.duration_since(snd.next_video) > Duration::from_secs(1) {
            snd.next_video = now + frame_interval;
        }
        self.counters
            .packets_sent
            .fetch_add(sent, Ordering::Relaxed);
        self.sender = Some(snd);
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        ssrc: u32,
        pt: u8,
        counter: u64,
        ts: u32,
        marker: bool,
        payload: Vec<u8>,
        now: Instant,
        ext: ExtensionValues,
    ) {
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx(&Ssrc::from(ssrc)) else {
            return;
        };
        // Sequence numbers start at 1 and stay below 2^16 per ROC as str0m expects.
        let write = RtpWrite::new(Pt::from(pt), (counter + 1).into(), ts, now, payload)
            .marker(marker)
            .nackable(true)
            .ext_vals(ext);
        stream.write_rtp(write);
    }
}

fn kind_of(kind: MediaKind) -> Kind {
    match kind {
        MediaKind::Audio => Kind::Audio,
        MediaKind::Video => Kind::Video,
    }
}
