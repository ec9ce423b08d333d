//! The raw ICMPv6 socket: router advertisements only (ICMP6_FILTER), each
//! with its receiving interface and hop limit; and router solicitations.

use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    self, sockopt, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockProtocol, SockType,
    SockaddrIn6,
};
use tracing::debug;

/// A raw ICMPv6 socket that passes router advertisements only, with the
/// receiving interface of each.
pub fn socket() -> io::Result<OwnedFd> {
    let fd = socket::socket(
        AddressFamily::Inet6,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::IcmpV6,
    )?;
    // ICMP6_FILTER: block everything but type 134.
    let mut filter = [u32::MAX; 8];
    filter[134 >> 5] &= !(1u32 << (134 & 31));
    // SAFETY: the filter array outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            1, // ICMP6_FILTER
            filter.as_ptr().cast(),
            std::mem::size_of_val(&filter) as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    socket::setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true)?;
    socket::setsockopt(&fd, sockopt::Ipv6RecvHopLimit, &true)?;
    // Solicitations go to all-routers with hop limit 255 (RFC 4861).
    socket::setsockopt(&fd, sockopt::Ipv6MulticastHops, &255)?;
    Ok(fd)
}

/// Reads one datagram: (interface, source, ICMPv6 message) of an RA that
/// arrived with hop limit 255 (so it was not forwarded).
pub fn read_ra(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<(u32, Ipv6Addr, usize)>> {
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<SockaddrIn6>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )?;
    let (mut index, mut hops) = (None, None);
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv6PacketInfo(p) => index = Some(p.ipi6_ifindex),
            ControlMessageOwned::Ipv6HopLimit(h) => hops = Some(h),
            _ => {}
        }
    }
    let (Some(from), Some(index)) = (msg.address, index) else {
        return Ok(None);
    };
    if hops != Some(255) {
        return Ok(None);
    }
    Ok(Some((index, from.ip(), msg.bytes)))
}

pub fn solicit(fd: &OwnedFd, index: u32) {
    let to = SockaddrIn6::from(SocketAddrV6::new(
        "ff02::2".parse().expect("literal"),
        0,
        0,
        index,
    ));
    if let Err(e) = socket::sendto(
        fd.as_raw_fd(),
        &super::solicitation(),
        &to,
        MsgFlags::empty(),
    ) {
        debug!(index, "router solicitation: {e}");
    }
}
