//! The real table_allocator_client against the real server, each test in a
//! fresh network namespace with veth links.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const SOCK: &str = "tas_socket";

struct Lab {
    ns: Netns,
    dir: tempfile::TempDir,
    server: Option<Daemon>,
}

impl Lab {
    /// A namespace with the server and veth pairs `v0`/`p0`, `v1`/`p1`, ...
    fn new(tag: &str, extra: &str, links: usize) -> Lab {
        let ns = Netns::new(tag);
        for i in 0..links {
            ns.ip(&[
                "link",
                "add",
                &format!("v{i}"),
                "type",
                "veth",
                "peer",
                "name",
                &format!("p{i}"),
            ]);
            ns.ip(&["link", "set", &format!("v{i}"), "up"]);
            ns.ip(&["link", "set", &format!("p{i}"), "up"]);
        }
        let dir = tempfile::tempdir().unwrap();
        let config = write_server_config(dir.path(), SOCK, extra);
        let server = Some(start_server(&ns, &config, dir.path(), SOCK));
        Lab { ns, dir, server }
    }

    fn restart_server(&mut self) {
        self.stop_server();
        let config = self.dir.path().join("server.json");
        self.server = Some(start_server(&self.ns, &config, self.dir.path(), SOCK));
    }

    fn stop_server(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.signal(Signal::SIGTERM);
            s.wait_exit(Duration::from_secs(5));
        }
    }

    fn client(&self, args: &[&str]) -> Command {
        let mut c = self.ns.cmd(client_bin());
        c.args(args).args(["-d", SOCK]);
        c
    }

    /// Runs a backgrounding client; returns (stdout, exit status).
    fn run_client(&self, args: &[&str]) -> (String, i32, String) {
        let log = self.dir.path().join("client.log");
        let out = self.client(args).arg("-l").arg(&log).output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A client kept in the foreground; waits for its table line.
    fn foreground(&self, args: &[&str]) -> (Daemon, String) {
        let mut cmd = self.client(args);
        cmd.arg("-f").stdout(Stdio::piped());
        let log = self
            .dir
            .path()
            .join(format!("fg-{}.log", args.join("_").replace('/', "_")));
        let err = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null()).stderr(err);
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        (
            Daemon {
                child,
                stderr_path: log,
            },
            line.trim().to_owned(),
        )
    }
}

fn gone_within(ns: &Netns, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    if wait_for(limit, || {
        our_rules(ns, false).is_empty() && our_rules(ns, true).is_empty()
    }) {
        Some(start.elapsed())
    } else {
        None
    }
}

#[test]
fn grant_installs_the_exact_rules_v4_and_v6() {
    require_netns!();
    let lab = Lab::new("rules", "", 1);
    lab.ns.ip(&["addr", "add", "10.10.0.2/24", "dev", "v0"]);
    lab.ns
        .ip(&["addr", "add", "2001:db8:1::2/64", "dev", "v0", "nodad"]);
    let (out, code, err) =
        lab.run_client(&["-4", "-a", "10.10.0.2", "-n", "255.255.255.0", "-i", "v0"]);
    assert_eq!((out.as_str(), code), ("10000\n", 0), "{err}");
    let (out6, code6, err6) =
        lab.run_client(&["-6", "-a", "2001:db8:1::2", "-n", "64", "-i", "v0"]);
    assert_eq!((out6.as_str(), code6), ("10000\n", 0), "{err6}");
    assert_eq!(
        our_rules(&lab.ns, false),
        [
            "9000:\tfrom all oif v0 lookup 10000 proto 77",
            "10000:\tfrom 10.10.0.2 lookup 10000 proto 77",
            "20000:\tfrom all to 10.10.0.0/24 lookup 10000 proto 77",
            "91000:\tfrom all iif lo lookup 10000 proto 77",
        ]
    );
    assert_eq!(
        our_rules(&lab.ns, true),
        [
            "9000:\tfrom all oif v0 lookup 10000 proto 77",
            "10000:\tfrom 2001:db8:1::2 lookup 10000 proto 77",
            "20000:\tfrom all to 2001:db8:1::/64 lookup 10000 proto 77",
            "91000:\tfrom all iif lo lookup 10000 proto 77",
        ]
    );
    // Without -n the prefix comes from the kernel.
    lab.ns.ip(&["addr", "add", "10.20.0.2/16", "dev", "v0"]);
    let (out, _, err) = lab.run_client(&["-4", "-a", "10.20.0.2", "-i", "v0"]);
    assert_eq!(out, "10001\n", "{err}");
    assert!(our_rules(&lab.ns, false)
        .contains(&"20000:\tfrom all to 10.20.0.0/16 lookup 10001 proto 77".to_owned()));
}

