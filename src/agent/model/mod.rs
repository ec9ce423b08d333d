//! The agent's model: the one place that knows the host's uplinks. Links,
//! addresses and their leases, what the kernel holds of ours (rules,
//! routes) and of main, the routes each uplink's configurer gave, RA state,
//! the tracker's choice and verdicts, MPTCP endpoints. It is fed by the
//! agent's one netlink subscription (`observe`), the lease keepers
//! (`addrs`), the hooks' reports and other control requests (`asks`), the
//! RA socket (`ra`) and the tracker (`mptcp` for its verdicts); every change is
//! a pure transition, and `reconcile` turns the model into the plan that
//! makes the kernel match it (`desired`). Nothing here does I/O or reads a
//! clock: the runtime (`run`) passes the time in and carries plans out.

pub(crate) mod addrs;
mod asks;
mod desired;
pub mod mptcp;
mod observe;
mod ra;
mod reconcile;

pub use asks::{Answer, Waiter};
pub use observe::{Notice, Snapshot};
pub use ra::RaLink;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use crate::addr::Family;
use crate::agent::config::AgentConfig;
use crate::agent::routes::FightBook;
use crate::control::UplinkReport;
use crate::lease::Lease;
use crate::netlink::routes::{KernelRoute, RouteKey};
use crate::netlink::rules::{Downstream, RuleSpec};
use crate::track::UplinkId;

use super::plan::Op;

/// An address on a link, as the kernel names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrId {
    pub index: u32,
    pub address: IpAddr,
}

/// A link the agent follows.
#[derive(Debug, Default)]
pub struct Link {
    pub name: String,
    pub up: bool,
    /// Matches `interfaces` and not `exclude` (never loopback).
    pub managed: bool,
    /// Routes the configurer put into main through this link (not ours,
    /// not the kernel's): every address of the family on the link gets
    /// them in its table, also after they have left main.
    pub learned: BTreeMap<RouteKey, KernelRoute>,
    /// Main's routes we moved out, to tell a manager's re-add.
    pub moved: BTreeSet<RouteKey>,
    /// What hooks reported, per address.
    pub reported: BTreeMap<IpAddr, UplinkReport>,
    /// A configurer owns main for the family (NetworkManager's hook said
    /// so): copied, not moved. [IPv4, IPv6].
    pub keep_main: [bool; 2],
    pub fights: [FightBook; 2],
    pub ra: RaLink,
}

/// A lease keeper and the id its socket goes by.
#[derive(Debug)]
pub struct LeaseSlot {
    pub id: u64,
    pub lease: Lease,
}

/// An address on a managed link.
#[derive(Debug)]
pub struct Addr {
    pub prefix_len: u8,
    pub flags: u32,
    /// IFA_PROTO (2: made from an RA).
    pub proto: Option<u8>,
    /// The keeper of its table's lease; none for a privacy address (it
    /// follows its interface's table) and for one left alone.
    pub lease: Option<LeaseSlot>,
    /// The table the kernel's rules gave it when the agent started: in
    /// effect until the lease says otherwise.
    pub adopted: Option<u32>,
    /// Why the agent leaves it alone, if it does.
    pub left_alone: Option<String>,
    /// No table to be had so far (a round unanswered, a refusal): a hook's
    /// routes go into main meanwhile.
    pub no_table: bool,
    pub since: Instant,
}

impl Addr {
    pub fn temporary(&self, address: &IpAddr) -> bool {
        address.is_ipv6() && self.flags & crate::netlink::IFA_F_TEMPORARY != 0
    }
}

/// What the kernel holds, as far as the agent cares.
#[derive(Debug, Default)]
pub struct Kernel {
    /// Rules of ours (protocol 77).
    pub rules: BTreeSet<RuleSpec>,
    /// Routes of ours (protocol 77), in any table, main included.
    pub routes: BTreeMap<RouteKey, KernelRoute>,
    /// Main's other routes through managed links.
    pub main: BTreeMap<RouteKey, KernelRoute>,
}

