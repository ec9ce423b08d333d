//! `mhr ra`: IPv6 uplinks configured by router advertisements (SLAAC),
//! which have no hook to call us.
//!
//! - A global address the kernel made from an RA on a managed interface
//!   gets a table lease through table_allocator_client (which installs its
//!   rules and removes them when the address goes).
//! - A temporary (privacy) address gets a `from` rule (10000) to its
//!   interface's table, removed when the address goes.
//! - RAs are read from a raw ICMPv6 socket: the default route (via the
//!   router's link-local address), the on-link prefixes and RFC 4191 routes
//!   go into every table of the interface with the RA's lifetimes (the
//!   kernel expires them); a lifetime of 0 removes them at once. The
//!   kernel's own copies in main (proto ra, and its expiring prefix routes)
//!   are deleted, so main holds no uplink's default.
//! - RDNSS servers become dnsmasq server lines for the interface and its
//!   address.
//!
//! The work is level-triggered: every event and a 1 s tick run one
//! reconcile pass over the kernel's addresses and our rules.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    self, sockopt, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockProtocol, SockType,
    SockaddrIn6,
};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::addr::Family;
use crate::dns::Scope;
use crate::netlink::routes::{Origin, RouteSpec, MAIN_TABLE};
use crate::netlink::rules::{RuleSpec, PRIO_BOUND_DEVICE, PRIO_FROM};
use crate::netlink::{route_message, route_table, Addr6, Event, Netlink, NetlinkError, Watcher};
use crate::ra::{self, RaRoute};
use crate::uplink::Uplinks;

#[derive(Debug, thiserror::Error)]
pub enum RaError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("raw ICMPv6 socket: {0}")]
    Socket(#[from] io::Error),
}

/// What the RAs of one interface asked for, with deadlines.
#[derive(Default)]
struct IfRa {
    routes: BTreeMap<RaRoute, Instant>,
    dns: BTreeMap<Ipv6Addr, Instant>,
    /// Tables that have all of `routes`.
    tables_done: HashSet<u32>,
    /// The servers file as last written: (source, servers).
    dns_written: Option<(Ipv6Addr, Vec<Ipv6Addr>)>,
}

struct Agent {
    uplinks: Uplinks,
    patterns: Vec<String>,
    nl: Netlink,
    names: HashMap<u32, String>,
    ras: HashMap<u32, IfRa>,
    /// Addresses whose lease is being taken, since when.
    leasing: HashMap<Ipv6Addr, Instant>,
    /// Warnings about RAs over the bounds: a flood must not flood the log.
    bound_log: crate::ratelimit::RateLimit,
}

/// The RA limits for `ifname`: ours, with route information accepted as
/// the interface's own sysctls say (as the kernel would).
fn ra_limits(ifname: &str) -> ra::Limits {
    let sysctl = |key: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{ifname}/{key}"))
            .ok()
            .and_then(|v| v.trim().parse::<u8>().ok())
    };
    let rt_info_plen = match (
        sysctl("accept_ra_rtr_pref"),
        sysctl("accept_ra_rt_info_min_plen"),
        sysctl("accept_ra_rt_info_max_plen"),
    ) {
        (Some(pref), Some(min), Some(max)) if pref > 0 => Some((min, max)),
        _ => None,
    };
    ra::Limits {
        rt_info_plen,
        ..ra::Limits::default()
    }
}

impl Agent {
    async fn ifname(&mut self, index: u32) -> Option<String> {
        if let Some(n) = self.names.get(&index) {
            return Some(n.clone());
        }
        let name = self.nl.link_name(index).await.ok().flatten()?;
        self.names.insert(index, name.clone());
        Some(name)
    }

    async fn managed(&mut self, index: u32) -> Option<String> {
        let name = self.ifname(index).await?;
        self.patterns
            .iter()
            .any(|p| crate::patterns::glob_match(p, &name))
            .then_some(name)
    }

