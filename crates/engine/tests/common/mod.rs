//! A test harness where str0m plays the browser: each `ClientPeer` is one
//! client-side transport (its own `Rtc` and UDP socket on loopback) talking
//! to a real worker over real UDP. Scenarios drive the worker through its
//! handle and pump the clients until what a user would see has happened.

#![allow(dead_code)]

mod media;
pub use media::*;

use mediasoup_types::data_structures::DtlsParameters;
use mediasoup_types::rtp_parameters::MediaKind;
use simplesfu_engine::{
    Direction, WebRtcTransportInfo, WebRtcTransportOptions, Worker, WorkerHandle, WorkerSettings,
};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::media::{MediaKind as StrKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceCreds, Input, Output, Rtc};

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A running worker on loopback plus a runtime to call its async handle.
pub struct Sfu {
    pub worker: WorkerHandle,
    pub rt: tokio::runtime::Runtime,
}

impl Sfu {
    pub fn start() -> Sfu {
        Sfu::start_with(WorkerSettings::new("worker-0", LOOPBACK, 0, LOOPBACK))
    }

    /// A worker started with these settings (limits, protocols).
    pub fn start_with(settings: WorkerSettings) -> Sfu {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("simplesfu_engine=debug")
            .try_init();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (worker, _events) = Worker::spawn(settings).expect("worker binds a loopback port");
        Sfu { worker, rt }
    }

    /// Create a transport on `worker` and the client end that talks to it, connected.
    pub fn transport_on(
        &self,
        worker: &WorkerHandle,
        direction: Direction,
        codecs: ClientCodecs,
    ) -> ClientPeer {
        self.transport_with(worker, direction, codecs, false)
    }

    /// Like `transport_on`, over ICE-TCP when `tcp` is true.
    pub fn transport_with(
        &self,
        worker: &WorkerHandle,
        direction: Direction,
        codecs: ClientCodecs,
        tcp: bool,
    ) -> ClientPeer {
        let info = self
            .block(worker.create_webrtc_transport(WebRtcTransportOptions {
                direction,
                enable_sctp: true,
                force_tcp: false,
            }))
            .expect("transport created");
        self.client_for(worker, &info, codecs, tcp)
    }

    /// The connected client end of a created transport; it talks to the first
    /// candidate of its protocol in `info`.
    pub fn client_for(
        &self,
        worker: &WorkerHandle,
        info: &WebRtcTransportInfo,
        codecs: ClientCodecs,
        tcp: bool,
    ) -> ClientPeer {
        let mut peer = ClientPeer::new(info, codecs, tcp);
        self.block(worker.connect_webrtc_transport(info.id, peer.dtls_parameters()))
            .expect("transport connected");
        peer.id = Some(info.id);
        peer
    }

    pub fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    /// Produce the scenarios' standard video from `sender` on `worker`: VP8 on
    /// mid "0", SSRC 1111 with RTX 2222, declared on the client too.
    pub fn produce_video(
        &self,
        worker: &WorkerHandle,
        sender: &mut ClientPeer,
    ) -> simplesfu_proto::ProducerId {
        let producer = self
            .block(worker.produce(simplesfu_engine::ProducerOptions {
                transport_id: sender.id.expect("created"),
                kind: MediaKind::Video,
                rtp_parameters: vp8_parameters("0", 1111, 2222),
                paused: false,
            }))
            .expect("video producer");
        sender.declare_send("0", StrKind::Video, 1111, Some(2222), None);
        producer
    }

    /// A sender and a receiver on the first worker, both connected (over
    /// ICE-TCP when `tcp`), the standard video produced by the sender and
    /// consumed, resumed, by the receiver.
    pub fn resumed_video(&self, tcp: bool) -> ResumedVideo {
        let mut sender =
            self.transport_with(&self.worker, Direction::Send, ClientCodecs::Browser, tcp);
        let mut receiver =
            self.transport_with(&self.worker, Direction::Recv, ClientCodecs::Router, tcp);
        assert!(
            pump_until(
                &mut [&mut sender, &mut receiver],
                Duration::from_secs(10),
                |p| p[0].connected && p[1].connected
            ),
            "ICE and DTLS complete (tcp: {tcp})"
        );
        let consumer_ssrc = self.consume_resumed_video(&self.worker, &mut sender, &mut receiver);
        ResumedVideo {
            sender,
            receiver,
            consumer_ssrc,
        }
    }

