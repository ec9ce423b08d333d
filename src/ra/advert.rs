//! Router advertisements, pure: the parser (RFC 4861 with RFC 4191 route
//! information and RFC 8106 RDNSS options) and what an RA means for an
//! uplink's tables: routes to install with their lifetimes, routes to drop,
//! name servers. The agent (`agent::model::ra`) receives RAs and applies this.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix: Ipv6Addr,
    pub len: u8,
    pub on_link: bool,
    pub autonomous: bool,
    pub valid: u32,
    pub preferred: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub prefix: Ipv6Addr,
    pub len: u8,
    pub lifetime: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterAdvert {
    /// Seconds; 0: not a default router (any more).
    pub router_lifetime: u16,
    pub managed: bool,
    pub other: bool,
    pub prefixes: Vec<PrefixInfo>,
    pub routes: Vec<RouteInfo>,
    /// (server, lifetime in seconds).
    pub rdnss: Vec<(Ipv6Addr, u32)>,
    pub mtu: Option<u32>,
}

/// Parses an ICMPv6 router advertisement (as a raw ICMPv6 socket returns
/// it, from the ICMPv6 header on).
pub fn parse(msg: &[u8]) -> Result<RouterAdvert, String> {
    if msg.len() < 16 {
        return Err(format!(
            "{} bytes is too short for a router advertisement",
            msg.len()
        ));
    }
    if msg[0] != 134 || msg[1] != 0 {
        return Err(format!(
            "ICMPv6 type {} code {} is not a router advertisement",
            msg[0], msg[1]
        ));
    }
    let mut ra = RouterAdvert {
        router_lifetime: u16::from_be_bytes([msg[6], msg[7]]),
        managed: msg[5] & 0x80 != 0,
        other: msg[5] & 0x40 != 0,
        ..RouterAdvert::default()
    };
    let u32_at = |b: &[u8], i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut opts = &msg[16..];
    while !opts.is_empty() {
        if opts.len() < 2 {
            return Err("truncated option".into());
        }
        let (kind, len) = (opts[0], usize::from(opts[1]) * 8);
        if len == 0 || len > opts.len() {
            return Err(format!("option {kind} has a bad length"));
        }
        let o = &opts[..len];
        match kind {
            // Prefix information.
            3 if len == 32 => {
                let mut p = [0u8; 16];
                p.copy_from_slice(&o[16..32]);
                ra.prefixes.push(PrefixInfo {
                    prefix: Ipv6Addr::from(p),
                    len: o[2].min(128),
                    on_link: o[3] & 0x80 != 0,
                    autonomous: o[3] & 0x40 != 0,
                    valid: u32_at(o, 4),
                    preferred: u32_at(o, 8),
                });
            }
            5 if len == 8 => ra.mtu = Some(u32_at(o, 4)),
            // Route information: the prefix takes 0, 8 or 16 bytes.
            24 if len >= 8 => {
                let mut p = [0u8; 16];
                let n = (len - 8).min(16);
                p[..n].copy_from_slice(&o[8..8 + n]);
                ra.routes.push(RouteInfo {
                    prefix: Ipv6Addr::from(p),
                    len: o[2].min(128),
                    lifetime: u32_at(o, 4),
                });
            }
            // Recursive DNS servers.
            25 if len >= 24 => {
                let lifetime = u32_at(o, 4);
                for chunk in o[8..].chunks_exact(16) {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(chunk);
                    ra.rdnss.push((Ipv6Addr::from(a), lifetime));
                }
            }
            _ => {}
        }
        opts = &opts[len..];
    }
    Ok(ra)
}

/// A route an RA asks for on one interface; the agent installs it in every
/// table of that interface.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RaRoute {
    pub dest: Ipv6Addr,
    pub len: u8,
    /// `None`: on-link.
    pub via: Option<Ipv6Addr>,
}

/// What one RA from `router` changes: routes with their lifetimes (0 means
/// remove), name servers with theirs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RaPlan {
    pub routes: Vec<(RaRoute, Duration)>,
    pub dns: Vec<(Ipv6Addr, Duration)>,
}

/// What the agent takes from RAs at most. A router (or anyone on the link
/// who can send as one) must not be able to fill a table or the servers
/// file: the kernel bounds its own RA state the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// RFC 4191 routes accepted only with a prefix length in this range
    /// (the interface's `accept_ra_rt_info_min_plen`/`_max_plen`); `None`:
    /// route information is not accepted (`accept_ra_rtr_pref` off, or a
    /// kernel without route information support).
    pub rt_info_plen: Option<(u8, u8)>,
    /// Routes held per interface, all routers together.
    pub routes_per_interface: usize,
    /// Routes held per router.
    pub routes_per_router: usize,
    /// Name servers held per interface.
    pub dns_per_interface: usize,
    /// Longest lifetime given to a route or a name server: "infinite" RAs
    /// still expire unless a later RA refreshes them (routers advertise at
    /// least every 1800 s, RFC 4861).
    pub max_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            rt_info_plen: Some((0, 0)),
            routes_per_interface: 64,
            routes_per_router: 32,
            dns_per_interface: 8,
            max_lifetime: Duration::from_secs(7200),
        }
    }
}

