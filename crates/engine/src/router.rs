//! The router: every transport, producer and consumer of one worker.

use crate::api::*;
use crate::capabilities::router_rtp_capabilities;
use crate::worker::Command;
use mediasoup_types::rtp_parameters::RtpCapabilitiesFinalized;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Where the router's socket is.
#[derive(Debug, Clone, Copy)]
pub struct RouterConfig {
    pub local_addr: SocketAddr,
    pub announced_addr: SocketAddr,
}

/// All media state of one worker.
pub struct Router {
    config: RouterConfig,
    caps: RtpCapabilitiesFinalized,
    stats: WorkerStats,
    events: Vec<EngineEvent>,
}

impl Router {
    pub fn new(config: RouterConfig) -> Self {
        Router { config, caps: router_rtp_capabilities(), stats: WorkerStats::default(), events: vec![] }
    }
    pub fn rtp_capabilities(&self) -> &RtpCapabilitiesFinalized {
        &self.caps
    }
    pub(crate) fn handle_command(&mut self, _now: Instant, cmd: Command) {
        let _ = self.config;
        let unimplemented = || EngineError::Internal("not implemented yet".into());
        match cmd {
            Command::CreateTransport(_, r) => { let _ = r.send(Err(unimplemented())); }
            Command::ConnectTransport(_, _, r) => { let _ = r.send(Err(unimplemented())); }
            Command::CloseTransport(_, r) => { let _ = r.send(Err(unimplemented())); }
            Command::Produce(_, r) => { let _ = r.send(Err(unimplemented())); }
            Command::PauseProducer(_, _, r) => { let _ = r.send(Err(unimplemented())); }
            Command::CloseProducer(_, r) => { let _ = r.send(Err(unimplemented())); }
            Command::Consume(_, _, r) => { let _ = r.send(Err(unimplemented())); }
            Command::PauseConsumer(_, _, r) => { let _ = r.send(Err(unimplemented())); }
            Command::CloseConsumer(_, r) => { let _ = r.send(Err(unimplemented())); }
            Command::ProduceData(_, r) => { let _ = r.send(Err(unimplemented())); }
            Command::CloseDataProducer(_, r) => { let _ = r.send(Err(unimplemented())); }
            Command::ConsumeData(_, _, r) => { let _ = r.send(Err(unimplemented())); }
            Command::CloseDataConsumer(_, r) => { let _ = r.send(Err(unimplemented())); }
            Command::Stats(r) => { let _ = r.send(self.stats); }
            Command::Shutdown => {}
        }
    }
    pub fn handle_datagram(&mut self, _now: Instant, _source: SocketAddr, _data: &[u8]) {
        self.stats.datagrams_dropped += 1;
    }
    pub fn handle_timeout(&mut self, _now: Instant) {}
    pub fn next_timeout(&self) -> Instant {
        Instant::now() + Duration::from_millis(100)
    }
    pub fn drain(&mut self, mut _send: impl FnMut(SocketAddr, &[u8])) {}
    pub fn take_events(&mut self) -> Vec<EngineEvent> {
        std::mem::take(&mut self.events)
    }
}
