//! Where a new peer goes: the running worker with the least load, and the
//! error a peer gets when its worker has stopped.

use super::*;

/// The worker for a new peer: the running one with the least load, where
/// load is the peers placed on it plus its transports and consumers (see
/// `WorkerHandle::load`). Counting placed peers spreads a burst of
/// connections before any of them has created a transport. A worker whose
/// thread died (a panic) is skipped: every request to it would fail.
/// `None` when no worker runs.
pub(super) fn least_loaded(
    peers_per_worker: &[usize],
    workers: &[WorkerHandle],
) -> Option<WorkerIndex> {
    let loads: Vec<Option<usize>> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            w.is_alive()
                .then(|| peers_per_worker.get(i).copied().unwrap_or(0) + w.load())
        })
        .collect();
    pick_least(&loads)
}

/// Index of the smallest load among the live workers (`Some`); the first
/// one on ties.
pub(super) fn pick_least(loads: &[Option<usize>]) -> Option<WorkerIndex> {
    loads
        .iter()
        .enumerate()
        .filter_map(|(i, load)| load.map(|load| (load, i)))
        .min()
        .map(|(_, i)| i)
}

/// The error for a request that needs a worker that has stopped.
pub(super) fn worker_stopped(workers: &[WorkerHandle]) -> SignalingError {
    let message = if workers.iter().any(WorkerHandle::is_alive) {
        "the media worker serving this peer has stopped; connect again as a new peer (not a session resume) to be placed on a running worker"
    } else {
        "no media worker is running on this server; it needs a restart (see the server logs)"
    };
    SignalingError::new(ErrorCode::InternalError, message)
}

#[cfg(test)]
mod placement_tests {
    use super::*;

    #[test]
    fn a_worker_with_more_load_is_not_chosen() {
        assert_eq!(pick_least(&[Some(3), Some(1), Some(2)]), Some(1));
        assert_eq!(
            pick_least(&[Some(0), Some(0)]),
            Some(0),
            "ties go to the first worker"
        );
        assert_eq!(pick_least(&[Some(5), Some(5), Some(4)]), Some(2));
    }

    #[test]
    fn a_dead_worker_is_never_chosen() {
        assert_eq!(
            pick_least(&[None, Some(7), Some(3)]),
            Some(2),
            "the idle worker is dead"
        );
        assert_eq!(pick_least(&[None, Some(9)]), Some(1));
        assert_eq!(pick_least(&[None, None]), None, "no worker runs");
        assert_eq!(pick_least(&[]), None);
    }

    fn two_workers() -> Sfu {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Sfu::new(SfuOptions {
            workers: 2,
            rtc_listen_ip: loopback,
            rtc_port: 0,
            announced_ips: vec![loopback],
            available_producers_interval: None,
            ..SfuOptions::default()
        })
        .expect("two workers start")
    }

    async fn stop(worker: &WorkerHandle) {
        worker.shutdown();
        tokio::time::timeout(Duration::from_secs(5), worker.stopped())
            .await
            .expect("the worker thread stops");
    }

    /// New peers go to a running worker, however idle a dead one looks; a
    /// peer whose worker stopped is told what to do, at once.
    #[tokio::test]
    async fn new_peers_go_to_a_running_worker_and_requests_to_a_dead_one_get_a_clear_error() {
        let sfu = two_workers();
        let workers = &sfu.inner.workers;
        assert_eq!(
            least_loaded(&[5, 0], workers),
            Some(1),
            "both run: the less loaded one"
        );
        stop(&workers[1]).await;
        assert!(!workers[1].is_alive());
        assert_eq!(
            least_loaded(&[5, 0], workers),
            Some(0),
            "the idle worker is dead: the busy, running one"
        );

        let peer: PeerId = "peer-on-a-dead-worker".parse().expect("a valid peer id");
        sfu.registry().add_peer(peer.clone(), 1);
        let join =
            Request::parse(&serde_json::json!({"type": "joinRoom", "data": {"roomId": "r"}}))
                .expect("valid");
        let error = sfu
            .dispatch(&peer, join)
            .await
            .expect_err("its worker is gone");
        assert_eq!(error.code, ErrorCode::InternalError);
        assert!(
            error.message.contains("connect again as a new peer"),
            "{}",
            error.message
        );
        let caps = Request::parse(&serde_json::json!({"type": "getRouterRtpCapabilities"}))
            .expect("valid");
        assert_eq!(
            sfu.dispatch(&peer, caps)
                .await
                .expect_err("its worker is gone")
                .code,
            ErrorCode::InternalError
        );

        stop(&workers[0]).await;
        assert_eq!(least_loaded(&[0, 0], workers), None, "no worker runs");
        let join =
            Request::parse(&serde_json::json!({"type": "joinRoom", "data": {"roomId": "r"}}))
                .expect("valid");
        let error = sfu.dispatch(&peer, join).await.expect_err("no worker runs");
        assert!(error.message.contains("restart"), "{}", error.message);
    }
}
