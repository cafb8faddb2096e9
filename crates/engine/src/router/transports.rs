//! Transports: creating one (a str0m `Rtc` in ICE-lite RTP mode with our
//! codecs, extensions and host candidates), connecting it (DTLS and SCTP
//! start), ICE restart, and closing it with everything on it.

use super::{
    Direction, DtlsSetup, ProbeNudge, Router, Transport, ESTIMATE_READ_INTERVAL, INITIAL_ESTIMATE,
    SCTP_MAX_MESSAGE_SIZE, SCTP_PORT, SCTP_STREAMS,
};
use crate::allocation::Allocator;
use crate::api::{
    ClosedProducer, EngineError, RemoteNumbering, WebRtcTransportInfo, WebRtcTransportOptions,
};
use crate::capabilities::{ext_id, pt};
use mediasoup_types::data_structures::{DtlsFingerprint, DtlsParameters, DtlsRole, IceParameters};
use mediasoup_types::rtp_parameters::RtpHeaderExtensionUri;
use mediasoup_types::sctp_parameters::SctpParameters;
use simplesfu_proto::{ConsumerId, DataConsumerId, DataProducerId, ProducerId, TransportId};
use std::collections::{HashMap, HashSet};
use std::time::Instant;
use str0m::config::Fingerprint;
use str0m::format::{Codec, FormatParams};
use str0m::media::Frequency;
use str0m::media::Pt;
use str0m::rtp::{Extension, ExtensionMap};
use str0m::{IceCreds, Rtc};

impl Router {
    /// Create a WebRTC transport.
    pub fn create_transport(
        &mut self,
        now: Instant,
        options: WebRtcTransportOptions,
    ) -> Result<WebRtcTransportInfo, EngineError> {
        self.create_numbered_transport(now, options, None)
    }

    /// Create a WebRTC transport; a receive transport with `numbering` is
    /// sent with the client's payload types, extension ids and mids (see
    /// [`RemoteNumbering`]).
    pub fn create_numbered_transport(
        &mut self,
        now: Instant,
        options: WebRtcTransportOptions,
        numbering: Option<RemoteNumbering>,
    ) -> Result<WebRtcTransportInfo, EngineError> {
        let estimate = options.direction == Direction::Recv && self.config.bandwidth_estimation;
        let numbering = numbering.filter(|_| options.direction == Direction::Recv);
        let mut rtc = build_rtc(now, estimate, numbering.as_ref());
        let pt_out = numbering.as_ref().map(|n| {
            n.payload_types
                .iter()
                .map(|&(router, client, _)| (Pt::from(router), Pt::from(client)))
                .collect()
        });
        let planned_mids = numbering.map(|n| n.mids);
        let creds = rtc.direct_api().local_ice_credentials();
        let (ice_candidates, str0m_candidates) =
            self.candidates.for_transport(options.force_tcp)?;
        for candidate in str0m_candidates {
            rtc.add_local_candidate(candidate);
        }
        let fingerprint = rtc.direct_api().local_dtls_fingerprint().clone();
        let dtls_fingerprint = to_mediasoup_fingerprint(&fingerprint)?;
        let id = TransportId::new();
        let info = WebRtcTransportInfo {
            id,
            ice_parameters: IceParameters {
                username_fragment: creds.ufrag.clone(),
                password: creds.pass.clone(),
                ice_lite: Some(true),
            },
            ice_candidates,
            dtls_parameters: DtlsParameters {
                role: DtlsRole::Auto,
                fingerprints: vec![dtls_fingerprint],
            },
            sctp_parameters: options.enable_sctp.then_some(SctpParameters {
                port: SCTP_PORT,
                max_send_message_size: SCTP_MAX_MESSAGE_SIZE,
                max_receive_message_size: SCTP_MAX_MESSAGE_SIZE,
                send_buffer_size: SCTP_MAX_MESSAGE_SIZE,
                per_stream_send_queue_limit: SCTP_MAX_MESSAGE_SIZE,
                max_receiver_window_buffer_size: SCTP_MAX_MESSAGE_SIZE,
                is_data_channel: true,
                os: SCTP_STREAMS,
                mis: SCTP_STREAMS,
                max_message_size: SCTP_MAX_MESSAGE_SIZE,
            }),
        };
        self.by_ufrag.insert(creds.ufrag.clone(), id);
        self.transports.insert(
            id,
            Transport {
                direction: options.direction,
                rtc,
                local_ufrag: creds.ufrag,
                local_pass: creds.pass,
                remote_creds: None,
                remote_creds_placeholder: false,
                ice_restarting: false,
                dtls: None,
                sctp: options.enable_sctp,
                addrs: Vec::new(),
                scheduled: None,
                send_media: Vec::new(),
                ssrc_routes: HashMap::new(),
                consumers_by_mid: HashMap::new(),
                next_consumer_mid: 0,
                used_ssrcs: HashSet::from([1234]),
                channels: HashMap::new(),
                used_stream_ids: HashSet::new(),
                offer_version: 1,
                allocator: Allocator::new(),
                estimate_bps: None,
                bwe_applied: None,
                video_sent_at: None,
                allocate_at: None,
                last_consent: None,
                pt_out,
                planned_mids,
                // Without an estimator nothing paces to an estimate: video
                // goes out as it comes, the best layer of each consumer.
                unpaced: !estimate,
                probing: ProbeNudge::default(),
                link: None,
            },
        );
        self.mark_dirty(id);
        tracing::debug!(transport = %id, direction = ?options.direction, "transport created");
        Ok(info)
    }

