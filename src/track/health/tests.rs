use super::*;
use crate::track::doubt::{paced_interval, HourMeter};

const OK: Option<Duration> = Some(Duration::from_millis(10));
const LOST: Option<Duration> = None;

fn feed(
    h: &mut LinkHealth,
    th: &Thresholds,
    results: &[Option<Duration>],
) -> Vec<(LinkState, LinkState)> {
    results.iter().filter_map(|r| h.record(*r, th, 1)).collect()
}

#[test]
fn hysteresis_one_lost_probe_does_not_flap() {
    let th = Thresholds {
        window: 20,
        ..Thresholds::default()
    };
    let mut h = LinkHealth::new(0);
    assert_eq!(feed(&mut h, &th, &[OK, OK]), []);
    assert_eq!(h.state, LinkState::Unknown);
    assert_eq!(
        feed(&mut h, &th, &[OK]),
        [(LinkState::Unknown, LinkState::Up)]
    );
    feed(&mut h, &th, &[OK; 17]);
    // Lost probes here and there: still up (15% loss is under 20%).
    assert_eq!(feed(&mut h, &th, &[LOST, OK, LOST, LOST, OK]), []);
    assert_eq!(h.state, LinkState::Up);
    feed(&mut h, &th, &[OK; 20]);
    // Four in a row: 20 % of the window, degraded, not down.
    assert_eq!(
        feed(&mut h, &th, &[LOST, LOST, LOST, LOST]),
        [(LinkState::Up, LinkState::Degraded)]
    );
    assert_eq!(
        feed(&mut h, &th, &[LOST]),
        [(LinkState::Degraded, LinkState::Down)]
    );
    assert_eq!(feed(&mut h, &th, &[OK, OK, LOST, OK, OK]), []);
    assert_eq!(h.state, LinkState::Down);
    // Back after three in a row, graded by its fresh probes only.
    assert_eq!(feed(&mut h, &th, &[OK]), [(LinkState::Down, LinkState::Up)]);
    assert_eq!(h.loss_pct(), 0.0);
}

#[test]
fn unknown_goes_down_and_loss_or_rtt_degrade() {
    let th = Thresholds {
        window: 20,
        ..Thresholds::default()
    };
    let mut h = LinkHealth::new(0);
    assert_eq!(
        feed(&mut h, &th, &[LOST; 5]),
        [(LinkState::Unknown, LinkState::Down)]
    );
    let slow = Some(Duration::from_millis(1500));
    let mut h = LinkHealth::new(0);
    assert_eq!(
        feed(&mut h, &th, &[slow, slow, slow]),
        [(LinkState::Unknown, LinkState::Degraded)]
    );
    assert!(h.rtt_ms().unwrap() > 1000.0);
    // Degraded needs to get well under the threshold to be up again.
    let ok = Some(Duration::from_millis(700));
    let changes = feed(&mut h, &th, &[ok; 20]);
    assert_eq!(changes, [(LinkState::Degraded, LinkState::Up)]);
    // 4 lost out of 20 is 20% loss: degraded, not down.
    let mut h = LinkHealth::new(0);
    feed(&mut h, &th, &[OK; 20]);
    let changes = feed(&mut h, &th, &[LOST, OK, LOST, OK, LOST, OK, LOST, OK]);
    assert_eq!(changes, [(LinkState::Up, LinkState::Degraded)]);
    assert_eq!(h.loss_pct(), 20.0);
}

fn cand(table: u32, ifname: &str, state: LinkState, loss: f64, rtt: f64) -> Candidate {
    Candidate {
        table,
        ifname: ifname.into(),
        state,
        loss_pct: loss,
        rtt_ms: Some(rtt),
    }
}

#[test]
fn choice_by_state_preference_then_quality() {
    use LinkState::*;
    let pref = vec!["wan3".to_string(), "wwan*".to_string()];
    let c = [
        cand(1, "wan1", Up, 0.0, 5.0),
        cand(2, "wwan0", Up, 0.0, 50.0),
        cand(3, "wan3", Down, 100.0, 0.0),
    ];
    assert_eq!(choose(&c, &pref, None), Some(2), "preference before RTT");
    assert_eq!(choose(&c, &[], None), Some(1), "quality without preference");
    let mut c2 = c.clone();
    c2[2].state = Up;
    assert_eq!(
        choose(&c2, &pref, Some(2)),
        Some(3),
        "comes back to the preferred"
    );
    c2[2].state = Degraded;
    assert_eq!(choose(&c2, &pref, Some(2)), Some(2), "up before degraded");
    // Sticky among equals, unless clearly better.
    let eq = [cand(1, "a", Up, 0.0, 20.0), cand(2, "b", Up, 0.0, 15.0)];
    assert_eq!(choose(&eq, &[], Some(1)), Some(1));
    let eq = [cand(1, "a", Up, 0.0, 40.0), cand(2, "b", Up, 0.0, 15.0)];
    assert_eq!(choose(&eq, &[], Some(1)), Some(2));
    let none = [
        cand(1, "a", Down, 100.0, 0.0),
        cand(2, "b", Unknown, 0.0, 0.0),
    ];
    assert_eq!(choose(&none, &[], Some(1)), None);
}

#[test]
fn budget_paces_probes_and_the_meter_forgets_after_an_hour() {
    let base = Duration::from_millis(500);
    assert_eq!(paced_interval(base, 88, None), base);
    // 100 kB/h at 88 bytes a probe: 1136 probes, one every 3.17 s.
    let paced = paced_interval(base, 88, Some(100_000));
    assert!(paced > Duration::from_millis(3100) && paced < Duration::from_millis(3200));
    assert_eq!(paced_interval(base, 88, Some(10_000_000)), base);
    let mut m = HourMeter::default();
    m.add(0, 100);
    m.add(59, 50);
    m.add(1800, 10);
    assert_eq!(m.last_hour(1800), 160);
    assert_eq!(m.last_hour(3600 + 30), 10);
    assert_eq!(m.last_hour(7200), 0);
}
