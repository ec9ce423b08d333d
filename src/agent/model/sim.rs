//! A simulated host for the model's tests: a kernel that carries out plans
//! and echoes events as the real one does (stamped with the applier's
//! port), an allocator server that grants the lowest free table, and a
//! clock that only moves when the test says.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{AddrId, Model, Snapshot};
use crate::agent::config::AgentConfig;
use crate::agent::plan::{Op, Outcome};
use crate::netlink::routes::{KernelRoute, RouteKey, MAIN_TABLE};
use crate::netlink::rules::{Downstream, RuleSpec, RT_PROTO};
use crate::netlink::{Event, HostAddr, LinkInfo};
use crate::protocol::{Action, LeaseKey, Reply};

pub const PORT: u32 = 4242;
/// Another process's netlink port (a manager deleting foreign rules).
pub const OTHER: u32 = 777;

#[derive(Default, Clone)]
pub struct Kernel {
    pub links: BTreeMap<u32, LinkInfo>,
    pub addrs: BTreeMap<AddrId, HostAddr>,
    pub rules: BTreeSet<RuleSpec>,
    pub routes: BTreeMap<RouteKey, KernelRoute>,
    pub endpoints: BTreeMap<u8, crate::netlink::mptcp::Endpoint>,
}

#[derive(Default, Clone)]
pub struct Server {
    pub leases: BTreeMap<LeaseKey, u32>,
    /// No answers while false.
    pub down: bool,
}

impl Server {
    fn answer(&mut self, key: LeaseKey, action: Action) -> Reply {
        match action {
            Action::Request => {
                let table = match self.leases.get(&key) {
                    Some(t) => *t,
                    None => {
                        let used: BTreeSet<u32> = self
                            .leases
                            .iter()
                            .filter(|(k, _)| k.family == key.family)
                            .map(|(_, t)| *t)
                            .collect();
                        let t = (10000..).find(|t| !used.contains(t)).expect("a table");
                        self.leases.insert(key, t);
                        t
                    }
                };
                Reply::Lease {
                    table,
                    lease_expires: 1_000_000 + 3600,
                }
            }
            Action::Release => {
                self.leases.remove(&key);
                Reply::released()
            }
        }
    }
}

pub struct Sim {
    pub model: Model,
    pub kernel: Kernel,
    pub server: Server,
    pub now: Instant,
}

pub fn config(extra: &str) -> AgentConfig {
    let track = if extra.contains("track:") {
        ""
    } else {
        ", track: null"
    };
    let text = format!("{{ interfaces: [\"wan*\", \"up*\"]{track} {extra} }}");
    AgentConfig::parse(&text, std::path::Path::new("agent.json")).unwrap()
}

pub fn route(dest: &str, len: u8, gw: Option<&str>, oif: u32, proto: u8) -> KernelRoute {
    KernelRoute {
        table: MAIN_TABLE,
        dest: dest.parse().unwrap(),
        prefix_len: len,
        gateway: gw.map(|g| g.parse().unwrap()),
        oif: Some(oif),
        protocol: proto,
        metric: None,
        src: None,
        link_scope: gw.is_none(),
        onlink: false,
        kind: Default::default(),
        hops: Vec::new(),
        expires: false,
    }
}

impl Sim {
    pub fn new(extra: &str) -> Sim {
        let model = Model::new(config(extra), Downstream::None, 50000, PORT);
        Sim {
            model,
            kernel: Kernel::default(),
            server: Server::default(),
            now: Instant::now(),
        }
    }

    /// A model started afresh on this kernel and server (a restart): it
    /// adopts what it finds.
    pub fn restart(&mut self, extra: &str) {
        self.model = Model::new(config(extra), Downstream::None, 50000, PORT);
        let snap = Snapshot {
            links: self.kernel.links.values().cloned().collect(),
            addrs: self.kernel.addrs.values().cloned().collect(),
            rules: self.kernel.rules.iter().cloned().collect(),
            routes: self.kernel.routes.values().cloned().collect(),
            mptcp: Some((
                self.kernel.endpoints.values().cloned().collect(),
                crate::netlink::mptcp::Limits {
                    subflows: 2,
                    add_addr_accepted: 0,
                },
            )),
        };
        self.model.resync(snap, true, self.now);
    }

