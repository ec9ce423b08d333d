//! `table_allocator_client`: leases a routing table for one address, prints
//! it, installs the address's rules and keeps them until the address goes
//! (the multi-call binary's entry point under that name). With `mhr agent`
//! managing the interface, it asks the agent instead and keeps nothing.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tracing::{info, warn, Level};

use crate::addr::parse_netmask;
use crate::addr::Family;
use crate::cli::ClientArgs as Args;
use crate::client::{
    ask_running_client, install_rules, Acquired, ClientConfig, Keeper, LeaseSocket, Stop,
};
use crate::lease::Lease;
use crate::logging::{self, Target};
use crate::netlink::Netlink;
use crate::protocol::{Action, LeaseKey, Reply};

/// Exit status when no table could be had (after printing 0).
const EXIT_NO_TABLE: u8 = 1;
/// Bad arguments or an environment that does not match them.
const EXIT_USAGE: u8 = 2;
/// `-r` with no client running: the release went to the server directly.
const EXIT_RELEASED_DIRECTLY: u8 = 3;

/// The program, as `table_allocator_client`.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let target = if args.syslog {
        Target::Syslog {
            ident: "table_allocator_client",
        }
    } else if let Some(p) = &args.log_path {
        Target::File(p)
    } else {
        Target::Stderr
    };
    if let Err(e) = logging::init(target, Level::INFO) {
        eprintln!("table_allocator_client: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("table_allocator_client: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn config(args: &Args) -> anyhow::Result<ClientConfig> {
    let family = if args.inet6 {
        Family::Inet6
    } else if args.inet {
        Family::Inet
    } else {
        Family::Unspec
    };
    let key = LeaseKey::new(family, &args.ifname, &args.address)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let prefix_len = match &args.netmask {
        Some(n) => parse_netmask(n, crate::addr::family_of(&key.address))
            .map_err(|e| anyhow::anyhow!("netmask: {e}"))?,
        None => 0, // filled in from the kernel
    };
    if args.destination.is_empty() {
        bail!("-d: the server name must not be empty");
    }
    let tables = match &args.tables {
        Some(t) => Some(parse_tables(t)?),
        None => pool_from_config(&args.server_config, &args.destination),
    };
    Ok(ClientConfig {
        key,
        prefix_len,
        tag: args.tag.clone(),
        server: args.destination.clone(),
        padded: !args.unpadded,
        attempts: 5,
        retry: Duration::from_secs(2),
        server_uid: args.server_uid,
        tables,
        downstream: args.downstream.clone(),
    })
}

/// `--tables FIRST-LAST`.
fn parse_tables(text: &str) -> anyhow::Result<(u32, u32)> {
    let parsed = text
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    match parsed {
        Some((first, last)) if first <= last => Ok((first, last)),
        _ => bail!("--tables {text:?}: expected FIRST-LAST, such as 10000-10999"),
    }
}

/// The pool of the server named `server`, from its config file when there is
/// one and it describes that server.
fn pool_from_config(path: &std::path::Path, server: &str) -> Option<(u32, u32)> {
    let loaded = crate::server::config::ServerConfig::load(path).ok()?;
    let c = loaded.config;
    (c.socket_path == server && c.num_tables > 0).then(|| {
        (
            c.table_offset,
            c.table_offset.saturating_add(c.num_tables - 1),
        )
    })
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cfg = config(&args)?;
    // With the agent managing the address, it keeps the lease: one keeper.
    if let Some(code) = through_agent(&args, &cfg)? {
        return Ok(code);
    }
    let rt = runtime()?;
    if args.release {
        return rt.block_on(release(&cfg));
    }
    // First half, in the foreground: lease, rules, print.
    let first = rt.block_on(async {
        let nl = Netlink::connect().context("netlink")?;
        let ifindex = nl
            .link_index(&args.ifname)
            .await?
            .ok_or_else(|| anyhow::anyhow!("interface {} does not exist", args.ifname))?;
        let addrs = nl.addresses(ifindex).await?;
        let Some((_, kernel_plen)) = addrs.iter().find(|(a, _)| *a == cfg.key.address) else {
            bail!("address {} is not on interface {}", cfg.key.address, args.ifname);
        };
        if args.netmask.is_none() {
            cfg.prefix_len = *kernel_plen;
        }
        let sock = match LeaseSocket::bind(&cfg.socket_name(), &cfg) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Ok(Err(already_running(&cfg).await));
            }
            Err(e) => return Err(e).context(format!("bind @{}", cfg.socket_name())),
        };
        let mut lease = Lease::new(cfg.key, cfg.tag.clone(), cfg.lease_config(), std::time::Instant::now());
        let table = match sock.acquire(&mut lease).await {
            Acquired::Table { table, .. } => table,
            Acquired::Refused(e) => {
                warn!("the server refused {}: {e}", cfg.key);
                print_table(0);
                return Ok(Err(ExitCode::from(EXIT_NO_TABLE)));
            }
            Acquired::NoAnswer => {
                warn!(server = %cfg.server, "no answer from the server after {} attempts", cfg.attempts);
                print_table(0);
                return Ok(Err(ExitCode::from(EXIT_NO_TABLE)));
            }
        };
        let rules = cfg.rules(table);
        let mut pending = Vec::new();
        // A refusal is retried briefly here, then in the background.
        for _ in 0..3 {
            if install_rules(&nl, &rules).await.is_empty() {
                pending.clear();
                break;
            }
            pending = rules.clone();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        info!(table, ifname = %cfg.key.ifname, address = %cfg.key.address, "lease granted, rules installed");
        // A SIGTERM from now on (the caller has its table) waits for the
        // keeper's handler, which removes the rules, instead of killing us.
        crate::shutdown::hold();
        print_table(table);
        Ok(Ok((sock.into_std()?, ifindex, lease, pending)))
    })?;
    let (sock, ifindex, lease, pending) = match first {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    drop(rt);
    if !args.foreground {
        daemonize()?;
    }
    // Second half, in the background: a fresh runtime after the fork.
    let rt = runtime()?;
    let stop = rt.block_on(async {
        let keeper = Keeper {
            sock: LeaseSocket::from_std(sock, &cfg)?,
            nl: Netlink::connect()?,
            cfg,
            ifindex,
            lease,
            pending,
        };
        let stop = crate::shutdown::armed();
        crate::shutdown::release();
        anyhow::Ok(keeper.run(stop).await)
    })?;
    info!(reason = ?stop, "client exits");
    let _ = stop == Stop::Signal;
    Ok(ExitCode::SUCCESS)
}

/// Asks a running agent; `None`: there is none, or it does not manage the
/// interface (the client keeps the lease itself, as the original did).
fn through_agent(args: &Args, cfg: &ClientConfig) -> anyhow::Result<Option<ExitCode>> {
    use crate::control::{ask, Request, HOOK_DEADLINE, NOT_MANAGED};
    let (ifname, address) = (cfg.key.ifname.to_string(), cfg.key.address);
    let req = if args.release {
        Request::Release { ifname, address }
    } else {
        Request::Table { ifname, address }
    };
    let reply = match ask(&args.agent_socket, &req, HOOK_DEADLINE) {
        Ok(Some(reply)) => reply,
        Ok(None) => return Ok(None),
        // The original's contract holds: a table or 0 on stdout.
        Err(e) if !args.release => {
            warn!("{e}: no table for {}", cfg.key);
            print_table(0);
            return Ok(Some(ExitCode::from(EXIT_NO_TABLE)));
        }
        Err(e) => return Err(e.into()),
    };
    match (reply.error, reply.table) {
        (Some(e), _) if e == NOT_MANAGED => Ok(None),
        (Some(e), Some(0)) | (Some(e), None) if !args.release => {
            warn!("mhr agent has no table for {}: {e}", cfg.key);
            print_table(0);
            Ok(Some(ExitCode::from(EXIT_NO_TABLE)))
        }
        (Some(e), _) => bail!("mhr agent: {e}"),
        (None, _) if args.release => {
            info!("mhr agent released {}", cfg.key);
            Ok(Some(ExitCode::SUCCESS))
        }
        (None, t) => {
            let t = t.unwrap_or(0);
            info!(
                table = t,
                "table from mhr agent, which keeps the lease and the rules"
            );
            print_table(t);
            Ok(Some(if t == 0 {
                ExitCode::from(EXIT_NO_TABLE)
            } else {
                ExitCode::SUCCESS
            }))
        }
    }
}

fn print_table(table: u32) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{table}");
    let _ = out.flush();
}

/// Another client holds this address's socket: print its table.
async fn already_running(cfg: &ClientConfig) -> ExitCode {
    match ask_running_client(cfg, Action::Request, Duration::from_secs(2)).await {
        Ok(Some(Reply::Lease { table, .. })) => {
            info!(table, "a client for {} is already running", cfg.key);
            print_table(table);
            ExitCode::SUCCESS
        }
        other => {
            // Abstract names carry no permissions: any local user may bind
            // the address's client name first and so keep it from getting a
            // table this way (the original's protocol allows that denial of
            // service; the agent's own sockets cannot be taken).
            let name = cfg.socket_name();
            let holders: Vec<String> = crate::dgram::holders_of(&name)
                .iter()
                .map(ToString::to_string)
                .collect();
            warn!(
                "the client name @{name} for {} is held by {} and no client of root's answered there ({other:?}): no table. \
                 Stop that process, or run mhr agent, which keeps leases on sockets nobody can take",
                cfg.key,
                if holders.is_empty() { "a process not visible from here".to_owned() } else { holders.join(", ") }
            );
            print_table(0);
            ExitCode::from(EXIT_NO_TABLE)
        }
    }
}

/// `-r`: stop the running client, or release at the server.
async fn release(cfg: &ClientConfig) -> anyhow::Result<ExitCode> {
    match ask_running_client(cfg, Action::Release, Duration::from_secs(5)).await {
        Ok(Some(Reply::Lease { .. })) => {
            info!("the running client for {} released its lease", cfg.key);
            return Ok(ExitCode::SUCCESS);
        }
        Ok(Some(Reply::Error(e))) => bail!("the running client refused: {e}"),
        Ok(None) => {}
        Err(e) => bail!("{e}"),
    }
    let name = format!("{}-rel{}", cfg.socket_name(), std::process::id());
    let sock = LeaseSocket::bind(&name, cfg).with_context(|| format!("bind @{name}"))?;
    for _ in 0..cfg.attempts {
        match sock.call(cfg, Action::Release, cfg.retry).await {
            Ok(Some(Reply::Lease { .. })) => {
                info!(
                    "no client was running for {}; released at the server",
                    cfg.key
                );
                return Ok(ExitCode::from(EXIT_RELEASED_DIRECTLY));
            }
            Ok(Some(Reply::Error(e))) => bail!("the server refused the release: {e}"),
            Ok(None) => {}
            Err(e) => {
                info!("cannot reach the server: {e}");
                tokio::time::sleep(cfg.retry).await;
            }
        }
    }
    bail!("no answer from the server @{}", cfg.server)
}

/// Moves to the background: fork, new session, stdio to /dev/null. Called
/// with no runtime alive, so the process is single-threaded here.
fn daemonize() -> anyhow::Result<()> {
    use nix::unistd::{fork, setsid, ForkResult};
    // SAFETY: single-threaded at this point (the runtime was dropped).
    match unsafe { fork() }.context("fork")? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {}
    }
    setsid().context("setsid")?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("/dev/null")?;
    use std::os::fd::AsRawFd;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
    Ok(())
}
