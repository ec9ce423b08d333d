use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use super::*;

fn private_dir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("private");
    (t, dir.join("agent.sock"))
}

#[test]
fn requests_read_as_documented() {
    let r: Request = serde_json::from_str(
        r#"{"cmd": "uplink", "ifname": "wan3", "address": "10.30.0.100", "prefix_len": 24,
            "routers": ["10.30.0.1"], "dns": ["10.30.0.1"]}"#,
    )
    .unwrap();
    let Request::Uplink(u) = &r else {
        panic!("{r:?}")
    };
    assert_eq!((u.prefix_len, u.keep_main, u.metric), (24, false, None));
    assert!(serde_json::from_str::<Request>(r#"{"cmd": "uplink", "nonsense": 1}"#).is_err());
    assert!(serde_json::from_str::<Request>(r#"{"cmd": "reboot"}"#).is_err());
    let text = serde_json::to_string(&Reply {
        table: Some(10003),
        ..Reply::ok()
    })
    .unwrap();
    assert_eq!(text, r#"{"table":10003}"#);
}

#[test]
fn no_agent_means_none_and_a_listener_answers() {
    let (_t, path) = private_dir();
    assert!(
        ask_with(&path, &Request::Status, Duration::from_secs(1), false)
            .unwrap()
            .is_none()
    );
    let l = listen(&path).unwrap();
    let mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    l.set_nonblocking(false).unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.contains("\"status\""), "{line}");
        r.get_mut().write_all(b"{\"table\": 7}\n").unwrap();
        l
    });
    let reply = ask(&path, &Request::Status, Duration::from_secs(2))
        .unwrap()
        .unwrap();
    assert_eq!(reply.table, Some(7));
    let l = server.join().unwrap();
    // A second agent is refused while the first listens; a dead one's
    // socket is replaced.
    let e = listen(&path).unwrap_err().to_string();
    assert!(e.contains("another mhr agent"), "{e}");
    drop(l);
    listen(&path).unwrap();
}

#[test]
fn one_deadline_whatever_the_agent_trickles() {
    let (_t, path) = private_dir();
    let l = listen(&path).unwrap();
    l.set_nonblocking(false).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        // A byte every 100 ms, never a newline: each read would be short.
        for _ in 0..100 {
            if s.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let t = Instant::now();
    let e = ask(&path, &Request::Status, Duration::from_millis(500)).unwrap_err();
    assert!(matches!(e, ControlError::Deadline { .. }), "{e}");
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_directory_others_may_enter_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("open");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = listen(&dir.join("agent.sock")).unwrap_err().to_string();
    assert!(e.contains("only root may enter"), "{e}");
}

/// Where an agent is expected (its unit enabled), a socket not there yet
/// (booting, restarting) is waited for: the hook is answered by the agent
/// that comes, not by a second writer; one that never comes means none.
#[test]
fn an_expected_agent_is_waited_for() {
    let (_t, path) = private_dir();
    let p = path.clone();
    let agent = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        let l = listen(&p).unwrap();
        l.set_nonblocking(false).unwrap();
        let (s, _) = l.accept().unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        r.get_mut().write_all(b"{\"table\": 9}\n").unwrap();
    });
    let t0 = std::time::Instant::now();
    let reply = ask_with(&path, &Request::Status, Duration::from_secs(5), true)
        .unwrap()
        .unwrap();
    assert_eq!(reply.table, Some(9));
    assert!(t0.elapsed() >= Duration::from_millis(400));
    agent.join().unwrap();
    let (_t2, none) = private_dir();
    let t0 = std::time::Instant::now();
    assert!(
        ask_with(&none, &Request::Status, Duration::from_millis(500), true)
            .unwrap()
            .is_none()
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
}
