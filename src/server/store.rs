//! Lease persistence in sqlite. Expiry is wall-clock time (unix seconds) so
//! that leases mean the right thing after a reboot; the wire's monotonic
//! seconds never reach the database.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::addr::Family;
use crate::protocol::LeaseKey;
use crate::server::leases::{Lease, Now, StoreOp};

const SCHEMA_VERSION: i64 = 1;

const CREATE_LEASES: &str = "
CREATE TABLE IF NOT EXISTS leases (
    family      INTEGER NOT NULL,
    ifname      TEXT    NOT NULL,
    address     TEXT    NOT NULL,
    tag         TEXT,
    rt_table    INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (family, ifname, address)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS leases_by_table ON leases (family, rt_table);
";

const UPSERT: &str = "INSERT INTO leases (family, ifname, address, tag, rt_table, uid, expires_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
     ON CONFLICT (family, ifname, address) DO UPDATE SET
        tag = excluded.tag, rt_table = excluded.rt_table,
        uid = excluded.uid, expires_at = excluded.expires_at";

const DELETE: &str = "DELETE FROM leases WHERE family = ?1 AND ifname = ?2 AND address = ?3";

#[derive(Debug, thiserror::Error)]
#[error("lease database {path}: {source}")]
pub struct StoreError {
    pub path: PathBuf,
    #[source]
    pub source: rusqlite::Error,
}

/// A lease as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLease {
    pub key: LeaseKey,
    pub tag: Option<String>,
    pub table: u32,
    pub uid: u32,
    pub expires_wall: i64,
}

impl StoredLease {
    /// The in-memory lease, with its timer set from the wall-clock time left.
    pub fn into_lease(self, now: Now) -> Lease {
        let left = (self.expires_wall - now.wall).max(0) as u64;
        Lease {
            deadline: now.mono + Duration::from_secs(left),
            key: self.key,
            tag: self.tag,
            table: self.table,
            uid: self.uid,
            expires_wall: self.expires_wall,
        }
    }
}

/// What the original server's monotonic `LeaseExpires` values are measured
/// against, for adopting its database.
#[derive(Debug, Clone, Copy)]
pub struct AdoptClock {
    /// CLOCK_MONOTONIC_RAW seconds now.
    pub raw_now: u64,
    /// Unix second at which this boot started.
    pub boot_wall: i64,
    /// Leases are never adopted for longer than one timeout.
    pub table_timeout: u64,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    pub fn open(path: &Path, now: Now, adopt: AdoptClock) -> Result<Store, StoreError> {
        let err = |source| StoreError {
            path: path.to_owned(),
            source,
        };
        // The original's file is older than this boot when the host rebooted
        // since it last wrote: its monotonic times then mean nothing.
        let written_this_boot = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64 >= adopt.boot_wall)
            .unwrap_or(true);
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        // WAL + NORMAL: a committed lease survives a crash of the server; see
        // DESIGN.md for the measured rates.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if version < SCHEMA_VERSION {
            let tx = conn.transaction().map_err(err)?;
            tx.execute_batch(CREATE_LEASES).map_err(err)?;
            adopt_original(&tx, now, adopt, written_this_boot).map_err(err)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(Store {
            conn,
            path: path.to_owned(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source,
        }
    }

    /// Deletes the leases that expired while nobody watched, then returns the
    /// live ones.
    pub fn load(&mut self, now: Now) -> Result<Vec<StoredLease>, StoreError> {
        self.conn
            .execute("DELETE FROM leases WHERE expires_at <= ?1", [now.wall])
            .map_err(|e| self.err(e))?;
        read_rows(&self.conn).map_err(|e| self.err(e))
    }

    /// Applies a batch of changes in one transaction: when this returns Ok,
    /// every change is committed.
    pub fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut upsert = tx.prepare_cached(UPSERT).map_err(err)?;
            let mut delete = tx.prepare_cached(DELETE).map_err(err)?;
            for op in ops {
                match op {
                    StoreOp::Put(l) => {
                        upsert
                            .execute(params![
                                l.key.family.code(),
                                l.key.ifname.as_str(),
                                l.key.address.to_string(),
                                l.tag,
                                l.table,
                                l.uid,
                                l.expires_wall
                            ])
                            .map_err(err)?;
                    }
                    StoreOp::Delete(k) => {
                        delete
                            .execute(params![
                                k.family.code(),
                                k.ifname.as_str(),
                                k.address.to_string()
                            ])
                            .map_err(err)?;
                    }
                }
            }
        }
        tx.commit().map_err(err)
    }

    #[cfg(test)]
    pub fn count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM leases", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

/// Every lease row, for a process that must not write: `mhr status`.
pub fn read_only(path: &Path) -> Result<Vec<StoredLease>, StoreError> {
    let err = |source| StoreError {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(err)?;
    read_rows(&conn).map_err(err)
}

fn read_rows(conn: &Connection) -> rusqlite::Result<Vec<StoredLease>> {
    let mut stmt = conn.prepare(
        "SELECT family, ifname, address, tag, rt_table, uid, expires_at FROM leases
         ORDER BY family, rt_table",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, i64>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (family, ifname, address, tag, table, uid, expires_wall) = row?;
        let Some(family) = u64::try_from(family).ok().and_then(Family::from_code) else {
            continue;
        };
        let (Ok(table), Ok(uid)) = (u32::try_from(table), u32::try_from(uid)) else {
            continue;
        };
        // Rows are ours, but a hand-edited one must not stop the server.
        let Ok(key) = LeaseKey::new(family, &ifname, &address) else {
            continue;
        };
        out.push(StoredLease {
            key,
            tag,
            table,
            uid,
            expires_wall,
        });
    }
    Ok(out)
}

/// Copies the live leases of the original C server's `RtTables` into ours.
fn adopt_original(
    tx: &rusqlite::Transaction<'_>,
    now: Now,
    clock: AdoptClock,
    written_this_boot: bool,
) -> rusqlite::Result<()> {
    let exists: Option<String> = tx
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'RtTables'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() || !written_this_boot {
        return Ok(());
    }
    let mut select = tx.prepare(
        "SELECT RtTable, AddrFamily, Ifname, Addr, LeaseExpires, Tag FROM RtTables
         WHERE LeaseExpires > ?1",
    )?;
    let mut insert = tx.prepare(
        "INSERT OR IGNORE INTO leases (family, ifname, address, tag, rt_table, uid, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
    )?;
    let rows = select.query_map([clock.raw_now as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, Option<String>>(5)?,
        ))
    })?;
    for row in rows {
        let (table, family, ifname, addr, expires_raw, tag) = row?;
        let Some(family) = u64::try_from(family).ok().and_then(Family::from_code) else {
            continue;
        };
        let Ok(key) = LeaseKey::new(family, &ifname, &addr) else {
            continue;
        };
        let left = (expires_raw - clock.raw_now as i64).clamp(0, clock.table_timeout as i64);
        insert.execute(params![
            family.code(),
            key.ifname.as_str(),
            key.address.to_string(),
            tag,
            table,
            now.wall + left
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
