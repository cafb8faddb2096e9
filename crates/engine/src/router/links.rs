//! Links between nodes: a producer of this node consumed on another is
//! relayed there once, every layer, over one str0m session per pair of
//! nodes (docs/ENGINE.md "Links between nodes"). A link is a transport of
//! the worker with no client behind it: the far node's worker is its peer.
//!
//! - ICE: both ends know both pairs of credentials (the server derives them
//!   from the cluster's shared secret); the end that waits is ICE-lite like
//!   every transport, the end that connects runs full ICE, controlling,
//!   towards the one address it is given. DTLS is pinned to the far end's
//!   fingerprint, so SRTP keys come from a handshake nobody else can finish.
//! - Media: one m-line per relayed producer (mids `a0, a1, ..` from the
//!   waiting end, `c0, ..` from the connecting one, so both may relay over
//!   the same link) and one send stream per layer, rid = the layer's index,
//!   with RTX: losses between nodes are repaired from str0m's send cache.
//!   The far end mirrors the producer (same id) on the link as its source;
//!   its key-frame requests come back as PLIs on the layer's stream.
//!   Sequence numbers start at 1 per layer (str0m's rollover counter starts
//!   at 0) and keep the origin's gaps, timestamps are the origin's.
//! - No bandwidth estimation and no pacing: a link is a data-centre path,
//!   and its latency target is a millisecond.
//! - Data producers: one negotiated SCTP stream each on the link's
//!   association (odd stream ids from the connecting end, even ones from
//!   the waiting end, so both may relay), with the producer's own
//!   ordering and reliability. The origin end is a data consumer of it;
//!   the far end mirrors it (same id) with the link as its source.
//! - Control: a negotiated data channel (SCTP stream 0) carries `close <id>`,
//!   `pause <id>` and `resume <id>` for relayed producers and `closedata
//!   <id>` for relayed data producers, in order.

use super::consumers::fresh_ssrc;
use super::{
    DataRoute, Direction, DtlsSetup, Layer, ProbeNudge, Producer, ProducerSource, Router,
    Transport, SCTP_STREAMS,
};
use crate::allocation::Allocator;
use crate::api::{
    EngineError, EngineEvent, LinkInfo, LinkOptions, RelayedDataProducer, RelayedProducer,
};
use crate::forward::SeqRewriter;
use crate::rtp_params::{codec_of, codec_supported};
use mediasoup_types::rtp_parameters::MediaKind;
use mediasoup_types::sctp_parameters::SctpStreamParameters;
use simplesfu_proto::{DataConsumerId, DataProducerId, ProducerId, TransportId};
use std::collections::{HashMap, HashSet};
use std::time::Instant;
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::config::Fingerprint;
use str0m::media::{MediaKind as StrMediaKind, Mid, Pt, Rid};
use str0m::net::Protocol;
use str0m::rtp::Ssrc;
use str0m::{Candidate, IceCreds};

/// The control channel's SCTP stream (negotiated on both ends).
const CONTROL_STREAM: u16 = 0;
/// Control messages kept while the channel is not open yet (or full); the
/// oldest go first beyond this.
const MAX_PENDING_CONTROL: usize = 4096;
/// Layers a relayed producer may have (simulcast has at most 3 or 4).
const MAX_RELAY_LAYERS: usize = 4;
/// A relayed producer's mid, as the far end describes it.
const MAX_MID_LEN: usize = 16;
/// Longest control message taken (`resume <uuid>` is 43 bytes).
const MAX_CONTROL_LEN: usize = 128;
/// ICE credentials of a link: what RFC 8445 allows, at most.
const MAX_CRED_LEN: usize = 256;
/// A relayed data producer's label and protocol, at most (bytes).
const MAX_DATA_LABEL_LEN: usize = 1024;

/// What makes a transport a link.
pub(super) struct LinkState {
    /// This end connects (ICE controlling, DTLS and SCTP client).
    connects: bool,
    control: Option<ChannelId>,
    control_open: bool,
    pending_control: Vec<String>,
    next_mid: u64,
    /// The producers this end relays, by their m-line on the link.
    relays_out: HashMap<Mid, ProducerId>,
    /// The data producers this end relays, with the data consumer that
    /// writes their messages to the link and its stream.
    data_out: HashMap<DataProducerId, (DataConsumerId, u16)>,
}

