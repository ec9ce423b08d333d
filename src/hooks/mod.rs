//! The variables dhclient-script, ifupdown and NetworkManager hand their
//! hooks, turned into what to do. Pure: an environment in, an action out.

pub mod apply;
pub mod hostname;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::addr::parse_netmask;
use crate::addr::Family;
use crate::netlink::routes::StaticRoute;
use crate::protocol::validate_ifname;

pub type Env = HashMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {message}")]
pub struct HookError {
    pub var: String,
    pub message: String,
}

fn err(var: &str, message: impl Into<String>) -> HookError {
    HookError {
        var: var.to_owned(),
        message: message.into(),
    }
}

fn get<'a>(env: &'a Env, var: &str) -> Option<&'a str> {
    env.get(var).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn require<'a>(env: &'a Env, var: &str) -> Result<&'a str, HookError> {
    get(env, var).ok_or_else(|| err(var, "missing"))
}

fn ifname(env: &Env, var: &str) -> Result<String, HookError> {
    let name = require(env, var)?;
    validate_ifname(name).map_err(|e| err(var, e.message))?;
    Ok(name.to_owned())
}

fn ipv4(env: &Env, var: &str) -> Result<Option<Ipv4Addr>, HookError> {
    get(env, var).map(|v| ipv4_word(var, v)).transpose()
}

fn addresses(env: &Env, var: &str) -> Result<Vec<IpAddr>, HookError> {
    get(env, var)
        .map(|v| {
            v.split_whitespace()
                .map(|a| {
                    a.parse()
                        .map_err(|_| err(var, format!("{a:?} is not an address")))
                })
                .collect()
        })
        .unwrap_or(Ok(Vec::new()))
}

fn number(env: &Env, var: &str) -> Result<Option<u32>, HookError> {
    get(env, var)
        .map(|v| {
            v.parse()
                .map_err(|_| err(var, format!("{v:?} is not a number")))
        })
        .transpose()
}

/// The smallest interface MTU a DHCP server may set. Like Debian's
/// dhclient-script, a value of 576 or less is ignored: a hostile server
/// could otherwise cripple the link (68 bytes) through option 26.
pub const MIN_DHCP_MTU: u32 = 577;

fn dhcp_mtu(mtu: Option<u32>) -> Option<u32> {
    match mtu {
        Some(m) if !(MIN_DHCP_MTU..=65535).contains(&m) => {
            tracing::warn!(mtu = m, "ignoring DHCP interface MTU outside 577-65535");
            None
        }
        other => other,
    }
}

/// An IPv4 lease as dhclient-script describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpLease {
    pub ifname: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub broadcast: Option<Ipv4Addr>,
    pub routers: Vec<IpAddr>,
    pub static_routes: Vec<StaticRoute>,
    pub mtu: Option<u32>,
    pub dns: Vec<IpAddr>,
    /// IF_METRIC, as dhclient-script reads it.
    pub metric: Option<u32>,
    /// `new_host_name` and `old_host_name` (see `hostname`).
    pub host_name: Option<String>,
    pub old_host_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpAction {
    /// BOUND, RENEW, REBIND, REBOOT; TIMEOUT with `check_router` (use the
    /// recorded lease only if its first router answers).
    Configure {
        lease: DhcpLease,
        /// The previous address when it changed: flush it.
        old: Option<(Ipv4Addr, u8)>,
        check_router: bool,
    },
    /// EXPIRE, FAIL, RELEASE, STOP: drop the interface's DNS servers; the
    /// rest is dhclient-script's (and the table client follows the address).
    RemoveDns { ifname: String },
    /// BOUND6, RENEW6, REBIND6, REBOOT6: the DHCPv6 address with its
    /// lifetimes, its table and its name servers (routes come from RAs).
    Configure6 { lease: Dhcp6Lease },
    /// DEPREF6: the address is no longer preferred.
    Deprecate6 {
        ifname: String,
        address: Ipv6Addr,
        prefix_len: u8,
    },
    /// EXPIRE6, RELEASE6, STOP6: the address goes (its client follows it)
    /// and so do its name servers.
    Remove6 {
        ifname: String,
        address: Ipv6Addr,
        prefix_len: u8,
    },
    /// Anything else: not ours.
    Ignore { reason: String },
}