    /// Give a transport the client's DTLS parameters and start DTLS (and SCTP).
    pub fn connect_transport(
        &mut self,
        id: TransportId,
        dtls: DtlsParameters,
    ) -> Result<(), EngineError> {
        let t = self
            .transports
            .get_mut(&id)
            .ok_or(EngineError::TransportNotFound(id))?;
        if t.dtls.is_some() {
            return Err(EngineError::AlreadyConnected(id));
        }
        // mediasoup-client uses the last fingerprint it is given; prefer sha-256 among the client's.
        let chosen = dtls
            .fingerprints
            .iter()
            .find(|f| matches!(f, DtlsFingerprint::Sha256 { .. }))
            .or_else(|| {
                dtls.fingerprints
                    .iter()
                    .find(|f| matches!(f, DtlsFingerprint::Sha1 { .. }))
            })
            .ok_or_else(|| {
                EngineError::InvalidDtlsParameters(
                    "no sha-256 or sha-1 fingerprint among the client's".into(),
                )
            })?;
        let remote = from_mediasoup_fingerprint(chosen);
        let browser_is_client = !matches!(dtls.role, DtlsRole::Server);
        let remote_fingerprint = remote.to_string();
        let mut api = t.rtc.direct_api();
        api.set_remote_fingerprint(remote);
        // The browser as DTLS client means we are the passive (server) end.
        api.start_dtls(!browser_is_client)
            .map_err(|e| EngineError::Internal(format!("DTLS start failed: {e}")))?;
        if t.sctp {
            // As SCTP client both ends sent INIT and opening took a second; the DTLS server is the SCTP server.
            api.start_sctp(!browser_is_client);
        }
        t.dtls = Some(DtlsSetup {
            remote_fingerprint,
            browser_is_client,
        });
        self.mark_dirty(id);
        tracing::debug!(transport = %id, "transport connected");
        Ok(())
    }

    /// New local ICE credentials for a transport. Requests with the old ufrag
    /// no longer reach it. The first request with the new one may carry a new
    /// remote ufrag (browsers restart their side too), and the paths learned
    /// before it are dropped: str0m keeps a nominated pair while it had a
    /// request in the last 15 s and prefers it at equal priority, so without
    /// this media would keep going to the broken path. A dropped address is
    /// ignored by this transport from then on. DTLS, SCTP, producers and
    /// consumers stay as they are.
    pub fn restart_ice(&mut self, id: TransportId) -> Result<IceParameters, EngineError> {
        let t = self
            .transports
            .get_mut(&id)
            .ok_or(EngineError::TransportNotFound(id))?;
        let creds = IceCreds::new();
        t.rtc.direct_api().set_local_ice_credentials(creds.clone());
        let old = std::mem::replace(&mut t.local_ufrag, creds.ufrag.clone());
        t.local_pass = creds.pass.clone();
        t.ice_restarting = true;
        self.by_ufrag.remove(&old);
        self.by_ufrag.insert(creds.ufrag.clone(), id);
        self.mark_dirty(id);
        tracing::debug!(transport = %id, "ICE restarted");
        Ok(IceParameters {
            username_fragment: creds.ufrag,
            password: creds.pass,
            ice_lite: Some(true),
        })
    }

