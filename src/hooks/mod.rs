//! The variables dhclient-script, ifupdown and NetworkManager hand their
//! hooks, turned into what to do. Pure: an environment in, an action out.

pub mod apply;
mod dhclient;
pub mod hostname;
mod hotplug;
mod ifup;

pub use dhclient::{dhclient, Dhcp6Lease, DhcpAction, DhcpLease};
pub use ifup::{ifup, IfupAction, StaticUplink};

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::protocol::validate_ifname;

pub type Env = HashMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {message}")]
pub struct HookError {
    pub var: String,
    pub message: String,
}

pub(super) fn err(var: &str, message: impl Into<String>) -> HookError {
    HookError {
        var: var.to_owned(),
        message: message.into(),
    }
}

pub(super) fn get<'a>(env: &'a Env, var: &str) -> Option<&'a str> {
    env.get(var).map(|s| s.trim()).filter(|s| !s.is_empty())
}

pub(super) fn require<'a>(env: &'a Env, var: &str) -> Result<&'a str, HookError> {
    get(env, var).ok_or_else(|| err(var, "missing"))
}

pub(super) fn ifname(env: &Env, var: &str) -> Result<String, HookError> {
    let name = require(env, var)?;
    validate_ifname(name).map_err(|e| err(var, e.message))?;
    Ok(name.to_owned())
}

pub(super) fn ipv4(env: &Env, var: &str) -> Result<Option<Ipv4Addr>, HookError> {
    get(env, var).map(|v| ipv4_word(var, v)).transpose()
}

pub(super) fn addresses(env: &Env, var: &str) -> Result<Vec<IpAddr>, HookError> {
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

pub(super) fn number(env: &Env, var: &str) -> Result<Option<u32>, HookError> {
    get(env, var)
        .map(|v| {
            v.parse()
                .map_err(|_| err(var, format!("{v:?} is not a number")))
        })
        .transpose()
}

pub(super) fn ipv4_word(var: &str, word: &str) -> Result<Ipv4Addr, HookError> {
    word.parse()
        .map_err(|_| err(var, format!("{word:?} is not an IPv4 address")))
}

#[cfg(test)]
mod tests;