/// A link a producer is relayed over: its m-line and, per layer, the stream
/// and the numbering of what crosses.
pub(super) struct RelayOut {
    pub(super) link: TransportId,
    mid: Mid,
    /// Per layer: the stream's SSRC and its RTX SSRC (video).
    ssrcs: Vec<(Ssrc, Option<Ssrc>)>,
    seq: Vec<SeqRewriter>,
}

impl RelayOut {
    /// The stream of `layer` and the sequence number and timestamp a packet
    /// crosses with (`None`: older than the first one relayed).
    pub(super) fn number(
        &mut self,
        now: Instant,
        layer: usize,
        seq_no: u64,
        timestamp: u32,
        clock: u32,
    ) -> Option<(Ssrc, u64, u32)> {
        let (ssrc, _) = *self.ssrcs.get(layer)?;
        let (seq, ts) = self.seq[layer].rewrite(now, seq_no, timestamp, clock)?;
        Some((ssrc, seq, ts))
    }
}

impl Router {
    /// One end of a link to another node (see the module's notes).
    pub fn create_link(
        &mut self,
        now: Instant,
        options: LinkOptions,
    ) -> Result<LinkInfo, EngineError> {
        for cred in [
            &options.local_ufrag,
            &options.local_password,
            &options.remote_ufrag,
            &options.remote_password,
        ] {
            if cred.is_empty()
                || cred.len() > MAX_CRED_LEN
                || !cred.bytes().all(|b| b.is_ascii_graphic() && b != b':')
            {
                return Err(EngineError::InvalidLink(
                    "ICE credentials must be 1-256 printable characters without ':'".into(),
                ));
            }
        }
        if self.by_ufrag.contains_key(&options.local_ufrag) {
            return Err(EngineError::InvalidLink(format!(
                "ufrag {} is in use on this worker",
                options.local_ufrag
            )));
        }
        let path = options.connect_to.map(|addr| (Protocol::Udp, addr));
        if let Some(path) = path.filter(|p| self.by_addr.contains_key(p)) {
            return Err(EngineError::InvalidLink(format!(
                "{} is linked already on this worker",
                path.1
            )));
        }
        let mut rtc = super::transports::build_rtc(now, false, None);
        let local = IceCreds {
            ufrag: options.local_ufrag.clone(),
            pass: options.local_password.clone(),
        };
        let remote = IceCreds {
            ufrag: options.remote_ufrag,
            pass: options.remote_password,
        };
        {
            let mut api = rtc.direct_api();
            api.set_local_ice_credentials(local.clone());
            api.set_remote_ice_credentials(remote.clone());
            if options.connect_to.is_some() {
                api.set_ice_lite(false);
                api.set_ice_controlling(true);
            }
        }
        let (_, candidates) = self.candidates.for_transport(false)?;
        for candidate in candidates {
            rtc.add_local_candidate(candidate);
        }
        if let Some(addr) = options.connect_to {
            let candidate = Candidate::host(addr, "udp")
                .map_err(|e| EngineError::InvalidLink(format!("far end {addr}: {e}")))?;
            rtc.add_remote_candidate(candidate);
        }
        let fingerprint = rtc.direct_api().local_dtls_fingerprint().to_string();
        let id = TransportId::new();
        self.by_ufrag.insert(local.ufrag.clone(), id);
        if let Some(path) = path {
            self.by_addr.insert(path, id);
        }
        self.transports.insert(
            id,
            Transport {
                direction: Direction::Send,
                rtc,
                local_ufrag: local.ufrag,
                local_pass: local.pass,
                remote_creds: Some(remote),
                remote_creds_placeholder: false,
                ice_restarting: false,
                dtls: None,
                sctp: true,
                addrs: path.into_iter().collect(),
                scheduled: None,
                send_media: Vec::new(),
                ssrc_routes: HashMap::new(),
                consumers_by_mid: HashMap::new(),
                next_consumer_mid: 0,
                used_ssrcs: HashSet::new(),
                channels: HashMap::new(),
                used_stream_ids: HashSet::from([CONTROL_STREAM]),
                offer_version: 1,
                allocator: Allocator::new(),
                estimate_bps: None,
                bwe_applied: None,
                video_sent_at: None,
                allocate_at: None,
                last_consent: None,
                pt_out: None,
                planned_mids: None,
                unpaced: true,
                probing: ProbeNudge::default(),
                link: Some(Box::new(LinkState {
                    connects: options.connect_to.is_some(),
                    control: None,
                    control_open: false,
                    pending_control: Vec::new(),
                    next_mid: 0,
                    relays_out: HashMap::new(),
                    data_out: HashMap::new(),
                })),
            },
        );
        self.mark_dirty(id);
        tracing::debug!(link = %id, connect_to = ?options.connect_to, "link created");
        Ok(LinkInfo { id, fingerprint })
    }

