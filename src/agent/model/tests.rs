//! The model against a simulated kernel and server (`sim`): each test is
//! what a user would check afterwards with `ip rule` and `ip route`.

use std::time::Duration;

use super::sim::{route, Rng, Sim, OTHER};
use crate::netlink::rules::PRIO_FROM;
use crate::netlink::Event;

/// upA (index 3) with 10.90.0.2/24 and its default in main, as an admin
/// (or ifupdown, proto boot) makes them.
pub(super) fn one_uplink() -> Sim {
    let mut s = Sim::new("");
    s.link(3, "upA");
    s.add_addr(3, "10.90.0.2", 24);
    s.add_route(route("0.0.0.0", 0, Some("10.90.0.1"), 3, 3), OTHER);
    s.settle();
    s
}

#[test]
fn an_address_gets_its_table_and_the_default_leaves_main() {
    let s = one_uplink();
    assert_eq!(s.tables_from("10.90.0.2"), [10000]);
    assert_eq!(s.table(10000), ["10.90.0.0/24", "default via 10.90.0.1"]);
    assert_eq!(s.main_defaults(), 0);
    assert_eq!(s.kernel.rules.len(), 4);
    s.assert_clean("10.90.0.1");
}

/// Issue 25, 1: a second and a third address after the default left main.
#[test]
fn later_addresses_of_an_uplink_get_its_routes_too() {
    let mut s = one_uplink();
    s.add_addr(3, "10.90.0.3", 24);
    s.settle();
    s.add_addr(3, "10.90.0.4", 24);
    s.settle();
    assert_eq!(s.tables_from("10.90.0.3"), [10001]);
    assert_eq!(s.table(10001), ["10.90.0.0/24", "default via 10.90.0.1"]);
    assert_eq!(s.table(10002), ["10.90.0.0/24", "default via 10.90.0.1"]);
    s.assert_clean("10.90.0.1");
}

/// Issue 25, 2: deleted and added again within moments, many times (the
/// uplink's first address stays: with the last one the kernel takes the
/// link's routes away, and so does the model).
#[test]
fn an_address_deleted_and_re_added_at_once_is_routed() {
    let mut s = one_uplink();
    s.add_addr(3, "10.90.0.3", 24);
    s.settle();
    for i in 0..50 {
        s.del_addr(3, "10.90.0.3");
        if i % 2 == 0 {
            // Sometimes a plan in between, sometimes none.
            s.settle();
        }
        s.add_addr(3, "10.90.0.3", 24);
        s.settle();
    }
    assert_eq!(s.tables_from("10.90.0.3").len(), 1);
    s.assert_clean("10.90.0.1");
    // The last address goes: so do the link's routes, as in the kernel.
    s.del_addr(3, "10.90.0.3");
    s.del_addr(3, "10.90.0.2");
    s.settle();
    assert!(s.kernel.rules.is_empty());
    // The leases linger a moment (an address back at once keeps its
    // table), then go back.
    assert_eq!(s.server.leases.len(), 2);
    s.advance(super::addrs::LINGER + Duration::from_secs(1));
    assert!(s.server.leases.is_empty());
}

/// Issue 25, 3: churn of adds and deletes, with a restart (kill -9: the
/// kernel and the server keep what they had) in the middle.
#[test]
fn churn_with_and_without_a_restart_leaves_nothing_behind() {
    for restart in [false, true] {
        let mut s = one_uplink();
        let mut rng = Rng(0x9e3779b97f4a7c15);
        for n in 0..1000 {
            let a = format!("10.90.0.{}", 10 + rng.below(60));
            if s.tables_from(&a).is_empty() && rng.below(3) > 0 {
                s.add_addr(3, &a, 24);
            } else {
                s.del_addr(3, &a);
            }
            if rng.below(4) == 0 {
                s.settle();
            }
            if restart && n == 500 {
                // Events in flight are lost with the process.
                s.restart("");
                let known: Vec<(String, std::net::IpAddr)> = Vec::new();
                for k in s.model.orphans(&known) {
                    s.model.release_orphan(k, s.now);
                }
            }
        }
        s.settle();
        s.advance(super::addrs::LINGER + Duration::from_secs(5));
        s.assert_clean("10.90.0.1");
    }
}

