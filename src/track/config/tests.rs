use super::*;

fn parse(text: &str) -> Result<TrackConfig, TrackConfigError> {
    TrackConfig::parse(text, Path::new("track.json"))
}

#[test]
fn defaults_and_a_full_config() {
    let d = parse("{}").unwrap();
    assert_eq!(d, TrackConfig::default());
    // The wait for a steady probe, its floor deadline and the silence:
    // down within 1.5 s (uplink::tests simulates it).
    assert!(
        d.interval + d.timing.rto_min + d.thresholds.down_silence <= Duration::from_millis(1500)
    );
    let c = parse(
        r#"{
        // the lab
        interfaces: ["wan*"],
        targets: [
            {kind: "icmp", address: "203.0.113.10"},
            {kind: "tcp", address: "203.0.113.10", port: 53},
            {kind: "dns", address: "2001:db8::53", name: "example.org"},
        ],
        interval_ms: 200, timeout_ms: 400, down_after: 2, up_after: 4,
        preference: ["wan3", "wan1"],
        budget_bytes_hour: [{interfaces: "wwan*", bytes: 100000}],
        unbound_priority: 40000,
    }"#,
    )
    .unwrap();
    assert_eq!(c.targets_for(Family::Inet).len(), 2);
    assert_eq!(c.targets_for(Family::Inet6).len(), 1);
    assert!(c.tracks("wan2") && !c.tracks("eth0"));
    assert_eq!(c.budget_for("wwan0"), Some(100000));
    assert_eq!(c.budget_for("wan1"), None);
    // By default a cellular modem has a budget, a wired uplink none.
    assert_eq!(d.budget_for("wwp0s20u4i6"), Some(DEFAULT_WWAN_BUDGET));
    assert_eq!(d.budget_for("eth0"), None);
    assert_eq!(c.unbound_priority, 40000);
    assert_eq!(c.targets[0].cost(), 88);
}

/// The commented example shipped as /etc/multihomed-routing/track.json
/// states the defaults.
#[test]
fn shipped_config_is_the_defaults() {
    let shipped = parse(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/track/track.json"
    )))
    .unwrap();
    assert_eq!(shipped, TrackConfig::default());
}

/// Every key of the shipped config is in the reference.
#[test]
fn check_prints_the_files_own_keys() {
    let shipped: serde_json::Value = json5::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/track/track.json"
    )))
    .unwrap();
    let mut effective = TrackConfig::default().effective();
    // The file writes whole numbers; the config holds floats.
    for k in ["degraded_loss_pct", "degraded_rtt_ms"] {
        effective[k] = serde_json::json!(effective[k].as_f64().unwrap() as u64);
    }
    assert_eq!(effective, shipped);
}

#[test]
fn reference_documents_every_key() {
    let shipped: serde_json::Value = json5::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/track/track.json"
    )))
    .unwrap();
    let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/track.md"));
    for key in shipped.as_object().unwrap().keys() {
        assert!(doc.contains(&format!("| `{key}` |")), "{key} undocumented");
    }
}

#[test]
fn bad_values_name_their_key() {
    for (text, key) in [
        (r#"{"intervall_ms": 5}"#, "intervall_ms"),
        (r#"{"interval_ms": 500, "interval_ms": 100}"#, "interval_ms"),
        (r#"{"interval_ms": 0}"#, "interval_ms"),
        (r#"{"down_after": 0}"#, "down_after"),
        (r#"{"targets": []}"#, "targets"),
        (
            r#"{"targets": [{"kind": "ping", "address": "1.1.1.1"}]}"#,
            "ping",
        ),
        (
            r#"{"targets": [{"kind": "icmp", "address": "127.0.0.1"}]}"#,
            "targets",
        ),
        (r#"{"unbound_priority": 95000}"#, "unbound_priority"),
        (r#"{"degraded_loss_pct": 120}"#, "degraded_loss_pct"),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
}
