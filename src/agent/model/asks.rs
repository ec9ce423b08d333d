//! Control requests: hooks report what they know, askers wait (with one
//! deadline) for an address to be routed.

use std::net::IpAddr;
use std::time::Instant;

use tracing::info;

use super::{fam, AddrId, Model};
use crate::addr::Family;
use crate::agent::plan::Op;
use crate::control::{Reply, Request, UplinkReport, NOT_MANAGED};
use crate::dns::Scope;

/// A control request waiting for an address to be routed.
#[derive(Debug, Clone)]
pub struct Waiter {
    pub id: u64,
    pub addr: AddrId,
    pub deadline: Instant,
}

/// What the model says to a control request at once.
#[derive(Debug)]
pub enum Answer {
    Now(Reply),
    /// Answered later through `poll_answers`.
    Later,
}

impl Model {
    /// A control request; `id` names it for a later answer.
    pub fn control(&mut self, id: u64, req: Request, now: Instant) -> Answer {
        self.settled = self.settled && matches!(req, Request::Status);
        match req {
            Request::Uplink(r) => self.report(id, r, now),
            Request::Dns {
                ifname,
                source,
                servers,
            } => {
                if self.link_by_name(&ifname).is_none() {
                    return Answer::Now(Reply::error(format!("interface {ifname} does not exist")));
                }
                let scope = match source {
                    IpAddr::V4(_) => Scope::Family(Family::Inet),
                    IpAddr::V6(_) => Scope::Source(source),
                };
                info!(%ifname, %source, servers = servers.len(), "name servers from a hook");
                self.pending.push(Op::Dns {
                    ifname,
                    scope,
                    source,
                    servers,
                });
                Answer::Now(Reply::ok())
            }
            Request::ForgetDns { ifname, family } => {
                let scope = match family.as_deref() {
                    None => Scope::Interface,
                    Some("inet") => Scope::Family(Family::Inet),
                    Some("inet6") => Scope::Family(Family::Inet6),
                    Some(f) => return Answer::Now(Reply::error(format!("no family {f:?}"))),
                };
                self.pending.push(Op::Dns {
                    ifname,
                    scope,
                    source: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                    servers: Vec::new(),
                });
                Answer::Now(Reply::ok())
            }
            Request::Table { ifname, address } => match self.managed_id(&ifname, address) {
                Some(addr) => {
                    // Asked again after a release: leased again, as the
                    // original client would.
                    self.lease_again(addr, now);
                    self.wait(id, addr, now)
                }
                None => Answer::Now(Reply::error(NOT_MANAGED)),
            },
            Request::Release { ifname, address } => match self.managed_id(&ifname, address) {
                Some(addr) => {
                    self.release(addr, now);
                    Answer::Now(Reply::ok())
                }
                None => Answer::Now(Reply::error(NOT_MANAGED)),
            },
            Request::Status => Answer::Now(Reply::ok()),
        }
    }

    fn managed_id(&self, ifname: &str, address: IpAddr) -> Option<AddrId> {
        let index = self.link_by_name(ifname)?;
        self.links[&index]
            .managed
            .then_some(AddrId { index, address })
    }

    fn report(&mut self, n: u64, r: UplinkReport, now: Instant) -> Answer {
        let Some(id) = self.managed_id(&r.ifname, r.address) else {
            return Answer::Now(Reply::error(NOT_MANAGED));
        };
        let v4 = r.address.is_ipv4();
        let link = self.links.get_mut(&id.index).expect("managed");
        if r.keep_main {
            link.keep_main[fam(v4)] = true;
        }
        let scope = if v4 {
            Scope::Family(Family::Inet)
        } else {
            Scope::Source(r.address)
        };
        self.pending.push(Op::Dns {
            ifname: r.ifname.clone(),
            scope,
            source: r.address,
            servers: r.dns.clone(),
        });
        link.reported.insert(r.address, r);
        // A renewal's report: routed already, unless it is left alone.
        self.lease_again(id, now);
        self.wait(n, id, now)
    }

    /// An address left alone (released on request) gets a lease again.
    fn lease_again(&mut self, id: AddrId, now: Instant) {
        let Some(a) = self.addrs.get_mut(&id) else {
            return;
        };
        if a.left_alone.take().is_some() {
            self.settled = false;
            let name = self.links[&id.index].name.clone();
            a.lease = None;
            let lease = self.new_lease(id, &name, now);
            self.addrs.get_mut(&id).expect("present").lease = lease;
        }
    }

    fn wait(&mut self, n: u64, addr: AddrId, now: Instant) -> Answer {
        // Past the lease keeper's first round (its requests for about ten
        // seconds), the answer goes out whatever it is.
        let wait = self.cfg.retry * (self.cfg.attempts + 1);
        self.waiters.push(Waiter {
            id: n,
            addr,
            deadline: now + wait,
        });
        Answer::Later
    }

    /// Answers the waiters whose address is routed (or whose time is up).
    pub fn answer_waiters(&mut self, now: Instant) {
        let waiters = std::mem::take(&mut self.waiters);
        for w in waiters {
            match self.routed(&w.addr, now) {
                Some(table) => self
                    .answers
                    .push((w.id, self.table_reply(&w.addr, table, now))),
                None if now >= w.deadline => self.answers.push((
                    w.id,
                    Reply {
                        table: Some(0),
                        ..Reply::error("no table yet: the agent keeps asking the server")
                    },
                )),
                None => self.waiters.push(w),
            }
        }
    }

    pub(super) fn expire_waiters(&mut self, now: Instant) {
        self.answer_waiters(now);
    }

    fn table_reply(&self, id: &AddrId, table: u32, now: Instant) -> Reply {
        let valid = self
            .addrs
            .get(id)
            .and_then(|a| a.lease.as_ref()?.lease.expires_at())
            .map(|e| e.saturating_duration_since(now).as_secs());
        Reply {
            table: Some(table),
            valid_secs: valid,
            ..Reply::ok()
        }
    }
}
