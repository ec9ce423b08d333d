//! DNS TXT queries, shared by `mhr probe` and the tracker's DNS probe: a
//! query sent from a chosen source address and device shows by who answers
//! which uplink carried it (the lab's ISPs answer `whoami.lab` with their
//! own names).

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Builds a recursion-desired query for `name` of type TXT.
pub fn txt_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 16, 0, 1]);
    q
}

/// The TXT strings of an answer to query `id`; malformed answers are errors.
pub fn parse_txt_answer(id: u16, msg: &[u8]) -> Result<Vec<String>, String> {
    let bad = || "malformed DNS answer".to_string();
    if msg.len() < 12 || msg[..2] != id.to_be_bytes() {
        return Err("answer to another query".into());
    }
    let rcode = msg[3] & 0x0f;
    if rcode != 0 {
        return Err(format!("DNS error rcode {rcode}"));
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut i = 12;
    let skip_name = |mut i: usize| -> Option<usize> {
        loop {
            let len = *msg.get(i)? as usize;
            if len == 0 {
                return Some(i + 1);
            }
            if len & 0xc0 == 0xc0 {
                return Some(i + 2);
            }
            i += 1 + len;
        }
    };
    for _ in 0..qd {
        i = skip_name(i).ok_or_else(bad)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        i = skip_name(i).ok_or_else(bad)?;
        let head = msg.get(i..i + 10).ok_or_else(bad)?;
        let rtype = u16::from_be_bytes([head[0], head[1]]);
        let rdlen = u16::from_be_bytes([head[8], head[9]]) as usize;
        let rdata = msg.get(i + 10..i + 10 + rdlen).ok_or_else(bad)?;
        if rtype == 16 {
            let mut j = 0;
            while j < rdata.len() {
                let l = rdata[j] as usize;
                let s = rdata.get(j + 1..j + 1 + l).ok_or_else(bad)?;
                out.push(String::from_utf8_lossy(s).into_owned());
                j += 1 + l;
            }
        }
        i += 10 + rdlen;
    }
    Ok(out)
}

/// Asks `server` for the TXT records of `name`, from `source` (if given) and
/// bound to `device` (if given).
pub fn whoami(
    server: IpAddr,
    name: &str,
    source: Option<IpAddr>,
    device: Option<&str>,
    timeout: Duration,
) -> io::Result<Vec<String>> {
    let bind: SocketAddr = match (source, server) {
        (Some(s), _) => SocketAddr::new(s, 0),
        (None, IpAddr::V4(_)) => "0.0.0.0:0".parse().expect("literal"),
        (None, IpAddr::V6(_)) => "[::]:0".parse().expect("literal"),
    };
    let sock = UdpSocket::bind(bind)?;
    if let Some(dev) = device {
        nix::sys::socket::setsockopt(
            &sock,
            nix::sys::socket::sockopt::BindToDevice,
            &std::ffi::OsString::from(dev),
        )
        .map_err(io::Error::from)?;
    }
    sock.set_read_timeout(Some(timeout))?;
    let id = (std::process::id() as u16) ^ 0x5a5a;
    sock.send_to(&txt_query(id, name), SocketAddr::new(server, 53))?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf)?;
    parse_txt_answer(id, &buf[..n]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_answer() {
        let q = txt_query(0x1234, "whoami.lab");
        assert_eq!(&q[12..], b"\x06whoami\x03lab\x00\x00\x10\x00\x01");
        // A reply: the question, then one TXT answer with a name pointer.
        let mut a = q.clone();
        a[2] = 0x81;
        a[3] = 0x80;
        a[7] = 1;
        a.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 0, 0, 5, 4]);
        a.extend_from_slice(b"isp1");
        assert_eq!(parse_txt_answer(0x1234, &a).unwrap(), ["isp1"]);
        assert!(parse_txt_answer(0x9999, &a).is_err());
        assert!(parse_txt_answer(0x1234, &a[..a.len() - 3]).is_err());
    }
}
