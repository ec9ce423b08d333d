//! Requests: what a client asks (lease or release), encoded in the
//! original's field order and decoded with every fault mapped to a code.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    read_json, Action, ErrorCode, LeaseKey, WireError, CMD_REL, CMD_REQ, MAX_DATAGRAM, MAX_TAG,
    VERSION,
};
use crate::addr::Family;

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
