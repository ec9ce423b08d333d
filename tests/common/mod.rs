//! Test scaffolding: throwaway network namespaces, daemons that die with the
//! test, and sockets opened inside a namespace. Nothing here touches the host
//! namespace's routing.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// True when the tests may create namespaces (root with iproute2).
pub fn can_use_netns() -> bool {
    nix::unistd::geteuid().is_root() && Path::new("/usr/sbin/ip").exists()
        || nix::unistd::geteuid().is_root() && Path::new("/sbin/ip").exists()
}

/// Skips a test that needs root and namespaces when not run as root (a
/// developer's `cargo test`). As root (CI, `scripts/test.sh`) or with `CI`
/// set, a missing part fails the test instead: no silent skips there.
#[macro_export]
macro_rules! require_netns {
    () => {
        if !common::can_use_netns() {
            if std::env::var_os("CI").is_some() || nix::unistd::geteuid().is_root() {
                panic!("namespace tests need root and iproute2 (scripts/install-deps.sh)");
            }
            eprintln!("skipped: needs root and iproute2");
            return;
        }
    };
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    out
}

pub fn check(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace deleted (with everything in it) when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "mhrt-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        check(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        // `ip netns exec` bind-mounts this over /etc/resolv.conf, so nothing
        // run inside can write the host's resolver file.
        let etc = PathBuf::from(format!("/etc/netns/{}", ns.name));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("resolv.conf"), "").unwrap();
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A command run inside the namespace. Its `mhr` finds an agent only
    /// at this namespace's own control socket (unless the test names
    /// another): the machine's other labs run agents of their own.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c.env("MHR_AGENT_SOCKET", self.agent_socket());
        // Nor does it read another test's state files.
        let run = format!("/run/mhr-tests/{}", self.name);
        c.env("MHR_AGENT_STATE", format!("{run}/agent-state.json"));
        c.env("MHR_TRACK_STATE", format!("{run}/track-state.json"));
        c
    }

    /// Where an agent of this namespace listens by default in tests.
    pub fn agent_socket(&self) -> String {
        format!("/run/mhr-tests/{}/agent.sock", self.name)
    }

    pub fn ip(&self, args: &[&str]) -> String {
        check(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    pub fn ip_status(&self, args: &[&str]) -> Output {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it makes
    /// stay in the namespace.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap();
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    /// A datagram socket bound to a (padded) abstract name in the namespace.
    pub fn socket(&self, name: &str, padded: bool) -> UnixDatagram {
        let addr = abstract_addr(name, padded);
        self.enter(move || {
            let s = UnixDatagram::bind_addr(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still inside keep nothing alive once the name is gone,
        // but kill them so they do not linger.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
        let _ = std::fs::remove_dir_all(format!("/run/mhr-tests/{}", self.name));
    }
}

pub fn abstract_addr(name: &str, padded: bool) -> SocketAddr {
    if padded {
        let mut full = [0u8; 107];
        full[..name.len()].copy_from_slice(name.as_bytes());
        SocketAddr::from_abstract_name(full).unwrap()
    } else {
        SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
    }
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Daemon {
    pub child: Child,
    pub stderr_path: PathBuf,
}

impl Daemon {
    pub fn spawn(mut cmd: Command, stderr_path: PathBuf) -> Daemon {
        let err = File::create(&stderr_path).unwrap();
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Daemon { child, stderr_path }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// Waits for exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns true or `limit` passes.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The one program under one of its original names: a link to `mhr`
/// beside it, as the package installs them (a file an older build left
/// there is replaced).
pub fn program(name: &str) -> PathBuf {
    let mhr = Path::new(env!("CARGO_BIN_EXE_mhr"));
    let link = mhr.with_file_name(name);
    if std::fs::read_link(&link).ok().as_deref() != Some(Path::new("mhr")) {
        let tmp = mhr.with_file_name(format!(
            ".{name}.{}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::os::unix::fs::symlink("mhr", &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
    }
    link
}

pub fn server_bin() -> PathBuf {
    program("table_allocator_server")
}

/// A server config in `dir`, with `extra` JSON members appended; a key in
/// `extra` replaces the default one (the server refuses repeated keys).
pub fn write_server_config(dir: &Path, socket: &str, extra: &str) -> PathBuf {
    let path = dir.join("server.json");
    let db = dir.join("leases.db");
    let defaults = [
        ("socket_path", format!("\"{socket}\"")),
        ("table_offset", "10000".to_owned()),
        ("num_tables", "32".to_owned()),
        ("table_timeout", "3600".to_owned()),
        ("db_path", format!("\"{}\"", db.display())),
        (
            "addr_families",
            r#"{ "inet": true, "inet6": true, "unspec": false }"#.to_owned(),
        ),
    ];
    let members: Vec<String> = defaults
        .iter()
        .filter(|(k, _)| !extra.contains(&format!("\"{k}\"")))
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    let text = format!(
        "{{\n        // written by the test\n        {}\n        {extra}\n    }}",
        members.join(",\n        ")
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts the server inside `ns` and waits until its socket exists.
pub fn start_server(ns: &Netns, config: &Path, dir: &Path, socket: &str) -> Daemon {
    let mut cmd = ns.cmd(server_bin());
    cmd.arg("-c").arg(config).arg("-v");
    let d = Daemon::spawn(
        cmd,
        dir.join(format!(
            "server-{}.log",
            COUNTER.fetch_add(1, Ordering::SeqCst)
        )),
    );
    let ns_name = ns.name.clone();
    let socket = socket.to_owned();
    let up = wait_for(Duration::from_secs(10), || {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns_name, "ss", "-xa"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("@{socket}"))
    });
    assert!(up, "server did not bind @{socket}: {}", d.log());
    d
}

/// Where cargo put the binaries under test (target/<host tuple>/...),
/// with the links of the original names beside `mhr`.
pub fn bin_dir() -> PathBuf {
    server_bin();
    client_bin();
    Path::new(env!("CARGO_BIN_EXE_mhr"))
        .parent()
        .unwrap()
        .to_owned()
}

pub fn client_bin() -> PathBuf {
    program("table_allocator_client")
}

/// `ip rule` (or `ip -6 rule`) lines in `ns` that carry our protocol.
pub fn our_rules(ns: &Netns, v6: bool) -> Vec<String> {
    let out = if v6 {
        ns.ip(&["-6", "rule"])
    } else {
        ns.ip(&["rule"])
    };
    out.lines()
        .filter(|l| l.contains("proto 77"))
        .map(|l| l.trim_end().to_owned())
        .collect()
}

/// `mhr agent` in `ns` with `config` (json5), the allocator at `socket`,
/// its servers file and logs in `dir`; waits until it has started. `env`
/// adds settings (MHR_DOWNSTREAM, ...).
pub fn start_agent(
    ns: &Netns,
    dir: &Path,
    socket: &str,
    config: &str,
    env: &[(&str, &str)],
) -> Daemon {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let cfg = dir.join(format!("agent-{n}.json"));
    // Its state file in the test's directory, never the host's /run.
    let state = dir.join(format!("agent-state-{n}.json"));
    let config = config.replacen('{', &format!("{{ state_file: \"{}\", ", state.display()), 1);
    std::fs::write(&cfg, config).unwrap();
    let mut c = ns.cmd(env!("CARGO_BIN_EXE_mhr"));
    c.arg("agent")
        .arg("-c")
        .arg(&cfg)
        .arg("--db")
        .arg(dir.join("leases.db"))
        .env("MHR_DEFAULTS", "/nonexistent")
        .env("MHR_TAS_SOCKET", socket)
        .env("MHR_SERVERS_FILE", dir.join("servers"))
        .env("MHR_DNSMASQ_PID_FILE", dir.join("no-dnsmasq.pid"));
    for (k, v) in env {
        c.env(k, v);
    }
    let d = Daemon::spawn(c, dir.join(format!("agent-{n}.log")));
    assert!(
        wait_for(Duration::from_secs(5), || d.log().contains("agent started")),
        "{}",
        d.log()
    );
    d
}
