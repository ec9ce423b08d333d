//! The lease keeper: one address's table lease as a state machine without
//! I/O, in quinn-proto's shape. It takes the time, the server's replies and
//! the caller's wishes (`release`), and hands back what to send
//! (`poll_transmit`), when to wake it (`poll_timeout`) and what happened
//! (`poll_event`). `mhr agent` drives one per managed address;
//! `table_allocator_client` drives one for its address. Neither reads a
//! clock or a socket in here, so the tests run it in virtual time.
//!
//! The schedule: the first request at once, then every `retry` until an
//! answer; renewal at half the remaining lease, retried every `retry` while
//! unanswered (the table is kept past the lease's end: the server may be
//! down, the routes still work). Refusals back off up to `max_backoff` and
//! are reported once per streak, so a refused renewal costs neither the
//! server nor the log every two seconds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::protocol::{check_table, Action, ErrorCode, LeaseKey, Reply, WireError};

#[cfg(test)]
mod tests;

/// How a keeper asks and how long it keeps asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Between two requests while no answer comes.
    pub retry: Duration,
    /// Requests in a round; a round unanswered is reported (rounds 1, 2, 4,
    /// 8, ...) and, unless `persistent`, ends the keeper.
    pub attempts: u32,
    /// The agent keeps asking through silence and refusals (with backoff);
    /// the standalone client gives up, as the original did.
    pub persistent: bool,
    /// The server's pool, when known: a table outside it is refused.
    pub tables: Option<(u32, u32)>,
    /// The longest pause after refusals.
    pub max_backoff: Duration,
}

