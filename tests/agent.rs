//! `mhr agent` on a lab host, with the real configurers: dhcpcd (with our
//! hook), busybox udhcpc (with our script), dhclient with our enter hook,
//! a static `ip addr add`, and SLAAC. Every ISP is a namespace running
//! dnsmasq, owning 203.0.113.10 where it answers whoami.lab with its name.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const SOCK: &str = "tas_agent_test";
const INTERNET: &str = "203.0.113.10";
const INTERNET6: &str = "2001:db8:ffff::10";

struct Lab {
    host: Netns,
    isps: Vec<Netns>,
    dir: tempfile::TempDir,
    server: Option<Daemon>,
    agent: Option<Daemon>,
    procs: Vec<Daemon>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let host = Netns::new(tag);
        let dir = tempfile::tempdir().unwrap();
        let config = write_server_config(dir.path(), SOCK, "");
        let server = start_server(&host, &config, dir.path(), SOCK);
        let d = dir.path();
        std::fs::write(d.join("servers"), "").unwrap();
        std::fs::create_dir_all(d.join("etc-default")).unwrap();
        let defaults = format!(
            "MHR_TAS_SOCKET={SOCK}\nMHR_SERVERS_FILE={}\nMHR_DNSMASQ_PID_FILE={}\nMHR_CLIENT={}\nMHR_CLIENT_LOG={}\nMHR_AGENT_SOCKET={}\nMHR_AGENT_STATE={}\n",
            d.join("servers").display(),
            d.join("resolver.pid").display(),
            client_bin().display(),
            d.join("client.log").display(),
            host.agent_socket(),
            d.join("agent-state.json").display(),
        );
        std::fs::write(d.join("etc-default/multihomed-routing"), &defaults).unwrap();
        let lab = Lab {
            host,
            isps: Vec::new(),
            dir,
            server: Some(server),
            agent: None,
            procs: Vec::new(),
        };
        // The host's resolver, fed by our servers file.
        let out = run(lab.host.cmd("dnsmasq").args([
            "-C",
            "/dev/null",
            "--user=root",
            "--group=root",
            &format!("--pid-file={}", lab.p("resolver.pid")),
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--no-resolv",
            "--no-hosts",
            &format!("--servers-file={}", lab.p("servers")),
        ]));
        assert!(out.status.success(), "resolver: {out:?}");
        lab
    }

    fn p(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }

    /// ISP `i` on the host's `wan{i}`: `net`.1/24, DHCP handing out
    /// `net`.100 when `dhcp`, and RAs for `net6`::/64 when given.
    fn isp(&mut self, i: usize, net: &str, dhcp: bool, net6: Option<&str>) {
        let isp = Netns::new(&format!("i{i}"));
        self.host.ip(&[
            "link",
            "add",
            &format!("wan{i}"),
            "type",
            "veth",
            "peer",
            "name",
            "lan",
            "netns",
            &isp.name,
        ]);
        self.host.ip(&["link", "set", &format!("wan{i}"), "up"]);
        isp.ip(&["link", "set", "lan", "up"]);
        isp.ip(&["addr", "add", &format!("{net}.1/24"), "dev", "lan"]);
        isp.ip(&["addr", "add", &format!("{INTERNET}/32"), "dev", "lo"]);
        let mut args = vec![
            "-C".to_owned(),
            "/dev/null".into(),
            "--user=root".into(),
            "--group=root".into(),
            format!("--pid-file={}", self.p(&format!("isp{i}.pid"))),
            "--bind-interfaces".into(),
            format!("--listen-address={net}.1"),
            format!("--listen-address={INTERNET}"),
            "--no-resolv".into(),
            "--no-hosts".into(),
            format!("--txt-record=whoami.lab,isp{i}"),
        ];
        if dhcp {
            args.extend([
                format!("--dhcp-range={net}.100,{net}.100,255.255.255.0,1h"),
                format!("--dhcp-option=option:router,{net}.1"),
                format!("--dhcp-option=option:dns-server,{net}.1"),
                "--dhcp-authoritative".into(),
                format!("--dhcp-leasefile={}", self.p(&format!("isp{i}.leases"))),
            ]);
        }
        if let Some(n6) = net6 {
            isp.ip(&["addr", "add", &format!("{n6}::1/64"), "dev", "lan", "nodad"]);
            isp.ip(&["addr", "add", &format!("{INTERNET6}/128"), "dev", "lo"]);
            args.extend([
                "--enable-ra".into(),
                "--ra-param=lan,10".into(),
                "--interface=lan".into(),
                format!("--listen-address={INTERNET6}"),
                format!("--dhcp-range={n6}::,ra-stateless,64,1h"),
            ]);
        }
        let out = run(isp.cmd("dnsmasq").args(&args));
        assert!(out.status.success(), "isp{i}: {out:?}");
        self.isps.push(isp);
    }

    fn start_agent(&mut self, extra: &str) {
        self.start_agent_with(extra, &[]);
    }

    fn start_agent_with(&mut self, extra: &str, args: &[&str]) {
        let cfg = self.dir.path().join("agent.json");
        std::fs::write(
            &cfg,
            format!(
                "{{ interfaces: [\"wan*\"], {}state_file: \"{}\"{extra} }}",
                if extra.contains("track:") {
                    ""
                } else {
                    "track: null, "
                },
                self.p("agent-state.json")
            ),
        )
        .unwrap();
        let mut c = self.host.cmd(env!("CARGO_BIN_EXE_mhr"));
        c.arg("agent")
            .arg("-c")
            .arg(&cfg)
            .args(args)
            .env("MHR_DEFAULTS", self.p("etc-default/multihomed-routing"));
        let n = std::fs::read_dir(self.dir.path()).unwrap().count();
        self.agent = Some(Daemon::spawn(
            c,
            self.dir.path().join(format!("agent-{n}.log")),
        ));
        let agent = self.agent.as_ref().unwrap();
        assert!(
            wait_for(Duration::from_secs(5), || agent
                .log()
                .contains("agent started")),
            "{}",
            agent.log()
        );
    }

    /// `mhr ARGS` in the host, with the lab's settings file.
    fn mhr(&self, args: &[&str]) -> std::process::Output {
        run(self
            .host
            .cmd(env!("CARGO_BIN_EXE_mhr"))
            .args(args)
            .env("MHR_DEFAULTS", self.p("etc-default/multihomed-routing")))
    }

    /// `ip -n HOST ARGS...` written as one string.
    fn ip(&self, line: &str) -> String {
        self.host.ip(&line.split_whitespace().collect::<Vec<_>>())
    }

    fn agent_log(&self) -> String {
        let mut logs = String::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("agent-") && name.ends_with(".log") {
                logs += &std::fs::read_to_string(e.path()).unwrap_or_default();
            }
        }
        logs
    }

    /// A command in the host namespace with a private mount namespace in
    /// which `binds` (host path, mount point) are bind-mounted and
    /// `tmpfs` directories are fresh.
    fn private(&self, binds: &[(String, &str)], tmpfs: &[&str], exec: &str) -> Command {
        let mut script = String::new();
        for t in tmpfs {
            script += &format!("mkdir -p {t} && mount -t tmpfs tmpfs {t} && ");
        }
        for (from, to) in binds {
            script += &format!("mkdir -p {to} && mount --bind {from} {to} && ");
        }
        script += &format!("exec {exec}");
        let mut c = self.host.cmd("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
        c
    }

    fn probe(&self, server: &str, source: &str, device: &str) -> String {
        let out = run(self.host.cmd(env!("CARGO_BIN_EXE_mhr")).args([
            "probe",
            server,
            "whoami.lab",
            "--source",
            source,
            "--device",
            device,
        ]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn table_of(&self, address: &str) -> Option<String> {
        let rules = self
            .host
            .ip(&[if address.contains(':') { "-6" } else { "-4" }, "rule"]);
        rules
            .lines()
            .find(|l| l.starts_with("10000:") && l.contains(&format!("from {address} ")))
            .and_then(|l| l.split("lookup ").nth(1))
            .map(|t| t.split_whitespace().next().unwrap_or("").to_owned())
    }
}

fn path_with_bins() -> String {
    format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin_dir().display())
}

#[test]
fn every_configurer_gets_its_table_and_its_own_isp() {
    require_netns!();
    let mut lab = Lab::new("ag");
    lab.isp(1, "192.168.8", true, Some("2001:db8:8"));
    // ISP2 hands out the same subnet and address as ISP1 (USB modems do).
    lab.isp(2, "192.168.8", true, None);
    lab.isp(3, "10.30.0", true, None);
    lab.isp(4, "172.16.4", false, None);
    lab.start_agent("");
    let d = lab.dir.path().to_owned();
    let defaults_dir = d.join("etc-default").display().to_string();

    // wan1: dhcpcd, with our hook as its only hook.
    std::fs::create_dir_all(d.join("dhcpcd-hooks")).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/dhcpcd/90-multihomed-routing"
        ),
        d.join("dhcpcd-hooks/90-multihomed-routing"),
    )
    .unwrap();
    let mut c = lab.private(
        &[
            (
                d.join("dhcpcd-hooks").display().to_string(),
                "/usr/lib/dhcpcd/dhcpcd-hooks",
            ),
            (defaults_dir.clone(), "/etc/default"),
        ],
        &["/run/dhcpcd", "/var/lib/dhcpcd"],
        "dhcpcd -4 -B -A --noipv4ll -f /dev/null -o domain_name_servers wan1",
    );
    c.env("PATH", path_with_bins());
    lab.procs.push(Daemon::spawn(c, d.join("dhcpcd.log")));
    // wan2: busybox udhcpc with our script.
    let mut c = lab.host.cmd("udhcpc");
    c.args(["-f", "-i", "wan2", "-s"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/udhcpc/multihomed-routing"
        ))
        .env("PATH", path_with_bins())
        .env("MHR_DEFAULTS", lab.p("etc-default/multihomed-routing"));
    lab.procs.push(Daemon::spawn(c, d.join("udhcpc.log")));
    // wan3: dhclient, dhclient-script and our enter hook (dhclient gives
    // its script a fresh environment: the hook names mhr and the settings).
    std::fs::create_dir_all(d.join("enter.d")).unwrap();
    std::fs::write(
        d.join("enter.d/multihomed-routing"),
        format!(
            "MHR={}\nexport MHR_DEFAULTS={}\n. {}\n",
            env!("CARGO_BIN_EXE_mhr"),
            lab.p("etc-default/multihomed-routing"),
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/contrib/dhcp/multihomed-routing"
            ),
        ),
    )
    .unwrap();
    let c = lab.private(
        &[(
            d.join("enter.d").display().to_string(),
            "/etc/dhcp/dhclient-enter-hooks.d",
        )],
        &["/var/lib/dhcp"],
        &format!(
            "dhclient -4 -d -pf {} -lf {} wan3",
            lab.p("dhclient.pid"),
            lab.p("dhclient.leases")
        ),
    );
    lab.procs.push(Daemon::spawn(c, d.join("dhclient.log")));
    // wan4: a static address and its default route, as an admin adds them.
    lab.ip("addr add 172.16.4.2/24 dev wan4");
    lab.ip("route add default via 172.16.4.1 dev wan4");

    let ready = wait_for(Duration::from_secs(30), || {
        our_rules(&lab.host, false).len() == 16 && our_rules(&lab.host, true).len() >= 4
    });
    assert!(
        ready,
        "rules: {:?} {:?}\nagent: {}\ndhcpcd: {}\nudhcpc: {}\ndhclient: {}",
        our_rules(&lab.host, false),
        our_rules(&lab.host, true),
        lab.agent_log(),
        std::fs::read_to_string(d.join("dhcpcd.log")).unwrap_or_default(),
        std::fs::read_to_string(d.join("udhcpc.log")).unwrap_or_default(),
        std::fs::read_to_string(d.join("dhclient.log")).unwrap_or_default(),
    );
    // Each uplink's traffic, bound to its address and its device, is
    // answered by its own ISP; wan1 and wan2 share address and subnet.
    for (i, a) in [
        (1, "192.168.8.100"),
        (2, "192.168.8.100"),
        (3, "10.30.0.100"),
        (4, "172.16.4.2"),
    ] {
        assert!(
            wait_for(Duration::from_secs(5), || lab.probe(
                INTERNET,
                a,
                &format!("wan{i}")
            ) == format!("isp{i}")),
            "wan{i}: {}\n{}\n{}",
            lab.probe(INTERNET, a, &format!("wan{i}")),
            lab.ip("rule"),
            lab.ip("route show table all"),
        );
    }
    let slaac = lab
        .host
        .ip(&["-6", "addr", "show", "dev", "wan1", "scope", "global"])
        .lines()
        .find_map(|l| l.trim().strip_prefix("inet6 2001:db8:8:"))
        .map(|rest| format!("2001:db8:8:{}", rest.split('/').next().unwrap()))
        .expect("a SLAAC address on wan1");
    assert!(
        wait_for(Duration::from_secs(15), || lab
            .probe(INTERNET6, &slaac, "wan1")
            == "isp1"),
        "SLAAC: {}\n{}\n{}",
        lab.ip("-6 rule"),
        lab.ip("-6 route show table all"),
        lab.agent_log(),
    );
    // No uplink default in main, either family (RA routes leave main
    // within a pass, 1 s, of their table's coming).
    assert_eq!(lab.ip("route show default"), "");
    assert!(
        wait_for(Duration::from_secs(3), || !lab
            .host
            .ip(&["-6", "route", "show", "default"])
            .contains("wan")),
        "{}\n{}",
        lab.ip("-6 route show table all"),
        lab.agent_log()
    );
    // DNS: the dhcpcd and udhcpc uplinks' servers, each through its own
    // interface and address; the host's resolver answers through them.
    let servers = std::fs::read_to_string(d.join("servers")).unwrap();
    for line in [
        "server=192.168.8.1@wan1@192.168.8.100",
        "server=192.168.8.1@wan2@192.168.8.100",
        "server=10.30.0.1@wan3@10.30.0.100",
    ] {
        assert!(
            servers.contains(line),
            "{line} missing:\n{servers}\ndhclient: {}\nagent: {}",
            std::fs::read_to_string(d.join("dhclient.log")).unwrap_or_default(),
            lab.agent_log()
        );
    }
    // The dhcpcd and udhcpc hooks handed their servers to the agent.
    let log = lab.agent_log();
    for i in [1, 2] {
        assert!(
            log.lines()
                .any(|l| l.contains("name servers from a hook") && l.contains(&format!("wan{i}"))),
            "{log}"
        );
    }
    // The dhclient hook asked the agent for wan3's table: no
    // table_allocator_client runs in the host.
    let pids = run(Command::new("ip").args(["netns", "pids", &lab.host.name]));
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !cmd.contains("table_allocator_client"),
            "a client runs: {cmd}"
        );
    }
    let answer = lab.probe("127.0.0.1", "127.0.0.1", "lo");
    assert!(answer.starts_with("isp"), "resolver answered {answer:?}");

    // A dhcpcd renewal (SIGUSR1) re-adds its routes: nothing in the
    // tables moves and no rule is ever missing.
    let t1 = lab.table_of("192.168.8.100").unwrap();
    let before = lab.host.ip(&["route", "show", "table", &t1]);
    let rules_before = our_rules(&lab.host, false);
    lab.procs[0].signal(nix::sys::signal::Signal::SIGUSR1);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(our_rules(&lab.host, false), rules_before);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lab.host.ip(&["route", "show", "table", &t1]), before);
    assert_eq!(lab.ip("route show default"), "");
}

