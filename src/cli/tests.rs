use super::*;
use clap::CommandFactory;

#[test]
fn definitions_are_consistent() {
    ServerArgs::command().debug_assert();
    ClientArgs::command().debug_assert();
    MhrArgs::command().debug_assert();
}

/// docs/config.md and the parser's key table describe the same keys.
#[test]
fn config_doc_lists_every_key() {
    let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md"));
    for k in crate::server::config::KEYS {
        assert!(
            doc.contains(&format!("| `{}` |", k.name)),
            "{} missing",
            k.name
        );
    }
}

#[test]
fn client_flags_take_no_value() {
    let a = ClientArgs::try_parse_from([
        "table_allocator_client",
        "-4",
        "-a",
        "10.0.0.2",
        "-i",
        "eth0",
        "-d",
        "tas",
        "-r",
        "-f",
    ])
    .unwrap();
    assert!(a.release && a.foreground && a.inet);
}
