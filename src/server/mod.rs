//! The table allocator server: a loop over one datagram socket that answers
//! requests in batches. Each batch is one sqlite transaction, committed
//! before any reply of that batch leaves, so every granted table is on disk.

pub(crate) mod allocator;
pub mod config;
pub(crate) mod leases;
mod metrics;
pub(crate) mod outbox;
mod service;
pub mod store;

pub use service::run;

use std::time::Duration;

use nix::sys::socket::UnixAddr;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::dgram::Peer;
use crate::dgram::{self};
use crate::protocol::{wire_clock_secs, ErrorCode, Reply, Request, WireError, MAX_DATAGRAM};
use crate::ratelimit::{RateLimit, Verdict};
use crate::server::config::ServerConfig;
use crate::server::leases::{Access, LeaseTable, Now, Outcome, StoreOp};
use crate::server::outbox::Outbox;
use crate::server::store::{AdoptClock, Store, StoreError};

/// Datagrams handled per transaction at most.
const MAX_BATCH: usize = 256;
/// The send buffer the server asks for. Replies waiting unread at their
/// receivers are charged to it. Error replies to refused senders go out
/// only while unread replies hold less than a quarter of what the kernel
/// granted: a flood of senders that never read can pin at most that, and
/// permitted clients' replies always find room.
const SEND_BUFFER: usize = 1 << 20;
/// Refusal lines logged per window at most; the rest are counted.
const REFUSAL_LOG_BURST: u32 = 20;
const REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("socket: {0}")]
    Socket(#[from] std::io::Error),
}

/// The server's state: the in-memory table and its database.
pub struct Server {
    config: ServerConfig,
    table: LeaseTable,
    store: Store,
    /// Error replies sent, indexed like `ErrorCode::ALL`.
    refusals: [u64; ErrorCode::ALL.len()],
    started_unix: i64,
    /// Refusal log lines: a sender can provoke them at will.
    refusal_log: RateLimit,
    /// Replies waiting for room in their client's queue.
    pub outbox: Outbox,
}

/// One reply to send, and whether it may wait for room in the peer's queue.
/// Only answers to permitted senders may: a refused sender costs no retries.
pub struct Answer {
    pub reply: Reply,
    pub may_wait: bool,
}

impl Server {
    /// Opens the database and takes back the live leases it holds.
    pub fn open(config: ServerConfig) -> Result<Server, ServerError> {
        let now = Now::current();
        let store = Store::open(&config.db_path, now, adopt_clock(&config))?;
        let mut server = Server {
            table: fresh_table(&config),
            config,
            store,
            refusals: [0; ErrorCode::ALL.len()],
            started_unix: crate::timer::unix_now(),
            refusal_log: RateLimit::new(REFUSAL_LOG_BURST, REFUSAL_LOG_WINDOW),
            outbox: Outbox::default(),
        };
        let restored = server.reload(now)?;
        info!(
            leases = restored,
            db = %server.config.db_path.display(),
            "restored leases from the database"
        );
        Ok(server)
    }

    pub fn table(&self) -> &LeaseTable {
        &self.table
    }

    /// Rebuilds the in-memory table from the database (on start, and after a
    /// failed commit, so memory never claims what the disk does not hold).
    fn reload(&mut self, now: Now) -> Result<usize, StoreError> {
        let counters = self.table.counters;
        self.table = fresh_table(&self.config);
        self.table.counters = counters;
        let mut drop = Vec::new();
        for stored in self.store.load(now)? {
            let key = stored.key;
            if let Err(why) = self.table.restore(stored.into_lease(now)) {
                warn!(lease = %key, "dropping stored lease: {why}");
                drop.push(StoreOp::Delete(key));
            }
        }
        self.store.apply(&drop)?;
        Ok(self.table.len())
    }

    /// Handles a batch of datagrams and returns the answers to send.
    pub fn handle_batch(&mut self, batch: &[Incoming]) -> Vec<Answer> {
        let now = Now::current();
        let mut answers = Vec::with_capacity(batch.len());
        let mut ops = Vec::new();
        let mut logs = Vec::new();
        for dg in batch {
            // A status probe: answered, neither logged nor counted (so a
            // watchdog in cron does not fill the refusal counters).
            if crate::protocol::is_ping(&dg.bytes) {
                answers.push(Answer {
                    reply: Reply::released(),
                    may_wait: false,
                });
                continue;
            }
            // Who is asking comes first: a sender that may not ask at all is
            // refused before its datagram is even parsed.
            let result = self.admit(dg).and_then(|peer| {
                let req = dg.decode()?;
                let (outcome, op) = self.table.handle(&req, &peer, now)?;
                ops.extend(op);
                Ok((req, peer, outcome))
            });
            answers.push(match result {
                Ok((req, peer, outcome)) => {
                    let reply = match &outcome {
                        Outcome::Granted { table, deadline }
                        | Outcome::Renewed { table, deadline } => Reply::Lease {
                            table: *table,
                            lease_expires: wire_expiry(*deadline, now.mono),
                        },
                        Outcome::Released { .. } => Reply::released(),
                    };
                    logs.push((req, peer, outcome));
                    Answer {
                        reply,
                        may_wait: true,
                    }
                }
                Err(e) => {
                    self.count_refusal(e.code);
                    self.log_refusal(dg, &e, now.mono);
                    Answer {
                        reply: Reply::Error(e),
                        may_wait: false,
                    }
                }
            });
        }
        if let Err(e) = self.store.apply(&ops) {
            warn!("{e}; answering this batch with errors and reloading");
            for a in answers.iter_mut() {
                if matches!(a.reply, Reply::Lease { .. }) {
                    self.refusals[refusal_index(ErrorCode::Internal)] += 1;
                    a.reply = Reply::Error(WireError::new(
                        ErrorCode::Internal,
                        "the lease database could not be written",
                    ));
                }
            }
            if let Err(e) = self.reload(now) {
                warn!("{e}: reload failed");
            }
            return answers;
        }
        for (req, peer, outcome) in logs {
            log_outcome(&req, &peer, &outcome);
        }
        answers
    }

