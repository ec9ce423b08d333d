//! Files replaced whole (the dnsmasq servers file, ifupdown stanzas,
//! metrics, the agent's and the tracker's state): written beside the target
//! under a hidden name, then renamed over it, so dnsmasq, ifupdown,
//! node_exporter and `mhr status` never read half a file. The temporary
//! name starts with a dot (ifupdown's source-directory and node_exporter's
//! `*.prom` skip it) and is new each time: created exclusively (O_EXCL,
//! which never follows a link), so a link or file planted in the directory
//! (node_exporter's, often writable by another user) redirects nothing.
//! No fsync: these files live in /run or are rewritten on every change.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static SERIAL: AtomicU64 = AtomicU64::new(0);

/// A fresh, hard-to-guess hidden name beside `path`.
fn temporary(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let mut seed = [0u8; 8];
    // getrandom(2): an unguessable part, so a planted name is a miss.
    // SAFETY: writes at most 8 bytes into `seed`.
    unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    Ok(path.with_file_name(format!(
        ".{}.{}.{}.{:016x}",
        name.to_string_lossy(),
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::Relaxed),
        u64::from_ne_bytes(seed)
    )))
}

pub fn replace(path: &Path, contents: &str) -> io::Result<()> {
    let tmp = temporary(path)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let written = f.write_all(contents.as_bytes());
    drop(f);
    written
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// Opens (creating when missing) a lock file without following a link at
/// its name: a link planted there is refused, not written through.
pub fn open_lock(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// A service's state file: `value` as pretty JSON, replaced whole, its
/// directory made first; failures logged (the service carries on).
pub fn write_state(path: &Path, value: &impl serde::Serialize) {
    let text = match serde_json::to_string_pretty(value) {
        Ok(t) => t,
        Err(e) => return tracing::warn!("cannot encode the state: {e}"),
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = replace(path, &text) {
        tracing::warn!(path = %path.display(), "cannot write the state file: {e}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servers");
        super::replace(&path, "a\n").unwrap();
        super::replace(&path, "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn planted_links_redirect_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep\n").unwrap();
        // The old temporary name, and the lock, planted as links.
        let path = dir.path().join("servers");
        let old = dir
            .path()
            .join(format!(".servers.tmp{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old).unwrap();
        super::replace(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let lock = dir.path().join("servers.lock");
        std::os::unix::fs::symlink(&victim, &lock).unwrap();
        assert!(super::open_lock(&lock).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
    }
}
