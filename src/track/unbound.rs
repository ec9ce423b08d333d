//! The unbound-traffic choice: which uplink each family's `iif lo` rule
//! points at. `unbound_plan` decides from the uplinks' health alone (pure,
//! tested without root); `reconcile` hands the moves to the agent's model,
//! whose applier moves the rule make before break.

use tokio::time::Instant;
use tracing::info;

use super::Tracker;
use crate::addr::Family;
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

    /// Hands the plan to the model.
    pub(super) fn reconcile(&mut self) {
        for mv in self.unbound_plan(Instant::now()) {
            self.apply(mv);
        }
    }

    fn apply(&mut self, mv: UnboundMove) {
        let UnboundMove { family, from, to } = mv;
        let _ = self
            .out
            .send(super::TrackOut::Unbound { family, table: to });
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

    /// On the way out the state file goes, so that `mhr status` does not
    /// show old health. The rule stays, as every rule of the agent's does
    /// when it stops (the next start adopts it).
    pub(super) fn shutdown(&mut self) {
        let _ = std::fs::remove_file(&self.cfg.state_file);
    }
}