/// A DHCPv6 (IA_NA) lease as dhclient -6 describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp6Lease {
    pub ifname: String,
    pub address: Ipv6Addr,
    /// dhclient's default is 128: the on-link prefix comes from RAs.
    pub prefix_len: u8,
    pub valid: u32,
    pub preferred: u32,
    pub dns: Vec<IpAddr>,
}

fn ipv6(env: &Env, var: &str) -> Result<Option<Ipv6Addr>, HookError> {
    get(env, var)
        .map(|v| {
            v.parse()
                .map_err(|_| err(var, format!("{v:?} is not an IPv6 address")))
        })
        .transpose()
}

fn prefix6(env: &Env, var: &str) -> Result<u8, HookError> {
    match number(env, var)? {
        None => Ok(128),
        Some(p) if p <= 128 => Ok(p as u8),
        Some(p) => Err(err(var, format!("prefix length {p} is over 128"))),
    }
}

/// The DHCPv6 reasons of dhclient-script.
fn dhclient6(env: &Env, reason: &str) -> Result<DhcpAction, HookError> {
    let ifname = ifname(env, "interface")?;
    let ignore = |why: &str| {
        Ok(DhcpAction::Ignore {
            reason: format!("{reason}: {why}"),
        })
    };
    match reason {
        "BOUND6" | "RENEW6" | "REBIND6" | "REBOOT6" => {
            let Some(address) = ipv6(env, "new_ip6_address")? else {
                // Information-only (stateless DHCPv6): no address to
                // source the name servers from; RDNSS covers it.
                return ignore("no new_ip6_address");
            };
            let valid = number(env, "new_max_life")?.unwrap_or(u32::MAX);
            let preferred = number(env, "new_preferred_life")?.unwrap_or(valid);
            Ok(DhcpAction::Configure6 {
                lease: Dhcp6Lease {
                    ifname,
                    address,
                    prefix_len: prefix6(env, "new_ip6_prefixlen")?,
                    valid,
                    preferred: preferred.min(valid),
                    dns: addresses(env, "new_dhcp6_name_servers")?,
                },
            })
        }
        "DEPREF6" => match ipv6(env, "cur_ip6_address")? {
            Some(address) => Ok(DhcpAction::Deprecate6 {
                ifname,
                address,
                prefix_len: prefix6(env, "cur_ip6_prefixlen")?,
            }),
            None => ignore("no cur_ip6_address"),
        },
        _ => match ipv6(env, "old_ip6_address")? {
            Some(address) => Ok(DhcpAction::Remove6 {
                ifname,
                address,
                prefix_len: prefix6(env, "old_ip6_prefixlen")?,
            }),
            None => ignore("no old_ip6_address"),
        },
    }
}

