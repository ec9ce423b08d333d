//! The Debian package: built by scripts/build-deb.sh from the binaries this
//! test run built, its file list and maintainer scripts checked, then
//! installed into a throwaway root with `dpkg --root` (maintainer scripts
//! run chrootless with DPKG_ROOT), used, removed and purged.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Skips where dpkg-deb is missing, except under CI, which installs it.
macro_rules! require_dpkg {
    () => {
        if !have("dpkg-deb") || !have("strip") {
            if std::env::var_os("CI").is_some() {
                panic!("CI must install dpkg and binutils");
            }
            eprintln!("skipped: needs dpkg-deb and strip");
            return;
        }
    };
}

fn build_deb(out: &Path) -> PathBuf {
    let bin_dir = bin_dir();
    let stdout = check(
        Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-deb.sh"))
            .arg(out)
            .env("BIN_DIR", &bin_dir)
            .env("DEB_COMPRESS", "none")
            .env("DEBFULLNAME", "Test Builder")
            .env("DEBEMAIL", "builder@example.org"),
    );
    PathBuf::from(stdout.trim())
}

#[test]
fn package_contents_and_maintainer_scripts() {
    require_dpkg!();
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(dir.path());
    let listing = check(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let files: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    for want in [
        "./usr/sbin/table_allocator_server",
        "./usr/sbin/table_allocator_client",
        "./usr/sbin/mhr",
        "./etc/dhcp/dhclient-enter-hooks.d/multihomed-routing",
        "./etc/network/if-up.d/multihomed-routing",
        "./usr/lib/udev/rules.d/70-multihomed-routing.rules",
        "./etc/network/interfaces.d/multihomed-routing",
        "./etc/dnsmasq.d/multihomed-routing.conf",
        "./etc/table_allocator_server_config.json",
        "./etc/default/multihomed-routing",
        "./usr/lib/systemd/system/table-allocator-server.service",
        "./usr/lib/tmpfiles.d/multihomed-routing.conf",
        "./usr/lib/systemd/system/mhr-agent.service",
        "./etc/multihomed-routing/agent.json",
        "./usr/lib/dhcpcd/dhcpcd-hooks/90-multihomed-routing",
        "./usr/share/multihomed-routing/udhcpc.script",
        "./usr/share/man/man8/mhr-agent.8.gz",
        "./usr/share/doc/multihomed-routing/agent.md",
        "./usr/share/doc/multihomed-routing/architecture.md",
        "./usr/share/doc/multihomed-routing/examples/track.json",
        "./etc/multihomed-routing/track.d/",
        "./usr/lib/systemd/networkd.conf.d/multihomed-routing.conf",
        "./usr/share/doc/multihomed-routing/track.md",
        "./usr/share/man/man8/table_allocator_server.8.gz",
        "./usr/share/man/man8/table_allocator_client.8.gz",
        "./usr/share/man/man8/mhr.8.gz",
        "./usr/share/man/man8/mhr-status.8.gz",
        "./usr/share/man/man5/table_allocator_server_config.json.5.gz",
        "./usr/share/bash-completion/completions/mhr",
        "./usr/share/zsh/vendor-completions/_mhr",
        "./usr/share/fish/vendor_completions.d/mhr.fish",
        "./usr/share/doc/multihomed-routing/copyright",
        "./usr/share/doc/multihomed-routing/status.md",
        "./usr/share/multihomed-routing/lab.sh",
        "./usr/share/doc/multihomed-routing/changelog.Debian.gz",
        "./usr/share/doc/multihomed-routing/security.md",
        "./usr/share/doc/multihomed-routing/differences.md",
    ] {
        assert!(
            files.contains(&want),
            "{want} not in the package:\n{listing}"
        );
    }
    // One program: the original names are links to it.
    for name in ["table_allocator_server", "table_allocator_client"] {
        let line = listing
            .lines()
            .find(|l| l.contains(&format!("./usr/sbin/{name} -> mhr")))
            .unwrap_or_else(|| panic!("{name} is not a link to mhr:\n{listing}"));
        assert!(line.starts_with('l'), "{line}");
    }
    // Binaries executable, hooks with the modes their callers need (the
    // dhclient hook is sourced; if-up.d runs executables only).
    for (path, mode) in [
        ("./usr/sbin/mhr", "-rwxr-xr-x"),
        ("./usr/share/multihomed-routing/udhcpc.script", "-rwxr-xr-x"),
        // dhcpcd-run-hooks sources its hooks.
        (
            "./usr/lib/dhcpcd/dhcpcd-hooks/90-multihomed-routing",
            "-rw-r--r--",
        ),
        ("./etc/network/if-up.d/multihomed-routing", "-rwxr-xr-x"),
        (
            "./etc/dhcp/dhclient-enter-hooks.d/multihomed-routing",
            "-rw-r--r--",
        ),
    ] {
        let line = listing.lines().find(|l| l.ends_with(path)).unwrap();
        assert!(line.starts_with(mode), "{line}");
        assert!(line.contains("root/root"), "{line}");
    }

    let control = dir.path().join("control");
    check(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    // Debian policy: every file under /etc is a conffile.
    let etc: Vec<&str> = files
        .iter()
        .filter(|f| f.starts_with("./etc/") && !f.ends_with('/'))
        .map(|f| &f[1..])
        .collect();
    let listed: Vec<&str> = conffiles.lines().collect();
    for f in &etc {
        assert!(listed.contains(f), "{f} is not a conffile: {conffiles}");
    }
    assert_eq!(listed.len(), etc.len(), "{conffiles}");
    let fields = std::fs::read_to_string(control.join("control")).unwrap();
    for want in [
        "Package: multihomed-routing\n",
        // Static binaries (.cargo/config.toml): no libc6 dependency.
        "Built-Using: glibc (= 2.",
        "Recommends: isc-dhcp-client",
        "Maintainer: Test Builder <builder@example.org>\n",
    ] {
        assert!(fields.contains(want), "{want} not in:\n{fields}");
    }
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        check(Command::new("sh").arg("-n").arg(&path));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/sh\n") && text.contains("set -e"));
        // systemctl only where systemd runs, and never for another root
        // (the throwaway-root test runs them where neither holds).
        if text.contains("systemctl") || text.contains("deb-systemd-invoke") {
            assert!(text.contains("[ -d /run/systemd/system ]"), "{script}");
            assert!(text.contains("[ -z \"${DPKG_ROOT:-}\" ]"), "{script}");
        }
    }
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("deb-systemd-helper enable"));
    let md5sums = std::fs::read_to_string(control.join("md5sums")).unwrap();
    assert!(md5sums.contains("  usr/sbin/mhr\n"), "{md5sums}");
}

