//! Talking to a running `mhr agent`:
//! - an address's table, in place of spawning `table_allocator_client`: one
//!   datagram to the address's client name (which the agent's lease task
//!   holds) and one reply, sent when the agent has the lease;
//! - an uplink's name servers, through the agent's control socket
//!   (`@mhr_agent`), which takes requests from root only.
//!
//! Replies count only from the agent's names and from root.

use std::io;
use std::net::IpAddr;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::addr::family_of;
use crate::dgram;
use crate::protocol::{check_table, client_socket_name, Action, LeaseKey, Reply, Request};

/// The abstract name a running agent holds (padded, like the original's
/// names): its presence says that hooks may ask it.
pub const AGENT_NAME: &str = "mhr_agent";

/// Is an agent running in this network namespace?
pub fn agent_running() -> bool {
    let (Ok(sock), Ok(to)) = (
        UnixDatagram::unbound(),
        dgram::abstract_addr(AGENT_NAME, true),
    ) else {
        return false;
    };
    sock.set_nonblocking(true).is_ok() && sock.send_to_addr(&[], &to).is_ok()
}

/// The table the agent keeps for `address` on `ifname`, or `None` when no
/// agent answers in time (the caller then runs the client itself).
pub fn ask_agent(ifname: &str, address: IpAddr) -> Option<u32> {
    let key = LeaseKey::new(family_of(&address), ifname, &address.to_string()).ok()?;
    let name = client_socket_name(&key);
    let to = dgram::abstract_addr(&name, true).ok()?;
    let from = dgram::unix_addr(&name, true).ok()?;
    let sock = UnixDatagram::unbound().ok()?;
    dgram::enable_credentials(&sock).ok()?;
    let req = Request {
        action: Action::Request,
        key,
        tag: None,
    }
    .encode();
    // The agent binds the name when it sees the address, a moment after
    // the hook added it.
    let start = Instant::now();
    loop {
        match sock.send_to_addr(&req, &to) {
            Ok(_) => break,
            Err(e)
                if e.raw_os_error() == Some(libc::ECONNREFUSED)
                    && start.elapsed() < Duration::from_millis(500) =>
            {
                // The agent binds within a netlink event's time of the
                // address: poll finely, not in whole milliseconds.
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(_) => return None,
        }
    }
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = [0u8; crate::protocol::MAX_DATAGRAM + 1];
    loop {
        let r = match dgram::recv_with_credentials_std(&sock, &mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        if !r.sent_by(&from, 0) {
            continue;
        }
        return match Reply::decode(&buf[..r.len.min(buf.len())]).ok()? {
            Reply::Lease { table, .. } if table != 0 => check_table(table, None).ok(),
            _ => None,
        };
    }
}

/// A request at the agent's control socket (JSON, at most
/// `CONTROL_MAX` bytes). An empty datagram is a presence check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Control {
    /// `ifname`'s name servers, reached from `source`; none removes them.
    Dns {
        ifname: String,
        source: IpAddr,
        servers: Vec<IpAddr>,
    },
}

/// The agent's answer: `error` empty when done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlReply {
    pub error: String,
}

pub const CONTROL_MAX: usize = 4096;

/// Sends `req` to the running agent and waits for its answer. `Ok(None)`:
/// no agent runs (the caller does the work itself).
pub fn ask_control(req: &Control) -> io::Result<Option<ControlReply>> {
    let to = dgram::abstract_addr(AGENT_NAME, true)?;
    let from = dgram::unix_addr(AGENT_NAME, true)?;
    let sock = UnixDatagram::unbound()?;
    dgram::enable_credentials(&sock)?;
    let bytes = serde_json::to_vec(req).map_err(io::Error::other)?;
    match sock.send_to_addr(&bytes, &to) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => return Ok(None),
        Err(e) => return Err(e),
    }
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; CONTROL_MAX];
    loop {
        let r = dgram::recv_with_credentials_std(&sock, &mut buf)?;
        if !r.sent_by(&from, 0) {
            continue;
        }
        let reply = serde_json::from_slice(&buf[..r.len.min(buf.len())])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        return Ok(Some(reply));
    }
}