/// `ip rule` in the host, sampled every 10 ms on a thread until stopped.
fn sample_rules(
    ns: &str,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<Vec<String>>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let ns = ns.to_owned();
    let h = std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop2.load(Ordering::SeqCst) {
            let out = Command::new("ip")
                .args(["-n", &ns, "rule"])
                .output()
                .unwrap();
            samples.push(String::from_utf8_lossy(&out.stdout).into_owned());
            std::thread::sleep(Duration::from_millis(10));
        }
        samples
    });
    (stop, h)
}

fn ours(rules: &str) -> Vec<&str> {
    rules.lines().filter(|l| l.contains("proto 77")).collect()
}

#[test]
fn restarts_and_kill_9_keep_every_rule_and_table() {
    require_netns!();
    let mut lab = Lab::new("ar");
    lab.isp(4, "172.16.4", false, None);
    lab.ip("addr add 172.16.4.2/24 dev wan4");
    lab.ip("addr add 172.16.4.3/24 dev wan4");
    lab.ip("route add default via 172.16.4.1 dev wan4");
    lab.start_agent("");
    assert!(
        wait_for(Duration::from_secs(5), || our_rules(&lab.host, false).len()
            == 8),
        "{:?}\n{}",
        our_rules(&lab.host, false),
        lab.agent_log()
    );
    let rules = our_rules(&lab.host, false);
    let tables = (lab.table_of("172.16.4.2"), lab.table_of("172.16.4.3"));
    // Traffic all along: a ping from each address, every 20 ms.
    let mut pings: Vec<Daemon> = ["172.16.4.2", "172.16.4.3"]
        .iter()
        .map(|a| {
            let mut c = lab.host.cmd("sh");
            c.args([
                "-c",
                &format!(
                    "exec ping -n -i 0.02 -W 1 -I {a} {INTERNET} > {}",
                    lab.p(&format!("ping-{a}.out"))
                ),
            ]);
            Daemon::spawn(c, lab.dir.path().join(format!("ping-{a}.log")))
        })
        .collect();

    // SIGTERM and a new start, with rules sampled every 10 ms.
    let (stop, sampler) = sample_rules(&lab.host.name);
    std::thread::sleep(Duration::from_millis(100));
    let mut old = lab.agent.take().unwrap();
    old.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        old.wait_exit(Duration::from_secs(5)).is_some(),
        "{}",
        old.log()
    );
    lab.start_agent("");
    std::thread::sleep(Duration::from_millis(500));
    // And kill -9: nothing is lost either.
    let killed = lab.agent.take().unwrap();
    killed.signal(nix::sys::signal::Signal::SIGKILL);
    drop(killed);
    lab.start_agent("");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let samples = sampler.join().unwrap();
    assert!(samples.len() > 50, "{} samples", samples.len());
    for s in &samples {
        assert_eq!(
            ours(s),
            rules.iter().map(String::as_str).collect::<Vec<_>>(),
            "a sample lost a rule:\n{s}"
        );
    }
    assert_eq!(
        (lab.table_of("172.16.4.2"), lab.table_of("172.16.4.3")),
        tables
    );
    assert_eq!(lab.ip("route show default"), "");
    let state = std::fs::read_to_string(lab.p("agent-state.json")).unwrap_or_default();
    assert!(
        wait_for(Duration::from_secs(3), || {
            std::fs::read_to_string(lab.p("agent-state.json"))
                .is_ok_and(|s| s.matches("\"table\": 100").count() == 2)
        }),
        "adopted after kill -9: {state}"
    );
    // mhr status shows the agent's live view.
    let out = lab.mhr(&[
        "status",
        "--json",
        "--agent-state",
        &lab.p("agent-state.json"),
    ]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["agent"]["running"], true, "{st}");
    assert_eq!(st["agent"]["addresses"], 2, "{st}");
    assert_eq!(st["addresses"].as_array().unwrap().len(), 2, "{st}");
    for p in &mut pings {
        p.signal(nix::sys::signal::Signal::SIGINT);
        p.wait_exit(Duration::from_secs(2));
    }
    for a in ["172.16.4.2", "172.16.4.3"] {
        // Traffic went on across both restarts: at most the probes in
        // flight at the end are unanswered.
        let log = std::fs::read_to_string(lab.dir.path().join(format!("ping-{a}.out"))).unwrap();
        let stats = log
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| panic!("ping {a}: {log}"));
        let n = |word: &str| -> u32 {
            let i = stats.find(word).unwrap();
            stats[..i]
                .split_whitespace()
                .last()
                .unwrap()
                .parse()
                .unwrap()
        };
        let (sent, got) = (n(" packets transmitted"), n(" received"));
        assert!(sent > 30 && got + 2 >= sent, "ping from {a}: {stats}");
    }

    // An address removed, then the link unplugged: clean within 200 ms.
    let t = Instant::now();
    lab.ip("addr del 172.16.4.3/24 dev wan4");
    assert!(wait_for(Duration::from_secs(2), || our_rules(
        &lab.host, false
    )
    .len()
        == 4));
    let removed = t.elapsed();
    let t = Instant::now();
    lab.ip("link del wan4");
    assert!(wait_for(Duration::from_secs(2), || our_rules(
        &lab.host, false
    )
    .is_empty()));
    let unplugged = t.elapsed();
    assert!(
        removed < Duration::from_millis(200) && unplugged < Duration::from_millis(200),
        "address removal took {removed:?}, unplugging {unplugged:?}"
    );
    // --cleanup was not asked for: stopping leaves nothing behind to clean
    // here (the addresses are gone), and the agent exits 0.
    let mut a = lab.agent.take().unwrap();
    a.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        a.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn a_manager_that_fights_for_main_is_left_main_with_advice() {
    require_netns!();
    let mut lab = Lab::new("af");
    lab.isp(4, "172.16.4", false, None);
    lab.ip("addr add 172.16.4.2/24 dev wan4");
    lab.start_agent(", fight_limit: 3, fight_window_s: 30");
    assert!(wait_for(Duration::from_secs(5), || our_rules(
        &lab.host, false
    )
    .len()
        == 4));
    // A second agent in the same namespace refuses to start, and says why.
    let out = lab.mhr(&["agent", "-c", &lab.p("agent.json")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1)
            && err.contains("another mhr agent answers")
            && err.contains("mhr"),
        "{out:?}"
    );
    // Name servers through the agent's control socket: `mhr dns` as root
    // hands them over; uid 65534 cannot even reach the socket.
    let sock = lab.host.agent_socket();
    let py = format!(
        "import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
         try:\n    s.connect({sock:?}); print('connected')\nexcept OSError as e: print(e.strerror)"
    );
    let out = run(lab.host.cmd("setpriv").args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "/usr/bin/python3",
        "-c",
        &py,
    ]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Permission denied",
        "{out:?}"
    );
    assert_eq!(std::fs::read_to_string(lab.p("servers")).unwrap(), "");
    let out = lab.mhr(&["dns", "wan4", "172.16.4.2", "172.16.4.1"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(lab.p("servers")).unwrap(),
        "server=172.16.4.1@wan4@172.16.4.2\n"
    );
    assert!(
        lab.agent_log().contains("name servers from a hook"),
        "{}",
        lab.agent_log()
    );
    // A manager that puts its default back every 50 ms.
    let mut c = lab.host.cmd("sh");
    c.args([
        "-c",
        "while :; do ip route add default via 172.16.4.1 dev wan4 2>/dev/null; sleep 0.05; done",
    ]);
    let fighter = Daemon::spawn(c, lab.dir.path().join("fighter.log"));
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::read_to_string(
            lab.p("agent-state.json")
        )
        .is_ok_and(|s| s.contains("\"main_kept\": [\n    {"))),
        "{}",
        lab.agent_log()
    );
    drop(fighter);
    assert!(
        lab.agent_log().contains("ipv4.route-table"),
        "{}",
        lab.agent_log()
    );
    // The default stays in main now, and the table keeps its copy.
    std::thread::sleep(Duration::from_millis(300));
    assert!(lab.ip("route show default").contains("wan4"));
    let t = lab.table_of("172.16.4.2").unwrap();
    assert!(lab
        .host
        .ip(&["route", "show", "table", &t])
        .contains("default via 172.16.4.1"));
    assert_eq!(lab.probe(INTERNET, "172.16.4.2", "wan4"), "isp4");
    // mhr status says so, with the setting that ends it.
    let out = lab.mhr(&["doctor", "--agent-state", &lab.p("agent-state.json")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("keeps putting wan4's inet default route back into main")
            && text.contains("route-table"),
        "{text}"
    );
}

