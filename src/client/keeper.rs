//! The background half of the client: renews the lease, watches the
//! address and the link, answers control requests, and cleans up.

use std::time::Duration;

use nix::sys::socket::UnixAddr;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::dgram::{self};
use crate::netlink::rules::RuleSpec;
use crate::netlink::{Event, Netlink, Watcher};
use crate::protocol::{check_table, Action, ErrorCode, Reply, Request, WireError, MAX_DATAGRAM};

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
    pub table: u32,
    pub lease_expires: u64,
    /// Rules the kernel has not taken yet.
    pub pending: Vec<RuleSpec>,
}

impl Keeper {
    fn rules(&self) -> Vec<RuleSpec> {
        self.cfg.rules(self.table)
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
        let mut next_renewal = Instant::now() + renew_after(self.lease_expires);
        let mut next_retry_rules = Instant::now() + Duration::from_secs(2);
        let mut poll = tokio::time::interval(Duration::from_secs(2));
        let mut buf = [0u8; MAX_DATAGRAM + 1];
        loop {
            tokio::select! {
                _ = &mut shutdown => return self.finish(Stop::Signal, None).await,
                _ = tokio::time::sleep_until(next_renewal) => {
                    if let Err(e) = self.sock.send_request(&self.cfg, Action::Request, Duration::from_secs(1)).await {
                        info!("renewal not sent: {e}; retrying");
                    }
                    // Overridden by the reply; otherwise retry.
                    next_renewal = Instant::now() + self.cfg.retry;
                }
                _ = tokio::time::sleep_until(next_retry_rules), if !self.pending.is_empty() => {
                    let pending = std::mem::take(&mut self.pending);
                    let failed = install_rules(&self.nl, &pending).await;
                    if failed.is_empty() {
                        info!(table = self.table, "rules installed after retry");
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
                        if let Some(at) = self.on_server_reply(&buf[..n]).await {
                            next_renewal = at;
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

    /// Handles the server's answer to a renewal; returns when to renew next.
    async fn on_server_reply(&mut self, bytes: &[u8]) -> Option<Instant> {
        match Reply::decode(bytes) {
            Ok(Reply::Lease {
                table,
                lease_expires,
            }) if table != 0 => {
                if let Err(why) = check_table(table, self.cfg.tables) {
                    warn!(
                        "refusing the server's renewal: {why}; keeping table {}",
                        self.table
                    );
                    return None;
                }
                if table != self.table {
                    self.change_table(table).await;
                }
                self.lease_expires = lease_expires;
                debug!(table, "lease renewed");
                Some(Instant::now() + renew_after(lease_expires))
            }
            Ok(Reply::Error(e)) => {
                warn!("renewal refused: {e}; retrying");
                None
            }
            Ok(_) => None,
            Err(e) => {
                debug!("undecodable reply: {e}");
                None
            }
        }
    }

    /// The server handed out a different table (it lost its database): move
    /// the address's routes and rules there.
    async fn change_table(&mut self, table: u32) {
        let old_rules = self.rules();
        let old = self.table;
        warn!(
            old,
            new = table,
            "the server changed our table; moving rules and routes"
        );
        self.table = table;
        let new_rules = self.rules();
        if !install_rules(&self.nl, &new_rules).await.is_empty() {
            // Retried by the keeper's loop.
            self.pending = new_rules;
        }
        match self.nl.move_routes(self.cfg.key.family, old, table).await {
            Ok(n) => info!(old, new = table, routes = n, "routes moved"),
            Err(e) => warn!("moving routes from table {old} to {table}: {e}"),
        }
        remove_rules(&self.nl, &old_rules).await;
    }

    /// A datagram from another local process: a second client asking for
    /// our table, or `-r` asking us to release.
    async fn on_control(&mut self, bytes: &[u8], r: &dgram::Received) -> Option<Stop> {
        let from = r.from?;
        let me = nix::unistd::getuid().as_raw();
        let allowed = r.peer.is_some_and(|p| p.is_root_or(me));
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
                    table: self.table,
                    lease_expires: self.lease_expires,
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

    /// Removes the rules, releases the lease and, for `-r`, tells the
    /// requester.
    async fn finish(&self, why: Stop, notify: Option<UnixAddr>) -> Stop {
        info!(
            reason = ?why,
            table = self.table,
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
        if check_table(self.table, None).is_ok() {
            match self.nl.routes_in(self.cfg.key.family, self.table).await {
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
        match self
            .sock
            .call(&self.cfg, Action::Release, Duration::from_secs(1))
            .await
        {
            Ok(Some(_)) => info!(table = self.table, "lease released"),
            _ => info!("the server did not acknowledge the release; the lease will expire"),
        }
        if let Some(to) = notify {
            let _ = self.sock.send_to(&Reply::released().encode(), &to);
        }
        why
    }
}

async fn next_event(w: &mut Option<Watcher>) -> Option<Event> {
    match w {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}