    /// Start DTLS and SCTP on a link, pinned to the far end's fingerprint.
    pub fn connect_link(
        &mut self,
        id: TransportId,
        remote_fingerprint: &str,
    ) -> Result<(), EngineError> {
        let t = self.link_mut(id)?;
        if t.dtls.is_some() {
            return Err(EngineError::AlreadyConnected(id));
        }
        let fingerprint: Fingerprint = remote_fingerprint
            .parse()
            .map_err(|_| EngineError::InvalidLink("unreadable DTLS fingerprint".into()))?;
        let connects = t.link.as_ref().is_some_and(|l| l.connects);
        let mut api = t.rtc.direct_api();
        api.set_remote_fingerprint(fingerprint);
        api.start_dtls(connects)
            .map_err(|e| EngineError::Internal(format!("DTLS start failed: {e}")))?;
        api.start_sctp(connects);
        let channel = api.create_data_channel(ChannelConfig {
            label: "simplesfu-link".into(),
            ordered: true,
            reliability: Default::default(),
            negotiated: Some(CONTROL_STREAM),
            protocol: String::new(),
        });
        t.channels.insert(channel, DataRoute::LinkControl);
        if let Some(link) = &mut t.link {
            link.control = Some(channel);
        }
        t.dtls = Some(DtlsSetup {
            remote_fingerprint: remote_fingerprint.to_owned(),
            browser_is_client: !connects,
        });
        self.mark_dirty(id);
        tracing::debug!(link = %id, "link connecting");
        Ok(())
    }

    /// Relay a producer of this worker over a link (once per link).
    pub fn relay_out(
        &mut self,
        link: TransportId,
        producer_id: ProducerId,
    ) -> Result<RelayedProducer, EngineError> {
        let p = self
            .producers
            .get_mut(&producer_id)
            .ok_or(EngineError::ProducerNotFound(producer_id))?;
        if p.transport_id() == Some(link) {
            return Err(EngineError::InvalidLink(format!(
                "producer {producer_id} comes from link {link}: it is not relayed back"
            )));
        }
        let t = self
            .transports
            .get_mut(&link)
            .ok_or(EngineError::TransportNotFound(link))?;
        let Some(state) = t.link.as_mut() else {
            return Err(EngineError::InvalidLink(format!(
                "transport {link} is not a link"
            )));
        };
        let video = p.kind == MediaKind::Video;
        if !p.relays.iter().any(|r| r.link == link) {
            let prefix = if state.connects { 'c' } else { 'a' };
            let mid = Mid::from(format!("{prefix}{}", state.next_mid).as_str());
            state.next_mid += 1;
            state.relays_out.insert(mid, producer_id);
            let mut api = t.rtc.direct_api();
            api.declare_media(mid, str0m_kind(p.kind));
            let mut ssrcs = Vec::new();
            for layer in 0..p.layers.len() {
                let ssrc = fresh_ssrc(&mut t.used_ssrcs, || api.new_ssrc());
                let rtx = video.then(|| fresh_ssrc(&mut t.used_ssrcs, || api.new_ssrc()));
                let rid = Rid::from(layer.to_string().as_str());
                api.declare_stream_tx(ssrc, rtx, mid, Some(rid))
                    .set_unpaced(true);
                ssrcs.push((ssrc, rtx));
            }
            p.relays.push(RelayOut {
                link,
                mid,
                seq: ssrcs.iter().map(|_| SeqRewriter::new()).collect(),
                ssrcs,
            });
            tracing::debug!(link = %link, producer = %producer_id, %mid, "producer relayed");
        }
        // Relayed already: the same description again.
        let relay = p.relays.iter().find(|r| r.link == link);
        let (mid, layers) = relay
            .map(|r| {
                let layers = r.ssrcs.iter().map(|(s, rtx)| (**s, rtx.map(|r| *r)));
                (r.mid, layers.collect())
            })
            .ok_or_else(|| EngineError::Internal("relay not recorded".into()))?;
        Ok(RelayedProducer {
            id: producer_id,
            kind: p.kind,
            codec: p.router_codec.clone(),
            rtx_payload_type: p.router_rtx_pt,
            msid_stream: p.msid_stream.clone(),
            max_bitrate: p.max_bitrate,
            paused: p.paused,
            mid: mid.to_string(),
            layers,
        })
    }

