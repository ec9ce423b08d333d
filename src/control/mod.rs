//! The agent's control socket: how hooks, `mhr dns`, `mhr status` and
//! `table_allocator_client` talk to a running `mhr agent`.
//!
//! A filesystem stream socket in a directory only root may enter
//! (`/run/multihomed-routing/private/agent.sock`, the directory 0700): no
//! other user can bind it first, connect to it or send it stray replies,
//! and the agent checks each peer's credentials (SO_PEERCRED) besides. One
//! request per connection: a JSON object and a newline, answered by one
//! JSON object and a newline. The asker waits with one hard deadline that
//! nothing the agent or anyone else sends can extend. See
//! docs/security.md and docs/agent.md.

mod listen;

pub use listen::{listen, ListenError};

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where the agent listens unless `MHR_AGENT_SOCKET` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/multihomed-routing/private/agent.sock";

/// The longest request.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The longest reply: a status lists every address (about 150 bytes each;
/// 1,000 addresses make 150 kB).
pub const MAX_REPLY: usize = 16 * 1024 * 1024;

/// What a hook waits for the agent's answer, at most: longer than the
/// agent's own wait for a table (its lease requests for about ten seconds,
/// as the original client made them), after which it answers anyway.
pub const HOOK_DEADLINE: Duration = Duration::from_secs(20);

/// A request to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// A configurer (through its hook) configured an address: what it
    /// knows of the uplink. Answered once the address is routed by its
    /// table (or has none to be had, and its routes are in main).
    Uplink(UplinkReport),
    /// `ifname`'s name servers, reached from `source`; none removes them.
    Dns {
        ifname: String,
        source: IpAddr,
        servers: Vec<IpAddr>,
    },
    /// Forgets `ifname`'s name servers: every one, or one family's
    /// (`inet`, `inet6`).
    ForgetDns {
        ifname: String,
        family: Option<String>,
    },
    /// The table the agent keeps for this address (what a standalone
    /// `table_allocator_client` asks); answered once it is routed.
    Table { ifname: String, address: IpAddr },
    /// Gives the address's lease back and leaves it alone
    /// (`table_allocator_client -r`).
    Release { ifname: String, address: IpAddr },
    /// The agent's view, for `mhr status`.
    Status,
}

/// What a hook knows of one uplink address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkReport {
    pub ifname: String,
    pub address: IpAddr,
    pub prefix_len: u8,
    /// Default routers, in order (dhclient's `new_routers`, ifupdown's
    /// `gateway`, NetworkManager's `IP4_GATEWAY`).
    #[serde(default)]
    pub routers: Vec<IpAddr>,
    /// Classless static routes (RFC 3442), which replace the routers.
    #[serde(default)]
    pub static_routes: Vec<StaticRoute>,
    /// The first default route's metric (IF_METRIC).
    #[serde(default)]
    pub metric: Option<u32>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// The configurer owns main (NetworkManager): copy, do not move.
    #[serde(default)]
    pub keep_main: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    pub dest: Ipv4Addr,
    pub prefix_len: u8,
    /// 0.0.0.0: on-link.
    pub gateway: Ipv4Addr,
}

/// The agent's answer. `error` set: the request was refused or failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The address's table (0: none to be had; its routes are in main).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Seconds left on the lease (for `table_allocator_client`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::default()
    }

    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            error: Some(message.into()),
            ..Reply::default()
        }
    }
}

/// An MPTCP endpoint as the agent reports it (in its state).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentEndpoint {
    pub id: u8,
    pub address: IpAddr,
    /// The device it is bound to, else the interface holding the address.
    pub ifname: Option<String>,
    pub flags: Vec<String>,
    /// Added by the agent (id from 100).
    pub ours: bool,
    /// Established subflows from its address (filled in by `mhr status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subflows: Option<usize>,
}

/// The error `Reply::error` carries when the agent does not manage the
/// interface: the asker does the work itself, as without an agent.
pub const NOT_MANAGED: &str = "not managed by the agent";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("mhr agent at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("mhr agent at {path} did not answer within {secs} s")]
    Deadline { path: PathBuf, secs: u64 },
    #[error("mhr agent at {path}: unreadable answer: {message}")]
    Bad { path: PathBuf, message: String },
}

const CONNECT_RETRY: Duration = Duration::from_millis(100);

/// Where systemd says the agent is enabled (`systemctl enable mhr-agent`).
pub const ENABLED_LINK: &str = "/etc/systemd/system/multi-user.target.wants/mhr-agent.service";

/// Is an agent meant to run here? Its unit is enabled, or
/// `MHR_AGENT_EXPECTED=1` says so (hosts without systemd, tests). Then an
/// absent socket is waited for instead of meaning hooks mode.
pub fn agent_expected() -> bool {
    match std::env::var("MHR_AGENT_EXPECTED").as_deref() {
        Ok("1") => true,
        Ok(_) => false,
        Err(_) => std::path::Path::new(ENABLED_LINK).exists(),
    }
}

/// Asks the agent at `path` and waits, at most `limit` in all, for its
/// answer. `Ok(None)`: no agent runs there (no socket, nobody listening,
/// or not ours to reach: the caller works without one).
pub fn ask(path: &Path, req: &Request, limit: Duration) -> Result<Option<Reply>, ControlError> {
    ask_with(path, req, limit, agent_expected())
}

/// `ask`, told whether an agent is expected (then an absent socket is
/// waited for, within `limit`).
pub fn ask_with(
    path: &Path,
    req: &Request,
    limit: Duration,
    expected: bool,
) -> Result<Option<Reply>, ControlError> {
    let deadline = Instant::now() + limit;
    let io_err = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = loop {
        match UnixStream::connect(path) {
            Ok(s) => break s,
            // Not there yet or restarting (systemd starts it again within
            // a second) on a host whose agent is enabled: waited for, so
            // that no hook takes its place.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) && expected
                    && Instant::now() + CONNECT_RETRY < deadline =>
            {
                std::thread::sleep(CONNECT_RETRY)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::PermissionDenied
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(io_err(e)),
        }
    };
    let timed_out = || ControlError::Deadline {
        path: path.to_owned(),
        secs: limit.as_secs(),
    };
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    };
    let mut line = serde_json::to_vec(req).map_err(|e| io_err(io::Error::other(e)))?;
    line.push(b'\n');
    stream
        .set_write_timeout(Some(left().ok_or_else(timed_out)?))
        .map_err(io_err)?;
    stream.write_all(&line).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timed_out(),
        _ => io_err(e),
    })?;
    // One deadline for the whole answer: each read waits only for what is
    // left of it, so a slow trickle cannot stretch it.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.ends_with(b"\n") {
        let t = left().ok_or_else(timed_out)?;
        stream.set_read_timeout(Some(t)).map_err(io_err)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
        if answer.len() > MAX_REPLY {
            return Err(ControlError::Bad {
                path: path.to_owned(),
                message: "too long".into(),
            });
        }
    }
    serde_json::from_slice(&answer)
        .map(Some)
        .map_err(|e| ControlError::Bad {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// Is an agent listening at `path`?
pub fn agent_running(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

#[cfg(test)]
mod tests;
