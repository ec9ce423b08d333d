use super::*;
use crate::hooks::dhclient::parse_rfc3442;
use std::net::Ipv6Addr;

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn dhcpv6_reasons() {
    let base = [
        ("interface", "wan3"),
        ("new_ip6_address", "2001:db8:30::1a2"),
        ("new_ip6_prefixlen", "128"),
        ("new_max_life", "3600"),
        ("new_preferred_life", "1800"),
        ("new_dhcp6_name_servers", "2001:db8:30::1 fe80::1"),
    ];
    for reason in ["BOUND6", "RENEW6", "REBIND6", "REBOOT6"] {
        let mut e = env(&base);
        e.insert("reason".into(), reason.into());
        let DhcpAction::Configure6 { lease } = dhclient(&e).unwrap() else {
            panic!("{reason}");
        };
        assert_eq!(
            lease.address,
            "2001:db8:30::1a2".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            (lease.prefix_len, lease.valid, lease.preferred),
            (128, 3600, 1800)
        );
        assert_eq!(lease.dns.len(), 2);
    }
    let e = env(&[
        ("reason", "DEPREF6"),
        ("interface", "wan3"),
        ("cur_ip6_address", "2001:db8:30::1a2"),
        ("cur_ip6_prefixlen", "128"),
    ]);
    assert!(matches!(
        dhclient(&e).unwrap(),
        DhcpAction::Deprecate6 {
            prefix_len: 128,
            ..
        }
    ));
    for reason in ["EXPIRE6", "RELEASE6", "STOP6"] {
        let e = env(&[
            ("reason", reason),
            ("interface", "wan3"),
            ("old_ip6_address", "2001:db8:30::1a2"),
        ]);
        assert!(
            matches!(
                dhclient(&e).unwrap(),
                DhcpAction::Remove6 {
                    prefix_len: 128,
                    ..
                }
            ),
            "{reason}"
        );
    }
    // Information-only: nothing to source DNS from; PREINIT6 not ours.
    let e = env(&[("reason", "BOUND6"), ("interface", "wan3")]);
    assert!(matches!(dhclient(&e).unwrap(), DhcpAction::Ignore { .. }));
    let e = env(&[("reason", "PREINIT6"), ("interface", "wan3")]);
    assert!(matches!(dhclient(&e).unwrap(), DhcpAction::Ignore { .. }));
    // Bad values name the variable.
    let mut e = env(&base);
    e.insert("reason".into(), "BOUND6".into());
    e.insert("new_ip6_prefixlen".into(), "129".into());
    assert_eq!(dhclient(&e).unwrap_err().var, "new_ip6_prefixlen");
    e.insert("new_ip6_prefixlen".into(), "64".into());
    e.insert("new_ip6_address".into(), "10.0.0.1".into());
    assert_eq!(dhclient(&e).unwrap_err().var, "new_ip6_address");
}

#[test]
fn bound() {
    let a = dhclient(&env(&[
        ("reason", "BOUND"),
        ("interface", "eth1"),
        ("new_ip_address", "10.1.0.5"),
        ("new_subnet_mask", "255.255.255.0"),
        ("new_broadcast_address", "10.1.0.255"),
        ("new_routers", "10.1.0.1 10.1.0.2"),
        ("new_domain_name_servers", "10.1.0.1 8.8.8.8"),
        ("new_interface_mtu", "1400"),
        ("old_ip_address", "10.1.0.4"),
        ("old_subnet_mask", "255.255.0.0"),
    ]))
    .unwrap();
    let DhcpAction::Configure {
        lease,
        old,
        check_router,
    } = a
    else {
        panic!("{a:?}")
    };
    assert_eq!(lease.ifname, "eth1");
    assert_eq!(lease.prefix_len, 24);
    assert_eq!(lease.routers.len(), 2);
    assert_eq!(lease.dns.len(), 2);
    assert_eq!(lease.mtu, Some(1400));
    assert_eq!(lease.broadcast, Some("10.1.0.255".parse().unwrap()));
    assert_eq!(old, Some(("10.1.0.4".parse().unwrap(), 16)));
    assert!(!check_router);
}

#[test]
fn a_hostile_mtu_is_ignored() {
    for (mtu, want) in [
        ("68", None),
        ("576", None),
        ("577", Some(577)),
        ("1500", Some(1500)),
        ("70000", None),
    ] {
        let a = dhclient(&env(&[
            ("reason", "BOUND"),
            ("interface", "eth1"),
            ("new_ip_address", "10.1.0.5"),
            ("new_interface_mtu", mtu),
        ]))
        .unwrap();
        let DhcpAction::Configure { lease, .. } = a else {
            panic!("{a:?}")
        };
        assert_eq!(lease.mtu, want, "{mtu}");
    }
}

