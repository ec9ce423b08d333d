//! When a probe counts as missed and when to ask again, pure.
//!
//! Each uplink learns its own round-trip time (RFC 6298's smoothed RTT and
//! its variation), and a probe is *overdue* once it is later than that
//! distribution allows (`srtt + 4 * rttvar`, at least `rto_min`), not after
//! a fixed second. An overdue probe puts the uplink in doubt, and doubt asks
//! again at once and then every `burst_interval`, so a dead uplink collects
//! its misses in a few hundred milliseconds while a healthy one is probed at
//! the steady pace. Answers are still awaited long after (`listen_for`): a
//! late answer is an answer, so a saturated uplink whose queue delays the
//! probes is slow, not dead. The extra probes are paid from a token bucket
//! filled at a fifth of the steady rate, so a lossy uplink cannot turn doubt
//! into a flood.

use std::time::{Duration, Instant};

/// How the probe deadlines are set (docs/track.md).
#[derive(Debug, Clone, PartialEq)]
pub struct TimingConfig {
    /// Deadlines from the measured RTT, and bursts in doubt. Off: every
    /// probe waits `timeout` and no burst is sent (the tracker before
    /// adaptive timing).
    pub adaptive: bool,
    /// The shortest deadline, however fast the uplink has been.
    pub rto_min: Duration,
    /// The deadline before any RTT is known, and the shortest time an
    /// answer is awaited.
    pub timeout: Duration,
    /// Between the probes of a burst.
    pub burst_interval: Duration,
}

/// Longest that a late answer is awaited, however slow the uplink.
const LISTEN_MAX: Duration = Duration::from_secs(10);

/// One uplink's RTT estimator.
#[derive(Debug, Clone, Default)]
pub struct Timing {
    srtt_ms: Option<f64>,
    rttvar_ms: f64,
    /// The latest answer's RTT: a filling queue shows here before the
    /// smoothed RTT catches up.
    last_ms: f64,
}

impl Timing {
    /// Feeds an answered probe's RTT (each probe has its own sequence
    /// number, so late answers are unambiguous samples too).
    pub fn sample(&mut self, rtt: Duration) {
        let r = rtt.as_secs_f64() * 1000.0;
        self.last_ms = r;
        match self.srtt_ms {
            None => {
                self.srtt_ms = Some(r);
                self.rttvar_ms = r / 2.0;
            }
            Some(s) => {
                self.rttvar_ms = 0.75 * self.rttvar_ms + 0.25 * (s - r).abs();
                self.srtt_ms = Some(0.875 * s + 0.125 * r);
            }
        }
    }

    /// The slower of the smoothed and the latest RTT.
    pub fn slow(&self) -> Option<Duration> {
        self.srtt_ms
            .map(|s| Duration::from_secs_f64(s.max(self.last_ms) / 1000.0))
    }

    /// How long an answer may take before the probe counts as missed.
    pub fn overdue_after(&self, cfg: &TimingConfig) -> Duration {
        let Some(srtt) = self.srtt_ms.filter(|_| cfg.adaptive) else {
            return cfg.timeout;
        };
        let rto = Duration::from_secs_f64((srtt + 4.0 * self.rttvar_ms) / 1000.0);
        rto.max(cfg.rto_min).min(self.listen_for(cfg))
    }

    /// How long to keep listening for a late answer: `timeout`, or three
    /// RTTs (smoothed or latest, the slower) on an uplink slower than that.
    pub fn listen_for(&self, cfg: &TimingConfig) -> Duration {
        match self.slow().filter(|_| cfg.adaptive) {
            Some(s) => cfg.timeout.max(s * 3).min(LISTEN_MAX),
            None => cfg.timeout,
        }
    }
}

/// Tokens for the probes a burst adds: `rate` per second up to `cap`.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    rate: f64,
    cap: f64,
    last: Instant,
}

impl Bucket {
    /// Full at the start: the first doubt of an uplink is answered at once.
    pub fn new(rate_per_s: f64, cap: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(cap),
            rate: rate_per_s,
            cap: f64::from(cap),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.cap);
        self.last = now;
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token will be there.
    pub fn ready_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 1.0 || self.rate <= 0.0 {
            return now;
        }
        now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
    }
}

/// When the next probe of an uplink goes: at the steady pace, or in doubt
/// `burst_interval` after the last one when a token pays for it.
pub fn next_probe(
    cfg: &TimingConfig,
    steady_at: Instant,
    last_sent: Option<Instant>,
    in_doubt: bool,
    bucket: &mut Bucket,
    now: Instant,
) -> Instant {
    let Some(last) = last_sent.filter(|_| in_doubt && cfg.adaptive) else {
        return steady_at;
    };
    let burst_at = (last + cfg.burst_interval).max(bucket.ready_at(now));
    burst_at.min(steady_at)
}

/// The interval between probes that keeps an uplink within its budget.
pub fn paced_interval(
    base: Duration,
    bytes_per_probe: u64,
    budget_bytes_hour: Option<u64>,
) -> Duration {
    match budget_bytes_hour {
        Some(budget) if budget > 0 => {
            let probes_per_hour = (budget / bytes_per_probe.max(1)).max(1);
            base.max(Duration::from_secs(3600) / probes_per_hour as u32)
        }
        _ => base,
    }
}

/// Bytes over the last hour, in one-minute buckets.
#[derive(Debug, Clone)]
pub struct HourMeter {
    buckets: [(i64, u64); 60],
}

impl Default for HourMeter {
    fn default() -> Self {
        // i64::MIN marks an unused bucket.
        HourMeter {
            buckets: [(i64::MIN, 0); 60],
        }
    }
}

impl HourMeter {
    pub fn add(&mut self, now_unix: i64, bytes: u64) {
        let minute = now_unix.div_euclid(60);
        let slot = &mut self.buckets[minute.rem_euclid(60) as usize];
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        slot.1 += bytes;
    }

    pub fn last_hour(&self, now_unix: i64) -> u64 {
        let minute = now_unix.div_euclid(60);
        self.buckets
            .iter()
            .filter(|(m, _)| *m <= minute && minute.saturating_sub(*m) < 60)
            .map(|(_, b)| b)
            .sum()
    }
}

#[cfg(test)]
#[path = "doubt_tests.rs"]
mod tests;
