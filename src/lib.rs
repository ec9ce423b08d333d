//! multihomed-routing: policy routing for Linux hosts with several uplinks.
//!
//! Every interface address gets its own routing table, leased from the table
//! allocator server; rules pick the table. Decision logic is pure and returns
//! plans; thin layers apply them to sockets, sqlite and netlink. The map is
//! `docs/architecture.md`; arrows only point down this list.

// Components, named as users say them, each above what it uses. (One per
// paragraph, so rustfmt keeps this order.)

// mhr's verbs; the binary only parses and dispatches
pub mod commands;

// clap definitions of the three binaries (man pages, completions)
pub mod cli;

// mhr agent: one process for every uplink, hook-free
pub mod agent;

// policies: which traffic uses which uplinks; mhr exec
pub mod policy;

// dhclient / ifupdown / NetworkManager variables -> actions
pub(crate) mod hooks;

// router advertisements: parsing, limits, the raw socket
pub mod ra;

// mhr status, doctor, route get, Prometheus
pub(crate) mod status;

// the tracker: health per uplink, the unbound choice
pub(crate) mod track;

// what the hooks share: a report to the agent, else the seed's client
pub(crate) mod uplink;

// the agent's root-only control socket: requests, replies, both ends
pub mod control;

// table_allocator_client: one lease and its rules
pub mod client;

// the lease keeper, without I/O: the agent's and the client's
pub mod lease;

// table_allocator_server: leases, sqlite, metrics
pub mod server;

// the dnsmasq servers file; DNS TXT queries
pub(crate) mod dns;

// the one layer that touches the kernel, and its planners
pub mod netlink;

// the allocator's wire format, shared by server and client
pub mod protocol;

// Shared leaves: they import no component.
pub mod addr;
pub mod dgram;
pub(crate) mod exposition;
pub(crate) mod files;
pub(crate) mod jsonkeys;
pub mod logging;
pub(crate) mod patterns;
pub(crate) mod pidfile;
pub(crate) mod ratelimit;
pub mod settings;
pub mod shutdown;
pub(crate) mod timer;
