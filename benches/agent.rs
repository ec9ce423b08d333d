//! `mhr agent` at 1,000 addresses (250 veth uplinks, 4 addresses each):
//! latency from adding an address to its 4 rules in the kernel (seen as
//! RTM_NEWRULE events), one at a time; all 1,000 at once; the agent's RSS and
//! CPU; idle CPU; beside it, the same 1,000 addresses kept by 1,000
//! `table_allocator_client` processes (summed RSS and PSS, total time).
//! Needs root: everything happens in a network namespace of its own.
//!
//! Run: `cargo bench --bench agent`

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::MulticastGroup;

#[path = "support/mod.rs"]
mod support;
use support::{cpu, ms, pct, proc_field, Kill, Ns};

const LINKS: usize = 250;
const PER_LINK: usize = 4;

fn addr(link: usize, k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 100 + k as u8, link as u8, 1)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !support::is_root() {
        println!("agent: needs root (network namespaces); skipped");
        return;
    }
    let ns = Ns::new(format!("mhr-bench-agent-{}", std::process::id()));
    ns.enter();
    let mut links = String::new();
    for i in 0..LINKS {
        links += &format!(
            "link add b{i} type veth peer name p{i}\nlink set b{i} up\nlink set p{i} up\n"
        );
    }
    support::batch(None, &links);
    let index: Vec<u32> = (0..LINKS)
        .map(|i| {
            let out = Command::new("ip")
                .args(["-o", "link", "show", &format!("b{i}")])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .split(':')
                .next()
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let _server = support::start_server(dir.path(), "tas_bench", None);
    let cfg = dir.path().join("agent.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{ interfaces: ["b*"], ra: false, track: null, state_file: "{}" }}"#,
            dir.path().join("state.json").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let agent = Kill(
        Command::new(env!("CARGO_BIN_EXE_mhr"))
            .args(["agent", "-c"])
            .arg(&cfg)
            .env("MHR_DEFAULTS", "/dev/null")
            .env("MHR_TAS_SOCKET", "tas_bench")
            .env("MHR_SERVERS_FILE", dir.path().join("servers"))
            .env("MHR_AGENT_SOCKET", dir.path().join("private/agent.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id();
    std::thread::sleep(Duration::from_millis(300));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let one_by_one = rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().unwrap();
        tokio::spawn(conn);
        let (mconn, _h, mut events) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Ipv4Rule]).unwrap();
        tokio::spawn(mconn);
        let mut rules_added = async |n: usize| {
            let mut seen = 0;
            while seen < n {
                let (msg, _) = tokio::time::timeout(Duration::from_secs(20), events.next())
                    .await
                    .expect("rules in time")
                    .unwrap();
                if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRule(_)) = msg.payload {
                    seen += 1;
                }
            }
        };
        // One at a time: the next once the previous one's rules are in.
        let mut times = Vec::new();
        for k in 0..PER_LINK {
            for (i, &idx) in index.iter().enumerate() {
                let start = Instant::now();
                handle
                    .address()
                    .add(idx, IpAddr::V4(addr(i, k)), 24)
                    .execute()
                    .await
                    .unwrap();
                rules_added(4).await;
                times.push(start.elapsed());
            }
        }
        times
    });
    let mut times = one_by_one;
    let (rss1, cpu1) = (proc_field(pid, "status", "VmRSS:"), cpu(pid));
    println!(
        "one at a time, {} addresses: ip addr add (netlink) to its 4 rules: median {}, p99 {}, max {}",
        times.len(),
        ms(pct(&mut times, 0.5)),
        ms(pct(&mut times, 0.99)),
        ms(pct(&mut times, 1.0)),
    );
    println!(
        "  agent after: RSS {:.1} MB, CPU {cpu1:.2} s so far",
        rss1 as f64 / 1024.0
    );
    let c0 = cpu(pid);
    // 35 s; its 60 s audit may fall inside or not (benches/agent_idle has
    // the steady state as shipped).
    std::thread::sleep(Duration::from_secs(35));
    println!(
        "  idle 35 s at 1,000 addresses (RA and tracker off): CPU {:.3} s",
        cpu(pid) - c0
    );

    // Remove them all; the agent removes the rules and releases.
    let mut flush = String::new();
    for i in 0..LINKS {
        flush += &format!("addr flush dev b{i}\n");
    }
    support::batch(None, &flush);
    let gone = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        let out = Command::new("ip").args(["rule"]).output().unwrap();
        !String::from_utf8_lossy(&out.stdout).contains("proto 77")
    });
    assert!(gone, "rules left after the flush");

    // All 1,000 at once (one `ip -batch`), until the last rule is in.
    let mut add = String::new();
    for k in 0..PER_LINK {
        for i in 0..LINKS {
            add += &format!("addr add {}/24 dev b{i}\n", addr(i, k));
        }
    }
    let c0 = cpu(pid);
    // Counted by polling `ip rule` (4,000 events at once overrun a
    // multicast listener), so the figure is at most one poll late.
    let count = || {
        let out = Command::new("ip").args(["rule"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .matches("proto 77")
            .count()
    };
    let start = Instant::now();
    support::batch(None, &add);
    let added = start.elapsed();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(60) {
        n = count();
        if n == 4 * LINKS * PER_LINK {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let all = start.elapsed();
    assert_eq!(
        n,
        4 * LINKS * PER_LINK,
        "{}",
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("  (ip -batch itself took {})", ms(added));
    println!(
        "all {} at once (one ip -batch): last rule in after {}; agent CPU {:.2} s, RSS {:.1} MB",
        LINKS * PER_LINK,
        ms(all),
        cpu(pid) - c0,
        proc_field(pid, "status", "VmRSS:") as f64 / 1024.0
    );
    let pss = proc_field(pid, "smaps_rollup", "Pss:");
    println!("  agent PSS {:.1} MB", pss as f64 / 1024.0);
    drop(agent);
    support::batch(None, &flush);
    std::thread::sleep(Duration::from_millis(500));

    // Beside it: the same 1,000 addresses, one table_allocator_client each.
    support::batch(None, &add);
    let client = support::program("table_allocator_client");
    let start = Instant::now();
    for k in 0..PER_LINK {
        for i in 0..LINKS {
            let mut c = Command::new(&client)
                .args([
                    "-4",
                    "-a",
                    &addr(i, k).to_string(),
                    "-n",
                    "24",
                    "-i",
                    &format!("b{i}"),
                    "-d",
                    "tas_bench",
                    "-s",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut out = String::new();
            use std::io::Read;
            c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            c.wait().unwrap();
        }
    }
    let took = start.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let (mut rss, mut pss, mut n) = (0u64, 0u64, 0);
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read_to_string(e.path().join("cmdline")) else {
            continue;
        };
        if !cmd.starts_with(client.as_str()) {
            continue;
        }
        let p: u32 = e.file_name().to_string_lossy().parse().unwrap_or(0);
        rss += proc_field(p, "status", "VmRSS:");
        pss += proc_field(p, "smaps_rollup", "Pss:");
        n += 1;
    }
    println!(
        "1,000 table_allocator_client processes (started one after another): {} in all; {n} resident: RSS {:.1} MB summed, PSS {:.1} MB summed",
        ms(took),
        rss as f64 / 1024.0,
        pss as f64 / 1024.0
    );
    support::batch(None, &flush);
    std::thread::sleep(Duration::from_secs(1));
}