    /// Tables of our IPv6 rules, by interface (9000 `oif` rules), and the
    /// (address, table) of every 10000 `from` rule.
    async fn our_rules(&self) -> Result<(Vec<RuleSpec>, HashMap<String, Vec<u32>>), NetlinkError> {
        let rules = self.nl.our_rules(Family::Inet6).await?;
        let mut tables: HashMap<String, Vec<u32>> = HashMap::new();
        for r in rules.iter().filter(|r| r.priority == PRIO_BOUND_DEVICE) {
            if let Some(oif) = &r.oif {
                tables.entry(oif.clone()).or_default().push(r.table);
            }
        }
        for t in tables.values_mut() {
            t.sort_unstable();
        }
        Ok((rules, tables))
    }

    /// One pass: leases for RA addresses, rules for temporary addresses,
    /// RA routes in every table, DNS lines, expiry.
    async fn reconcile(&mut self) -> Result<(), NetlinkError> {
        let now = Instant::now();
        let addrs = self.nl.addresses6().await?;
        let (rules, tables) = self.our_rules().await?;
        let from_rules: Vec<(Ipv6Addr, u32)> = rules
            .iter()
            .filter(|r| r.priority == PRIO_FROM)
            .filter_map(|r| match r.from {
                Some((IpAddr::V6(a), 128)) => Some((a, r.table)),
                _ => None,
            })
            .collect();
        self.leasing
            .retain(|_, since| now.duration_since(*since) < Duration::from_secs(15));

        let mut present: HashSet<Ipv6Addr> = HashSet::new();
        let mut stable: HashMap<u32, Ipv6Addr> = HashMap::new();
        for a in &addrs {
            present.insert(a.address);
            if !a.usable_global() {
                continue;
            }
            let Some(ifname) = self.managed(a.index).await else {
                continue;
            };
            let has_rule = from_rules.iter().any(|(x, _)| *x == a.address);
            if a.temporary() {
                // Its interface's table: the one whose own address shares
                // the temporary address's prefix, else the first.
                let own = tables.get(&ifname).and_then(|ts| {
                    ts.iter()
                        .copied()
                        .find(|t| {
                            from_rules.iter().any(|(x, tt)| {
                                tt == t && x.segments()[..4] == a.address.segments()[..4]
                            })
                        })
                        .or_else(|| ts.first().copied())
                });
                if let (Some(table), false) = (own, has_rule) {
                    let mut r = RuleSpec::new(Family::Inet6, table);
                    r.priority = PRIO_FROM;
                    r.from = Some((IpAddr::V6(a.address), 128));
                    match self.nl.add_rule(&r).await {
                        Ok(()) => {
                            info!(%ifname, address = %a.address, table, "temporary address routed by its interface's table")
                        }
                        Err(e) => warn!("{e}"),
                    }
                }
                continue;
            }
            if a.proto == Some(crate::netlink::IFAPROT_KERNEL_RA) {
                stable.entry(a.index).or_insert(a.address);
                if !has_rule && !self.leasing.contains_key(&a.address) {
                    self.leasing.insert(a.address, now);
                    self.lease(ifname, a);
                }
            }
        }
        // Temporary-address rules whose address is gone. (A client removes
        // its own address's rule itself.)
        let managed_tables: HashSet<u32> = tables.values().flatten().copied().collect();
        for (addr, table) in &from_rules {
            if !present.contains(addr)
                && managed_tables.contains(table)
                && !self.leasing.contains_key(addr)
            {
                let mut r = RuleSpec::new(Family::Inet6, *table);
                r.priority = PRIO_FROM;
                r.from = Some((IpAddr::V6(*addr), 128));
                if let Ok(true) = self.nl.del_rule(&r).await {
                    info!(address = %addr, table, "temporary address gone: rule removed");
                }
            }
        }

        // RA state: expire, fill new tables, write DNS.
        let indexes: Vec<u32> = self.ras.keys().copied().collect();
        for index in indexes {
            let Some(ifname) = self.ifname(index).await else {
                self.ras.remove(&index);
                continue;
            };
            let ts = tables.get(&ifname).cloned().unwrap_or_default();
            let st = self.ras.get_mut(&index).expect("present");
            st.routes.retain(|_, d| *d > now);
            st.dns.retain(|_, d| *d > now);
            st.tables_done.retain(|t| ts.contains(t));
            let todo: Vec<u32> = ts
                .iter()
                .copied()
                .filter(|t| !st.tables_done.contains(t))
                .collect();
            let routes: Vec<(RaRoute, Duration)> = st
                .routes
                .iter()
                .map(|(r, d)| (r.clone(), d.duration_since(now)))
                .collect();
            for t in &todo {
                self.install(index, *t, &routes).await;
            }
            let st = self.ras.get_mut(&index).expect("present");
            st.tables_done.extend(todo);
            let servers: Vec<Ipv6Addr> = st.dns.keys().copied().collect();
            let source = stable.get(&index).copied();
            let want = source.map(|s| (s, servers.clone()));
            if want != st.dns_written {
                let old = st.dns_written.take();
                st.dns_written = want.clone();
                if let Some((old_src, _)) = old {
                    if Some(old_src) != source {
                        let _ = self
                            .uplinks
                            .remove_dns(&ifname, Scope::Source(IpAddr::V6(old_src)));
                    }
                }
                if let Some((src, servers)) = want {
                    let servers: Vec<IpAddr> = servers.into_iter().map(IpAddr::V6).collect();
                    match self.uplinks.set_dns(&ifname, IpAddr::V6(src), &servers) {
                        Ok(()) => {
                            info!(%ifname, source = %src, servers = servers.len(), "RA name servers written")
                        }
                        Err(e) => warn!(%ifname, "name servers: {e}"),
                    }
                }
            }
        }
        Ok(())
    }

