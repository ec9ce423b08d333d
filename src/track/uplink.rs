//! One tracked uplink: its probes in flight, their deadlines, its bursts
//! and its health. The tracker asks it for due probes, tells it the time
//! and the outcomes, and hears back the state changes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};

use tokio::time::Instant;

use super::config::{Target, TrackConfig};
use super::doubt::{self, paced_interval, Bucket, HourMeter, Timing};
use super::health::{Health, LinkHealth, LinkState};
use super::probe::{self, Outcome, Probe};
use super::targets::{self, TargetBook};
use super::UplinkId;
use crate::timer::unix_now;

pub(super) type Change = (LinkState, LinkState);

/// A probe in flight.
struct Pending {
    sent: Instant,
    overdue_at: Instant,
    overdue: bool,
    target: usize,
}

pub(super) struct Uplink {
    pub id: UplinkId,
    pub health: LinkHealth,
    pub meter: HourMeter,
    pub targets: Vec<Target>,
    pub interval: Duration,
    pub budget: Option<u64>,
    /// The next probe at the steady pace.
    steady_at: Instant,
    last_sent: Option<Instant>,
    timing: Timing,
    bucket: Bucket,
    pending: BTreeMap<u16, Pending>,
    /// Which targets answer; a silent one among answering ones is dead.
    pub book: TargetBook,
    seq: u16,
    pub probes_sent: u64,
    pub last_error: Option<String>,
    /// A stalled connection asks for one probe now.
    suspect: bool,
    /// Since when connections from this address stall to 2+ remotes.
    stalled_since: Option<Instant>,
}

impl Uplink {
    /// Probed from another address of the same link from now on: the
    /// health stays, the probes in flight from the old one are forgotten.
    pub fn moved_to(&mut self, id: UplinkId) {
        self.id = id;
        self.pending.clear();
    }

    pub fn new(id: UplinkId, cfg: &TrackConfig, now: Instant) -> Uplink {
        let targets = cfg.targets_for(id.family);
        let budget = cfg.budget_for(&id.ifname);
        let cost = targets.iter().map(Target::cost).sum::<u64>() / targets.len().max(1) as u64;
        // A budget pays for the steady probes and the bursts' fifth.
        let interval = paced_interval(cfg.interval, cost + cost / 5, budget);
        let rate = if cfg.timing.adaptive {
            0.2 / interval.as_secs_f64()
        } else {
            0.0
        };
        Uplink {
            health: LinkHealth::new(unix_now()),
            meter: HourMeter::default(),
            book: TargetBook::new(targets.len()),
            targets,
            interval,
            budget,
            steady_at: now,
            last_sent: None,
            timing: Timing::default(),
            // Room for two deaths in a row at full speed.
            bucket: Bucket::new(rate, 2 * cfg.thresholds.down_after, now.into_std()),
            pending: BTreeMap::new(),
            seq: 0,
            probes_sent: 0,
            last_error: None,
            suspect: false,
            stalled_since: None,
            id,
        }
    }

    /// The passive signal: the remotes that this uplink's address has
    /// stalled connections to, now. One puts the uplink in doubt (a probe
    /// at once); two or more for `passive_after` while probes answer make
    /// it degraded.
    pub fn passive(
        &mut self,
        cfg: &TrackConfig,
        remotes: Option<&std::collections::BTreeSet<std::net::IpAddr>>,
        now: Instant,
    ) -> Option<Change> {
        let n = remotes.map_or(0, |r| r.len());
        if n > 0 && self.health.state.usable() && !self.health.in_doubt() {
            self.suspect = true;
        }
        if n < 2 {
            self.stalled_since = None;
            return self.health.set_stalled(false, &cfg.thresholds, unix_now());
        }
        let since = *self.stalled_since.get_or_insert(now);
        if now - since < cfg.passive_after {
            return None;
        }
        let list: Vec<String> = remotes
            .into_iter()
            .flatten()
            .take(4)
            .map(ToString::to_string)
            .collect();
        self.last_error = Some(format!(
            "TCP connections from {} to {n} remotes ({}) get no acknowledgements while probes are answered",
            self.id.address,
            list.join(", ")
        ));
        self.health.set_stalled(true, &cfg.thresholds, unix_now())
    }

    pub fn health(&self) -> Health {
        Health {
            state: self.health.state,
            rtt_ms: self.health.rtt_ms().map(|r| (r * 100.0).round() / 100.0),
            loss_pct: (self.health.loss_pct() * 10.0).round() / 10.0,
            last_change: self.health.last_change,
            probe_bytes_hour: self.meter.last_hour(unix_now()),
            budget_bytes_hour: self.budget,
        }
    }

    /// When this uplink next needs the tracker: a probe to send, a deadline
    /// to pass, or a silence long enough to make it down.
    pub fn next_wake(&mut self, cfg: &TrackConfig, now: Instant) -> Option<Instant> {
        if self.targets.is_empty() {
            return None;
        }
        let probe = self.next_probe(cfg, now);
        let overdue = self
            .pending
            .values()
            .filter(|p| !p.overdue)
            .map(|p| p.overdue_at)
            .min();
        let down = self
            .health
            .down_at(&cfg.thresholds, self.silence(cfg))
            .map(Instant::from_std);
        [Some(probe), overdue, down].into_iter().flatten().min()
    }

