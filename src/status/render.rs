//! `mhr status` for a person: at most 100 columns, a row per address with
//! the address, DNS and any problem on the lines below it, missing rules by
//! name, times as durations. `--json` keeps the numbers.

use super::{AddressStatus, Status};

/// Time left as `1h02m`, `59m59s`, `42s`; `expired` when gone.
pub(crate) fn left(secs: i64) -> String {
    match secs {
        s if s <= 0 => "expired".into(),
        s => span(s),
    }
}

/// A duration as `42s`, `5m07s`, `3h12m`, `4d`.
fn span(s: i64) -> String {
    match s.max(0) {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 * 2 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d", s / 86400),
    }
}

/// `all` or the missing rules by name (`no from,iif-lo`).
fn rules(a: &AddressStatus) -> String {
    let missing: Vec<&str> = [
        (a.rule_oif, "oif"),
        (a.rule_from, "from"),
        (a.rule_to, "to"),
        (a.rule_iif_lo, "iif-lo"),
    ]
    .iter()
    .filter(|(present, _)| !present)
    .map(|(_, n)| *n)
    .collect();
    if missing.is_empty() {
        "all".into()
    } else {
        format!("no {}", missing.join(","))
    }
}

fn health(a: &AddressStatus) -> String {
    a.health
        .as_ref()
        .map(|h| {
            let rtt = h.rtt_ms.map(|r| format!(" {r:.1}ms")).unwrap_or_default();
            format!("{}{rtt} {}%", h.state, h.loss_pct)
        })
        .unwrap_or_else(|| "-".into())
}

/// One row; the interface column holds the longest name the kernel allows.
/// Variable-width parts (address, gateway, servers) go on the lines below.
fn row(cols: [&str; 7]) -> String {
    format!(
        "{:<15} {:<7} {:<3} {:>6} {:<8} {:<17} {}\n",
        cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6]
    )
}

/// /sys's operstate, at most 7 characters.
fn link(state: Option<&str>) -> &str {
    match state {
        None => "gone",
        Some("lowerlayerdown") => "lldown",
        Some("notpresent") => "absent",
        Some(s) => s,
    }
}

/// `dns A B …` wrapped to 100 columns.
fn dns_lines(servers: &[std::net::IpAddr]) -> String {
    let mut out = String::new();
    let mut line = String::from("  dns");
    for s in servers {
        let s = s.to_string();
        if line.len() + 1 + s.len() > 100 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("     ");
        }
        line.push(' ');
        line.push_str(&s);
    }
    if !servers.is_empty() {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A human table; times are shown from `now_unix`.
pub fn render(s: &Status, now_unix: i64) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "server: {}",
        match s.server_reachable {
            Some(true) => "answering",
            Some(false) => "NOT answering",
            None => "not checked",
        }
    ));
    if let Some(db) = &s.lease_database {
        out.push_str(&format!("   leases: {db}"));
    }
    match &s.agent {
        Some(a) if a.running => out.push_str(&format!(
            "   mode: agent (pid {}, {} addresses, {} repairs)",
            a.pid, a.addresses, a.repairs
        )),
        Some(a) => out.push_str(&format!(
            "   mode: agent NOT running ({} addresses when it stopped)",
            a.addresses
        )),
        None => out.push_str("   mode: hooks (no agent)"),
    }
    if let Some(a) = s.agent.as_ref().filter(|a| !a.endpoints.is_empty()) {
        let list: Vec<String> = a
            .endpoints
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}{}{}",
                    e.ifname.as_deref().unwrap_or("?"),
                    e.address,
                    e.flags.join(","),
                    e.subflows
                        .map(|n| format!(" {n} subflows"))
                        .unwrap_or_default(),
                    if e.ours { "" } else { " (not ours)" }
                )
            })
            .collect();
        out.push_str(&format!("\nmptcp: {}", list.join("; ")));
    }
    out.push('\n');
    out.push_str(&row([
        "INTERFACE",
        "LINK",
        "FAM",
        "TABLE",
        "LEASE",
        "RULES",
        "HEALTH",
    ]));
    for a in &s.addresses {
        let lease = a
            .lease_expires
            .map(|e| left(e - now_unix))
            .unwrap_or_else(|| "none".into());
        out.push_str(&row([
            a.ifname.as_deref().unwrap_or("?"),
            link(a.link.as_deref()),
            match a.family.as_str() {
                "inet" => "v4",
                "inet6" => "v6",
                other => other,
            },
            &a.table.to_string(),
            &lease,
            &rules(a),
            &health(a),
        ]));
        let address = match (a.address, a.prefix_len) {
            (Some(ad), Some(p)) => format!("{ad}/{p}"),
            (Some(ad), None) => ad.to_string(),
            _ => "?".into(),
        };
        let gateway = match (a.default_route, a.gateway) {
            (true, Some(g)) => format!("default via {g}"),
            (true, None) => "default route".into(),
            (false, _) => "NO default route".into(),
        };
        out.push_str(&format!("  {address}   {gateway}\n"));
        out.push_str(&dns_lines(&a.dns_servers));
        if let Some(e) = &a.last_error {
            out.push_str(&format!("  last probe error: {e}\n"));
        }
        for p in &a.problems {
            out.push_str(&format!("  ! {p}\n"));
        }
    }
    for u in &s.unbound {
        out.push_str(&format!(
            "unbound {} traffic: {} (table {}) for {}\n",
            u.family,
            u.ifname,
            u.table,
            span(now_unix - u.since)
        ));
    }
    for p in &s.problems {
        out.push_str(&format!("! {p}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{lease, spec};
    use super::super::{assemble, KernelView, Unbound};
    use super::*;
    use crate::addr::Family;
    use crate::netlink::rules::rules_for;

    #[test]
    fn fits_100_columns_and_names_what_is_missing() {
        let long = "wwp0s20u4i6abcd"; // 15 characters
        let mut rules = rules_for(&spec(long, "10.1.0.2"), 10000);
        rules.retain(|r| r.priority != crate::netlink::rules::PRIO_TO);
        let kernel = KernelView {
            rules,
            tables_with_default: vec![(Family::Inet, 10000)],
            fallback_default_routes: vec![],
            foreign_main_defaults: vec![],
            gateways: vec![((Family::Inet, 10000), "10.1.0.1".parse().unwrap())],
        };
        let mut st = assemble(
            &kernel,
            Some(&[lease(long, "10.1.0.2", 10000)]),
            &[],
            Some(true),
        );
        st.addresses[0].link = Some("up".into());
        st.unbound = vec![Unbound {
            family: "inet".into(),
            table: 10000,
            ifname: long.into(),
            since: 1_900_000_000 - 3600 - 125,
        }];
        let text = render(&st, 1_900_000_000 - 3600);
        for l in text.lines() {
            assert!(
                l.chars().count() <= 100,
                "{} columns: {l}",
                l.chars().count()
            );
        }
        let row = text.lines().nth(2).unwrap();
        assert!(row.starts_with(&format!("{long} up ")), "{text}");
        assert!(row.contains("no to"), "{text}");
        assert!(
            text.lines()
                .nth(3)
                .unwrap()
                .contains("default via 10.1.0.1"),
            "{text}"
        );
        assert!(row.contains("1h00m"), "lease time left: {text}");
        assert!(!text.contains("1899"), "no raw unix times: {text}");
        assert!(text.contains("for 2m05s"), "{text}");
        // The header and the row line up.
        let header = text.lines().nth(1).unwrap();
        assert_eq!(
            header.find("TABLE").unwrap() + 5,
            row.find("10000").unwrap() + 5
        );
    }
}
