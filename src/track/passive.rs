//! The passive signal: the host's own TCP connections, read from the
//! kernel (sock_diag, as `ss` does), tell for free whether an uplink's
//! traffic is getting answers. A connection whose retransmission timer has
//! fired at least once without an acknowledgement (a data segment or a SYN
//! unanswered for an RTO, 200 ms at the least) is *stalled*; its source
//! address names the uplink. Forwarded traffic has no sockets here, so
//! probes stay the ground truth.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;

use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags, Timer,
};
use netlink_packet_sock_diag::SockDiagMessage;
use rtnetlink::packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla as _, NlasIterator, NLA_F_NESTED,
    NLM_F_DUMP, NLM_F_REQUEST,
};
use rtnetlink::sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

/// Per local address, the remote addresses of its stalled connections.
pub type Stalls = BTreeMap<IpAddr, BTreeSet<IpAddr>>;

/// One connection as the signal needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conn {
    pub source: IpAddr,
    pub remote: IpAddr,
    /// Retransmission timeouts in a row without an acknowledgement.
    pub backoffs: u8,
}

/// Stalled connections by source, pure.
pub fn stalls(conns: &[Conn]) -> Stalls {
    let mut out = Stalls::new();
    for c in conns.iter().filter(|c| c.backoffs >= 1) {
        out.entry(c.source).or_default().insert(c.remote);
    }
    out
}

/// When to read the connections. Reading walks the kernel's whole TCP hash
/// table (a few ms on a large machine, whatever it holds), so it is done
/// only when a retransmission timer could have fired since the last read:
/// the namespace's TCP counters moved, or the last read found stalls (to
/// see them clear). A quiet host costs one /proc read per turn.
#[derive(Debug, Default)]
pub struct Gate {
    seen: Option<u64>,
    stalled: bool,
}

impl Gate {
    /// Whether to read now, given the counters (`None`: unreadable).
    pub fn should_read(&self, counters: Option<u64>) -> bool {
        self.stalled || counters.is_none() || counters != self.seen
    }

    /// A read done with the counters taken before it.
    pub fn read(&mut self, counters: Option<u64>, stalls: &Stalls) {
        self.seen = counters;
        self.stalled = !stalls.is_empty();
    }
}

/// The retransmission counters of `/proc/net/snmp` and `/proc/net/netstat`
/// (this network namespace's, both families), summed: RTOs that sent
/// (`RetransSegs`) and those that could not (`TCPTimeouts` and the
/// recovery failures count an RTO whose segment still sat in a queue).
pub fn counters() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
    sum_counters(&format!("{snmp}{netstat}"))
}

const COUNTERS: [(&str, &str); 7] = [
    ("Tcp:", "RetransSegs"),
    ("TcpExt:", "TCPTimeouts"),
    ("TcpExt:", "TCPLossFailures"),
    ("TcpExt:", "TCPSackRecoveryFail"),
    ("TcpExt:", "TCPRenoRecoveryFail"),
    ("TcpExt:", "TCPRetransFail"),
    ("TcpExt:", "TCPSynRetrans"),
];

/// Pure: the sum of `COUNTERS` in the files' pairs of lines (names, then
/// values, both starting with the same prefix).
pub fn sum_counters(text: &str) -> Option<u64> {
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let (mut sum, mut found, mut i) = (0u64, false, 0);
    while i + 1 < lines.len() {
        let (names, values) = (&lines[i], &lines[i + 1]);
        let pair = names.len() > 1
            && names.len() == values.len()
            && names[0] == values[0]
            && names[1].parse::<u64>().is_err();
        if !pair {
            i += 1;
            continue;
        }
        for (name, value) in names.iter().zip(values).skip(1) {
            if COUNTERS.contains(&(names[0], *name)) {
                sum = sum.wrapping_add(value.parse().ok()?);
                found = true;
            }
        }
        i += 2;
    }
    found.then_some(sum)
}

/// The host's TCP connections that are open or opening, both families.
pub fn connections() -> io::Result<Vec<Conn>> {
    let mut out = Vec::new();
    dump(
        StateFlags::ESTABLISHED | StateFlags::SYN_SENT,
        ExtensionFlags::empty(),
        |r| {
            let backoffs = match r.header.timer {
                Some(Timer::Retransmit(_, n)) => n,
                _ => 0,
            };
            out.push(Conn {
                source: r.header.socket_id.source_address,
                remote: r.header.socket_id.destination_address,
                backoffs,
            });
        },
    )?;
    Ok(out)
}

/// `INET_DIAG_ULP_INFO`, and in it the ULP's name.
const ULP_INFO: u16 = 19;
const ULP_INFO_NAME: u16 = 1;

/// Established MPTCP subflows (TCP sockets whose upper layer is mptcp),
/// by local address: what each endpoint carries (`mhr status`).
pub fn subflows() -> io::Result<BTreeMap<IpAddr, usize>> {
    let mut out = BTreeMap::new();
    dump(StateFlags::ESTABLISHED, ExtensionFlags::INFO, |r| {
        let mptcp = r.nlas.iter().any(|n| match n {
            Nla::Other(o) if o.kind() & !NLA_F_NESTED == ULP_INFO => {
                let mut v = vec![0; o.value_len()];
                o.emit_value(&mut v);
                NlasIterator::new(&v[..])
                    .flatten()
                    .any(|a| a.kind() == ULP_INFO_NAME && a.value().starts_with(b"mptcp"))
            }
            _ => false,
        });
        if mptcp {
            *out.entry(r.header.socket_id.source_address).or_insert(0) += 1;
        }
    })?;
    Ok(out)
}

/// A sock_diag dump of TCP sockets in `states`, both families.
fn dump(
    states: StateFlags,
    extensions: ExtensionFlags,
    mut each: impl FnMut(InetResponse),
) -> io::Result<()> {
    let mut sock = Socket::new(NETLINK_SOCK_DIAG)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    for (family, id) in [
        (AF_INET, SocketId::new_v4()),
        (AF_INET6, SocketId::new_v6()),
    ] {
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let req = SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: extensions.clone(),
            states: states.clone(),
            socket_id: id,
        });
        let mut packet = NetlinkMessage::new(hdr, req.into());
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        sock.send(&buf, 0)?;
        read_dump(&sock, &mut each)?;
    }
    Ok(())
}

fn read_dump(sock: &Socket, each: &mut impl FnMut(InetResponse)) -> io::Result<()> {
    loop {
        let (bytes, _) = sock.recv_from_full()?;
        let mut at = 0;
        while at < bytes.len() {
            let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&bytes[at..])
                .map_err(|e| io::Error::other(format!("sock_diag: {e}")))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => each(*r),
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => {
                    return Err(io::Error::other(format!("sock_diag: {e:?}")))
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