/// `copy_main` leaves main to its manager (the default is copied into the
/// table, not moved); `table_allocator_client -r` releases through the
/// agent; `--cleanup` removes rules and routes and releases on SIGTERM.
#[test]
fn copy_main_release_through_the_agent_and_cleanup() {
    require_netns!();
    let mut lab = Lab::new("ac");
    lab.isp(4, "172.16.4", false, None);
    lab.isp(5, "10.50.0", false, None);
    lab.isp(3, "10.30.0", false, None);
    lab.ip("addr add 172.16.4.2/24 dev wan4");
    // wan3's default leaves main, and comes back on clean-up as it was
    // (proto boot, which `ip route` does not show).
    lab.ip("addr add 10.30.0.2/24 dev wan3");
    lab.ip("route add default via 10.30.0.1 dev wan3 metric 300");
    lab.ip("route add default via 172.16.4.1 dev wan4");
    lab.ip("addr add 10.50.0.2/24 dev wan5");
    lab.start_agent_with(", copy_main: [\"wan4\"]", &["--cleanup"]);
    assert!(wait_for(Duration::from_secs(5), || our_rules(
        &lab.host, false
    )
    .len()
        == 12));
    assert!(
        wait_for(Duration::from_secs(2), || !lab
            .ip("route show default")
            .contains("wan3")),
        "moved: {}",
        lab.ip("route show default")
    );
    let t4 = lab.table_of("172.16.4.2").unwrap();
    assert!(
        wait_for(Duration::from_secs(2), || lab
            .host
            .ip(&["route", "show", "table", &t4])
            .contains("default via 172.16.4.1")),
        "{}",
        lab.host.ip(&["route", "show", "table", &t4])
    );
    assert!(lab.ip("route show default").contains("wan4"), "main kept");
    // An admin's route comes into the table, and goes with it.
    lab.ip("route add 198.18.0.0/15 via 172.16.4.1 dev wan4");
    let has = |lab: &Lab| {
        lab.host
            .ip(&["route", "show", "table", &t4])
            .contains("198.18.0.0/15")
    };
    assert!(wait_for(Duration::from_secs(2), || has(&lab)));
    lab.ip("route del 198.18.0.0/15 via 172.16.4.1 dev wan4");
    assert!(
        wait_for(Duration::from_secs(2), || !has(&lab)),
        "{}",
        lab.host.ip(&["route", "show", "table", &t4])
    );

    // The compatible release: `table_allocator_client -r` finds the agent
    // at the address's name; the rules go, and the agent leaves it alone.
    let out = run(lab
        .host
        .cmd(client_bin())
        .args(["-4", "-a", "10.50.0.2", "-i", "wan5", "-d", SOCK, "-r"])
        .env("MHR_AGENT_SOCKET", lab.host.agent_socket()));
    assert!(out.status.success(), "{out:?}");
    assert!(wait_for(Duration::from_secs(2), || our_rules(
        &lab.host, false
    )
    .len()
        == 8));
    assert!(
        wait_for(Duration::from_secs(3), || std::fs::read_to_string(
            lab.p("agent-state.json")
        )
        .is_ok_and(|s| s.contains("released on request"))),
        "{}",
        lab.agent_log()
    );

    // --cleanup: rules and our routes go, the lease goes back.
    let mut a = lab.agent.take().unwrap();
    a.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        a.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()),
        Some(0)
    );
    assert!(
        our_rules(&lab.host, false).is_empty(),
        "{:?}",
        our_rules(&lab.host, false)
    );
    assert_eq!(lab.host.ip(&["route", "show", "table", &t4]), "");
    assert!(
        lab.ip("route show default")
            .contains("default via 10.30.0.1 dev wan3 metric 300"),
        "back in main as it was: {}",
        lab.ip("route show default")
    );
    // No lease left at the server: status finds nothing to show.
    let out = lab.mhr(&["status", "--json", "--db", &lab.p("leases.db")]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["addresses"].as_array().unwrap().len(), 0, "{st}");
    assert!(!st["problems"].to_string().contains("unreadable"), "{st}");
}

