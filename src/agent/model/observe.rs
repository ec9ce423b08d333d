//! What the kernel says, into the model: links, addresses, rules and routes
//! from the one subscription, and the whole state from a dump (at start,
//! after an overrun, in the audit). A rule or route of ours that someone
//! else deletes becomes a notice (who, what) and, through the reconcile, a
//! repair; a manager that puts a moved default back into main is counted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use tracing::{info, warn};

use super::{fam, AddrId, Kernel, Model};
use crate::agent::routes::{fight_advice, uplink_route};
use crate::netlink::routes::{KernelRoute, RouteKey, MAIN_TABLE};
use crate::netlink::rules::{RuleSpec, PRIO_FROM, RT_PROTO};

/// What a route learnt back from a table says it came as (`proto boot`:
/// an uplink route, not ours, not the kernel's).
const PROTO_BOOT: u8 = 3;
use crate::netlink::{Event, HostAddr, LinkInfo};

/// Something to log with the name of who did it (the runtime finds the
/// process behind a netlink port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A rule or route of ours was deleted by another process: restored.
    Deleted { what: String, port: u32 },
    /// It keeps being deleted: restored less often from now on.
    HeldBack { what: String, port: u32, secs: u64 },
}

/// The whole kernel state, as a dump gives it.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub links: Vec<LinkInfo>,
    pub addrs: Vec<HostAddr>,
    pub rules: Vec<RuleSpec>,
    pub routes: Vec<KernelRoute>,
    /// The path manager's endpoints and limits; none where MPTCP is off.
    pub mptcp: Option<(
        Vec<crate::netlink::mptcp::Endpoint>,
        crate::netlink::mptcp::Limits,
    )>,
}

impl Model {
    /// One event of the subscription.
    pub fn observe(&mut self, ev: Event, now: Instant) {
        self.settled = false;
        match ev {
            Event::LinkChanged(l) => self.link_changed(l, now),
            Event::LinkRemoved { index } => self.link_removed(index, now),
            Event::AddressAdded(a) => self.address_added(&a, now),
            Event::AddressRemoved { index, address } => {
                self.address_removed(AddrId { index, address }, now)
            }
            Event::RuleAdded { rule, .. } => {
                self.kernel.rules.insert(rule);
            }
            Event::RuleRemoved { rule, port } => {
                let was = self.kernel.rules.remove(&rule);
                if was && self.foreign(port) && self.wants_rule(&rule) {
                    self.deleted(rule.to_string(), port, now);
                }
            }
            Event::RouteAdded { route, port } => self.route_added(route, port, now),
            Event::RouteRemoved { route, port } => self.route_removed(route, port, now),
            // The runtime re-reads the kernel.
            Event::Overrun => {}
        }
    }

    /// A port that is neither ours nor the kernel's own.
    fn foreign(&self, port: u32) -> bool {
        port != 0 && port != self.our_port
    }

    fn deleted(&mut self, what: String, port: u32, now: Instant) {
        match self.drift.record(&what, now) {
            None => self.notices.push(Notice::Deleted { what, port }),
            Some(secs) => self.notices.push(Notice::HeldBack { what, port, secs }),
        }
    }

    fn link_changed(&mut self, l: LinkInfo, now: Instant) {
        let managed = self.manages(&l.name);
        let link = self.links.entry(l.index).or_default();
        if link.up && !l.up {
            // The kernel drops the link's IPv4 routes from every table,
            // and says nothing.
            let index = l.index;
            self.kernel
                .routes
                .retain(|k, _| !(k.oif == index && k.dest.is_ipv4()));
            self.kernel
                .main
                .retain(|k, _| !(k.oif == index && k.dest.is_ipv4()));
        }
        let link = self.links.get_mut(&l.index).expect("inserted");
        if link.name != l.name && !link.name.is_empty() {
            info!(old = %link.name, new = %l.name, "interface renamed");
        }
        let was_managed = link.managed;
        link.name = l.name;
        link.up = l.up;
        link.managed = managed;
        if was_managed && !managed {
            // Renamed out of our patterns: its addresses go as if removed.
            let index = l.index;
            let ids: Vec<AddrId> = self.addrs_of(index).map(|(i, _)| *i).collect();
            for id in ids {
                self.address_removed(id, now);
            }
        }
        self.dirty = true;
    }

