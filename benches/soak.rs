//! Soak: 8 well-behaved root clients renew their leases while 1,000
//! unprivileged sockets (uid 65534) flood the server with requests and
//! never read a reply. Prints the root clients' round trips (p50, p99,
//! max), the server's peak RSS, and the log bytes it wrote. Root only.
//!
//! `cargo bench --bench soak` (SOAK_SECS=60 by default).

mod support;

use std::io::Write;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const SOCK: &str = "soak_tas";
const FLOOD_SOCKETS: usize = 1000;
const ROOT_CLIENTS: usize = 8;

fn addr(name: &str) -> SocketAddr {
    let mut full = [0u8; 107];
    full[..name.len()].copy_from_slice(name.as_bytes());
    SocketAddr::from_abstract_name(full).unwrap()
}

/// The flooder, re-executed as uid 65534: binds `FLOOD_SOCKETS` sockets and
/// sends from each in turn, waiting at most 10 ms for room, until `secs`.
fn flood(secs: f64) {
    let req = br#"{"address":"10.9.9.9","ifname":"x","addr_family":2,"cmd":0,"version":1}"#;
    let socks: Vec<UnixDatagram> = (0..FLOOD_SOCKETS)
        .map(|i| {
            let s = UnixDatagram::bind_addr(&addr(&format!("soak-flood-{i}"))).unwrap();
            s.set_write_timeout(Some(Duration::from_millis(10)))
                .unwrap();
            s
        })
        .collect();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let to = addr(SOCK);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    while Instant::now() < end {
        for s in &socks {
            if s.send_to_addr(req, &to).is_ok() {
                sent += 1;
            }
        }
    }
    println!("sent {sent}");
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One root client: renews every 20 ms, as fast as a busy host would, and
/// records each round trip (a lost reply counts as 2 s).
fn root_client(i: usize, until: Instant) -> (Vec<Duration>, u32) {
    let s = UnixDatagram::bind_addr(&addr(&format!("soak-root-{i}"))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let req = format!(
        r#"{{"address":"10.10.{i}.2","ifname":"wwan{i}","addr_family":2,"cmd":0,"version":1}}"#
    );
    let (mut rtts, mut lost) = (Vec::new(), 0);
    let mut buf = [0u8; 600];
    while Instant::now() < until {
        let t = Instant::now();
        let ok = s.send_to_addr(req.as_bytes(), &addr(SOCK)).is_ok() && s.recv(&mut buf).is_ok();
        if ok {
            rtts.push(t.elapsed());
        } else {
            lost += 1;
            rtts.push(Duration::from_secs(2));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (rtts, lost)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: f64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60.0);
    if let Ok(s) = std::env::var("MHR_SOAK_FLOOD") {
        return flood(s.parse().unwrap());
    }
    if !is_root() {
        println!("soak: needs root (network namespace, uid 65534 sender); skipped");
        return;
    }
    let ns = Ns::new(format!("mhr-soak-{}", std::process::id()));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("s.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"socket_path":"{SOCK}","num_tables":64,"db_path":"{}"}}"#,
            dir.path().join("l.db").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let server = Kill(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                &support::program("table_allocator_server"),
            ])
            .arg("-c")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let server_pid = Command::new("pgrep")
        .args(["-n", "-f", &cfg.display().to_string()])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u32>()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let rss_before = rss_kb(server_pid);
    let mut flooder = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .arg(std::env::current_exe().unwrap())
        .env("MHR_SOAK_FLOOD", secs.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(flooder.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let flooder = Kill(flooder);
    ns.enter();
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let clients: Vec<_> = (0..ROOT_CLIENTS)
        .map(|i| std::thread::spawn(move || root_client(i, until)))
        .collect();
    let mut peak = rss_before;
    while Instant::now() < until {
        peak = peak.max(rss_kb(server_pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut rtts, mut lost) = (Vec::new(), 0);
    for c in clients {
        let (r, l) = c.join().unwrap();
        rtts.extend(r);
        lost += l;
    }
    line.clear();
    let _ = std::io::BufRead::read_line(&mut out, &mut line);
    drop(flooder);
    let log_bytes = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let n = rtts.len();
    let max = *rtts.iter().max().unwrap_or(&Duration::ZERO);
    println!("soak: {secs} s, {FLOOD_SOCKETS} flooding sockets (uid 65534, never read), {ROOT_CLIENTS} root clients renewing every 20 ms");
    println!(
        "  flood datagrams accepted by the kernel: {}",
        line.trim().trim_start_matches("sent ")
    );
    println!(
        "  root round trips: {n} ({lost} lost), p50 {}, p99 {}, max {}",
        ms(pct(&mut rtts, 0.5)),
        ms(pct(&mut rtts, 0.99)),
        ms(max)
    );
    println!("  server RSS: {rss_before} kB at start, peak {peak} kB");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let about_flood: usize = text
        .lines()
        .filter(|l| l.contains("refused") || l.contains("suppressed"))
        .map(|l| l.len() + 1)
        .sum();
    println!(
        "  server log: {log_bytes} bytes, of which {about_flood} about the flood (the rest: one line per root renewal)"
    );
    drop(server);
}
