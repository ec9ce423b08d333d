//! `mhr dhclient-hook` and `mhr ifup-hook`: the variables in, the uplink
//! configured, and the exit status the shim turns into dhclient-script's.

use anyhow::Context as _;
use tracing::{info, warn};

use super::{Host, EXIT_HANDLED, EXIT_NOT_HANDLED, EXIT_ROUTER_DOWN};
use crate::addr::Family;
use crate::dns::Scope;
use crate::hooks::apply::ApplyError;
use crate::hooks::{self, DhcpAction, Env, IfupAction};
use crate::netlink::routes::MainPolicy;

pub fn dhclient(host: &Host, env: &Env) -> anyhow::Result<u8> {
    let (ctx, rt) = (&host.ctx, &host.rt);
    match hooks::dhclient(env).context("dhclient variables")? {
        DhcpAction::Configure {
            lease,
            old,
            check_router,
        } => match rt.block_on(ctx.configure_dhcp(&lease, old, check_router)) {
            Ok(table) => {
                info!(ifname = %lease.ifname, address = %lease.address, table, "configured");
                // dhclient-script's set_hostname (skipped with `reason`).
                if !check_router {
                    match hooks::hostname::apply(
                        lease.host_name.as_deref(),
                        lease.old_host_name.as_deref(),
                    ) {
                        Ok(Some(name)) => info!(hostname = %name, "host name set from the lease"),
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
            ctx.uplinks
                .forget_dns(&ifname, Scope::Family(Family::Inet))?;
            // dhclient-script still deconfigures the interface.
            Ok(EXIT_NOT_HANDLED)
        }
        DhcpAction::Configure6 { lease } => {
            let table = rt
                .block_on(ctx.configure_dhcp6(&lease))
                .with_context(|| format!("configuring {} on {}", lease.address, lease.ifname))?;
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
    }
}

pub fn ifup(host: &Host, env: &Env) -> anyhow::Result<u8> {
    let (ctx, rt) = (&host.ctx, &host.rt);
    match hooks::ifup(env).context("if-up variables")? {
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
    }
}
