//! Wire protocol v1 of the table allocator, as spoken by the original C
//! implementation: JSON objects in AF_UNIX datagrams between abstract names.
//!
//! Field order on the wire follows the original so that captured datagrams
//! compare byte for byte. See `docs/protocol.md`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};

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

/// Address family codes (Linux `AF_*` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Unspec,
    Inet,
    Inet6,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Unspec, Family::Inet, Family::Inet6];

    pub fn code(self) -> u8 {
        match self {
            Family::Unspec => 0,
            Family::Inet => 2,
            Family::Inet6 => 10,
        }
    }

    pub fn from_code(code: u64) -> Option<Family> {
        match code {
            0 => Some(Family::Unspec),
            2 => Some(Family::Inet),
            10 => Some(Family::Inet6),
            _ => None,
        }
    }

    /// The config key naming this family's pool.
    pub fn name(self) -> &'static str {
        match self {
            Family::Unspec => "unspec",
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
        }
    }

    /// Parses an address of this family; `2001:DB8::1` and `2001:db8::1`
    /// are one address and so name one lease.
    pub fn parse_address(self, text: &str) -> Option<IpAddr> {
        let addr: IpAddr = text.parse().ok()?;
        match (self, addr) {
            (Family::Inet, IpAddr::V4(_))
            | (Family::Inet6, IpAddr::V6(_))
            | (Family::Unspec, _) => Some(addr),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub action: Action,
    pub key: LeaseKey,
    pub tag: Option<String>,
}

/// Serialized in the original's field order.
#[derive(Serialize)]
struct RequestWire<'a> {
    address: String,
    ifname: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    addr_family: u8,
    cmd: u64,
    version: u64,
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let wire = RequestWire {
            address: self.key.address.to_string(),
            ifname: self.key.ifname.as_str(),
            tag: self.tag.as_deref(),
            addr_family: self.key.family.code(),
            cmd: match self.action {
                Action::Request => CMD_REQ,
                Action::Release => CMD_REL,
            },
            version: VERSION,
        };
        serde_json::to_vec(&wire).expect("request serializes")
    }

    /// Decodes and validates one datagram. Every way a request can be wrong
    /// maps to an [`ErrorCode`]; nothing here panics on input.
    pub fn decode(bytes: &[u8]) -> Result<Request, WireError> {
        if bytes.len() > MAX_DATAGRAM {
            return Err(WireError::new(
                ErrorCode::TooLarge,
                format!("datagram of {} bytes exceeds {MAX_DATAGRAM}", bytes.len()),
            ));
        }
        // The original sent C strings; tolerate a trailing NUL.
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        let value = read_json(bytes, "request")?;
        let obj = value
            .as_object()
            .ok_or_else(|| WireError::new(ErrorCode::NotObject, "request is not a JSON object"))?;

        match obj.get("version").and_then(Value::as_u64) {
            Some(VERSION) => {}
            _ => {
                return Err(WireError::new(
                    ErrorCode::BadVersion,
                    format!("version must be {VERSION}"),
                ))
            }
        }
        let action = match obj.get("cmd").and_then(Value::as_u64) {
            Some(CMD_REQ) => Action::Request,
            Some(CMD_REL) => Action::Release,
            _ => {
                return Err(WireError::new(
                    ErrorCode::BadCmd,
                    format!("cmd must be {CMD_REQ} (request) or {CMD_REL} (release)"),
                ))
            }
        };
        let family = obj
            .get("addr_family")
            .and_then(Value::as_u64)
            .and_then(Family::from_code)
            .ok_or_else(|| {
                WireError::new(ErrorCode::BadFamily, "addr_family must be 0, 2 or 10")
            })?;
        let ifname = str_field(obj, "ifname", ErrorCode::BadIfname)?;
        let address = str_field(obj, "address", ErrorCode::BadAddress)?;
        let key = LeaseKey::new(family, ifname, address)?;
        let tag = match obj.get("tag") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if t.len() <= MAX_TAG && !t.contains('\0') => Some(t.clone()),
            Some(_) => {
                return Err(WireError::new(
                    ErrorCode::BadTag,
                    format!("tag must be a string of at most {MAX_TAG} bytes"),
                ))
            }
        };
        Ok(Request { action, key, tag })
    }
}

fn str_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    code: ErrorCode,
) -> Result<&'a str, WireError> {
    obj.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| WireError::new(code, format!("{name} must be a string")))
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

