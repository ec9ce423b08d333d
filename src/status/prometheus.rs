//! The host-side view in Prometheus text format (docs/status.md).
//!
//! Series are labelled by interface, family and table, never by address:
//! CGNAT and DHCP addresses change, and each change would start new series.
//! The address is on `mhr_address_info` alone, to join on. Problems are
//! series too, so a textfile collector keeps being fed while something is
//! wrong (`mhr status --prometheus` exits 0 whenever it could look).

use super::{AddressStatus, Health, Status};
use crate::exposition::Exposition;
use crate::netlink::rules::{PRIO_BOUND_DEVICE, PRIO_FROM, PRIO_IIF_LO, PRIO_TO};
use crate::track::health::LinkState;

const STATES: [(LinkState, &str); 4] = [
    (LinkState::Up, "up"),
    (LinkState::Degraded, "degraded"),
    (LinkState::Down, "down"),
    (LinkState::Unknown, "unknown"),
];

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

pub fn prometheus(s: &Status) -> String {
    let mut e = Exposition::default();
    host(&mut e, s);
    for a in &s.addresses {
        address(&mut e, a);
    }
    e.render()
}

/// The host's series: server, consistency, problems, the unbound choice.
fn host(e: &mut Exposition, s: &Status) {
    if let Some(up) = s.server_reachable {
        e.gauge(
            "mhr_server_up",
            "1 when the table allocator server answers.",
            &[],
            flag(up),
        );
    }
    if let Some(a) = &s.agent {
        e.gauge(
            "mhr_agent_up",
            "1 when mhr agent runs (holds its control socket).",
            &[],
            flag(a.running),
        );
        e.gauge(
            "mhr_agent_addresses",
            "Addresses mhr agent keeps a table for.",
            &[],
            a.addresses as f64,
        );
        e.counter(
            "mhr_agent_repairs_total",
            "Rules and routes of the agent's that someone else deleted, put back (since it started).",
            &[],
            a.repairs as f64,
        );
        for ep in &a.endpoints {
            let flags = ep.flags.join(",");
            let address = ep.address.to_string();
            e.gauge(
                "mhr_mptcp_endpoint",
                "An MPTCP endpoint: 1, with its flags and whether the agent added it.",
                &[
                    ("address", &address),
                    ("interface", ep.ifname.as_deref().unwrap_or("")),
                    ("flags", &flags),
                    ("ours", if ep.ours { "1" } else { "0" }),
                ],
                1.0,
            );
            if let Some(n) = ep.subflows {
                e.gauge(
                    "mhr_mptcp_endpoint_subflows",
                    "Established MPTCP subflows from the endpoint's address.",
                    &[
                        ("address", &address),
                        ("interface", ep.ifname.as_deref().unwrap_or("")),
                    ],
                    n as f64,
                );
            }
        }
        e.counter(
            "mhr_agent_kernel_dumps_total",
            "Kernel dumps mhr agent asked for since it started (adoption, overruns, audits).",
            &[],
            a.dumps as f64,
        );
    }
    e.gauge(
        "mhr_consistent",
        "1 when everything managed is consistent (mhr status exits 0).",
        &[],
        flag(s.consistent()),
    );
    let problems = s.problems.len() + s.addresses.iter().map(|a| a.problems.len()).sum::<usize>();
    e.gauge(
        "mhr_problems",
        "Problems mhr doctor would report.",
        &[],
        problems as f64,
    );
    e.gauge(
        "mhr_fallback_default_routes",
        "Default routes of ours left in main by the no-table fallback.",
        &[],
        s.fallback_default_routes.len() as f64,
    );
    for u in &s.unbound {
        let table = u.table.to_string();
        e.gauge(
            "mhr_unbound_uplink_info",
            "The uplink the tracker points unbound traffic at, per family.",
            &[
                ("family", u.family.as_str()),
                ("interface", u.ifname.as_str()),
                ("table", table.as_str()),
            ],
            1.0,
        );
        e.gauge(
            "mhr_unbound_since_timestamp_seconds",
            "Unix time the tracker last moved unbound traffic, per family.",
            &[("family", u.family.as_str())],
            u.since as f64,
        );
    }
}

/// One managed address: its rules, default route, lease, problems, DNS
/// and the tracker's view of it.
fn address(e: &mut Exposition, a: &AddressStatus) {
    let table = a.table.to_string();
    let address = a.address.map(|x| x.to_string()).unwrap_or_default();
    let ifname = a.ifname.as_deref().unwrap_or("");
    let l = [
        ("interface", ifname),
        ("family", a.family.as_str()),
        ("table", table.as_str()),
    ];
    let mut info = l.to_vec();
    info.push(("address", address.as_str()));
    e.gauge(
        "mhr_address_info",
        "A managed address and its table (the only series with the address).",
        &info,
        1.0,
    );
    for (present, prio) in [
        (a.rule_oif, PRIO_BOUND_DEVICE),
        (a.rule_from, PRIO_FROM),
        (a.rule_to, PRIO_TO),
        (a.rule_iif_lo, PRIO_IIF_LO),
    ] {
        let prio = prio.to_string();
        let mut rl = l.to_vec();
        rl.push(("priority", prio.as_str()));
        e.gauge(
            "mhr_rule_present",
            "1 when the address's rule at this priority is in the kernel.",
            &rl,
            flag(present),
        );
    }
    e.gauge(
        "mhr_default_route_present",
        "1 when the address's table has a default route.",
        &l,
        flag(a.default_route),
    );
    if let Some(t) = a.lease_expires {
        e.gauge(
            "mhr_lease_expiry_timestamp_seconds",
            "Unix time the address's table lease ends unless renewed.",
            &l,
            t as f64,
        );
    }
    e.gauge(
        "mhr_address_problems",
        "Problems with this address that mhr doctor would report.",
        &l,
        a.problems.len() as f64,
    );
    if let Some(h) = &a.health {
        health(e, &l, h);
    }
    e.gauge(
        "mhr_dns_servers",
        "Name servers in the dnsmasq servers file for the address.",
        &l,
        a.dns_servers.len() as f64,
    );
}

