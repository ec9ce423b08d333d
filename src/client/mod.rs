//! The lease keeper behind `table_allocator_client`: gets a table for one
//! (family, interface, address), installs its rules, renews the lease, and
//! removes both when the address or the interface goes away.
//!
//! Its abstract socket doubles as a control endpoint: a second client for
//! the same address asks it for the table (`cmd` 0) or tells it to release
//! (`cmd` 1), instead of competing with it.

use std::io;
use std::time::Duration;

use nix::sys::socket::UnixAddr;
use tokio::net::UnixDatagram;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::dgram::{self, unix_addr};
use crate::netlink::rules::{rules_for, AddressSpec, RuleSpec};
use crate::netlink::{Event, Netlink, NetlinkError, Watcher};
use crate::protocol::{
    check_table, client_socket_name, wire_clock_secs, Action, ErrorCode, LeaseKey, Reply, Request,
    WireError, MAX_DATAGRAM,
};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub key: LeaseKey,
    pub prefix_len: u8,
    pub tag: Option<String>,
    /// The server's abstract name (`-d`).
    pub server: String,
    pub padded: bool,
    /// Requests sent before giving up (the original: 5, 2 s apart).
    pub attempts: u32,
    pub retry: Duration,
    /// The uid the server runs as: replies from any other uid are ignored
    /// (abstract names carry no permissions; anyone may bind the name).
    pub server_uid: u32,
    /// The server's pool (first, last table), when known: a table outside it
    /// is refused like a reserved one.
    pub tables: Option<(u32, u32)>,
    /// Interfaces whose forwarded traffic gets a 91000 rule beside `iif lo`.
    pub downstream: crate::netlink::rules::Downstream,
}

impl ClientConfig {
    /// Every rule of the address: the four, and one per downstream.
    pub fn rules(&self, table: u32) -> Vec<RuleSpec> {
        let spec = self.address_spec();
        let mut rules = rules_for(&spec, table);
        rules.extend(self.downstream.rules(
            spec.family(),
            table,
            crate::netlink::rules::PRIO_IIF_LO,
        ));
        rules
    }

    pub fn address_spec(&self) -> AddressSpec {
        AddressSpec {
            ifname: self.key.ifname.to_string(),
            address: self.key.address,
            prefix_len: self.prefix_len,
        }
    }

    pub fn socket_name(&self) -> String {
        client_socket_name(&self.key)
    }

    fn server_addr(&self) -> io::Result<UnixAddr> {
        unix_addr(&self.server, self.padded)
    }
}

/// Error replies to strangers at the control socket stop while this much of
/// our send buffer is held by replies not yet read.
const STRANGER_REPLY_BYTES: usize = 32 * 1024;

/// What asking for a lease came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    Table {
        table: u32,
        lease_expires: u64,
    },
    /// The server answered with an error reply.
    Refused(WireError),
    /// No answer after every attempt.
    NoAnswer,
}

/// The client's datagram socket.
pub struct LeaseSocket {
    sock: UnixDatagram,
    server: UnixAddr,
    server_uid: u32,
    impostor_replies: std::cell::Cell<u64>,
}

impl LeaseSocket {
    /// Binds `name` (the client's own abstract name). `AddrInUse` means
    /// another process holds it.
    pub fn bind(name: &str, cfg: &ClientConfig) -> io::Result<LeaseSocket> {
        let sock = dgram::bind_abstract(name, cfg.padded)?;
        dgram::enable_credentials(&sock)?;
        Ok(LeaseSocket {
            sock,
            server: cfg.server_addr()?,
            server_uid: cfg.server_uid,
            impostor_replies: std::cell::Cell::new(0),
        })
    }

    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixDatagram> {
        self.sock.into_std()
    }

    pub fn from_std(
        sock: std::os::unix::net::UnixDatagram,
        cfg: &ClientConfig,
    ) -> io::Result<LeaseSocket> {
        sock.set_nonblocking(true)?;
        let sock = UnixDatagram::from_std(sock)?;
        dgram::enable_credentials(&sock)?;
        Ok(LeaseSocket {
            sock,
            server: cfg.server_addr()?,
            server_uid: cfg.server_uid,
            impostor_replies: std::cell::Cell::new(0),
        })
    }

