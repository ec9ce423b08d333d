//! table_allocator_client figures: time from start to the table on stdout
//! (100 runs), resident memory of the background clients, and time from
//! deleting the address to its rules being gone (seen as RTM_DELRULE
//! events). Needs root: it works in a network namespace of its own.
//!
//! Run: `cargo bench --bench client_start`

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::MulticastGroup;

const RUNS: usize = 100;

#[path = "support/mod.rs"]
mod support;
use support::{ip, ms, pct, Ns};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !support::is_root() {
        println!("client_start: needs root (network namespaces); skipped");
        return;
    }
    let ns = Ns::new(format!("mhr-bench-client-{}", std::process::id()));
    ip(
        &ns.0,
        &["link", "add", "b0", "type", "veth", "peer", "name", "b1"],
    );
    ip(&ns.0, &["link", "set", "b0", "up"]);
    ip(&ns.0, &["link", "set", "b1", "up"]);
    for i in 0..RUNS {
        // One subnet each: deleting a primary address takes its subnet's
        // secondaries with it.
        ip(
            &ns.0,
            &["addr", "add", &format!("10.77.{i}.1/24"), "dev", "b0"],
        );
    }
    // Enter the namespace on this (main) thread: children inherit it.
    ns.enter();

    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path(), "tas_bench", None);

    let client = support::program("table_allocator_client");
    let mut times = Vec::new();
    for i in 0..RUNS {
        let addr = format!("10.77.{i}.1");
        let start = Instant::now();
        let mut child = Command::new(&client)
            .args(["-4", "-a", &addr, "-n", "24", "-i", "b0", "-d", "tas_bench"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        times.push(start.elapsed());
        assert!(out.trim().parse::<u32>().unwrap() >= 10000, "{out}");
        child.wait().unwrap();
    }
    println!(
        "start to table on stdout over {RUNS} runs: median {}, p99 {}",
        ms(pct(&mut times, 0.5)),
        ms(pct(&mut times, 0.99))
    );

    // Resident memory of the background clients: RSS as `ps` shows it,
    // private anonymous memory, and PSS (shared code divided among them).
    std::thread::sleep(Duration::from_millis(200));
    let (mut rss, mut anon, mut pss) = (Vec::new(), Vec::new(), Vec::new());
    let field = |text: &str, name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read_to_string(entry.path().join("cmdline")) else {
            continue;
        };
        if !cmd.starts_with(client.as_str()) {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let rollup = std::fs::read_to_string(entry.path().join("smaps_rollup")).unwrap_or_default();
        if let (Some(r), Some(a), Some(p)) = (
            field(&status, "VmRSS:"),
            field(&status, "RssAnon:"),
            field(&rollup, "Pss:"),
        ) {
            rss.push(r);
            anon.push(a);
            pss.push(p);
        }
    }
    let med = |v: &mut Vec<u64>| {
        v.sort();
        v[v.len() / 2] as f64 / 1024.0
    };
    println!(
        "background clients: {}, median per client: RSS {:.2} MB, private anonymous {:.2} MB, PSS {:.2} MB",
        rss.len(),
        med(&mut rss),
        med(&mut anon),
        med(&mut pss)
    );

    // Address deletion to rules gone, measured from netlink events.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut gone = rt.block_on(async {
        let (conn, _h, mut events) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Ipv4Rule]).unwrap();
        tokio::spawn(conn);
        let mut out = Vec::new();
        for i in 0..20 {
            let addr = format!("10.77.{i}.1/24");
            let start = Instant::now();
            let ok = Command::new("ip")
                .args(["addr", "del", &addr, "dev", "b0"])
                .status()
                .unwrap()
                .success();
            assert!(ok);
            // `ip` itself takes part of this; its own cost is measured below.
            let mut deleted = 0;
            while deleted < 4 {
                let (msg, _) = tokio::time::timeout(Duration::from_secs(2), events.next())
                    .await
                    .expect("rules deleted")
                    .unwrap();
                if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRule(_)) = msg.payload {
                    deleted += 1;
                }
            }
            out.push(start.elapsed());
        }
        out
    });
    let mut ip_cost: Vec<Duration> = (0..20)
        .map(|_| {
            let s = Instant::now();
            Command::new("ip")
                .args(["link", "show", "lo"])
                .output()
                .unwrap();
            s.elapsed()
        })
        .collect();
    println!(
        "ip addr del to all 4 rules gone (20 runs): median {}, p99 {} (of which running `ip` itself: median {})",
        ms(pct(&mut gone, 0.5)),
        ms(pct(&mut gone, 0.99)),
        ms(pct(&mut ip_cost, 0.5))
    );
    drop(server);
}
