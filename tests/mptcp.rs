//! The MPTCP path manager's netlink messages against the real kernel: what
//! `PathManager` adds, changes and removes is what `ip mptcp` shows.

mod common;

use common::Netns;
use mhr::netlink::mptcp::message::{BACKUP, SUBFLOW};
use mhr::netlink::mptcp::{Endpoint, Limits, PathManager};

#[test]
fn endpoints_and_limits_as_ip_mptcp_shows_them() {
    require_netns!();
    let ns = Netns::new("mp");
    ns.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up0p"]);
    ns.ip(&["link", "set", "up0", "up"]);
    ns.ip(&["addr", "add", "10.61.0.2/24", "dev", "up0"]);
    ns.ip(&["addr", "add", "2001:db8:61::2/64", "dev", "up0", "nodad"]);
    let index: u32 = ns
        .ip(&["-o", "link", "show", "up0"])
        .split(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let e4 = Endpoint {
        id: 200,
        address: "10.61.0.2".parse().unwrap(),
        port: None,
        ifindex: Some(index),
        flags: SUBFLOW,
    };
    let e6 = Endpoint {
        id: 201,
        address: "2001:db8:61::2".parse().unwrap(),
        flags: SUBFLOW | BACKUP,
        ..e4.clone()
    };
    let (a, b) = (e4.clone(), e6.clone());
    let listed = ns.enter(move || {
        let mut pm = PathManager::open().unwrap();
        pm.add(&a).unwrap();
        pm.add(&b).unwrap();
        // The same id again: the kernel's error, named.
        let again = pm.add(&a).unwrap_err().to_string();
        assert!(again.contains("10.61.0.2"), "{again}");
        pm.endpoints().unwrap()
    });
    assert_eq!(listed, vec![e4.clone(), e6.clone()]);
    let shown = ns.ip(&["mptcp", "endpoint", "show"]);
    assert!(
        shown.contains("10.61.0.2 id 200 subflow dev up0"),
        "{shown}"
    );
    assert!(
        shown.contains("2001:db8:61::2 id 201 subflow backup dev up0"),
        "{shown}"
    );

    let (a, b) = (e4.clone(), e6.clone());
    let (limits, left) = ns.enter(move || {
        let mut pm = PathManager::open().unwrap();
        pm.set_flags(&Endpoint {
            flags: SUBFLOW | BACKUP,
            ..a.clone()
        })
        .unwrap();
        pm.set_flags(&Endpoint {
            flags: SUBFLOW,
            ..b.clone()
        })
        .unwrap();
        pm.set_limits(Limits {
            subflows: 3,
            add_addr_accepted: 2,
        })
        .unwrap();
        let limits = pm.limits().unwrap();
        pm.delete(&b).unwrap();
        (limits, pm.endpoints().unwrap())
    });
    assert_eq!(
        limits,
        Limits {
            subflows: 3,
            add_addr_accepted: 2
        }
    );
    assert_eq!(
        ns.ip(&["mptcp", "limits", "show"]).trim(),
        "add_addr_accepted 2 subflows 3"
    );
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].flags, SUBFLOW | BACKUP);
    let shown = ns.ip(&["mptcp", "endpoint", "show"]);
    assert!(
        shown.contains("10.61.0.2 id 200 subflow backup dev up0"),
        "{shown}"
    );
    assert!(!shown.contains("2001:db8:61::2"), "{shown}");
}