pub fn plan(ra: &RouterAdvert, router: Ipv6Addr, limits: &Limits) -> RaPlan {
    let life = |secs: u32| Duration::from_secs(secs.into()).min(limits.max_lifetime);
    let mut p = RaPlan::default();
    p.routes.push((
        RaRoute {
            dest: Ipv6Addr::UNSPECIFIED,
            len: 0,
            via: Some(router),
        },
        life(ra.router_lifetime.into()),
    ));
    for pi in ra.prefixes.iter().filter(|pi| pi.on_link) {
        // Link-local is always on-link and the kernel's business.
        if pi.prefix.is_unicast_link_local() {
            continue;
        }
        p.routes.push((
            RaRoute {
                dest: network(pi.prefix, pi.len),
                len: pi.len,
                via: None,
            },
            life(pi.valid),
        ));
    }
    for ri in &ra.routes {
        let accepted =
            matches!(limits.rt_info_plen, Some((min, max)) if (min..=max).contains(&ri.len));
        if !accepted {
            continue;
        }
        p.routes.push((
            RaRoute {
                dest: network(ri.prefix, ri.len),
                len: ri.len,
                via: Some(router),
            },
            life(ri.lifetime),
        ));
    }
    p.dns = ra.rdnss.iter().map(|(a, l)| (*a, life(*l))).collect();
    p
}

/// Cuts a plan to what may still be held on the interface, given what is
/// held already: withdrawals and refreshes of held entries always pass; new
/// routes while the interface and the router are under their bounds, new
/// name servers while the interface is. Returns the plan and how many
/// entries were refused.
pub fn admit<T>(
    plan: RaPlan,
    router: Ipv6Addr,
    held_routes: &std::collections::BTreeMap<RaRoute, T>,
    held_dns: &std::collections::BTreeMap<Ipv6Addr, T>,
    limits: &Limits,
) -> (RaPlan, usize) {
    let mut out = RaPlan::default();
    let mut refused = 0;
    let mut on_if = held_routes.len();
    let mut of_router = held_routes.keys().filter(|r| r.via == Some(router)).count();
    for (r, life) in plan.routes {
        if life.is_zero() || held_routes.contains_key(&r) {
            out.routes.push((r, life));
        } else if on_if < limits.routes_per_interface
            && (r.via != Some(router) || of_router < limits.routes_per_router)
            && !out.routes.iter().any(|(o, _)| *o == r)
        {
            on_if += 1;
            of_router += usize::from(r.via == Some(router));
            out.routes.push((r, life));
        } else {
            refused += 1;
        }
    }
    let mut dns_n = held_dns.len();
    for (a, life) in plan.dns {
        if life.is_zero() || held_dns.contains_key(&a) {
            out.dns.push((a, life));
        } else if dns_n < limits.dns_per_interface && !out.dns.iter().any(|(o, _)| *o == a) {
            dns_n += 1;
            out.dns.push((a, life));
        } else {
            refused += 1;
        }
    }
    (out, refused)
}

fn network(a: Ipv6Addr, len: u8) -> Ipv6Addr {
    match crate::addr::network(IpAddr::V6(a), len) {
        IpAddr::V6(n) => n,
        IpAddr::V4(_) => unreachable!("an IPv6 network"),
    }
}

/// The `expires` of a route (RTA_EXPIRES, seconds) for a lifetime;
/// 0xffffffff seconds means forever: no expiry. (Plans cap lifetimes at
/// [`Limits::max_lifetime`], so RA routes always get one.)
pub fn expires_attr(lifetime: Duration) -> Option<u32> {
    if lifetime.as_secs() >= u64::from(u32::MAX) {
        return None;
    }
    // Round up: a route must not expire before the RA said.
    let secs = lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0);
    Some(secs as u32)
}

/// Encodes an RA (checksum left 0: a raw ICMPv6 socket fills it in).
/// Used to send withdrawals in tests, and the inverse of `parse`.
pub fn build(ra: &RouterAdvert) -> Vec<u8> {
    let mut m = vec![134, 0, 0, 0, 64];
    m.push(u8::from(ra.managed) << 7 | u8::from(ra.other) << 6);
    m.extend(ra.router_lifetime.to_be_bytes());
    m.extend([0u8; 8]);
    for p in &ra.prefixes {
        m.extend([
            3,
            4,
            p.len,
            u8::from(p.on_link) << 7 | u8::from(p.autonomous) << 6,
        ]);
        m.extend(p.valid.to_be_bytes());
        m.extend(p.preferred.to_be_bytes());
        m.extend([0u8; 4]);
        m.extend(p.prefix.octets());
    }
    if let Some(mtu) = ra.mtu {
        m.extend([5, 1, 0, 0]);
        m.extend(mtu.to_be_bytes());
    }
    for r in &ra.routes {
        m.extend([24, 3, r.len, 0]);
        m.extend(r.lifetime.to_be_bytes());
        m.extend(r.prefix.octets());
    }
    for (server, lifetime) in &ra.rdnss {
        m.extend([25, 3, 0, 0]);
        m.extend(lifetime.to_be_bytes());
        m.extend(server.octets());
    }
    m
}

/// A router solicitation (the kernel fills in the checksum).
pub fn solicitation() -> [u8; 8] {
    [133, 0, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
pub(crate) mod tests;
