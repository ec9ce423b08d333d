//! The agent's state and handlers: an address added or gone, a lease
//! report, a route in main; each applies `plan`'s decisions through
//! `netlink`. `run` feeds them; `repair` re-reads the kernel.

use std::collections::{BTreeMap, HashMap, HashSet};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::config::{AgentConfig, MainMode};
use super::lease::{self, AddrId, Report};
use super::plan::{self, FightBook};
use crate::addr::family_of;
use crate::client::ClientConfig;
use crate::dns::Scope;
use crate::netlink::routes::{KernelRoute, MAIN_TABLE};
use crate::netlink::rules::{address_rules, AddressSpec, Downstream, RuleSpec};
use crate::netlink::{is_ours, route_message, HostAddr, Netlink};
use crate::protocol::LeaseKey;
use crate::uplink::Uplinks;

pub(super) struct Entry {
    pub ifname: String,
    pub prefix_len: u8,
    pub table: Option<u32>,
    pub lease_expires: u64,
    pub(super) handle: Option<lease::Handle>,
    pub(super) since: Instant,
    /// Left alone: held by a standalone client, or released on request.
    pub hands_off: Option<&'static str>,
}

/// What a route is, for telling our own deletions from others'.
pub(super) type RouteKey = (u32, std::net::IpAddr, u8, Option<std::net::IpAddr>);

pub(super) fn route_key(r: &KernelRoute) -> RouteKey {
    (r.oif.unwrap_or(0), r.dest, r.prefix_len, r.gateway)
}

pub(super) struct Agent {
    pub cfg: AgentConfig,
    pub(super) downstream: Downstream,
    pub(super) uplinks: Uplinks,
    pub(super) server_uid: u32,
    pub(super) nl: Netlink,
    pub(super) names: HashMap<u32, String>,
    pub entries: BTreeMap<AddrId, Entry>,
    pub(super) main: Vec<KernelRoute>,
    pub fights: BTreeMap<(u32, bool), FightBook>,
    pub(super) moved: HashSet<RouteKey>,
    pub(super) tx: mpsc::UnboundedSender<(AddrId, Report)>,
    pub dirty: bool,
    /// Refusal warnings: at most a few a minute.
    pub(super) refusal_log: crate::ratelimit::RateLimit,
}

impl Agent {
    pub(super) async fn name(&mut self, index: u32) -> Option<String> {
        if let Some(n) = self.names.get(&index) {
            return Some(n.clone());
        }
        let n = self.nl.link_name(index).await.ok().flatten()?;
        self.names.insert(index, n.clone());
        Some(n)
    }

    pub(super) fn client_config(&self, ifname: &str, a: &HostAddr) -> Option<ClientConfig> {
        let key = LeaseKey::new(family_of(&a.address), ifname, &a.address.to_string()).ok()?;
        Some(ClientConfig {
            key,
            prefix_len: a.prefix_len,
            tag: None,
            server: self.uplinks.tas_socket.clone(),
            padded: self.cfg.padded,
            attempts: self.cfg.attempts,
            retry: self.cfg.retry,
            server_uid: self.server_uid,
            tables: self.cfg.tables,
            downstream: self.downstream.clone(),
        })
    }

    pub(super) fn rules(&self, id: &AddrId, e: &Entry, table: u32) -> Vec<RuleSpec> {
        let spec = AddressSpec {
            ifname: e.ifname.clone(),
            address: id.address,
            prefix_len: e.prefix_len,
        };
        address_rules(&spec, table, &self.downstream)
    }

    pub(super) async fn address_added(&mut self, a: HostAddr) {
        if !plan::wants_table(&a) {
            return;
        }
        let id = AddrId {
            index: a.index,
            address: a.address,
        };
        if self.entries.contains_key(&id) {
            return;
        }
        let Some(ifname) = self.name(a.index).await else {
            return;
        };
        if !self.cfg.manages(&ifname) {
            return;
        }
        let Some(cc) = self.client_config(&ifname, &a) else {
            return;
        };
        let handle = lease::spawn(id, cc, self.tx.clone());
        self.entries.insert(
            id,
            Entry {
                ifname,
                prefix_len: a.prefix_len,
                table: None,
                lease_expires: 0,
                handle: Some(handle),
                since: Instant::now(),
                hands_off: None,
            },
        );
        self.dirty = true;
    }

    pub(super) async fn address_removed(&mut self, id: AddrId) {
        let Some(mut e) = self.entries.remove(&id) else {
            return;
        };
        self.dirty = true;
        if let Some(h) = e.handle.take() {
            h.stop(true);
        }
        if e.hands_off.is_some() {
            return;
        }
        if let Some(table) = e.table {
            self.unroute(&id, &e, table).await;
            info!(ifname = %e.ifname, address = %id.address, table, "address gone: rules and routes removed, lease released");
        }
        let _ = self
            .uplinks
            .remove_dns(&e.ifname, Scope::Source(id.address));
    }

    /// Rules and our routes of `table` go.
    pub(super) async fn unroute(&self, id: &AddrId, e: &Entry, table: u32) {
        for r in self.rules(id, e, table) {
            if let Err(err) = self.nl.del_rule(&r).await {
                warn!("{err}");
            }
        }
        if let Ok(routes) = self.nl.routes_in(family_of(&id.address), table).await {
            for m in routes.into_iter().filter(is_ours) {
                let _ = self.nl.del_route(m).await;
            }
        }
    }

