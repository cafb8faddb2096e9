//! Data producers and consumers: negotiated SCTP channels (the client's
//! stream id for a producer, the lowest free one for a consumer), the fan-out
//! of messages, and the bounded wait (`pending.rs`) of messages for a
//! consumer whose channel is not open or whose send buffer is full.

use super::{DataConsumer, DataProducer, DataRoute, Direction, Router, Transport, SCTP_STREAMS};
use crate::api::{DataConsumerInfo, DataProducerOptions, EngineError};
use crate::pending::PendingMessages;
use crate::worker::Command;
use mediasoup_types::sctp_parameters::SctpStreamParameters;
use simplesfu_proto::{DataConsumerId, DataProducerId, TransportId};
use std::sync::Arc;
use std::time::Instant;
use str0m::channel::{ChannelConfig, ChannelId, Reliability};

impl Router {
    /// Start receiving data on a send transport's SCTP stream.
    pub fn produce_data(&mut self, o: DataProducerOptions) -> Result<DataProducerId, EngineError> {
        let tid = o.transport_id;
        let t = self.transport_mut(tid, Direction::Send)?;
        if !t.sctp {
            return Err(EngineError::InvalidSctpParameters(
                "the transport was created without SCTP".into(),
            ));
        }
        if t.dtls.is_none() {
            return Err(EngineError::NotConnected(tid));
        }
        let stream_id = o.sctp_stream_parameters.stream_id;
        if stream_id >= SCTP_STREAMS || t.used_stream_ids.contains(&stream_id) {
            return Err(EngineError::InvalidSctpParameters(format!(
                "stream id {stream_id} is in use or out of range (0..{SCTP_STREAMS})"
            )));
        }
        let id = DataProducerId::new();
        self.open_data_producer(tid, id, o.sctp_stream_parameters, o.label, o.protocol)?;
        Ok(id)
    }

    /// A data producer `id` arriving on negotiated stream
    /// `params.stream_id` of transport `tid` (checked free by the caller).
    pub(super) fn open_data_producer(
        &mut self,
        tid: TransportId,
        id: DataProducerId,
        params: SctpStreamParameters,
        label: String,
        protocol: String,
    ) -> Result<(), EngineError> {
        let reliability = reliability_of(&params)?;
        let t = self
            .transports
            .get_mut(&tid)
            .ok_or(EngineError::TransportNotFound(tid))?;
        let channel = t.rtc.direct_api().create_data_channel(ChannelConfig {
            label: label.clone(),
            ordered: params.ordered,
            reliability,
            negotiated: Some(params.stream_id),
            protocol: protocol.clone(),
        });
        t.used_stream_ids.insert(params.stream_id);
        t.channels.insert(channel, DataRoute::Producer(id));
        self.data_producers.insert(
            id,
            DataProducer {
                source: Some((tid, channel)),
                pipes: Vec::new(),
                params,
                label,
                protocol,
                consumers: Vec::new(),
            },
        );
        self.mark_dirty(tid);
        Ok(())
    }

    /// A data consumer of `dp` writing to negotiated stream `stream_id` of
    /// transport `tid` (checked free by the caller), with `dp`'s ordering
    /// and reliability.
    pub(super) fn open_data_consumer(
        &mut self,
        tid: TransportId,
        dp: DataProducerId,
        stream_id: u16,
    ) -> Result<DataConsumerId, EngineError> {
        let producer = self
            .data_producers
            .get(&dp)
            .ok_or(EngineError::DataProducerNotFound(dp))?;
        let reliability = reliability_of(&producer.params)?;
        let config = ChannelConfig {
            label: producer.label.clone(),
            ordered: producer.params.ordered,
            reliability,
            negotiated: Some(stream_id),
            protocol: producer.protocol.clone(),
        };
        let t = self
            .transports
            .get_mut(&tid)
            .ok_or(EngineError::TransportNotFound(tid))?;
        let channel = t.rtc.direct_api().create_data_channel(config);
        t.used_stream_ids.insert(stream_id);
        let id = DataConsumerId::new();
        t.channels.insert(channel, DataRoute::Consumer(id));
        self.data_consumers.insert(
            id,
            DataConsumer {
                data_producer_id: dp,
                transport_id: tid,
                channel,
                stream_id,
                open: false,
                pending: PendingMessages::default(),
            },
        );
        if let Some(p) = self.data_producers.get_mut(&dp) {
            p.consumers.push(id);
        }
        self.mark_dirty(tid);
        Ok(id)
    }

    /// Close a data producer and its data consumers.
    pub fn close_data_producer(
        &mut self,
        id: DataProducerId,
    ) -> Result<Vec<DataConsumerId>, EngineError> {
        let d = self
            .data_producers
            .remove(&id)
            .ok_or(EngineError::DataProducerNotFound(id))?;
        for pipe in &d.pipes {
            let _ = pipe.sink.send(Command::DataPipeClose(id));
        }
        if let Some((tid, channel)) = d.source {
            if let Some(t) = self.transports.get_mut(&tid) {
                close_channel(t, channel, d.params.stream_id);
                self.mark_dirty(tid);
            }
        }
        for cid in &d.consumers {
            self.remove_data_consumer(*cid);
        }
        Ok(d.consumers)
    }

