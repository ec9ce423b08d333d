//! The one applier: carries a plan out over netlink (rules, routes), into
//! dnsmasq's servers file and onto the RA socket, in the plan's order, and
//! says how each op went. The only part of the agent that changes the
//! host's routing.

use std::os::fd::OwnedFd;
use std::time::Instant;

use rtnetlink::packet_route::route::RouteAttribute;
use tracing::info;

use super::plan::{Op, Outcome, Plan};
use crate::dns::{self, ServerLine};
use crate::netlink::mptcp::PathManager;
use crate::netlink::{route_message, Netlink, NetlinkError};
use crate::uplink::Uplinks;

pub struct Applier {
    pub nl: Netlink,
    pub uplinks: Uplinks,
    /// The RA socket (a duplicate), for solicitations; none without RA.
    pub solicit: Option<OwnedFd>,
    /// The MPTCP path manager's socket, opened at the first endpoint op
    /// (its family resolved once) and again after an error.
    pub pm: PmSocket,
}

pub type PmSocket = std::sync::Arc<std::sync::Mutex<Option<PathManager>>>;

fn outcome(r: Result<bool, NetlinkError>) -> Outcome {
    match r {
        Ok(true) => Outcome::Done,
        Ok(false) => Outcome::Already,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// One path manager request, on the blocking pool (a blocking socket:
/// requests are few).
async fn path_manager(sock: PmSocket, op: Op) -> Outcome {
    let r = tokio::task::spawn_blocking(move || {
        let mut held = sock.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_none() {
            *held = Some(PathManager::open()?);
        }
        let pm = held.as_mut().expect("opened");
        let r = match &op {
            Op::AddEndpoint(e) => pm.add(e),
            Op::EndpointFlags(e) => pm.set_flags(e),
            Op::DelEndpoint(e) => match pm.delete(e) {
                // Gone already (its address went, and the kernel with it).
                Err(e) if e.errno() == Some(libc::EINVAL) || e.errno() == Some(libc::ENOENT) => {
                    Ok(())
                }
                r => r,
            },
            Op::Limits(l) => pm.set_limits(*l),
            _ => Ok(()),
        };
        // A kernel's refusal leaves the socket good; anything else, a new one.
        if matches!(&r, Err(e) if e.errno().is_none()) {
            *held = None;
        }
        r
    })
    .await;
    match r {
        Ok(r) => outcome(r.map(|_| true)),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

impl Applier {
    /// Carries out `plan`; each op's outcome, in order.
    pub async fn apply(&self, plan: &Plan) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(plan.ops.len());
        let mut reload = false;
        for op in &plan.ops {
            let o = match op {
                Op::AddRule(r) => outcome(self.nl.add_rule(r).await),
                Op::DelRule(r) => outcome(self.nl.del_rule(r).await),
                Op::PutRoute(spec, expires) => {
                    let mut m = route_message(spec);
                    if let Some(at) = expires {
                        let left = at.saturating_duration_since(Instant::now());
                        if let Some(e) = crate::ra::expires_attr(left) {
                            m.attributes.push(RouteAttribute::Expires(e));
                        }
                    }
                    outcome(self.nl.replace_route(m).await.map(|_| true))
                }
                Op::DelRoute(spec) => outcome(self.nl.del_route(route_message(spec)).await),
                Op::DelMain(r) => match r.spec() {
                    Some(spec) => outcome(self.nl.del_route(route_message(&spec)).await),
                    None => Outcome::Already,
                },
                Op::Dns {
                    ifname,
                    scope,
                    source,
                    servers,
                } => {
                    let lines: Vec<ServerLine> = servers
                        .iter()
                        .map(|s| ServerLine {
                            server: *s,
                            ifname: ifname.clone(),
                            source: *source,
                        })
                        .collect();
                    match dns::set_interface(&self.uplinks.servers_file, ifname, *scope, &lines) {
                        Ok(changed) => {
                            reload |= changed;
                            if changed && !lines.is_empty() {
                                info!(%ifname, %source, servers = lines.len(), "name servers written for dnsmasq");
                            }
                            Outcome::Done
                        }
                        Err(e) => Outcome::Failed(e.to_string()),
                    }
                }
                Op::Solicit(index) => {
                    if let Some(fd) = &self.solicit {
                        crate::ra::solicit(fd, *index);
                    }
                    Outcome::Done
                }
                Op::AddEndpoint(_) | Op::EndpointFlags(_) | Op::DelEndpoint(_) | Op::Limits(_) => {
                    path_manager(self.pm.clone(), op.clone()).await
                }
            };
            out.push(o);
        }
        if reload {
            self.uplinks.reload_dnsmasq();
        }
        out
    }
}