    /// Mirror a producer the far end relays over `link`.
    pub fn relay_in(
        &mut self,
        link: TransportId,
        relayed: RelayedProducer,
    ) -> Result<(), EngineError> {
        if let Some(p) = self.producers.get(&relayed.id) {
            return if p.transport_id() == Some(link) {
                Ok(())
            } else {
                Err(EngineError::InvalidLink(format!(
                    "producer {} exists on this worker already",
                    relayed.id
                )))
            };
        }
        let checked = check_relayed(&relayed)?;
        if !codec_supported(&self.caps, &relayed.codec) {
            return Err(EngineError::InvalidLink(format!(
                "relayed producer {}: codec {:?} is not one of this router's",
                relayed.id,
                relayed.codec.mime_type()
            )));
        }
        let t = self.link_mut(link)?;
        if t.rtc.media(checked.mid).is_some() {
            return Err(EngineError::InvalidLink(format!(
                "mid {} is in use on link {link}",
                relayed.mid
            )));
        }
        if let Some((ssrc, _)) = relayed.layers.iter().find(|(ssrc, rtx)| {
            t.used_ssrcs.contains(ssrc) || rtx.is_some_and(|r| t.used_ssrcs.contains(&r))
        }) {
            return Err(EngineError::InvalidLink(format!(
                "ssrc {ssrc} is in use on link {link}"
            )));
        }
        let mut api = t.rtc.direct_api();
        api.declare_media(checked.mid, str0m_kind(relayed.kind));
        let mut layers = Vec::new();
        for (i, &(ssrc, rtx)) in relayed.layers.iter().enumerate() {
            let rid = Rid::from(i.to_string().as_str());
            api.expect_stream_rx(
                Ssrc::from(ssrc),
                rtx.map(Ssrc::from),
                checked.mid,
                Some(rid),
            );
            t.used_ssrcs.insert(ssrc);
            t.used_ssrcs.extend(rtx);
            t.ssrc_routes.insert(Ssrc::from(ssrc), (relayed.id, i));
            layers.push(Layer {
                rid: Some(rid),
                ssrc: Some(ssrc),
                last_packet: None,
                last_keyframe_request: None,
            });
        }
        let router_pt = Pt::from(relayed.codec.payload_type());
        self.producers.insert(
            relayed.id,
            Producer {
                source: ProducerSource::Transport(link),
                pipes: Vec::new(),
                relays: Vec::new(),
                kind: relayed.kind,
                mid: checked.mid,
                codec: checked.codec,
                pt_map: HashMap::from([(*router_pt, router_pt)]),
                router_codec: relayed.codec,
                router_rtx_pt: relayed.rtx_payload_type,
                msid_stream: relayed.msid_stream,
                max_bitrate: relayed.max_bitrate,
                layers,
                paused: relayed.paused,
                consumers: Vec::new(),
                meter: None,
            },
        );
        tracing::debug!(link = %link, producer = %relayed.id, "relayed producer mirrored");
        Ok(())
    }

