//! The lease keeper in virtual time: a clock that only moves when the test
//! says, a server that answers when the test says.

use super::*;
use crate::addr::Family;

fn key() -> LeaseKey {
    LeaseKey::new(Family::Inet, "wan1", "10.1.0.2").unwrap()
}

fn cfg(persistent: bool) -> LeaseConfig {
    LeaseConfig {
        persistent,
        tables: Some((10000, 10063)),
        ..LeaseConfig::original()
    }
}

/// Drives `l` from `t` to `until`, waking when it asks; returns what it
/// sent and reported, with the second each happened at.
struct Sim {
    l: Lease,
    t0: Instant,
    now: Instant,
    sent: Vec<(u64, Action)>,
    events: Vec<(u64, LeaseEvent)>,
}

impl Sim {
    fn new(l: Lease, t0: Instant) -> Sim {
        let mut s = Sim {
            l,
            t0,
            now: t0,
            sent: Vec::new(),
            events: Vec::new(),
        };
        s.drain();
        s
    }

    fn secs(&self) -> u64 {
        (self.now - self.t0).as_secs()
    }

    fn drain(&mut self) {
        while let Some(a) = self.l.poll_transmit() {
            self.sent.push((self.secs(), a));
        }
        while let Some(e) = self.l.poll_event() {
            self.events.push((self.secs(), e));
        }
    }

    fn run_until(&mut self, secs: u64) {
        let until = self.t0 + Duration::from_secs(secs);
        while let Some(at) = self.l.poll_timeout().filter(|at| *at <= until) {
            self.now = at.max(self.now);
            self.l.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }

    /// The server answers now; `valid` seconds of lease.
    fn answer(&mut self, reply: Reply) {
        // The wire clock: 1000 s at t0.
        let wire = 1000 + self.secs();
        self.l.handle_reply(&reply, self.now, wire);
        self.drain();
    }

    fn grant(&mut self, table: u32, valid: u64) {
        let wire = 1000 + self.secs();
        self.answer(Reply::Lease {
            table,
            lease_expires: wire + valid,
        });
    }

    fn requests_between(&self, from: u64, to: u64) -> usize {
        self.sent
            .iter()
            .filter(|(t, a)| *a == Action::Request && (from..to).contains(t))
            .count()
    }
}

fn refusal(code: ErrorCode) -> Reply {
    Reply::Error(WireError::new(code, "no"))
}

#[test]
fn the_original_pace_asks_five_times_then_gives_up() {
    let t0 = Instant::now();
    let mut s = Sim::new(Lease::new(key(), None, cfg(false), t0), t0);
    s.run_until(30);
    let at: Vec<u64> = s.sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(at, [0, 2, 4, 6, 8]);
    assert_eq!(
        s.events,
        [
            (10, LeaseEvent::NoAnswer { attempts: 5 }),
            (10, LeaseEvent::GaveUp)
        ]
    );
    assert!(s.l.is_done());
}

#[test]
fn a_grant_then_renewals_at_half_the_lease() {
    let t0 = Instant::now();
    let mut s = Sim::new(Lease::new(key(), None, cfg(true), t0), t0);
    s.grant(10003, 3600);
    assert_eq!(s.events, [(0, LeaseEvent::Granted { table: 10003 })]);
    assert_eq!(s.l.table(), Some(10003));
    s.run_until(1799);
    assert_eq!(s.sent.len(), 1, "nothing before half the lease");
    s.run_until(1800);
    assert_eq!(s.sent.last(), Some(&(1800, Action::Request)));
    s.grant(10003, 3600);
    s.run_until(3599);
    assert_eq!(s.sent.len(), 2);
    s.run_until(3600);
    assert_eq!(s.sent.len(), 3);
    assert_eq!(s.events.len(), 1, "a renewal with the same table is quiet");
}

#[test]
fn a_silent_server_keeps_the_table_and_is_reported_once_expired() {
    let t0 = Instant::now();
    let mut s = Sim::new(Lease::new(key(), None, cfg(true), t0), t0);
    s.grant(10000, 10);
    s.run_until(60);
    // Renewal at 5 s, then every 2 s.
    assert_eq!(s.requests_between(5, 60), 28);
    assert_eq!(
        s.events[1..],
        [(11, LeaseEvent::Expired { table: 10000 })],
        "{:?}",
        s.events
    );
    assert_eq!(s.l.table(), Some(10000), "kept while the server is away");
    // The server is back with the same table: renewed, quiet.
    s.grant(10000, 10);
    assert_eq!(s.events.len(), 2);
}

#[test]
fn a_lost_database_changes_the_table() {
    let t0 = Instant::now();
    let mut s = Sim::new(Lease::new(key(), None, cfg(true), t0), t0);
    s.grant(10000, 100);
    s.run_until(50);
    s.grant(10001, 100);
    assert_eq!(
        s.events.last(),
        Some(&(
            50,
            LeaseEvent::TableChanged {
                old: 10000,
                new: 10001
            }
        ))
    );
    assert_eq!(s.l.table(), Some(10001));
}

#[test]
fn a_refused_renewal_is_reported_once_and_backs_off() {
    let t0 = Instant::now();
    let mut s = Sim::new(Lease::new(key(), None, cfg(true), t0), t0);
    s.grant(10000, 3600);
    s.run_until(1800);
    // Refused every time from now on: one report, and the pauses double
    // (2, 4, 8, 16, 32, then 60 s) instead of a request every 2 s.
    for _ in 0..200 {
        s.answer(refusal(ErrorCode::NotPermitted));
        let next = s.l.poll_timeout().unwrap();
        let secs = (next - t0).as_secs();
        s.run_until(secs);
        if secs > 1800 + 3600 {
            break;
        }
    }
    let refused = s
        .events
        .iter()
        .filter(|(_, e)| matches!(e, LeaseEvent::RenewalRefused(_)))
        .count();
    assert_eq!(refused, 1, "{:?}", s.events);
    let asked = s.requests_between(1800, 1800 + 3600);
    assert!(asked < 70, "{asked} requests in an hour");
    assert_eq!(s.l.table(), Some(10000));
    // An answer ends the streak; the next refusal is reported again.
    s.grant(10000, 3600);
    s.answer(refusal(ErrorCode::NotPermitted));
    let refused = s
        .events
        .iter()
        .filter(|(_, e)| matches!(e, LeaseEvent::RenewalRefused(_)))
        .count();
    assert_eq!(refused, 2);
}

#[test]
fn refusals_end_the_client_and_pause_the_agent() {
    let t0 = Instant::now();
    let mut s = Sim::new(Lease::new(key(), None, cfg(false), t0), t0);
    s.answer(refusal(ErrorCode::PoolExhausted));
    assert!(matches!(s.events[0].1, LeaseEvent::Refused(_)));
    assert_eq!(s.events[1].1, LeaseEvent::GaveUp);
    let mut s = Sim::new(Lease::new(key(), None, cfg(true), t0), t0);
    s.answer(refusal(ErrorCode::PoolExhausted));
    s.run_until(1);
    assert_eq!(s.sent.len(), 1, "no request during the first pause");
    s.run_until(2);
    assert_eq!(s.sent.len(), 2);
    s.grant(10005, 60);
    assert_eq!(
        s.events.last().unwrap().1,
        LeaseEvent::Granted { table: 10005 }
    );
    // A table outside the pool is a refusal, a kernel table too.
    let mut s = Sim::new(Lease::new(key(), None, cfg(false), t0), t0);
    s.grant(255, 60);
    assert!(matches!(&s.events[0].1, LeaseEvent::Refused(e) if e.code == ErrorCode::Internal));
}

#[test]
fn a_silent_server_is_reported_at_rounds_one_two_four() {
    let t0 = Instant::now();
    let mut s = Sim::new(Lease::new(key(), None, cfg(true), t0), t0);
    s.run_until(100);
    let rounds: Vec<u32> = s
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            LeaseEvent::NoAnswer { attempts } => Some(*attempts),
            _ => None,
        })
        .collect();
    assert_eq!(rounds, [5, 10, 20, 40]);
    s.grant(10000, 60);
    assert_eq!(s.l.table(), Some(10000));
}

