//! The policy-routing rules for one interface address: pure, so the plan can
//! be tested without a kernel and reused by a single-process agent later.

use std::fmt;
use std::net::IpAddr;

use crate::addr::Family;
use crate::addr::{family_of, max_prefix, network};

/// Sockets bound to a device (SO_BINDTODEVICE) use their device's table,
/// even when another interface holds the same address (USB modems that all
/// hand out one private subnet). Before the `from` rules, which cannot tell
/// two such interfaces apart.
pub const PRIO_BOUND_DEVICE: u32 = 9000;
/// Traffic from the address (a bound socket).
pub const PRIO_FROM: u32 = 10000;
/// Traffic to the address's network.
pub const PRIO_TO: u32 = 20000;
/// Unbound locally generated traffic; after main (32766), so main's routes
/// win where they exist.
pub const PRIO_IIF_LO: u32 = 91000;

/// The routing protocol number our rules and routes carry (`proto 77` in
/// `ip rule`), so we can find ours after a restart and never touch others'.
pub const RT_PROTO: u8 = 77;

/// One interface address that gets a table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AddressSpec {
    pub ifname: String,
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl AddressSpec {
    pub fn family(&self) -> Family {
        family_of(&self.address)
    }

    /// The network the address is in (host bits cleared).
    pub fn network(&self) -> IpAddr {
        network(self.address, self.prefix_len)
    }
}

impl fmt::Display for AddressSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} on {}", self.address, self.prefix_len, self.ifname)
    }
}

/// One rule as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleSpec {
    pub family: Family,
    pub priority: u32,
    pub from: Option<(IpAddr, u8)>,
    pub to: Option<(IpAddr, u8)>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub table: u32,
    /// A policy rule's further selectors.
    pub sel: Selectors,
}

/// Selectors of a policy's rules beside the addresses and devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selectors {
    /// IP protocol number (6 tcp, 17 udp).
    pub ipproto: Option<u8>,
    pub sport: Option<(u16, u16)>,
    pub dport: Option<(u16, u16)>,
    pub uid: Option<(u32, u32)>,
    /// Mark and mask.
    pub fwmark: Option<(u32, u32)>,
}

impl RuleSpec {
    /// A rule sending everything to `table`; selectors are added to it.
    pub fn new(family: Family, table: u32) -> RuleSpec {
        RuleSpec {
            family,
            priority: 0,
            from: None,
            to: None,
            iif: None,
            oif: None,
            table,
            sel: Selectors::default(),
        }
    }
}

impl fmt::Display for RuleSpec {
    /// As `ip rule` prints it (without the protocol).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:\tfrom ", self.priority)?;
        match self.from {
            Some((a, l)) if l == max_prefix(&a) => write!(f, "{a}")?,
            Some((a, l)) => write!(f, "{a}/{l}")?,
            None => write!(f, "all")?,
        }
        if let Some((a, l)) = self.to {
            write!(f, " to {a}/{l}")?;
        }
        if let Some(i) = &self.iif {
            write!(f, " iif {i}")?;
        }
        if let Some(o) = &self.oif {
            write!(f, " oif {o}")?;
        }
        let s = &self.sel;
        if let Some((m, mask)) = s.fwmark {
            write!(f, " fwmark {m:#x}")?;
            if mask != u32::MAX {
                write!(f, "/{mask:#x}")?;
            }
        }
        match s.ipproto {
            Some(6) => write!(f, " ipproto tcp")?,
            Some(17) => write!(f, " ipproto udp")?,
            Some(p) => write!(f, " ipproto {p}")?,
            None => {}
        }
        let range = |f: &mut fmt::Formatter<'_>, name: &str, r: Option<(u16, u16)>| match r {
            Some((a, b)) if a == b => write!(f, " {name} {a}"),
            Some((a, b)) => write!(f, " {name} {a}-{b}"),
            None => Ok(()),
        };
        range(f, "sport", s.sport)?;
        range(f, "dport", s.dport)?;
        if let Some((a, b)) = s.uid {
            write!(f, " uidrange {a}-{b}")?;
        }
        write!(f, " lookup {}", self.table)
    }
}

/// Every rule of an address: the four of `rules_for`, and one per
/// downstream interface beside `iif lo`. The client and the agent both
/// install exactly these.
pub fn address_rules(addr: &AddressSpec, table: u32, downstream: &Downstream) -> Vec<RuleSpec> {
    let mut rules = rules_for(addr, table);
    rules.extend(downstream.rules(addr.family(), table, PRIO_IIF_LO));
    rules
}