/// The tracker's grading of one uplink.
fn health(e: &mut Exposition, l: &[(&str, &str)], h: &Health) {
    for (state, name) in STATES {
        let mut sl = l.to_vec();
        sl.push(("state", name));
        e.gauge(
            "mhr_uplink_state",
            "Tracker: 1 for the uplink's current state (up, degraded, down, unknown).",
            &sl,
            flag(h.state == state),
        );
    }
    if let Some(rtt) = h.rtt_ms {
        e.gauge(
            "mhr_uplink_rtt_seconds",
            "Tracker: mean probe RTT.",
            l,
            rtt / 1000.0,
        );
    }
    e.gauge(
        "mhr_uplink_loss_ratio",
        "Tracker: probe loss in the window.",
        l,
        h.loss_pct / 100.0,
    );
    e.gauge(
        "mhr_uplink_probe_bytes_hour",
        "Tracker: probe traffic in the last hour.",
        l,
        h.probe_bytes_hour as f64,
    );
}

/// Every series name `prometheus` can write, for the documentation test.
#[cfg(test)]
pub(crate) fn series_names(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{lease, spec};
    use super::super::{assemble, KernelView, Unbound};
    use super::*;
    use crate::addr::Family;
    use crate::netlink::rules::rules_for;
    use crate::track::health::Health;

    fn health(state: LinkState) -> Health {
        Health {
            state,
            rtt_ms: Some(20.0),
            loss_pct: 0.0,
            last_change: 0,
            probe_bytes_hour: 0,
            budget_bytes_hour: None,
        }
    }

    /// wan1 10.1.0.2 in table 10000, tracked in `state`, unbound traffic on it.
    fn fixture(state: LinkState) -> (KernelView, super::super::Status) {
        let kernel = KernelView {
            rules: rules_for(&spec("wan1", "10.1.0.2"), 10000),
            tables_with_default: vec![(Family::Inet, 10000)],
            fallback_default_routes: vec![],
            foreign_main_defaults: vec![],
            gateways: vec![],
        };
        let mut st = assemble(
            &kernel,
            Some(&[lease("wan1", "10.1.0.2", 10000)]),
            &[],
            Some(true),
        );
        st.addresses[0].health = Some(health(state));
        st.unbound = vec![Unbound {
            family: "inet".into(),
            table: 10000,
            ifname: "wan1".into(),
            since: 1_900_000_000,
        }];
        (kernel, st)
    }

    #[test]
    fn prometheus_shows_rules_and_consistency_without_addresses_in_labels() {
        let (kernel, st) = fixture(LinkState::Degraded);
        let text = prometheus(&st);
        let l = r#"interface="wan1",family="inet",table="10000""#;
        for want in [
            "mhr_server_up 1\n".to_string(),
            "mhr_consistent 1\n".into(),
            format!("mhr_address_info{{{l},address=\"10.1.0.2\"}} 1\n"),
            format!("mhr_rule_present{{{l},priority=\"10000\"}} 1\n"),
            format!("mhr_default_route_present{{{l}}} 1\n"),
            format!("mhr_lease_expiry_timestamp_seconds{{{l}}} 1900000000\n"),
            format!("mhr_uplink_state{{{l},state=\"degraded\"}} 1\n"),
            format!("mhr_uplink_state{{{l},state=\"up\"}} 0\n"),
            "mhr_unbound_uplink_info{family=\"inet\",interface=\"wan1\",table=\"10000\"} 1\n"
                .into(),
        ] {
            assert!(text.contains(&want), "{want} missing:\n{text}");
        }
        let with_address = text
            .lines()
            .filter(|l| l.contains("10.1.0.2"))
            .collect::<Vec<_>>();
        assert_eq!(with_address.len(), 1, "{with_address:?}");
        let stale = assemble(&kernel, Some(&[]), &[], Some(false));
        let text = prometheus(&stale);
        assert!(text.contains("mhr_consistent 0\n") && text.contains("mhr_server_up 0\n"));
    }

    #[test]
    fn every_series_is_documented() {
        let (_, st) = fixture(LinkState::Up);
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status.md"));
        for name in series_names(&prometheus(&st)) {
            assert!(
                doc.contains(&format!("| `{name}` |")),
                "{name} is not in docs/status.md"
            );
        }
    }
}
