//! One probe over one uplink: ICMP echo, TCP connect or DNS query, from the
//! uplink's address and bound to its device (SO_BINDTODEVICE), so the
//! per-address rules (9000 `oif`, 10000 `from`) pick the uplink's table and
//! the probe can leave by no other interface.

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    self, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage,
};
use tokio::io::unix::AsyncFd;

use super::config::{Target, ICMP_PAYLOAD};

#[derive(Debug, Clone)]
pub struct Probe {
    pub target: Target,
    pub source: IpAddr,
    pub device: String,
    pub timeout: Duration,
    /// ICMP identifier and sequence, DNS query id.
    pub ident: u16,
    pub seq: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `None`: no answer in time, or the probe could not be sent.
    pub rtt: Option<Duration>,
    /// Bytes on the wire, both ways, IP headers included.
    pub bytes: u64,
    pub error: Option<String>,
}

pub async fn run(p: &Probe) -> Outcome {
    let ip_header = if p.source.is_ipv6() { 40 } else { 20 };
    let start = Instant::now();
    let result = tokio::time::timeout(p.timeout, async {
        match &p.target {
            Target::Icmp { address } => icmp(p, *address).await,
            Target::Tcp { address, port } => tcp(p, SocketAddr::new(*address, *port)).await,
            Target::Dns { address, name } => dns(p, *address, name).await,
        }
    })
    .await;
    match result {
        Ok(Ok((sent, received))) => Outcome {
            rtt: Some(start.elapsed()),
            bytes: sent + received,
            error: None,
        },
        Ok(Err((sent, e))) => Outcome {
            rtt: None,
            bytes: sent,
            error: Some(e.to_string()),
        },
        Err(_) => Outcome {
            rtt: None,
            // The request left; the answer did not come.
            bytes: p.target.cost() / 2 + ip_header / 2,
            error: Some(format!("no answer within {} ms", p.timeout.as_millis())),
        },
    }
}

type Sized = Result<(u64, u64), (u64, io::Error)>;

fn bind_device(fd: &impl std::os::fd::AsFd, device: &str) -> io::Result<()> {
    socket::setsockopt(fd, sockopt::BindToDevice, &OsString::from(device)).map_err(io::Error::from)
}

/// Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request; the kernel fills in the ICMPv6 checksum itself.
pub fn echo_request(v6: bool, ident: u16, seq: u16) -> Vec<u8> {
    let mut pkt = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    pkt.extend_from_slice(&ident.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend((0..ICMP_PAYLOAD).map(|i| i as u8));
    if !v6 {
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    pkt
}

/// Whether a packet read from a raw ICMP socket is the reply to our echo
/// (IPv4 raw sockets return the IP header too).
pub fn is_echo_reply(v6: bool, packet: &[u8], ident: u16, seq: u16) -> bool {
    let icmp = if v6 {
        packet
    } else {
        let ihl = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
        match packet.get(ihl..) {
            Some(rest) if ihl >= 20 => rest,
            _ => return false,
        }
    };
    icmp.len() >= 8
        && icmp[0] == if v6 { 129 } else { 0 }
        && icmp[4..6] == ident.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

async fn icmp(p: &Probe, dst: IpAddr) -> Sized {
    let v6 = dst.is_ipv6();
    let (family, proto) = if v6 {
        (AddressFamily::Inet6, SockProtocol::IcmpV6)
    } else {
        (AddressFamily::Inet, SockProtocol::Icmp)
    };
    let fd: OwnedFd = socket::socket(
        family,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        proto,
    )
    .map_err(|e| (0, io::Error::from(e)))?;
    bind_device(&fd, &p.device).map_err(|e| (0, e))?;
    let src = SockaddrStorage::from(SocketAddr::new(p.source, 0));
    socket::bind(fd.as_raw_fd(), &src).map_err(|e| (0, io::Error::from(e)))?;
    let pkt = echo_request(v6, p.ident, p.seq);
    let header = if v6 { 40 } else { 20 };
    let sent = (pkt.len() + header) as u64;
    let to = SockaddrStorage::from(SocketAddr::new(dst, 0));
    socket::sendto(fd.as_raw_fd(), &pkt, &to, MsgFlags::empty())
        .map_err(|e| (0, io::Error::from(e)))?;
    // SAFETY: the OwnedFd moves into the AsyncFd and is closed only when
    // the AsyncFd drops, so the descriptor stays the same open socket.
    let afd =
        unsafe { AsyncFd::register(fd) }.map_err(|e| (sent, io::Error::other(e.to_string())))?;
    let mut buf = [0u8; 1500];
    loop {
        let mut guard = afd.readable().await.map_err(|e| (sent, e))?;
        match guard.try_io(|fd| {
            socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buf).map_err(io::Error::from)
        }) {
            Ok(Ok((n, from))) => {
                let from_ip = from.and_then(|f| {
                    f.as_sockaddr_in()
                        .map(|a| IpAddr::V4(a.ip()))
                        .or_else(|| f.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())))
                });
                if from_ip == Some(dst) && is_echo_reply(v6, &buf[..n], p.ident, p.seq) {
                    let received = if v6 { n + header } else { n };
                    return Ok((sent, received as u64));
                }
            }
            Ok(Err(e)) => return Err((sent, e)),
            Err(_would_block) => continue,
        }
    }
}

