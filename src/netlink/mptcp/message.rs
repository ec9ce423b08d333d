//! The MPTCP path manager's generic netlink messages (family `mptcp_pm`,
//! version 1; the kernel's `Documentation/netlink/specs/mptcp_pm.yaml`), as
//! typed messages in the style of netlink-packet-route: the commands the
//! in-kernel path manager takes for endpoints and limits, their attributes,
//! and what a reply says. Pure: no socket here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_generic::{GenlFamily, GenlHeader};
use rtnetlink::packet_core::{
    DecodeError, DefaultNla, Emitable, Nla, NlaBuffer, NlasIterator, Parseable,
    ParseableParametrized, NLA_F_NESTED,
};

pub const FAMILY_NAME: &str = "mptcp_pm";
const VERSION: u8 = 1;

/// Endpoint flags (`MPTCP_PM_ADDR_FLAG_*`).
pub const SIGNAL: u32 = 1;
pub const SUBFLOW: u32 = 2;
pub const BACKUP: u32 = 4;
pub const FULLMESH: u32 = 8;
pub const IMPLICIT: u32 = 16;

/// The names `ip mptcp` gives the flags.
pub fn flag_names(flags: u32) -> Vec<String> {
    [
        (SIGNAL, "signal"),
        (SUBFLOW, "subflow"),
        (BACKUP, "backup"),
        (FULLMESH, "fullmesh"),
        (IMPLICIT, "implicit"),
    ]
    .iter()
    .filter(|(f, _)| flags & f != 0)
    .map(|(_, n)| n.to_string())
    .collect()
}

/// The most endpoints (and the highest limits) per network namespace.
pub const MAX_ENDPOINTS: usize = 8;

const ATTR_ADDR: u16 = 1;
const ATTR_RCV_ADD_ADDRS: u16 = 2;
const ATTR_SUBFLOWS: u16 = 3;

const ADDR_FAMILY: u16 = 1;
const ADDR_ID: u16 = 2;
const ADDR_ADDR4: u16 = 3;
const ADDR_ADDR6: u16 = 4;
const ADDR_PORT: u16 = 5;
const ADDR_FLAGS: u16 = 6;
const ADDR_IF_IDX: u16 = 7;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// One endpoint of the in-kernel path manager (`ip mptcp endpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// 1-255, unique per namespace (0 stands for a connection's first
    /// subflow, never for an endpoint).
    pub id: u8,
    pub address: IpAddr,
    pub port: Option<u16>,
    /// The device subflows from it are bound to.
    pub ifindex: Option<u32>,
    pub flags: u32,
}

/// `ip mptcp limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub subflows: u32,
    pub add_addr_accepted: u32,
}

/// The commands (`MPTCP_PM_CMD_*`) used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    AddAddr = 1,
    DelAddr = 2,
    GetAddr = 3,
    SetLimits = 5,
    GetLimits = 6,
    SetFlags = 7,
}

impl Cmd {
    fn from_u8(v: u8) -> Result<Cmd, DecodeError> {
        Ok(match v {
            1 => Cmd::AddAddr,
            2 => Cmd::DelAddr,
            3 => Cmd::GetAddr,
            5 => Cmd::SetLimits,
            6 => Cmd::GetLimits,
            7 => Cmd::SetFlags,
            other => return Err(DecodeError::from(format!("mptcp_pm: command {other}"))),
        })
    }
}

/// An attribute of an address (`MPTCP_PM_ADDR_ATTR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrAttr {
    Family(u16),
    Id(u8),
    Addr4(Ipv4Addr),
    Addr6(Ipv6Addr),
    Port(u16),
    Flags(u32),
    IfIndex(i32),
    Other(DefaultNla),
}

