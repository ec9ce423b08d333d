//! The lease keeper behind `table_allocator_client`: gets a table for one
//! (family, interface, address), installs its rules, renews the lease, and
//! removes both when the address or the interface goes away.
//!
//! Its abstract socket doubles as a control endpoint: a second client for
//! the same address asks it for the table (`cmd` 0) or tells it to release
//! (`cmd` 1), instead of competing with it.

mod keeper;
mod socket;

pub use keeper::{Keeper, Stop};
pub use socket::{ask_running_client, server_answers, LeaseSocket};

use std::io;
use std::time::Duration;

use nix::sys::socket::UnixAddr;
use tracing::{debug, warn};

use crate::dgram::unix_addr;
use crate::netlink::rules::{AddressSpec, RuleSpec};
use crate::netlink::{Netlink, NetlinkError};
use crate::protocol::{client_socket_name, wire_clock_secs, LeaseKey, WireError};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub key: LeaseKey,
    pub prefix_len: u8,
    pub tag: Option<String>,
    /// The server's abstract name (`-d`).
    pub server: String,
    pub padded: bool,
    /// Requests sent before giving up (the original: 5, 2 s apart).
    pub attempts: u32,
    pub retry: Duration,
    /// The uid the server runs as: replies from any other uid are ignored
    /// (abstract names carry no permissions; anyone may bind the name).
    pub server_uid: u32,
    /// The server's pool (first, last table), when known: a table outside it
    /// is refused like a reserved one.
    pub tables: Option<(u32, u32)>,
    /// Interfaces whose forwarded traffic gets a 91000 rule beside `iif lo`.
    pub downstream: crate::netlink::rules::Downstream,
}

impl ClientConfig {
    /// How the lease keeper asks: the original's pace, given up after a
    /// round unanswered or a refusal.
    pub fn lease_config(&self) -> crate::lease::LeaseConfig {
        crate::lease::LeaseConfig {
            retry: self.retry,
            attempts: self.attempts,
            persistent: false,
            tables: self.tables,
            max_backoff: Duration::from_secs(60),
        }
    }

    /// Every rule of the address: the four, and one per downstream.
    pub fn rules(&self, table: u32) -> Vec<RuleSpec> {
        crate::netlink::rules::address_rules(&self.address_spec(), table, &self.downstream)
    }

    pub fn address_spec(&self) -> AddressSpec {
        AddressSpec {
            ifname: self.key.ifname.to_string(),
            address: self.key.address,
            prefix_len: self.prefix_len,
        }
    }

    pub fn socket_name(&self) -> String {
        client_socket_name(&self.key)
    }

    fn server_addr(&self) -> io::Result<UnixAddr> {
        unix_addr(&self.server, self.padded)
    }
}

/// Error replies to strangers at the control socket stop while this much of
/// our send buffer is held by replies not yet read.
const STRANGER_REPLY_BYTES: usize = 32 * 1024;

/// What asking for a lease came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// A table, valid for this long at the server.
    Table { table: u32, valid: Duration },
    /// The server answered with an error reply.
    Refused(WireError),
    /// No answer after every attempt.
    NoAnswer,
}

/// Adds every rule; returns the ones the kernel refused, with its reasons.
pub async fn install_rules(nl: &Netlink, rules: &[RuleSpec]) -> Vec<NetlinkError> {
    let mut failed = Vec::new();
    for r in rules {
        if let Err(e) = nl.add_rule(r).await {
            warn!("{e}");
            failed.push(e);
        }
    }
    failed
}

/// Deletes every rule, carrying on past failures, and reports them.
pub async fn remove_rules(nl: &Netlink, rules: &[RuleSpec]) -> Vec<NetlinkError> {
    let mut failed = Vec::new();
    for r in rules {
        match nl.del_rule(r).await {
            Ok(true) => debug!("deleted rule {r}"),
            Ok(false) => debug!("rule {r} was already gone"),
            Err(e) => {
                warn!("{e}");
                failed.push(e);
            }
        }
    }
    failed
}

/// Who may control a keeper (ask its table, release it): root, or the
/// keeper's own uid. The agent runs as root, so there this means root.
pub fn may_control(peer_uid: u32, my_uid: u32) -> bool {
    peer_uid == 0 || peer_uid == my_uid
}

/// Seconds until an absolute `lease_expires` of the wire.
pub fn remaining(lease_expires: u64) -> Duration {
    Duration::from_secs(lease_expires.saturating_sub(wire_clock_secs()))
}

/// When to renew: at half the remaining time, but not in a tight loop.
pub fn renew_after(lease_expires: u64) -> Duration {
    (remaining(lease_expires) / 2).max(Duration::from_secs(1))
}
