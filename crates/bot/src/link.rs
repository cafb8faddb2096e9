//! An emulated downlink in front of a receiving transport: datagrams queue
//! and leave at the link's rate, and what would overflow the queue is
//! dropped, the way a home router's queue in front of a slow line behaves
//! (the same shape as the browser tests' `tc` links: a queue of 100 ms of
//! the rate, at least four full datagrams). The receiver's congestion
//! feedback then reports the delay and the loss, so the server's estimator
//! sees what it would see on a real slow link. Time is an input: the
//! transport offers datagrams as they come and takes them out when due.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The queue holds this much of the link's rate.
pub const QUEUE_TIME: Duration = Duration::from_millis(100);
/// ...but never fewer bytes than four full datagrams, or even slow links
/// would drop every burst of one frame.
pub const MIN_QUEUE_BYTES: usize = 4 * 1500;

/// A rate-limited link with a drop-tail queue.
#[derive(Debug)]
pub struct Downlink {
    bytes_per_s: f64,
    queue_limit_bytes: usize,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    /// When the last queued datagram has left the link.
    busy_until: Option<Instant>,
    /// Datagrams the full queue refused.
    pub dropped: u64,
    /// Datagrams that went through.
    pub delivered: u64,
}

#[derive(Debug)]
struct Queued {
    leaves: Instant,
    from: SocketAddr,
    data: Vec<u8>,
}

impl Downlink {
    /// A link of `kbps` kilobits per second (at least 1).
    pub fn new(kbps: u32) -> Downlink {
        let bytes_per_s = kbps.max(1) as f64 * 1000.0 / 8.0;
        let queue_limit_bytes =
            ((bytes_per_s * QUEUE_TIME.as_secs_f64()) as usize).max(MIN_QUEUE_BYTES);
        Downlink {
            bytes_per_s,
            queue_limit_bytes,
            queue: VecDeque::new(),
            queued_bytes: 0,
            busy_until: None,
            dropped: 0,
            delivered: 0,
        }
    }

    /// A datagram reaches the link at `now`: queued (true) or dropped (false).
    pub fn offer(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> bool {
        if self.queued_bytes + data.len() > self.queue_limit_bytes {
            self.dropped += 1;
            return false;
        }
        let start = self.busy_until.map_or(now, |b| b.max(now));
        let leaves = start + Duration::from_secs_f64(data.len() as f64 / self.bytes_per_s);
        self.busy_until = Some(leaves);
        self.queued_bytes += data.len();
        self.queue.push_back(Queued {
            leaves,
            from,
            data: data.to_vec(),
        });
        true
    }

    /// When the next queued datagram leaves, if any is queued.
    pub fn next_departure(&self) -> Option<Instant> {
        self.queue.front().map(|q| q.leaves)
    }

    /// The next datagram that has left the link by `now`.
    pub fn take_due(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        if self.queue.front()?.leaves > now {
            return None;
        }
        let q = self.queue.pop_front()?;
        self.queued_bytes -= q.data.len();
        self.delivered += 1;
        Some((q.from, q.data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5000))
    }

    #[test]
    fn datagrams_leave_at_the_link_rate() {
        // 800 kbit/s = 100 000 bytes/s: a 1000-byte datagram takes 10 ms.
        let mut link = Downlink::new(800);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(link.offer(t0, addr(), &[0; 1000]));
        }
        assert_eq!(link.next_departure(), Some(t0 + Duration::from_millis(10)));
        assert!(
            link.take_due(t0 + Duration::from_millis(9)).is_none(),
            "not before it has crossed the link"
        );
        assert!(link.take_due(t0 + Duration::from_millis(10)).is_some());
        assert!(link.take_due(t0 + Duration::from_millis(19)).is_none());
        let late = t0 + Duration::from_millis(40);
        assert!(link.take_due(late).is_some() && link.take_due(late).is_some());
        assert!(link.take_due(late).is_none());
        assert_eq!(link.next_departure(), None);
        // An idle link starts the next datagram when it comes, not in the past.
        assert!(link.offer(late, addr(), &[0; 500]));
        assert_eq!(link.next_departure(), Some(late + Duration::from_millis(5)));
    }

    #[test]
    fn a_full_queue_drops_what_does_not_fit_and_takes_more_as_it_drains() {
        // 2 Mbit/s: 100 ms is 25 000 bytes of queue.
        let mut link = Downlink::new(2000);
        let t0 = Instant::now();
        let accepted = (0..40)
            .filter(|_| link.offer(t0, addr(), &[0; 1000]))
            .count();
        assert_eq!(accepted, 25);
        assert_eq!(link.dropped, 15);
        // 8 ms later two datagrams (4 ms each) have left: room for two more.
        let t1 = t0 + Duration::from_millis(8);
        while link.take_due(t1).is_some() {}
        assert_eq!(link.delivered, 2);
        assert!(link.offer(t1, addr(), &[0; 1000]) && link.offer(t1, addr(), &[0; 1000]));
        assert!(!link.offer(t1, addr(), &[0; 1000]));
    }

    #[test]
    fn slow_links_still_queue_a_few_full_datagrams() {
        // 100 kbit/s: 100 ms would be 1250 bytes, less than one frame's burst.
        let mut link = Downlink::new(100);
        let t0 = Instant::now();
        assert_eq!(
            (0..6)
                .filter(|_| link.offer(t0, addr(), &[0; 1500]))
                .count(),
            4
        );
    }
}
