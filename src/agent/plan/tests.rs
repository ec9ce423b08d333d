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
        link_scope: gw.is_none(),
        onlink: false,
        unicast: true,
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
fn tables_copy_the_uplinks_routes_and_defaults_leave_main() {
    let main = vec![
        // dhcpcd's default and a classless route through wan1 (index 3).
        route("0.0.0.0", 0, Some("192.168.8.1"), 3, 16),
        route("198.18.0.0", 15, Some("192.168.8.1"), 3, 16),
        // The kernel's connected route: each table gets its own prefix.
        route("192.168.8.0", 24, None, 3, PROTO_KERNEL),
        // dhcpcd's own connected route (it replaces the kernel's).
        route("192.168.8.0", 24, None, 3, 16),
        // Another uplink's default, an IPv6 RA default, ours in main.
        route("0.0.0.0", 0, Some("10.30.0.1"), 4, 4),
        route("::", 0, Some("fe80::1"), 3, PROTO_RA),
        route("0.0.0.0", 0, Some("192.168.8.1"), 3, RT_PROTO),
    ];
    let a: IpAddr = "192.168.8.100".parse().unwrap();
    let t = table_routes(a, 24, 3, 10003, &main, true);
    let shown: Vec<String> = t.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        shown,
        [
            "192.168.8.0/24 dev #3 src 192.168.8.100 table 10003",
            "default via 192.168.8.1 dev #3 metric 1002 table 10003",
            "198.18.0.0/15 via 192.168.8.1 dev #3 metric 1002 table 10003",
        ]
    );
    assert!(t.iter().all(|r| r.origin == Origin::Ours));
    // A /32 (a PPP or cellular lease) has no on-link prefix of its own; a
    // configurer's connected route is then copied.
    assert_eq!(table_routes(a, 32, 3, 10003, &main, true).len(), 3);
    let gone = leaving_main(&main, 3, true, true, true);
    assert_eq!(gone, vec![main[0].clone()]);
    assert!(
        leaving_main(&main, 3, true, false, true).is_empty(),
        "an address without a table keeps main"
    );
    // Without the RA handling, an IPv6 RA default is an uplink route too.
    assert_eq!(
        leaving_main(&main, 3, false, true, false),
        vec![main[5].clone()]
    );
    assert!(leaving_main(&main, 3, false, true, true).is_empty());
}

#[test]
fn a_manager_that_fights_back_wins_after_the_limit() {
    let mut book = FightBook::new();
    let t0 = Instant::now();
    let w = Duration::from_secs(60);
    // A renewal every 30 s re-adds the route: never a fight.
    for i in 0..20 {
        assert!(!book.record(t0 + Duration::from_secs(30 * i), 5, w));
    }
    let mut book = FightBook::new();
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

#[test]
fn stale_rules_are_only_those_of_addresses_gone() {
    use crate::netlink::rules::{rules_for, AddressSpec, PRIO_FROM};
    let spec = |a: &str| AddressSpec {
        ifname: "wan1".into(),
        address: a.parse().unwrap(),
        prefix_len: 64,
    };
    // Table 10000: a stable address and a privacy address that expired;
    // table 10001: an address that went while the agent was down.
    let mut rules = rules_for(&spec("2001:db8::2"), 10000);
    let mut temp = rules
        .iter()
        .find(|r| r.priority == PRIO_FROM)
        .unwrap()
        .clone();
    temp.from = Some(("2001:db8::99".parse().unwrap(), 128));
    rules.push(temp.clone());
    rules.extend(rules_for(&spec("2001:db8:1::2"), 10001));
    let present: HashSet<IpAddr> = ["2001:db8::2".parse().unwrap()].into();
    let stale = stale_rules(&rules, &present);
    assert!(stale.contains(&temp), "the expired privacy address's rule");
    assert_eq!(
        stale.iter().filter(|r| r.table == 10000).count(),
        1,
        "{stale:?}"
    );
    assert_eq!(
        stale.iter().filter(|r| r.table == 10001).count(),
        4,
        "{stale:?}"
    );
    assert!(stale_rules(&rules[..4], &present).is_empty());
}
