//! Log lines that a sender can provoke at will are rate-limited: a burst is
//! let through, the rest are counted, and the count is reported once the
//! window ends.

use std::time::Duration;

use tokio::time::Instant;

pub struct RateLimit {
    burst: u32,
    window: Duration,
    start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` lines were dropped in the window that just ended.
    Log {
        suppressed: u64,
    },
    Drop,
}

impl RateLimit {
    pub fn new(burst: u32, window: Duration) -> RateLimit {
        RateLimit {
            burst,
            window,
            start: None,
            used: 0,
            suppressed: 0,
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        let fresh = self
            .start
            .is_none_or(|s| now.duration_since(s) >= self.window);
        let mut suppressed = 0;
        if fresh {
            self.start = Some(now);
            self.used = 0;
            suppressed = std::mem::take(&mut self.suppressed);
        }
        if self.used < self.burst {
            self.used += 1;
            Verdict::Log { suppressed }
        } else {
            self.suppressed += 1 + suppressed;
            Verdict::Drop
        }
    }

    /// When the current window ends, while lines are being held back.
    pub fn window_end(&self) -> Option<Instant> {
        match (self.start, self.suppressed) {
            (Some(s), n) if n > 0 => Some(s + self.window),
            _ => None,
        }
    }

    /// The count of a window that has ended with lines held back, reset.
    pub fn take_ended(&mut self, now: Instant) -> Option<u64> {
        let end = self.window_end()?;
        if now < end {
            return None;
        }
        self.start = None;
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Lines dropped in the current window so far.
    #[cfg(test)]
    fn pending(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_count() {
        let mut r = RateLimit::new(3, Duration::from_secs(10));
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(r.check(t), Verdict::Log { suppressed: 0 });
        }
        for _ in 0..100 {
            assert_eq!(r.check(t), Verdict::Drop);
        }
        assert_eq!(r.pending(), 100);
        let later = t + Duration::from_secs(11);
        assert_eq!(r.check(later), Verdict::Log { suppressed: 100 });
        assert_eq!(r.pending(), 0);
    }
}
