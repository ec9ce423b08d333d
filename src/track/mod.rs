//! The tracker, a part of `mhr agent`: health checks per uplink and the
//! choice of uplink for unbound traffic.
//!
//! Its uplinks come from the agent's model (a watch channel: every managed
//! address with its table), never from the kernel. Each is probed from its
//! address and device; the pure state machine in `health` grades it,
//! `health::choose` picks the table for unbound traffic, and the choice
//! goes back to the model, whose applier points one `iif lo` rule per
//! family at `unbound_priority` there. With no usable uplink the rule goes
//! and the 91000 rules are in charge again.

pub mod config;
pub mod doubt;
pub mod health;
pub mod passive;
mod probe;
mod scripts;
use scripts::uplink_env;
mod state;
mod targets;
mod unbound;
mod uplink;
pub use uplink::router_answers;
use uplink::Uplink;

pub use state::TrackState;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::addr::Family;
use crate::timer::unix_now;
use crate::track::health::LinkState;

use config::TrackConfig;
use probe::{Outcome, Probe};

#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error("the agent's model stopped feeding the tracker")]
    Closed,
}

/// An uplink: a managed link in one family, probed from one of its
/// addresses (`address`, routed by `table`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UplinkId {
    pub family: Family,
    pub table: u32,
    pub ifname: String,
    pub address: IpAddr,
    /// The link's other addresses of the family: they share the verdict,
    /// and their connections feed the passive signal too.
    pub also: Vec<IpAddr>,
}

impl UplinkId {
    /// The same uplink, whatever its other addresses.
    fn same(&self, other: &UplinkId) -> bool {
        (self.family, self.table, &self.ifname, self.address)
            == (other.family, other.table, &other.ifname, other.address)
    }
}

/// What the tracker tells the agent's model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackOut {
    /// Unbound traffic of `family` should use `table` (none: the 91000
    /// rules decide).
    Unbound { family: Family, table: Option<u32> },
    /// An uplink's state changed (MPTCP endpoints follow it).
    Health {
        family: Family,
        ifname: String,
        state: LinkState,
    },
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
    out: tokio::sync::mpsc::UnboundedSender<TrackOut>,
}

impl Tracker {
    fn new(
        cfg: TrackConfig,
        unbound: BTreeMap<Family, u32>,
        out: tokio::sync::mpsc::UnboundedSender<TrackOut>,
        now: Instant,
    ) -> Tracker {
        let settle = cfg.interval * cfg.thresholds.up_after + cfg.timeout;
        Tracker {
            ident: (std::process::id() as u16).rotate_left(7),
            cfg,
            uplinks: BTreeMap::new(),
            unbound: unbound
                .into_iter()
                .map(|(f, t)| (f, (t, unix_now())))
                .collect(),
            dirty: true,
            settle_until: now + settle,
            out,
        }
    }

    /// Brings the uplink set in line with the model's.
    fn set_uplinks(&mut self, uplinks: &[UplinkId]) {
        let now = Instant::now();
        let found: Vec<&UplinkId> = uplinks
            .iter()
            .filter(|u| self.cfg.tracks(&u.ifname))
            .filter(|u| !self.cfg.targets_for(u.family).is_empty())
            .collect();
        let mut gone = Vec::new();
        for (key, mut up) in std::mem::take(&mut self.uplinks) {
            match found.iter().find(|f| f.same(&up.id)) {
                Some(f) => {
                    up.id.also = f.also.clone();
                    self.uplinks.insert(key, up);
                }
                None => gone.push(up),
            }
        }
        for id in found {
            let key = (id.family, id.table);
            if self.uplinks.contains_key(&key) {
                continue;
            }
            // The link probed from another of its addresses (the one it
            // was probed from went): its health goes on, probes in flight
            // from the old address do not count.
            let same_link = gone
                .iter()
                .position(|u| u.id.family == id.family && u.id.ifname == id.ifname);
            let up = match same_link {
                Some(i) => {
                    let mut up = gone.swap_remove(i);
                    info!(ifname = %id.ifname, address = %id.address, old = %up.id.address, table = id.table, "uplink now probed from another of its addresses");
                    up.moved_to(id.clone());
                    up
                }
                None => {
                    info!(ifname = %id.ifname, address = %id.address, table = id.table, "tracking uplink");
                    Uplink::new(id.clone(), &self.cfg, now)
                }
            };
            self.uplinks.insert(key, up);
            self.dirty = true;
        }
        for up in gone {
            info!(ifname = %up.id.ifname, address = %up.id.address, table = up.id.table, "uplink gone; no longer tracked");
        }
    }

    fn due_probes(&mut self, now: Instant) -> Vec<((Family, u32), Probe)> {
        let mut out = Vec::new();
        for (key, up) in self.uplinks.iter_mut() {
            if let Some(p) = up.due(&self.cfg, self.ident ^ (key.1 as u16), now) {
                out.push((*key, p));
            }
        }
        out
    }

    fn next_due(&mut self, now: Instant) -> Option<Instant> {
        let cfg = &self.cfg;
        self.uplinks
            .values_mut()
            .filter_map(|u| u.next_wake(cfg, now))
            .min()
    }

    /// The passive signal for every uplink; true when a state changed.
    fn passive(&mut self, stalls: &passive::Stalls, now: Instant) -> bool {
        self.each(|cfg, up| {
            let mut remotes = stalls.get(&up.id.address).cloned().unwrap_or_default();
            for a in &up.id.also {
                remotes.extend(stalls.get(a).into_iter().flatten());
            }
            up.passive(cfg, Some(&remotes), now)
        })
    }

