//! One signaling request from arrival to ack: the rate limit, parsing,
//! the peer's queue, the deadline, and the ack (counted when it cannot be
//! sent).

use super::*;

/// A request that has not been answered after this long gets an
/// `internal_error` ack: the client must always hear back.
pub(super) const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

impl Sfu {
    /// Take a token from the peer's rate limiter (a `resumeConsumer` that
    /// answers a pushed consumer takes none).
    pub(crate) fn within_rate(&self, peer: &PeerId, label: &str) -> bool {
        let rate = self.links().get(peer).map(|l| l.rate.clone());
        let Some(rate) = rate else { return true };
        let mut rate = lock(&rate);
        rate.try_take(
            Instant::now(),
            label == RequestType::ResumeConsumer.as_str(),
        )
    }

    /// One request, start to ack. Always acks exactly once.
    /// One request: `raw` is its JSON, or the size of a message too large
    /// to be parsed at all (see [`BoundedRequest`]).
    pub(crate) async fn on_request(
        &self,
        peer: &PeerId,
        raw: Result<Value, usize>,
        ack: AckSender,
    ) {
        let label = raw.as_ref().map_or("invalid", request_label);
        self.inner.metrics.request(label);
        let parsed = if !self.within_rate(peer, label) {
            tracing::debug!(peer = %peer, request = label, "request rate limit reached");
            Err(self.inner.limits.rate_exceeded())
        } else {
            match &raw {
                Ok(raw) => Request::parse_limited(raw, self.inner.limits.max_request_bytes),
                Err(size) => Err(SignalingError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "request is about {size} bytes; the limit is {} (limits.max_request_bytes)",
                        self.inner.limits.max_request_bytes
                    ),
                )),
            }
        };
        let outcome = match parsed {
            Err(e) => Err(e),
            Ok(request) => {
                let kind = request.request_type().as_str();
                match self.queue_of(peer) {
                    None => Err(SignalingError::new(
                        ErrorCode::PeerNotFound,
                        "this peer is disconnecting",
                    )),
                    Some(queue) => {
                        let _turn = queue.lock().await;
                        let (sfu, id) = (self.clone(), peer.clone());
                        let work = async move { sfu.dispatch(&id, request).await };
                        crate::panics::contained(peer, kind, REQUEST_DEADLINE, work).await
                    }
                }
                .inspect(|_| tracing::debug!(peer = %peer, request = kind, "request done"))
            }
        };
        let body = match outcome {
            Ok(fields) => success_ack(fields),
            Err(error) => {
                self.inner.metrics.error(error.code.as_str());
                tracing::debug!(peer = %peer, code = error.code.as_str(), message = %error.message, "request refused");
                error.to_ack()
            }
        };
        if let Err(error) = ack.send(&body) {
            // The client is gone, or its send queue is full: it sent requests
            // faster than it read the answers (SOCKET_IO_BUFFER_PACKETS). It
            // will never hear back; counted in /metrics (acks_dropped_total),
            // logged loudly once so a flood cannot flood the log too.
            if self.inner.metrics.ack_dropped() {
                tracing::warn!(peer = %peer, %error, "could not send an ack (more are counted in acks_dropped_total, logged at debug)");
            } else {
                tracing::debug!(peer = %peer, %error, "could not send ack");
            }
        }
    }
}
