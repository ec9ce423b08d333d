//! Router advertisements on the model: what each link's routers asked for
//! (routes and name servers, each with its deadline, within the limits
//! that keep a hostile router bounded), refreshed into every IPv6 table of
//! the link; the RDNSS servers as the link's DNS lines.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::Model;
use crate::agent::plan::Op;
use crate::dns::Scope;
use crate::netlink::routes::RouteSpec;
use crate::netlink::IFAPROT_KERNEL_RA;
use crate::ra::{self, RaRoute};

/// A link's RA state.
#[derive(Debug, Default)]
pub struct RaLink {
    pub routes: BTreeMap<RaRoute, Instant>,
    pub dns: BTreeMap<Ipv6Addr, Instant>,
    /// An RA has come since the agent started (else: solicit one when the
    /// link gets a table).
    pub seen: bool,
    pub solicited: bool,
    /// The DNS lines as last written: (source, servers).
    pub dns_written: Option<(Ipv6Addr, Vec<Ipv6Addr>)>,
}

/// Routes and servers expire a little early in the model (the kernel has
/// them rounded up): never re-added in their last second.
const GRACE: Duration = Duration::from_secs(1);

impl RaLink {
    /// The routes still valid at `now`, with their deadlines.
    pub fn routes_at(&self, now: Instant) -> impl Iterator<Item = (&RaRoute, Instant)> {
        self.routes
            .iter()
            .filter(move |(_, d)| **d > now + GRACE)
            .map(|(r, d)| (r, *d))
    }

    pub fn next_expiry(&self) -> Option<Instant> {
        self.routes.values().chain(self.dns.values()).min().copied()
    }
}

impl Model {
    /// An RA from `router` arrived on `index`; `limits` are the link's.
    pub fn ra_advert(
        &mut self,
        index: u32,
        router: Ipv6Addr,
        msg: &[u8],
        limits: &ra::Limits,
        now: Instant,
    ) {
        self.settled = false;
        let Some(link) = self.links.get_mut(&index).filter(|l| l.managed) else {
            return;
        };
        if !router.is_unicast_link_local() {
            debug!(ifname = %link.name, %router, "RA from a non-link-local source ignored");
            return;
        }
        let advert = match ra::parse(msg) {
            Ok(a) => a,
            Err(e) => return warn!(ifname = %link.name, %router, "bad router advertisement: {e}"),
        };
        let plan = ra::plan(&advert, router, limits);
        let (plan, refused) = ra::admit(plan, router, &link.ra.routes, &link.ra.dns, limits);
        let name = link.name.clone();
        link.ra.seen = true;
        for (r, life) in &plan.routes {
            if life.is_zero() {
                link.ra.routes.remove(r);
            } else {
                link.ra.routes.insert(r.clone(), now + *life);
            }
        }
        for (s, life) in &plan.dns {
            if life.is_zero() {
                link.ra.dns.remove(s);
            } else {
                link.ra.dns.insert(*s, now + *life);
            }
        }
        if refused > 0 && self.drift.bound_log(now) {
            warn!(ifname = %name, %router, refused, "router advertisement over the bounds (routes per interface {}, per router {}, name servers {}): the rest ignored", limits.routes_per_interface, limits.routes_per_router, limits.dns_per_interface);
        }
        // Refreshed lifetimes go into every IPv6 table of the link now
        // (the reconcile only adds what is missing).
        for (_, t) in self.tables_of_link(index, false) {
            for (r, life) in &plan.routes {
                let mut spec = RouteSpec::base(IpAddr::V6(r.dest), r.len, index, t);
                spec.gateway = r.via.map(IpAddr::V6);
                if life.is_zero() {
                    self.pending.push(Op::DelRoute(spec));
                } else {
                    self.pending.push(Op::PutRoute(spec, Some(now + *life)));
                }
            }
        }
        self.ra_dns(index);
    }

    /// Routes and servers past their deadlines leave the model (the kernel
    /// expires its copies itself).
    pub(super) fn expire_ra(&mut self, now: Instant) {
        let indexes: Vec<u32> = self
            .links
            .iter()
            .filter(|(_, l)| l.ra.next_expiry().is_some_and(|t| t <= now))
            .map(|(i, _)| *i)
            .collect();
        for index in indexes {
            let l = self.links.get_mut(&index).expect("listed");
            l.ra.routes.retain(|_, d| *d > now);
            l.ra.dns.retain(|_, d| *d > now);
            self.ra_dns(index);
        }
    }

    /// The address a link's RDNSS servers are reached from: its first
    /// stable address made from an RA.
    fn ra_source(&self, index: u32) -> Option<Ipv6Addr> {
        self.addrs_of(index).find_map(|(id, a)| match id.address {
            IpAddr::V6(v6) if a.proto == Some(IFAPROT_KERNEL_RA) && !a.temporary(&id.address) => {
                Some(v6)
            }
            _ => None,
        })
    }

    /// Writes the link's RDNSS lines when they changed.
    pub(super) fn ra_dns(&mut self, index: u32) {
        let source = self.ra_source(index);
        let Some(link) = self.links.get_mut(&index) else {
            return;
        };
        let servers: Vec<Ipv6Addr> = link.ra.dns.keys().copied().collect();
        let want = source.map(|s| (s, servers));
        if want == link.ra.dns_written {
            return;
        }
        let old = std::mem::replace(&mut link.ra.dns_written, want.clone());
        let ifname = link.name.clone();
        if let Some((old_src, _)) = old.filter(|(s, _)| Some(*s) != source) {
            self.pending.push(Op::Dns {
                ifname: ifname.clone(),
                scope: Scope::Source(IpAddr::V6(old_src)),
                source: IpAddr::V6(old_src),
                servers: Vec::new(),
            });
        }
        if let Some((src, servers)) = want {
            self.pending.push(Op::Dns {
                ifname,
                scope: Scope::Source(IpAddr::V6(src)),
                source: IpAddr::V6(src),
                servers: servers.into_iter().map(IpAddr::V6).collect(),
            });
        }
    }

    /// Links that got their first IPv6 table and have not been heard
    /// from: ask their routers now rather than at their next interval.
    pub(super) fn solicitations(&mut self) -> Vec<u32> {
        let mut out = Vec::new();
        let candidates: Vec<u32> = self
            .links
            .iter()
            .filter(|(_, l)| l.managed && self.cfg.ra && !l.ra.seen && !l.ra.solicited)
            .map(|(i, _)| *i)
            .collect();
        for index in candidates {
            if !self.tables_of_link(index, false).is_empty() {
                self.links.get_mut(&index).expect("listed").ra.solicited = true;
                out.push(index);
            }
        }
        out
    }
}
