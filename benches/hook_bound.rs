//! One dhclient BOUND event, from the hook's start to routing configured
//! (address, table lease with the client's rules, routes, DNS), over 50
//! fresh uplinks; the same through a copy of dhclient-script with our hook;
//! processes spawned per event; and the time to bring up all 50 uplinks.
//! Needs root: works in a network namespace of its own.
//!
//! Run: `cargo bench --bench hook_bound`

use std::process::{Command, Stdio};
use std::time::Instant;

const UPLINKS: usize = 50;

fn last_pid() -> u64 {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap()
        .split_whitespace()
        .nth(4)
        .unwrap()
        .parse()
        .unwrap()
}

fn bound_env(cmd: &mut Command, i: usize, reason: &str) {
    cmd.env("reason", reason)
        .env("interface", format!("up{i}"))
        .env(
            "new_ip_address",
            format!("10.{}.{}.2", 100 + i / 200, i % 200),
        )
        .env("new_subnet_mask", "255.255.255.0")
        .env("new_routers", format!("10.{}.{}.1", 100 + i / 200, i % 200))
        .env(
            "new_domain_name_servers",
            format!("10.{}.{}.1", 100 + i / 200, i % 200),
        );
}

#[path = "support/mod.rs"]
mod support;
use support::{ip, ms, pct, Ns};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !support::is_root() {
        println!("hook_bound: needs root (network namespaces); skipped");
        return;
    }
    let ns = Ns::new(format!("mhr-bench-hook-{}", std::process::id()));
    for i in 0..4 * UPLINKS {
        ip(
            &ns.0,
            &[
                "link",
                "add",
                &format!("up{i}"),
                "type",
                "veth",
                "peer",
                "name",
                &format!("pe{i}"),
            ],
        );
        ip(&ns.0, &["link", "set", &format!("up{i}"), "up"]);
        ip(&ns.0, &["link", "set", &format!("pe{i}"), "up"]);
    }
    ns.enter();

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = support::start_server(d, "tas_hook", None);
    let mhr = env!("CARGO_BIN_EXE_mhr");
    let configure = |cmd: &mut Command| {
        cmd.env("MHR_CLIENT", support::program("table_allocator_client"))
            .env("MHR_TAS_SOCKET", "tas_hook")
            .env("MHR_SERVERS_FILE", d.join("servers"))
            .env("MHR_DNSMASQ_PID_FILE", d.join("none.pid"))
            .env("MHR_CLIENT_LOG", d.join("client.log"))
            .env("MHR_AGENT_SOCKET", d.join("private/agent.sock"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };

    // 1. mhr alone, one BOUND per fresh uplink.
    let mut times = Vec::new();
    let pids_before = last_pid();
    let all = Instant::now();
    for i in 0..UPLINKS {
        let mut cmd = Command::new(mhr);
        cmd.arg("dhclient-hook");
        bound_env(&mut cmd, i, "BOUND");
        configure(&mut cmd);
        let t = Instant::now();
        assert!(cmd.status().unwrap().success(), "BOUND up{i}");
        times.push(t.elapsed());
    }
    let bring_up = all.elapsed();
    let spawned = (last_pid() - pids_before) as f64 / UPLINKS as f64;
    println!(
        "BOUND through mhr ({UPLINKS} fresh uplinks): median {}, p99 {}; {spawned:.1} processes per event (mhr, table_allocator_client and its background fork)",
        ms(pct(&mut times, 0.5)),
        ms(pct(&mut times, 0.99)),
    );
    println!(
        "{UPLINKS} uplinks brought up one after another in {}",
        ms(bring_up)
    );

    // 2. RENEW of the same uplinks: the running clients answer.
    let mut renew = Vec::new();
    for i in 0..UPLINKS {
        let mut cmd = Command::new(mhr);
        cmd.arg("dhclient-hook");
        bound_env(&mut cmd, i, "RENEW");
        cmd.env(
            "old_ip_address",
            format!("10.{}.{}.2", 100 + i / 200, i % 200),
        );
        configure(&mut cmd);
        let t = Instant::now();
        assert!(cmd.status().unwrap().success());
        renew.push(t.elapsed());
    }
    println!(
        "RENEW through mhr: median {}, p99 {}",
        ms(pct(&mut renew, 0.5)),
        ms(pct(&mut renew, 0.99))
    );

    // 3. Through dhclient-script, as dhclient runs it.
    let script = d.join("dhclient-script");
    let enter = d.join("enter.d");
    std::fs::create_dir_all(&enter).unwrap();
    let text = std::fs::read_to_string("/sbin/dhclient-script")
        .unwrap()
        .replace(
            "/etc/dhcp/dhclient-enter-hooks.d",
            &enter.display().to_string(),
        )
        .replace(
            "/etc/dhcp/dhclient-exit-hooks.d",
            &d.join("exit.d").display().to_string(),
        );
    std::fs::write(&script, text).unwrap();
    let defaults = d.join("defaults");
    std::fs::write(&defaults, "").unwrap();
    let shim = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/dhcp/multihomed-routing"
    ))
    .unwrap();
    std::fs::write(
        enter.join("multihomed-routing"),
        format!(
            "export MHR_DEFAULTS={}; MHR={mhr}\n{shim}",
            defaults.display()
        ),
    )
    .unwrap();
    let mut via_script = Vec::new();
    for i in UPLINKS..2 * UPLINKS {
        let mut cmd = Command::new("sh");
        cmd.arg(&script);
        bound_env(&mut cmd, i, "BOUND");
        configure(&mut cmd);
        let t = Instant::now();
        assert!(cmd.status().unwrap().success());
        via_script.push(t.elapsed());
    }
    println!(
        "BOUND through dhclient-script and the hook: median {}, p99 {}",
        ms(pct(&mut via_script, 0.5)),
        ms(pct(&mut via_script, 0.99))
    );

    // 4. The same with `mhr agent` running: the hook asks the agent for the
    // table instead of spawning a client. Beside it, dhclient-script with an
    // empty hook (one that only unsets `reason`, as ours does once it has
    // handled the event), so the hook's own cost is the difference.
    let cfg = d.join("agent.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{ interfaces: ["up*"], ra: false, track: null, state_file: "{}" }}"#,
            d.join("agent-state.json").display()
        ),
    )
    .unwrap();
    let mut agent_cmd = Command::new(mhr);
    agent_cmd
        .args(["agent", "-c"])
        .arg(&cfg)
        .env("MHR_DEFAULTS", "/dev/null");
    configure(&mut agent_cmd);
    let agent = support::Kill(agent_cmd.spawn().unwrap());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let empty = d.join("empty-script");
    std::fs::create_dir_all(d.join("empty.d")).unwrap();
    std::fs::write(d.join("empty.d/empty"), "unset reason\n").unwrap();
    std::fs::write(
        &empty,
        std::fs::read_to_string("/sbin/dhclient-script")
            .unwrap()
            .replace(
                "/etc/dhcp/dhclient-enter-hooks.d",
                &d.join("empty.d").display().to_string(),
            )
            .replace(
                "/etc/dhcp/dhclient-exit-hooks.d",
                &d.join("empty.d").display().to_string(),
            ),
    )
    .unwrap();
    let (mut with_agent, mut baseline) = (Vec::new(), Vec::new());
    let pids_before = last_pid();
    // Interleaved, so both see the same machine.
    for n in 0..UPLINKS {
        for (script, first, out) in [
            (&script, 2 * UPLINKS, &mut with_agent),
            (&empty, 3 * UPLINKS, &mut baseline),
        ] {
            let i = first + n;
            let mut cmd = Command::new("sh");
            cmd.arg(script);
            bound_env(&mut cmd, i, "BOUND");
            configure(&mut cmd);
            let t = Instant::now();
            assert!(cmd.status().unwrap().success());
            out.push(t.elapsed());
        }
    }
    let per_event = (last_pid() - pids_before) as f64 / (2 * UPLINKS) as f64;
    let (a, b) = (pct(&mut with_agent, 0.5), pct(&mut baseline, 0.5));
    println!(
        "with mhr agent running, BOUND through dhclient-script and the hook: median {}, p99 {}",
        ms(a),
        ms(pct(&mut with_agent, 0.99))
    );
    println!(
        "dhclient-script with an empty hook (baseline): median {}, p99 {}; the hook's own cost: {} ({per_event:.1} processes per event, both kinds)",
        ms(b),
        ms(pct(&mut baseline, 0.99)),
        ms(a.saturating_sub(b))
    );
    drop(agent);
    drop(server);
}
