//! Replies the server could not send at once, because the client's receive
//! queue was full. They wait here, bounded in total and per peer, and are
//! retried on the server's own timer; the oldest go first when a bound is
//! reached. Nothing here allocates per datagram beyond the bounded queue,
//! so a flood of senders that never read cannot grow the server.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use nix::sys::socket::UnixAddr;
use tokio::net::UnixDatagram;
use tokio::time::Instant;

use crate::dgram;

/// Replies held at most, for all peers together.
pub const MAX_PENDING: usize = 256;
/// Replies held at most for one peer address.
pub const MAX_PENDING_PER_PEER: usize = 4;
/// A reply not delivered within this time is dropped.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(2);
const FIRST_RETRY: Duration = Duration::from_micros(200);
const MAX_RETRY: Duration = Duration::from_millis(250);

/// Why replies were dropped (the metric's `reason` label).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// The whole queue was full: the oldest reply went.
    pub queue_full: u64,
    /// The peer already had its share waiting: its oldest went.
    pub peer_full: u64,
    /// Not delivered within [`GIVE_UP_AFTER`].
    pub timed_out: u64,
    /// An error reply the peer could not take: never retried.
    pub refused_sender: u64,
}

struct Pending {
    to: UnixAddr,
    bytes: Vec<u8>,
    first: Instant,
    next: Instant,
    delay: Duration,
}

#[derive(Default)]
pub struct Outbox {
    queue: VecDeque<Pending>,
    pub dropped: Dropped,
}

impl Outbox {
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues a reply that found the peer's queue full.
    pub fn push(&mut self, to: UnixAddr, bytes: Vec<u8>, now: Instant) {
        let mine = self.queue.iter().filter(|p| p.to == to).count();
        if mine >= MAX_PENDING_PER_PEER {
            if let Some(i) = self.queue.iter().position(|p| p.to == to) {
                self.queue.remove(i);
                self.dropped.peer_full += 1;
            }
        } else if self.queue.len() >= MAX_PENDING {
            self.queue.pop_front();
            self.dropped.queue_full += 1;
        }
        self.queue.push_back(Pending {
            to,
            bytes,
            first: now,
            next: now + FIRST_RETRY,
            delay: FIRST_RETRY,
        });
    }

    /// When the next retry is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.iter().map(|p| p.next).min()
    }

    /// Retries every reply that is due; keeps the ones still blocked.
    pub fn flush(&mut self, socket: &UnixDatagram, now: Instant) {
        let mut keep = VecDeque::with_capacity(self.queue.len());
        while let Some(mut p) = self.queue.pop_front() {
            if p.next > now {
                keep.push_back(p);
                continue;
            }
            match dgram::try_send_to(socket, &p.bytes, &p.to) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if now.duration_since(p.first) >= GIVE_UP_AFTER {
                        self.dropped.timed_out += 1;
                        tracing::debug!(to = %dgram::describe(Some(&p.to)), "reply dropped: client queue full for 2 s");
                    } else {
                        p.delay = (p.delay * 2).min(MAX_RETRY);
                        p.next = now + p.delay;
                        keep.push_back(p);
                    }
                }
                // Sent, or the peer is gone: either way it is done.
                _ => {}
            }
        }
        self.queue = keep;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> UnixAddr {
        UnixAddr::new_abstract(&[b'p', n]).unwrap()
    }

    #[test]
    fn bounded_in_total_and_per_peer() {
        let mut o = Outbox::default();
        let now = Instant::now();
        for _ in 0..10 {
            o.push(addr(1), vec![1], now);
        }
        assert_eq!(o.len(), MAX_PENDING_PER_PEER);
        assert_eq!(o.dropped.peer_full, 10 - MAX_PENDING_PER_PEER as u64);
        for i in 0..=255u8 {
            o.push(addr(i), vec![2], now);
            o.push(addr(i), vec![3], now);
        }
        assert_eq!(o.len(), MAX_PENDING);
        assert!(o.dropped.queue_full > 0);
        assert!(o.next_deadline().unwrap() > now);
    }
}
