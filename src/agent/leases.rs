//! The lease keepers' sockets: one datagram socket per lease, bound by the
//! kernel to a fresh abstract name (autobind), so no other process can
//! take its name first and every reply comes to the keeper that asked (the
//! original's replies do not say which address they are for). A small
//! task per socket hands what arrives to the agent's loop; the keepers
//! themselves live in the model.

use std::collections::HashMap;
use std::io;
use std::rc::Rc;

use nix::sys::socket::UnixAddr;
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::dgram::{self, Received};
use crate::protocol::{Reply, Request, MAX_DATAGRAM};

/// A datagram for lease `id`, from the server (checked here).
pub struct Incoming {
    pub id: u64,
    pub reply: Reply,
}

pub struct LeaseSockets {
    socks: HashMap<u64, (Rc<UnixDatagram>, JoinHandle<()>)>,
    server: UnixAddr,
    server_uid: u32,
    tx: mpsc::UnboundedSender<Incoming>,
}

impl LeaseSockets {
    pub fn new(
        server: &str,
        padded: bool,
        server_uid: u32,
    ) -> io::Result<(LeaseSockets, mpsc::UnboundedReceiver<Incoming>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        Ok((
            LeaseSockets {
                socks: HashMap::new(),
                server: dgram::unix_addr(server, padded)?,
                server_uid,
                tx,
            },
            rx,
        ))
    }

    fn open(&mut self, id: u64) -> io::Result<Rc<UnixDatagram>> {
        if let Some((s, _)) = self.socks.get(&id) {
            return Ok(s.clone());
        }
        let std = std::os::unix::net::UnixDatagram::unbound()?;
        std.set_nonblocking(true)?;
        // With SO_PASSCRED set, the first send binds the socket to a name
        // the kernel picks.
        dgram::enable_credentials(&std)?;
        let sock = Rc::new(UnixDatagram::from_std(std)?);
        let reader = sock.clone();
        let (tx, server, uid) = (self.tx.clone(), self.server, self.server_uid);
        let task = tokio::task::spawn_local(async move {
            let mut buf = [0u8; MAX_DATAGRAM + 1];
            loop {
                if reader.readable().await.is_err() {
                    return;
                }
                let r: Received = match dgram::try_recv_with_credentials(&reader, &mut buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return debug!("lease socket: {e}"),
                };
                // Only the server's name, sent as the server's uid: nobody
                // else can reach an autobound name they were not told, but
                // the check costs nothing.
                if !r.sent_by(&server, uid) {
                    continue;
                }
                match Reply::decode(&buf[..r.len.min(buf.len())]) {
                    Ok(reply) => {
                        if tx.send(Incoming { id, reply }).is_err() {
                            return;
                        }
                    }
                    Err(e) => debug!("undecodable reply from the server: {e}"),
                }
            }
        });
        self.socks.insert(id, (sock.clone(), task));
        Ok(sock)
    }

    /// Sends a keeper's datagram, without waiting: a full queue at the
    /// server drops it, and the keeper's retry sends it again.
    pub fn send(&mut self, id: u64, req: &Request) {
        let sock = match self.open(id) {
            Ok(s) => s,
            Err(e) => return debug!(lease = id, "lease socket: {e}"),
        };
        if let Err(e) = dgram::try_send_to(&sock, &req.encode(), &self.server) {
            debug!(key = %req.key, "request not sent: {e}");
        }
    }

    pub fn close(&mut self, id: u64) {
        if let Some((_, task)) = self.socks.remove(&id) {
            task.abort();
        }
    }
}

impl Drop for LeaseSockets {
    fn drop(&mut self) {
        for (_, (_, task)) in self.socks.drain() {
            task.abort();
        }
    }
}

/// Raises the soft limit on open files to the hard one: a socket per
/// address, a thousand addresses.
pub fn raise_file_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}