    /// table_allocator_client in the background (it waits up to ~10 s for
    /// a server): the next pass sees its rules.
    fn lease(&self, ifname: String, a: &Addr6) {
        let uplinks = self.uplinks.clone();
        let (address, plen) = (a.address, a.prefix_len);
        tokio::task::spawn_blocking(move || {
            match uplinks.lease_table(&ifname, IpAddr::V6(address), plen) {
                Ok(0) => warn!(%ifname, %address, "no table to be had for the RA address"),
                Ok(table) => info!(%ifname, %address, table, "RA address leased a table"),
                Err(e) => warn!(%ifname, %address, "leasing a table: {e}"),
            }
        });
    }

    fn route(index: u32, table: u32, r: &RaRoute) -> RouteSpec {
        let mut spec = RouteSpec::base(IpAddr::V6(r.dest), r.len, index, table);
        spec.gateway = r.via.map(IpAddr::V6);
        spec
    }

    /// Installs routes with lifetimes in `table`; a zero lifetime deletes.
    async fn install(&self, index: u32, table: u32, routes: &[(RaRoute, Duration)]) {
        for (r, life) in routes {
            let spec = Self::route(index, table, r);
            if life.is_zero() {
                let mut del = spec;
                del.origin = Origin::Any;
                match self.nl.del_route(route_message(&del)).await {
                    Ok(true) => info!(table, route = %describe(r), "RA withdrew it: route removed"),
                    Ok(false) => {}
                    Err(e) => warn!("{e}"),
                }
                continue;
            }
            let mut m = route_message(&spec);
            if let Some(e) = ra::expires_attr(*life) {
                m.attributes
                    .push(rtnetlink::packet_route::route::RouteAttribute::Expires(e));
            }
            if let Err(e) = self.nl.replace_route(m).await {
                warn!(table, "{e}");
            }
        }
    }

