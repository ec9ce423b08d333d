//! Route plans: which routes go into an address's table (or into main, as
//! the fallback) and which routes the kernel or a tool put in main must go.
//! Pure; `netlink` applies them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::addr::Family;
use crate::addr::{family_of, network};

pub const MAIN_TABLE: u32 = 254;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    pub dest: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub ifindex: u32,
    pub src: Option<IpAddr>,
    pub table: u32,
    pub metric: Option<u32>,
    /// Scope link: a directly connected destination.
    pub link_scope: bool,
    /// The gateway is on the link even if no prefix covers it (/32 leases).
    pub onlink: bool,
    pub origin: Origin,
    /// A multipath route's next hops (then `gateway` is none and `ifindex`
    /// 0); empty for a single path.
    pub hops: Vec<Hop>,
    pub kind: RouteKind,
}

/// One next hop of a multipath route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hop {
    pub gateway: Option<IpAddr>,
    pub ifindex: u32,
    /// 1 to 256 (the kernel keeps weight - 1 in a byte).
    pub weight: u16,
    pub onlink: bool,
}

/// What a route does with a packet: forwards it, or refuses it (ENETUNREACH
/// for the sender), or drops it in silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum RouteKind {
    #[default]
    Unicast,
    Unreachable,
    Blackhole,
    /// Local, broadcast, multicast, prohibit...: not ours to make.
    Other,
}

/// Whose route it is, which is the protocol it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Ours: our protocol number.
    Ours,
    /// The kernel's connected route (proto kernel).
    Kernel,
    /// For deletion only: whoever added it (ifupdown's `proto boot`, an
    /// earlier fallback of ours).
    Any,
    /// Another's, put back as it was (a moved default, on clean-up).
    Proto(u8),
}

impl RouteSpec {
    pub fn family(&self) -> Family {
        family_of(&self.dest)
    }

    /// A route of ours to `dest/prefix_len` on `ifindex` in `table`;
    /// gateway and options are added to it.
    pub fn base(dest: IpAddr, prefix_len: u8, ifindex: u32, table: u32) -> RouteSpec {
        RouteSpec {
            dest,
            prefix_len,
            gateway: None,
            ifindex,
            src: None,
            table,
            metric: None,
            link_scope: false,
            onlink: false,
            origin: Origin::Ours,
            hops: Vec::new(),
            kind: RouteKind::Unicast,
        }
    }
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix_len == 0 {
            write!(f, "default")?;
        } else {
            write!(f, "{}/{}", self.dest, self.prefix_len)?;
        }
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        match self.kind {
            RouteKind::Unreachable => write!(f, " unreachable")?,
            RouteKind::Blackhole => write!(f, " blackhole")?,
            _ => {}
        }
        for h in &self.hops {
            write!(f, " nexthop")?;
            if let Some(g) = h.gateway {
                write!(f, " via {g}")?;
            }
            write!(f, " dev #{} weight {}", h.ifindex, h.weight)?;
        }
        if self.hops.is_empty() && self.kind == RouteKind::Unicast {
            write!(f, " dev #{}", self.ifindex)?;
        }
        if let Some(s) = self.src {
            write!(f, " src {s}")?;
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        write!(f, " table {}", self.table)
    }
}

/// A route as the kernel shows it, in the fields the planners read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KernelRoute {
    pub table: u32,
    pub dest: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// rtm_protocol: 2 kernel, 3 boot, 4 static, 9 ra, 16 dhcp, 77 ours.
    pub protocol: u8,
    pub metric: Option<u32>,
    /// The preferred source (RTA_PREFSRC).
    pub src: Option<IpAddr>,
    pub link_scope: bool,
    pub onlink: bool,
    /// Unicast, or what else (unreachable, blackhole, local...).
    pub kind: RouteKind,
    /// A multipath route's next hops.
    pub hops: Vec<Hop>,
    /// The kernel expires it (RA routes, IPv6 prefixes of SLAAC).
    pub expires: bool,
}

pub const PROTO_KERNEL: u8 = 2;
pub const PROTO_RA: u8 = 9;

/// What tells one route from another in a table, as far as we are
/// concerned: where to, through which device and gateway, and the metric
/// (the kernel's 0 for IPv4 and 1024 for IPv6 when none is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub table: u32,
    pub dest: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub metric: u32,
}

fn metric_or_default(metric: Option<u32>, dest: &IpAddr) -> u32 {
    metric.unwrap_or(if dest.is_ipv4() { 0 } else { 1024 })
}

impl RouteSpec {
    pub fn key(&self) -> RouteKey {
        RouteKey {
            table: self.table,
            dest: self.dest,
            prefix_len: self.prefix_len,
            gateway: self.gateway,
            oif: self.ifindex,
            metric: metric_or_default(self.metric, &self.dest),
        }
    }
}

impl KernelRoute {
    pub fn key(&self) -> RouteKey {
        RouteKey {
            table: self.table,
            dest: self.dest,
            prefix_len: self.prefix_len,
            gateway: self.gateway,
            oif: self.oif.unwrap_or(0),
            metric: metric_or_default(self.metric, &self.dest),
        }
    }

