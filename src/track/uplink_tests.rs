//! The uplink's probing in simulated time: the real deadlines, bursts and
//! verdicts against seeded loss, jitter, queueing and silent deaths.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::addr::Family;
use crate::track::health::LinkState;

/// The path's behaviour at time `t` (since the start): `None` drops the
/// probe, `Some(rtt)` answers it after `rtt`.
type Path<'a> = dyn FnMut(Duration, &mut Rng) -> Option<Duration> + 'a;

/// xorshift64*: repeatable without a dependency.
pub struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub struct Run {
    /// (time since start, old, new)
    pub changes: Vec<(Duration, LinkState, LinkState)>,
    pub probes: u64,
}

impl Run {
    fn downs(&self) -> Vec<Duration> {
        self.changes
            .iter()
            .filter(|c| c.2 == LinkState::Down)
            .map(|c| c.0)
            .collect()
    }
}

fn uplink(cfg: &TrackConfig, start: Instant) -> Uplink {
    let id = UplinkId {
        family: Family::Inet,
        table: 10000,
        ifname: "wan0".into(),
        address: "192.0.2.2".parse().unwrap(),
        also: Vec::new(),
    };
    Uplink::new(id, cfg, start)
}

fn cfg() -> TrackConfig {
    TrackConfig {
        targets: vec![Target::Icmp {
            address: "203.0.113.10".parse().unwrap(),
        }],
        ..TrackConfig::default()
    }
}

/// Runs the uplink for `length` of simulated time over `path`.
pub fn simulate(cfg: &TrackConfig, length: Duration, seed: u64, path: &mut Path<'_>) -> Run {
    let start = Instant::now();
    let mut rng = Rng(seed.max(1));
    let mut up = uplink(cfg, start);
    let mut answers: BTreeMap<(Instant, u16), (Probe, Outcome)> = BTreeMap::new();
    let mut run = Run {
        changes: Vec::new(),
        probes: 0,
    };
    let mut t = start;
    let note = |t: Instant, c: Option<Change>, run: &mut Run| {
        if let Some((old, new)) = c {
            run.changes.push((t - start, old, new));
        }
    };
    while t - start < length {
        let next_answer = answers.keys().next().map(|k| k.0);
        let wake = [up.next_wake(cfg, t), next_answer]
            .into_iter()
            .flatten()
            .min()
            .expect("an uplink with a target always has a next wake");
        t = wake.max(t);
        while let Some(entry) = answers.first_entry() {
            if entry.key().0 > t {
                break;
            }
            let (p, o) = entry.remove();
            let c = up.finish(cfg, &p, &o, t).0;
            note(t, c, &mut run);
        }
        let c = up.tick(cfg, t);
        note(t, c, &mut run);
        while let Some(p) = up.due(cfg, 1, t) {
            run.probes += 1;
            let (at, rtt) = match path(t - start, &mut rng) {
                Some(rtt) if rtt <= p.timeout => (t + rtt, Some(rtt)),
                _ => (t + p.timeout, None),
            };
            let outcome = Outcome {
                rtt,
                bytes: 88,
                error: None,
            };
            answers.insert((at, p.seq), (p, outcome));
        }
    }
    run
}

fn jitter(loss: f64, lo_ms: f64, hi_ms: f64) -> impl FnMut(Duration, &mut Rng) -> Option<Duration> {
    move |_, rng| {
        (rng.unit() >= loss)
            .then(|| Duration::from_secs_f64((lo_ms + rng.unit() * (hi_ms - lo_ms)) / 1000.0))
    }
}

#[test]
fn five_percent_loss_and_jitter_never_move_anything_in_ten_minutes() {
    let cfg = cfg();
    for seed in 1..=5 {
        let mut path = jitter(0.05, 20.0, 200.0);
        let run = simulate(&cfg, Duration::from_secs(600), seed, &mut path);
        assert!(run.downs().is_empty(), "seed {seed}: {:?}", run.changes);
        // Within today's probe bytes: 7,200 probes an hour, 1,200 in ten
        // minutes (bursts included).
        assert!(run.probes <= 1200, "seed {seed}: {} probes", run.probes);
    }
}