    pub fn event(&mut self, ev: Event) {
        self.model.observe(ev, self.now);
    }

    pub fn link(&mut self, index: u32, name: &str) {
        let l = LinkInfo {
            index,
            name: name.into(),
            up: true,
        };
        self.kernel.links.insert(index, l.clone());
        self.event(Event::LinkChanged(l));
    }

    pub fn add_addr(&mut self, index: u32, addr: &str, plen: u8) {
        let a = HostAddr {
            index,
            address: addr.parse().unwrap(),
            prefix_len: plen,
            flags: 0,
            proto: None,
        };
        self.kernel.addrs.insert(
            AddrId {
                index,
                address: a.address,
            },
            a.clone(),
        );
        self.event(Event::AddressAdded(a));
    }

    pub fn del_addr(&mut self, index: u32, addr: &str) {
        let address: IpAddr = addr.parse().unwrap();
        self.kernel.addrs.remove(&AddrId { index, address });
        // The kernel drops routes through the link that used the address
        // (all of them once the link has no IPv4 address left).
        let left = self
            .kernel
            .addrs
            .keys()
            .any(|i| i.index == index && i.address.is_ipv4());
        self.kernel
            .routes
            .retain(|k, r| !(k.oif == index && (r.src == Some(address) || !left)));
        self.event(Event::AddressRemoved { index, address });
    }

    /// A route added by another process (a configurer).
    pub fn add_route(&mut self, r: KernelRoute, port: u32) {
        self.kernel.routes.insert(r.key(), r.clone());
        self.event(Event::RouteAdded { route: r, port });
    }

    /// Someone else deletes a rule.
    pub fn delete_rule(&mut self, r: &RuleSpec, port: u32) {
        if self.kernel.rules.remove(r) {
            self.event(Event::RuleRemoved {
                rule: r.clone(),
                port,
            });
        }
    }

    /// Plans until nothing is left to do: ops carried out, events echoed,
    /// the server answering.
    pub fn settle(&mut self) {
        for _ in 0..50 {
            let plan = self.model.reconcile(self.now);
            let mut events = Vec::new();
            for op in &plan.ops {
                let o = self.apply(op, &mut events);
                self.model.applied(op, &o, self.now);
            }
            for ev in events {
                self.model.observe(ev, self.now);
            }
            let sent = self.model.poll_transmits();
            let quiet = sent.is_empty() && plan.is_empty();
            if !self.server.down {
                for (id, req) in sent {
                    let reply = self.server.answer(req.key, req.action);
                    self.model.lease_reply(id, &reply, self.now, 1_000_000);
                }
            }
            self.model.poll_closed();
            self.model.answer_waiters(self.now);
            if quiet {
                return;
            }
        }
        panic!("the model does not settle");
    }