/// Reads dhclient-script's variables (`reason`, `interface`, `new_*`,
/// `old_*`).
pub fn dhclient(env: &Env) -> Result<DhcpAction, HookError> {
    let reason = require(env, "reason")?.to_owned();
    match reason.as_str() {
        "BOUND" | "RENEW" | "REBIND" | "REBOOT" | "TIMEOUT" => {}
        "EXPIRE" | "FAIL" | "RELEASE" | "STOP" => {
            return Ok(DhcpAction::RemoveDns {
                ifname: ifname(env, "interface")?,
            })
        }
        "BOUND6" | "RENEW6" | "REBIND6" | "REBOOT6" | "DEPREF6" | "EXPIRE6" | "RELEASE6"
        | "STOP6" => return dhclient6(env, &reason),
        _ => return Ok(DhcpAction::Ignore { reason }),
    }
    let ifname = ifname(env, "interface")?;
    let address = ipv4(env, "new_ip_address")?.ok_or_else(|| err("new_ip_address", "missing"))?;
    let prefix_len = match get(env, "new_subnet_mask") {
        Some(mask) => parse_netmask(mask, Family::Inet).map_err(|e| err("new_subnet_mask", e))?,
        None => 32,
    };
    let static_routes = match get(env, "new_rfc3442_classless_static_routes") {
        Some(text) => {
            parse_rfc3442(text).map_err(|e| err("new_rfc3442_classless_static_routes", e))?
        }
        None => Vec::new(),
    };
    let lease = DhcpLease {
        ifname,
        address,
        prefix_len,
        broadcast: ipv4(env, "new_broadcast_address")?,
        routers: addresses(env, "new_routers")?,
        static_routes,
        mtu: dhcp_mtu(number(env, "new_interface_mtu")?),
        dns: addresses(env, "new_domain_name_servers")?,
        metric: number(env, "IF_METRIC")?,
        host_name: get(env, "new_host_name").map(str::to_owned),
        old_host_name: get(env, "old_host_name").map(str::to_owned),
    };
    let old = match ipv4(env, "old_ip_address")? {
        Some(a) if a != address => {
            let plen = get(env, "old_subnet_mask")
                .map(|m| parse_netmask(m, Family::Inet).map_err(|e| err("old_subnet_mask", e)))
                .transpose()?
                .unwrap_or(32);
            Some((a, plen))
        }
        _ => None,
    };
    Ok(DhcpAction::Configure {
        lease,
        old,
        check_router: reason == "TIMEOUT",
    })
}

/// Debian's dhclient passes option 121 as decimal octets: for each route the
/// prefix length, the significant octets of the destination, then the four
/// octets of the router (`24 192 168 10 10 0 0 1 0 10 0 0 1`).
pub fn parse_rfc3442(text: &str) -> Result<Vec<StaticRoute>, String> {
    let octets: Vec<u8> = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == '.')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u8>()
                .map_err(|_| format!("{s:?} is not an octet"))
        })
        .collect::<Result<_, _>>()?;
    let mut routes = Vec::new();
    let mut i = 0;
    while i < octets.len() {
        let plen = octets[i];
        if plen > 32 {
            return Err(format!("prefix length {plen} is over 32"));
        }
        let significant = usize::from(plen).div_ceil(8);
        let need = 1 + significant + 4;
        if i + need > octets.len() {
            return Err("truncated route".into());
        }
        let mut dest = [0u8; 4];
        dest[..significant].copy_from_slice(&octets[i + 1..i + 1 + significant]);
        let g = &octets[i + 1 + significant..i + need];
        routes.push(StaticRoute {
            dest: crate::addr::network(IpAddr::V4(Ipv4Addr::from(dest)), plen)
                .to_string()
                .parse()
                .expect("IPv4"),
            prefix_len: plen,
            gateway: Ipv4Addr::new(g[0], g[1], g[2], g[3]),
        });
        i += need;
    }
    Ok(routes)
}

/// A statically configured IPv4 uplink (ifupdown `inet static`, or one
/// address of a NetworkManager connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticUplink {
    pub ifname: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// Extra routes (NetworkManager's IP4_ROUTE_N).
    pub routes: Vec<StaticRoute>,
    pub dns: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfupAction {
    /// ifupdown brought up an `inet static` stanza: move its routes.
    Static(StaticUplink),
    /// NetworkManager (through its ifupdown dispatcher): add routes to the
    /// tables, keep NetworkManager's in main.
    NetworkManager(Vec<StaticUplink>),
    Ignore {
        reason: String,
    },
}