    /// How long the uplink must be silent to be down: `down_silence`, or
    /// two RTTs on an uplink whose queue makes answers slower.
    fn silence(&self, cfg: &TrackConfig) -> Duration {
        let srtt = self.timing.slow().filter(|_| cfg.timing.adaptive);
        cfg.thresholds
            .down_silence
            .max(srtt.unwrap_or_default() * 2)
    }

    fn next_probe(&mut self, cfg: &TrackConfig, now: Instant) -> Instant {
        Instant::from_std(doubt::next_probe(
            &cfg.timing,
            self.steady_at.into_std(),
            self.last_sent.map(Instant::into_std),
            self.health.in_doubt() || self.suspect,
            &mut self.bucket,
            now.into_std(),
        ))
    }

    /// The probe to send now, if one is due.
    pub fn due(&mut self, cfg: &TrackConfig, ident: u16, now: Instant) -> Option<Probe> {
        if self.targets.is_empty() || self.next_probe(cfg, now) > now {
            return None;
        }
        if self.steady_at <= now {
            // Keep the cadence; after a stall, start again from now.
            self.steady_at = (self.steady_at + self.interval).max(now);
        } else if !self.bucket.take(now.into_std()) {
            return None;
        }
        self.suspect = false;
        let index = self.book.next() % self.targets.len();
        self.seq = self.seq.wrapping_add(1);
        self.probes_sent += 1;
        self.last_sent = Some(now);
        self.pending.insert(
            self.seq,
            Pending {
                sent: now,
                overdue_at: now + self.timing.overdue_after(&cfg.timing),
                overdue: false,
                target: index,
            },
        );
        Some(Probe {
            target: self.targets[index].clone(),
            source: self.id.address,
            device: self.id.ifname.clone(),
            timeout: self.timing.listen_for(&cfg.timing),
            ident,
            seq: self.seq,
        })
    }

    /// Probes past their deadline count as missed; a long enough silence
    /// makes the uplink down.
    pub fn tick(&mut self, cfg: &TrackConfig, now: Instant) -> Option<Change> {
        let th = &cfg.thresholds;
        let silence = self.silence(cfg);
        let mut change = None;
        for p in self.pending.values_mut() {
            if p.overdue || p.overdue_at > now {
                continue;
            }
            p.overdue = true;
            // A target known to be dead says nothing about the uplink.
            if !self.book.is_dead(p.target) {
                let c =
                    self.health
                        .missed(p.sent.into_std(), th, silence, now.into_std(), unix_now());
                change = merge(change, c);
            }
        }
        let c = self.health.judge(th, silence, now.into_std(), unix_now());
        merge(change, c)
    }

    /// A probe finished (answered, however late, or given up on).
    pub fn finish(
        &mut self,
        cfg: &TrackConfig,
        probe: &Probe,
        outcome: &Outcome,
        now: Instant,
    ) -> (Option<Change>, targets::Feed, bool) {
        self.meter.add(unix_now(), outcome.bytes);
        let Some(p) = self.pending.remove(&probe.seq) else {
            return (None, targets::Feed::Ignore, false);
        };
        let th = &cfg.thresholds;
        let silence = self.silence(cfg);
        let (feed, newly_dead) = self
            .book
            .record(p.target, outcome.rtt.is_some(), th.down_after);
        let change = match (feed, outcome.rtt) {
            (targets::Feed::Ignore, _) => None,
            (_, Some(rtt)) => {
                self.timing.sample(rtt);
                self.health.answered(rtt, th, unix_now())
            }
            (_, None) => {
                // Unsent (no route, link gone) or never overdue: missed now.
                let missed = if p.overdue {
                    None
                } else {
                    self.health
                        .missed(p.sent.into_std(), th, silence, now.into_std(), unix_now())
                };
                merge(missed, self.health.lost(th, unix_now()))
            }
        };
        (change, feed, newly_dead)
    }
}

/// Does `router` answer ICMP echoes from `source` through `ifname`? For
/// dhclient's TIMEOUT check, judged as the tracker judges an uplink (the
/// default deadlines, bursts and silence): true at the first answer, false
/// once the router would count as down (about 0.6 s of silence).
pub async fn router_answers(ifname: &str, source: IpAddr, router: IpAddr) -> bool {
    let cfg = TrackConfig {
        targets: vec![Target::Icmp { address: router }],
        ..TrackConfig::default()
    };
    let id = UplinkId {
        family: crate::addr::family_of(&source),
        table: 0,
        ifname: ifname.to_owned(),
        address: source,
        also: Vec::new(),
    };
    let mut up = Uplink::new(id, &cfg, Instant::now());
    let ident = std::process::id() as u16;
    let mut probes = FuturesUnordered::new();
    loop {
        let now = Instant::now();
        up.tick(&cfg, now);
        if up.health.state == LinkState::Down {
            return false;
        }
        if let Some(p) = up.due(&cfg, ident, now) {
            probes.push(async move {
                let outcome = probe::run(&p).await;
                (p, outcome)
            });
        }
        let wake = up.next_wake(&cfg, Instant::now());
        tokio::select! {
            _ = crate::timer::sleep_until_opt(wake) => {}
            Some((p, outcome)) = probes.next(), if !probes.is_empty() => {
                if outcome.rtt.is_some() {
                    return true;
                }
                up.finish(&cfg, &p, &outcome, Instant::now());
            }
        }
    }
}

fn merge(a: Option<Change>, b: Option<Change>) -> Option<Change> {
    match (a, b) {
        (Some((old, _)), Some((_, new))) if old != new => Some((old, new)),
        (Some(_), Some(_)) => None,
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
#[path = "uplink_tests.rs"]
mod tests;