#[test]
fn address_deletion_removes_rules_and_releases() {
    require_netns!();
    let lab = Lab::new("deladdr", "", 1);
    lab.ns.ip(&["addr", "add", "10.10.0.2/24", "dev", "v0"]);
    lab.ns
        .ip(&["addr", "add", "2001:db8:1::2/64", "dev", "v0", "nodad"]);
    assert_eq!(
        lab.run_client(&["-4", "-a", "10.10.0.2", "-n", "24", "-i", "v0"])
            .0,
        "10000\n"
    );
    assert_eq!(
        lab.run_client(&["-6", "-a", "2001:db8:1::2", "-n", "64", "-i", "v0"])
            .0,
        "10000\n"
    );
    assert_eq!(our_rules(&lab.ns, false).len(), 4);
    // A route that outlives its address (another interface's gateway).
    lab.ns.ip(&[
        "route",
        "add",
        "198.51.100.0/24",
        "dev",
        "v0",
        "table",
        "10000",
    ]);
    lab.ns.ip(&["addr", "del", "10.10.0.2/24", "dev", "v0"]);
    lab.ns.ip(&["addr", "del", "2001:db8:1::2/64", "dev", "v0"]);
    let took = gone_within(&lab.ns, Duration::from_millis(200));
    assert!(
        took.is_some(),
        "rules left: {:?}",
        our_rules(&lab.ns, false)
    );
    eprintln!("rules gone {:?} after ip addr del", took.unwrap());
    // The table goes back empty, so its next holder inherits nothing.
    assert!(wait_for(Duration::from_secs(1), || lab
        .ns
        .ip(&["route", "show", "table", "10000"])
        .trim()
        .is_empty()));
    // The lease was released: the next address gets the lowest table again.
    lab.ns.ip(&["addr", "add", "10.10.0.3/24", "dev", "v0"]);
    let (out, _, err) = lab.run_client(&["-4", "-a", "10.10.0.3", "-n", "24", "-i", "v0"]);
    assert_eq!(out, "10000\n", "{err}");
}

#[test]
fn link_deletion_removes_rules_and_releases() {
    require_netns!();
    let lab = Lab::new("dellink", "", 2);
    lab.ns.ip(&["addr", "add", "10.10.0.2/24", "dev", "v0"]);
    lab.ns.ip(&["addr", "add", "10.11.0.2/24", "dev", "v1"]);
    assert_eq!(
        lab.run_client(&["-4", "-a", "10.10.0.2", "-n", "24", "-i", "v0"])
            .0,
        "10000\n"
    );
    assert_eq!(
        lab.run_client(&["-4", "-a", "10.11.0.2", "-n", "24", "-i", "v1"])
            .0,
        "10001\n"
    );
    lab.ns.ip(&["link", "del", "v0"]);
    let start = Instant::now();
    let ok = wait_for(Duration::from_millis(200), || {
        our_rules(&lab.ns, false)
            .iter()
            .all(|r| r.contains("10001"))
    });
    assert!(ok, "rules left: {:?}", our_rules(&lab.ns, false));
    eprintln!("rules gone {:?} after ip link del", start.elapsed());
    assert_eq!(our_rules(&lab.ns, false).len(), 4, "v1's rules stay");
    lab.ns.ip(&["addr", "add", "10.12.0.2/24", "dev", "v1"]);
    // Released: the lowest table is free again (give the release a moment).
    let mut got = String::new();
    wait_for(Duration::from_secs(1), || {
        got = lab
            .run_client(&["-4", "-a", "10.12.0.2", "-n", "24", "-i", "v1"])
            .0;
        got == "10000\n"
    });
    assert_eq!(got, "10000\n");
}

