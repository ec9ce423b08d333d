//! udev hotplug: a dynamic ifupdown stanza for an uplink that matches the
//! hotplug patterns, and clean-up when it goes (its dhclient, its name
//! servers, its stanza).

use nix::sys::signal::Signal;
use tracing::{info, warn};

use super::apply::{ApplyError, Context};
use crate::dns;
use crate::pidfile;

/// The first words of every stanza `hotplug add` writes: `remove` deletes
/// no other file.
const STANZA_MARK: &str = "# written by `mhr hotplug add`";

impl Context {
    /// udev remove: stop the interface's dhclient, drop its DNS lines and its
    /// dynamic stanza. Carries on past failures and reports the first.
    pub fn hotplug_remove(&self, ifname: &str) -> Result<(), ApplyError> {
        let mut first: Option<ApplyError> = None;
        // ifupdown's names for the IPv4 and the IPv6 dhclient.
        for name in [
            format!("dhclient.{ifname}.pid"),
            format!("dhclient6.{ifname}.pid"),
        ] {
            let pid_file = self.dhclient_pid_dir.join(name);
            match pidfile::signal(&pid_file, pidfile::DHCLIENT, Signal::SIGTERM) {
                Ok(pidfile::Signalled::Sent { pid }) => {
                    info!(ifname, pid, "stopped dhclient");
                    let _ = std::fs::remove_file(&pid_file);
                }
                Ok(pidfile::Signalled::NoFile) => {}
                // A stale file goes; a foreign or absurd one is left for a
                // person to look at, and its process is left alone.
                Err(e @ pidfile::PidFileError::Stale { .. }) => {
                    warn!(ifname, "{e}");
                    let _ = std::fs::remove_file(&pid_file);
                }
                Err(e) => warn!(ifname, "{e}"),
            }
        }
        if let Err(e) = self.uplinks.forget_dns(ifname, dns::Scope::Interface) {
            first.get_or_insert(e.into());
        }
        // Only a stanza `hotplug add` wrote: an admin's file of the same
        // name (a static uplink's) stays.
        let path = self.stanza_dir.join(ifname);
        match std::fs::read_to_string(&path) {
            Ok(text) if text.starts_with(STANZA_MARK) => match std::fs::remove_file(&path) {
                Ok(()) => info!(ifname, "removed dynamic stanza"),
                Err(e) => {
                    first.get_or_insert(e.into());
                }
            },
            Ok(_) => {
                warn!(ifname, path = %path.display(), "not a stanza of `mhr hotplug add`: left alone")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                first.get_or_insert(e.into());
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// udev add: an `iface IFACE inet dhcp` stanza for matching interfaces.
    /// Returns whether one was written.
    pub fn hotplug_add(&self, ifname: &str) -> Result<bool, ApplyError> {
        if !self
            .hotplug_patterns
            .iter()
            .any(|p| crate::patterns::glob_match(p, ifname))
        {
            tracing::debug!(ifname, patterns = ?self.hotplug_patterns, "no hotplug pattern matches: no stanza");
            return Ok(false);
        }
        std::fs::create_dir_all(&self.stanza_dir)?;
        let path = self.stanza_dir.join(ifname);
        // allow-hotplug: ifupdown's udev helper (ifupdown-hotplug, run after
        // our rule) brings up only interfaces marked so.
        crate::files::replace(
            &path,
            &format!("{STANZA_MARK} (udev) for a hot-plugged uplink\nallow-hotplug {ifname}\niface {ifname} inet dhcp\n"),
        )?;
        info!(ifname, path = %path.display(), "hotplug pattern matches: wrote dynamic stanza");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uplink::Uplinks;
    use std::process::Command;

    fn ctx(dir: &std::path::Path) -> Context {
        Context {
            uplinks: Uplinks {
                client_bin: "/nonexistent".into(),
                tas_socket: "tas".into(),
                servers_file: dir.join("servers"),
                dnsmasq_pid_file: dir.join("dnsmasq.pid"),
                client_log: None,
                agent_socket: dir.join("no-agent.sock"),
            },
            dhclient_pid_dir: dir.to_owned(),
            stanza_dir: dir.join("network-conf"),
            hotplug_patterns: vec!["ww*".into(), "enx*".into(), "usb*".into()],
        }
    }

    #[test]
    fn hotplug_stanzas_and_clean_up() {
        let dir = tempfile::tempdir().unwrap();
        let c = ctx(dir.path());
        assert!(c.hotplug_add("wwan0").unwrap());
        assert!(!c.hotplug_add("eth0").unwrap());
        // Debian's names for a WWAN modem and a USB Ethernet (HiLink) one.
        assert!(c.hotplug_add("wwp0s20u4i6").unwrap());
        assert!(c.hotplug_add("enx0c5b8f279a64").unwrap());
        let stanza = std::fs::read_to_string(dir.path().join("network-conf/wwan0")).unwrap();
        assert!(
            stanza.ends_with("allow-hotplug wwan0\niface wwan0 inet dhcp\n"),
            "{stanza}"
        );
        assert!(!dir.path().join("network-conf/eth0").exists());
        // A dhclient stand-in to stop (its comm must read "dhclient": a pid
        // file naming another program is not trusted), and DNS lines to drop.
        let fake = dir.path().join("dhclient");
        std::fs::copy("/bin/sleep", &fake).unwrap();
        let mut sleeper = Command::new(&fake).arg("30").spawn().unwrap();
        // Until exec, the child's comm is still this test's thread name.
        let comm = format!("/proc/{}/comm", sleeper.id());
        for _ in 0..200 {
            if std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "dhclient") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::fs::write(
            dir.path().join("dhclient.wwan0.pid"),
            sleeper.id().to_string(),
        )
        .unwrap();
        c.uplinks
            .set_dns(
                "wwan0",
                "10.0.0.2".parse().unwrap(),
                &["10.0.0.1".parse().unwrap()],
            )
            .unwrap();
        c.uplinks
            .set_dns(
                "eth0",
                "10.1.0.2".parse().unwrap(),
                &["10.1.0.1".parse().unwrap()],
            )
            .unwrap();
        c.hotplug_remove("wwan0").unwrap();
        assert!(!sleeper.wait().unwrap().success(), "dhclient was signalled");
        assert!(!dir.path().join("network-conf/wwan0").exists());
        assert!(!dir.path().join("dhclient.wwan0.pid").exists());
        let servers = std::fs::read_to_string(dir.path().join("servers")).unwrap();
        assert_eq!(servers, "server=10.1.0.1@eth0@10.1.0.2\n");
        // Removing what is already gone is fine.
        c.hotplug_remove("wwan0").unwrap();
        // An admin's file of the same name is not ours to remove.
        let admin = dir.path().join("network-conf/wwan1");
        std::fs::write(&admin, "iface wwan1 inet static\n").unwrap();
        c.hotplug_remove("wwan1").unwrap();
        assert!(admin.exists());
    }
}
