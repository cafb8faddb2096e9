//! Messages kept for a data consumer whose SCTP channel cannot take them
//! yet (not open, or the association's send buffer is full), bounded by
//! count and by bytes: a data producer that floods a consumer that never
//! opens costs the worker at most [`MAX_PENDING_BYTES`] per data consumer.

use std::collections::VecDeque;

/// Messages kept per data consumer at most.
pub(crate) const MAX_PENDING_MESSAGES: usize = 256;
/// Bytes of message payload kept per data consumer at most.
pub(crate) const MAX_PENDING_BYTES: usize = 1 << 20;

/// The queue of one data consumer; when full, the oldest messages go (the
/// newest matter most to a late reader, as a chat or a state feed).
#[derive(Debug, Default)]
pub(crate) struct PendingMessages {
    queue: VecDeque<(bool, Vec<u8>)>,
    bytes: usize,
}

impl PendingMessages {
    /// Queue a message (`binary` or text), dropping the oldest until it
    /// fits. Returns how many messages were dropped, the new one included
    /// if it alone is larger than the bound.
    pub fn push(&mut self, binary: bool, data: Vec<u8>) -> u64 {
        if data.len() > MAX_PENDING_BYTES {
            return 1;
        }
        let mut dropped = 0;
        while self.queue.len() >= MAX_PENDING_MESSAGES
            || self.bytes + data.len() > MAX_PENDING_BYTES
        {
            if self.pop_front().is_none() {
                break;
            }
            dropped += 1;
        }
        self.bytes += data.len();
        self.queue.push_back((binary, data));
        dropped
    }

    /// The oldest message, still queued.
    pub fn front(&self) -> Option<&(bool, Vec<u8>)> {
        self.queue.front()
    }

    /// Take the oldest message.
    pub fn pop_front(&mut self) -> Option<(bool, Vec<u8>)> {
        let message = self.queue.pop_front()?;
        self.bytes -= message.1.len();
        Some(message)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_go_first_when_bytes_run_out() {
        let mut pending = PendingMessages::default();
        let size = MAX_PENDING_BYTES / 4;
        for i in 0..4u8 {
            assert_eq!(pending.push(true, vec![i; size]), 0);
        }
        assert_eq!(
            pending.push(true, vec![4; 1]),
            1,
            "one more byte pushes the oldest out"
        );
        assert_eq!(pending.front().map(|m| m.1[0]), Some(1));
        assert_eq!(
            pending.push(false, vec![5; size * 2]),
            2,
            "room for a large one is made from the front"
        );
        let kept: Vec<u8> = std::iter::from_fn(|| pending.pop_front())
            .map(|m| m.1[0])
            .collect();
        assert_eq!(kept, [3, 4, 5]);
        assert!(pending.is_empty());
        assert_eq!(pending.bytes, 0);
    }

    #[test]
    fn the_count_is_bounded_too_and_an_oversized_message_is_refused() {
        let mut pending = PendingMessages::default();
        let dropped: u64 = (0..MAX_PENDING_MESSAGES + 10)
            .map(|i| pending.push(true, (i as u32).to_be_bytes().to_vec()))
            .sum();
        assert_eq!(dropped, 10);
        assert_eq!(pending.queue.len(), MAX_PENDING_MESSAGES);
        assert_eq!(
            pending.front().map(|m| m.1.clone()),
            Some(10u32.to_be_bytes().to_vec())
        );
        assert_eq!(pending.push(true, vec![0; MAX_PENDING_BYTES + 1]), 1);
        assert_eq!(
            pending.queue.len(),
            MAX_PENDING_MESSAGES,
            "the queue is untouched"
        );
    }
}
