//! `table_allocator_server -c CONFIG`: leases routing-table numbers (the
//! multi-call binary's entry point under that name).

use anyhow::Context;
use clap::Parser;
use tracing::{info, warn, Level};

use crate::cli::ServerArgs;
use crate::logging::{self, Target};
use crate::server::config::ServerConfig;
use crate::server::{self, Server};

/// The program, as `table_allocator_server`.
pub fn main() -> std::process::ExitCode {
    match run(ServerArgs::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: ServerArgs) -> anyhow::Result<()> {
    let loaded = ServerConfig::load(&args.config)?;
    let config = loaded.config;
    let level = if args.verbose {
        Level::DEBUG
    } else {
        Level::INFO
    };
    let target = if args.syslog || config.do_syslog {
        Target::Syslog {
            ident: "table_allocator_server",
        }
    } else if let Some(path) = &config.log_path {
        Target::File(path)
    } else {
        Target::Stderr
    };
    logging::init(target, level)?;
    for w in loaded.warnings {
        warn!("{w}");
    }
    if let Some(dir) = config.db_path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create database directory {}", dir.display()))?;
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let server = Server::open(config.clone())?;
        let socket = match crate::dgram::bind_abstract(&config.socket_path, config.socket_padded) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                anyhow::bail!("{}", name_taken(&config.socket_path))
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot bind abstract socket @{}", config.socket_path)
                })
            }
        };
        info!(
            socket = %config.socket_path,
            offset = config.table_offset,
            tables = config.num_tables,
            timeout = config.table_timeout,
            families = ?config.families.iter().map(|f| f.name()).collect::<Vec<_>>(),
            "table allocator server ready"
        );
        server::run(socket, server, crate::shutdown::signal()).await?;
        Ok(())
    })
}

/// Abstract names carry no permissions: whoever holds ours could be another
/// server or an impostor answering clients. Refuse, and name the holder.
fn name_taken(name: &str) -> String {
    let holders = crate::dgram::holders_of(name);
    let who = if holders.is_empty() {
        "a process not visible from here (another pid namespace?)".to_owned()
    } else {
        holders
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "abstract socket @{name} is already bound by {who}: another table_allocator_server, \
         or a process impersonating one (any user can bind an abstract name). \
         Not starting; stop that process (check `ss -xlp | grep {name}`) and start again"
    )
}