    /// The standard video produced by connected `sender` on `worker` and
    /// consumed, resumed, by `receiver`: the SSRC the receiver gets it with.
    pub fn consume_resumed_video(
        &self,
        worker: &WorkerHandle,
        sender: &mut ClientPeer,
        receiver: &mut ClientPeer,
    ) -> u32 {
        let producer = self.produce_video(worker, sender);
        let info = self
            .block(worker.consume(receiver.id.expect("created"), producer))
            .expect("consumer");
        let consumer_ssrc = receiver.expect_consumer(&info);
        self.block(worker.set_consumer_paused(info.id, false))
            .expect("resume");
        consumer_ssrc
    }

    /// Create a transport on the first worker and its connected client end.
    pub fn transport(&self, direction: Direction, codecs: ClientCodecs) -> ClientPeer {
        self.transport_on(&self.worker, direction, codecs)
    }
}

/// See [`Sfu::resumed_video`].
pub struct ResumedVideo {
    pub sender: ClientPeer,
    pub receiver: ClientPeer,
    /// The SSRC the receiver gets the video with.
    pub consumer_ssrc: u32,
}

/// Pump both peers, the sender writing the standard video (SSRC 1111, VP8
/// delta frames) one packet per round with `seq` counting on, until `done`
/// holds or `timeout` passes; returns whether it held.
pub fn stream_video(
    sender: &mut ClientPeer,
    receiver: &mut ClientPeer,
    seq: &mut u64,
    timeout: Duration,
    mut done: impl FnMut(&ClientPeer, &ClientPeer) -> bool,
) -> bool {
    pump_until(&mut [sender, receiver], timeout, |p| {
        *seq += 1;
        let s = *seq;
        p[0].send_rtp(
            1111,
            96,
            10_000 + s,
            (s * 3000) as u32,
            true,
            &vp8_payload(false, s as u8),
        );
        done(&*p[0], &*p[1])
    })
}

/// Another worker on loopback.
pub fn spawn_worker(name: &str) -> WorkerHandle {
    let (worker, _events) = Worker::spawn(WorkerSettings::new(name, LOOPBACK, 0, LOOPBACK))
        .expect("worker binds a loopback port");
    worker
}

pub struct ClientPeer {
    pub id: Option<simplesfu_proto::TransportId>,
    /// The server's ICE parameters for this transport, as signaling gave them.
    pub server_ice: mediasoup_types::data_structures::IceParameters,
    pub rtc: Rtc,
    io: ClientIo,
    local: SocketAddr,
    pub received: Vec<ReceivedRtp>,
    pub keyframe_requests: usize,
    pub channel_open: Vec<ChannelId>,
    pub data: Vec<(ChannelId, Vec<u8>)>,
    pub connected: bool,
}

#[derive(Debug, Clone)]
pub struct ReceivedRtp {
    pub ssrc: u32,
    pub pt: u8,
    pub seq: u64,
    pub payload: Arc<[u8]>,
}

/// The client end's network: a UDP socket, or one ICE-TCP connection with
/// RFC 4571 framing.
enum ClientIo {
    Udp(UdpSocket),
    Tcp {
        stream: std::net::TcpStream,
        inbox: Vec<u8>,
    },
}

impl ClientPeer {
    fn new(info: &WebRtcTransportInfo, codecs: ClientCodecs, tcp: bool) -> ClientPeer {
        let wanted = if tcp {
            mediasoup_types::data_structures::Protocol::Tcp
        } else {
            mediasoup_types::data_structures::Protocol::Udp
        };
        let candidate = info
            .ice_candidates
            .iter()
            .find(|c| c.protocol == wanted)
            .expect("the server offers this protocol");
        let server = SocketAddr::new(candidate.address.parse().expect("ip"), candidate.port);
        let (io, local, local_candidate, remote_candidate) = if tcp {
            let stream = std::net::TcpStream::connect(server).expect("ICE-TCP connect");
            stream
                .set_read_timeout(Some(Duration::from_millis(2)))
                .expect("timeout");
            stream.set_nodelay(true).expect("nodelay");
            let local = stream.local_addr().expect("addr");
            let local_candidate = Candidate::builder()
                .tcp()
                .host(local)
                .tcptype(str0m::net::TcpType::Active)
                .build()
                .expect("candidate");
            let remote_candidate = Candidate::builder()
                .tcp()
                .host(server)
                .tcptype(str0m::net::TcpType::Passive)
                .build()
                .expect("candidate");
            (
                ClientIo::Tcp {
                    stream,
                    inbox: Vec::new(),
                },
                local,
                local_candidate,
                remote_candidate,
            )
        } else {
            let socket = UdpSocket::bind((LOOPBACK, 0)).expect("client socket");
            socket
                .set_read_timeout(Some(Duration::from_millis(2)))
                .expect("timeout");
            let local = socket.local_addr().expect("addr");
            (
                ClientIo::Udp(socket),
                local,
                Candidate::host(local, "udp").expect("candidate"),
                Candidate::host(server, "udp").expect("candidate"),
            )
        };
        let mut rtc = client_rtc(info, codecs, Instant::now());
        rtc.add_local_candidate(local_candidate);
        rtc.add_remote_candidate(remote_candidate);
        ClientPeer {
            id: None,
            server_ice: info.ice_parameters.clone(),
            rtc,
            io,
            local,
            received: Vec::new(),
            keyframe_requests: 0,
            channel_open: Vec::new(),
            data: Vec::new(),
            connected: false,
        }
    }

