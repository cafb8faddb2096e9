//! Forwarding: incoming RTP mapped to (producer, layer) by SSRC, then fanned
//! out to pipes and to each consumer with its layer choice and its rewritten
//! sequence numbers, timestamps and VP8 numbering (`forward.rs`); key-frame
//! requests to producers, throttled per layer.

use super::{ForwardedPacket, ProducerSource, Router, KEYFRAME_REQUEST_INTERVAL};
use crate::allocation::meter::LayerMeter;
use crate::allocation::temporal::{TemporalDecision, TemporalFilter};
use crate::allocation::Layer;
use crate::forward::{is_keyframe_start, Vp8Info};
use crate::worker::Command;
use mediasoup_types::rtp_parameters::MediaKind;
use simplesfu_proto::{ProducerId, TransportId};
use std::time::Instant;

/// RTP header bytes a forwarded packet carries (12 fixed, then the
/// extensions we send: abs-send-time, transport-wide sequence number and
/// their header), added to the payload for the layer meters: what they
/// measure is compared with the estimate of the consumers' datagrams.
const FORWARDED_HEADER_BYTES: usize = 12 + 4 + 4 + 4;
use str0m::format::Codec;
use str0m::media::KeyframeRequestKind;
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc};

impl Router {
    fn route_of(&mut self, tid: TransportId, ssrc: Ssrc) -> Option<(ProducerId, usize)> {
        let t = self.transports.get_mut(&tid)?;
        if let Some(route) = t.ssrc_routes.get(&ssrc) {
            return Some(*route);
        }
        let (mid, rid) = {
            let stream = t
                .rtc
                .direct_api()
                .stream_rx(&ssrc)
                .map(|s| (s.mid(), s.rid()))?;
            stream
        };
        let mid_text = mid.to_string();
        let producer_id = t
            .send_media
            .iter()
            .find(|m| m.mid == mid_text)
            .and_then(|m| m.producer)?;
        let producer = self.producers.get(&producer_id)?;
        let layer = producer
            .layers
            .iter()
            .position(|l| (rid.is_some() && l.rid == rid) || l.ssrc == Some(*ssrc))
            .or(if producer.layers.len() == 1 {
                Some(0)
            } else {
                None
            })?;
        t.ssrc_routes.insert(ssrc, (producer_id, layer));
        Some((producer_id, layer))
    }

    pub(super) fn forward_rtp(&mut self, now: Instant, tid: TransportId, packet: RtpPacket) {
        self.stats.rtp_packets_in += 1;
        let Some((producer_id, layer)) = self.route_of(tid, packet.header.ssrc) else {
            self.stats.datagrams_dropped += 1;
            return;
        };
        self.stats.rtp_bytes_in += packet.payload.len() as u64;
        let Some(producer) = self.producers.get(&producer_id) else {
            return;
        };
        let Some(&router_pt) = producer.pt_map.get(&*packet.header.payload_type) else {
            return;
        };
        if producer.kind == MediaKind::Audio {
            // Levels of this worker's own producers only: piped copies are
            // reported where they come from.
            let ext = &packet.header.ext_vals;
            self.audio_levels
                .record(now, tid, producer_id, ext.audio_level, ext.voice_activity);
        }
        let vp8 = if producer.codec == Codec::Vp8 {
            Vp8Info::parse(&packet.payload)
        } else {
            None
        };
        let keyframe = match &vp8 {
            Some(vp8) => vp8.keyframe(),
            None => producer.is_simulcast() && is_keyframe_start(producer.codec, &packet.payload),
        };
        let packet = ForwardedPacket {
            producer_id,
            layer,
            seq_no: *packet.seq_no,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            router_pt,
            keyframe,
            vp8,
            arrival: packet.timestamp,
            ext: ExtensionValues {
                audio_level: packet.header.ext_vals.audio_level,
                voice_activity: packet.header.ext_vals.voice_activity,
                video_orientation: packet.header.ext_vals.video_orientation,
                ..Default::default()
            },
            payload: packet.payload,
        };
        self.fan_out(now, packet);
        // Under a steady stream the worker may not reach its timer branch.
        self.report_audio_levels(now);
    }

