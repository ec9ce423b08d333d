use super::*;

fn cfg() -> TimingConfig {
    TimingConfig {
        adaptive: true,
        rto_min: Duration::from_millis(100),
        timeout: Duration::from_millis(1000),
        burst_interval: Duration::from_millis(100),
    }
}

#[test]
fn deadlines_follow_the_measured_rtt() {
    let c = cfg();
    let mut t = Timing::default();
    // Nothing measured: the configured timeout.
    assert_eq!(t.overdue_after(&c), Duration::from_millis(1000));
    for _ in 0..20 {
        t.sample(Duration::from_millis(20));
    }
    // A steady 20 ms uplink: the floor.
    assert_eq!(t.overdue_after(&c), Duration::from_millis(100));
    // A jittery one: well above its slowest usual answer.
    let mut j = Timing::default();
    for i in 0..200u64 {
        j.sample(Duration::from_millis(20 + (i * 37) % 180));
    }
    let rto = j.overdue_after(&c);
    assert!(
        rto >= Duration::from_millis(200) && rto <= Duration::from_millis(1000),
        "{rto:?}"
    );
    // A slow one is listened to longer than the timeout.
    let mut s = Timing::default();
    for _ in 0..50 {
        s.sample(Duration::from_millis(900));
    }
    assert_eq!(s.listen_for(&c), Duration::from_millis(2700));
    assert!(s.overdue_after(&c) <= s.listen_for(&c));
    // Not adaptive: the timeout, however fast the uplink.
    let fixed = TimingConfig {
        adaptive: false,
        ..c
    };
    assert_eq!(t.overdue_after(&fixed), Duration::from_millis(1000));
    assert_eq!(s.listen_for(&fixed), Duration::from_millis(1000));
}

#[test]
fn bursts_are_paid_from_the_bucket() {
    let c = cfg();
    let t0 = Instant::now();
    let mut b = Bucket::new(0.4, 2, t0);
    let steady = t0 + Duration::from_millis(600);
    // Not in doubt: the steady pace.
    assert_eq!(next_probe(&c, steady, Some(t0), false, &mut b, t0), steady);
    // In doubt: 100 ms after the last probe, while tokens last.
    let at = next_probe(&c, steady, Some(t0), true, &mut b, t0);
    assert_eq!(at, t0 + Duration::from_millis(100));
    assert!(b.take(at) && b.take(at));
    assert!(!b.take(at));
    // Out of tokens: the next one waits for a token (2.5 s at 0.4/s), so
    // the steady probe comes first.
    let later = next_probe(&c, steady, Some(at), true, &mut b, at);
    assert_eq!(later, steady);
}
