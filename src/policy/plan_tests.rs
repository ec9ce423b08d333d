use super::*;
use serde_json::json;

fn policies() -> Policies {
    Policies::parse(
        Some(json!([
            {"name": "balanced", "members": [
                {"uplink": "u0", "weight": 2}, {"uplink": "u1"}, {"uplink": "u2"}]},
            {"name": "pinned", "members": [{"uplink": "u1"}], "last_resort": "unreachable"},
            {"name": "tiered", "members": [{"uplink": "u0", "tier": 1}, {"uplink": "u*", "tier": 2}]},
        ])),
        Some(json!([
            {"policy": "pinned", "uid": "2000-2999"},
            {"policy": "balanced", "proto": "tcp", "dport": 443},
            {"policy": "tiered", "to": ["198.51.100.0/24"]},
        ])),
        None,
    )
    .unwrap()
}

fn cand(i: u32, health: LinkState) -> Candidate {
    Candidate {
        ifname: format!("u{i}"),
        family: Family::Inet,
        address: format!("10.10{i}.0.2").parse().unwrap(),
        health,
        default: Some(Hop {
            gateway: Some(format!("10.10{i}.0.1").parse().unwrap()),
            ifindex: 10 + i,
            weight: 1,
            onlink: false,
        }),
    }
}

fn routes_in(p: &PolicyPlan, table: u32) -> Vec<String> {
    p.routes
        .iter()
        .filter(|r| r.table == table && r.dest.is_ipv4())
        .map(|r| r.to_string())
        .collect()
}

#[test]
fn members_of_the_best_tier_share_by_weight() {
    let p = policies();
    let all = [
        cand(0, LinkState::Up),
        cand(1, LinkState::Up),
        cand(2, LinkState::Unknown),
    ];
    let plan = plan(&p, &all);
    assert_eq!(
        routes_in(&plan, p.table(0)),
        [format!(
            "default nexthop via 10.100.0.1 dev #10 weight 2 nexthop via 10.101.0.1 dev #11 weight 1 nexthop via 10.102.0.1 dev #12 weight 1 table {}",
            p.table(0)
        )]
    );
    let shares: Vec<f64> = plan.views[0].members.iter().map(|m| m.share).collect();
    assert_eq!(shares, [50.0, 25.0, 25.0]);
    assert!(plan.balanced(Family::Inet) && !plan.balanced(Family::Inet6));
    // The pinned one: its uplink, and the refusal behind it.
    let pinned = routes_in(&plan, p.table(1));
    assert_eq!(pinned.len(), 2, "{pinned:?}");
    assert!(
        pinned[0].contains("via 10.101.0.1 dev #11 src 10.101.0.2"),
        "{pinned:?}"
    );
    assert!(
        pinned[1].contains("unreachable metric 4294967295"),
        "{pinned:?}"
    );
    // The tier: u0 alone while it is usable.
    assert!(routes_in(&plan, p.table(2))[0].starts_with("default via 10.100.0.1 dev #10"));
    assert_eq!(plan.views[2].members[1].state, "standby");
}

#[test]
fn a_member_down_leaves_and_the_next_tier_takes_over() {
    let p = policies();
    let all = [
        cand(0, LinkState::Down),
        cand(1, LinkState::Up),
        cand(2, LinkState::Up),
    ];
    let plan = plan(&p, &all);
    let b = routes_in(&plan, p.table(0));
    assert!(
        b[0].contains("dev #11 weight 1 nexthop via 10.102.0.1 dev #12 weight 1")
            && !b[0].contains("#10"),
        "{b:?}"
    );
    let t = routes_in(&plan, p.table(2));
    assert!(t[0].contains("#11") && t[0].contains("#12"), "{t:?}");
    assert_eq!(plan.views[0].members[0].state, "down");
    // u1 down: pinned keeps only its refusal, never another uplink.
    let all = [
        cand(0, LinkState::Up),
        cand(1, LinkState::Down),
        cand(2, LinkState::Up),
    ];
    let pinned = routes_in(&plan_of(&p, &all), p.table(1));
    assert_eq!(pinned.len(), 1);
    assert!(pinned[0].contains("unreachable"));
    // Degraded members only when nothing better is left.
    let all = [
        cand(0, LinkState::Degraded),
        cand(1, LinkState::Up),
        cand(2, LinkState::Down),
    ];
    let b = routes_in(&plan_of(&p, &all), p.table(0));
    assert!(b[0].starts_with("default via 10.101.0.1 dev #11"), "{b:?}");
    let all = [
        cand(0, LinkState::Degraded),
        cand(1, LinkState::Down),
        cand(2, LinkState::Down),
    ];
    let b = routes_in(&plan_of(&p, &all), p.table(0));
    assert!(b[0].starts_with("default via 10.100.0.1 dev #10"), "{b:?}");
    // Nothing usable, last resort "default": an empty table (lookups go on).
    let none = [cand(0, LinkState::Down)];
    assert!(routes_in(&plan_of(&p, &none), p.table(0)).is_empty());
}

fn plan_of(p: &Policies, c: &[Candidate]) -> PolicyPlan {
    plan(p, c)
}

#[test]
fn rules_in_the_band_per_family() {
    let p = policies();
    let plan = plan(&p, &[]);
    let text: Vec<String> = plan
        .rules
        .iter()
        .map(|r| format!("{} {}", r.family, r))
        .collect();
    let has = |s: &str| text.iter().any(|t| t == s);
    let b = p.table(0);
    assert!(
        has(&format!("inet 40000:\tfrom all fwmark {b:#x} lookup {b}")),
        "{text:#?}"
    );
    assert!(has(&format!(
        "inet6 40000:\tfrom all fwmark {b:#x} lookup {b}"
    )));
    assert!(has(&format!(
        "inet 40010:\tfrom all uidrange 2000-2999 lookup {}",
        p.table(1)
    )));
    assert!(has(&format!(
        "inet6 40020:\tfrom all ipproto tcp dport 443 lookup {b}"
    )));
    // A prefix of one family makes a rule of that family only.
    assert!(has(&format!(
        "inet 40030:\tfrom all to 198.51.100.0/24 lookup {}",
        p.table(2)
    )));
    assert!(!text.iter().any(|t| t.starts_with("inet6 40030")));
    assert_eq!(text.len(), 6 + 2 + 2 + 1);
}
