//! Router advertisements, pure: the parser (RFC 4861 with RFC 4191 route
//! information and RFC 8106 RDNSS options) and what an RA means for an
//! uplink's tables: routes to install with their lifetimes, routes to drop,
//! name servers. The `mhr ra` agent (`slaac`) receives RAs and applies this.

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

pub fn plan(ra: &RouterAdvert, router: Ipv6Addr) -> RaPlan {
    let mut p = RaPlan::default();
    p.routes.push((
        RaRoute {
            dest: Ipv6Addr::UNSPECIFIED,
            len: 0,
            via: Some(router),
        },
        Duration::from_secs(ra.router_lifetime.into()),
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
            Duration::from_secs(pi.valid.into()),
        ));
    }
    for ri in &ra.routes {
        p.routes.push((
            RaRoute {
                dest: network(ri.prefix, ri.len),
                len: ri.len,
                via: Some(router),
            },
            Duration::from_secs(ri.lifetime.into()),
        ));
    }
    p.dns = ra
        .rdnss
        .iter()
        .map(|(a, l)| (*a, Duration::from_secs((*l).into())))
        .collect();
    p
}

fn network(a: Ipv6Addr, len: u8) -> Ipv6Addr {
    match crate::rules::network(IpAddr::V6(a), len) {
        IpAddr::V6(n) => n,
        IpAddr::V4(_) => unreachable!("an IPv6 network"),
    }
}

/// The `expires` of a route (RTA_EXPIRES, seconds) for a lifetime;
/// 0xffffffff seconds means forever: no expiry.
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
pub mod tests {
    use super::*;

    /// An RA as dnsmasq sends one: flags, lifetime, a prefix, MTU, RDNSS.
    pub fn sample(router_lifetime: u16, valid: u32) -> Vec<u8> {
        let mut m = vec![134, 0, 0, 0, 64, 0x40];
        m.extend(router_lifetime.to_be_bytes());
        m.extend([0u8; 8]);
        // Prefix 2001:db8:8::/64, on-link and autonomous.
        m.extend([3, 4, 64, 0xc0]);
        m.extend(valid.to_be_bytes());
        m.extend((valid / 2).to_be_bytes());
        m.extend([0u8; 4]);
        m.extend("2001:db8:8::".parse::<Ipv6Addr>().unwrap().octets());
        m.extend([5, 1, 0, 0]);
        m.extend(1400u32.to_be_bytes());
        m.extend([25, 3, 0, 0]);
        m.extend(1200u32.to_be_bytes());
        m.extend("fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        // Route information: 2001:db8:99::/48 (8 prefix bytes), 600 s.
        m.extend([24, 2, 48, 0]);
        m.extend(600u32.to_be_bytes());
        m.extend(&"2001:db8:99::".parse::<Ipv6Addr>().unwrap().octets()[..8]);
        m
    }

    #[test]
    fn parses_dnsmasq_style_advertisements() {
        let ra = parse(&sample(1800, 3600)).unwrap();
        assert_eq!(ra.router_lifetime, 1800);
        assert!(ra.other && !ra.managed);
        assert_eq!(ra.mtu, Some(1400));
        assert_eq!(ra.prefixes.len(), 1);
        let p = &ra.prefixes[0];
        assert!(p.on_link && p.autonomous);
        assert_eq!((p.len, p.valid, p.preferred), (64, 3600, 1800));
        assert_eq!(ra.rdnss, vec![("fe80::1".parse().unwrap(), 1200)]);
        assert_eq!(ra.routes[0].len, 48);
        assert_eq!(
            ra.routes[0].prefix,
            "2001:db8:99::".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn build_is_the_inverse_of_parse() {
        let ra = parse(&sample(1800, 3600)).unwrap();
        assert_eq!(parse(&build(&ra)).unwrap(), ra);
    }

    #[test]
    fn malformed_advertisements_are_errors() {
        let good = sample(1800, 3600);
        assert!(parse(&good[..10]).is_err());
        let mut bad = good.clone();
        bad[17] = 0;
        assert!(parse(&bad).is_err(), "zero-length option");
        let mut bad = good.clone();
        bad[17] = 40;
        assert!(parse(&bad).is_err(), "option past the end");
        let mut ns = good;
        ns[0] = 135;
        assert!(parse(&ns).is_err());
    }

    #[test]
    fn plan_routes_and_lifetimes() {
        let router: Ipv6Addr = "fe80::5".parse().unwrap();
        let p = plan(&parse(&sample(1800, 3600)).unwrap(), router);
        assert_eq!(p.routes.len(), 3);
        assert_eq!(p.routes[0].0.via, Some(router));
        assert_eq!(p.routes[0].1, Duration::from_secs(1800));
        assert_eq!(
            p.routes[1].0.dest,
            "2001:db8:8::".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(p.routes[1].0.via, None);
        assert_eq!(p.routes[2].0.len, 48);
        // Router lifetime 0 and a withdrawn prefix: remove both.
        let gone = plan(&parse(&sample(0, 0)).unwrap(), router);
        assert_eq!(gone.routes[0].1, Duration::ZERO);
        assert_eq!(gone.routes[1].1, Duration::ZERO);
        assert_eq!(expires_attr(Duration::from_secs(30)), Some(30));
        assert_eq!(expires_attr(Duration::from_millis(29_500)), Some(30));
        assert_eq!(expires_attr(Duration::from_secs(u64::from(u32::MAX))), None);
    }
}