/// Reads an if-up.d hook's environment. ifupdown sets `IFACE`, `ADDRFAM`,
/// `METHOD`, `IF_ADDRESS`, `IF_NETMASK`, `IF_GATEWAY`; NetworkManager's
/// dispatcher adds `DEVICE_IFACE`, `IP4_NUM_ADDRESSES`, `IP4_ADDRESS_N`,
/// `IP4_GATEWAY`, `IP4_NUM_ROUTES`, `IP4_ROUTE_N`, `IP4_NAMESERVERS`.
pub fn ifup(env: &Env) -> Result<IfupAction, HookError> {
    if get(env, "IP4_NUM_ADDRESSES").is_some() || get(env, "DEVICE_IFACE").is_some() {
        return network_manager(env);
    }
    // Run by hand or by something that is not ifupdown: nothing to do, and
    // not an error (ifup would fail the interface for it).
    if get(env, "IFACE").is_none() {
        return Ok(IfupAction::Ignore {
            reason: "no IFACE: not run by ifupdown".into(),
        });
    }
    let iface = ifname(env, "IFACE")?;
    if iface == "lo" {
        return Ok(IfupAction::Ignore {
            reason: "loopback".into(),
        });
    }
    match (get(env, "ADDRFAM"), get(env, "METHOD")) {
        (Some("inet"), Some("static")) => {}
        (fam, method) => {
            return Ok(IfupAction::Ignore {
                reason: format!(
                    "{iface}: ADDRFAM={} METHOD={} (only inet static is handled here)",
                    fam.unwrap_or(""),
                    method.unwrap_or("")
                ),
            })
        }
    }
    let addr_text = require(env, "IF_ADDRESS")?;
    // `address 10.0.0.2/24` is valid ifupdown syntax too.
    let (addr, plen_in_addr) = match addr_text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (addr_text, None),
    };
    let address: Ipv4Addr = addr.parse().map_err(|_| {
        err(
            "IF_ADDRESS",
            format!("{addr_text:?} is not an IPv4 address"),
        )
    })?;
    let prefix_len = match (plen_in_addr, get(env, "IF_NETMASK")) {
        (Some(p), _) => parse_netmask(p, Family::Inet).map_err(|e| err("IF_ADDRESS", e))?,
        (None, Some(m)) => parse_netmask(m, Family::Inet).map_err(|e| err("IF_NETMASK", e))?,
        (None, None) => return Err(err("IF_NETMASK", "missing (and no /prefix in IF_ADDRESS)")),
    };
    Ok(IfupAction::Static(StaticUplink {
        ifname: iface,
        address,
        prefix_len,
        gateway: ipv4(env, "IF_GATEWAY")?,
        routes: Vec::new(),
        dns: addresses(env, "IF_DNS_NAMESERVERS")?,
    }))
}

fn network_manager(env: &Env) -> Result<IfupAction, HookError> {
    // The interface that carries IP: DEVICE_IP_IFACE, which the dispatcher
    // also passes as $1 and 01-ifupdown exports as IFACE. DEVICE_IFACE is
    // the device NetworkManager controls, which for a modem, PPP or a VPN
    // is another one (cdc-wdm0, ttyUSB0): never route on that.
    let iface = if get(env, "DEVICE_IP_IFACE").is_some() {
        ifname(env, "DEVICE_IP_IFACE")?
    } else if get(env, "IFACE").is_some() {
        ifname(env, "IFACE")?
    } else {
        ifname(env, "DEVICE_IFACE")?
    };
    // 01-ifupdown runs the if-up.d scripts once per address family; the
    // IPv4 routes are ours once, on the inet round.
    if let Some(fam) = get(env, "ADDRFAM").filter(|f| *f != "inet") {
        return Ok(IfupAction::Ignore {
            reason: format!(
                "{iface}: NetworkManager ADDRFAM={fam} (IPv4 is handled on the inet round)"
            ),
        });
    }
    let count = number(env, "IP4_NUM_ADDRESSES")?.unwrap_or(0);
    let gateway = ipv4(env, "IP4_GATEWAY")?;
    // Every route applies to every address: read IP4_ROUTE_j in its own loop
    // (the original read IP4_ROUTE_$i inside the j loop).
    let mut routes = Vec::new();
    for j in 0..number(env, "IP4_NUM_ROUTES")?.unwrap_or(0) {
        let var = format!("IP4_ROUTE_{j}");
        let text = require(env, &var)?;
        let mut parts = text.split_whitespace();
        let (dest, prefix_len) = cidr4(&var, parts.next())?;
        let gateway = parts
            .next()
            .map(|g| ipv4_word(&var, g))
            .transpose()?
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        routes.push(StaticRoute {
            dest,
            prefix_len,
            gateway,
        });
    }
    let dns = addresses(env, "IP4_NAMESERVERS")?;
    let mut uplinks = Vec::new();
    for i in 0..count {
        let var = format!("IP4_ADDRESS_{i}");
        let text = require(env, &var)?;
        let mut parts = text.split_whitespace();
        let (address, prefix_len) = cidr4(&var, parts.next())?;
        let own_gateway = parts
            .next()
            .map(|g| ipv4_word(&var, g))
            .transpose()?
            .filter(|g| !g.is_unspecified());
        uplinks.push(StaticUplink {
            ifname: iface.clone(),
            address,
            prefix_len,
            gateway: gateway.or(own_gateway),
            routes: routes.clone(),
            dns: dns.clone(),
        });
    }
    if uplinks.is_empty() {
        return Ok(IfupAction::Ignore {
            reason: format!("{iface}: NetworkManager gave no IPv4 address"),
        });
    }
    Ok(IfupAction::NetworkManager(uplinks))
}

