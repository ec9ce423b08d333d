//! Logging set-up shared by the binaries: stderr by default, a file, or
//! syslog. Machine output stays on stdout; logs never go there.

use std::ffi::CString;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

pub enum Target<'a> {
    Stderr,
    File(&'a Path),
    Syslog { ident: &'static str },
}

/// Installs the global subscriber. `RUST_LOG` (a level name: error, warn,
/// info, debug, trace, off) overrides `default_level`. A plain level rather
/// than env-filter directives keeps the daemons small: the regex engine
/// behind directives doubled the server's resident code.
pub fn init(target: Target<'_>, default_level: Level) -> io::Result<()> {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::from_level(default_level));
    let builder = tracing_subscriber::fmt().with_max_level(filter);
    let result = match target {
        Target::Stderr => {
            use std::io::IsTerminal;
            builder
                .with_ansi(io::stderr().is_terminal())
                .with_writer(io::stderr)
                .try_init()
        }
        Target::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("log file {}: {e}", path.display()))
                })?;
            builder
                .with_ansi(false)
                .with_writer(Arc::new(file))
                .try_init()
        }
        Target::Syslog { ident } => {
            // openlog keeps the pointer: the identity must live forever.
            let ident = CString::new(ident).expect("no NUL in ident");
            unsafe {
                libc::openlog(
                    Box::leak(ident.into_boxed_c_str()).as_ptr(),
                    libc::LOG_PID,
                    libc::LOG_DAEMON,
                )
            };
            builder
                .with_ansi(false)
                .without_time()
                .with_level(false)
                .with_target(false)
                .with_writer(Syslog)
                .try_init()
        }
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
    Ok(())
}

struct Syslog;

pub struct SyslogLine {
    priority: libc::c_int,
    buf: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        if let Ok(line) = CString::new(text.replace('\0', " ")) {
            unsafe { libc::syslog(self.priority, c"%s".as_ptr(), line.as_ptr()) };
        }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine;
    fn make_writer(&'a self) -> SyslogLine {
        SyslogLine {
            priority: libc::LOG_INFO,
            buf: Vec::new(),
        }
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine {
        let priority = match *meta.level() {
            Level::ERROR => libc::LOG_ERR,
            Level::WARN => libc::LOG_WARNING,
            Level::INFO => libc::LOG_INFO,
            _ => libc::LOG_DEBUG,
        };
        SyslogLine {
            priority,
            buf: Vec::new(),
        }
    }
}
