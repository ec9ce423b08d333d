//! The agent's control socket (`@mhr_agent`): hooks hand it an uplink's
//! name servers (`mhr dns` does when the agent runs). Root only: anything
//! from another uid, or that does not decode, is dropped unanswered, and
//! answers are tried once (a sender that does not read cannot stall it).

use tokio::net::UnixDatagram;
use tracing::{info, warn};

use crate::dgram;
use crate::netlink::Netlink;
use crate::uplink::{Control, ControlReply, Uplinks, CONTROL_MAX};

pub(super) async fn serve(sock: UnixDatagram, uplinks: Uplinks, nl: Netlink) {
    let mut buf = vec![0u8; CONTROL_MAX];
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        let r = match dgram::try_recv_with_credentials(&sock, &mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return warn!("control socket: {e}"),
        };
        // Presence checks are empty; strangers get nothing.
        if r.len == 0 || r.len > buf.len() || r.peer.map(|p| p.uid) != Some(0) {
            continue;
        }
        let Ok(req) = serde_json::from_slice::<Control>(&buf[..r.len]) else {
            continue;
        };
        let error = match req {
            Control::Dns {
                ifname,
                source,
                servers,
            } => dns(&nl, &uplinks, &ifname, source, &servers).await,
        };
        if let Some(to) = r.from {
            let reply = serde_json::to_vec(&ControlReply { error }).unwrap_or_default();
            let _ = dgram::try_send_to(&sock, &reply, &to);
        }
    }
}

async fn dns(
    nl: &Netlink,
    uplinks: &Uplinks,
    ifname: &str,
    source: std::net::IpAddr,
    servers: &[std::net::IpAddr],
) -> String {
    if let Err(e) = crate::protocol::validate_ifname(ifname) {
        return e.message;
    }
    // A typo must not write lines no interface will ever remove.
    match nl.link_index(ifname).await {
        Ok(Some(_)) => {}
        Ok(None) => return format!("interface {ifname} does not exist"),
        Err(e) => return e.to_string(),
    }
    match uplinks.set_dns(ifname, source, servers) {
        Ok(()) => {
            info!(ifname, %source, servers = servers.len(), "name servers from a hook");
            String::new()
        }
        Err(e) => e.to_string(),
    }
}