    /// A packet of a producer (own or piped in): to every pipe and every
    /// consumer that wants it.
    pub(super) fn fan_out(&mut self, now: Instant, packet: ForwardedPacket) {
        let (producer_id, layer) = (packet.producer_id, packet.layer);
        let Some(producer) = self.producers.get_mut(&producer_id) else {
            return;
        };
        let first_of_layer = producer.layers[layer].last_packet.is_none();
        producer.layers[layer].last_packet = Some(now);
        let temporal_layer = packet
            .vp8
            .as_ref()
            .and_then(|vp8| vp8.temporal())
            .map_or(0, |t| t.tid);
        producer
            .meter
            .get_or_insert_with(|| LayerMeter::new(now))
            .record(
                now,
                Layer::new(layer as u8, temporal_layer),
                packet.payload.len() + FORWARDED_HEADER_BYTES,
            );
        if producer.paused {
            return;
        }
        // A pipe whose worker is gone is dropped on the first failed send.
        producer.pipes.retain(|pipe| !pipe.sink.is_closed());
        for pipe in &producer.pipes {
            match self
                .pipe_outbox
                .iter_mut()
                .find(|(worker, _, _)| *worker == pipe.worker)
            {
                Some((_, _, batch)) => batch.push(packet.clone()),
                None => self.pipe_outbox.push((
                    pipe.worker.clone(),
                    pipe.sink.clone(),
                    vec![packet.clone()],
                )),
            }
        }
        let best = producer.best_layer(now);
        let video = producer.kind == MediaKind::Video;
        let simulcast = producer.is_simulcast();
        let clock = if video { 90_000 } else { 48_000 };
        // Links to other nodes take every layer as it comes.
        let mut relayed_to = Vec::new();
        for relay in &mut producer.relays {
            let Some(t) = self.transports.get_mut(&relay.link) else {
                continue;
            };
            let Some((ssrc, seq_no, time)) =
                relay.number(now, layer, packet.seq_no, packet.timestamp, clock)
            else {
                continue;
            };
            if let Some(stream) = t.rtc.direct_api().stream_tx(&ssrc) {
                stream.write_rtp(
                    RtpWrite::new(
                        packet.router_pt,
                        seq_no.into(),
                        time,
                        packet.arrival,
                        packet.payload.clone(),
                    )
                    .marker(packet.marker)
                    .ext_vals(packet.ext.clone())
                    .nackable(video),
                );
                self.stats.rtp_packets_out += 1;
                self.stats.rtp_bytes_out += packet.payload.len() as u64;
                relayed_to.push(relay.link);
            }
        }
        for link in relayed_to {
            self.mark_dirty(link);
        }
        let Some(producer) = self.producers.get(&producer_id) else {
            return;
        };
        let consumers = producer.consumers.clone();
        if first_of_layer && simulcast {
            // A layer that just started: consumers that want it need its key frame.
            self.request_keyframe(now, producer_id, Some(layer));
        }
        let mut wants_keyframe = None;
        let mut now_forwarding = Vec::new();
        for cid in consumers {
            let Some(c) = self.consumers.get_mut(&cid) else {
                continue;
            };
            if c.paused || c.paused_for_bandwidth {
                continue;
            }
            let target = match c.spatial_cap {
                Some(cap) => best.map(|best| best.min(cap)),
                None => best,
            };
            let decision = c.layers.accept(layer, target, packet.keyframe);
            if decision.want_keyframe.is_some() {
                wants_keyframe = decision.want_keyframe;
            }
            if !decision.forward {
                continue;
            }
            if decision.switched {
                c.seq.rebase();
                c.vp8.rebase();
                if let Some(filter) = &mut c.temporal {
                    filter.restart();
                }
            }
            // The temporal filter hands on closed-up numbers, so the rewriters
            // see a stream that simply has fewer packets.
            let (in_seq, picture_id) = match (
                &mut c.temporal,
                packet.vp8.as_ref().and_then(|vp8| vp8.temporal()),
            ) {
                (Some(filter), Some(vp8)) => match filter.filter(packet.seq_no, vp8) {
                    TemporalDecision::Forward { seq, picture_id } => (seq, picture_id),
                    TemporalDecision::Drop => continue,
                },
                (Some(filter), None) => match filter.pass(packet.seq_no) {
                    Some(seq) => (seq, None),
                    None => continue,
                },
                (None, _) => (packet.seq_no, None),
            };
            let Some((seq_no, time)) = c.seq.rewrite(now, in_seq, packet.timestamp, clock) else {
                continue;
            };
            let vp8_patch = packet
                .vp8
                .as_ref()
                .and_then(|vp8| c.vp8.rewrite(vp8, picture_id));
            let (consumer_tid, ssrc) = (c.transport_id, c.ssrc);
            // The layers it forwards from now on, reported (to viewers whose
            // allocation runs on an estimate) when they change.
            let forwarding = (
                Some(layer as u8),
                Some(
                    c.temporal
                        .as_ref()
                        .and_then(TemporalFilter::current)
                        .unwrap_or(0),
                ),
            );
            let report = video && c.reported_layers != Some(forwarding);
            let Some(t) = self.transports.get_mut(&consumer_tid) else {
                continue;
            };
            if report && t.estimate_bps.is_some() {
                now_forwarding.push((cid, forwarding));
            }
            let mut api = t.rtc.direct_api();
            let Some(stream) = api.stream_tx(&ssrc) else {
                continue;
            };
            // A transport numbered after its client's offer (WHEP) sends
            // with the client's payload types.
            let pt = match &t.pt_out {
                None => packet.router_pt,
                Some(map) => map
                    .get(&packet.router_pt)
                    .copied()
                    .unwrap_or(packet.router_pt),
            };
            let mut write = RtpWrite::new(
                pt,
                seq_no.into(),
                time,
                packet.arrival,
                packet.payload.clone(),
            )
            .marker(packet.marker)
            .ext_vals(packet.ext.clone())
            .nackable(video);
            if let Some(patch) = vp8_patch {
                // Applied while str0m serialises: the shared payload is not copied.
                write = write.vp8_patch(patch);
            }
            stream.write_rtp(write);
            if video && t.video_sent_at.is_none() {
                // str0m can pad and probe on this stream now: the
                // allocation hands its estimator the targets at once.
                t.video_sent_at = Some(now);
                self.reallocate.insert(consumer_tid);
            }
            self.stats.rtp_packets_out += 1;
            self.stats.rtp_bytes_out += packet.payload.len() as u64;
            self.mark_dirty(consumer_tid);
        }
        if let Some(target) = wants_keyframe {
            self.request_keyframe(now, producer_id, Some(target));
        }
        for (cid, layers) in now_forwarding {
            self.report_layers(cid, layers);
        }
    }

