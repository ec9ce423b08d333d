//! The DNS path, as `mhr doctor` checks it: the host's resolver points at
//! a local dnsmasq, that dnsmasq runs and reads our servers file, and each
//! uplink has its servers there. Gathering reads /etc and /proc; the
//! verdict is pure.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::AddressStatus;

/// A running dnsmasq and the servers files its command line and config
/// files name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnsmasq {
    pub pid: i32,
    pub servers_files: Vec<PathBuf>,
}

/// What the doctor looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPath {
    /// The first `nameserver` of /etc/resolv.conf.
    pub resolver: Option<IpAddr>,
    pub dnsmasq: Vec<Dnsmasq>,
    /// Whether the pid file we signal names one of them.
    pub pid_file_ok: bool,
    pub pid_file: PathBuf,
    pub servers_file: PathBuf,
}

/// Problems on the path, each with what to do in the same line.
pub fn check(p: &DnsPath, addresses: &[AddressStatus]) -> Vec<String> {
    let mut out = Vec::new();
    let ours = p
        .dnsmasq
        .iter()
        .find(|d| d.servers_files.iter().any(|f| f == &p.servers_file));
    match (&p.dnsmasq[..], ours) {
        ([], _) => out.push(format!(
            "dns: no dnsmasq runs: nothing reads {} (install dnsmasq, or run dnsmasq-base with --servers-file={} --no-resolv --listen-address=127.0.0.1)",
            p.servers_file.display(),
            p.servers_file.display()
        )),
        (_, None) => out.push(format!(
            "dns: dnsmasq runs (pid {}) but does not read {} (add servers-file={} to its config, e.g. /etc/dnsmasq.d/multihomed-routing.conf, which the dnsmasq package reads and dnsmasq-base does not)",
            p.dnsmasq[0].pid,
            p.servers_file.display(),
            p.servers_file.display()
        )),
        (_, Some(d)) if !p.pid_file_ok => out.push(format!(
            "dns: dnsmasq (pid {}) reads the servers file, but {} does not name it, so it is never told to reload (set MHR_DNSMASQ_PID_FILE)",
            d.pid,
            p.pid_file.display()
        )),
        _ => {}
    }
    match p.resolver {
        None => out.push(
            "dns: /etc/resolv.conf names no nameserver (point it at the local dnsmasq: nameserver 127.0.0.1)".into(),
        ),
        Some(ip) if ip.is_loopback() && ip != IpAddr::from([127, 0, 0, 53]) => {}
        Some(ip) => out.push(format!(
            "dns: /etc/resolv.conf sends queries to {ip}, not to the local dnsmasq, so the per-uplink servers are not used (nameserver 127.0.0.1; with NetworkManager set dns=none, with systemd-resolved point its DNS= at 127.0.0.1 or disable its stub)"
        )),
    }
    // Per uplink: an interface and family with servers for one of its
    // addresses (a privacy address shares its stable address's) is served.
    let served = |a: &AddressStatus| {
        addresses
            .iter()
            .any(|b| b.ifname == a.ifname && b.family == a.family && !b.dns_servers.is_empty())
    };
    for a in addresses {
        if !served(a) && a.table != 0 {
            if let (Some(ifname), Some(addr)) = (&a.ifname, a.address) {
                out.push(format!(
                    "dns: no name servers for {ifname} ({addr}) in {} (its DHCP lease or RA gave none, or the hook did not run)",
                    p.servers_file.display()
                ));
            }
        }
    }
    out
}

/// The first `nameserver` of a resolv.conf.
pub fn first_nameserver(text: &str) -> Option<IpAddr> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("nameserver"))
            .then(|| w.next()?.split('%').next()?.parse().ok())
            .flatten()
    })
}

