//! Rules: add (EEXIST is done), delete, and the dump of ours; the
//! message for a spec is built once, for add and delete alike.

use futures::TryStreamExt;
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use rtnetlink::packet_route::route::{RouteHeader, RouteProtocol};
use rtnetlink::packet_route::rule::{
    RuleAction, RuleAttribute, RuleMessage, RulePortRange, RuleUidRange,
};
use rtnetlink::packet_route::IpProtocol;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::IpVersion;

use crate::addr::Family;
use crate::netlink::rules::{RuleSpec, RT_PROTO};

use super::{netlink_family, Netlink, NetlinkError, EEXIST, ENOENT};

impl Netlink {
    /// Adds a rule: true when it is new, false when it was there already.
    pub async fn add_rule(&self, rule: &RuleSpec) -> Result<bool, NetlinkError> {
        let what = format!("add rule {rule}");
        match self
            .request(
                &what,
                RouteNetlinkMessage::NewRule(rule_message(rule)),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a rule. Sent without NLM_F_EXCL (kernels since 5.19 read that
    /// as a bulk delete and refuse it). Returns false when it was not there.
    pub async fn del_rule(&self, rule: &RuleSpec) -> Result<bool, NetlinkError> {
        let what = format!("delete rule {rule}");
        match self
            .request(
                &what,
                RouteNetlinkMessage::DelRule(rule_message(rule)),
                NLM_F_REQUEST | NLM_F_ACK,
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The rules of `family` that carry our protocol number.
    pub async fn our_rules(&self, family: Family) -> Result<Vec<RuleSpec>, NetlinkError> {
        let _turn = self.dump_turn().await;
        let version = if family == Family::Inet6 {
            IpVersion::V6
        } else {
            IpVersion::V4
        };
        let msgs: Vec<RuleMessage> = self
            .handle
            .rule()
            .get(version)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetlinkError::from_rt("list rules", e))?;
        Ok(msgs.iter().filter_map(our_rule).collect())
    }
}

/// The rule message for a spec, used for both add and delete so that the
/// kernel compares exactly the fields we set.
pub fn rule_message(r: &RuleSpec) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = netlink_family(r.family);
    m.header.action = RuleAction::ToTable;
    // The table always goes in FRA_TABLE; the header says unspec.
    m.header.table = RouteHeader::RT_TABLE_UNSPEC;
    m.attributes.push(RuleAttribute::Table(r.table));
    m.attributes.push(RuleAttribute::Priority(r.priority));
    m.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::from(RT_PROTO)));
    if let Some((addr, len)) = r.from {
        m.header.src_len = len;
        m.attributes.push(RuleAttribute::Source(addr));
    }
    if let Some((addr, len)) = r.to {
        m.header.dst_len = len;
        m.attributes.push(RuleAttribute::Destination(addr));
    }
    if let Some(i) = &r.iif {
        m.attributes.push(RuleAttribute::Iifname(i.clone()));
    }
    if let Some(o) = &r.oif {
        m.attributes.push(RuleAttribute::Oifname(o.clone()));
    }
    let s = &r.sel;
    if let Some((mark, mask)) = s.fwmark {
        m.attributes.push(RuleAttribute::FwMark(mark));
        m.attributes.push(RuleAttribute::FwMask(mask));
    }
    if let Some(p) = s.ipproto {
        m.attributes
            .push(RuleAttribute::IpProtocol(IpProtocol::from(p)));
    }
    let range = |(start, end)| RulePortRange { start, end };
    if let Some(p) = s.sport {
        m.attributes.push(RuleAttribute::SourcePortRange(range(p)));
    }
    if let Some(p) = s.dport {
        m.attributes
            .push(RuleAttribute::DestinationPortRange(range(p)));
    }
    if let Some((start, end)) = s.uid {
        m.attributes
            .push(RuleAttribute::UidRange(RuleUidRange { start, end }));
    }
    m
}

/// A rule message that carries our protocol number, as a spec.
pub fn our_rule(m: &RuleMessage) -> Option<RuleSpec> {
    let ours = m
        .attributes
        .iter()
        .any(|a| matches!(a, RuleAttribute::Protocol(p) if u8::from(*p) == RT_PROTO));
    let family = match m.header.family {
        rtnetlink::packet_route::AddressFamily::Inet => Family::Inet,
        rtnetlink::packet_route::AddressFamily::Inet6 => Family::Inet6,
        _ => return None,
    };
    ours.then(|| rule_spec(m, family))
}

fn rule_spec(m: &RuleMessage, family: Family) -> RuleSpec {
    let mut r = RuleSpec::new(family, u32::from(m.header.table));
    for a in &m.attributes {
        match a {
            RuleAttribute::Table(t) => r.table = *t,
            RuleAttribute::Priority(p) => r.priority = *p,
            RuleAttribute::Source(ip) => r.from = Some((*ip, m.header.src_len)),
            RuleAttribute::Destination(ip) => r.to = Some((*ip, m.header.dst_len)),
            RuleAttribute::Iifname(i) => r.iif = Some(i.clone()),
            RuleAttribute::Oifname(o) => r.oif = Some(o.clone()),
            RuleAttribute::FwMark(v) => {
                r.sel.fwmark = Some((*v, r.sel.fwmark.map_or(u32::MAX, |f| f.1)))
            }
            RuleAttribute::FwMask(v) => r.sel.fwmark = Some((r.sel.fwmark.map_or(0, |f| f.0), *v)),
            RuleAttribute::IpProtocol(p) => r.sel.ipproto = Some(u8::from(*p)),
            RuleAttribute::SourcePortRange(p) => r.sel.sport = Some((p.start, p.end)),
            RuleAttribute::DestinationPortRange(p) => r.sel.dport = Some((p.start, p.end)),
            RuleAttribute::UidRange(u) => r.sel.uid = Some((u.start, u.end)),
            _ => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Family;
    use crate::netlink::rules::{rules_for, AddressSpec};
    use rtnetlink::packet_core::{Emitable, Parseable};

    #[test]
    fn rule_messages_round_trip() {
        let spec = AddressSpec {
            ifname: "eth1".into(),
            address: "10.10.0.2".parse().unwrap(),
            prefix_len: 24,
        };
        for rule in rules_for(&spec, 10000) {
            let m = rule_message(&rule);
            assert_eq!(m.header.action, RuleAction::ToTable);
            assert_eq!(rule_spec(&m, Family::Inet), rule);
        }
        // A policy's selectors, through the bytes and back.
        let mut r = RuleSpec::new(Family::Inet6, 0x4d48_0001);
        r.priority = 40010;
        r.iif = Some("lan0".into());
        r.sel = crate::netlink::rules::Selectors {
            ipproto: Some(6),
            sport: Some((1024, 65535)),
            dport: Some((443, 443)),
            uid: Some((2000, 2999)),
            fwmark: Some((0x10, 0xf0)),
        };
        let m = rule_message(&r);
        let mut buf = vec![0; m.buffer_len()];
        m.emit(&mut buf);
        let back = RuleMessage::parse(buf.as_slice()).unwrap();
        assert_eq!(rule_spec(&back, Family::Inet6), r);
        assert_eq!(
            r.to_string(),
            "40010:\tfrom all iif lan0 fwmark 0x10/0xf0 ipproto tcp sport 1024-65535 dport 443 uidrange 2000-2999 lookup 1296564225"
        );
    }
}
