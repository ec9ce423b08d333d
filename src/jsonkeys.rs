//! Repeated keys in a JSON object. serde_json and json5 keep the last one
//! silently, so a file or datagram could say two things and be read as
//! either; we refuse such input and name the key.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Deserializes any JSON value, failing on the first object (at any depth)
/// that repeats a key. The error text is `duplicate key "NAME"`.
pub struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UniqueKeys, D::Error> {
        d.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_none<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
}

/// The repeated key in a JSON document, if any; `None` too for a document
/// that does not parse (its parser reports that).
pub fn duplicate_in_json(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<UniqueKeys>(bytes)
        .err()
        .and_then(|e| duplicate_of(&e.to_string()))
}

/// The same for JSON with comments (json5), as config files are.
pub fn duplicate_in_json5(text: &str) -> Option<String> {
    json5::from_str::<UniqueKeys>(text)
        .err()
        .and_then(|e| duplicate_of(&e.to_string()))
}

fn duplicate_of(message: &str) -> Option<String> {
    let rest = &message[message.find("duplicate key ")? + "duplicate key ".len()..];
    let end = rest.find(" at line").unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_repeated_keys_at_any_depth() {
        assert_eq!(duplicate_in_json(br#"{"a":1,"b":2}"#), None);
        assert_eq!(
            duplicate_in_json(br#"{"a":1,"a":2}"#).as_deref(),
            Some("\"a\"")
        );
        assert_eq!(
            duplicate_in_json(br#"{"x":[{"k":1,"k":1}]}"#).as_deref(),
            Some("\"k\"")
        );
        assert_eq!(duplicate_in_json(b"{"), None);
        let cfg = "{ // comment\n table_offset: 10, \"table_offset\": 20 }";
        assert_eq!(duplicate_in_json5(cfg).as_deref(), Some("\"table_offset\""));
        assert_eq!(
            duplicate_in_json5("{ addr_families: { inet: true, inet: false } }").as_deref(),
            Some("\"inet\"")
        );
        assert_eq!(duplicate_in_json5("{ a: 1 /* c */ }"), None);
    }
}
