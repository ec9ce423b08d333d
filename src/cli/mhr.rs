//! `mhr`'s command line: its subcommands and the host paths the hook,
//! status and service commands share.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Multihomed routing front end: configures addresses, per-address routing
/// tables and per-interface DNS from the variables of dhclient, ifupdown and
/// NetworkManager, and cleans up after hot-unplugged interfaces.
#[derive(Parser, Debug)]
#[command(
    name = "mhr",
    version,
    disable_help_subcommand = true,
    after_help = "Examples:\n  mhr status                      what is managed, exit 4 when inconsistent\n  mhr status --json | jq '.addresses[] | {ifname, table, health}'\n  mhr doctor --repair             advice per problem; remove stale rules of ours\n  mhr agent --check               the agent's settings in effect (tracker and RA included)\n  mhr lab up && mhr lab status && mhr lab down       the namespace lab\n  reason=BOUND interface=eth1 new_ip_address=10.0.0.2 new_subnet_mask=255.255.255.0 \\\n    new_routers=10.0.0.1 mhr dhclient-hook          what dhclient's enter hook runs\n\nFiles: /etc/default/multihomed-routing (hook settings), /etc/table_allocator_server_config.json"
)]
pub struct MhrArgs {
    #[command(subcommand)]
    pub command: MhrCommand,
}

#[derive(Subcommand, Debug)]
pub enum RouteAction {
    /// The route, rule and uplink a packet to DEST takes.
    Get {
        /// The destination address.
        dest: std::net::IpAddr,
        /// `from SRC`, `iif IF` (a forwarded packet's interface; default:
        /// this host's own traffic), `uid N`.
        #[arg(value_name = "from SRC | iif IF | uid N", num_args = 0..)]
        selectors: Vec<String>,
    },
}

