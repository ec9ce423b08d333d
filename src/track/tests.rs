use super::*;
use crate::netlink::rules::{rules_for, AddressSpec};
use crate::track::scripts::is_executable;

#[test]
fn uplinks_come_from_our_rules() {
    let spec = |ifname: &str, addr: &str| AddressSpec {
        ifname: ifname.into(),
        address: addr.parse().unwrap(),
        prefix_len: 24,
    };
    let mut rules = rules_for(&spec("wan1", "192.168.8.100"), 10000);
    rules.extend(rules_for(&spec("wan2", "192.168.8.100"), 10001));
    // A table with only some of its rules is not an uplink to probe.
    rules.extend(
        rules_for(&spec("wan3", "10.30.0.100"), 10002)
            .into_iter()
            .filter(|r| r.priority != PRIO_BOUND_DEVICE),
    );
    let ups = uplinks_from_rules(&rules, &[]);
    assert_eq!(ups.len(), 2);
    // A privacy address's rule on the same table: the stable address
    // stays the probe source, whichever rule comes first.
    let stable = rules_for(&spec("wan6", "2001:db8::2"), 10003);
    let from = stable.iter().find(|r| r.priority == PRIO_FROM).unwrap();
    let privacy = RuleSpec {
        from: Some(("2001:db8::99".parse().unwrap(), 128)),
        ..from.clone()
    };
    let tmp: Vec<IpAddr> = vec!["2001:db8::99".parse().unwrap()];
    let mut before = vec![privacy.clone()];
    before.extend(stable.iter().cloned());
    let mut after = stable.clone();
    after.push(privacy);
    for six in [before, after] {
        let up6 = uplinks_from_rules(&six, &tmp);
        assert_eq!(up6[0].address, "2001:db8::2".parse::<IpAddr>().unwrap());
    }
    assert_eq!(ups[1].ifname, "wan2");
    assert_eq!(ups[1].address, "192.168.8.100".parse::<IpAddr>().unwrap());
    assert_eq!(ups[1].table, 10001);
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
    use crate::netlink::rules::Downstream;
    use crate::track::health::LinkState;
    use crate::track::unbound::UnboundMove;
    let cfg = TrackConfig::parse(
        r#"{ "targets": [{"kind": "icmp", "address": "192.0.2.1"}], "preference": ["wan1", "wan2"] }"#,
        std::path::Path::new("t.json"),
    )
    .unwrap();
    let start = Instant::now();
    let mut t = Tracker::new(cfg, Downstream::None, start);
    for (table, ifname, last) in [(10000, "wan1", 2), (10001, "wan2", 3)] {
        let id = UplinkId {
            family: Family::Inet,
            table,
            ifname: ifname.into(),
            address: format!("10.0.{last}.2").parse().unwrap(),
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
