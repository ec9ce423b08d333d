//! The tracker's state file: health per uplink and the unbound choice,
//! written atomically when something changed, read by `mhr status`.

use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::timer::unix_now;
use crate::track::health::{Health, Unbound};

use super::*;

/// The tracker's state file, read by `mhr status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrackState {
    /// Unix seconds of the write; `mhr status` ignores an old file.
    pub updated: i64,
    pub uplinks: Vec<UplinkState>,
    pub unbound: Vec<Unbound>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UplinkState {
    pub family: String,
    pub table: u32,
    pub ifname: String,
    pub address: IpAddr,
    pub probes_sent: u64,
    pub last_error: Option<String>,
    pub health: Health,
}

impl TrackState {
    pub fn read(path: &Path) -> Option<TrackState> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }
}

impl Tracker {
    pub(super) fn state(&self) -> TrackState {
        TrackState {
            updated: unix_now(),
            uplinks: self
                .uplinks
                .values()
                .map(|u| UplinkState {
                    family: u.id.family.name().into(),
                    table: u.id.table,
                    ifname: u.id.ifname.clone(),
                    address: u.id.address,
                    probes_sent: u.probes_sent,
                    last_error: u.last_error.clone(),
                    health: u.health(),
                })
                .collect(),
            unbound: self
                .unbound
                .iter()
                .map(|(family, (table, since))| Unbound {
                    family: family.name().into(),
                    table: *table,
                    ifname: self
                        .uplinks
                        .get(&(*family, *table))
                        .map(|u| u.id.ifname.clone())
                        .unwrap_or_default(),
                    since: *since,
                })
                .collect(),
        }
    }

    pub(super) fn write_state(&mut self) {
        if std::mem::take(&mut self.dirty) {
            crate::files::write_state(&self.cfg.state_file, &self.state());
        }
    }
}
