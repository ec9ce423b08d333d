use super::*;
use crate::track::scripts::is_executable;

/// The uplink set follows the model's: untracked interfaces and families
/// without targets are left out, gone uplinks go.
#[test]
fn uplinks_come_from_the_model() {
    let cfg = TrackConfig::parse(
        r#"{ "interfaces": ["wan*"], "targets": [{"kind": "icmp", "address": "192.0.2.1"}] }"#,
        std::path::Path::new("t.json"),
    )
    .unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut t = Tracker::new(cfg, BTreeMap::new(), tx, Instant::now());
    let up = |ifname: &str, table: u32, addr: &str| UplinkId {
        family: crate::addr::family_of(&addr.parse().unwrap()),
        table,
        ifname: ifname.into(),
        address: addr.parse().unwrap(),
        also: Vec::new(),
    };
    let all = [
        up("wan1", 10000, "192.168.8.100"),
        up("wan2", 10001, "192.168.8.100"),
        up("lan0", 10002, "10.0.0.2"),
        up("wan1", 10003, "2001:db8::2"),
    ];
    t.set_uplinks(&all);
    let keys: Vec<u32> = t.uplinks.keys().map(|k| k.1).collect();
    assert_eq!(keys, [10000, 10001], "lan0 untracked; no IPv6 target");
    t.set_uplinks(&all[1..]);
    assert_eq!(t.uplinks.len(), 1);
}

