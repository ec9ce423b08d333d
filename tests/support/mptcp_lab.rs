//! The MPTCP lab of tests/mptcp_failover.rs and benches/mptcp.rs: a host
//! with two uplinks to two ISPs, both reaching one MPTCP server; a
//! receiver and a sender of one stream; a user-space delay line.
#![allow(dead_code)]

use std::time::Duration;

use crate::common::*;

pub const SOCK: &str = "tas_socket";
pub const SERVER: &str = "203.0.113.10";

pub struct Lab {
    pub host: Netns,
    pub isps: Vec<Netns>,
    pub far: Netns,
    _server: Daemon,
    _delay: Vec<Daemon>,
    pub dir: tempfile::TempDir,
    /// The forward path's delay inside each ISP (0: none).
    pub delay_ms: u32,
}

/// Host uplinks u0, u1 (10.100.{i}.2/24) to ISPs i0, i1; both ISPs reach
/// the MPTCP server's namespace (SERVER on its lo) over links of their own.
pub fn lab(tag: &str, delay_ms: u32) -> Lab {
    lab_delayed(tag, delay_ms, &[0, 1])
}

/// `lab`, with the delay line in the ISPs `on` only.
pub fn lab_delayed(tag: &str, delay_ms: u32, on: &[usize]) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let host = Netns::new(&format!("{tag}h"));
    let far = Netns::new(&format!("{tag}s"));
    far.ip(&["addr", "add", &format!("{SERVER}/32"), "dev", "lo"]);
    let config = write_server_config(dir.path(), SOCK, "");
    let server = start_server(&host, &config, dir.path(), SOCK);
    let mut isps = Vec::new();
    for i in 0..2 {
        let isp = Netns::new(&format!("{tag}i{i}"));
        let dev = format!("u{i}");
        host.ip(&[
            "link", "add", &dev, "type", "veth", "peer", "name", "lan", "netns", &isp.name,
        ]);
        host.ip(&["link", "set", &dev, "up"]);
        isp.ip(&["link", "set", "lan", "up"]);
        host.ip(&["addr", "add", &format!("10.100.{i}.2/24"), "dev", &dev]);
        isp.ip(&["addr", "add", &format!("10.100.{i}.1/24"), "dev", "lan"]);
        let up = format!("s{i}");
        isp.ip(&[
            "link", "add", "wan", "type", "veth", "peer", "name", &up, "netns", &far.name,
        ]);
        isp.ip(&["link", "set", "wan", "up"]);
        far.ip(&["link", "set", &up, "up"]);
        isp.ip(&["addr", "add", &format!("172.30.{i}.1/24"), "dev", "wan"]);
        far.ip(&["addr", "add", &format!("172.30.{i}.2/24"), "dev", &up]);
        isp.ip(&["route", "add", "default", "via", &format!("172.30.{i}.2")]);
        far.ip(&[
            "route",
            "add",
            &format!("10.100.{i}.0/24"),
            "via",
            &format!("172.30.{i}.1"),
        ]);
        // Forwarding on: a blackhole route drops in silence.
        check(isp.cmd("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
        host.ip(&[
            "route",
            "add",
            "default",
            "via",
            &format!("10.100.{i}.1"),
            "metric",
            &format!("{}", 100 + i),
        ]);
        isps.push(isp);
    }
    let mut delay = Vec::new();
    if delay_ms > 0 {
        for i in on {
            delay.push(delay_line(&isps[*i], dir.path(), delay_ms));
        }
    }
    Lab {
        host,
        isps,
        far,
        _server: server,
        _delay: delay,
        dir,
        delay_ms,
    }
}

/// A user-space delay line (no tc netem here): traffic to the server goes
/// into TUN device dl0, a program holds each packet `ms` and writes it to
/// dl1, from where the ISP forwards it on (a rule for what comes in on
/// dl1). Replies come back undelayed: the round trip is `ms` longer.
pub fn delay_line(isp: &Netns, dir: &std::path::Path, ms: u32) -> Daemon {
    let mut c = isp.cmd("python3");
    c.args(["-c", DELAY, "dl0", "dl1", &ms.to_string()]);
    let d = Daemon::spawn(c, dir.join(format!("delay-{}.log", isp.name)));
    assert!(
        wait_for(Duration::from_secs(3), || isp
            .ip_status(&["link", "show", "dl1"])
            .status
            .success()),
        "{}",
        d.log()
    );
    for dev in ["dl0", "dl1"] {
        isp.ip(&["link", "set", dev, "up"]);
        check(
            isp.cmd("sysctl")
                .args(["-qw", &format!("net.ipv4.conf.{dev}.rp_filter=0")]),
        );
    }
    check(
        isp.cmd("sysctl")
            .args(["-qw", "net.ipv4.conf.all.rp_filter=0"]),
    );
    let out = isp.ip(&["route", "show", "default"]);
    let via = out.split_whitespace().nth(2).unwrap().to_owned();
    isp.ip(&[
        "route",
        "add",
        "table",
        "100",
        &format!("{SERVER}/32"),
        "via",
        &via,
    ]);
    isp.ip(&["rule", "add", "iif", "dl1", "lookup", "100"]);
    isp.ip(&["route", "add", &format!("{SERVER}/32"), "dev", "dl0"]);
    d
}

pub const DELAY: &str = r#"
import collections, fcntl, os, select, struct, sys, time
def tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0001 | 0x1000))
    return fd
