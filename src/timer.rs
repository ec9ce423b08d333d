//! Timers shared by the daemons' select loops.

use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

/// Sleeps until `deadline`, or forever when there is none (a select arm
/// that never fires).
pub async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A periodic tick that, after a stall, goes on from now instead of firing
/// the missed ticks in a burst.
pub fn ticker(period: Duration) -> Interval {
    let mut t = tokio::time::interval(period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
