use super::*;

fn key() -> LeaseKey {
    LeaseKey::new(Family::Inet, "veth0", "10.10.0.2").unwrap()
}

#[test]
fn encodes_request_like_the_original() {
    let req = Request {
        action: Action::Request,
        key: key(),
        tag: None,
    };
    assert_eq!(
        String::from_utf8(req.encode()).unwrap(),
        r#"{"address":"10.10.0.2","ifname":"veth0","addr_family":2,"cmd":0,"version":1}"#
    );
    let rel = Request {
        action: Action::Release,
        key: key(),
        tag: Some("mytag".into()),
    };
    assert_eq!(
        String::from_utf8(rel.encode()).unwrap(),
        r#"{"address":"10.10.0.2","ifname":"veth0","tag":"mytag","addr_family":2,"cmd":1,"version":1}"#
    );
}

#[test]
fn encodes_replies_like_the_original() {
    let r = Reply::Lease {
        table: 10000,
        lease_expires: 5528,
    };
    assert_eq!(
        r.encode(),
        br#"{"version":1,"cmd":2,"table":10000,"lease_expires":5528}"#
    );
    assert_eq!(
        Reply::released().encode(),
        br#"{"version":1,"cmd":2,"table":0,"lease_expires":0}"#
    );
    let e = Reply::Error(WireError::new(ErrorCode::PoolExhausted, "no table"));
    assert_eq!(
        e.encode(),
        br#"{"version":1,"cmd":3,"error":"pool_exhausted","message":"no table"}"#
    );
    assert_eq!(Reply::decode(&e.encode()).unwrap(), e);
    assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
}

#[test]
fn decodes_and_canonicalizes() {
    let r = Request::decode(
        br#"{"address":"2001:DB8::1","ifname":"wwan0","addr_family":10,"cmd":0,"version":1}"#,
    )
    .unwrap();
    assert_eq!(r.key.address.to_string(), "2001:db8::1");
    assert_eq!(r.key.family, Family::Inet6);
    // A trailing NUL, as a C sender may include, is fine.
    assert!(Request::decode(
        b"{\"address\":\"10.0.0.1\",\"ifname\":\"a\",\"addr_family\":0,\"cmd\":1,\"version\":1}\0"
    )
    .is_ok());
}