    fn link_removed(&mut self, index: u32, now: Instant) {
        let ids: Vec<AddrId> = self.addrs_of(index).map(|(i, _)| *i).collect();
        for id in ids {
            self.address_removed(id, now);
        }
        self.end_lingering_of(index, now);
        if let Some(l) = self.links.remove(&index) {
            self.pending.push(crate::agent::plan::Op::Dns {
                ifname: l.name,
                scope: crate::dns::Scope::Interface,
                source: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                servers: Vec::new(),
            });
        }
        self.kernel.routes.retain(|k, _| k.oif != index);
        self.kernel.main.retain(|k, _| k.oif != index);
        self.dirty = true;
    }

    fn route_added(&mut self, r: KernelRoute, port: u32, now: Instant) {
        let key = r.key();
        if r.protocol == RT_PROTO {
            self.kernel.routes.insert(key, r);
            return;
        }
        // Another's route in the place of ours (`ip route replace`: no
        // delete event): ours is gone, and put back like a deleted one.
        if self.kernel.routes.remove(&key).is_some() && self.foreign(port) && self.wants_route(&key)
        {
            self.deleted(format!("{} (replaced)", describe(&r)), port, now);
        }
        if r.table != MAIN_TABLE {
            return;
        }
        let Some(index) = r.oif else { return };
        let ra = self.cfg.ra;
        if !self.links.get(&index).is_some_and(|l| l.managed) {
            return;
        }
        self.kernel.main.insert(key, r.clone());
        if !uplink_route(&r, ra) {
            return;
        }
        let v4 = r.dest.is_ipv4();
        let foreign = port != 0 && port != self.our_port;
        let Some(link) = self.links.get_mut(&index) else {
            return;
        };
        if link.moved.contains(&key) && r.prefix_len == 0 && foreign {
            let given_up =
                link.fights[fam(v4)].record(now, self.cfg.fight_limit, self.cfg.fight_window);
            if given_up {
                warn!(ifname = %link.name, "{}", fight_advice(&link.name, v4));
                self.dirty = true;
            }
        }
        link.learned.insert(key, r);
    }

    fn route_removed(&mut self, r: KernelRoute, port: u32, now: Instant) {
        let key = r.key();
        if r.protocol == RT_PROTO {
            let was = self.kernel.routes.remove(&key).is_some();
            if was && self.foreign(port) && self.wants_route(&key) {
                self.deleted(describe(&r), port, now);
            }
            return;
        }
        if r.table != MAIN_TABLE {
            return;
        }
        self.kernel.main.remove(&key);
        let Some(link) = r.oif.and_then(|i| self.links.get_mut(&i)) else {
            return;
        };
        // Our own move out of main keeps what the tables learnt; anyone
        // else's removal (the configurer's, an admin's) takes it away.
        if port != self.our_port {
            link.learned.remove(&key);
            link.moved.remove(&key);
        }
    }

    /// IPv4 routes the kernel drops without a word when an address goes:
    /// every one through the link once it has no IPv4 address left. (A
    /// secondary address's own routes stay; the reconcile deletes them, and
    /// a route already gone is only an ESRCH.)
    pub(super) fn forget_routes_of_address(&mut self, id: AddrId) {
        let IpAddr::V4(_) = id.address else { return };
        if self.addrs_of(id.index).any(|(i, _)| i.address.is_ipv4()) {
            return;
        }
        let keep = |k: &RouteKey| k.oif != id.index || !k.dest.is_ipv4();
        self.kernel.routes.retain(|k, _| keep(k));
        self.kernel.main.retain(|k, _| keep(k));
    }

