//! MPTCP endpoints against the simulated kernel: they follow addresses,
//! tables and health, and a restart adopts them.

use super::sim::{route, Sim, OTHER};
use super::tests::one_uplink;
use crate::addr::Family;
use crate::netlink::mptcp::message::{BACKUP, SUBFLOW};
use crate::track::health::LinkState;

fn endpoints(s: &Sim) -> Vec<(String, u8, u32)> {
    s.kernel
        .endpoints
        .values()
        .map(|e| (e.address.to_string(), e.id, e.flags))
        .collect()
}

/// upA as in `one_uplink`, and upB with its own default; then a restart so
/// that the model has read the (simulated) path manager.
fn two_uplinks() -> Sim {
    let mut s = one_uplink();
    s.link(4, "upB");
    s.add_addr(4, "10.91.0.2", 24);
    s.add_route(route("0.0.0.0", 0, Some("10.91.0.1"), 4, 3), OTHER);
    s.settle();
    s.restart("");
    s.settle();
    s
}

#[test]
fn an_endpoint_per_routed_address_that_follows_health_and_addresses() {
    let mut s = two_uplinks();
    assert_eq!(
        endpoints(&s),
        [
            ("10.90.0.2".into(), 100, SUBFLOW),
            ("10.91.0.2".into(), 101, SUBFLOW)
        ]
    );
    assert_eq!(s.kernel.endpoints[&100].ifindex, Some(3));
    // Degraded: backup; down: gone; up: back (a fresh id is fine).
    s.model.set_health("upB", Family::Inet, LinkState::Degraded);
    s.settle();
    assert_eq!(s.kernel.endpoints[&101].flags, SUBFLOW | BACKUP);
    s.model.set_health("upB", Family::Inet, LinkState::Down);
    s.settle();
    assert_eq!(endpoints(&s), [("10.90.0.2".into(), 100, SUBFLOW)]);
    s.model.set_health("upB", Family::Inet, LinkState::Up);
    s.settle();
    assert_eq!(endpoints(&s).len(), 2);
    // The address goes: so does its endpoint.
    s.del_addr(4, "10.91.0.2");
    s.settle();
    assert_eq!(endpoints(&s), [("10.90.0.2".into(), 100, SUBFLOW)]);
}

#[test]
fn a_restart_adopts_and_others_endpoints_are_left_alone() {
    let mut s = two_uplinks();
    let before = endpoints(&s);
    s.restart("");
    s.settle();
    assert_eq!(endpoints(&s), before, "adopted, nothing added twice");
    // Someone else's endpoint (a low id) for upA's address: ours goes
    // aside, theirs stays.
    let theirs = crate::netlink::mptcp::Endpoint {
        id: 1,
        address: "10.90.0.2".parse().unwrap(),
        port: None,
        ifindex: None,
        flags: SUBFLOW,
    };
    s.kernel.endpoints.retain(|_, e| e.id != 100);
    s.kernel.endpoints.insert(1, theirs.clone());
    s.restart("");
    s.settle();
    assert_eq!(s.kernel.endpoints.get(&1), Some(&theirs));
    assert!(!s
        .kernel
        .endpoints
        .values()
        .any(|e| e.id >= 100 && e.address == theirs.address));
    // Switched off: ours go, theirs stay.
    s.restart(", mptcp: {enabled: false}");
    s.settle();
    assert_eq!(
        endpoints(&s),
        [("10.90.0.2".into(), 1, SUBFLOW)],
        "ours go, theirs stay"
    );
}

/// Two modems handing out the same address: one endpoint (the kernel
/// takes one per address), and no add that keeps failing.
#[test]
fn one_endpoint_per_address_whatever_holds_it() {
    let mut s = one_uplink();
    s.link(4, "upB");
    s.add_addr(4, "10.90.0.2", 24);
    let mut b = route("0.0.0.0", 0, Some("10.90.0.1"), 4, 3);
    b.metric = Some(200);
    s.add_route(b, OTHER);
    s.settle();
    s.restart("");
    s.settle();
    assert_eq!(s.kernel.endpoints.len(), 1);
    assert_eq!(s.model.endpoints_desired(s.now).len(), 1);
    assert!(s.model.reconcile(s.now).is_empty(), "nothing left to do");
}

/// Limits are raised to fit the endpoints, never lowered below an
/// operator's.
#[test]
fn limits_are_raised_never_lowered() {
    use crate::netlink::mptcp::Limits;
    let mut s = two_uplinks();
    let ops = |s: &mut Sim| {
        s.model.settled = false;
        s.model
            .reconcile(s.now)
            .ops
            .into_iter()
            .filter_map(|op| match op {
                crate::agent::plan::Op::Limits(l) => Some(l),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    s.model.mptcp.limits = Some(Limits {
        subflows: 0,
        add_addr_accepted: 0,
    });
    assert_eq!(
        ops(&mut s),
        [Limits {
            subflows: 2,
            add_addr_accepted: 2
        }]
    );
    s.model.mptcp.limits = Some(Limits {
        subflows: 8,
        add_addr_accepted: 4,
    });
    assert!(ops(&mut s).is_empty(), "an operator's higher limits stay");
}

/// MPTCP off in the namespace: said once, nothing else done.
#[test]
fn with_mptcp_off_nothing_is_done() {
    let mut s = one_uplink();
    s.model.mptcp.resync(None);
    s.model.mptcp.resync(None);
    assert_eq!(s.model.mptcp.usable, Some(false));
    s.settle();
    assert!(s.kernel.endpoints.is_empty());
}

/// Nine uplinks: the kernel takes 8 endpoints, the best by health, then
/// the tracker's preference; a down one makes room for the ninth.
#[test]
fn the_best_eight_get_endpoints() {
    let mut s = Sim::new("");
    for i in 0..9u32 {
        let index = 10 + i;
        s.link(index, &format!("up{i}"));
        s.add_addr(index, &format!("10.9{i}.0.2"), 24);
        let mut r = route("0.0.0.0", 0, Some(&format!("10.9{i}.0.1")), index, 3);
        r.metric = Some(100 + i);
        s.add_route(r, OTHER);
    }
    s.settle();
    s.restart(r#", track: { preference: ["up8"] }"#);
    s.settle();
    let has = |s: &Sim, a: &str| {
        s.kernel
            .endpoints
            .values()
            .any(|e| e.address.to_string() == a)
    };
    assert_eq!(s.kernel.endpoints.len(), 8);
    assert!(has(&s, "10.98.0.2"), "the preferred one");
    assert!(!has(&s, "10.97.0.2"), "the newest unpreferred one waits");
    s.model.set_health("up0", Family::Inet, LinkState::Down);
    s.settle();
    assert_eq!(s.kernel.endpoints.len(), 8);
    assert!(!has(&s, "10.90.0.2") && has(&s, "10.97.0.2"));
}
