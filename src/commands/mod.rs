//! `mhr`'s verbs, one file each (netavark's `commands/`): the binary parses
//! and dispatches here, so every command runs in-process in tests. This is
//! the edge of the library: it composes the components and reports with
//! `anyhow` context, as a binary would.

pub mod client;
mod hook;
mod misc;
mod route;
pub mod server;
mod status;

pub use status::gather;

use std::collections::HashMap;

use anyhow::Context as _;

use crate::cli::{HostPaths, MhrArgs, MhrCommand as Cmd};
use crate::hooks::apply::Context;
use crate::uplink::Uplinks;

/// Hook handled: the shim unsets `reason` so dhclient-script does not redo it.
pub const EXIT_HANDLED: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
/// TIMEOUT: the recorded lease's router does not answer (dhclient-script's
/// `exit_with_hooks 2`).
pub const EXIT_ROUTER_DOWN: u8 = 2;
/// Not ours: the shim leaves `reason` to dhclient-script.
pub const EXIT_NOT_HANDLED: u8 = 3;
/// `status`: something we manage is inconsistent.
pub const EXIT_INCONSISTENT: u8 = 4;

/// What the hooks, udev and services log to syslog too (identifier `mhr`):
/// their stderr is often /dev/null.
pub fn logs_to_syslog(cmd: &Cmd) -> bool {
    matches!(
        cmd,
        Cmd::DhclientHook { .. } | Cmd::IfupHook { .. } | Cmd::Hotplug { .. } | Cmd::Dns { .. }
    )
}

/// The host's parts as the command's options (or the environment) name them.
pub struct Host {
    pub ctx: Context,
    pub paths: HostPaths,
    pub rt: tokio::runtime::Runtime,
}

impl Host {
    pub fn new(paths: HostPaths) -> anyhow::Result<Host> {
        let ctx = Context {
            uplinks: Uplinks {
                client_bin: paths.client.clone(),
                tas_socket: paths.tas_socket.clone(),
                servers_file: paths.servers_file.clone(),
                dnsmasq_pid_file: paths.dnsmasq_pid_file.clone(),
                client_log: paths.client_log.clone(),
                agent_socket: paths.agent_socket.clone(),
            },
            dhclient_pid_dir: paths.dhclient_pid_dir.clone(),
            stanza_dir: paths.stanza_dir.clone(),
            hotplug_patterns: paths.hotplug_patterns.clone(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("runtime")?;
        Ok(Host { ctx, paths, rt })
    }
}

/// Runs one command; returns the exit status.
pub fn run(args: MhrArgs) -> anyhow::Result<u8> {
    let paths = args
        .command
        .paths()
        .cloned()
        .unwrap_or_else(HostPaths::from_env);
    let host = Host::new(paths)?;
    let env: HashMap<String, String> = std::env::vars().collect();
    match args.command {
        Cmd::DhclientHook { .. } => hook::dhclient(&host, &env),
        Cmd::IfupHook { .. } => hook::ifup(&host, &env),
        Cmd::Lab { action, name } => misc::lab(&action, &name),
        Cmd::Status {
            json,
            prometheus,
            leases,
            watch,
            interfaces,
            ..
        } => status::status(
            &host,
            status::Options {
                json,
                prometheus,
                leases,
                watch,
                interfaces,
            },
        ),
        Cmd::Doctor { repair, leases, .. } => status::doctor(&host, repair, &leases),
        Cmd::Dns {
            ifname,
            source,
            servers,
            ..
        } => misc::dns(&host, &ifname, source, &servers),
        Cmd::Probe {
            server,
            name,
            source,
            device,
        } => misc::probe(server, &name, source, device.as_deref()),
        Cmd::Agent {
            config,
            check,
            cleanup,
            downstream,
            db,
            server_config,
            ..
        } => {
            let leases = crate::cli::LeaseDbArgs {
                db,
                config: server_config,
            };
            let cfg = crate::agent::config::AgentConfig::load(&config)?;
            if check {
                return print_effective(&cfg.effective());
            }
            let opts = crate::agent::Options {
                uplinks: host.ctx.uplinks.clone(),
                server_uid: host.paths.server_uid,
                downstream: downstream.downstream,
                socket: host.paths.agent_socket.clone(),
                lease_db: Some(status::lease_db(&leases)),
                cleanup,
            };
            let local = tokio::task::LocalSet::new();
            host.rt
                .block_on(local.run_until(crate::agent::run(cfg, opts, crate::shutdown::signal())))
                .context("agent")?;
            Ok(0)
        }
        Cmd::Route {
            action: crate::cli::RouteAction::Get { dest, selectors },
            ..
        } => route::get(&host, dest, &selectors),
        Cmd::Hotplug { action, ifname, .. } => misc::hotplug(&host, &action, &ifname),
    }
}

/// `--check`: a service's config as in effect, then exit 0.
fn print_effective(v: &serde_json::Value) -> anyhow::Result<u8> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(0)
}