/// The rules that send an address's traffic to `table`, in the order they
/// are installed.
pub fn rules_for(addr: &AddressSpec, table: u32) -> Vec<RuleSpec> {
    let base = RuleSpec::new(addr.family(), table);
    vec![
        RuleSpec {
            priority: PRIO_FROM,
            from: Some((addr.address, max_prefix(&addr.address))),
            ..base.clone()
        },
        RuleSpec {
            priority: PRIO_TO,
            to: Some((addr.network(), addr.prefix_len)),
            ..base.clone()
        },
        RuleSpec {
            priority: PRIO_IIF_LO,
            iif: Some("lo".into()),
            ..base.clone()
        },
        RuleSpec {
            priority: PRIO_BOUND_DEVICE,
            oif: Some(addr.ifname.clone()),
            ..base
        },
    ]
}

/// Where forwarded traffic comes in (`MHR_DOWNSTREAM`: a LAN, a bridge of
/// containers or VMs). Main holds no uplink default, so without rules of
/// their own such packets have nowhere to go; these give them the same
/// choice as the host's own unbound traffic: beside every `iif lo` rule
/// (the tracker's at 50000, each address's at 91000) one for each
/// downstream interface, or one for every interface (`*`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Downstream {
    /// Only the host's own traffic (the original's behaviour).
    #[default]
    None,
    /// Traffic from every interface.
    All,
    Named(Vec<String>),
}

impl Downstream {
    /// `""`: none; `*`: every interface; else interface names, comma
    /// separated (rules match names exactly: no other wildcards).
    pub fn parse(text: &str) -> Result<Downstream, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Downstream::None);
        }
        if text == "*" {
            return Ok(Downstream::All);
        }
        let mut names = Vec::new();
        for n in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if n.contains('*') {
                return Err(format!(
                    "{n:?}: only a lone `*` (every interface) is a pattern here"
                ));
            }
            crate::protocol::validate_ifname(n).map_err(|e| e.message)?;
            if n != "lo" {
                names.push(n.to_owned());
            }
        }
        Ok(Downstream::Named(names))
    }

    /// The rules for forwarded traffic to `table` at `priority`.
    pub fn rules(&self, family: Family, table: u32, priority: u32) -> Vec<RuleSpec> {
        let base = RuleSpec {
            priority,
            ..RuleSpec::new(family, table)
        };
        match self {
            Downstream::None => Vec::new(),
            Downstream::All => vec![base],
            Downstream::Named(names) => names
                .iter()
                .map(|n| RuleSpec {
                    iif: Some(n.clone()),
                    ..base.clone()
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(addr: &str, len: u8) -> AddressSpec {
        AddressSpec {
            ifname: "eth1".into(),
            address: addr.parse().unwrap(),
            prefix_len: len,
        }
    }

    #[test]
    fn ipv4_rules_read_like_ip_rule() {
        let text: Vec<String> = rules_for(&spec("10.10.0.2", 24), 10000)
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            text,
            [
                "10000:\tfrom 10.10.0.2 lookup 10000",
                "20000:\tfrom all to 10.10.0.0/24 lookup 10000",
                "91000:\tfrom all iif lo lookup 10000",
                "9000:\tfrom all oif eth1 lookup 10000",
            ]
        );
    }

    #[test]
    fn ipv6_rules_use_the_network() {
        let rules = rules_for(&spec("2001:db8:1::2", 64), 10003);
        assert_eq!(
            rules[0].to_string(),
            "10000:\tfrom 2001:db8:1::2 lookup 10003"
        );
        assert_eq!(
            rules[1].to_string(),
            "20000:\tfrom all to 2001:db8:1::/64 lookup 10003"
        );
        assert!(rules.iter().all(|r| r.family == Family::Inet6));
    }

    #[test]
    fn downstream_rules_sit_beside_the_iif_lo_rule() {
        assert_eq!(Downstream::parse("").unwrap(), Downstream::None);
        assert_eq!(Downstream::parse("*").unwrap(), Downstream::All);
        assert_eq!(
            Downstream::parse("lan0, br-vm,lo").unwrap(),
            Downstream::Named(vec!["lan0".into(), "br-vm".into()])
        );
        assert!(Downstream::parse("lan*").is_err());
        assert!(Downstream::parse("a/b").is_err());
        let named = Downstream::parse("lan0,br0").unwrap();
        let text: Vec<String> = named
            .rules(Family::Inet, 10000, PRIO_IIF_LO)
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            text,
            [
                "91000:\tfrom all iif lan0 lookup 10000",
                "91000:\tfrom all iif br0 lookup 10000"
            ]
        );
        let all = Downstream::All.rules(Family::Inet6, 10001, 50000);
        assert_eq!(all[0].to_string(), "50000:\tfrom all lookup 10001");
        assert!(Downstream::None.rules(Family::Inet, 1, 1).is_empty());
    }
}
