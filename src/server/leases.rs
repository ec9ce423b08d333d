//! The lease table: which (family, interface, address) holds which table
//! until when. Pure: time comes in as an argument and every change that must
//! reach the database is returned as a [`StoreOp`].

use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use std::time::Duration;

use tokio::time::Instant;

use crate::addr::Family;
use crate::dgram::Peer;
use crate::protocol::{Action, ErrorCode, LeaseKey, Request, WireError};
use crate::server::allocator::Pool;
use crate::timer::unix_now;

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

/// What the table keeps per lease. The table number is the slot's index.
#[derive(Debug)]
struct Slot {
    key: LeaseKey,
    uid: u32,
    deadline: Instant,
    tag: Option<Box<str>>,
}

/// One family's leases: a bitmap for lowest-free allocation, a slot per
/// table (dense, since tables are handed out lowest first) and a hash index
/// of slot numbers keyed by the slot's own key. Keys live once, in the slots:
/// with 65,536 leases this is about 5 MB, where maps of owned keys took 16.
struct FamilyLeases {
    pool: Pool,
    offset: u32,
    slots: Vec<Option<Slot>>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl FamilyLeases {
    fn new(offset: u32, size: u32) -> FamilyLeases {
        FamilyLeases {
            pool: Pool::new(offset, size),
            offset,
            slots: Vec::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    fn find(&self, key: &LeaseKey) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        self.index
            .find(hash, |&i| slot_key(slots, i) == Some(key))
            .copied()
    }

    fn slot(&self, i: u32) -> &Slot {
        self.slots[i as usize]
            .as_ref()
            .expect("indexed slot is filled")
    }

    fn slot_mut(&mut self, i: u32) -> &mut Slot {
        self.slots[i as usize]
            .as_mut()
            .expect("indexed slot is filled")
    }

    fn insert(&mut self, table: u32, slot: Slot) {
        let i = table - self.offset;
        let hash = self.hasher.hash_one(slot.key);
        if self.slots.len() <= i as usize {
            self.slots.resize_with(i as usize + 1, || None);
        }
        self.slots[i as usize] = Some(slot);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, i, |&j| {
            hasher.hash_one(slot_key(slots, j).expect("indexed slot is filled"))
        });
    }

    fn remove(&mut self, i: u32) -> Slot {
        let slot = self.slots[i as usize]
            .take()
            .expect("indexed slot is filled");
        let hash = self.hasher.hash_one(slot.key);
        if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        self.pool.free(self.offset + i);
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        slot
    }

    fn lease(&self, i: u32, now: Now) -> Lease {
        let s = self.slot(i);
        let left = s.deadline.saturating_duration_since(now.mono);
        Lease {
            key: s.key,
            tag: s.tag.as_deref().map(str::to_owned),
            table: self.offset + i,
            uid: s.uid,
            expires_wall: now.wall + left.as_secs() as i64 + i64::from(left.subsec_nanos() > 0),
            deadline: s.deadline,
        }
    }
}

/// Whole milliseconds from `epoch` to `t`, rounded up so that a lease is
/// never reaped before its deadline.
fn ms_after(epoch: Instant, t: Instant) -> u64 {
    let d = t.saturating_duration_since(epoch);
    d.as_millis() as u64 + u64::from(!d.subsec_nanos().is_multiple_of(1_000_000))
}

fn slot_key(slots: &[Option<Slot>], i: u32) -> Option<&LeaseKey> {
    slots.get(i as usize)?.as_ref().map(|s| &s.key)
}

pub struct LeaseTable {
    families: HashMap<Family, FamilyLeases>,
    /// (deadline in ms after `epoch`, family, slot): what expires next.
    /// Milliseconds rather than Instants keep each entry at 16 bytes.
    expiry: BTreeSet<(u64, Family, u32)>,
    epoch: Instant,
    timeout: Duration,
    access: Access,
    len: usize,
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
            families: families
                .iter()
                .map(|f| (*f, FamilyLeases::new(offset, size)))
                .collect(),
            expiry: BTreeSet::new(),
            epoch: Instant::now(),
            timeout,
            access,
            len: 0,
            counters: Counters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: &LeaseKey, now: Now) -> Option<Lease> {
        let fam = self.families.get(&key.family)?;
        fam.find(key).map(|i| fam.lease(i, now))
    }

    /// (used, size) of a family's pool, `None` when the family is disabled.
    pub fn pool_usage(&self, family: Family) -> Option<(u32, u32)> {
        self.families
            .get(&family)
            .map(|f| (f.pool.used(), f.pool.size()))
    }

