//! The agent under address churn, on the real kernel (issue 25): later
//! addresses of an uplink get its routes after its default left main; an
//! address deleted and added again at once is routed; a thousand adds and
//! deletes, with and without a `kill -9` and a restart in the middle, leave
//! every present address its one `from` rule to its table with the uplink's
//! default, and nothing of a gone address in rules, tables or leases. And
//! an address whose lease expired while the agent was down ends with one
//! `from` rule, to its new table.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use common::*;

const SOCK: &str = "tas_churn";

struct Lab {
    host: Netns,
    _isp: Netns,
    dir: tempfile::TempDir,
    server: Option<Daemon>,
    agent: Option<Daemon>,
}

impl Lab {
    /// upA with 10.90.0.2/24 and its default via 10.90.0.1 in main.
    fn new(tag: &str) -> Lab {
        let host = Netns::new(tag);
        let isp = Netns::new(&format!("{tag}i"));
        host.ip(&[
            "link", "add", "upA", "type", "veth", "peer", "name", "lan", "netns", &isp.name,
        ]);
        host.ip(&["link", "set", "upA", "up"]);
        isp.ip(&["link", "set", "lan", "up"]);
        isp.ip(&["addr", "add", "10.90.0.1/24", "dev", "lan"]);
        let dir = tempfile::tempdir().unwrap();
        let config = write_server_config(dir.path(), SOCK, r#", "num_tables": 512"#);
        let server = start_server(&host, &config, dir.path(), SOCK);
        host.ip(&["addr", "add", "10.90.0.2/24", "dev", "upA"]);
        host.ip(&["route", "add", "default", "via", "10.90.0.1", "dev", "upA"]);
        let mut lab = Lab {
            host,
            _isp: isp,
            dir,
            server: Some(server),
            agent: None,
        };
        lab.start();
        lab
    }

    fn start(&mut self) {
        self.agent = Some(start_agent(
            &self.host,
            self.dir.path(),
            SOCK,
            r#"{ interfaces: ["up*"], ra: false, track: null }"#,
            &[],
        ));
    }

    fn agent_log(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("agent-") && n.ends_with(".log") {
                all += &std::fs::read_to_string(e.path()).unwrap_or_default();
            }
        }
        all
    }

