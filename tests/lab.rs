//! End to end on the namespace lab (scripts/lab.sh): real dnsmasq ISPs, real
//! dhclient running dhclient-script with our hook, real ifup for the static
//! uplink, the real allocator server and, in the agent's place, clients.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// The field names of one table in docs/status.md.
fn documented_fields(heading: &str) -> Vec<String> {
    let doc = include_str!("../docs/status.md");
    let start = doc.find(heading).expect(heading);
    let mut fields: Vec<String> = doc[start..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .filter_map(|l| l.split('`').nth(1).map(str::to_owned))
        .collect();
    fields.sort();
    fields
}

static N: AtomicUsize = AtomicUsize::new(0);

struct Lab {
    name: String,
    dir: tempfile::TempDir,
    /// The lab of scripts/run.sh: a dhcpcd uplink (wan5) too.
    agent: bool,
    /// The agent's tracker config.
    track: Option<String>,
}

impl Lab {
    fn up() -> Lab {
        Self::up_with(false)
    }

    fn up_with(agent: bool) -> Lab {
        Self::start(agent, None)
    }

    /// A lab whose agent runs the tracker with `track` (JSON; `{dir}` is
    /// the test's directory).
    fn up_tracked(track: &str) -> Lab {
        Self::start(false, Some(track))
    }

    fn start(agent: bool, track: Option<&str>) -> Lab {
        let name = format!(
            "l{}x{}",
            std::process::id() % 100000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::tempdir().unwrap();
        let track = track.map(|t| {
            let path = dir.path().join("track.json");
            std::fs::write(&path, t.replace("{dir}", &dir.path().display().to_string())).unwrap();
            path.display().to_string()
        });
        let lab = Lab {
            name,
            dir,
            agent,
            track,
        };
        let out = lab.script("up");
        assert!(
            out.status.success(),
            "lab up: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn script(&self, action: &str) -> std::process::Output {
        Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab.sh"))
            .arg(action)
            .env("LAB", &self.name)
            .env("BIN", bin_dir())
            .env("LAB_DIR", self.dir.path().join("state"))
            .env("LAB_WAN5", if self.agent { "1" } else { "0" })
            .env("LAB_TRACK", self.track.as_deref().unwrap_or(""))
            .output()
            .unwrap()
    }

    fn host(&self) -> String {
        format!("{}-host", self.name)
    }

    fn state(&self, file: &str) -> PathBuf {
        self.dir.path().join("state").join(file)
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.state(file)).unwrap_or_default()
    }

    fn ip(&self, args: &[&str]) -> String {
        check(Command::new("ip").args(["-n", &self.host()]).args(args))
    }

    /// `mhr` inside the host namespace, configured like the hooks.
    fn mhr(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host(), env!("CARGO_BIN_EXE_mhr")])
            .args(args)
            .env("MHR_CLIENT", client_bin())
            .env("MHR_SERVERS_FILE", self.state("servers"))
            .env("MHR_DNSMASQ_PID_FILE", self.state("resolver.pid"))
            .env("MHR_DHCLIENT_PID_DIR", self.state(""))
            .env("MHR_STANZA_DIR", self.state("network-conf"))
            .env("MHR_AGENT_SOCKET", self.state("private/agent.sock"))
            .env("MHR_AGENT_STATE", self.state("agent-state.json"));
        c
    }

    fn probe(&self, args: &[&str]) -> String {
        // The lab's ISPs answer whoami.lab with their names.
        let out = self
            .mhr(&[&["probe", args[0], "whoami.lab"], &args[1..]].concat())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.script("down");
    }
}

