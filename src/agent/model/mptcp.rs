//! Multipath TCP endpoints, decided from the model: one `subflow` endpoint
//! (bound to its device) per routed uplink address, the best 8 by health,
//! the tracker's preference order, then age; degraded uplinks' endpoints `backup`, down ones' removed (their
//! subflows close, data moves at once), back when the uplink is. Ids from
//! `FIRST_ID` up are ours; endpoints with lower ids are someone else's and
//! left alone (they count against the kernel's 8).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use tracing::{info, warn};

use super::{AddrId, Model};
use crate::addr::{family_of, Family};
use crate::agent::plan::Op;
use crate::netlink::mptcp::message::{BACKUP, MAX_ENDPOINTS, SIGNAL, SUBFLOW};
use crate::netlink::mptcp::{Endpoint, Limits};
use crate::track::health::LinkState;

/// The first endpoint id the agent hands out (`ip mptcp endpoint add`
/// numbers from 1).
pub const FIRST_ID: u8 = 100;

/// What the model knows of the path manager.
#[derive(Debug, Default)]
pub struct Mptcp {
    /// The kernel has MPTCP and `net.mptcp.enabled` is 1 (as the last
    /// whole read found).
    pub usable: Option<bool>,
    /// Every endpoint, ours and others', by id.
    pub endpoints: BTreeMap<u8, Endpoint>,
    pub limits: Option<Limits>,
    /// The tracker's verdict per link and family.
    pub health: BTreeMap<(String, Family), LinkState>,
}

impl Mptcp {
    /// A whole read: `None` when MPTCP is off or missing here.
    pub fn resync(&mut self, read: Option<(Vec<Endpoint>, Limits)>) {
        let usable = read.is_some();
        if self.usable != Some(usable) && !usable {
            warn!("MPTCP is off or missing in this network namespace (net.mptcp.enabled): no endpoints managed");
        }
        self.usable = Some(usable);
        if let Some((endpoints, limits)) = read {
            self.endpoints = endpoints.into_iter().map(|e| (e.id, e)).collect();
            self.limits = Some(limits);
        }
    }
}

impl Model {
    /// The tracker's verdict on a link (its probed address speaks for it).
    pub fn set_health(&mut self, ifname: &str, family: Family, state: LinkState) {
        self.mptcp.health.insert((ifname.to_owned(), family), state);
        self.settled = false;
    }

    pub(super) fn health_of(&self, ifname: &str, address: &IpAddr) -> LinkState {
        let key = (ifname.to_owned(), family_of(address));
        self.mptcp
            .health
            .get(&key)
            .copied()
            .unwrap_or(LinkState::Unknown)
    }

    /// Routed by its table, and the table has a default route.
    fn carries(&self, id: &AddrId, now: Instant) -> Option<u32> {
        let t = self.routed(id, now).filter(|t| *t != 0)?;
        self.kernel
            .routes
            .values()
            .any(|r| r.table == t && r.prefix_len == 0)
            .then_some(t)
    }

