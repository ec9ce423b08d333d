//! Uplink health, pure: the per-uplink state machine with hysteresis, loss
//! and RTT over a window, the choice of the uplink for unbound traffic, and
//! probe-budget pacing. The tracker (`track`) feeds it probe results and
//! applies what it decides.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Not probed enough to say.
    Unknown,
    Up,
    /// Usable but lossy or slow: chosen only when nothing is up.
    Degraded,
    Down,
}

impl LinkState {
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Unknown => "unknown",
            LinkState::Up => "up",
            LinkState::Degraded => "degraded",
            LinkState::Down => "down",
        }
    }

    pub fn usable(self) -> bool {
        matches!(self, LinkState::Up | LinkState::Degraded)
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Consecutive failed probes that make an uplink down.
    pub down_after: u32,
    /// Consecutive successful probes that bring it back.
    pub up_after: u32,
    /// Probes that loss and RTT are measured over.
    pub window: usize,
    pub degraded_loss_pct: f64,
    pub degraded_rtt_ms: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            down_after: 3,
            up_after: 3,
            window: 20,
            degraded_loss_pct: 20.0,
            degraded_rtt_ms: 1000.0,
        }
    }
}

/// One uplink's health. `record` is called once per finished probe.
#[derive(Debug, Clone)]
pub struct LinkHealth {
    pub state: LinkState,
    /// Unix seconds of the last state change (or of the start).
    pub last_change: i64,
    ok_run: u32,
    fail_run: u32,
    /// RTT in ms of each probe, `None` for a lost one; newest last.
    window: VecDeque<Option<f64>>,
}

impl LinkHealth {
    pub fn new(now_unix: i64) -> LinkHealth {
        LinkHealth {
            state: LinkState::Unknown,
            last_change: now_unix,
            ok_run: 0,
            fail_run: 0,
            window: VecDeque::new(),
        }
    }

    /// Feeds one probe result; returns `(old, new)` when the state changed.
    pub fn record(
        &mut self,
        rtt: Option<Duration>,
        th: &Thresholds,
        now_unix: i64,
    ) -> Option<(LinkState, LinkState)> {
        let rtt_ms = rtt.map(|d| d.as_secs_f64() * 1000.0);
        self.window.push_back(rtt_ms);
        while self.window.len() > th.window.max(1) {
            self.window.pop_front();
        }
        if rtt_ms.is_some() {
            self.ok_run += 1;
            self.fail_run = 0;
        } else {
            self.fail_run += 1;
            self.ok_run = 0;
        }
        let old = self.state;
        let next = match old {
            LinkState::Up | LinkState::Degraded if self.fail_run >= th.down_after => {
                LinkState::Down
            }
            LinkState::Up | LinkState::Degraded => self.quality(th),
            LinkState::Down | LinkState::Unknown if self.ok_run >= th.up_after => {
                // The failures that made it down say nothing about the
                // uplink that came back: judge it by its fresh probes.
                let keep = self.ok_run as usize;
                while self.window.len() > keep {
                    self.window.pop_front();
                }
                self.quality(th)
            }
            LinkState::Unknown if self.fail_run >= th.down_after => LinkState::Down,
            s => s,
        };
        if next == old {
            return None;
        }
        self.state = next;
        self.last_change = now_unix;
        Some((old, next))
    }

    /// Up or degraded by the window, with a margin so that an uplink near a
    /// threshold does not flap.
    fn quality(&self, th: &Thresholds) -> LinkState {
        // Loss over a handful of probes is noise: one lost of five is not
        // a 20% lossy uplink yet.
        let loss = if self.window.len() >= th.window.min(10) {
            self.loss_pct()
        } else {
            0.0
        };
        let rtt = self.rtt_ms().unwrap_or(0.0);
        let degraded = if self.state == LinkState::Degraded {
            loss >= th.degraded_loss_pct / 2.0 || rtt >= th.degraded_rtt_ms * 0.8
        } else {
            loss >= th.degraded_loss_pct || rtt >= th.degraded_rtt_ms
        };
        if degraded {
            LinkState::Degraded
        } else {
            LinkState::Up
        }
    }

    pub fn loss_pct(&self) -> f64 {
        if self.window.is_empty() {
            return 0.0;
        }
        let lost = self.window.iter().filter(|r| r.is_none()).count();
        100.0 * lost as f64 / self.window.len() as f64
    }

    /// Mean RTT of the answered probes in the window.
    pub fn rtt_ms(&self) -> Option<f64> {
        let (sum, n) = self
            .window
            .iter()
            .flatten()
            .fold((0.0, 0usize), |(s, n), r| (s + r, n + 1));
        (n > 0).then(|| sum / n as f64)
    }
}

/// The tracker's view of one uplink (docs/status.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub state: LinkState,
    pub rtt_ms: Option<f64>,
    pub loss_pct: f64,
    pub last_change: i64,
    pub probe_bytes_hour: u64,
    pub budget_bytes_hour: Option<u64>,
}

/// Where the tracker's unbound-traffic rule points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unbound {
    pub family: String,
    pub table: u32,
    pub ifname: String,
    pub since: i64,
}

/// An uplink as the chooser sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub table: u32,
    pub ifname: String,
    pub state: LinkState,
    pub loss_pct: f64,
    pub rtt_ms: Option<f64>,
}

/// The table unbound traffic should use: usable uplinks only, up before
/// degraded, then the first matching pattern of `preference` (unmatched
/// last), then measured quality (loss, then RTT). The current choice is
/// kept among equals unless another is clearly better (10 points less
/// loss, or under half the RTT), so quality noise does not move traffic.
/// `None`: nothing is usable; the 91000 rules stay in charge.
pub fn choose(cands: &[Candidate], preference: &[String], current: Option<u32>) -> Option<u32> {
    let rank = |c: &Candidate| {
        let class = u8::from(c.state != LinkState::Up);
        let pref = preference
            .iter()
            .position(|p| crate::patterns::glob_match(p, &c.ifname))
            .unwrap_or(preference.len());
        (class, pref)
    };
    let better = |a: &Candidate, b: &Candidate| {
        a.loss_pct
            .total_cmp(&b.loss_pct)
            .then(
                a.rtt_ms
                    .unwrap_or(f64::MAX)
                    .total_cmp(&b.rtt_ms.unwrap_or(f64::MAX)),
            )
            .then(a.table.cmp(&b.table))
    };
    let usable: Vec<&Candidate> = cands.iter().filter(|c| c.state.usable()).collect();
    let best = usable
        .iter()
        .min_by(|a, b| rank(a).cmp(&rank(b)).then(better(a, b)))?;
    if let Some(cur) = current.and_then(|t| usable.iter().find(|c| c.table == t)) {
        if rank(cur) == rank(best) {
            let clearly = best.loss_pct + 10.0 <= cur.loss_pct
                || matches!((best.rtt_ms, cur.rtt_ms), (Some(b), Some(c)) if b * 2.0 < c);
            if !clearly {
                return Some(cur.table);
            }
        }
    }
    Some(best.table)
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
mod tests;
