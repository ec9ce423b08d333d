//! What one reconcile pass of `mhr ra` must do about addresses, decided
//! from what the kernel shows (pure; the agent applies it):
//! - a global address the kernel made from an RA, without a rule and not
//!   being leased: lease a table for it;
//! - a temporary (privacy) address without a rule: a `from` rule to its
//!   interface's table (the one whose stable address shares its /64, else
//!   the first);
//! - a temporary address's rule whose address is gone: delete it.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};

use crate::addr::Family;
use crate::netlink::rules::{RuleSpec, PRIO_BOUND_DEVICE, PRIO_FROM};
use crate::netlink::{Addr6, IFAPROT_KERNEL_RA};

/// The kernel's view for one pass.
pub struct Observed<'a> {
    pub addrs: &'a [Addr6],
    /// Managed interfaces by index (the others are not ours).
    pub managed: &'a HashMap<u32, String>,
    /// Our IPv6 rules.
    pub rules: &'a [RuleSpec],
    /// Addresses whose lease is being taken right now.
    pub leasing: &'a HashSet<Ipv6Addr>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct AddressPlan {
    /// Addresses to lease a table for, with their interface.
    pub lease: Vec<(String, Addr6)>,
    pub add_rules: Vec<RuleSpec>,
    pub del_rules: Vec<RuleSpec>,
    /// Per interface index, the RA address name servers are reached from.
    pub stable: HashMap<u32, Ipv6Addr>,
}

/// Tables of our IPv6 rules by interface (from the 9000 `oif` rules).
pub fn tables_by_interface(rules: &[RuleSpec]) -> HashMap<String, Vec<u32>> {
    let mut tables: HashMap<String, Vec<u32>> = HashMap::new();
    for r in rules.iter().filter(|r| r.priority == PRIO_BOUND_DEVICE) {
        if let Some(oif) = &r.oif {
            tables.entry(oif.clone()).or_default().push(r.table);
        }
    }
    for t in tables.values_mut() {
        t.sort_unstable();
    }
    tables
}

fn from_rule(address: Ipv6Addr, table: u32) -> RuleSpec {
    let mut r = RuleSpec::new(Family::Inet6, table);
    r.priority = PRIO_FROM;
    r.from = Some((IpAddr::V6(address), 128));
    r
}

pub fn plan_addresses(o: &Observed) -> AddressPlan {
    let tables = tables_by_interface(o.rules);
    let from_rules: Vec<(Ipv6Addr, u32)> = o
        .rules
        .iter()
        .filter(|r| r.priority == PRIO_FROM)
        .filter_map(|r| match r.from {
            Some((IpAddr::V6(a), 128)) => Some((a, r.table)),
            _ => None,
        })
        .collect();
    let mut plan = AddressPlan::default();
    let mut present: HashSet<Ipv6Addr> = HashSet::new();
    for a in o.addrs {
        present.insert(a.address);
        if !a.usable_global() {
            continue;
        }
        let Some(ifname) = o.managed.get(&a.index) else {
            continue;
        };
        let has_rule = from_rules.iter().any(|(x, _)| *x == a.address);
        if a.temporary() {
            let own = tables.get(ifname).and_then(|ts| {
                ts.iter()
                    .copied()
                    .find(|t| {
                        from_rules.iter().any(|(x, tt)| {
                            tt == t && x.segments()[..4] == a.address.segments()[..4]
                        })
                    })
                    .or_else(|| ts.first().copied())
            });
            if let (Some(table), false) = (own, has_rule) {
                plan.add_rules.push(from_rule(a.address, table));
            }
            continue;
        }
        if a.proto == Some(IFAPROT_KERNEL_RA) {
            plan.stable.entry(a.index).or_insert(a.address);
            if !has_rule && !o.leasing.contains(&a.address) {
                plan.lease.push((ifname.clone(), a.clone()));
            }
        }
    }
    // Temporary-address rules whose address is gone. (A client removes its
    // own address's rule itself.)
    let managed_tables: HashSet<u32> = tables.values().flatten().copied().collect();
    for (addr, table) in &from_rules {
        if !present.contains(addr) && managed_tables.contains(table) && !o.leasing.contains(addr) {
            plan.del_rules.push(from_rule(*addr, *table));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::rules::{rules_for, AddressSpec};
    use crate::netlink::IFA_F_TEMPORARY;

    fn addr(index: u32, a: &str, flags: u32, proto: Option<u8>) -> Addr6 {
        Addr6 {
            index,
            address: a.parse().unwrap(),
            prefix_len: 64,
            flags,
            proto,
        }
    }

    #[test]
    fn ra_addresses_lease_and_privacy_addresses_follow_their_prefix() {
        let managed = HashMap::from([(3, "wan6".to_string())]);
        let mut rules = rules_for(
            &AddressSpec {
                ifname: "wan6".into(),
                address: "2001:db8:1::2".parse().unwrap(),
                prefix_len: 64,
            },
            10005,
        );
        rules.extend(rules_for(
            &AddressSpec {
                ifname: "wan6".into(),
                address: "2001:db8:2::2".parse().unwrap(),
                prefix_len: 64,
            },
            10006,
        ));
        // A privacy address that went away, on one of our tables.
        rules.push(from_rule("2001:db8:2::99".parse().unwrap(), 10006));
        let ra = Some(IFAPROT_KERNEL_RA);
        let addrs = vec![
            addr(3, "2001:db8:1::2", 0, ra),
            addr(3, "2001:db8:2::2", 0, ra),
            addr(3, "2001:db8:3::5", 0, ra),
            addr(3, "2001:db8:2::77", IFA_F_TEMPORARY, ra),
            addr(4, "2001:db8:9::5", 0, ra),
            addr(3, "fe80::1", 0, None),
        ];
        let leasing = HashSet::new();
        let plan = plan_addresses(&Observed {
            addrs: &addrs,
            managed: &managed,
            rules: &rules,
            leasing: &leasing,
        });
        let leased: Vec<String> = plan
            .lease
            .iter()
            .map(|(_, a)| a.address.to_string())
            .collect();
        assert_eq!(
            leased,
            ["2001:db8:3::5"],
            "new RA address only; index 4 is not managed"
        );
        assert_eq!(
            plan.add_rules,
            [from_rule("2001:db8:2::77".parse().unwrap(), 10006)]
        );
        assert_eq!(
            plan.del_rules,
            [from_rule("2001:db8:2::99".parse().unwrap(), 10006)]
        );
        assert_eq!(
            plan.stable[&3],
            "2001:db8:1::2".parse::<Ipv6Addr>().unwrap()
        );
        // Being leased already: not asked again.
        let leasing = HashSet::from(["2001:db8:3::5".parse().unwrap()]);
        let plan = plan_addresses(&Observed {
            addrs: &addrs,
            managed: &managed,
            rules: &rules,
            leasing: &leasing,
        });
        assert!(plan.lease.is_empty());
    }
}
