use super::*;
use crate::netlink::routes::Origin;

fn route(dest: &str, len: u8, gw: Option<&str>, oif: u32, proto: u8) -> KernelRoute {
    KernelRoute {
        table: MAIN_TABLE,
        dest: dest.parse().unwrap(),
        prefix_len: len,
        gateway: gw.map(|g| g.parse().unwrap()),
        oif: Some(oif),
        protocol: proto,
        metric: Some(1002),
        src: None,
        link_scope: gw.is_none(),
        onlink: false,
        kind: Default::default(),
        hops: Vec::new(),
        expires: false,
    }
}

fn addr(a: &str, flags: u32) -> HostAddr {
    HostAddr {
        index: 3,
        address: a.parse().unwrap(),
        prefix_len: 24,
        flags,
        proto: None,
    }
}

#[test]
fn which_addresses_get_a_table() {
    assert!(wants_table(&addr("192.168.8.100", 0)));
    assert!(wants_table(&addr("2001:db8::5", 0)));
    assert!(!wants_table(&addr("169.254.3.4", 0)), "link-local");
    assert!(!wants_table(&addr("fe80::1", 0)));
    assert!(!wants_table(&addr("127.0.0.1", 0)));
    assert!(!wants_table(&addr("2001:db8::77", 0x01)), "temporary");
    assert!(wants_table(&addr("192.168.8.101", 0x01)), "IPv4 secondary");
    assert!(!wants_table(&addr("2001:db8::78", 0x08)), "DAD failed");
}

#[test]
fn uplink_routes_of_main_and_where_they_fit() {
    let a: IpAddr = "192.168.8.100".parse().unwrap();
    // dhcpcd's default and a classless route: uplink routes, and they fit.
    let default = route("0.0.0.0", 0, Some("192.168.8.1"), 3, 16);
    let classless = route("198.18.0.0", 15, Some("192.168.8.1"), 3, 16);
    for r in [&default, &classless] {
        assert!(uplink_route(r, true) && fits(r, a, 24));
    }
    // The kernel's connected route and ours are not an uplink's.
    assert!(!uplink_route(
        &route("192.168.8.0", 24, None, 3, PROTO_KERNEL),
        true
    ));
    assert!(!uplink_route(
        &route("0.0.0.0", 0, Some("192.168.8.1"), 3, RT_PROTO),
        true
    ));
    // dhcpcd's own connected route: the table has its own prefix.
    assert!(!fits(&route("192.168.8.0", 24, None, 3, 16), a, 24));
    // A gateway outside the address's prefix cannot be reached from its
    // table, unless the route is on-link or the lease is a /32.
    let far = route("0.0.0.0", 0, Some("10.9.0.1"), 3, 16);
    assert!(!fits(&far, a, 24));
    assert!(fits(&far, a, 32));
    let mut onlink = far.clone();
    onlink.onlink = true;
    assert!(fits(&onlink, a, 24));
    // IPv6 routers are link-local: they always fit an IPv6 address.
    let ra = route("::", 0, Some("fe80::1"), 3, PROTO_RA);
    assert!(fits(&ra, "2001:db8::5".parse().unwrap(), 64));
    assert!(!fits(&ra, a, 24), "not of the family");
    // RA routes belong to the RA handling when it runs.
    assert!(!uplink_route(&ra, true));
    assert!(uplink_route(&ra, false));
    let o = onlink_route();
    assert_eq!(
        o.to_string(),
        "192.168.8.0/24 dev #3 src 192.168.8.100 table 10003"
    );
    assert_eq!(o.origin, Origin::Ours);
    assert!(
        super::onlink(a, 32, 3, 10003).is_none(),
        "a /32 has no prefix"
    );
}

fn onlink_route() -> RouteSpec {
    onlink("192.168.8.100".parse().unwrap(), 24, 3, 10003).unwrap()
}

#[test]
fn a_manager_that_fights_back_wins_after_the_limit() {
    let mut book = FightBook::default();
    let t0 = Instant::now();
    let w = Duration::from_secs(60);
    // A renewal every 30 s re-adds the route: never a fight.
    for i in 0..20 {
        assert!(!book.record(t0 + Duration::from_secs(30 * i), 5, w));
    }
    let mut book = FightBook::default();
    let gave_up: Vec<bool> = (0..8)
        .map(|i| book.record(t0 + Duration::from_millis(100 * i), 5, w))
        .collect();
    assert_eq!(
        gave_up,
        [false, false, false, false, false, true, false, false]
    );
    assert!(book.given_up);
    assert!(fight_advice("wlan0", true).contains("ipv4.route-table"));
}