/// `A.B.C.D/N` (or a dotted mask) from NetworkManager's IP4_* variables.
fn cidr4(var: &str, word: Option<&str>) -> Result<(Ipv4Addr, u8), HookError> {
    let word = word.ok_or_else(|| err(var, "empty"))?;
    let (a, p) = word
        .split_once('/')
        .ok_or_else(|| err(var, format!("{word:?} has no /prefix")))?;
    let prefix_len = parse_netmask(p, Family::Inet).map_err(|e| err(var, e))?;
    Ok((ipv4_word(var, a)?, prefix_len))
}

fn ipv4_word(var: &str, word: &str) -> Result<Ipv4Addr, HookError> {
    word.parse()
        .map_err(|_| err(var, format!("{word:?} is not an IPv4 address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dhcpv6_reasons() {
        let base = [
            ("interface", "wan3"),
            ("new_ip6_address", "2001:db8:30::1a2"),
            ("new_ip6_prefixlen", "128"),
            ("new_max_life", "3600"),
            ("new_preferred_life", "1800"),
            ("new_dhcp6_name_servers", "2001:db8:30::1 fe80::1"),
        ];
        for reason in ["BOUND6", "RENEW6", "REBIND6", "REBOOT6"] {
            let mut e = env(&base);
            e.insert("reason".into(), reason.into());
            let DhcpAction::Configure6 { lease } = dhclient(&e).unwrap() else {
                panic!("{reason}");
            };
            assert_eq!(
                lease.address,
                "2001:db8:30::1a2".parse::<Ipv6Addr>().unwrap()
            );
            assert_eq!(
                (lease.prefix_len, lease.valid, lease.preferred),
                (128, 3600, 1800)
            );
            assert_eq!(lease.dns.len(), 2);
        }
        let e = env(&[
            ("reason", "DEPREF6"),
            ("interface", "wan3"),
            ("cur_ip6_address", "2001:db8:30::1a2"),
            ("cur_ip6_prefixlen", "128"),
        ]);
        assert!(matches!(
            dhclient(&e).unwrap(),
            DhcpAction::Deprecate6 {
                prefix_len: 128,
                ..
            }
        ));
        for reason in ["EXPIRE6", "RELEASE6", "STOP6"] {
            let e = env(&[
                ("reason", reason),
                ("interface", "wan3"),
                ("old_ip6_address", "2001:db8:30::1a2"),
            ]);
            assert!(
                matches!(
                    dhclient(&e).unwrap(),
                    DhcpAction::Remove6 {
                        prefix_len: 128,
                        ..
                    }
                ),
                "{reason}"
            );
        }
        // Information-only: nothing to source DNS from; PREINIT6 not ours.
        let e = env(&[("reason", "BOUND6"), ("interface", "wan3")]);
        assert!(matches!(dhclient(&e).unwrap(), DhcpAction::Ignore { .. }));
        let e = env(&[("reason", "PREINIT6"), ("interface", "wan3")]);
        assert!(matches!(dhclient(&e).unwrap(), DhcpAction::Ignore { .. }));
        // Bad values name the variable.
        let mut e = env(&base);
        e.insert("reason".into(), "BOUND6".into());
        e.insert("new_ip6_prefixlen".into(), "129".into());
        assert_eq!(dhclient(&e).unwrap_err().var, "new_ip6_prefixlen");
        e.insert("new_ip6_prefixlen".into(), "64".into());
        e.insert("new_ip6_address".into(), "10.0.0.1".into());
        assert_eq!(dhclient(&e).unwrap_err().var, "new_ip6_address");
    }

    #[test]
    fn bound() {
        let a = dhclient(&env(&[
            ("reason", "BOUND"),
            ("interface", "eth1"),
            ("new_ip_address", "10.1.0.5"),
            ("new_subnet_mask", "255.255.255.0"),
            ("new_broadcast_address", "10.1.0.255"),
            ("new_routers", "10.1.0.1 10.1.0.2"),
            ("new_domain_name_servers", "10.1.0.1 8.8.8.8"),
            ("new_interface_mtu", "1400"),
            ("old_ip_address", "10.1.0.4"),
            ("old_subnet_mask", "255.255.0.0"),
        ]))
        .unwrap();
        let DhcpAction::Configure {
            lease,
            old,
            check_router,
        } = a
        else {
            panic!("{a:?}")
        };
        assert_eq!(lease.ifname, "eth1");
        assert_eq!(lease.prefix_len, 24);
        assert_eq!(lease.routers.len(), 2);
        assert_eq!(lease.dns.len(), 2);
        assert_eq!(lease.mtu, Some(1400));
        assert_eq!(lease.broadcast, Some("10.1.0.255".parse().unwrap()));
        assert_eq!(old, Some(("10.1.0.4".parse().unwrap(), 16)));
        assert!(!check_router);
    }

    #[test]
    fn a_hostile_mtu_is_ignored() {
        for (mtu, want) in [
            ("68", None),
            ("576", None),
            ("577", Some(577)),
            ("1500", Some(1500)),
            ("70000", None),
        ] {
            let a = dhclient(&env(&[
                ("reason", "BOUND"),
                ("interface", "eth1"),
                ("new_ip_address", "10.1.0.5"),
                ("new_interface_mtu", mtu),
            ]))
            .unwrap();
            let DhcpAction::Configure { lease, .. } = a else {
                panic!("{a:?}")
            };
            assert_eq!(lease.mtu, want, "{mtu}");
        }
    }

    #[test]
    fn renew_same_address_flushes_nothing_and_timeout_checks_the_router() {
        let base = [
            ("interface", "eth1"),
            ("new_ip_address", "10.1.0.5"),
            ("new_subnet_mask", "24"),
            ("old_ip_address", "10.1.0.5"),
        ];
        for (reason, check) in [
            ("RENEW", false),
            ("REBIND", false),
            ("REBOOT", false),
            ("TIMEOUT", true),
        ] {
            let mut e = env(&base);
            e.insert("reason".into(), reason.into());
            match dhclient(&e).unwrap() {
                DhcpAction::Configure {
                    old, check_router, ..
                } => {
                    assert_eq!(old, None);
                    assert_eq!(check_router, check, "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn teardown_states_and_others() {
        for reason in ["EXPIRE", "FAIL", "RELEASE", "STOP"] {
            assert_eq!(
                dhclient(&env(&[("reason", reason), ("interface", "wwan0")])).unwrap(),
                DhcpAction::RemoveDns {
                    ifname: "wwan0".into()
                }
            );
        }
        assert!(matches!(
            dhclient(&env(&[("reason", "PREINIT"), ("interface", "eth0")])).unwrap(),
            DhcpAction::Ignore { .. }
        ));
    }

    #[test]
    fn bad_variables_name_themselves() {
        let cases = [
            (vec![("interface", "eth0")], "reason"),
            (
                vec![("reason", "BOUND"), ("new_ip_address", "10.0.0.1")],
                "interface",
            ),
            (
                vec![("reason", "BOUND"), ("interface", "eth0")],
                "new_ip_address",
            ),
            (
                vec![
                    ("reason", "BOUND"),
                    ("interface", "eth0"),
                    ("new_ip_address", "10.0.0.x"),
                ],
                "new_ip_address",
            ),
            (
                vec![
                    ("reason", "BOUND"),
                    ("interface", "eth0"),
                    ("new_ip_address", "10.0.0.1"),
                    ("new_subnet_mask", "255.0.255.0"),
                ],
                "new_subnet_mask",
            ),
            (
                vec![
                    ("reason", "BOUND"),
                    ("interface", "eth0"),
                    ("new_ip_address", "10.0.0.1"),
                    ("new_routers", "x"),
                ],
                "new_routers",
            ),
            (
                vec![
                    ("reason", "BOUND"),
                    ("interface", "eth0"),
                    ("new_ip_address", "10.0.0.1"),
                    ("new_rfc3442_classless_static_routes", "24 10 0"),
                ],
                "new_rfc3442_classless_static_routes",
            ),
            (
                vec![
                    ("reason", "BOUND"),
                    ("interface", "a/b"),
                    ("new_ip_address", "10.0.0.1"),
                ],
                "interface",
            ),
        ];
        for (vars, var) in cases {
            assert_eq!(dhclient(&env(&vars)).unwrap_err().var, var, "{vars:?}");
        }
    }

    #[test]
    fn rfc3442() {
        let routes =
            parse_rfc3442("24 192 168 10 10 0 0 1 0 10 0 0 1 32 10 9 8 7 0 0 0 0 9 128 0 10 0 0 1")
                .unwrap();
        let text: Vec<String> = routes
            .iter()
            .map(|r| format!("{}/{} via {}", r.dest, r.prefix_len, r.gateway))
            .collect();
        assert_eq!(
            text,
            [
                "192.168.10.0/24 via 10.0.0.1",
                "0.0.0.0/0 via 10.0.0.1",
                "10.9.8.7/32 via 0.0.0.0",
                "128.0.0.0/9 via 10.0.0.1",
            ]
        );
        assert!(parse_rfc3442("33 1 1 1 1 1 1 1 1 1").is_err());
        assert!(parse_rfc3442("24 10 0 0 10 0 0").is_err());
        assert!(parse_rfc3442("24 10 0 300 10 0 0 1").is_err());
        assert_eq!(parse_rfc3442("").unwrap(), vec![]);
    }

    #[test]
    fn ifupdown_static() {
        let a = ifup(&env(&[
            ("IFACE", "eth2"),
            ("ADDRFAM", "inet"),
            ("METHOD", "static"),
            ("IF_ADDRESS", "192.0.2.10"),
            ("IF_NETMASK", "255.255.255.0"),
            ("IF_GATEWAY", "192.0.2.1"),
            ("IF_DNS_NAMESERVERS", "192.0.2.53"),
        ]))
        .unwrap();
        let IfupAction::Static(s) = a else {
            panic!("{a:?}")
        };
        assert_eq!((s.ifname.as_str(), s.prefix_len), ("eth2", 24));
        assert_eq!(s.gateway, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(s.dns.len(), 1);
        let cidr = ifup(&env(&[
            ("IFACE", "eth2"),
            ("ADDRFAM", "inet"),
            ("METHOD", "static"),
            ("IF_ADDRESS", "192.0.2.10/28"),
        ]))
        .unwrap();
        assert!(matches!(
            cidr,
            IfupAction::Static(StaticUplink {
                prefix_len: 28,
                gateway: None,
                ..
            })
        ));
        for (k, v) in [("METHOD", "dhcp"), ("ADDRFAM", "inet6")] {
            let mut e = env(&[
                ("IFACE", "eth2"),
                ("ADDRFAM", "inet"),
                ("METHOD", "static"),
                ("IF_ADDRESS", "192.0.2.10/28"),
            ]);
            e.insert(k.into(), v.into());
            assert!(matches!(ifup(&e).unwrap(), IfupAction::Ignore { .. }));
        }
        assert!(matches!(
            ifup(&env(&[("IFACE", "lo")])).unwrap(),
            IfupAction::Ignore { .. }
        ));
        assert!(matches!(
            ifup(&env(&[])).unwrap(),
            IfupAction::Ignore { .. }
        ));
        assert_eq!(
            ifup(&env(&[
                ("IFACE", "eth2"),
                ("ADDRFAM", "inet"),
                ("METHOD", "static"),
                ("IF_ADDRESS", "192.0.2.10")
            ]))
            .unwrap_err()
            .var,
            "IF_NETMASK"
        );
    }

    #[test]
    fn network_manager_routes_apply_to_every_address() {
        let a = ifup(&env(&[
            ("IFACE", "wlan0"),
            ("DEVICE_IFACE", "wlan0"),
            ("IP4_NUM_ADDRESSES", "2"),
            ("IP4_ADDRESS_0", "10.5.0.7/24 10.5.0.1"),
            ("IP4_ADDRESS_1", "10.6.0.7/24 0.0.0.0"),
            ("IP4_GATEWAY", "10.5.0.1"),
            ("IP4_NUM_ROUTES", "2"),
            ("IP4_ROUTE_0", "172.16.0.0/12 10.5.0.254 100"),
            ("IP4_ROUTE_1", "10.99.0.0/16 0.0.0.0 0"),
            ("IP4_NAMESERVERS", "10.5.0.1"),
        ]))
        .unwrap();
        let IfupAction::NetworkManager(ups) = a else {
            panic!("{a:?}")
        };
        assert_eq!(ups.len(), 2);
        for u in &ups {
            assert_eq!(u.routes.len(), 2, "{u:?}");
            assert_eq!(u.gateway, Some("10.5.0.1".parse().unwrap()));
        }
        assert_eq!(ups[1].address, "10.6.0.7".parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            ifup(&env(&[
                ("DEVICE_IFACE", "wlan0"),
                ("IP4_NUM_ADDRESSES", "1")
            ]))
            .unwrap_err()
            .var,
            "IP4_ADDRESS_0"
        );
    }

    #[test]
    fn network_manager_modems_route_on_the_ip_interface() {
        // A WWAN modem: NetworkManager controls cdc-wdm0, IP runs on wwan0.
        let base = [
            ("DEVICE_IFACE", "cdc-wdm0"),
            ("DEVICE_IP_IFACE", "wwan0"),
            ("IFACE", "wwan0"),
            ("IP4_NUM_ADDRESSES", "1"),
            ("IP4_ADDRESS_0", "100.64.3.7/30 100.64.3.5"),
        ];
        let a = ifup(&env(&base)).unwrap();
        let IfupAction::NetworkManager(ups) = a else {
            panic!("{a:?}")
        };
        assert_eq!(ups[0].ifname, "wwan0");
        // PPP: only $1 (IFACE, from 01-ifupdown) names ppp0.
        let a = ifup(&env(&[
            ("DEVICE_IFACE", "ttyUSB0"),
            ("IFACE", "ppp0"),
            ("IP4_NUM_ADDRESSES", "1"),
            ("IP4_ADDRESS_0", "100.64.3.7/32 100.64.3.5"),
        ]))
        .unwrap();
        let IfupAction::NetworkManager(ups) = a else {
            panic!("{a:?}")
        };
        assert_eq!(ups[0].ifname, "ppp0");
        // The inet6 round of 01-ifupdown is not a second IPv4 configuration.
        let mut e = env(&base);
        e.insert("ADDRFAM".into(), "inet6".into());
        assert!(matches!(ifup(&e).unwrap(), IfupAction::Ignore { .. }));
    }
}