    /// Does the kernel's route say what `spec` says (the fields a replace
    /// would change)?
    pub fn matches(&self, spec: &RouteSpec) -> bool {
        // IPv6 routes have no scope: the kernel reports universe.
        self.key() == spec.key()
            && self.src == spec.src
            && (self.link_scope == spec.link_scope || self.dest.is_ipv6())
            && self.onlink == spec.onlink
            && self.kind == spec.kind
            && self.hops == spec.hops
    }

    /// The same route in another table, as ours.
    pub fn copy_to(&self, table: u32) -> Option<RouteSpec> {
        Some(RouteSpec {
            dest: self.dest,
            prefix_len: self.prefix_len,
            gateway: self.gateway,
            // A multipath or refusing route has no device of its own.
            ifindex: match self.oif {
                Some(i) => i,
                None if !self.hops.is_empty() || self.kind != RouteKind::Unicast => 0,
                None => return None,
            },
            src: None,
            table,
            metric: self.metric,
            link_scope: self.link_scope,
            onlink: self.onlink,
            origin: Origin::Ours,
            hops: self.hops.clone(),
            kind: self.kind,
        })
    }

    /// This route exactly, for deletion.
    pub fn spec(&self) -> Option<RouteSpec> {
        let mut r = self.copy_to(self.table)?;
        r.origin = Origin::Any;
        Some(r)
    }
}

/// Routes to remove, then routes to add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePlan {
    pub delete: Vec<RouteSpec>,
    pub add: Vec<RouteSpec>,
}

/// A classless static route (RFC 3442); gateway 0.0.0.0 means on-link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticRoute {
    pub dest: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// What an IPv4 uplink needs routed, whichever tool configured it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    pub ifindex: u32,
    pub address: IpAddr,
    pub prefix_len: u8,
    pub routers: Vec<IpAddr>,
    pub static_routes: Vec<StaticRoute>,
    /// Metric of the first default route (IF_METRIC); with several routers
    /// dhclient-script numbers them from 1.
    pub metric: Option<u32>,
}

/// How routes in main are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MainPolicy {
    /// Move the connected route out of main into the table (dhclient,
    /// ifupdown).
    Move,
    /// NetworkManager owns main and its metrics: leave main alone.
    Keep,
}

/// The plan for an uplink and its table; `table` 0 is the fallback: routes
/// stay in main with the interface index as metric.
pub fn uplink_routes(up: &Uplink, table: u32, main: MainPolicy) -> RoutePlan {
    let fallback = table == 0;
    let target = if fallback { MAIN_TABLE } else { table };
    let net = network(up.address, up.prefix_len);
    let mut plan = RoutePlan::default();
    let host_len = if up.address.is_ipv4() { 32 } else { 128 };
    let connected = up.prefix_len < host_len;
    if connected && (main == MainPolicy::Move || fallback) {
        // The kernel's connected route in main (metric 0).
        let mut kernel = RouteSpec::base(net, up.prefix_len, up.ifindex, MAIN_TABLE);
        kernel.link_scope = true;
        kernel.origin = Origin::Kernel;
        kernel.src = Some(up.address);
        plan.delete.push(kernel);
    }
    if connected {
        let mut subnet = RouteSpec::base(net, up.prefix_len, up.ifindex, target);
        subnet.link_scope = true;
        subnet.src = Some(up.address);
        if fallback {
            subnet.metric = Some(up.ifindex);
        }
        plan.add.push(subnet);
    }
    if !up.static_routes.is_empty() {
        // RFC 3442: with classless routes the router option is ignored.
        for r in &up.static_routes {
            let mut route = RouteSpec::base(IpAddr::V4(r.dest), r.prefix_len, up.ifindex, target);
            route.src = Some(up.address);
            if r.gateway.is_unspecified() {
                route.link_scope = true;
            } else {
                route.gateway = Some(IpAddr::V4(r.gateway));
                route.onlink = !connected;
            }
            if fallback {
                route.metric = Some(up.ifindex);
            }
            plan.add.push(route);
        }
        return plan;
    }
    let mut metric = up.metric;
    if up.routers.len() > 1 {
        metric = metric.or(Some(1));
    }
    let unspecified = if up.address.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    };
    for router in &up.routers {
        if main == MainPolicy::Move {
            // A default route via this router left in main (by ifupdown, or
            // by an earlier fallback) would beat the 91000 rules.
            let mut stale = RouteSpec::base(unspecified, 0, up.ifindex, MAIN_TABLE);
            stale.gateway = Some(*router);
            stale.origin = Origin::Any;
            plan.delete.push(stale);
        }
        if !connected {
            // Point-to-point (/32) lease: the router needs its own route.
            let mut host = RouteSpec::base(*router, host_len, up.ifindex, target);
            host.link_scope = true;
            host.src = Some(up.address);
            plan.add.push(host);
        }
        let mut default = RouteSpec::base(unspecified, 0, up.ifindex, target);
        default.gateway = Some(*router);
        default.src = Some(up.address);
        default.metric = if fallback {
            // Saturating: IF_METRIC near 2^32 must stay the least preferred,
            // not wrap round to the most preferred.
            Some(up.ifindex.saturating_add(metric.unwrap_or(0)))
        } else {
            metric
        };
        plan.add.push(default);
        metric = metric.map(|m| m.saturating_add(1));
    }
    plan
}

#[cfg(test)]
mod tests;
