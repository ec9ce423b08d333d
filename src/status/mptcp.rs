//! What defeats Multipath TCP on this host, as far as `mhr doctor` can
//! see: MPTCP switched off, strict reverse-path filtering on an uplink,
//! mptcpd running beside the agent, endpoints another manager keeps on an
//! uplink.

use std::path::Path;

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
        return problems(enabled, &[], None, &[]);
    }
    let sys = Path::new("/proc/sys");
    let strict: Vec<String> = ifnames
        .iter()
        .filter(|i| rp_filter(sys, i) == Some(1))
        .cloned()
        .collect();
    problems(
        enabled,
        &strict,
        super::networkd::process("mptcpd"),
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
        let p = problems(Some(true), &["wan1".into()], Some(42), &[theirs, ours]);
        let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert_eq!(p.len(), 3, "{text:?}");
        assert!(text[0].contains("rp_filter") && text[0].contains("wan1"));
        assert!(text[1].contains("mptcpd") && text[1].contains("42"));
        assert!(text[2].contains("id 3") && text[2].contains("10.0.0.2"));
        assert_eq!(problems(Some(false), &[], None, &[]), [Problem::MptcpOff]);
        assert!(problems(Some(true), &[], None, &[]).is_empty());
    }
}
