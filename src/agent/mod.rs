//! `mhr agent`: the one owner of the host's routing.
//!
//! One process keeps every uplink, whatever configured it (static,
//! ifupdown, dhclient, dhcpcd, udhcpc, NetworkManager, networkd, PPP,
//! SLAAC, DHCPv6): every global address on a managed interface gets a
//! table from the allocator server and its rules; its uplink's routes go
//! into the table and its defaults leave main. Its parts:
//!
//! - `model`: the one place that knows links, addresses, leases, rules,
//!   routes, RA state and the tracker's choice, fed by one netlink
//!   subscription; every decision a pure transition, every plan from
//!   `reconcile`;
//! - `apply`: the one applier (netlink, the dnsmasq servers file, the RA
//!   socket), make before break;
//! - `leases`: a socket per lease keeper (the keepers are in the model);
//! - `control`: the root-only control socket hooks report to;
//! - `audit`: the kernel read whole (at start, after an overrun, slowly);
//! - `run`: the loop, which joins the parts; `state`: the state file.
//!
//! On SIGTERM rules and routes stay in place (the next start adopts them);
//! `--cleanup` removes them and releases the leases.

mod apply;
mod audit;
pub mod config;
mod control;
mod leases;
pub mod model;
mod plan;
mod routes;
mod run;
mod state;

pub use run::{run, Options};
pub use state::AgentState;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Netlink(#[from] crate::netlink::NetlinkError),
    #[error(transparent)]
    Control(#[from] crate::control::ListenError),
    #[error("raw ICMPv6 socket for router advertisements (set \"ra\": false to run without): {0}")]
    RaSocket(std::io::Error),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("the netlink subscription ended")]
    Subscription,
    #[error("part {part} of the agent stopped: {why}")]
    Part { part: &'static str, why: String },
}
