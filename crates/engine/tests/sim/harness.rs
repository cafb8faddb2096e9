//! The sans-IO harness: one [`Router`] and the str0m client ends of its
//! transports ([`Peer`]s), with datagrams moved between them by the harness
//! on a simulated clock. Nothing here opens a socket or reads the wall clock
//! after the start: `now` only moves when a test says so ([`Sim::advance`],
//! [`Sim::run_until`]), and then from one event to the next (a datagram
//! landing after [`LATENCY`], a router or client timer), so a scenario of
//! seconds runs in milliseconds. Timing is exact; what is not fixed is the
//! order in which str0m releases packets of different streams written in
//! the same step (and its random SSRCs and credentials), so a test should
//! not depend on which of two layers' packets of one frame lands first.
//!
//! A peer's downlink can be capped ([`Sim::limit_downlink`]): the router's
//! datagrams to it then cross a bottleneck of that rate with a queue, and
//! are dropped when the queue is full, as a home router's would be, so its
//! client's congestion feedback reports the delay and the loss.

use crate::media::{
    client_rtc, dtls_parameters, kind_of, vp8_parameters, vp8_simulcast_parameters, ClientCodecs,
};
use mediasoup_types::rtp_parameters::{MediaKind, RtpParameters};
use simplesfu_engine::{
    ConsumerInfo, Direction, EngineEvent, ProducerOptions, Router, RouterConfig,
    WebRtcTransportOptions,
};
use simplesfu_proto::{ConsumerId, ProducerId, TransportId};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::media::{Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// What IPv4 and UDP add to a datagram on a capped link.
const IP_UDP_HEADER_BYTES: usize = 28;
/// One-way delay of every datagram, both ways.
pub const LATENCY: Duration = Duration::from_millis(5);
/// The smallest step of the clock: a timer that is already due (str0m may
/// ask for `now` again) fires at the next step, so the loop always moves on.
const MIN_STEP: Duration = Duration::from_millis(1);
/// How long a transport may take to connect (ICE and DTLS), simulated.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);

/// A peer's index in the simulation.
pub type PeerId = usize;

/// The router, its peers and the network between them.
pub struct Sim {
    /// The simulated time: what every input to the router and the clients carries.
    pub now: Instant,
    pub router: Router,
    peers: Vec<Peer>,
    router_addr: SocketAddr,
    wire: Vec<Datagram>,
    /// Every datagram the router sent, in order.
    pub router_sent: Vec<Sent>,
    /// The router's events ([`Router::take_events`]), in order.
    pub events: Vec<EngineEvent>,
    /// Datagrams the router hands over before polling more transports
    /// ([`Router::drain_some`]); unlimited by default.
    pub flush_at: usize,
    /// Hand-overs so far (each `drain_some` call that gave datagrams).
    handovers: usize,
}

/// A bottleneck on the way to one peer: datagrams leave one after another
/// at `rate_bps` (a token bucket of one datagram, as `tc tbf` with a small
/// burst), waiting in a queue of at most `queue_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub rate_bps: u64,
    pub queue_bytes: u64,
    /// When the last datagram accepted has left the bottleneck.
    free_at: Option<Instant>,
    /// Datagrams dropped because the queue was full.
    pub dropped: u64,
    /// Every this many datagrams, one is lost on the way (0: none).
    lose_every: u64,
    /// Datagrams offered so far (for `lose_every`).
    offered: u64,
    /// Added to the way (one way).
    delay: Duration,
}

impl Link {
    fn unlimited() -> Link {
        Link {
            rate_bps: 100_000_000_000,
            queue_bytes: u64::MAX / 2,
            free_at: None,
            dropped: 0,
            lose_every: 0,
            offered: 0,
            delay: Duration::ZERO,
        }
    }

    /// When a datagram of `len` bytes offered at `now` has crossed the
    /// bottleneck, or `None` when the queue has no room for it.
    fn pass(&mut self, now: Instant, len: usize) -> Option<Instant> {
        self.offered += 1;
        if self.lose_every > 0 && self.offered % self.lose_every == 0 {
            self.dropped += 1;
            return None;
        }
        let start = self.free_at.map_or(now, |free| free.max(now));
        let queued_bytes = (start - now).as_micros() as u64 * self.rate_bps / 8 / 1_000_000;
        if queued_bytes + len as u64 > self.queue_bytes {
            self.dropped += 1;
            return None;
        }
        let done = start + Duration::from_micros(len as u64 * 8 * 1_000_000 / self.rate_bps);
        self.free_at = Some(done);
        Some(done + self.delay)
    }
}

