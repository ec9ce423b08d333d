//! One MPTCP stream over two uplinks, its first uplink's upstream silenced
//! again and again (`MPTCP_CUTS`, default 10), at 0 and about 100 ms of
//! round trip: the largest gap in received bytes per cut (the receiver
//! samples every 50 ms), median and max, and whether the connection was
//! reset; with the agent's endpoints tied to health, and beside it with
//! the same endpoints left in place (the kernel alone). Needs root; the lab
//! of tests/mptcp_failover.rs.
//!
//! Run: `cargo bench --bench mptcp`

use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/support/mptcp_lab.rs"]
mod mptcp_lab;

use mptcp_lab::*;

fn run(delay_ms: u32, tied: bool, cuts: u32) {
    let lab = lab(&format!("b{}{}", delay_ms, u8::from(tied)), delay_ms);
    let _agent = if tied {
        lab.agent("")
    } else {
        let a = lab.agent(", mptcp: {enabled: false}");
        for (i, dev) in ["u0", "u1"].iter().enumerate() {
            lab.host.ip(&[
                "mptcp",
                "endpoint",
                "add",
                &format!("10.100.{i}.2"),
                "dev",
                dev,
                "subflow",
            ]);
        }
        lab.host.ip(&[
            "mptcp",
            "limits",
            "set",
            "subflows",
            "2",
            "add_addr_accepted",
            "2",
        ]);
        a
    };
    let (_rx, mut sender, log) = lab.stream(cuts * 8 + 4);
    std::thread::sleep(Duration::from_secs(2));
    let mut gaps = Vec::new();
    for _ in 0..cuts {
        std::thread::sleep(Duration::from_secs(2));
        let t = Lab::stream_time(&log);
        lab.silence(true);
        std::thread::sleep(Duration::from_millis(3500));
        lab.silence(false);
        std::thread::sleep(Duration::from_millis(2500));
        let s = samples(&std::fs::read_to_string(&log).unwrap_or_default());
        gaps.push(largest_gap(&s, t, t + 3.5));
    }
    let done = sender.wait_exit(Duration::from_secs(30));
    let reset = !done.is_some_and(|s| s.success()) || !sender.log().contains("sent all");
    gaps.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{delay_ms:>3} ms RTT (ping {:.0} ms), {}: largest gap per cut median {:.2} s, max {:.2} s over {cuts} cuts; resets {}",
        lab.rtt_ms(),
        if tied { "endpoints tied to health" } else { "endpoints left in place (kernel alone)" },
        gaps[gaps.len() / 2],
        gaps[gaps.len() - 1],
        u8::from(reset),
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        println!("mptcp: needs root (network namespaces); skipped");
        return;
    }
    let cuts = std::env::var("MPTCP_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for delay in [0, 100] {
        for tied in [true, false] {
            run(delay, tied, cuts);
        }
    }
}
