use super::*;
use crate::netlink::rules::{rules_for, AddressSpec};
use crate::protocol::LeaseKey;

pub(crate) fn spec(ifname: &str, addr: &str) -> AddressSpec {
    AddressSpec {
        ifname: ifname.into(),
        address: addr.parse().unwrap(),
        prefix_len: 24,
    }
}

pub(crate) fn lease(ifname: &str, addr: &str, table: u32) -> StoredLease {
    StoredLease {
        key: LeaseKey::new(Family::Inet, ifname, addr).unwrap(),
        tag: None,
        table,
        uid: 0,
        expires_wall: 1_900_000_000,
    }
}

#[test]
fn a_foreign_default_in_main_is_a_problem_where_we_route() {
    let mut kernel = KernelView {
        rules: rules_for(&spec("wan1", "10.1.0.2"), 10000),
        tables_with_default: vec![(Family::Inet, 10000)],
        fallback_default_routes: vec![],
        foreign_main_defaults: vec!["default via 10.6.0.1 dev #3 proto dhcp metric 600".into()],
        gateways: vec![],
    };
    let st = assemble(
        &kernel,
        Some(&[lease("wan1", "10.1.0.2", 10000)]),
        &[],
        Some(true),
    );
    assert!(!st.consistent());
    assert!(
        matches!(&st.problems[0], Problem::ForeignMainDefault { route } if route.contains("proto dhcp"))
    );
    assert!(st.problems[0].to_string().contains("not ours"));
    assert!(st.problems[0].advice().contains("ipv4.never-default"));
    // A host where we manage nothing: its default route is its own business.
    kernel.rules.clear();
    let st = assemble(&kernel, Some(&[]), &[], Some(true));
    assert!(st.consistent(), "{:?}", st.problems);
}

#[test]
fn consistent_and_inconsistent() {
    let mut kernel = KernelView {
        rules: rules_for(&spec("wan1", "10.1.0.2"), 10000),
        tables_with_default: vec![(Family::Inet, 10000)],
        fallback_default_routes: vec![],
        foreign_main_defaults: vec![],
        gateways: vec![],
    };
    let dns = [ServerLine {
        server: "10.1.0.1".parse().unwrap(),
        ifname: "wan1".into(),
        source: "10.1.0.2".parse().unwrap(),
    }];
    let ok = assemble(
        &kernel,
        Some(&[lease("wan1", "10.1.0.2", 10000)]),
        &dns,
        Some(true),
    );
    assert!(ok.consistent(), "{ok:?}");
    assert_eq!(ok.addresses[0].dns_servers.len(), 1);
    assert_eq!(ok.addresses[0].prefix_len, Some(24));
    // A lease whose rules are gone, and rules whose lease is gone.
    kernel
        .rules
        .extend(rules_for(&spec("wan2", "10.2.0.2"), 10001));
    let bad = assemble(
        &kernel,
        Some(&[
            lease("wan1", "10.1.0.2", 10000),
            lease("wan3", "10.3.0.2", 10002),
        ]),
        &[],
        Some(true),
    );
    assert!(!bad.consistent());
    assert!(matches!(
        bad.problems[0],
        Problem::LeaseWithoutRules { table: 10002, .. }
    ));
    assert_eq!(bad.addresses[1].problems[0], Problem::RulesWithoutLease);
    // A missing rule, the fallback in main, a silent server.
    kernel
        .rules
        .retain(|r| !(r.table == 10000 && r.priority == PRIO_TO));
    kernel
        .fallback_default_routes
        .push("default table 254".into());
    let worse = assemble(&kernel, None, &[], Some(false));
    assert!(worse.addresses[0]
        .problems
        .contains(&Problem::RuleMissing { priority: 20000 }));
    assert_eq!(worse.problems.len(), 2);
    let json = serde_json::to_value(&worse).unwrap();
    // Problems stay strings in the JSON, as documented.
    assert!(json["problems"][1]
        .as_str()
        .is_some_and(|p| p.contains("does not answer")));
    let (text, n) = doctor_report(&worse, &["dns: no dnsmasq runs".into()]);
    assert_eq!(n, 4, "{text}");
    assert!(text.contains("table 10000 (inet): rule at priority 20000 is missing\n  -> stop"));
    assert!(text.ends_with("DNS: no dnsmasq runs\n"), "{text}");
    for key in [
        "server_reachable",
        "addresses",
        "fallback_default_routes",
        "problems",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    assert!(render(&worse, 0).contains("NOT answering"));
    assert!(
        render(&ok, 1_900_000_000 - 3599).contains(" 59m59s "),
        "{}",
        render(&ok, 1_900_000_000 - 3599)
    );
}
