//! The agent's state file: every address it keeps, its table, the
//! interfaces where a manager won the fight over main, its counts of dumps
//! and repairs; read by `mhr status` (without root) and by the agent's next
//! start (the tables it held, whose leftovers are its to remove). Written
//! atomically when something changed.

use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::model::Model;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentState {
    /// Unix seconds of the write.
    pub updated: i64,
    #[serde(default)]
    pub pid: u32,
    pub addresses: Vec<AgentAddress>,
    /// Interfaces whose default routes stay in main because a manager puts
    /// them back (the advice is in the log).
    pub main_kept: Vec<MainKept>,
    /// Kernel dumps the agent asked for since it started (only the audit's
    /// in steady state).
    #[serde(default)]
    pub dumps: u64,
    /// Rules and routes of ours someone else deleted, put back.
    #[serde(default)]
    pub repairs: u64,
    /// MPTCP endpoints are the agent's to keep (`mptcp.enabled`).
    #[serde(default)]
    pub mptcp: bool,
    /// Every MPTCP endpoint the agent knows of, ours and others'.
    #[serde(default)]
    pub endpoints: Vec<crate::control::AgentEndpoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentAddress {
    pub ifname: String,
    pub address: IpAddr,
    pub table: Option<u32>,
    /// Why the agent leaves it alone, if it does.
    pub left_alone: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MainKept {
    pub ifname: String,
    pub family: String,
}

impl AgentState {
    pub fn read(path: &Path) -> Option<AgentState> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }
}

impl Model {
    pub fn state(&self, repairs: u64) -> AgentState {
        let name = |i: u32| {
            self.links
                .get(&i)
                .map(|l| l.name.clone())
                .unwrap_or_else(|| format!("#{i}"))
        };
        AgentState {
            updated: crate::timer::unix_now(),
            pid: std::process::id(),
            addresses: self
                .addrs
                .iter()
                .filter(|(id, a)| !a.temporary(&id.address))
                .map(|(id, a)| AgentAddress {
                    ifname: name(id.index),
                    address: id.address,
                    table: self.table_of(id),
                    left_alone: a.left_alone.clone(),
                })
                .collect(),
            main_kept: self
                .links
                .iter()
                .flat_map(|(i, l)| {
                    [(true, 0), (false, 1)]
                        .into_iter()
                        .filter(|(_, f)| l.fights[*f].given_up)
                        .map(move |(v4, _)| (*i, v4))
                })
                .map(|(i, v4)| MainKept {
                    ifname: name(i),
                    family: if v4 { "inet" } else { "inet6" }.into(),
                })
                .collect(),
            dumps: crate::netlink::dumps(),
            repairs,
            mptcp: self.cfg.mptcp.enabled,
            endpoints: self
                .mptcp
                .endpoints
                .values()
                .map(|e| crate::control::AgentEndpoint {
                    id: e.id,
                    address: e.address,
                    ifname: e
                        .ifindex
                        .and_then(|i| self.links.get(&i))
                        .or_else(|| {
                            self.addrs
                                .keys()
                                .find(|a| a.address == e.address)
                                .and_then(|a| self.links.get(&a.index))
                        })
                        .map(|l| l.name.clone()),
                    flags: crate::netlink::mptcp::message::flag_names(e.flags),
                    ours: e.id >= super::model::mptcp::FIRST_ID,
                    subflows: None,
                })
                .collect(),
        }
    }
}