    /// When the client last sent a binding request that proved it knows the
    /// transport's ICE password (`None`: never). Browsers and libnice send
    /// one at least every 5 s while they use the transport (ICE consent
    /// freshness, RFC 7675), so a transport silent for 30 s is abandoned;
    /// clients without a signaling connection (WHIP) are timed out this way.
    pub fn last_consent(&self, id: TransportId) -> Result<Option<Instant>, EngineError> {
        self.transports
            .get(&id)
            .map(|t| t.last_consent)
            .ok_or(EngineError::TransportNotFound(id))
    }

    /// Close a transport with everything on it.
    pub fn close_transport(&mut self, id: TransportId) -> Result<ClosedProducer, EngineError> {
        let (closed, _) = self.remove_transport(id)?;
        Ok(closed)
    }

    pub(super) fn remove_transport(
        &mut self,
        id: TransportId,
    ) -> Result<(ClosedProducer, Vec<ProducerId>), EngineError> {
        if !self.transports.contains_key(&id) {
            return Err(EngineError::TransportNotFound(id));
        }
        let producers: Vec<ProducerId> = self
            .producers
            .iter()
            .filter(|(_, p)| p.transport_id() == Some(id))
            .map(|(pid, _)| *pid)
            .collect();
        let mut closed = ClosedProducer::default();
        for pid in &producers {
            if let Ok(c) = self.remove_producer(*pid, false) {
                closed.consumers.extend(c.consumers);
            }
        }
        let consumers: Vec<ConsumerId> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.transport_id == id)
            .map(|(cid, _)| *cid)
            .collect();
        for cid in consumers {
            let _ = self.close_consumer(cid);
        }
        let data_producers: Vec<DataProducerId> = self
            .data_producers
            .iter()
            .filter(|(_, d)| d.source.is_some_and(|(t, _)| t == id))
            .map(|(k, _)| *k)
            .collect();
        for d in data_producers {
            let _ = self.close_data_producer(d);
        }
        let data_consumers: Vec<DataConsumerId> = self
            .data_consumers
            .iter()
            .filter(|(_, d)| d.transport_id == id)
            .map(|(k, _)| *k)
            .collect();
        for d in data_consumers {
            let _ = self.close_data_consumer(d);
        }
        if let Some(mut t) = self.transports.remove(&id) {
            if t.link.is_some() {
                self.forget_link(id);
            }
            t.rtc.disconnect();
            self.by_ufrag.remove(&t.local_ufrag);
            for path in t.addrs {
                if self.by_addr.get(&path) == Some(&id) {
                    self.by_addr.remove(&path);
                }
            }
        }
        self.dirty_set.remove(&id);
        self.dirty.retain(|d| *d != id);
        tracing::debug!(transport = %id, "transport closed");
        Ok((closed, producers))
    }

    pub(super) fn transport_mut(
        &mut self,
        id: TransportId,
        direction: Direction,
    ) -> Result<&mut Transport, EngineError> {
        let t = self
            .transports
            .get_mut(&id)
            .ok_or(EngineError::TransportNotFound(id))?;
        if t.direction != direction {
            return Err(EngineError::WrongDirection(id));
        }
        Ok(t)
    }
}

