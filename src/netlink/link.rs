//! Links: index and name lookups, the dump of all, MTU.

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};

use super::{Netlink, NetlinkError, ENODEV};

/// A link as the agent follows it: its name and whether it is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// Administratively up (IFF_UP): when it goes down the kernel drops
    /// the link's routes from every table, without telling.
    pub up: bool,
}

impl LinkInfo {
    pub fn from_message(m: &LinkMessage) -> LinkInfo {
        LinkInfo {
            index: m.header.index,
            name: m
                .attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })
                .unwrap_or_default(),
            up: m.header.flags.contains(LinkFlags::Up),
        }
    }
}

impl Netlink {
    /// Every link.
    pub async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        let _turn = self.dump_turn().await;
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetlinkError::from_rt("list links", e))?;
        Ok(msgs.iter().map(LinkInfo::from_message).collect())
    }

    /// The first link a get request returns; `None` when there is none.
    async fn one_link(
        &self,
        what: String,
        req: rtnetlink::LinkGetRequest,
    ) -> Result<Option<rtnetlink::packet_route::link::LinkMessage>, NetlinkError> {
        match req.execute().try_next().await {
            Ok(link) => Ok(link),
            Err(e) => {
                let e = NetlinkError::from_rt(what, e);
                if e.errno() == Some(ENODEV) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The index of interface `name`, `None` when there is no such link.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let req = self.handle.link().get().match_name(name.to_owned());
        let link = self
            .one_link(format!("look up interface {name}"), req)
            .await?;
        Ok(link.map(|l| l.header.index))
    }

    /// The name of the link with this index.
    pub async fn link_name(&self, index: u32) -> Result<Option<String>, NetlinkError> {
        let req = self.handle.link().get().match_index(index);
        let link = self
            .one_link(format!("look up interface {index}"), req)
            .await?;
        Ok(link.and_then(|l| {
            l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            })
        }))
    }

    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let msg = rtnetlink::LinkUnspec::new_with_index(index)
            .mtu(mtu)
            .build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rt(format!("set MTU {mtu} on interface {index}"), e))
    }
}