#[test]
fn event_scripts_follow_run_parts_names() {
    let dir = tempfile::tempdir().unwrap();
    for (name, mode) in [
        ("10-notify", 0o755),
        ("20-x.dpkg-old", 0o755),
        ("30-off", 0o644),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    assert!(is_executable(&dir.path().join("10-notify")));
    assert!(!is_executable(&dir.path().join("20-x.dpkg-old")));
    assert!(!is_executable(&dir.path().join("30-off")));
}

/// The unbound choice is a plan computed from health alone: nothing while
/// uplinks are ungraded at start, the preferred usable one after, a move
/// when it goes down, and back to the 91000 order when none is usable.
#[test]
fn unbound_moves_are_planned_from_health() {
    use crate::track::health::LinkState;
    use crate::track::unbound::UnboundMove;
    let cfg = TrackConfig::parse(
        r#"{ "targets": [{"kind": "icmp", "address": "192.0.2.1"}], "preference": ["wan1", "wan2"] }"#,
        std::path::Path::new("t.json"),
    )
    .unwrap();
    let start = Instant::now();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut t = Tracker::new(cfg, BTreeMap::new(), tx, start);
    for (table, ifname, last) in [(10000, "wan1", 2), (10001, "wan2", 3)] {
        let id = UplinkId {
            family: Family::Inet,
            table,
            ifname: ifname.into(),
            address: format!("10.0.{last}.2").parse().unwrap(),
            also: Vec::new(),
        };
        t.uplinks
            .insert((Family::Inet, table), Uplink::new(id, &t.cfg, start));
    }
    let set = |t: &mut Tracker, table: u32, state: LinkState| {
        t.uplinks
            .get_mut(&(Family::Inet, table))
            .unwrap()
            .health
            .state = state;
    };
    assert!(t.unbound_plan(start).is_empty(), "ungraded at start");
    set(&mut t, 10001, LinkState::Up);
    assert!(t.unbound_plan(start).is_empty(), "wan1 still ungraded");
    let later = start + Duration::from_secs(60);
    let mv = |from, to| UnboundMove {
        family: Family::Inet,
        from,
        to,
    };
    assert_eq!(t.unbound_plan(later), vec![mv(None, Some(10001))]);
    set(&mut t, 10000, LinkState::Up);
    assert_eq!(t.unbound_plan(start), vec![mv(None, Some(10000))]);
    t.unbound.insert(Family::Inet, (10000, 0));
    assert!(t.unbound_plan(start).is_empty(), "already there");
    set(&mut t, 10000, LinkState::Down);
    assert_eq!(t.unbound_plan(start), vec![mv(Some(10000), Some(10001))]);
    set(&mut t, 10001, LinkState::Down);
    assert_eq!(t.unbound_plan(start), vec![mv(Some(10000), None)]);
}

/// Connections from any address of the link count for its uplink, not
/// only those from the address it probes from.
#[tokio::test]
async fn stalls_on_a_links_other_address_degrade_its_uplink() {
    use crate::track::health::LinkState;
    use crate::track::passive::Stalls;
    let cfg = TrackConfig::parse(
        r#"{ "targets": [{"kind": "icmp", "address": "192.0.2.1"}], "scripts_dir": "/nonexistent/mhr-test" }"#,
        std::path::Path::new("t.json"),
    )
    .unwrap();
    let start = Instant::now();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut t = Tracker::new(cfg, BTreeMap::new(), tx, start);
    let id = UplinkId {
        family: Family::Inet,
        table: 10000,
        ifname: "wan1".into(),
        address: "10.0.2.2".parse().unwrap(),
        also: vec!["10.0.2.3".parse().unwrap()],
    };
    t.set_uplinks(std::slice::from_ref(&id));
    let key = (Family::Inet, 10000);
    t.uplinks.get_mut(&key).unwrap().health.state = LinkState::Up;
    let mut stalls = Stalls::new();
    stalls.insert(
        "10.0.2.3".parse().unwrap(),
        [
            "198.51.100.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
        ]
        .into(),
    );
    let now = start + Duration::from_secs(5);
    t.passive(&stalls, now);
    assert!(t.passive(&stalls, now + t.cfg.passive_after));
    assert_eq!(t.uplinks[&key].health.state, LinkState::Degraded);
    // A new list with other companions keeps the uplink and its health.
    t.set_uplinks(&[UplinkId {
        also: Vec::new(),
        ..id
    }]);
    assert_eq!(t.uplinks[&key].health.state, LinkState::Degraded);
    assert!(t.uplinks[&key].id.also.is_empty());
}

/// The probed address goes while the link keeps others: the uplink goes on
/// from the next one with its health, not from scratch.
#[tokio::test]
async fn another_address_of_the_link_takes_over_with_its_health() {
    use crate::track::health::LinkState;
    let cfg = TrackConfig::parse(
        r#"{ "targets": [{"kind": "icmp", "address": "192.0.2.1"}], "scripts_dir": "/nonexistent/mhr-test" }"#,
        std::path::Path::new("t.json"),
    )
    .unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut t = Tracker::new(cfg, BTreeMap::new(), tx, Instant::now());
    let first = UplinkId {
        family: Family::Inet,
        table: 10000,
        ifname: "wan1".into(),
        address: "10.0.2.2".parse().unwrap(),
        also: vec!["10.0.2.3".parse().unwrap()],
    };
    t.set_uplinks(std::slice::from_ref(&first));
    t.uplinks
        .get_mut(&(Family::Inet, 10000))
        .unwrap()
        .health
        .state = LinkState::Up;
    let next = UplinkId {
        table: 10001,
        address: "10.0.2.3".parse().unwrap(),
        also: Vec::new(),
        ..first
    };
    t.set_uplinks(std::slice::from_ref(&next));
    assert_eq!(t.uplinks.len(), 1);
    let up = &t.uplinks[&(Family::Inet, 10001)];
    assert_eq!(up.id, next);
    assert_eq!(up.health.state, LinkState::Up);
    // Another link's uplink starts from scratch.
    let other = UplinkId {
        ifname: "wan2".into(),
        table: 10002,
        ..next.clone()
    };
    t.set_uplinks(&[next, other]);
    assert_ne!(
        t.uplinks[&(Family::Inet, 10002)].health.state,
        LinkState::Up
    );
}
