//! The one layer that touches the kernel's routing, over rtnetlink (no `ip`
//! subprocesses), and the pure planners whose plans it applies.
//!
//! - `rules`, `routes`: pure. What rules an address needs, what routes an
//!   uplink's table holds, what moves out of main. No I/O; unit-tested.
//! - `link`, `address`, `rule`, `route`: one file per kernel object, each an
//!   `impl Netlink` with the requests for it and the message conversions.
//! - `watch`: the multicast subscription to link and address events.

mod address;
mod link;
pub mod mptcp;
mod owner;
mod route;
pub(crate) mod routes;
mod rule;
pub(crate) mod rules;
mod watch;

pub use address::{
    Addr6, HostAddr, IFAPROT_KERNEL_RA, IFA_F_DADFAILED, IFA_F_TEMPORARY, IFA_F_TENTATIVE,
};
pub use link::LinkInfo;
pub use owner::port_owner;
pub use route::{
    describe_route, is_ours, kernel_route, route_gateway, route_message, route_table,
    set_route_table,
};
pub use rule::{our_rule, rule_message};
pub use watch::{Event, Watcher};

use std::io;

use futures::StreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::Handle;

use crate::addr::Family;

pub const EEXIST: i32 = libc::EEXIST;
pub const ENOENT: i32 = libc::ENOENT;
pub const ESRCH: i32 = libc::ESRCH;
pub const ENODEV: i32 = libc::ENODEV;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    #[error("{what}: {}", io::Error::from_raw_os_error(*errno))]
    Kernel { what: String, errno: i32 },
    #[error("{what}: {message}")]
    Other { what: String, message: String },
}

impl NetlinkError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    fn from_rt(what: impl Into<String>, e: rtnetlink::Error) -> NetlinkError {
        match e {
            rtnetlink::Error::NetlinkError(msg) if msg.code.is_some() => NetlinkError::Kernel {
                what: what.into(),
                errno: -msg.code.map(|c| c.get()).unwrap_or(0),
            },
            other => NetlinkError::Other {
                what: what.into(),
                message: other.to_string(),
            },
        }
    }
}

pub(super) fn netlink_family(family: Family) -> AddressFamily {
    match family {
        Family::Inet6 => AddressFamily::Inet6,
        _ => AddressFamily::Inet,
    }
}

/// A route-netlink connection whose I/O runs as a task on the current
/// tokio runtime. Clones share it.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    /// The kernel runs one dump at a time per socket and refuses a second
    /// with EBUSY: tasks sharing the connection take turns.
    dumping: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Our netlink port: the kernel stamps it on the events our requests
    /// cause, so the agent tells its own changes from others'.
    port: u32,
}

/// Dumps asked of the kernel by this process (`mhr status` and the
/// benchmark show the agent's: in steady state only its audit dumps).
static DUMPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many dumps this process has asked for.
pub fn dumps() -> u64 {
    DUMPS.load(std::sync::atomic::Ordering::Relaxed)
}

impl Netlink {
    pub fn connect() -> Result<Netlink, NetlinkError> {
        use rtnetlink::sys::AsyncSocket;
        let (mut conn, handle, _) = rtnetlink::new_connection()?;
        // Bound now (not at the first send), so the port is known.
        let port = conn.socket_mut().socket_mut().bind_auto()?.port_number();
        tokio::spawn(conn);
        Ok(Netlink {
            handle,
            dumping: Default::default(),
            port,
        })
    }

    /// The port our requests come from.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Held for the length of a dump.
    pub(super) async fn dump_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        DUMPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dumping.lock().await
    }

    pub(super) async fn request(
        &self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), NetlinkError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        let mut handle = self.handle.clone();
        let mut resp = handle
            .request(req)
            .map_err(|e| NetlinkError::from_rt(what, e))?;
        while let Some(m) = resp.next().await {
            if let NetlinkPayload::Error(err) = m.payload {
                if let Some(code) = err.code {
                    return Err(NetlinkError::Kernel {
                        what: what.to_owned(),
                        errno: -code.get(),
                    });
                }
            }
        }
        Ok(())
    }
}
