//! `mhr track`: health checks per uplink and the unbound-traffic rule.
//!
//! Uplinks are found from our own rules (9000 `oif IF` and 10000 `from
//! ADDR`, protocol 77), so every address the hooks manage is tracked without
//! configuration. Each is probed from its address and device; the pure
//! state machine in `health` grades it, `health::choose` picks the table
//! for unbound traffic, and one `iif lo` rule per family at
//! `unbound_priority` points there. With no usable uplink the rule goes and
//! the 91000 rules are in charge again.

pub mod config;
pub mod health;
mod probe;
mod scripts;
use scripts::uplink_env;
mod state;
mod targets;
mod unbound;

pub use state::TrackState;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::addr::Family;
use crate::netlink::rules::{RuleSpec, PRIO_BOUND_DEVICE, PRIO_FROM};
use crate::netlink::{Netlink, NetlinkError};
use crate::timer::unix_now;
use crate::track::health::{paced_interval, Health, HourMeter, LinkHealth};

use config::{Target, TrackConfig};
use probe::{Outcome, Probe};

#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// An uplink: one managed address and its table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UplinkId {
    pub family: Family,
    pub table: u32,
    pub ifname: String,
    pub address: IpAddr,
}

/// The uplinks our rules describe: a table with both its `oif` (9000) and
/// its `from` (10000) rule. A table can have several `from` rules (IPv6
/// privacy addresses); probes use an address that is not `temporary`,
/// which outlives them.
pub fn uplinks_from_rules(rules: &[RuleSpec], temporary: &[IpAddr]) -> Vec<UplinkId> {
    let mut by_table: BTreeMap<(Family, u32), (Option<String>, Option<IpAddr>)> = BTreeMap::new();
    for r in rules {
        let e = by_table.entry((r.family, r.table)).or_default();
        match r.priority {
            PRIO_BOUND_DEVICE => e.0 = r.oif.clone(),
            PRIO_FROM => {
                if let Some((a, _)) = r.from {
                    if e.1.is_none_or(|cur| temporary.contains(&cur)) {
                        e.1 = Some(a);
                    }
                }
            }
            _ => {}
        }
    }
    by_table
        .into_iter()
        .filter_map(|((family, table), (ifname, address))| {
            Some(UplinkId {
                family,
                table,
                ifname: ifname?,
                address: address?,
            })
        })
        .collect()
}

struct Uplink {
    id: UplinkId,
    health: LinkHealth,
    meter: HourMeter,
    targets: Vec<Target>,
    interval: Duration,
    budget: Option<u64>,
    next_probe: Instant,
    /// Which targets answer; a silent one among answering ones is dead.
    book: targets::TargetBook,
    seq: u16,
    probes_sent: u64,
    last_error: Option<String>,
}

impl Uplink {
    fn new(id: UplinkId, cfg: &TrackConfig, now: Instant) -> Uplink {
        let targets = cfg.targets_for(id.family);
        let budget = cfg.budget_for(&id.ifname);
        let cost = targets.iter().map(Target::cost).sum::<u64>() / targets.len().max(1) as u64;
        let interval = paced_interval(cfg.interval, cost, budget);
        let book = targets::TargetBook::new(targets.len());
        Uplink {
            health: LinkHealth::new(unix_now()),
            meter: HourMeter::default(),
            targets,
            interval,
            budget,
            next_probe: now,
            book,
            seq: 0,
            probes_sent: 0,
            last_error: None,
            id,
        }
    }

    fn health(&self) -> Health {
        Health {
            state: self.health.state,
            rtt_ms: self.health.rtt_ms().map(|r| (r * 100.0).round() / 100.0),
            loss_pct: (self.health.loss_pct() * 10.0).round() / 10.0,
            last_change: self.health.last_change,
            probe_bytes_hour: self.meter.last_hour(unix_now()),
            budget_bytes_hour: self.budget,
        }
    }
}

struct Tracker {
    cfg: TrackConfig,
    uplinks: BTreeMap<(Family, u32), Uplink>,
    /// The unbound rule installed per family: (table, since).
    unbound: BTreeMap<Family, (u32, i64)>,
    ident: u16,
    dirty: bool,
    /// At start, the choice waits until every uplink has been graded (or
    /// this passes), so it does not go to whichever answered first.
    settle_until: Instant,
    /// Interfaces whose forwarded traffic follows the unbound rule.
    downstream: crate::netlink::rules::Downstream,
}

