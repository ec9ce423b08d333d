//! RA routes: into every table of the interface with the RA's lifetimes
//! (a zero lifetime deletes), and the kernel's own copies out of main.

use std::net::IpAddr;
use std::time::Duration;

use tracing::{info, warn};

use crate::netlink::routes::{Origin, RouteSpec, MAIN_TABLE};
use crate::netlink::{route_message, route_table};
use crate::ra::{self, RaRoute};

use super::agent::Agent;

impl Agent {
    fn route(index: u32, table: u32, r: &RaRoute) -> RouteSpec {
        let mut spec = RouteSpec::base(IpAddr::V6(r.dest), r.len, index, table);
        spec.gateway = r.via.map(IpAddr::V6);
        spec
    }

    /// Installs routes with lifetimes in `table`; a zero lifetime deletes.
    pub(super) async fn install(&self, index: u32, table: u32, routes: &[(RaRoute, Duration)]) {
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

    /// The kernel's RA routes in main on a managed interface: the tables
    /// have them (from the RAs this agent reads, within its limits); main
    /// must not. While the interface has no table yet they stay in main, so
    /// the uplink is not left without a route meanwhile.
    pub(super) async fn main_route(&mut self, m: rtnetlink::packet_route::route::RouteMessage) {
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
        let tables = match self.our_tables().await {
            Ok(t) => t.get(&ifname).cloned().unwrap_or_default(),
            Err(e) => return warn!("{e}"),
        };
        if tables.is_empty() {
            return;
        }
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