    /// Relay a data producer of this worker over a link (once per link):
    /// a data consumer of it on the link, on a stream of this end's parity.
    pub fn relay_data_out(
        &mut self,
        link: TransportId,
        id: DataProducerId,
    ) -> Result<RelayedDataProducer, EngineError> {
        let d = self
            .data_producers
            .get(&id)
            .ok_or(EngineError::DataProducerNotFound(id))?;
        if d.source.is_some_and(|(t, _)| t == link) {
            return Err(EngineError::InvalidLink(format!(
                "data producer {id} comes from link {link}: it is not relayed back"
            )));
        }
        let (params, label, protocol) = (d.params, d.label.clone(), d.protocol.clone());
        let existing = self
            .link_mut(link)?
            .link
            .as_ref()
            .and_then(|l| l.data_out.get(&id))
            .copied();
        if let Some((_, stream_id)) = existing {
            return Ok(RelayedDataProducer {
                id,
                sctp_stream_parameters: SctpStreamParameters {
                    stream_id,
                    ..params
                },
                label,
                protocol,
            });
        }
        let t = self.link_mut(link)?;
        let first = if t.link.as_ref().is_some_and(|l| l.connects) {
            1
        } else {
            2
        };
        let stream_id = (first..SCTP_STREAMS)
            .step_by(2)
            .find(|s| !t.used_stream_ids.contains(s))
            .ok_or_else(|| {
                EngineError::InvalidSctpParameters(format!(
                    "no free SCTP stream left on link {link}"
                ))
            })?;
        let consumer = self.open_data_consumer(link, id, stream_id)?;
        if let Some(state) = self.link_mut(link)?.link.as_mut() {
            state.data_out.insert(id, (consumer, stream_id));
        }
        tracing::debug!(link = %link, data_producer = %id, stream_id, "data producer relayed");
        Ok(RelayedDataProducer {
            id,
            sctp_stream_parameters: SctpStreamParameters {
                stream_id,
                ..params
            },
            label,
            protocol,
        })
    }

    /// Mirror a data producer the far end relays over `link`.
    pub fn relay_data_in(
        &mut self,
        link: TransportId,
        relayed: RelayedDataProducer,
    ) -> Result<(), EngineError> {
        if let Some(d) = self.data_producers.get(&relayed.id) {
            return if d.source.is_some_and(|(t, _)| t == link) {
                Ok(())
            } else {
                Err(EngineError::InvalidLink(format!(
                    "data producer {} exists on this worker already",
                    relayed.id
                )))
            };
        }
        let bad = |why: &str| {
            EngineError::InvalidLink(format!("relayed data producer {}: {why}", relayed.id))
        };
        if relayed.label.len() > MAX_DATA_LABEL_LEN || relayed.protocol.len() > MAX_DATA_LABEL_LEN {
            return Err(bad("label and protocol are 1024 bytes at most"));
        }
        let params = relayed.sctp_stream_parameters;
        let t = self.link_mut(link)?;
        // The far end's parity: odd streams come from the connecting end.
        let far_parity = if t.link.as_ref().is_some_and(|l| l.connects) {
            0
        } else {
            1
        };
        let stream_id = params.stream_id;
        if stream_id >= SCTP_STREAMS
            || stream_id % 2 != far_parity
            || t.used_stream_ids.contains(&stream_id)
        {
            return Err(bad(&format!(
                "stream id {stream_id} is in use, out of range or not the far end's"
            )));
        }
        self.open_data_producer(link, relayed.id, params, relayed.label, relayed.protocol)?;
        tracing::debug!(link = %link, data_producer = %relayed.id, stream_id, "relayed data producer mirrored");
        Ok(())
    }

    /// A data consumer on a link went (its producer closed, or the link):
    /// the far end closes its mirror.
    pub(super) fn data_relay_closed(&mut self, link: TransportId, consumer: DataConsumerId) {
        let Some(id) = self
            .transports
            .get_mut(&link)
            .and_then(|t| t.link.as_mut())
            .and_then(|state| {
                let id = state
                    .data_out
                    .iter()
                    .find(|(_, (c, _))| *c == consumer)
                    .map(|(d, _)| *d)?;
                state.data_out.remove(&id);
                Some(id)
            })
        else {
            return;
        };
        self.link_control(link, format!("closedata {id}"));
    }

