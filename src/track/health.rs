//! Uplink health, pure: the per-uplink state machine with hysteresis, loss
//! and RTT over a window, and the choice of the uplink for unbound traffic.
//! The tracker (`track`) feeds it probe results and applies what it
//! decides.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

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
    /// Consecutive missed probes that make an uplink down...
    pub down_after: u32,
    /// ...once it has been silent this long (since the first of them was
    /// sent): a queue that delays every probe for less is not a death.
    pub down_silence: Duration,
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
            // Five in a row: with bursts they take half a second to collect,
            // and 5 % random loss makes five in a row once in 3.2 million
            // probes (and the silence needs more).
            down_after: 5,
            down_silence: Duration::from_millis(600),
            up_after: 3,
            // 100 probes (a minute): at 5 % random loss, 20 lost of 100
            // happens about once in ten million windows; 4 of 20 (the old
            // window) once in sixty.
            window: 100,
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
    /// When the first of the current run of overdue probes was sent.
    silent_since: Option<Instant>,
    /// The host's own connections over the uplink get no answers while
    /// probes do (the passive signal): degraded, not down.
    stalled: bool,
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
            silent_since: None,
            stalled: false,
            window: VecDeque::new(),
        }
    }

    /// A probe answered (in time or late: either proves the path); returns
    /// `(old, new)` when the state changed.
    pub fn answered(
        &mut self,
        rtt: Duration,
        th: &Thresholds,
        now_unix: i64,
    ) -> Option<(LinkState, LinkState)> {
        self.push(Some(rtt.as_secs_f64() * 1000.0), th);
        self.ok_run += 1;
        self.fail_run = 0;
        self.silent_since = None;
        let next = match self.state {
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
            s => s,
        };
        self.change(next, now_unix)
    }

    /// A probe sent at `sent` is overdue (past its deadline, unanswered).
    pub fn missed(
        &mut self,
        sent: Instant,
        th: &Thresholds,
        silence: Duration,
        now: Instant,
        now_unix: i64,
    ) -> Option<(LinkState, LinkState)> {
        self.fail_run += 1;
        self.ok_run = 0;
        self.silent_since.get_or_insert(sent);
        self.judge(th, silence, now, now_unix)
    }

    /// An overdue probe's answer never came: it counts in the loss rate.
    pub fn lost(&mut self, th: &Thresholds, now_unix: i64) -> Option<(LinkState, LinkState)> {
        self.push(None, th);
        match self.state {
            LinkState::Up | LinkState::Degraded if self.fail_run < th.down_after => {
                let q = self.quality(th);
                self.change(q, now_unix)
            }
            _ => None,
        }
    }

    /// Down once `down_after` probes in a row are overdue and the uplink
    /// has been silent for `silence` (`down_silence`, or longer on an
    /// uplink whose answers take longer).
    pub fn judge(
        &mut self,
        th: &Thresholds,
        silence: Duration,
        now: Instant,
        now_unix: i64,
    ) -> Option<(LinkState, LinkState)> {
        match self.down_at(th, silence) {
            Some(at) if at <= now && self.state != LinkState::Down => {
                self.change(LinkState::Down, now_unix)
            }
            _ => None,
        }
    }

    /// When the misses so far make the uplink down if nothing answers.
    pub fn down_at(&self, th: &Thresholds, silence: Duration) -> Option<Instant> {
        let since = self.silent_since?;
        (self.fail_run >= th.down_after && self.state != LinkState::Down).then(|| since + silence)
    }

    /// The passive signal: connections from the uplink's address stalled
    /// to several remotes for a while (true), or no longer (false).
    pub fn set_stalled(
        &mut self,
        stalled: bool,
        th: &Thresholds,
        now_unix: i64,
    ) -> Option<(LinkState, LinkState)> {
        self.stalled = stalled;
        match self.state {
            LinkState::Up | LinkState::Degraded => {
                let q = self.quality(th);
                self.change(q, now_unix)
            }
            _ => None,
        }
    }

    /// Probes are overdue and the uplink is not yet down: ask again soon.
    pub fn in_doubt(&self) -> bool {
        self.fail_run > 0 && self.state != LinkState::Down
    }

    /// One finished probe at once, its silence long over (the tests).
    #[cfg(test)]
    pub fn record(
        &mut self,
        rtt: Option<Duration>,
        th: &Thresholds,
        now_unix: i64,
    ) -> Option<(LinkState, LinkState)> {
        match rtt {
            Some(r) => self.answered(r, th, now_unix),
            None => {
                let sent = Instant::now();
                let s = th.down_silence;
                let a = self.missed(sent, th, s, sent + s, now_unix);
                let b = self.lost(th, now_unix);
                match (a, b) {
                    (Some((old, _)), Some((_, new))) => Some((old, new)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    fn push(&mut self, rtt_ms: Option<f64>, th: &Thresholds) {
        self.window.push_back(rtt_ms);
        while self.window.len() > th.window.max(1) {
            self.window.pop_front();
        }
    }

    fn change(&mut self, next: LinkState, now_unix: i64) -> Option<(LinkState, LinkState)> {
        let old = self.state;
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
        // Loss over a part of the window is noise: two lost of ten is not
        // a 20% lossy uplink yet.
        let loss = if self.window.len() >= th.window {
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
        if degraded || self.stalled {
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

    /// Mean RTT of the last 20 answered probes in the window (RTT is not
    /// as noisy as loss, and a filling queue should show soon).
    pub fn rtt_ms(&self) -> Option<f64> {
        let (sum, n) = self
            .window
            .iter()
            .rev()
            .flatten()
            .take(20)
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

#[cfg(test)]
mod tests;
