//! `mhr`: the front end the hook shims call, plus hotplug clean-up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tracing::{info, warn, Level};

use mhr::cli::{MhrArgs as Args, MhrCommand as Cmd};
use mhr::hooks::apply::{ApplyError, Context};
use mhr::hooks::{self, DhcpAction, IfupAction};
use mhr::logging::{self, Target};
use mhr::netlink::routes::MainPolicy;

/// Hook handled: the shim unsets `reason` so dhclient-script does not redo it.
const EXIT_HANDLED: u8 = 0;
const EXIT_ERROR: u8 = 1;
/// TIMEOUT: the recorded lease's router does not answer (dhclient-script's
/// `exit_with_hooks 2`).
const EXIT_ROUTER_DOWN: u8 = 2;
/// Not ours: the shim leaves `reason` to dhclient-script.
const EXIT_NOT_HANDLED: u8 = 3;
/// `status`: something we manage is inconsistent.
const EXIT_INCONSISTENT: u8 = 4;

fn main() -> ExitCode {
    // Before parsing: the settings file fills in what the environment does
    // not say, for every entry point (hooks, udev, services).
    let warnings = mhr::settings::load_into_env();
    let args = Args::parse();
    // What the hooks and udev run logs to syslog too (identifier `mhr`):
    // their stderr is often /dev/null.
    let target = match args.command {
        Cmd::DhclientHook { .. } | Cmd::IfupHook { .. } | Cmd::Hotplug { .. } | Cmd::Dns { .. } => {
            Target::Hook { ident: "mhr" }
        }
        _ => Target::Stderr,
    };
    let _ = logging::init(target, Level::INFO);
    for w in warnings {
        warn!("{w}");
    }
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mhr: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(args: Args) -> anyhow::Result<u8> {
    let paths = args
        .command
        .paths()
        .cloned()
        .unwrap_or_else(mhr::cli::HostPaths::from_env);
    let track_state = paths.track_state.clone();
    let server_uid = paths.server_uid;
    let ctx = Context {
        client_bin: paths.client,
        tas_socket: paths.tas_socket,
        servers_file: paths.servers_file,
        dnsmasq_pid_file: paths.dnsmasq_pid_file,
        dhclient_pid_dir: paths.dhclient_pid_dir,
        stanza_dir: paths.stanza_dir,
        hotplug_patterns: paths.hotplug_patterns,
        client_log: paths.client_log,
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    match args.command {
        Cmd::DhclientHook { .. } => match hooks::dhclient(&env).context("dhclient variables")? {
            DhcpAction::Configure {
                lease,
                old,
                check_router,
            } => match rt.block_on(ctx.configure_dhcp(&lease, old, check_router)) {
                Ok(table) => {
                    info!(ifname = %lease.ifname, address = %lease.address, table, "configured");
                    // dhclient-script's set_hostname (skipped with `reason`).
                    if !check_router {
                        match mhr::hooks::hostname::apply(
                            lease.host_name.as_deref(),
                            lease.old_host_name.as_deref(),
                        ) {
                            Ok(Some(name)) => {
                                info!(hostname = %name, "host name set from the lease")
                            }
                            Ok(None) => {}
                            Err(e) => warn!("cannot set the host name: {e}"),
                        }
                    }
                    Ok(EXIT_HANDLED)
                }
                Err(ApplyError::RouterDown(r)) => {
                    warn!("router {r} does not answer; recorded lease not used");
                    Ok(EXIT_ROUTER_DOWN)
                }
                Err(e) => Err(e).with_context(|| format!("configuring {}", lease.ifname)),
            },
            DhcpAction::RemoveDns { ifname } => {
                ctx.remove_dns(&ifname, mhr::dns::Scope::Family(mhr::addr::Family::Inet))?;
                // dhclient-script still deconfigures the interface.
                Ok(EXIT_NOT_HANDLED)
            }
            DhcpAction::Configure6 { lease } => {
                let table = rt.block_on(ctx.configure_dhcp6(&lease)).with_context(|| {
                    format!("configuring {} on {}", lease.address, lease.ifname)
                })?;
                info!(ifname = %lease.ifname, address = %lease.address, table, "configured (DHCPv6)");
                Ok(EXIT_HANDLED)
            }
            DhcpAction::Deprecate6 {
                ifname,
                address,
                prefix_len,
            } => {
                rt.block_on(ctx.deprecate6(&ifname, address, prefix_len))
                    .with_context(|| format!("deprecating {address} on {ifname}"))?;
                Ok(EXIT_HANDLED)
            }
            DhcpAction::Remove6 {
                ifname,
                address,
                prefix_len,
            } => {
                rt.block_on(ctx.remove6(&ifname, address, prefix_len))
                    .with_context(|| format!("removing {address} from {ifname}"))?;
                info!(%ifname, %address, "DHCPv6 address removed");
                Ok(EXIT_HANDLED)
            }
            DhcpAction::Ignore { reason } => {
                info!(reason, "not handled");
                Ok(EXIT_NOT_HANDLED)
            }
        },
        Cmd::IfupHook { .. } => match hooks::ifup(&env).context("if-up variables")? {
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
        Cmd::Status {
            json,
            prometheus,
            db,
            config,
            watch,
            interfaces,
            ..
        } => {
            let look = || -> anyhow::Result<mhr::status::Status> {
                let (mut st, _) = gather(&rt, &ctx, server_uid, db.clone(), &config, &track_state)?;
                mhr::status::filter(&mut st, &interfaces);
                Ok(st)
            };
            if let Some(secs) = watch {
                loop {
                    // Home and clear, then the table: a terminal redraw.
                    let table = mhr::status::render(&look()?, mhr::timer::unix_now());
                    print!("\x1b[H\x1b[2J{table}");
                    use std::io::Write;
                    std::io::stdout().flush()?;
                    std::thread::sleep(std::time::Duration::from_secs(secs.max(1)));
                }
            }
            let st = look()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else if prometheus {
                // Problems are series; exit 0 keeps `… > tmp && mv` feeding
                // the collector exactly when something is wrong.
                print!("{}", mhr::status::prometheus(&st));
                return Ok(0);
            } else {
                print!("{}", mhr::status::render(&st, mhr::timer::unix_now()));
            }
            Ok(if st.consistent() {
                0
            } else {
                EXIT_INCONSISTENT
            })
        }
        Cmd::Doctor {
            repair, db, config, ..
        } => {
            let (mut st, kernel) =
                gather(&rt, &ctx, server_uid, db.clone(), &config, &track_state)?;
            if repair {
                let stale = mhr::status::stale_tables(&st);
                let removed = rt.block_on(async {
                    let nl = mhr::netlink::Netlink::connect()?;
                    let mut n = 0;
                    for r in kernel
                        .rules
                        .iter()
                        .filter(|r| stale.contains(&(r.family, r.table)))
                    {
                        if nl.del_rule(r).await? {
                            println!("removed stale rule {r}");
                            n += 1;
                        }
                    }
                    anyhow::Ok(n)
                })?;
                if removed > 0 {
                    st = gather(&rt, &ctx, server_uid, db, &config, &track_state)?.0;
                }
            }
            // The DNS path: resolver, dnsmasq, our servers file.
            let dns = mhr::status::dns_path::check(
                &mhr::status::dns_path::gather(&ctx.servers_file, &ctx.dnsmasq_pid_file),
                &st.addresses,
            );
            let (text, found) = mhr::status::doctor_report(&st, &dns);
            print!("{text}");
            Ok(if found == 0 { 0 } else { EXIT_INCONSISTENT })
        }
        Cmd::Completions { dir } => {
            for f in mhr::cli::write_completions(&dir)
                .with_context(|| format!("writing completions to {}", dir.display()))?
            {
                println!("{}", f.display());
            }
            Ok(EXIT_HANDLED)
        }
        Cmd::Man { dir } => {
            for page in mhr::cli::write_man_pages(&dir)
                .with_context(|| format!("writing man pages to {}", dir.display()))?
            {
                println!("{}", page.display());
            }
            Ok(EXIT_HANDLED)
        }
        Cmd::Dns {
            ifname,
            source,
            servers,
            ..
        } => {
            mhr::protocol::validate_ifname(&ifname)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            // A typo must not write lines no interface will ever remove.
            let exists =
                rt.block_on(async { mhr::netlink::Netlink::connect()?.link_index(&ifname).await })?;
            if exists.is_none() {
                anyhow::bail!("interface {ifname} does not exist");
            }
            ctx.set_dns(&ifname, source, &servers)?;
            Ok(EXIT_HANDLED)
        }
        Cmd::Probe {
            server,
            name,
            source,
            device,
        } => {
            let answer = mhr::dns::txt::whoami(
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
        Cmd::Ra { interfaces, .. } => {
            rt.block_on(mhr::ra::run(ctx, interfaces, mhr::shutdown::signal()))
                .context("RA agent")?;
            Ok(0)
        }
        Cmd::Track {
            config,
            check,
            downstream,
        } => {
            let cfg = mhr::track::config::TrackConfig::load(&config)?;
            if check {
                println!("{}", serde_json::to_string_pretty(&cfg.effective())?);
                return Ok(0);
            }
            rt.block_on(mhr::track::run(cfg, downstream, mhr::shutdown::signal()))
                .context("tracker")?;
            Ok(0)
        }
        Cmd::Route {
            action: mhr::cli::RouteAction::Get { dest, selectors },
            ..
        } => {
            let q = mhr::status::route::Query::parse(dest, &selectors)
                .map_err(|e| anyhow::anyhow!("route get: {e}"))?;
            let text = rt.block_on(async {
                let nl = mhr::netlink::Netlink::connect()?;
                let iif = match &q.iif {
                    Some(name) => Some(
                        nl.link_index(name)
                            .await?
                            .ok_or_else(|| anyhow::anyhow!("interface {name} does not exist"))?,
                    ),
                    None => None,
                };
                let route = nl.route_get(dest, q.src, iif, q.uid).await?;
                let table = mhr::netlink::route_table(&route);
                let kernel = mhr::status::kernel_view(&nl).await?;
                let mut st = mhr::status::assemble(&kernel, None, &[], None);
                let track = mhr::track::TrackState::read(&track_state);
                mhr::status::add_health(&mut st, track.as_ref(), mhr::timer::unix_now());
                // Our rules, the tracker's (50000) among them.
                anyhow::Ok(mhr::status::route::explain(
                    &q,
                    table,
                    &mhr::netlink::describe_route(&route),
                    &kernel.rules,
                    &st,
                ))
            })?;
            print!("{text}");
            Ok(0)
        }
        Cmd::Hotplug { action, ifname, .. } => {
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

/// The status of this host: kernel view, leases, DNS lines, server probe.
fn gather(
    rt: &tokio::runtime::Runtime,
    ctx: &Context,
    server_uid: u32,
    db: Option<PathBuf>,
    config: &std::path::Path,
    track_state: &std::path::Path,
) -> anyhow::Result<(mhr::status::Status, mhr::status::KernelView)> {
    let db = db.unwrap_or_else(|| {
        mhr::server::config::ServerConfig::load(config)
            .map(|l| l.config.db_path)
            .unwrap_or_else(|_| mhr::server::config::DEFAULT_DB_PATH.into())
    });
    let leases = mhr::server::store::read_only(&db);
    let kernel = rt
        .block_on(async { mhr::status::kernel_view(&mhr::netlink::Netlink::connect()?).await })
        .context("reading rules and routes")?;
    let dns: Vec<_> = std::fs::read_to_string(&ctx.servers_file)
        .unwrap_or_default()
        .lines()
        .filter_map(mhr::dns::ServerLine::parse)
        .collect();
    let up = mhr::client::server_answers(&ctx.tas_socket, true, server_uid);
    let mut st = mhr::status::assemble(&kernel, leases.as_deref().ok(), &dns, Some(up));
    st.lease_database = Some(db.display().to_string());
    let track = mhr::track::TrackState::read(track_state);
    mhr::status::add_health(&mut st, track.as_ref(), mhr::timer::unix_now());
    mhr::status::add_links(&mut st);
    if let Err(e) = &leases {
        st.problems.push(mhr::status::Problem::DatabaseUnreadable {
            path: db.display().to_string(),
            error: e.to_string(),
        });
    }
    Ok((st, kernel))
}
