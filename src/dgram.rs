//! AF_UNIX datagram sockets on abstract names, with the sender's kernel
//! credentials on every received datagram.

use std::io;
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;

use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, UnixAddr};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

use crate::leases::Peer;
use crate::protocol::abstract_addr;

/// Binds a non-blocking datagram socket to an abstract name.
pub fn bind_abstract(name: &str, padded: bool) -> io::Result<UnixDatagram> {
    let addr = abstract_addr(name, padded)?;
    let std_sock = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
    std_sock.set_nonblocking(true)?;
    UnixDatagram::from_std(std_sock)
}

/// Asks the kernel to attach SCM_CREDENTIALS to every datagram we receive;
/// SO_PEERCRED says nothing for datagram sockets.
pub fn enable_credentials(sock: &UnixDatagram) -> io::Result<()> {
    socket::setsockopt(sock, sockopt::PassCred, &true).map_err(io::Error::from)
}

/// One received datagram.
#[derive(Debug)]
pub struct Received {
    /// The datagram's real length, which may exceed what fit in the buffer.
    pub len: usize,
    pub from: Option<UnixAddr>,
    pub peer: Option<Peer>,
}

/// Receives one datagram without waiting; `WouldBlock` when none is queued.
pub fn try_recv_with_credentials(sock: &UnixDatagram, buf: &mut [u8]) -> io::Result<Received> {
    sock.try_io(Interest::READABLE, || {
        let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = socket::recvmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let mut peer = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmCredentials(cred) = c {
                    peer = Some(Peer {
                        pid: cred.pid(),
                        uid: cred.uid(),
                        gid: cred.gid(),
                    });
                }
            }
        }
        Ok(Received {
            len: msg.bytes,
            from: msg.address,
            peer,
        })
    })
}

/// Sends to the exact address a datagram came from (padded or not), without
/// waiting: `WouldBlock` means the peer's queue is full.
pub fn try_send_to(sock: &UnixDatagram, buf: &[u8], to: &UnixAddr) -> io::Result<usize> {
    socket::sendto(sock.as_raw_fd(), buf, to, MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)
}

/// A printable form of a peer address (`@name` for abstract names).
pub fn describe(addr: Option<&UnixAddr>) -> String {
    match addr {
        Some(a) => match (a.as_abstract(), a.path()) {
            (Some(name), _) => {
                let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
                format!("@{}", String::from_utf8_lossy(&name[..end]))
            }
            (None, Some(p)) => p.display().to_string(),
            _ => "(unnamed)".into(),
        },
        None => "(unnamed)".into(),
    }
}
