//! `mhr route get`: the kernel's answer for a destination, explained by
//! the rule that chose the table and the uplink behind it.

use std::net::IpAddr;

use super::Host;
use crate::netlink::{describe_route, route_table, Netlink};
use crate::status::{self, route::Query};

pub fn get(host: &Host, dest: IpAddr, selectors: &[String]) -> anyhow::Result<u8> {
    let q = Query::parse(dest, selectors).map_err(|e| anyhow::anyhow!("route get: {e}"))?;
    let track_state = &host.paths.track_state;
    let text = host.rt.block_on(async {
        let nl = Netlink::connect()?;
        let iif = match &q.iif {
            Some(name) => Some(
                nl.link_index(name)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("interface {name} does not exist"))?,
            ),
            None => None,
        };
        let route = nl.route_get(dest, q.src, iif, q.uid).await?;
        let table = route_table(&route);
        let kernel = status::kernel_view(&nl).await?;
        let mut st = status::assemble(&kernel, None, &[], None);
        let track = crate::track::TrackState::read(track_state);
        status::add_health(&mut st, track.as_ref(), crate::timer::unix_now());
        // Our rules, the tracker's (50000) among them.
        anyhow::Ok(status::route::explain(
            &q,
            table,
            &describe_route(&route),
            &kernel.rules,
            &st,
        ))
    })?;
    print!("{text}");
    Ok(0)
}
