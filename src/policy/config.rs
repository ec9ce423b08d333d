//! The agent's `policies` and `rules` keys: which uplinks a policy uses
//! (members with a tier and a weight) and which traffic goes by which
//! policy. Parsed whole or refused with the key named, so a reload with a
//! broken file changes nothing.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::netlink::rules::Selectors;

/// Tables and marks of policies: `base + position` (0x4d480000, "MH").
pub const DEFAULT_BASE: u32 = 0x4d48_0000;
/// The band of policy rules: after the per-address (9000-20000) and main
/// (32766) rules, before the tracker's (50000). Marks of `mhr exec` first.
pub const PRIO_MARK: u32 = 40000;
/// Tables from the base on that are the policies' (also of those since
/// removed: their leftovers are ours to delete).
pub const MAX_POLICIES: u32 = 256;
pub const PRIO_FIRST_RULE: u32 = 40010;
pub const PRIO_LAST_RULE: u32 = 49990;

/// What a policy's table holds when none of its members is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LastResort {
    /// Nothing: its traffic takes the unbound choice (the tracker's).
    #[default]
    Default,
    /// Refused: the sender gets ENETUNREACH, never another uplink.
    Unreachable,
    /// Dropped in silence.
    Blackhole,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// An uplink's interface name, `*` patterns allowed.
    pub uplink: String,
    /// Lower tiers first: the best tier with a usable member is used.
    #[serde(default = "one")]
    pub tier: u32,
    /// Share within its tier, 1 to 256.
    #[serde(default = "one_u16")]
    pub weight: u16,
}

fn one() -> u32 {
    1
}
fn one_u16() -> u16 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub name: String,
    pub members: Vec<Member>,
    #[serde(default)]
    pub last_resort: LastResort,
}

/// A rule as written; numbers may also be given as strings with ranges.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub policy: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iif: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<serde_json::Value>,
}

/// A rule, checked: which policy (its position), the prefixes, selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub policy: usize,
    pub to: Vec<(IpAddr, u8)>,
    pub from: Vec<(IpAddr, u8)>,
    pub iif: Option<String>,
    pub sel: Selectors,
}

/// The policies in effect.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policies {
    pub base: u32,
    pub list: Vec<Policy>,
    pub rules: Vec<Rule>,
    /// As written, for `--check` and the state file.
    pub written: Vec<RuleConfig>,
}

impl Policies {
    /// A policy's table (and the mark `mhr exec --policy` gives).
    pub fn table(&self, index: usize) -> u32 {
        self.base + index as u32
    }