    /// The producer and layer a key-frame request on a link's m-line is for.
    pub(super) fn relay_of(
        &self,
        link: TransportId,
        mid: Mid,
        rid: Option<Rid>,
    ) -> Option<(ProducerId, Option<usize>)> {
        let state = self.transports.get(&link)?.link.as_ref()?;
        let producer = *state.relays_out.get(&mid)?;
        let layer = rid.and_then(|rid| rid.to_string().parse().ok());
        Some((producer, layer))
    }

    /// A producer relayed over links closed or changed its pause: tell the
    /// far ends. Closing also ends its m-lines on the links.
    pub(super) fn relays_closed(&mut self, producer: ProducerId, relays: &[RelayOut]) {
        for relay in relays {
            if let Some(t) = self.transports.get_mut(&relay.link) {
                if let Some(state) = &mut t.link {
                    state.relays_out.remove(&relay.mid);
                }
                t.rtc.direct_api().remove_media(relay.mid);
                for (ssrc, rtx) in &relay.ssrcs {
                    t.used_ssrcs.remove(ssrc);
                    if let Some(rtx) = rtx {
                        t.used_ssrcs.remove(rtx);
                    }
                }
            }
            self.link_control(relay.link, format!("close {producer}"));
        }
    }

    pub(super) fn relays_paused(&mut self, producer: ProducerId, paused: bool) {
        let links: Vec<TransportId> = self
            .producers
            .get(&producer)
            .map(|p| p.relays.iter().map(|r| r.link).collect())
            .unwrap_or_default();
        let verb = if paused { "pause" } else { "resume" };
        for link in links {
            self.link_control(link, format!("{verb} {producer}"));
        }
    }

    /// A link closed: producers relayed over it stop writing to it.
    pub(super) fn forget_link(&mut self, link: TransportId) {
        for p in self.producers.values_mut() {
            p.relays.retain(|r| r.link != link);
        }
    }

    /// Send a control message on a link, or keep it until the channel opens.
    fn link_control(&mut self, link: TransportId, message: String) {
        let Some(t) = self.transports.get_mut(&link) else {
            return;
        };
        let Some(state) = &mut t.link else {
            return;
        };
        state.pending_control.push(message);
        if state.pending_control.len() > MAX_PENDING_CONTROL {
            state.pending_control.remove(0);
        }
        self.flush_link_control(link);
    }

    fn flush_link_control(&mut self, link: TransportId) {
        let Some(t) = self.transports.get_mut(&link) else {
            return;
        };
        let Some(state) = &mut t.link else {
            return;
        };
        let Some(channel) = state.control.filter(|_| state.control_open) else {
            return;
        };
        let Some(mut ch) = t.rtc.channel(channel) else {
            return;
        };
        let mut sent = 0;
        for message in &state.pending_control {
            match ch.write(false, message.as_bytes()) {
                Ok(true) => sent += 1,
                // The send buffer is full: the rest waits for it to drain.
                _ => break,
            }
        }
        state.pending_control.drain(..sent);
        self.mark_dirty(link);
    }

    /// A link's control channel opened (or drained): send what waits.
    pub(super) fn on_link_control_open(&mut self, link: TransportId) {
        if let Some(state) = self.transports.get_mut(&link).and_then(|t| t.link.as_mut()) {
            state.control_open = true;
        }
        self.flush_link_control(link);
    }

