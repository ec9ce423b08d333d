//! `mhr route get`: which of our rules a packet meets and which uplink
//! carries it, in our terms (what `ip route get` says in the kernel's).
//! The kernel picks the route; this finds the rule that led there.

use std::net::IpAddr;

use super::{AddressStatus, Status};
use crate::netlink::rules::RuleSpec;

/// A packet to explain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub dst: Option<IpAddr>,
    pub src: Option<IpAddr>,
    /// The interface it comes in on; `None`: sent by this host (`iif lo`).
    pub iif: Option<String>,
    pub uid: Option<u32>,
}

impl Query {
    /// `DEST [from SRC] [iif IF] [uid N]`, as `ip route get` takes them.
    pub fn parse(dest: IpAddr, rest: &[String]) -> Result<Query, String> {
        let mut q = Query {
            dst: Some(dest),
            ..Query::default()
        };
        let mut it = rest.iter();
        while let Some(key) = it.next() {
            let value = it.next().ok_or_else(|| format!("`{key}` needs a value"))?;
            match key.as_str() {
                "from" => {
                    q.src = Some(
                        value
                            .parse()
                            .map_err(|_| format!("from {value:?}: not an address"))?,
                    )
                }
                "iif" => q.iif = Some(value.clone()),
                "uid" => {
                    q.uid = Some(
                        value
                            .parse()
                            .map_err(|_| format!("uid {value:?}: not a number"))?,
                    )
                }
                other => return Err(format!("`{other}`: expected from, iif or uid")),
            }
        }
        Ok(q)
    }
}

fn within(addr: IpAddr, net: (IpAddr, u8)) -> bool {
    crate::addr::family_of(&addr) == crate::addr::family_of(&net.0)
        && crate::addr::network(addr, net.1) == crate::addr::network(net.0, net.1)
}

/// The first of `rules` (by priority) the packet meets that points at
/// `table`: the rule that chose it, when it is one of ours.
pub fn matching_rule<'a>(rules: &'a [RuleSpec], q: &Query, table: u32) -> Option<&'a RuleSpec> {
    let iif = q.iif.as_deref().unwrap_or("lo");
    let mut sorted: Vec<&RuleSpec> = rules.iter().filter(|r| r.table == table).collect();
    sorted.sort_by_key(|r| r.priority);
    sorted.into_iter().find(|r| {
        r.from.is_none_or(|n| q.src.is_some_and(|s| within(s, n)))
            && r.to.is_none_or(|n| q.dst.is_some_and(|d| within(d, n)))
            && r.iif.as_deref().is_none_or(|i| i == iif)
            // A socket bound to the device: not something a query says.
            && r.oif.is_none()
    })
}

/// The answer, for a person.
pub fn explain(q: &Query, table: u32, route: &str, rules: &[RuleSpec], st: &Status) -> String {
    let mut out = q.dst.map(|d| d.to_string()).unwrap_or_default();
    if let Some(s) = q.src {
        out.push_str(&format!(" from {s}"));
    }
    out.push_str(&format!(" iif {}", q.iif.as_deref().unwrap_or("lo")));
    if let Some(u) = q.uid {
        out.push_str(&format!(" uid {u}"));
    }
    out.push('\n');
    match matching_rule(rules, q, table) {
        Some(r) => out.push_str(&format!("  rule  {r} (ours)\n")),
        None if table == crate::netlink::routes::MAIN_TABLE => out.push_str(
            "  rule  32766: from all lookup main (not ours: main decides, before every uplink rule of ours at 50000 and 91000)\n",
        ),
        None => out.push_str(&format!("  rule  a rule that is not ours chose table {table}\n")),
    }
    out.push_str(&format!("  route {route}\n"));
    let uplink: Option<&AddressStatus> = st.addresses.iter().find(|a| a.table == table);
    match uplink {
        Some(a) => {
            let health = a
                .health
                .as_ref()
                .map(|h| format!(", health {} (loss {}%)", h.state, h.loss_pct))
                .unwrap_or_default();
            out.push_str(&format!(
                "  uplink {} {}{health}\n",
                a.ifname.as_deref().unwrap_or("?"),
                a.address.map(|x| x.to_string()).unwrap_or_default()
            ));
        }
        None => out.push_str("  uplink none of ours\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Family;
    use crate::netlink::rules::{rules_for, AddressSpec, Downstream, PRIO_IIF_LO};

    fn rules() -> Vec<RuleSpec> {
        let spec = AddressSpec {
            ifname: "wan1".into(),
            address: "10.1.0.2".parse().unwrap(),
            prefix_len: 24,
        };
        let mut r = rules_for(&spec, 10000);
        r.extend(Downstream::Named(vec!["lan0".into()]).rules(Family::Inet, 10000, PRIO_IIF_LO));
        r
    }

    #[test]
    fn finds_the_rule_that_chose_the_table() {
        let r = rules();
        let q = |rest: &[&str]| {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            Query::parse("1.1.1.1".parse().unwrap(), &rest).unwrap()
        };
        assert_eq!(matching_rule(&r, &q(&[]), 10000).unwrap().priority, 91000);
        assert_eq!(
            matching_rule(&r, &q(&["from", "10.1.0.2"]), 10000)
                .unwrap()
                .priority,
            10000
        );
        let lan = matching_rule(&r, &q(&["from", "192.168.50.10", "iif", "lan0"]), 10000).unwrap();
        assert_eq!(lan.iif.as_deref(), Some("lan0"));
        assert!(matching_rule(&r, &q(&["iif", "eth9"]), 10000).is_none());
        assert!(Query::parse("1.1.1.1".parse().unwrap(), &["via".into(), "x".into()]).is_err());
        assert!(Query::parse("1.1.1.1".parse().unwrap(), &["from".into()]).is_err());
    }
}