impl Tracker {
    fn new(
        cfg: TrackConfig,
        downstream: crate::netlink::rules::Downstream,
        now: Instant,
    ) -> Tracker {
        let settle = cfg.interval * cfg.thresholds.up_after + cfg.timeout;
        Tracker {
            ident: (std::process::id() as u16).rotate_left(7),
            cfg,
            uplinks: BTreeMap::new(),
            unbound: BTreeMap::new(),
            dirty: true,
            settle_until: now + settle,
            downstream,
        }
    }

    /// Brings the uplink set in line with our rules, and learns which
    /// unbound rules are in the kernel (ours from before a restart, or gone
    /// because somebody deleted them).
    async fn discover(&mut self, nl: &Netlink) -> Result<(), NetlinkError> {
        let now = Instant::now();
        let mut rules = nl.our_rules(Family::Inet).await?;
        rules.extend(nl.our_rules(Family::Inet6).await?);
        let temporary: Vec<IpAddr> = nl
            .addresses6()
            .await?
            .iter()
            .filter(|a| a.temporary())
            .map(|a| IpAddr::V6(a.address))
            .collect();
        let found: Vec<UplinkId> = uplinks_from_rules(&rules, &temporary)
            .into_iter()
            .filter(|u| self.cfg.tracks(&u.ifname))
            .filter(|u| !self.cfg.targets_for(u.family).is_empty())
            .collect();
        self.uplinks.retain(|key, up| {
            let keep = found.contains(&up.id);
            if !keep {
                info!(ifname = %up.id.ifname, address = %up.id.address, table = key.1, "uplink gone; no longer tracked");
            }
            keep
        });
        for id in found {
            let key = (id.family, id.table);
            if !self.uplinks.contains_key(&key) {
                info!(ifname = %id.ifname, address = %id.address, table = id.table, "tracking uplink");
                let up = Uplink::new(id, &self.cfg, now);
                self.uplinks.insert(key, up);
                self.dirty = true;
            }
        }
        let installed: Vec<&RuleSpec> = rules
            .iter()
            .filter(|r| r.priority == self.cfg.unbound_priority && r.iif.as_deref() == Some("lo"))
            .collect();
        for family in [Family::Inet, Family::Inet6] {
            let in_kernel: Vec<u32> = installed
                .iter()
                .filter(|r| r.family == family)
                .map(|r| r.table)
                .collect();
            match self.unbound.get(&family) {
                Some((t, _)) if in_kernel.contains(t) => {}
                Some((t, _)) => {
                    warn!(table = t, %family, "the unbound rule was removed by someone else; re-evaluating");
                    self.unbound.remove(&family);
                }
                None => {}
            }
            // Extra rules at our priority (from a previous run): keep the
            // first as the current choice, drop the rest.
            for t in in_kernel {
                let current = *self.unbound.entry(family).or_insert((t, unix_now()));
                if current.0 != t {
                    for r in self.unbound_rules(family, t) {
                        let _ = nl.del_rule(&r).await;
                    }
                }
            }
        }
        Ok(())
    }

    fn due_probes(&mut self, now: Instant) -> Vec<((Family, u32), Probe)> {
        let mut out = Vec::new();
        for (key, up) in self.uplinks.iter_mut() {
            if up.next_probe > now || up.targets.is_empty() {
                continue;
            }
            let target = up.targets[up.book.next() % up.targets.len()].clone();
            up.seq = up.seq.wrapping_add(1);
            up.probes_sent += 1;
            // Keep the cadence; after a stall, start again from now.
            up.next_probe = (up.next_probe + up.interval).max(now);
            out.push((
                *key,
                Probe {
                    target,
                    source: up.id.address,
                    device: up.id.ifname.clone(),
                    timeout: self.cfg.timeout,
                    ident: self.ident ^ (key.1 as u16),
                    seq: up.seq,
                },
            ));
        }
        out
    }

    fn next_due(&self) -> Option<Instant> {
        self.uplinks.values().map(|u| u.next_probe).min()
    }

