//! Signalling a daemon through its pid file, without trusting the file.
//!
//! A pid file is a claim, not a fact: it may be stale (the pid now belongs
//! to another program), foreign (written by someone else) or absurd (`-1`
//! and `0` make `kill(2)` signal every process the caller may, or its whole
//! process group). Only a positive pid whose process runs the expected
//! program is signalled, and through a pidfd, so the pid cannot be reused
//! between the check and the signal.

use std::fmt;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

/// What became of a request to signal the process named in a pid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signalled {
    /// The expected program got the signal.
    Sent { pid: i32 },
    /// No pid file: the daemon is not running (or writes none).
    NoFile,
}

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("{path}: {text:?} is not a process id; nothing signalled")]
    NotAPid { path: PathBuf, text: String },
    #[error("{path}: pid {pid} no longer runs (stale pid file); nothing signalled")]
    Stale { path: PathBuf, pid: i32 },
    #[error("{path}: pid {pid} is {comm:?}, not {expected}; nothing signalled")]
    Foreign {
        path: PathBuf,
        pid: i32,
        comm: String,
        expected: Expected,
    },
    #[error("{path}: {what} pid {pid}: {source}")]
    Io {
        path: PathBuf,
        pid: i32,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The program names (`/proc/PID/comm`) a pid file may point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected(pub &'static [&'static str]);

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" or "))
    }
}

pub const DNSMASQ: Expected = Expected(&["dnsmasq"]);
pub const DHCLIENT: Expected = Expected(&["dhclient"]);

/// A pid file's content as a pid: one positive decimal number. `0`, `-1`
/// and other negatives are refused here, before they reach `kill(2)`.
pub fn parse_pid(text: &str) -> Option<i32> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<i32>().ok().filter(|p| *p > 0)
}

/// Sends `sig` to the process in `path` if it runs one of `expected`.
pub fn signal(path: &Path, expected: Expected, sig: Signal) -> Result<Signalled, PidFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Signalled::NoFile),
        Err(source) => {
            return Err(PidFileError::Read {
                path: path.into(),
                source,
            })
        }
    };
    let Some(pid) = parse_pid(&text) else {
        return Err(PidFileError::NotAPid {
            path: path.into(),
            text: text.trim().chars().take(40).collect(),
        });
    };
    let io = |what, source| PidFileError::Io {
        path: path.into(),
        pid,
        what,
        source,
    };
    // The pidfd pins the process: the comm we read is that of the process
    // we signal, even if the pid is reused meanwhile.
    let fd = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            return Err(PidFileError::Stale {
                path: path.into(),
                pid,
            })
        }
        Err(e) => return Err(io("open", e)),
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_owned())
        .unwrap_or_default();
    if !expected.0.contains(&comm.as_str()) {
        return Err(PidFileError::Foreign {
            path: path.into(),
            pid,
            comm,
            expected,
        });
    }
    match pidfd_send_signal(&fd, sig) {
        Ok(()) => Ok(Signalled::Sent { pid }),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(PidFileError::Stale {
            path: path.into(),
            pid,
        }),
        Err(e) => Err(io("signal", e)),
    }
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: a plain syscall; the returned descriptor is owned from here.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just handed us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn pidfd_send_signal(fd: &OwnedFd, sig: Signal) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_decimal_pids() {
        assert_eq!(parse_pid("123\n"), Some(123));
        assert_eq!(parse_pid(" 7 "), Some(7));
        for bad in ["-1", "0", "", "abc", "+5", "1 2", "99999999999", "-0"] {
            assert_eq!(parse_pid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn refuses_bad_files_without_signalling() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.pid");
        assert_eq!(
            signal(&f, DNSMASQ, Signal::SIGHUP).unwrap(),
            Signalled::NoFile
        );
        for text in ["-1\n", "0\n", "junk"] {
            std::fs::write(&f, text).unwrap();
            let e = signal(&f, DNSMASQ, Signal::SIGHUP).unwrap_err();
            assert!(matches!(e, PidFileError::NotAPid { .. }), "{e}");
        }
        // Our own pid is a live process, but not dnsmasq.
        std::fs::write(&f, std::process::id().to_string()).unwrap();
        let e = signal(&f, DNSMASQ, Signal::SIGHUP).unwrap_err();
        assert!(matches!(e, PidFileError::Foreign { .. }), "{e}");
        assert!(e.to_string().contains("not dnsmasq"), "{e}");
    }
}