// Where things are on this host: the settings file
// (/etc/default/multihomed-routing) and the environment give them; these
// options override both. Only the subcommands that use them take them.
// (Not a doc comment: flattened through `Deferred`, it would become the
// about text of every subcommand that takes them.)
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Host paths (MHR_* settings)")]
pub struct HostPaths {
    /// table_allocator_client to run for each address.
    #[arg(
        long,
        env = "MHR_CLIENT",
        default_value = "/usr/sbin/table_allocator_client"
    )]
    pub client: PathBuf,
    /// The allocator server's abstract socket name.
    #[arg(long, env = "MHR_TAS_SOCKET", default_value = "tas_socket")]
    pub tas_socket: String,
    /// The dnsmasq servers file (servers-file= in the dnsmasq snippet).
    #[arg(long, env = "MHR_SERVERS_FILE", default_value = crate::dns::DEFAULT_SERVERS_FILE)]
    pub servers_file: PathBuf,
    /// dnsmasq's pid file, for SIGHUP after a change.
    #[arg(long, env = "MHR_DNSMASQ_PID_FILE", default_value = crate::dns::DEFAULT_DNSMASQ_PID_FILE)]
    pub dnsmasq_pid_file: PathBuf,
    /// Where dhclient pid files (dhclient.IFACE.pid) live.
    #[arg(long, env = "MHR_DHCLIENT_PID_DIR", default_value = "/run")]
    pub dhclient_pid_dir: PathBuf,
    /// ifupdown source-directory for dynamic stanzas.
    #[arg(long, env = "MHR_STANZA_DIR", default_value = "/run/network-conf")]
    pub stanza_dir: PathBuf,
    /// Interfaces (comma-separated patterns, `*` wildcard) that get a dynamic stanza.
    #[arg(
        long,
        env = "MHR_HOTPLUG_PATTERNS",
        default_value = "ww*,enx*,usb*",
        value_delimiter = ','
    )]
    pub hotplug_patterns: Vec<String>,
    /// Log file for the table clients (default: syslog).
    #[arg(long, env = "MHR_CLIENT_LOG")]
    pub client_log: Option<PathBuf>,
    /// The uid the allocator server runs as: `status` believes only its
    /// answers (and root's).
    #[arg(long, env = "MHR_SERVER_UID", default_value_t = 0)]
    pub server_uid: u32,
    /// The tracker's state file, read by status and doctor.
    #[arg(
        long,
        env = "MHR_TRACK_STATE",
        default_value = crate::track::config::DEFAULT_STATE_FILE,
    )]
    pub track_state: PathBuf,
    /// The agent's state file, read by status and doctor.
    #[arg(
        long,
        env = "MHR_AGENT_STATE",
        default_value = crate::agent::config::DEFAULT_STATE_FILE,
    )]
    pub agent_state: PathBuf,
    /// The agent's control socket (in a directory only root may enter).
    #[arg(long, env = "MHR_AGENT_SOCKET", default_value = crate::control::DEFAULT_SOCKET)]
    pub agent_socket: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum MhrCommand {
    /// dhclient enter hook: reads reason, interface, new_*, old_* from the
    /// environment. Exit 0: handled (unset reason); 2: TIMEOUT and the router
    /// is down; 3: not handled; 1: error.
    DhclientHook {
        #[command(flatten)]
        paths: Deferred<HostPaths>,
    },
    /// ifupdown if-up.d hook (IFACE, ADDRFAM, METHOD, IF_*), and the
    /// NetworkManager dispatcher path (DEVICE_IP_IFACE, IP4_*).
    IfupHook {
        #[command(flatten)]
        paths: Deferred<HostPaths>,
    },
    /// The namespace lab (test bed and demonstration): `up`, `status`,
    /// `down`. Runs the lab script (MHR_LAB_SCRIPT, else scripts/lab.sh of
    /// the source tree this binary was built in, else
    /// /usr/share/multihomed-routing/lab.sh) with this binary's directory
    /// as the lab's BIN.
    Lab {
        #[arg(value_parser = ["up", "status", "down"])]
        action: String,
        /// Name prefix of the lab's namespaces.
        #[arg(long, env = "LAB", default_value = "mhrlab")]
        name: String,
    },
    /// What we manage, as the kernel and the lease database see it. Exit 4
    /// when something is inconsistent (a lease without rules, rules without a
    /// lease, a missing rule, a fallback default route in main, a silent
    /// server), so it can serve as a watchdog.
    Status {
        /// Machine-readable output (field names are stable:
        /// /usr/share/doc/multihomed-routing/status.md).
        #[arg(short = 'j', long, conflicts_with = "prometheus")]
        json: bool,
        /// Redraw every SECS seconds until interrupted.
        #[arg(short = 'w', long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2", conflicts_with_all = ["json", "prometheus"])]
        watch: Option<u64>,
        /// Only these interfaces (patterns, `*` wildcard).
        #[arg(value_name = "IFNAME")]
        interfaces: Vec<String>,
        /// Prometheus text format, for node_exporter's textfile collector.
        #[arg(long)]
        prometheus: bool,
        #[command(flatten)]
        leases: LeaseDbArgs,
        #[command(flatten)]
        paths: Deferred<HostPaths>,
    },
    /// The checks of `status`, each problem with one line of advice;
    /// `--repair` removes stale rules of ours (protocol 77) whose lease is
    /// gone. Exit 4 while problems remain.
    Doctor {
        /// Remove our rules (protocol 77) whose lease is gone.
        #[arg(long)]
        repair: bool,
        #[command(flatten)]
        leases: LeaseDbArgs,
        #[command(flatten)]
        paths: Deferred<HostPaths>,
    },
    /// Sets an interface's name servers for dnsmasq (none: removes them):
    /// hands them to a running agent, else writes the servers file itself
    /// and tells dnsmasq.
    Dns {
        /// The interface the servers are reached through (it must exist).
        ifname: String,
        /// The interface's address the queries leave from.
        source: std::net::IpAddr,
        /// The name servers; none removes the interface's lines.
        servers: Vec<std::net::IpAddr>,
        #[command(flatten)]
        paths: Deferred<HostPaths>,
    },
    /// Asks a DNS server for TXT records of NAME from a given source address
    /// or device, and prints them: who answers shows which uplink carried
    /// the query (the lab's ISPs answer whoami.lab with their names).
    Probe {
        /// The DNS server to ask.
        server: std::net::IpAddr,
        /// The name whose TXT records to ask for (the lab: whoami.lab).
        name: String,
        /// Send from this address (and so by its table).
        #[arg(long)]
        source: Option<std::net::IpAddr>,
        /// Send through this device (SO_BINDTODEVICE).
        #[arg(long)]
        device: Option<String>,
    },
    /// The one owner of the host's routing, for every uplink whatever
    /// configured it (static addresses, ifupdown, dhclient, dhcpcd, udhcpc,
    /// NetworkManager, networkd, PPP, SLAAC, DHCPv6): leases a table for
    /// every global address on a managed interface, installs its rules,
    /// puts the uplink's routes into the table and moves its defaults out of
    /// main, follows router advertisements, tracks each uplink's health and
    /// points unbound traffic at the best (unless `track: null`), and keeps
    /// an MPTCP endpoint per uplink address.
    /// Hooks report to it over its control socket. Runs until SIGTERM;
    /// rules and routes stay for the next start unless --cleanup. See
    /// /usr/share/doc/multihomed-routing/agent.md.
    Agent {
        /// The agent config (JSON with comments); missing at the default
        /// path means the defaults.
        #[arg(short = 'c', long, default_value = crate::agent::config::DEFAULT_AGENT_CONFIG)]
        config: PathBuf,
        /// Check the config and print the settings in effect, then exit.
        #[arg(long)]
        check: bool,
        /// On SIGTERM, remove rules and routes and release the leases.
        #[arg(long)]
        cleanup: bool,
        #[command(flatten)]
        downstream: DownstreamArg,
        /// The server's lease database (default: db_path of
        /// --server-config), read at start for leases of addresses that
        /// went while the agent was down.
        #[arg(long)]
        db: Option<PathBuf>,
        /// The server config to find db_path in.
        #[arg(long, default_value = crate::server::config::DEFAULT_CONFIG_PATH)]
        server_config: PathBuf,
        #[command(flatten)]
        paths: Deferred<HostPaths>,
    },
    /// Which uplink does a packet use? `mhr route get DEST [from SRC] [iif
    /// IF] [uid N]` asks the kernel (as `ip route get` does) and names the
    /// rule of ours that chose the table, the uplink and its health.
    Route {
        #[command(subcommand)]
        action: RouteAction,
        #[command(flatten)]
        paths: Deferred<HostPaths>,
    },
    /// udev hotplug: `add` writes a dynamic stanza for matching interfaces;
    /// `remove` stops dhclient and removes DNS lines and the stanza.
    Hotplug {
        #[arg(value_parser = ["add", "remove"])]
        action: String,
        /// Interface name (udev's $env{INTERFACE}).
        #[arg(env = "INTERFACE")]
        ifname: String,
        #[command(flatten)]
        paths: Deferred<HostPaths>,
    },
}

