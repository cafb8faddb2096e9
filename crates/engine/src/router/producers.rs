//! Producers: a track received on a send transport. Each `produce` checks the
//! parameters (`rtp_params`), takes an m-line slot (a released one first) and
//! hands str0m the synthesized offer of the whole send transport (`sdp.rs`);
//! closing one releases its slot.

use super::{
    Direction, Layer, Producer, ProducerSource, Router, SendMediaEntry, Transport, MAX_SEND_MEDIA,
    UNKNOWN_REMOTE_PASSWORD,
};
use crate::api::{ClosedProducer, EngineError, ProducerOptions};
use crate::rtp_params::check_producer_parameters;
use crate::sdp::{send_transport_offer, MediaState, RemoteEnd, SendMedia};
use crate::worker::Command;
use mediasoup_types::rtp_parameters::{MediaKind, RtpParameters};
use simplesfu_proto::{ProducerId, TransportId};
use std::time::Instant;
use str0m::change::SdpOffer;
use str0m::media::{Mid, Rid};
use str0m::IceCreds;

impl Router {
    /// Start receiving a track on a send transport.
    pub fn produce(&mut self, options: ProducerOptions) -> Result<ProducerId, EngineError> {
        let tid = options.transport_id;
        let caps = self.caps.clone();
        let t = self.transport_mut(tid, Direction::Send)?;
        if t.dtls.is_none() {
            return Err(EngineError::NotConnected(tid));
        }
        let checked = check_producer_parameters(&caps, options.kind, &options.rtp_parameters)?;
        let mid_text = options.rtp_parameters.mid.clone().unwrap_or_default();
        if t.send_media.iter().any(|m| m.mid == mid_text) {
            return Err(EngineError::InvalidRtpParameters(format!(
                "mid {mid_text:?} is already used on this transport"
            )));
        }
        if let Some(ssrc) =
            ssrcs_of(&options.rtp_parameters).find(|ssrc| t.used_ssrcs.contains(ssrc))
        {
            return Err(EngineError::InvalidRtpParameters(format!(
                "ssrc {ssrc} is already used on this transport"
            )));
        }
        // A closed producer's released m-line takes the new one, so
        // produce/close churn does not grow the offer.
        let slot = t
            .send_media
            .iter()
            .position(|m| m.state == MediaState::Rejected);
        if slot.is_none() && t.send_media.len() >= MAX_SEND_MEDIA {
            return Err(EngineError::TooManyProducers {
                transport: tid,
                limit: MAX_SEND_MEDIA,
            });
        }
        // The remote ICE credentials in the offer must equal those set in str0m.
        if t.remote_creds.is_none() {
            let placeholder = IceCreds {
                ufrag: "pending".into(),
                pass: UNKNOWN_REMOTE_PASSWORD.into(),
            };
            t.rtc
                .direct_api()
                .set_remote_ice_credentials(placeholder.clone());
            t.remote_creds = Some(placeholder);
            t.remote_creds_placeholder = true;
        }
        let producer_id = ProducerId::new();
        let entry = SendMediaEntry {
            mid: mid_text.clone(),
            kind: options.kind,
            rtp_parameters: options.rtp_parameters.clone(),
            producer: Some(producer_id),
            state: MediaState::Sending,
        };
        let recycled = match slot {
            Some(i) => Some((i, std::mem::replace(&mut t.send_media[i], entry))),
            None => {
                t.send_media.push(entry);
                None
            }
        };
        if let Err(e) = apply_send_offer(tid, t) {
            match recycled {
                Some((i, old)) => t.send_media[i] = old,
                None => drop(t.send_media.pop()),
            }
            return Err(e);
        }
        if let Some((_, old)) = recycled {
            // str0m dropped the old mid's streams with the slot.
            for ssrc in ssrcs_of(&old.rtp_parameters) {
                t.used_ssrcs.remove(&ssrc);
            }
        }
        t.used_ssrcs.extend(ssrcs_of(&options.rtp_parameters));
        let layers = options
            .rtp_parameters
            .encodings
            .iter()
            .map(|e| Layer {
                rid: e.rid.as_deref().map(Rid::from),
                ssrc: e.ssrc,
                last_packet: None,
                last_keyframe_request: None,
            })
            .collect();
        let producer = Producer {
            source: ProducerSource::Transport(tid),
            pipes: Vec::new(),
            relays: Vec::new(),
            kind: options.kind,
            mid: Mid::from(mid_text.as_str()),
            codec: checked.codec,
            pt_map: checked.pt_map,
            router_codec: checked.router_codec,
            router_rtx_pt: checked.router_rtx_pt,
            msid_stream: options
                .rtp_parameters
                .msid
                .as_deref()
                .and_then(|m| m.split(' ').next())
                .map(str::to_owned),
            max_bitrate: options
                .rtp_parameters
                .encodings
                .iter()
                .filter_map(|e| e.max_bitrate)
                .max(),
            layers,
            paused: options.paused,
            consumers: Vec::new(),
            meter: None,
        };
        self.producers.insert(producer_id, producer);
        self.mark_dirty(tid);
        tracing::debug!(producer = %producer_id, transport = %tid, mid = %mid_text, "producer created");
        Ok(producer_id)
    }

