//! A worker whose thread has stopped says so (`WorkerHandle::is_alive`), so
//! the server places new peers on a running one instead, and its requests
//! fail at once rather than hang.

mod common;

use common::*;
use simplesfu_engine::{Direction, EngineError, WebRtcTransportOptions};
use std::time::Duration;

#[test]
fn a_stopped_worker_reports_itself_not_alive_and_refuses_requests() {
    let sfu = Sfu::start();
    let other = spawn_worker("stopping");
    assert!(other.is_alive(), "a running worker is alive");
    other.shutdown();
    sfu.block(async { tokio::time::timeout(Duration::from_secs(5), other.stopped()).await })
        .expect("the worker thread stops");
    assert!(!other.is_alive(), "a stopped worker is not alive");
    let refused = sfu.block(other.create_webrtc_transport(WebRtcTransportOptions {
        direction: Direction::Send,
        enable_sctp: true,
        force_tcp: false,
    }));
    assert_eq!(refused.map(|_| ()), Err(EngineError::WorkerGone));
    assert!(sfu.worker.is_alive(), "other workers are untouched");
    assert!(sfu.block(sfu.worker.stats()).is_ok());
}