#[test]
fn rejects_bad_requests_with_codes() {
    let cases: &[(&[u8], ErrorCode)] = &[
        (b"{", ErrorCode::Malformed),
        (b"", ErrorCode::Malformed),
        (b"[1,2]", ErrorCode::NotObject),
        (b"\"x\"", ErrorCode::NotObject),
        (br#"{"address":"10.0.0.1","ifname":"a","addr_family":2,"cmd":0,"version":2}"#, ErrorCode::BadVersion),
        (br#"{"address":"10.0.0.1","ifname":"a","addr_family":2,"cmd":0}"#, ErrorCode::BadVersion),
        (br#"{"address":"10.0.0.1","ifname":"a","addr_family":2,"cmd":2,"version":1}"#, ErrorCode::BadCmd),
        (br#"{"address":"10.0.0.1","ifname":"a","addr_family":2,"cmd":"0","version":1}"#, ErrorCode::BadCmd),
        (br#"{"address":"10.0.0.1","ifname":"a","addr_family":7,"cmd":0,"version":1}"#, ErrorCode::BadFamily),
        (br#"{"address":"10.0.0.1","ifname":"abcdefghijklmnop","addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadIfname),
        (br#"{"address":"10.0.0.1","ifname":"","addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadIfname),
        (br#"{"address":"10.0.0.1","ifname":"a/b","addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadIfname),
        (br#"{"address":"10.0.0.1","ifname":5,"addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadIfname),
        (br#"{"address":"::1","ifname":"a","addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadAddress),
        (br#"{"address":"10.0.0.1","ifname":"a","addr_family":10,"cmd":0,"version":1}"#, ErrorCode::BadAddress),
        (br#"{"address":"10.0.0.300","ifname":"a","addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadAddress),
        (br#"{"ifname":"a","addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadAddress),
        (br#"{"address":"10.0.0.1","ifname":"a","tag":7,"addr_family":2,"cmd":0,"version":1}"#, ErrorCode::BadTag),
    ];
    for (bytes, code) in cases {
        let err = Request::decode(bytes).unwrap_err();
        assert_eq!(err.code, *code, "{}", String::from_utf8_lossy(bytes));
    }
    let big = vec![b' '; MAX_DATAGRAM + 1];
    assert_eq!(Request::decode(&big).unwrap_err().code, ErrorCode::TooLarge);
}

#[test]
fn error_replies_stay_within_the_datagram_limit() {
    let e = Reply::Error(WireError::new(ErrorCode::Malformed, "x".repeat(2000)));
    assert!(e.encode().len() <= MAX_DATAGRAM);
    // Once this recursed until the stack overflowed: 100 four-byte
    // characters echoed in the message never got shorter than 512 bytes.
    let name = "\u{1D11E}".repeat(100);
    let req = format!(
        r#"{{"address":"10.0.0.1","ifname":"{name}","addr_family":2,"cmd":0,"version":1}}"#
    );
    assert!(req.len() <= MAX_DATAGRAM);
    let err = Request::decode(req.as_bytes()).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadIfname);
    let bytes = Reply::Error(err).encode();
    assert!(bytes.len() <= MAX_DATAGRAM, "{}", bytes.len());
    assert!(matches!(
        Reply::decode(&bytes).unwrap(),
        Reply::Error(WireError {
            code: ErrorCode::BadIfname,
            ..
        })
    ));
    // A message over the limit is cut, visibly.
    let long = Reply::Error(WireError::new(
        ErrorCode::BadIfname,
        "\u{1D11E}".repeat(200),
    ));
    let Reply::Error(cut) = Reply::decode(&long.encode()).unwrap() else {
        panic!()
    };
    assert!(cut.message.ends_with('…'));
    // Control characters take six bytes escaped; still within the limit.
    let e = Reply::Error(WireError::new(ErrorCode::BadTag, "\u{1}".repeat(600)));
    assert!(e.encode().len() <= MAX_DATAGRAM);
}

#[test]
fn repeated_keys_are_refused() {
    let dup =
        br#"{"address":"10.0.0.1","ifname":"a","ifname":"b","addr_family":2,"cmd":0,"version":1}"#;
    let e = Request::decode(dup).unwrap_err();
    assert_eq!(e.code, ErrorCode::Malformed);
    assert!(e.message.contains("ifname"), "{}", e.message);
    assert!(
        Reply::decode(br#"{"version":1,"cmd":2,"table":10,"table":254,"lease_expires":1}"#)
            .is_err()
    );
}

#[test]
fn reserved_and_foreign_tables_are_refused() {
    for t in RESERVED_TABLES {
        assert!(check_table(t, None).is_err());
        assert!(check_table(t, Some((0, u32::MAX))).is_err());
    }
    assert_eq!(check_table(10000, None), Ok(10000));
    assert_eq!(check_table(10000, Some((10000, 10999))), Ok(10000));
    let e = check_table(42, Some((10000, 10999))).unwrap_err();
    assert!(e.contains("outside the server's pool 10000-10999"), "{e}");
}

#[test]
fn client_socket_names() {
    assert_eq!(client_socket_name(&key()), "veth0-10.10.0.2-2");
}

mod fuzz {
    use super::super::*;
    use proptest::prelude::*;

    /// A request datagram built from parts, some of them hostile.
    fn datagram() -> impl Strategy<Value = Vec<u8>> {
        let text = prop_oneof![
            ".{0,40}",
            "[a-z0-9.:-]{0,20}",
            Just("\u{1D11E}".repeat(120)),
            Just("\u{1}".repeat(100)),
        ];
        let num = prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            Just("-1".to_owned()),
            Just("1e99".to_owned())
        ];
        (text.clone(), text, num.clone(), num.clone(), num).prop_map(
            |(ifname, addr, fam, cmd, ver)| {
                format!(
                r#"{{"address":{},"ifname":{},"addr_family":{fam},"cmd":{cmd},"version":{ver}}}"#,
                serde_json::to_string(&addr).unwrap(),
                serde_json::to_string(&ifname).unwrap()
            )
            .into_bytes()
            },
        )
    }

    fn check_reply_for(bytes: &[u8]) {
        let reply = match Request::decode(bytes) {
            Ok(_) => Reply::Lease {
                table: u32::MAX,
                lease_expires: u64::MAX,
            },
            Err(e) => Reply::Error(e),
        };
        let out = reply.encode();
        assert!(out.len() <= MAX_DATAGRAM, "{} bytes", out.len());
        let _ = Reply::decode(&out).expect("our replies decode");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn structured_requests_never_panic(bytes in datagram()) {
            check_reply_for(&bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            check_reply_for(&bytes);
            let _ = Reply::decode(&bytes);
        }

        #[test]
        fn any_error_message_fits(code in 0..ErrorCode::ALL.len(), message in "\\PC{0,700}|[\u{0}-\u{1f}\"\\\\]{0,700}") {
            let r = Reply::Error(WireError::new(ErrorCode::ALL[code], message));
            prop_assert!(r.encode().len() <= MAX_DATAGRAM);
        }
    }
}