    fn send_to(&self, bytes: &[u8], to: &UnixAddr) -> io::Result<()> {
        dgram::try_send_to(&self.sock, bytes, to).map(|_| ())
    }

    fn unsent_bytes(&self) -> usize {
        dgram::unsent_bytes(&self.sock).unwrap_or(usize::MAX)
    }

    /// Sends to the server, waiting for room in its queue (a flood from
    /// other senders may keep it full) for up to `patience`.
    pub async fn send_request(
        &self,
        cfg: &ClientConfig,
        action: Action,
        patience: Duration,
    ) -> io::Result<()> {
        let req = Request {
            action,
            key: cfg.key,
            tag: cfg.tag.clone(),
        };
        dgram::send_patiently(&self.sock, &req.encode(), &self.server, patience).await
    }

    /// The next datagram, with its sender.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, dgram::Received)> {
        loop {
            self.sock.readable().await?;
            match dgram::try_recv_with_credentials(&self.sock, buf) {
                Ok(r) => return Ok((r.len.min(buf.len()), r)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// A reply counts only when it comes from the server's name *and* the
    /// kernel vouches that its sender runs as the server's uid.
    fn is_server(&self, r: &dgram::Received) -> bool {
        if r.from.as_ref() != Some(&self.server) {
            return false;
        }
        if r.sent_by(&self.server, self.server_uid) {
            return true;
        }
        // Logged at 1, 2, 4, 8, ... such replies: an impostor that floods
        // must not flood the log.
        let n = self.impostor_replies.get() + 1;
        self.impostor_replies.set(n);
        if n.is_power_of_two() {
            warn!(
                server = %dgram::describe(r.from.as_ref()),
                uid = ?r.peer.map(|p| p.uid),
                pid = ?r.peer.map(|p| p.pid),
                ignored = n,
                "ignored a reply at the server's name from a process that is not the server"
            );
        }
        false
    }

    /// Sends `action` to the server and waits `timeout` for its reply,
    /// ignoring anything else that arrives.
    pub async fn call(
        &self,
        cfg: &ClientConfig,
        action: Action,
        timeout: Duration,
    ) -> io::Result<Option<Reply>> {
        let deadline = Instant::now() + timeout;
        self.send_request(cfg, action, timeout / 2).await?;
        let mut buf = [0u8; MAX_DATAGRAM + 1];
        loop {
            let got = tokio::time::timeout_at(deadline, self.recv(&mut buf)).await;
            let Ok(got) = got else { return Ok(None) };
            let (n, r) = got?;
            if self.is_server(&r) {
                match Reply::decode(&buf[..n]) {
                    Ok(reply) => return Ok(Some(reply)),
                    Err(e) => debug!("undecodable reply from server: {e}"),
                }
            }
        }
    }

    /// Asks for the lease up to `cfg.attempts` times, `cfg.retry` apart. An
    /// error reply ends the attempts at once.
    pub async fn acquire(&self, cfg: &ClientConfig) -> Acquired {
        for attempt in 1..=cfg.attempts {
            match self.call(cfg, Action::Request, cfg.retry).await {
                Ok(Some(Reply::Lease {
                    table,
                    lease_expires,
                })) if table != 0 => {
                    return match check_table(table, cfg.tables) {
                        Ok(table) => Acquired::Table {
                            table,
                            lease_expires,
                        },
                        Err(why) => {
                            warn!(server = %cfg.server, "refusing the server's answer: {why}");
                            Acquired::Refused(WireError::new(ErrorCode::Internal, why))
                        }
                    };
                }
                Ok(Some(Reply::Lease { .. })) => warn!("server answered a request with table 0"),
                Ok(Some(Reply::Error(e))) => return Acquired::Refused(e),
                Ok(None) => {
                    info!(attempt, server = %cfg.server, "no answer from the table allocator server")
                }
                Err(e) => {
                    info!(attempt, server = %cfg.server, "cannot reach the table allocator server: {e}");
                    // A send error returns at once; keep the pace of retries.
                    tokio::time::sleep(cfg.retry).await;
                }
            }
        }
        Acquired::NoAnswer
    }
}

/// Sends one control request to the running client for `cfg`'s address and
/// waits for its answer. `Ok(None)`: no client is running.
pub async fn ask_running_client(
    cfg: &ClientConfig,
    action: Action,
    timeout: Duration,
) -> io::Result<Option<Reply>> {
    let name = format!("{}-ctl{}", cfg.socket_name(), std::process::id());
    let sock = dgram::bind_abstract(&name, cfg.padded)?;
    dgram::enable_credentials(&sock)?;
    let to = unix_addr(&cfg.socket_name(), cfg.padded)?;
    let req = Request {
        action,
        key: cfg.key,
        tag: None,
    };
    match dgram::try_send_to(&sock, &req.encode(), &to) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => return Ok(None),
        Err(e) => return Err(e),
    }
    // Only the client's own socket, run by root or by us, may answer; what
    // it names must be a table we would accept from the server.
    let me = nix::unistd::getuid().as_raw();
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    let deadline = Instant::now() + timeout;
    loop {
        let got = tokio::time::timeout_at(deadline, async {
            loop {
                sock.readable().await?;
                match dgram::try_recv_with_credentials(&sock, &mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            }
        })
        .await;
        let r = match got {
            Ok(r) => r?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client holding @{} did not answer", cfg.socket_name()),
                ))
            }
        };
        if !r.sent_by(&to, me) {
            warn!(
                name = %cfg.socket_name(),
                uid = ?r.peer.map(|p| p.uid),
                "ignored an answer that did not come from a client of root's"
            );
            continue;
        }
        let reply = Reply::decode(&buf[..r.len.min(buf.len())]).ok();
        return Ok(match reply {
            Some(Reply::Lease { table, .. }) if table != 0 && action == Action::Request => {
                match check_table(table, cfg.tables) {
                    Ok(_) => reply,
                    Err(why) => {
                        warn!(name = %cfg.socket_name(), "refusing the running client's answer: {why}");
                        Some(Reply::Error(WireError::new(ErrorCode::Internal, why)))
                    }
                }
            }
            other => other,
        });
    }
}