/// A manager (networkd) deletes our rules: back at once, and logged with
/// who did it; one that keeps doing it is held back.
#[test]
fn a_rule_deleted_behind_our_back_comes_back() {
    let mut s = one_uplink();
    let rules: Vec<_> = s.kernel.rules.iter().cloned().collect();
    for r in &rules {
        s.delete_rule(r, OTHER);
    }
    s.settle();
    assert_eq!(s.kernel.rules.len(), 4);
    let notices = s.model.poll_notices();
    assert_eq!(notices.len(), 4, "{notices:?}");
    // Our own deletions and the kernel's are not drift.
    assert!(notices
        .iter()
        .all(|n| matches!(n, super::Notice::Deleted { port: OTHER, .. })));
    // Deleted again and again: from the sixth time in a minute, held back.
    let from = rules
        .iter()
        .find(|r| r.priority == PRIO_FROM)
        .unwrap()
        .clone();
    for _ in 0..6 {
        s.delete_rule(&from, OTHER);
        s.settle();
    }
    assert!(!s.kernel.rules.contains(&from), "held back");
    assert!(matches!(
        s.model.poll_notices().last(),
        Some(super::Notice::HeldBack { .. })
    ));
    s.advance(Duration::from_secs(3));
    assert!(s.kernel.rules.contains(&from), "back after the hold");
}

/// A table route deleted by someone else comes back too; routes the kernel
/// drops when a link goes down come back when it is up again.
#[test]
fn routes_lost_to_others_or_to_a_link_down_come_back() {
    let mut s = one_uplink();
    let default = s
        .kernel
        .routes
        .values()
        .find(|r| r.table == 10000 && r.prefix_len == 0)
        .unwrap()
        .clone();
    s.kernel.routes.remove(&default.key());
    s.event(Event::RouteRemoved {
        route: default.clone(),
        port: OTHER,
    });
    s.settle();
    assert!(s
        .table(10000)
        .contains(&"default via 10.90.0.1".to_string()));
    // Link down: the kernel flushes IPv4 routes without a word.
    s.kernel.routes.retain(|k, _| k.oif != 3);
    s.event(Event::LinkChanged(crate::netlink::LinkInfo {
        index: 3,
        name: "upA".into(),
        up: false,
    }));
    s.link(3, "upA");
    s.settle();
    assert_eq!(s.table(10000), ["10.90.0.0/24", "default via 10.90.0.1"]);
}

/// After a downtime longer than the lease, the server hands out another
/// table: the address ends with one `from` rule, to the new one.
#[test]
fn an_expired_lease_moves_the_address_to_its_new_table() {
    let mut s = one_uplink();
    let key = *s.server.leases.keys().next().unwrap();
    // The lease expired while the agent was down; table 10000 went to
    // someone else.
    s.server.leases.clear();
    let other =
        crate::protocol::LeaseKey::new(crate::addr::Family::Inet, "eth9", "10.1.1.1").unwrap();
    s.server.leases.insert(other, 10000);
    s.restart("");
    s.settle();
    assert_eq!(s.tables_from("10.90.0.2"), [10001]);
    assert_eq!(s.server.leases.get(&key), Some(&10001));
    assert!(s.kernel.rules.iter().all(|r| r.table == 10001));
    assert_eq!(s.table(10001), ["10.90.0.0/24", "default via 10.90.0.1"]);
    assert!(s.table(10000).is_empty());
}

