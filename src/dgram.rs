//! AF_UNIX datagram sockets on abstract names, with the sender's kernel
//! credentials on every received datagram.

use std::io;
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;

use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, UnixAddr};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr;

/// `sun_path` is 108 bytes; the abstract name follows the leading NUL.
pub const MAX_ABSTRACT_NAME: usize = 107;

/// Builds an abstract socket address. The original binds and sends with the
/// full `sockaddr_un`, so its names are NUL-padded to 107 bytes; a peer that
/// uses the short form addresses a different socket.
pub fn abstract_addr(name: &str, padded: bool) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(abstract_name(name, padded)?)
}

/// The abstract name's bytes (without the leading NUL), validated, and
/// NUL-padded to 107 bytes when `padded`.
pub fn abstract_name(name: &str, padded: bool) -> io::Result<Vec<u8>> {
    let mut bytes = name.as_bytes().to_vec();
    if bytes.is_empty() || bytes.len() > MAX_ABSTRACT_NAME || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "abstract socket name {name:?} must be 1 to {MAX_ABSTRACT_NAME} bytes without NUL"
            ),
        ));
    }
    if padded {
        bytes.resize(MAX_ABSTRACT_NAME, 0);
    }
    Ok(bytes)
}

/// nix's form of `abstract_addr`, for sending with nix.
pub fn unix_addr(name: &str, padded: bool) -> io::Result<UnixAddr> {
    UnixAddr::new_abstract(&abstract_name(name, padded)?).map_err(io::Error::from)
}

/// The sender of a datagram, from SCM_CREDENTIALS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl Peer {
    pub const ROOT: Peer = Peer {
        pid: 0,
        uid: 0,
        gid: 0,
    };

    /// Root, or `uid`.
    pub fn is_root_or(&self, uid: u32) -> bool {
        self.uid == 0 || self.uid == uid
    }
}

/// Binds a non-blocking datagram socket to an abstract name.
pub fn bind_abstract(name: &str, padded: bool) -> io::Result<UnixDatagram> {
    let addr = abstract_addr(name, padded)?;
    let std_sock = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
    std_sock.set_nonblocking(true)?;
    UnixDatagram::from_std(std_sock)
}

/// Asks the kernel to attach SCM_CREDENTIALS to every datagram we receive;
/// SO_PEERCRED says nothing for datagram sockets.
pub fn enable_credentials(sock: &impl std::os::fd::AsFd) -> io::Result<()> {
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

impl Received {
    /// Sent from `name` by a process the kernel says runs as root or `uid`:
    /// the only proof an abstract name can give.
    pub fn sent_by(&self, name: &UnixAddr, uid: u32) -> bool {
        self.from.as_ref() == Some(name) && self.peer.is_some_and(|p| p.is_root_or(uid))
    }
}

/// Receives one datagram without waiting; `WouldBlock` when none is queued.
pub fn try_recv_with_credentials(sock: &UnixDatagram, buf: &mut [u8]) -> io::Result<Received> {
    sock.try_io(Interest::READABLE, || {
        recv_with_credentials(sock.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT)
    })
}

/// Receives one datagram on a blocking socket (its read timeout applies).
pub fn recv_with_credentials_std(
    sock: &std::os::unix::net::UnixDatagram,
    buf: &mut [u8],
) -> io::Result<Received> {
    recv_with_credentials(sock.as_raw_fd(), buf, MsgFlags::empty())
}

fn recv_with_credentials(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
    flags: MsgFlags,
) -> io::Result<Received> {
    let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
    let mut iov = [IoSliceMut::new(buf)];
    let msg =
        socket::recvmsg::<UnixAddr>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_TRUNC | flags)
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
}

/// Sends to the exact address a datagram came from (padded or not), without
/// waiting: `WouldBlock` means the peer's queue is full.
pub fn try_send_to(sock: &UnixDatagram, buf: &[u8], to: &UnixAddr) -> io::Result<usize> {
    socket::sendto(sock.as_raw_fd(), buf, to, MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)
}

/// Bytes of our datagrams still queued at their receivers (SIOCOUTQ). For
/// AF_UNIX these count against our own send buffer until read: replies a
/// peer never reads can fill it, after which every send fails.
pub fn unsent_bytes(sock: &UnixDatagram) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one int through the pointer.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// Sets the send buffer, beyond `wmem_max` with CAP_NET_ADMIN
/// (SO_SNDBUFFORCE), else as far as SO_SNDBUF goes; returns the size the
/// kernel granted.
pub fn set_send_buffer(sock: &UnixDatagram, bytes: usize) -> io::Result<usize> {
    let _ = socket::setsockopt(sock, sockopt::SndBufForce, &bytes)
        .or_else(|_| socket::setsockopt(sock, sockopt::SndBuf, &bytes));
    socket::getsockopt(sock, sockopt::SndBuf).map_err(io::Error::from)
}

/// Sends, and while the peer's queue is full, tries again with a growing
/// pause for up to `patience` (an unconnected socket cannot be polled for
/// room in the peer's queue).
pub async fn send_patiently(
    sock: &UnixDatagram,
    buf: &[u8],
    to: &UnixAddr,
    patience: std::time::Duration,
) -> io::Result<()> {
    let until = tokio::time::Instant::now() + patience;
    let mut pause = std::time::Duration::from_micros(100);
    loop {
        match try_send_to(sock, buf, to) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if tokio::time::Instant::now() + pause > until {
                    return Err(e);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(5));
            }
            other => return other.map(|_| ()),
        }
    }
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

/// A process holding a socket, as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    pub uid: u32,
    pub comm: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({}, uid {})", self.pid, self.comm, self.uid)
    }
}

/// The processes that hold the abstract name `name` (padded or not) in this
/// network namespace: who to suspect when it is taken.
pub fn holders_of(name: &str) -> Vec<Holder> {
    use std::os::unix::fs::MetadataExt;
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return Vec::new();
    };
    let want = format!("@{name}");
    // /proc shows the NULs of a padded name as '@'.
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f.get(7)?;
            let rest = path.strip_prefix(want.as_str())?;
            rest.bytes()
                .all(|b| b == b'@')
                .then(|| format!("socket:[{}]", f[6]))
        })
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .map(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str()))
                .unwrap_or(false)
        });
        if holds {
            out.push(Holder {
                pid,
                uid: p.metadata().map(|m| m.uid()).unwrap_or(u32::MAX),
                comm: std::fs::read_to_string(p.path().join("comm"))
                    .map(|c| c.trim_end().to_owned())
                    .unwrap_or_default(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_names() {
        let a = abstract_addr("tas_ns", true).unwrap();
        let name = a.as_abstract_name().unwrap();
        assert_eq!(name.len(), MAX_ABSTRACT_NAME);
        assert!(name.starts_with(b"tas_ns\0"));
        let short = abstract_addr("tas_ns", false).unwrap();
        assert_eq!(short.as_abstract_name().unwrap(), b"tas_ns");
        assert!(abstract_addr(&"x".repeat(108), true).is_err());
        assert!(unix_addr("tas_ns", true).is_ok());
    }
}