#[test]
fn every_uplink_routes_by_its_own_isp_and_dns_follows() {
    require_netns!();
    let lab = Lab::up();
    // A socket bound to each uplink's device is answered by that uplink's ISP
    // (wan1 and wan2 even share one address).
    for i in 1..=4 {
        let dev = format!("wan{i}");
        assert_eq!(
            lab.probe(&["203.0.113.10", "--device", &dev]),
            format!("isp{i}"),
            "{dev}"
        );
    }
    // Bound to the address alone.
    assert_eq!(
        lab.probe(&["203.0.113.10", "--source", "10.30.0.100"]),
        "isp3"
    );
    assert_eq!(
        lab.probe(&["203.0.113.10", "--source", "172.16.4.2"]),
        "isp4"
    );
    // Traffic to each uplink's own subnet uses that uplink.
    assert!(lab.ip(&["route", "get", "10.30.0.1"]).contains("dev wan3"));
    assert!(lab.ip(&["route", "get", "172.16.4.1"]).contains("dev wan4"));
    assert!(lab
        .ip(&["route", "get", "192.168.8.1", "oif", "wan2"])
        .contains("dev wan2"));
    // ISP3's classless static routes and MTU arrived.
    let wan3_table = lab
        .ip(&["rule"])
        .lines()
        .find(|l| l.contains("oif wan3 lookup"))
        .and_then(|l| l.split_whitespace().rev().nth(2).map(str::to_owned))
        .unwrap();
    let routes = lab.ip(&["route", "show", "table", &wan3_table]);
    assert!(
        routes.contains("198.18.0.0/15 via 10.30.0.1 dev wan3"),
        "{routes}"
    );
    assert!(
        routes.contains("default via 10.30.0.1 dev wan3"),
        "{routes}"
    );
    assert!(lab.ip(&["link", "show", "wan3"]).contains("mtu 1400"));
    // Nothing left in main that could beat the rules.
    let main = lab.ip(&["route", "show", "table", "main"]);
    assert!(!main.contains("default"), "{main}");
    // Unbound traffic still goes out (by the first 91000 rule).
    assert!(lab.probe(&["203.0.113.10"]).starts_with("isp"));

    // DNS: one line per uplink, interface before source, accepted by dnsmasq.
    let servers = lab.read("servers");
    for line in [
        "server=192.168.8.1@wan1@192.168.8.100",
        "server=192.168.8.1@wan2@192.168.8.100",
        "server=10.30.0.1@wan3@10.30.0.100",
        "server=172.16.4.1@wan4@172.16.4.2",
    ] {
        assert!(
            servers.lines().any(|l| l == line),
            "{line} missing: {servers}"
        );
    }
    let resolver_log = lab.read("resolver.log");
    for via in [
        "192.168.8.1#53(via wan1)",
        "192.168.8.1#53(via wan2)",
        "10.30.0.1#53(via wan3)",
        "172.16.4.1#53(via wan4)",
    ] {
        assert!(
            resolver_log.contains(&format!("using nameserver {via}")),
            "{via}: {resolver_log}"
        );
    }
    assert!(!resolver_log.contains("interface can only be specified once"));
    // A lookup through the local resolver reaches an ISP's server over the
    // interface that supplied it: that ISP saw it come from its uplink's
    // address.
    let answer = lab.probe(&["127.0.0.1"]);
    assert!(answer.starts_with("isp"), "{answer}");
    let isp_log = lab.read(&format!("{answer}.log"));
    let own_addr = match answer.as_str() {
        "isp1" | "isp2" => "192.168.8.100",
        "isp3" => "10.30.0.100",
        _ => "172.16.4.2",
    };
    assert!(
        isp_log.contains(&format!("query[TXT] whoami.lab from {own_addr}")),
        "{answer} log: {isp_log}"
    );

    // `mhr status` sees four consistent uplinks.
    let out = lab
        .mhr(&[
            "status",
            "--json",
            "--db",
            lab.state("leases.db").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The fields are exactly those docs/status.md documents.
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&st), documented_fields("### Top level"), "{st}");
    assert_eq!(
        keys(&st["addresses"][0]),
        documented_fields("### `addresses[]`"),
        "{st}"
    );
    assert_eq!(st["server_reachable"], true);
    let addrs = st["addresses"].as_array().unwrap();
    // Four IPv4 uplinks; IPv6: SLAAC on wan1-3 and DHCPv6 on wan3.
    assert_eq!(addrs.len(), 8, "{st}");
    for a in addrs {
        for key in [
            "rule_from",
            "rule_to",
            "rule_iif_lo",
            "rule_oif",
            "default_route",
        ] {
            assert_eq!(a[key], true, "{key}: {a}");
        }
        assert!(a["lease_expires"].as_i64().is_some());
        assert_eq!(a["dns_servers"].as_array().unwrap().len(), 1, "{a}");
    }
    // The whole DNS path holds: resolver, dnsmasq reading our file, servers.
    let db = lab.state("leases.db");
    let doctor = lab
        .mhr(&["doctor", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(!text.contains("DNS:"), "{text}");
    // A servers file no dnsmasq reads, and a pid file naming none: both said.
    let doctor = lab
        .mhr(&["doctor", "--db", db.to_str().unwrap()])
        .env("MHR_SERVERS_FILE", "/nonexistent/servers")
        .env("MHR_DNSMASQ_PID_FILE", "/nonexistent/pid")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("DNS: dnsmasq runs (pid"), "{text}");
    assert!(
        text.contains("does not read /nonexistent/servers"),
        "{text}"
    );
    assert_eq!(doctor.status.code(), Some(4));

    // Ten hooks updating DNS at once lose no line (for interfaces that
    // exist: `mhr dns` refuses others).
    for i in 0..10 {
        lab.ip(&[
            "link",
            "add",
            &format!("ppp{i}"),
            "type",
            "veth",
            "peer",
            "name",
            &format!("pq{i}"),
        ]);
    }
    let children: Vec<_> = (0..10)
        .map(|i| {
            lab.mhr(&[
                "dns",
                &format!("ppp{i}"),
                &format!("10.200.{i}.2"),
                &format!("10.200.{i}.1"),
            ])
            .spawn()
            .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let servers = lab.read("servers");
    // 4 IPv4 uplinks, 4 IPv6 addresses with servers, 10 ppp.
    assert_eq!(servers.lines().count(), 18, "{servers}");
    for i in 0..10 {
        assert!(servers.contains(&format!("server=10.200.{i}.1@ppp{i}@10.200.{i}.2")));
    }
}

#[test]
fn unplugging_an_uplink_removes_rules_lease_dns_and_dhclient() {
    require_netns!();
    let lab = Lab::up();
    let table = lab
        .ip(&["rule"])
        .lines()
        .find(|l| l.contains("oif wan3 lookup"))
        .and_then(|l| l.split_whitespace().rev().nth(2).map(str::to_owned))
        .expect("wan3 has a table");
    let pid: i32 = lab.read("dhclient.wan3.pid").trim().parse().unwrap();
    let pid6: i32 = lab.read("dhclient6.wan3.pid").trim().parse().unwrap();
    let start = Instant::now();
    lab.ip(&["link", "del", "wan3"]);
    // What udev's remove rule runs.
    let out = lab.mhr(&["hotplug", "remove", "wan3"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = wait_for(Duration::from_secs(1), || {
        let rules_gone = !lab.ip(&["rule"]).contains(&format!("lookup {table} "));
        let dns_gone = !lab.read("servers").contains("@wan3@");
        let gone = |pid: i32| {
            !Path::new(&format!("/proc/{pid}/cmdline")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .unwrap_or_default()
                    .contains("zombie")
        };
        let dhclient_gone = gone(pid) && gone(pid6);
        let v6_rules_gone = !lab.ip(&["-6", "rule"]).contains("wan3");
        let released = lab
            .read("server.log")
            .lines()
            .any(|l| l.contains("lease released") && l.contains("ifname=wan3"));
        rules_gone && v6_rules_gone && dns_gone && dhclient_gone && released
    });
    assert!(
        done,
        "after {:?}: rules {}\nservers {}\nserver log {}",
        start.elapsed(),
        lab.ip(&["rule"]),
        lab.read("servers"),
        lab.read("server.log")
    );
    eprintln!("wan3 cleaned up {:?} after ip link del", start.elapsed());
    // The other uplinks are untouched.
    assert_eq!(lab.probe(&["203.0.113.10", "--device", "wan1"]), "isp1");
    // wan1, wan2 and wan4 over IPv4, wan1 and wan2 over IPv6.
    assert_eq!(
        lab.read("servers").lines().count(),
        5,
        "{}",
        lab.read("servers")
    );
}

/// Echo requests an ISP namespace has received (its own counter).
fn echoes_in(ns: &str) -> u64 {
    let snmp = check(Command::new("ip").args(["netns", "exec", ns, "cat", "/proc/net/snmp"]));
    let mut lines = snmp.lines().filter(|l| l.starts_with("Icmp:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "InEchos")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// The health tracker on the lab, with its defaults for timing (probes
/// every 500 ms, 1 s timeout, down after 3 lost, up after 3 answered).
#[test]
fn tracker_moves_unbound_traffic_to_a_working_uplink_and_back() {
    require_netns!();
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("track.d");
    std::fs::create_dir_all(&scripts).unwrap();
    let events = dir.path().join("events.log");
    let hook = scripts.join("10-record");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$MHR_EVENT $MHR_IFNAME $MHR_STATE $MHR_OLD_IFNAME\" >> {}\n",
            events.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let lab = Lab::up_tracked(&format!(
        r#"{{
            interfaces: ["wan1", "wan3", "wan4"],
            targets: [{{kind: "icmp", address: "203.0.113.10"}}],
            preference: ["wan1", "wan3"],
            scripts_dir: "{}",
            state_file: "{{dir}}/track-state.json",
        }}"#,
        scripts.display()
    ));
    let track_state = lab.dir.path().join("track-state.json");
    let isp = |i: u32| format!("{}-isp{i}", lab.name);
    let cut = |i: u32| {
        check(Command::new("ip").args([
            "-n",
            &isp(i),
            "addr",
            "del",
            "203.0.113.10/32",
            "dev",
            "lo",
        ]));
    };
    let restore = |i: u32| {
        check(Command::new("ip").args([
            "-n",
            &isp(i),
            "addr",
            "add",
            "203.0.113.10/32",
            "dev",
            "lo",
        ]));
    };
    let table_of = |dev: &str| -> String {
        let rules = lab.ip(&["rule"]);
        let line = rules
            .lines()
            .find(|l| l.contains(&format!("oif {dev} lookup")))
            .unwrap_or_else(|| panic!("no rule for {dev}: {rules}"));
        line.split_whitespace().nth(6).unwrap().to_owned()
    };
    let unbound = || lab.ip(&["rule", "show", "priority", "50000"]);
    let points_at =
        |dev: &str| unbound().contains(&format!("iif lo lookup {} proto 77", table_of(dev)));

    // wan2 is not tracked: it shares wan1's subnet and address, so its ISP
    // counts any probe for wan1 that leaked through it.
    let tracker = Tracker(lab.state("agent.log"));
    assert!(
        wait_for(Duration::from_secs(5), || points_at("wan1")),
        "unbound rule: {} log: {}",
        unbound(),
        tracker.log()
    );
    assert_eq!(
        lab.probe(&["203.0.113.10"]),
        "isp1",
        "unbound traffic uses wan1"
    );

    // Probes leave only through their own uplink.
    let before: Vec<u64> = (1..=4).map(|i| echoes_in(&isp(i))).collect();
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<u64> = (1..=4).map(|i| echoes_in(&isp(i))).collect();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let n = a - b;
        if i == 1 {
            assert_eq!(
                n, 0,
                "isp2 got {n} echo requests: a probe left by the wrong uplink"
            );
        } else {
            assert!(
                (3..=6).contains(&n),
                "isp{} got {n} echo requests in 2 s",
                i + 1
            );
        }
    }

    // One lost probe moves nothing.
    cut(1);
    std::thread::sleep(Duration::from_millis(300));
    restore(1);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        assert!(
            points_at("wan1"),
            "moved after a single lost probe: {}",
            tracker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A dead ISP, while the host sends unbound traffic: the rule moves to
    // wan3 within the detection time, and unbound traffic follows.
    let detection = Duration::from_millis(500 * 3 + 1000);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        let mut cmd = lab.mhr(&["probe", "203.0.113.10", "whoami.lab"]);
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let out = cmd.output().unwrap();
                let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                let done = answer == "isp3";
                answers.push(answer);
                if done {
                    break;
                }
            }
            answers
        })
    };
    cut(1);
    let start = Instant::now();
    while !points_at("wan3") && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let moved = start.elapsed();
    wait_for(Duration::from_secs(5), || sender.is_finished());
    stop.store(true, Ordering::SeqCst);
    let answers = sender.join().unwrap();
    assert!(points_at("wan3"), "{}", tracker.log());
    assert!(
        moved <= detection + Duration::from_secs(1),
        "moved after {moved:?} (detection {detection:?})"
    );
    // Unbound traffic went to ISP1 until the cut, then nowhere, then ISP3.
    assert!(
        !answers.iter().any(|a| a == "isp2" || a == "isp4"),
        "{answers:?}"
    );
    assert_eq!(
        answers.last().map(String::as_str),
        Some("isp3"),
        "{answers:?}"
    );
    assert_eq!(lab.probe(&["203.0.113.10"]), "isp3");
    // The per-address rules were not touched.
    assert_eq!(
        lab.ip(&["rule"]).matches("proto 77").count(),
        17,
        "{}",
        lab.ip(&["rule"])
    );

    // Status shows the health and the unbound rule.
    let out = lab
        .mhr(&[
            "status",
            "--json",
            "--db",
            lab.state("leases.db").to_str().unwrap(),
            "--track-state",
        ])
        .arg(&track_state)
        .output()
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let health = |dev: &str| {
        st["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["ifname"] == dev)
            .map(|a| a["health"].clone())
            .unwrap()
    };
    assert_eq!(health("wan1")["state"], "down", "{st}");
    assert_eq!(health("wan3")["state"], "up", "{st}");
    assert!(health("wan3")["rtt_ms"].as_f64().is_some());
    assert!(health("wan3")["probe_bytes_hour"].as_u64().unwrap() > 0);
    assert!(health("wan2").is_null(), "wan2 is not tracked");
    let mut h3: Vec<String> = keys_of(&health("wan3"));
    h3.sort();
    assert_eq!(h3, documented_fields("### `addresses[].health`"));
    assert_eq!(st["unbound"][0]["ifname"], "wan3", "{st}");
    assert_eq!(out.status.code(), Some(0), "{st}");

    // Back to the preferred uplink when it recovers.
    restore(1);
    assert!(
        wait_for(Duration::from_secs(5), || points_at("wan1")),
        "{}",
        tracker.log()
    );
    assert_eq!(lab.probe(&["203.0.113.10"]), "isp1");

    // Nothing healthy: the rule goes, the 91000 rules stay as they were.
    let order_before: Vec<String> = lab
        .ip(&["rule", "show", "priority", "91000"])
        .lines()
        .map(str::to_owned)
        .collect();
    for i in [1, 3, 4] {
        cut(i);
    }
    assert!(
        wait_for(Duration::from_secs(5), || unbound().trim().is_empty()),
        "{}",
        unbound()
    );
    let order_after: Vec<String> = lab
        .ip(&["rule", "show", "priority", "91000"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(order_before, order_after);
    assert_eq!(order_after.len(), 4);

    // Every change ran the operator's script.
    let log = std::fs::read_to_string(&events).unwrap_or_default();
    for want in [
        "state wan1 down",
        "state wan1 up",
        "unbound wan3  wan1",
        "unbound wan1  wan3",
        "unbound   wan",
    ] {
        assert!(log.contains(want), "{want:?} not in events:\n{log}");
    }

    // SIGTERM: the agent stops and leaves every rule of its own in place,
    // the tracker's too (the next start adopts them); the tracker's state
    // file goes, so status shows no old health.
    for i in [1, 3, 4] {
        restore(i);
    }
    assert!(wait_for(Duration::from_secs(5), || points_at("wan1")));
    let pid: i32 = lab.read("agent.pid").trim().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(wait_for(Duration::from_secs(5), || !Path::new(&format!(
        "/proc/{pid}"
    ))
    .exists()
        || std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .contains("zombie")));
    assert!(points_at("wan1"), "{}", unbound());
    assert!(!track_state.exists());
}

/// The agent's log, read as the tracker's was.
struct Tracker(PathBuf);

impl Tracker {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.0).unwrap_or_default()
    }
}

fn keys_of(v: &serde_json::Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// Sends a hand-made router advertisement from `dev` in namespace `ns`
/// (source: that interface's link-local address, as the ISP's own RAs).
fn send_ra(ns: &str, dev: &str, ra: &mhr::ra::RouterAdvert) {
    use nix::sys::socket::{
        self, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn6,
    };
    use std::os::fd::{AsFd, AsRawFd};
    let index: u32 = check(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "cat",
        &format!("/sys/class/net/{dev}/ifindex"),
    ]))
    .trim()
    .parse()
    .unwrap();
    let path = format!("/run/netns/{ns}");
    let msg = mhr::ra::build(ra);
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let fd = socket::socket(
            AddressFamily::Inet6,
            SockType::Raw,
            SockFlag::empty(),
            SockProtocol::IcmpV6,
        )
        .unwrap();
        socket::setsockopt(&fd, sockopt::Ipv6MulticastHops, &255).unwrap();
        let to = SockaddrIn6::from(std::net::SocketAddrV6::new(
            "ff02::1".parse().unwrap(),
            0,
            0,
            index,
        ));
        socket::sendto(fd.as_raw_fd(), &msg, &to, MsgFlags::empty()).unwrap();
    })
    .join()
    .unwrap();
}

/// IPv6 on the lab: SLAAC on wan1-3 (wan1 with a privacy address, wan1 and
/// wan2 on the same /64), DHCPv6 on wan3, all handled by the agent and the
/// dhclient hook (reporting to the agent).
#[test]
fn ipv6_uplinks_from_router_advertisements_and_dhcpv6() {
    require_netns!();
    let lab = Lab::up();
    let rules6 = || lab.ip(&["-6", "rule"]);
    // (device, address, temporary) of every global IPv6 address.
    let addrs: Vec<(String, String, bool)> = lab
        .ip(&["-6", "-o", "addr", "show", "scope", "global"])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let addr = f[3].split('/').next().unwrap().to_owned();
            (f[1].to_owned(), addr, l.contains("temporary"))
        })
        .collect();
    let on = |dev: &str| addrs.iter().filter(|a| a.0 == dev).count();
    assert_eq!(
        (on("wan1"), on("wan2"), on("wan3"), on("wan4")),
        (2, 1, 2, 0),
        "{addrs:?}"
    );
    assert!(
        addrs.iter().any(|a| a.0 == "wan1" && a.2),
        "a privacy address on wan1"
    );
    assert!(
        addrs
            .iter()
            .any(|a| a.0 == "wan3" && a.1.starts_with("2001:db8:30::1")),
        "a DHCPv6 address on wan3"
    );

    // From each address (bound to its device, or to the address alone when
    // it is unique), ISP N answers for wanN; wan1 and wan2 share the /64.
    for (dev, addr, _) in &addrs {
        let isp = dev.replace("wan", "isp");
        assert_eq!(
            lab.probe(&["2001:db8:ffff::10", "--source", addr, "--device", dev]),
            isp,
            "{dev} {addr}"
        );
        assert_eq!(
            lab.probe(&["2001:db8:ffff::10", "--source", addr]),
            isp,
            "{addr} alone"
        );
    }

    // Rules: every address has its table; the privacy address points at
    // its interface's table; priorities as for IPv4.
    let r = rules6();
    let table_of = |addr: &str| -> String {
        let line = r
            .lines()
            .find(|l| l.starts_with("10000:") && l.contains(&format!("from {addr} lookup")))
            .unwrap_or_else(|| panic!("no from rule for {addr}:\n{r}"));
        line.split_whitespace().nth(4).unwrap().to_owned()
    };
    for (dev, addr, temporary) in &addrs {
        let t = table_of(addr);
        for want in [
            format!("9000:\tfrom all oif {dev} lookup {t} proto 77"),
            format!("91000:\tfrom all iif lo lookup {t} proto 77"),
        ] {
            assert!(r.contains(&want), "{want} missing:\n{r}");
        }
        assert!(
            r.lines().any(|l| l.starts_with("20000:\tfrom all to ")
                && l.ends_with(&format!("lookup {t} proto 77"))),
            "no 20000 rule for table {t}:\n{r}"
        );
        if *temporary {
            let stable = addrs.iter().find(|a| a.0 == *dev && !a.2).unwrap();
            assert_eq!(t, table_of(&stable.1), "privacy address uses wan1's table");
        }
        // The RA's default route is in the table.
        let routes = lab.ip(&["-6", "route", "show", "table", &t]);
        assert!(
            routes.contains("default via fe80::") && routes.contains(&format!("dev {dev}")),
            "{t}: {routes}"
        );
    }
    assert!(
        r.contains("20000:\tfrom all to 2001:db8:8::/64 lookup"),
        "{r}"
    );
    // Nothing of the uplinks' in main.
    let main = lab.ip(&["-6", "route", "show", "table", "main"]);
    assert!(
        !main.contains("default")
            && !main.contains("proto ra")
            && !main.contains("2001:db8:8::/64"),
        "{main}"
    );
    // RDNSS (link-local, with the interface) and DHCPv6 name servers.
    let servers = lab.read("servers");
    for dev in ["wan1", "wan2", "wan3"] {
        assert!(servers.lines().any(|l| l.starts_with("server=fe80::") && l.contains(&format!("@{dev}@2001:db8:"))), "{dev}: {servers}");
    }
    assert!(
        servers.contains("@wan3@2001:db8:30::1"),
        "DHCPv6 servers: {servers}"
    );

    // The privacy address goes: its rule goes.
    let tmp = addrs.iter().find(|a| a.2).unwrap().1.clone();
    lab.ip(&["-6", "addr", "del", &format!("{tmp}/64"), "dev", "wan1"]);
    assert!(
        wait_for(Duration::from_secs(3), || !rules6()
            .contains(&format!("from {tmp} "))),
        "{}",
        rules6()
    );

    // ISP2 says it is no longer a default router (lifetime 0): the default
    // route leaves wan2's table, wan1's (same /64) keeps its own.
    let t2 = table_of(&addrs.iter().find(|a| a.0 == "wan2").unwrap().1);
    let t1 = table_of(&addrs.iter().find(|a| a.0 == "wan1" && !a.2).unwrap().1);
    let prefix = |valid: u32| mhr::ra::PrefixInfo {
        prefix: "2001:db8:8::".parse().unwrap(),
        len: 64,
        on_link: true,
        autonomous: true,
        valid,
        preferred: valid.min(1800),
    };
    send_ra(
        &format!("{}-isp2", lab.name),
        "lan",
        &mhr::ra::RouterAdvert {
            router_lifetime: 0,
            prefixes: vec![prefix(3600)],
            ..Default::default()
        },
    );
    assert!(
        wait_for(Duration::from_secs(3), || !lab
            .ip(&["-6", "route", "show", "table", &t2])
            .contains("default")),
        "{}",
        lab.ip(&["-6", "route", "show", "table", &t2])
    );
    assert!(lab
        .ip(&["-6", "route", "show", "table", &t1])
        .contains("default via fe80::"));
    // ISP1 withdraws the prefix (valid lifetime 0): its on-link route leaves
    // wan1's table; wan2's table keeps its own.
    send_ra(
        &format!("{}-isp1", lab.name),
        "lan",
        &mhr::ra::RouterAdvert {
            router_lifetime: 1800,
            prefixes: vec![prefix(0)],
            ..Default::default()
        },
    );
    assert!(
        wait_for(Duration::from_secs(3), || !lab
            .ip(&["-6", "route", "show", "table", &t1])
            .contains("2001:db8:8::/64")),
        "{}",
        lab.ip(&["-6", "route", "show", "table", &t1])
    );
    assert!(lab
        .ip(&["-6", "route", "show", "table", &t2])
        .contains("2001:db8:8::/64"));

    // A hostile router on wan1's link: 20 RAs with 60 route-information
    // options (infinite lifetime) and 20 with 80 name servers. wan1 takes
    // route information up to /64, as its sysctls say; the agent holds at
    // most 32 routes per router, 64 per interface, 8 name servers, and every
    // route expires.
    check(Command::new("ip").args([
        "netns",
        "exec",
        &lab.host(),
        "sysctl",
        "-q",
        "-w",
        "net.ipv6.conf.wan1.accept_ra_rt_info_max_plen=64",
    ]));
    let isp1 = format!("{}-isp1", lab.name);
    for i in 0..20u16 {
        let routes = (0..60u16)
            .map(|j| mhr::ra::RouteInfo {
                prefix: std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x100 + i, j, 0, 0, 0, 0),
                len: 64,
                lifetime: u32::MAX,
            })
            .collect();
        let advertise = |ra: mhr::ra::RouterAdvert| {
            send_ra(
                &isp1,
                "lan",
                &mhr::ra::RouterAdvert {
                    router_lifetime: 1800,
                    ..ra
                },
            )
        };
        advertise(mhr::ra::RouterAdvert {
            routes,
            ..Default::default()
        });
        let rdnss = (0..80u16)
            .map(|j| {
                (
                    std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xd0, i, 0, 0, 0, j + 1),
                    u32::MAX,
                )
            })
            .collect();
        advertise(mhr::ra::RouterAdvert {
            rdnss,
            ..Default::default()
        });
    }
    std::thread::sleep(Duration::from_secs(2));
    let table1 = lab.ip(&["-6", "route", "show", "table", &t1]);
    let hostile: Vec<&str> = table1
        .lines()
        .filter(|l| l.starts_with("2001:db8:1"))
        .collect();
    assert!(!hostile.is_empty() && hostile.len() <= 32, "{table1}");
    assert!(hostile.iter().all(|l| l.contains("expires")), "{table1}");
    let wan1_dns = lab
        .read("servers")
        .lines()
        .filter(|l| l.contains("@wan1@"))
        .count();
    // 8 from RAs, besides the lab's own.
    assert!((3..=8 + 2).contains(&wan1_dns), "{}", lab.read("servers"));
}

