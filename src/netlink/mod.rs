//! The thin layer that applies plans to the kernel over rtnetlink, and the
//! watcher for address and link removals. No `ip` subprocesses.

pub mod routes;
pub mod rules;

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::AsyncSocket;
use rtnetlink::{Handle, IpVersion, MulticastGroup};

use crate::addr::Family;
use crate::netlink::routes::{Origin, RoutePlan, RouteSpec};
use crate::netlink::rules::{RuleSpec, RT_PROTO};

pub const EEXIST: i32 = libc::EEXIST;
pub const ENOENT: i32 = libc::ENOENT;
pub const ESRCH: i32 = libc::ESRCH;
pub const ENODEV: i32 = libc::ENODEV;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    #[error("{what}: {}", io::Error::from_raw_os_error(*errno))]
    Kernel { what: String, errno: i32 },
    #[error("{what}: {message}")]
    Other { what: String, message: String },
}

impl NetlinkError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    fn from_rt(what: impl Into<String>, e: rtnetlink::Error) -> NetlinkError {
        match e {
            rtnetlink::Error::NetlinkError(msg) if msg.code.is_some() => NetlinkError::Kernel {
                what: what.into(),
                errno: -msg.code.map(|c| c.get()).unwrap_or(0),
            },
            other => NetlinkError::Other {
                what: what.into(),
                message: other.to_string(),
            },
        }
    }
}

fn netlink_family(family: Family) -> AddressFamily {
    match family {
        Family::Inet6 => AddressFamily::Inet6,
        _ => AddressFamily::Inet,
    }
}

