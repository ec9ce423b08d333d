use super::*;

fn clock() -> AdoptClock {
    AdoptClock {
        raw_now: 5000,
        boot_wall: 0,
        table_timeout: 3600,
    }
}

fn lease(ifname: &str, table: u32, now: Now, ttl: i64) -> Lease {
    StoredLease {
        key: LeaseKey::new(Family::Inet, ifname, "10.0.0.2").unwrap(),
        tag: Some("t".into()),
        table,
        uid: 0,
        expires_wall: now.wall + ttl,
    }
    .into_lease(now)
}

#[test]
fn put_delete_load_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tas.db");
    let now = Now::current();
    {
        let mut s = Store::open(&path, now, clock()).unwrap();
        s.apply(&[
            StoreOp::Put(lease("a", 10000, now, 60)),
            StoreOp::Put(lease("b", 10001, now, 60)),
            StoreOp::Put(lease("c", 10002, now, -1)),
        ])
        .unwrap();
        s.apply(&[StoreOp::Delete(lease("b", 0, now, 0).key)])
            .unwrap();
        // Renewal updates in place.
        s.apply(&[StoreOp::Put(lease("a", 10000, now, 120))])
            .unwrap();
        assert_eq!(s.count().unwrap(), 2);
    }
    let mut s = Store::open(&path, now, clock()).unwrap();
    let live = s.load(now).unwrap();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].key.ifname, "a");
    assert_eq!(live[0].expires_wall, now.wall + 120);
    assert_eq!(live[0].tag.as_deref(), Some("t"));
    // The expired row was removed from disk too.
    assert_eq!(s.count().unwrap(), 1);
}

#[test]
fn a_table_is_never_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let now = Now::current();
    let mut s = Store::open(&dir.path().join("db"), now, clock()).unwrap();
    s.apply(&[StoreOp::Put(lease("a", 10000, now, 60))])
        .unwrap();
    assert!(s
        .apply(&[StoreOp::Put(lease("b", 10000, now, 60))])
        .is_err());
    // The failed batch left nothing behind.
    assert_eq!(s.count().unwrap(), 1);
}

fn original_db(path: &Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS RtTables(RtTable INTEGER NOT NULL,
         AddrFamily INTEGER NOT NULL, Ifname TEXT NOT NULL, Addr TEXT NOT NULL,
         LeaseExpires INTEGER NOT NULL, Tag TEXT,
         PRIMARY KEY(RtTable,AddrFamily) ON CONFLICT REPLACE);
         INSERT INTO RtTables VALUES (10000, 2, 'eth1', '10.10.0.2', 5528, 'x');
         INSERT INTO RtTables VALUES (10001, 2, 'eth2', '10.10.0.3', 4000, NULL);
         INSERT INTO RtTables VALUES (10000, 10, 'eth1', '2001:DB8::2', 99999, NULL);",
    )
    .unwrap();
}

#[test]
fn adopts_the_original_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orig.db");
    original_db(&path);
    let now = Now::current();
    let mut s = Store::open(&path, now, clock()).unwrap();
    let mut live = s.load(now).unwrap();
    live.sort_by_key(|l| l.key.family);
    assert_eq!(live.len(), 2, "{live:?}");
    assert_eq!(live[0].key.ifname, "eth1");
    assert_eq!(live[0].table, 10000);
    assert_eq!(live[0].expires_wall, now.wall + 528);
    assert_eq!(live[0].tag.as_deref(), Some("x"));
    // Capped at one timeout, address canonicalized.
    assert_eq!(live[1].key.address.to_string(), "2001:db8::2");
    assert_eq!(live[1].expires_wall, now.wall + 3600);
}

#[test]
fn ignores_the_original_database_from_before_a_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orig.db");
    original_db(&path);
    let now = Now::current();
    let rebooted = AdoptClock {
        boot_wall: now.wall + 10,
        ..clock()
    };
    let mut s = Store::open(&path, now, rebooted).unwrap();
    assert!(s.load(now).unwrap().is_empty());
}
