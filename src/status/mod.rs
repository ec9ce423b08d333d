//! `mhr status`: what we manage, as the kernel and the lease database see
//! it, with the inconsistencies a watchdog should act on. The assembly is
//! pure; `gather` reads netlink and the database (read-only).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::dns::ServerLine;
pub use crate::track::health::{Health, Unbound};

pub mod dns_path;
pub mod mptcp;
pub mod networkd;
pub mod nm;
mod problem;
pub use problem::{doctor_report, Problem};
mod prometheus;
use crate::addr::Family;
use crate::netlink::rules::{PRIO_BOUND_DEVICE, PRIO_FROM, PRIO_IIF_LO, PRIO_TO};
use crate::server::store::StoredLease;
pub use prometheus::prometheus;

/// One managed address. Field names are part of the `--json` interface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AddressStatus {
    pub family: String,
    pub table: u32,
    pub ifname: Option<String>,
    pub address: Option<IpAddr>,
    pub prefix_len: Option<u8>,
    /// Unix seconds, from the lease database.
    pub lease_expires: Option<i64>,
    pub rule_from: bool,
    pub rule_to: bool,
    pub rule_iif_lo: bool,
    pub rule_oif: bool,
    pub default_route: bool,
    pub dns_servers: Vec<IpAddr>,
    pub health: Option<Health>,
    /// The tracker's last probe error for this uplink (a dead target, a
    /// refused connection), when tracked.
    pub last_error: Option<String>,
    /// The gateway of the table's default route.
    pub gateway: Option<IpAddr>,
    /// The interface's operational state (`up`, `down`, `dormant`, …), as
    /// /sys/class/net says; null when the interface is gone.
    pub link: Option<String>,
    pub problems: Vec<Problem>,
}

