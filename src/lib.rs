//! multihomed-routing: policy routing for Linux hosts with several uplinks.
//!
//! Every interface address gets its own routing table, leased from the table
//! allocator server; rules pick the table. Decision logic is pure and returns
//! plans; thin layers apply them to sockets, sqlite and netlink.

pub mod addr;
pub mod cli;
pub mod client;
pub mod commands;
pub mod dgram;
pub mod dns;
pub mod exposition;
pub mod files;
pub mod hooks;
pub mod jsonkeys;
pub mod logging;
pub mod netlink;
pub mod patterns;
pub mod pidfile;
pub mod protocol;
pub mod ra;
pub mod ratelimit;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod status;
pub mod timer;
pub mod track;
pub mod uplink;