    pub fn find(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|p| p.name == name)
    }

    /// From the config's values; errors name the key.
    pub fn parse(
        policies: Option<serde_json::Value>,
        rules: Option<serde_json::Value>,
        base: Option<u32>,
    ) -> Result<Policies, String> {
        let list: Vec<Policy> = match policies {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v).map_err(|e| format!("key \"policies\": {e}"))?,
        };
        let written: Vec<RuleConfig> = match rules {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v).map_err(|e| format!("key \"rules\": {e}"))?,
        };
        if list.len() > MAX_POLICIES as usize {
            return Err(format!(
                "key \"policies\": {} policies, at most {MAX_POLICIES}",
                list.len()
            ));
        }
        let base = base.unwrap_or(DEFAULT_BASE);
        if base < 256 || base.checked_add(MAX_POLICIES).is_none() {
            return Err(format!(
                "key \"policy_base\": {base} leaves no room for the policies' tables"
            ));
        }
        for (i, p) in list.iter().enumerate() {
            let key = format!("key \"policies[{i}]\" ({})", p.name);
            if p.name.is_empty() || list[..i].iter().any(|q| q.name == p.name) {
                return Err(format!("{key}: a name of its own is needed"));
            }
            if p.members.is_empty() {
                return Err(format!("{key}: no members"));
            }
            for m in &p.members {
                if !(1..=256).contains(&m.weight) {
                    return Err(format!(
                        "{key}: member {}: weight {} is not 1 to 256",
                        m.uplink, m.weight
                    ));
                }
            }
        }
        let max = ((PRIO_LAST_RULE - PRIO_FIRST_RULE) / 10 + 1) as usize;
        if written.len() > max {
            return Err(format!(
                "key \"rules\": {} rules, at most {max}",
                written.len()
            ));
        }
        let mut out = Policies {
            base,
            list,
            rules: Vec::new(),
            written: written.clone(),
        };
        for (i, r) in written.iter().enumerate() {
            let rule = out
                .check_rule(r)
                .map_err(|e| format!("key \"rules[{i}]\": {e}"))?;
            out.rules.push(rule);
        }
        Ok(out)
    }

    fn check_rule(&self, r: &RuleConfig) -> Result<Rule, String> {
        let policy = self
            .find(&r.policy)
            .ok_or_else(|| format!("policy \"{}\" is not in \"policies\"", r.policy))?;
        let prefixes = |key: &str, v: &[String]| -> Result<Vec<(IpAddr, u8)>, String> {
            v.iter()
                .map(|p| prefix(p).ok_or_else(|| format!("{key}: {p} is not an address or prefix")))
                .collect()
        };
        let ipproto = r.proto.as_ref().map(protocol).transpose()?;
        let sport = r.sport.as_ref().map(|v| range(v, "sport")).transpose()?;
        let dport = r.dport.as_ref().map(|v| range(v, "dport")).transpose()?;
        if (sport.is_some() || dport.is_some()) && !matches!(ipproto, Some(6 | 17 | 132)) {
            return Err("ports need proto tcp, udp or sctp".into());
        }
        let uid = r.uid.as_ref().map(uid_range).transpose()?;
        let fwmark = r.fwmark.as_ref().map(mark).transpose()?;
        if let Some(i) = &r.iif {
            if i.is_empty() || i.len() > 15 {
                return Err(format!("iif: {i:?} is not an interface name"));
            }
        }
        let sel = Selectors {
            ipproto,
            sport: sport.map(|(a, b)| (a as u16, b as u16)),
            dport: dport.map(|(a, b)| (a as u16, b as u16)),
            uid,
            fwmark,
        };
        let rule = Rule {
            policy,
            to: prefixes("to", &r.to)?,
            from: prefixes("from", &r.from)?,
            iif: r.iif.clone(),
            sel,
        };
        if rule.to.is_empty()
            && rule.from.is_empty()
            && rule.iif.is_none()
            && rule.sel == Selectors::default()
        {
            return Err("selects nothing: give to, from, proto, ports, uid, iif or fwmark".into());
        }
        Ok(rule)
    }
}

fn prefix(text: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = match text.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a: IpAddr = text.parse().ok()?;
            (a, crate::addr::max_prefix(&a))
        }
    };
    (l <= crate::addr::max_prefix(&a)).then(|| (crate::addr::network(a, l), l))
}

fn protocol(v: &serde_json::Value) -> Result<u8, String> {
    match v {
        serde_json::Value::String(s) => match s.as_str() {
            "tcp" => Ok(6),
            "udp" => Ok(17),
            "icmp" => Ok(1),
            "sctp" => Ok(132),
            "ipv6-icmp" | "icmpv6" => Ok(58),
            other => other
                .parse()
                .map_err(|_| format!("proto: {other:?} is not tcp, udp, icmp, sctp or a number")),
        },
        serde_json::Value::Number(n) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("proto: {n} is not 1 to 255")),
        other => Err(format!("proto: {other} is not a protocol")),
    }
}

/// "443", 443, "8000-8999".
fn number_range(v: &serde_json::Value, key: &str, max: u64) -> Result<(u64, u64), String> {
    let bad = || format!("{key}: {v} is not a number or range N-M up to {max}");
    let (a, b) = match v {
        serde_json::Value::Number(n) => {
            let n = n.as_u64().ok_or_else(bad)?;
            (n, n)
        }
        serde_json::Value::String(s) => match s.split_once('-') {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let n = s.trim().parse().map_err(|_| bad())?;
                (n, n)
            }
        },
        _ => return Err(bad()),
    };
    if a > b || b > max {
        return Err(bad());
    }
    Ok((a, b))
}

fn range(v: &serde_json::Value, key: &str) -> Result<(u64, u64), String> {
    let (a, b) = number_range(v, key, 65535)?;
    if a == 0 {
        return Err(format!("{key}: port 0"));
    }
    Ok((a, b))
}

