//! Helpers shared by the root benchmarks: a throwaway network namespace and
//! percentile printing.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn ip(ns: &str, args: &[&str]) {
    let ok = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ip {args:?}");
}

/// A network namespace removed, with its processes, when dropped. The
/// benchmark itself may have entered it: it is spared.
pub struct Ns(pub String);

impl Ns {
    pub fn new(name: String) -> Ns {
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        std::fs::create_dir_all(format!("/etc/netns/{name}")).unwrap();
        std::fs::write(format!("/etc/netns/{name}/resolv.conf"), "").unwrap();
        ip(&name, &["link", "set", "lo", "up"]);
        Ns(name)
    }

    /// Moves the calling thread (and the children it spawns) into it.
    pub fn enter(&self) {
        use std::os::fd::AsFd;
        let f = std::fs::File::open(format!("/run/netns/{}", self.0)).unwrap();
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let me = std::process::id().to_string();
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if pid != me {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.0));
    }
}

/// A child process killed and reaped when dropped.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The allocator server on abstract `socket`, its database in `dir`, run in
/// network namespace `netns` (else in the caller's), given 300 ms to bind.
pub fn start_server(dir: &Path, socket: &str, netns: Option<&str>) -> Kill {
    let cfg = dir.join("s.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"socket_path":"{socket}","num_tables":1024,"db_path":"{}"}}"#,
            dir.join("l.db").display()
        ),
    )
    .unwrap();
    let server = program("table_allocator_server");
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, &server]);
            c
        }
        None => Command::new(server),
    };
    let child = cmd
        .arg("-c")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Kill(child)
}

pub fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Root benchmarks print a note and return elsewhere.
/// The one program under one of its original names: a link to `mhr`
/// beside it, as the package installs them.
pub fn program(name: &str) -> String {
    let mhr = Path::new(env!("CARGO_BIN_EXE_mhr"));
    let link = mhr.with_file_name(name);
    if std::fs::read_link(&link).ok().as_deref() != Some(Path::new("mhr")) {
        let tmp = mhr.with_file_name(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink("mhr", &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
    }
    link.display().to_string()
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `ip -batch -` of `lines`, in network namespace `ns` (else the caller's).
pub fn batch(ns: Option<&str>, lines: &str) {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let mut c = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success());
}

/// A `NAME value kB` field of `/proc/PID/FILE` (0 when absent).
pub fn proc_field(pid: u32, file: &str, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of `pid`.
pub fn cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}
