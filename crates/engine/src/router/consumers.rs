//! Consumers: a producer's track sent on a receive transport, declared
//! through str0m's Direct API (its own mid, SSRC and RTX SSRC); pausing and
//! resuming it, and closing it.

use super::{Consumer, Direction, Router, RTX_CACHE_AGE, RTX_CACHE_PACKETS, RTX_RATIO_CAP};
use crate::allocation::temporal::TemporalFilter;
use crate::allocation::Layer;
use crate::api::{ConsumerInfo, EngineError};
use crate::forward::{LayerSwitch, SeqRewriter, Vp8Rewriter};
use crate::rtp_params::{consumer_rtp_parameters, ConsumerRtp};
use mediasoup_types::rtp_parameters::MediaKind;
use simplesfu_proto::{ConsumerId, ProducerId, TransportId};
use std::collections::HashSet;
use std::time::Instant;
use str0m::format::Codec;
use str0m::media::{MediaKind as StrMediaKind, Mid};

/// A consumer's priority in the bandwidth allocation until its client sets one.
const DEFAULT_PRIORITY: u8 = 1;
use str0m::rtp::Ssrc;

impl Router {
    /// Create a consumer of `producer_id` on receive transport `tid`. It starts paused.
    pub fn consume(
        &mut self,
        tid: TransportId,
        producer_id: ProducerId,
    ) -> Result<ConsumerInfo, EngineError> {
        let producer = self
            .producers
            .get(&producer_id)
            .ok_or(EngineError::ProducerNotFound(producer_id))?;
        let kind = producer.kind;
        let router_codec = producer.router_codec.clone();
        let router_rtx_pt = producer.router_rtx_pt;
        let simulcast = producer.is_simulcast();
        let producer_paused = producer.paused;
        let msid_stream = producer.msid_stream.clone();
        let max_bitrate = producer.max_bitrate;
        let layer_count = producer.layers.len();
        let codec = producer.codec;
        let t = self.transport_mut(tid, Direction::Recv)?;
        // A single stream (nothing to choose from) is not held to the
        // estimator's starting guess before the transport's first estimate:
        // paced at it, a 1.5 Mbit/s camera queued for that time (up to
        // `NO_FEEDBACK_AFTER`), reached the viewer late, and str0m's queue
        // kept the capacity it grew to (about 50 kB per viewer).
        let unpaced = t.unpaced || (!simulcast && t.estimate_bps.is_none());
        let mid_text = match &mut t.planned_mids {
            // Numbered after the client's offer: its next m-line of this kind.
            Some(planned) => {
                let i = planned
                    .iter()
                    .position(|(k, _)| *k == kind)
                    .ok_or(EngineError::NoMediaSlot(tid, kind))?;
                planned.remove(i).1
            }
            None => {
                let mid = t.next_consumer_mid.to_string();
                t.next_consumer_mid += 1;
                mid
            }
        };
        let mid = Mid::from(mid_text.as_str());
        let mut api = t.rtc.direct_api();
        let ssrc = fresh_ssrc(&mut t.used_ssrcs, || api.new_ssrc());
        let rtx = router_rtx_pt.map(|_| fresh_ssrc(&mut t.used_ssrcs, || api.new_ssrc()));
        let str0m_kind = match kind {
            MediaKind::Audio => StrMediaKind::Audio,
            MediaKind::Video => StrMediaKind::Video,
        };
        api.declare_media(mid, str0m_kind);
        api.declare_stream_tx(ssrc, rtx, mid, None);
        // Audio is never paced; video unless the transport gets no feedback
        // (see `Router::set_video_paced`) or, a single stream, until its
        // first estimate.
        if let Some(stream) = api.stream_tx(&ssrc).filter(|_| kind == MediaKind::Video) {
            stream.set_unpaced(unpaced);
            // The copies kept to answer NACKs are most of a viewer's memory:
            // str0m keeps 3 s by default (see RTX_CACHE_AGE).
            stream.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, Some(RTX_RATIO_CAP));
        }
        let cname = t.rtc.media(mid).map(|m| m.cname().to_owned());
        let consumer_id = ConsumerId::new();
        t.consumers_by_mid.insert(mid, consumer_id);
        let rtp_parameters = consumer_rtp_parameters(ConsumerRtp {
            kind,
            mid: mid_text,
            router_codec,
            router_rtx_pt,
            ssrc: *ssrc,
            rtx: rtx.map(|r| *r),
            cname,
            msid: msid_stream.map(|s| format!("{s} {consumer_id}")),
            max_bitrate,
            layer_count,
        });
        self.consumers.insert(
            consumer_id,
            Consumer {
                producer_id,
                transport_id: tid,
                kind,
                mid,
                ssrc,
                paused: true,
                layers: LayerSwitch::new(simulcast),
                seq: SeqRewriter::new(),
                vp8: Vp8Rewriter::new(),
                priority: DEFAULT_PRIORITY,
                preferred: None,
                spatial_cap: None,
                paused_for_bandwidth: false,
                temporal: (codec == Codec::Vp8).then(|| TemporalFilter::new(Layer::TOP.temporal)),
                reported_layers: None,
            },
        );
        if let Some(p) = self.producers.get_mut(&producer_id) {
            p.consumers.push(consumer_id);
        }
        self.mark_dirty(tid);
        tracing::debug!(consumer = %consumer_id, producer = %producer_id, transport = %tid, "consumer created");
        Ok(ConsumerInfo {
            id: consumer_id,
            producer_id,
            kind,
            rtp_parameters,
            consumer_type: if simulcast { "simulcast" } else { "simple" },
            producer_paused,
        })
    }

    /// Pause or resume a consumer. Resuming a video consumer asks for a key frame.
    pub fn set_consumer_paused(
        &mut self,
        now: Instant,
        id: ConsumerId,
        paused: bool,
    ) -> Result<(), EngineError> {
        let c = self
            .consumers
            .get_mut(&id)
            .ok_or(EngineError::ConsumerNotFound(id))?;
        c.paused = paused;
        let (kind, producer) = (c.kind, c.producer_id);
        if !paused && kind == MediaKind::Video {
            // The decoder needs a key frame to start (or restart) after a gap.
            c.layers.restart();
            self.request_keyframe(now, producer, None);
        }
        if !paused {
            if let Some(c) = self.consumers.get_mut(&id) {
                c.restart_stream();
            }
        }
        if let Some(tid) = self.consumers.get(&id).map(|c| c.transport_id) {
            self.allocate(now, tid);
        }
        Ok(())
    }

    /// The highest layers the consumer's client wants: the allocation never
    /// goes above them. `temporal: None` means every temporal layer.
    pub fn set_consumer_preferred_layers(
        &mut self,
        now: Instant,
        id: ConsumerId,
        spatial: u8,
        temporal: Option<u8>,
    ) -> Result<(), EngineError> {
        let c = self
            .consumers
            .get(&id)
            .ok_or(EngineError::ConsumerNotFound(id))?;
        let (spatial_layers, temporal_layers) = match c.kind {
            MediaKind::Audio => (0, 0),
            MediaKind::Video => {
                let producer = self
                    .producers
                    .get(&c.producer_id)
                    .ok_or(EngineError::ProducerNotFound(c.producer_id))?;
                (producer.layers.len(), usize::from(Layer::TOP.temporal) + 1)
            }
        };
        let top_temporal = temporal_layers.saturating_sub(1) as u8;
        let temporal_layer = temporal.unwrap_or(top_temporal);
        if usize::from(spatial) >= spatial_layers || usize::from(temporal_layer) >= temporal_layers
        {
            return Err(EngineError::LayersOutOfRange {
                consumer: id,
                spatial,
                temporal: temporal_layer,
                spatial_layers,
                temporal_layers,
            });
        }
        let tid = c.transport_id;
        if let Some(c) = self.consumers.get_mut(&id) {
            c.preferred = Some(Layer::new(spatial, temporal_layer));
        }
        self.allocate(now, tid);
        Ok(())
    }

    /// The consumer's weight in its transport's allocation: 1..=255, higher
    /// goes up first and takes more steps per round.
    pub fn set_consumer_priority(
        &mut self,
        now: Instant,
        id: ConsumerId,
        priority: u8,
    ) -> Result<(), EngineError> {
        if priority == 0 {
            return Err(EngineError::InvalidPriority(priority));
        }
        let c = self
            .consumers
            .get_mut(&id)
            .ok_or(EngineError::ConsumerNotFound(id))?;
        c.priority = priority;
        let tid = c.transport_id;
        self.allocate(now, tid);
        Ok(())
    }

    /// Close one consumer.
    pub fn close_consumer(&mut self, id: ConsumerId) -> Result<(), EngineError> {
        if !self.consumers.contains_key(&id) {
            return Err(EngineError::ConsumerNotFound(id));
        }
        self.remove_consumer(id);
        Ok(())
    }

    pub(super) fn remove_consumer(&mut self, id: ConsumerId) {
        let Some(c) = self.consumers.remove(&id) else {
            return;
        };
        if let Some(p) = self.producers.get_mut(&c.producer_id) {
            p.consumers.retain(|x| *x != id);
        }
        if let Some(t) = self.transports.get_mut(&c.transport_id) {
            t.consumers_by_mid.remove(&c.mid);
            t.rtc.direct_api().remove_media(c.mid);
            self.mark_dirty(c.transport_id);
            // What it had goes to the others, at the end of this step.
            self.reallocate.insert(c.transport_id);
        }
    }
}

pub(super) fn fresh_ssrc(used: &mut HashSet<u32>, mut next: impl FnMut() -> Ssrc) -> Ssrc {
    loop {
        let s = next();
        if *s != 0 && used.insert(*s) {
            return s;
        }
    }
}

impl Consumer {
    /// Continue right after the last packet sent, whatever the producer sent
    /// meanwhile (a resume, or the end of a pause for bandwidth).
    pub(super) fn restart_stream(&mut self) {
        self.seq.rebase();
        self.vp8.rebase();
        if let Some(filter) = &mut self.temporal {
            filter.restart();
        }
    }
}
