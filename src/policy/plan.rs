//! Pure: what the policies want in the kernel, from the model's uplinks.
//! Each policy is a table of ours holding, per family, the usable members
//! of its best tier as one multipath default route with their weights (a
//! single route when one is left), and its last resort behind it; its
//! rules point traffic at that table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::config::{LastResort, Policies, PRIO_FIRST_RULE, PRIO_MARK};
use crate::addr::{family_of, Family};
use crate::netlink::routes::{Hop, RouteKind, RouteSpec};
use crate::netlink::rules::RuleSpec;
use crate::patterns::glob_match;
use crate::track::health::LinkState;

/// The last resort sits behind every member's route.
pub const LAST_RESORT_METRIC: u32 = u32::MAX;

/// An uplink as the policies see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub ifname: String,
    pub family: Family,
    pub address: IpAddr,
    pub health: LinkState,
    /// Its table's default route, as a next hop; none: not routable.
    pub default: Option<Hop>,
}

/// One member's state in a policy, for status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub ifname: String,
    pub family: String,
    pub tier: u32,
    pub weight: u16,
    /// active (carries traffic), standby (a worse tier), down, no-route.
    pub state: String,
    /// Percent of the policy's new flows of the family.
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    pub name: String,
    pub table: u32,
    pub last_resort: LastResort,
    pub members: Vec<MemberView>,
    /// Per family, whether its table has more than one active member.
    pub balanced: Vec<String>,
}

#[derive(Debug, Default)]
pub struct PolicyPlan {
    pub rules: Vec<RuleSpec>,
    pub routes: Vec<RouteSpec>,
    pub views: Vec<PolicyView>,
}

impl PolicyPlan {
    /// Families with a balanced policy (their multipath hash goes per flow).
    pub fn balanced(&self, family: Family) -> bool {
        self.views
            .iter()
            .any(|v| v.balanced.iter().any(|f| *f == family.to_string()))
    }
}

fn unspecified(family: Family) -> IpAddr {
    match family {
        Family::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

const FAMILIES: [Family; 2] = [Family::Inet, Family::Inet6];

pub fn plan(p: &Policies, cands: &[Candidate]) -> PolicyPlan {
    let mut out = PolicyPlan::default();
    for (j, policy) in p.list.iter().enumerate() {
        let table = p.table(j);
        let mut view = PolicyView {
            name: policy.name.clone(),
            table,
            last_resort: policy.last_resort,
            members: Vec::new(),
            balanced: Vec::new(),
        };
        for family in FAMILIES {
            let mut mark = RuleSpec::new(family, table);
            mark.priority = PRIO_MARK;
            mark.sel.fwmark = Some((table, u32::MAX));
            out.rules.push(mark);
            // Each uplink in the first member that names it.
            let mut taken: Vec<(&super::config::Member, &Candidate)> = Vec::new();
            for m in &policy.members {
                for c in cands
                    .iter()
                    .filter(|c| c.family == family && glob_match(&m.uplink, &c.ifname))
                {
                    if !taken.iter().any(|(_, t)| t.ifname == c.ifname) {
                        taken.push((m, c));
                    }
                }
            }
            // As the tracker does: a degraded uplink only when no member
            // is up (or not yet judged).
            let routable = |c: &Candidate| c.default.is_some() && c.health != LinkState::Down;
            let good = |c: &Candidate| routable(c) && c.health != LinkState::Degraded;
            let any_good = taken.iter().any(|(_, c)| good(c));
            let usable = |c: &Candidate| if any_good { good(c) } else { routable(c) };
            let best = taken
                .iter()
                .filter(|(_, c)| usable(c))
                .map(|(m, _)| m.tier)
                .min();
            let active: Vec<Hop> = taken
                .iter()
                .filter(|(m, c)| usable(c) && Some(m.tier) == best)
                .filter_map(|(m, c)| {
                    c.default.map(|h| Hop {
                        weight: m.weight,
                        ..h
                    })
                })
                .collect();
            let total: u32 = active.iter().map(|h| u32::from(h.weight)).sum();
            for (m, c) in &taken {
                let state = if c.default.is_none() {
                    "no-route"
                } else if c.health == LinkState::Down {
                    "down"
                } else if usable(c) && Some(m.tier) == best {
                    "active"
                } else {
                    "standby"
                };
                let share = if state == "active" && total > 0 {
                    (f64::from(m.weight) * 1000.0 / f64::from(total)).round() / 10.0
                } else {
                    0.0
                };
                view.members.push(MemberView {
                    ifname: c.ifname.clone(),
                    family: family.to_string(),
                    tier: m.tier,
                    weight: m.weight,
                    state: state.into(),
                    share,
                });
            }
            let mut route = RouteSpec::base(unspecified(family), 0, 0, table);
            match active.as_slice() {
                [] => {}
                [one] => {
                    route.ifindex = one.ifindex;
                    route.gateway = one.gateway;
                    route.onlink = one.onlink;
                    route.link_scope = one.gateway.is_none();
                    route.src = taken
                        .iter()
                        .find(|(_, c)| c.default.is_some_and(|d| d.ifindex == one.ifindex))
                        .map(|(_, c)| c.address);
                    out.routes.push(route);
                }
                many => {
                    route.hops = many.to_vec();
                    out.routes.push(route);
                    view.balanced.push(family.to_string());
                }
            }
            let kind = match policy.last_resort {
                LastResort::Default => None,
                LastResort::Unreachable => Some(RouteKind::Unreachable),
                LastResort::Blackhole => Some(RouteKind::Blackhole),
            };
            if let Some(kind) = kind {
                let mut r = RouteSpec::base(unspecified(family), 0, 0, table);
                r.kind = kind;
                r.metric = Some(LAST_RESORT_METRIC);
                out.routes.push(r);
            }
        }
        out.views.push(view);
    }
    for (i, rule) in p.rules.iter().enumerate() {
        let table = p.table(rule.policy);
        let priority = PRIO_FIRST_RULE + 10 * i as u32;
        for family in FAMILIES {
            let pick = |v: &[(IpAddr, u8)]| -> Option<Vec<Option<(IpAddr, u8)>>> {
                if v.is_empty() {
                    return Some(vec![None]);
                }
                let of: Vec<_> = v
                    .iter()
                    .filter(|(a, _)| family_of(a) == family)
                    .map(|x| Some(*x))
                    .collect();
                (!of.is_empty()).then_some(of)
            };
            let (Some(tos), Some(froms)) = (pick(&rule.to), pick(&rule.from)) else {
                continue;
            };
            // A protocol of the other family's only (icmp, ipv6-icmp).
            if matches!(
                (family, rule.sel.ipproto),
                (Family::Inet6, Some(1)) | (Family::Inet, Some(58))
            ) {
                continue;
            }
            for to in &tos {
                for from in &froms {
                    out.rules.push(RuleSpec {
                        family,
                        priority,
                        from: *from,
                        to: *to,
                        iif: rule.iif.clone(),
                        oif: None,
                        table,
                        sel: rule.sel.clone(),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
