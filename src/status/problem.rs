//! What `mhr status` and `mhr doctor` find wrong, as data. Rendered to the
//! same text for people and for `--json` (an array of strings, stable), with
//! one line of advice each.

use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

use super::Status;
use crate::addr::Family;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The database holds a lease no rule of ours points at.
    LeaseWithoutRules {
        table: u32,
        address: IpAddr,
        ifname: String,
        family: Family,
    },
    /// Rules of ours point at a table no lease holds.
    RulesWithoutLease,
    RuleMissing {
        priority: u32,
    },
    /// A default route in main that is not ours, where we route.
    ForeignMainDefault {
        route: String,
    },
    /// Ours, left in main by the no-table fallback.
    FallbackDefault {
        route: String,
    },
    ServerSilent,
    DatabaseUnreadable {
        path: String,
        error: String,
    },
    TrackerStale {
        age_secs: i64,
    },
    /// `mhr agent` gave up moving an uplink's default out of main: a
    /// manager puts it back at once.
    MainKeptByManager {
        ifname: String,
        family: String,
    },
    /// systemd-networkd runs here with settings that make it delete the
    /// agent's rules (whenever it configures a link) or routes (when it
    /// restarts).
    NetworkdDeletesForeign {
        pid: u32,
        settings: Vec<String>,
    },
    /// `net.mptcp.enabled` is 0 while the agent is to keep endpoints.
    MptcpOff,
    /// Strict reverse-path filtering on an uplink drops subflows that
    /// arrive on another uplink than their reply would leave by.
    RpFilterStrict {
        ifname: String,
    },
    /// mptcpd manages endpoints too.
    MptcpdRuns {
        pid: u32,
    },
    /// NetworkManager keeps MPTCP endpoints on an uplink (its profile's
    /// `connection.mptcp-flags` is not `disabled`).
    NmManagesMptcp {
        ifname: String,
        profile: String,
        flags: String,
    },
    /// An endpoint the agent did not add covers an uplink's address.
    EndpointOfAnother {
        id: u8,
        address: IpAddr,
        ifname: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::LeaseWithoutRules {
                table,
                address,
                ifname,
                family,
            } => write!(
                f,
                "lease without rules: table {table} for {address} on {ifname} ({family}); the client holding it is gone"
            ),
            Problem::RulesWithoutLease => {
                f.write_str("rules without a lease: stale rules (mhr doctor can remove them)")
            }
            Problem::RuleMissing { priority } => write!(f, "rule at priority {priority} is missing"),
            Problem::ForeignMainDefault { route } => write!(
                f,
                "default route in main not ours: {route}: main (priority 32766) is consulted before the tracker's rule (50000) and the 91000 rules, so unbound and forwarded traffic leave by it whatever the tracker chose"
            ),
            Problem::FallbackDefault { route } => {
                write!(f, "default route left in main by the no-table fallback: {route}")
            }
            Problem::ServerSilent => f.write_str("the table allocator server does not answer"),
            Problem::DatabaseUnreadable { path, error } => {
                write!(f, "lease database {path} unreadable: {error}")
            }
            Problem::TrackerStale { age_secs } => write!(
                f,
                "the tracker's state is {age_secs} s old: the agent's tracker is not running (its unbound rule may be stale)"
            ),
            Problem::MainKeptByManager { ifname, family } => write!(
                f,
                "a manager keeps putting {ifname}'s {family} default route back into main: mhr agent leaves it there (the route is in the address's table too)"
            ),
            Problem::NetworkdDeletesForeign { pid, settings } => write!(
                f,
                "systemd-networkd (pid {pid}) runs with {}: it deletes the agent's rules whenever it configures a link, and its routes when it restarts (the agent puts them back, but traffic stalls meanwhile)",
                settings.join(" and ")
            ),
            Problem::MptcpOff => write!(f, "net.mptcp.enabled is 0: no MPTCP endpoints, no connection survives its uplink"),
            Problem::RpFilterStrict { ifname } => write!(f, "{ifname}: strict rp_filter (1) drops MPTCP subflows that come in on another uplink"),
            Problem::MptcpdRuns { pid } => write!(f, "mptcpd (pid {pid}) runs: it adds and removes MPTCP endpoints beside the agent, without health"),
            Problem::NmManagesMptcp { ifname, profile, flags } => write!(f, "NetworkManager manages MPTCP endpoints on {ifname} (profile {profile}, connection.mptcp-flags {flags}): on reapply it deletes the endpoints it did not add, the agent's among them"),
            Problem::EndpointOfAnother { id, address, ifname } => write!(f, "MPTCP endpoint id {id} for {address} on {ifname} is not the agent's (NetworkManager's or an admin's): the agent leaves that address without its own"),
        }
    }
}