struct Datagram {
    arrives: Instant,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// A datagram the router sent: when, to which peer (`None`: an address no
/// peer has), and its size.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub at: Instant,
    pub to: Option<PeerId>,
    pub len: usize,
    /// Which hand-over of the router's output it was in.
    pub handover: usize,
    /// The SSRC of an RTP packet (SRTP leaves the header in the clear);
    /// `None` for RTCP, STUN, DTLS and SCTP.
    pub rtp_ssrc: Option<u32>,
}

/// The SSRC in an (S)RTP packet's header: RTP version 2, and not an RTCP
/// packet type (RFC 5761: 192-223 in the second byte).
fn rtp_ssrc(bytes: &[u8]) -> Option<u32> {
    let is_rtp = bytes.len() >= 12 && bytes[0] & 0xC0 == 0x80 && !(192..=223).contains(&bytes[1]);
    is_rtp.then(|| u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]))
}

/// The client end of one router transport, as a browser's transport.
pub struct Peer {
    pub transport: TransportId,
    pub rtc: Rtc,
    pub addr: SocketAddr,
    /// While false the peer neither sends nor receives (datagrams to it are
    /// lost) and its clock stands still, as a client that has not started
    /// ICE yet.
    pub online: bool,
    timeout: Instant,
    /// ICE and DTLS done.
    pub connected: bool,
    pub received: Vec<Received>,
    pub keyframe_requests: Vec<KeyframeRequested>,
    pub channel_open: Vec<ChannelId>,
    pub data: Vec<(ChannelId, Vec<u8>)>,
    /// The bottleneck on the way from the router, if any.
    pub downlink: Option<Link>,
}

/// An RTP packet a peer received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub ssrc: u32,
    pub pt: u8,
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Arc<[u8]>,
}

/// A key-frame request (PLI or FIR) a sending peer received.
#[derive(Debug, Clone, Copy)]
pub struct KeyframeRequested {
    pub at: Instant,
    pub mid: Mid,
    pub rid: Option<Rid>,
}

/// A consumer created by [`Sim::consume`]: its id and the SSRC its packets
/// arrive with.
#[derive(Debug, Clone, Copy)]
pub struct Consumed {
    pub id: ConsumerId,
    pub ssrc: u32,
}

impl Sim {
    /// A router with no transports, at an arbitrary start instant.
    /// A router that estimates viewers' bandwidth (the default).
    pub fn new() -> Sim {
        Sim::with_estimation(true)
    }

