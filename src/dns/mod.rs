//! The dnsmasq servers file: one `server=NS@IFACE@SRC` line per name server
//! of each interface, so that dnsmasq asks each server over the interface
//! (and from the address) that supplied it. dnsmasq reads the interface
//! first, then the source address; the original's `NS@SRC@IFACE` order is
//! rejected by dnsmasq 2.90 ("interface can only be specified once").
//!
//! Updates are atomic (temp file and rename) and serialized with a lock, so
//! concurrent hooks never lose or duplicate a line.

pub mod txt;

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_SERVERS_FILE: &str = "/run/multihomed-routing/dnsmasq-servers";
pub const DEFAULT_DNSMASQ_PID_FILE: &str = "/run/dnsmasq/dnsmasq.pid";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerLine {
    pub server: IpAddr,
    pub ifname: String,
    pub source: IpAddr,
}

impl ServerLine {
    pub fn render(&self) -> String {
        format!("server={}@{}@{}", self.server, self.ifname, self.source)
    }

    /// Parses a line we wrote; anything else is `None` (and kept as is).
    pub fn parse(line: &str) -> Option<ServerLine> {
        let rest = line.trim().strip_prefix("server=")?;
        let mut parts = rest.split('@');
        let server = parts.next()?.parse().ok()?;
        let ifname = parts.next()?.to_owned();
        let source = parts.next()?.parse().ok()?;
        if parts.next().is_some() || ifname.is_empty() {
            return None;
        }
        Some(ServerLine {
            server,
            ifname,
            source,
        })
    }
}

/// Which of an interface's lines an update replaces: all of them (the
/// interface went away), one family's (the DHCPv4 and static hooks: a new
/// address replaces the old one's lines), or one source address's (IPv6,
/// where RA and DHCPv6 each bring servers for their own address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Interface,
    Family(crate::addr::Family),
    Source(IpAddr),
}

impl Scope {
    fn covers(&self, l: &ServerLine) -> bool {
        match self {
            Scope::Interface => true,
            Scope::Family(f) => crate::addr::family_of(&l.source) == *f,
            Scope::Source(s) => l.source == *s,
        }
    }
}

/// The file's new text after replacing `ifname`'s lines in `scope` with
/// `lines`.
pub fn replace_interface(text: &str, ifname: &str, scope: Scope, lines: &[ServerLine]) -> String {
    let mut wanted: Vec<&ServerLine> = Vec::new();
    for l in lines {
        if !wanted.contains(&l) {
            wanted.push(l);
        }
    }
    let current: Vec<ServerLine> = text
        .lines()
        .filter_map(ServerLine::parse)
        .filter(|s| s.ifname == ifname && scope.covers(s))
        .collect();
    if current.iter().eq(wanted.iter().copied()) {
        // Unchanged: keep the file as it is, lines in place.
        return text.to_owned();
    }
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| ServerLine::parse(l).is_none_or(|s| s.ifname != ifname || !scope.covers(&s)))
        .map(str::to_owned)
        .collect();
    for l in lines {
        let r = l.render();
        if !out.contains(&r) {
            out.push(r);
        }
    }
    let mut s = out.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

#[derive(Debug, thiserror::Error)]
#[error("servers file {path}: {source}")]
pub struct DnsError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Sets `ifname`'s lines in the servers file (empty `lines` removes them).
/// Returns whether the file changed.
pub fn set_interface(
    path: &Path,
    ifname: &str,
    scope: Scope,
    lines: &[ServerLine],
) -> Result<bool, DnsError> {
    let err = |source| DnsError {
        path: path.to_owned(),
        source,
    };
    if ifname.contains('@') || crate::protocol::validate_ifname(ifname).is_err() {
        // dnsmasq reads `server=NS@IFACE@SRC`: such a line could not be
        // read back, and so never removed.
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {ifname:?} cannot be written to the servers file (contains '@', '/', ':', white space or a control character)"),
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    // Lock a sibling file: the servers file itself is replaced by rename.
    let lock_path = path.with_extension("lock");
    let lock = crate::files::open_lock(&lock_path).map_err(err)?;
    let _locked = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| err(io::Error::from(e)))?;
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(err(e)),
    };
    let new = replace_interface(&old, ifname, scope, lines);
    if new == old {
        return Ok(false);
    }
    crate::files::replace(path, &new).map_err(err)?;
    Ok(true)
}