/// A restart with nothing changed changes nothing in the kernel.
#[test]
fn a_restart_adopts_without_touching_anything() {
    let mut s = one_uplink();
    let (rules, routes) = (s.kernel.rules.clone(), s.kernel.routes.clone());
    s.restart("");
    let plan = s.model.reconcile(s.now);
    assert!(
        plan.ops.iter().all(|o| !matches!(
            o,
            crate::agent::plan::Op::DelRule(_) | crate::agent::plan::Op::DelRoute(_)
        )),
        "{plan:?}"
    );
    s.settle();
    assert_eq!(
        (s.kernel.rules.clone(), s.kernel.routes.clone()),
        (rules, routes)
    );
}

/// A manager that drops its addresses and adds them back a moment later
/// (networkd restarting) finds them in the same tables.
#[test]
fn an_address_back_within_moments_keeps_its_table() {
    let mut s = one_uplink();
    s.link(4, "upB");
    s.add_addr(4, "10.91.0.2", 24);
    s.settle();
    let before = (s.tables_from("10.90.0.2"), s.tables_from("10.91.0.2"));
    s.del_addr(3, "10.90.0.2");
    s.del_addr(4, "10.91.0.2");
    s.settle();
    s.advance(Duration::from_millis(200));
    s.add_addr(4, "10.91.0.2", 24);
    s.add_addr(3, "10.90.0.2", 24);
    s.settle();
    assert_eq!(
        (s.tables_from("10.90.0.2"), s.tables_from("10.91.0.2")),
        before
    );
}

/// `--cleanup`: everything of ours goes, and the uplink's default is back
/// in main as its configurer made it, before its table empties.
#[test]
fn cleanup_puts_the_moved_default_back_in_main() {
    let mut s = one_uplink();
    assert_eq!(s.main_defaults(), 0);
    let ids: Vec<_> = s.model.addrs.keys().copied().collect();
    for id in ids {
        s.model.release(id, s.now);
    }
    s.model.end_lingering(s.now, true);
    s.model.unbound.clear();
    s.model.restore_main();
    s.settle();
    assert_eq!(s.main_defaults(), 1);
    let back: Vec<_> = s
        .kernel
        .routes
        .values()
        .filter(|r| r.table == crate::netlink::routes::MAIN_TABLE && r.prefix_len == 0)
        .collect();
    assert_eq!(back[0].protocol, 3, "proto boot, as ifupdown made it");
    assert!(s.kernel.rules.is_empty());
    assert!(s.table(10000).is_empty());
}

/// Make before break: a default the table cannot take (its gateway is off
/// the address's prefix) stays in main rather than vanish.
#[test]
fn a_default_no_table_holds_stays_in_main() {
    let mut s = Sim::new("");
    s.link(3, "upA");
    s.add_addr(3, "10.90.0.2", 24);
    s.add_route(route("0.0.0.0", 0, Some("192.0.2.1"), 3, 3), OTHER);
    s.settle();
    assert_eq!(s.tables_from("10.90.0.2"), [10000]);
    assert_eq!(s.main_defaults(), 1, "kept in main");
    assert!(!s.table(10000).iter().any(|r| r.starts_with("default")));
}

/// A route of ours replaced by another's (`ip route replace`, no delete
/// event) is put back at once, and said.
#[test]
fn a_route_of_ours_replaced_by_another_comes_back() {
    let mut s = one_uplink();
    let mut theirs = route("0.0.0.0", 0, Some("10.90.0.1"), 3, 4);
    theirs.table = 10000;
    theirs.link_scope = false;
    s.kernel.routes.insert(theirs.key(), theirs.clone());
    s.event(Event::RouteAdded {
        route: theirs.clone(),
        port: OTHER,
    });
    s.settle();
    assert_eq!(
        s.kernel.routes[&theirs.key()].protocol,
        crate::netlink::rules::RT_PROTO
    );
    assert!(s
        .model
        .poll_notices()
        .iter()
        .any(|n| matches!(n, super::Notice::Deleted { what, .. } if what.contains("replaced"))));
}