impl HostPaths {
    /// The paths from the environment (and settings file) and defaults, for
    /// the subcommands that take no path options.
    pub fn from_env() -> HostPaths {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            paths: HostPaths,
        }
        Only::try_parse_from(["mhr"])
            .map(|o| o.paths)
            .expect("every host path has a default")
    }
}

impl MhrCommand {
    /// The host paths of a subcommand that takes them.
    pub fn paths(&self) -> Option<&HostPaths> {
        use MhrCommand::*;
        match self {
            DhclientHook { paths }
            | IfupHook { paths }
            | Status { paths, .. }
            | Doctor { paths, .. }
            | Dns { paths, .. }
            | Agent { paths, .. }
            | Route { paths, .. }
            | Hotplug { paths, .. } => Some(&paths.0),
            _ => None,
        }
    }
}

/// Interfaces whose forwarded traffic follows the uplinks (and the
/// tracker's choice) too.
#[derive(clap::Args, Debug, Clone)]
pub struct DownstreamArg {
    /// Interfaces whose forwarded traffic follows the uplinks too:
    /// comma-separated names, or `*` for every interface.
    #[arg(
        long,
        env = "MHR_DOWNSTREAM",
        default_value = "",
        hide_default_value = true,
        value_parser = crate::netlink::rules::Downstream::parse
    )]
    pub downstream: crate::netlink::rules::Downstream,
}

/// Where `status` and `doctor` read the leases.
#[derive(clap::Args, Debug, Clone)]
pub struct LeaseDbArgs {
    /// The lease database (default: db_path of the server config).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The server config to find db_path in.
    #[arg(long, default_value = crate::server::config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

/// Options built only when their subcommand is the one invoked (clap's
/// `Command::defer`): otherwise every hook run would build the host-path
/// options of all nine subcommands that take them (a quarter of the
/// instructions `mhr dhclient-hook` runs before it does anything). Help,
/// man pages and completions build them as before.
#[derive(Debug, Clone)]
pub struct Deferred<T>(pub T);

impl<T: clap::Args> clap::Args for Deferred<T> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args_for_update)
    }
}

impl<T: clap::FromArgMatches> clap::FromArgMatches for Deferred<T> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Deferred)
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
}
