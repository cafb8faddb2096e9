//! Drives one bot peer against Janus's VideoRoom plugin over its HTTP API.

use crate::media::MediaOptions;
use crate::sfu::{JoinedPeer, PeerSpec};
use crate::transport::RunState;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::watch;

pub async fn join(
    _url: &str,
    _spec: &PeerSpec,
    _options: &MediaOptions,
    _local_ip: IpAddr,
    _run: Arc<RunState>,
    _stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinedPeer> {
    anyhow::bail!("the Janus driver is not built yet")
}
