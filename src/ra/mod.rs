//! IPv6 uplinks from router advertisements: `advert` reads an RA and says
//! what it means for an uplink's tables (pure, with the limits that keep a
//! hostile router bounded); `socket` is the raw ICMPv6 socket the agent
//! reads them from and sends router solicitations on. The agent's model
//! keeps each link's RA state (`agent::model::ra`).

mod advert;
mod socket;

pub use advert::*;
pub use socket::{read_ra, socket, solicit};

/// The RA limits for `ifname`: ours, with route information accepted as
/// the interface's own sysctls say (as the kernel would).
pub fn limits_for(ifname: &str) -> Limits {
    let sysctl = |key: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{ifname}/{key}"))
            .ok()
            .and_then(|v| v.trim().parse::<u8>().ok())
    };
    let rt_info_plen = match (
        sysctl("accept_ra_rtr_pref"),
        sysctl("accept_ra_rt_info_min_plen"),
        sysctl("accept_ra_rt_info_max_plen"),
    ) {
        (Some(pref), Some(min), Some(max)) if pref > 0 => Some((min, max)),
        _ => None,
    };
    Limits {
        rt_info_plen,
        ..Limits::default()
    }
}