#[test]
fn a_silent_death_is_found_in_under_a_second() {
    let cfg = cfg();
    for (lo, hi) in [(0.1, 0.3), (30.0, 50.0)] {
        let mut found = Vec::new();
        // Deaths at 50 phases of the probe schedule.
        for k in 0..50u64 {
            let death = Duration::from_millis(20_000 + k * 13);
            let mut live = jitter(0.0, lo, hi);
            let mut path =
                |t: Duration, rng: &mut Rng| if t >= death { None } else { live(t, rng) };
            let run = simulate(&cfg, death + Duration::from_secs(5), k + 1, &mut path);
            let downs = run.downs();
            assert_eq!(downs.len(), 1, "{:?}", run.changes);
            found.push(downs[0] - death);
        }
        found.sort();
        let (median, max) = (found[found.len() / 2], found[found.len() - 1]);
        assert!(
            median <= Duration::from_millis(1000),
            "RTT {lo}-{hi} ms: median {median:?}"
        );
        assert!(
            max <= Duration::from_millis(1500),
            "RTT {lo}-{hi} ms: max {max:?}"
        );
    }
}

#[test]
fn a_saturated_uplink_is_slow_not_dead() {
    let cfg = cfg();
    // A queue that fills over five seconds to 1.5 s of delay, and stays.
    let mut ramp = |t: Duration, rng: &mut Rng| {
        let queue = (t.as_secs_f64() - 10.0).clamp(0.0, 5.0) / 5.0 * 1500.0;
        Some(Duration::from_secs_f64(
            (20.0 + queue + rng.unit() * 20.0) / 1000.0,
        ))
    };
    let run = simulate(&cfg, Duration::from_secs(60), 7, &mut ramp);
    assert!(run.downs().is_empty(), "{:?}", run.changes);
    // A queue that appears at once: 400 ms more for every probe.
    let mut step = |t: Duration, rng: &mut Rng| {
        let queue = if t.as_secs_f64() > 10.0 { 400.0 } else { 0.0 };
        Some(Duration::from_secs_f64(
            (20.0 + queue + rng.unit() * 20.0) / 1000.0,
        ))
    };
    let run = simulate(&cfg, Duration::from_secs(30), 8, &mut step);
    assert!(run.downs().is_empty(), "{:?}", run.changes);
}

#[test]
fn one_or_two_lost_probes_never_change_anything() {
    let cfg = cfg();
    for lost_in_a_row in [1u32, 2] {
        let mut n = 0u32;
        let mut path = |t: Duration, _: &mut Rng| {
            n += 1;
            // A burst of `lost_in_a_row` every 30 probes (under 7 % loss).
            let drop = t > Duration::from_secs(10)
                && t < Duration::from_secs(40)
                && n % 30 < lost_in_a_row;
            (!drop).then_some(Duration::from_millis(20))
        };
        let run = simulate(&cfg, Duration::from_secs(45), 3, &mut path);
        // Unknown -> up at the start, and nothing after.
        assert_eq!(run.changes.len(), 1, "{lost_in_a_row}: {:?}", run.changes);
    }
}

#[test]
fn recovery_is_within_two_and_a_half_seconds_with_three_answers() {
    let cfg = cfg();
    let mut path = |t: Duration, _: &mut Rng| {
        let dead = (10.0..20.0).contains(&t.as_secs_f64());
        (!dead).then_some(Duration::from_millis(20))
    };
    let run = simulate(&cfg, Duration::from_secs(30), 4, &mut path);
    let back = run
        .changes
        .iter()
        .find(|c| c.1 == LinkState::Down)
        .expect("down, then up");
    assert!(
        back.0 - Duration::from_secs(20) <= Duration::from_millis(2500),
        "{:?}",
        run.changes
    );
}

#[test]
fn without_adaptive_timing_the_tracker_is_the_old_one() {
    let cfg = TrackConfig {
        interval: Duration::from_millis(500),
        timing: crate::track::doubt::TimingConfig {
            adaptive: false,
            ..cfg().timing
        },
        thresholds: crate::track::health::Thresholds {
            down_after: 3,
            down_silence: Duration::ZERO,
            ..Default::default()
        },
        ..cfg()
    };
    let death = Duration::from_millis(20_250);
    let mut live = jitter(0.0, 0.1, 0.3);
    let mut path = |t: Duration, rng: &mut Rng| if t >= death { None } else { live(t, rng) };
    let run = simulate(&cfg, death + Duration::from_secs(5), 1, &mut path);
    let took = run.downs()[0] - death;
    // Three lost at 500 ms each plus the 1 s timeout: over two seconds.
    assert!(took >= Duration::from_millis(2000), "{took:?}");
    // And 7,200 probes an hour.
    assert!((50..=52).contains(&run.probes), "{}", run.probes);
}