    /// Deadlines passed; true when an uplink's state changed.
    fn tick(&mut self, now: Instant) -> bool {
        self.each(|cfg, up| up.tick(cfg, now))
    }

    /// `f` for every uplink, announcing the state changes it returns; true
    /// when there was one.
    fn each(
        &mut self,
        mut f: impl FnMut(&TrackConfig, &mut Uplink) -> Option<uplink::Change>,
    ) -> bool {
        let mut changed = Vec::new();
        for (key, up) in self.uplinks.iter_mut() {
            if let Some(c) = f(&self.cfg, up) {
                changed.push((*key, c));
            }
        }
        for (key, c) in &changed {
            self.announce(*key, *c);
        }
        !changed.is_empty()
    }

    /// Records a probe; true when the uplink's state changed.
    fn record(&mut self, key: (Family, u32), probe: &Probe, outcome: Outcome) -> bool {
        let Some(up) = self.uplinks.get_mut(&key) else {
            return false;
        };
        self.dirty = true;
        let (change, feed, newly_dead) = up.finish(&self.cfg, probe, &outcome, Instant::now());
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
        match change {
            Some(c) => {
                self.announce(key, c);
                true
            }
            None => false,
        }
    }

    /// Logs a state change and runs the scripts.
    fn announce(&mut self, key: (Family, u32), (old, new): (LinkState, LinkState)) {
        let Some(up) = self.uplinks.get(&key) else {
            return;
        };
        self.dirty = true;
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
        let _ = self.out.send(TrackOut::Health {
            family: up.id.family,
            ifname: up.id.ifname.clone(),
            state: new,
        });
        let mut env = uplink_env(&up.id, &h);
        env.push(("MHR_EVENT".into(), "state".into()));
        env.push(("MHR_OLD_STATE".into(), old.name().into()));
        self.run_scripts(env);
    }
}

/// Runs the tracker until `shutdown` completes: uplinks from `uplinks`
/// (the model's), its choice to `out`. `unbound` is the choice in the
/// kernel when the agent started (adopted: nothing moves until every
/// uplink is graded).
pub async fn run(
    cfg: TrackConfig,
    mut uplinks: tokio::sync::watch::Receiver<Vec<UplinkId>>,
    unbound: BTreeMap<Family, u32>,
    out: tokio::sync::mpsc::UnboundedSender<TrackOut>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TrackError> {
    let mut t = Tracker::new(cfg, unbound, out, Instant::now());
    t.set_uplinks(&uplinks.borrow_and_update());
    info!(
        uplinks = t.uplinks.len(),
        interval_ms = t.cfg.interval.as_millis() as u64,
        down_after = t.cfg.thresholds.down_after,
        "tracker started"
    );
    tokio::pin!(shutdown);
    let mut probes = FuturesUnordered::new();
    let mut persist = crate::timer::ticker(Duration::from_secs(1));
    let mut passive_at = Instant::now();
    let mut passive_warned = false;
    let mut gate = passive::Gate::default();
    // Reading the sockets blocks for up to tens of milliseconds on a busy
    // host: it runs on the blocking pool, so probes in flight keep being
    // timed (one read at a time).
    let mut reads = FuturesUnordered::new();
    loop {
        let next = t.next_due(Instant::now());
        tokio::select! {
            _ = &mut shutdown => {
                t.shutdown();
                return Ok(());
            }
            changed = uplinks.changed() => {
                if changed.is_err() {
                    return Err(TrackError::Closed);
                }
                let list = uplinks.borrow_and_update().clone();
                t.set_uplinks(&list);
                t.reconcile();
            }
            _ = crate::timer::sleep_until_opt(next) => {
                if t.tick(Instant::now()) {
                    t.reconcile();
                    t.write_state();
                }
                for (key, p) in t.due_probes(Instant::now()) {
                    probes.push(async move {
                        let outcome = probe::run(&p).await;
                        (key, p, outcome)
                    });
                }
            }
            Some((key, p, outcome)) = probes.next(), if !probes.is_empty() => {
                if t.record(key, &p, outcome) {
                    t.reconcile();
                    t.write_state();
                }
            }
            _ = persist.tick() => t.write_state(),
            _ = tokio::time::sleep_until(passive_at), if t.cfg.passive && !t.uplinks.is_empty() && reads.is_empty() => {
                let counters = passive::counters();
                if !gate.should_read(counters) {
                    passive_at = Instant::now() + Duration::from_millis(500);
                    continue;
                }
                let started = Instant::now();
                reads.push(async move {
                    let read = tokio::task::spawn_blocking(passive::connections).await;
                    (started, counters, read.unwrap_or_else(|e| Err(std::io::Error::other(e))))
                });
            }
            Some((started, counters, read)) = reads.next(), if !reads.is_empty() => {
                match read {
                    Ok(conns) => {
                        let stalls = passive::stalls(&conns);
                        gate.read(counters, &stalls);
                        if t.passive(&stalls, Instant::now()) {
                            t.reconcile();
                            t.write_state();
                        }
                    }
                    Err(e) if !passive_warned => {
                        passive_warned = true;
                        warn!("reading TCP connections (the passive signal) failed, probes alone judge: {e}");
                    }
                    Err(_) => {}
                }
                // Every 500 ms, and at most 1 % of a core: reading 20,000
                // sockets takes about 25 ms, so a busy host is read every
                // 2.5 s (the signal only hastens what probes find).
                passive_at = Instant::now() + Duration::from_millis(500).max(started.elapsed() * 100);
            }
        }
    }
}

#[cfg(test)]
mod tests;
