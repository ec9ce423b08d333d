//! What the kernel should hold, from the model alone: every managed
//! address's rules and its table's routes (its prefix, the routes its
//! uplink's configurer gave, what hooks reported, RA routes), privacy
//! addresses' rules, the tracker's rule, routes of ours in main while an
//! address has no table, and the routes of others that leave main.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use super::{fam, AddrId, Model};
use crate::addr::family_of;
use crate::agent::config::MainMode;
use crate::agent::routes::{fits, onlink, ra_owned, uplink_route};
use crate::netlink::routes::{
    uplink_routes, Hop, KernelRoute, MainPolicy, RouteKey, RouteKind, RouteSpec, StaticRoute,
    Uplink,
};
use crate::netlink::rules::{address_rules, AddressSpec, RuleSpec, PRIO_FROM};
use crate::netlink::IFAPROT_KERNEL_RA;
use crate::policy::Candidate;

/// A route we want, and when it expires (RA routes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub spec: RouteSpec,
    pub expires: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Desired {
    pub rules: BTreeSet<RuleSpec>,
    pub routes: BTreeMap<RouteKey, Want>,
    /// Routes of others that leave main (moved: the tables have them).
    pub leave_main: Vec<KernelRoute>,
    /// IPv4 routes are one per (table, destination, metric) in the
    /// kernel: a second with another gateway would replace the first, and
    /// the two would take turns for ever.
    slots: BTreeSet<(u32, IpAddr, u8, u32)>,
}

impl Desired {
    fn route(&mut self, spec: RouteSpec, expires: Option<Instant>) {
        let k = spec.key();
        if k.dest.is_ipv4() && !self.slots.insert((k.table, k.dest, k.prefix_len, k.metric)) {
            return;
        }
        self.routes.entry(k).or_insert(Want { spec, expires });
    }
}

impl Model {
    /// The whole desired state at `now`.
    pub fn desired(&self, now: Instant) -> Desired {
        let mut d = Desired::default();
        for (id, a) in &self.addrs {
            let Some(link) = self.links.get(&id.index).filter(|l| l.managed) else {
                continue;
            };
            if a.temporary(&id.address) {
                if let Some(t) = self.privacy_table(id) {
                    let mut r = RuleSpec::new(family_of(&id.address), t);
                    r.priority = PRIO_FROM;
                    r.from = Some((id.address, 128));
                    d.rules.insert(r);
                }
                continue;
            }
            if let Some(t) = self.table_of(id) {
                let spec = AddressSpec {
                    ifname: link.name.clone(),
                    address: id.address,
                    prefix_len: a.prefix_len,
                };
                d.rules.extend(address_rules(&spec, t, &self.downstream));
                self.table_routes(id, a.prefix_len, t, now, &mut d);
            } else if a.no_table && a.left_alone.is_none() {
                // The seed's fallback for a hook's routes: main, with the
                // interface index as metric.
                if let Some(up) = self.reported_uplink(id, a.prefix_len) {
                    for r in uplink_routes(&up, 0, MainPolicy::Move).add {
                        d.route(r, None);
                    }
                }
            }
        }
        let held: BTreeSet<u32> = self
            .addrs
            .keys()
            .filter_map(|id| self.table_of(id))
            .collect();
        for (family, t) in &self.unbound {
            if held.contains(t) {
                let mut lo = RuleSpec::new(*family, *t);
                lo.priority = self.unbound_priority;
                lo.iif = Some("lo".into());
                d.rules.insert(lo);
                d.rules
                    .extend(self.downstream.rules(*family, *t, self.unbound_priority));
            }
        }
        if !self.stopping {
            let p = self.policy_plan(&d);
            d.rules.extend(p.rules);
            for r in p.routes {
                d.route(r, None);
            }
        }
        self.leaving_main(&mut d);
        d
    }

    /// The policies' tables and rules, from the uplinks, their health and
    /// the default route each uplink's table is to hold.
    pub fn policy_plan(&self, d: &Desired) -> crate::policy::PolicyPlan {
        let p = &self.cfg.policies;
        if p.list.is_empty() {
            return Default::default();
        }
        let cands: Vec<Candidate> = self
            .uplinks()
            .into_iter()
            .map(|u| {
                let default = d
                    .routes
                    .values()
                    .map(|w| &w.spec)
                    .filter(|s| s.table == u.table && s.prefix_len == 0 && s.hops.is_empty())
                    .filter(|s| s.kind == RouteKind::Unicast)
                    .min_by_key(|s| s.key().metric)
                    .map(|s| Hop {
                        gateway: s.gateway,
                        ifindex: s.ifindex,
                        weight: 1,
                        onlink: s.onlink,
                    });
                Candidate {
                    health: self.health_of(&u.ifname, &u.address),
                    ifname: u.ifname,
                    family: u.family,
                    address: u.address,
                    default,
                }
            })
            .collect();
        crate::policy::plan(p, &cands)
    }

    /// The table a privacy address's `from` rule points at: its stable
    /// address's of the same /64, else the link's first IPv6 table.
    pub fn privacy_table(&self, id: &AddrId) -> Option<u32> {
        let IpAddr::V6(a) = id.address else {
            return None;
        };
        let tables = self.tables_of_link(id.index, false);
        tables
            .iter()
            .find(|(other, _)| match other.address {
                IpAddr::V6(o) => o.segments()[..4] == a.segments()[..4],
                IpAddr::V4(_) => false,
            })
            .or(tables.first())
            .map(|(_, t)| *t)
    }