    pub(super) async fn report(&mut self, id: AddrId, r: Report) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        self.dirty = true;
        match r {
            Report::Granted {
                table,
                lease_expires,
                routed,
            } => {
                let old = e.table.replace(table);
                e.lease_expires = lease_expires;
                let took = e.since.elapsed();
                let ifname = e.ifname.clone();
                if let Some(old) = old.filter(|o| *o != table) {
                    let e = &self.entries[&id];
                    self.unroute(&id, e, old).await;
                }
                self.route(id).await;
                let _ = routed.send(());
                info!(%ifname, address = %id.address, table, ms = took.as_secs_f64() * 1000.0, "address routed by its own table");
            }
            Report::Refused(why) => {
                // A full pool refuses every address again at every pass.
                if let crate::ratelimit::Verdict::Log { suppressed } =
                    self.refusal_log.check(Instant::now())
                {
                    warn!(ifname = %e.ifname, address = %id.address, earlier = suppressed, "no table: {why}; its routes stay in main (asked again at the next pass)");
                }
                self.entries.remove(&id);
            }
            Report::Busy => {
                info!(ifname = %e.ifname, address = %id.address, "a table_allocator_client already keeps this address: left to it");
                e.hands_off = Some("kept by a table_allocator_client");
                e.handle = None;
            }
            Report::ReleaseAsked => {
                e.hands_off = Some("released on request");
                e.handle = None;
                if let Some(table) = e.table.take() {
                    let e = &self.entries[&id];
                    self.unroute(&id, e, table).await;
                }
            }
        }
    }

    /// Rules, the table's routes, and main's defaults moved: everything an
    /// address with a table needs, idempotent.
    pub(super) async fn route(&mut self, id: AddrId) {
        let Some(e) = self.entries.get(&id) else {
            return;
        };
        let Some(table) = e.table else { return };
        for r in self.rules(&id, e, table) {
            if let Err(err) = self.nl.add_rule(&r).await {
                warn!("{err}");
            }
        }
        for spec in plan::table_routes(
            id.address,
            e.prefix_len,
            id.index,
            table,
            &self.main,
            self.cfg.ra,
        ) {
            if let Err(err) = self.nl.replace_route(route_message(&spec)).await {
                warn!(table, "{err}");
            }
        }
        self.move_main(id.index, id.address.is_ipv4()).await;
    }

    /// Main's default routes through `index` leave main once every address
    /// of the family there has a table; a manager that keeps putting them
    /// back wins after `fight_limit` re-adds.
    pub(super) async fn move_main(&mut self, index: u32, v4: bool) {
        let Some(ifname) = self.name(index).await else {
            return;
        };
        if self.cfg.main_mode(&ifname) == MainMode::Copy {
            return;
        }
        if self.fights.get(&(index, v4)).is_some_and(|b| b.given_up) {
            return;
        }
        let all = self
            .entries
            .iter()
            .filter(|(id, _)| id.index == index && id.address.is_ipv4() == v4)
            .all(|(_, e)| e.table.is_some() || e.hands_off.is_some());
        for r in plan::leaving_main(&self.main, index, v4, all, self.cfg.ra) {
            let key = route_key(&r);
            if self.moved.contains(&key) {
                let book = self.fights.entry((index, v4)).or_default();
                if book.record(
                    Instant::now().into_std(),
                    self.cfg.fight_limit,
                    self.cfg.fight_window,
                ) {
                    warn!(%ifname, "{}", plan::fight_advice(&ifname, v4));
                    self.dirty = true;
                    return;
                }
            }
            let Some(spec) = r.spec() else { continue };
            match self.nl.del_route(route_message(&spec)).await {
                Ok(_) => {
                    self.moved.insert(key);
                    self.main.retain(|m| route_key(m) != key);
                    info!(%ifname, route = %spec, "uplink default moved out of main");
                }
                Err(e) => warn!("{e}"),
            }
        }
    }

    pub(super) async fn main_route(&mut self, r: KernelRoute, added: bool) {
        if r.table != MAIN_TABLE {
            return;
        }
        let key = route_key(&r);
        let before = self.main.clone();
        self.main.retain(|m| route_key(m) != key);
        let Some(index) = r.oif else { return };
        let ids: Vec<(AddrId, u32)> = self
            .entries
            .iter()
            .filter(|(id, _)| id.index == index && id.address.is_ipv4() == r.dest.is_ipv4())
            .filter_map(|(id, e)| Some((*id, e.table?)))
            .collect();
        if !added {
            // Our own move out of main is not a removal; anything else (an
            // admin's `ip route del`, a configurer dropping a route) takes
            // the copies with it.
            // Only what the table held because main had it goes (not the
            // address's own prefix when the kernel's connected route goes).
            if !self.moved.contains(&key) {
                for (id, table) in &ids {
                    let e = &self.entries[id];
                    let plan = |main: &[KernelRoute]| {
                        plan::table_routes(
                            id.address,
                            e.prefix_len,
                            id.index,
                            *table,
                            main,
                            self.cfg.ra,
                        )
                    };
                    let after = plan(&self.main);
                    for gone in plan(&before).into_iter().filter(|s| !after.contains(s)) {
                        let _ = self.nl.del_route(route_message(&gone)).await;
                    }
                }
            }
            return;
        }
        self.main.push(r.clone());
        for (id, _) in ids {
            self.route(id).await;
        }
    }
}
