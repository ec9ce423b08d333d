//! Address arithmetic shared by every component: families, prefix lengths,
//! networks and netmasks. Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use std::fmt;

/// Address family codes (Linux `AF_*` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Unspec,
    Inet,
    Inet6,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Unspec, Family::Inet, Family::Inet6];

    pub fn code(self) -> u8 {
        match self {
            Family::Unspec => 0,
            Family::Inet => 2,
            Family::Inet6 => 10,
        }
    }

    pub fn from_code(code: u64) -> Option<Family> {
        match code {
            0 => Some(Family::Unspec),
            2 => Some(Family::Inet),
            10 => Some(Family::Inet6),
            _ => None,
        }
    }

    /// The config key naming this family's pool.
    pub fn name(self) -> &'static str {
        match self {
            Family::Unspec => "unspec",
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
        }
    }

    /// Parses an address of this family; `2001:DB8::1` and `2001:db8::1`
    /// are one address and so name one lease.
    pub fn parse_address(self, text: &str) -> Option<IpAddr> {
        let addr: IpAddr = text.parse().ok()?;
        match (self, addr) {
            (Family::Inet, IpAddr::V4(_))
            | (Family::Inet6, IpAddr::V6(_))
            | (Family::Unspec, _) => Some(addr),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub fn family_of(addr: &IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::Inet,
        IpAddr::V6(_) => Family::Inet6,
    }
}

pub fn max_prefix(addr: &IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

pub fn network(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & mask))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & mask))
        }
    }
}

/// A prefix length from `24` or, for IPv4, a dotted mask `255.255.255.0`.
pub fn parse_netmask(text: &str, family: Family) -> Result<u8, String> {
    let max = if family == Family::Inet6 { 128 } else { 32 };
    if let Ok(len) = text.parse::<u8>() {
        if len <= max {
            return Ok(len);
        }
        return Err(format!("prefix length {len} is over {max}"));
    }
    if family != Family::Inet6 {
        if let Ok(mask) = text.parse::<Ipv4Addr>() {
            let bits = u32::from(mask);
            let len = bits.leading_ones();
            if bits.checked_shl(len).unwrap_or(0) == 0 {
                return Ok(len as u8);
            }
            return Err(format!("{text} is not a contiguous netmask"));
        }
    }
    Err(format!("{text:?} is neither a prefix length nor a netmask"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        assert_eq!(
            network("10.1.2.3".parse().unwrap(), 0).to_string(),
            "0.0.0.0"
        );
        assert_eq!(
            network("10.1.2.3".parse().unwrap(), 32).to_string(),
            "10.1.2.3"
        );
        assert_eq!(
            network("10.1.2.3".parse().unwrap(), 20).to_string(),
            "10.1.0.0"
        );
        assert_eq!(
            network("fe80::1:2".parse().unwrap(), 112).to_string(),
            "fe80::1:0"
        );
        assert_eq!(network("fe80::1".parse().unwrap(), 0).to_string(), "::");
    }

    #[test]
    fn netmasks() {
        assert_eq!(parse_netmask("24", Family::Inet), Ok(24));
        assert_eq!(parse_netmask("255.255.255.0", Family::Inet), Ok(24));
        assert_eq!(parse_netmask("255.255.255.255", Family::Inet), Ok(32));
        assert_eq!(parse_netmask("0.0.0.0", Family::Inet), Ok(0));
        assert_eq!(parse_netmask("64", Family::Inet6), Ok(64));
        assert!(parse_netmask("255.0.255.0", Family::Inet).is_err());
        assert!(parse_netmask("33", Family::Inet).is_err());
        assert!(parse_netmask("129", Family::Inet6).is_err());
        assert!(parse_netmask("255.255.255.0", Family::Inet6).is_err());
        assert!(parse_netmask("x", Family::Inet).is_err());
    }
}
