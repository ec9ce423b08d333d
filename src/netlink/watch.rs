//! The multicast watcher: link and address events, with a BPF filter so
//! a per-address client wakes only for its own interface's removals.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::AsyncSocket;
use rtnetlink::MulticastGroup;

use super::address::{address_of, HostAddr};
use super::NetlinkError;

/// What the watcher reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    AddressAdded(HostAddr),
    AddressRemoved {
        index: u32,
        address: IpAddr,
    },
    LinkRemoved {
        index: u32,
    },
    /// A route appeared or changed (with `Watcher::ipv6` and `host`).
    RouteAdded(Box<RouteMessage>),
    /// A route went (with `Watcher::host`).
    RouteRemoved(Box<RouteMessage>),
    /// Events were lost: re-read the kernel's state.
    Overrun,
}

/// A multicast subscription to link and address changes, or a share of
/// another watcher's events (`Watcher::fed`).
pub struct Watcher {
    rx: Source,
}

enum Source {
    Kernel(
        UnboundedReceiver<(
            NetlinkMessage<RouteNetlinkMessage>,
            rtnetlink::sys::SocketAddr,
        )>,
    ),
    Fed(tokio::sync::mpsc::UnboundedReceiver<Event>),
}

/// The sending side of `Watcher::fed`.
pub struct Feed(tokio::sync::mpsc::UnboundedSender<Event>);

impl Feed {
    /// Hands on what `Watcher::ipv6` would have delivered.
    pub fn offer_ipv6(&self, ev: &Event) {
        if ev.concerns_ipv6() {
            let _ = self.0.send(ev.clone());
        }
    }
}

impl Event {
    /// Link removals, lost events, and IPv6 addresses and routes.
    pub fn concerns_ipv6(&self) -> bool {
        use rtnetlink::packet_route::AddressFamily;
        match self {
            Event::AddressAdded(a) => a.address.is_ipv6(),
            Event::AddressRemoved { address, .. } => address.is_ipv6(),
            Event::RouteAdded(m) | Event::RouteRemoved(m) => {
                m.header.address_family == AddressFamily::Inet6
            }
            Event::LinkRemoved { .. } | Event::Overrun => true,
        }
    }
}

impl Watcher {
    /// Only the removals of link `index` and of its addresses: a socket
    /// filter drops everything else in the kernel, so a host with many
    /// per-address clients does not wake them all for every change. The
    /// connection runs on the current tokio runtime.
    pub fn removals_of(index: u32) -> Result<Watcher, NetlinkError> {
        Self::subscribe(
            &[
                MulticastGroup::Link,
                MulticastGroup::Ipv4Ifaddr,
                MulticastGroup::Ipv6Ifaddr,
            ],
            Some(index),
        )
    }

    /// Link removals and IPv6 address and route changes (the RA agent).
    pub fn ipv6() -> Result<Watcher, NetlinkError> {
        Self::subscribe(
            &[
                MulticastGroup::Link,
                MulticastGroup::Ipv6Ifaddr,
                MulticastGroup::Ipv6Route,
            ],
            None,
        )
    }

    /// Links, addresses and routes of both families: the agent's view.
    pub fn host() -> Result<Watcher, NetlinkError> {
        Self::subscribe(
            &[
                MulticastGroup::Link,
                MulticastGroup::Ipv4Ifaddr,
                MulticastGroup::Ipv6Ifaddr,
                MulticastGroup::Ipv4Route,
                MulticastGroup::Ipv6Route,
            ],
            None,
        )
    }

    /// A watcher fed by another's events: one process, one subscription
    /// (the agent hands its events on to the RA handling inside it).
    pub fn fed() -> (Feed, Watcher) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            Feed(tx),
            Watcher {
                rx: Source::Fed(rx),
            },
        )
    }

    fn subscribe(
        groups: &[MulticastGroup],
        removals_of: Option<u32>,
    ) -> Result<Watcher, NetlinkError> {
        let (mut conn, _handle, rx) = rtnetlink::new_multicast_connection(groups)?;
        if let Some(index) = removals_of {
            let fd = conn.socket_mut().socket_mut().as_raw_fd();
            attach_removal_filter(fd, index)?;
        }
        tokio::spawn(conn);
        Ok(Watcher {
            rx: Source::Kernel(rx),
        })
    }

    /// The next event; `None` when the subscription ended.
    pub async fn next(&mut self) -> Option<Event> {
        let rx = match &mut self.rx {
            Source::Kernel(rx) => rx,
            Source::Fed(rx) => return rx.recv().await,
        };
        loop {
            let (msg, _) = rx.next().await?;
            let event = match msg.payload {
                NetlinkPayload::Overrun(_) => Some(Event::Overrun),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(a)) => address_of(&a)
                    .map(|address| Event::AddressRemoved {
                        index: a.header.index,
                        address,
                    }),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) => {
                    HostAddr::from_message(&a).map(Event::AddressAdded)
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                    Some(Event::LinkRemoved {
                        index: l.header.index,
                    })
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                    Some(Event::RouteAdded(Box::new(r)))
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(r)) => {
                    Some(Event::RouteRemoved(Box::new(r)))
                }
                _ => None,
            };
            if event.is_some() {
                return event;
            }
        }
    }
}

/// Classic BPF over the whole netlink message: accept RTM_DELADDR and
/// RTM_DELLINK whose ifindex (offset 20 in both ifaddrmsg and ifinfomsg
/// messages) is `index`; drop the rest. BPF loads are big-endian and netlink
/// is host order, hence the byte swaps.
fn removal_filter(index: u32) -> [libc::sock_filter; 7] {
    // BPF_LD|BPF_H|BPF_ABS, BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K,
    // BPF_RET|BPF_K (BPF_LD, BPF_W and BPF_K are 0).
    const LD_H_ABS: u16 = 0x08 | 0x20;
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x05 | 0x10;
    const RET_K: u16 = 0x06;
    let half = |v: u16| u32::from(u16::from_be_bytes(v.to_ne_bytes()));
    let word = |v: u32| u32::from_be_bytes(v.to_ne_bytes());
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        op(LD_H_ABS, 0, 0, 4),
        op(JEQ_K, 1, 0, half(libc::RTM_DELADDR)),
        op(JEQ_K, 0, 3, half(libc::RTM_DELLINK)),
        op(LD_W_ABS, 0, 0, 20),
        op(JEQ_K, 0, 1, word(index)),
        op(RET_K, 0, 0, u32::MAX),
        op(RET_K, 0, 0, 0),
    ]
}

fn attach_removal_filter(fd: std::os::fd::RawFd, index: u32) -> io::Result<()> {
    let mut filter = removal_filter(index);
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filter`, both alive for the call; the kernel
    // copies the program.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
