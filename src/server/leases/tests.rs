use super::*;

fn req(action: Action, ifname: &str, address: &str) -> Request {
    Request {
        action,
        key: LeaseKey::new(Family::Unspec, ifname, address)
            .map(|mut k| {
                k.family = Family::Inet;
                k
            })
            .unwrap(),
        tag: None,
    }
}

fn table(n: u32) -> LeaseTable {
    LeaseTable::new(
        &[Family::Inet],
        10000,
        n,
        Duration::from_secs(60),
        Access::default(),
    )
}

fn granted(o: &(Outcome, Option<StoreOp>)) -> u32 {
    match o.0 {
        Outcome::Granted { table, .. } | Outcome::Renewed { table, .. } => table,
        _ => panic!("not granted: {o:?}"),
    }
}

#[test]
fn grant_renew_release() {
    let mut t = table(4);
    let now = Now::current();
    let a = t
        .handle(&req(Action::Request, "eth0", "10.0.0.1"), &Peer::ROOT, now)
        .unwrap();
    assert_eq!(granted(&a), 10000);
    assert!(matches!(a.1, Some(StoreOp::Put(_))));
    let b = t
        .handle(&req(Action::Request, "eth1", "10.0.0.1"), &Peer::ROOT, now)
        .unwrap();
    assert_eq!(granted(&b), 10001);
    let later = Now {
        mono: now.mono + Duration::from_secs(30),
        wall: now.wall + 30,
    };
    let r = t
        .handle(
            &req(Action::Request, "eth0", "10.0.0.1"),
            &Peer::ROOT,
            later,
        )
        .unwrap();
    assert!(matches!(r.0, Outcome::Renewed { table: 10000, .. }));
    assert_eq!(
        t.get(&r_key("eth0"), later).unwrap().expires_wall,
        now.wall + 90
    );
    let rel = t
        .handle(
            &req(Action::Release, "eth0", "10.0.0.1"),
            &Peer::ROOT,
            later,
        )
        .unwrap();
    assert_eq!(rel.0, Outcome::Released { table: Some(10000) });
    let again = t
        .handle(
            &req(Action::Release, "eth0", "10.0.0.1"),
            &Peer::ROOT,
            later,
        )
        .unwrap();
    assert_eq!(again, (Outcome::Released { table: None }, None));
    let c = t
        .handle(
            &req(Action::Request, "eth2", "10.0.0.3"),
            &Peer::ROOT,
            later,
        )
        .unwrap();
    assert_eq!(granted(&c), 10000);
    assert_eq!(t.counters.grants, 3);
    assert_eq!(t.counters.renewals, 1);
    assert_eq!(t.counters.releases, 1);
}

fn r_key(ifname: &str) -> LeaseKey {
    req(Action::Request, ifname, "10.0.0.1").key
}

#[test]
fn exhaustion_and_disabled_family() {
    let mut t = table(2);
    let now = Now::current();
    for i in 0..2 {
        t.handle(
            &req(Action::Request, &format!("e{i}"), "10.0.0.1"),
            &Peer::ROOT,
            now,
        )
        .unwrap();
    }
    let err = t
        .handle(&req(Action::Request, "e9", "10.0.0.1"), &Peer::ROOT, now)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PoolExhausted);
    assert_eq!(t.len(), 2);
    let mut v6 = req(Action::Request, "e0", "::1");
    v6.key.family = Family::Inet6;
    assert_eq!(
        t.handle(&v6, &Peer::ROOT, now).unwrap_err().code,
        ErrorCode::FamilyDisabled
    );
}

#[test]
fn expiry_at_deadline_and_renewal_before_reaping() {
    let mut t = table(4);
    let now = Now::current();
    t.handle(&req(Action::Request, "a", "10.0.0.1"), &Peer::ROOT, now)
        .unwrap();
    t.handle(&req(Action::Request, "b", "10.0.0.1"), &Peer::ROOT, now)
        .unwrap();
    let next = t.next_deadline().unwrap();
    let due = now.mono + Duration::from_secs(60);
    assert!(next >= due && next <= due + Duration::from_millis(1));
    assert!(t.expire(now.mono + Duration::from_secs(59)).is_empty());
    // "a" renews after its deadline but before the reaper ran: same table.
    let late = Now {
        mono: now.mono + Duration::from_secs(60),
        wall: now.wall + 60,
    };
    let r = t
        .handle(&req(Action::Request, "a", "10.0.0.1"), &Peer::ROOT, late)
        .unwrap();
    assert!(matches!(r.0, Outcome::Renewed { table: 10000, .. }));
    let gone = t.expire(late.mono + Duration::from_millis(1));
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].0.ifname, "b");
    assert_eq!(t.counters.expiries, 1);
    let c = t
        .handle(&req(Action::Request, "c", "10.0.0.1"), &Peer::ROOT, late)
        .unwrap();
    assert_eq!(granted(&c), 10001);
}

