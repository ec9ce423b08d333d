//! IPv6 uplinks from router advertisements: `advert` reads an RA and says
//! what it means for an uplink's tables (pure); `agent` is `mhr ra`, which
//! receives RAs, leases tables for SLAAC addresses and applies the plans.

mod advert;
mod agent;
mod plan;
mod routes;
mod socket;

pub use advert::*;
pub use agent::{run, RaError};
