//! The unbound-traffic rule: which uplink each family's `iif lo` rule
//! points at. `unbound_plan` decides from the uplinks' health alone (pure,
//! tested without root); `reconcile` applies the plan make before break.

use tokio::time::Instant;
use tracing::{info, warn};

use super::Tracker;
use crate::addr::Family;
use crate::netlink::rules::RuleSpec;
use crate::netlink::{Netlink, NetlinkError};
use crate::timer::unix_now;
use crate::track::health::{choose, Candidate, LinkState};

/// One family's unbound rule moving from table `from` to table `to`
/// (`None`: no rule, so the 91000 `iif lo` rules are in charge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UnboundMove {
    pub family: Family,
    pub from: Option<u32>,
    pub to: Option<u32>,
}

impl Tracker {
    /// The unbound rule and, beside it, one per downstream interface
    /// (MHR_DOWNSTREAM), so forwarded traffic follows the same choice.
    pub(super) fn unbound_rules(&self, family: Family, table: u32) -> Vec<RuleSpec> {
        let mut lo = RuleSpec::new(family, table);
        lo.priority = self.cfg.unbound_priority;
        lo.iif = Some("lo".into());
        let mut rules = vec![lo];
        rules.extend(
            self.downstream
                .rules(family, table, self.cfg.unbound_priority),
        );
        rules
    }

    /// Where each family's unbound rule should point now: the best usable
    /// uplink, or none. Nothing moves while uplinks are still ungraded at
    /// start (so the choice does not go to whichever answered first).
    pub(super) fn unbound_plan(&self, now: Instant) -> Vec<UnboundMove> {
        if now < self.settle_until
            && self
                .uplinks
                .values()
                .any(|u| u.health.state == LinkState::Unknown)
        {
            return Vec::new();
        }
        let mut plan = Vec::new();
        for family in [Family::Inet, Family::Inet6] {
            let cands: Vec<Candidate> = self
                .uplinks
                .values()
                .filter(|u| u.id.family == family)
                .map(|u| Candidate {
                    table: u.id.table,
                    ifname: u.id.ifname.clone(),
                    state: u.health.state,
                    loss_pct: u.health.loss_pct(),
                    rtt_ms: u.health.rtt_ms(),
                })
                .collect();
            let from = self.unbound.get(&family).map(|x| x.0);
            let to = choose(&cands, &self.cfg.preference, from);
            if to != from {
                plan.push(UnboundMove { family, from, to });
            }
        }
        plan
    }

    /// Applies the plan. Make before break: the new rule is added before
    /// the old one goes, so unbound traffic always has a way.
    pub(super) async fn reconcile(&mut self, nl: &Netlink) {
        for mv in self.unbound_plan(Instant::now()) {
            self.apply(nl, mv).await;
        }
    }

    async fn apply(&mut self, nl: &Netlink, mv: UnboundMove) {
        let UnboundMove { family, from, to } = mv;
        if let Some(t) = to {
            if let Some(e) = add_all(nl, &self.unbound_rules(family, t)).await {
                warn!(table = t, %family, "cannot add the unbound rule: {e}");
                return;
            }
        }
        if let Some(old) = from {
            for r in self.unbound_rules(family, old) {
                if let Err(e) = nl.del_rule(&r).await {
                    warn!(table = old, %family, "cannot remove the old unbound rule: {e}");
                }
            }
        }
        let ifname = |t: Option<u32>| {
            t.and_then(|t| self.uplinks.get(&(family, t)))
                .map(|u| u.id.ifname.clone())
                .unwrap_or_default()
        };
        let (new_if, old_if) = (ifname(to), ifname(from));
        match to {
            Some(t) => {
                info!(%family, table = t, ifname = %new_if, "unbound traffic now uses {new_if} (table {t})");
                self.unbound.insert(family, (t, unix_now()));
            }
            None => {
                info!(%family, "no usable uplink: unbound traffic follows the iif lo rules (91000)");
                self.unbound.remove(&family);
            }
        }
        self.dirty = true;
        let text = |t: Option<u32>| t.map(|t| t.to_string()).unwrap_or_default();
        self.run_scripts(vec![
            ("MHR_EVENT".into(), "unbound".into()),
            ("MHR_FAMILY".into(), family.name().into()),
            ("MHR_TABLE".into(), text(to)),
            ("MHR_IFNAME".into(), new_if),
            ("MHR_OLD_TABLE".into(), text(from)),
            ("MHR_OLD_IFNAME".into(), old_if),
        ]);
    }

    /// On the way out: unbound traffic goes back to the 91000 order, and
    /// the state file goes so that `mhr status` does not show old health.
    pub(super) async fn shutdown(&mut self, nl: &Netlink) {
        for (family, (table, _)) in std::mem::take(&mut self.unbound) {
            for r in self.unbound_rules(family, table) {
                let _ = nl.del_rule(&r).await;
            }
        }
        let _ = std::fs::remove_file(&self.cfg.state_file);
    }
}

/// Adds every rule; the first error, if any.
async fn add_all(nl: &Netlink, rules: &[RuleSpec]) -> Option<NetlinkError> {
    let mut first = None;
    for r in rules {
        if let Err(e) = nl.add_rule(r).await {
            first.get_or_insert(e);
        }
    }
    first
}