    /// A router with bandwidth estimation on or off.
    pub fn with_estimation(estimation: bool) -> Sim {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("simplesfu_engine=debug")
            .try_init();
        let router_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40_000);
        let router = Router::new(RouterConfig {
            local_addr: router_addr,
            announced_ips: vec![router_addr.ip()],
            udp: true,
            tcp_port: None,
            bandwidth_estimation: estimation,
        });
        Sim {
            now: Instant::now(),
            router,
            peers: Vec::new(),
            router_addr,
            wire: Vec::new(),
            router_sent: Vec::new(),
            events: Vec::new(),
            flush_at: usize::MAX,
            handovers: 0,
        }
    }

    pub fn peer(&self, id: PeerId) -> &Peer {
        &self.peers[id]
    }

    pub fn peer_mut(&mut self, id: PeerId) -> &mut Peer {
        &mut self.peers[id]
    }

    /// A transport and its client end, told the client's DTLS parameters
    /// (`connectWebRtcTransport`) but not yet connected; offline until
    /// [`Sim::go_online`] when `online` is false. A send transport's client
    /// uses the browser's payload types, a receive transport's the router's.
    pub fn add_peer(&mut self, direction: Direction, online: bool) -> PeerId {
        let info = self
            .router
            .create_transport(
                self.now,
                WebRtcTransportOptions {
                    direction,
                    enable_sctp: true,
                    force_tcp: false,
                },
            )
            .expect("transport created");
        let codecs = if direction == Direction::Send {
            ClientCodecs::Browser
        } else {
            ClientCodecs::Router
        };
        let mut rtc = client_rtc(&info, codecs, self.now);
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 0, 1, self.peers.len() as u8 + 1)),
            50_000,
        );
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        rtc.add_remote_candidate(Candidate::host(self.router_addr, "udp").expect("candidate"));
        self.router
            .connect_transport(info.id, dtls_parameters(&mut rtc))
            .expect("transport connected");
        self.peers.push(Peer {
            transport: info.id,
            rtc,
            addr,
            online,
            timeout: self.now,
            connected: false,
            received: Vec::new(),
            keyframe_requests: Vec::new(),
            channel_open: Vec::new(),
            data: Vec::new(),
            downlink: None,
        });
        self.peers.len() - 1
    }

    /// A transport whose client end has connected (ICE and DTLS done).
    pub fn connected_peer(&mut self, direction: Direction) -> PeerId {
        let id = self.add_peer(direction, true);
        assert!(
            self.run_until(CONNECT_WITHIN, |s| s.peer(id).connected),
            "peer {id} connects"
        );
        id
    }

    /// Cap what reaches `peer` from the router to `rate_bps`, with a queue of
    /// `queue` of traffic at that rate (100 ms or so, as a home router); a
    /// new cap keeps what is queued.
    pub fn limit_downlink(&mut self, peer: PeerId, rate_bps: u64, queue: Duration) {
        let queue_bytes = rate_bps * queue.as_millis() as u64 / 8 / 1000;
        let link = self.peers[peer]
            .downlink
            .get_or_insert_with(Link::unlimited);
        link.rate_bps = rate_bps;
        link.queue_bytes = queue_bytes;
    }

    /// `peer`'s downlink loses every `every`-th datagram (0: none) and
    /// delays the rest by `delay` (one way).
    pub fn lossy_downlink(&mut self, peer: PeerId, every: u64, delay: Duration) {
        let link = self.peers[peer]
            .downlink
            .get_or_insert_with(Link::unlimited);
        link.lose_every = every;
        link.delay = delay;
    }

    /// `peer`'s client sends transport-wide congestion control feedback, as
    /// a browser does when the consumer's parameters negotiate it.
    pub fn send_feedback(&mut self, peer: PeerId) {
        self.peers[peer].rtc.direct_api().enable_twcc_feedback();
    }

    /// An offline peer starts: from now on it runs ICE, DTLS and SCTP.
    pub fn go_online(&mut self, id: PeerId) {
        let peer = &mut self.peers[id];
        peer.online = true;
        peer.timeout = self.now;
    }

    /// Let `duration` of simulated time pass.
    pub fn advance(&mut self, duration: Duration) {
        let until = self.now + duration;
        loop {
            self.settle();
            let next = self.next_event();
            if next > until {
                self.now = until;
                self.settle();
                return;
            }
            self.now = next;
        }
    }

    /// Run until `done` holds (checked after every event), at most `limit`
    /// of simulated time; whether it held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            self.settle();
            if done(self) {
                return true;
            }
            let next = self.next_event();
            if next > deadline {
                self.now = deadline;
                return false;
            }
            self.now = next;
        }
    }

    /// Call `tick` every `interval` for `duration` (a frame source, a
    /// viewer's feedback), letting time pass in between.
    pub fn every(
        &mut self,
        interval: Duration,
        duration: Duration,
        mut tick: impl FnMut(&mut Sim, u64),
    ) {
        let end = self.now + duration;
        let mut n = 0;
        while self.now < end {
            tick(self, n);
            n += 1;
            self.advance(interval);
        }
    }

    /// Produce on `sender`'s transport and declare the stream on its client
    /// (mid, SSRC, RTX SSRC or rid per encoding).
    pub fn produce(
        &mut self,
        sender: PeerId,
        kind: MediaKind,
        rtp_parameters: RtpParameters,
    ) -> ProducerId {
        let transport_id = self.peers[sender].transport;
        let mid = rtp_parameters.mid.clone().expect("a mid");
        let encodings = rtp_parameters.encodings.clone();
        let producer = self
            .router
            .produce(ProducerOptions {
                transport_id,
                kind,
                rtp_parameters,
                paused: false,
            })
            .expect("producer created");
        let rtc = &mut self.peers[sender].rtc;
        let mid = Mid::from(mid.as_str());
        if rtc.media(mid).is_none() {
            rtc.direct_api().declare_media(mid, kind_of(kind));
        }
        for (i, e) in encodings.iter().enumerate() {
            // rid-only encodings get SSRCs of their own on the client.
            let ssrc = e.ssrc.unwrap_or(SIMULCAST_SSRC + i as u32);
            let rtx = e.rtx.map(|r| Ssrc::from(r.ssrc));
            rtc.direct_api().declare_stream_tx(
                Ssrc::from(ssrc),
                rtx,
                mid,
                e.rid.as_deref().map(Rid::from),
            );
        }
        producer
    }

    /// The scenarios' standard video from `sender`: VP8 on mid "0", SSRC
    /// [`VIDEO_SSRC`] with RTX 2222.
    pub fn produce_video(&mut self, sender: PeerId) -> ProducerId {
        self.produce(
            sender,
            MediaKind::Video,
            vp8_parameters("0", VIDEO_SSRC, 2222),
        )
    }

    /// A connected sender of the standard video ([`Sim::produce_video`])
    /// and a connected viewer with a consumer of it, paused as created:
    /// (sender, viewer, consumer).
    pub fn video_to_viewer(&mut self) -> (PeerId, PeerId, Consumed) {
        let sender = self.connected_peer(Direction::Send);
        let producer = self.produce_video(sender);
        let viewer = self.connected_peer(Direction::Recv);
        let consumer = self.consume(viewer, producer);
        (sender, viewer, consumer)
    }

    /// VP8 simulcast from `sender` on mid "0": rids r0, r1, r2 (low to high)
    /// sent with SSRCs [`SIMULCAST_SSRC`] + layer.
    pub fn produce_simulcast(&mut self, sender: PeerId) -> ProducerId {
        self.produce(sender, MediaKind::Video, vp8_simulcast_parameters("0"))
    }

    /// `n` connected viewers, each with a resumed consumer of `producer`.
    pub fn resumed_viewers(&mut self, producer: ProducerId, n: usize) -> Vec<(PeerId, Consumed)> {
        (0..n)
            .map(|_| {
                let viewer = self.connected_peer(Direction::Recv);
                let consumer = self.consume(viewer, producer);
                self.resume(&consumer);
                (viewer, consumer)
            })
            .collect()
    }

    /// Consume `producer` on `receiver`'s transport (paused, as the router
    /// creates consumers) and declare the stream on its client.
    pub fn consume(&mut self, receiver: PeerId, producer: ProducerId) -> Consumed {
        let info: ConsumerInfo = self
            .router
            .consume(self.peers[receiver].transport, producer)
            .expect("consumer created");
        let encoding = &info.rtp_parameters.encodings[0];
        let ssrc = encoding.ssrc.expect("consumer ssrc");
        let rtx = encoding.rtx.map(|r| Ssrc::from(r.ssrc));
        let mid = Mid::from(info.rtp_parameters.mid.as_deref().expect("consumer mid"));
        let mut api = self.peers[receiver].rtc.direct_api();
        api.declare_media(mid, kind_of(info.kind));
        api.expect_stream_rx(Ssrc::from(ssrc), rtx, mid, None);
        Consumed { id: info.id, ssrc }
    }

    pub fn resume(&mut self, consumer: &Consumed) {
        self.router
            .set_consumer_paused(self.now, consumer.id, false)
            .expect("consumer resumed");
    }

    pub fn pause(&mut self, consumer: &Consumed) {
        self.router
            .set_consumer_paused(self.now, consumer.id, true)
            .expect("consumer paused");
    }

    /// `sender` writes one VP8 packet (the browser's payload type 96) that
    /// ends a frame on a declared stream; it leaves at the next step of the clock.
    pub fn send_vp8(
        &mut self,
        sender: PeerId,
        ssrc: u32,
        seq: u64,
        timestamp: u32,
        payload: Vec<u8>,
    ) {
        let now = self.now;
        let mut api = self.peers[sender].rtc.direct_api();
        let stream = api.stream_tx(&Ssrc::from(ssrc)).expect("a declared stream");
        stream.write_rtp(
            RtpWrite::new(Pt::from(96), seq.into(), timestamp, now, payload)
                .marker(true)
                .nackable(true),
        );
    }

    /// `receiver` asks for a key frame of the stream it receives with `ssrc` (a PLI).
    pub fn request_keyframe(&mut self, receiver: PeerId, ssrc: u32) {
        if let Some(s) = self.peers[receiver]
            .rtc
            .direct_api()
            .stream_rx(&Ssrc::from(ssrc))
        {
            s.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
        }
    }

    /// A negotiated data channel on `stream_id` of `peer`'s client.
    pub fn open_channel(&mut self, peer: PeerId, stream_id: u16, label: &str) -> ChannelId {
        self.peers[peer]
            .rtc
            .direct_api()
            .create_data_channel(ChannelConfig {
                label: label.into(),
                ordered: true,
                reliability: Default::default(),
                negotiated: Some(stream_id),
                protocol: String::new(),
            })
    }

    /// Whether `peer`'s client took the message (false: not open yet, or its buffer is full).
    pub fn write_data(&mut self, peer: PeerId, channel: ChannelId, data: &[u8]) -> bool {
        self.peers[peer]
            .rtc
            .channel(channel)
            .is_some_and(|mut c| c.write(true, data).unwrap_or(false))
    }

    /// Everything due at `now`: datagrams that land, the router's timers and
    /// its output, and every online client's timers and output.
    fn settle(&mut self) {
        let now = self.now;
        let (due, later): (Vec<Datagram>, Vec<Datagram>) =
            self.wire.drain(..).partition(|d| d.arrives <= now);
        self.wire = later;
        for d in due {
            if d.to == self.router_addr {
                self.router
                    .handle_datagram(now, Protocol::Udp, d.from, &d.bytes);
            } else if let Some(peer) = self.peers.iter_mut().find(|p| p.addr == d.to && p.online) {
                let receive = Receive::new(Protocol::Udp, d.from, d.to, &d.bytes)
                    .expect("a datagram str0m can parse");
                if let Err(error) = peer.rtc.handle_input(Input::Receive(now, receive)) {
                    panic!("client {} refused a datagram: {error}", peer.addr);
                }
                peer.poll(now, &mut self.wire);
            }
        }
        self.router.handle_timeout(now);
        let (wire, sent, peers, from) = (
            &mut self.wire,
            &mut self.router_sent,
            &mut self.peers,
            self.router_addr,
        );
        loop {
            let handover = self.handovers;
            let before = sent.len();
            let done = self.router.drain_some(now, self.flush_at, |_, to, bytes| {
                let peer = peers.iter().position(|p| p.addr == to);
                sent.push(Sent {
                    at: now,
                    to: peer,
                    len: bytes.len(),
                    handover,
                    rtp_ssrc: rtp_ssrc(&bytes),
                });
                let through = match peer.and_then(|i| peers[i].downlink.as_mut()) {
                    Some(link) => link.pass(now, bytes.len() + IP_UDP_HEADER_BYTES),
                    None => Some(now),
                };
                if let Some(through) = through {
                    wire.push(Datagram {
                        arrives: through + LATENCY,
                        from,
                        to,
                        bytes,
                    });
                }
            });
            if sent.len() > before {
                self.handovers += 1;
            }
            if done {
                break;
            }
        }
        self.events.extend(self.router.take_events());
        for peer in self.peers.iter_mut().filter(|p| p.online) {
            peer.rtc
                .handle_input(Input::Timeout(now))
                .expect("client takes the time");
            peer.poll(now, &mut self.wire);
        }
    }

    /// When something next happens, at least [`MIN_STEP`] from now.
    fn next_event(&self) -> Instant {
        let landing = self.wire.iter().map(|d| d.arrives);
        let clients = self.peers.iter().filter(|p| p.online).map(|p| p.timeout);
        let next = landing
            .chain(clients)
            .fold(self.router.next_timeout(self.now), Instant::min);
        next.max(self.now + MIN_STEP)
    }
}