#[test]
fn package_installs_runs_and_removes_in_a_throwaway_root() {
    require_dpkg!();
    if !nix::unistd::geteuid().is_root() {
        if std::env::var_os("CI").is_some() {
            panic!("CI runs as root");
        }
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(&dir.path().join("out"));
    let root = dir.path().join("root");
    let admin = root.join("var/lib/dpkg");
    for sub in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(sub)).unwrap();
    }
    std::fs::write(admin.join("status"), "").unwrap();
    let dpkg = |args: &[&str]| {
        let mut c = Command::new("dpkg");
        // The throwaway root has no packages: a build that links glibc
        // dynamically depends on libc6, which it lacks.
        c.arg(format!("--root={}", root.display()))
            .args(["--force-script-chrootless", "--force-depends"])
            .args(args);
        check(&mut c)
    };
    dpkg(&["-i", deb.to_str().unwrap()]);

    let sbin = root.join("usr/sbin");
    let help = check(Command::new(sbin.join("table_allocator_server")).arg("--help"));
    assert!(help.contains("--config"), "{help}");
    check(Command::new(sbin.join("table_allocator_client")).arg("--version"));

    // The hook shims with no variables: nothing to do, exit 0, no noise.
    let mhr = sbin.join("mhr");
    let dhcp_hook = root.join("etc/dhcp/dhclient-enter-hooks.d/multihomed-routing");
    let out = run(Command::new("sh")
        .arg("-c")
        .arg(". \"$HOOK\"; echo sourced")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOOK", &dhcp_hook)
        .env("MHR", &mhr)
        .env("MHR_DEFAULTS", "/nonexistent"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sourced\n");
    let ifup_hook = root.join("etc/network/if-up.d/multihomed-routing");
    let out = run(Command::new(&ifup_hook)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("MHR", &mhr)
        .env("MHR_DEFAULTS", "/nonexistent"));
    assert!(out.status.success(), "{out:?}");

    // Enabled for systemd (a link only; no systemd runs here), state
    // directory made.
    let wants =
        root.join("etc/systemd/system/multi-user.target.wants/table-allocator-server.service");
    if have("deb-systemd-helper") {
        assert!(wants.is_symlink(), "the unit is not enabled");
    }
    assert!(root.join("var/lib/table-allocator").is_dir());
    let config =
        std::fs::read_to_string(root.join("etc/table_allocator_server_config.json")).unwrap();
    assert!(config.contains("\"socket_path\""));
    check_units(&root);

    // Remove: binaries and the udev rule gone; the hooks (conffiles) stay
    // and do nothing without mhr.
    dpkg(&["-r", "multihomed-routing"]);
    assert!(!mhr.exists());
    assert!(!root
        .join("usr/lib/udev/rules.d/70-multihomed-routing.rules")
        .exists());
    assert!(dhcp_hook.exists() && ifup_hook.exists());
    let out = run(Command::new("sh")
        .arg("-c")
        .arg(". \"$HOOK\"; echo \"sourced $reason\"")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOOK", &dhcp_hook)
        .env("MHR", &mhr)
        .env("reason", "BOUND"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "sourced BOUND\n",
        "{out:?}"
    );
    let out = run(Command::new(&ifup_hook)
        .env_clear()
        .env("MHR", &mhr)
        .env("IFACE", "eth9"));
    assert!(out.status.success(), "{out:?}");
    assert!(root.join("etc/table_allocator_server_config.json").exists());

    // Purge: configuration, state and the enable link gone.
    dpkg(&["-P", "multihomed-routing"]);
    assert!(!root.join("etc/table_allocator_server_config.json").exists());
    assert!(!root.join("etc/default/multihomed-routing").exists());
    assert!(!root.join("var/lib/table-allocator").exists());
    assert!(!wants.exists() && !wants.is_symlink());
    assert!(!dhcp_hook.exists() && !ifup_hook.exists());
}

/// The installed units: `systemd-analyze verify` finds nothing wrong (their
/// binaries and settings file in place), `security` rates them alike, and
/// each keeps what the docs promise.
fn check_units(root: &Path) {
    if !have("systemd-analyze") {
        assert!(std::env::var_os("CI").is_none(), "CI installs systemd");
        eprintln!("skipped unit checks: no systemd-analyze");
        return;
    }
    let units = ["table-allocator-server", "mhr-agent"];
    for unit in units {
        let path = root.join(format!("usr/lib/systemd/system/{unit}.service"));
        let out = run(Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg("--man=no")
            .arg(&path));
        let err = String::from_utf8_lossy(&out.stderr);
        // Only what concerns our units (the throwaway root has no others).
        let ours: Vec<&str> = err
            .lines()
            .filter(|l| l.contains(unit) && !l.contains("not found"))
            .collect();
        assert!(ours.is_empty(), "{unit}: {err}");
        let out = run(Command::new("systemd-analyze")
            .args(["security", "--offline=yes"])
            .arg(format!("--root={}", root.display()))
            .arg(&path));
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("exposure level for ").nth(1))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no exposure level: {text}"));
        assert!(score <= 3.0, "{unit}: exposure {score}\n{text}");
    }
    let unit = |name: &str| {
        std::fs::read_to_string(root.join(format!("usr/lib/systemd/system/{name}.service")))
            .unwrap()
    };
    let agent = unit("mhr-agent");
    assert!(
        agent.contains("CAP_KILL"),
        "SIGHUP to dnsmasq, another user"
    );
    assert!(agent.contains("Before=network-pre.target"));
    let server = unit("table-allocator-server");
    assert!(server.contains("ProtectSystem=full") && !server.contains("PrivateTmp=yes"));
    // The settings file is one that systemd's EnvironmentFile reads.
    let defaults = std::fs::read_to_string(root.join("etc/default/multihomed-routing")).unwrap();
    assert!(!defaults.lines().any(|l| l
        .trim_start()
        .trim_start_matches('#')
        .starts_with("export ")));
}
