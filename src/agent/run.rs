//! The agent's runtime: the thin loop around the model. Netlink events,
//! lease replies, control requests, RAs, the tracker's choices and the
//! time go in; after each burst of them the model plans once, the applier
//! carries the plan out, and what the model wants sent or answered goes
//! out. The parts (control socket, RA reader, tracker) are tasks joined
//! here: one that ends ends the agent, naming it.

use std::collections::HashMap;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::apply::Applier;
use super::control::{serve, Asked};
use super::leases::{raise_file_limit, LeaseSockets};
use super::model::{Answer, Model, Notice};
use super::state::AgentState;
use super::{audit, AgentError};
use crate::agent::config::AgentConfig;
use crate::control::Reply;
use crate::netlink::rules::Downstream;
use crate::netlink::{Event, Netlink, Watcher};
use crate::protocol::wire_clock_secs;
use crate::track::config::DEFAULT_UNBOUND_PRIORITY;
use crate::track::TrackOut;
use crate::uplink::Uplinks;

/// How the agent was started.
pub struct Options {
    pub uplinks: Uplinks,
    pub server_uid: u32,
    pub downstream: Downstream,
    /// The control socket's path.
    pub socket: PathBuf,
    /// The server's lease database, read at start for leases of addresses
    /// that went while the agent was down.
    pub lease_db: Option<PathBuf>,
    /// On the way out, remove rules and routes and release the leases.
    pub cleanup: bool,
}

/// At most this many events in one burst before the model plans.
const BURST: usize = 4096;

