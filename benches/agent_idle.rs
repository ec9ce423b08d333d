//! `mhr agent` as shipped (RA handling on, tracker on) in steady state:
//! 8 uplinks to one ISP namespace, 1,000 IPv4 addresses (125 per uplink),
//! every one routed; then 65 s of idle (one 60 s audit inside): CPU in
//! 5 s windows (median and max), RSS and PSS, and the kernel dumps the
//! agent asked for meanwhile. Needs root: all of it in namespaces of its
//! own.
//!
//! Run: `cargo bench --bench agent_idle`. `AGENT_IDLE_BIN=PATH` runs
//! another build's `mhr` (with `AGENT_IDLE_OLD=1`, one from before the
//! tracker's settings moved into the agent's config: it reads them from a
//! file) to put the figures side by side.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;
use support::{cpu, ip, proc_field, Kill, Ns};

const UPLINKS: usize = 8;
const PER_UPLINK: usize = 125;
const TARGET: &str = "203.0.113.10";

fn rules(ns: &str) -> usize {
    let out = Command::new("ip")
        .args(["-n", ns, "rule"])
        .output()
        .unwrap();
    // The four of each address (not the tracker's 50000 rule).
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("proto 77") && !l.starts_with("50000:"))
        .count()
}

/// The running agent's count of kernel dumps (asked over its socket).
fn dumps(socket: &std::path::Path) -> Result<u64, String> {
    use mhr::control::{ask, Request};
    let reply = ask(socket, &Request::Status, Duration::from_secs(2))
        .map_err(|e| e.to_string())?
        .ok_or("no agent answers")?;
    let status = reply
        .status
        .clone()
        .ok_or(format!("no status in {reply:?}"))?;
    status["dumps"]
        .as_u64()
        .ok_or(format!("no dumps in {status}"))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !support::is_root() {
        println!("agent_idle: needs root (network namespaces); skipped");
        return;
    }
    let id = std::process::id();
    let host = Ns::new(format!("mhr-bench-idle-h{id}"));
    let isp = Ns::new(format!("mhr-bench-idle-i{id}"));
    let (h, i) = (host.0.clone(), isp.0.clone());
    ip(&i, &["addr", "add", &format!("{TARGET}/32"), "dev", "lo"]);
    let mut links = String::new();
    let mut peers = String::new();
    let mut first = String::new();
    let mut rest = String::new();
    for u in 0..UPLINKS {
        let net = format!("10.{}.0", 100 + u);
        links += &format!("link add b{u} type veth peer name p{u} netns {i}\nlink set b{u} up\n");
        peers += &format!("link set p{u} up\naddr add {net}.1/24 dev p{u}\n");
        first += &format!(
            "addr add {net}.2/24 dev b{u}\nroute add default via {net}.1 dev b{u} metric {}\n",
            100 + u
        );
        for k in 1..PER_UPLINK {
            rest += &format!("addr add {net}.{}/24 dev b{u}\n", 2 + k);
        }
    }
    support::batch(Some(&h), &links);
    support::batch(Some(&i), &peers);
    host.enter();

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _server = support::start_server(d, "tas_bench_idle", None);
    let track = format!(
        r#"{{ targets: [{{kind: "icmp", address: "{TARGET}"}}], scripts_dir: "{}", state_file: "{}" }}"#,
        d.join("scripts").display(),
        d.join("track.json").display()
    );
    let old = std::env::var_os("AGENT_IDLE_OLD").is_some();
    let track = if old {
        std::fs::write(d.join("track.conf"), &track).unwrap();
        format!("\"{}\"", d.join("track.conf").display())
    } else {
        track
    };
    let cfg = d.join("agent.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{ interfaces: ["b*"], track: {track}, state_file: "{}" }}"#,
            d.join("state.json").display()
        ),
    )
    .unwrap();
    let bin = std::env::var("AGENT_IDLE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mhr").into());
    let socket = d.join("private/agent.sock");
    let log = d.join("agent.log");
    let agent = Kill(
        Command::new(&bin)
            .args(["agent", "-c"])
            .arg(&cfg)
            .env("MHR_DEFAULTS", "/dev/null")
            .env("MHR_TAS_SOCKET", "tas_bench_idle")
            .env("MHR_SERVERS_FILE", d.join("servers"))
            .env("MHR_AGENT_SOCKET", &socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id();
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    support::batch(Some(&h), &first);
    support::batch(Some(&h), &rest);
    let want = 4 * UPLINKS * PER_UPLINK;
    while rules(&h) < want && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let n = rules(&h);
    assert_eq!(
        n,
        want,
        "rules; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    println!(
        "{bin}: {} addresses on {UPLINKS} uplinks routed in {:.1} s (RA on, tracker on: {})",
        UPLINKS * PER_UPLINK,
        start.elapsed().as_secs_f64(),
        if old {
            "its own file"
        } else {
            "in the agent's config"
        }
    );
    // The tracker's verdicts settle (and the first writes are done).
    std::thread::sleep(Duration::from_secs(10));
    let d0 = dumps(&socket);
    let mut windows = Vec::new();
    let c0 = cpu(pid);
    let t0 = Instant::now();
    for _ in 0..13 {
        let (c, t) = (cpu(pid), Instant::now());
        std::thread::sleep(Duration::from_secs(5));
        windows.push((cpu(pid) - c) / t.elapsed().as_secs_f64() * 100.0);
    }
    let total = (cpu(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let d1 = dumps(&socket);
    windows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "  idle {:.0} s: CPU {total:.3} % of a core; per 5 s window median {:.3} %, max {:.3} % (the audit's window)",
        t0.elapsed().as_secs_f64(),
        windows[windows.len() / 2],
        windows[windows.len() - 1],
    );
    println!(
        "  RSS {:.1} MB, PSS {:.1} MB",
        proc_field(pid, "status", "VmRSS:") as f64 / 1024.0,
        proc_field(pid, "smaps_rollup", "Pss:") as f64 / 1024.0
    );
    match (d0, d1) {
        (Ok(a), Ok(b)) => println!("  kernel dumps meanwhile: {} (the audit's)", b - a),
        (a, b) => println!("  kernel dumps not counted: {a:?} {b:?}"),
    }
    if let Ok(secs) = std::env::var("AGENT_IDLE_HOLD") {
        // Time to look at it (perf, strace) before it goes.
        println!("  holding {secs} s: agent pid {pid}");
        std::thread::sleep(Duration::from_secs(secs.parse().unwrap_or(60)));
    }
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    println!("  {bin}: {:.1} MB on disk (unstripped)", size as f64 / 1e6);
    drop(agent);
    drop(isp);
    drop(host);
}
