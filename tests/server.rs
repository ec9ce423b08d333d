//! The real table_allocator_server binary, in its own network namespace,
//! spoken to over padded abstract names as the original client does.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

struct Lab {
    ns: Netns,
    dir: tempfile::TempDir,
    socket: String,
    server: Option<Daemon>,
}

impl Lab {
    fn new(tag: &str, extra: &str) -> Lab {
        let ns = Netns::new(tag);
        let dir = tempfile::tempdir().unwrap();
        let socket = "tas_ns".to_owned();
        let config = write_server_config(dir.path(), &socket, extra);
        let server = start_server(&ns, &config, dir.path(), &socket);
        Lab {
            ns,
            dir,
            socket,
            server: Some(server),
        }
    }

    fn restart(&mut self) {
        self.server = None;
        let config = self.dir.path().join("server.json");
        self.server = Some(start_server(
            &self.ns,
            &config,
            self.dir.path(),
            &self.socket,
        ));
    }

    fn server(&mut self) -> &mut Daemon {
        self.server.as_mut().unwrap()
    }

    fn client(&self, name: &str) -> Client {
        Client {
            sock: self.ns.socket(name, true),
            server: self.socket.clone(),
        }
    }
}

struct Client {
    sock: UnixDatagram,
    server: String,
}

impl Client {
    fn send_raw(&self, bytes: &[u8]) {
        self.sock
            .send_to_addr(bytes, &abstract_addr(&self.server, true))
            .unwrap();
    }

    fn recv_raw(&self) -> Vec<u8> {
        let mut buf = [0u8; 2048];
        let n = self.sock.recv(&mut buf).expect("reply from server");
        buf[..n].to_vec()
    }

    fn call_raw(&self, bytes: &[u8]) -> Value {
        self.send_raw(bytes);
        serde_json::from_slice(&self.recv_raw()).unwrap()
    }

    fn call(&self, cmd: u8, family: u8, ifname: &str, address: &str) -> Value {
        let req = json!({"address": address, "ifname": ifname, "addr_family": family, "cmd": cmd, "version": 1});
        self.call_raw(req.to_string().as_bytes())
    }

    fn request(&self, ifname: &str, address: &str) -> u64 {
        let r = self.call(0, 2, ifname, address);
        assert_eq!(r["cmd"], 2, "{r}");
        r["table"].as_u64().unwrap()
    }

    fn release(&self, ifname: &str, address: &str) {
        let r = self.call(1, 2, ifname, address);
        assert_eq!(r, json!({"version":1,"cmd":2,"table":0,"lease_expires":0}));
    }
}

fn raw_clock() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_RAW)
        .unwrap()
        .tv_sec() as u64
}

#[test]
fn replays_the_captured_vectors() {
    require_netns!();
    let lab = Lab::new("vec", "");
    let vectors: Value =
        serde_json::from_str(&std::fs::read_to_string("tests/vectors/protocol-v1.json").unwrap())
            .unwrap();
    let client = lab.client(vectors["client_name"].as_str().unwrap());
    for ex in vectors["exchanges"].as_array().unwrap() {
        let Some(expected) = ex["response"].as_str() else {
            continue;
        };
        let before = raw_clock();
        client.send_raw(ex["request"].as_str().unwrap().as_bytes());
        let got = String::from_utf8(client.recv_raw()).unwrap();
        let reply: Value = serde_json::from_str(&got).unwrap();
        // Byte for byte, but for the clock-dependent expiry.
        let expires = reply["lease_expires"].as_u64().unwrap();
        let normalized = if expires == 0 {
            got.clone()
        } else {
            got.replace(
                &format!("\"lease_expires\":{expires}"),
                "\"lease_expires\":X",
            )
        };
        let want: Value = serde_json::from_str(expected).unwrap();
        let want_norm = if want["lease_expires"] == 0 {
            expected.to_owned()
        } else {
            expected.replace(
                &format!("\"lease_expires\":{}", want["lease_expires"]),
                "\"lease_expires\":X",
            )
        };
        assert_eq!(normalized, want_norm, "{}", ex["what"]);
        if expires != 0 {
            let after = raw_clock();
            assert!(
                expires >= before + 3600 && expires <= after + 3601,
                "lease_expires {expires} not raw clock + timeout ({before}..{after})"
            );
        }
    }
}

