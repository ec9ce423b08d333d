//! The model against the kernel: what to add, what to take away (only what
//! is ours: protocol 77, in tables the agent holds or held, or whose rules
//! name a managed interface), what an op's outcome tells, and when an
//! address counts as routed. Repairs of what others keep deleting are held
//! back, more and more, so a manager that fights costs little.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::desired::Desired;
use super::{AddrId, Model};
use crate::agent::plan::{Op, Outcome, Plan};
use crate::netlink::routes::{KernelRoute, RouteKey, RouteSpec, MAIN_TABLE};
use crate::netlink::rules::{
    address_rules, AddressSpec, RuleSpec, PRIO_BOUND_DEVICE, PRIO_FROM, PRIO_IIF_LO, PRIO_TO,
    RT_PROTO,
};
use crate::policy::config::{MAX_POLICIES, PRIO_LAST_RULE, PRIO_MARK};
use crate::ratelimit::{RateLimit, Verdict};

/// Repairs of one thing more often than this in `WINDOW` are held back.
const REPAIRS: usize = 5;
const WINDOW: Duration = Duration::from_secs(60);
const MAX_HOLD: Duration = Duration::from_secs(60);
/// An op failing this long (and still wanted) is worth a warning.
const FAILING: Duration = Duration::from_secs(2);

/// What others delete, how often, and what is held back until when.
pub struct DriftBook {
    repairs: HashMap<String, VecDeque<Instant>>,
    held: HashMap<String, Instant>,
    refusals: RateLimit,
    bounds: RateLimit,
    /// Ops that failed: since when, how often.
    failures: HashMap<String, (Instant, u32)>,
    /// A plan with failures is tried again then.
    retry: Option<Instant>,
}

impl Default for DriftBook {
    fn default() -> Self {
        DriftBook {
            repairs: HashMap::new(),
            held: HashMap::new(),
            refusals: RateLimit::new(5, Duration::from_secs(60)),
            bounds: RateLimit::new(5, Duration::from_secs(60)),
            failures: HashMap::new(),
            retry: None,
        }
    }
}

impl DriftBook {
    /// Someone deleted `what`; `Some(secs)`: it is held back that long.
    pub fn record(&mut self, what: &str, now: Instant) -> Option<u64> {
        let q = self.repairs.entry(what.to_owned()).or_default();
        q.push_back(now);
        while q.front().is_some_and(|t| now.duration_since(*t) > WINDOW) {
            q.pop_front();
        }
        if q.len() <= REPAIRS {
            return None;
        }
        let secs = 1u64 << (q.len() - REPAIRS).min(6);
        let hold = Duration::from_secs(secs).min(MAX_HOLD);
        self.held.insert(what.to_owned(), now + hold);
        Some(hold.as_secs())
    }

    fn holds(&self, what: impl FnOnce() -> String, now: Instant) -> bool {
        !self.held.is_empty() && self.held.get(&what()).is_some_and(|t| *t > now)
    }

    /// A held-back repair's end, or the retry of failed ops.
    pub fn next_release(&self) -> Option<Instant> {
        self.held
            .values()
            .min()
            .copied()
            .into_iter()
            .chain(self.retry)
            .min()
    }

    pub fn refusal_log(&mut self, now: Instant) -> bool {
        matches!(
            self.refusals.check(tokio::time::Instant::from_std(now)),
            Verdict::Log { .. }
        )
    }

    pub fn bound_log(&mut self, now: Instant) -> bool {
        matches!(
            self.bounds.check(tokio::time::Instant::from_std(now)),
            Verdict::Log { .. }
        )
    }
}

fn ours_at(priority: u32, unbound: u32) -> bool {
    matches!(
        priority,
        PRIO_BOUND_DEVICE | PRIO_FROM | PRIO_TO | PRIO_IIF_LO
    ) || priority == unbound
        || (PRIO_MARK..=PRIO_LAST_RULE).contains(&priority)
}