impl LeaseConfig {
    /// The original client's pace: 5 requests, 2 s apart.
    pub fn original() -> LeaseConfig {
        LeaseConfig {
            retry: Duration::from_secs(2),
            attempts: 5,
            persistent: false,
            tables: None,
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// What happened to the lease, for the driver to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// A table: the first, or the first after refusals.
    Granted { table: u32 },
    /// A renewal came back with another table (the server lost its
    /// database): rules and routes move there.
    TableChanged { old: u32, new: u32 },
    /// `attempts` requests in a row went unanswered (reported at rounds 1,
    /// 2, 4, 8, ...: a server down for long does not flood the log).
    NoAnswer { attempts: u32 },
    /// A request for a table was refused (a full pool, a disabled family,
    /// a table outside the pool); the persistent keeper asks again later.
    Refused(WireError),
    /// A renewal was refused; the table is kept. Once per streak.
    RenewalRefused(WireError),
    /// The lease ran out without a renewal answered; the table is kept
    /// while the keeper goes on asking. Once per lease.
    Expired { table: u32 },
    /// The release went out and was acknowledged, or was not after three
    /// tries. The keeper is done.
    Released { acknowledged: bool },
    /// Not persistent: a round unanswered or a refusal. The keeper is done.
    GaveUp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// No table yet. `sent` requests in this round, the next at `next`.
    Asking {
        sent: u32,
        next: Instant,
        refusals: u32,
    },
    Bound {
        table: u32,
        /// The next renewal request (or its retry).
        renew_at: Instant,
        expires_at: Instant,
        /// Renewal requests unanswered since the last answer.
        sent: u32,
        refusals: u32,
        expired: bool,
    },
    Releasing {
        sent: u32,
        next: Instant,
    },
    Done,
}

const RELEASE_TRIES: u32 = 3;
const RELEASE_RETRY: Duration = Duration::from_secs(1);
/// Renewals no closer together than this, whatever the lease says.
const MIN_RENEWAL: Duration = Duration::from_secs(1);

/// One address's lease.
#[derive(Debug, Clone)]
pub struct Lease {
    key: LeaseKey,
    tag: Option<String>,
    cfg: LeaseConfig,
    state: State,
    transmits: VecDeque<Action>,
    events: VecDeque<LeaseEvent>,
}

impl Lease {
    /// A keeper that asks for `key`'s table now.
    pub fn new(key: LeaseKey, tag: Option<String>, cfg: LeaseConfig, now: Instant) -> Lease {
        let mut l = Lease {
            key,
            tag,
            state: State::Asking {
                sent: 1,
                next: now + cfg.retry,
                refusals: 0,
            },
            cfg,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        l.transmits.push_back(Action::Request);
        l
    }

    /// A keeper that already holds `table` (a client that printed it and
    /// went to the background): it renews at `renew_at`.
    pub fn bound(
        key: LeaseKey,
        tag: Option<String>,
        cfg: LeaseConfig,
        table: u32,
        valid_for: Duration,
        now: Instant,
    ) -> Lease {
        Lease {
            key,
            tag,
            state: State::Bound {
                table,
                renew_at: now + renewal(valid_for),
                expires_at: now + valid_for,
                sent: 0,
                refusals: 0,
                expired: false,
            },
            cfg,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn key(&self) -> &LeaseKey {
        &self.key
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The table held, if any (also while releasing: not yet given back).
    pub fn table(&self) -> Option<u32> {
        match self.state {
            State::Bound { table, .. } => Some(table),
            _ => None,
        }
    }

    /// When the lease ends at the server (as last answered).
    pub fn expires_at(&self) -> Option<Instant> {
        match self.state {
            State::Bound { expires_at, .. } => Some(expires_at),
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    pub fn is_releasing(&self) -> bool {
        matches!(self.state, State::Releasing { .. })
    }

    /// A reply from the server (the driver has checked who sent it).
    /// `wire_now` is the driver's reading of the wire clock
    /// (`protocol::wire_clock_secs`), which `lease_expires` counts in.
    pub fn handle_reply(&mut self, reply: &Reply, now: Instant, wire_now: u64) {
        let answer = match reply {
            Reply::Lease { table: 0, .. } => Answer::Zero,
            Reply::Lease {
                table,
                lease_expires,
            } => match check_table(*table, self.cfg.tables) {
                Ok(t) => Answer::Table(
                    t,
                    Duration::from_secs(lease_expires.saturating_sub(wire_now)),
                ),
                Err(why) => Answer::Refused(WireError::new(ErrorCode::Internal, why)),
            },
            Reply::Error(e) => Answer::Refused(e.clone()),
        };
        let state = std::mem::replace(&mut self.state, State::Done);
        self.state = match (state, answer) {
            (State::Asking { .. }, Answer::Table(table, valid)) => {
                self.events.push_back(LeaseEvent::Granted { table });
                bound(table, valid, now)
            }
            (State::Asking { refusals, .. }, Answer::Refused(e)) => {
                self.refused(e, refusals + 1, now)
            }
            (State::Bound { table, .. }, Answer::Table(t, valid)) => {
                if t != table {
                    self.events
                        .push_back(LeaseEvent::TableChanged { old: table, new: t });
                }
                bound(t, valid, now)
            }
            (
                State::Bound {
                    table,
                    expires_at,
                    refusals,
                    expired,
                    ..
                },
                Answer::Refused(e),
            ) => {
                if refusals == 0 {
                    self.events.push_back(LeaseEvent::RenewalRefused(e));
                }
                State::Bound {
                    table,
                    renew_at: now + backoff(&self.cfg, refusals + 1),
                    expires_at,
                    sent: 0,
                    refusals: refusals + 1,
                    expired,
                }
            }
            (State::Releasing { .. }, Answer::Zero | Answer::Refused(_)) => {
                let acknowledged = !matches!(reply, Reply::Error(_));
                self.events.push_back(LeaseEvent::Released { acknowledged });
                State::Done
            }
            // A table 0 answer to a request, a late grant while releasing,
            // anything once done: nothing to act on.
            (state, _) => state,
        };
    }

    /// A refused request: asked again after a backoff, or the end.
    fn refused(&mut self, e: WireError, refusals: u32, now: Instant) -> State {
        self.events.push_back(LeaseEvent::Refused(e));
        if self.cfg.persistent {
            State::Asking {
                sent: 0,
                next: now + backoff(&self.cfg, refusals),
                refusals,
            }
        } else {
            self.events.push_back(LeaseEvent::GaveUp);
            State::Done
        }
    }

    /// The time has come (or passed) for what `poll_timeout` said.
    pub fn handle_timeout(&mut self, now: Instant) {
        let retry = self.cfg.retry;
        match &mut self.state {
            State::Asking { sent, next, .. } if now >= *next => {
                if *sent > 0 && sent.is_multiple_of(self.cfg.attempts) {
                    let round = *sent / self.cfg.attempts;
                    if round.is_power_of_two() {
                        self.events
                            .push_back(LeaseEvent::NoAnswer { attempts: *sent });
                    }
                    if !self.cfg.persistent {
                        self.state = State::Done;
                        self.events.push_back(LeaseEvent::GaveUp);
                        return;
                    }
                }
                *sent += 1;
                *next = now + retry;
                self.transmits.push_back(Action::Request);
            }
            State::Bound {
                table,
                renew_at,
                expires_at,
                sent,
                expired,
                ..
            } if now >= *renew_at => {
                if now >= *expires_at && !*expired {
                    *expired = true;
                    self.events.push_back(LeaseEvent::Expired { table: *table });
                }
                *sent += 1;
                *renew_at = now + retry;
                self.transmits.push_back(Action::Request);
            }
            State::Releasing { sent, next } if now >= *next => {
                if *sent >= RELEASE_TRIES {
                    self.state = State::Done;
                    self.events.push_back(LeaseEvent::Released {
                        acknowledged: false,
                    });
                } else {
                    *sent += 1;
                    *next = now + RELEASE_RETRY;
                    self.transmits.push_back(Action::Release);
                }
            }
            _ => {}
        }
    }

    /// Gives the lease back: a release now, retried until acknowledged (at
    /// most three tries). A keeper that never asked is simply done.
    pub fn release(&mut self, now: Instant) {
        if matches!(self.state, State::Done | State::Releasing { .. }) {
            return;
        }
        // Even without a table: a request may have been granted on its way.
        self.transmits.clear();
        self.transmits.push_back(Action::Release);
        self.state = State::Releasing {
            sent: 1,
            next: now + RELEASE_RETRY,
        };
    }

    /// Asks for the table again (the address came back while its lease was
    /// being given back): on the same socket, after the release, so the
    /// server sees them in that order.
    pub fn ask_again(&mut self, now: Instant) {
        self.state = State::Asking {
            sent: 1,
            next: now + self.cfg.retry,
            refusals: 0,
        };
        self.transmits.push_back(Action::Request);
    }

    /// Ends the keeper without a word to the server (the lease stays, for
    /// the next start to find).
    pub fn forget(&mut self) {
        self.state = State::Done;
        self.transmits.clear();
    }

    /// The next datagram to send: its action (the request is built from
    /// the key and tag by `request`).
    pub fn poll_transmit(&mut self) -> Option<Action> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<LeaseEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Asking { next, .. } => Some(next),
            State::Bound { renew_at, .. } => Some(renew_at),
            State::Releasing { next, .. } => Some(next),
            State::Done => None,
        }
    }

    /// The datagram for `action`, in the original's encoding.
    pub fn request(&self, action: Action) -> crate::protocol::Request {
        crate::protocol::Request {
            action,
            key: self.key,
            tag: self.tag.clone(),
        }
    }
}

/// What a reply says, before the state decides what it means.
enum Answer {
    Table(u32, Duration),
    /// Table 0: a release acknowledged.
    Zero,
    Refused(WireError),
}

fn bound(table: u32, valid: Duration, now: Instant) -> State {
    State::Bound {
        table,
        renew_at: now + renewal(valid),
        expires_at: now + valid,
        sent: 0,
        refusals: 0,
        expired: false,
    }
}

/// Renew at half the remaining time, but not in a tight loop.
pub fn renewal(valid_for: Duration) -> Duration {
    (valid_for / 2).max(MIN_RENEWAL)
}

/// The pause after the `n`th refusal in a row: `retry` doubled each time,
/// at most `max_backoff`.
fn backoff(cfg: &LeaseConfig, n: u32) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(16);
    cfg.retry.saturating_mul(factor).min(cfg.max_backoff)
}
