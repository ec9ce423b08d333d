//! The MPTCP in-kernel path manager over generic netlink: its endpoints
//! and limits, read and changed. `message` holds the typed messages; here
//! is one blocking socket (requests are few: an endpoint per address
//! change), its family resolved once through the generic netlink
//! controller.

pub mod message;

use std::io;

use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use rtnetlink::packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use rtnetlink::sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

pub use message::{Endpoint, Limits, PmMessage};

use super::NetlinkError;

/// A socket to the path manager.
pub struct PathManager {
    sock: Socket,
    family: u16,
    seq: u32,
}

impl PathManager {
    /// Opens the socket and finds the `mptcp_pm` family (missing: a kernel
    /// without MPTCP).
    pub fn open() -> Result<PathManager, NetlinkError> {
        let mut sock = Socket::new(NETLINK_GENERIC)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        let mut pm = PathManager {
            sock,
            family: 0,
            seq: 0,
        };
        let ask = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(message::FAMILY_NAME.into())],
        });
        let what = "find the mptcp_pm netlink family";
        let answers: Vec<GenlMessage<GenlCtrl>> = pm.exchange(ask, NLM_F_REQUEST, what)?;
        pm.family = answers
            .iter()
            .flat_map(|m| &m.payload.nlas)
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or_else(|| NetlinkError::Other {
                what: what.into(),
                message: "no family id in the answer".into(),
            })?;
        Ok(pm)
    }

    fn exchange<T, R>(&mut self, msg: T, flags: u16, what: &str) -> Result<Vec<R>, NetlinkError>
    where
        T: NetlinkSerializable + std::fmt::Debug,
        R: NetlinkDeserializable + std::fmt::Debug,
    {
        self.seq = self.seq.wrapping_add(1);
        let mut hdr = NetlinkHeader::default();
        hdr.flags = flags;
        hdr.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (bytes, _) = self.sock.recv_from_full()?;
            let mut at = 0;
            while at < bytes.len() {
                let msg = NetlinkMessage::<R>::deserialize(&bytes[at..]).map_err(|e| {
                    NetlinkError::Other {
                        what: what.into(),
                        message: e.to_string(),
                    }
                })?;
                let len = msg.header.length as usize;
                let seq = msg.header.sequence_number;
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) if seq == self.seq => {
                        out.push(m);
                        if !dump {
                            return Ok(out);
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) if seq == self.seq => {
                        return match e.code {
                            None => Ok(out),
                            Some(c) => Err(NetlinkError::Kernel {
                                what: what.into(),
                                errno: -c.get(),
                            }),
                        };
                    }
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                at += len;
            }
        }
    }

    fn pm(
        &mut self,
        msg: PmMessage,
        flags: u16,
        what: &str,
    ) -> Result<Vec<PmMessage>, NetlinkError> {
        let mut g = GenlMessage::from_payload(msg);
        g.set_resolved_family_id(self.family);
        let answers: Vec<GenlMessage<PmMessage>> = self.exchange(g, flags, what)?;
        Ok(answers.into_iter().map(|m| m.payload).collect())
    }

    /// Every endpoint in this network namespace.
    pub fn endpoints(&mut self) -> Result<Vec<Endpoint>, NetlinkError> {
        let all = self.pm(
            PmMessage::get_all(),
            NLM_F_REQUEST | NLM_F_DUMP,
            "list MPTCP endpoints",
        )?;
        Ok(all.iter().filter_map(PmMessage::endpoint).collect())
    }

    pub fn add(&mut self, e: &Endpoint) -> Result<(), NetlinkError> {
        let what = format!("add MPTCP endpoint {} id {}", e.address, e.id);
        self.pm(PmMessage::add(e), NLM_F_REQUEST | NLM_F_ACK, &what)
            .map(drop)
    }

    pub fn delete(&mut self, e: &Endpoint) -> Result<(), NetlinkError> {
        let what = format!("delete MPTCP endpoint {} id {}", e.address, e.id);
        self.pm(PmMessage::delete(e), NLM_F_REQUEST | NLM_F_ACK, &what)
            .map(drop)
    }

    pub fn set_flags(&mut self, e: &Endpoint) -> Result<(), NetlinkError> {
        let what = format!("set flags {:#x} on MPTCP endpoint {}", e.flags, e.address);
        self.pm(PmMessage::set_flags(e), NLM_F_REQUEST | NLM_F_ACK, &what)
            .map(drop)
    }

    pub fn limits(&mut self) -> Result<Limits, NetlinkError> {
        let a = self.pm(PmMessage::get_limits(), NLM_F_REQUEST, "read MPTCP limits")?;
        Ok(a.first().map(PmMessage::limits).unwrap_or_default())
    }

    pub fn set_limits(&mut self, l: Limits) -> Result<(), NetlinkError> {
        let what = format!(
            "set MPTCP limits subflows {} add_addr_accepted {}",
            l.subflows, l.add_addr_accepted
        );
        self.pm(PmMessage::set_limits(l), NLM_F_REQUEST | NLM_F_ACK, &what)
            .map(drop)
    }
}

/// Whether MPTCP is enabled in this network namespace (`net.mptcp.enabled`).
pub fn enabled() -> io::Result<bool> {
    Ok(std::fs::read_to_string("/proc/sys/net/mptcp/enabled")?.trim() == "1")
}
