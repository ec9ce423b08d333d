//! Carries out the hook actions: addresses, the table lease (through
//! table_allocator_client, which then owns the rules), routes and DNS.

use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tracing::{info, warn};

use nix::sys::signal::Signal;

use crate::dns::{self, ServerLine};
use crate::hooks::{Dhcp6Lease, DhcpLease, StaticUplink};
use crate::netlink::routes::{uplink_routes, MainPolicy, StaticRoute, Uplink};
use crate::netlink::{Netlink, NetlinkError};
use crate::pidfile;

/// Where things are on this host; the defaults are the installed paths.
#[derive(Debug, Clone)]
pub struct Context {
    pub client_bin: PathBuf,
    pub tas_socket: String,
    pub servers_file: PathBuf,
    pub dnsmasq_pid_file: PathBuf,
    /// Where dhclient keeps `dhclient.IFACE.pid` (ifupdown's convention).
    pub dhclient_pid_dir: PathBuf,
    /// ifupdown `source-directory` for dynamic stanzas.
    pub stanza_dir: PathBuf,
    /// Interface name patterns (`*` wildcard) that get a dynamic stanza.
    pub hotplug_patterns: Vec<String>,
    pub client_log: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("interface {0} does not exist")]
    NoInterface(String),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("{0} route changes failed (first: {1})")]
    Routes(usize, NetlinkError),
    #[error("table_allocator_client {path}: {source}")]
    Client {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Dns(#[from] dns::DnsError),
    #[error("router {0} does not answer")]
    RouterDown(IpAddr),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Context {
    /// Leases a table for the address through table_allocator_client, which
    /// installs the rules and stays behind to keep them. 0: none to be had.
    pub fn lease_table(
        &self,
        ifname: &str,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<u32, ApplyError> {
        let family = if address.is_ipv4() { "-4" } else { "-6" };
        let mut cmd = Command::new(&self.client_bin);
        // Values attached to their flags (`-iNAME`): an interface named
        // `-x` is then a value, not an option, for clap and getopt alike.
        cmd.arg(family)
            .arg(format!("-a{address}"))
            .arg(format!("-n{prefix_len}"))
            .arg(format!("-i{ifname}"))
            .arg(format!("-d{}", self.tas_socket))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        match &self.client_log {
            Some(log) => {
                cmd.arg("-l").arg(log);
            }
            None => {
                cmd.arg("-s");
            }
        }
        let err = |source| ApplyError::Client {
            path: self.client_bin.clone(),
            source,
        };
        let mut child = cmd.spawn().map_err(err)?;
        let mut out = String::new();
        // The client prints one line and closes stdout when it backgrounds.
        child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut out)
            .map_err(err)?;
        let status = child.wait().map_err(err)?;
        let table = out.trim().parse().unwrap_or(0);
        if table == 0 {
            let why = match status.code() {
                Some(1) => "the server refused or did not answer",
                Some(2) => "the client was called wrongly",
                _ => "the client failed",
            };
            let log = match &self.client_log {
                Some(p) => p.display().to_string(),
                None => "syslog, tag table_allocator_client".into(),
            };
            warn!(
                ifname,
                %address,
                status = %status,
                "no routing table for {address} on {ifname}: {why} (the client's log says which: {log}); \
                 its routes stay in main with the interface index as metric"
            );
        }
        Ok(table)
    }

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
                if !router_answers(&lease.ifname, address, *router).await {
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
        let table = self.lease_table(&lease.ifname, address, lease.prefix_len)?;
        self.routes(&nl, &uplink, table, MainPolicy::Move).await?;
        self.set_dns(&lease.ifname, address, &lease.dns)?;
        Ok(table)
    }

    /// dhclient -6 BOUND6/RENEW6/REBIND6/REBOOT6: the address with its
    /// lifetimes, its table and name servers. Its routes come from the
    /// interface's RAs, which `mhr ra` puts in every table of the interface.
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
        let table = self.lease_table(&lease.ifname, address, lease.prefix_len)?;
        self.set_dns(&lease.ifname, address, &lease.dns)?;
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
        self.remove_dns(ifname, dns::Scope::Source(IpAddr::V6(address)))
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
        let table = self.lease_table(&up.ifname, address, up.prefix_len)?;
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
        self.routes(&nl, &uplink, table, main).await?;
        self.set_dns(&up.ifname, address, &up.dns)?;
        Ok(table)
    }

    async fn routes(
        &self,
        nl: &Netlink,
        up: &Uplink,
        table: u32,
        main: MainPolicy,
    ) -> Result<(), ApplyError> {
        let plan = uplink_routes(up, table, main);
        let mut failed = nl.apply_routes(&plan).await;
        if failed.is_empty() {
            info!(
                ifindex = up.ifindex,
                table,
                routes = plan.add.len(),
                "routes configured"
            );
            Ok(())
        } else {
            for e in &failed {
                warn!("{e}");
            }
            let n = failed.len();
            Err(ApplyError::Routes(n, failed.remove(0)))
        }
    }

    /// Writes the interface's name servers to the servers file and tells
    /// dnsmasq; an empty list removes them.
    pub fn set_dns(
        &self,
        ifname: &str,
        source: IpAddr,
        servers: &[IpAddr],
    ) -> Result<(), ApplyError> {
        let lines: Vec<ServerLine> = servers
            .iter()
            .map(|s| ServerLine {
                server: *s,
                ifname: ifname.to_owned(),
                source,
            })
            .collect();
        let scope = match source {
            IpAddr::V4(_) => dns::Scope::Family(crate::addr::Family::Inet),
            IpAddr::V6(_) => dns::Scope::Source(source),
        };
        if dns::set_interface(&self.servers_file, ifname, scope, &lines)? {
            self.reload_dnsmasq();
        }
        Ok(())
    }

    /// Drops `ifname`'s name servers in `scope`.
    pub fn remove_dns(&self, ifname: &str, scope: dns::Scope) -> Result<(), ApplyError> {
        if dns::set_interface(&self.servers_file, ifname, scope, &[])? {
            self.reload_dnsmasq();
        }
        Ok(())
    }

    fn reload_dnsmasq(&self) {
        match dns::reload_dnsmasq(&self.dnsmasq_pid_file) {
            Ok(Some(pid)) => info!(pid, "dnsmasq told to reload its servers"),
            Ok(None) => warn!(
                pid_file = %self.dnsmasq_pid_file.display(),
                "no dnsmasq pid file: dnsmasq is not running, so the new name servers are not in use"
            ),
            Err(e) => warn!("{e}"),
        }
    }

    /// udev remove: stop the interface's dhclient, drop its DNS lines and its
    /// dynamic stanza. Carries on past failures and reports the first.
    pub fn hotplug_remove(&self, ifname: &str) -> Result<(), ApplyError> {
        let mut first: Option<ApplyError> = None;
        // ifupdown's names for the IPv4 and the IPv6 dhclient.
        for name in [
            format!("dhclient.{ifname}.pid"),
            format!("dhclient6.{ifname}.pid"),
        ] {
            let pid_file = self.dhclient_pid_dir.join(name);
            match pidfile::signal(&pid_file, pidfile::DHCLIENT, Signal::SIGTERM) {
                Ok(pidfile::Signalled::Sent { pid }) => {
                    info!(ifname, pid, "stopped dhclient");
                    let _ = std::fs::remove_file(&pid_file);
                }
                Ok(pidfile::Signalled::NoFile) => {}
                // A stale file goes; a foreign or absurd one is left for a
                // person to look at, and its process is left alone.
                Err(e @ pidfile::PidFileError::Stale { .. }) => {
                    warn!(ifname, "{e}");
                    let _ = std::fs::remove_file(&pid_file);
                }
                Err(e) => warn!(ifname, "{e}"),
            }
        }
        if let Err(e) = self.remove_dns(ifname, dns::Scope::Interface) {
            first.get_or_insert(e);
        }
        match std::fs::remove_file(self.stanza_dir.join(ifname)) {
            Ok(()) => info!(ifname, "removed dynamic stanza"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                first.get_or_insert(e.into());
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// udev add: an `iface IFACE inet dhcp` stanza for matching interfaces.
    /// Returns whether one was written.
    pub fn hotplug_add(&self, ifname: &str) -> Result<bool, ApplyError> {
        if !self
            .hotplug_patterns
            .iter()
            .any(|p| crate::patterns::glob_match(p, ifname))
        {
            tracing::debug!(ifname, patterns = ?self.hotplug_patterns, "no hotplug pattern matches: no stanza");
            return Ok(false);
        }
        std::fs::create_dir_all(&self.stanza_dir)?;
        let path = self.stanza_dir.join(ifname);
        // allow-hotplug: ifupdown's udev helper (ifupdown-hotplug, run after
        // our rule) brings up only interfaces marked so.
        crate::files::replace(
            &path,
            &format!("# written by `mhr hotplug add` (udev) for a hot-plugged uplink\nallow-hotplug {ifname}\niface {ifname} inet dhcp\n"),
        )?;
        info!(ifname, path = %path.display(), "hotplug pattern matches: wrote dynamic stanza");
        Ok(true)
    }
}

/// Does the router answer one echo from `source` through this interface?
/// (dhclient-script pings it for TIMEOUT; this is the tracker's probe.)
async fn router_answers(ifname: &str, source: IpAddr, router: IpAddr) -> bool {
    let probe = crate::track::probe::Probe {
        target: crate::track::config::Target::Icmp { address: router },
        source,
        device: ifname.to_owned(),
        timeout: std::time::Duration::from_secs(1),
        ident: std::process::id() as u16,
        seq: 1,
    };
    crate::track::probe::run(&probe).await.rtt.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(dir: &std::path::Path) -> Context {
        Context {
            client_bin: "/nonexistent".into(),
            tas_socket: "tas".into(),
            servers_file: dir.join("servers"),
            dnsmasq_pid_file: dir.join("dnsmasq.pid"),
            dhclient_pid_dir: dir.to_owned(),
            stanza_dir: dir.join("network-conf"),
            hotplug_patterns: vec!["ww*".into(), "enx*".into(), "usb*".into()],
            client_log: None,
        }
    }

    #[test]
    fn hotplug_stanzas_and_clean_up() {
        let dir = tempfile::tempdir().unwrap();
        let c = ctx(dir.path());
        assert!(c.hotplug_add("wwan0").unwrap());
        assert!(!c.hotplug_add("eth0").unwrap());
        // Debian's names for a WWAN modem and a USB Ethernet (HiLink) one.
        assert!(c.hotplug_add("wwp0s20u4i6").unwrap());
        assert!(c.hotplug_add("enx0c5b8f279a64").unwrap());
        let stanza = std::fs::read_to_string(dir.path().join("network-conf/wwan0")).unwrap();
        assert!(
            stanza.ends_with("allow-hotplug wwan0\niface wwan0 inet dhcp\n"),
            "{stanza}"
        );
        assert!(!dir.path().join("network-conf/eth0").exists());
        // A dhclient stand-in to stop (its comm must read "dhclient": a pid
        // file naming another program is not trusted), and DNS lines to drop.
        let fake = dir.path().join("dhclient");
        std::fs::copy("/bin/sleep", &fake).unwrap();
        let mut sleeper = Command::new(&fake).arg("30").spawn().unwrap();
        std::fs::write(
            dir.path().join("dhclient.wwan0.pid"),
            sleeper.id().to_string(),
        )
        .unwrap();
        c.set_dns(
            "wwan0",
            "10.0.0.2".parse().unwrap(),
            &["10.0.0.1".parse().unwrap()],
        )
        .unwrap();
        c.set_dns(
            "eth0",
            "10.1.0.2".parse().unwrap(),
            &["10.1.0.1".parse().unwrap()],
        )
        .unwrap();
        c.hotplug_remove("wwan0").unwrap();
        assert!(!sleeper.wait().unwrap().success(), "dhclient was signalled");
        assert!(!dir.path().join("network-conf/wwan0").exists());
        assert!(!dir.path().join("dhclient.wwan0.pid").exists());
        let servers = std::fs::read_to_string(dir.path().join("servers")).unwrap();
        assert_eq!(servers, "server=10.1.0.1@eth0@10.1.0.2\n");
        // Removing what is already gone is fine.
        c.hotplug_remove("wwan0").unwrap();
    }
}
