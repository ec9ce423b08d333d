//! The agent's decisions, pure: which addresses get a table, which routes
//! an address's table holds, which routes leave main, and when a manager
//! that keeps re-adding its routes has won. The service applies them.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::addr::{max_prefix, network};
use crate::netlink::routes::{KernelRoute, RouteSpec, MAIN_TABLE, PROTO_KERNEL, PROTO_RA};
use crate::netlink::rules::{RuleSpec, PRIO_FROM, RT_PROTO};
use crate::netlink::HostAddr;

/// Does this address get a table of its own? Global unicast addresses do;
/// temporary (privacy) ones follow their interface's table through the RA
/// handling instead.
pub fn wants_table(a: &HostAddr) -> bool {
    a.global() && !a.temporary()
}

/// Main's routes the RA handling owns when it runs: RA routes and the
/// kernel's expiring prefix routes; they go into tables with lifetimes.
fn ra_owned(r: &KernelRoute, ra: bool) -> bool {
    ra && (r.protocol == PROTO_RA || (r.protocol == PROTO_KERNEL && r.expires))
}

/// A route of main through an uplink that its tables need: unicast, not
/// ours, not the kernel's connected routes (each table gets its own
/// address's prefix), not what the RA handling installs itself.
fn uplink_route(r: &KernelRoute, ifindex: u32, family_v4: bool, ra: bool) -> bool {
    r.table == MAIN_TABLE
        && r.unicast
        && r.oif == Some(ifindex)
        && r.dest.is_ipv4() == family_v4
        && r.protocol != RT_PROTO
        && r.protocol != PROTO_KERNEL
        && !ra_owned(r, ra)
}

/// What the table of `address` (on `ifindex`) holds: the on-link prefix
/// and every uplink route of its family that main has through the
/// interface (defaults, gateways, static routes).
pub fn table_routes(
    address: IpAddr,
    prefix_len: u8,
    ifindex: u32,
    table: u32,
    main: &[KernelRoute],
    ra: bool,
) -> Vec<RouteSpec> {
    let mut out = Vec::new();
    if prefix_len < max_prefix(&address) {
        let mut onlink = RouteSpec::base(network(address, prefix_len), prefix_len, ifindex, table);
        onlink.link_scope = true;
        if address.is_ipv4() {
            onlink.src = Some(address);
        }
        out.push(onlink);
    }
    let own_prefix = (network(address, prefix_len), prefix_len);
    out.extend(
        main.iter()
            .filter(|r| uplink_route(r, ifindex, address.is_ipv4(), ra))
            // A configurer's own connected route (dhcpcd's `proto dhcp`):
            // the table has the prefix already.
            .filter(|r| r.gateway.is_some() || (r.dest, r.prefix_len) != own_prefix)
            .filter_map(|r| r.copy_to(table)),
    );
    out
}

/// Main's default routes through `ifindex` of `address`'s family, which
/// leave main once every address of that family on the interface has its
/// table (`all_have_tables`).
pub fn leaving_main(
    main: &[KernelRoute],
    ifindex: u32,
    v4: bool,
    all_have_tables: bool,
    ra: bool,
) -> Vec<KernelRoute> {
    if !all_have_tables {
        return Vec::new();
    }
    main.iter()
        .filter(|r| r.prefix_len == 0 && uplink_route(r, ifindex, v4, ra))
        .cloned()
        .collect()
}

/// Our rules for addresses the host no longer has (gone while the agent
/// was down): each such `from` rule (an expired privacy address's, say),
/// and every rule of a table none of whose `from` addresses is left.
pub fn stale_rules(rules: &[RuleSpec], present: &HashSet<IpAddr>) -> Vec<RuleSpec> {
    let mut tables: BTreeMap<u32, (bool, bool)> = BTreeMap::new();
    for r in rules.iter().filter(|r| r.priority == PRIO_FROM) {
        if let Some((a, _)) = r.from {
            let e = tables.entry(r.table).or_default();
            if present.contains(&a) {
                e.0 = true;
            } else {
                e.1 = true;
            }
        }
    }
    rules
        .iter()
        .filter(|r| match tables.get(&r.table) {
            // Only tables that lost a `from` address are touched.
            Some((kept, true)) => {
                !kept
                    || (r.priority == PRIO_FROM
                        && r.from.is_some_and(|(a, _)| !present.contains(&a)))
            }
            _ => false,
        })
        .cloned()
        .collect()
}

/// Default routes moved out of main per interface and family: when a
/// manager puts them back `limit` times within `window`, it is fighting us
/// and we stop moving them (the routes stay copied into the tables).
#[derive(Debug, Clone)]
pub struct FightBook {
    moves: VecDeque<Instant>,
    pub given_up: bool,
}

impl FightBook {
    pub fn new() -> FightBook {
        FightBook {
            moves: VecDeque::new(),
            given_up: false,
        }
    }

    /// Records a move at `now`; true when this one means giving up.
    pub fn record(&mut self, now: Instant, limit: u32, window: Duration) -> bool {
        if self.given_up {
            return false;
        }
        self.moves.push_back(now);
        while self
            .moves
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.moves.pop_front();
        }
        if self.moves.len() > limit as usize {
            self.given_up = true;
            return true;
        }
        false
    }
}

impl Default for FightBook {
    fn default() -> Self {
        FightBook::new()
    }
}

/// The setting that ends the fight, per manager.
pub fn fight_advice(ifname: &str, v4: bool) -> String {
    let fam = if v4 { "ipv4" } else { "ipv6" };
    format!(
        "something puts {ifname}'s default route back into main as soon as it is moved: \
         the agent leaves main alone for {ifname} from now on (the route stays in the \
         address's table). To have it out of main, tell the manager to use a table: \
         NetworkManager `nmcli connection modify <connection> {fam}.route-table <N>` \
         (or {fam}.never-default yes), systemd-networkd `RouteTable=` in [DHCPv4]/[IPv6AcceptRA], \
         dhcpcd `nogateway`; or list {ifname} in the agent's `copy_main`."
    )
}

#[cfg(test)]
mod tests;
