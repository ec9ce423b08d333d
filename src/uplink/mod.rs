//! What the hooks share. With `mhr agent` running, a hook reports what its
//! caller knows and waits for the agent's answer (`report`): the agent is
//! the one writer of tables, rules, main's moved routes and the servers
//! file. Without one, the seed's design: a table for the address leased
//! through table_allocator_client (which stays to own the rules, driving
//! the same lease keeper as the agent), the uplink's routes planned by the
//! same planner, and its name servers written here.

use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tracing::{info, warn};

use crate::control::{Request, HOOK_DEADLINE, NOT_MANAGED};
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
    /// The agent's control socket.
    pub agent_socket: PathBuf,
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
    #[error(transparent)]
    Agent(#[from] crate::control::ControlError),
    #[error("mhr agent: {0}")]
    AgentRefused(String),
}

/// What a report to the agent came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// The agent routed the address by this table (0: none to be had; its
    /// routes are in main).
    Table(u32),
    /// The agent answered (a DNS change, a release).
    Done,
    /// No agent runs, or it does not manage the interface: the caller does
    /// the work itself.
    NoAgent,
}

impl Uplinks {
    /// Hands `req` to a running agent and waits, with one hard deadline,
    /// for its answer.
    pub fn report(&self, req: &Request) -> Result<Reported, UplinkError> {
        let Some(reply) = crate::control::ask(&self.agent_socket, req, HOOK_DEADLINE)? else {
            return Ok(Reported::NoAgent);
        };
        match (reply.error, reply.table) {
            (Some(e), _) if e == NOT_MANAGED => Ok(Reported::NoAgent),
            (Some(e), Some(0)) => {
                warn!("mhr agent: {e}");
                Ok(Reported::Table(0))
            }
            (Some(e), _) => Err(UplinkError::AgentRefused(e)),
            (None, Some(t)) => Ok(Reported::Table(t)),
            (None, None) => Ok(Reported::Done),
        }
    }

    /// Leases a table for the address through table_allocator_client, which
    /// installs the rules and stays behind to keep them (no agent runs).
    /// 0: none to be had.
    pub fn lease_table(
        &self,
        ifname: &str,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<u32, UplinkError> {
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

    /// The interface's name servers: handed to the agent when it runs (the
    /// one writer of the servers file), else written here.
    pub fn dns(&self, ifname: &str, source: IpAddr, servers: &[IpAddr]) -> Result<(), UplinkError> {
        let req = Request::Dns {
            ifname: ifname.to_owned(),
            source,
            servers: servers.to_vec(),
        };
        match self.report(&req)? {
            Reported::NoAgent => self.set_dns(ifname, source, servers),
            _ => Ok(()),
        }
    }

    /// Forgets `ifname`'s name servers in `scope`, through the agent when
    /// it runs.
    pub fn forget_dns(&self, ifname: &str, scope: dns::Scope) -> Result<(), UplinkError> {
        let req = match scope {
            dns::Scope::Interface => Request::ForgetDns {
                ifname: ifname.to_owned(),
                family: None,
            },
            dns::Scope::Family(f) => Request::ForgetDns {
                ifname: ifname.to_owned(),
                family: Some(f.name().to_owned()),
            },
            dns::Scope::Source(source) => Request::Dns {
                ifname: ifname.to_owned(),
                source,
                servers: Vec::new(),
            },
        };
        match self.report(&req)? {
            Reported::NoAgent => self.remove_dns(ifname, scope),
            _ => Ok(()),
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

    /// SIGHUP to dnsmasq (after a change to the servers file).
    pub fn reload_dnsmasq(&self) {
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