/// No server: the address keeps its configurer's routes in main and the
/// agent keeps asking (quietly); once the server is back, the table comes.
#[test]
fn a_missing_server_loses_nothing_and_the_table_comes_later() {
    require_netns!();
    let mut lab = Lab::new("an");
    lab.isp(4, "172.16.4", false, None);
    drop(lab.server.take());
    lab.start_agent(", retry_ms: 100, attempts: 2");
    lab.ip("addr add 172.16.4.2/24 dev wan4");
    lab.ip("route add default via 172.16.4.1 dev wan4");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(our_rules(&lab.host, false).is_empty());
    assert!(
        lab.ip("route show default").contains("wan4"),
        "main keeps it"
    );
    assert_eq!(lab.probe(INTERNET, "172.16.4.2", "wan4"), "isp4");
    // Logged at rounds 1, 2, 4, 8 only: not once per request.
    let asking = lab.agent_log().matches("still asking").count();
    assert!((1..=4).contains(&asking), "{}", lab.agent_log());
    let config = lab.dir.path().join("server.json");
    lab.server = Some(start_server(&lab.host, &config, lab.dir.path(), SOCK));
    assert!(
        wait_for(Duration::from_secs(5), || our_rules(&lab.host, false).len()
            == 4),
        "{}",
        lab.agent_log()
    );
    assert!(wait_for(Duration::from_secs(2), || lab
        .host
        .ip(&["route", "show", "default"])
        .is_empty()));
    assert_eq!(lab.probe(INTERNET, "172.16.4.2", "wan4"), "isp4");
}

