//! The command-line definitions of the one program under its three names,
//! in the library so that man pages and completions are generated from
//! them at build time (`src/bin/mhr-docs`, not linked into `mhr`).

use std::path::PathBuf;

use clap::Parser;

/// Leases unique routing-table numbers per address family to
/// table_allocator_client over an abstract AF_UNIX datagram socket.
#[derive(Parser, Debug)]
#[command(
    name = "table_allocator_server",
    version,
    after_help = "Example:\n  table_allocator_server -c /etc/table_allocator_server_config.json\n\nSee table_allocator_server_config.json(5) for the keys."
)]
pub struct ServerArgs {
    /// Path to the JSON config (comments allowed).
    #[arg(short = 'c', long = "config", default_value = crate::server::config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Log to syslog, whatever the config says.
    #[arg(short = 's', long = "syslog")]
    pub syslog: bool,
    /// Log debug messages too.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
}

/// Leases a routing table for an interface address from
/// table_allocator_server, prints it (0 when none can be had), installs the
/// address's policy rules, and moves to the background to keep the lease
/// fresh. Rules and lease are removed when the address or the interface
/// goes away, or on SIGTERM.
#[derive(Parser, Debug)]
#[command(
    name = "table_allocator_client",
    version,
    after_help = "Examples:\n  rt_table=$(table_allocator_client -4 -a 10.10.0.2 -n 24 -i eth1 -d tas_socket)\n  table_allocator_client -6 -a 2001:db8::2 -n 64 -i wwan0 -d tas_socket\n  table_allocator_client -4 -a 10.10.0.2 -i eth1 -d tas_socket -r\n\nRules installed (priority, selector):\n  9000  oif IFNAME            (sockets bound to the device)\n  10000 from ADDRESS\n  20000 to NETWORK/PREFIX\n  91000 iif lo\n\nExit status: 0 table printed (or released), 1 no table (0 printed),\n2 bad arguments, 3 with -r: no client was running, released at the server."
)]
pub struct ClientArgs {
    /// IPv4 address family.
    #[arg(short = '4', conflicts_with = "inet6")]
    pub inet: bool,
    /// IPv6 address family.
    #[arg(short = '6')]
    pub inet6: bool,
    /// Log to syslog.
    #[arg(short = 's', long = "syslog")]
    pub syslog: bool,
    /// Log to this file (default: stderr, which is closed in the background).
    #[arg(short = 'l', long = "log_path")]
    pub log_path: Option<PathBuf>,
    /// The address to lease a table for.
    #[arg(short = 'a', long = "address")]
    pub address: String,
    /// Netmask (dotted) or prefix length; default: the address's prefix on
    /// the interface.
    #[arg(short = 'n', long = "netmask")]
    pub netmask: Option<String>,
    /// The interface holding the address.
    #[arg(short = 'i', long = "ifname")]
    pub ifname: String,
    /// Optional tag stored with the lease.
    #[arg(short = 't', long = "tag")]
    pub tag: Option<String>,
    /// Release: stop the running client for this address (or release the
    /// lease at the server when none runs).
    #[arg(short = 'r', long = "release")]
    pub release: bool,
    /// The server's abstract socket name (its socket_path).
    #[arg(short = 'd', long = "destination")]
    pub destination: String,
    /// Stay in the foreground.
    #[arg(short = 'f', long = "foreground")]
    pub foreground: bool,
    /// Use the short (unpadded) abstract names.
    #[arg(long = "unpadded", hide = true)]
    pub unpadded: bool,
    /// The uid the server runs as. Replies are accepted only from root or
    /// this uid, as the kernel reports the sender (SCM_CREDENTIALS).
    #[arg(long = "server-uid", env = "MHR_SERVER_UID", default_value_t = 0)]
    pub server_uid: u32,
    /// The server's table pool, FIRST-LAST: a table outside it is refused.
    /// Default: table_offset and num_tables of --server-config, when that
    /// file's socket_path is the -d name.
    #[arg(long = "tables", value_name = "FIRST-LAST")]
    pub tables: Option<String>,
    /// Interfaces whose forwarded traffic (a LAN, containers, VMs) uses the
    /// address's table like the host's own unbound traffic: comma-separated
    /// names, or `*` for every interface. Default: none.
    #[arg(
        long = "downstream",
        env = "MHR_DOWNSTREAM",
        default_value = "",
        hide_default_value = true,
        value_parser = crate::netlink::rules::Downstream::parse
    )]
    pub downstream: crate::netlink::rules::Downstream,
    /// A running `mhr agent`'s control socket: when the agent manages the
    /// interface, the client asks it for the table (or, with -r, to
    /// release) and keeps nothing itself.
    #[arg(long = "agent-socket", env = "MHR_AGENT_SOCKET", default_value = crate::control::DEFAULT_SOCKET)]
    pub agent_socket: PathBuf,
    /// The server's config file, read for its table pool.
    #[arg(
        long = "server-config",
        env = "MHR_SERVER_CONFIG",
        default_value = "/etc/table_allocator_server_config.json"
    )]
    pub server_config: PathBuf,
}

mod mhr;

pub use mhr::{HostPaths, LeaseDbArgs, MhrArgs, MhrCommand, RouteAction};

#[cfg(test)]
mod tests;
