//! `mhr`: the front end the hook shims call, plus hotplug clean-up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing::{info, warn, Level};

use mhr::apply::{ApplyError, Context};
use mhr::hooks::{self, DhcpAction, IfupAction};
use mhr::logging::{self, Target};
use mhr::routes::MainPolicy;

/// Hook handled: the shim unsets `reason` so dhclient-script does not redo it.
const EXIT_HANDLED: u8 = 0;
const EXIT_ERROR: u8 = 1;
/// TIMEOUT: the recorded lease's router does not answer (dhclient-script's
/// `exit_with_hooks 2`).
const EXIT_ROUTER_DOWN: u8 = 2;
/// Not ours: the shim leaves `reason` to dhclient-script.
const EXIT_NOT_HANDLED: u8 = 3;

/// Multihomed routing front end: configures addresses, per-address routing
/// tables and per-interface DNS from the variables of dhclient, ifupdown and
/// NetworkManager, and cleans up after hot-unplugged interfaces.
#[derive(Parser, Debug)]
#[command(name = "mhr", version)]
struct Args {
    /// table_allocator_client to run for each address.
    #[arg(
        long,
        env = "MHR_CLIENT",
        default_value = "/usr/sbin/table_allocator_client",
        global = true
    )]
    client: PathBuf,
    /// The allocator server's abstract socket name.
    #[arg(
        long,
        env = "MHR_TAS_SOCKET",
        default_value = "tas_socket",
        global = true
    )]
    tas_socket: String,
    /// The dnsmasq servers file (servers-file= in the dnsmasq snippet).
    #[arg(long, env = "MHR_SERVERS_FILE", default_value = mhr::dns::DEFAULT_SERVERS_FILE, global = true)]
    servers_file: PathBuf,
    /// dnsmasq's pid file, for SIGHUP after a change.
    #[arg(long, env = "MHR_DNSMASQ_PID_FILE", default_value = mhr::dns::DEFAULT_DNSMASQ_PID_FILE, global = true)]
    dnsmasq_pid_file: PathBuf,
    /// Where dhclient pid files (dhclient.IFACE.pid) live.
    #[arg(
        long,
        env = "MHR_DHCLIENT_PID_DIR",
        default_value = "/run",
        global = true
    )]
    dhclient_pid_dir: PathBuf,
    /// ifupdown source-directory for dynamic stanzas.
    #[arg(
        long,
        env = "MHR_STANZA_DIR",
        default_value = "/run/network-conf",
        global = true
    )]
    stanza_dir: PathBuf,
    /// Interfaces (comma-separated patterns, `*` wildcard) that get a dynamic stanza.
    #[arg(
        long,
        env = "MHR_HOTPLUG_PATTERNS",
        default_value = "wwan*,usb*",
        value_delimiter = ',',
        global = true
    )]
    hotplug_patterns: Vec<String>,
    /// Log file for the table clients (default: syslog).
    #[arg(long, env = "MHR_CLIENT_LOG", global = true)]
    client_log: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// dhclient enter hook: reads reason, interface, new_*, old_* from the
    /// environment. Exit 0: handled (unset reason); 2: TIMEOUT and the router
    /// is down; 3: not handled; 1: error.
    DhclientHook,
    /// ifupdown if-up.d hook (IFACE, ADDRFAM, METHOD, IF_*), and the
    /// NetworkManager dispatcher path (DEVICE_IFACE, IP4_*).
    IfupHook,
    /// udev hotplug: `add` writes a dynamic stanza for matching interfaces;
    /// `remove` stops dhclient and removes DNS lines and the stanza.
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
    /// Sets an interface's name servers in the dnsmasq servers file (none:
    /// removes them) and tells dnsmasq.
    Dns {
        ifname: String,
        /// The interface's address the queries leave from.
        source: std::net::IpAddr,
        servers: Vec<std::net::IpAddr>,
    },
    /// Asks a DNS server for TXT records of NAME from a given source address
    /// or device, and prints them: who answers shows which uplink carried
    /// the query (the lab's ISPs answer whoami.lab with their names).
    Probe {
        server: std::net::IpAddr,
        #[arg(default_value = "whoami.lab")]
        name: String,
        #[arg(long)]
        source: Option<std::net::IpAddr>,
        #[arg(long)]
        device: Option<String>,
    },
    Hotplug {
        #[arg(value_parser = ["add", "remove"])]
        action: String,
        /// Interface name (udev's $env{INTERFACE}).
        #[arg(env = "INTERFACE")]
        ifname: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let _ = logging::init(Target::Stderr, Level::INFO);
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mhr: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(args: Args) -> anyhow::Result<u8> {
    let ctx = Context {
        client_bin: args.client,
        tas_socket: args.tas_socket,
        servers_file: args.servers_file,
        dnsmasq_pid_file: args.dnsmasq_pid_file,
        dhclient_pid_dir: args.dhclient_pid_dir,
        stanza_dir: args.stanza_dir,
        hotplug_patterns: args.hotplug_patterns,
        client_log: args.client_log,
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    match args.command {
        Cmd::DhclientHook => match hooks::dhclient(&env).context("dhclient variables")? {
            DhcpAction::Configure {
                lease,
                old,
                check_router,
            } => match rt.block_on(ctx.configure_dhcp(&lease, old, check_router)) {
                Ok(table) => {
                    info!(ifname = %lease.ifname, address = %lease.address, table, "configured");
                    Ok(EXIT_HANDLED)
                }
                Err(ApplyError::RouterDown(r)) => {
                    warn!("router {r} does not answer; recorded lease not used");
                    Ok(EXIT_ROUTER_DOWN)
                }
                Err(e) => Err(e).with_context(|| format!("configuring {}", lease.ifname)),
            },
            DhcpAction::RemoveDns { ifname } => {
                ctx.remove_dns(&ifname)?;
                // dhclient-script still deconfigures the interface.
                Ok(EXIT_NOT_HANDLED)
            }
            DhcpAction::Ignore { reason } => {
                info!(reason, "not handled");
                Ok(EXIT_NOT_HANDLED)
            }
        },
        Cmd::IfupHook => match hooks::ifup(&env).context("if-up variables")? {
            IfupAction::Static(up) => {
                let table = rt.block_on(ctx.configure_static(&up, MainPolicy::Move))?;
                info!(ifname = %up.ifname, address = %up.address, table, "configured");
                Ok(EXIT_HANDLED)
            }
            IfupAction::NetworkManager(ups) => {
                for up in &ups {
                    let table = rt.block_on(ctx.configure_static(up, MainPolicy::Keep))?;
                    info!(ifname = %up.ifname, address = %up.address, table, "configured (NetworkManager)");
                }
                Ok(EXIT_HANDLED)
            }
            IfupAction::Ignore { reason } => {
                info!(reason, "not handled");
                Ok(EXIT_NOT_HANDLED)
            }
        },
        Cmd::Lab { action, name } => lab(&action, &name),
        Cmd::Dns {
            ifname,
            source,
            servers,
        } => {
            mhr::protocol::validate_ifname(&ifname)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            ctx.set_dns(&ifname, source, &servers)?;
            Ok(EXIT_HANDLED)
        }
        Cmd::Probe {
            server,
            name,
            source,
            device,
        } => {
            let answer = mhr::probe::whoami(
                server,
                &name,
                source,
                device.as_deref(),
                std::time::Duration::from_secs(2),
            )
            .with_context(|| format!("asking {server} for {name}"))?;
            println!("{}", answer.join(" "));
            Ok(0)
        }
        Cmd::Hotplug { action, ifname } => {
            mhr::protocol::validate_ifname(&ifname)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            if action == "add" {
                ctx.hotplug_add(&ifname)?;
            } else {
                ctx.hotplug_remove(&ifname)?;
            }
            Ok(EXIT_HANDLED)
        }
    }
}

/// Hands the lab to its script: building namespaces and veth pairs and
/// starting dnsmasq, dhclient and ifup is orchestration, kept out of the
/// Rust code paths that configure a real host.
fn lab(action: &str, name: &str) -> anyhow::Result<u8> {
    let exe = std::env::current_exe().context("locating mhr")?;
    let bin = exe.parent().context("mhr has no directory")?.to_owned();
    let script = std::env::var_os("MHR_LAB_SCRIPT")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab.sh")),
            PathBuf::from("/usr/share/multihomed-routing/lab.sh"),
        ])
        .find(|p| p.exists())
        .context("no lab script (set MHR_LAB_SCRIPT)")?;
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(action)
        .env("LAB", name)
        .env("BIN", &bin)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    Ok(status.code().unwrap_or(1) as u8)
}
