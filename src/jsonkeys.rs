//! JSON read in one pass that refuses repeated keys. serde_json and json5
//! keep the last of two silently, so a file or datagram could say two
//! things and be read as either; we refuse such input and name the key.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a document was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// An object repeats this key (quoted, as in the document).
    Duplicate(String),
    /// Not JSON (or json5): the parser's message.
    Syntax(String),
}

impl ReadError {
    /// The error for a person editing a config file.
    pub fn for_people(self) -> String {
        match self {
            ReadError::Duplicate(key) => format!("the key {key} is given twice; say it once"),
            ReadError::Syntax(message) => message,
        }
    }
}

/// A JSON value that failed on the first object (at any depth) repeating a
/// key; the error text is `duplicate key "NAME"`.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let value = map.next_value::<Unique>()?.0;
            out.insert(key, value);
        }
        Ok(Unique(Value::Object(out)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Unique>()? {
            out.push(v.0);
        }
        Ok(Unique(Value::Array(out)))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Unique, E> {
        Ok(Unique(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Unique, E> {
        Ok(Unique(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Unique, E> {
        Ok(Unique(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Unique, E> {
        Ok(Unique(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Unique, E> {
        Ok(Unique(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Unique, E> {
        Ok(Unique(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Unique, E> {
        Ok(Unique(Value::Null))
    }
}

fn classify(message: String) -> ReadError {
    match message.find("duplicate key ") {
        Some(i) => {
            let rest = &message[i + "duplicate key ".len()..];
            let end = rest.find(" at line").unwrap_or(rest.len());
            ReadError::Duplicate(rest[..end].to_owned())
        }
        None => ReadError::Syntax(message),
    }
}

/// A JSON document (a datagram).
pub fn parse_json(bytes: &[u8]) -> Result<Value, ReadError> {
    serde_json::from_slice::<Unique>(bytes)
        .map(|u| u.0)
        .map_err(|e| classify(e.to_string()))
}

/// A JSON document with comments (json5), as config files are.
pub fn parse_json5(text: &str) -> Result<Value, ReadError> {
    json5::from_str::<Unique>(text)
        .map(|u| u.0)
        .map_err(|e| classify(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(r: Result<Value, ReadError>) -> Option<String> {
        match r {
            Err(ReadError::Duplicate(k)) => Some(k),
            _ => None,
        }
    }

    #[test]
    fn finds_repeated_keys_at_any_depth() {
        assert_eq!(
            parse_json(br#"{"a":1,"b":[2.5,null,"x"]}"#).unwrap(),
            serde_json::json!({"a": 1, "b": [2.5, null, "x"]})
        );
        assert_eq!(
            dup(parse_json(br#"{"a":1,"a":2}"#)).as_deref(),
            Some("\"a\"")
        );
        assert_eq!(
            dup(parse_json(br#"{"x":[{"k":1,"k":1}]}"#)).as_deref(),
            Some("\"k\"")
        );
        assert!(matches!(parse_json(b"{"), Err(ReadError::Syntax(_))));
        let cfg = "{ // comment\n table_offset: 10, \"table_offset\": 20 }";
        assert_eq!(dup(parse_json5(cfg)).as_deref(), Some("\"table_offset\""));
        assert_eq!(
            dup(parse_json5(
                "{ addr_families: { inet: true, inet: false } }"
            ))
            .as_deref(),
            Some("\"inet\"")
        );
        assert_eq!(
            parse_json5("{ a: 1 /* c */ }").unwrap(),
            serde_json::json!({"a": 1})
        );
    }
}