/// Bytes `c` takes inside a JSON string as serde_json writes it.
fn json_escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// `text` cut so that, escaped as a JSON string, it takes at most `room`
/// bytes; a cut text ends in `…`. One pass over at most `room` characters.
pub fn fit_json_string(text: &str, room: usize) -> std::borrow::Cow<'_, str> {
    const MORE: char = '…';
    let mut used = 0;
    let mut cut_at = None;
    for (i, c) in text.char_indices() {
        let n = json_escaped_len(c);
        if cut_at.is_none() && used + n > room.saturating_sub(MORE.len_utf8()) {
            cut_at = Some(i);
        }
        if used + n > room {
            let mut out = text[..cut_at.unwrap_or(i)].to_owned();
            out.push(MORE);
            return out.into();
        }
        used += n;
    }
    text.into()
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

/// Tables a reply may never name: `unspec` (0), `default` (253), `main`
/// (254) and `local` (255). Rules pointing there would reroute, or on
/// clean-up empty, the host's own tables.
pub const RESERVED_TABLES: [u32; 4] = [0, 253, 254, 255];

/// Checks a leased table before anything is installed for it: never a
/// reserved table, and inside the server's pool when its range is known.
pub fn check_table(table: u32, range: Option<(u32, u32)>) -> Result<u32, String> {
    if RESERVED_TABLES.contains(&table) {
        return Err(format!("table {table} is reserved by the kernel"));
    }
    if let Some((first, last)) = range {
        if !(first..=last).contains(&table) {
            return Err(format!(
                "table {table} is outside the server's pool {first}-{last}"
            ));
        }
    }
    Ok(table)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `table` 0 with `lease_expires` 0 acknowledges a release.
    Lease {
        table: u32,
        lease_expires: u64,
    },
    Error(WireError),
}

#[derive(Serialize)]
struct LeaseWire {
    version: u64,
    cmd: u64,
    table: u32,
    lease_expires: u64,
}

#[derive(Serialize)]
struct ErrorWire<'a> {
    version: u64,
    cmd: u64,
    error: &'a str,
    message: &'a str,
}

impl Reply {
    pub fn released() -> Reply {
        Reply::Lease {
            table: 0,
            lease_expires: 0,
        }
    }

    /// The reply's datagram. Its size is bounded by construction: an error
    /// message is cut (on a character boundary, counting JSON escapes) so the
    /// whole reply fits [`MAX_DATAGRAM`], whatever the request echoed.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Lease {
                table,
                lease_expires,
            } => serde_json::to_vec(&LeaseWire {
                version: VERSION,
                cmd: CMD_RESP,
                table: *table,
                lease_expires: *lease_expires,
            })
            .expect("reply serializes"),
            Reply::Error(e) => {
                let wire = |message: &str| {
                    serde_json::to_vec(&ErrorWire {
                        version: VERSION,
                        cmd: CMD_ERROR,
                        error: e.code.as_str(),
                        message,
                    })
                    .expect("reply serializes")
                };
                let room = MAX_DATAGRAM - wire("").len();
                wire(&fit_json_string(&e.message, room))
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Reply, WireError> {
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        let value = read_json(bytes, "reply")?;
        let obj = value
            .as_object()
            .ok_or_else(|| WireError::new(ErrorCode::NotObject, "reply is not a JSON object"))?;
        if obj.get("version").and_then(Value::as_u64) != Some(VERSION) {
            return Err(WireError::new(
                ErrorCode::BadVersion,
                "unknown reply version",
            ));
        }
        match obj.get("cmd").and_then(Value::as_u64) {
            Some(CMD_RESP) => {
                let table = obj
                    .get("table")
                    .and_then(Value::as_u64)
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(|| WireError::new(ErrorCode::Malformed, "reply without table"))?;
                let lease_expires = obj
                    .get("lease_expires")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| {
                        WireError::new(ErrorCode::Malformed, "reply without lease_expires")
                    })?;
                Ok(Reply::Lease {
                    table,
                    lease_expires,
                })
            }
            Some(CMD_ERROR) => {
                let code = obj
                    .get("error")
                    .and_then(Value::as_str)
                    .and_then(ErrorCode::parse)
                    .unwrap_or(ErrorCode::Internal);
                let message = obj
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                Ok(Reply::Error(WireError { code, message }))
            }
            _ => Err(WireError::new(ErrorCode::BadCmd, "unknown reply cmd")),
        }
    }
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
mod tests {
    use super::*;

    fn key() -> LeaseKey {
        LeaseKey::new(Family::Inet, "veth0", "10.10.0.2").unwrap()
    }

