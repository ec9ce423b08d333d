//! Binding the control socket: its directory made root-only (or refused
//! when someone else made it), a second agent refused by name, a stale
//! socket of a dead agent replaced.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a directory of root's that only root may enter (owner uid {uid}, mode {mode:o}): refusing to put the control socket there")]
    Unsafe { path: PathBuf, uid: u32, mode: u32 },
    #[error("another mhr agent answers at {path} (pid {pid})")]
    Running { path: PathBuf, pid: String },
}

/// Binds the control socket at `path`. Its directory is made 0700 when
/// missing; one that exists must be root's with no access for others
/// (a directory another user made could hold their socket or link).
pub fn listen(path: &Path) -> Result<UnixListener, ListenError> {
    let io_err = |p: &Path| {
        let p = p.to_owned();
        move |source| ListenError::Io { path: p, source }
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(up) = dir.parent() {
                std::fs::create_dir_all(up).map_err(io_err(up))?;
            }
            std::fs::create_dir(dir).map_err(io_err(dir))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(dir))?;
        }
        Err(e) => return Err(io_err(dir)(e)),
        Ok(m) => {
            let mode = m.mode() & 0o7777;
            if !m.is_dir() || m.uid() != nix::unistd::geteuid().as_raw() || mode & 0o077 != 0 {
                return Err(ListenError::Unsafe {
                    path: dir.to_owned(),
                    uid: m.uid(),
                    mode,
                });
            }
        }
    }
    match UnixStream::connect(path) {
        Ok(s) => {
            let pid = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
                .map(|c| c.pid().to_string())
                .unwrap_or_else(|_| "unknown".into());
            return Err(ListenError::Running {
                path: path.to_owned(),
                pid,
            });
        }
        // A socket nobody listens on: a dead agent's.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(io_err(path))?;
        }
        Err(_) => {}
    }
    let l = UnixListener::bind(path).map_err(io_err(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    l.set_nonblocking(true).map_err(io_err(path))?;
    Ok(l)
}