async fn tcp(p: &Probe, dst: SocketAddr) -> Sized {
    let ip = if dst.is_ipv6() { 40u64 } else { 20 };
    let sock = if dst.is_ipv6() {
        tokio::net::TcpSocket::new_v6()
    } else {
        tokio::net::TcpSocket::new_v4()
    }
    .map_err(|e| (0, e))?;
    sock.bind_device(Some(p.device.as_bytes()))
        .map_err(|e| (0, e))?;
    sock.bind(SocketAddr::new(p.source, 0))
        .map_err(|e| (0, e))?;
    // Close with a RST: no FIN exchange, no TIME_WAIT per probe.
    sock.set_zero_linger().map_err(|e| (0, e))?;
    let syn = ip + 40;
    match sock.connect(dst).await {
        Ok(_stream) => Ok((syn + ip + 20, syn)),
        // A RST came back over this uplink: the path works.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok((syn, ip + 20)),
        Err(e) => Err((syn, e)),
    }
}

async fn dns(p: &Probe, server: IpAddr, name: &str) -> Sized {
    let overhead = if server.is_ipv6() { 48u64 } else { 28 };
    let sock = tokio::net::UdpSocket::bind(SocketAddr::new(p.source, 0))
        .await
        .map_err(|e| (0, e))?;
    bind_device(&sock, &p.device).map_err(|e| (0, e))?;
    let query = crate::dns::txt::txt_query(p.ident, name);
    sock.send_to(&query, SocketAddr::new(server, 53))
        .await
        .map_err(|e| (0, e))?;
    let sent = query.len() as u64 + overhead;
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = sock.recv_from(&mut buf).await.map_err(|e| (sent, e))?;
        // Any answer to our id proves the path, whatever its rcode.
        if from.ip() == server && n >= 12 && buf[..2] == p.ident.to_be_bytes() {
            return Ok((sent, n as u64 + overhead));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_packets() {
        let req = echo_request(false, 0x1234, 7);
        assert_eq!(req.len(), 8 + ICMP_PAYLOAD);
        assert_eq!(checksum(&req), 0, "a packet with its checksum sums to zero");
        // The reply as a raw IPv4 socket returns it: IP header, then ICMP.
        let mut reply = vec![0x45u8];
        reply.extend([0u8; 19]);
        let mut icmp = req.clone();
        icmp[0] = 0;
        reply.extend(&icmp);
        assert!(is_echo_reply(false, &reply, 0x1234, 7));
        assert!(!is_echo_reply(false, &reply, 0x1234, 8));
        assert!(!is_echo_reply(false, &reply[..24], 0x1234, 7));
        let mut r6 = echo_request(true, 9, 1);
        assert_eq!(r6[0], 128);
        r6[0] = 129;
        assert!(is_echo_reply(true, &r6, 9, 1));
    }
}
