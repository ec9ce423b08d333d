//! The agent's route decisions, pure: which addresses get a table, which
//! of main's routes are an uplink's (and so belong in its tables), which
//! leave main, and when a manager that keeps re-adding them has won.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::addr::{max_prefix, network};
use crate::netlink::routes::{KernelRoute, RouteSpec, MAIN_TABLE, PROTO_KERNEL, PROTO_RA};
use crate::netlink::rules::RT_PROTO;
use crate::netlink::HostAddr;

/// Does this address get a table of its own? Global unicast addresses do;
/// temporary (privacy) ones follow their interface's table instead.
pub fn wants_table(a: &HostAddr) -> bool {
    a.global() && !a.temporary()
}

/// Main's routes the RA handling owns when it runs: RA routes and the
/// kernel's expiring prefix routes; they go into tables with lifetimes.
pub fn ra_owned(r: &KernelRoute, ra: bool) -> bool {
    let link_local = matches!(r.dest, IpAddr::V6(d) if d.is_unicast_link_local());
    ra && r.dest.is_ipv6()
        && (r.protocol == PROTO_RA
            || (r.protocol == PROTO_KERNEL
                && r.expires
                && (1..128).contains(&r.prefix_len)
                && !link_local))
}

/// A route of main through an uplink that its tables need: unicast, not
/// ours, not the kernel's connected routes (each table gets its own
/// address's prefix), not what the RA handling installs itself.
pub fn uplink_route(r: &KernelRoute, ra: bool) -> bool {
    r.table == MAIN_TABLE
        && r.kind == crate::netlink::routes::RouteKind::Unicast
        && r.hops.is_empty()
        && r.oif.is_some()
        && r.protocol != RT_PROTO
        && r.protocol != PROTO_KERNEL
        && !ra_owned(r, ra)
}

/// The on-link prefix route of an address's own table (none for a /32 or
/// /128, a point-to-point lease).
pub fn onlink(address: IpAddr, prefix_len: u8, ifindex: u32, table: u32) -> Option<RouteSpec> {
    (prefix_len < max_prefix(&address)).then(|| {
        let mut r = RouteSpec::base(network(address, prefix_len), prefix_len, ifindex, table);
        r.link_scope = true;
        if address.is_ipv4() {
            r.src = Some(address);
        }
        r
    })
}

/// Can a route learned from main go into the table of `address`? Its
/// gateway must be reachable there: on the address's own prefix (IPv4),
/// flagged on-link, or link-local (IPv6 routers are).
pub fn fits(r: &KernelRoute, address: IpAddr, prefix_len: u8) -> bool {
    if r.dest.is_ipv4() != address.is_ipv4() {
        return false;
    }
    // A configurer's own connected route (dhcpcd's `proto dhcp`): the
    // table has the prefix already.
    let own = (network(address, prefix_len), prefix_len);
    if r.gateway.is_none() && (r.dest, r.prefix_len) == own {
        return false;
    }
    match r.gateway {
        None => true,
        Some(_) if r.onlink => true,
        Some(IpAddr::V6(_)) => true,
        Some(g) => prefix_len == max_prefix(&address) || network(g, prefix_len) == own.0,
    }
}

/// Default routes moved out of main per interface and family: when a
/// manager puts them back `limit` times within `window`, it is fighting us
/// and we stop moving them (the routes stay copied into the tables).
#[derive(Debug, Clone, Default)]
pub struct FightBook {
    moves: VecDeque<Instant>,
    pub given_up: bool,
}

impl FightBook {
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