    /// Records a probe; true when the uplink's state changed.
    fn record(&mut self, key: (Family, u32), probe: &Probe, outcome: Outcome) -> bool {
        let Some(up) = self.uplinks.get_mut(&key) else {
            return false;
        };
        let now = unix_now();
        up.meter.add(now, outcome.bytes);
        self.dirty = true;
        let index = up
            .targets
            .iter()
            .position(|t| *t == probe.target)
            .unwrap_or(usize::MAX);
        let (feed, newly_dead) =
            up.book
                .record(index, outcome.rtt.is_some(), self.cfg.thresholds.down_after);
        // A known-dead target's silence keeps the message that named it.
        if let (Some(e), false) = (&outcome.error, feed == targets::Feed::Ignore) {
            up.last_error = Some(format!("{}: {e}", probe.target.describe()));
        }
        if newly_dead {
            let e = format!(
                "target {} does not answer while another does: a dead target, not a dead uplink (probed now and then)",
                probe.target.describe()
            );
            warn!(ifname = %up.id.ifname, address = %up.id.address, "{e}");
            up.last_error = Some(e);
        }
        let rtt = match feed {
            targets::Feed::Answer | targets::Feed::Loss => outcome.rtt,
            targets::Feed::Ignore => return false,
        };
        let Some((old, new)) = up.health.record(rtt, &self.cfg.thresholds, now) else {
            return false;
        };
        let h = up.health();
        info!(
            ifname = %up.id.ifname,
            address = %up.id.address,
            table = up.id.table,
            rtt_ms = h.rtt_ms.unwrap_or(0.0),
            loss_pct = h.loss_pct,
            last_error = up.last_error.as_deref().unwrap_or(""),
            "uplink {old} -> {new}"
        );
        let mut env = uplink_env(&up.id, &h);
        env.push(("MHR_EVENT".into(), "state".into()));
        env.push(("MHR_OLD_STATE".into(), old.name().into()));
        self.run_scripts(env);
        true
    }
}

/// Does `router` answer one ICMP echo from `source` through `ifname`
/// within a second? The tracker's own probe, for dhclient's TIMEOUT check.
pub async fn router_answers(ifname: &str, source: IpAddr, router: IpAddr) -> bool {
    let probe = Probe {
        target: Target::Icmp { address: router },
        source,
        device: ifname.to_owned(),
        timeout: Duration::from_secs(1),
        ident: std::process::id() as u16,
        seq: 1,
    };
    probe::run(&probe).await.rtt.is_some()
}

/// Runs the tracker until `shutdown` completes. Forwarded traffic from
/// `downstream` follows the same choice as the host's own. `nl` is the
/// process's netlink connection (the agent shares its own).
pub async fn run(
    cfg: TrackConfig,
    downstream: crate::netlink::rules::Downstream,
    nl: Netlink,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TrackError> {
    let mut t = Tracker::new(cfg, downstream, Instant::now());
    t.discover(&nl).await?;
    info!(
        uplinks = t.uplinks.len(),
        interval_ms = t.cfg.interval.as_millis() as u64,
        down_after = t.cfg.thresholds.down_after,
        "tracker started"
    );
    tokio::pin!(shutdown);
    let mut probes = FuturesUnordered::new();
    let mut discover = crate::timer::ticker(Duration::from_secs(1));
    let mut persist = crate::timer::ticker(Duration::from_secs(1));
    loop {
        let next = t.next_due();
        tokio::select! {
            _ = &mut shutdown => {
                info!("shutting down: unbound traffic returns to the iif lo rules");
                t.shutdown(&nl).await;
                return Ok(());
            }
            _ = discover.tick() => {
                if let Err(e) = t.discover(&nl).await {
                    warn!("reading rules: {e}");
                }
                t.reconcile(&nl).await;
            }
            _ = crate::timer::sleep_until_opt(next) => {
                for (key, p) in t.due_probes(Instant::now()) {
                    probes.push(async move {
                        let outcome = probe::run(&p).await;
                        (key, p, outcome)
                    });
                }
            }
            Some((key, p, outcome)) = probes.next(), if !probes.is_empty() => {
                if t.record(key, &p, outcome) {
                    t.reconcile(&nl).await;
                    t.write_state();
                }
            }
            _ = persist.tick() => t.write_state(),
        }
    }
}

#[cfg(test)]
mod tests;