/// An `Rtc` for one transport; `estimate`: run str0m's bandwidth estimator
/// (receive transports, when the router estimates); `numbering`: the
/// client's payload types and extension ids instead of the router's.
pub(super) fn build_rtc(now: Instant, estimate: bool, numbering: Option<&RemoteNumbering>) -> Rtc {
    let mut exts = ExtensionMap::empty();
    match numbering {
        None => {
            exts.set(ext_id::MID, Extension::RtpMid);
            exts.set(ext_id::RID, Extension::RtpStreamId);
            exts.set(ext_id::REPAIRED_RID, Extension::RepairedRtpStreamId);
            exts.set(ext_id::ABS_SEND_TIME, Extension::AbsoluteSendTime);
            exts.set(ext_id::TRANSPORT_CC, Extension::TransportSequenceNumber);
            exts.set(ext_id::AUDIO_LEVEL, Extension::AudioLevel);
            exts.set(ext_id::VIDEO_ORIENTATION, Extension::VideoOrientation);
        }
        Some(n) => {
            for (uri, id) in &n.extensions {
                let ext = match uri {
                    RtpHeaderExtensionUri::Mid => Extension::RtpMid,
                    RtpHeaderExtensionUri::AbsSendTime => Extension::AbsoluteSendTime,
                    RtpHeaderExtensionUri::TransportWideCcDraft01 => {
                        Extension::TransportSequenceNumber
                    }
                    RtpHeaderExtensionUri::SsrcAudioLevel => Extension::AudioLevel,
                    RtpHeaderExtensionUri::VideoOrientation => Extension::VideoOrientation,
                    _ => continue,
                };
                if (1..=14).contains(id) {
                    exts.set(*id, ext);
                }
            }
        }
    }
    let mut config = Rtc::builder()
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .clear_codecs()
        .set_extension_map(exts)
        .set_stats_interval(None);
    if estimate {
        // Estimates what each viewer's link carries, from its transport-wide
        // congestion control feedback; the allocation splits it.
        config = config
            .enable_bwe(Some(INITIAL_ESTIMATE))
            .set_stats_interval(Some(ESTIMATE_READ_INTERVAL));
    }
    let codecs = config.codec_config();
    let table: Vec<(u8, u8, Option<u8>)> = match numbering {
        Some(n) => n.payload_types.clone(),
        None => vec![
            (pt::OPUS, pt::OPUS, None),
            (pt::VP8, pt::VP8, Some(pt::VP8_RTX)),
            (pt::VP9, pt::VP9, Some(pt::VP9_RTX)),
            (pt::H264, pt::H264, Some(pt::H264_RTX)),
            (pt::H264_HIGH, pt::H264_HIGH, Some(pt::H264_HIGH_RTX)),
        ],
    };
    for (router, number, rtx) in table {
        let (number, rtx) = (Pt::from(number), rtx.map(Pt::from));
        match router {
            pt::OPUS => codecs.add_config(
                number,
                None,
                Codec::Opus,
                Frequency::FORTY_EIGHT_KHZ,
                Some(2),
                FormatParams {
                    min_p_time: Some(10),
                    use_inband_fec: Some(true),
                    ..Default::default()
                },
            ),
            pt::VP8 => codecs.add_config(
                number,
                rtx,
                Codec::Vp8,
                Frequency::NINETY_KHZ,
                None,
                FormatParams::default(),
            ),
            pt::VP9 => codecs.add_config(
                number,
                rtx,
                Codec::Vp9,
                Frequency::NINETY_KHZ,
                None,
                FormatParams {
                    profile_id: Some(0),
                    ..Default::default()
                },
            ),
            pt::H264 => codecs.add_h264(number, rtx, true, 0x42e01f),
            pt::H264_HIGH => codecs.add_h264(number, rtx, true, 0x4d0032),
            _ => {}
        }
    }
    config.build(now)
}

fn to_mediasoup_fingerprint(f: &Fingerprint) -> Result<DtlsFingerprint, EngineError> {
    let value: [u8; 32] = f.bytes.as_slice().try_into().map_err(|_| {
        EngineError::Internal(format!("unexpected local fingerprint {}", f.hash_func))
    })?;
    Ok(DtlsFingerprint::Sha256 { value })
}

fn from_mediasoup_fingerprint(f: &DtlsFingerprint) -> Fingerprint {
    let (hash_func, bytes) = match f {
        DtlsFingerprint::Sha1 { value } => ("sha-1", value.to_vec()),
        DtlsFingerprint::Sha224 { value } => ("sha-224", value.to_vec()),
        DtlsFingerprint::Sha256 { value } => ("sha-256", value.to_vec()),
        DtlsFingerprint::Sha384 { value } => ("sha-384", value.to_vec()),
        DtlsFingerprint::Sha512 { value } => ("sha-512", value.to_vec()),
    };
    Fingerprint {
        hash_func: hash_func.into(),
        bytes,
    }
}
