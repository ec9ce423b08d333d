use super::*;

fn parse(text: &str) -> Result<Loaded, ConfigError> {
    ServerConfig::parse(text, Path::new("test.json"))
}

fn key_error(text: &str) -> String {
    match parse(text) {
        Err(ConfigError::Key { key, .. }) => key,
        other => panic!("expected a key error, got {other:?}"),
    }
}

#[test]
fn original_example_with_comments() {
    let loaded = parse(
        r#"{
        "socket_path": "tas_socket",
        "table_offset": 10000,
        "num_tables": 32,
        "table_timeout": 86400,
        "db_path": "/tmp/tas.db",
        "do_syslog": true,
        //"log_path": "/tmp/tas.log",
        /* block
           comment */
        "addr_families": { "inet": true, "inet6": false, "unspec": false }
    }"#,
    )
    .unwrap();
    let c = loaded.config;
    assert!(loaded.warnings.is_empty());
    assert_eq!(c.table_timeout, 86400);
    assert_eq!(c.num_tables, 32);
    assert_eq!(c.families, vec![Family::Inet]);
    assert_eq!(c.db_path, PathBuf::from("/tmp/tas.db"));
    assert!(c.do_syslog);
    assert_eq!(c.log_path, None);
    assert!(c.socket_padded);
}

#[test]
fn unknown_keys_warn() {
    let loaded = parse(r#"{"db_path": "/x", "tabel_offset": 5}"#).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].contains("tabel_offset"));
}

#[test]
fn impossible_values_name_their_key() {
    assert_eq!(key_error(r#"{"table_offset": 0}"#), "table_offset");
    assert_eq!(
        key_error(r#"{"table_offset": 200, "num_tables": 100}"#),
        "table_offset"
    );
    assert_eq!(
        key_error(r#"{"table_offset": 253, "num_tables": 1}"#),
        "table_offset"
    );
    assert_eq!(
        key_error(r#"{"table_offset": 4294967295, "num_tables": 2}"#),
        "num_tables"
    );
    assert_eq!(key_error(r#"{"num_tables": 0}"#), "num_tables");
    assert_eq!(key_error(r#"{"table_timeout": 0}"#), "table_timeout");
    assert_eq!(key_error(r#"{"table_timeout": -5}"#), "table_timeout");
    assert_eq!(key_error(r#"{"table_timeout": 1.5}"#), "table_timeout");
    assert_eq!(key_error(r#"{"table_timeout": "60"}"#), "table_timeout");
    assert_eq!(key_error(r#"{"do_syslog": 1}"#), "do_syslog");
    assert_eq!(key_error(r#"{"socket_path": ""}"#), "socket_path");
    assert_eq!(
        key_error(r#"{"addr_families": {"inet": false, "inet6": false}}"#),
        "addr_families"
    );
    assert_eq!(
        key_error(r#"{"addr_families": {"ipx": true}}"#),
        "addr_families"
    );
    assert_eq!(
        key_error(r#"{"addr_families": {"inet": "yes"}}"#),
        "addr_families.inet"
    );
    assert_eq!(key_error(r#"{"allowed_uids": [-1]}"#), "allowed_uids");
    // Tables 1..=252 are fine, as is a range above 255.
    assert!(parse(r#"{"table_offset": 1, "num_tables": 252}"#).is_ok());
    assert!(parse(r#"{"table_offset": 256, "num_tables": 4294967040}"#).is_err());
}

#[test]
fn repeated_keys_are_refused_by_name() {
    let e = parse(
        r#"{"db_path": "/x", "table_offset": 10, // second wins?
        "table_offset": 20}"#,
    )
    .unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }));
    assert!(
        e.to_string().contains("\"table_offset\" is given twice"),
        "{e}"
    );
    let e = parse(r#"{"addr_families": {"inet": true, "inet": false}}"#).unwrap_err();
    assert!(e.to_string().contains("\"inet\""), "{e}");
}

#[test]
fn syntax_and_missing_file() {
    assert!(matches!(parse("{"), Err(ConfigError::Syntax { .. })));
    assert!(matches!(parse("[]"), Err(ConfigError::Syntax { .. })));
    let err = ServerConfig::load(Path::new("/nonexistent/tas.json")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/tas.json"));
}
