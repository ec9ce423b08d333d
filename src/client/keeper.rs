//! The background half of the client: a thin runtime around the lease
//! keeper (`crate::lease`): it sends what the keeper says, feeds it the
//! server's replies and the time, moves rules and routes when the table
//! changes, watches the address and the link, answers control requests,
//! and cleans up.

use std::time::Duration;

use nix::sys::socket::UnixAddr;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::dgram::{self};
use crate::lease::{Lease, LeaseEvent};
use crate::netlink::rules::RuleSpec;
use crate::netlink::{Event, Netlink, Watcher};
use crate::protocol::{
    wire_clock_secs, Action, ErrorCode, Reply, Request, WireError, MAX_DATAGRAM,
};

use super::socket::PATIENCE;
use super::*;

/// Why the keeper stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    AddressRemoved,
    LinkRemoved,
    Signal,
    ReleaseRequested,
}

/// The background half of the client: renews, watches, answers control
/// requests, and cleans up.
pub struct Keeper {
    pub cfg: ClientConfig,
    pub sock: LeaseSocket,
    pub nl: Netlink,
    pub ifindex: u32,
    /// Holds the table (`Lease::table`).
    pub lease: Lease,
    /// Rules the kernel has not taken yet.
    pub pending: Vec<RuleSpec>,
}

impl Keeper {
    fn table(&self) -> u32 {
        self.lease.table().unwrap_or(0)
    }

    fn rules(&self) -> Vec<RuleSpec> {
        self.cfg.rules(self.table())
    }

