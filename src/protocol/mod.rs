//! Wire protocol v1 of the table allocator, as spoken by the original C
//! implementation: JSON objects in AF_UNIX datagrams between abstract names.
//!
//! Field order on the wire follows the original so that captured datagrams
//! compare byte for byte. See `docs/protocol.md`.

mod reply;
mod request;

pub use reply::{check_table, fit_json_string, Reply, RESERVED_TABLES};
pub use request::Request;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde_json::Value;

use crate::addr::Family;

pub const VERSION: u64 = 1;
/// Largest datagram either side accepts; the original used the same limit.
pub const MAX_DATAGRAM: usize = 512;
/// `IFNAMSIZ - 1`.
pub const MAX_IFNAME: usize = 15;
pub const MAX_TAG: usize = 127;
pub const DEFAULT_SERVER_NAME: &str = "tas_socket";

pub const CMD_REQ: u64 = 0;
pub const CMD_REL: u64 = 1;
pub const CMD_RESP: u64 = 2;
pub const CMD_ERROR: u64 = 3;
/// Our addition: "are you there?", answered like a release (table 0),
/// neither logged nor counted. An original server does not answer it.
pub const CMD_PING: u64 = 4;

/// The ping datagram `mhr status` sends.
pub fn ping() -> Vec<u8> {
    format!(r#"{{"version":{VERSION},"cmd":{CMD_PING}}}"#).into_bytes()
}

/// Is this datagram a ping (and nothing else)?
pub fn is_ping(bytes: &[u8]) -> bool {
    if bytes.len() > 64 {
        return false;
    }
    let Ok(v) = read_json(bytes, "ping") else {
        return false;
    };
    v.as_object().is_some_and(|o| {
        o.len() == 2
            && o.get("version").and_then(Value::as_u64) == Some(VERSION)
            && o.get("cmd").and_then(Value::as_u64) == Some(CMD_PING)
    })
}

/// Stable error codes of the `cmd` 3 reply (our addition to v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Malformed,
    NotObject,
    TooLarge,
    BadVersion,
    BadCmd,
    BadFamily,
    BadIfname,
    BadAddress,
    BadTag,
    FamilyDisabled,
    PoolExhausted,
    NotPermitted,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::Malformed,
        ErrorCode::NotObject,
        ErrorCode::TooLarge,
        ErrorCode::BadVersion,
        ErrorCode::BadCmd,
        ErrorCode::BadFamily,
        ErrorCode::BadIfname,
        ErrorCode::BadAddress,
        ErrorCode::BadTag,
        ErrorCode::FamilyDisabled,
        ErrorCode::PoolExhausted,
        ErrorCode::NotPermitted,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::NotObject => "not_object",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BadVersion => "bad_version",
            ErrorCode::BadCmd => "bad_cmd",
            ErrorCode::BadFamily => "bad_family",
            ErrorCode::BadIfname => "bad_ifname",
            ErrorCode::BadAddress => "bad_address",
            ErrorCode::BadTag => "bad_tag",
            ErrorCode::FamilyDisabled => "family_disabled",
            ErrorCode::PoolExhausted => "pool_exhausted",
            ErrorCode::NotPermitted => "not_permitted",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused datagram: the code goes on the wire, the message to the human.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Request,
    Release,
}

/// An interface name, validated and stored inline (no heap), so that lease
/// keys are small and `Copy`: the server keeps 65,536 of them in a few MB.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfName {
    len: u8,
    bytes: [u8; MAX_IFNAME],
}

impl IfName {
    pub fn new(name: &str) -> Result<IfName, WireError> {
        validate_ifname(name)?;
        let mut bytes = [0u8; MAX_IFNAME];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(IfName {
            len: name.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("validated UTF-8")
    }
}

impl FromStr for IfName {
    type Err = WireError;
    fn from_str(s: &str) -> Result<IfName, WireError> {
        IfName::new(s)
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl PartialEq<&str> for IfName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What identifies a lease: one per (family, interface, address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey {
    pub family: Family,
    pub ifname: IfName,
    pub address: IpAddr,
}

impl LeaseKey {
    /// Validates the parts; the address must be of the family.
    pub fn new(family: Family, ifname: &str, address: &str) -> Result<LeaseKey, WireError> {
        let ifname = IfName::new(ifname)?;
        let address = family.parse_address(address).ok_or_else(|| {
            WireError::new(
                ErrorCode::BadAddress,
                format!("{address:?} is not an {family} address"),
            )
        })?;
        Ok(LeaseKey {
            family,
            ifname,
            address,
        })
    }
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.family, self.ifname, self.address)
    }
}

/// The kernel's rules for interface names (`dev_valid_name`).
pub fn validate_ifname(name: &str) -> Result<(), WireError> {
    let bad = |why: &str| {
        Err(WireError::new(
            ErrorCode::BadIfname,
            format!("interface name {name:?} {why}"),
        ))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > MAX_IFNAME {
        return bad("is longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("is reserved");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return bad("contains '/', ':', white space or a control character");
    }
    Ok(())
}

/// Parses a datagram, refusing a repeated key: serde_json would keep the
/// last silently, so a log line and the decision could read different values.
fn read_json(bytes: &[u8], what: &str) -> Result<Value, WireError> {
    use crate::jsonkeys::{parse_json, ReadError};
    parse_json(bytes).map_err(|e| match e {
        ReadError::Duplicate(key) => WireError::new(
            ErrorCode::Malformed,
            format!("{what} repeats the key {key}"),
        ),
        ReadError::Syntax(e) => WireError::new(ErrorCode::Malformed, format!("invalid JSON: {e}")),
    })
}

/// Seconds of CLOCK_MONOTONIC_RAW: the clock `lease_expires` is measured in.
pub fn wire_clock_secs() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_RAW)
        .map(|t| t.tv_sec() as u64)
        .unwrap_or(0)
}

/// The client's own abstract name, as the original formed it.
pub fn client_socket_name(key: &LeaseKey) -> String {
    format!("{}-{}-{}", key.ifname, key.address, key.family.code())
}

#[cfg(test)]
mod tests;
