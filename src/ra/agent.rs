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
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::addr::Family;
use crate::dns::Scope;
use crate::netlink::{Addr6, Event, Netlink, NetlinkError, Watcher};
use crate::ra::{self, RaRoute};
use crate::uplink::Uplinks;

use super::plan;
use super::socket::{ra_socket, read_ra, solicit};

#[derive(Debug, thiserror::Error)]
pub enum RaError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("raw ICMPv6 socket: {0}")]
    Socket(#[from] io::Error),
}

/// What the RAs of one interface asked for, with deadlines.
#[derive(Default)]
pub(super) struct IfRa {
    routes: BTreeMap<RaRoute, Instant>,
    dns: BTreeMap<Ipv6Addr, Instant>,
    /// Tables that have all of `routes`.
    tables_done: HashSet<u32>,
    /// The servers file as last written: (source, servers).
    dns_written: Option<(Ipv6Addr, Vec<Ipv6Addr>)>,
}

pub(super) struct Agent {
    uplinks: Uplinks,
    patterns: Vec<String>,
    pub(super) nl: Netlink,
    names: HashMap<u32, String>,
    ras: HashMap<u32, IfRa>,
    /// Addresses whose lease is being taken, since when.
    leasing: HashMap<Ipv6Addr, Instant>,
    /// Tables by interface at the last pass.
    last_tables: HashMap<String, Vec<u32>>,
    /// The RA socket (a duplicate), for router solicitations.
    solicit_fd: OwnedFd,
    /// False inside `mhr agent`: it leases RA addresses itself.
    lease_addresses: bool,
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

    pub(super) async fn managed(&mut self, index: u32) -> Option<String> {
        let name = self.ifname(index).await?;
        self.patterns
            .iter()
            .any(|p| crate::patterns::glob_match(p, &name))
            .then_some(name)
    }

    /// Tables of our IPv6 rules, by interface.
    pub(super) async fn our_tables(&self) -> Result<HashMap<String, Vec<u32>>, NetlinkError> {
        Ok(plan::tables_by_interface(
            &self.nl.our_rules(Family::Inet6).await?,
        ))
    }

    /// One pass: the address plan (leases, temporary-address rules)
    /// applied, then RA routes in every table, DNS lines, expiry.
    async fn reconcile(&mut self) -> Result<(), NetlinkError> {
        let now = Instant::now();
        let addrs = self.nl.addresses6().await?;
        let rules = self.nl.our_rules(Family::Inet6).await?;
        let tables = plan::tables_by_interface(&rules);
        self.leasing
            .retain(|_, since| now.duration_since(*since) < Duration::from_secs(15));
        let mut managed = HashMap::new();
        for index in addrs.iter().map(|a| a.index).collect::<HashSet<_>>() {
            if let Some(name) = self.managed(index).await {
                managed.insert(index, name);
            }
        }
        let leasing: HashSet<Ipv6Addr> = self.leasing.keys().copied().collect();
        let plan = plan::plan_addresses(&plan::Observed {
            addrs: &addrs,
            managed: &managed,
            rules: &rules,
            leasing: &leasing,
        });
        for r in &plan.add_rules {
            match self.nl.add_rule(r).await {
                Ok(()) => {
                    info!(rule = %r, "temporary address routed by its interface's table")
                }
                Err(e) => warn!("{e}"),
            }
        }
        for r in &plan.del_rules {
            if let Ok(true) = self.nl.del_rule(r).await {
                info!(rule = %r, "temporary address gone: rule removed");
            }
        }
        for (ifname, a) in plan.lease.into_iter().filter(|_| self.lease_addresses) {
            self.leasing.insert(a.address, now);
            self.lease(ifname, &a);
        }
        let stable = plan.stable;
        // New tables: ask for RAs on interfaces whose RAs this socket has
        // not seen (the kernel may have taken one before it was open), and
        // the kernel's RA routes kept in main meanwhile leave it.
        if tables != self.last_tables {
            self.last_tables = tables.clone();
            for (index, name) in &managed {
                if tables.contains_key(name) && !self.ras.contains_key(index) {
                    super::socket::solicit(&self.solicit_fd, *index);
                }
            }
            for m in self.nl.routes(Family::Inet6).await? {
                self.main_route(m).await;
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
        let tables = match self.our_tables().await {
            Ok(t) => t.get(&ifname).cloned().unwrap_or_default(),
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
}

/// Runs the agent for interfaces matching `patterns` until `shutdown`.
/// Leases, rules and routes stay when it stops: the clients own the leases
/// and the kernel expires the routes.
///
/// With `lease_addresses` false (inside `mhr agent`, which leases every
/// address itself), RA addresses are left to the caller. `nl` and
/// `watcher` are the process's netlink view: `mhr ra` makes its own
/// (`Watcher::ipv6`), the agent shares its own.
pub async fn run(
    uplinks: Uplinks,
    patterns: Vec<String>,
    lease_addresses: bool,
    nl: Netlink,
    mut watcher: Watcher,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RaError> {
    let fd = ra_socket()?;
    let mut agent = Agent {
        uplinks,
        patterns,
        nl,
        names: HashMap::new(),
        ras: HashMap::new(),
        leasing: HashMap::new(),
        last_tables: HashMap::new(),
        solicit_fd: fd.try_clone()?,
        lease_addresses,
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
                Some(Event::RouteRemoved(_)) => {}
                Some(Event::LinkRemoved { index }) => {
                    agent.names.remove(&index);
                    agent.ras.remove(&index);
                }
                Some(Event::AddressAdded(_) | Event::AddressRemoved { .. } | Event::Overrun) => {
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
