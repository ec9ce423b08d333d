//! Is systemd-networkd running here with the settings that make it delete
//! other daemons' rules and routes? Its config is read as the networkd
//! process sees it (`/proc/PID/root`), main file then drop-ins, the last
//! word winning, as networkd reads them.

use std::path::Path;

use super::Problem;

/// The two settings, as networkd would end up with them from these files
/// (in its reading order); both default to yes.
pub fn foreign_settings(files: &[String]) -> Vec<String> {
    let (mut rules, mut routes) = (true, true);
    for text in files {
        let mut in_network = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_network = line == "[Network]";
                continue;
            }
            let Some((k, v)) = line.split_once('=').filter(|_| in_network) else {
                continue;
            };
            let yes = !matches!(v.trim(), "no" | "false" | "0" | "off");
            match k.trim() {
                "ManageForeignRoutingPolicyRules" => rules = yes,
                "ManageForeignRoutes" => routes = yes,
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    if rules {
        out.push("ManageForeignRoutingPolicyRules=yes".to_owned());
    }
    if routes {
        out.push("ManageForeignRoutes=yes".to_owned());
    }
    out
}

/// A process of this network namespace named `comm` (networkd, mptcpd).
pub(super) fn process(comm: &str) -> Option<u32> {
    let me = std::fs::read_link("/proc/self/ns/net").ok()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let pid: u32 = p.file_name().to_str()?.parse().ok()?;
        let c = std::fs::read_to_string(p.path().join("comm")).ok()?;
        (c.trim() == comm && std::fs::read_link(p.path().join("ns/net")).ok()? == me).then_some(pid)
    })
}

/// The networkd of this network namespace, if one runs, and what it does
/// to foreign rules and routes.
pub fn check() -> Option<Problem> {
    let pid = process("systemd-network")?;
    let root = format!("/proc/{pid}/root");
    // Not ours to read (status without root): say nothing rather than guess.
    std::fs::read_dir(&root).ok()?;
    let mut files = Vec::new();
    if let Ok(t) = std::fs::read_to_string(format!("{root}/etc/systemd/networkd.conf")) {
        files.push(t);
    }
    // Drop-ins sort by file name across the directories; /etc wins a tie.
    let mut dropins: Vec<(String, String)> = Vec::new();
    for dir in ["usr/lib", "usr/local/lib", "run", "etc"] {
        let d = format!("{root}/{dir}/systemd/networkd.conf.d");
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                dropins.retain(|(n, _)| *n != name);
                if let Ok(t) = std::fs::read_to_string(Path::new(&d).join(&name)) {
                    dropins.push((name, t));
                }
            }
        }
    }
    dropins.sort_by(|a, b| a.0.cmp(&b.0));
    files.extend(dropins.into_iter().map(|(_, t)| t));
    let settings = foreign_settings(&files);
    (!settings.is_empty()).then_some(Problem::NetworkdDeletesForeign { pid, settings })
}

#[cfg(test)]
mod tests {
    use super::foreign_settings;

    #[test]
    fn the_last_word_wins_and_both_default_to_yes() {
        assert_eq!(foreign_settings(&[]).len(), 2);
        let ours = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/networkd/multihomed-routing.conf"
        ));
        assert!(foreign_settings(&[ours.to_owned()]).is_empty());
        let back = "[Network]\nManageForeignRoutes=yes\n".to_owned();
        assert_eq!(
            foreign_settings(&[ours.to_owned(), back]),
            ["ManageForeignRoutes=yes"]
        );
        // Only [Network] counts.
        let elsewhere = "[DHCPv4]\nManageForeignRoutes=no\n".to_owned();
        assert_eq!(foreign_settings(&[elsewhere]).len(), 2);
    }
}
