//! A plan: what the applier carries out, in an order that makes before it
//! breaks (new rules and routes first, then what leaves; rules for bound
//! devices first in and last out, so a partly applied plan never leaves a
//! table without the rule that names its interface).

use std::fmt;
use std::net::IpAddr;
use std::time::Instant;

use crate::dns::Scope;
use crate::netlink::mptcp::{Endpoint, Limits};
use crate::netlink::routes::{KernelRoute, RouteSpec};
use crate::netlink::rules::RuleSpec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    AddRule(RuleSpec),
    /// Adds or replaces a route of ours; with a deadline, the kernel
    /// expires it then (RA routes).
    PutRoute(RouteSpec, Option<Instant>),
    DelRule(RuleSpec),
    DelRoute(RouteSpec),
    /// Someone else's route leaves main (its tables have it).
    DelMain(KernelRoute),
    /// An interface's name servers in one scope (none: removed).
    Dns {
        ifname: String,
        scope: Scope,
        source: IpAddr,
        servers: Vec<IpAddr>,
    },
    /// A router solicitation on a link.
    Solicit(u32),
    /// MPTCP path manager: an endpoint of ours added, its flags changed,
    /// removed; the limits raised.
    AddEndpoint(Endpoint),
    EndpointFlags(Endpoint),
    DelEndpoint(Endpoint),
    Limits(Limits),
}

impl Op {
    /// Where the op goes in a plan: additions, deletions, then the rest.
    fn rank(&self) -> (u8, i64) {
        match self {
            Op::AddRule(r) => (0, i64::from(r.priority)),
            Op::PutRoute(..) => (1, 0),
            // Once the routes are in, before anything leaves.
            Op::Limits(_) => (1, 1),
            Op::AddEndpoint(_) => (1, 2),
            Op::EndpointFlags(_) => (1, 3),
            Op::DelEndpoint(_) => (2, -1),
            Op::DelRoute(_) => (2, 0),
            Op::DelMain(_) => (3, 0),
            Op::DelRule(r) => (4, -i64::from(r.priority)),
            Op::Dns { .. } => (5, 0),
            Op::Solicit(_) => (6, 0),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddEndpoint(e) => write!(f, "add MPTCP endpoint {} id {}", e.address, e.id),
            Op::EndpointFlags(e) => {
                write!(f, "set MPTCP endpoint {} flags {:#x}", e.address, e.flags)
            }
            Op::DelEndpoint(e) => write!(f, "delete MPTCP endpoint {} id {}", e.address, e.id),
            Op::Limits(l) => write!(
                f,
                "MPTCP limits subflows {} add_addr_accepted {}",
                l.subflows, l.add_addr_accepted
            ),
            Op::AddRule(r) => write!(f, "add rule {r}"),
            Op::DelRule(r) => write!(f, "delete rule {r}"),
            Op::PutRoute(r, _) => write!(f, "put route {r}"),
            Op::DelRoute(r) => write!(f, "delete route {r}"),
            Op::DelMain(r) => write!(
                f,
                "move route {}/{} via {:?} dev #{} out of main",
                r.dest,
                r.prefix_len,
                r.gateway,
                r.oif.unwrap_or(0)
            ),
            Op::Dns { ifname, scope, .. } => write!(f, "name servers of {ifname} ({scope:?})"),
            Op::Solicit(i) => write!(f, "router solicitation on #{i}"),
        }
    }
}

/// Ops in the order the applier carries them out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
}

impl Plan {
    pub fn new(mut ops: Vec<Op>) -> Plan {
        // Stable: ops of one rank keep the order they were planned in.
        ops.sort_by_key(Op::rank);
        Plan { ops }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Rule and route operations (what the benchmark counts).
    pub fn kernel_ops(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| !matches!(o, Op::Dns { .. } | Op::Solicit(_)))
            .count()
    }
}

/// How one op went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Already as wanted: the rule or route was there (EEXIST), or gone
    /// (ENOENT, ESRCH).
    Already,
    Failed(String),
}