#[test]
fn sigterm_removes_rules_and_releases() {
    require_netns!();
    let lab = Lab::new("term", "", 1);
    lab.ns.ip(&["addr", "add", "10.10.0.2/24", "dev", "v0"]);
    let (mut client, table) = lab.foreground(&["-4", "-a", "10.10.0.2", "-n", "24", "-i", "v0"]);
    assert_eq!(table, "10000");
    assert_eq!(our_rules(&lab.ns, false).len(), 4);
    client.signal(Signal::SIGTERM);
    let status = client
        .wait_exit(Duration::from_secs(5))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}: {}", client.log());
    assert!(our_rules(&lab.ns, false).is_empty());
    lab.ns.ip(&["addr", "add", "10.10.0.3/24", "dev", "v0"]);
    assert_eq!(
        lab.run_client(&["-4", "-a", "10.10.0.3", "-n", "24", "-i", "v0"])
            .0,
        "10000\n"
    );
}

#[test]
fn second_client_and_release_flag() {
    require_netns!();
    let lab = Lab::new("second", "", 1);
    lab.ns.ip(&["addr", "add", "10.10.0.2/24", "dev", "v0"]);
    lab.ns.ip(&["addr", "add", "10.10.0.9/24", "dev", "v0"]);
    assert_eq!(
        lab.run_client(&["-4", "-a", "10.10.0.9", "-n", "24", "-i", "v0"])
            .0,
        "10000\n"
    );
    assert_eq!(
        lab.run_client(&["-4", "-a", "10.10.0.2", "-n", "24", "-i", "v0"])
            .0,
        "10001\n"
    );
    // A second client for a running one prints its table and exits 0.
    let start = Instant::now();
    let (out, code, _) = lab.run_client(&["-4", "-a", "10.10.0.2", "-n", "24", "-i", "v0"]);
    assert_eq!((out.as_str(), code), ("10001\n", 0));
    assert!(start.elapsed() < Duration::from_secs(1));
    // -r stops the running client: its rules go, exit 0.
    let (_, code, err) = lab.run_client(&["-4", "-a", "10.10.0.2", "-i", "v0", "-r"]);
    assert_eq!(code, 0, "{err}");
    assert!(our_rules(&lab.ns, false)
        .iter()
        .all(|r| !r.contains("10001")));
    // With no client running, the release goes to the server: exit 3. `-r`
    // takes no value: the `-f` after it is a flag of its own.
    let (_, code, err) = lab.run_client(&["-4", "-a", "10.10.0.2", "-i", "v0", "-r", "-f"]);
    assert_eq!(code, 3, "{err}");
}

#[test]
fn no_server_prints_zero_after_five_attempts() {
    require_netns!();
    let mut lab = Lab::new("noserver", "", 1);
    lab.stop_server();
    lab.ns.ip(&["addr", "add", "10.10.0.2/24", "dev", "v0"]);
    let start = Instant::now();
    let (out, code, _) = lab.run_client(&["-4", "-a", "10.10.0.2", "-n", "24", "-i", "v0"]);
    let took = start.elapsed();
    assert_eq!((out.as_str(), code), ("0\n", 1));
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(13),
        "{took:?}"
    );
    assert!(our_rules(&lab.ns, false).is_empty());
}