#[test]
fn renewal_release_exhaustion_and_errors() {
    require_netns!();
    let lab = Lab::new("life", r#", "num_tables": 3"#);
    let c = lab.client("test-client");
    assert_eq!(c.request("eth1", "10.0.0.2"), 10000);
    assert_eq!(c.request("eth2", "10.0.0.2"), 10001);
    // Renewal: same table.
    assert_eq!(c.request("eth1", "10.0.0.2"), 10000);
    // IPv6 is its own pool.
    let v6 = c.call(0, 10, "eth1", "2001:db8::2");
    assert_eq!(v6["table"], 10000, "{v6}");
    assert_eq!(c.request("eth3", "10.0.0.4"), 10002);
    let full = c.call(0, 2, "eth4", "10.0.0.5");
    assert_eq!(full["cmd"], 3, "{full}");
    assert_eq!(full["error"], "pool_exhausted");
    c.release("eth2", "10.0.0.2");
    // Releasing what does not exist answers the same.
    c.release("eth9", "10.0.0.9");
    // Lowest free first.
    assert_eq!(c.request("eth4", "10.0.0.5"), 10001);
    // Disabled family.
    let unspec = c.call(0, 0, "eth1", "10.0.0.2");
    assert_eq!(unspec["error"], "family_disabled", "{unspec}");
}

#[test]
fn bad_input_gets_an_error_and_the_next_request_works() {
    require_netns!();
    let lab = Lab::new("bad", "");
    let c = lab.client("bad-client");
    let long_ifname = json!({"address":"10.0.0.1","ifname":"abcdefghijklmnop","addr_family":2,"cmd":0,"version":1}).to_string();
    let oversized = format!(
        r#"{{"address":"10.0.0.1","ifname":"eth0","tag":"{}","addr_family":2,"cmd":0,"version":1}}"#,
        "x".repeat(600)
    );
    let huge = vec![b'{'; 70000];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "malformed"),
        (b"".to_vec(), "malformed"),
        (b"[1,2,3]".to_vec(), "not_object"),
        (b"42".to_vec(), "not_object"),
        (long_ifname.into_bytes(), "bad_ifname"),
        (
            br#"{"address":"10.0.0.1","ifname":"eth0","addr_family":2,"cmd":9,"version":1}"#
                .to_vec(),
            "bad_cmd",
        ),
        (
            br#"{"address":"10.0.0.1","ifname":"eth0","addr_family":3,"cmd":0,"version":1}"#
                .to_vec(),
            "bad_family",
        ),
        (
            br#"{"address":"fe80::1","ifname":"eth0","addr_family":2,"cmd":0,"version":1}"#
                .to_vec(),
            "bad_address",
        ),
        (
            br#"{"address":"10.0.0.1","ifname":"eth0","addr_family":10,"cmd":0,"version":1}"#
                .to_vec(),
            "bad_address",
        ),
        (
            br#"{"address":"10.0.0.1","ifname":"eth0","addr_family":2,"cmd":0,"version":7}"#
                .to_vec(),
            "bad_version",
        ),
        (oversized.into_bytes(), "too_large"),
        (huge, "too_large"),
    ];
    for (bytes, code) in cases {
        let r = c.call_raw(&bytes);
        assert_eq!(r["cmd"], 3, "{r}");
        assert_eq!(
            r["error"],
            code,
            "{r} for {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
        );
        assert!(r["message"].as_str().unwrap().len() > 3);
        // No malformed request creates a lease: the next one gets the lowest.
        assert_eq!(c.request("good0", "10.1.0.1"), 10000);
        c.release("good0", "10.1.0.1");
    }
}