pub struct Model {
    pub cfg: AgentConfig,
    pub downstream: Downstream,
    /// The tracker's rule priority (50000 unless configured).
    pub unbound_priority: u32,
    /// The netlink port the applier's requests come from.
    pub our_port: u32,
    pub links: BTreeMap<u32, Link>,
    pub addrs: BTreeMap<AddrId, Addr>,
    pub kernel: Kernel,
    /// The tracker's choice per family.
    pub unbound: BTreeMap<Family, u32>,
    /// Tables this agent held (this run, or the run before: its state
    /// file): their leftovers are ours to remove.
    pub formerly: BTreeSet<u32>,
    next_lease: u64,
    /// Which address each lease id keeps.
    lease_of: HashMap<u64, AddrId>,
    /// Leases being given back (their addresses went).
    releasing: BTreeMap<u64, Lease>,
    /// Of those, the ones still held for their address, until when.
    lingering: BTreeMap<u64, Instant>,
    /// Lease ids whose sockets can go.
    closed: Vec<u64>,
    /// Ops to carry out besides the reconcile's (RA refreshes, DNS).
    pending: Vec<Op>,
    waiters: Vec<Waiter>,
    answers: Vec<(u64, crate::control::Reply)>,
    notices: Vec<Notice>,
    drift: reconcile::DriftBook,
    /// The state file is out of date.
    pub dirty: bool,
    /// The uplink set changed since it was last published.
    pub uplinks_changed: bool,
    /// The last reconcile found nothing to do and nothing has changed
    /// since: the next one can skip its diff (a lease renewed or the
    /// state file written change nothing the kernel holds).
    settled: bool,
    /// Stopping with --cleanup: main's uplink defaults are put back, not
    /// moved out.
    stopping: bool,
    pub mptcp: mptcp::Mptcp,
}

impl Model {
    pub fn new(
        cfg: AgentConfig,
        downstream: Downstream,
        unbound_priority: u32,
        our_port: u32,
    ) -> Model {
        Model {
            cfg,
            downstream,
            unbound_priority,
            our_port,
            links: BTreeMap::new(),
            addrs: BTreeMap::new(),
            kernel: Kernel::default(),
            unbound: BTreeMap::new(),
            formerly: BTreeSet::new(),
            next_lease: 1,
            lease_of: HashMap::new(),
            releasing: BTreeMap::new(),
            lingering: BTreeMap::new(),
            closed: Vec::new(),
            pending: Vec::new(),
            waiters: Vec::new(),
            answers: Vec::new(),
            notices: Vec::new(),
            drift: reconcile::DriftBook::default(),
            dirty: true,
            uplinks_changed: true,
            settled: false,
            stopping: false,
            mptcp: mptcp::Mptcp::default(),
        }
    }

    /// The table in effect for an address: its lease's, else the one it
    /// was adopted with; none while left alone.
    pub fn table_of(&self, id: &AddrId) -> Option<u32> {
        let a = self.addrs.get(id)?;
        if a.left_alone.is_some() {
            return None;
        }
        a.lease.as_ref().and_then(|s| s.lease.table()).or(a.adopted)
    }

    /// The tables of a link's addresses of one family, in order.
    pub fn tables_of_link(&self, index: u32, v4: bool) -> Vec<(AddrId, u32)> {
        self.addrs
            .range(first(index)..first(index + 1))
            .filter(|(id, _)| id.address.is_ipv4() == v4)
            .filter_map(|(id, _)| Some((*id, self.table_of(id)?)))
            .collect()
    }

    /// The addresses of a link.
    pub fn addrs_of(&self, index: u32) -> impl Iterator<Item = (&AddrId, &Addr)> {
        self.addrs.range(first(index)..first(index + 1))
    }

    pub fn link_by_name(&self, name: &str) -> Option<u32> {
        self.links
            .iter()
            .find(|(_, l)| l.name == name)
            .map(|(i, _)| *i)
    }

