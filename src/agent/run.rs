//! The agent's loop: netlink events, lease reports and the repair pass in,
//! the service's handlers out; the RA handling and the tracker beside it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::agent::config::AgentConfig;
use crate::agent::lease::AddrId;
use crate::agent::AgentError;
use crate::netlink::rules::Downstream;
use crate::netlink::{kernel_route, Event, Netlink, Watcher};
use crate::uplink::Uplinks;

use super::service::Agent;

/// Runs the agent until `shutdown`. `uplinks` names the allocator server
/// and the DNS parts; `cleanup` removes rules, routes and leases on the way
/// out (by default they stay, so uplinks keep working across a restart).
pub async fn run(
    cfg: AgentConfig,
    uplinks: Uplinks,
    server_uid: u32,
    downstream: Downstream,
    cleanup: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let track = match &cfg.track {
        Some(path) => Some(crate::track::config::TrackConfig::load(path)?),
        None => None,
    };
    // Hooks see the agent by this name (and a second agent fails here).
    let presence = crate::dgram::bind_abstract(crate::uplink::AGENT_NAME, true).map_err(|e| {
        let holders = crate::dgram::holders_of(crate::uplink::AGENT_NAME);
        let by: Vec<String> = holders.iter().map(ToString::to_string).collect();
        AgentError::Running(format!("{e} (held by {})", by.join(", ")))
    })?;
    crate::dgram::enable_credentials(&presence).map_err(crate::netlink::NetlinkError::Io)?;
    // One netlink view for the whole process: this connection serves the
    // agent, the control socket, the RA handling and the tracker; this
    // subscription's events reach the RA handling through a feed.
    let nl = Netlink::connect()?;
    let mut watcher = Watcher::host()?;
    tokio::task::spawn_local(super::control::serve(presence, uplinks.clone(), nl.clone()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.changed().await;
        }
    };
    let ra_feed = cfg.ra.then(|| {
        let (feed, events) = Watcher::fed();
        let (u, p, n, s) = (
            uplinks.clone(),
            cfg.interfaces.clone(),
            nl.clone(),
            stopped(),
        );
        tokio::task::spawn_local(async move {
            if let Err(e) = crate::ra::run(u, p, false, n, events, s).await {
                warn!("RA handling stopped: {e}");
            }
        });
        feed
    });
    if let Some(t) = track {
        let (d, n, s) = (downstream.clone(), nl.clone(), stopped());
        tokio::task::spawn_local(async move {
            if let Err(e) = crate::track::run(t, d, n, s).await {
                warn!("tracker stopped: {e}");
            }
        });
    }
    let mut agent = Agent {
        cfg,
        downstream,
        uplinks,
        server_uid,
        nl,
        names: HashMap::new(),
        entries: BTreeMap::new(),
        main: Vec::new(),
        fights: BTreeMap::new(),
        moved: HashSet::new(),
        tx,
        dirty: true,
        refusal_log: crate::ratelimit::RateLimit::new(5, Duration::from_secs(60)),
    };
    agent.resync().await?;
    info!(addresses = agent.entries.len(), interfaces = ?agent.cfg.interfaces, "agent started");
    tokio::pin!(shutdown);
    let mut pass = crate::timer::ticker(Duration::from_secs(30));
    let mut persist = crate::timer::ticker(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                info!(cleanup, "agent stopping");
                let _ = stop_tx.send(true);
                agent.shutdown(cleanup).await;
                agent.remove_state();
                return Ok(());
            }
            Some((id, r)) = rx.recv() => agent.report(id, r).await,
            ev = watcher.next() => {
                if let (Some(feed), Some(ev)) = (&ra_feed, &ev) {
                    feed.offer_ipv6(ev);
                }
                match ev {
                Some(Event::AddressAdded(a)) => agent.address_added(a).await,
                Some(Event::AddressRemoved { index, address }) => {
                    agent.address_removed(AddrId { index, address }).await
                }
                Some(Event::LinkRemoved { index }) => {
                    agent.names.remove(&index);
                    let ids: Vec<AddrId> = agent.entries.keys().filter(|i| i.index == index).copied().collect();
                    for id in ids {
                        agent.address_removed(id).await;
                    }
                    agent.fights.retain(|k, _| k.0 != index);
                }
                Some(Event::RouteAdded(m)) => {
                    if let Some(r) = kernel_route(&m) {
                        agent.main_route(r, true).await;
                    }
                }
                Some(Event::RouteRemoved(m)) => {
                    if let Some(r) = kernel_route(&m) {
                        agent.main_route(r, false).await;
                    }
                }
                Some(Event::Overrun) => {
                    warn!("netlink events lost: re-reading the kernel");
                    if let Err(e) = agent.resync().await { warn!("{e}"); }
                }
                None => return Err(crate::netlink::NetlinkError::Other {
                    what: "netlink subscription".into(),
                    message: "ended".into(),
                }.into()),
                }
            }
            _ = pass.tick() => {
                if let Err(e) = agent.resync().await { warn!("{e}"); }
            }
            _ = persist.tick() => agent.write_state(),
        }
    }
}