/// Tells dnsmasq to re-read its servers file: SIGHUP to the pid in its pid
/// file (not to every process named dnsmasq), only when that pid runs
/// dnsmasq. `Ok(None)` when there is no pid file.
pub fn reload_dnsmasq(pid_file: &Path) -> Result<Option<i32>, crate::pidfile::PidFileError> {
    use crate::pidfile::{signal, Signalled, DNSMASQ};
    match signal(pid_file, DNSMASQ, nix::sys::signal::Signal::SIGHUP)? {
        Signalled::Sent { pid } => Ok(Some(pid)),
        Signalled::NoFile => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ns: &str, ifname: &str, src: &str) -> ServerLine {
        ServerLine {
            server: ns.parse().unwrap(),
            ifname: ifname.into(),
            source: src.parse().unwrap(),
        }
    }

    #[test]
    fn interface_comes_before_source() {
        assert_eq!(
            line("8.8.8.8", "wwan0", "10.1.0.5").render(),
            "server=8.8.8.8@wwan0@10.1.0.5"
        );
        assert_eq!(
            ServerLine::parse("server=fe80::1@eth0@fe80::2"),
            Some(line("fe80::1", "eth0", "fe80::2"))
        );
        assert_eq!(ServerLine::parse("server=8.8.8.8"), None);
        assert_eq!(ServerLine::parse("# comment"), None);
    }

    #[test]
    fn replaces_only_that_interface() {
        let text = "server=1.1.1.1@eth0@10.0.0.2\nserver=9.9.9.9@eth1@10.1.0.2\n# mine\n";
        let new = replace_interface(
            text,
            "eth0",
            Scope::Interface,
            &[line("8.8.8.8", "eth0", "10.0.0.3")],
        );
        assert_eq!(
            new,
            "server=9.9.9.9@eth1@10.1.0.2\n# mine\nserver=8.8.8.8@eth0@10.0.0.3\n"
        );
        assert_eq!(
            replace_interface(&new, "eth0", Scope::Interface, &[]),
            "server=9.9.9.9@eth1@10.1.0.2\n# mine\n"
        );
        // No duplicates.
        let twice = [
            line("8.8.8.8", "eth0", "10.0.0.3"),
            line("8.8.8.8", "eth0", "10.0.0.3"),
        ];
        assert_eq!(
            replace_interface("", "eth0", Scope::Interface, &twice),
            "server=8.8.8.8@eth0@10.0.0.3\n"
        );
    }

    #[test]
    fn scopes_keep_the_other_lines() {
        let text = "server=10.0.0.1@eth0@10.0.0.2\nserver=fe80::1@eth0@2001:db8::2\nserver=2001:db8::53@eth0@2001:db8::99\n";
        let v6 = line("2001:db8::1", "eth0", "2001:db8::2");
        let new = replace_interface(
            text,
            "eth0",
            Scope::Source(v6.source),
            std::slice::from_ref(&v6),
        );
        assert_eq!(
            new,
            "server=10.0.0.1@eth0@10.0.0.2\nserver=2001:db8::53@eth0@2001:db8::99\nserver=2001:db8::1@eth0@2001:db8::2\n"
        );
        let v4_gone =
            replace_interface(&new, "eth0", Scope::Family(crate::addr::Family::Inet), &[]);
        assert_eq!(v4_gone.lines().count(), 2);
        assert_eq!(replace_interface(&new, "eth0", Scope::Interface, &[]), "");
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servers");
        let threads: Vec<_> = (0..10)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let l = line(
                        &format!("10.9.0.{i}"),
                        &format!("eth{i}"),
                        &format!("10.0.{i}.2"),
                    );
                    set_interface(&path, &format!("eth{i}"), Scope::Interface, &[l]).unwrap()
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap());
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 10, "{text}");
        assert!(!set_interface(
            &path,
            "eth3",
            Scope::Interface,
            &[line("10.9.0.3", "eth3", "10.0.3.2")]
        )
        .unwrap());
        assert!(set_interface(&path, "eth3", Scope::Interface, &[]).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 9);
    }

    #[test]
    fn names_the_servers_file_cannot_hold_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servers");
        let l = [line("10.0.0.1", "a@b", "10.0.0.2")];
        let e = set_interface(&path, "a@b", Scope::Interface, &l).unwrap_err();
        assert!(e.to_string().contains("cannot be written"), "{e}");
        assert!(!path.exists());
    }

    #[test]
    fn reload_without_pid_file_is_not_an_error() {
        assert_eq!(
            reload_dnsmasq(Path::new("/nonexistent/dnsmasq.pid")).unwrap(),
            None
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pid");
        std::fs::write(&p, "garbage").unwrap();
        assert!(reload_dnsmasq(&p).is_err());
    }
}
