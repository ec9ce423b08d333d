use super::*;

fn round_trip(m: &PmMessage) -> PmMessage {
    let mut buf = vec![0; m.buffer_len()];
    m.emit(&mut buf);
    let header = GenlHeader {
        cmd: m.command(),
        version: m.version(),
    };
    PmMessage::parse_with_param(&buf, header).unwrap()
}

fn ep(id: u8, addr: &str, flags: u32) -> Endpoint {
    Endpoint {
        id,
        address: addr.parse().unwrap(),
        port: None,
        ifindex: Some(7),
        flags,
    }
}

#[test]
fn every_request_reads_back_as_it_was_written() {
    let e4 = ep(200, "10.1.0.2", SUBFLOW);
    let e6 = ep(201, "2001:db8::2", SUBFLOW | BACKUP);
    for e in [&e4, &e6] {
        assert_eq!(round_trip(&PmMessage::add(e)).endpoint().as_ref(), Some(e));
        let del = round_trip(&PmMessage::delete(e)).endpoint().unwrap();
        assert_eq!((del.id, del.address, del.flags), (e.id, e.address, 0));
        let set = round_trip(&PmMessage::set_flags(e)).endpoint().unwrap();
        assert_eq!((set.id, set.flags), (e.id, e.flags));
    }
    let l = Limits {
        subflows: 3,
        add_addr_accepted: 2,
    };
    assert_eq!(round_trip(&PmMessage::set_limits(l)).limits(), l);
    assert!(round_trip(&PmMessage::get_all()).attrs.is_empty());
}

/// The bytes the kernel parses: a nested MPTCP_PM_ATTR_ADDR holding the
/// id, the family, the address in network order, flags and the device.
#[test]
fn add_addr_is_laid_out_as_the_kernel_reads_it() {
    let m = PmMessage::add(&ep(5, "192.0.2.1", SUBFLOW));
    let mut buf = vec![0; m.buffer_len()];
    m.emit(&mut buf);
    // Outer attribute: length, type ATTR_ADDR with NLA_F_NESTED.
    assert_eq!(u16::from_ne_bytes([buf[0], buf[1]]) as usize, buf.len());
    assert_eq!(u16::from_ne_bytes([buf[2], buf[3]]), 1 | 0x8000);
    let inner = &buf[4..];
    // id (u8, padded to 8), family (u16, padded to 8), addr4, flags, if_idx.
    assert_eq!(&inner[..5], &[5, 0, 2, 0, 5]);
    assert_eq!(&inner[8..14], &[6, 0, 1, 0, 2, 0]);
    assert_eq!(&inner[16..24], &[8, 0, 3, 0, 192, 0, 2, 1]);
    assert_eq!(buf.len(), 4 + 8 + 8 + 8 + 8 + 8);
}

#[test]
fn a_dump_answer_names_its_endpoint() {
    let mut m = PmMessage::add(&ep(3, "10.9.0.2", SIGNAL | SUBFLOW));
    m.cmd = Cmd::GetAddr;
    let e = round_trip(&m).endpoint().unwrap();
    assert_eq!(e.id, 3);
    assert_eq!(e.flags, SIGNAL | SUBFLOW);
    assert_eq!(e.ifindex, Some(7));
}

/// Hostile or truncated input is an error, never a panic.
#[test]
fn garbage_does_not_panic() {
    let m = PmMessage::add(&ep(9, "2001:db8::9", SUBFLOW));
    let mut good = vec![0; m.buffer_len()];
    m.emit(&mut good);
    let header = GenlHeader { cmd: 3, version: 1 };
    for cut in 0..good.len() {
        let _ = PmMessage::parse_with_param(&good[..cut], header);
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        let len = (x % 64) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = PmMessage::parse_with_param(&bytes, header);
    }
    assert!(PmMessage::parse_with_param(
        &[],
        GenlHeader {
            cmd: 99,
            version: 1
        }
    )
    .is_err());
}
