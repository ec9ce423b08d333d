//! The agent's state file: every address it keeps, its table and lease,
//! and the interfaces where a manager won the fight over main; read by
//! `mhr status`. Written atomically when something changed.

use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::service::Agent;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentState {
    /// Unix seconds of the write.
    pub updated: i64,
    pub addresses: Vec<AgentAddress>,
    /// Interfaces whose default routes stay in main because a manager puts
    /// them back (the advice is in the log).
    pub main_kept: Vec<MainKept>,
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

impl Agent {
    fn state(&self) -> AgentState {
        AgentState {
            updated: crate::timer::unix_now(),
            addresses: self
                .entries
                .iter()
                .map(|(id, e)| AgentAddress {
                    ifname: e.ifname.clone(),
                    address: id.address,
                    table: e.table,
                    left_alone: e.hands_off.map(str::to_owned),
                })
                .collect(),
            main_kept: self
                .fights
                .iter()
                .filter(|(_, b)| b.given_up)
                .map(|((index, v4), _)| MainKept {
                    ifname: self
                        .entries
                        .iter()
                        .find(|(id, _)| id.index == *index)
                        .map(|(_, e)| e.ifname.clone())
                        .unwrap_or_else(|| format!("#{index}")),
                    family: if *v4 { "inet" } else { "inet6" }.into(),
                })
                .collect(),
        }
    }

    pub(super) fn write_state(&mut self) {
        if std::mem::take(&mut self.dirty) {
            crate::files::write_state(&self.cfg.state_file, &self.state());
        }
    }

    pub(super) fn remove_state(&self) {
        let _ = std::fs::remove_file(&self.cfg.state_file);
    }
}
