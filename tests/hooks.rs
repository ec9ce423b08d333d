//! `mhr` hook entry points against a real server in a namespace, for the
//! paths the lab does not take: NetworkManager, the main-table fallback, and
//! dhclient's TIMEOUT.

mod common;

use common::*;

/// No agent runs for these tests: the hooks take the seed's path (and a
/// lab's agent elsewhere on the machine is not theirs to ask).
const NO_AGENT: &str = "/nonexistent/agent.sock";
const SOCK: &str = "tas_socket";

struct Setup {
    ns: Netns,
    router: Netns,
    dir: tempfile::TempDir,
    server: Daemon,
}

/// A host namespace with `v0` linked to a router namespace (10.6.0.1/24 on
/// its side) and the allocator server.
fn setup(tag: &str, extra: &str) -> Setup {
    let ns = Netns::new(tag);
    let router = Netns::new(&format!("{tag}r"));
    ns.ip(&[
        "link",
        "add",
        "v0",
        "type",
        "veth",
        "peer",
        "name",
        "r0",
        "netns",
        &router.name,
    ]);
    ns.ip(&["link", "set", "v0", "up"]);
    router.ip(&["link", "set", "r0", "up"]);
    router.ip(&["addr", "add", "10.6.0.1/24", "dev", "r0"]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_server_config(dir.path(), SOCK, extra);
    let server = start_server(&ns, &config, dir.path(), SOCK);
    Setup {
        ns,
        router,
        dir,
        server,
    }
}

impl Setup {
    fn mhr(&self, sub: &str, vars: &[(&str, &str)]) -> std::process::Output {
        let mut c = self.ns.cmd(env!("CARGO_BIN_EXE_mhr"));
        c.arg(sub);
        self.hook_env(&mut c, vars);
        c.output().unwrap()
    }

    /// `mhr` as `mhr()` runs it, in a private mount namespace whose /dev
    /// holds only `null` and a `log` socket of ours: returns its output and
    /// the syslog datagrams it sent.
    fn mhr_with_syslog(
        &self,
        sub: &str,
        vars: &[(&str, &str)],
    ) -> (std::process::Output, Vec<String>) {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let dev = self.dir.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        let _ = std::fs::remove_file(dev.join("log"));
        // The host's /dev/null is bound onto this file inside the private
        // namespace (no mknod: the test directory may be mounted nodev).
        std::fs::write(dev.join("null"), "").unwrap();
        let sock = std::os::unix::net::UnixDatagram::bind(dev.join("log")).unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        // Drain as it comes: a full queue would block the sender.
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => lines.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(_) if stop2.load(Ordering::SeqCst) => return lines,
                    Err(_) => {}
                }
            }
        });
        let mut c = std::process::Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind /dev/null \"$MHR_TEST_DEV/null\" && mount --rbind \"$MHR_TEST_DEV\" /dev && exec \"$@\"")
            .args([
                "sh",
                "ip",
                "netns",
                "exec",
                &self.ns.name,
                env!("CARGO_BIN_EXE_mhr"),
                sub,
            ]);
        self.hook_env(&mut c, vars);
        c.env("MHR_TEST_DEV", &dev);
        let out = c.output().unwrap();
        stop.store(true, Ordering::SeqCst);
        (out, reader.join().unwrap())
    }

    fn hook_env(&self, c: &mut std::process::Command, vars: &[(&str, &str)]) {
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MHR_CLIENT", client_bin())
            .env("MHR_TAS_SOCKET", SOCK)
            .env("MHR_AGENT_SOCKET", NO_AGENT)
            .env("MHR_SERVERS_FILE", self.dir.path().join("servers"))
            .env("MHR_DNSMASQ_PID_FILE", self.dir.path().join("none.pid"))
            .env("MHR_CLIENT_LOG", self.dir.path().join("client.log"));
        for (k, v) in vars {
            c.env(k, v);
        }
    }
}

/// NetworkManager's own dispatcher script (01-ifupdown from Debian's
/// network-manager; scripts/install-deps.sh extracts it), with its
/// if-up.d directory pointed at one holding our shim.
const NM_DISPATCHER: &str = "/usr/local/share/multihomed-routing-tests/01-ifupdown";

#[test]
fn network_manager_dispatcher_routes_a_modem_on_its_ip_interface() {
    require_netns!();
    nm_dispatcher(false);
}

/// The same with `mhr agent` running: the hook reports to it and waits; the
/// agent makes the table, rules, routes and DNS line; no client runs.
#[test]
fn network_manager_dispatcher_reports_to_the_agent() {
    require_netns!();
    nm_dispatcher(true);
}

