//! Addresses and their leases: an address comes (a lease keeper starts),
//! goes (its lease is given back, after a moment's lingering), gets or
//! changes its table.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{fam, Addr, AddrId, LeaseSlot, Model};
use crate::addr::family_of;
use crate::agent::plan::Op;
use crate::agent::routes::wants_table;
use crate::dns::Scope;
use crate::lease::{Lease, LeaseConfig, LeaseEvent};
use crate::netlink::HostAddr;
use crate::protocol::{LeaseKey, Reply as WireReply};

/// How long a gone address's lease is kept for it, in case it comes back.
pub const LINGER: Duration = Duration::from_secs(5);

impl Model {
    fn lease_config(&self) -> LeaseConfig {
        LeaseConfig {
            retry: self.cfg.retry,
            attempts: self.cfg.attempts,
            persistent: true,
            tables: self.cfg.tables,
            max_backoff: Duration::from_secs(60),
        }
    }

    pub(super) fn new_lease(
        &mut self,
        id: AddrId,
        ifname: &str,
        now: Instant,
    ) -> Option<LeaseSlot> {
        let key = LeaseKey::new(family_of(&id.address), ifname, &id.address.to_string()).ok()?;
        let n = self.next_lease;
        self.next_lease += 1;
        self.lease_of.insert(n, id);
        Some(LeaseSlot {
            id: n,
            lease: Lease::new(key, None, self.lease_config(), now),
        })
    }

    /// An address appeared (or changed: flags, prefix).
    pub fn address_added(&mut self, a: &HostAddr, now: Instant) {
        let Some(link) = self.links.get(&a.index) else {
            return;
        };
        if !link.managed || !a.global() {
            return;
        }
        let name = link.name.clone();
        let id = AddrId {
            index: a.index,
            address: a.address,
        };
        if let Some(e) = self.addrs.get_mut(&id) {
            e.flags = a.flags;
            e.proto = a.proto;
            e.prefix_len = a.prefix_len;
            return;
        }
        // Back while its old lease lingers: the same keeper, the same
        // table at once. Back while it is being given back: the same keeper
        // asks again, on the same socket, after its release.
        let back = self
            .releasing
            .iter()
            .find(|(n, l)| l.key().address == a.address && self.lease_of.get(n) == Some(&id))
            .map(|(n, _)| *n);
        let lease = match back {
            Some(n) if wants_table(a) => {
                let mut l = self.releasing.remove(&n).expect("found");
                if self.lingering.remove(&n).is_none() {
                    l.ask_again(now);
                }
                Some(LeaseSlot { id: n, lease: l })
            }
            _ => wants_table(a)
                .then(|| self.new_lease(id, &name, now))
                .flatten(),
        };
        self.addrs.insert(
            id,
            Addr {
                prefix_len: a.prefix_len,
                flags: a.flags,
                proto: a.proto,
                lease,
                adopted: None,
                left_alone: None,
                no_table: false,
                since: now,
            },
        );
        self.dirty = true;
        self.uplinks_changed = true;
        if a.address.is_ipv6() {
            // A new RA address may be where the RDNSS servers are reached
            // from now.
            self.ra_dns(a.index);
        }
    }

    /// An address went: its lease goes back, its DNS lines go; its rules
    /// and routes stop being wanted (the reconcile removes them).
    pub fn address_removed(&mut self, id: AddrId, now: Instant) {
        let Some(a) = self.addrs.remove(&id) else {
            return;
        };
        self.dirty = true;
        self.uplinks_changed = true;
        if let Some(t) = a.lease.as_ref().and_then(|s| s.lease.table()).or(a.adopted) {
            if a.left_alone.is_none() {
                info!(address = %id.address, table = t, "address gone: its rules and routes go; its lease is released unless it comes back within {} s", LINGER.as_secs());
            }
        }
        if let Some(mut s) = a.lease {
            // A manager that drops and re-adds its addresses (networkd on a
            // restart, a DHCP client's rebind) gets the same tables back.
            if s.lease.table().is_some() {
                self.lingering.insert(s.id, now + LINGER);
            } else {
                s.lease.release(now);
            }
            self.releasing.insert(s.id, s.lease);
        }
        if let Some(link) = self.links.get_mut(&id.index) {
            link.reported.remove(&id.address);
            let name = link.name.clone();
            let v4 = id.address.is_ipv4();
            // Without an address of the family, the configurer's routes
            // through the link are gone with it (the kernel drops them).
            if !self
                .addrs_of(id.index)
                .any(|(i, _)| i.address.is_ipv4() == v4)
            {
                let link = self.links.get_mut(&id.index).expect("present");
                link.learned.retain(|k, _| k.dest.is_ipv4() != v4);
                link.moved.retain(|k| k.dest.is_ipv4() != v4);
                link.keep_main[fam(v4)] = false;
            }
            self.pending.push(Op::Dns {
                ifname: name,
                scope: Scope::Source(id.address),
                source: id.address,
                servers: Vec::new(),
            });
        }
        self.forget_routes_of_address(id);
        if id.address.is_ipv6() {
            self.ra_dns(id.index);
        }
    }

