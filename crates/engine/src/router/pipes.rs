//! Pipes between workers (mediasoup's `pipeToRouter`): the origin side
//! describes a producer and sends its packets; the destination mirrors it
//! (same id) so local transports can consume it. Data producers likewise.

use super::{
    DataProducer, ForwardedPacket, Layer, PipeOut, PipedDataProducer, PipedProducer, Producer,
    ProducerSource, Router,
};
use crate::api::EngineError;
use crate::worker::Command;
use simplesfu_proto::{DataProducerId, ProducerId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use str0m::media::Mid;
use tokio::sync::mpsc::UnboundedSender;

impl Router {
    /// Start piping `id`'s packets to another worker (once per worker) and
    /// describe the producer so that worker can mirror it.
    pub(crate) fn pipe_out(
        &mut self,
        id: ProducerId,
        worker: Arc<str>,
        sink: UnboundedSender<Command>,
    ) -> Result<PipedProducer, EngineError> {
        let p = self
            .producers
            .get_mut(&id)
            .ok_or(EngineError::ProducerNotFound(id))?;
        add_pipe(&mut p.pipes, worker, sink);
        Ok(PipedProducer {
            id,
            kind: p.kind,
            codec: p.codec,
            router_codec: p.router_codec.clone(),
            router_rtx_pt: p.router_rtx_pt,
            msid_stream: p.msid_stream.clone(),
            max_bitrate: p.max_bitrate,
            layers: p.layers.len(),
            paused: p.paused,
        })
    }

    /// Mirror a producer of another worker so local transports can consume it.
    pub(crate) fn pipe_in(&mut self, piped: PipedProducer, origin: UnboundedSender<Command>) {
        if self.producers.contains_key(&piped.id) {
            return;
        }
        let layers = (0..piped.layers)
            .map(|_| Layer {
                rid: None,
                ssrc: None,
                last_packet: None,
                last_keyframe_request: None,
            })
            .collect();
        self.producers.insert(
            piped.id,
            Producer {
                source: ProducerSource::Pipe(origin),
                pipes: Vec::new(),
                relays: Vec::new(),
                kind: piped.kind,
                mid: Mid::from("pipe"),
                codec: piped.codec,
                pt_map: HashMap::new(),
                router_codec: piped.router_codec,
                router_rtx_pt: piped.router_rtx_pt,
                msid_stream: piped.msid_stream,
                max_bitrate: piped.max_bitrate,
                layers,
                paused: piped.paused,
                consumers: Vec::new(),
                meter: None,
            },
        );
        tracing::debug!(producer = %piped.id, "producer piped in from another worker");
    }

    pub(super) fn on_pipe_packet(&mut self, now: Instant, packet: ForwardedPacket) {
        match self.producers.get(&packet.producer_id) {
            Some(p)
                if matches!(p.source, ProducerSource::Pipe(_)) && packet.layer < p.layers.len() =>
            {
                self.fan_out(now, packet)
            }
            // Not mirrored (yet or any more): nobody here wants it.
            _ => {}
        }
    }

    /// Start piping a data producer's messages to another worker (once per worker).
    pub(crate) fn data_pipe_out(
        &mut self,
        id: DataProducerId,
        worker: Arc<str>,
        sink: UnboundedSender<Command>,
    ) -> Result<PipedDataProducer, EngineError> {
        let d = self
            .data_producers
            .get_mut(&id)
            .ok_or(EngineError::DataProducerNotFound(id))?;
        add_pipe(&mut d.pipes, worker, sink);
        Ok(PipedDataProducer {
            id,
            params: d.params,
            label: d.label.clone(),
            protocol: d.protocol.clone(),
        })
    }

    /// Mirror a data producer of another worker.
    pub(crate) fn data_pipe_in(&mut self, piped: PipedDataProducer) {
        self.data_producers.entry(piped.id).or_insert(DataProducer {
            source: None,
            pipes: Vec::new(),
            params: piped.params,
            label: piped.label,
            protocol: piped.protocol,
            consumers: Vec::new(),
        });
    }

    pub(super) fn on_data_pipe_close(&mut self, id: DataProducerId) {
        if self
            .data_producers
            .get(&id)
            .is_some_and(|d| d.source.is_none())
        {
            let _ = self.close_data_producer(id);
        }
    }

    /// The origin paused or resumed a producer mirrored here: the mirror
    /// follows, so that its consumers report it and forward again on resume
    /// (the origin asks its sender for the key frame).
    pub(super) fn on_pipe_paused(&mut self, id: ProducerId, paused: bool) {
        if let Some(p) = self
            .producers
            .get_mut(&id)
            .filter(|p| matches!(p.source, ProducerSource::Pipe(_)))
        {
            p.paused = paused;
        }
    }

    pub(super) fn on_pipe_close(&mut self, id: ProducerId) {
        if self
            .producers
            .get(&id)
            .is_some_and(|p| matches!(p.source, ProducerSource::Pipe(_)))
        {
            let _ = self.close_producer(id);
        }
    }
}

/// A pipe to `worker`, unless there is one already (piping is idempotent).
fn add_pipe(pipes: &mut Vec<PipeOut>, worker: Arc<str>, sink: UnboundedSender<Command>) {
    if !pipes.iter().any(|pipe| pipe.worker == worker) {
        pipes.push(PipeOut { worker, sink });
    }
}
