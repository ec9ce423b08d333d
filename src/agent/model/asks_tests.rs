//! The model's answers to hooks, the standalone client and the tracker,
//! against the simulated kernel and server.

use std::time::Duration;

use super::sim::{route, Sim, OTHER};
use super::tests::one_uplink;
use crate::control::{Reply, Request, UplinkReport};

/// A hook reports its lease (dhclient: the routes are only in the report)
/// and waits; the answer comes once the table is routed.
#[test]
fn a_hooks_report_routes_the_address_and_is_answered() {
    let mut s = Sim::new("");
    s.link(4, "wan3");
    s.add_addr(4, "10.30.0.100", 24);
    let report = UplinkReport {
        ifname: "wan3".into(),
        address: "10.30.0.100".parse().unwrap(),
        prefix_len: 24,
        routers: vec![],
        static_routes: vec![crate::control::StaticRoute {
            dest: "198.18.0.0".parse().unwrap(),
            prefix_len: 15,
            gateway: "10.30.0.1".parse().unwrap(),
        }],
        metric: None,
        dns: vec!["10.30.0.1".parse().unwrap()],
        keep_main: false,
    };
    assert!(matches!(
        s.model.control(7, Request::Uplink(report), s.now),
        super::Answer::Later
    ));
    s.settle();
    let answers = s.model.poll_answers();
    assert_eq!(
        answers,
        [(
            7,
            Reply {
                table: Some(10000),
                valid_secs: Some(3600),
                ..Reply::ok()
            }
        )]
    );
    assert_eq!(
        s.table(10000),
        ["10.30.0.0/24", "198.18.0.0/15 via 10.30.0.1"]
    );
    // An interface the agent does not manage is the hook's own business.
    let r = Request::Table {
        ifname: "eth0".into(),
        address: "10.0.0.1".parse().unwrap(),
    };
    assert!(matches!(
        s.model.control(8, r, s.now),
        super::Answer::Now(Reply { error: Some(e), .. }) if e == crate::control::NOT_MANAGED
    ));
}

/// No server: the hook's routes go into main with the interface index as
/// metric after the first round; the table comes when the server does.
#[test]
fn without_a_server_a_reported_uplink_falls_back_to_main() {
    let mut s = Sim::new(", attempts: 2, retry_ms: 100");
    s.server.down = true;
    s.link(5, "wan5");
    s.add_addr(5, "10.50.0.2", 24);
    let report = UplinkReport {
        ifname: "wan5".into(),
        address: "10.50.0.2".parse().unwrap(),
        prefix_len: 24,
        routers: vec!["10.50.0.1".parse().unwrap()],
        static_routes: vec![],
        metric: None,
        dns: vec![],
        keep_main: false,
    };
    let _ = s.model.control(1, Request::Uplink(report), s.now);
    s.advance(Duration::from_millis(250));
    assert_eq!(s.model.poll_answers()[0].1.table, Some(0));
    assert_eq!(s.main_defaults(), 1, "the fallback default in main");
    s.server.down = false;
    s.advance(Duration::from_secs(1));
    assert_eq!(s.tables_from("10.50.0.2"), [10000]);
    assert_eq!(s.main_defaults(), 0, "the fallback left with the table");
    assert_eq!(s.table(10000), ["10.50.0.0/24", "default via 10.50.0.1"]);
}

/// A manager that puts its default back into main at once, again and
/// again, wins; the table keeps its copy.
#[test]
fn a_manager_that_fights_for_main_is_left_main() {
    let mut s = Sim::new(", fight_limit: 3");
    s.link(3, "upA");
    s.add_addr(3, "10.90.0.2", 24);
    let d = route("0.0.0.0", 0, Some("10.90.0.1"), 3, 16);
    for _ in 0..6 {
        s.add_route(d.clone(), OTHER);
        s.settle();
    }
    assert_eq!(s.main_defaults(), 1);
    assert!(s.model.links[&3].fights[0].given_up);
    assert!(s
        .table(10000)
        .contains(&"default via 10.90.0.1".to_string()));
    assert_eq!(s.model.state(0).main_kept.len(), 1);
}

/// The tracker's choice becomes the 50000 rule, for a table that exists.
#[test]
fn the_tracker_choice_is_a_rule_of_the_model() {
    let mut s = one_uplink();
    s.model.set_unbound(crate::addr::Family::Inet, Some(10000));
    s.settle();
    assert!(s
        .kernel
        .rules
        .iter()
        .any(|r| r.priority == 50000 && r.table == 10000));
    s.del_addr(3, "10.90.0.2");
    s.settle();
    assert!(s.kernel.rules.is_empty(), "no rule for a table that went");
}

/// `table_allocator_client -r` through the agent: released, left alone.
#[test]
fn a_release_on_request_removes_rules_and_the_lease() {
    let mut s = one_uplink();
    let r = Request::Release {
        ifname: "upA".into(),
        address: "10.90.0.2".parse().unwrap(),
    };
    assert!(matches!(
        s.model.control(1, r, s.now),
        super::Answer::Now(_)
    ));
    s.settle();
    assert!(s.kernel.rules.is_empty());
    assert!(s.server.leases.is_empty());
    assert_eq!(
        s.model.state(0).addresses[0].left_alone.as_deref(),
        Some("released on request")
    );
    // Asked for again (`table_allocator_client` without -r): leased again.
    let ask = Request::Table {
        ifname: "upA".into(),
        address: "10.90.0.2".parse().unwrap(),
    };
    assert!(matches!(
        s.model.control(2, ask, s.now),
        super::Answer::Later
    ));
    s.settle();
    assert_eq!(s.tables_from("10.90.0.2").len(), 1);
    assert!(s.model.state(0).addresses[0].left_alone.is_none());
}

/// The tracker probes one address per link and family: the oldest table,
/// kept while it stays, the next one's when it goes; the others share the
/// verdict (and feed the passive signal).
#[test]
fn the_tracker_probes_one_address_per_link() {
    let mut s = one_uplink();
    s.add_addr(3, "10.90.0.3", 24);
    s.add_addr(3, "10.90.0.4", 24);
    s.settle();
    let probed = |s: &Sim| {
        s.model
            .uplinks()
            .iter()
            .map(|u| {
                let also: Vec<String> = u.also.iter().map(|a| a.to_string()).collect();
                (u.ifname.clone(), u.address.to_string(), u.table, also)
            })
            .collect::<Vec<_>>()
    };
    let others = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    assert_eq!(
        probed(&s),
        [(
            "upA".into(),
            "10.90.0.2".into(),
            10000,
            others(&["10.90.0.3", "10.90.0.4"])
        )]
    );
    s.del_addr(3, "10.90.0.2");
    s.settle();
    assert_eq!(
        probed(&s),
        [(
            "upA".into(),
            "10.90.0.3".into(),
            10001,
            others(&["10.90.0.4"])
        )]
    );
}

/// A restart adopts the tracker's rule with the tracker on, and removes
/// it with the tracker off (`track: null`): no choice to keep.
#[test]
fn the_tracker_rule_is_adopted_only_with_a_tracker() {
    let mut s = one_uplink();
    s.model.set_unbound(crate::addr::Family::Inet, Some(10000));
    s.settle();
    let has = |s: &Sim| s.kernel.rules.iter().any(|r| r.priority == 50000);
    s.restart(", track: {}");
    s.settle();
    assert!(has(&s), "adopted");
    s.restart("");
    s.settle();
    assert!(!has(&s), "no tracker, no rule");
    assert_eq!(s.tables_from("10.90.0.2"), [10000]);
}
