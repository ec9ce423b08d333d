//! The agent's tracker on IPv6 uplinks, with all three probe kinds: two ISPs in
//! namespaces, each owning the shared IPv6 "internet" address, where an
//! ICMPv6 echo, a TCP connect (refused: the RST counts) and a DNS query are
//! answered.

mod common;

use std::time::Duration;

use common::*;

const SOCK: &str = "tas_socket";
const INTERNET: &str = "2001:db8:ffff::10";

struct Isp {
    ns: Netns,
    _dns: Daemon,
}

/// Host side `v{i}` with 2001:db8:{i}::2/64, ISP side 2001:db8:{i}::1 and
/// the internet address on lo, dnsmasq answering DNS there.
fn isp(host: &Netns, i: u32, dir: &std::path::Path) -> Isp {
    let ns = Netns::new(&format!("t6i{i}"));
    let (dev, net) = (format!("v{i}"), format!("2001:db8:{i}::"));
    host.ip(&[
        "link", "add", &dev, "type", "veth", "peer", "name", "up0", "netns", &ns.name,
    ]);
    host.ip(&["link", "set", &dev, "up"]);
    ns.ip(&["link", "set", "up0", "up"]);
    host.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{net}2/64"),
        "dev",
        &dev,
        "nodad",
    ]);
    ns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{net}1/64"),
        "dev",
        "up0",
        "nodad",
    ]);
    ns.ip(&["-6", "addr", "add", &format!("{INTERNET}/128"), "dev", "lo"]);
    let mut cmd = ns.cmd("dnsmasq");
    cmd.args([
        "-k",
        "-C",
        "/dev/null",
        "--user=root",
        "--group=root",
        "--no-resolv",
        "--no-hosts",
        "--bind-dynamic",
        "--listen-address",
        INTERNET,
        &format!("--txt-record=whoami.lab,isp{i}"),
    ])
    .arg(format!(
        "--pid-file={}",
        dir.join(format!("isp{i}.pid")).display()
    ));
    let dns = Daemon::spawn(cmd, dir.join(format!("dnsmasq{i}.log")));
    Isp { ns, _dns: dns }
}

/// A tracker config: `keys`, no event scripts, the state file at `state`.
fn track_config(keys: &str, dir: &std::path::Path, state: &std::path::Path) -> String {
    format!(
        "{{ {keys} scripts_dir: \"{}\", state_file: \"{}\" }}",
        dir.join("none").display(),
        state.display()
    )
}