#[test]
fn stalled_connections_ask_at_once_and_degrade_while_probes_answer() {
    use std::collections::BTreeSet;
    let cfg = cfg();
    let t0 = Instant::now();
    let mut up = uplink(&cfg, t0);
    // Up from three answers.
    for i in 0..3u64 {
        let t = t0 + Duration::from_millis(600 * i);
        let p = up.due(&cfg, 1, t).expect("steady probe");
        let o = Outcome {
            rtt: Some(Duration::from_millis(20)),
            bytes: 88,
            error: None,
        };
        up.finish(&cfg, &p, &o, t + Duration::from_millis(20));
    }
    assert_eq!(up.health.state, LinkState::Up);
    let t = t0 + Duration::from_millis(1300);
    // One stalled connection: a probe now, not at the next steady time.
    let one: BTreeSet<std::net::IpAddr> = ["198.51.100.1".parse().unwrap()].into();
    assert_eq!(up.passive(&cfg, Some(&one), t), None);
    assert!(up.due(&cfg, 1, t).is_some());
    // Two remotes stalled for passive_after: degraded, with the reason.
    let two: BTreeSet<std::net::IpAddr> = [
        "198.51.100.1".parse().unwrap(),
        "198.51.100.2".parse().unwrap(),
    ]
    .into();
    assert_eq!(up.passive(&cfg, Some(&two), t), None);
    let later = t + cfg.passive_after;
    assert_eq!(
        up.passive(&cfg, Some(&two), later),
        Some((LinkState::Up, LinkState::Degraded))
    );
    assert!(up
        .last_error
        .as_deref()
        .unwrap()
        .contains("no acknowledgements"));
    // The connections recover: up again.
    assert_eq!(
        up.passive(&cfg, None, later + Duration::from_millis(500)),
        Some((LinkState::Degraded, LinkState::Up))
    );
}

#[test]
fn stalls_group_by_source_and_need_a_backoff() {
    use crate::track::passive::{stalls, Conn};
    let c = |s: &str, r: &str, backoffs| Conn {
        source: s.parse().unwrap(),
        remote: r.parse().unwrap(),
        backoffs,
    };
    let s = stalls(&[
        c("192.0.2.2", "198.51.100.1", 1),
        c("192.0.2.2", "198.51.100.2", 3),
        c("192.0.2.2", "198.51.100.2", 2),
        c("192.0.2.2", "198.51.100.3", 0),
        c("192.0.2.9", "198.51.100.1", 0),
    ]);
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[&"192.0.2.2".parse::<std::net::IpAddr>().unwrap()].len(),
        2
    );
}

#[test]
fn the_passive_read_waits_for_a_retransmission() {
    use crate::track::passive::{sum_counters, Gate, Stalls};
    let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RetransSegs\nTcp: 1 7\n\
        TcpExt: SyncookiesSent TCPTimeouts TCPSynRetrans\nTcpExt: 0 3 2\n";
    assert_eq!(sum_counters(text), Some(12));
    assert_eq!(sum_counters("Udp: InDatagrams\nUdp: 5\n"), None);
    assert!(
        crate::track::passive::counters().is_some(),
        "this host's counters"
    );
    let mut g = Gate::default();
    assert!(g.should_read(Some(12)), "the first time");
    g.read(Some(12), &Stalls::new());
    assert!(!g.should_read(Some(12)), "nothing fired since");
    assert!(g.should_read(Some(13)), "a timer fired");
    assert!(g.should_read(None), "unreadable counters: read anyway");
    let mut stalls = Stalls::new();
    stalls.insert("192.0.2.2".parse().unwrap(), Default::default());
    g.read(Some(13), &stalls);
    assert!(
        g.should_read(Some(13)),
        "stalls seen: read until they clear"
    );
}
