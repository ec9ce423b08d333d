//! The one program: `mhr`, and under the original names (links to it)
//! `table_allocator_server` and `table_allocator_client`. It only parses
//! and dispatches; every verb lives in `mhr::commands`.

use std::process::ExitCode;

use clap::Parser;
use tracing::{warn, Level};

use mhr::cli::MhrArgs;
use mhr::commands::{self, EXIT_ERROR};
use mhr::logging::{self, Target};

fn main() -> ExitCode {
    // Before parsing: the settings file fills in what the environment does
    // not say, for every entry point (hooks, udev, services, the client).
    let warnings = mhr::settings::load_into_env();
    let name = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    match name.as_str() {
        "table_allocator_server" => return commands::server::main(),
        "table_allocator_client" => return commands::client::main(),
        _ => {}
    }
    let args = MhrArgs::parse();
    let target = if commands::logs_to_syslog(&args.command) {
        Target::Hook { ident: "mhr" }
    } else {
        Target::Stderr
    };
    let _ = logging::init(target, Level::INFO);
    for w in warnings {
        warn!("{w}");
    }
    match commands::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mhr: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
