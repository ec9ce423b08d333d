//! Routes: dumps, add/replace/delete, moving a table's routes, applying
//! a plan, `route get`, and reading a route message's table and gateway.

use std::net::IpAddr;

use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop,
    RouteNextHopFlags, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::RouteNetlinkMessage;

use crate::addr::Family;
use crate::netlink::routes::{Hop, KernelRoute, Origin, RouteKind, RoutePlan, RouteSpec};
use crate::netlink::rules::RT_PROTO;

use super::{netlink_family, Netlink, NetlinkError, EEXIST, ENOENT, ESRCH};

impl Netlink {
    /// Every route of `family`, in every table.
    pub async fn routes(&self, family: Family) -> Result<Vec<RouteMessage>, NetlinkError> {
        let _turn = self.dump_turn().await;
        let mut query = RouteMessage::default();
        query.header.address_family = netlink_family(family);
        query.header.table = RouteHeader::RT_TABLE_UNSPEC;
        self.handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetlinkError::from_rt(format!("list {family} routes"), e))
    }

    /// The routes of `family` in routing table `table`.
    pub async fn routes_in(
        &self,
        family: Family,
        table: u32,
    ) -> Result<Vec<RouteMessage>, NetlinkError> {
        let mut routes = self.routes(family).await?;
        routes.retain(|m| route_table(m) == table);
        Ok(routes)
    }

    pub async fn add_route(&self, route: RouteMessage) -> Result<(), NetlinkError> {
        let what = format!("add route {}", describe_route(&route));
        match self
            .request(
                &what,
                RouteNetlinkMessage::NewRoute(route),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            )
            .await
        {
            Err(e) if e.errno() == Some(EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Deletes a route; false when it was not there.
    pub async fn del_route(&self, route: RouteMessage) -> Result<bool, NetlinkError> {
        let what = format!("delete route {}", describe_route(&route));
        match self
            .request(
                &what,
                RouteNetlinkMessage::DelRoute(route),
                NLM_F_REQUEST | NLM_F_ACK,
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(ESRCH) || e.errno() == Some(ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Moves every route of `family` from table `from` to table `to`.
    pub async fn move_routes(
        &self,
        family: Family,
        from: u32,
        to: u32,
    ) -> Result<usize, NetlinkError> {
        let routes = self.routes_in(family, from).await?;
        let n = routes.len();
        for route in routes {
            let mut moved = route.clone();
            set_route_table(&mut moved, to);
            self.add_route(moved).await?;
            self.del_route(route).await?;
        }
        Ok(n)
    }

    /// Adds a route or replaces the one with the same key (a refreshed
    /// lifetime).
    pub async fn replace_route(&self, route: RouteMessage) -> Result<(), NetlinkError> {
        let what = format!("replace route {}", describe_route(&route));
        self.request(
            &what,
            RouteNetlinkMessage::NewRoute(route),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
    }

    /// Applies a route plan: deletions (absent routes are fine), then
    /// additions (present routes are fine). Carries on past failures and
    /// returns them all.
    pub async fn apply_routes(&self, plan: &RoutePlan) -> Vec<NetlinkError> {
        let mut failed = Vec::new();
        for r in &plan.delete {
            if let Err(e) = self.del_route(route_message(r)).await {
                failed.push(e);
            }
        }
        for r in &plan.add {
            if let Err(e) = self.add_route(route_message(r)).await {
                failed.push(e);
            }
        }
        failed
    }

    /// What the kernel would do with a packet to `dst` (`ip route get`):
    /// the route it picks, with the table it came from.
    pub async fn route_get(
        &self,
        dst: IpAddr,
        src: Option<IpAddr>,
        iif: Option<u32>,
        uid: Option<u32>,
    ) -> Result<RouteMessage, NetlinkError> {
        let addr = |ip: IpAddr| match ip {
            IpAddr::V4(a) => RouteAddress::Inet(a),
            IpAddr::V6(a) => RouteAddress::Inet6(a),
        };
        let family = crate::addr::family_of(&dst);
        let mut m = RouteMessage::default();
        m.header.address_family = netlink_family(family);
        m.header.destination_prefix_length = crate::addr::max_prefix(&dst);
        m.header.flags |= RouteFlags::LookupTable;
        m.attributes.push(RouteAttribute::Destination(addr(dst)));
        if let Some(s) = src {
            m.header.source_prefix_length = crate::addr::max_prefix(&s);
            m.attributes.push(RouteAttribute::Source(addr(s)));
        }
        if let Some(i) = iif {
            m.attributes.push(RouteAttribute::Iif(i));
        }
        if let Some(u) = uid {
            m.attributes.push(RouteAttribute::Uid(u));
        }
        let what = format!("look up the route to {dst}");
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(m));
        req.header.flags = NLM_F_REQUEST;
        let mut handle = self.handle.clone();
        let mut resp = handle
            .request(req)
            .map_err(|e| NetlinkError::from_rt(&what, e))?;
        while let Some(msg) = resp.next().await {
            match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => return Ok(r),
                NetlinkPayload::Error(err) => {
                    if let Some(code) = err.code {
                        return Err(NetlinkError::Kernel {
                            what,
                            errno: -code.get(),
                        });
                    }
                }
                _ => {}
            }
        }
        Err(NetlinkError::Kernel {
            what,
            errno: libc::ENOENT,
        })
    }
}

/// True for a route that carries our protocol number.
pub fn is_ours(m: &RouteMessage) -> bool {
    u8::from(m.header.protocol) == RT_PROTO
}

/// The kernel message for a planned route; ours carry our protocol number.
pub fn route_message(r: &RouteSpec) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = netlink_family(r.family());
    m.header.destination_prefix_length = r.prefix_len;
    m.header.protocol = match r.origin {
        Origin::Ours => RouteProtocol::from(RT_PROTO),
        Origin::Kernel => RouteProtocol::Kernel,
        Origin::Any => RouteProtocol::Unspec,
        Origin::Proto(p) => RouteProtocol::from(p),
    };
    m.header.scope = if r.link_scope {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    m.header.kind = match r.kind {
        RouteKind::Unreachable => RouteType::Unreachable,
        RouteKind::Blackhole => RouteType::BlackHole,
        _ => RouteType::Unicast,
    };
    if r.onlink {
        m.header.flags |= RouteFlags::Onlink;
    }
    let addr = |ip: IpAddr| match ip {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    };
    if r.prefix_len > 0 {
        m.attributes.push(RouteAttribute::Destination(addr(r.dest)));
    }
    if let Some(g) = r.gateway {
        m.attributes.push(RouteAttribute::Gateway(addr(g)));
    }
    if let Some(s) = r.src {
        m.attributes.push(RouteAttribute::PrefSource(addr(s)));
    }
    if r.ifindex != 0 {
        m.attributes.push(RouteAttribute::Oif(r.ifindex));
    }
    if !r.hops.is_empty() {
        let hops = r.hops.iter().map(|h| {
            let mut nh = RouteNextHop::default();
            nh.interface_index = h.ifindex;
            nh.hops = (h.weight.clamp(1, 256) - 1) as u8;
            if h.onlink {
                nh.flags |= RouteNextHopFlags::Onlink;
            }
            if let Some(g) = h.gateway {
                nh.attributes.push(RouteAttribute::Gateway(addr(g)));
            }
            nh
        });
        m.attributes.push(RouteAttribute::MultiPath(hops.collect()));
    }
    if let Some(p) = r.metric {
        m.attributes.push(RouteAttribute::Priority(p));
    }
    set_route_table(&mut m, r.table);
    m
}

/// A route's table: the attribute when present (tables above 255), else the
/// header.
pub fn route_table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

pub fn set_route_table(m: &mut RouteMessage, table: u32) {
    m.attributes
        .retain(|a| !matches!(a, RouteAttribute::Table(_)));
    m.header.table = if table > 255 {
        RouteHeader::RT_TABLE_UNSPEC
    } else {
        table as u8
    };
    m.attributes.push(RouteAttribute::Table(table));
}

pub fn describe_route(m: &RouteMessage) -> String {
    let dst = m
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(a.to_string()),
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(a.to_string()),
            RouteAttribute::Destination(d) => Some(format!("{d:?}")),
            _ => None,
        })
        .unwrap_or_else(|| "default".into());
    let mut out = format!("{dst}/{}", m.header.destination_prefix_length);
    if let Some(gw) = route_gateway(m) {
        out.push_str(&format!(" via {gw}"));
    }
    if let Some(dev) = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    }) {
        out.push_str(&format!(" dev #{dev}"));
    }
    let proto = u8::from(m.header.protocol);
    let proto = match proto {
        2 => "kernel".to_owned(),
        3 => "boot".to_owned(),
        4 => "static".to_owned(),
        9 => "ra".to_owned(),
        16 => "dhcp".to_owned(),
        p => p.to_string(),
    };
    out.push_str(&format!(" proto {proto} table {}", route_table(m)));
    out
}