impl Model {
    /// The plan that makes the kernel what the model wants.
    pub fn reconcile(&mut self, now: Instant) -> Plan {
        if self.settled && self.pending.is_empty() {
            return Plan::new(Vec::new());
        }
        self.drift.held.retain(|_, t| *t > now);
        self.drift.retry = None;
        // A failure not retried for a while (no longer wanted) is forgotten.
        self.drift
            .failures
            .retain(|_, (since, _)| now.duration_since(*since) < Duration::from_secs(60));
        let d = self.desired(now);
        let mut ops = std::mem::take(&mut self.pending);
        for r in d.rules.iter().filter(|r| !self.kernel.rules.contains(r)) {
            if !self.drift.holds(|| r.to_string(), now) {
                ops.push(Op::AddRule(r.clone()));
            }
        }
        for (k, w) in &d.routes {
            let present = self
                .kernel
                .routes
                .get(k)
                .is_some_and(|r| r.matches(&w.spec));
            if !present
                && !self.drift.holds(
                    || super::observe::describe(&kernel_route(&w.spec, false)),
                    now,
                )
            {
                ops.push(Op::PutRoute(w.spec.clone(), w.expires));
            }
        }
        for r in &d.leave_main {
            ops.push(Op::DelMain(r.clone()));
        }
        let claims = self.claims();
        for r in self.kernel.rules.iter().filter(|r| !d.rules.contains(r)) {
            if ours_at(r.priority, self.unbound_priority)
                && (r.priority == self.unbound_priority || self.owned_table(r.table, &claims))
            {
                ops.push(Op::DelRule(r.clone()));
            }
        }
        for (k, r) in &self.kernel.routes {
            if d.routes.contains_key(k) {
                continue;
            }
            let owned = if k.table == MAIN_TABLE {
                self.links.get(&k.oif).is_some_and(|l| l.managed)
            } else {
                self.owned_table(k.table, &claims)
            };
            if owned {
                if let Some(spec) = r.copy_to(r.table) {
                    ops.push(Op::DelRoute(spec));
                }
            }
        }
        for index in self.solicitations() {
            ops.push(Op::Solicit(index));
        }
        ops.extend(self.endpoint_ops(now));
        self.settled = ops.is_empty();
        Plan::new(ops)
    }

    /// Per table, whether its `oif` rules name a managed interface and
    /// whether one names another.
    fn claims(&self) -> BTreeMap<u32, (bool, bool)> {
        let mut out: BTreeMap<u32, (bool, bool)> = BTreeMap::new();
        for r in &self.kernel.rules {
            if r.priority == PRIO_BOUND_DEVICE {
                if let Some(o) = &r.oif {
                    let e = out.entry(r.table).or_default();
                    if self.manages(o) {
                        e.0 = true;
                    } else {
                        e.1 = true;
                    }
                }
            }
        }
        out
    }

    /// A table whose leftovers are ours to remove: held now, held before
    /// (this run or the last), or named by rules for a managed interface;
    /// never one another interface's rules claim (a standalone client's).
    fn owned_table(&self, t: u32, claims: &BTreeMap<u32, (bool, bool)>) -> bool {
        let base = self.cfg.policies.base;
        if (base..base.saturating_add(MAX_POLICIES)).contains(&t) {
            return true;
        }
        let (managed, foreign) = claims.get(&t).copied().unwrap_or_default();
        if foreign {
            return false;
        }
        managed
            || self.formerly.contains(&t)
            || self.addrs.keys().any(|id| self.table_of(id) == Some(t))
    }