/// As shipped (RA handling and tracker on), a routed host in steady state
/// asks the kernel for no dumps: the model knows, the audit is a minute
/// away. Counted by the agent itself, shown by `mhr status`.
#[test]
fn steady_state_asks_the_kernel_for_nothing() {
    require_netns!();
    let mut lab = Lab::new("as");
    lab.isp(1, "192.168.8", false, Some("2001:db8:8"));
    lab.isp(3, "10.30.0", false, None);
    lab.start_agent(&format!(
        r#", track: {{ targets: [{{kind: "icmp", address: "{INTERNET}"}}, {{kind: "icmp", address: "{INTERNET6}"}}], state_file: "{}" }}"#,
        lab.p("track-state.json")
    ));
    lab.ip("addr add 192.168.8.2/24 dev wan1");
    lab.ip("route add default via 192.168.8.1 dev wan1");
    lab.ip("addr add 10.30.0.2/24 dev wan3");
    lab.ip("route add default via 10.30.0.1 dev wan3 metric 300");
    let routed = || {
        ["192.168.8.2", "10.30.0.2"]
            .iter()
            .all(|a| lab.table_of(a).is_some())
            && lab.ip("-6 rule").contains("from 2001:db8:8:")
    };
    assert!(
        wait_for(Duration::from_secs(20), routed),
        "{}\n{}",
        lab.ip("-6 rule"),
        lab.agent_log()
    );
    let agent = |lab: &Lab| {
        let out = lab.mhr(&["status", "--json", "--db", &lab.p("leases.db")]);
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        st["agent"].clone()
    };
    // The tracker settles (both uplinks up) before counting.
    assert!(
        wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(lab.p("track-state.json"))
                .is_ok_and(|s| s.matches("\"up\"").count() >= 3)
        }),
        "{}",
        lab.agent_log()
    );
    let before = agent(&lab);
    assert_eq!(before["live"], true, "asked the agent itself: {before}");
    std::thread::sleep(Duration::from_secs(6));
    let after = agent(&lab);
    assert!(before["dumps"].as_u64().unwrap() > 0, "adoption: {before}");
    assert_eq!(
        before["dumps"],
        after["dumps"],
        "no dumps in 6 s of steady state\n{}",
        lab.agent_log()
    );
    let text = String::from_utf8_lossy(&lab.mhr(&["status", "--db", &lab.p("leases.db")]).stdout)
        .into_owned();
    assert!(text.contains("mode: agent (pid "), "{text}");
}

