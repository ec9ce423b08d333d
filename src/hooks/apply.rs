//! Carries out the hook actions: the address and MTU here (the hook stands
//! in for its configurer); then, with the agent running, a report of what
//! the configurer knows, answered once the address is routed; without it,
//! the table, routes and name servers through the seed's client.

use std::net::IpAddr;
use std::path::PathBuf;

use tracing::info;

use crate::dns::{self};
use crate::hooks::{Dhcp6Lease, DhcpLease, StaticUplink};
use crate::netlink::routes::{MainPolicy, StaticRoute, Uplink};
use crate::netlink::{Netlink, NetlinkError};
use crate::uplink::{Reported, UplinkError, Uplinks};

/// What a hook tells the agent about an uplink address.
fn report(ifname: &str, up: &Uplink, dns: &[IpAddr], keep_main: bool) -> crate::control::Request {
    crate::control::Request::Uplink(crate::control::UplinkReport {
        ifname: ifname.to_owned(),
        address: up.address,
        prefix_len: up.prefix_len,
        routers: up.routers.clone(),
        static_routes: up
            .static_routes
            .iter()
            .map(|r| crate::control::StaticRoute {
                dest: r.dest,
                prefix_len: r.prefix_len,
                gateway: r.gateway,
            })
            .collect(),
        metric: up.metric,
        dns: dns.to_vec(),
        keep_main,
    })
}