    /// A hook's report for the link, planned for address `id`: its own
    /// report first, else another address's of the family on the link.
    fn reported_uplink(&self, id: &AddrId, prefix_len: u8) -> Option<Uplink> {
        let link = self.links.get(&id.index)?;
        let v4 = id.address.is_ipv4();
        let r = link.reported.get(&id.address).or_else(|| {
            link.reported.values().find(|r| {
                r.address.is_ipv4() == v4 && (!r.routers.is_empty() || !r.static_routes.is_empty())
            })
        })?;
        Some(Uplink {
            ifindex: id.index,
            address: id.address,
            prefix_len,
            routers: r.routers.clone(),
            static_routes: r
                .static_routes
                .iter()
                .map(|s| StaticRoute {
                    dest: s.dest,
                    prefix_len: s.prefix_len,
                    gateway: s.gateway,
                })
                .collect(),
            metric: r.metric,
        })
    }

    /// What the table of `id` holds.
    pub(super) fn table_routes(
        &self,
        id: &AddrId,
        prefix_len: u8,
        t: u32,
        now: Instant,
        d: &mut Desired,
    ) {
        let link = &self.links[&id.index];
        // An address made from an RA says nothing of what is on-link
        // (RFC 5942): its routers' prefix information does, below.
        let from_ra = self.cfg.ra
            && self
                .addrs
                .get(id)
                .is_some_and(|a| a.proto == Some(IFAPROT_KERNEL_RA));
        if let Some(r) = onlink(id.address, prefix_len, id.index, t).filter(|_| !from_ra) {
            d.route(r, None);
        }
        if let Some(up) = self.reported_uplink(id, prefix_len) {
            let gw_ok = |r: &RouteSpec| match (r.gateway, id.address) {
                (Some(g @ IpAddr::V4(_)), IpAddr::V4(_)) => {
                    r.onlink
                        || prefix_len == 32
                        || crate::addr::network(g, prefix_len)
                            == crate::addr::network(id.address, prefix_len)
                }
                _ => true,
            };
            for r in uplink_routes(&up, t, MainPolicy::Keep).add {
                if gw_ok(&r) {
                    d.route(r, None);
                }
            }
        }
        for r in link.learned.values() {
            if fits(r, id.address, prefix_len) {
                if let Some(spec) = r.copy_to(t) {
                    d.route(spec, None);
                }
            }
        }
        if id.address.is_ipv6() && self.cfg.ra {
            for (r, deadline) in link.ra.routes_at(now) {
                let mut spec = RouteSpec::base(IpAddr::V6(r.dest), r.len, id.index, t);
                spec.gateway = r.via.map(IpAddr::V6);
                d.route(spec, Some(deadline));
            }
        }
    }

    /// Main's routes of others through managed links that leave it: an
    /// uplink's defaults once every address of the family there has its
    /// table (unless main is left to a manager), and RA routes once the
    /// link has an IPv6 table (they are in the tables).
    fn leaving_main(&self, d: &mut Desired) {
        if self.stopping {
            return;
        }
        for (index, link) in &self.links {
            if !link.managed {
                continue;
            }
            for v4 in [true, false] {
                let tables = self.tables_of_link(*index, v4);
                let addrs = self
                    .addrs_of(*index)
                    .filter(|(i, a)| i.address.is_ipv4() == v4 && !a.temporary(&i.address))
                    .count();
                let all = addrs > 0
                    && self
                        .addrs_of(*index)
                        .filter(|(i, a)| i.address.is_ipv4() == v4 && !a.temporary(&i.address))
                        .all(|(i, a)| self.table_of(i).is_some() || a.left_alone.is_some());
                let keep = self.cfg.main_mode(&link.name) == MainMode::Copy
                    || link.keep_main[fam(v4)]
                    || link.fights[fam(v4)].given_up;
                for r in link.learned.values() {
                    if r.dest.is_ipv4() != v4 || !self.kernel.main.contains_key(&r.key()) {
                        continue;
                    }
                    // Make before break: only once every table of the
                    // family holds its copy (one that cannot take it, a
                    // gateway off its prefix, keeps main's).
                    let copied = || {
                        self.addrs_of(*index)
                            .filter(|(i, a)| i.address.is_ipv4() == v4 && !a.temporary(&i.address))
                            .filter_map(|(i, _)| self.table_of(i))
                            .all(|t| {
                                r.copy_to(t)
                                    .is_some_and(|c| self.kernel.routes.contains_key(&c.key()))
                            })
                    };
                    if all && !keep && r.prefix_len == 0 && uplink_route(r, self.cfg.ra) && copied()
                    {
                        d.leave_main.push(r.clone());
                    }
                }
                if !v4 && self.cfg.ra && !tables.is_empty() {
                    for r in self.kernel.main.values() {
                        if r.oif == Some(*index) && ra_owned(r, true) {
                            d.leave_main.push(r.clone());
                        }
                    }
                }
            }
        }
    }
}