    /// True while our address is still on our interface.
    async fn address_present(&self) -> bool {
        match self.nl.addresses(self.ifindex).await {
            Ok(addrs) => addrs.iter().any(|(a, _)| *a == self.cfg.key.address),
            // The link is gone (or netlink failed): treat as absent only when
            // the link is gone.
            Err(e) => {
                warn!("re-reading addresses: {e}");
                !matches!(self.nl.link_name(self.ifindex).await, Ok(None))
            }
        }
    }

    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Stop {
        tokio::pin!(shutdown);
        let mut watcher = match Watcher::removals_of(self.ifindex) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!("cannot watch addresses and links: {e}; polling instead");
                None
            }
        };
        // The address may have gone while we were starting.
        if !self.address_present().await {
            return self.finish(Stop::AddressRemoved, None).await;
        }
        let mut next_retry_rules = Instant::now() + Duration::from_secs(2);
        let mut poll = tokio::time::interval(Duration::from_secs(2));
        let mut buf = [0u8; MAX_DATAGRAM + 1];
        loop {
            self.sock.flush(&mut self.lease, PATIENCE).await;
            while let Some(ev) = self.lease.poll_event() {
                self.on_event(ev).await;
            }
            let wake = self.lease.poll_timeout().map(Instant::from_std);
            tokio::select! {
                _ = &mut shutdown => return self.finish(Stop::Signal, None).await,
                _ = crate::timer::sleep_until_opt(wake) => {
                    self.lease.handle_timeout(std::time::Instant::now());
                }
                _ = tokio::time::sleep_until(next_retry_rules), if !self.pending.is_empty() => {
                    let pending = std::mem::take(&mut self.pending);
                    let failed = install_rules(&self.nl, &pending).await;
                    if failed.is_empty() {
                        info!(table = self.table(), "rules installed after retry");
                    } else {
                        self.pending = pending;
                    }
                    next_retry_rules = Instant::now() + Duration::from_secs(2);
                }
                got = self.sock.recv(&mut buf) => {
                    let (n, r) = match got {
                        Ok(x) => x,
                        Err(e) => { warn!("receive failed: {e}"); continue; }
                    };
                    if self.sock.is_server(&r) {
                        match Reply::decode(&buf[..n]) {
                            Ok(reply) => self.lease.handle_reply(&reply, std::time::Instant::now(), wire_clock_secs()),
                            Err(e) => debug!("undecodable reply: {e}"),
                        }
                    } else if let Some(stop) = self.on_control(&buf[..n], &r).await {
                        return stop;
                    }
                }
                ev = next_event(&mut watcher) => {
                    match ev {
                        Some(Event::AddressRemoved { index, address })
                            if index == self.ifindex && address == self.cfg.key.address =>
                        {
                            return self.finish(Stop::AddressRemoved, None).await;
                        }
                        Some(Event::LinkRemoved { index }) if index == self.ifindex => {
                            return self.finish(Stop::LinkRemoved, None).await;
                        }
                        Some(Event::Overrun) => {
                            info!("netlink events were lost; re-reading addresses");
                            if !self.address_present().await {
                                return self.finish(Stop::AddressRemoved, None).await;
                            }
                        }
                        Some(_) => {}
                        None => {
                            warn!("the netlink watch ended; polling instead");
                            watcher = None;
                        }
                    }
                }
                _ = poll.tick(), if watcher.is_none() => {
                    if !self.address_present().await {
                        return self.finish(Stop::AddressRemoved, None).await;
                    }
                }
            }
        }
    }

    async fn on_event(&mut self, ev: LeaseEvent) {
        match ev {
            LeaseEvent::TableChanged { old, new } => self.change_table(old, new).await,
            LeaseEvent::RenewalRefused(e) => {
                warn!(
                    table = self.table(),
                    "renewal refused: {e}; the table is kept and asked for again (less often)"
                )
            }
            LeaseEvent::Expired { table } => {
                warn!(table, "the lease ran out without an answer from the server; the table is kept while asking")
            }
            other => debug!(event = ?other, "lease"),
        }
    }

    /// The server handed out a different table (it lost its database): move
    /// the address's routes and rules there.
    async fn change_table(&mut self, old: u32, new: u32) {
        let old_rules = self.cfg.rules(old);
        warn!(
            old,
            new, "the server changed our table; moving rules and routes"
        );
        let new_rules = self.cfg.rules(new);
        if !install_rules(&self.nl, &new_rules).await.is_empty() {
            // Retried by the keeper's loop.
            self.pending = new_rules;
        }
        match self.nl.move_routes(self.cfg.key.family, old, new).await {
            Ok(n) => info!(old, new, routes = n, "routes moved"),
            Err(e) => warn!("moving routes from table {old} to {new}: {e}"),
        }
        remove_rules(&self.nl, &old_rules).await;
    }

    /// A datagram from another local process: a second client asking for
    /// our table, or `-r` asking us to release.
    async fn on_control(&mut self, bytes: &[u8], r: &dgram::Received) -> Option<Stop> {
        let from = r.from?;
        let me = nix::unistd::getuid().as_raw();
        let allowed = r.peer.is_some_and(|p| super::may_control(p.uid, me));
        // Credentials first: a stranger's datagram is not even parsed.
        let reply = if !allowed {
            Reply::Error(WireError::new(
                ErrorCode::NotPermitted,
                "only root or the client's own uid may control it",
            ))
        } else {
            match Request::decode(bytes) {
                Err(e) => Reply::Error(e),
                Ok(req) if req.key != self.cfg.key => Reply::Error(WireError::new(
                    ErrorCode::BadAddress,
                    format!("this client holds {}, not {}", self.cfg.key, req.key),
                )),
                Ok(req) if req.action == Action::Request => Reply::Lease {
                    table: self.table(),
                    lease_expires: self.lease_expires_wire(),
                },
                Ok(_) => {
                    let stop = self.finish(Stop::ReleaseRequested, Some(from)).await;
                    return Some(stop);
                }
            }
        };
        // Unread replies are charged to our send buffer; a stranger that
        // never reads must not fill it and so stall our renewals.
        if !allowed && self.sock.unsent_bytes() >= STRANGER_REPLY_BYTES {
            return None;
        }
        if let Err(e) = self.sock.send_to(&reply.encode(), &from) {
            debug!("control reply not sent: {e}");
        }
        None
    }

    /// The lease's end on the wire clock, for a second client's answer.
    fn lease_expires_wire(&self) -> u64 {
        let left = self
            .lease
            .expires_at()
            .map(|e| e.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or_default();
        wire_clock_secs() + left.as_secs()
    }

    /// Removes the rules, releases the lease and, for `-r`, tells the
    /// requester.
    async fn finish(&mut self, why: Stop, notify: Option<UnixAddr>) -> Stop {
        let table = self.table();
        info!(
            reason = ?why,
            table,
            ifname = %self.cfg.key.ifname,
            address = %self.cfg.key.address,
            "removing rules and releasing the lease"
        );
        let failed = remove_rules(&self.nl, &self.rules()).await;
        if !failed.is_empty() {
            warn!("{} rules could not be removed", failed.len());
        }
        // The table goes back to the pool: leave it empty for whoever gets
        // it next (routes via the gone address's gateway would be stale).
        // Only routes of ours (protocol 77), and never in a kernel table: a
        // table number that slipped through must not empty `main`.
        if crate::protocol::check_table(table, None).is_ok() {
            match self.nl.routes_in(self.cfg.key.family, table).await {
                Ok(routes) => {
                    for r in routes.into_iter().filter(crate::netlink::is_ours) {
                        if let Err(e) = self.nl.del_route(r).await {
                            warn!("{e}");
                        }
                    }
                }
                Err(e) => warn!("{e}"),
            }
        }
        self.lease.release(std::time::Instant::now());
        let acknowledged = self.release_within(Duration::from_secs(1)).await;
        if acknowledged {
            info!(table, "lease released");
        } else {
            info!("the server did not acknowledge the release; the lease will expire");
        }
        if let Some(to) = notify {
            let _ = self.sock.send_to(&Reply::released().encode(), &to);
        }
        why
    }

    /// Drives the release until acknowledged or `limit` passes.
    async fn release_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; MAX_DATAGRAM + 1];
        loop {
            self.sock.flush(&mut self.lease, PATIENCE).await;
            while let Some(ev) = self.lease.poll_event() {
                if let LeaseEvent::Released { acknowledged } = ev {
                    return acknowledged;
                }
            }
            let wake = self.lease.poll_timeout().map(Instant::from_std);
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return false,
                _ = crate::timer::sleep_until_opt(wake) => {
                    self.lease.handle_timeout(std::time::Instant::now());
                }
                got = self.sock.recv(&mut buf) => {
                    let Ok((n, r)) = got else { continue };
                    if self.sock.is_server(&r) {
                        if let Ok(reply) = Reply::decode(&buf[..n]) {
                            self.lease.handle_reply(&reply, std::time::Instant::now(), wire_clock_secs());
                        }
                    }
                }
            }
        }
    }
}

async fn next_event(w: &mut Option<Watcher>) -> Option<Event> {
    match w {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}