a, b = tun(sys.argv[1]), tun(sys.argv[2])
delay = float(sys.argv[3]) / 1000
q = collections.deque()
while True:
    wait = max(0.0, q[0][0] - time.monotonic()) if q else 0.5
    if select.select([a], [], [], wait)[0]:
        q.append((time.monotonic() + delay, os.read(a, 65536)))
    now = time.monotonic()
    while q and q[0][0] <= now:
        os.write(b, q.popleft()[1])
"#;

impl Lab {
    /// u0's upstream silent (its link stays up), or back.
    pub fn silence(&self, on: bool) {
        let isp = &self.isps[0];
        let server = format!("{SERVER}/32");
        match (on, self.delay_ms > 0) {
            (true, false) => isp.ip(&["route", "add", "blackhole", &server]),
            (false, false) => isp.ip(&["route", "del", "blackhole", &server]),
            (true, true) => isp.ip(&["route", "replace", "blackhole", &server]),
            (false, true) => isp.ip(&["route", "replace", &server, "dev", "dl0"]),
        };
    }
}

pub const RECEIVER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[2], 5000)); s.listen(1)
c, _ = s.accept(); c.setblocking(False)
out = open(sys.argv[1], "w"); t0 = time.time(); last = 0; total = 0
while True:
    try:
        d = c.recv(1 << 16)
        if not d:
            out.write("closed\n"); out.flush(); break
        total += len(d)
    except BlockingIOError:
        pass
    except OSError as e:
        out.write(f"error {e}\n"); out.flush(); break
    now = time.time()
    if now - last >= 0.05:
        out.write(f"{now - t0:.3f} {total}\n"); out.flush(); last = now
    time.sleep(0.005)
"#;

/// About 2 MB/s for argv[2] seconds over one MPTCP connection.
pub const SENDER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
s.connect((sys.argv[1], 5000))
buf = b"x" * 20000; end = time.time() + float(sys.argv[2])
while time.time() < end:
    s.sendall(buf); time.sleep(0.01)
print("sent all", file=sys.stderr, flush=True)
time.sleep(1); s.close()
"#;

/// The receiver's samples: (seconds, bytes so far).
pub fn samples(text: &str) -> Vec<(f64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
        })
        .collect()
}

/// The longest time without a new byte, between `from` and `to` seconds.
pub fn largest_gap(s: &[(f64, u64)], from: f64, to: f64) -> f64 {
    let mut gap: f64 = 0.0;
    let mut since = None;
    let mut prev = None;
    for &(t, n) in s.iter().filter(|(t, _)| *t >= from && *t <= to) {
        if prev.is_some_and(|p| n > p) {
            since = Some(t);
        }
        let start = *since.get_or_insert(t);
        gap = gap.max(t - start);
        prev = Some(n);
    }
    gap
}

impl Lab {
    /// The agent with its tracker (targets the server, prefers u0); `extra`
    /// adds config keys (`, mptcp: {...}`). Returns once u0 carries unbound
    /// traffic and, with MPTCP endpoints on, both have theirs.
    pub fn agent(&self, extra: &str) -> Daemon {
        self.agent_with(extra, "")
    }