#[test]
fn error_reply_prints_zero_at_once() {
    require_netns!();
    let lab = Lab::new("refused", r#", "addr_families": {"inet": true}"#, 1);
    lab.ns
        .ip(&["addr", "add", "2001:db8:1::2/64", "dev", "v0", "nodad"]);
    let start = Instant::now();
    let (out, code, _) = lab.run_client(&["-6", "-a", "2001:db8:1::2", "-n", "64", "-i", "v0"]);
    assert_eq!((out.as_str(), code), ("0\n", 1));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(our_rules(&lab.ns, true).is_empty());
    let log = std::fs::read_to_string(lab.dir.path().join("client.log")).unwrap();
    assert!(log.contains("family_disabled"), "{log}");
}

#[test]
fn bad_input_exits_non_zero_naming_the_value() {
    require_netns!();
    let lab = Lab::new("badin", "", 1);
    lab.ns.ip(&["addr", "add", "10.10.0.2/24", "dev", "v0"]);
    let cases: &[(&[&str], &str)] = &[
        (&["-4", "-a", "10.10.0.2", "-i", "nosuch0"], "nosuch0"),
        (&["-4", "-a", "10.10.0.7", "-i", "v0"], "10.10.0.7"),
        (&["-4", "-a", "10.10.0.300", "-i", "v0"], "10.10.0.300"),
        (&["-6", "-a", "10.10.0.2", "-i", "v0"], "10.10.0.2"),
        (
            &["-4", "-a", "10.10.0.2", "-n", "255.0.255.0", "-i", "v0"],
            "255.0.255.0",
        ),
        (&["-4", "-a", "10.10.0.2", "-n", "40", "-i", "v0"], "40"),
        (
            &["-4", "-a", "10.10.0.2", "-i", "waytoolonginterfacename"],
            "waytoolonginterfacename",
        ),
    ];
    for (args, value) in cases {
        let (out, code, err) = lab.run_client(args);
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(err.contains(value), "{args:?}: {err}");
        assert!(out.is_empty());
    }
    // A missing -d is a usage error too.
    let out = lab
        .ns
        .cmd(client_bin())
        .args(["-4", "-a", "10.10.0.2", "-i", "v0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--destination"));
    // -r and -f take no value: `-r -f` are two flags.
    assert!(
        our_rules(&lab.ns, false).is_empty(),
        "nothing left installed"
    );
}

#[test]
fn server_restart_and_lost_database() {
    require_netns!();
    let mut lab = Lab::new("restart", r#", "table_timeout": 2"#, 1);
    lab.ns.ip(&["addr", "add", "10.10.0.2/24", "dev", "v0"]);
    assert_eq!(
        lab.run_client(&["-4", "-a", "10.10.0.2", "-n", "24", "-i", "v0"])
            .0,
        "10000\n"
    );
    lab.ns.ip(&[
        "route",
        "add",
        "10.99.0.0/24",
        "dev",
        "v0",
        "table",
        "10000",
    ]);
    // The server goes away for longer than the lease: the rules stay.
    lab.stop_server();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(our_rules(&lab.ns, false).len(), 4);
    lab.restart_server();
    // It renews with the same table.
    let log_path = lab.dir.path().join("client.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(wait_for(Duration::from_secs(5), || {
        lab.server
            .as_ref()
            .unwrap()
            .log()
            .contains("ifname=v0 address=10.10.0.2")
    }));
    assert!(our_rules(&lab.ns, false)
        .iter()
        .all(|r| r.contains("lookup 10000")));
    // Now the server loses its database and table 10000 goes to someone
    // else: the client moves its rules and routes to its new table.
    lab.stop_server();
    for f in ["leases.db", "leases.db-wal", "leases.db-shm"] {
        let _ = std::fs::remove_file(lab.dir.path().join(f));
    }
    lab.restart_server();
    let other = lab.ns.socket("someone-else", true);
    other
        .send_to_addr(
            br#"{"address":"10.10.0.50","ifname":"v0","addr_family":2,"cmd":0,"version":1}"#,
            &abstract_addr(SOCK, true),
        )
        .unwrap();
    let mut buf = [0u8; 512];
    let n = other.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("\"table\":10000"));
    let moved = wait_for(Duration::from_secs(5), || {
        let rules = our_rules(&lab.ns, false);
        rules.len() == 4 && rules.iter().all(|r| r.contains("lookup 10001"))
    });
    assert!(moved, "{:?}\n{}", our_rules(&lab.ns, false), log());
    let routes = lab.ns.ip(&["route", "show", "table", "10001"]);
    assert!(routes.contains("10.99.0.0/24 dev v0"), "{routes}");
    assert!(lab.ns.ip(&["route", "show", "table", "10000"]).is_empty());
}