fn uid_range(v: &serde_json::Value) -> Result<(u32, u32), String> {
    let (a, b) = number_range(v, "uid", u64::from(u32::MAX - 1))?;
    Ok((a as u32, b as u32))
}

/// 0x10, "0x10", "0x10/0xff", 16.
fn mark(v: &serde_json::Value) -> Result<(u32, u32), String> {
    let bad = || format!("fwmark: {v} is not a mark (N or N/MASK, hex with 0x)");
    let num = |s: &str| -> Option<u32> {
        let s = s.trim();
        match s.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        }
    };
    let (m, mask) = match v {
        serde_json::Value::Number(n) => (
            n.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(bad)?,
            u32::MAX,
        ),
        serde_json::Value::String(s) => match s.split_once('/') {
            Some((m, k)) => (num(m).ok_or_else(bad)?, num(k).ok_or_else(bad)?),
            None => (num(s).ok_or_else(bad)?, u32::MAX),
        },
        _ => return Err(bad()),
    };
    if m == 0 || m & !mask != 0 {
        return Err(bad());
    }
    Ok((m, mask))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(p: serde_json::Value, r: serde_json::Value) -> Result<Policies, String> {
        Policies::parse(Some(p), Some(r), None)
    }

    #[test]
    fn policies_and_rules_parse() {
        let p = parse(
            json!([{"name": "balanced", "members": [{"uplink": "u0", "weight": 2}, {"uplink": "u*"}]},
                   {"name": "pinned", "members": [{"uplink": "u1"}], "last_resort": "unreachable"}]),
            json!([{"policy": "pinned", "uid": "1000-1999"},
                   {"policy": "balanced", "proto": "tcp", "dport": 443},
                   {"policy": "balanced", "to": ["198.51.100.7/24", "2001:db8::1"]},
                   {"policy": "pinned", "iif": "lan0", "fwmark": "0x10/0xf0"}]),
        )
        .unwrap();
        assert_eq!(p.table(1), DEFAULT_BASE + 1);
        assert_eq!(p.list[1].last_resort, LastResort::Unreachable);
        assert_eq!(p.list[0].members[1].tier, 1);
        assert_eq!(p.rules[0].sel.uid, Some((1000, 1999)));
        assert_eq!(
            (p.rules[1].sel.ipproto, p.rules[1].sel.dport),
            (Some(6), Some((443, 443)))
        );
        assert_eq!(p.rules[2].to[0], ("198.51.100.0".parse().unwrap(), 24));
        assert_eq!(p.rules[2].to[1].1, 128);
        assert_eq!(p.rules[3].sel.fwmark, Some((0x10, 0xf0)));
    }

    #[test]
    fn bad_policies_name_the_key() {
        let ok = json!([{"name": "a", "members": [{"uplink": "u0"}]}]);
        for (p, r, key) in [
            (
                json!([{"name": "a", "members": []}]),
                json!([]),
                "policies[0]",
            ),
            (
                json!([{"name": "a", "members": [{"uplink": "u0", "weight": 0}]}]),
                json!([]),
                "weight",
            ),
            (
                json!([{"name": "a", "members": [{"uplink": "u0", "wieght": 2}]}]),
                json!([]),
                "wieght",
            ),
            (
                json!([{"name": "a", "members": [{"uplink": "u0"}]}, {"name": "a", "members": [{"uplink": "u1"}]}]),
                json!([]),
                "policies[1]",
            ),
            (ok.clone(), json!([{"policy": "b", "uid": 5}]), "rules[0]"),
            (ok.clone(), json!([{"policy": "a", "dport": 443}]), "proto"),
            (
                ok.clone(),
                json!([{"policy": "a", "proto": "tcp", "dport": "9-3"}]),
                "dport",
            ),
            (
                ok.clone(),
                json!([{"policy": "a", "to": ["10.0.0.0/33"]}]),
                "to",
            ),
            (ok.clone(), json!([{"policy": "a"}]), "selects nothing"),
            (
                ok.clone(),
                json!([{"policy": "a", "fwmark": "0x11/0x10"}]),
                "fwmark",
            ),
            (
                ok.clone(),
                json!([{"policy": "a", "proto": "gre?"}]),
                "proto",
            ),
        ] {
            let e = parse(p, r).unwrap_err();
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}