    /// An RA received on `index` from `router`.
    async fn advert(&mut self, index: u32, router: Ipv6Addr, msg: &[u8]) {
        let Some(ifname) = self.managed(index).await else {
            return;
        };
        if !router.is_unicast_link_local() {
            debug!(%ifname, %router, "RA from a non-link-local source ignored");
            return;
        }
        let advert = match ra::parse(msg) {
            Ok(a) => a,
            Err(e) => return warn!(%ifname, %router, "bad router advertisement: {e}"),
        };
        let limits = ra_limits(&ifname);
        let plan = ra::plan(&advert, router, &limits);
        let now = Instant::now();
        let st = self.ras.entry(index).or_default();
        let (plan, refused) = ra::admit(plan, router, &st.routes, &st.dns, &limits);
        if refused > 0 {
            if let crate::ratelimit::Verdict::Log { suppressed } = self.bound_log.check(now) {
                warn!(%ifname, %router, refused, earlier = suppressed, "router advertisement over the bounds (routes per interface {}, per router {}, name servers {}): the rest ignored", limits.routes_per_interface, limits.routes_per_router, limits.dns_per_interface);
            }
        }
        let tables = match self.our_rules().await {
            Ok((_, t)) => t.get(&ifname).cloned().unwrap_or_default(),
            Err(e) => return warn!("{e}"),
        };
        for t in &tables {
            self.install(index, *t, &plan.routes).await;
        }
        let st = self.ras.entry(index).or_default();
        for (r, life) in &plan.routes {
            if life.is_zero() {
                st.routes.remove(r);
            } else {
                st.routes.insert(r.clone(), now + *life);
            }
        }
        for (s, life) in &plan.dns {
            if life.is_zero() {
                st.dns.remove(s);
            } else {
                st.dns.insert(*s, now + *life);
            }
        }
        st.tables_done.extend(tables.iter().copied());
        debug!(%ifname, %router, lifetime = advert.router_lifetime, prefixes = advert.prefixes.len(), "router advertisement");
    }

    /// The kernel's RA routes in main on a managed interface: the tables
    /// have them; main must not.
    async fn main_route(&mut self, m: rtnetlink::packet_route::route::RouteMessage) {
        use rtnetlink::packet_route::route::{RouteAttribute, RouteProtocol};
        if route_table(&m) != MAIN_TABLE {
            return;
        }
        let Some(oif) = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        }) else {
            return;
        };
        let expires = m.attributes.iter().any(|a| match a {
            RouteAttribute::Expires(e) => *e > 0,
            RouteAttribute::CacheInfo(c) => c.expires > 0,
            _ => false,
        });
        let dest_ll = m.attributes.iter().any(|a| {
            matches!(a, RouteAttribute::Destination(rtnetlink::packet_route::route::RouteAddress::Inet6(d)) if d.is_unicast_link_local())
        });
        let from_ra = m.header.protocol == RouteProtocol::Ra
            || m.header.protocol == RouteProtocol::Kernel
                && expires
                && (1..128).contains(&m.header.destination_prefix_length)
                && !dest_ll;
        if !from_ra {
            return;
        }
        let Some(ifname) = self.managed(oif).await else {
            return;
        };
        let what = crate::netlink::describe_route(&m);
        match self.nl.del_route(m).await {
            Ok(true) => info!(%ifname, route = %what, "RA route removed from main"),
            Ok(false) => {}
            Err(e) => warn!("{e}"),
        }
    }
}

fn describe(r: &RaRoute) -> String {
    match r.via {
        Some(v) => format!("{}/{} via {v}", r.dest, r.len),
        None => format!("{}/{}", r.dest, r.len),
    }
}

/// A raw ICMPv6 socket that passes router advertisements only, with the
/// receiving interface of each.
fn ra_socket() -> io::Result<OwnedFd> {
    let fd = socket::socket(
        AddressFamily::Inet6,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::IcmpV6,
    )?;
    // ICMP6_FILTER: block everything but type 134.
    let mut filter = [u32::MAX; 8];
    filter[134 >> 5] &= !(1u32 << (134 & 31));
    // SAFETY: the filter array outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            1, // ICMP6_FILTER
            filter.as_ptr().cast(),
            std::mem::size_of_val(&filter) as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    socket::setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true)?;
    socket::setsockopt(&fd, sockopt::Ipv6RecvHopLimit, &true)?;
    // Solicitations go to all-routers with hop limit 255 (RFC 4861).
    socket::setsockopt(&fd, sockopt::Ipv6MulticastHops, &255)?;
    Ok(fd)
}

