//! What defeats Multipath TCP on this host, as far as `mhr doctor` can
//! see: MPTCP switched off, strict reverse-path filtering on an uplink,
//! mptcpd running beside the agent, endpoints another manager keeps on an
//! uplink, NetworkManager managing endpoints on an uplink.

use std::path::Path;

use super::nm::NmMptcp;
use super::problem::Problem;
use crate::control::AgentEndpoint;

/// rp_filter in effect for `ifname`: the larger of `all` and its own
/// (the kernel's rule), from `/proc/sys` under `root`.
pub fn rp_filter(root: &Path, ifname: &str) -> Option<u8> {
    let read = |name: &str| -> Option<u8> {
        std::fs::read_to_string(root.join(format!("net/ipv4/conf/{name}/rp_filter")))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some(read("all").unwrap_or(0).max(read(ifname)?))
}

/// Pure: the problems, from what was read.
pub fn problems(
    enabled: Option<bool>,
    strict: &[String],
    mptcpd: Option<u32>,
    nm: &[(String, NmMptcp)],
    endpoints: &[AgentEndpoint],
) -> Vec<Problem> {
    let mut out = Vec::new();
    if enabled == Some(false) {
        out.push(Problem::MptcpOff);
    }
    for ifname in strict {
        out.push(Problem::RpFilterStrict {
            ifname: ifname.clone(),
        });
    }
    if let Some(pid) = mptcpd {
        out.push(Problem::MptcpdRuns { pid });
    }
    for (ifname, m) in nm {
        out.push(Problem::NmManagesMptcp {
            ifname: ifname.clone(),
            profile: m.profile.clone(),
            flags: m.flags.clone(),
        });
    }
    for e in endpoints.iter().filter(|e| !e.ours) {
        if let Some(ifname) = &e.ifname {
            out.push(Problem::EndpointOfAnother {
                id: e.id,
                address: e.address,
                ifname: ifname.clone(),
            });
        }
    }
    out
}

/// The checks, on this host, for the agent's uplinks (`ifnames`) and the
/// endpoints it reported.
pub fn check(ifnames: &[String], endpoints: &[AgentEndpoint]) -> Vec<Problem> {
    let enabled = crate::netlink::mptcp::enabled().ok();
    if enabled != Some(true) {
        return problems(enabled, &[], None, &[], &[]);
    }
    let sys = Path::new("/proc/sys");
    let strict: Vec<String> = ifnames
        .iter()
        .filter(|i| rp_filter(sys, i) == Some(1))
        .cloned()
        .collect();
    let nm: Vec<(String, NmMptcp)> = match super::networkd::process("NetworkManager") {
        Some(_) => ifnames
            .iter()
            .filter_map(|i| {
                let index = std::fs::read_to_string(format!("/sys/class/net/{i}/ifindex")).ok()?;
                let m = super::nm::mptcp_on(Path::new("/"), index.trim().parse().ok()?)?;
                Some((i.clone(), m))
            })
            .collect(),
        None => Vec::new(),
    };
    problems(
        enabled,
        &strict,
        super::networkd::process("mptcpd"),
        &nm,
        endpoints,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_defeats_mptcp_is_named() {
        let dir = tempfile::tempdir().unwrap();
        for (name, v) in [("all", "0"), ("wan1", "1"), ("wan2", "2")] {
            let p = dir.path().join(format!("net/ipv4/conf/{name}"));
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("rp_filter"), format!("{v}\n")).unwrap();
        }
        assert_eq!(rp_filter(dir.path(), "wan1"), Some(1));
        assert_eq!(rp_filter(dir.path(), "wan2"), Some(2));
        assert_eq!(rp_filter(dir.path(), "nope"), None);
        let theirs = AgentEndpoint {
            id: 3,
            address: "10.0.0.2".parse().unwrap(),
            ifname: Some("wan1".into()),
            flags: vec!["subflow".into()],
            ours: false,
            subflows: None,
        };
        let ours = AgentEndpoint {
            id: 100,
            ours: true,
            ..theirs.clone()
        };
        let nm = NmMptcp {
            profile: "wan".into(),
            flags: "default".into(),
        };
        let p = problems(
            Some(true),
            &["wan1".into()],
            Some(42),
            &[("wan2".into(), nm)],
            &[theirs, ours],
        );
        let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert_eq!(p.len(), 4, "{text:?}");
        assert!(text[0].contains("rp_filter") && text[0].contains("wan1"));
        assert!(text[1].contains("mptcpd") && text[1].contains("42"));
        assert!(text[2].contains("NetworkManager") && text[2].contains("wan2"));
        assert!(text[3].contains("id 3") && text[3].contains("10.0.0.2"));
        assert_eq!(
            problems(Some(false), &[], None, &[], &[]),
            [Problem::MptcpOff]
        );
        assert!(problems(Some(true), &[], None, &[], &[]).is_empty());
    }
}
