//! The agent's repairs: the pass that re-reads the kernel (every 30 s,
//! after an overrun, at start: adoption), stale rules of addresses that
//! went while it was down, and what stopping leaves behind.

use std::collections::HashSet;
use std::time::Duration;

use tracing::info;

use super::lease::AddrId;
use super::AgentError;
use crate::netlink::routes::{KernelRoute, MAIN_TABLE};
use crate::netlink::rules::RuleSpec;
use crate::netlink::{kernel_route, HostAddr};

use super::plan;
use super::service::{route_key, Agent, RouteKey};

impl Agent {
    /// Re-reads addresses, main's routes and our rules; repairs what
    /// drifted (missed events, a restart, someone deleting our rules).
    pub(super) async fn resync(&mut self) -> Result<(), AgentError> {
        let addrs = self.nl.all_addresses().await?;
        let mut main = Vec::new();
        // One dump per family serves both main's snapshot and the check of
        // every table below.
        let mut all: Vec<KernelRoute> = Vec::new();
        for family in [crate::addr::Family::Inet, crate::addr::Family::Inet6] {
            all.extend(
                self.nl
                    .routes(family)
                    .await?
                    .iter()
                    .filter_map(kernel_route),
            );
        }
        main.extend(all.iter().filter(|r| r.table == MAIN_TABLE).cloned());
        // Route events keep the tables in step; a full re-route is due only
        // when main drifted from what the events said (an overrun).
        let main_drifted = {
            let key = |v: &[KernelRoute]| {
                let mut k: Vec<RouteKey> = v.iter().map(route_key).collect();
                k.sort();
                k
            };
            key(&main) != key(&self.main)
        };
        self.main = main;
        let present: HashSet<AddrId> = addrs
            .iter()
            .map(|a| AddrId {
                index: a.index,
                address: a.address,
            })
            .collect();
        let gone: Vec<AddrId> = self
            .entries
            .keys()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.address_removed(id).await;
        }
        for a in addrs.iter().cloned() {
            self.address_added(a).await;
        }
        // Rules someone deleted come back, and routes a table lost (a link
        // that went down takes its routes from every table).
        let mut have: HashSet<RuleSpec> = HashSet::new();
        for family in [crate::addr::Family::Inet, crate::addr::Family::Inet6] {
            have.extend(self.nl.our_rules(family).await?);
        }
        let routes: HashSet<(u32, RouteKey)> =
            all.iter().map(|r| (r.table, route_key(r))).collect();
        let routed: Vec<AddrId> = self
            .entries
            .iter()
            .filter(|(id, e)| {
                e.table.is_some_and(|t| {
                    main_drifted
                        || !self.rules(id, e, t).iter().all(|r| have.contains(r))
                        || !plan::table_routes(
                            id.address,
                            e.prefix_len,
                            id.index,
                            t,
                            &self.main,
                            self.cfg.ra,
                        )
                        .iter()
                        .all(|spec| {
                            let key = (spec.ifindex, spec.dest, spec.prefix_len, spec.gateway);
                            routes.contains(&(t, key))
                        })
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for id in routed {
            self.route(id).await;
        }
        self.stale_rules(&addrs).await?;
        Ok(())
    }

    /// Our rules for an address the host no longer has (the agent was down
    /// when it went): the whole table's rules go, as its client would have
    /// removed them.
    pub(super) async fn stale_rules(&mut self, addrs: &[HostAddr]) -> Result<(), AgentError> {
        let present: HashSet<std::net::IpAddr> = addrs.iter().map(|a| a.address).collect();
        for family in [crate::addr::Family::Inet, crate::addr::Family::Inet6] {
            let rules = self.nl.our_rules(family).await?;
            for r in plan::stale_rules(&rules, &present) {
                if let Ok(true) = self.nl.del_rule(&r).await {
                    info!(rule = %r, "stale rule of an address that is gone: removed");
                }
            }
        }
        Ok(())
    }

    pub(super) async fn shutdown(&mut self, cleanup: bool) {
        let entries = std::mem::take(&mut self.entries);
        for (id, mut e) in entries {
            if let Some(h) = e.handle.take() {
                h.stop(cleanup);
            }
            if cleanup && e.hands_off.is_none() {
                if let Some(table) = e.table {
                    self.unroute(&id, &e, table).await;
                }
            }
        }
        // Let the lease tasks send their releases.
        if cleanup {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
