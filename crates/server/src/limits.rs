//! The limits a deployment sets on clients ([`Limits`]) and the per-connection
//! request rate limiter ([`TokenBucket`]). A request over a limit gets a
//! `limit_reached` ack whose message names the limit and its setting.

use serde::{Deserialize, Serialize};
use simplesfu_proto::{ErrorCode, SignalingError};
use std::time::Instant;

/// Largest `max_request_bytes` allowed: socket.io messages above
/// `MAX_SOCKET_IO_PAYLOAD` close the connection instead of being refused.
pub const MAX_REQUEST_BYTES_CEILING: usize = 512 * 1024;

/// Per-room, per-peer and per-connection limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most peers in one room; one more `joinRoom` is refused.
    pub peers_per_room: usize,
    /// Most producers of one peer, media and data producers together.
    pub producers_per_peer: usize,
    /// Sustained signaling requests per second per connection.
    pub requests_per_second: u32,
    /// Requests a connection may send at once before the sustained rate
    /// applies (a client joining a big room resumes many consumers at once).
    pub request_burst: u32,
    /// Largest request, in bytes of JSON (`payload_too_large` above).
    pub max_request_bytes: usize,
    /// Open HTTP/WebSocket connections to the server at most; one more is
    /// closed at once. Also capped by the process's file descriptor limit.
    pub max_connections: usize,
    /// Open HTTP/WebSocket connections from one IP address at most. Behind
    /// a reverse proxy every client has the proxy's address: raise it there.
    pub max_connections_per_ip: usize,
    /// Milliseconds a client gets to send a request's headers; keep-alive
    /// connections idle this long are closed.
    pub header_read_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            peers_per_room: 500,
            producers_per_peer: 32,
            requests_per_second: 50,
            request_burst: 200,
            max_request_bytes: simplesfu_proto::MAX_REQUEST_BYTES,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            header_read_timeout_ms: 10_000,
        }
    }
}

impl Limits {
    pub(crate) fn validate(&self) -> Result<(), String> {
        let positive = [
            ("limits.peers_per_room", self.peers_per_room),
            ("limits.producers_per_peer", self.producers_per_peer),
            (
                "limits.requests_per_second",
                self.requests_per_second as usize,
            ),
            ("limits.request_burst", self.request_burst as usize),
            ("limits.max_request_bytes", self.max_request_bytes),
            ("limits.max_connections", self.max_connections),
            ("limits.max_connections_per_ip", self.max_connections_per_ip),
            (
                "limits.header_read_timeout_ms",
                usize::try_from(self.header_read_timeout_ms).unwrap_or(usize::MAX),
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} is 0: it must be at least 1"));
        }
        if self.max_request_bytes > MAX_REQUEST_BYTES_CEILING {
            return Err(format!(
                "limits.max_request_bytes is {}; the most is {MAX_REQUEST_BYTES_CEILING}",
                self.max_request_bytes
            ));
        }
        Ok(())
    }

    pub(crate) fn room_full(&self) -> SignalingError {
        SignalingError::new(
            ErrorCode::LimitReached,
            format!(
                "the room is full: it has {} peers, the most allowed (limits.peers_per_room)",
                self.peers_per_room
            ),
        )
    }

    pub(crate) fn too_many_producers(&self) -> SignalingError {
        SignalingError::new(
            ErrorCode::LimitReached,
            format!(
                "this peer has {} producers, the most allowed (limits.producers_per_peer); close one first",
                self.producers_per_peer
            ),
        )
    }

    pub(crate) fn rate_exceeded(&self) -> SignalingError {
        SignalingError::new(
            ErrorCode::LimitReached,
            format!(
                "request rate limit reached: at most {} requests per second per connection, bursts of {} \
                 (limits.requests_per_second, limits.request_burst); the request was not carried out, retry later",
                self.requests_per_second, self.request_burst
            ),
        )
    }