    /// Takes back a lease read from the database. Refuses one whose family is
    /// disabled or whose table lies outside the pool (the config changed) or
    /// is held twice.
    pub fn restore(&mut self, lease: Lease) -> Result<(), String> {
        let fam = self
            .families
            .get_mut(&lease.key.family)
            .ok_or_else(|| format!("family {} is disabled", lease.key.family))?;
        if fam.find(&lease.key).is_some() {
            return Err("duplicate lease".into());
        }
        if !fam.pool.claim(lease.table) {
            return Err(format!(
                "table {} is outside the pool or already held",
                lease.table
            ));
        }
        fam.insert(
            lease.table,
            Slot {
                key: lease.key,
                uid: lease.uid,
                deadline: lease.deadline,
                tag: lease.tag.map(String::into_boxed_str),
            },
        );
        let at = ms_after(self.epoch, lease.deadline);
        self.expiry
            .insert((at, lease.key.family, lease.table - fam.offset));
        self.len += 1;
        Ok(())
    }

    /// May `peer` use the allocator at all? Checked before a request is
    /// even decoded, so a refused sender costs a fixed, small amount of work.
    pub fn permits(&self, peer: &Peer) -> bool {
        self.access.permits(peer)
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
        let Some(fam) = self.families.get(&family) else {
            return Err(WireError::new(
                ErrorCode::FamilyDisabled,
                format!("address family {family} is disabled on this server"),
            ));
        };
        let existing = fam.find(&req.key);
        if let Some(i) = existing {
            let holder = fam.slot(i).uid;
            if peer.uid != 0 && holder != peer.uid {
                return Err(WireError::new(
                    ErrorCode::NotPermitted,
                    format!(
                        "lease for {} is held by uid {holder}, not uid {}",
                        req.key, peer.uid
                    ),
                ));
            }
        }
        match (req.action, existing) {
            (Action::Request, Some(i)) => Ok(self.renew(req, i, now)),
            (Action::Request, None) => self.grant(req, peer, now),
            (Action::Release, Some(i)) => {
                let table = self.remove(family, i);
                self.counters.releases += 1;
                Ok((
                    Outcome::Released { table: Some(table) },
                    Some(StoreOp::Delete(req.key)),
                ))
            }
            (Action::Release, None) => Ok((Outcome::Released { table: None }, None)),
        }
    }

    fn renew(&mut self, req: &Request, i: u32, now: Now) -> (Outcome, Option<StoreOp>) {
        let deadline = now.mono + self.timeout;
        let family = req.key.family;
        let fam = self.families.get_mut(&family).expect("family checked");
        let slot = fam.slot_mut(i);
        self.expiry
            .remove(&(ms_after(self.epoch, slot.deadline), family, i));
        slot.deadline = deadline;
        if let Some(tag) = &req.tag {
            slot.tag = Some(tag.as_str().into());
        }
        self.expiry
            .insert((ms_after(self.epoch, deadline), family, i));
        self.counters.renewals += 1;
        (
            Outcome::Renewed {
                table: fam.offset + i,
                deadline,
            },
            Some(StoreOp::Put(fam.lease(i, now))),
        )
    }

    fn grant(
        &mut self,
        req: &Request,
        peer: &Peer,
        now: Now,
    ) -> Result<(Outcome, Option<StoreOp>), WireError> {
        let deadline = now.mono + self.timeout;
        let family = req.key.family;
        let fam = self.families.get_mut(&family).expect("family checked");
        let table = fam.pool.allocate().ok_or_else(|| {
            WireError::new(
                ErrorCode::PoolExhausted,
                format!("all {} {family} tables are leased", fam.pool.size()),
            )
        })?;
        fam.insert(
            table,
            Slot {
                key: req.key,
                uid: peer.uid,
                deadline,
                tag: req.tag.as_deref().map(Into::into),
            },
        );
        let i = table - fam.offset;
        let lease = fam.lease(i, now);
        self.expiry
            .insert((ms_after(self.epoch, deadline), family, i));
        self.len += 1;
        self.counters.grants += 1;
        Ok((
            Outcome::Granted { table, deadline },
            Some(StoreOp::Put(lease)),
        ))
    }

    /// Frees slot `i` of `family`; returns its table.
    fn remove(&mut self, family: Family, i: u32) -> u32 {
        let fam = self.families.get_mut(&family).expect("family checked");
        let slot = fam.remove(i);
        self.expiry
            .remove(&(ms_after(self.epoch, slot.deadline), family, i));
        self.len -= 1;
        fam.offset + i
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.expiry
            .first()
            .map(|(ms, _, _)| self.epoch + Duration::from_millis(*ms))
    }

    /// Removes every lease whose deadline has come; returns (key, table).
    pub fn expire(&mut self, now: Instant) -> Vec<(LeaseKey, u32)> {
        let mut gone = Vec::new();
        // Floor, where deadlines are rounded up: nothing goes early.
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        while let Some(&(at, family, i)) = self.expiry.first() {
            if at > now_ms {
                break;
            }
            let key = self.families[&family].slot(i).key;
            let table = self.remove(family, i);
            gone.push((key, table));
        }
        self.counters.expiries += gone.len() as u64;
        gone
    }
}

#[cfg(test)]
mod tests;
