use super::*;

fn up(addr: &str, plen: u8, routers: &[&str]) -> Uplink {
    Uplink {
        ifindex: 7,
        address: addr.parse().unwrap(),
        prefix_len: plen,
        routers: routers.iter().map(|r| r.parse().unwrap()).collect(),
        static_routes: vec![],
        metric: None,
    }
}

fn text(routes: &[RouteSpec]) -> Vec<String> {
    routes.iter().map(|r| r.to_string()).collect()
}

#[test]
fn moves_the_subnet_route_and_adds_the_default() {
    let plan = uplink_routes(&up("10.1.0.5", 24, &["10.1.0.1"]), 10000, MainPolicy::Move);
    assert_eq!(
        text(&plan.delete),
        [
            "10.1.0.0/24 dev #7 src 10.1.0.5 table 254",
            "default via 10.1.0.1 dev #7 table 254",
        ]
    );
    assert_eq!(plan.delete[0].origin, Origin::Kernel);
    assert_eq!(plan.delete[1].origin, Origin::Any);
    assert_eq!(
        text(&plan.add),
        [
            "10.1.0.0/24 dev #7 src 10.1.0.5 table 10000",
            "default via 10.1.0.1 dev #7 src 10.1.0.5 table 10000",
        ]
    );
}

#[test]
fn several_routers_get_metrics_like_dhclient_script() {
    let plan = uplink_routes(
        &up("10.1.0.5", 24, &["10.1.0.1", "10.1.0.2"]),
        10000,
        MainPolicy::Move,
    );
    assert_eq!(
        text(&plan.add[1..]),
        [
            "default via 10.1.0.1 dev #7 src 10.1.0.5 metric 1 table 10000",
            "default via 10.1.0.2 dev #7 src 10.1.0.5 metric 2 table 10000",
        ]
    );
}

#[test]
fn fallback_keeps_routes_in_main_with_the_ifindex_metric() {
    let plan = uplink_routes(&up("10.1.0.5", 24, &["10.1.0.1"]), 0, MainPolicy::Move);
    assert_eq!(
        text(&plan.add),
        [
            "10.1.0.0/24 dev #7 src 10.1.0.5 metric 7 table 254",
            "default via 10.1.0.1 dev #7 src 10.1.0.5 metric 7 table 254",
        ]
    );
    assert_eq!(plan.delete.len(), 2);
}

#[test]
fn a_huge_if_metric_saturates_instead_of_wrapping() {
    let mut u = up("10.1.0.5", 24, &["10.1.0.1", "10.1.0.2"]);
    u.metric = Some(u32::MAX);
    let fallback = uplink_routes(&u, 0, MainPolicy::Move);
    let defaults: Vec<_> = fallback.add.iter().filter(|r| r.prefix_len == 0).collect();
    assert!(
        defaults.iter().all(|r| r.metric == Some(u32::MAX)),
        "{:?}",
        text(&fallback.add)
    );
    let table = uplink_routes(&u, 10000, MainPolicy::Move);
    assert!(table
        .add
        .iter()
        .filter(|r| r.prefix_len == 0)
        .all(|r| r.metric == Some(u32::MAX)));
}

#[test]
fn point_to_point_lease() {
    let plan = uplink_routes(
        &up("100.64.1.9", 32, &["100.64.0.1"]),
        10002,
        MainPolicy::Move,
    );
    assert_eq!(plan.delete.len(), 1, "only a stale default in main");
    assert_eq!(
        text(&plan.add),
        [
            "100.64.0.1/32 dev #7 src 100.64.1.9 table 10002",
            "default via 100.64.0.1 dev #7 src 100.64.1.9 table 10002",
        ]
    );
}

#[test]
fn classless_routes_replace_the_routers() {
    let mut u = up("10.1.0.5", 24, &["10.1.0.1"]);
    u.static_routes = vec![
        StaticRoute {
            dest: "192.168.50.0".parse().unwrap(),
            prefix_len: 24,
            gateway: "10.1.0.254".parse().unwrap(),
        },
        StaticRoute {
            dest: "0.0.0.0".parse().unwrap(),
            prefix_len: 0,
            gateway: "10.1.0.1".parse().unwrap(),
        },
        StaticRoute {
            dest: "10.9.0.0".parse().unwrap(),
            prefix_len: 16,
            gateway: "0.0.0.0".parse().unwrap(),
        },
    ];
    let plan = uplink_routes(&u, 10000, MainPolicy::Move);
    assert_eq!(
        text(&plan.add),
        [
            "10.1.0.0/24 dev #7 src 10.1.0.5 table 10000",
            "192.168.50.0/24 via 10.1.0.254 dev #7 src 10.1.0.5 table 10000",
            "default via 10.1.0.1 dev #7 src 10.1.0.5 table 10000",
            "10.9.0.0/16 dev #7 src 10.1.0.5 table 10000",
        ]
    );
}

#[test]
fn network_manager_keeps_main() {
    let plan = uplink_routes(&up("10.1.0.5", 24, &["10.1.0.1"]), 10000, MainPolicy::Keep);
    assert!(plan.delete.is_empty());
    assert_eq!(plan.add.len(), 2);
}
