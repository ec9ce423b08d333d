//! The multicast watcher: link, address, route and rule events (the
//! agent's one subscription), or with a BPF filter, so that a per-address
//! client wakes only for its own interface's removals.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::AsyncSocket;
use rtnetlink::MulticastGroup;

use super::address::{address_of, HostAddr};
use super::link::LinkInfo;
use super::route::kernel_route;
use super::rule::our_rule;
use super::NetlinkError;
use crate::netlink::routes::KernelRoute;
use crate::netlink::rules::RuleSpec;

/// What the watcher reports. Route and rule events carry the netlink port
/// of the request that caused them (0: the kernel itself, such as a route
/// expiring), which tells our own changes from others'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    AddressAdded(HostAddr),
    AddressRemoved {
        index: u32,
        address: IpAddr,
    },
    /// A link appeared or changed (its name, its flags).
    LinkChanged(LinkInfo),
    LinkRemoved {
        index: u32,
    },
    RouteAdded {
        route: KernelRoute,
        port: u32,
    },
    RouteRemoved {
        route: KernelRoute,
        port: u32,
    },
    /// A rule of ours (protocol 77) appeared.
    RuleAdded {
        rule: RuleSpec,
        port: u32,
    },
    /// A rule of ours went.
    RuleRemoved {
        rule: RuleSpec,
        port: u32,
    },
    /// Events were lost: re-read the kernel's state.
    Overrun,
}

/// A multicast subscription to link and address changes (and, for the
/// agent, routes and rules).
pub struct Watcher {
    rx: UnboundedReceiver<(
        NetlinkMessage<RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
}

/// Room for the events of a thousand addresses coming at once (each brings
/// its rules and routes): an overrun costs a full re-read.
const EVENT_BUFFER: usize = 8 << 20;

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

    /// Links, addresses, routes and rules of both families: the agent's
    /// one subscription.
    pub fn host() -> Result<Watcher, NetlinkError> {
        Self::subscribe(
            &[
                MulticastGroup::Link,
                MulticastGroup::Ipv4Ifaddr,
                MulticastGroup::Ipv6Ifaddr,
                MulticastGroup::Ipv4Route,
                MulticastGroup::Ipv6Route,
                MulticastGroup::Ipv4Rule,
                MulticastGroup::Ipv6Rule,
            ],
            None,
        )
    }

    fn subscribe(
        groups: &[MulticastGroup],
        removals_of: Option<u32>,
    ) -> Result<Watcher, NetlinkError> {
        let (mut conn, _handle, rx) = rtnetlink::new_multicast_connection(groups)?;
        let fd = conn.socket_mut().socket_mut().as_raw_fd();
        if let Some(index) = removals_of {
            attach_removal_filter(fd, index)?;
        } else {
            force_receive_buffer(fd, EVENT_BUFFER);
        }
        tokio::spawn(conn);
        Ok(Watcher { rx })
    }

    /// The next event; `None` when the subscription ended.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let (msg, _) = self.rx.next().await?;
            if let Some(event) = event_of(msg) {
                return Some(event);
            }
        }
    }

    /// The next event if one is queued, without waiting: the agent takes
    /// a burst of events in one go and plans once.
    pub fn try_next(&mut self) -> Option<Option<Event>> {
        loop {
            match self.rx.try_recv() {
                Ok((msg, _)) => {
                    if let Some(event) = event_of(msg) {
                        return Some(Some(event));
                    }
                }
                Err(futures::channel::mpsc::TryRecvError::Closed) => return Some(None),
                Err(futures::channel::mpsc::TryRecvError::Empty) => return None,
            }
        }
    }
}

fn event_of(msg: NetlinkMessage<RouteNetlinkMessage>) -> Option<Event> {
    let port = msg.header.port_number;
    match msg.payload {
        NetlinkPayload::Overrun(_) => Some(Event::Overrun),
        NetlinkPayload::InnerMessage(m) => match m {
            RouteNetlinkMessage::DelAddress(a) => {
                address_of(&a).map(|address| Event::AddressRemoved {
                    index: a.header.index,
                    address,
                })
            }
            RouteNetlinkMessage::NewAddress(a) => {
                HostAddr::from_message(&a).map(Event::AddressAdded)
            }
            RouteNetlinkMessage::NewLink(l) => Some(Event::LinkChanged(LinkInfo::from_message(&l))),
            RouteNetlinkMessage::DelLink(l) => Some(Event::LinkRemoved {
                index: l.header.index,
            }),
            RouteNetlinkMessage::NewRoute(r) => {
                kernel_route(&r).map(|route| Event::RouteAdded { route, port })
            }
            RouteNetlinkMessage::DelRoute(r) => {
                kernel_route(&r).map(|route| Event::RouteRemoved { route, port })
            }
            RouteNetlinkMessage::NewRule(r) => {
                our_rule(&r).map(|rule| Event::RuleAdded { rule, port })
            }
            RouteNetlinkMessage::DelRule(r) => {
                our_rule(&r).map(|rule| Event::RuleRemoved { rule, port })
            }
            _ => None,
        },
        _ => None,
    }
}

/// SO_RCVBUFFORCE (root may go past rmem_max); a refusal leaves the
/// default, and overruns are handled by re-reading.
fn force_receive_buffer(fd: std::os::fd::RawFd, bytes: usize) {
    let v = bytes as libc::c_int;
    // SAFETY: a c_int option value that outlives the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
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