    /// The endpoints the model wants, with their ids.
    pub fn endpoints_desired(&self, now: Instant) -> Vec<Endpoint> {
        let cfg = &self.cfg.mptcp;
        let ours = |e: &Endpoint| e.id >= FIRST_ID;
        let others: Vec<&Endpoint> = self.mptcp.endpoints.values().filter(|e| !ours(e)).collect();
        let mut candidates = Vec::new();
        for (id, a) in &self.addrs {
            let Some(link) = self.links.get(&id.index).filter(|l| l.managed) else {
                continue;
            };
            if a.temporary(&id.address) || cfg.is(&cfg.never, &link.name) {
                continue;
            }
            if others.iter().any(|e| e.address == id.address) {
                continue;
            }
            let Some(table) = self.carries(id, now) else {
                continue;
            };
            let health = self.health_of(&link.name, &id.address);
            let rank = match health {
                LinkState::Up => 0,
                LinkState::Unknown => 1,
                LinkState::Degraded => 2,
                LinkState::Down => continue,
            };
            let mut flags = SUBFLOW;
            if cfg.is(&cfg.signal, &link.name) {
                flags |= SIGNAL;
            }
            if health == LinkState::Degraded || cfg.is(&cfg.backup, &link.name) {
                flags |= BACKUP;
            }
            // Then the tracker's preference order, then age.
            let preference = self
                .cfg
                .track
                .as_ref()
                .map_or(&[][..], |t| &t.preference[..]);
            let pref = preference
                .iter()
                .position(|p| crate::patterns::glob_match(p, &link.name))
                .unwrap_or(preference.len());
            candidates.push((rank, pref, table, id.index, id.address, flags));
        }
        candidates.sort();
        let mut taken: Vec<u8> = self.mptcp.endpoints.keys().copied().collect();
        let mut out: Vec<Endpoint> = Vec::new();
        for (_, _, _, index, address, flags) in candidates {
            // One endpoint per address (two modems handing out the same
            // one): the better uplink's.
            if out.iter().any(|e| e.address == address) {
                continue;
            }
            let id = match self
                .mptcp
                .endpoints
                .values()
                .find(|e| ours(e) && e.address == address)
            {
                Some(e) => e.id,
                None => match (FIRST_ID..=u8::MAX).find(|i| !taken.contains(i)) {
                    Some(i) => i,
                    None => continue,
                },
            };
            if out.len() >= MAX_ENDPOINTS.saturating_sub(others.len()) {
                break;
            }
            taken.push(id);
            out.push(Endpoint {
                id,
                address,
                port: None,
                ifindex: Some(index),
                flags,
            });
        }
        out
    }

    /// The path manager's part of a plan.
    pub(super) fn endpoint_ops(&self, now: Instant) -> Vec<Op> {
        if self.mptcp.usable != Some(true) {
            return Vec::new();
        }
        // Stopping with --cleanup, or switched off: ours go.
        let off = self.stopping || !self.cfg.mptcp.enabled;
        let want = if off {
            Vec::new()
        } else {
            self.endpoints_desired(now)
        };
        let mut ops = Vec::new();
        for e in self.mptcp.endpoints.values().filter(|e| e.id >= FIRST_ID) {
            match want.iter().find(|w| w.id == e.id) {
                Some(w) if w.address == e.address && w.ifindex == e.ifindex => {
                    if w.flags != e.flags {
                        ops.push(Op::EndpointFlags(w.clone()));
                    }
                }
                _ => ops.push(Op::DelEndpoint(e.clone())),
            }
        }
        for w in &want {
            let present = self.mptcp.endpoints.get(&w.id);
            if present.is_none_or(|e| e.address != w.address || e.ifindex != w.ifindex) {
                ops.push(Op::AddEndpoint(w.clone()));
            }
        }
        // Raised to fit, never lowered below what an operator set.
        if let Some(cur) = self.mptcp.limits.filter(|_| !off) {
            let n = (want.len() as u32).min(MAX_ENDPOINTS as u32);
            let fit = Limits {
                subflows: cur.subflows.max(n),
                add_addr_accepted: cur.add_addr_accepted.max(n),
            };
            if fit != cur {
                ops.push(Op::Limits(fit));
            }
        }
        ops
    }

    /// What the applier did to the path manager.
    pub(super) fn endpoint_applied(&mut self, op: &Op, ok: bool) {
        if !ok {
            return;
        }
        match op {
            Op::AddEndpoint(e) | Op::EndpointFlags(e) => {
                info!(address = %e.address, id = e.id, flags = e.flags, "MPTCP endpoint in place");
                self.mptcp.endpoints.insert(e.id, e.clone());
            }
            Op::DelEndpoint(e) => {
                info!(address = %e.address, id = e.id, "MPTCP endpoint removed");
                self.mptcp.endpoints.remove(&e.id);
            }
            Op::Limits(l) => self.mptcp.limits = Some(*l),
            _ => {}
        }
    }
}
