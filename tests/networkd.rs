//! The agent beside the real systemd-networkd 252 at its defaults
//! (ManageForeignRoutingPolicyRules=yes, ManageForeignRoutes=yes), which
//! configures two uplinks by DHCP. When networkd configures another link
//! (a LAN port, a container's veth) it deletes every rule it did not make;
//! when it restarts, rules and routes. The agent puts them back within a
//! second, and says who took them. networkd runs in the test's namespace
//! under `unshare --mount`, with private /run and config directories, and
//! a udev database of our own that says its links are initialized.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const SOCK: &str = "tas_nd";
const NETWORKD: &str = "/lib/systemd/systemd-networkd";

struct Lab {
    host: Netns,
    _isps: Vec<Netns>,
    dir: tempfile::TempDir,
    _server: Daemon,
}

impl Lab {
    fn new() -> Lab {
        let host = Netns::new("nd");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("network")).unwrap();
        std::fs::create_dir_all(d.join("udev")).unwrap();
        std::fs::create_dir_all(d.join("empty")).unwrap();
        let mut isps = Vec::new();
        for i in 1..=2 {
            let isp = Netns::new(&format!("ndi{i}"));
            let net = format!("10.6{i}.0");
            host.ip(&[
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
            isp.ip(&["link", "set", "lan", "up"]);
            isp.ip(&["addr", "add", &format!("{net}.1/24"), "dev", "lan"]);
            let out = run(isp.cmd("dnsmasq").args([
                "-C",
                "/dev/null",
                "--user=root",
                "--group=root",
                &format!("--pid-file={}", d.join(format!("isp{i}.pid")).display()),
                "--bind-interfaces",
                &format!("--listen-address={net}.1"),
                "--no-resolv",
                "--no-hosts",
                &format!("--dhcp-range={net}.100,{net}.100,255.255.255.0,1h"),
                &format!("--dhcp-option=option:router,{net}.1"),
                &format!(
                    "--dhcp-leasefile={}",
                    d.join(format!("isp{i}.leases")).display()
                ),
            ]));
            assert!(out.status.success(), "{out:?}");
            std::fs::write(
                d.join(format!("network/wan{i}.network")),
                format!("[Match]\nName=wan{i}\n[Network]\nDHCP=ipv4\n"),
            )
            .unwrap();
            isps.push(isp);
        }
        // The LAN port networkd will configure later.
        std::fs::write(
            d.join("network/lan0.network"),
            "[Match]\nName=lan0\n[Network]\nAddress=192.168.50.1/24\n",
        )
        .unwrap();
        let config = write_server_config(d, SOCK, "");
        let server = start_server(&host, &config, d, SOCK);
        let lab = Lab {
            host,
            _isps: isps,
            dir,
            _server: server,
        };
        for dev in ["lo", "wan1", "wan2"] {
            lab.initialized(&lab.index(dev));
        }
        lab
    }

    fn index(&self, dev: &str) -> String {
        check(
            self.host
                .cmd("cat")
                .arg(format!("/sys/class/net/{dev}/ifindex")),
        )
        .trim()
        .to_owned()
    }

    /// What udev would write for a link it has seen: networkd configures
    /// only links the udev database calls initialized.
    fn initialized(&self, index: &str) {
        std::fs::write(self.dir.path().join(format!("udev/n{index}")), "I:1\n").unwrap();
    }

    /// networkd, at its defaults, in a private mount namespace.
    fn networkd(&self, n: usize) -> Daemon {
        let d = self.dir.path().display();
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/udev/data /run/systemd/netif && \
             chown systemd-network:systemd-network /run/systemd/netif && \
             mount --bind {d}/udev /run/udev/data && \
             mount --bind {d}/network /etc/systemd/network && \
             for c in /etc/systemd/networkd.conf.d /usr/lib/systemd/networkd.conf.d; do \
               [ -d $c ] && mount --bind {d}/empty $c; done; \
             exec {NETWORKD}"
        );
        let mut c = self.host.cmd("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
        Daemon::spawn(c, self.dir.path().join(format!("networkd-{n}.log")))
    }

    /// Our rules, sorted (a rule put back comes after its peers of the
    /// same priority).
    fn ours(&self) -> Vec<String> {
        let mut r = our_rules(&self.host, false);
        r.sort();
        r
    }
}

/// `ip rule` every 10 ms until stopped: the longest stretch in which not
/// all of `want` were there.
fn watch_gap(
    ns: String,
    want: Vec<String>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let (mut worst, mut since): (Duration, Option<Instant>) = (Duration::ZERO, None);
        while !stop.load(Ordering::SeqCst) {
            let out = Command::new("ip")
                .args(["-n", &ns, "rule"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let all = want.iter().all(|w| text.lines().any(|l| l.trim_end() == w));
            match (all, since) {
                (false, None) => since = Some(Instant::now()),
                (true, Some(t)) => {
                    worst = worst.max(t.elapsed());
                    since = None;
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        worst.max(since.map_or(Duration::ZERO, |t| t.elapsed()))
    })
}

#[test]
fn rules_and_routes_networkd_deletes_are_back_within_a_second() {
    require_netns!();
    assert!(
        std::path::Path::new(NETWORKD).exists(),
        "install-deps installs systemd"
    );
    let lab = Lab::new();
    let mut networkd = lab.networkd(0);
    let agent = start_agent(
        &lab.host,
        lab.dir.path(),
        SOCK,
        r#"{ interfaces: ["wan*"], ra: false, track: null }"#,
        &[],
    );
    assert!(
        wait_for(Duration::from_secs(20), || lab.ours().len() == 8),
        "{:?}\n{}\n{}",
        lab.ours(),
        agent.log(),
        networkd.log()
    );
    let rules = lab.ours();
    let table = |dev: &str| -> String {
        rules
            .iter()
            .find(|r| r.contains(&format!("oif {dev} lookup")))
            .and_then(|r| r.split("lookup ").nth(1))
            .map(|t| t.split_whitespace().next().unwrap().to_owned())
            .unwrap()
    };
    let (t1, t2) = (table("wan1"), table("wan2"));
    let routes = |t: &str| lab.host.ip(&["route", "show", "table", t]);
    assert!(
        wait_for(Duration::from_secs(5), || routes(&t1)
            .contains("default via 10.61.0.1")),
        "{}",
        routes(&t1)
    );

    // A new link networkd configures: it deletes the foreign rules.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = watch_gap(lab.host.name.clone(), rules.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let next: u32 = lab.index("wan2").parse::<u32>().unwrap();
    for i in 1..=4 {
        lab.initialized(&(next + i).to_string());
    }
    lab.host.ip(&[
        "link", "add", "lan0", "type", "veth", "peer", "name", "lan0p",
    ]);
    lab.host.ip(&["link", "set", "lan0p", "up"]);
    assert!(
        wait_for(Duration::from_secs(10), || lab
            .host
            .ip(&["addr", "show", "lan0"])
            .contains("192.168.50.1")),
        "networkd did not configure lan0: {}",
        networkd.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let gap = sampler.join().unwrap();
    eprintln!("rules missing after networkd configured lan0: at most {gap:?}");
    assert!(gap <= Duration::from_secs(1), "rules missing for {gap:?}");
    assert_eq!(lab.ours(), rules);
    let log = agent.log();
    assert!(
        log.contains("deleted by someone else") && log.contains("systemd-network"),
        "{log}"
    );

    // networkd restarts: rules and routes of others go; back within 1 s.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = watch_gap(lab.host.name.clone(), rules.clone(), stop.clone());
    networkd.signal(nix::sys::signal::Signal::SIGTERM);
    networkd.wait_exit(Duration::from_secs(5));
    let networkd = lab.networkd(1);
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::SeqCst);
    let gap = sampler.join().unwrap();
    eprintln!("rules missing after a networkd restart: at most {gap:?}");
    assert!(
        gap <= Duration::from_secs(1),
        "rules missing for {gap:?}\n{}\n{}",
        networkd.log(),
        agent.log()
    );
    assert_eq!(lab.ours(), rules);
    for (t, gw) in [(&t1, "10.61.0.1"), (&t2, "10.62.0.1")] {
        assert!(
            wait_for(Duration::from_secs(1), || routes(t)
                .contains(&format!("default via {gw}"))),
            "table {t}: {}",
            routes(t)
        );
    }
    // And main holds no uplink default (networkd's are moved again).
    assert!(
        wait_for(Duration::from_secs(3), || !lab
            .host
            .ip(&["route", "show", "table", "main"])
            .contains("default")),
        "{}",
        lab.host.ip(&["route", "show", "table", "main"])
    );
    // `mhr doctor` names the cause.
    let out = run(lab
        .host
        .cmd(env!("CARGO_BIN_EXE_mhr"))
        .args(["doctor", "--db"])
        .arg(lab.dir.path().join("leases.db"))
        .env("MHR_DEFAULTS", "/nonexistent")
        .env("MHR_TAS_SOCKET", SOCK));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ManageForeignRoutingPolicyRules"), "{text}");
}
