use super::*;
use crate::netlink::rules::{rules_for, AddressSpec};

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
