//! Replies: a lease (table and expiry) or a coded error, never longer than
//! one datagram, and the checks a client makes before it trusts a table.

use serde::Serialize;
use serde_json::Value;

use super::{read_json, ErrorCode, WireError, CMD_ERROR, CMD_RESP, MAX_DATAGRAM, VERSION};

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