impl Nla for AddrAttr {
    fn value_len(&self) -> usize {
        match self {
            AddrAttr::Family(_) | AddrAttr::Port(_) => 2,
            AddrAttr::Id(_) => 1,
            AddrAttr::Addr4(_) | AddrAttr::Flags(_) | AddrAttr::IfIndex(_) => 4,
            AddrAttr::Addr6(_) => 16,
            AddrAttr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            AddrAttr::Family(_) => ADDR_FAMILY,
            AddrAttr::Id(_) => ADDR_ID,
            AddrAttr::Addr4(_) => ADDR_ADDR4,
            AddrAttr::Addr6(_) => ADDR_ADDR6,
            AddrAttr::Port(_) => ADDR_PORT,
            AddrAttr::Flags(_) => ADDR_FLAGS,
            AddrAttr::IfIndex(_) => ADDR_IF_IDX,
            AddrAttr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            AddrAttr::Family(v) | AddrAttr::Port(v) => buf[..2].copy_from_slice(&v.to_ne_bytes()),
            AddrAttr::Id(v) => buf[0] = *v,
            // Network order, as the kernel's __be32.
            AddrAttr::Addr4(a) => buf[..4].copy_from_slice(&a.octets()),
            AddrAttr::Addr6(a) => buf[..16].copy_from_slice(&a.octets()),
            AddrAttr::Flags(v) => buf[..4].copy_from_slice(&v.to_ne_bytes()),
            AddrAttr::IfIndex(v) => buf[..4].copy_from_slice(&v.to_ne_bytes()),
            AddrAttr::Other(n) => n.emit_value(buf),
        }
    }
}

fn exact<const N: usize>(v: &[u8], what: &str) -> Result<[u8; N], DecodeError> {
    v.try_into()
        .map_err(|_| DecodeError::from(format!("mptcp_pm: {what} of {} bytes", v.len())))
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for AddrAttr {
    fn parse(nla: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() {
            ADDR_FAMILY => AddrAttr::Family(u16::from_ne_bytes(exact(v, "family")?)),
            ADDR_ID => AddrAttr::Id(exact::<1>(v, "id")?[0]),
            ADDR_ADDR4 => AddrAttr::Addr4(Ipv4Addr::from(exact::<4>(v, "IPv4 address")?)),
            ADDR_ADDR6 => AddrAttr::Addr6(Ipv6Addr::from(exact::<16>(v, "IPv6 address")?)),
            ADDR_PORT => AddrAttr::Port(u16::from_ne_bytes(exact(v, "port")?)),
            ADDR_FLAGS => AddrAttr::Flags(u32::from_ne_bytes(exact(v, "flags")?)),
            ADDR_IF_IDX => AddrAttr::IfIndex(i32::from_ne_bytes(exact(v, "ifindex")?)),
            _ => AddrAttr::Other(DefaultNla::parse(nla)?),
        })
    }
}

/// A top-level attribute (`MPTCP_PM_ATTR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    /// Nested: the endpoint.
    Addr(Vec<AddrAttr>),
    RcvAddAddrs(u32),
    Subflows(u32),
    Other(DefaultNla),
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Attr::Addr(a) => a.as_slice().buffer_len(),
            Attr::RcvAddAddrs(_) | Attr::Subflows(_) => 4,
            Attr::Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Attr::Addr(_) => ATTR_ADDR | NLA_F_NESTED,
            Attr::RcvAddAddrs(_) => ATTR_RCV_ADD_ADDRS,
            Attr::Subflows(_) => ATTR_SUBFLOWS,
            Attr::Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            Attr::Addr(a) => a.as_slice().emit(buf),
            Attr::RcvAddAddrs(v) | Attr::Subflows(v) => buf[..4].copy_from_slice(&v.to_ne_bytes()),
            Attr::Other(n) => n.emit_value(buf),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for Attr {
    fn parse(nla: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match nla.kind() & !NLA_F_NESTED {
            ATTR_ADDR => {
                let mut attrs = Vec::new();
                for n in NlasIterator::new(v) {
                    attrs.push(AddrAttr::parse(&n?)?);
                }
                Attr::Addr(attrs)
            }
            ATTR_RCV_ADD_ADDRS => Attr::RcvAddAddrs(u32::from_ne_bytes(exact(v, "limit")?)),
            ATTR_SUBFLOWS => Attr::Subflows(u32::from_ne_bytes(exact(v, "limit")?)),
            _ => Attr::Other(DefaultNla::parse(nla)?),
        })
    }
}

/// A request to, or an answer from, the path manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmMessage {
    pub cmd: Cmd,
    pub attrs: Vec<Attr>,
}

impl GenlFamily for PmMessage {
    fn family_name() -> &'static str {
        FAMILY_NAME
    }

    fn command(&self) -> u8 {
        self.cmd as u8
    }

    fn version(&self) -> u8 {
        VERSION
    }
}