impl Serialize for Problem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Problem {
    /// One line of advice.
    pub fn advice(&self) -> &'static str {
        match self {
            Problem::RulesWithoutLease => "remove them with `mhr doctor --repair`, or bring the interface up again so its hook leases a table",
            Problem::LeaseWithoutRules { .. } => "bring the interface up again (ifup / dhclient -n), or let the lease expire",
            Problem::RuleMissing { .. } => "stop the address's client (table_allocator_client -r ...) and bring the interface up again",
            Problem::ForeignMainDefault { .. } => "NetworkManager: `nmcli connection modify ID ipv4.never-default yes ipv6.never-default yes` (the hook still puts its routes in the table), or `ipv4.route-table`; ifupdown: drop `gateway` from the stanza (the hook adds it to the table); dhcpcd: `nogateway`; else `ip route del` it",
            Problem::FallbackDefault { .. } => "no table could be had when the interface came up: check the server, then renew the interface's lease",
            Problem::ServerSilent => "start the server: systemctl restart table-allocator-server",
            Problem::DatabaseUnreadable { .. } => "check db_path in the server config, or pass --db",
            Problem::TrackerStale { .. } => "start the agent with its tracker (systemctl start mhr-agent), or remove the tracker's state file",
            Problem::MptcpOff => "sysctl -w net.mptcp.enabled=1 (and in /etc/sysctl.d), or the agent's mptcp.enabled false",
            Problem::RpFilterStrict { .. } => "loose reverse-path filtering for uplinks: sysctl -w net.ipv4.conf.IFNAME.rp_filter=2 (and net.ipv4.conf.all.rp_filter=2 if all is 1)",
            Problem::MptcpdRuns { .. } => "one manager of endpoints: systemctl disable --now mptcp (mptcpd), or the agent's mptcp.enabled false",
            Problem::NmManagesMptcp { .. } => "nmcli connection modify PROFILE connection.mptcp-flags disabled (or connection.mptcp-flags=0x1 in a [connection] section of /etc/NetworkManager/conf.d), then reapply; or the agent's mptcp.enabled false",
            Problem::EndpointOfAnother { .. } => "NetworkManager: nmcli connection modify ID connection.mptcp-flags disabled; else ip mptcp endpoint delete id N (the agent then adds its own)",
            Problem::NetworkdDeletesForeign { .. } => "install /usr/lib/systemd/networkd.conf.d/multihomed-routing.conf (the package ships it: ManageForeignRoutingPolicyRules=no, ManageForeignRoutes=no), then `systemctl restart systemd-networkd`",
            Problem::MainKeptByManager { .. } => "give the manager a route table: NetworkManager `nmcli connection modify ID ipv4.route-table N` (ipv6.route-table), systemd-networkd `RouteTable=` in [DHCPv4]/[IPv6AcceptRA], dhcpcd `nogateway`; or list the interface in the agent's `copy_main`; then restart mhr-agent",
        }
    }
}

/// What `mhr doctor` prints: each problem with its advice (those of an
/// address prefixed with its table), then the DNS path's findings (`dns: `
/// lines, which say what to do themselves). Returns the text and how many
/// problems it holds.
pub fn doctor_report(st: &Status, dns: &[String]) -> (String, usize) {
    let mut out = String::new();
    let mut n = 0;
    let all = st
        .problems
        .iter()
        .map(|p| (String::new(), p))
        .chain(st.addresses.iter().flat_map(|a| {
            a.problems
                .iter()
                .map(move |p| (format!("table {} ({}): ", a.table, a.family), p))
        }));
    for (prefix, p) in all {
        out.push_str(&format!("{prefix}{p}\n  -> {}\n", p.advice()));
        n += 1;
    }
    for d in dns {
        out.push_str(&format!("DNS: {}\n", d.strip_prefix("dns: ").unwrap_or(d)));
        n += 1;
    }
    if n == 0 {
        out.push_str("no problems found\n");
    }
    (out, n)
}