/// MPTCP endpoints on the real kernel: one per routed uplink address, bound
/// to its device; gone with the address; adopted across a restart.
#[test]
fn mptcp_endpoints_follow_the_uplinks() {
    require_netns!();
    let mut lab = Lab::new("am");
    lab.isp(4, "172.16.4", false, None);
    lab.isp(3, "10.30.0", false, None);
    lab.ip("addr add 172.16.4.2/24 dev wan4");
    lab.ip("route add default via 172.16.4.1 dev wan4");
    lab.ip("addr add 10.30.0.2/24 dev wan3");
    lab.ip("route add default via 10.30.0.1 dev wan3 metric 300");
    lab.start_agent("");
    let shown = |lab: &Lab| lab.ip("mptcp endpoint show");
    assert!(
        wait_for(Duration::from_secs(5), || {
            let s = shown(&lab);
            s.contains("172.16.4.2 id 10")
                && s.contains("subflow dev wan4")
                && s.contains("10.30.0.2 id 10")
                && s.contains("subflow dev wan3")
        }),
        "{}\n{}",
        shown(&lab),
        lab.agent_log()
    );
    let limits = lab.ip("mptcp limits show");
    assert!(limits.contains("subflows 2"), "{limits}");
    assert!(limits.contains("add_addr_accepted 2"), "{limits}");
    // Shown by status, and doctor finds nothing that defeats them.
    let out = lab.mhr(&["status", "--json", "--db", &lab.p("leases.db")]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let eps = st["agent"]["endpoints"].as_array().unwrap().clone();
    assert_eq!(eps.len(), 2, "{st}");
    assert!(
        eps.iter()
            .all(|e| e["ours"] == true && e["flags"][0] == "subflow"),
        "{st}"
    );
    assert!(!st["problems"].to_string().contains("MPTCP"), "{st}");
    let text = String::from_utf8_lossy(&lab.mhr(&["status", "--db", &lab.p("leases.db")]).stdout)
        .into_owned();
    assert!(text.contains("mptcp: wan"), "{text}");
    // Adopted across a restart: the same endpoints, none added twice.
    let before = shown(&lab);
    let mut a = lab.agent.take().unwrap();
    a.signal(nix::sys::signal::Signal::SIGTERM);
    a.wait_exit(Duration::from_secs(5));
    lab.start_agent("");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(shown(&lab), before);
    // The address goes: so does its endpoint.
    lab.ip("addr del 10.30.0.2/24 dev wan3");
    assert!(
        wait_for(Duration::from_secs(3), || !shown(&lab)
            .contains("10.30.0.2")),
        "{}",
        shown(&lab)
    );
    assert!(shown(&lab).contains("172.16.4.2"));
    // Unplugged (the link goes): its endpoint goes too, nothing leaks.
    lab.ip("link del wan4");
    assert!(
        wait_for(Duration::from_secs(3), || shown(&lab).is_empty()),
        "{}",
        shown(&lab)
    );
}

/// `net.mptcp.enabled=0` in the namespace: the agent says so once, adds no
/// endpoint, and doctor names it.
#[test]
fn with_mptcp_off_the_agent_says_so_once_and_does_nothing_else() {
    require_netns!();
    let mut lab = Lab::new("ao");
    lab.isp(4, "172.16.4", false, None);
    check(lab.host.cmd("sysctl").args(["-qw", "net.mptcp.enabled=0"]));
    lab.ip("addr add 172.16.4.2/24 dev wan4");
    lab.ip("route add default via 172.16.4.1 dev wan4");
    lab.start_agent(", audit_s: 5");
    assert!(wait_for(Duration::from_secs(5), || lab
        .table_of("172.16.4.2")
        .is_some()));
    // Past an audit (a second whole read): still said only once.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(lab.ip("mptcp endpoint show"), "");
    assert_eq!(
        lab.agent_log().matches("MPTCP is off").count(),
        1,
        "{}",
        lab.agent_log()
    );
    let out = lab.mhr(&["doctor", "--db", &lab.p("leases.db")]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("net.mptcp.enabled is 0"), "{text}");
}