fn nm_dispatcher(with_agent: bool) {
    if !std::path::Path::new(NM_DISPATCHER).exists() {
        assert!(
            std::env::var_os("CI").is_none() && !nix::unistd::geteuid().is_root(),
            "{NM_DISPATCHER} missing: run scripts/install-deps.sh"
        );
        eprintln!("skipped: {NM_DISPATCHER} missing");
        return;
    }
    let s = setup(if with_agent { "nmdispa" } else { "nmdisp" }, "");
    let d = s.dir.path();
    let agent = with_agent.then(|| {
        let servers = d.join("servers");
        std::fs::write(&servers, "").unwrap();
        start_agent(
            &s.ns,
            d,
            SOCK,
            r#"{ interfaces: ["v*"], track: null }"#,
            &[],
        )
    });
    let agent_socket = if with_agent {
        s.ns.agent_socket()
    } else {
        NO_AGENT.to_owned()
    };
    let ifup_d = d.join("if-up.d");
    std::fs::create_dir_all(&ifup_d).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/network/multihomed-routing"
        ),
        ifup_d.join("multihomed-routing"),
    )
    .unwrap();
    let script = std::fs::read_to_string(NM_DISPATCHER)
        .unwrap()
        .replace("/etc/network/if-up.d", &ifup_d.display().to_string())
        .replace(
            "/etc/network/if-post-down.d",
            &d.join("if-post-down.d").display().to_string(),
        );
    std::fs::write(d.join("01-ifupdown"), script).unwrap();
    // What NetworkManager configured for a WWAN modem: it controls the
    // cdc-wdm0 device, IP runs on v0 (DEVICE_IP_IFACE, and $1).
    s.ns.ip(&["addr", "add", "10.6.0.7/24", "dev", "v0"]);
    s.ns.ip(&[
        "route", "add", "default", "via", "10.6.0.1", "dev", "v0", "metric", "700",
    ]);
    let out =
        s.ns.cmd("sh")
            .arg(d.join("01-ifupdown"))
            .args(["v0", "up"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MHR", env!("CARGO_BIN_EXE_mhr"))
            .env("MHR_DEFAULTS", "/nonexistent")
            .env("MHR_CLIENT", client_bin())
            .env("MHR_TAS_SOCKET", SOCK)
            .env("MHR_AGENT_SOCKET", &agent_socket)
            .env("MHR_SERVERS_FILE", d.join("servers"))
            .env("MHR_DNSMASQ_PID_FILE", d.join("none.pid"))
            .env("MHR_CLIENT_LOG", d.join("client.log"))
            .env("DEVICE_IFACE", "cdc-wdm0")
            .env("DEVICE_IP_IFACE", "v0")
            .env("CONNECTION_ID", "modem")
            .env("IP4_NUM_ADDRESSES", "1")
            .env("IP4_ADDRESS_0", "10.6.0.7/24 10.6.0.1")
            .env("IP4_GATEWAY", "10.6.0.1")
            .env("IP4_NAMESERVERS", "10.6.0.1")
            // An IPv6 address too: 01-ifupdown then runs if-up.d twice.
            .env("IP6_NUM_ADDRESSES", "1")
            .env("IP6_ADDRESS_0", "2001:db8:6::7/64 fe80::1")
            .output()
            .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = s.ns.ip(&["route", "show", "table", "10000"]);
    assert!(table.contains("default via 10.6.0.1 dev v0"), "{table}");
    assert_eq!(
        our_rules(&s.ns, false).len(),
        4,
        "{:?}",
        our_rules(&s.ns, false)
    );
    assert!(our_rules(&s.ns, false).iter().any(|r| r.contains("oif v0")));
    let servers = std::fs::read_to_string(d.join("servers")).unwrap();
    assert_eq!(servers, "server=10.6.0.1@v0@10.6.0.7\n");
    if let Some(agent) = agent {
        assert!(
            agent.log().contains("name servers written"),
            "{}",
            agent.log()
        );
        let pids =
            s.ns.cmd("ip")
                .args(["netns", "pids", &s.ns.name])
                .output()
                .unwrap();
        let clients = String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .filter(|p| {
                // comm is cut to 15 bytes (the server's too): argv[0].
                std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                    c.split(|b| *b == 0)
                        .next()
                        .is_some_and(|a| a.ends_with(b"table_allocator_client"))
                })
            })
            .count();
        assert_eq!(clients, 0, "no table_allocator_client with the agent");
    }
}

