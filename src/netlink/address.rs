//! Addresses: dumps, add and replace (with IPv6 lifetimes), delete, and
//! the IPv6 address model the RA agent reads.

use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Netlink, NetlinkError, EEXIST, ENODEV};

impl Netlink {
    /// The addresses (with prefix lengths) on link `index`.
    pub async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, NetlinkError> {
        let msgs = self.address_dump(Some(index)).await?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(|m| address_of(m).map(|a| (a, m.header.prefix_len)))
            .collect())
    }

    /// Every address of both families on every link.
    pub async fn all_addresses(&self) -> Result<Vec<HostAddr>, NetlinkError> {
        let msgs = self.address_dump(None).await?;
        Ok(msgs.iter().filter_map(HostAddr::from_message).collect())
    }

    /// The kernel's address messages: of link `index`, or of every link.
    async fn address_dump(&self, index: Option<u32>) -> Result<Vec<AddressMessage>, NetlinkError> {
        let _turn = self.dump_turn().await;
        let mut req = self.handle.address().get();
        if let Some(i) = index {
            req = req.set_link_index_filter(i);
        }
        req.execute().try_collect().await.map_err(|e| {
            let what = match index {
                Some(i) => format!("list addresses of interface {i}"),
                None => "list addresses".to_owned(),
            };
            NetlinkError::from_rt(what, e)
        })
    }

    /// Adds an address (with its broadcast for IPv4); present counts as added.
    pub async fn add_address(
        &self,
        index: u32,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        match self
            .handle
            .address()
            .add(index, address, prefix_len)
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = NetlinkError::from_rt(
                    format!("add address {address}/{prefix_len} to interface {index}"),
                    e,
                );
                if e.errno() == Some(EEXIST) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Adds or updates an IPv6 address with lifetimes in seconds (DHCPv6:
    /// `ip -6 addr replace ... valid_lft V preferred_lft P`).
    pub async fn replace_address6(
        &self,
        index: u32,
        address: std::net::Ipv6Addr,
        prefix_len: u8,
        valid: u32,
        preferred: u32,
    ) -> Result<(), NetlinkError> {
        use rtnetlink::packet_route::address::CacheInfo;
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet6;
        msg.header.index = index;
        msg.header.prefix_len = prefix_len;
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V6(address)));
        let mut ci = CacheInfo::default();
        ci.ifa_valid = valid;
        ci.ifa_preferred = preferred.min(valid);
        msg.attributes.push(AddressAttribute::CacheInfo(ci));
        self.request(
            &format!("set address {address}/{prefix_len} on interface {index}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
    }

    /// Every IPv6 address with its flags and origin.
    pub async fn addresses6(&self) -> Result<Vec<Addr6>, NetlinkError> {
        let msgs = self.address_dump(None).await?;
        Ok(msgs.iter().filter_map(Addr6::from_message).collect())
    }

    /// Deletes an address; absent counts as deleted.
    pub async fn del_address(
        &self,
        index: u32,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let mut msg = AddressMessage::default();
        msg.header.family = match address {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.index = index;
        msg.header.prefix_len = prefix_len;
        msg.attributes.push(AddressAttribute::Local(address));
        msg.attributes.push(AddressAttribute::Address(address));
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = NetlinkError::from_rt(
                    format!("delete address {address}/{prefix_len} from interface {index}"),
                    e,
                );
                if matches!(e.errno(), Some(libc::EADDRNOTAVAIL) | Some(ENODEV)) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// The local address of an address message (IFA_LOCAL for IPv4, which
/// differs from IFA_ADDRESS on point-to-point links).
pub(super) fn address_of(m: &AddressMessage) -> Option<IpAddr> {
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

/// An address of either family as the kernel reports it (the agent's
/// view of every configured address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddr {
    pub index: u32,
    pub address: IpAddr,
    pub prefix_len: u8,
    /// IFA_F_* flags.
    pub flags: u32,
    /// IFA_PROTO: 2 for an address made from a router advertisement.
    pub proto: Option<u8>,
}

impl HostAddr {
    pub fn from_message(m: &AddressMessage) -> Option<HostAddr> {
        let address = address_of(m)?;
        let flags = m
            .attributes
            .iter()
            .find_map(|a| match a {
                AddressAttribute::Flags(f) => Some(f.bits()),
                _ => None,
            })
            .unwrap_or(u32::from(m.header.flags.bits()));
        let proto = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Protocol(p) => Some(u8::from(*p)),
            _ => None,
        });
        Some(HostAddr {
            index: m.header.index,
            address,
            prefix_len: m.header.prefix_len,
            flags,
            proto,
        })
    }

    /// A global unicast address: not loopback, link-local or multicast,
    /// and not one duplicate address detection refused.
    pub fn global(&self) -> bool {
        let ok = match self.address {
            IpAddr::V4(a) => !a.is_loopback() && !a.is_link_local() && !a.is_unspecified(),
            IpAddr::V6(a) => !a.is_loopback() && !a.is_unicast_link_local() && !a.is_multicast(),
        };
        ok && self.flags & IFA_F_DADFAILED == 0
    }

    /// An IPv6 privacy address. (For IPv4 the same bit means secondary,
    /// which is an address like any other here.)
    pub fn temporary(&self) -> bool {
        self.address.is_ipv6() && self.flags & IFA_F_TEMPORARY != 0
    }
}

/// An IPv6 address as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr6 {
    pub index: u32,
    pub address: std::net::Ipv6Addr,
    pub prefix_len: u8,
    /// IFA_F_* flags.
    pub flags: u32,
    /// IFA_PROTO: 2 for an address made from a router advertisement.
    pub proto: Option<u8>,
}

pub const IFA_F_TEMPORARY: u32 = 0x01;

pub const IFA_F_DADFAILED: u32 = 0x08;

pub const IFA_F_TENTATIVE: u32 = 0x40;

pub const IFAPROT_KERNEL_RA: u8 = 2;

impl Addr6 {
    pub fn from_message(m: &AddressMessage) -> Option<Addr6> {
        let h = HostAddr::from_message(m)?;
        let IpAddr::V6(address) = h.address else {
            return None;
        };
        Some(Addr6 {
            index: h.index,
            address,
            prefix_len: h.prefix_len,
            flags: h.flags,
            proto: h.proto,
        })
    }

    /// A global address that can be a source: not link-local, not being or
    /// failed duplicate address detection.
    pub fn usable_global(&self) -> bool {
        !self.address.is_unicast_link_local()
            && !self.address.is_loopback()
            && self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) == 0
    }

    pub fn temporary(&self) -> bool {
        self.flags & IFA_F_TEMPORARY != 0
    }
}