/// The planners' view of a route message; `None` for one without a
/// destination family we use.
pub fn kernel_route(m: &RouteMessage) -> Option<KernelRoute> {
    let dest = match m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    }) {
        Some(d) => d,
        None => match m.header.address_family {
            rtnetlink::packet_route::AddressFamily::Inet => {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            }
            rtnetlink::packet_route::AddressFamily::Inet6 => {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            }
            _ => return None,
        },
    };
    Some(KernelRoute {
        table: route_table(m),
        dest,
        prefix_len: m.header.destination_prefix_length,
        gateway: route_gateway(m),
        // IPv6 says `dev lo` for an unreachable route: no device of ours.
        oif: m
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })
            .filter(|_| m.header.kind == RouteType::Unicast),
        protocol: u8::from(m.header.protocol),
        metric: m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        }),
        src: m.attributes.iter().find_map(|a| match a {
            RouteAttribute::PrefSource(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
            RouteAttribute::PrefSource(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
            _ => None,
        }),
        link_scope: m.header.scope == RouteScope::Link,
        onlink: m.header.flags.contains(RouteFlags::Onlink),
        kind: match m.header.kind {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::Unreachable => RouteKind::Unreachable,
            RouteType::BlackHole => RouteKind::Blackhole,
            _ => RouteKind::Other,
        },
        hops: next_hops(m),
        expires: m.attributes.iter().any(|a| match a {
            RouteAttribute::Expires(e) => *e > 0,
            RouteAttribute::CacheInfo(c) => c.expires > 0,
            _ => false,
        }),
    })
}

/// A multipath route's next hops, as planned ones.
fn next_hops(m: &RouteMessage) -> Vec<Hop> {
    let Some(hops) = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::MultiPath(h) => Some(h),
        _ => None,
    }) else {
        return Vec::new();
    };
    hops.iter()
        .map(|h| Hop {
            gateway: h.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
                RouteAttribute::Gateway(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
                _ => None,
            }),
            ifindex: h.interface_index,
            weight: u16::from(h.hops) + 1,
            onlink: h.flags.contains(RouteNextHopFlags::Onlink),
        })
        .collect()
}

/// A route's gateway, if it has one.
pub fn route_gateway(m: &RouteMessage) -> Option<IpAddr> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Gateway(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    })
}