/// Runs the agent until `shutdown`.
pub async fn run(
    cfg: AgentConfig,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    raise_file_limit();
    // First: a second agent (or an unsafe directory) fails here.
    let listener = crate::control::listen(&opts.socket)?;
    let listener = tokio::net::UnixListener::from_std(listener).map_err(AgentError::Io)?;
    let nl = Netlink::connect()?;
    let mut watcher = Watcher::host()?;
    let ra_fd: Option<OwnedFd> = if cfg.ra {
        Some(crate::ra::socket().map_err(AgentError::RaSocket)?)
    } else {
        None
    };
    let applier = Applier {
        nl: nl.clone(),
        uplinks: opts.uplinks.clone(),
        solicit: ra_fd.as_ref().and_then(|f| f.try_clone().ok()),
        pm: Default::default(),
    };
    let unbound_priority = cfg
        .track
        .as_ref()
        .map_or(DEFAULT_UNBOUND_PRIORITY, |t| t.unbound_priority);
    let previous = AgentState::read(&cfg.state_file);
    let mut model = Model::new(
        cfg.clone(),
        opts.downstream.clone(),
        unbound_priority,
        nl.port(),
    );
    if let Some(p) = &previous {
        model
            .formerly
            .extend(p.addresses.iter().filter_map(|a| a.table));
    }
    let now = Instant::now();
    model.resync(audit::snapshot(&nl).await?, true, now);
    for key in model.orphans(&known_leases(previous.as_ref(), opts.lease_db.as_deref())) {
        info!(lease = %key, "lease of an address that went while the agent was down: released");
        model.release_orphan(key, now);
    }
    let (mut socks, mut replies) =
        LeaseSockets::new(&opts.uplinks.tas_socket, cfg.padded, opts.server_uid)
            .map_err(AgentError::Io)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.changed().await;
        }
    };
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel::<Asked>();
    let mut control_part = tokio::task::spawn_local(serve(listener, ctl_tx));
    let (track_tx, mut track_rx) = mpsc::unbounded_channel::<TrackOut>();
    let (uplinks_tx, uplinks_rx) = watch::channel(model.uplinks());
    let mut tracker_part = cfg.track.clone().map(|t| {
        let (initial, s) = (model.unbound.clone(), stopped());
        tokio::task::spawn_local(crate::track::run(t, uplinks_rx, initial, track_tx, s))
    });
    let (ra_tx, mut ra_rx) = mpsc::unbounded_channel::<(u32, std::net::Ipv6Addr, Vec<u8>)>();
    let mut ra_part = ra_fd.map(|fd| tokio::task::spawn_local(read_ras(fd, ra_tx)));

    info!(
        addresses = model.addrs.len(),
        interfaces = ?cfg.interfaces,
        tracker = cfg.track.is_some(),
        ra = cfg.ra,
        socket = %opts.socket.display(),
        "agent started"
    );
    tokio::pin!(shutdown);
    let mut audit_tick = crate::timer::ticker(cfg.audit);
    audit_tick.reset();
    let mut persist = crate::timer::ticker(Duration::from_secs(1));
    let mut asked: HashMap<u64, oneshot::Sender<Reply>> = HashMap::new();
    let mut next_ask = 1u64;
    let mut repairs = 0u64;
    let mut drift_log = crate::ratelimit::RateLimit::new(10, Duration::from_secs(60));
    loop {
        // One plan for everything that came in.
        step(&mut model, &applier, &mut socks, &mut asked, &uplinks_tx).await;
        for n in model.poll_notices() {
            repairs += u64::from(matches!(n, Notice::Deleted { .. }));
            // A repair held back is always said (they are few: one per
            // thing per hold); plain repairs are rate-limited.
            if matches!(n, Notice::HeldBack { .. }) {
                log_notice(&n, 0);
            } else if let crate::ratelimit::Verdict::Log { suppressed } =
                drift_log.check(tokio::time::Instant::now())
            {
                log_notice(&n, suppressed);
            }
        }
        let wake = model.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = &mut shutdown => break,
            r = &mut control_part => return Err(part_ended("control socket", r.map(|r| r.map_err(|e| e.to_string())))),
            r = join_opt(&mut tracker_part) => return Err(part_ended("tracker", r.map(|r| r.map_err(|e| e.to_string())))),
            r = join_opt(&mut ra_part) => return Err(part_ended("RA reader", r.map(|r| r.map_err(|e| e.to_string())))),
            ev = watcher.next() => {
                let mut ev = ev.ok_or(AgentError::Subscription)?;
                let mut overrun = false;
                for _ in 0..BURST {
                    if ev == Event::Overrun {
                        overrun = true;
                    }
                    model.observe(ev, Instant::now());
                    match watcher.try_next() {
                        Some(Some(next)) => ev = next,
                        Some(None) => return Err(AgentError::Subscription),
                        None => break,
                    }
                }
                if overrun {
                    warn!("netlink events were lost: re-reading the kernel");
                    let snap = audit::snapshot(&nl).await?;
                    model.resync(snap, false, Instant::now());
                }
            }
            Some(first) = replies.recv() => {
                let mut next = Some(first);
                while let Some(i) = next {
                    model.lease_reply(i.id, &i.reply, Instant::now(), wire_clock_secs());
                    next = replies.try_recv().ok();
                }
            }
            Some(a) = ctl_rx.recv() => {
                let id = next_ask;
                next_ask += 1;
                let status = matches!(a.req, crate::control::Request::Status);
                match model.control(id, a.req, Instant::now()) {
                    Answer::Now(mut reply) => {
                        if status {
                            reply.status = serde_json::to_value(model.state(repairs)).ok();
                        }
                        let _ = a.reply.send(reply);
                    }
                    Answer::Later => {
                        asked.insert(id, a.reply);
                    }
                }
            }
            Some(t) = track_rx.recv() => match t {
                TrackOut::Unbound { family, table } => model.set_unbound(family, table),
                TrackOut::Health { family, ifname, state } => model.set_health(&ifname, family, state),
            },
            Some((index, router, msg)) = ra_rx.recv() => {
                let name = model.links.get(&index).map(|l| l.name.clone()).unwrap_or_default();
                let limits = crate::ra::limits_for(&name);
                model.ra_advert(index, router, &msg, &limits, Instant::now());
            }
            _ = crate::timer::sleep_until_opt(wake) => model.handle_timeout(Instant::now()),
            _ = audit_tick.tick() => {
                let snap = audit::snapshot(&nl).await?;
                let differed = model.resync(snap, false, Instant::now());
                if differed > 0 {
                    warn!(differed, "audit: rules and routes of ours differed from what the agent knew; repaired");
                }
            }
            _ = persist.tick() => {
                if std::mem::take(&mut model.dirty) {
                    crate::files::write_state(&cfg.state_file, &model.state(repairs));
                }
            }
        }
    }
    info!(cleanup = opts.cleanup, "agent stopping");
    let _ = stop_tx.send(true);
    if let Some(t) = tracker_part.take() {
        let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
    }
    if opts.cleanup {
        cleanup(&mut model, &applier, &mut socks, &mut replies).await;
    }
    crate::files::write_state(&cfg.state_file, &model.state(repairs));
    Ok(())
}

/// One plan, carried out; then the keepers' datagrams, the sockets that
/// can go, the answers, and the uplinks for the tracker.
async fn step(
    model: &mut Model,
    applier: &Applier,
    socks: &mut LeaseSockets,
    asked: &mut HashMap<u64, oneshot::Sender<Reply>>,
    uplinks: &watch::Sender<Vec<crate::track::UplinkId>>,
) {
    // A second round at once: what waited for the first (a default leaves
    // main once its copies are in) does not wait for the next wake.
    for _ in 0..2 {
        let plan = model.reconcile(Instant::now());
        if plan.is_empty() {
            break;
        }
        let outcomes = applier.apply(&plan).await;
        for (op, o) in plan.ops.iter().zip(&outcomes) {
            model.applied(op, o, Instant::now());
        }
    }
    for (id, req) in model.poll_transmits() {
        socks.send(id, &req);
    }
    for id in model.poll_closed() {
        socks.close(id);
    }
    model.answer_waiters(Instant::now());
    for (id, reply) in model.poll_answers() {
        if let Some(tx) = asked.remove(&id) {
            let _ = tx.send(reply);
        }
    }
    if std::mem::take(&mut model.uplinks_changed) {
        let list = model.uplinks();
        uplinks.send_if_modified(|old| {
            let changed = *old != list;
            *old = list;
            changed
        });
    }
}