/// The lab scripts/run.sh shows: the host runs `mhr agent`, and wan5 is
/// configured by dhcpcd with no routing hook; the hook-run uplinks keep
/// working beside it (they report to the agent).
#[test]
fn the_demo_lab_runs_the_agent_and_a_hook_free_dhcpcd_uplink() {
    require_netns!();
    let lab = Lab::up_with(true);
    let rules = lab.ip(&["rule"]);
    for i in 1..=5 {
        assert!(
            rules.contains(&format!("oif wan{i} lookup")),
            "wan{i}:\n{rules}"
        );
    }
    assert_eq!(rules.matches("proto 77").count(), 20, "{rules}");
    let a5 = "10.50.0.100";
    assert!(rules.contains(&format!("from {a5} lookup")), "{rules}");
    let internet = "203.0.113.10";
    assert_eq!(
        lab.probe(&[internet, "--source", a5, "--device", "wan5"]),
        "isp5"
    );
    for (i, a) in [
        (1, "192.168.8.100"),
        (2, "192.168.8.100"),
        (3, "10.30.0.100"),
        (4, "172.16.4.2"),
    ] {
        assert_eq!(
            lab.probe(&[internet, "--source", a, "--device", &format!("wan{i}")]),
            format!("isp{i}")
        );
    }
    assert!(!lab
        .ip(&["route", "show", "table", "main"])
        .contains("default"));
    assert!(
        lab.read("servers")
            .contains("server=10.50.0.1@wan5@10.50.0.100"),
        "{}",
        lab.read("servers")
    );
    // Written within a second of a change.
    assert!(
        wait_for(Duration::from_secs(3), || lab
            .read("agent-state.json")
            .contains("\"ifname\": \"wan5\"")),
        "{}",
        lab.read("agent-state.json")
    );
}