/// A route-netlink connection whose I/O runs as a task on the current
/// tokio runtime.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    pub fn connect() -> Result<Netlink, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    async fn request(
        &self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), NetlinkError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        let mut handle = self.handle.clone();
        let mut resp = handle
            .request(req)
            .map_err(|e| NetlinkError::from_rt(what, e))?;
        while let Some(m) = resp.next().await {
            if let NetlinkPayload::Error(err) = m.payload {
                if let Some(code) = err.code {
                    return Err(NetlinkError::Kernel {
                        what: what.to_owned(),
                        errno: -code.get(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The first link a get request returns; `None` when there is none.
    async fn one_link(
        &self,
        what: String,
        req: rtnetlink::LinkGetRequest,
    ) -> Result<Option<rtnetlink::packet_route::link::LinkMessage>, NetlinkError> {
        match req.execute().try_next().await {
            Ok(link) => Ok(link),
            Err(e) => {
                let e = NetlinkError::from_rt(what, e);
                if e.errno() == Some(ENODEV) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The index of interface `name`, `None` when there is no such link.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let req = self.handle.link().get().match_name(name.to_owned());
        let link = self
            .one_link(format!("look up interface {name}"), req)
            .await?;
        Ok(link.map(|l| l.header.index))
    }

    /// The name of the link with this index.
    pub async fn link_name(&self, index: u32) -> Result<Option<String>, NetlinkError> {
        let req = self.handle.link().get().match_index(index);
        let link = self
            .one_link(format!("look up interface {index}"), req)
            .await?;
        Ok(link.and_then(|l| {
            l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            })
        }))
    }

    /// The addresses (with prefix lengths) on link `index`.
    pub async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, NetlinkError> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| {
                NetlinkError::from_rt(format!("list addresses of interface {index}"), e)
            })?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(|m| address_of(m).map(|a| (a, m.header.prefix_len)))
            .collect())
    }

    /// Adds a rule; one that is already there counts as added.
    pub async fn add_rule(&self, rule: &RuleSpec) -> Result<(), NetlinkError> {
        let what = format!("add rule {rule}");
        match self
            .request(
                &what,
                RouteNetlinkMessage::NewRule(rule_message(rule)),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            )
            .await
        {
            Err(e) if e.errno() == Some(EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Deletes a rule. Sent without NLM_F_EXCL (kernels since 5.19 read that
    /// as a bulk delete and refuse it). Returns false when it was not there.
    pub async fn del_rule(&self, rule: &RuleSpec) -> Result<bool, NetlinkError> {
        let what = format!("delete rule {rule}");
        match self
            .request(
                &what,
                RouteNetlinkMessage::DelRule(rule_message(rule)),
                NLM_F_REQUEST | NLM_F_ACK,
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The rules of `family` that carry our protocol number.
    pub async fn our_rules(&self, family: Family) -> Result<Vec<RuleSpec>, NetlinkError> {
        let version = if family == Family::Inet6 {
            IpVersion::V6
        } else {
            IpVersion::V4
        };
        let msgs: Vec<RuleMessage> = self
            .handle
            .rule()
            .get(version)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetlinkError::from_rt("list rules", e))?;
        Ok(msgs
            .iter()
            .filter(|m| {
                m.attributes
                    .iter()
                    .any(|a| matches!(a, RuleAttribute::Protocol(p) if u8::from(*p) == RT_PROTO))
            })
            .map(|m| rule_spec(m, family))
            .collect())
    }

    /// Every route of `family`, in every table.
    pub async fn routes(&self, family: Family) -> Result<Vec<RouteMessage>, NetlinkError> {
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
}

impl Netlink {
    /// Adds an address (with its broadcast for IPv4); present counts as added.
    pub async fn add_address(
        &self,
        index: u32,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        match self
            .handle
            .address()
            .add(index, address, prefix_len)
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = NetlinkError::from_rt(
                    format!("add address {address}/{prefix_len} to interface {index}"),
                    e,
                );
                if e.errno() == Some(EEXIST) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Adds or updates an IPv6 address with lifetimes in seconds (DHCPv6:
    /// `ip -6 addr replace ... valid_lft V preferred_lft P`).
    pub async fn replace_address6(
        &self,
        index: u32,
        address: std::net::Ipv6Addr,
        prefix_len: u8,
        valid: u32,
        preferred: u32,
    ) -> Result<(), NetlinkError> {
        use rtnetlink::packet_route::address::CacheInfo;
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet6;
        msg.header.index = index;
        msg.header.prefix_len = prefix_len;
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V6(address)));
        let mut ci = CacheInfo::default();
        ci.ifa_valid = valid;
        ci.ifa_preferred = preferred.min(valid);
        msg.attributes.push(AddressAttribute::CacheInfo(ci));
        self.request(
            &format!("set address {address}/{prefix_len} on interface {index}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
    }

    /// Every IPv6 address with its flags and origin.
    pub async fn addresses6(&self) -> Result<Vec<Addr6>, NetlinkError> {
        let mut query = AddressMessage::default();
        query.header.family = AddressFamily::Inet6;
        let msgs: Vec<AddressMessage> =
            self.handle
                .address()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| NetlinkError::from_rt("list IPv6 addresses", e))?;
        Ok(msgs.iter().filter_map(Addr6::from_message).collect())
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

    /// Deletes an address; absent counts as deleted.
    pub async fn del_address(
        &self,
        index: u32,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let mut msg = AddressMessage::default();
        msg.header.family = match address {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.index = index;
        msg.header.prefix_len = prefix_len;
        msg.attributes.push(AddressAttribute::Local(address));
        msg.attributes.push(AddressAttribute::Address(address));
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = NetlinkError::from_rt(
                    format!("delete address {address}/{prefix_len} from interface {index}"),
                    e,
                );
                if matches!(e.errno(), Some(libc::EADDRNOTAVAIL) | Some(ENODEV)) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let msg = rtnetlink::LinkUnspec::new_with_index(index)
            .mtu(mtu)
            .build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rt(format!("set MTU {mtu} on interface {index}"), e))
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
    };
    m.header.scope = if r.link_scope {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    m.header.kind = RouteType::Unicast;
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
    m.attributes.push(RouteAttribute::Oif(r.ifindex));
    if let Some(p) = r.metric {
        m.attributes.push(RouteAttribute::Priority(p));
    }
    set_route_table(&mut m, r.table);
    m
}

/// The local address of an address message (IFA_LOCAL for IPv4, which
/// differs from IFA_ADDRESS on point-to-point links).
fn address_of(m: &AddressMessage) -> Option<IpAddr> {
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

/// The rule message for a spec, used for both add and delete so that the
/// kernel compares exactly the fields we set.
pub fn rule_message(r: &RuleSpec) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = netlink_family(r.family);
    m.header.action = RuleAction::ToTable;
    // The table always goes in FRA_TABLE; the header says unspec.
    m.header.table = RouteHeader::RT_TABLE_UNSPEC;
    m.attributes.push(RuleAttribute::Table(r.table));
    m.attributes.push(RuleAttribute::Priority(r.priority));
    m.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::from(RT_PROTO)));
    if let Some((addr, len)) = r.from {
        m.header.src_len = len;
        m.attributes.push(RuleAttribute::Source(addr));
    }
    if let Some((addr, len)) = r.to {
        m.header.dst_len = len;
        m.attributes.push(RuleAttribute::Destination(addr));
    }
    if let Some(i) = &r.iif {
        m.attributes.push(RuleAttribute::Iifname(i.clone()));
    }
    if let Some(o) = &r.oif {
        m.attributes.push(RuleAttribute::Oifname(o.clone()));
    }
    m
}

fn rule_spec(m: &RuleMessage, family: Family) -> RuleSpec {
    let mut r = RuleSpec::new(family, u32::from(m.header.table));
    for a in &m.attributes {
        match a {
            RuleAttribute::Table(t) => r.table = *t,
            RuleAttribute::Priority(p) => r.priority = *p,
            RuleAttribute::Source(ip) => r.from = Some((*ip, m.header.src_len)),
            RuleAttribute::Destination(ip) => r.to = Some((*ip, m.header.dst_len)),
            RuleAttribute::Iifname(i) => r.iif = Some(i.clone()),
            RuleAttribute::Oifname(o) => r.oif = Some(o.clone()),
            _ => {}
        }
    }
    r
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

impl Netlink {
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

/// A route's gateway, if it has one.
pub fn route_gateway(m: &RouteMessage) -> Option<IpAddr> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Gateway(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    })
}

/// What the watcher reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    AddressAdded {
        index: u32,
        address: IpAddr,
        prefix_len: u8,
    },
    AddressRemoved {
        index: u32,
        address: IpAddr,
    },
    LinkRemoved {
        index: u32,
    },
    /// A route appeared or changed (only with `Watcher::ipv6`).
    RouteAdded(Box<RouteMessage>),
    /// Events were lost: re-read the kernel's state.
    Overrun,
}

/// A multicast subscription to link and address changes.
pub struct Watcher {
    rx: UnboundedReceiver<(
        NetlinkMessage<RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
}

impl Watcher {
    /// Only the removals of link `index` and of its addresses: a socket
    /// filter drops everything else in the kernel, so a host with many
    /// per-address clients does not wake them all for every change. The
    /// connection runs on the current tokio runtime.
    pub fn removals_of(index: u32) -> Result<Watcher, NetlinkError> {
        Self::subscribe(
            &[
                MulticastGroup::Link,
                MulticastGroup::Ipv4Ifaddr,
                MulticastGroup::Ipv6Ifaddr,
            ],
            Some(index),
        )
    }

    /// Link removals and IPv6 address and route changes (the RA agent).
    pub fn ipv6() -> Result<Watcher, NetlinkError> {
        Self::subscribe(
            &[
                MulticastGroup::Link,
                MulticastGroup::Ipv6Ifaddr,
                MulticastGroup::Ipv6Route,
            ],
            None,
        )
    }

    fn subscribe(
        groups: &[MulticastGroup],
        removals_of: Option<u32>,
    ) -> Result<Watcher, NetlinkError> {
        let (mut conn, _handle, rx) = rtnetlink::new_multicast_connection(groups)?;
        if let Some(index) = removals_of {
            let fd = conn.socket_mut().socket_mut().as_raw_fd();
            attach_removal_filter(fd, index)?;
        }
        tokio::spawn(conn);
        Ok(Watcher { rx })
    }

    /// The next event; `None` when the subscription ended.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let (msg, _) = self.rx.next().await?;
            let event = match msg.payload {
                NetlinkPayload::Overrun(_) => Some(Event::Overrun),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(a)) => address_of(&a)
                    .map(|address| Event::AddressRemoved {
                        index: a.header.index,
                        address,
                    }),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) => address_of(&a)
                    .map(|address| Event::AddressAdded {
                        index: a.header.index,
                        address,
                        prefix_len: a.header.prefix_len,
                    }),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                    Some(Event::LinkRemoved {
                        index: l.header.index,
                    })
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                    Some(Event::RouteAdded(Box::new(r)))
                }
                _ => None,
            };
            if event.is_some() {
                return event;
            }
        }
    }
}

/// An IPv6 address as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr6 {
    pub index: u32,
    pub address: std::net::Ipv6Addr,
    pub prefix_len: u8,
    /// IFA_F_* flags.
    pub flags: u32,
    /// IFA_PROTO: 2 for an address made from a router advertisement.
    pub proto: Option<u8>,
}

pub const IFA_F_TEMPORARY: u32 = 0x01;
pub const IFA_F_DADFAILED: u32 = 0x08;
pub const IFA_F_TENTATIVE: u32 = 0x40;
pub const IFAPROT_KERNEL_RA: u8 = 2;

impl Addr6 {
    pub fn from_message(m: &AddressMessage) -> Option<Addr6> {
        let IpAddr::V6(address) = address_of(m)? else {
            return None;
        };
        let flags = m
            .attributes
            .iter()
            .find_map(|a| match a {
                AddressAttribute::Flags(f) => Some(f.bits()),
                _ => None,
            })
            .unwrap_or(u32::from(m.header.flags.bits()));
        let proto = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Protocol(p) => Some(u8::from(*p)),
            _ => None,
        });
        Some(Addr6 {
            index: m.header.index,
            address,
            prefix_len: m.header.prefix_len,
            flags,
            proto,
        })
    }

    /// A global address that can be a source: not link-local, not being or
    /// failed duplicate address detection.
    pub fn usable_global(&self) -> bool {
        !self.address.is_unicast_link_local()
            && !self.address.is_loopback()
            && self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) == 0
    }

    pub fn temporary(&self) -> bool {
        self.flags & IFA_F_TEMPORARY != 0
    }
}