/// `--cleanup`: nothing is wanted any more; the plan removes every rule and
/// route of ours, the leases go back, acknowledged or not within 2 s.
async fn cleanup(
    model: &mut Model,
    applier: &Applier,
    socks: &mut LeaseSockets,
    replies: &mut mpsc::UnboundedReceiver<super::leases::Incoming>,
) {
    let now = Instant::now();
    let ids: Vec<_> = model.addrs.keys().copied().collect();
    for id in ids {
        model.release(id, now);
    }
    model.end_lingering(now, true);
    model.unbound.clear();
    model.restore_main();
    let plan = model.reconcile(now);
    let outcomes = applier.apply(&plan).await;
    for (op, o) in plan.ops.iter().zip(&outcomes) {
        model.applied(op, o, Instant::now());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        for (id, req) in model.poll_transmits() {
            socks.send(id, &req);
        }
        if model.releases_pending() == 0 {
            break;
        }
        let wake = model.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = crate::timer::sleep_until_opt(wake) => model.handle_timeout(Instant::now()),
            Some(i) = replies.recv() => model.lease_reply(i.id, &i.reply, Instant::now(), wire_clock_secs()),
        }
    }
    info!(
        unacknowledged = model.releases_pending(),
        "rules and routes removed, leases released"
    );
}

/// What the last run and the server knew of: (interface, address).
fn known_leases(
    previous: Option<&AgentState>,
    db: Option<&std::path::Path>,
) -> Vec<(String, std::net::IpAddr)> {
    let mut keys: Vec<(String, std::net::IpAddr)> = Vec::new();
    if let Some(p) = previous {
        keys.extend(p.addresses.iter().map(|a| (a.ifname.clone(), a.address)));
    }
    if let Some(Ok(leases)) = db.map(crate::server::store::read_only) {
        keys.extend(
            leases
                .iter()
                .map(|l| (l.key.ifname.to_string(), l.key.address)),
        );
    }
    keys
}

/// Reads RAs off the raw socket and hands them to the loop.
async fn read_ras(
    fd: OwnedFd,
    tx: mpsc::UnboundedSender<(u32, std::net::Ipv6Addr, Vec<u8>)>,
) -> std::io::Result<()> {
    // SAFETY: the OwnedFd moves into the AsyncFd and closes when it drops.
    let afd = unsafe { tokio::io::unix::AsyncFd::register(fd) }?;
    let mut buf = vec![0u8; 65536];
    loop {
        let mut guard = afd.readable().await?;
        loop {
            match guard.try_io(|fd| crate::ra::read_ra(fd.get_ref(), &mut buf)) {
                Ok(Ok(Some((index, from, n)))) => {
                    if tx.send((index, from, buf[..n].to_vec())).is_err() {
                        return Ok(());
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => break,
            }
        }
    }
}

async fn join_opt<T>(
    h: &mut Option<tokio::task::JoinHandle<T>>,
) -> Result<T, tokio::task::JoinError> {
    match h {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

fn part_ended(
    part: &'static str,
    r: Result<Result<(), String>, tokio::task::JoinError>,
) -> AgentError {
    let why = match r {
        Ok(Ok(())) => "ended".to_owned(),
        Ok(Err(e)) => e,
        Err(e) => e.to_string(),
    };
    tracing::error!(
        part,
        "{why}: the agent stops (its rules and routes stay; the next start adopts them)"
    );
    AgentError::Part { part, why }
}

fn log_notice(n: &Notice, suppressed: u64) {
    match n {
        Notice::Deleted { what, port } => warn!(
            by = %crate::netlink::port_owner(*port),
            earlier_unlogged = suppressed,
            "{what} of ours was deleted by someone else: restored"
        ),
        Notice::HeldBack { what, port, secs } => warn!(
            by = %crate::netlink::port_owner(*port),
            "{what} of ours keeps being deleted: restored again in {secs} s (a manager that removes foreign rules? \
             systemd-networkd: ManageForeignRoutingPolicyRules=no and ManageForeignRoutes=no, see `mhr doctor`)"
        ),
    }
}
