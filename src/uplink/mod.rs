//! The uplink service the hooks and the RA agent share: a table for an
//! address (leased through table_allocator_client, which then stays to own
//! the rules), the uplink's routes in that table, and its name servers for
//! dnsmasq. Neither caller reaches into the other.

mod agent;

pub use agent::{
    agent_running, ask_agent, ask_control, Control, ControlReply, AGENT_NAME, CONTROL_MAX,
};

use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tracing::{info, warn};

use crate::dns::{self, ServerLine};
use crate::netlink::routes::{uplink_routes, MainPolicy, Uplink};
use crate::netlink::{Netlink, NetlinkError};

/// Where the shared parts are on this host; the defaults are the installed
/// paths.
#[derive(Debug, Clone)]
pub struct Uplinks {
    pub client_bin: PathBuf,
    pub tas_socket: String,
    pub servers_file: PathBuf,
    pub dnsmasq_pid_file: PathBuf,
    pub client_log: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
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
}

impl Uplinks {
    /// Leases a table for the address through table_allocator_client, which
    /// installs the rules and stays behind to keep them. 0: none to be had.
    pub fn lease_table(
        &self,
        ifname: &str,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<u32, UplinkError> {
        // With the agent running, it keeps the address's lease: ask it.
        if agent_running() {
            if let Some(table) = ask_agent(ifname, address) {
                info!(ifname, %address, table, "table from mhr agent");
                return Ok(table);
            }
        }
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
        let err = |source| UplinkError::Client {
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

    pub async fn routes(
        &self,
        nl: &Netlink,
        up: &Uplink,
        table: u32,
        main: MainPolicy,
    ) -> Result<(), UplinkError> {
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
            Err(UplinkError::Routes(n, failed.remove(0)))
        }
    }

    /// Writes the interface's name servers to the servers file and tells
    /// dnsmasq; an empty list removes them.
    pub fn set_dns(
        &self,
        ifname: &str,
        source: IpAddr,
        servers: &[IpAddr],
    ) -> Result<(), UplinkError> {
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
    pub fn remove_dns(&self, ifname: &str, scope: dns::Scope) -> Result<(), UplinkError> {
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
}
