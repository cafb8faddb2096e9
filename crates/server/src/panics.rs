//! Panics are contained: a request handler that panics costs its peer an
//! `internal_error` ack, not the server; every panic (a handler's, a media
//! worker thread's) is logged through `tracing` with where it happened.
//!
//! A worker thread that panics drops its command channel, so every later
//! request to it fails at once with `EngineError::WorkerGone`, which clients
//! see as `internal_error` (see `errors::from_engine`): errors, never hangs.

use simplesfu_proto::{ErrorCode, PeerId, SignalingError};
use std::any::Any;
use std::future::Future;
use std::time::Duration;

/// Route panic reports to the log (with the thread name: `worker-3` is a
/// media worker) instead of bare stderr. Call once at start.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            location,
            panic = panic_text(info.payload()),
            "panic"
        );
    }));
}

/// The message a panic carried, if it was text.
pub(crate) fn panic_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Run one request's work in a task of its own, so that a panic in it, or
/// taking longer than `deadline`, becomes an `internal_error` for this
/// request only. A request over its deadline is cancelled.
pub(crate) async fn contained<T: Send + 'static>(
    peer: &PeerId,
    request: &'static str,
    deadline: Duration,
    work: impl Future<Output = Result<T, SignalingError>> + Send + 'static,
) -> Result<T, SignalingError> {
    let task = tokio::spawn(work);
    let abort = task.abort_handle();
    match tokio::time::timeout(deadline, task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(failed)) => {
            let panic = if failed.is_panic() {
                let payload = failed.into_panic();
                panic_text(payload.as_ref()).to_owned()
            } else {
                "cancelled".to_owned()
            };
            tracing::error!(peer = %peer, request, panic, "request handler panicked; the peer gets internal_error");
            Err(SignalingError::new(
                ErrorCode::InternalError,
                "the server failed while handling this request",
            ))
        }
        Err(_) => {
            abort.abort();
            tracing::error!(peer = %peer, request, "request timed out");
            Err(SignalingError::new(
                ErrorCode::InternalError,
                "the request timed out",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simplesfu_engine::{
        Direction, EngineError, WebRtcTransportOptions, Worker, WorkerSettings,
    };
    use std::net::{IpAddr, Ipv4Addr};

    fn peer() -> PeerId {
        "p1".parse().expect("valid peer id")
    }

    #[tokio::test]
    async fn a_panicking_handler_gives_internal_error_and_the_next_request_is_served() {
        let panicked = contained(&peer(), "joinRoom", Duration::from_secs(5), async {
            if peer().as_str() == "p1" {
                panic!("bug in a handler");
            }
            Ok::<u32, SignalingError>(1)
        })
        .await;
        let error = panicked.expect_err("the panic becomes an error");
        assert_eq!(error.code, ErrorCode::InternalError);
        assert!(
            !error.message.contains("bug in a handler"),
            "internals stay in the log"
        );
        let next = contained(&peer(), "joinRoom", Duration::from_secs(5), async {
            Ok::<u32, SignalingError>(7)
        })
        .await;
        assert_eq!(next.expect("served"), 7);
    }

    #[tokio::test]
    async fn a_request_over_its_deadline_is_cancelled_with_internal_error() {
        let started = std::time::Instant::now();
        let slow = contained(&peer(), "produce", Duration::from_millis(50), async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<(), SignalingError>(())
        })
        .await;
        assert_eq!(slow.expect_err("too slow").code, ErrorCode::InternalError);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// A worker whose thread is gone (panicked or stopped) answers every
    /// request at once with WorkerGone, which clients see as internal_error.
    #[tokio::test]
    async fn requests_to_a_dead_worker_fail_fast_with_internal_error() {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let (worker, _events) = Worker::spawn(WorkerSettings::new("doomed", loopback, 0, loopback))
            .expect("worker starts");
        worker.shutdown();
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            worker.create_webrtc_transport(WebRtcTransportOptions {
                direction: Direction::Send,
                enable_sctp: true,
                force_tcp: false,
            }),
        )
        .await
        .expect("no hang");
        let error = outcome.expect_err("the worker is gone");
        assert_eq!(error, EngineError::WorkerGone);
        assert_eq!(
            crate::errors::from_engine(error).code,
            ErrorCode::InternalError
        );
    }

    #[test]
    fn panic_text_reads_str_and_string_payloads() {
        let s: Box<dyn Any + Send> = Box::new("static");
        assert_eq!(panic_text(s.as_ref()), "static");
        let s: Box<dyn Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_text(s.as_ref()), "owned");
        let s: Box<dyn Any + Send> = Box::new(3u8);
        assert_eq!(panic_text(s.as_ref()), "(no message)");
    }
}
