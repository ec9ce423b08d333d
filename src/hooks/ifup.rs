//! ifupdown's if-up.d variables and NetworkManager's dispatcher variables
//! (through Debian's `01-ifupdown`), turned into static uplinks. Pure.

use std::net::{IpAddr, Ipv4Addr};

use super::{addresses, err, get, ifname, ipv4, ipv4_word, number, require, Env, HookError};
use crate::addr::parse_netmask;
use crate::addr::Family;
use crate::netlink::routes::StaticRoute;

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