    /// A control message from the far end of a link. Only producers it
    /// relayed here (mirrors whose source is this link) are touched.
    pub(super) fn on_link_control(&mut self, now: Instant, link: TransportId, data: &[u8]) {
        let text = std::str::from_utf8(data)
            .ok()
            .filter(|t| t.len() <= MAX_CONTROL_LEN);
        if let Some(id) = text.and_then(|t| t.strip_prefix("closedata ")) {
            let mirrored = id.parse::<DataProducerId>().ok().filter(|id| {
                self.data_producers
                    .get(id)
                    .is_some_and(|d| d.source.is_some_and(|(t, _)| t == link))
            });
            match mirrored.map(|id| (id, self.close_data_producer(id))) {
                Some((id, Ok(closed))) => {
                    tracing::debug!(link = %link, data_producer = %id, "relayed data producer closed by the far end");
                    self.events.push(EngineEvent::RelayedDataProducerClosed {
                        link_id: link,
                        data_producer_id: id,
                        data_consumers_closed: closed,
                    });
                }
                _ => {
                    self.stats.data_messages_dropped += 1;
                    tracing::debug!(link = %link, "control message ignored");
                }
            }
            return;
        }
        let parsed = text.and_then(|t| t.split_once(' ')).and_then(|(verb, id)| {
            let id: ProducerId = id.parse().ok()?;
            Some((verb, id))
        });
        let Some((verb, id)) = parsed.filter(|(_, id)| {
            self.producers
                .get(id)
                .is_some_and(|p| p.transport_id() == Some(link))
        }) else {
            self.stats.data_messages_dropped += 1;
            tracing::debug!(link = %link, "control message ignored");
            return;
        };
        match verb {
            "close" => {
                let mid = self.producers.get(&id).map(|p| p.mid);
                if let Ok(closed) = self.remove_producer(id, false) {
                    if let (Some(t), Some(mid)) = (self.transports.get_mut(&link), mid) {
                        t.rtc.direct_api().remove_media(mid);
                    }
                    tracing::debug!(link = %link, producer = %id, "relayed producer closed by the far end");
                    self.events.push(EngineEvent::RelayedProducerClosed {
                        link_id: link,
                        producer_id: id,
                        consumers_closed: closed.consumers,
                    });
                }
            }
            "pause" | "resume" => {
                let _ = self.set_producer_paused(now, id, verb == "pause");
            }
            _ => self.stats.data_messages_dropped += 1,
        }
    }

    fn link_mut(&mut self, id: TransportId) -> Result<&mut Transport, EngineError> {
        let t = self
            .transports
            .get_mut(&id)
            .ok_or(EngineError::TransportNotFound(id))?;
        if t.link.is_none() {
            return Err(EngineError::InvalidLink(format!(
                "transport {id} is not a link"
            )));
        }
        Ok(t)
    }
}

struct CheckedRelay {
    mid: Mid,
    codec: str0m::format::Codec,
}

/// A description from the far end, bounded before anything is declared.
fn check_relayed(relayed: &RelayedProducer) -> Result<CheckedRelay, EngineError> {
    let bad = |why: &str| {
        Err(EngineError::InvalidLink(format!(
            "relayed producer {}: {why}",
            relayed.id
        )))
    };
    if relayed.mid.is_empty()
        || relayed.mid.len() > MAX_MID_LEN
        || !relayed.mid.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return bad("mid must be 1-16 letters or digits");
    }
    if relayed.layers.is_empty() || relayed.layers.len() > MAX_RELAY_LAYERS {
        return bad("1 to 4 layers");
    }
    if relayed.kind == MediaKind::Audio && relayed.layers.len() != 1 {
        return bad("audio has one layer");
    }
    let mut seen = HashSet::new();
    for &(ssrc, rtx) in &relayed.layers {
        for s in std::iter::once(ssrc).chain(rtx) {
            if s == 0 || !seen.insert(s) {
                return bad("SSRCs must be non-zero and distinct");
            }
        }
    }
    let codec = codec_of(&relayed.codec);
    let audio = codec == str0m::format::Codec::Opus;
    if audio != (relayed.kind == MediaKind::Audio) {
        return bad("codec and kind disagree");
    }
    Ok(CheckedRelay {
        mid: Mid::from(relayed.mid.as_str()),
        codec,
    })
}

fn str0m_kind(kind: MediaKind) -> StrMediaKind {
    match kind {
        MediaKind::Audio => StrMediaKind::Audio,
        MediaKind::Video => StrMediaKind::Video,
    }
}