    /// Create a data consumer on receive transport `tid`; the server picks the stream id.
    pub fn consume_data(
        &mut self,
        tid: TransportId,
        dp: DataProducerId,
    ) -> Result<DataConsumerInfo, EngineError> {
        let producer = self
            .data_producers
            .get(&dp)
            .ok_or(EngineError::DataProducerNotFound(dp))?;
        let (params, label, protocol) = (
            producer.params,
            producer.label.clone(),
            producer.protocol.clone(),
        );
        let t = self.transport_mut(tid, Direction::Recv)?;
        if !t.sctp {
            return Err(EngineError::InvalidSctpParameters(
                "the receive transport was created without SCTP".into(),
            ));
        }
        let stream_id = (0..SCTP_STREAMS)
            .find(|s| !t.used_stream_ids.contains(s))
            .ok_or_else(|| {
                EngineError::InvalidSctpParameters("no free SCTP stream id left".into())
            })?;
        let id = self.open_data_consumer(tid, dp, stream_id)?;
        Ok(DataConsumerInfo {
            id,
            data_producer_id: dp,
            sctp_stream_parameters: SctpStreamParameters {
                stream_id,
                ..params
            },
            label,
            protocol,
        })
    }

    /// Close one data consumer.
    pub fn close_data_consumer(&mut self, id: DataConsumerId) -> Result<(), EngineError> {
        if !self.data_consumers.contains_key(&id) {
            return Err(EngineError::DataConsumerNotFound(id));
        }
        self.remove_data_consumer(id);
        Ok(())
    }

    fn remove_data_consumer(&mut self, id: DataConsumerId) {
        let Some(d) = self.data_consumers.remove(&id) else {
            return;
        };
        if let Some(p) = self.data_producers.get_mut(&d.data_producer_id) {
            p.consumers.retain(|x| *x != id);
        }
        if self
            .transports
            .get(&d.transport_id)
            .is_some_and(|t| t.link.is_some())
        {
            self.data_relay_closed(d.transport_id, id);
        }
        if let Some(t) = self.transports.get_mut(&d.transport_id) {
            close_channel(t, d.channel, d.stream_id);
            self.mark_dirty(d.transport_id);
        }
    }

    pub(super) fn on_channel_open(&mut self, tid: TransportId, channel: ChannelId) {
        let route = self
            .transports
            .get(&tid)
            .and_then(|t| t.channels.get(&channel))
            .copied();
        match route {
            Some(DataRoute::Consumer(cid)) => {
                if let Some(c) = self.data_consumers.get_mut(&cid) {
                    c.open = true;
                }
                self.flush_data_consumer(cid);
            }
            Some(DataRoute::LinkControl) => self.on_link_control_open(tid),
            _ => {}
        }
    }

    /// The association's send buffer drained: its data consumers (the
    /// buffer is shared by all channels) write what waited for room.
    pub(super) fn on_send_buffer_low(&mut self, tid: TransportId) {
        let waiting: Vec<DataConsumerId> = self
            .data_consumers
            .iter()
            .filter(|(_, c)| c.transport_id == tid && c.open && !c.pending.is_empty())
            .map(|(cid, _)| *cid)
            .collect();
        for cid in waiting {
            self.flush_data_consumer(cid);
        }
    }

    pub(super) fn on_channel_data(
        &mut self,
        now: Instant,
        tid: TransportId,
        channel: ChannelId,
        binary: bool,
        data: &[u8],
    ) {
        let route = self
            .transports
            .get(&tid)
            .and_then(|t| t.channels.get(&channel))
            .copied();
        let pid = match route {
            Some(DataRoute::Producer(pid)) => pid,
            Some(DataRoute::LinkControl) => return self.on_link_control(now, tid, data),
            _ => return,
        };
        self.stats.data_messages_in += 1;
        self.fan_out_data(pid, binary, data);
    }

    /// A message of a data producer (own or piped in): to every pipe and
    /// every data consumer.
    pub(super) fn fan_out_data(&mut self, pid: DataProducerId, binary: bool, data: &[u8]) {
        let consumers = match self.data_producers.get_mut(&pid) {
            Some(p) => {
                if !p.pipes.is_empty() {
                    let shared: Arc<[u8]> = data.into();
                    p.pipes.retain(|pipe| {
                        pipe.sink
                            .send(Command::PipeData(pid, binary, shared.clone()))
                            .is_ok()
                    });
                }
                p.consumers.clone()
            }
            None => return,
        };
        for cid in consumers {
            if let Some(c) = self.data_consumers.get_mut(&cid) {
                self.stats.data_messages_dropped += c.pending.push(binary, data.to_vec());
            }
            self.flush_data_consumer(cid);
        }
    }

    fn flush_data_consumer(&mut self, cid: DataConsumerId) {
        let Some(c) = self.data_consumers.get_mut(&cid) else {
            return;
        };
        let Some(t) = self.transports.get_mut(&c.transport_id) else {
            return;
        };
        while let Some((binary, data)) = c.pending.front() {
            let Some(mut channel) = t.rtc.channel(c.channel) else {
                break;
            };
            match channel.write(*binary, data) {
                Ok(true) => {
                    c.pending.pop_front();
                    self.stats.data_messages_out += 1;
                }
                // Not open yet or the send buffer is full: keep it for later.
                Ok(false) | Err(_) => break,
            }
        }
        let tid = c.transport_id;
        self.mark_dirty(tid);
    }
}

fn reliability_of(p: &SctpStreamParameters) -> Result<Reliability, EngineError> {
    match (p.max_packet_life_time, p.max_retransmits) {
        (None, None) => Ok(Reliability::Reliable),
        (Some(lifetime), None) => Ok(Reliability::MaxPacketLifetime { lifetime }),
        (None, Some(retransmits)) => Ok(Reliability::MaxRetransmits { retransmits }),
        (Some(_), Some(_)) => Err(EngineError::InvalidSctpParameters(
            "maxPacketLifeTime and maxRetransmits cannot both be set".into(),
        )),
    }
}

fn close_channel(t: &mut Transport, channel: ChannelId, stream_id: u16) {
    t.channels.remove(&channel);
    t.used_stream_ids.remove(&stream_id);
    t.rtc.direct_api().close_data_channel(channel);
}