#[test]
fn release_is_retried_until_acknowledged() {
    let t0 = Instant::now();
    let mut s = Sim::new(Lease::new(key(), None, cfg(true), t0), t0);
    s.grant(10000, 60);
    s.l.release(s.now);
    s.drain();
    assert_eq!(s.sent.last(), Some(&(0, Action::Release)));
    // A late grant while releasing changes nothing.
    s.grant(10000, 60);
    s.run_until(1);
    assert_eq!(s.sent.last(), Some(&(1, Action::Release)));
    s.answer(Reply::released());
    assert_eq!(
        s.events.last(),
        Some(&(1, LeaseEvent::Released { acknowledged: true }))
    );
    assert!(s.l.is_done() && s.l.poll_timeout().is_none());
    // Unanswered: three tries, then done.
    let mut s = Sim::new(Lease::new(key(), None, cfg(true), t0), t0);
    s.l.release(s.now);
    s.drain();
    s.run_until(10);
    let releases = s.sent.iter().filter(|(_, a)| *a == Action::Release).count();
    assert_eq!(releases, 3);
    assert_eq!(
        s.events.last().unwrap().1,
        LeaseEvent::Released {
            acknowledged: false
        }
    );
}

#[test]
fn a_bound_keeper_renews_and_forget_says_nothing() {
    let t0 = Instant::now();
    let l = Lease::bound(
        key(),
        Some("t".into()),
        cfg(false),
        10002,
        Duration::from_secs(20),
        t0,
    );
    let mut s = Sim::new(l, t0);
    s.run_until(10);
    assert_eq!(s.sent, [(10, Action::Request)]);
    assert_eq!(s.l.request(Action::Request).tag.as_deref(), Some("t"));
    s.l.forget();
    s.drain();
    assert!(s.l.is_done());
    assert_eq!(s.sent.len(), 1);
}
