//! Whether NetworkManager keeps MPTCP endpoints on an uplink: the profile
//! active on the device (its run-state file names the profile's uuid), that
//! profile's `connection.mptcp-flags`, else the global default from
//! NetworkManager.conf. NetworkManager 1.40+ treats an unset value as
//! enabled, and on reapply deletes endpoints it did not add.

use std::path::Path;

/// `connection.mptcp-flags`'s "disabled" bit.
const DISABLED: u32 = 0x1;

/// What NetworkManager does with MPTCP on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NmMptcp {
    /// The profile's id (its name), or its uuid when it has none.
    pub profile: String,
    /// The flags in effect, as written (or "default").
    pub flags: String,
}

/// Pure: the flags value of a keyfile's `key` in `section` (a section name
/// with a `*` suffix matches any section starting with the rest, as
/// NetworkManager.conf's `[connection-foo]` sections do).
fn keyfile_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut here = false;
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            here = match section.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == section,
            };
        } else if here {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    found = Some(v.trim().to_string());
                }
            }
        }
    }
    found
}

/// Pure: a flags value (a number, or names joined by `,` or `|`) as bits;
/// None for what NetworkManager would refuse.
pub fn flag_bits(value: &str) -> Option<u32> {
    let v = value.trim();
    if let Some(hex) = v.strip_prefix("0x") {
        return u32::from_str_radix(hex, 16).ok();
    }
    if let Ok(n) = v.parse() {
        return Some(n);
    }
    v.split([',', '|', ' '])
        .filter(|s| !s.is_empty())
        .try_fold(0, |acc, name| {
            let bit = match name {
                "none" | "default" => 0,
                "disabled" => DISABLED,
                "enabled" => 0x2,
                "also-without-sysctl" => 0x4,
                "also-without-default-route" => 0x8,
                "signal" => 0x10,
                "subflow" => 0x20,
                "backup" => 0x40,
                "fullmesh" => 0x80,
                _ => return None,
            };
            Some(acc | bit)
        })
}

/// Pure: the flags in effect from the profile's value and the global
/// default; Some when NetworkManager manages endpoints.
pub fn effective(profile: Option<&str>, global: Option<&str>) -> Option<String> {
    fn set(v: Option<&str>) -> Option<&str> {
        v.filter(|v| flag_bits(v).is_some_and(|b| b != 0))
    }
    let flags = set(profile).or(set(global));
    match flags {
        Some(v) if flag_bits(v).is_some_and(|b| b & DISABLED != 0) => None,
        Some(v) => Some(v.to_string()),
        None => Some("default".into()),
    }
}

fn read_dir_sorted(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The global default, from the configuration files in NetworkManager's
/// order (later files win).
fn global_flags(root: &Path) -> Option<String> {
    let mut files = vec![root.join("etc/NetworkManager/NetworkManager.conf")];
    for d in [
        "usr/lib/NetworkManager/conf.d",
        "run/NetworkManager/conf.d",
        "etc/NetworkManager/conf.d",
    ] {
        files.extend(read_dir_sorted(&root.join(d)));
    }
    files
        .iter()
        .rev()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|t| keyfile_value(&t, "connection*", "connection.mptcp-flags"))
}

/// What NetworkManager does with MPTCP on the device with index `ifindex`,
/// read under `root` ("/" on the host); None when it does not manage the
/// device, has no profile active on it, or keeps MPTCP disabled there.
pub fn mptcp_on(root: &Path, ifindex: u32) -> Option<NmMptcp> {
    let state =
        std::fs::read_to_string(root.join(format!("run/NetworkManager/devices/{ifindex}"))).ok()?;
    if keyfile_value(&state, "device", "managed").as_deref() == Some("false") {
        return None;
    }
    let uuid = keyfile_value(&state, "device", "connection-uuid")?;
    let profile = ["etc", "run", "usr/lib"]
        .iter()
        .flat_map(|d| read_dir_sorted(&root.join(d).join("NetworkManager/system-connections")))
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find(|t| keyfile_value(t, "connection", "uuid").as_deref() == Some(uuid.as_str()));
    let value = profile
        .as_deref()
        .and_then(|t| keyfile_value(t, "connection", "mptcp-flags"));
    let flags = effective(value.as_deref(), global_flags(root).as_deref())?;
    let name = profile
        .as_deref()
        .and_then(|t| keyfile_value(t, "connection", "id"));
    Some(NmMptcp {
        profile: name.unwrap_or(uuid),
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_in_effect() {
        assert_eq!(flag_bits("0x21"), Some(0x21));
        assert_eq!(flag_bits("disabled"), Some(1));
        assert_eq!(flag_bits("enabled,subflow"), Some(0x22));
        assert_eq!(flag_bits("sideways"), None);
        assert_eq!(effective(Some("1"), None), None);
        assert_eq!(effective(Some("0"), Some("disabled")), None);
        assert_eq!(effective(None, None).as_deref(), Some("default"));
        assert_eq!(
            effective(Some("subflow"), Some("disabled")).as_deref(),
            Some("subflow")
        );
        assert_eq!(
            effective(Some("bogus"), Some("signal")).as_deref(),
            Some("signal")
        );
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn the_active_profile_decides_then_the_global_default() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(mptcp_on(root, 3), None, "no NetworkManager state");
        write(
            root,
            "run/NetworkManager/devices/3",
            "[device]\nmanaged=true\nconnection-uuid=u-1\n",
        );
        write(
            root,
            "etc/NetworkManager/system-connections/wan.nmconnection",
            "[connection]\nid=wan\nuuid=u-1\ntype=ethernet\n\n[ipv4]\nmethod=auto\n",
        );
        let seen = mptcp_on(root, 3).unwrap();
        assert_eq!(
            (seen.profile.as_str(), seen.flags.as_str()),
            ("wan", "default")
        );
        write(
            root,
            "etc/NetworkManager/conf.d/mptcp.conf",
            "[connection-mptcp]\nconnection.mptcp-flags=0x1\n",
        );
        assert_eq!(mptcp_on(root, 3), None, "globally disabled");
        write(
            root,
            "etc/NetworkManager/system-connections/wan.nmconnection",
            "[connection]\nid=wan\nuuid=u-1\nmptcp-flags=34\n",
        );
        assert_eq!(
            mptcp_on(root, 3).unwrap().flags,
            "34",
            "the profile beats the default"
        );
        write(
            root,
            "run/NetworkManager/devices/3",
            "[device]\nmanaged=false\nconnection-uuid=u-1\n",
        );
        assert_eq!(mptcp_on(root, 3), None, "unmanaged device");
    }
}
