//! Reading the whole kernel: at start (adoption), after an overrun, and in
//! the slow audit. Everything else the model learns from events.

use crate::addr::Family;
use crate::netlink::mptcp::{Endpoint, Limits, PathManager};
use crate::netlink::{kernel_route, Netlink, NetlinkError};

use super::model::Snapshot;

/// Links, addresses, our rules and every route, both families.
pub async fn snapshot(nl: &Netlink) -> Result<Snapshot, NetlinkError> {
    let links = nl.links().await?;
    let addrs = nl.all_addresses().await?;
    let mut rules = Vec::new();
    let mut routes = Vec::new();
    for family in [Family::Inet, Family::Inet6] {
        rules.extend(nl.our_rules(family).await?);
        routes.extend(nl.routes(family).await?.iter().filter_map(kernel_route));
    }
    Ok(Snapshot {
        links,
        addrs,
        rules,
        routes,
        mptcp: mptcp().await,
    })
}

/// The path manager's endpoints and limits, where MPTCP is on.
async fn mptcp() -> Option<(Vec<Endpoint>, Limits)> {
    if !crate::netlink::mptcp::enabled().unwrap_or(false) {
        return None;
    }
    let read = tokio::task::spawn_blocking(|| {
        let mut pm = PathManager::open()?;
        Ok::<_, NetlinkError>((pm.endpoints()?, pm.limits()?))
    })
    .await
    .ok()?;
    match read {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::debug!("MPTCP path manager: {e}");
            None
        }
    }
}