    /// Pause or resume a producer. Resuming asks for a key frame for its consumers.
    pub fn set_producer_paused(
        &mut self,
        now: Instant,
        id: ProducerId,
        paused: bool,
    ) -> Result<(), EngineError> {
        let p = self
            .producers
            .get_mut(&id)
            .ok_or(EngineError::ProducerNotFound(id))?;
        let was = p.paused;
        p.paused = paused;
        if was != paused {
            // Mirrors on other workers follow (they were piped in with the
            // state of that moment).
            for pipe in &p.pipes {
                let _ = pipe.sink.send(Command::PipePaused(id, paused));
            }
        }
        let video = p.kind == MediaKind::Video;
        if was != paused {
            // ... and so do mirrors on other nodes.
            self.relays_paused(id, paused);
        }
        if was && !paused && video {
            self.request_keyframe(now, id, None);
        }
        Ok(())
    }

    /// Close a producer and all its consumers.
    pub fn close_producer(&mut self, id: ProducerId) -> Result<ClosedProducer, EngineError> {
        self.remove_producer(id, true)
    }

    /// Close a producer; with `release_slot`, tell str0m at once that its
    /// m-line is rejected, so the next `produce` can reuse it (not worth an
    /// offer when the whole transport goes).
    pub(super) fn remove_producer(
        &mut self,
        id: ProducerId,
        release_slot: bool,
    ) -> Result<ClosedProducer, EngineError> {
        let p = self
            .producers
            .remove(&id)
            .ok_or(EngineError::ProducerNotFound(id))?;
        for pipe in &p.pipes {
            let _ = pipe.sink.send(Command::PipeClose(id));
        }
        self.relays_closed(id, &p.relays);
        if let Some((tid, t)) = p
            .transport_id()
            .and_then(|tid| Some((tid, self.transports.get_mut(&tid)?)))
        {
            t.ssrc_routes.retain(|_, (pid, _)| *pid != id);
            if let Some(i) = t.send_media.iter().position(|m| m.producer == Some(id)) {
                t.send_media[i].producer = None;
                t.send_media[i].state = MediaState::Inactive;
                // Without a live m-line there is no BUNDLE group, which str0m
                // requires: the slot is then released by the next produce.
                if release_slot && t.send_media.iter().any(|m| m.state == MediaState::Sending) {
                    if let Err(error) = apply_send_offer(tid, t) {
                        tracing::debug!(producer = %id, transport = %tid, %error, "m-line of a closed producer not released");
                    }
                }
            }
        }
        let mut closed = ClosedProducer::default();
        for cid in p.consumers {
            self.remove_consumer(cid);
            closed.consumers.push(cid);
        }
        tracing::debug!(producer = %id, consumers = closed.consumers.len(), "producer closed");
        Ok(closed)
    }
}

/// The SSRCs (media and RTX) a producer's encodings declare.
fn ssrcs_of(rtp: &RtpParameters) -> impl Iterator<Item = u32> + '_ {
    rtp.encodings
        .iter()
        .flat_map(|e| e.ssrc.into_iter().chain(e.rtx.map(|r| r.ssrc)))
}

/// Hand str0m the offer that describes the send transport's m-lines as they
/// are now (see `sdp.rs`), discarding the answer. Closed producers' m-lines
/// go in rejected, which frees their slots, as long as a live one holds the
/// BUNDLE group (str0m wants one).
fn apply_send_offer(tid: TransportId, t: &mut Transport) -> Result<(), EngineError> {
    let (Some(dtls), Some(creds)) = (&t.dtls, &t.remote_creds) else {
        return Err(EngineError::NotConnected(tid));
    };
    let release = t.send_media.iter().any(|m| m.state == MediaState::Sending);
    let offered = |state| {
        if release && state == MediaState::Inactive {
            MediaState::Rejected
        } else {
            state
        }
    };
    let media: Vec<SendMedia<'_>> = t
        .send_media
        .iter()
        .map(|m| SendMedia {
            mid: &m.mid,
            kind: m.kind,
            rtp_parameters: &m.rtp_parameters,
            state: offered(m.state),
        })
        .collect();
    t.offer_version += 1;
    let remote = RemoteEnd {
        ice_ufrag: &creds.ufrag,
        ice_pwd: &creds.pass,
        fingerprint: &dtls.remote_fingerprint,
        setup: if dtls.browser_is_client {
            "active"
        } else {
            "passive"
        },
    };
    let offer_text = send_transport_offer(&remote, &media, t.offer_version);
    let offer = SdpOffer::from_sdp_string(&offer_text).map_err(|e| {
        EngineError::InvalidRtpParameters(format!("parameters do not form a valid SDP: {e}"))
    })?;
    t.rtc.sdp_api().accept_offer(offer).map_err(|e| {
        EngineError::InvalidRtpParameters(format!("str0m refused the media description: {e}"))
    })?;
    for m in &mut t.send_media {
        m.state = offered(m.state);
    }
    Ok(())
}