    /// The sender's credentials, if it may use the allocator at all.
    fn admit(&self, dg: &Incoming) -> Result<Peer, WireError> {
        let peer = dg
            .peer
            .ok_or_else(|| WireError::new(ErrorCode::NotPermitted, "no sender credentials"))?;
        if !self.table.permits(&peer) {
            return Err(WireError::new(
                ErrorCode::NotPermitted,
                format!(
                    "uid {} gid {} may not use the allocator",
                    peer.uid, peer.gid
                ),
            ));
        }
        Ok(peer)
    }

    fn log_refusal(&mut self, dg: &Incoming, e: &WireError, now: Instant) {
        let Verdict::Log { suppressed } = self.refusal_log.check(now) else {
            return;
        };
        if suppressed > 0 {
            warn!(
                suppressed,
                "refusal log lines suppressed in the last {} s",
                REFUSAL_LOG_WINDOW.as_secs()
            );
        }
        if matches!(e.code, ErrorCode::NotPermitted) {
            warn!(from = %dg.describe(), "refused: {e}");
        } else {
            info!(from = %dg.describe(), "refused: {e}");
        }
    }

    /// Reports refusal lines suppressed in a window that has ended, when no
    /// new refusal came to carry the count.
    pub fn flush_refusal_log(&mut self, now: Instant) {
        if let Some(n) = self.refusal_log.take_ended(now) {
            warn!(
                suppressed = n,
                "refusal log lines suppressed in the last {} s",
                REFUSAL_LOG_WINDOW.as_secs()
            );
        }
    }

    /// Reaps every lease whose deadline has come, and deletes it on disk.
    pub fn expire(&mut self, now: Instant) {
        let gone = self.table.expire(now);
        if gone.is_empty() {
            return;
        }
        let ops: Vec<_> = gone.iter().map(|(key, _)| StoreOp::Delete(*key)).collect();
        if let Err(e) = self.store.apply(&ops) {
            // The rows stay; the next start drops them as expired anyway.
            warn!("{e}: could not delete expired leases");
        }
        for (key, table) in gone {
            info!(
                table,
                family = %key.family,
                ifname = %key.ifname,
                address = %key.address,
                "lease expired"
            );
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.table.next_deadline()
    }

    fn count_refusal(&mut self, code: ErrorCode) {
        self.refusals[refusal_index(code)] += 1;
    }
}

fn refusal_index(code: ErrorCode) -> usize {
    ErrorCode::ALL.iter().position(|c| *c == code).unwrap_or(0)
}

fn fresh_table(config: &ServerConfig) -> LeaseTable {
    LeaseTable::new(
        &config.families,
        config.table_offset,
        config.num_tables,
        Duration::from_secs(config.table_timeout),
        Access {
            allowed_uids: config.allowed_uids.clone(),
            allowed_gids: config.allowed_gids.clone(),
        },
    )
}

fn adopt_clock(config: &ServerConfig) -> AdoptClock {
    let boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec())
        .unwrap_or(0);
    AdoptClock {
        raw_now: wire_clock_secs(),
        boot_wall: crate::timer::unix_now() - boot,
        table_timeout: config.table_timeout,
    }
}

/// `lease_expires` on the wire: an absolute CLOCK_MONOTONIC_RAW second.
fn wire_expiry(deadline: Instant, now: Instant) -> u64 {
    let left = deadline.saturating_duration_since(now);
    wire_clock_secs() + left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

fn log_outcome(req: &Request, peer: &Peer, outcome: &Outcome) {
    let k = &req.key;
    let (what, table) = match outcome {
        Outcome::Granted { table, .. } => ("lease granted", *table),
        Outcome::Renewed { table, .. } => ("lease renewed", *table),
        Outcome::Released { table: Some(t) } => ("lease released", *t),
        Outcome::Released { table: None } => {
            debug!(family = %k.family, ifname = %k.ifname, address = %k.address, "release of unknown lease");
            return;
        }
    };
    info!(
        table,
        family = %k.family,
        ifname = %k.ifname,
        address = %k.address,
        uid = peer.uid,
        pid = peer.pid,
        "{what}"
    );
}

/// One received datagram with its sender.
pub struct Incoming {
    pub bytes: Vec<u8>,
    pub len: usize,
    pub from: Option<UnixAddr>,
    pub peer: Option<Peer>,
}

impl Incoming {
    fn decode(&self) -> Result<Request, WireError> {
        if self.len > MAX_DATAGRAM {
            return Err(WireError::new(
                ErrorCode::TooLarge,
                format!("datagram of {} bytes exceeds {MAX_DATAGRAM}", self.len),
            ));
        }
        Request::decode(&self.bytes)
    }

    fn describe(&self) -> String {
        let who = dgram::describe(self.from.as_ref());
        match self.peer {
            Some(p) => format!("{who} pid {} uid {}", p.pid, p.uid),
            None => who,
        }
    }
}
