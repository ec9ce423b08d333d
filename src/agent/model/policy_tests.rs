//! Policies against the simulated kernel: tables that follow health,
//! rules in their band, drift repaired, removal when the config drops them.

use super::sim::{route, Sim, OTHER};
use crate::addr::Family;
use crate::netlink::routes::RouteKind;
use crate::policy::config::DEFAULT_BASE;
use crate::track::health::LinkState;

const POLICIES: &str = r#", policies: [
    {name: "balanced", members: [{uplink: "upA", weight: 2}, {uplink: "upB"}, {uplink: "upC"}]},
    {name: "pinned", members: [{uplink: "upB"}], last_resort: "unreachable"}],
  rules: [{policy: "pinned", uid: "2000-2999"}, {policy: "balanced", proto: "tcp", dport: 443}]"#;

const BALANCED: u32 = DEFAULT_BASE;
const PINNED: u32 = DEFAULT_BASE + 1;

fn three_uplinks(extra: &str) -> Sim {
    let mut s = Sim::new(extra);
    for (i, name) in [(3, "upA"), (4, "upB"), (5, "upC")] {
        s.link(i, name);
        s.add_addr(i, &format!("10.9{}.0.2", i - 3), 24);
        s.add_route(
            route("0.0.0.0", 0, Some(&format!("10.9{}.0.1", i - 3)), i, 3),
            OTHER,
        );
    }
    s.settle();
    s
}

/// The IPv4 routes of a policy table: (next hops as (ifindex, weight), kind).
fn policy_routes(s: &Sim, t: u32) -> Vec<(Vec<(u32, u16)>, RouteKind)> {
    s.kernel
        .routes
        .values()
        .filter(|r| r.table == t && r.dest.is_ipv4())
        .map(|r| {
            let hops = if r.hops.is_empty() {
                r.oif.map(|o| vec![(o, 1)]).unwrap_or_default()
            } else {
                r.hops.iter().map(|h| (h.ifindex, h.weight)).collect()
            };
            (hops, r.kind)
        })
        .collect()
}

#[test]
fn policy_tables_follow_health() {
    let mut s = three_uplinks(POLICIES);
    assert_eq!(
        policy_routes(&s, BALANCED),
        [(vec![(3, 2), (4, 1), (5, 1)], RouteKind::Unicast)]
    );
    assert_eq!(
        policy_routes(&s, PINNED),
        [
            (vec![], RouteKind::Unreachable),
            (vec![(4, 1)], RouteKind::Unicast)
        ]
    );
    let band: Vec<String> = s
        .kernel
        .rules
        .iter()
        .filter(|r| r.priority >= 40000 && r.priority < 50000 && r.family == Family::Inet)
        .map(|r| r.to_string())
        .collect();
    assert_eq!(band.len(), 4, "{band:?}");
    assert!(band
        .iter()
        .any(|r| r.contains("uidrange 2000-2999") && r.contains(&PINNED.to_string())));
    // upA down: its share goes to the others; back: as before.
    s.model.set_health("upA", Family::Inet, LinkState::Down);
    s.settle();
    assert_eq!(
        policy_routes(&s, BALANCED),
        [(vec![(4, 1), (5, 1)], RouteKind::Unicast)]
    );
    // upB down too: pinned refuses rather than use another uplink.
    s.model.set_health("upB", Family::Inet, LinkState::Down);
    s.settle();
    assert_eq!(
        policy_routes(&s, PINNED),
        [(vec![], RouteKind::Unreachable)]
    );
    assert_eq!(
        policy_routes(&s, BALANCED),
        [(vec![(5, 1)], RouteKind::Unicast)]
    );
    for name in ["upA", "upB"] {
        s.model.set_health(name, Family::Inet, LinkState::Up);
    }
    s.settle();
    assert_eq!(policy_routes(&s, BALANCED)[0].0.len(), 3);
    // The uplink's address goes: it leaves the policy at once.
    s.del_addr(5, "10.92.0.2");
    s.settle();
    assert_eq!(
        policy_routes(&s, BALANCED),
        [(vec![(3, 2), (4, 1)], RouteKind::Unicast)]
    );
}

#[test]
fn policy_rules_are_repaired_adopted_and_removed_with_the_config() {
    let mut s = three_uplinks(POLICIES);
    let rule = s
        .kernel
        .rules
        .iter()
        .find(|r| r.sel.dport.is_some())
        .cloned()
        .unwrap();
    s.delete_rule(&rule, OTHER);
    s.settle();
    assert!(s.kernel.rules.contains(&rule), "repaired");
    let before = (s.kernel.rules.clone(), s.kernel.routes.clone());
    s.restart(POLICIES);
    s.settle();
    assert_eq!((s.kernel.rules.clone(), s.kernel.routes.clone()), before);
    // Without policies in the config: their rules and tables go.
    s.restart("");
    s.settle();
    assert!(s
        .kernel
        .rules
        .iter()
        .all(|r| r.priority < 40000 || r.priority >= 50000));
    assert!(s.kernel.routes.values().all(|r| r.table < DEFAULT_BASE));
    assert_eq!(s.kernel.rules.len(), 12, "the addresses' rules stay");
}