/// What the hooks need: the shared uplink service, and where ifupdown's
/// parts are for hotplug.
#[derive(Debug, Clone)]
pub struct Context {
    pub uplinks: Uplinks,
    /// Where dhclient keeps `dhclient.IFACE.pid` (ifupdown's convention).
    pub dhclient_pid_dir: PathBuf,
    /// ifupdown `source-directory` for dynamic stanzas.
    pub stanza_dir: PathBuf,
    /// Interface name patterns (`*` wildcard) that get a dynamic stanza.
    pub hotplug_patterns: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("interface {0} does not exist")]
    NoInterface(String),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Uplink(#[from] UplinkError),
    #[error("router {0} does not answer")]
    RouterDown(IpAddr),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Context {
    async fn ifindex(&self, nl: &Netlink, ifname: &str) -> Result<u32, ApplyError> {
        nl.link_index(ifname)
            .await?
            .ok_or_else(|| ApplyError::NoInterface(ifname.to_owned()))
    }

    /// dhclient BOUND/RENEW/REBIND/REBOOT/TIMEOUT: address, MTU, table,
    /// routes, DNS. Returns the table (0 for the main-table fallback).
    pub async fn configure_dhcp(
        &self,
        lease: &DhcpLease,
        old: Option<(std::net::Ipv4Addr, u8)>,
        check_router: bool,
    ) -> Result<u32, ApplyError> {
        let nl = Netlink::connect()?;
        let ifindex = self.ifindex(&nl, &lease.ifname).await?;
        if let Some((a, plen)) = old {
            info!(ifname = %lease.ifname, old = %a, "leased address changed: removing the old one");
            nl.del_address(ifindex, IpAddr::V4(a), plen).await?;
        }
        let address = IpAddr::V4(lease.address);
        nl.add_address(ifindex, address, lease.prefix_len).await?;
        if let Some(mtu) = lease.mtu {
            nl.set_mtu(ifindex, mtu).await?;
        }
        if check_router {
            if let Some(router) = lease.routers.first() {
                if !crate::track::router_answers(&lease.ifname, address, *router).await {
                    nl.del_address(ifindex, address, lease.prefix_len).await?;
                    return Err(ApplyError::RouterDown(*router));
                }
            }
        }
        let uplink = Uplink {
            ifindex,
            address,
            prefix_len: lease.prefix_len,
            routers: lease.routers.clone(),
            static_routes: lease.static_routes.clone(),
            metric: lease.metric,
        };
        if let Reported::Table(t) =
            self.uplinks
                .report(&report(&lease.ifname, &uplink, &lease.dns, false))?
        {
            return Ok(t);
        }
        let table = self
            .uplinks
            .lease_table(&lease.ifname, address, lease.prefix_len)?;
        self.uplinks
            .routes(&nl, &uplink, table, MainPolicy::Move)
            .await?;
        self.uplinks.set_dns(&lease.ifname, address, &lease.dns)?;
        Ok(table)
    }

    /// dhclient -6 BOUND6/RENEW6/REBIND6/REBOOT6: the address with its
    /// lifetimes, its table and name servers. Its routes come from the
    /// interface's RAs, which the agent puts in every table of the interface.
    pub async fn configure_dhcp6(&self, lease: &Dhcp6Lease) -> Result<u32, ApplyError> {
        let nl = Netlink::connect()?;
        let ifindex = self.ifindex(&nl, &lease.ifname).await?;
        nl.replace_address6(
            ifindex,
            lease.address,
            lease.prefix_len,
            lease.valid,
            lease.preferred,
        )
        .await?;
        let address = IpAddr::V6(lease.address);
        let up = Uplink {
            ifindex,
            address,
            prefix_len: lease.prefix_len,
            routers: Vec::new(),
            static_routes: Vec::new(),
            metric: None,
        };
        if let Reported::Table(t) =
            self.uplinks
                .report(&report(&lease.ifname, &up, &lease.dns, false))?
        {
            return Ok(t);
        }
        let table = self
            .uplinks
            .lease_table(&lease.ifname, address, lease.prefix_len)?;
        self.uplinks.set_dns(&lease.ifname, address, &lease.dns)?;
        Ok(table)
    }

    /// DEPREF6: keep the address, no longer preferred for new connections.
    pub async fn deprecate6(
        &self,
        ifname: &str,
        address: std::net::Ipv6Addr,
        prefix_len: u8,
    ) -> Result<(), ApplyError> {
        let nl = Netlink::connect()?;
        let ifindex = self.ifindex(&nl, ifname).await?;
        nl.replace_address6(ifindex, address, prefix_len, u32::MAX, 0)
            .await?;
        Ok(())
    }

    /// EXPIRE6/RELEASE6/STOP6: the address goes; its client sees that and
    /// removes the rules and the lease.
    pub async fn remove6(
        &self,
        ifname: &str,
        address: std::net::Ipv6Addr,
        prefix_len: u8,
    ) -> Result<(), ApplyError> {
        let nl = Netlink::connect()?;
        if let Some(ifindex) = nl.link_index(ifname).await? {
            nl.del_address(ifindex, IpAddr::V6(address), prefix_len)
                .await?;
        }
        Ok(self
            .uplinks
            .forget_dns(ifname, dns::Scope::Source(IpAddr::V6(address)))?)
    }

    /// ifupdown `inet static` (routes in main move) or NetworkManager
    /// (main is left alone).
    pub async fn configure_static(
        &self,
        up: &StaticUplink,
        main: MainPolicy,
    ) -> Result<u32, ApplyError> {
        let nl = Netlink::connect()?;
        let ifindex = self.ifindex(&nl, &up.ifname).await?;
        let address = IpAddr::V4(up.address);
        let mut routes: Vec<StaticRoute> = up.routes.clone();
        if !routes.is_empty() {
            // Extra routes replace the routers in the plan (RFC 3442
            // semantics): keep the gateway as a default route among them.
            if let Some(g) = up.gateway {
                routes.push(StaticRoute {
                    dest: std::net::Ipv4Addr::UNSPECIFIED,
                    prefix_len: 0,
                    gateway: g,
                });
            }
        }
        let uplink = Uplink {
            ifindex,
            address,
            prefix_len: up.prefix_len,
            routers: up.gateway.map(IpAddr::V4).into_iter().collect(),
            static_routes: routes,
            metric: None,
        };
        let keep = main == MainPolicy::Keep;
        if let Reported::Table(t) = self
            .uplinks
            .report(&report(&up.ifname, &uplink, &up.dns, keep))?
        {
            return Ok(t);
        }
        let table = self
            .uplinks
            .lease_table(&up.ifname, address, up.prefix_len)?;
        self.uplinks.routes(&nl, &uplink, table, main).await?;
        self.uplinks.set_dns(&up.ifname, address, &up.dns)?;
        Ok(table)
    }
}