    /// A datagram from the server for lease `n`.
    pub fn lease_reply(&mut self, n: u64, reply: &WireReply, now: Instant, wire_now: u64) {
        if let Some(l) = self.releasing.get_mut(&n) {
            l.handle_reply(reply, now, wire_now);
        } else if let Some(id) = self.lease_of.get(&n) {
            if let Some(s) = self.addrs.get_mut(id).and_then(|a| a.lease.as_mut()) {
                if s.id == n {
                    s.lease.handle_reply(reply, now, wire_now);
                }
            }
        }
        self.lease_events(now);
    }

    /// Datagrams the lease keepers want sent: (lease id, request).
    pub fn poll_transmits(&mut self) -> Vec<(u64, crate::protocol::Request)> {
        let mut out = Vec::new();
        for a in self.addrs.values_mut() {
            if let Some(s) = a.lease.as_mut() {
                while let Some(act) = s.lease.poll_transmit() {
                    out.push((s.id, s.lease.request(act)));
                }
            }
        }
        for (n, l) in self.releasing.iter_mut() {
            while let Some(act) = l.poll_transmit() {
                out.push((*n, l.request(act)));
            }
        }
        out
    }

    /// Acts on what the lease keepers report.
    pub(super) fn lease_events(&mut self, now: Instant) {
        let ids: Vec<AddrId> = self.addrs.keys().copied().collect();
        for id in ids {
            while let Some(ev) = self
                .addrs
                .get_mut(&id)
                .and_then(|a| a.lease.as_mut())
                .and_then(|s| s.lease.poll_event())
            {
                self.lease_event(id, ev, now);
            }
        }
        let done: Vec<u64> = self
            .releasing
            .iter_mut()
            .filter_map(|(n, l)| {
                while l.poll_event().is_some() {}
                l.is_done().then_some(*n)
            })
            .collect();
        for n in done {
            self.releasing.remove(&n);
            self.lease_of.remove(&n);
            self.closed.push(n);
        }
    }

    fn lease_event(&mut self, id: AddrId, ev: LeaseEvent, now: Instant) {
        let name = self
            .links
            .get(&id.index)
            .map(|l| l.name.clone())
            .unwrap_or_default();
        let a = self.addrs.get_mut(&id).expect("caller checked");
        self.dirty = true;
        self.settled = false;
        match ev {
            LeaseEvent::Granted { table } | LeaseEvent::TableChanged { new: table, .. } => {
                if let LeaseEvent::TableChanged { old, new } = ev {
                    warn!(ifname = %name, address = %id.address, old, new, "the server changed the address's table: its rules and routes move");
                }
                let adopted = a.adopted.take();
                a.no_table = false;
                let ms = now.duration_since(a.since).as_secs_f64() * 1000.0;
                self.formerly.insert(table);
                if adopted != Some(table) {
                    info!(ifname = %name, address = %id.address, table, ms, "address routed by its own table");
                }
                if let Some(old) = adopted.filter(|t| *t != table) {
                    info!(ifname = %name, address = %id.address, old, table, "the lease came back with another table than the kernel's rules had: rules and routes move");
                }
                // Another address adopted at start with this table loses
                // it: the server's word is the last.
                for (other, b) in self.addrs.iter_mut() {
                    if *other != id && b.adopted == Some(table) {
                        b.adopted = None;
                    }
                }
                self.uplinks_changed = true;
            }
            LeaseEvent::NoAnswer { attempts } => {
                a.no_table = a.lease.as_ref().is_some_and(|s| s.lease.table().is_none())
                    && a.adopted.is_none();
                info!(ifname = %name, address = %id.address, attempts, "no answer from the table allocator server yet; still asking");
            }
            LeaseEvent::Refused(e) => {
                a.no_table = a.adopted.is_none();
                if self.drift.refusal_log(now) {
                    warn!(ifname = %name, address = %id.address, "no table: {e}; its routes stay in main (asked again, less and less often)");
                }
            }
            LeaseEvent::RenewalRefused(e) => {
                warn!(ifname = %name, address = %id.address, "renewal refused: {e}; the table is kept and asked for again, less and less often")
            }
            LeaseEvent::Expired { table } => {
                warn!(ifname = %name, address = %id.address, table, "the lease ran out without an answer from the server; the table is kept while asking")
            }
            LeaseEvent::Released { .. } | LeaseEvent::GaveUp => {}
        }
    }

