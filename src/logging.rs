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
    /// stderr; under systemd (JOURNAL_STREAM set) each line carries its
    /// journald priority (`<4>`) and no timestamp of its own.
    Stderr,
    File(&'a Path),
    Syslog {
        ident: &'static str,
    },
    /// Hooks: syslog (journald reads /dev/log) *and* stderr. Once dhclient
    /// has gone to the background its hooks' stderr is /dev/null, so syslog
    /// is where their lines survive; stderr is for a person running ifup.
    Hook {
        ident: &'static str,
    },
}

fn open_syslog(ident: &'static str) {
    // openlog keeps the pointer: the identity must live forever.
    let ident = CString::new(ident).expect("no NUL in ident");
    // SAFETY: a leaked, NUL-terminated identity outlives every syslog call.
    unsafe {
        libc::openlog(
            Box::leak(ident.into_boxed_c_str()).as_ptr(),
            libc::LOG_PID,
            libc::LOG_DAEMON,
        )
    };
}

fn priority(level: &Level) -> libc::c_int {
    match *level {
        Level::ERROR => libc::LOG_ERR,
        Level::WARN => libc::LOG_WARNING,
        Level::INFO => libc::LOG_INFO,
        _ => libc::LOG_DEBUG,
    }
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
        Target::Stderr if std::env::var_os("JOURNAL_STREAM").is_some() => builder
            .with_ansi(false)
            .without_time()
            .with_level(false)
            .with_target(false)
            .with_writer(Journal)
            .try_init(),
        Target::Stderr => {
            use std::io::IsTerminal;
            builder
                .with_ansi(io::stderr().is_terminal())
                .with_writer(io::stderr)
                .try_init()
        }
        Target::Hook { ident } => {
            use tracing_subscriber::fmt::writer::MakeWriterExt;
            open_syslog(ident);
            builder
                .with_ansi(false)
                .without_time()
                .with_target(false)
                .with_writer(Syslog.and(io::stderr))
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
            open_syslog(ident);
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

/// Where a line with its priority goes: syslog(3), or stderr read by
/// journald, where `<N>` before the line is its priority (systemd's
/// SyslogLevelPrefix) and journald adds the time.
#[derive(Clone, Copy)]
enum Sink {
    Syslog,
    Journal,
}

struct Syslog;
struct Journal;

/// One log line, buffered until the event is formatted, then sent whole.
pub struct Line {
    sink: Sink,
    priority: libc::c_int,
    buf: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        match self.sink {
            Sink::Syslog => {
                let text = String::from_utf8_lossy(&self.buf);
                let text = text.trim_end();
                if text.is_empty() {
                    return;
                }
                if let Ok(line) = CString::new(text.replace('\0', " ")) {
                    // SAFETY: a constant format and a NUL-terminated line.
                    unsafe { libc::syslog(self.priority, c"%s".as_ptr(), line.as_ptr()) };
                }
            }
            Sink::Journal => {
                let mut out = format!("<{}>", self.priority).into_bytes();
                out.extend_from_slice(&self.buf);
                let _ = io::stderr().lock().write_all(&out);
            }
        }
    }
}

fn line(sink: Sink, level: Option<&Level>) -> Line {
    Line {
        sink,
        priority: level.map_or(libc::LOG_INFO, priority),
        buf: Vec::new(),
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        line(Sink::Syslog, None)
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        line(Sink::Syslog, Some(meta.level()))
    }
}

impl<'a> MakeWriter<'a> for Journal {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        line(Sink::Journal, None)
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        line(Sink::Journal, Some(meta.level()))
    }
}
