use super::*;

/// An RA as dnsmasq sends one: flags, lifetime, a prefix, MTU, RDNSS.
pub fn sample(router_lifetime: u16, valid: u32) -> Vec<u8> {
    let mut m = vec![134, 0, 0, 0, 64, 0x40];
    m.extend(router_lifetime.to_be_bytes());
    m.extend([0u8; 8]);
    // Prefix 2001:db8:8::/64, on-link and autonomous.
    m.extend([3, 4, 64, 0xc0]);
    m.extend(valid.to_be_bytes());
    m.extend((valid / 2).to_be_bytes());
    m.extend([0u8; 4]);
    m.extend("2001:db8:8::".parse::<Ipv6Addr>().unwrap().octets());
    m.extend([5, 1, 0, 0]);
    m.extend(1400u32.to_be_bytes());
    m.extend([25, 3, 0, 0]);
    m.extend(1200u32.to_be_bytes());
    m.extend("fe80::1".parse::<Ipv6Addr>().unwrap().octets());
    // Route information: 2001:db8:99::/48 (8 prefix bytes), 600 s.
    m.extend([24, 2, 48, 0]);
    m.extend(600u32.to_be_bytes());
    m.extend(&"2001:db8:99::".parse::<Ipv6Addr>().unwrap().octets()[..8]);
    m
}

#[test]
fn parses_dnsmasq_style_advertisements() {
    let ra = parse(&sample(1800, 3600)).unwrap();
    assert_eq!(ra.router_lifetime, 1800);
    assert!(ra.other && !ra.managed);
    assert_eq!(ra.mtu, Some(1400));
    assert_eq!(ra.prefixes.len(), 1);
    let p = &ra.prefixes[0];
    assert!(p.on_link && p.autonomous);
    assert_eq!((p.len, p.valid, p.preferred), (64, 3600, 1800));
    assert_eq!(ra.rdnss, vec![("fe80::1".parse().unwrap(), 1200)]);
    assert_eq!(ra.routes[0].len, 48);
    assert_eq!(
        ra.routes[0].prefix,
        "2001:db8:99::".parse::<Ipv6Addr>().unwrap()
    );
}

#[test]
fn build_is_the_inverse_of_parse() {
    let ra = parse(&sample(1800, 3600)).unwrap();
    assert_eq!(parse(&build(&ra)).unwrap(), ra);
}

#[test]
fn malformed_advertisements_are_errors() {
    let good = sample(1800, 3600);
    assert!(parse(&good[..10]).is_err());
    let mut bad = good.clone();
    bad[17] = 0;
    assert!(parse(&bad).is_err(), "zero-length option");
    let mut bad = good.clone();
    bad[17] = 40;
    assert!(parse(&bad).is_err(), "option past the end");
    let mut ns = good;
    ns[0] = 135;
    assert!(parse(&ns).is_err());
}

#[test]
fn plan_routes_and_lifetimes() {
    let router: Ipv6Addr = "fe80::5".parse().unwrap();
    let rio48 = Limits {
        rt_info_plen: Some((0, 64)),
        ..Limits::default()
    };
    let p = plan(&parse(&sample(1800, 3600)).unwrap(), router, &rio48);
    assert_eq!(p.routes.len(), 3);
    assert_eq!(p.routes[0].0.via, Some(router));
    assert_eq!(p.routes[0].1, Duration::from_secs(1800));
    assert_eq!(
        p.routes[1].0.dest,
        "2001:db8:8::".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(p.routes[1].0.via, None);
    assert_eq!(p.routes[2].0.len, 48);
    // Router lifetime 0 and a withdrawn prefix: remove both.
    let gone = plan(&parse(&sample(0, 0)).unwrap(), router, &rio48);
    assert_eq!(gone.routes[0].1, Duration::ZERO);
    assert_eq!(gone.routes[1].1, Duration::ZERO);
    assert_eq!(expires_attr(Duration::from_secs(30)), Some(30));
    assert_eq!(expires_attr(Duration::from_millis(29_500)), Some(30));
    assert_eq!(expires_attr(Duration::from_secs(u64::from(u32::MAX))), None);
}

/// An RA with `n` route-information options (distinct /64s, lifetime
/// infinite) and `d` name servers.
fn hostile(n: u16, d: u16) -> RouterAdvert {
    RouterAdvert {
        router_lifetime: 1800,
        routes: (0..n)
            .map(|i| RouteInfo {
                prefix: Ipv6Addr::new(0x2001, 0xdb8, i, 0, 0, 0, 0, 0),
                len: 64,
                lifetime: u32::MAX,
            })
            .collect(),
        rdnss: (0..d)
            .map(|i| (Ipv6Addr::new(0x2001, 0xdb8, 0xdd, i, 0, 0, 0, 1), u32::MAX))
            .collect(),
        ..RouterAdvert::default()
    }
}

#[test]
fn route_information_follows_the_kernels_prefix_length_bounds() {
    let router: Ipv6Addr = "fe80::5".parse().unwrap();
    let ra = parse(&sample(1800, 3600)).unwrap();
    // The kernel's default (max_plen 0): the /48 is not taken.
    assert_eq!(plan(&ra, router, &Limits::default()).routes.len(), 2);
    let off = Limits {
        rt_info_plen: None,
        ..Limits::default()
    };
    assert_eq!(plan(&ra, router, &off).routes.len(), 2);
    let narrow = Limits {
        rt_info_plen: Some((49, 64)),
        ..Limits::default()
    };
    assert_eq!(plan(&ra, router, &narrow).routes.len(), 2);
}

#[test]
fn floods_are_bounded_and_every_route_expires() {
    let limits = Limits {
        rt_info_plen: Some((0, 128)),
        ..Limits::default()
    };
    let mut held_routes = std::collections::BTreeMap::new();
    let mut held_dns = std::collections::BTreeMap::new();
    let mut refused = 0;
    // 600 RAs with 60 routes each and 80 name servers, from 10 routers.
    for i in 0..600u16 {
        let router = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1 + i % 10);
        let mut ra = hostile(60, 80);
        for r in &mut ra.routes {
            r.prefix = Ipv6Addr::new(0x2001, 0xdb8, i, r.prefix.segments()[2], 0, 0, 0, 0);
        }
        let p = plan(&parse(&build(&ra)).unwrap(), router, &limits);
        assert!(p
            .routes
            .iter()
            .all(|(_, l)| expires_attr(*l).is_some_and(|e| e <= 7200)));
        let (p, n) = admit(p, router, &held_routes, &held_dns, &limits);
        refused += n;
        for (r, l) in p.routes {
            held_routes.insert(r, l);
        }
        for (a, l) in p.dns {
            held_dns.insert(a, l);
        }
        let of = |rt: Ipv6Addr| held_routes.keys().filter(|r| r.via == Some(rt)).count();
        assert!(of(router) <= limits.routes_per_router);
    }
    assert_eq!(held_routes.len(), limits.routes_per_interface);
    assert_eq!(held_dns.len(), limits.dns_per_interface);
    assert!(refused > 30_000);
    // A withdrawal still passes at the bound.
    let router: Ipv6Addr = "fe80::1".parse().unwrap();
    let (p, _) = admit(
        plan(
            &RouterAdvert {
                router_lifetime: 0,
                ..RouterAdvert::default()
            },
            router,
            &limits,
        ),
        router,
        &held_routes,
        &held_dns,
        &limits,
    );
    assert_eq!(p.routes.len(), 1);
    assert!(p.routes[0].1.is_zero());
}
