//! dhclient-script's variables (`reason`, `interface`, `new_*`, `old_*`),
//! IPv4 and DHCPv6, turned into an action. Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{addresses, err, get, ifname, ipv4, number, require, Env, HookError};
use crate::addr::parse_netmask;
use crate::addr::Family;
use crate::netlink::routes::StaticRoute;

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
