//! Policies: which traffic uses which uplinks. A policy is a table of ours
//! with the usable members of its best tier as one weighted multipath
//! route; rules in a band of their own (40000-49990) point traffic at it
//! by destination, source, protocol and port, uid, incoming interface or
//! mark. `config` parses and checks, `plan` is the pure part the agent's
//! model calls, `exec` puts one program on an uplink or a policy.

pub mod config;
pub mod plan;

pub use config::{LastResort, Policies};
pub use plan::{plan, Candidate, PolicyPlan, PolicyView};