impl Emitable for PmMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buf: &mut [u8]) {
        self.attrs.as_slice().emit(buf)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for PmMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let mut attrs = Vec::new();
        for n in NlasIterator::new(buf) {
            attrs.push(Attr::parse(&n?)?);
        }
        Ok(PmMessage {
            cmd: Cmd::from_u8(header.cmd)?,
            attrs,
        })
    }
}

fn addr_attrs(e: &Endpoint, with_flags: bool) -> Vec<AddrAttr> {
    let mut a = vec![AddrAttr::Id(e.id)];
    match e.address {
        IpAddr::V4(v4) => a.extend([AddrAttr::Family(AF_INET), AddrAttr::Addr4(v4)]),
        IpAddr::V6(v6) => a.extend([AddrAttr::Family(AF_INET6), AddrAttr::Addr6(v6)]),
    }
    if let Some(p) = e.port {
        a.push(AddrAttr::Port(p));
    }
    if with_flags {
        a.push(AddrAttr::Flags(e.flags));
        if let Some(i) = e.ifindex {
            a.push(AddrAttr::IfIndex(i as i32));
        }
    }
    a
}

impl PmMessage {
    fn new(cmd: Cmd, attrs: Vec<Attr>) -> PmMessage {
        PmMessage { cmd, attrs }
    }

    /// ADD_ADDR: the endpoint, its flags and its device.
    pub fn add(e: &Endpoint) -> PmMessage {
        PmMessage::new(Cmd::AddAddr, vec![Attr::Addr(addr_attrs(e, true))])
    }

    /// DEL_ADDR: by id (and address: the kernel checks both).
    pub fn delete(e: &Endpoint) -> PmMessage {
        PmMessage::new(Cmd::DelAddr, vec![Attr::Addr(addr_attrs(e, false))])
    }

    /// SET_FLAGS: the endpoint's new flags (backup is what may change).
    pub fn set_flags(e: &Endpoint) -> PmMessage {
        let mut a = addr_attrs(e, false);
        a.push(AddrAttr::Flags(e.flags));
        PmMessage::new(Cmd::SetFlags, vec![Attr::Addr(a)])
    }

    /// GET_ADDR as a dump: every endpoint.
    pub fn get_all() -> PmMessage {
        PmMessage::new(Cmd::GetAddr, Vec::new())
    }

    pub fn get_limits() -> PmMessage {
        PmMessage::new(Cmd::GetLimits, Vec::new())
    }

    pub fn set_limits(l: Limits) -> PmMessage {
        PmMessage::new(
            Cmd::SetLimits,
            vec![
                Attr::RcvAddAddrs(l.add_addr_accepted),
                Attr::Subflows(l.subflows),
            ],
        )
    }

    /// The endpoint an answer describes, if it describes a whole one.
    pub fn endpoint(&self) -> Option<Endpoint> {
        let attrs = self.attrs.iter().find_map(|a| match a {
            Attr::Addr(v) => Some(v),
            _ => None,
        })?;
        let (mut id, mut address, mut port, mut ifindex, mut flags) = (None, None, None, None, 0);
        for a in attrs {
            match a {
                AddrAttr::Id(v) => id = Some(*v),
                AddrAttr::Addr4(v) => address = Some(IpAddr::V4(*v)),
                AddrAttr::Addr6(v) => address = Some(IpAddr::V6(*v)),
                AddrAttr::Port(p) if *p != 0 => port = Some(*p),
                AddrAttr::IfIndex(i) if *i > 0 => ifindex = Some(*i as u32),
                AddrAttr::Flags(f) => flags = *f,
                _ => {}
            }
        }
        Some(Endpoint {
            id: id?,
            address: address?,
            port,
            ifindex,
            flags,
        })
    }

    /// The limits an answer to GET_LIMITS says.
    pub fn limits(&self) -> Limits {
        let mut l = Limits::default();
        for a in &self.attrs {
            match a {
                Attr::Subflows(v) => l.subflows = *v,
                Attr::RcvAddAddrs(v) => l.add_addr_accepted = *v,
                _ => {}
            }
        }
        l
    }
}

#[cfg(test)]
mod tests;