#[test]
fn network_manager_routes_go_to_the_table_and_main_is_kept() {
    require_netns!();
    let s = setup("nm", "");
    // What NetworkManager would have configured.
    s.ns.ip(&["addr", "add", "10.6.0.7/24", "dev", "v0"]);
    s.ns.ip(&[
        "route", "add", "default", "via", "10.6.0.1", "dev", "v0", "metric", "600",
    ]);
    let out = s.mhr(
        "ifup-hook",
        &[
            ("IFACE", "v0"),
            ("DEVICE_IFACE", "v0"),
            ("IP4_NUM_ADDRESSES", "1"),
            ("IP4_ADDRESS_0", "10.6.0.7/24 10.6.0.1"),
            ("IP4_GATEWAY", "10.6.0.1"),
            ("IP4_NUM_ROUTES", "1"),
            ("IP4_ROUTE_0", "172.16.0.0/12 10.6.0.254 100"),
            ("IP4_NAMESERVERS", "10.6.0.1"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = s.ns.ip(&["route", "show", "table", "10000"]);
    assert!(table.contains("default via 10.6.0.1 dev v0"), "{table}");
    assert!(
        table.contains("172.16.0.0/12 via 10.6.0.254 dev v0"),
        "{table}"
    );
    assert!(table.contains("10.6.0.0/24 dev v0"), "{table}");
    let main = s.ns.ip(&["route", "show", "table", "main"]);
    assert!(
        main.contains("default via 10.6.0.1 dev v0 metric 600"),
        "NetworkManager's route kept: {main}"
    );
    assert!(main.contains("10.6.0.0/24 dev v0"), "{main}");
    assert_eq!(our_rules(&s.ns, false).len(), 4);
    let servers = std::fs::read_to_string(s.dir.path().join("servers")).unwrap();
    assert_eq!(servers, "server=10.6.0.1@v0@10.6.0.7\n");
    // Consistent now; after the lease is released behind the client's back,
    // the rules are stale and `mhr status` says so with exit 4.
    let db = s.dir.path().join("leases.db");
    let status = |s: &Setup| {
        s.ns.cmd(env!("CARGO_BIN_EXE_mhr"))
            .args(["status", "--db", db.to_str().unwrap(), "--tas-socket", SOCK])
            .arg("--servers-file")
            .arg(s.dir.path().join("servers"))
            .output()
            .unwrap()
    };
    // NetworkManager's default in main beats our rules: status says so,
    // and doctor says which setting avoids it.
    let out = status(&s);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("default route in main not ours"), "{text}");
    let out =
        s.ns.cmd(env!("CARGO_BIN_EXE_mhr"))
            .args(["doctor", "--db", db.to_str().unwrap(), "--tas-socket", SOCK])
            .output()
            .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ipv4.never-default"), "{text}");
    // With ipv4.never-default, NetworkManager leaves main without it.
    s.ns.ip(&[
        "route", "del", "default", "via", "10.6.0.1", "dev", "v0", "metric", "600",
    ]);
    let out = status(&s);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.6.0.7/24"));
    let sock = s.ns.socket("releaser", true);
    sock.send_to_addr(
        br#"{"address":"10.6.0.7","ifname":"v0","addr_family":2,"cmd":1,"version":1}"#,
        &abstract_addr(SOCK, true),
    )
    .unwrap();
    let mut buf = [0u8; 512];
    sock.recv(&mut buf).unwrap();
    let out = status(&s);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stdout).contains("rules without a lease"));
    // `mhr doctor` advises; with --repair it removes the stale rules.
    let doctor = |repair: bool| {
        let mut c = s.ns.cmd(env!("CARGO_BIN_EXE_mhr"));
        c.args(["doctor", "--db", db.to_str().unwrap(), "--tas-socket", SOCK]);
        if repair {
            c.arg("--repair");
        }
        c.output().unwrap()
    };
    let out = doctor(false);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("-> remove them with `mhr doctor --repair`")
    );
    assert_eq!(
        our_rules(&s.ns, false).len(),
        4,
        "no repair without --repair"
    );
    let out = doctor(true);
    // Only the DNS path of this bare namespace is left to complain about.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().all(|l| l.starts_with("removed stale rule")
            || l.starts_with("DNS: ")
            || l == "no problems found"),
        "{text}"
    );
    assert!(our_rules(&s.ns, false).is_empty());
}

