//! Load generator for table_allocator_server: speaks wire protocol v1 from
//! 1, 8 and 64 concurrent clients over a 4096-table pool, with the database
//! on disk, and prints throughput, latency and the server's peak RSS.
//!
//! Run: `cargo bench --bench server_load` (the release server binary is used).
//! It binds abstract sockets named `tas-bench-<pid>*` in the current network
//! namespace and touches no routing.

mod support;

use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mhr::addr::Family;
use mhr::dgram::abstract_addr;
use mhr::protocol::{Action, LeaseKey, Reply, Request};

const TABLES: u32 = 4096;
const RENEW_ROUNDS: usize = 4;

struct ServerProc {
    child: Child,
    name: String,
}

impl ServerProc {
    fn start(dir: &Path, tag: &str, tables: u32) -> ServerProc {
        let name = format!("tas-bench-{}-{tag}", std::process::id());
        let db = dir.join(format!("{tag}.db"));
        let cfg = dir.join(format!("{tag}.json"));
        std::fs::write(
            &cfg,
            format!(
                r#"{{"socket_path":"{name}","table_offset":10000,"num_tables":{tables},
                "table_timeout":3600,"db_path":"{}","addr_families":{{"inet":true}}}}"#,
                db.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(support::program("table_allocator_server"));
        cmd.arg("-c")
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // The server dies with the benchmark, even if it is killed.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let server = ServerProc {
            child: cmd.spawn().expect("start server"),
            name,
        };
        // Wait until it answers.
        let probe = client_socket(&format!("{}-probe", server.name));
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let key = key("probe", 0);
        for _ in 0..100 {
            if call(&probe, &server.name, &key, Action::Release).is_some() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not start");
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client_socket(name: &str) -> UnixDatagram {
    let s = UnixDatagram::bind_addr(&abstract_addr(name, true).unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn key(client: &str, i: usize) -> LeaseKey {
    let address = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    LeaseKey::new(Family::Inet, &format!("{client}x{i}"), &address).unwrap()
}

fn call(sock: &UnixDatagram, server: &str, key: &LeaseKey, action: Action) -> Option<Reply> {
    let req = Request {
        action,
        key: *key,
        tag: None,
    };
    sock.send_to_addr(&req.encode(), &abstract_addr(server, true).unwrap())
        .ok()?;
    let mut buf = [0u8; 1024];
    let n = sock.recv(&mut buf).ok()?;
    Reply::decode(&buf[..n]).ok()
}

struct Phase {
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&mut self, p: f64) -> Duration {
        self.latencies.sort();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }
}

/// Runs `per_client(sock, client_index)` on `clients` threads at once.
fn phase(
    server: &str,
    clients: usize,
    keys_per_client: usize,
    rounds: usize,
    action: Action,
) -> Phase {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let server = server.to_owned();
            let barrier = barrier.clone();
            let sock = client_socket(&format!("{server}-c{c}-{action:?}"));
            std::thread::spawn(move || {
                let keys: Vec<_> = (0..keys_per_client)
                    .map(|i| key(&format!("c{c}"), i))
                    .collect();
                let mut lat = Vec::with_capacity(keys.len() * rounds);
                barrier.wait();
                for _ in 0..rounds {
                    for k in &keys {
                        let t = Instant::now();
                        match call(&sock, &server, k, action) {
                            Some(Reply::Lease { .. }) => {}
                            other => panic!("{k}: {other:?}"),
                        }
                        lat.push(t.elapsed());
                    }
                }
                lat
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.join().unwrap());
    }
    Phase {
        ops: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
    }
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn sqlite_rate(dir: &Path) -> f64 {
    let conn = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let n = 20_000;
    let start = Instant::now();
    for i in 0..n {
        conn.execute("INSERT INTO t VALUES (?1, 'x')", [i]).unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn bench_dir() -> PathBuf {
    // On disk, beside the build, not on a tmpfs.
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = bench_dir();
    println!(
        "table_allocator_server load, {TABLES} tables, database in {}",
        dir.display()
    );
    println!(
        "{:>7} {:>12} {:>12} {:>12} {:>14} {:>14}",
        "clients", "alloc/s", "renew/s", "release/s", "renew p50", "renew p99"
    );
    for clients in [1usize, 8, 64] {
        let server = ServerProc::start(&dir, &format!("c{clients}"), TABLES);
        let per = TABLES as usize / clients;
        let alloc = phase(&server.name, clients, per, 1, Action::Request);
        let mut renew = phase(&server.name, clients, per, RENEW_ROUNDS, Action::Request);
        let release = phase(&server.name, clients, per, 1, Action::Release);
        println!(
            "{:>7} {:>12.0} {:>12.0} {:>12.0} {:>14} {:>14}",
            clients,
            alloc.rate(),
            renew.rate(),
            release.rate(),
            us(renew.pct(0.5)),
            us(renew.pct(0.99)),
        );
    }
    let server = ServerProc::start(&dir, "rss", 65536);
    let alloc = phase(&server.name, 8, 8192, 1, Action::Request);
    println!(
        "65536 leases: {:.0} alloc/s, server peak RSS {:.1} MB",
        alloc.rate(),
        server.peak_rss_kib() as f64 / 1024.0
    );
    drop(server);
    println!(
        "sqlite single-row transactions on the same disk (WAL, synchronous=NORMAL): {:.0}/s",
        sqlite_rate(&dir)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
