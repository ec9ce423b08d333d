//! The client's datagram socket: requests to the server, replies believed
//! only from the server's name and uid, and the control questions a second
//! client (or `mhr status`) asks a running one.

use std::io;
use std::time::Duration;

use nix::sys::socket::UnixAddr;
use tokio::net::UnixDatagram;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::dgram::{self, unix_addr};
use crate::lease::{Lease, LeaseEvent};
use crate::protocol::{
    check_table, wire_clock_secs, Action, ErrorCode, Reply, Request, WireError, MAX_DATAGRAM,
};

use super::*;

/// The client's datagram socket.
pub struct LeaseSocket {
    sock: UnixDatagram,
    server: UnixAddr,
    server_uid: u32,
    impostor_replies: std::sync::atomic::AtomicU64,
}

impl LeaseSocket {
    /// Binds `name` (the client's own abstract name). `AddrInUse` means
    /// another process holds it.
    pub fn bind(name: &str, cfg: &ClientConfig) -> io::Result<LeaseSocket> {
        Self::wrap(dgram::bind_abstract(name, cfg.padded)?, cfg)
    }

    fn wrap(sock: UnixDatagram, cfg: &ClientConfig) -> io::Result<LeaseSocket> {
        dgram::enable_credentials(&sock)?;
        Ok(LeaseSocket {
            sock,
            server: cfg.server_addr()?,
            server_uid: cfg.server_uid,
            impostor_replies: std::sync::atomic::AtomicU64::new(0),
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
        Self::wrap(UnixDatagram::from_std(sock)?, cfg)
    }

    pub fn send_to(&self, bytes: &[u8], to: &UnixAddr) -> io::Result<()> {
        dgram::try_send_to(&self.sock, bytes, to).map(|_| ())
    }

    pub fn unsent_bytes(&self) -> usize {
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
    pub fn is_server(&self, r: &dgram::Received) -> bool {
        if r.from.as_ref() != Some(&self.server) {
            return false;
        }
        if r.sent_by(&self.server, self.server_uid) {
            return true;
        }
        // Logged at 1, 2, 4, 8, ... such replies: an impostor that floods
        // must not flood the log.
        let n = self
            .impostor_replies
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
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

    /// Sends one of the lease's datagrams.
    pub async fn send(&self, req: &Request, patience: Duration) -> io::Result<()> {
        dgram::send_patiently(&self.sock, &req.encode(), &self.server, patience).await
    }

    /// Sends whatever `lease` has to send; a failure is logged and the
    /// lease's own retries make up for it.
    pub async fn flush(&self, lease: &mut Lease, patience: Duration) {
        while let Some(action) = lease.poll_transmit() {
            if let Err(e) = self.send(&lease.request(action), patience).await {
                info!(server = %dgram::describe(Some(&self.server)), "cannot reach the table allocator server: {e}");
            }
        }
    }

    /// Drives `lease` until it has a table or gives up (the original's five
    /// requests, 2 s apart; an error reply ends it at once).
    pub async fn acquire(&self, lease: &mut Lease) -> Acquired {
        let mut buf = [0u8; MAX_DATAGRAM + 1];
        let mut refused = None;
        loop {
            self.flush(lease, PATIENCE).await;
            while let Some(ev) = lease.poll_event() {
                match ev {
                    LeaseEvent::Granted { table } => {
                        let left = lease
                            .expires_at()
                            .map(|e| e.saturating_duration_since(std::time::Instant::now()))
                            .unwrap_or_default();
                        return Acquired::Table { table, valid: left };
                    }
                    LeaseEvent::Refused(e) => {
                        warn!(key = %lease.key(), "the server refused: {e}");
                        refused = Some(e);
                    }
                    LeaseEvent::NoAnswer { attempts } => {
                        info!(attempts, key = %lease.key(), "no answer from the table allocator server")
                    }
                    LeaseEvent::GaveUp => {
                        return refused.map_or(Acquired::NoAnswer, Acquired::Refused);
                    }
                    _ => {}
                }
            }
            let wake = lease.poll_timeout().map(Instant::from_std);
            tokio::select! {
                _ = crate::timer::sleep_until_opt(wake) => {
                    lease.handle_timeout(std::time::Instant::now());
                }
                got = self.recv(&mut buf) => {
                    let Ok((n, r)) = got else { continue };
                    if !self.is_server(&r) {
                        continue;
                    }
                    match Reply::decode(&buf[..n]) {
                        Ok(reply) => lease.handle_reply(&reply, std::time::Instant::now(), wire_clock_secs()),
                        Err(e) => debug!("undecodable reply from the server: {e}"),
                    }
                }
            }
        }
    }
}

/// How long a send may wait for room in the server's queue (a flood from
/// other senders may keep it full).
pub const PATIENCE: Duration = Duration::from_secs(1);

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

/// Does the allocator server answer at `name`? Asked with a ping (our
/// addition to the protocol), which the server neither logs nor counts.
/// Only an answer from the server's name whose sender the kernel reports as
/// root or `server_uid` counts.
pub fn server_answers(name: &str, padded: bool, server_uid: u32) -> bool {
    let (Ok(to), Ok(server)) = (dgram::abstract_addr(name, padded), unix_addr(name, padded)) else {
        return false;
    };
    // Unbound: with SO_PASSCRED the send binds it to a fresh name of the
    // kernel's choosing (autobind), which no one can take first. The send
    // waits a second at most for room in the server's queue.
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return false;
    };
    if dgram::enable_credentials(&sock).is_err()
        || sock
            .set_write_timeout(Some(Duration::from_secs(1)))
            .is_err()
        || sock.send_to_addr(&crate::protocol::ping(), &to).is_err()
    {
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