#[test]
fn ipv6_uplinks_are_tracked_with_icmp_tcp_and_dns_probes() {
    require_netns!();
    let dir = tempfile::tempdir().unwrap();
    let host = Netns::new("t6h");
    let config = write_server_config(dir.path(), SOCK, "");
    let _server = start_server(&host, &config, dir.path(), SOCK);
    let isps: Vec<Isp> = (1..=2).map(|i| isp(&host, i, dir.path())).collect();

    // Each uplink's default route, as an admin adds it; the agent gives
    // every address its table and moves the default there.
    for i in 1..=2u32 {
        host.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &format!("2001:db8:{i}::1"),
            "dev",
            &format!("v{i}"),
            "metric",
            &format!("{}", 1000 + i),
        ]);
    }
    let state = dir.path().join("state.json");
    let agent_config = |keys: &str| {
        format!(
            "{{ interfaces: [\"v*\"], ra: false, track: {} }}",
            track_config(keys, dir.path(), &state)
        )
    };
    let mut tracker = start_agent(
        &host,
        dir.path(),
        SOCK,
        &agent_config(&format!(
            r#"targets: [
                {{kind: "icmp", address: "{INTERNET}"}},
                {{kind: "tcp", address: "{INTERNET}", port: 9}},
                {{kind: "dns", address: "{INTERNET}", name: "whoami.lab"}},
            ],
            preference: ["v2"],
            budget_bytes_hour: [{{interfaces: "v1", bytes: 2000000}}],
            interval_ms: 200, timeout_ms: 500,"#
        )),
        &[],
    );
    assert!(
        wait_for(Duration::from_secs(5), || our_rules(&host, true).len() == 8),
        "{:?}\n{}",
        our_rules(&host, true),
        tracker.log()
    );
    let table_of = |dev: &str| {
        our_rules(&host, true)
            .iter()
            .find(|r| r.contains(&format!("oif {dev} lookup")))
            .and_then(|r| r.split("lookup ").nth(1))
            .map(|t| t.split_whitespace().next().unwrap().to_owned())
            .unwrap()
    };
    let tables = [table_of("v1"), table_of("v2")];
    let unbound = || host.ip(&["-6", "rule", "show", "priority", "50000"]);
    let points_at = |t: &str| unbound().contains(&format!("iif lo lookup {t} proto 77"));
    assert!(
        wait_for(Duration::from_secs(5), || points_at(&tables[1])),
        "{} {}",
        unbound(),
        tracker.log()
    );
    // No IPv4 uplink: no IPv4 rule.
    assert!(host
        .ip(&["rule", "show", "priority", "50000"])
        .trim()
        .is_empty());
    // Unbound IPv6 traffic goes to the preferred ISP.
    let whoami = || {
        let out = run(host
            .cmd(env!("CARGO_BIN_EXE_mhr"))
            .args(["probe", INTERNET, "whoami.lab"]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(whoami(), "isp2");

    // Every probe kind was answered: no error recorded yet.
    assert!(
        wait_for(Duration::from_secs(3), || {
            let s: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&state).unwrap_or_default())
                    .unwrap_or_default();
            s["uplinks"].as_array().is_some_and(|u| {
                u.len() == 2
                    && u.iter().all(|x| {
                        x["probes_sent"].as_u64() > Some(6)
                            && x["last_error"].is_null()
                            && x["health"]["state"] == "up"
                    })
            })
        }),
        "{}",
        std::fs::read_to_string(&state).unwrap_or_default()
    );

    // v1's budget (2 MB/h at about 176 bytes a probe, and a fifth more for
    // bursts) stretches its interval from 200 to about 380 ms; v2 has none.
    std::thread::sleep(Duration::from_secs(2));
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let up = |dev: &str| {
        st["uplinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["ifname"] == dev)
            .unwrap()
            .clone()
    };
    assert_eq!(up("v1")["health"]["budget_bytes_hour"], 2000000);
    assert!(up("v2")["health"]["budget_bytes_hour"].is_null());
    let (p1, p2) = (
        up("v1")["probes_sent"].as_f64().unwrap(),
        up("v2")["probes_sent"].as_f64().unwrap(),
    );
    assert!(p1 < 0.8 * p2, "v1 {p1} probes, v2 {p2}");
    assert!(up("v1")["health"]["probe_bytes_hour"].as_u64().unwrap() > 0);

    // ISP2 loses the internet: IPv6 unbound traffic moves to ISP1, and back.
    let internet = |i: usize, verb: &str| {
        isps[i]
            .ns
            .ip(&["-6", "addr", verb, &format!("{INTERNET}/128"), "dev", "lo"]);
    };
    internet(1, "del");
    assert!(
        wait_for(Duration::from_secs(4), || points_at(&tables[0])),
        "{}",
        tracker.log()
    );
    assert_eq!(whoami(), "isp1");
    internet(1, "add");
    assert!(
        wait_for(Duration::from_secs(4), || points_at(&tables[1])),
        "{}",
        tracker.log()
    );
    // The agent stops: its rules stay, the tracker's too.
    tracker.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(tracker.wait_exit(Duration::from_secs(5)).is_some());
    assert!(points_at(&tables[1]), "{}", unbound());

    // Two targets, one of which never answers (a filtered resolver): the
    // uplinks are graded by the one that does, and the dead target is named.
    // A LAN behind the host: its forwarded traffic follows the same rule.
    let _ = std::fs::remove_file(&state);
    let tracker = start_agent(
        &host,
        dir.path(),
        SOCK,
        &agent_config(&format!(
            r#"targets: [
                {{kind: "icmp", address: "{INTERNET}"}},
                {{kind: "icmp", address: "2001:db8:dead::1"}},
            ],
            interval_ms: 100, timeout_ms: 300,"#
        )),
        &[("MHR_DOWNSTREAM", "lan0")],
    );
    let graded = || {
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state).unwrap_or_default())
                .unwrap_or_default();
        s["uplinks"].as_array().is_some_and(|u| {
            u.len() == 2
                && u.iter().all(|x| {
                    x["health"]["state"] == "up"
                        && x["last_error"].as_str().is_some_and(|e| {
                            e.contains("2001:db8:dead::1") && e.contains("dead target")
                        })
                })
        })
    };
    assert!(
        wait_for(Duration::from_secs(8), graded),
        "{}\n{}",
        std::fs::read_to_string(&state).unwrap_or_default(),
        tracker.log()
    );
    assert!(!unbound().trim().is_empty(), "an unbound rule once graded");
    let rules = unbound();
    let lo = rules.lines().find(|l| l.contains("iif lo")).unwrap();
    let table = lo
        .split("lookup ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    // (`[detached]`: no lan0 exists in this namespace; the rule waits for it.)
    assert!(
        rules
            .lines()
            .any(|l| l.contains("iif lan0") && l.ends_with(&format!("lookup {table} proto 77"))),
        "{rules}"
    );
}