impl Setup {
    /// ifupdown's if-up.d hook for `inet static` 10.6.0.7/24 via 10.6.0.1
    /// on v0 (the address already added), with `extra` variables.
    fn ifup_static(&self, extra: &[(&str, &str)]) {
        let vars = [
            ("IFACE", "v0"),
            ("ADDRFAM", "inet"),
            ("METHOD", "static"),
            ("IF_ADDRESS", "10.6.0.7"),
            ("IF_NETMASK", "255.255.255.0"),
            ("IF_GATEWAY", "10.6.0.1"),
        ];
        let out = self.mhr("ifup-hook", &[&vars[..], extra].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn status(&self) -> (Option<i32>, String) {
        let out = self
            .ns
            .cmd(env!("CARGO_BIN_EXE_mhr"))
            .args(["status", "--tas-socket", SOCK, "--db"])
            .arg(self.dir.path().join("leases.db"))
            .arg("--servers-file")
            .arg(self.dir.path().join("servers"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn raw_request(&self, cmd: u8, ifname: &str, address: &str) {
        let sock = self.ns.socket(&format!("raw-{ifname}"), true);
        let req = format!(
            r#"{{"address":"{address}","ifname":"{ifname}","addr_family":2,"cmd":{cmd},"version":1}}"#
        );
        sock.send_to_addr(req.as_bytes(), &abstract_addr(SOCK, true))
            .unwrap();
        let mut buf = [0u8; 512];
        sock.recv(&mut buf).unwrap();
    }
}

/// Each inconsistency made by hand gives exit 4 and names itself; undoing
/// it gives exit 0 again. The status works while the server is down.
#[test]
fn status_exits_4_on_each_inconsistency() {
    require_netns!();
    let s = setup("st", "");
    s.ns.ip(&["addr", "add", "10.6.0.7/24", "dev", "v0"]);
    s.ifup_static(&[]);
    let (code, text) = s.status();
    assert_eq!(code, Some(0), "{text}");
    // The link state and the gateway are shown; the address below its row.
    let row = text
        .lines()
        .find(|l| l.starts_with("v0 "))
        .unwrap_or_default();
    assert!(row.contains(" all "), "{text}");
    assert!(
        text.contains("10.6.0.7/24   default via 10.6.0.1"),
        "{text}"
    );
    // -j and an interface filter.
    let json = |filter: &str| -> serde_json::Value {
        let out =
            s.ns.cmd(env!("CARGO_BIN_EXE_mhr"))
                .args(["status", "-j", "--tas-socket", SOCK, "--db"])
                .arg(s.dir.path().join("leases.db"))
                .arg(filter)
                .output()
                .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v0 = json("v*");
    assert_eq!(v0["addresses"].as_array().unwrap().len(), 1, "{v0}");
    assert_eq!(v0["addresses"][0]["gateway"], "10.6.0.1");
    assert!(v0["addresses"][0]["link"].is_string(), "{v0}");
    assert!(json("wwan*")["addresses"].as_array().unwrap().is_empty());

    // A rule deleted behind our back.
    s.ns.ip(&["rule", "del", "priority", "20000", "table", "10000"]);
    let (code, text) = s.status();
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("rule at priority 20000 is missing"), "{text}");
    // The metrics say so as series, and exit 0 so `> tmp && mv` goes on.
    let out =
        s.ns.cmd(env!("CARGO_BIN_EXE_mhr"))
            .args(["status", "--prometheus", "--tas-socket", SOCK, "--db"])
            .arg(s.dir.path().join("leases.db"))
            .output()
            .unwrap();
    let metrics = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{metrics}");
    assert!(metrics.contains("mhr_consistent 0\n"), "{metrics}");
    assert!(
        metrics.contains("mhr_rule_present{interface=\"v0\",family=\"inet\",table=\"10000\",priority=\"20000\"} 0\n"),
        "{metrics}"
    );
    s.ns.ip(&[
        "rule",
        "add",
        "priority",
        "20000",
        "to",
        "10.6.0.0/24",
        "lookup",
        "10000",
        "proto",
        "77",
    ]);
    assert_eq!(s.status().0, Some(0));

    // A lease nobody installed rules for.
    s.raw_request(0, "v9", "10.9.9.9");
    let (code, text) = s.status();
    assert_eq!(code, Some(4), "{text}");
    assert!(
        text.contains("lease without rules: table 10001 for 10.9.9.9 on v9"),
        "{text}"
    );
    s.raw_request(1, "v9", "10.9.9.9");
    assert_eq!(s.status().0, Some(0));

    // The server gone: the kernel's view and the leases are still shown.
    s.server.signal(nix::sys::signal::Signal::SIGKILL);
    let (code, text) = s.status();
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("server: NOT answering"), "{text}");
    assert!(text.contains("10.6.0.7/24"), "{text}");
}

#[test]
fn no_table_falls_back_to_main_with_the_ifindex_metric() {
    require_netns!();
    // The only table is taken: the client prints 0 at once.
    let s = setup("fallback", r#", "num_tables": 1"#);
    let taker = s.ns.socket("taker", true);
    taker
        .send_to_addr(
            br#"{"address":"10.99.0.1","ifname":"x0","addr_family":2,"cmd":0,"version":1}"#,
            &abstract_addr(SOCK, true),
        )
        .unwrap();
    let mut buf = [0u8; 512];
    taker.recv(&mut buf).unwrap();
    let (out, syslog) = s.mhr_with_syslog(
        "dhclient-hook",
        &[
            ("reason", "BOUND"),
            ("interface", "v0"),
            ("new_ip_address", "10.6.0.7"),
            ("new_subnet_mask", "255.255.255.0"),
            ("new_routers", "10.6.0.1"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Where a backgrounded dhclient's hook lines survive: syslog, as
    // `mhr[PID]`, the fallback a warning (LOG_DAEMON|LOG_WARNING = 28)
    // naming the interface and why.
    assert!(
        syslog.iter().any(|l| l.starts_with("<28>")
            && l.contains(" mhr[")
            && l.contains("no routing table for 10.6.0.7 on v0: the server refused")),
        "{syslog:?}"
    );
    let ifindex =
        s.ns.ip(&["-o", "link", "show", "v0"])
            .split(':')
            .next()
            .unwrap()
            .trim()
            .to_owned();
    let main = s.ns.ip(&["route", "show", "table", "main"]);
    assert!(
        main.contains(&format!(
            "default via 10.6.0.1 dev v0 proto 77 src 10.6.0.7 metric {ifindex}"
        )),
        "{main}"
    );
    assert!(
        main.contains(&format!(
            "10.6.0.0/24 dev v0 proto 77 scope link src 10.6.0.7 metric {ifindex}"
        )),
        "{main}"
    );
    assert!(our_rules(&s.ns, false).is_empty());
    // `mhr status` flags the fallback (exit 4).
    let db = s.dir.path().join("leases.db");
    let out =
        s.ns.cmd(env!("CARGO_BIN_EXE_mhr"))
            .args(["status", "--db", db.to_str().unwrap(), "--tas-socket", SOCK])
            .output()
            .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no-table fallback"));
    // The host still reaches the router.
    let ping =
        s.ns.cmd("ping")
            .args(["-c", "1", "-W", "1", "10.6.0.1"])
            .output()
            .unwrap();
    assert!(ping.status.success());
}

#[test]
fn timeout_uses_the_recorded_lease_only_when_the_router_answers() {
    require_netns!();
    let s = setup("timeout", "");
    let vars = |addr: &'static str, router: &'static str| {
        vec![
            ("reason", "TIMEOUT"),
            ("interface", "v0"),
            ("new_ip_address", addr),
            ("new_subnet_mask", "255.255.255.0"),
            ("new_routers", router),
        ]
    };
    // A router that does not answer: exit 2 (exit_with_hooks 2), address gone.
    let out = s.mhr("dhclient-hook", &vars("10.6.0.8", "10.6.0.77"));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!s.ns.ip(&["addr", "show", "v0"]).contains("10.6.0.8"));
    assert!(our_rules(&s.ns, false).is_empty());
    // A router that answers: the lease is used.
    let out = s.mhr("dhclient-hook", &vars("10.6.0.8", "10.6.0.1"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s
        .ns
        .ip(&["route", "show", "table", "10000"])
        .contains("default via 10.6.0.1"));
    // Bad variables change nothing.
    let out = s.mhr(
        "dhclient-hook",
        &[
            ("reason", "BOUND"),
            ("interface", "v0"),
            ("new_ip_address", "10.6.0.x"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("new_ip_address"));
    let out = s.mhr(
        "dhclient-hook",
        &[
            ("reason", "BOUND"),
            ("interface", "nosuch9"),
            ("new_ip_address", "10.6.0.9"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch9"));
    assert_eq!(
        our_rules(&s.ns, false).len(),
        4,
        "only the TIMEOUT lease's rules"
    );
}

/// dhclient -6's reasons through the hook: the address with its lifetimes,
/// its table and rules, its name servers; RENEW6 keeps the table; DEPREF6
/// deprecates; EXPIRE6 removes address, rules, lease and servers.
#[test]
fn dhcpv6_reasons_configure_and_remove_the_address() {
    require_netns!();
    let s = setup("d6", "");
    let servers = || std::fs::read_to_string(s.dir.path().join("servers")).unwrap_or_default();
    let vars = |reason: &'static str| {
        vec![
            ("reason", reason),
            ("interface", "v0"),
            ("new_ip6_address", "2001:db8:6::1a2"),
            ("new_ip6_prefixlen", "128"),
            ("new_max_life", "3600"),
            ("new_preferred_life", "1800"),
            ("new_dhcp6_name_servers", "2001:db8:6::53"),
        ]
    };
    let out = s.mhr("dhclient-hook", &vars("BOUND6"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr =
        s.ns.ip(&["-6", "addr", "show", "dev", "v0", "scope", "global"]);
    assert!(addr.contains("inet6 2001:db8:6::1a2/128"), "{addr}");
    assert!(
        addr.contains("valid_lft 3") && addr.contains("preferred_lft 1"),
        "{addr}"
    );
    let rules = our_rules(&s.ns, true);
    for want in [
        "9000:\tfrom all oif v0 lookup 10000 proto 77",
        "10000:\tfrom 2001:db8:6::1a2 lookup 10000 proto 77",
        "20000:\tfrom all to 2001:db8:6::1a2 lookup 10000 proto 77",
        "91000:\tfrom all iif lo lookup 10000 proto 77",
    ] {
        assert!(rules.iter().any(|r| r == want), "{want} not in {rules:?}");
    }
    assert_eq!(servers(), "server=2001:db8:6::53@v0@2001:db8:6::1a2\n");

    // RENEW6: same table, no second set of rules.
    let out = s.mhr("dhclient-hook", &vars("RENEW6"));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(our_rules(&s.ns, true).len(), 4);

    // DEPREF6.
    let out = s.mhr(
        "dhclient-hook",
        &[
            ("reason", "DEPREF6"),
            ("interface", "v0"),
            ("cur_ip6_address", "2001:db8:6::1a2"),
            ("cur_ip6_prefixlen", "128"),
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let addr =
        s.ns.ip(&["-6", "addr", "show", "dev", "v0", "scope", "global"]);
    assert!(addr.contains("deprecated"), "{addr}");

    // An IPv4 server of the same interface, which EXPIRE6 must leave.
    let mut c = s.ns.cmd(env!("CARGO_BIN_EXE_mhr"));
    c.args(["dns", "v0", "10.6.0.7", "10.6.0.1", "--servers-file"])
        .arg(s.dir.path().join("servers"))
        .args(["--dnsmasq-pid-file", "/nonexistent"]);
    check(&mut c);

    // EXPIRE6: everything of the DHCPv6 address goes.
    let out = s.mhr(
        "dhclient-hook",
        &[
            ("reason", "EXPIRE6"),
            ("interface", "v0"),
            ("old_ip6_address", "2001:db8:6::1a2"),
            ("old_ip6_prefixlen", "128"),
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(!s
        .ns
        .ip(&["-6", "addr", "show", "dev", "v0"])
        .contains("2001:db8:6::1a2"));
    assert!(
        wait_for(std::time::Duration::from_secs(1), || our_rules(&s.ns, true)
            .is_empty()),
        "{:?}",
        our_rules(&s.ns, true)
    );
    assert_eq!(servers(), "server=10.6.0.1@v0@10.6.0.7\n");
}

/// The seed's flow, with the real tools: a modem appears, udev runs `mhr
/// hotplug add` (writing `allow-hotplug` + `iface … inet dhcp` into the
/// source-directory), ifupdown's `ifup --allow=hotplug` (what its udev
/// helper runs) reads the stanza, runs dhclient, whose dhclient-script runs
/// our enter hook; on unplug `mhr hotplug remove` and the link going take
/// it all away. /etc's hook directories, /run and /var/lib/dhcp are this
/// test's own, in a private mount namespace.
#[test]
fn a_hotplugged_modem_comes_up_through_its_stanza_and_goes_cleanly() {
    require_netns!();
    let s = setup("hotplug", "");
    let d = s.dir.path();
    let p = |sub: &str| d.join(sub).display().to_string();
    // DHCP on the "modem's" side.
    let mut dhcp = s.router.cmd("dnsmasq");
    dhcp.args([
        "-k",
        "-C",
        "/dev/null",
        "--user=root",
        "--group=root",
        "--port=0",
    ])
    .args([
        "--interface=r0",
        "--bind-interfaces",
        "--dhcp-authoritative",
    ])
    .args(["--dhcp-range=10.6.0.50,10.6.0.60,255.255.255.0,1h"])
    .args(["--dhcp-option=3,10.6.0.1", "--dhcp-option=6,10.6.0.1"])
    .arg(format!("--dhcp-leasefile={}", p("r.leases")))
    .arg(format!("--pid-file={}", p("r.pid")));
    let _dhcp = Daemon::spawn(dhcp, d.join("dnsmasq.log"));
    for dir in [
        "enter.d",
        "exit.d",
        "if-up.d",
        "if-pre-up.d",
        "if-down.d",
        "if-post-down.d",
        "run",
        "varlib",
        "network-conf",
    ] {
        std::fs::create_dir_all(d.join(dir)).unwrap();
    }
    let mhr = env!("CARGO_BIN_EXE_mhr");
    std::fs::write(
        d.join("defaults"),
        format!(
            "MHR_CLIENT={}\nMHR_AGENT_SOCKET={NO_AGENT}\nMHR_TAS_SOCKET={SOCK}\nMHR_SERVERS_FILE={}\nMHR_DNSMASQ_PID_FILE={}\nMHR_CLIENT_LOG={}\nMHR_DHCLIENT_PID_DIR={}\nMHR_STANZA_DIR={}\nMHR_HOTPLUG_PATTERNS='ww*,v*'\n",
            client_bin().display(),
            p("servers"),
            p("none.pid"),
            p("client.log"),
            p("run"),
            p("network-conf"),
        ),
    )
    .unwrap();
    // dhclient gives its script a fresh environment: the hook file itself
    // names mhr and the settings, as a host's /etc/default does.
    let shim = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/contrib/{name}/multihomed-routing",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    std::fs::write(
        d.join("enter.d/multihomed-routing"),
        format!(
            "export MHR_DEFAULTS={}; MHR={mhr}\n{}",
            p("defaults"),
            shim("dhcp")
        ),
    )
    .unwrap();
    let ifup_hook = d.join("if-up.d/multihomed-routing");
    std::fs::write(&ifup_hook, shim("network")).unwrap();
    std::fs::set_permissions(
        &ifup_hook,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        d.join("interfaces"),
        format!("source-directory {}\n", p("network-conf")),
    )
    .unwrap();
    let udev = |action: &str| {
        check(
            s.ns.cmd(mhr)
                .args(["hotplug", action, "v0"])
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("INTERFACE", "v0")
                .env("MHR_DEFAULTS", d.join("defaults")),
        )
    };

    // The modem appears: udev's add.
    udev("add");
    let stanza = std::fs::read_to_string(d.join("network-conf/v0")).unwrap();
    assert!(
        stanza.contains("allow-hotplug v0\niface v0 inet dhcp"),
        "{stanza}"
    );
    // ifupdown's udev helper: ifup --allow=hotplug, with its real scripts.
    let binds = [
        ("enter.d", "/etc/dhcp/dhclient-enter-hooks.d"),
        ("exit.d", "/etc/dhcp/dhclient-exit-hooks.d"),
        ("if-up.d", "/etc/network/if-up.d"),
        ("if-pre-up.d", "/etc/network/if-pre-up.d"),
        ("if-down.d", "/etc/network/if-down.d"),
        ("if-post-down.d", "/etc/network/if-post-down.d"),
        ("varlib", "/var/lib/dhcp"),
        ("run", "/run"),
    ];
    let mut script = String::new();
    for (from, to) in binds {
        script += &format!("mkdir -p {to} && mount --bind {} {to} && ", p(from));
    }
    script += &format!(
        "exec ifup --allow=hotplug -i {} --state-dir {} v0",
        p("interfaces"),
        p("ifstate")
    );
    let out = run(s
        .ns
        .cmd("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("MHR", mhr)
        .env("MHR_DEFAULTS", d.join("defaults")));
    assert!(out.status.success(), "ifup: {out:?}");
    let table = s.ns.ip(&["route", "show", "table", "10000"]);
    assert!(
        table.contains("default via 10.6.0.1 dev v0"),
        "{table}\n{out:?}"
    );
    assert_eq!(our_rules(&s.ns, false).len(), 4);
    assert!(!s
        .ns
        .ip(&["route", "show", "table", "main"])
        .contains("default"));
    let servers = std::fs::read_to_string(d.join("servers")).unwrap();
    assert!(
        servers.starts_with("server=10.6.0.1@v0@10.6.0."),
        "{servers}"
    );
    let pid: i32 = std::fs::read_to_string(d.join("run/dhclient.v0.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "dhclient"
    );

    // Unplugged: udev's remove, and the link goes.
    udev("remove");
    s.ns.ip(&["link", "del", "v0"]);
    assert!(wait_for(std::time::Duration::from_secs(3), || our_rules(
        &s.ns, false
    )
    .is_empty()));
    assert!(wait_for(std::time::Duration::from_secs(2), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }));
    assert!(!d.join("network-conf/v0").exists());
    assert_eq!(std::fs::read_to_string(d.join("servers")).unwrap(), "");
}

/// A host that routes for a LAN: with MHR_DOWNSTREAM naming the LAN side,
/// forwarded traffic gets the uplink's table like the host's own unbound
/// traffic (main holds no uplink default: without it, unreachable).
#[test]
fn forwarded_traffic_from_a_downstream_lan_leaves_by_an_uplink() {
    require_netns!();
    let s = setup("fwd", "");
    let lan = Netns::new("fwdlan");
    s.ns.ip(&[
        "link", "add", "lan0", "type", "veth", "peer", "name", "l0", "netns", &lan.name,
    ]);
    s.ns.ip(&["link", "set", "lan0", "up"]);
    s.ns.ip(&["addr", "add", "192.168.50.1/24", "dev", "lan0"]);
    lan.ip(&["link", "set", "l0", "up"]);
    lan.ip(&["addr", "add", "192.168.50.10/24", "dev", "l0"]);
    lan.ip(&["route", "add", "default", "via", "192.168.50.1"]);
    check(
        s.ns.cmd("sysctl")
            .args(["-q", "-w", "net.ipv4.ip_forward=1"]),
    );
    // The "internet" behind the uplink, which routes the LAN back to us.
    s.router
        .ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"]);
    s.router
        .ip(&["route", "add", "192.168.50.0/24", "via", "10.6.0.7"]);
    s.ns.ip(&["addr", "add", "10.6.0.7/24", "dev", "v0"]);
    let route_get = |iif: &str| {
        s.ns.ip_status(&[
            "route",
            "get",
            "203.0.113.10",
            "from",
            "192.168.50.10",
            "iif",
            iif,
        ])
    };
    s.ifup_static(&[("MHR_DOWNSTREAM", "lan0")]);
    let rules = our_rules(&s.ns, false);
    assert!(
        rules
            .iter()
            .any(|r| r.contains("91000") && r.contains("iif lan0 lookup 10000")),
        "{rules:?}"
    );
    let got = route_get("lan0");
    let text = String::from_utf8_lossy(&got.stdout);
    assert!(
        got.status.success() && text.contains("via 10.6.0.1 dev v0 table 10000"),
        "{got:?}"
    );
    // `mhr route get` says the same, in our terms.
    let out = run(s.ns.cmd(env!("CARGO_BIN_EXE_mhr")).args([
        "route",
        "get",
        "203.0.113.10",
        "from",
        "192.168.50.10",
        "iif",
        "lan0",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("rule  91000:\tfrom all iif lan0 lookup 10000 (ours)"),
        "{text}"
    );
    assert!(text.contains("uplink v0 10.6.0.7"), "{text}");
    let out = run(s
        .ns
        .cmd(env!("CARGO_BIN_EXE_mhr"))
        .args(["route", "get", "10.6.0.1", "from", "10.6.0.7"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rule  10000:\tfrom 10.6.0.7 lookup 10000 (ours)"),
        "{text}"
    );
    // And real traffic: the LAN host reaches the internet through the host.
    let ping = run(lan.cmd("ping").args(["-c", "1", "-W", "2", "203.0.113.10"]));
    assert!(ping.status.success(), "{ping:?}");
    // `mhr status` still counts the four rules, the downstream one extra.
    let (code, text) = s.status();
    assert_eq!(code, Some(0), "{text}");
    // The address goes: its downstream rule goes with the others.
    s.ns.ip(&["addr", "del", "10.6.0.7/24", "dev", "v0"]);
    assert!(wait_for(std::time::Duration::from_secs(3), || our_rules(
        &s.ns, false
    )
    .is_empty()));
    assert!(!route_get("lan0").status.success());
}

/// The host name from the lease, as dhclient-script would set it (the hook
/// unsets `reason`, so it does not): only over `localhost` and the like.
/// In a UTS namespace of the test's own: the machine's name is not touched.
#[test]
fn the_lease_names_the_host_only_where_no_name_was_chosen() {
    require_netns!();
    let s = setup("hostname", "");
    let named = |current: &str, offered: &str| {
        let mut c = std::process::Command::new("unshare");
        c.args(["--uts", "sh", "-c"])
            .arg("hostname \"$START\" && \"$@\" >/dev/null 2>&1; hostname")
            .args([
                "sh",
                "ip",
                "netns",
                "exec",
                &s.ns.name,
                env!("CARGO_BIN_EXE_mhr"),
                "dhclient-hook",
            ]);
        s.hook_env(
            &mut c,
            &[
                ("reason", "BOUND"),
                ("interface", "v0"),
                ("new_ip_address", "10.6.0.7"),
                ("new_subnet_mask", "255.255.255.0"),
                ("new_routers", "10.6.0.1"),
                ("new_host_name", offered),
            ],
        );
        c.env("START", current);
        check(&mut c).trim().to_owned()
    };
    assert_eq!(named("localhost", "modem-7"), "modem-7");
    assert_eq!(named("edge-router", "modem-7"), "edge-router");
    // A hostile option is ignored.
    assert_eq!(named("localhost", "x;reboot"), "localhost");
}

/// Through Debian's own dhclient-script (a copy whose hook directories are
/// this test's): EXPIRE removes the interface's DNS lines and dhclient-script
/// deconfigures, after which the table client removes the rules; and when
/// the hook fails (here: no table client to run), `reason` stays set, so
/// dhclient-script configures the interface in main as it would without us
/// (the uplink works; `mhr status` then reports the default route in main).
#[test]
fn dhclient_script_runs_the_hook_for_expire_and_after_a_failure() {
    require_netns!();
    let s = setup("dscript", "");
    let d = s.dir.path();
    for dir in ["enter.d", "exit.d"] {
        std::fs::create_dir_all(d.join(dir)).unwrap();
    }
    let script = std::fs::read_to_string("/sbin/dhclient-script")
        .unwrap()
        .replace(
            "/etc/dhcp/dhclient-enter-hooks.d",
            &d.join("enter.d").display().to_string(),
        )
        .replace(
            "/etc/dhcp/dhclient-exit-hooks.d",
            &d.join("exit.d").display().to_string(),
        );
    std::fs::write(d.join("dhclient-script"), script).unwrap();
    let shim = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/dhcp/multihomed-routing"
    ))
    .unwrap();
    let hook = |client: &str| {
        std::fs::write(
            d.join("enter.d/multihomed-routing"),
            format!(
                "export MHR_DEFAULTS=/nonexistent MHR_AGENT_SOCKET={NO_AGENT} MHR_CLIENT={client} MHR_TAS_SOCKET={SOCK} MHR_SERVERS_FILE={} MHR_DNSMASQ_PID_FILE={} MHR_CLIENT_LOG={}\nMHR={}\n{shim}",
                d.join("servers").display(),
                d.join("none.pid").display(),
                d.join("client.log").display(),
                env!("CARGO_BIN_EXE_mhr"),
            ),
        )
        .unwrap();
    };
    let dhclient_script = |vars: &[(&str, &str)]| {
        let mut c = s.ns.cmd("sh");
        c.arg(d.join("dhclient-script"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        for (k, v) in vars {
            c.env(k, v);
        }
        run(&mut c)
    };
    let bound = [
        ("reason", "BOUND"),
        ("interface", "v0"),
        ("new_ip_address", "10.6.0.7"),
        ("new_subnet_mask", "255.255.255.0"),
        ("new_broadcast_address", "10.6.0.255"),
        ("new_routers", "10.6.0.1"),
        ("new_domain_name_servers", "10.6.0.1"),
    ];
    hook(&client_bin().display().to_string());
    let out = dhclient_script(&bound);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(our_rules(&s.ns, false).len(), 4);
    assert!(std::fs::read_to_string(d.join("servers"))
        .unwrap()
        .contains("@v0@10.6.0.7"));

    let expire = [
        ("reason", "EXPIRE"),
        ("interface", "v0"),
        ("old_ip_address", "10.6.0.7"),
        ("old_subnet_mask", "255.255.255.0"),
        ("old_routers", "10.6.0.1"),
    ];
    let out = dhclient_script(&expire);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(d.join("servers")).unwrap(), "");
    assert!(!s.ns.ip(&["addr", "show", "v0"]).contains("10.6.0.7"));
    assert!(wait_for(std::time::Duration::from_secs(3), || our_rules(
        &s.ns, false
    )
    .is_empty()));

    // The hook fails: dhclient-script configures main itself.
    hook("/nonexistent/table_allocator_client");
    let out = dhclient_script(&bound);
    assert!(out.status.success(), "{out:?}");
    assert!(our_rules(&s.ns, false).is_empty());
    let main = s.ns.ip(&["route", "show", "table", "main"]);
    assert!(main.contains("default via 10.6.0.1 dev v0"), "{main}");
    assert!(s.ns.ip(&["addr", "show", "v0"]).contains("10.6.0.7/24"));
}