impl AddressStatus {
    fn new(family: Family, table: u32) -> AddressStatus {
        AddressStatus {
            family: family.name().into(),
            table,
            ifname: None,
            address: None,
            prefix_len: None,
            lease_expires: None,
            rule_from: false,
            rule_to: false,
            rule_iif_lo: false,
            rule_oif: false,
            default_route: false,
            dns_servers: Vec::new(),
            health: None,
            last_error: None,
            gateway: None,
            link: None,
            problems: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub server_reachable: Option<bool>,
    pub lease_database: Option<String>,
    pub addresses: Vec<AddressStatus>,
    /// Default routes of ours in main: the no-table fallback is in use.
    pub fallback_default_routes: Vec<String>,
    pub problems: Vec<Problem>,
    pub unbound: Vec<Unbound>,
    /// `mhr agent`, when its state file is there.
    pub agent: Option<AgentView>,
}

/// What `mhr agent` keeps, from its state file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentView {
    /// It holds its control socket now.
    pub running: bool,
    /// This view came from the running agent (root asked it), not from
    /// the file it last wrote.
    pub live: bool,
    pub pid: u32,
    /// Unix seconds of the state (its last write, or now when live).
    pub updated: i64,
    /// Kernel dumps since it started: adoption, overruns and audits only.
    pub dumps: u64,
    /// Rules and routes of ours someone else deleted, put back.
    pub repairs: u64,
    /// MPTCP endpoints, ours and others'.
    pub endpoints: Vec<crate::control::AgentEndpoint>,
    /// Addresses it keeps a table for.
    pub addresses: usize,
    /// `IFNAME ADDRESS: why` for addresses it leaves to someone else.
    pub left_alone: Vec<String>,
    /// `IFNAME FAMILY` where a manager keeps the default route in main.
    pub main_kept: Vec<String>,
}

impl Status {
    pub fn consistent(&self) -> bool {
        self.problems.is_empty() && self.addresses.iter().all(|a| a.problems.is_empty())
    }
}

/// What the kernel holds that is ours.
#[derive(Debug, Clone, Default)]
pub struct KernelView {
    pub rules: Vec<crate::netlink::rules::RuleSpec>,
    /// (family, table) pairs whose table has a default route.
    pub tables_with_default: Vec<(Family, u32)>,
    pub fallback_default_routes: Vec<String>,
    /// Default routes in main that are not ours (NetworkManager's, dhcpcd's,
    /// ifupdown's `gateway`, the kernel's from RAs).
    pub foreign_main_defaults: Vec<String>,
    /// The gateway of each table's default route.
    pub gateways: Vec<((Family, u32), IpAddr)>,
}

pub fn assemble(
    kernel: &KernelView,
    leases: Option<&[StoredLease]>,
    dns: &[ServerLine],
    server_reachable: Option<bool>,
) -> Status {
    let mut by_table: BTreeMap<(Family, u32), AddressStatus> = BTreeMap::new();
    for r in &kernel.rules {
        let a = by_table
            .entry((r.family, r.table))
            .or_insert_with(|| AddressStatus::new(r.family, r.table));
        match r.priority {
            PRIO_FROM => {
                a.rule_from = true;
                a.address = r.from.map(|(ip, _)| ip);
            }
            PRIO_TO => {
                a.rule_to = true;
                a.prefix_len = r.to.map(|(_, l)| l);
            }
            // Downstream rules share the priority; they are extras.
            PRIO_IIF_LO if r.iif.as_deref() == Some("lo") => a.rule_iif_lo = true,
            PRIO_BOUND_DEVICE => {
                a.rule_oif = true;
                a.ifname = r.oif.clone();
            }
            _ => {}
        }
    }
    let mut problems = Vec::new();
    if let Some(leases) = leases {
        for l in leases {
            let family = match l.key.address {
                IpAddr::V4(_) => Family::Inet,
                IpAddr::V6(_) => Family::Inet6,
            };
            match by_table.get_mut(&(family, l.table)) {
                Some(a) => {
                    a.lease_expires = Some(l.expires_wall);
                    a.ifname.get_or_insert_with(|| l.key.ifname.to_string());
                    // A table can have several `from` rules (privacy
                    // addresses); the lease names the address it is for.
                    a.address = Some(l.key.address);
                }
                None => problems.push(Problem::LeaseWithoutRules {
                    table: l.table,
                    address: l.key.address,
                    ifname: l.key.ifname.to_string(),
                    family: l.key.family,
                }),
            }
        }
    }
    for ((family, table), a) in by_table.iter_mut() {
        a.default_route = kernel.tables_with_default.contains(&(*family, *table));
        a.gateway = kernel
            .gateways
            .iter()
            .find(|(k, _)| *k == (*family, *table))
            .map(|(_, g)| *g);
        if leases.is_some() && a.lease_expires.is_none() {
            a.problems.push(Problem::RulesWithoutLease);
        }
        for (present, prio) in [
            (a.rule_from, PRIO_FROM),
            (a.rule_to, PRIO_TO),
            (a.rule_iif_lo, PRIO_IIF_LO),
            (a.rule_oif, PRIO_BOUND_DEVICE),
        ] {
            if !present {
                a.problems.push(Problem::RuleMissing { priority: prio });
            }
        }
        if let (Some(ifname), Some(addr)) = (&a.ifname, a.address) {
            a.dns_servers = dns
                .iter()
                .filter(|d| &d.ifname == ifname && d.source == addr)
                .map(|d| d.server)
                .collect();
        }
    }
    // Only a problem where we route something: then it defeats us.
    if !kernel.rules.is_empty() {
        for r in &kernel.foreign_main_defaults {
            problems.push(Problem::ForeignMainDefault { route: r.clone() });
        }
    }
    for r in &kernel.fallback_default_routes {
        problems.push(Problem::FallbackDefault { route: r.clone() });
    }
    if server_reachable == Some(false) {
        problems.push(Problem::ServerSilent);
    }
    Status {
        server_reachable,
        lease_database: None,
        addresses: by_table.into_values().collect(),
        fallback_default_routes: kernel.fallback_default_routes.clone(),
        problems,
        unbound: Vec::new(),
        agent: None,
    }
}

/// The (family, table) pairs whose rules have no lease: stale, ours to
/// remove.
pub fn stale_tables(st: &Status) -> Vec<(Family, u32)> {
    st.addresses
        .iter()
        .filter(|a| {
            a.problems
                .iter()
                .any(|p| matches!(p, Problem::RulesWithoutLease))
        })
        .filter_map(|a| {
            let f = Family::ALL.into_iter().find(|f| f.name() == a.family)?;
            Some((f, a.table))
        })
        .collect()
}

/// Reads our rules and routes from the kernel.
pub async fn kernel_view(
    nl: &crate::netlink::Netlink,
) -> Result<KernelView, crate::netlink::NetlinkError> {
    let mut view = KernelView::default();
    for family in [Family::Inet, Family::Inet6] {
        let rules = nl.our_rules(family).await?;
        // One dump of every table, not one per table.
        for r in nl.routes(family).await? {
            if r.header.destination_prefix_length != 0 {
                continue;
            }
            let table = crate::netlink::route_table(&r);
            if rules.iter().any(|rule| rule.table == table) {
                view.tables_with_default.push((family, table));
                if let Some(gw) = crate::netlink::route_gateway(&r) {
                    view.gateways.push(((family, table), gw));
                }
            } else if table == crate::netlink::routes::MAIN_TABLE {
                if crate::netlink::is_ours(&r) {
                    view.fallback_default_routes
                        .push(crate::netlink::describe_route(&r));
                } else {
                    view.foreign_main_defaults
                        .push(crate::netlink::describe_route(&r));
                }
            }
        }
        view.rules.extend(rules);
    }
    Ok(view)
}

mod render;
pub mod route;
pub use render::render;

/// Each address's link state, from /sys/class/net (the namespace's own).
pub fn add_links(st: &mut Status) {
    for a in st.addresses.iter_mut() {
        a.link = a.ifname.as_deref().and_then(|i| {
            std::fs::read_to_string(format!("/sys/class/net/{i}/operstate"))
                .ok()
                .map(|s| s.trim().to_owned())
        });
    }
}

/// Keeps the addresses on interfaces matching `patterns` (`*` wildcard);
/// none keeps all.
pub fn filter(st: &mut Status, patterns: &[String]) {
    if patterns.is_empty() {
        return;
    }
    st.addresses.retain(|a| {
        a.ifname
            .as_deref()
            .is_some_and(|i| patterns.iter().any(|p| crate::patterns::glob_match(p, i)))
    });
}

/// The tracker's state older than this is a tracker that stopped.
pub const TRACK_STATE_MAX_AGE: i64 = 10;

/// Adds the tracker's view: health per address and the unbound rules. A
/// state file the tracker stopped updating is reported, not shown.
pub fn add_health(st: &mut Status, track: Option<&crate::track::TrackState>, now_unix: i64) {
    let Some(track) = track else {
        return;
    };
    if now_unix - track.updated > TRACK_STATE_MAX_AGE {
        st.problems.push(Problem::TrackerStale {
            age_secs: now_unix - track.updated,
        });
        return;
    }
    for a in st.addresses.iter_mut() {
        let u = track
            .uplinks
            .iter()
            .find(|u| u.family == a.family && u.table == a.table)
            // The tracker probes one address per link and family; the
            // others share its verdict.
            .or_else(|| {
                track
                    .uplinks
                    .iter()
                    .find(|u| u.family == a.family && a.ifname.as_deref() == Some(&u.ifname))
            });
        a.health = u.map(|u| u.health.clone());
        a.last_error = u.and_then(|u| u.last_error.clone());
    }
    st.unbound = track.unbound.clone();
}

#[cfg(test)]
pub(crate) mod tests;