    /// `table_allocator_client -r`: the lease goes back, the address is
    /// left alone (until a hook reports it again).
    pub fn release(&mut self, id: AddrId, now: Instant) {
        let Some(a) = self.addrs.get_mut(&id) else {
            return;
        };
        self.settled = false;
        a.left_alone = Some("released on request".into());
        a.adopted = None;
        if let Some(mut s) = a.lease.take() {
            s.lease.release(now);
            self.releasing.insert(s.id, s.lease);
        }
        self.dirty = true;
        self.uplinks_changed = true;
    }

    /// Orphans of a run before: leases of addresses that are gone, given
    /// back now (the key as the previous run or the kernel's rules had it).
    pub fn release_orphan(&mut self, key: LeaseKey, now: Instant) {
        let n = self.next_lease;
        self.next_lease += 1;
        let mut l = Lease::new(key, None, self.lease_config(), now);
        l.release(now);
        self.releasing.insert(n, l);
    }

    /// Stopping with --cleanup: the uplink defaults moved out of main go
    /// back as their configurers made them (protocol included), in the
    /// same plan that removes the tables' routes, before them. RA routes
    /// are left to the next RA (the kernel gives them their lifetime).
    pub fn restore_main(&mut self) {
        self.settled = false;
        self.stopping = true;
        for link in self.links.values().filter(|l| l.managed) {
            for r in link.learned.values() {
                let key = r.key();
                if r.prefix_len != 0
                    || r.expires
                    || r.protocol == crate::netlink::routes::PROTO_RA
                    || !link.moved.contains(&key)
                    || self.kernel.main.contains_key(&key)
                {
                    continue;
                }
                if let Some(mut spec) = r.copy_to(crate::netlink::routes::MAIN_TABLE) {
                    spec.origin = crate::netlink::routes::Origin::Proto(r.protocol);
                    self.pending.push(Op::PutRoute(spec, None));
                }
            }
        }
    }

    /// Leases of gone addresses whose time has come go back to the server;
    /// with `all`, every lingering one (stopping with --cleanup).
    pub fn end_lingering(&mut self, now: Instant, all: bool) {
        let due: Vec<u64> = self
            .lingering
            .iter()
            .filter(|(_, t)| all || **t <= now)
            .map(|(n, _)| *n)
            .collect();
        for n in due {
            self.settled = false;
            self.lingering.remove(&n);
            if let Some(l) = self.releasing.get_mut(&n) {
                l.release(now);
            }
        }
    }

    /// The leases of a link that went go back at once: its addresses will
    /// not come back on it (a modem plugged in again is another link).
    pub(super) fn end_lingering_of(&mut self, index: u32, now: Instant) {
        let of: Vec<u64> = self
            .lingering
            .keys()
            .filter(|n| self.lease_of.get(n).is_some_and(|id| id.index == index))
            .copied()
            .collect();
        for n in of {
            self.lingering.remove(&n);
            if let Some(l) = self.releasing.get_mut(&n) {
                l.release(now);
            }
        }
    }

    /// Leases still being given back.
    pub fn releases_pending(&self) -> usize {
        self.releasing.len()
    }

    /// (interface, address) of our `from` rules whose address the host no
    /// longer has: leases the last run may have left.
    pub fn stale_addresses(&self) -> Vec<(String, IpAddr)> {
        use crate::netlink::rules::{PRIO_BOUND_DEVICE, PRIO_FROM};
        let present: std::collections::BTreeSet<IpAddr> =
            self.addrs.keys().map(|id| id.address).collect();
        self.kernel
            .rules
            .iter()
            .filter(|r| r.priority == PRIO_FROM)
            .filter_map(|r| {
                let (a, _) = r.from?;
                if present.contains(&a) {
                    return None;
                }
                let oif = self.kernel.rules.iter().find_map(|o| {
                    (o.priority == PRIO_BOUND_DEVICE && o.table == r.table)
                        .then(|| o.oif.clone())
                        .flatten()
                })?;
                Some((oif, a))
            })
            .collect()
    }

    /// Leases for addresses that are gone, from what the last run had
    /// (`known`: its state file, the server's database) and from our stale
    /// `from` rules: keys on managed interfaces, to release at start.
    pub fn orphans(&self, known: &[(String, IpAddr)]) -> Vec<LeaseKey> {
        let present = |ifname: &str, a: IpAddr| {
            self.link_by_name(ifname).is_some_and(|i| {
                self.addrs.contains_key(&AddrId {
                    index: i,
                    address: a,
                })
            })
        };
        let mut keys: std::collections::BTreeSet<LeaseKey> = std::collections::BTreeSet::new();
        for (i, a) in known.iter().cloned().chain(self.stale_addresses()) {
            if self.manages(&i) && !present(&i, a) {
                if let Ok(k) = LeaseKey::new(family_of(&a), &i, &a.to_string()) {
                    keys.insert(k);
                }
            }
        }
        keys.into_iter().collect()
    }
}