    /// What the tracker probes: per link and family, the address with the
    /// oldest table (the lowest number, stable while it stays). Every
    /// address of a link has the link's routes, so one probe tells for
    /// all of them: 125 addresses on one modem cost one probe, not 125.
    pub fn uplinks(&self) -> Vec<UplinkId> {
        let mut best: BTreeMap<(u32, Family), UplinkId> = BTreeMap::new();
        for (id, a) in &self.addrs {
            let (Some(link), Some(table)) = (self.links.get(&id.index), self.table_of(id)) else {
                continue;
            };
            if a.temporary(&id.address) {
                continue;
            }
            let family = crate::addr::family_of(&id.address);
            let b = best.entry((id.index, family)).or_insert_with(|| UplinkId {
                family,
                table,
                ifname: link.name.clone(),
                address: id.address,
                also: Vec::new(),
            });
            if table < b.table {
                (b.table, b.address) = (table, id.address);
            }
        }
        // The others (privacy addresses too) share the verdict.
        for id in self.addrs.keys() {
            let family = crate::addr::family_of(&id.address);
            if let Some(b) = best.get_mut(&(id.index, family)) {
                if b.address != id.address {
                    b.also.push(id.address);
                }
            }
        }
        best.into_values().collect()
    }

    /// The tracker chose `table` for unbound traffic of `family` (none:
    /// the 91000 rules decide).
    pub fn set_unbound(&mut self, family: Family, table: Option<u32>) {
        self.settled = false;
        match table {
            Some(t) => self.unbound.insert(family, t),
            None => self.unbound.remove(&family),
        };
        self.dirty = true;
    }

    /// The managed status of a link name.
    pub fn manages(&self, name: &str) -> bool {
        self.cfg.manages(name)
    }

    /// Lease ids whose sockets can be closed.
    pub fn poll_closed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.closed)
    }

    /// Answers for control requests that were waiting.
    pub fn poll_answers(&mut self) -> Vec<(u64, crate::control::Reply)> {
        std::mem::take(&mut self.answers)
    }

    /// Drift and fights to log (with who did it, which the runtime finds).
    pub fn poll_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// When the model next needs the time: a lease, an RA expiry, a
    /// waiter's deadline, a held-back repair.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let leases = self
            .addrs
            .values()
            .filter_map(|a| a.lease.as_ref()?.lease.poll_timeout())
            .chain(self.releasing.values().filter_map(Lease::poll_timeout));
        let ra = self.links.values().filter_map(|l| l.ra.next_expiry());
        let waiters = self.waiters.iter().map(|w| w.deadline);
        leases
            .chain(ra)
            .chain(waiters)
            .chain(self.drift.next_release())
            .chain(self.lingering.values().copied())
            .min()
    }

    /// The time has come for something `poll_timeout` said.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Lease timers alone change nothing the kernel holds (their events
        // do); RA lifetimes, held-back repairs and lingering leases may.
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.links.values().filter_map(|l| l.ra.next_expiry()).min())
            || due(self.drift.next_release())
            || due(self.lingering.values().min().copied())
        {
            self.settled = false;
        }
        for a in self.addrs.values_mut() {
            if let Some(s) = a.lease.as_mut() {
                if s.lease.poll_timeout().is_some_and(|t| t <= now) {
                    s.lease.handle_timeout(now);
                }
            }
        }
        for l in self.releasing.values_mut() {
            if l.poll_timeout().is_some_and(|t| t <= now) {
                l.handle_timeout(now);
            }
        }
        self.end_lingering(now, false);
        self.lease_events(now);
        self.expire_ra(now);
        self.expire_waiters(now);
    }
}

/// The first address id of link `index`, for range queries.
fn first(index: u32) -> AddrId {
    AddrId {
        index,
        address: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    }
}

/// Family index for per-family arrays.
pub fn fam(v4: bool) -> usize {
    usize::from(!v4)
}

#[cfg(test)]
mod asks_tests;
#[cfg(test)]
mod mptcp_tests;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
