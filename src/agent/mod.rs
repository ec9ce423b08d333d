//! `mhr agent`: one process for every uplink, whatever configured it.
//!
//! It watches links, addresses and routes over netlink. Every global
//! address on a managed interface (static, ifupdown, dhclient, dhcpcd,
//! udhcpc, NetworkManager, networkd, PPP, SLAAC, DHCPv6) gets a table from
//! the allocator server over the usual wire protocol, through a lease task
//! bound at the name `table_allocator_client` would use (`lease`), and the
//! four rules; the uplink's routes in main are copied into the table and
//! its default routes leave main (`plan`, pure). RA routes and the tracker
//! run in the same process. On SIGTERM rules and routes stay in place (the
//! next start adopts them); `--cleanup` removes them and releases.

pub mod config;
mod control;
mod lease;
mod plan;
mod repair;
mod run;
mod service;
mod state;

pub use run::run;
pub use state::AgentState;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Netlink(#[from] crate::netlink::NetlinkError),
    #[error("RA handling: {0}")]
    Ra(#[from] crate::ra::RaError),
    #[error("another mhr agent runs in this network namespace: {0}")]
    Running(String),
    #[error("tracker config: {0}")]
    Track(#[from] crate::track::config::TrackConfigError),
}
