//! The lease table: which (family, interface, address) holds which table
//! until when. Pure: time comes in as an argument and every change that must
//! reach the database is returned as a [`StoreOp`].

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use crate::allocator::Pool;
use crate::protocol::{Action, ErrorCode, Family, LeaseKey, Request, WireError};

/// The sender of a datagram, from SCM_CREDENTIALS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl Peer {
    pub const ROOT: Peer = Peer {
        pid: 0,
        uid: 0,
        gid: 0,
    };
}

/// Who may talk to the server at all. Root always may.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub allowed_uids: Vec<u32>,
    pub allowed_gids: Vec<u32>,
}

impl Access {
    pub fn permits(&self, peer: &Peer) -> bool {
        peer.uid == 0
            || self.allowed_uids.contains(&peer.uid)
            || self.allowed_gids.contains(&peer.gid)
    }
}

/// Both clocks at one instant: monotonic for timers, wall for the database.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    /// Unix seconds.
    pub wall: i64,
}

impl Now {
    pub fn current() -> Now {
        Now {
            mono: Instant::now(),
            wall: unix_now(),
        }
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: LeaseKey,
    pub tag: Option<String>,
    pub table: u32,
    pub uid: u32,
    /// Unix seconds; what the database keeps.
    pub expires_wall: i64,
    pub deadline: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    Put(Lease),
    Delete(LeaseKey),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Granted { table: u32, deadline: Instant },
    Renewed { table: u32, deadline: Instant },
    Released { table: Option<u32> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub grants: u64,
    pub renewals: u64,
    pub releases: u64,
    pub expiries: u64,
}

pub struct LeaseTable {
    pools: HashMap<Family, Pool>,
    leases: HashMap<LeaseKey, Lease>,
    expiry: BTreeSet<(Instant, LeaseKey)>,
    timeout: Duration,
    access: Access,
    pub counters: Counters,
}

impl LeaseTable {
    /// One pool of `offset ..= offset + size - 1` per enabled family.
    pub fn new(
        families: &[Family],
        offset: u32,
        size: u32,
        timeout: Duration,
        access: Access,
    ) -> LeaseTable {
        LeaseTable {
            pools: families
                .iter()
                .map(|f| (*f, Pool::new(offset, size)))
                .collect(),
            leases: HashMap::new(),
            expiry: BTreeSet::new(),
            timeout,
            access,
            counters: Counters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    pub fn get(&self, key: &LeaseKey) -> Option<&Lease> {
        self.leases.get(key)
    }

    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// (used, size) of a family's pool, `None` when the family is disabled.
    pub fn pool_usage(&self, family: Family) -> Option<(u32, u32)> {
        self.pools.get(&family).map(|p| (p.used(), p.size()))
    }

    /// Takes back a lease read from the database. Refuses one whose family is
    /// disabled or whose table lies outside the pool (the config changed) or
    /// is held twice.
    pub fn restore(&mut self, lease: Lease) -> Result<(), String> {
        let pool = self
            .pools
            .get_mut(&lease.key.family)
            .ok_or_else(|| format!("family {} is disabled", lease.key.family))?;
        if self.leases.contains_key(&lease.key) {
            return Err("duplicate lease".into());
        }
        if !pool.claim(lease.table) {
            return Err(format!(
                "table {} is outside the pool or already held",
                lease.table
            ));
        }
        self.expiry.insert((lease.deadline, lease.key.clone()));
        self.leases.insert(lease.key.clone(), lease);
        Ok(())
    }

    /// Applies one decoded request from `peer`.
    pub fn handle(
        &mut self,
        req: &Request,
        peer: &Peer,
        now: Now,
    ) -> Result<(Outcome, Option<StoreOp>), WireError> {
        if !self.access.permits(peer) {
            return Err(WireError::new(
                ErrorCode::NotPermitted,
                format!(
                    "uid {} gid {} may not use the allocator",
                    peer.uid, peer.gid
                ),
            ));
        }
        let family = req.key.family;
        if !self.pools.contains_key(&family) {
            return Err(WireError::new(
                ErrorCode::FamilyDisabled,
                format!("address family {family} is disabled on this server"),
            ));
        }
        if let Some(existing) = self.leases.get(&req.key) {
            if peer.uid != 0 && existing.uid != peer.uid {
                return Err(WireError::new(
                    ErrorCode::NotPermitted,
                    format!(
                        "lease for {} is held by uid {}, not uid {}",
                        req.key, existing.uid, peer.uid
                    ),
                ));
            }
        }
        match req.action {
            Action::Request => self.request(req, peer, now),
            Action::Release => Ok(self.release(&req.key)),
        }
    }

    fn request(
        &mut self,
        req: &Request,
        peer: &Peer,
        now: Now,
    ) -> Result<(Outcome, Option<StoreOp>), WireError> {
        let deadline = now.mono + self.timeout;
        let expires_wall = now.wall + self.timeout.as_secs() as i64;
        if let Some(lease) = self.leases.get_mut(&req.key) {
            self.expiry.remove(&(lease.deadline, lease.key.clone()));
            lease.deadline = deadline;
            lease.expires_wall = expires_wall;
            if req.tag.is_some() {
                lease.tag = req.tag.clone();
            }
            self.expiry.insert((deadline, lease.key.clone()));
            self.counters.renewals += 1;
            let table = lease.table;
            return Ok((
                Outcome::Renewed { table, deadline },
                Some(StoreOp::Put(lease.clone())),
            ));
        }
        let pool = self.pools.get_mut(&req.key.family).expect("checked above");
        let table = pool.allocate().ok_or_else(|| {
            WireError::new(
                ErrorCode::PoolExhausted,
                format!("all {} {} tables are leased", pool.size(), req.key.family),
            )
        })?;
        let lease = Lease {
            key: req.key.clone(),
            tag: req.tag.clone(),
            table,
            uid: peer.uid,
            expires_wall,
            deadline,
        };
        self.expiry.insert((deadline, lease.key.clone()));
        self.leases.insert(lease.key.clone(), lease.clone());
        self.counters.grants += 1;
        Ok((
            Outcome::Granted { table, deadline },
            Some(StoreOp::Put(lease)),
        ))
    }

    fn release(&mut self, key: &LeaseKey) -> (Outcome, Option<StoreOp>) {
        match self.remove(key) {
            Some(lease) => {
                self.counters.releases += 1;
                (
                    Outcome::Released {
                        table: Some(lease.table),
                    },
                    Some(StoreOp::Delete(lease.key)),
                )
            }
            None => (Outcome::Released { table: None }, None),
        }
    }

    fn remove(&mut self, key: &LeaseKey) -> Option<Lease> {
        let lease = self.leases.remove(key)?;
        self.expiry.remove(&(lease.deadline, lease.key.clone()));
        if let Some(pool) = self.pools.get_mut(&key.family) {
            pool.free(lease.table);
        }
        Some(lease)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.expiry.first().map(|(d, _)| *d)
    }

    /// Removes every lease whose deadline has come.
    pub fn expire(&mut self, now: Instant) -> Vec<Lease> {
        let mut gone = Vec::new();
        while let Some((deadline, key)) = self.expiry.first().cloned() {
            if deadline > now {
                break;
            }
            if let Some(lease) = self.remove(&key) {
                gone.push(lease);
            }
        }
        self.counters.expiries += gone.len() as u64;
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(action: Action, ifname: &str, address: &str) -> Request {
        Request {
            action,
            key: LeaseKey {
                family: Family::Inet,
                ifname: ifname.into(),
                address: address.into(),
            },
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
        assert_eq!(t.get(&r_key("eth0")).unwrap().expires_wall, now.wall + 90);
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
        assert_eq!(t.next_deadline(), Some(now.mono + Duration::from_secs(60)));
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
        let gone = t.expire(late.mono);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].key.ifname, "b");
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
}