/// Classic BPF over the whole netlink message: accept RTM_DELADDR and
/// RTM_DELLINK whose ifindex (offset 20 in both ifaddrmsg and ifinfomsg
/// messages) is `index`; drop the rest. BPF loads are big-endian and netlink
/// is host order, hence the byte swaps.
fn removal_filter(index: u32) -> [libc::sock_filter; 7] {
    // BPF_LD|BPF_H|BPF_ABS, BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K,
    // BPF_RET|BPF_K (BPF_LD, BPF_W and BPF_K are 0).
    const LD_H_ABS: u16 = 0x08 | 0x20;
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x05 | 0x10;
    const RET_K: u16 = 0x06;
    let half = |v: u16| u32::from(u16::from_be_bytes(v.to_ne_bytes()));
    let word = |v: u32| u32::from_be_bytes(v.to_ne_bytes());
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        op(LD_H_ABS, 0, 0, 4),
        op(JEQ_K, 1, 0, half(libc::RTM_DELADDR)),
        op(JEQ_K, 0, 3, half(libc::RTM_DELLINK)),
        op(LD_W_ABS, 0, 0, 20),
        op(JEQ_K, 0, 1, word(index)),
        op(RET_K, 0, 0, u32::MAX),
        op(RET_K, 0, 0, 0),
    ]
}

fn attach_removal_filter(fd: std::os::fd::RawFd, index: u32) -> io::Result<()> {
    let mut filter = removal_filter(index);
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filter`, both alive for the call; the kernel
    // copies the program.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::rules::{rules_for, AddressSpec};

    #[test]
    fn rule_messages_round_trip() {
        let spec = AddressSpec {
            ifname: "eth1".into(),
            address: "10.10.0.2".parse().unwrap(),
            prefix_len: 24,
        };
        for rule in rules_for(&spec, 10000) {
            let m = rule_message(&rule);
            assert_eq!(m.header.action, RuleAction::ToTable);
            assert_eq!(rule_spec(&m, Family::Inet), rule);
        }
    }
}
