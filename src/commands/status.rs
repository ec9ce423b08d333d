//! `mhr status` and `mhr doctor`: the kernel, the lease database, the DNS
//! lines, the server and the tracker, gathered once and reported.

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;

use super::{Host, EXIT_INCONSISTENT};
use crate::cli::LeaseDbArgs;
use crate::netlink::Netlink;
use crate::server::config::{ServerConfig, DEFAULT_DB_PATH};
use crate::status::{self, KernelView, Problem, Status};
use crate::timer::unix_now;

pub struct Options {
    pub json: bool,
    pub prometheus: bool,
    pub leases: LeaseDbArgs,
    pub watch: Option<u64>,
    pub interfaces: Vec<String>,
}

pub fn status(host: &Host, o: Options) -> anyhow::Result<u8> {
    let look = || -> anyhow::Result<Status> {
        let (mut st, _) = gather(host, &o.leases)?;
        status::filter(&mut st, &o.interfaces);
        Ok(st)
    };
    if let Some(secs) = o.watch {
        loop {
            // Home and clear, then the table: a terminal redraw.
            let table = status::render(&look()?, unix_now());
            print!("\x1b[H\x1b[2J{table}");
            std::io::stdout().flush()?;
            std::thread::sleep(Duration::from_secs(secs.max(1)));
        }
    }
    let st = look()?;
    if o.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else if o.prometheus {
        // Problems are series; exit 0 keeps `… > tmp && mv` feeding the
        // collector exactly when something is wrong.
        print!("{}", status::prometheus(&st));
        return Ok(0);
    } else {
        print!("{}", status::render(&st, unix_now()));
    }
    Ok(if st.consistent() {
        0
    } else {
        EXIT_INCONSISTENT
    })
}

pub fn doctor(host: &Host, repair: bool, leases: &LeaseDbArgs) -> anyhow::Result<u8> {
    let (mut st, kernel) = gather(host, leases)?;
    if repair && crate::control::agent_running(&host.paths.agent_socket) {
        // One writer: the agent removes what is stale itself, at once.
        println!("mhr agent runs and repairs its own rules: nothing removed here");
    } else if repair {
        // The kernel was read first (in gather), the lease database after:
        // a rule made in between is not in the snapshot, so never removed,
        // and every rule in it had its lease in the database by then.
        let stale = status::stale_tables(&st);
        let removed = host.rt.block_on(async {
            let nl = Netlink::connect()?;
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
            st = gather(host, leases)?.0;
        }
    }
    // The DNS path: resolver, dnsmasq, our servers file.
    let uplinks = &host.ctx.uplinks;
    let dns = status::dns_path::check(
        &status::dns_path::gather(&uplinks.servers_file, &uplinks.dnsmasq_pid_file),
        &st.addresses,
    );
    let (text, found) = status::doctor_report(&st, &dns);
    print!("{text}");
    Ok(if found == 0 { 0 } else { EXIT_INCONSISTENT })
}

/// The lease database `--db` names, else the server config's.
pub fn lease_db(leases: &LeaseDbArgs) -> std::path::PathBuf {
    leases.db.clone().unwrap_or_else(|| {
        ServerConfig::load(&leases.config)
            .map(|l| l.config.db_path)
            .unwrap_or_else(|_| DEFAULT_DB_PATH.into())
    })
}

/// The endpoints with the subflows each carries now (sock_diag; left out
/// when the kernel cannot say).
fn with_subflows(
    endpoints: &[crate::control::AgentEndpoint],
) -> Vec<crate::control::AgentEndpoint> {
    let counts = if endpoints.is_empty() {
        None
    } else {
        crate::track::passive::subflows().ok()
    };
    endpoints
        .iter()
        .map(|e| crate::control::AgentEndpoint {
            subflows: counts
                .as_ref()
                .map(|c| c.get(&e.address).copied().unwrap_or(0)),
            ..e.clone()
        })
        .collect()
}

/// Whether `pid` is an `mhr` process: the agent, as a user who may not
/// reach its socket (the directory is root's) can still tell.
fn alive(pid: u32) -> bool {
    pid != 0
        && pid != std::process::id()
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let mut args = c.split(|b| *b == 0);
            let prog = args.next().unwrap_or_default();
            prog.ends_with(b"mhr") && args.next() == Some(b"agent".as_slice())
        })
}

