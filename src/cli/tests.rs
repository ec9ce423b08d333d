use super::*;
use clap::CommandFactory;

#[test]
fn definitions_are_consistent() {
    ServerArgs::command().debug_assert();
    ClientArgs::command().debug_assert();
    MhrArgs::command().debug_assert();
}

#[test]
fn man_pages_build() {
    let dir = tempfile::tempdir().unwrap();
    let pages = write_man_pages(dir.path()).unwrap();
    let names: Vec<String> = pages
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "table_allocator_server.8",
        "table_allocator_client.8",
        "mhr.8",
        "mhr-dhclient-hook.8",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    assert!(!names.iter().any(|n| n == "mhr-help.8"), "{names:?}");
    let client = std::fs::read_to_string(dir.path().join("table_allocator_client.8")).unwrap();
    assert!(client.contains("destination"));
    for section in [
        ".SH EXIT STATUS",
        ".SH FILES",
        ".SH SEE ALSO",
        ".SH EXAMPLES",
    ] {
        assert!(client.contains(section), "{section}");
    }
    let status = std::fs::read_to_string(dir.path().join("mhr-status.8")).unwrap();
    // The synopsis names the command as typed, not the page.
    assert!(status.contains("\\fBmhr status\\fR"), "{status}");
    assert!(
        !status.contains("docs/"),
        "no paths relative to the source tree"
    );
    // Examples keep their lines.
    let top = std::fs::read_to_string(dir.path().join("mhr.8")).unwrap();
    assert!(top.contains(".SH EXAMPLES\n.nf\nmhr status "), "{top}");
    let config =
        std::fs::read_to_string(dir.path().join("table_allocator_server_config.json.5")).unwrap();
    for k in crate::server::config::KEYS {
        assert!(config.contains(&format!(".B {}", k.name)), "{}", k.name);
    }
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
fn completions_build() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_completions(dir.path()).unwrap();
    assert_eq!(files.len(), 9);
    let bash = std::fs::read_to_string(dir.path().join("mhr.bash")).unwrap();
    assert!(bash.contains("dhclient-hook"));
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