    /// What the applier did; the model believes it until events say more.
    pub fn applied(&mut self, op: &Op, outcome: &Outcome, now: Instant) {
        self.settled = false;
        let ok = matches!(outcome, Outcome::Done | Outcome::Already);
        if let Outcome::Failed(e) = outcome {
            let key = op.to_string();
            let (since, n) = self.drift.failures.entry(key).or_insert((now, 0));
            *n += 1;
            // An address that went a moment ago takes its routes' source
            // with it (EINVAL) before its event is read: the next plan no
            // longer wants them. Only what keeps failing for seconds is
            // worth a warning.
            self.drift.retry = Some(now + Duration::from_secs(1));
            if now.duration_since(*since) >= FAILING && (*n).is_power_of_two() {
                warn!(failures = *n, "{op}: {e} (still failing)");
            } else {
                debug!("{op}: {e}");
            }
            // Name servers, which the diff cannot make again, are kept to
            // be tried again with the rest (for half a minute).
            if matches!(op, Op::Dns { .. }) && *n <= 30 {
                self.pending.push(op.clone());
            }
            return;
        }
        if !self.drift.failures.is_empty() {
            self.drift.failures.remove(&op.to_string());
        }
        self.endpoint_applied(op, ok);
        match op {
            Op::AddRule(r) if ok => {
                self.kernel.rules.insert(r.clone());
            }
            Op::DelRule(r) if ok => {
                self.kernel.rules.remove(r);
            }
            Op::PutRoute(spec, exp) if *outcome == Outcome::Done => {
                let r = kernel_route(spec, exp.is_some());
                if r.protocol == RT_PROTO {
                    self.kernel.routes.insert(spec.key(), r);
                } else {
                    // Another's put back (clean-up): main's, not ours.
                    self.kernel.main.insert(spec.key(), r);
                }
            }
            Op::DelRoute(spec) if ok => {
                self.kernel.routes.remove(&spec.key());
            }
            Op::DelMain(r) if ok => {
                let key = r.key();
                self.kernel.main.remove(&key);
                if let Some(l) = r.oif.and_then(|i| self.links.get_mut(&i)) {
                    if l.moved.insert(key) && *outcome == Outcome::Done {
                        info!(ifname = %l.name, route = %super::observe::describe(r), "uplink route moved out of main");
                    }
                }
            }
            _ => {}
        }
    }

    /// The table an address is routed by, once its rules and its table's
    /// routes are in (0: none to be had, its routes in main or left alone);
    /// `None` while it is not yet.
    pub fn routed(&self, id: &AddrId, now: Instant) -> Option<u32> {
        let a = self.addrs.get(id)?;
        if a.left_alone.is_some() {
            return Some(0);
        }
        match self.table_of(id) {
            Some(t) => {
                let link = self.links.get(&id.index)?;
                let spec = AddressSpec {
                    ifname: link.name.clone(),
                    address: id.address,
                    prefix_len: a.prefix_len,
                };
                let rules = address_rules(&spec, t, &self.downstream);
                if !rules.iter().all(|r| self.kernel.rules.contains(r)) {
                    return None;
                }
                let mut d = Desired::default();
                self.table_routes(id, a.prefix_len, t, now, &mut d);
                d.routes
                    .keys()
                    .all(|k| self.kernel.routes.contains_key(k))
                    .then_some(t)
            }
            None if a.no_table => Some(0),
            None => None,
        }
    }

    /// Does the model want this rule (so its deletion is drift)?
    pub(super) fn wants_rule(&self, r: &RuleSpec) -> bool {
        self.addrs
            .keys()
            .any(|id| self.table_of(id) == Some(r.table))
            || (r.priority == self.unbound_priority
                && self.unbound.get(&r.family) == Some(&r.table))
    }

    /// Does the model want a route of ours with this key?
    pub(super) fn wants_route(&self, k: &RouteKey) -> bool {
        k.table != MAIN_TABLE
            && self
                .addrs
                .keys()
                .any(|id| self.table_of(id) == Some(k.table))
    }
}

/// The kernel's view of a route we put (believed until an event says).
pub(super) fn kernel_route(spec: &RouteSpec, expires: bool) -> KernelRoute {
    KernelRoute {
        table: spec.table,
        dest: spec.dest,
        prefix_len: spec.prefix_len,
        gateway: spec.gateway,
        oif: (spec.ifindex != 0).then_some(spec.ifindex),
        protocol: match spec.origin {
            crate::netlink::routes::Origin::Proto(p) => p,
            _ => RT_PROTO,
        },
        metric: spec.metric,
        src: spec.src,
        link_scope: spec.link_scope,
        onlink: spec.onlink,
        kind: spec.kind,
        hops: spec.hops.clone(),
        expires,
    }
}