/// Does the allocator server answer at `name`? An empty object is refused
/// with an error reply and changes nothing. Only an answer from the server's
/// name whose sender the kernel reports as root or `server_uid` counts.
pub fn server_answers(name: &str, padded: bool, server_uid: u32) -> bool {
    let me = format!("mhr-status-{}", std::process::id());
    let (Ok(mine), Ok(to), Ok(server)) = (
        dgram::abstract_addr(&me, padded),
        dgram::abstract_addr(name, padded),
        unix_addr(name, padded),
    ) else {
        return false;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::bind_addr(&mine) else {
        return false;
    };
    if dgram::enable_credentials(&sock).is_err() || sock.send_to_addr(b"{}", &to).is_err() {
        return false;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        let Ok(r) = dgram::recv_with_credentials_std(&sock, &mut buf) else {
            return false;
        };
        if r.sent_by(&server, server_uid) {
            return true;
        }
        warn!(server = name, uid = ?r.peer.map(|p| p.uid), "an answer at the server's name came from a process that is not the server");
    }
}

/// Adds every rule; returns the ones the kernel refused, with its reasons.
pub async fn install_rules(nl: &Netlink, rules: &[RuleSpec]) -> Vec<NetlinkError> {
    let mut failed = Vec::new();
    for r in rules {
        if let Err(e) = nl.add_rule(r).await {
            warn!("{e}");
            failed.push(e);
        }
    }
    failed
}

/// Deletes every rule, carrying on past failures, and reports them.
pub async fn remove_rules(nl: &Netlink, rules: &[RuleSpec]) -> Vec<NetlinkError> {
    let mut failed = Vec::new();
    for r in rules {
        match nl.del_rule(r).await {
            Ok(true) => debug!("deleted rule {r}"),
            Ok(false) => debug!("rule {r} was already gone"),
            Err(e) => {
                warn!("{e}");
                failed.push(e);
            }
        }
    }
    failed
}

/// Seconds until an absolute `lease_expires` of the wire.
pub fn remaining(lease_expires: u64) -> Duration {
    Duration::from_secs(lease_expires.saturating_sub(wire_clock_secs()))
}

/// When to renew: at half the remaining time, but not in a tight loop.
pub fn renew_after(lease_expires: u64) -> Duration {
    (remaining(lease_expires) / 2).max(Duration::from_secs(1))
}

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