/// Two uplinks hand out the same subnet and the host gets the same address
/// on both (USB modems do this). A socket bound to each device leaves by that
/// device: shown by pinging an address only the peer behind it has.
#[test]
fn bound_sockets_leave_by_their_own_interface_with_a_shared_address() {
    require_netns!();
    let lab = Lab::new("shared", "", 0);
    let peers = [Netns::new("peerA"), Netns::new("peerB")];
    for (i, peer) in peers.iter().enumerate() {
        let (host_if, peer_if) = (format!("m{i}"), format!("up{i}"));
        lab.ns.ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if, "netns", &peer.name,
        ]);
        lab.ns.ip(&["link", "set", &host_if, "up"]);
        lab.ns.ip(&["addr", "add", "10.50.0.2/24", "dev", &host_if]);
        peer.ip(&["link", "set", &peer_if, "up"]);
        peer.ip(&["addr", "add", "10.50.0.1/24", "dev", &peer_if]);
        // Only this peer has this "internet" address.
        peer.ip(&[
            "addr",
            "add",
            &format!("198.51.100.{}/32", i + 1),
            "dev",
            "lo",
        ]);
    }
    let mut tables = Vec::new();
    for i in 0..2 {
        let ifname = format!("m{i}");
        let (out, _, err) = lab.run_client(&["-4", "-a", "10.50.0.2", "-n", "24", "-i", &ifname]);
        let table = out.trim().to_owned();
        assert!(table == "10000" || table == "10001", "{out} {err}");
        // What the hook would add to the table.
        lab.ns.ip(&[
            "route",
            "add",
            "10.50.0.0/24",
            "dev",
            &ifname,
            "src",
            "10.50.0.2",
            "table",
            &table,
        ]);
        lab.ns.ip(&[
            "route",
            "add",
            "default",
            "via",
            "10.50.0.1",
            "dev",
            &ifname,
            "table",
            &table,
        ]);
        tables.push(table);
    }
    assert_ne!(tables[0], tables[1]);
    let ping = |dev: &str, dst: &str| {
        lab.ns
            .cmd("ping")
            .args(["-c", "1", "-W", "1", "-I", dev, dst])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(ping("m0", "198.51.100.1"), "m0 reaches peer A");
    assert!(ping("m1", "198.51.100.2"), "m1 reaches peer B");
    assert!(!ping("m0", "198.51.100.2"), "m0 does not leave by m1");
    assert!(!ping("m1", "198.51.100.1"), "m1 does not leave by m0");
}

/// `mhr doctor --repair` while clients come up: it reads the kernel before
/// the lease database, so a rule made in between is never taken for a stale
/// one (read the other way round, a lease granted between the two reads
/// looked like rules without a lease).
#[test]
fn doctor_repair_never_removes_a_rule_made_while_it_looks() {
    require_netns!();
    let lab = Lab::new("repair", r#", "num_tables": 100"#, 1);
    let db = lab.dir.path().join("leases.db");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let doctor = {
        let (stop, ns, db) = (stop.clone(), lab.ns.name.clone(), db.clone());
        std::thread::spawn(move || {
            let mut removed = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out = Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &ns,
                        env!("CARGO_BIN_EXE_mhr"),
                        "doctor",
                        "--repair",
                        "--tas-socket",
                        SOCK,
                        "--db",
                    ])
                    .arg(&db)
                    .env("MHR_AGENT_SOCKET", "/nonexistent/agent.sock")
                    .output()
                    .unwrap();
                removed += String::from_utf8_lossy(&out.stdout)
                    .matches("removed stale rule")
                    .count();
            }
            removed
        })
    };
    for i in 0..40 {
        let a = format!("10.77.{}.{}", i / 200, 2 + i % 200);
        lab.ns.ip(&["addr", "add", &format!("{a}/32"), "dev", "v0"]);
        let (table, code, err) = lab.run_client(&["-4", "-a", &a, "-n", "32", "-i", "v0"]);
        assert_eq!(code, 0, "{table} {err}");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let removed = doctor.join().unwrap();
    assert_eq!(removed, 0, "doctor removed rules of live leases");
    assert_eq!(our_rules(&lab.ns, false).len(), 160);
}