#[test]
fn renew_same_address_flushes_nothing_and_timeout_checks_the_router() {
    let base = [
        ("interface", "eth1"),
        ("new_ip_address", "10.1.0.5"),
        ("new_subnet_mask", "24"),
        ("old_ip_address", "10.1.0.5"),
    ];
    for (reason, check) in [
        ("RENEW", false),
        ("REBIND", false),
        ("REBOOT", false),
        ("TIMEOUT", true),
    ] {
        let mut e = env(&base);
        e.insert("reason".into(), reason.into());
        match dhclient(&e).unwrap() {
            DhcpAction::Configure {
                old, check_router, ..
            } => {
                assert_eq!(old, None);
                assert_eq!(check_router, check, "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn teardown_states_and_others() {
    for reason in ["EXPIRE", "FAIL", "RELEASE", "STOP"] {
        assert_eq!(
            dhclient(&env(&[("reason", reason), ("interface", "wwan0")])).unwrap(),
            DhcpAction::RemoveDns {
                ifname: "wwan0".into()
            }
        );
    }
    assert!(matches!(
        dhclient(&env(&[("reason", "PREINIT"), ("interface", "eth0")])).unwrap(),
        DhcpAction::Ignore { .. }
    ));
}

#[test]
fn bad_variables_name_themselves() {
    let cases = [
        (vec![("interface", "eth0")], "reason"),
        (
            vec![("reason", "BOUND"), ("new_ip_address", "10.0.0.1")],
            "interface",
        ),
        (
            vec![("reason", "BOUND"), ("interface", "eth0")],
            "new_ip_address",
        ),
        (
            vec![
                ("reason", "BOUND"),
                ("interface", "eth0"),
                ("new_ip_address", "10.0.0.x"),
            ],
            "new_ip_address",
        ),
        (
            vec![
                ("reason", "BOUND"),
                ("interface", "eth0"),
                ("new_ip_address", "10.0.0.1"),
                ("new_subnet_mask", "255.0.255.0"),
            ],
            "new_subnet_mask",
        ),
        (
            vec![
                ("reason", "BOUND"),
                ("interface", "eth0"),
                ("new_ip_address", "10.0.0.1"),
                ("new_routers", "x"),
            ],
            "new_routers",
        ),
        (
            vec![
                ("reason", "BOUND"),
                ("interface", "eth0"),
                ("new_ip_address", "10.0.0.1"),
                ("new_rfc3442_classless_static_routes", "24 10 0"),
            ],
            "new_rfc3442_classless_static_routes",
        ),
        (
            vec![
                ("reason", "BOUND"),
                ("interface", "a/b"),
                ("new_ip_address", "10.0.0.1"),
            ],
            "interface",
        ),
    ];
    for (vars, var) in cases {
        assert_eq!(dhclient(&env(&vars)).unwrap_err().var, var, "{vars:?}");
    }
}

#[test]
fn rfc3442() {
    let routes =
        parse_rfc3442("24 192 168 10 10 0 0 1 0 10 0 0 1 32 10 9 8 7 0 0 0 0 9 128 0 10 0 0 1")
            .unwrap();
    let text: Vec<String> = routes
        .iter()
        .map(|r| format!("{}/{} via {}", r.dest, r.prefix_len, r.gateway))
        .collect();
    assert_eq!(
        text,
        [
            "192.168.10.0/24 via 10.0.0.1",
            "0.0.0.0/0 via 10.0.0.1",
            "10.9.8.7/32 via 0.0.0.0",
            "128.0.0.0/9 via 10.0.0.1",
        ]
    );
    assert!(parse_rfc3442("33 1 1 1 1 1 1 1 1 1").is_err());
    assert!(parse_rfc3442("24 10 0 0 10 0 0").is_err());
    assert!(parse_rfc3442("24 10 0 300 10 0 0 1").is_err());
    assert_eq!(parse_rfc3442("").unwrap(), vec![]);
}

#[test]
fn ifupdown_static() {
    let a = ifup(&env(&[
        ("IFACE", "eth2"),
        ("ADDRFAM", "inet"),
        ("METHOD", "static"),
        ("IF_ADDRESS", "192.0.2.10"),
        ("IF_NETMASK", "255.255.255.0"),
        ("IF_GATEWAY", "192.0.2.1"),
        ("IF_DNS_NAMESERVERS", "192.0.2.53"),
    ]))
    .unwrap();
    let IfupAction::Static(s) = a else {
        panic!("{a:?}")
    };
    assert_eq!((s.ifname.as_str(), s.prefix_len), ("eth2", 24));
    assert_eq!(s.gateway, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(s.dns.len(), 1);
    let cidr = ifup(&env(&[
        ("IFACE", "eth2"),
        ("ADDRFAM", "inet"),
        ("METHOD", "static"),
        ("IF_ADDRESS", "192.0.2.10/28"),
    ]))
    .unwrap();
    assert!(matches!(
        cidr,
        IfupAction::Static(StaticUplink {
            prefix_len: 28,
            gateway: None,
            ..
        })
    ));
    for (k, v) in [("METHOD", "dhcp"), ("ADDRFAM", "inet6")] {
        let mut e = env(&[
            ("IFACE", "eth2"),
            ("ADDRFAM", "inet"),
            ("METHOD", "static"),
            ("IF_ADDRESS", "192.0.2.10/28"),
        ]);
        e.insert(k.into(), v.into());
        assert!(matches!(ifup(&e).unwrap(), IfupAction::Ignore { .. }));
    }
    assert!(matches!(
        ifup(&env(&[("IFACE", "lo")])).unwrap(),
        IfupAction::Ignore { .. }
    ));
    assert!(matches!(
        ifup(&env(&[])).unwrap(),
        IfupAction::Ignore { .. }
    ));
    assert_eq!(
        ifup(&env(&[
            ("IFACE", "eth2"),
            ("ADDRFAM", "inet"),
            ("METHOD", "static"),
            ("IF_ADDRESS", "192.0.2.10")
        ]))
        .unwrap_err()
        .var,
        "IF_NETMASK"
    );
}

#[test]
fn network_manager_routes_apply_to_every_address() {
    let a = ifup(&env(&[
        ("IFACE", "wlan0"),
        ("DEVICE_IFACE", "wlan0"),
        ("IP4_NUM_ADDRESSES", "2"),
        ("IP4_ADDRESS_0", "10.5.0.7/24 10.5.0.1"),
        ("IP4_ADDRESS_1", "10.6.0.7/24 0.0.0.0"),
        ("IP4_GATEWAY", "10.5.0.1"),
        ("IP4_NUM_ROUTES", "2"),
        ("IP4_ROUTE_0", "172.16.0.0/12 10.5.0.254 100"),
        ("IP4_ROUTE_1", "10.99.0.0/16 0.0.0.0 0"),
        ("IP4_NAMESERVERS", "10.5.0.1"),
    ]))
    .unwrap();
    let IfupAction::NetworkManager(ups) = a else {
        panic!("{a:?}")
    };
    assert_eq!(ups.len(), 2);
    for u in &ups {
        assert_eq!(u.routes.len(), 2, "{u:?}");
        assert_eq!(u.gateway, Some("10.5.0.1".parse().unwrap()));
    }
    assert_eq!(ups[1].address, "10.6.0.7".parse::<Ipv4Addr>().unwrap());
    assert_eq!(
        ifup(&env(&[
            ("DEVICE_IFACE", "wlan0"),
            ("IP4_NUM_ADDRESSES", "1")
        ]))
        .unwrap_err()
        .var,
        "IP4_ADDRESS_0"
    );
}

#[test]
fn network_manager_modems_route_on_the_ip_interface() {
    // A WWAN modem: NetworkManager controls cdc-wdm0, IP runs on wwan0.
    let base = [
        ("DEVICE_IFACE", "cdc-wdm0"),
        ("DEVICE_IP_IFACE", "wwan0"),
        ("IFACE", "wwan0"),
        ("IP4_NUM_ADDRESSES", "1"),
        ("IP4_ADDRESS_0", "100.64.3.7/30 100.64.3.5"),
    ];
    let a = ifup(&env(&base)).unwrap();
    let IfupAction::NetworkManager(ups) = a else {
        panic!("{a:?}")
    };
    assert_eq!(ups[0].ifname, "wwan0");
    // PPP: only $1 (IFACE, from 01-ifupdown) names ppp0.
    let a = ifup(&env(&[
        ("DEVICE_IFACE", "ttyUSB0"),
        ("IFACE", "ppp0"),
        ("IP4_NUM_ADDRESSES", "1"),
        ("IP4_ADDRESS_0", "100.64.3.7/32 100.64.3.5"),
    ]))
    .unwrap();
    let IfupAction::NetworkManager(ups) = a else {
        panic!("{a:?}")
    };
    assert_eq!(ups[0].ifname, "ppp0");
    // The inet6 round of 01-ifupdown is not a second IPv4 configuration.
    let mut e = env(&base);
    e.insert("ADDRFAM".into(), "inet6".into());
    assert!(matches!(ifup(&e).unwrap(), IfupAction::Ignore { .. }));
}