    /// Ask a producer for a key frame (PLI), at most once per interval per layer.
    /// `layer: None` means every layer.
    pub(super) fn request_keyframe(
        &mut self,
        now: Instant,
        producer_id: ProducerId,
        layer: Option<usize>,
    ) {
        let Some(p) = self.producers.get_mut(&producer_id) else {
            return;
        };
        if p.kind != MediaKind::Video {
            return;
        }
        let range = match layer {
            Some(l) if l < p.layers.len() => l..l + 1,
            _ => 0..p.layers.len(),
        };
        let tid = match &p.source {
            ProducerSource::Transport(tid) => *tid,
            ProducerSource::Pipe(origin) => {
                for l in range {
                    let layer = &mut p.layers[l];
                    if layer.last_keyframe_request.is_some_and(|t| {
                        now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL
                    }) {
                        continue;
                    }
                    layer.last_keyframe_request = Some(now);
                    let _ = origin.send(Command::PipeKeyframe(producer_id, Some(l)));
                }
                return;
            }
        };
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        for l in range {
            let layer = &mut p.layers[l];
            if layer
                .last_keyframe_request
                .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL)
            {
                continue;
            }
            let mut api = t.rtc.direct_api();
            let stream = match layer.ssrc {
                Some(ssrc) => api.stream_rx(&Ssrc::from(ssrc)),
                None => api.stream_rx_by_mid(p.mid, layer.rid),
            };
            if let Some(stream) = stream {
                stream.request_keyframe(KeyframeRequestKind::Pli);
                layer.last_keyframe_request = Some(now);
            }
        }
        self.mark_dirty(tid);
    }
}