/// Reads one datagram: (interface, source, ICMPv6 message) of an RA that
/// arrived with hop limit 255 (so it was not forwarded).
fn read_ra(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<(u32, Ipv6Addr, usize)>> {
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<SockaddrIn6>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )?;
    let (mut index, mut hops) = (None, None);
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv6PacketInfo(p) => index = Some(p.ipi6_ifindex),
            ControlMessageOwned::Ipv6HopLimit(h) => hops = Some(h),
            _ => {}
        }
    }
    let (Some(from), Some(index)) = (msg.address, index) else {
        return Ok(None);
    };
    if hops != Some(255) {
        return Ok(None);
    }
    Ok(Some((index, from.ip(), msg.bytes)))
}

fn solicit(fd: &OwnedFd, index: u32) {
    let to = SockaddrIn6::from(SocketAddrV6::new(
        "ff02::2".parse().expect("literal"),
        0,
        0,
        index,
    ));
    if let Err(e) = socket::sendto(fd.as_raw_fd(), &ra::solicitation(), &to, MsgFlags::empty()) {
        debug!(index, "router solicitation: {e}");
    }
}

/// Runs the agent for interfaces matching `patterns` until `shutdown`.
/// Leases, rules and routes stay when it stops: the clients own the leases
/// and the kernel expires the routes.
pub async fn run(
    uplinks: Uplinks,
    patterns: Vec<String>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RaError> {
    let nl = Netlink::connect()?;
    let mut watcher = Watcher::ipv6()?;
    let fd = ra_socket()?;
    let mut agent = Agent {
        uplinks,
        patterns,
        nl,
        names: HashMap::new(),
        ras: HashMap::new(),
        leasing: HashMap::new(),
        bound_log: crate::ratelimit::RateLimit::new(5, Duration::from_secs(60)),
    };
    // RAs now rather than at the routers' next interval; and the kernel's
    // RA routes already in main.
    let links: Vec<u32> = agent
        .nl
        .addresses6()
        .await?
        .iter()
        .map(|a| a.index)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    for index in links {
        if agent.managed(index).await.is_some() {
            solicit(&fd, index);
        }
    }
    for m in agent.nl.routes(Family::Inet6).await? {
        agent.main_route(m).await;
    }
    // SAFETY: the OwnedFd moves into the AsyncFd and closes when it drops.
    let afd = unsafe { AsyncFd::register(fd) }.map_err(|e| io::Error::other(e.to_string()))?;
    info!(patterns = ?agent.patterns, "RA agent started");
    if let Err(e) = agent.reconcile().await {
        warn!("{e}");
    }
    tokio::pin!(shutdown);
    let mut tick = crate::timer::ticker(Duration::from_secs(1));
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                info!("RA agent stopping; leases and routes stay (clients and the kernel own them)");
                return Ok(());
            }
            _ = tick.tick() => {
                if let Err(e) = agent.reconcile().await {
                    warn!("{e}");
                }
            }
            ev = watcher.next() => match ev {
                Some(Event::RouteAdded(m)) => agent.main_route(*m).await,
                Some(Event::LinkRemoved { index }) => {
                    agent.names.remove(&index);
                    agent.ras.remove(&index);
                }
                Some(Event::AddressAdded { .. } | Event::AddressRemoved { .. } | Event::Overrun) => {
                    if let Err(e) = agent.reconcile().await {
                        warn!("{e}");
                    }
                }
                None => return Err(RaError::Socket(io::Error::other("netlink subscription ended"))),
            },
            ready = afd.readable() => {
                let mut guard = ready?;
                loop {
                    match guard.try_io(|fd| read_ra(fd.get_ref(), &mut buf)) {
                        Ok(Ok(Some((index, from, n)))) => {
                            let msg = buf[..n].to_vec();
                            agent.advert(index, from, &msg).await;
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => {
                            warn!("reading RAs: {e}");
                            break;
                        }
                        Err(_would_block) => break,
                    }
                }
            }
        }
    }
}