/// The SSRC of [`Sim::produce_video`]'s stream.
pub const VIDEO_SSRC: u32 = 1111;
/// The SSRC of layer 0 of [`Sim::produce_simulcast`]'s streams.
pub const SIMULCAST_SSRC: u32 = 5000;

impl Peer {
    /// Drain the client's output: datagrams onto the wire, events recorded.
    fn poll(&mut self, now: Instant, wire: &mut Vec<Datagram>) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    self.timeout = at;
                    return;
                }
                Ok(Output::Transmit(t)) => wire.push(Datagram {
                    arrives: now + LATENCY,
                    from: self.addr,
                    to: t.destination,
                    bytes: t.contents.into(),
                }),
                Ok(Output::Event(event)) => self.record(now, event),
                Err(error) => panic!("client {} failed: {error}", self.addr),
            }
        }
    }

    fn record(&mut self, now: Instant, event: Event) {
        match event {
            Event::Connected => self.connected = true,
            Event::RtpPacket(p) => self.received.push(Received {
                at: now,
                ssrc: *p.header.ssrc,
                pt: *p.header.payload_type,
                seq: *p.seq_no,
                timestamp: p.header.timestamp,
                marker: p.header.marker,
                payload: p.payload,
            }),
            Event::KeyframeRequest(r) => self.keyframe_requests.push(KeyframeRequested {
                at: now,
                mid: r.mid,
                rid: r.rid,
            }),
            Event::ChannelOpen(id, _) => self.channel_open.push(id),
            Event::ChannelData(d) => self.data.push((d.id, d.data)),
            _ => {}
        }
    }

    /// The RTP packets received with `ssrc`, in arrival order.
    pub fn received_from(&self, ssrc: u32) -> Vec<&Received> {
        self.received.iter().filter(|r| r.ssrc == ssrc).collect()
    }
}
