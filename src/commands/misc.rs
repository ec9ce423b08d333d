//! The small verbs: `dns`, `hotplug`, `probe`, `lab`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::{Host, EXIT_HANDLED};
use crate::netlink::Netlink;
use crate::protocol::validate_ifname;

/// `mhr dns IFNAME SOURCE SERVER...`: an interface's name servers for
/// dnsmasq (none removes them).
pub fn dns(host: &Host, ifname: &str, source: IpAddr, servers: &[IpAddr]) -> anyhow::Result<u8> {
    validate_ifname(ifname).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    // With the agent running, it takes the servers (one writer).
    let req = crate::control::Request::Dns {
        ifname: ifname.to_owned(),
        source,
        servers: servers.to_vec(),
    };
    match host.ctx.uplinks.report(&req)? {
        crate::uplink::Reported::NoAgent => {}
        _ => return Ok(EXIT_HANDLED),
    }
    // A typo must not write lines no interface will ever remove.
    let exists = host
        .rt
        .block_on(async { Netlink::connect()?.link_index(ifname).await })?;
    if exists.is_none() {
        anyhow::bail!("interface {ifname} does not exist");
    }
    host.ctx.uplinks.set_dns(ifname, source, servers)?;
    Ok(EXIT_HANDLED)
}

/// `mhr hotplug add|remove IFNAME`, as the udev rule runs it.
pub fn hotplug(host: &Host, action: &str, ifname: &str) -> anyhow::Result<u8> {
    validate_ifname(ifname).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    if action == "add" {
        host.ctx.hotplug_add(ifname)?;
    } else {
        host.ctx.hotplug_remove(ifname)?;
    }
    Ok(EXIT_HANDLED)
}

/// `mhr probe SERVER NAME`: the TXT answer, from a given address or device.
pub fn probe(
    server: IpAddr,
    name: &str,
    source: Option<IpAddr>,
    device: Option<&str>,
) -> anyhow::Result<u8> {
    let answer = crate::dns::txt::whoami(server, name, source, device, Duration::from_secs(2))
        .with_context(|| format!("asking {server} for {name}"))?;
    println!("{}", answer.join(" "));
    Ok(0)
}

/// Hands the lab to its script: building namespaces and veth pairs and
/// starting dnsmasq, dhclient and ifup is orchestration, kept out of the
/// Rust code paths that configure a real host.
pub fn lab(action: &str, name: &str) -> anyhow::Result<u8> {
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