/// The agent's state: from the agent itself when it runs and this user
/// may ask it (`true`), else from the file it last wrote.
fn agent_state(host: &Host) -> Option<(crate::agent::AgentState, bool)> {
    let asked = crate::control::ask(
        &host.paths.agent_socket,
        &crate::control::Request::Status,
        std::time::Duration::from_secs(2),
    );
    if let Ok(Some(reply)) = asked {
        if let Some(s) = reply.status.and_then(|v| serde_json::from_value(v).ok()) {
            return Some((s, true));
        }
    }
    crate::agent::AgentState::read(&host.paths.agent_state).map(|s| (s, false))
}

/// The status of this host: kernel view, leases, DNS lines, server probe,
/// the tracker's health and the links.
pub fn gather(host: &Host, leases: &LeaseDbArgs) -> anyhow::Result<(Status, KernelView)> {
    let db = lease_db(leases);
    // The kernel before the leases: a rule is made only after its lease is
    // in the database, so no rule in this snapshot lacks a lease in the
    // read after it unless it really is stale (`doctor --repair` relies on
    // that order).
    let kernel = host
        .rt
        .block_on(async { status::kernel_view(&Netlink::connect()?).await })
        .context("reading rules and routes")?;
    let leases = crate::server::store::read_only(&db);
    let uplinks = &host.ctx.uplinks;
    let dns: Vec<_> = std::fs::read_to_string(&uplinks.servers_file)
        .unwrap_or_default()
        .lines()
        .filter_map(crate::dns::ServerLine::parse)
        .collect();
    let up = crate::client::server_answers(&uplinks.tas_socket, true, host.paths.server_uid);
    let mut st = status::assemble(&kernel, leases.as_deref().ok(), &dns, Some(up));
    st.lease_database = Some(db.display().to_string());
    let track = crate::track::TrackState::read(&host.paths.track_state);
    status::add_health(&mut st, track.as_ref(), unix_now());
    status::add_links(&mut st);
    if let Some((agent, live)) = agent_state(host) {
        st.agent = Some(status::AgentView {
            running: live
                || crate::control::agent_running(&host.paths.agent_socket)
                || alive(agent.pid),
            live,
            pid: agent.pid,
            updated: agent.updated,
            dumps: agent.dumps,
            repairs: agent.repairs,
            endpoints: with_subflows(&agent.endpoints),
            addresses: agent
                .addresses
                .iter()
                .filter(|a| a.left_alone.is_none())
                .count(),
            left_alone: agent
                .addresses
                .iter()
                .filter_map(|a| {
                    let why = a.left_alone.as_ref()?;
                    Some(format!("{} {}: {why}", a.ifname, a.address))
                })
                .collect(),
            main_kept: agent
                .main_kept
                .iter()
                .map(|k| format!("{} {}", k.ifname, k.family))
                .collect(),
        });
        if agent.mptcp {
            let mut ifnames: Vec<String> = agent
                .addresses
                .iter()
                .filter(|a| a.table.is_some_and(|t| t != 0))
                .map(|a| a.ifname.clone())
                .collect();
            ifnames.dedup();
            st.problems
                .extend(status::mptcp::check(&ifnames, &agent.endpoints));
        }
        for k in agent.main_kept {
            st.problems.push(Problem::MainKeptByManager {
                ifname: k.ifname,
                family: k.family,
            });
        }
    }
    if let Some(p) = status::networkd::check() {
        st.problems.push(p);
    }
    if let Err(e) = &leases {
        st.problems.push(Problem::DatabaseUnreadable {
            path: db.display().to_string(),
            error: e.to_string(),
        });
    }
    Ok((st, kernel))
}