    /// Replaces what the model believes of the kernel with a dump; with
    /// `adopt` (the first, at start) addresses take the tables their rules
    /// name. Returns how many rules and routes of ours differed.
    pub fn resync(&mut self, snap: Snapshot, adopt: bool, now: Instant) -> usize {
        self.settled = false;
        self.mptcp.resync(snap.mptcp.clone());
        for l in &snap.links {
            self.link_changed(l.clone(), now);
        }
        let present: BTreeSet<u32> = snap.links.iter().map(|l| l.index).collect();
        let gone: Vec<u32> = self
            .links
            .keys()
            .filter(|i| !present.contains(i))
            .copied()
            .collect();
        for index in gone {
            self.link_removed(index, now);
        }
        let here: BTreeSet<AddrId> = snap
            .addrs
            .iter()
            .map(|a| AddrId {
                index: a.index,
                address: a.address,
            })
            .collect();
        let went: Vec<AddrId> = self
            .addrs
            .keys()
            .filter(|i| !here.contains(i))
            .copied()
            .collect();
        for id in went {
            self.address_removed(id, now);
        }
        for a in &snap.addrs {
            self.address_added(a, now);
        }
        let rules: BTreeSet<RuleSpec> = snap.rules.into_iter().collect();
        let mut routes = BTreeMap::new();
        let mut main = BTreeMap::new();
        for r in snap.routes {
            if r.protocol == RT_PROTO {
                routes.insert(r.key(), r);
            } else if r.table == MAIN_TABLE
                && r.oif
                    .is_some_and(|i| self.links.get(&i).is_some_and(|l| l.managed))
            {
                main.insert(r.key(), r);
            }
        }
        let differ = self.kernel.rules.symmetric_difference(&rules).count()
            + keys_differ(&self.kernel.routes, &routes);
        // Learnt routes: what main has now, and what we moved out of it.
        let ra = self.cfg.ra;
        for (index, link) in self.links.iter_mut() {
            let moved = &link.moved;
            link.learned.retain(|k, _| moved.contains(k));
            for (k, r) in main.iter().filter(|(k, _)| k.oif == *index) {
                if uplink_route(r, ra) {
                    link.learned.insert(*k, r.clone());
                }
            }
        }
        if adopt {
            self.adopt(&rules, &routes);
        }
        self.kernel = Kernel {
            rules,
            routes,
            main,
        };
        differ
    }

    /// At start: each address takes the table of its `from` rule; the
    /// tracker's rule is its choice so far.
    fn adopt(&mut self, rules: &BTreeSet<RuleSpec>, routes: &BTreeMap<RouteKey, KernelRoute>) {
        for r in rules {
            if r.priority == PRIO_FROM {
                let Some((a, _)) = r.from else { continue };
                for (id, e) in self.addrs.iter_mut() {
                    if id.address == a && e.lease.is_some() && e.adopted.is_none() {
                        e.adopted = Some(r.table);
                        self.formerly.insert(r.table);
                    }
                }
            }
            // Without a tracker there is no choice to keep: the rule goes.
            if r.priority == self.unbound_priority
                && r.iif.as_deref() == Some("lo")
                && self.cfg.track.is_some()
            {
                self.unbound.entry(r.family).or_insert(r.table);
            }
        }
        // The uplinks' routes that had left main live on in the adopted
        // tables (every table of a link gets them all again: a restart in
        // the middle of a burst may have left some without).
        let adopted: Vec<(u32, u32, IpAddr, u8)> = self
            .addrs
            .iter()
            .filter_map(|(id, a)| Some((id.index, a.adopted?, id.address, a.prefix_len)))
            .collect();
        for (index, t, address, plen) in adopted {
            let own = crate::agent::routes::onlink(address, plen, index, t).map(|o| o.key());
            let Some(link) = self.links.get_mut(&index) else {
                continue;
            };
            for (k, r) in routes
                .iter()
                .filter(|(k, r)| k.table == t && k.oif == index && !r.expires)
            {
                if Some(*k) == own {
                    continue;
                }
                let mut learnt = r.clone();
                learnt.table = MAIN_TABLE;
                learnt.protocol = PROTO_BOOT;
                link.moved.insert(learnt.key());
                link.learned.insert(learnt.key(), learnt);
            }
        }
        self.uplinks_changed = true;
    }
}

fn keys_differ(a: &BTreeMap<RouteKey, KernelRoute>, b: &BTreeMap<RouteKey, KernelRoute>) -> usize {
    a.keys().filter(|k| !b.contains_key(k)).count()
        + b.keys().filter(|k| !a.contains_key(k)).count()
}

pub(super) fn describe(r: &KernelRoute) -> String {
    let dest = if r.prefix_len == 0 {
        "default".to_owned()
    } else {
        format!("{}/{}", r.dest, r.prefix_len)
    };
    let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
    format!(
        "route {dest}{via} dev #{} table {}",
        r.oif.unwrap_or(0),
        r.table
    )
}
