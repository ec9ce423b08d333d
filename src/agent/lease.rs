//! One address's lease, kept by a task of the agent: the socket is bound
//! at the name `table_allocator_client` would use for the address, so the
//! server sees the same client, a second `table_allocator_client` (the
//! dhclient hook's) asks this task for the table instead of competing, and
//! `table_allocator_client -r` releases through it.

use std::net::IpAddr;
use std::time::Duration;

use nix::sys::socket::UnixAddr;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::client::{renew_after, ClientConfig, LeaseSocket};
use crate::protocol::{check_table, Action, ErrorCode, Reply, Request, MAX_DATAGRAM};

/// Which address a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrId {
    pub index: u32,
    pub address: IpAddr,
}

#[derive(Debug)]
pub enum Report {
    /// A table (first grant, or a renewal that changed it). The agent
    /// signals `routed` once the address's rules and routes are in place:
    /// only then does the task answer the hooks that asked.
    Granted {
        table: u32,
        lease_expires: u64,
        routed: oneshot::Sender<()>,
    },
    /// The server refused; the task ends.
    Refused(String),
    /// Another process holds the address's name (a standalone client):
    /// it owns this address; the task ends.
    Busy,
    /// `table_allocator_client -r` asked for a release; the lease is
    /// released and the task ends.
    ReleaseAsked,
}

/// How the agent stops a lease task.
pub struct Handle {
    stop: Option<oneshot::Sender<bool>>,
}

impl Handle {
    /// Ends the task; with `release`, the lease goes back to the server.
    pub fn stop(mut self, release: bool) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(release);
        }
    }
}

/// Starts the task for `cfg`'s address; reports go to `tx`.
pub fn spawn(id: AddrId, cfg: ClientConfig, tx: mpsc::UnboundedSender<(AddrId, Report)>) -> Handle {
    let (stop, stopped) = oneshot::channel();
    // On the agent's LocalSet: one thread, a task per address.
    tokio::task::spawn_local(async move {
        if let Some(r) = keep(&cfg, stopped, &tx, id).await {
            let _ = tx.send((id, r));
        }
    });
    Handle { stop: Some(stop) }
}

async fn keep(
    cfg: &ClientConfig,
    mut stopped: oneshot::Receiver<bool>,
    tx: &mpsc::UnboundedSender<(AddrId, Report)>,
    id: AddrId,
) -> Option<Report> {
    let sock = match LeaseSocket::bind(&cfg.socket_name(), cfg) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Some(Report::Busy),
        Err(e) => return Some(Report::Refused(format!("socket: {e}"))),
    };
    let mut table: Option<(u32, u64)> = None;
    let mut attempts = 0u32;
    // First ask at once (not through the timer, whose millisecond ticks
    // would delay every new address); then on the retry pace until
    // granted, then at half the remaining lease.
    let mut next = Instant::now();
    let mut sent_at: Option<Instant> = None;
    if sock
        .send_request(cfg, Action::Request, cfg.retry / 2)
        .await
        .is_ok()
    {
        sent_at = Some(Instant::now());
    }
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    // Askers (a hook's client) that came before the grant.
    let mut waiting: Vec<UnixAddr> = Vec::new();
    loop {
        let wake = match (sent_at, table) {
            (Some(t), _) => t + cfg.retry,
            (None, _) => next,
        };
        tokio::select! {
            release = &mut stopped => {
                if release.unwrap_or(false) && table.is_some() {
                    let _ = sock.call(cfg, Action::Release, Duration::from_secs(1)).await;
                }
                return None;
            }
            _ = tokio::time::sleep_until(wake) => {
                if sent_at.is_some() {
                    attempts += 1;
                    if table.is_none() && attempts.is_multiple_of(cfg.attempts) {
                        // Rounds 1, 2, 4, 8...: a server down for long with
                        // a thousand addresses waiting must not flood the log.
                        let round = attempts / cfg.attempts;
                        if round.is_power_of_two() {
                            info!(key = %cfg.key, attempts, "no answer from the table allocator server yet; still asking");
                        }
                    }
                }
                let patience = cfg.retry / 2;
                match sock.send_request(cfg, Action::Request, patience).await {
                    Ok(()) => sent_at = Some(Instant::now()),
                    Err(e) => {
                        debug!(key = %cfg.key, "cannot reach the server: {e}");
                        sent_at = Some(Instant::now());
                    }
                }
            }
            got = sock.recv(&mut buf) => {
                let Ok((n, r)) = got else { continue };
                if sock.is_server(&r) {
                    match Reply::decode(&buf[..n]) {
                        Ok(Reply::Lease { table: t, lease_expires }) if t != 0 => {
                            match check_table(t, cfg.tables) {
                                Ok(t) => {
                                    if table.map(|x| x.0) != Some(t) {
                                        let (routed, done) = oneshot::channel();
                                        let _ = tx.send((id, Report::Granted { table: t, lease_expires, routed }));
                                        // Bounded: a hook that asked waits
                                        // for rules, not for ever.
                                        let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
                                    }
                                    let answer = Reply::Lease { table: t, lease_expires }.encode();
                                    for to in waiting.drain(..) {
                                        let _ = sock.send_to(&answer, &to);
                                    }
                                    table = Some((t, lease_expires));
                                    sent_at = None;
                                    attempts = 0;
                                    next = Instant::now() + renew_after(lease_expires);
                                }
                                Err(why) => return Some(Report::Refused(why)),
                            }
                        }
                        Ok(Reply::Lease { .. }) => debug!(key = %cfg.key, "server answered with table 0"),
                        Ok(Reply::Error(e)) => {
                            // A renewal refused keeps the table until it
                            // expires; a first request refused ends here.
                            if table.is_none() {
                                return Some(Report::Refused(e.to_string()));
                            }
                            warn!(key = %cfg.key, "renewal refused: {e}");
                            sent_at = None;
                            next = Instant::now() + cfg.retry;
                        }
                        Err(e) => debug!("undecodable reply: {e}"),
                    }
                } else if let Some(done) = control(&sock, cfg, &r, &buf[..n], table, &mut waiting).await {
                    return Some(done);
                }
            }
        }
    }
}

/// A control request from another process (root only): the table, or a
/// release. Returns the report that ends the task, if any.
async fn control(
    sock: &LeaseSocket,
    cfg: &ClientConfig,
    r: &crate::dgram::Received,
    bytes: &[u8],
    table: Option<(u32, u64)>,
    waiting: &mut Vec<UnixAddr>,
) -> Option<Report> {
    let from = r.from.as_ref()?;
    if r.peer.map(|p| p.uid) != Some(0) {
        // Strangers get nothing: this is not a service for them.
        return None;
    }
    let req = Request::decode(bytes).ok()?;
    if req.key != cfg.key {
        let e = crate::protocol::WireError::new(
            ErrorCode::BadAddress,
            "this socket keeps another address",
        );
        let _ = sock.send_to(&Reply::Error(e).encode(), from);
        return None;
    }
    match req.action {
        Action::Request => {
            // Asked before the grant: answered with it (a few askers at most).
            let Some((t, e)) = table else {
                if waiting.len() < 8 {
                    waiting.push(*from);
                }
                return None;
            };
            let _ = sock.send_to(
                &Reply::Lease {
                    table: t,
                    lease_expires: e,
                }
                .encode(),
                from,
            );
            None
        }
        Action::Release => {
            if table.is_some() {
                let _ = sock
                    .call(cfg, Action::Release, Duration::from_secs(1))
                    .await;
            }
            let _ = sock.send_to(&Reply::released().encode(), from);
            Some(Report::ReleaseAsked)
        }
    }
}