    /// What `connectWebRtcTransport` carries: role client and our fingerprint.
    pub fn dtls_parameters(&mut self) -> DtlsParameters {
        dtls_parameters(&mut self.rtc)
    }

    /// Handle everything pending and whatever arrives within a few ms.
    pub fn pump(&mut self) {
        let now = Instant::now();
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.poll();
        let mut buf = [0u8; 4000];
        loop {
            let (proto, from, datagram) = match &mut self.io {
                ClientIo::Udp(socket) => match socket.recv_from(&mut buf) {
                    Ok((n, from)) => (Protocol::Udp, from, buf[..n].to_vec()),
                    Err(_) => break,
                },
                ClientIo::Tcp { stream, inbox } => {
                    use std::io::Read;
                    if inbox.len() < 2
                        || inbox.len() < 2 + u16::from_be_bytes([inbox[0], inbox[1]]) as usize
                    {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => inbox.extend_from_slice(&buf[..n]),
                        }
                    }
                    if inbox.len() < 2 {
                        continue;
                    }
                    let n = u16::from_be_bytes([inbox[0], inbox[1]]) as usize;
                    if inbox.len() < 2 + n {
                        continue;
                    }
                    let frame = inbox[2..2 + n].to_vec();
                    inbox.drain(..2 + n);
                    (Protocol::Tcp, stream.peer_addr().expect("peer"), frame)
                }
            };
            if let Ok(recv) = Receive::new(proto, from, self.local, &datagram) {
                let _ = self.rtc.handle_input(Input::Receive(Instant::now(), recv));
            }
            self.poll();
        }
    }

    fn poll(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(_)) => break,
                Ok(Output::Transmit(t)) => match &mut self.io {
                    ClientIo::Udp(socket) => {
                        let _ = socket.send_to(&t.contents, t.destination);
                    }
                    ClientIo::Tcp { stream, .. } => {
                        use std::io::Write;
                        let mut framed = (t.contents.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&t.contents);
                        let _ = stream.write_all(&framed);
                    }
                },
                Ok(Output::Event(e)) => match e {
                    Event::Connected => self.connected = true,
                    Event::RtpPacket(p) => self.received.push(ReceivedRtp {
                        ssrc: *p.header.ssrc,
                        pt: *p.header.payload_type,
                        seq: *p.seq_no,
                        payload: p.payload.clone(),
                    }),
                    Event::KeyframeRequest(_) => self.keyframe_requests += 1,
                    Event::ChannelOpen(id, _) => self.channel_open.push(id),
                    Event::ChannelData(d) => self.data.push((d.id, d.data.clone())),
                    _ => {}
                },
                Err(e) => panic!("client rtc failed: {e}"),
            }
        }
    }

    /// Declare what this client sends on `mid` and return a sender for it.
    pub fn declare_send(
        &mut self,
        mid: &str,
        kind: StrKind,
        ssrc: u32,
        rtx: Option<u32>,
        rid: Option<&str>,
    ) {
        let mut api = self.rtc.direct_api();
        let mid = Mid::from(mid);
        if api.stream_tx_by_mid(mid, None).is_none() && self.rtc.media(mid).is_none() {
            self.rtc.direct_api().declare_media(mid, kind);
        }
        self.rtc.direct_api().declare_stream_tx(
            Ssrc::from(ssrc),
            rtx.map(Ssrc::from),
            mid,
            rid.map(Rid::from),
        );
    }

    /// Expect a stream from the server (a consumer) on `mid`.
    pub fn expect_receive(&mut self, mid: &str, kind: StrKind, ssrc: u32, rtx: Option<u32>) {
        let mid = Mid::from(mid);
        self.rtc.direct_api().declare_media(mid, kind);
        self.rtc
            .direct_api()
            .expect_stream_rx(Ssrc::from(ssrc), rtx.map(Ssrc::from), mid, None);
    }

    /// Declare on the client the stream of a consumer the server made (its
    /// mid, SSRC and RTX SSRC); returns the SSRC packets arrive with.
    pub fn expect_consumer(&mut self, info: &simplesfu_engine::ConsumerInfo) -> u32 {
        let ssrc = info.rtp_parameters.encodings[0]
            .ssrc
            .expect("consumer ssrc");
        let rtx = info.rtp_parameters.encodings[0].rtx.map(|r| r.ssrc);
        self.expect_receive(
            info.rtp_parameters.mid.as_deref().expect("consumer mid"),
            kind_of(info.kind),
            ssrc,
            rtx,
        );
        ssrc
    }

    /// Write one RTP packet (payload only) on a declared stream.
    pub fn send_rtp(&mut self, ssrc: u32, pt: u8, seq: u64, ts: u32, marker: bool, payload: &[u8]) {
        let now = Instant::now();
        let mut api = self.rtc.direct_api();
        let stream = api.stream_tx(&Ssrc::from(ssrc)).expect("declared stream");
        stream.write_rtp(
            RtpWrite::new(Pt::from(pt), seq.into(), ts, now, payload.to_vec())
                .marker(marker)
                .nackable(true),
        );
    }

    /// Send a PLI for the stream we receive with `ssrc`.
    pub fn request_keyframe(&mut self, ssrc: u32) {
        if let Some(s) = self.rtc.direct_api().stream_rx(&Ssrc::from(ssrc)) {
            s.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
        }
    }

    /// A negotiated data channel on `stream_id`.
    pub fn open_channel(&mut self, stream_id: u16, label: &str) -> ChannelId {
        self.rtc.direct_api().create_data_channel(ChannelConfig {
            label: label.into(),
            ordered: true,
            reliability: Default::default(),
            negotiated: Some(stream_id),
            protocol: String::new(),
        })
    }

    pub fn write_data(&mut self, channel: ChannelId, data: &[u8]) -> bool {
        self.rtc
            .channel(channel)
            .map(|mut c| c.write(true, data).unwrap_or(false))
            .unwrap_or(false)
    }

    /// The network path changed: move to a new UDP socket (a new local
    /// address) and restart ICE with the server's new parameters, with fresh
    /// local credentials, as a browser does after `transport.restartIce()`.
    pub fn restart_ice_on_new_path(
        &mut self,
        server: &mediasoup_types::data_structures::IceParameters,
    ) {
        self.move_to_new_socket();
        let mut api = self.rtc.direct_api();
        api.set_local_ice_credentials(IceCreds::new());
        api.set_remote_ice_credentials(IceCreds {
            ufrag: server.username_fragment.clone(),
            pass: server.password.clone(),
        });
    }

    /// The network path changed without an ICE restart: a new UDP socket (a
    /// new local address) whose checks, with the same credentials, find and
    /// nominate a new candidate pair.
    pub fn move_to_new_socket(&mut self) {
        let ClientIo::Udp(_) = &self.io else {
            panic!("only UDP clients move to a new socket")
        };
        let socket = UdpSocket::bind((LOOPBACK, 0)).expect("client socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        let old = Candidate::host(self.local, "udp").expect("candidate");
        self.local = socket.local_addr().expect("addr");
        self.io = ClientIo::Udp(socket);
        self.rtc.direct_api().invalidate_candidate(&old);
        self.rtc
            .add_local_candidate(Candidate::host(self.local, "udp").expect("candidate"));
    }

    /// Whether the server closes this client's ICE-TCP connection (EOF or
    /// reset) within `within`; what arrives meanwhile is discarded.
    pub fn tcp_closed_by_server(&mut self, within: Duration) -> bool {
        use std::io::Read;
        let ClientIo::Tcp { stream, .. } = &mut self.io else {
            panic!("only ICE-TCP clients have a connection")
        };
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4000];
        while Instant::now() < deadline {
            match stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    }

    pub fn received_from(&self, ssrc: u32) -> Vec<&ReceivedRtp> {
        self.received.iter().filter(|r| r.ssrc == ssrc).collect()
    }
}

/// Pump every peer until `done` holds or `timeout` passes; returns whether it held.
pub fn pump_until(
    peers: &mut [&mut ClientPeer],
    timeout: Duration,
    mut done: impl FnMut(&mut [&mut ClientPeer]) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for p in peers.iter_mut() {
            p.pump();
        }
        if done(peers) {
            return true;
        }
    }
    false
}

pub type Counts = HashMap<u32, usize>;
