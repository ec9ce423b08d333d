//! Helpers shared by the root benchmarks: a throwaway network namespace and
//! percentile printing.
#![allow(dead_code)]

use std::process::Command;
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

pub fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Root benchmarks print a note and return elsewhere.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
