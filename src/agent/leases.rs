//! The lease keepers' sockets: one datagram socket per lease, bound by the
//! kernel to a fresh abstract name (autobind), so no other process can
//! take its name first and every reply comes to the keeper that asked (the
//! original's replies do not say which address they are for). A small
//! task per socket sends what its keeper queues, in order, waiting for room
//! in the server's queue (a burst of a thousand addresses would overflow it:
//! unix datagram queues hold ten), and hands what arrives to the agent's
//! loop; the keepers themselves live in the model.

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

/// How long a datagram waits for room in the server's queue.
const SEND_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// A datagram for lease `id`, from the server (checked here).
pub struct Incoming {
    pub id: u64,
    pub reply: Reply,
}

pub struct LeaseSockets {
    socks: HashMap<u64, (mpsc::UnboundedSender<Vec<u8>>, JoinHandle<()>)>,
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

    fn open(&mut self, id: u64) -> io::Result<mpsc::UnboundedSender<Vec<u8>>> {
        if let Some((s, _)) = self.socks.get(&id) {
            return Ok(s.clone());
        }
        let std = std::os::unix::net::UnixDatagram::unbound()?;
        std.set_nonblocking(true)?;
        // With SO_PASSCRED set, the first send binds the socket to a name
        // the kernel picks.
        dgram::enable_credentials(&std)?;
        let sock = Rc::new(UnixDatagram::from_std(std)?);
        let (out, mut queued) = mpsc::unbounded_channel::<Vec<u8>>();
        let writer = sock.clone();
        let server = self.server;
        // Sends, in order; a datagram that finds no room within the retry
        // pace is given up (the keeper asks again).
        let sender = tokio::task::spawn_local(async move {
            while let Some(bytes) = queued.recv().await {
                if let Err(e) = dgram::send_patiently(&writer, &bytes, &server, SEND_PATIENCE).await
                {
                    debug!("lease request not sent: {e}");
                }
            }
        });
        let reader = sock.clone();
        let (tx, uid) = (self.tx.clone(), self.server_uid);
        drop(sender);
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
                // Only the server's name, sent as the server's uid: an
                // autobound name cannot be taken first, but anyone can read
                // it in /proc/net/unix and send to it.
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
        self.socks.insert(id, (out.clone(), task));
        Ok(out)
    }

    /// Queues a keeper's datagram on its socket.
    pub fn send(&mut self, id: u64, req: &Request) {
        match self.open(id) {
            Ok(s) => {
                let _ = s.send(req.encode());
            }
            Err(e) => debug!(lease = id, "lease socket: {e}"),
        }
    }

    /// The keeper is done: no more reading. What it queued still goes out
    /// (its last release among it): the sending task ends once its queue
    /// is empty.
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