    /// `agent`, with `track` keys added (`, degraded_rtt_ms: 50`); then it
    /// waits only for the endpoints.
    pub fn agent_with(&self, extra: &str, track: &str) -> Daemon {
        let d = self.dir.path();
        let agent = start_agent(
            &self.host,
            d,
            SOCK,
            &format!(
                r#"{{ interfaces: ["u*"], ra: false, track: {{ targets: [{{kind: "icmp", address: "{SERVER}"}}], preference: ["u0"], scripts_dir: "{}", state_file: "{}"{track} }}{extra} }}"#,
                d.join("none").display(),
                d.join("track.json").display()
            ),
            &[],
        );
        let ready = || {
            let e = self.endpoints();
            (extra.contains("enabled: false")
                || e.contains("10.100.0.2") && e.contains("10.100.1.2"))
                && (!track.is_empty() || self.unbound_on("u0"))
        };
        assert!(
            wait_for(Duration::from_secs(10), ready),
            "{}\n{}",
            self.endpoints(),
            agent.log()
        );
        agent
    }

    pub fn endpoints(&self) -> String {
        self.host.ip(&["mptcp", "endpoint", "show"])
    }

    /// The tracker's 50000 rule points at `dev`'s table.
    pub fn unbound_on(&self, dev: &str) -> bool {
        self.host.ip(&["rule"]).lines().any(|l| {
            l.starts_with("50000:") && {
                let t = l.split("lookup ").nth(1).unwrap_or("");
                let t = t.split_whitespace().next().unwrap_or("");
                self.host
                    .ip(&["route", "show", "table", t])
                    .contains(&format!("dev {dev}"))
            }
        })
    }

    /// Established subflows to the server from `from`.
    pub fn subflows(&self, from: &str) -> usize {
        let out = run(self
            .host
            .cmd("ss")
            .args(["-tnH", "state", "established", "dst", SERVER]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!("{from}:")) || l.contains(&format!("{from}%")))
            .count()
    }

    /// The smallest round trip ping sees over u0, in ms.
    pub fn rtt_ms(&self) -> f64 {
        let out = run(self.host.cmd("ping").args([
            "-c",
            "3",
            "-i",
            "0.2",
            "-q",
            "-I",
            "10.100.0.2",
            SERVER,
        ]));
        String::from_utf8_lossy(&out.stdout)
            .rsplit("= ")
            .next()
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// A receiver at the server and a sender streaming for `secs`; the
    /// receiver's samples go to the returned file.
    pub fn stream(&self, secs: u32) -> (Daemon, Daemon, std::path::PathBuf) {
        let d = self.dir.path();
        let log = d.join("received");
        let mut rx = self.far.cmd("python3");
        rx.args(["-c", RECEIVER]).arg(&log).arg(SERVER);
        let rx = Daemon::spawn(rx, d.join("receiver.log"));
        std::thread::sleep(Duration::from_millis(300));
        let mut tx = self.host.cmd("python3");
        tx.args(["-c", SENDER, SERVER, &secs.to_string()]);
        let tx = Daemon::spawn(tx, d.join("sender.log"));
        (rx, tx, log)
    }

    /// Bytes acknowledged so far on each established subflow from `from`.
    pub fn acked(&self, from: &str) -> u64 {
        let out = run(self
            .host
            .cmd("ss")
            .args(["-tniH", "state", "established", "dst", SERVER]));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // ss -i puts each socket's details on the line after it.
        let lines: Vec<&str> = text.lines().collect();
        let mut sum = 0;
        for (i, l) in lines.iter().enumerate() {
            if l.contains(&format!("{from}:")) || l.contains(&format!("{from}%")) {
                if let Some(info) = lines.get(i + 1) {
                    sum += info
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("bytes_acked:"))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        sum
    }

    /// Seconds into the stream, as the receiver counts them.
    pub fn stream_time(log: &std::path::Path) -> f64 {
        samples(&std::fs::read_to_string(log).unwrap_or_default())
            .last()
            .map(|s| s.0)
            .unwrap_or(0.0)
    }
}
