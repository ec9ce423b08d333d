//! One settings file for every entry point: the udev rule runs `mhr`
//! directly with nothing but udev's environment, and still follows
//! /etc/default/multihomed-routing (here named by MHR_DEFAULTS).

use std::path::Path;
use std::process::Command;

/// The RUN command of the shipped udev rule for `action`, with udev's
/// `$env{INTERFACE}` filled in and the installed binary replaced by ours.
fn udev_command(action: &str, ifname: &str) -> Vec<String> {
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/udev/70-multihomed-routing.rules"
    ))
    .unwrap();
    let line = rules
        .lines()
        .find(|l| l.contains(&format!("ACTION==\"{action}\"")))
        .unwrap_or_else(|| panic!("no {action} rule"));
    let run = line.split("RUN+=\"").nth(1).unwrap().trim_end_matches('"');
    run.replace("$env{INTERFACE}", ifname)
        .replace("/usr/sbin/mhr", env!("CARGO_BIN_EXE_mhr"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn run_as_udev(dir: &Path, action: &str, ifname: &str) -> std::process::Output {
    let cmd = udev_command(action, ifname);
    Command::new(&cmd[0])
        .args(&cmd[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("ACTION", action)
        .env("INTERFACE", ifname)
        .env("MHR_DEFAULTS", dir.join("defaults"))
        .output()
        .unwrap()
}

#[test]
fn the_udev_rule_follows_the_settings_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("defaults"),
        format!(
            "# as shipped, with values\nMHR_STANZA_DIR={}\nMHR_HOTPLUG_PATTERNS='modem*'\nMHR_SERVERS_FILE=\"{}\"\nMHR_DNSMASQ_PID_FILE={}\nMHR_DHCLIENT_PID_DIR={}\n",
            d.join("stanzas").display(),
            d.join("servers").display(),
            d.join("dnsmasq.pid").display(),
            d.display()
        ),
    )
    .unwrap();
    // Matches the file's pattern (not the built-in ones).
    let out = run_as_udev(d, "add", "modem7");
    assert!(out.status.success(), "{out:?}");
    let stanza = std::fs::read_to_string(d.join("stanzas/modem7")).unwrap();
    assert!(stanza.contains("iface modem7 inet dhcp"), "{stanza}");
    // A built-in default pattern no longer applies: the file said otherwise.
    let out = run_as_udev(d, "add", "wwan0");
    assert!(out.status.success(), "{out:?}");
    assert!(!d.join("stanzas/wwan0").exists());
    // Remove takes the stanza and the interface's DNS lines away.
    std::fs::write(
        d.join("servers"),
        "server=10.0.0.1@modem7@10.0.0.2\nserver=10.1.0.1@eth0@10.1.0.2\n",
    )
    .unwrap();
    let out = run_as_udev(d, "remove", "modem7");
    assert!(out.status.success(), "{out:?}");
    assert!(!d.join("stanzas/modem7").exists());
    assert_eq!(
        std::fs::read_to_string(d.join("servers")).unwrap(),
        "server=10.1.0.1@eth0@10.1.0.2\n"
    );
    // The caller's environment still wins over the file.
    let out = Command::new(env!("CARGO_BIN_EXE_mhr"))
        .args(["hotplug", "add", "other1"])
        .env("MHR_DEFAULTS", d.join("defaults"))
        .env("MHR_HOTPLUG_PATTERNS", "other*")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(d.join("stanzas/other1").exists());
}

#[test]
fn a_bad_settings_line_is_named_and_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("defaults"),
        format!(
            "export MHR_STANZA_DIR={}\nMHR_HOTPLUG_PATTERNS=x*\nthis is wrong\n",
            d.join("st").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mhr"))
        .args(["hotplug", "add", "x1"])
        .env_remove("MHR_STANZA_DIR")
        .env_remove("MHR_HOTPLUG_PATTERNS")
        .env("MHR_DEFAULTS", d.join("defaults"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(d.join("st/x1").exists(), "{err}");
    assert!(err.contains("line 1: drop `export`"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}