/// The servers files a dnsmasq command line names, directly or through its
/// config files and directories (one level, as the Debian packages use).
pub fn servers_files(args: &[String], read: impl Fn(&Path) -> Option<String>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut confs: Vec<PathBuf> = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    let mut explicit_conf = false;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let (key, val) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (a.as_str(), None),
        };
        let mut value = || val.clone().or_else(|| it.next().cloned());
        match key {
            "--servers-file" => files.extend(value().map(PathBuf::from)),
            "-C" | "--conf-file" => {
                explicit_conf = true;
                confs.extend(value().map(PathBuf::from));
            }
            "-7" | "--conf-dir" => dirs.extend(value()),
            _ => {}
        }
    }
    if !explicit_conf {
        confs.push("/etc/dnsmasq.conf".into());
    }
    let mut scan = |text: &str, dirs: &mut Vec<String>| {
        for l in text.lines().map(str::trim) {
            if let Some(f) = l.strip_prefix("servers-file=") {
                files.push(PathBuf::from(f.trim()));
            } else if let Some(d) = l.strip_prefix("conf-dir=") {
                dirs.push(d.trim().to_owned());
            }
        }
    };
    for c in &confs {
        if let Some(text) = read(c) {
            scan(&text, &mut dirs);
        }
    }
    for spec in dirs.clone() {
        // `DIR[,.ext,...]` or `DIR/*.conf`: files in DIR.
        let dir = spec
            .split(',')
            .next()
            .unwrap_or("")
            .trim_end_matches("/*.conf");
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            if let Some(text) = read(&e.path()) {
                scan(&text, &mut Vec::new());
            }
        }
    }
    files
}

/// Reads the host: /etc/resolv.conf, every dnsmasq in /proc, the pid file.
pub fn gather(servers_file: &Path, pid_file: &Path) -> DnsPath {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    // Only a dnsmasq in our network namespace can answer our resolver.
    let netns = |p: &Path| std::fs::read_link(p.join("ns/net")).ok();
    let ours = netns(Path::new("/proc/self"));
    let mut dnsmasq = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if read(&e.path().join("comm")).as_deref().map(str::trim_end) != Some("dnsmasq")
            || netns(&e.path()) != ours
        {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        dnsmasq.push(Dnsmasq {
            pid,
            servers_files: servers_files(&args, read),
        });
    }
    let named = read(pid_file).and_then(|t| crate::pidfile::parse_pid(&t));
    DnsPath {
        resolver: read(Path::new("/etc/resolv.conf")).and_then(|t| first_nameserver(&t)),
        pid_file_ok: named.is_some_and(|p| dnsmasq.iter().any(|d| d.pid == p)),
        dnsmasq,
        pid_file: pid_file.to_owned(),
        servers_file: servers_file.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn finds_the_servers_file_where_dnsmasq_is_told_of_it() {
        let none = |_: &Path| None;
        assert_eq!(
            servers_files(&args("dnsmasq --servers-file=/run/x -k"), none),
            [PathBuf::from("/run/x")]
        );
        assert_eq!(
            servers_files(&args("dnsmasq --servers-file /run/y"), none),
            [PathBuf::from("/run/y")]
        );
        let conf = |p: &Path| {
            (p == Path::new("/etc/my.conf")).then(|| "no-resolv\nservers-file=/run/z\n".to_owned())
        };
        assert_eq!(
            servers_files(&args("dnsmasq -C /etc/my.conf"), conf),
            [PathBuf::from("/run/z")]
        );
        assert!(servers_files(&args("dnsmasq -C /dev/null"), conf).is_empty());
    }

    #[test]
    fn reads_the_first_nameserver() {
        assert_eq!(
            first_nameserver("# x\nsearch lan\nnameserver 127.0.0.1\nnameserver 8.8.8.8\n"),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            first_nameserver("nameserver fe80::1%eth0\n"),
            Some("fe80::1".parse().unwrap())
        );
        assert_eq!(first_nameserver(""), None);
    }

    #[test]
    fn verdicts_say_what_is_missing() {
        let mut p = DnsPath {
            resolver: Some("127.0.0.53".parse().unwrap()),
            dnsmasq: vec![],
            pid_file_ok: false,
            pid_file: "/run/dnsmasq/dnsmasq.pid".into(),
            servers_file: "/run/multihomed-routing/dnsmasq-servers".into(),
        };
        let v = check(&p, &[]);
        assert!(
            v[0].contains("no dnsmasq runs") && v[1].contains("127.0.0.53"),
            "{v:?}"
        );
        p.dnsmasq = vec![Dnsmasq {
            pid: 7,
            servers_files: vec![],
        }];
        assert!(check(&p, &[])[0].contains("does not read"));
        p.dnsmasq[0].servers_files = vec![p.servers_file.clone()];
        assert!(check(&p, &[])[0].contains("never told to reload"));
        p.pid_file_ok = true;
        p.resolver = Some("127.0.0.1".parse().unwrap());
        assert!(check(&p, &[]).is_empty());
    }
}