    pub(crate) fn bucket(&self, now: Instant) -> TokenBucket {
        TokenBucket::new(self.request_burst, self.requests_per_second, now)
    }
}

/// Answers owed at most: one per consumer pushed, bounded anyway.
const MAX_OWED_ANSWERS: u32 = 100_000;

/// A connection's request budget: its [`TokenBucket`], plus one request
/// that does not count for each `createConsumer` the server pushed. The
/// published client answers every such push with a `resumeConsumer` at
/// once, so a peer entering a room of 120 peers with two producers each
/// sends 240 requests it did not choose; refusing some would leave those
/// tracks black for good.
#[derive(Debug, Clone)]
pub struct RequestRate {
    bucket: TokenBucket,
    owed_answers: u32,
}

impl RequestRate {
    pub fn new(bucket: TokenBucket) -> Self {
        RequestRate {
            bucket,
            owed_answers: 0,
        }
    }

    /// The server pushed a consumer: its `resumeConsumer` is owed.
    pub fn owe_answer(&mut self) {
        self.owed_answers = self.owed_answers.saturating_add(1).min(MAX_OWED_ANSWERS);
    }

    /// Whether a request may go on now: an owed answer always may, anything
    /// else takes a token.
    pub fn try_take(&mut self, now: Instant, answers_a_push: bool) -> bool {
        if answers_a_push && self.owed_answers > 0 {
            self.owed_answers -= 1;
            return true;
        }
        self.bucket.try_take(now)
    }
}

/// A token bucket: holds up to `capacity` tokens, refills `rate` per second,
/// and each request takes one. Time comes in as an argument.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(capacity: u32, per_second: u32, now: Instant) -> Self {
        let capacity = f64::from(capacity.max(1));
        TokenBucket {
            capacity,
            rate: f64::from(per_second),
            tokens: capacity,
            last: now,
        }
    }

    /// Take a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(3, 10, start);
        assert!((0..3).all(|_| bucket.try_take(start)), "the burst passes");
        assert!(!bucket.try_take(start), "the fourth at once is refused");
        assert!(
            bucket.try_take(start + Duration::from_millis(100)),
            "one token per 100 ms at 10/s"
        );
        assert!(!bucket.try_take(start + Duration::from_millis(150)));
        // A long pause refills up to the capacity, not beyond.
        let later = start + Duration::from_secs(60);
        assert!((0..3).all(|_| bucket.try_take(later)));
        assert!(!bucket.try_take(later));
    }

    #[test]
    fn answers_to_pushed_consumers_do_not_count() {
        let now = Instant::now();
        let mut rate = RequestRate::new(TokenBucket::new(2, 1, now));
        for _ in 0..240 {
            rate.owe_answer();
        }
        assert!(
            (0..240).all(|_| rate.try_take(now, true)),
            "every owed resumeConsumer passes"
        );
        assert!(
            rate.try_take(now, true) && rate.try_take(now, true),
            "then they take tokens"
        );
        assert!(!rate.try_take(now, true), "and are limited like the rest");
        assert!(!rate.try_take(now, false));
    }

    #[test]
    fn messages_name_the_setting() {
        let limits = Limits::default();
        for error in [
            limits.room_full(),
            limits.too_many_producers(),
            limits.rate_exceeded(),
        ] {
            assert_eq!(error.code, ErrorCode::LimitReached);
            assert!(error.message.contains("limits."), "{}", error.message);
        }
    }

    #[test]
    fn zero_and_huge_limits_are_refused() {
        let zero = Limits {
            peers_per_room: 0,
            ..Limits::default()
        };
        assert!(zero
            .validate()
            .expect_err("0")
            .contains("limits.peers_per_room"));
        let huge = Limits {
            max_request_bytes: 10_000_000,
            ..Limits::default()
        };
        assert!(huge
            .validate()
            .expect_err("too big")
            .contains("limits.max_request_bytes"));
        Limits::default().validate().expect("defaults are valid");
    }
}