#[test]
fn random_datagrams_never_hurt_the_server() {
    require_netns!();
    let lab = Lab::new("fuzz", "");
    let c = lab.client("fuzz-client");
    // A small xorshift: reproducible noise, JSON-ish and not.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pieces: [&[u8]; 8] = [
        b"{",
        b"}",
        b"\"cmd\":",
        b"\"address\":\"",
        b"10.0.0.1",
        b"\"ifname\":",
        b"\x00\xff",
        b"\"version\":1,",
    ];
    for _ in 0..2000 {
        let mut d = Vec::new();
        for _ in 0..(next() % 12) {
            if next() % 3 == 0 {
                d.extend_from_slice(&next().to_le_bytes()[..(next() % 8) as usize]);
            } else {
                d.extend_from_slice(pieces[(next() % 8) as usize]);
            }
        }
        let r = c.call_raw(&d);
        assert_eq!(r["cmd"], 3, "{r} for {d:?}");
    }
    assert_eq!(
        c.request("eth0", "10.0.0.1"),
        10000,
        "no lease was created by noise"
    );
}

#[test]
fn non_root_sender_is_refused() {
    require_netns!();
    let lab = Lab::new("cred", "");
    let sock = lab.ns.socket("nobody-client", true);
    let server = lab.socket.clone();
    let reply: Value = std::thread::spawn(move || {
        // setresuid on this thread only (the raw syscall, not glibc's
        // process-wide wrapper); the kernel stamps the datagram with it.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(rc, 0);
        let req = br#"{"address":"10.0.0.1","ifname":"eth0","addr_family":2,"cmd":0,"version":1}"#;
        sock.send_to_addr(req, &abstract_addr(&server, true))
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = sock.recv(&mut buf).unwrap();
        serde_json::from_slice(&buf[..n]).unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(reply["error"], "not_permitted", "{reply}");
    let c = lab.client("root-client");
    assert_eq!(
        c.request("eth0", "10.0.0.1"),
        10000,
        "the refused request left no lease"
    );
}

#[test]
fn leases_survive_restart() {
    require_netns!();
    let mut lab = Lab::new("restart", "");
    let c = lab.client("restart-client");
    assert_eq!(c.request("eth1", "10.0.0.2"), 10000);
    assert_eq!(c.request("eth2", "10.0.0.3"), 10001);
    c.release("eth1", "10.0.0.2");
    lab.server().signal(Signal::SIGTERM);
    let status = lab
        .server()
        .wait_exit(Duration::from_secs(5))
        .expect("server exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    lab.restart();
    assert_eq!(
        c.request("eth2", "10.0.0.3"),
        10001,
        "renewal after restart keeps the table"
    );
    assert_eq!(c.request("eth3", "10.0.0.4"), 10000);
}

#[test]
fn kill_9_during_a_burst_loses_no_acknowledged_lease() {
    require_netns!();
    let mut lab = Lab::new("kill", r#", "num_tables": 65536"#);
    let socket = lab.socket.clone();
    // Four clients keep requesting new leases while the server is killed.
    let mut workers = Vec::new();
    for w in 0..4 {
        let sock = lab.ns.socket(&format!("burst-{w}"), true);
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let socket = socket.clone();
        workers.push(std::thread::spawn(move || {
            let mut acked = Vec::new();
            for i in 0..100_000 {
                let ifname = format!("b{w}x{i}");
                let req = json!({"address":"10.0.0.1","ifname":ifname,"addr_family":2,"cmd":0,"version":1});
                if sock
                    .send_to_addr(req.to_string().as_bytes(), &abstract_addr(&socket, true))
                    .is_err()
                {
                    break;
                }
                let mut buf = [0u8; 512];
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let r: Value = serde_json::from_slice(&buf[..n]).unwrap();
                        // Stop at an error reply (the pool may run out).
                        let Some(table) = r["table"].as_u64() else { break };
                        acked.push((ifname, table));
                    }
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    lab.server().signal(Signal::SIGKILL);
    let acked: Vec<(String, u64)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(acked.len() > 50, "burst too small: {}", acked.len());
    lab.restart();
    let c = lab.client("check-client");
    let mut tables = std::collections::HashSet::new();
    for (ifname, table) in &acked {
        assert_eq!(
            c.request(ifname, "10.0.0.1"),
            *table,
            "lease of {ifname} lost"
        );
        assert!(tables.insert(*table), "table {table} held twice");
    }
    // A new lease gets a table nobody holds.
    let fresh = c.request("fresh", "10.0.0.1");
    assert!(!tables.contains(&fresh));
    eprintln!("{} acknowledged leases survived kill -9", acked.len());
}

#[test]
fn leases_expire_at_their_deadline() {
    require_netns!();
    let lab = Lab::new("expire", r#", "table_timeout": 1"#);
    let c = lab.client("exp-client");
    assert_eq!(c.request("eth1", "10.0.0.2"), 10000);
    assert_eq!(c.request("eth2", "10.0.0.3"), 10001);
    std::thread::sleep(Duration::from_millis(600));
    // Renewed in time: keeps its table while eth1's lease runs out.
    assert_eq!(c.request("eth2", "10.0.0.3"), 10001);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        c.request("eth3", "10.0.0.4"),
        10000,
        "expired lease was reaped"
    );
    let mut lab = lab;
    let log = lab.server().log();
    assert!(log.contains("lease expired"), "{log}");
}

#[test]
fn log_path_gets_one_line_per_event() {
    require_netns!();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tas.log");
    let lab = Lab::new(
        "logpath",
        &format!(r#", "log_path": "{}", "tabel_offset": 1"#, log.display()),
    );
    let c = lab.client("log-client");
    assert_eq!(c.request("eth1", "10.0.0.2"), 10000);
    c.request("eth1", "10.0.0.2");
    c.release("eth1", "10.0.0.2");
    c.call_raw(b"nope");
    let text = std::fs::read_to_string(&log).unwrap();
    for what in [
        "lease granted",
        "lease renewed",
        "lease released",
        "refused: malformed",
        "unknown key \"tabel_offset\"",
    ] {
        assert!(text.contains(what), "{what} missing:\n{text}");
    }
    assert!(
        text.contains("table=10000 family=inet ifname=eth1 address=10.0.0.2"),
        "{text}"
    );
}

#[test]
fn metrics_file_counts_leases_and_refusals() {
    require_netns!();
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("tas.prom");
    let lab = Lab::new(
        "metrics",
        &format!(
            r#", "metrics_path": "{}", "metrics_interval": 1"#,
            prom.display()
        ),
    );
    let c = lab.client("metrics-client");
    assert_eq!(c.request("eth1", "10.0.0.2"), 10000);
    c.request("eth1", "10.0.0.2");
    c.request("eth2", "10.0.0.3");
    c.release("eth2", "10.0.0.3");
    c.call_raw(b"nope");
    c.call_raw(b"[1]");
    let want = [
        "table_allocator_leases{family=\"inet\"} 1\n",
        "table_allocator_pool_size{family=\"inet\"} 32\n",
        "table_allocator_grants_total 2\n",
        "table_allocator_renewals_total 1\n",
        "table_allocator_releases_total 1\n",
        "table_allocator_refusals_total{reason=\"malformed\"} 1\n",
        "table_allocator_refusals_total{reason=\"not_object\"} 1\n",
        "# TYPE table_allocator_grants_total counter\n",
    ];
    let ok = wait_for(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&prom).unwrap_or_default();
        want.iter().all(|w| text.contains(w))
    });
    let text = std::fs::read_to_string(&prom).unwrap_or_default();
    assert!(ok, "metrics file:\n{text}");
}

/// `mhr status` asks whether the server answers: no log line, no refusal
/// counted, however often it runs.
#[test]
fn a_status_probe_leaves_no_trace() {
    require_netns!();
    let dir = tempfile::tempdir().unwrap();
    let (prom, log) = (dir.path().join("tas.prom"), dir.path().join("tas.log"));
    let lab = Lab::new(
        "ping",
        &format!(
            r#", "metrics_path": "{}", "metrics_interval": 1, "log_path": "{}""#,
            prom.display(),
            log.display()
        ),
    );
    for _ in 0..3 {
        let out = run(lab
            .ns
            .cmd(env!("CARGO_BIN_EXE_mhr"))
            .args(["status", "--json", "--tas-socket", &lab.socket, "--db"])
            .arg(dir.path().join("none.db")));
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(st["server_reachable"], true, "{st}");
    }
    assert!(wait_for(Duration::from_secs(3), || {
        std::fs::read_to_string(&prom).is_ok_and(|t| t.contains("table_allocator_grants_total"))
    }));
    std::thread::sleep(Duration::from_millis(1100));
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(
        text.lines()
            .filter(|l| l.starts_with("table_allocator_refusals_total"))
            .all(|l| l.ends_with(" 0")),
        "{text}"
    );
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!logged.contains("refused"), "{logged}");
}

#[test]
fn a_burst_of_fifty_clients_gets_every_reply() {
    require_netns!();
    let lab = Lab::new("burst", r#", "num_tables": 100"#);
    let socks: Vec<_> = (0..50)
        .map(|i| lab.ns.socket(&format!("eth{i}-10.0.0.{i}-2"), true))
        .collect();
    for (i, s) in socks.iter().enumerate() {
        let req = json!({"address":format!("10.0.0.{i}"),"ifname":format!("eth{i}"),"addr_family":2,"cmd":0,"version":1});
        s.send_to_addr(
            req.to_string().as_bytes(),
            &abstract_addr(&lab.socket, true),
        )
        .unwrap();
    }
    let mut tables = std::collections::HashSet::new();
    for s in &socks {
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf).expect("every client gets its reply");
        let r: Value = serde_json::from_slice(&buf[..n]).unwrap();
        assert!(tables.insert(r["table"].as_u64().unwrap()));
    }
    assert_eq!(tables.len(), 50);
}

#[test]
fn unpadded_client_names_get_replies_too() {
    require_netns!();
    let lab = Lab::new("short", "");
    let sock = lab.ns.socket("short-name", false);
    sock.send_to_addr(
        br#"{"address":"10.0.0.1","ifname":"eth0","addr_family":2,"cmd":0,"version":1}"#,
        &abstract_addr(&lab.socket, true),
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).unwrap();
    let r: Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert_eq!(r["table"], 10000);
}

fn server_with_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(server_bin())
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configs_are_refused_at_start() {
    // No namespace needed: the server exits before binding.
    for (text, key) in [
        (r#"{"table_offset": 0}"#, "table_offset"),
        (r#"{"table_offset": 250, "num_tables": 10}"#, "table_offset"),
        (r#"{"table_timeout": 0}"#, "table_timeout"),
        (r#"{"table_timeout": "3600"}"#, "table_timeout"),
        (r#"{"addr_families": {"inet": false}}"#, "addr_families"),
        (
            r#"{"table_offset": 4294967290, "num_tables": 10}"#,
            "num_tables",
        ),
    ] {
        let (ok, err) = server_with_config(text);
        assert!(!ok, "{text} accepted");
        assert!(err.contains(key), "{text}: {err}");
    }
    let (ok, err) = server_with_config("{ nope");
    assert!(!ok);
    assert!(err.contains("not valid JSON"), "{err}");
    let out = Command::new(server_bin())
        .args(["-c", "/nonexistent/x.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.json"));
    assert!(server_bin().exists());
}

#[test]
fn under_systemd_lines_carry_journald_priorities_and_no_timestamp() {
    require_netns!();
    let ns = Netns::new("journal");
    let dir = tempfile::tempdir().unwrap();
    let config = write_server_config(dir.path(), "tas_j", "");
    let mut cmd = ns.cmd(server_bin());
    cmd.arg("-c").arg(&config).env("JOURNAL_STREAM", "8:12345");
    let mut d = Daemon::spawn(cmd, dir.path().join("journal.log"));
    assert!(wait_for(Duration::from_secs(5), || d
        .log()
        .contains("ready")));
    d.signal(Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(5));
    let log = d.log();
    for line in log.lines() {
        assert!(line.starts_with("<6>") || line.starts_with("<4>"), "{log}");
        assert!(
            !line.contains(" INFO ") && !line.starts_with("<6>20"),
            "{log}"
        );
    }
    assert!(log.contains("<6>table allocator server ready"), "{log}");
}