    fn present(&self) -> BTreeSet<IpAddr> {
        self.host
            .ip(&["-4", "-o", "addr", "show", "dev", "upA"])
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3)?.split('/').next()?.parse().ok())
            .collect()
    }

    /// (address, table) of every `from` rule of ours.
    fn source_rules(&self) -> Vec<(IpAddr, String)> {
        our_rules(&self.host, false)
            .iter()
            .filter(|r| r.starts_with("10000:"))
            .filter_map(|r| {
                let a = r
                    .split("from ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                let t = r
                    .split("lookup ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .to_owned();
                Some((a, t))
            })
            .collect()
    }

    fn table(&self, t: &str) -> String {
        self.host.ip(&["route", "show", "table", t])
    }

    /// What the issue asks: every present address its one `from` rule to
    /// its table (the one its lease names) holding the uplink's default;
    /// no rule, route or lease of a gone address. `None` when all holds.
    fn unclean(&self) -> Option<String> {
        let present = self.present();
        let from = self.source_rules();
        let leases = match mhr::server::store::read_only(&self.dir.path().join("leases.db")) {
            Ok(l) => l,
            Err(e) => return Some(format!("lease database unreadable: {e}")),
        };
        let mut tables = BTreeSet::new();
        for a in &present {
            let mine: Vec<&String> = from
                .iter()
                .filter(|(f, _)| f == a)
                .map(|(_, t)| t)
                .collect();
            if mine.len() != 1 {
                return Some(format!("{a}: from rules to {mine:?}"));
            }
            let lease = leases.iter().find(|l| l.key.address == *a);
            if lease.map(|l| l.table.to_string()).as_ref() != Some(mine[0]) {
                return Some(format!(
                    "{a}: table {} but lease {:?}",
                    mine[0],
                    lease.map(|l| l.table)
                ));
            }
            if !self.table(mine[0]).contains("default via 10.90.0.1") {
                return Some(format!(
                    "{a}: table {} lacks the default:\n{}",
                    mine[0],
                    self.table(mine[0])
                ));
            }
            tables.insert(mine[0].clone());
        }
        // Exactly one rule of each kind (9000, 10000, 20000, 91000) per
        // table of a present address; none for any other table.
        let mut kinds: BTreeSet<(String, String)> = BTreeSet::new();
        for r in our_rules(&self.host, false) {
            let prio = r.split(':').next().unwrap_or("").to_owned();
            let Some(t) = r
                .split("lookup ")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
            else {
                return Some(format!("a rule without a table: {r}"));
            };
            if !tables.contains(t) {
                return Some(format!("a rule of a gone address: {r}"));
            }
            if !kinds.insert((prio, t.to_owned())) {
                return Some(format!("a second rule of its kind: {r}"));
            }
        }
        for t in &tables {
            for prio in ["9000", "10000", "20000", "91000"] {
                if !kinds.contains(&(prio.to_owned(), t.clone())) {
                    return Some(format!("table {t} lacks its {prio} rule"));
                }
            }
        }
        let routes = self
            .host
            .ip(&["route", "show", "table", "all", "proto", "77"]);
        for l in routes.lines() {
            let t = l
                .split("table ")
                .nth(1)
                .and_then(|t| t.split_whitespace().next());
            if t.is_some_and(|t| !tables.contains(t)) {
                return Some(format!("a route of a gone address: {l}"));
            }
        }
        for l in &leases {
            if !present.contains(&l.key.address) {
                return Some(format!("a lease of a gone address: {}", l.key));
            }
        }
        None
    }

    fn settle(&self, limit: Duration) {
        let mut last = None;
        let ok = wait_for(limit, || {
            last = self.unclean();
            last.is_none()
        });
        assert!(ok, "{}\n{}", last.unwrap_or_default(), self.agent_log());
    }

    /// Adds and deletes addresses 10.90.0.10-69 in a pseudo-random order
    /// through `ip -batch`, `ops` of them, in bursts.
    fn churn(&self, seed: u64, ops: usize, mut between: impl FnMut(usize)) {
        let mut rng = seed;
        let mut on: BTreeSet<u64> = BTreeSet::new();
        let mut batch = String::new();
        for n in 0..ops {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let host = 10 + rng % 60;
            if on.insert(host) {
                batch += &format!("addr add 10.90.0.{host}/24 dev upA\n");
            } else {
                on.remove(&host);
                batch += &format!("addr del 10.90.0.{host}/24 dev upA\n");
            }
            if n % 50 == 49 {
                let f = self.dir.path().join("batch");
                std::fs::write(&f, std::mem::take(&mut batch)).unwrap();
                run(std::process::Command::new("ip")
                    .args(["-n", &self.host.name, "-force", "-batch"])
                    .arg(&f));
                std::thread::sleep(Duration::from_millis(5));
                between(n + 1);
            }
        }
    }
}

/// Issue 25, 1: a second and a third address once the default has left
/// main get it in their tables.
#[test]
fn later_addresses_of_an_uplink_get_its_default() {
    require_netns!();
    let lab = Lab::new("cl");
    lab.settle(Duration::from_secs(5));
    assert!(wait_for(Duration::from_secs(2), || !lab
        .host
        .ip(&["route", "show", "table", "main"])
        .contains("default")));
    lab.host.ip(&["addr", "add", "10.90.0.3/24", "dev", "upA"]);
    lab.host.ip(&["addr", "add", "10.90.0.4/24", "dev", "upA"]);
    lab.settle(Duration::from_secs(5));
    assert_eq!(lab.source_rules().len(), 3);
}

/// Issue 25, 2: deleted and added again within 10 ms, many times.
#[test]
fn an_address_deleted_and_added_again_at_once_is_routed() {
    require_netns!();
    let lab = Lab::new("cd");
    lab.host.ip(&["addr", "add", "10.90.0.3/24", "dev", "upA"]);
    lab.settle(Duration::from_secs(5));
    let f = lab.dir.path().join("flap");
    let mut text = String::new();
    for _ in 0..100 {
        text += "addr del 10.90.0.3/24 dev upA\naddr add 10.90.0.3/24 dev upA\n";
    }
    std::fs::write(&f, text).unwrap();
    for _ in 0..5 {
        check(
            std::process::Command::new("ip")
                .args(["-n", &lab.host.name, "-batch"])
                .arg(&f),
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    lab.settle(Duration::from_secs(10));
}

/// Issue 25, 3: a thousand adds and deletes, with a `kill -9` and a
/// restart in the middle, then without.
#[test]
fn churn_with_and_without_a_kill_leaves_nothing_behind() {
    require_netns!();
    let mut lab = Lab::new("cc");
    lab.settle(Duration::from_secs(5));
    let mut killed = false;
    let agent = std::cell::RefCell::new(lab.agent.take());
    lab.churn(0x9e37_79b9_7f4a_7c15, 1000, |n| {
        if n >= 500 && !killed {
            killed = true;
            let a = agent.borrow_mut().take().unwrap();
            a.signal(nix::sys::signal::Signal::SIGKILL);
            drop(a);
        }
    });
    lab.agent = agent.into_inner();
    lab.start();
    lab.settle(Duration::from_secs(20));
    // And a churn the agent sees whole.
    lab.churn(0x2545_f491_4f6c_dd1d, 1000, |_| {});
    lab.settle(Duration::from_secs(20));
    // Ops that failed because an address went first are retried or
    // dropped; none keeps failing (warned only after 2 s).
    let log = lab.agent_log();
    assert!(!log.contains("still failing"), "{log}");
}

/// After a downtime longer than the lease, the server hands the address's
/// table to another address: the agent moves it to its new one, and one
/// `from` rule is left.
#[test]
fn an_address_whose_lease_expired_while_the_agent_was_down_gets_one_rule() {
    require_netns!();
    let mut lab = Lab::new("ce");
    lab.settle(Duration::from_secs(5));
    let old = lab.source_rules()[0].1.clone();
    let a = lab.agent.take().unwrap();
    a.signal(nix::sys::signal::Signal::SIGKILL);
    drop(a);
    // The server loses the lease (its database goes), and table 10000 is
    // given to someone else meanwhile.
    let mut s = lab.server.take().unwrap();
    s.signal(nix::sys::signal::Signal::SIGTERM);
    s.wait_exit(Duration::from_secs(5));
    for f in ["leases.db", "leases.db-wal", "leases.db-shm"] {
        let _ = std::fs::remove_file(lab.dir.path().join(f));
    }
    let config = lab.dir.path().join("server.json");
    lab.server = Some(start_server(&lab.host, &config, lab.dir.path(), SOCK));
    let other = lab.host.socket("someone-else", true);
    other
        .send_to_addr(
            br#"{"address":"10.1.1.1","ifname":"eth9","addr_family":2,"cmd":0,"version":1}"#,
            &abstract_addr(SOCK, true),
        )
        .unwrap();
    let mut buf = [0u8; 512];
    let n = other.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains(&format!("\"table\":{old}")));
    lab.start();
    assert!(
        wait_for(Duration::from_secs(5), || {
            let f = lab.source_rules();
            f.len() == 1 && f[0].1 != old
        }),
        "{:?}\n{}",
        lab.source_rules(),
        lab.agent_log()
    );
    let new = lab.source_rules()[0].1.clone();
    assert!(our_rules(&lab.host, false)
        .iter()
        .all(|r| r.contains(&format!("lookup {new} "))));
    assert!(lab.table(&new).contains("default via 10.90.0.1"));
    assert_eq!(lab.table(&old), "", "the old table is emptied of ours");
}