    /// Time passes (timers fire), then everything settles.
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.model.poll_timeout().filter(|t| *t <= until) {
            self.now = t.max(self.now);
            self.model.handle_timeout(self.now);
            self.settle();
        }
        self.now = until;
        self.settle();
    }

    fn apply(&mut self, op: &Op, events: &mut Vec<Event>) -> Outcome {
        let k = &mut self.kernel;
        let port = PORT;
        match op {
            Op::AddRule(r) => {
                if !k.rules.insert(r.clone()) {
                    return Outcome::Already;
                }
                events.push(Event::RuleAdded {
                    rule: r.clone(),
                    port,
                });
            }
            Op::DelRule(r) => {
                if !k.rules.remove(r) {
                    return Outcome::Already;
                }
                events.push(Event::RuleRemoved {
                    rule: r.clone(),
                    port,
                });
            }
            Op::PutRoute(spec, exp) => {
                let present = |a: &IpAddr| k.addrs.keys().any(|i| i.address == *a);
                if spec.src.is_some_and(|s| !present(&s)) {
                    return Outcome::Failed("Invalid argument".into());
                }
                let r = super::reconcile::kernel_route(spec, exp.is_some());
                k.routes.insert(spec.key(), r.clone());
                events.push(Event::RouteAdded { route: r, port });
            }
            Op::DelRoute(spec) => match k.routes.remove(&spec.key()) {
                Some(r) => events.push(Event::RouteRemoved { route: r, port }),
                None => return Outcome::Already,
            },
            Op::DelMain(r) => match k.routes.remove(&r.key()) {
                Some(r) => events.push(Event::RouteRemoved { route: r, port }),
                None => return Outcome::Already,
            },
            Op::Dns { .. } | Op::Solicit(_) => {}
            // The kernel's: one endpoint per id and per address.
            Op::AddEndpoint(e)
                if k.endpoints.contains_key(&e.id)
                    || k.endpoints.values().any(|o| o.address == e.address) =>
            {
                return Outcome::Failed("File exists".into());
            }
            Op::AddEndpoint(e) | Op::EndpointFlags(e) => {
                k.endpoints.insert(e.id, e.clone());
            }
            Op::DelEndpoint(e) => {
                k.endpoints.remove(&e.id);
            }
            Op::Limits(_) => {}
        }
        Outcome::Done
    }

    // What the user would check.

    /// `ip rule` of ours for an address: (priority, table).
    pub fn tables_from(&self, addr: &str) -> Vec<u32> {
        let a: IpAddr = addr.parse().unwrap();
        self.kernel
            .rules
            .iter()
            .filter(|r| r.from.is_some_and(|(f, _)| f == a))
            .map(|r| r.table)
            .collect()
    }

    /// `ip route show table T`.
    pub fn table(&self, t: u32) -> Vec<String> {
        let mut v: Vec<String> = self
            .kernel
            .routes
            .values()
            .filter(|r| r.table == t)
            .map(|r| {
                let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
                if r.prefix_len == 0 {
                    format!("default{via}")
                } else {
                    format!("{}/{}{via}", r.dest, r.prefix_len)
                }
            })
            .collect();
        v.sort();
        v
    }

    pub fn main_defaults(&self) -> usize {
        self.kernel
            .routes
            .values()
            .filter(|r| r.table == MAIN_TABLE && r.prefix_len == 0)
            .count()
    }

    /// Every rule and route of ours is for a present address's current
    /// table, each such address has its one `from` rule and its table the
    /// uplink's default; leases only for present addresses.
    pub fn assert_clean(&self, default_via: &str) {
        let present: BTreeSet<IpAddr> = self.kernel.addrs.keys().map(|i| i.address).collect();
        let mut tables = BTreeSet::new();
        for a in &present {
            let from = self.tables_from(&a.to_string());
            assert_eq!(from.len(), 1, "{a}: from rules {from:?}");
            let key = self.server.leases.iter().find(|(k, _)| k.address == *a);
            assert_eq!(
                key.map(|(_, t)| *t),
                Some(from[0]),
                "{a}: its lease is its table"
            );
            let routes = self.table(from[0]);
            assert!(
                routes.contains(&format!("default via {default_via}")),
                "{a}: table {} has {routes:?}",
                from[0]
            );
            tables.insert(from[0]);
        }
        for r in &self.kernel.rules {
            assert!(tables.contains(&r.table), "a stale rule: {r}");
        }
        for r in self.kernel.routes.values() {
            if r.protocol == RT_PROTO {
                assert!(
                    tables.contains(&r.table),
                    "a stale route in table {}",
                    r.table
                );
            }
        }
        for k in self.server.leases.keys() {
            assert!(
                present.contains(&k.address),
                "a lease of a gone address: {k}"
            );
        }
    }
}

/// A small deterministic random source for churn.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