#[test]
fn credentials() {
    let mut t = LeaseTable::new(
        &[Family::Inet],
        10000,
        4,
        Duration::from_secs(60),
        Access {
            allowed_uids: vec![1000],
            allowed_gids: vec![50],
        },
    );
    let now = Now::current();
    let nobody = Peer {
        pid: 1,
        uid: 65534,
        gid: 65534,
    };
    let user = Peer {
        pid: 1,
        uid: 1000,
        gid: 1000,
    };
    let group = Peer {
        pid: 1,
        uid: 1001,
        gid: 50,
    };
    assert_eq!(
        t.handle(&req(Action::Request, "a", "10.0.0.1"), &nobody, now)
            .unwrap_err()
            .code,
        ErrorCode::NotPermitted
    );
    assert!(t.is_empty());
    t.handle(&req(Action::Request, "a", "10.0.0.1"), &user, now)
        .unwrap();
    // Another allowed uid can neither release nor renew user's lease.
    for action in [Action::Release, Action::Request] {
        assert_eq!(
            t.handle(&req(action, "a", "10.0.0.1"), &group, now)
                .unwrap_err()
                .code,
            ErrorCode::NotPermitted
        );
    }
    assert!(t
        .handle(&req(Action::Release, "a", "10.0.0.1"), &Peer::ROOT, now)
        .is_ok());
    assert!(t.is_empty());
}

#[test]
fn many_leases_keep_their_tables() {
    let mut t = table(5000);
    let now = Now::current();
    let name = |i: usize| format!("if{i}");
    for i in 0..5000 {
        let g = t
            .handle(
                &req(Action::Request, &name(i), "10.0.0.1"),
                &Peer::ROOT,
                now,
            )
            .unwrap();
        assert_eq!(granted(&g), 10000 + i as u32);
    }
    for i in (1..5000).step_by(2) {
        t.handle(
            &req(Action::Release, &name(i), "10.0.0.1"),
            &Peer::ROOT,
            now,
        )
        .unwrap();
    }
    assert_eq!(t.len(), 2500);
    for i in (0..5000).step_by(2) {
        let r = t
            .handle(
                &req(Action::Request, &name(i), "10.0.0.1"),
                &Peer::ROOT,
                now,
            )
            .unwrap();
        assert!(matches!(r.0, Outcome::Renewed { table, .. } if table == 10000 + i as u32));
    }
    let n = t
        .handle(&req(Action::Request, "new", "10.0.0.1"), &Peer::ROOT, now)
        .unwrap();
    assert_eq!(granted(&n), 10001);
    assert_eq!(t.expire(now.mono + Duration::from_secs(61)).len(), 2501);
    assert!(t.is_empty());
    assert_eq!(t.pool_usage(Family::Inet), Some((0, 5000)));
}

#[test]
fn restore_refuses_conflicts() {
    let mut t = table(4);
    let now = Now::current();
    let lease = |ifname: &str, table: u32| Lease {
        key: r_key(ifname),
        tag: None,
        table,
        uid: 0,
        expires_wall: now.wall + 10,
        deadline: now.mono + Duration::from_secs(10),
    };
    assert!(t.restore(lease("a", 10001)).is_ok());
    assert!(t.restore(lease("b", 10001)).is_err());
    assert!(t.restore(lease("c", 20000)).is_err());
    let d = t
        .handle(&req(Action::Request, "d", "10.0.0.1"), &Peer::ROOT, now)
        .unwrap();
    assert_eq!(granted(&d), 10000);
    let e = t
        .handle(&req(Action::Request, "e", "10.0.0.1"), &Peer::ROOT, now)
        .unwrap();
    assert_eq!(granted(&e), 10002);
}