    #[test]
    fn encodes_request_like_the_original() {
        let req = Request {
            action: Action::Request,
            key: key(),
            tag: None,
        };
        assert_eq!(
            String::from_utf8(req.encode()).unwrap(),
            r#"{"address":"10.10.0.2","ifname":"veth0","addr_family":2,"cmd":0,"version":1}"#
        );
        let rel = Request {
            action: Action::Release,
            key: key(),
            tag: Some("mytag".into()),
        };
        assert_eq!(
            String::from_utf8(rel.encode()).unwrap(),
            r#"{"address":"10.10.0.2","ifname":"veth0","tag":"mytag","addr_family":2,"cmd":1,"version":1}"#
        );
    }

    #[test]
    fn encodes_replies_like_the_original() {
        let r = Reply::Lease {
            table: 10000,
            lease_expires: 5528,
        };
        assert_eq!(
            r.encode(),
            br#"{"version":1,"cmd":2,"table":10000,"lease_expires":5528}"#
        );
        assert_eq!(
            Reply::released().encode(),
            br#"{"version":1,"cmd":2,"table":0,"lease_expires":0}"#
        );
        let e = Reply::Error(WireError::new(ErrorCode::PoolExhausted, "no table"));
        assert_eq!(
            e.encode(),
            br#"{"version":1,"cmd":3,"error":"pool_exhausted","message":"no table"}"#
        );
        assert_eq!(Reply::decode(&e.encode()).unwrap(), e);
        assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn decodes_and_canonicalizes() {
        let r = Request::decode(
            br#"{"address":"2001:DB8::1","ifname":"wwan0","addr_family":10,"cmd":0,"version":1}"#,
        )
        .unwrap();
        assert_eq!(r.key.address.to_string(), "2001:db8::1");
        assert_eq!(r.key.family, Family::Inet6);
        // A trailing NUL, as a C sender may include, is fine.
        assert!(Request::decode(
            b"{\"address\":\"10.0.0.1\",\"ifname\":\"a\",\"addr_family\":0,\"cmd\":1,\"version\":1}\0"
        )
        .is_ok());
    }

    #[test]
    fn rejects_bad_requests_with_codes() {
        let cases: &[(&[u8], ErrorCode)] = &[
            (b"{", ErrorCode::Malformed),
            (b"", ErrorCode::Malformed),
            (b"[1,2]", ErrorCode::NotObject),
            (b"\"x\"", ErrorCode::NotObject),
            (br#"{"address":"10.0.0.1","ifname":"a","addr_family":2,"cmd":0,"version":2}"#, ErrorCode::BadVersion),
            (br#"{"address":"10.0.0.1","ifname":"a","addr_family":2,"cmd":0}"#, ErrorCode::BadVersion),
            (br#"{"address":"10.0.0.1","ifname":"a","addr_family":2,"cmd":2,"version":1}"#, ErrorCode::BadCmd),
            (br#"{"address":"10.0.0.1","ifname":"a","addr_family":2,"cmd":"0","version":1}"#, ErrorCode::BadCmd),
            (br#"{"address":"10.0.0.1","ifname":"a","addr_family":7,"cmd":0,"version":1}"#, ErrorCode::BadFamily),
            (br#"{"address":"10.0.0.1","ifname":"abcdefghijklmnop","addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadIfname),
            (br#"{"address":"10.0.0.1","ifname":"","addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadIfname),
            (br#"{"address":"10.0.0.1","ifname":"a/b","addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadIfname),
            (br#"{"address":"10.0.0.1","ifname":5,"addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadIfname),
            (br#"{"address":"::1","ifname":"a","addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadAddress),
            (br#"{"address":"10.0.0.1","ifname":"a","addr_family":10,"cmd":0,"version":1}"#, ErrorCode::BadAddress),
            (br#"{"address":"10.0.0.300","ifname":"a","addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadAddress),
            (br#"{"ifname":"a","addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadAddress),
            (br#"{"address":"10.0.0.1","ifname":"a","tag":7,"addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadTag),
        ];
        for (bytes, code) in cases {
            let err = Request::decode(bytes).unwrap_err();
            assert_eq!(err.code, *code, "{}", String::from_utf8_lossy(bytes));
        }
        let big = vec![b' '; MAX_DATAGRAM + 1];
        assert_eq!(Request::decode(&big).unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn error_replies_stay_within_the_datagram_limit() {
        let e = Reply::Error(WireError::new(ErrorCode::Malformed, "x".repeat(2000)));
        assert!(e.encode().len() <= MAX_DATAGRAM);
        // Once this recursed until the stack overflowed: 100 four-byte
        // characters echoed in the message never got shorter than 512 bytes.
        let name = "\u{1D11E}".repeat(100);
        let req = format!(
            r#"{{"address":"10.0.0.1","ifname":"{name}","addr_family":2,"cmd":0,"version":1}}"#
        );
        assert!(req.len() <= MAX_DATAGRAM);
        let err = Request::decode(req.as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadIfname);
        let bytes = Reply::Error(err).encode();
        assert!(bytes.len() <= MAX_DATAGRAM, "{}", bytes.len());
        assert!(matches!(
            Reply::decode(&bytes).unwrap(),
            Reply::Error(WireError {
                code: ErrorCode::BadIfname,
                ..
            })
        ));
        // A message over the limit is cut, visibly.
        let long = Reply::Error(WireError::new(
            ErrorCode::BadIfname,
            "\u{1D11E}".repeat(200),
        ));
        let Reply::Error(cut) = Reply::decode(&long.encode()).unwrap() else {
            panic!()
        };
        assert!(cut.message.ends_with('…'));
        // Control characters take six bytes escaped; still within the limit.
        let e = Reply::Error(WireError::new(ErrorCode::BadTag, "\u{1}".repeat(600)));
        assert!(e.encode().len() <= MAX_DATAGRAM);
    }

    #[test]
    fn repeated_keys_are_refused() {
        let dup = br#"{"address":"10.0.0.1","ifname":"a","ifname":"b","addr_family":2,"cmd":0,"version":1}"#;
        let e = Request::decode(dup).unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed);
        assert!(e.message.contains("ifname"), "{}", e.message);
        assert!(Reply::decode(
            br#"{"version":1,"cmd":2,"table":10,"table":254,"lease_expires":1}"#
        )
        .is_err());
    }

    #[test]
    fn reserved_and_foreign_tables_are_refused() {
        for t in RESERVED_TABLES {
            assert!(check_table(t, None).is_err());
            assert!(check_table(t, Some((0, u32::MAX))).is_err());
        }
        assert_eq!(check_table(10000, None), Ok(10000));
        assert_eq!(check_table(10000, Some((10000, 10999))), Ok(10000));
        let e = check_table(42, Some((10000, 10999))).unwrap_err();
        assert!(e.contains("outside the server's pool 10000-10999"), "{e}");
    }

    #[test]
    fn client_socket_names() {
        assert_eq!(client_socket_name(&key()), "veth0-10.10.0.2-2");
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        /// A request datagram built from parts, some of them hostile.
        fn datagram() -> impl Strategy<Value = Vec<u8>> {
            let text = prop_oneof![
                ".{0,40}",
                "[a-z0-9.:-]{0,20}",
                Just("\u{1D11E}".repeat(120)),
                Just("\u{1}".repeat(100)),
            ];
            let num = prop_oneof![
                any::<u64>().prop_map(|n| n.to_string()),
                Just("-1".to_owned()),
                Just("1e99".to_owned())
            ];
            (text.clone(), text, num.clone(), num.clone(), num).prop_map(|(ifname, addr, fam, cmd, ver)| {
                format!(
                    r#"{{"address":{},"ifname":{},"addr_family":{fam},"cmd":{cmd},"version":{ver}}}"#,
                    serde_json::to_string(&addr).unwrap(),
                    serde_json::to_string(&ifname).unwrap()
                )
                .into_bytes()
            })
        }

        fn check_reply_for(bytes: &[u8]) {
            let reply = match Request::decode(bytes) {
                Ok(_) => Reply::Lease {
                    table: u32::MAX,
                    lease_expires: u64::MAX,
                },
                Err(e) => Reply::Error(e),
            };
            let out = reply.encode();
            assert!(out.len() <= MAX_DATAGRAM, "{} bytes", out.len());
            let _ = Reply::decode(&out).expect("our replies decode");
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn structured_requests_never_panic(bytes in datagram()) {
                check_reply_for(&bytes);
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                check_reply_for(&bytes);
                let _ = Reply::decode(&bytes);
            }

            #[test]
            fn any_error_message_fits(code in 0..ErrorCode::ALL.len(), message in "\\PC{0,700}|[\u{0}-\u{1f}\"\\\\]{0,700}") {
                let r = Reply::Error(WireError::new(ErrorCode::ALL[code], message));
                prop_assert!(r.encode().len() <= MAX_DATAGRAM);
            }
        }
    }
}
