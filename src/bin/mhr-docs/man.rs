//! Man pages from the CLI definitions, with the sections clap does not
//! write: EXAMPLES (kept as written), EXIT STATUS, FILES, SEE ALSO.

use std::path::PathBuf;

use mhr::cli::{ClientArgs, MhrArgs, ServerArgs};

/// Writes a man page for each binary (and each `mhr` subcommand) into `dir`.
pub fn write_man_pages(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (cmd, section) in [
        (ServerArgs::command(), "8"),
        (ClientArgs::command(), "8"),
        (MhrArgs::command(), "8"),
    ] {
        let top = cmd.get_name().to_owned();
        // Examples go in their own section, kept line by line.
        let mut pages = vec![cmd.clone().after_help(None::<&str>)];
        pages.extend(cmd.get_subcommands().map(|sub| {
            // The page is mhr-status(8); its synopsis says `mhr status`.
            sub.clone()
                .name(format!("{top}-{}", sub.get_name()))
                .bin_name(format!("{top} {}", sub.get_name()))
        }));
        for page in pages {
            let name = page.get_name().to_owned();
            let path = dir.join(format!("{name}.{section}"));
            let mut out = Vec::new();
            clap_mangen::Man::new(page)
                .section(section)
                .render(&mut out)?;
            out.extend(extra_sections(&name).into_bytes());
            std::fs::write(&path, out)?;
            written.push(path);
        }
    }
    let path = dir.join("table_allocator_server_config.json.5");
    std::fs::write(&path, config_man_page())?;
    written.push(path);
    Ok(written)
}

/// The config file's page, from the key table the parser uses.
pub fn config_man_page() -> String {
    fn esc(text: &str) -> String {
        let t = text.replace('\\', "\\e").replace('-', "\\-");
        if t.starts_with('.') || t.starts_with('\'') {
            format!("\\&{t}")
        } else {
            t
        }
    }
    let mut out = format!(
        ".TH TABLE_ALLOCATOR_SERVER_CONFIG.JSON 5 \"\" \"multihomed-routing {}\"\n",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str(".SH NAME\ntable_allocator_server_config.json \\- configuration of table_allocator_server\n");
    out.push_str(".SH DESCRIPTION\n");
    out.push_str(&esc(
        "table_allocator_server reads /etc/table_allocator_server_config.json, or the file given with -c. \
         It is JSON with // and /* */ comments. Unknown keys are logged and ignored; \
         a wrong type or an impossible value stops the server at start with a message naming the key.",
    ));
    out.push_str("\n.SH KEYS\n");
    for k in mhr::server::config::KEYS {
        out.push_str(&format!(
            ".TP\n.B {}\n({}, default {})\n{}\n",
            esc(k.name),
            esc(k.kind),
            esc(k.default),
            esc(k.meaning)
        ));
    }
    out.push_str(".SH EXAMPLE\n.nf\n");
    for line in include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/server_config.json"
    ))
    .lines()
    {
        out.push_str(&esc(line));
        out.push('\n');
    }
    out.push_str(
        ".fi\n.SH SEE ALSO\ntable_allocator_server(8), table_allocator_client(8), mhr(8)\n",
    );
    out
}

fn esc(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// EXAMPLES, EXIT STATUS, FILES and SEE ALSO of one page.
fn extra_sections(page: &str) -> String {
    let mut out = String::new();
    let examples: &[&str] = match page {
        "mhr" => &[
            "mhr status                 what is managed; exit 4 when inconsistent",
            "mhr status \\-\\-json | jq '.addresses[] | {ifname, table, health}'",
            "mhr doctor \\-\\-repair        advice per problem; remove stale rules of ours",
            "mhr agent \\-\\-check             the agent's settings in effect",
            "mhr lab up && mhr lab status && mhr lab down",
        ],
        "mhr-status" => &[
            "mhr status",
            "mhr status \\-\\-prometheus > /var/lib/node_exporter/mhr.prom.tmp && mv /var/lib/node_exporter/mhr.prom.tmp /var/lib/node_exporter/mhr.prom",
        ],
        "table_allocator_client" => &[
            "table_allocator_client \\-4 \\-a 10.0.0.2 \\-n 255.255.255.0 \\-i eth1 \\-d tas_socket",
            "table_allocator_client \\-4 \\-a 10.0.0.2 \\-i eth1 \\-d tas_socket \\-r",
        ],
        _ => &[],
    };
    if !examples.is_empty() {
        out.push_str(".SH EXAMPLES\n.nf\n");
        for e in examples {
            out.push_str(e);
            out.push('\n');
        }
        out.push_str(".fi\n");
    }
    let exit: &[(&str, &str)] = match page {
        "table_allocator_server" => &[("0", "stopped by SIGTERM or SIGINT"), ("1", "the config is wrong, the database cannot be opened, or the socket name is taken (the message names the holder)")],
        "table_allocator_client" => &[("0", "a table was printed"), ("1", "no table could be had; 0 was printed"), ("2", "bad arguments, or the address is not on the interface"), ("3", "\\-r: no client was running; the lease was released at the server")],
        "mhr-dhclient-hook" => &[("0", "handled: the shim unsets reason"), ("1", "an error: dhclient\\-script configures the interface itself"), ("2", "TIMEOUT and the router does not answer"), ("3", "not ours: dhclient\\-script goes on")],
        "mhr-ifup-hook" => &[("0", "handled"), ("1", "an error: ifup fails the interface"), ("3", "not ours (dhcp, inet6, loopback): the shim exits 0")],
        "mhr-status" | "mhr-doctor" => &[("0", "consistent (status \\-\\-prometheus: whenever it could look)"), ("1", "an error"), ("4", "something is inconsistent")],
        _ => &[("0", "success"), ("1", "an error, described on stderr")],
    };
    out.push_str(".SH EXIT STATUS\n");
    for (code, meaning) in exit {
        out.push_str(&format!(".TP\n.B {code}\n{meaning}\n"));
    }
    out.push_str(".SH FILES\n");
    for (f, what) in [
        (
            "/etc/default/multihomed\\-routing",
            "settings (NAME=value), read by mhr and the systemd units",
        ),
        (
            "/etc/table_allocator_server_config.json",
            "the server's config",
        ),
        ("/var/lib/table\\-allocator/leases.db", "the lease database"),
        (
            "/run/multihomed\\-routing/dnsmasq\\-servers",
            "per\\-uplink name servers for dnsmasq",
        ),
        (
            "/etc/multihomed\\-routing/agent.json",
            "the agent's config (the tracker's settings in its track key)",
        ),
        (
            "/run/multihomed\\-routing/private/agent.sock",
            "the agent's control socket (root only)",
        ),
        (
            "/usr/share/doc/multihomed\\-routing/",
            "README, protocol, security model, status fields, differences from the original",
        ),
    ] {
        out.push_str(&format!(".TP\n.I {f}\n{what}\n"));
    }
    let others: Vec<String> = [
        "mhr(8)",
        "table_allocator_server(8)",
        "table_allocator_client(8)",
        "table_allocator_server_config.json(5)",
        "dnsmasq(8)",
        "dhclient\\-script(8)",
        "interfaces(5)",
    ]
    .iter()
    .filter(|p| !p.starts_with(&format!("{}(", esc(page))))
    .map(|p| p.to_string())
    .collect();
    out.push_str(&format!(".SH SEE ALSO\n{}\n", others.join(", ")));
    out
}
