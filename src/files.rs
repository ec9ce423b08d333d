//! Files replaced whole (the dnsmasq servers file, ifupdown stanzas,
//! metrics, the tracker's state): written beside the target under a hidden
//! name, then renamed over it, so dnsmasq, ifupdown, node_exporter and
//! `mhr status` never read half a file. The temporary name starts with a
//! dot and carries the writer's pid: ifupdown's source-directory and
//! node_exporter's `*.prom` skip it, and concurrent writers do not collide.
//! No fsync: these files live in /run or are rewritten on every change.

use std::io;
use std::path::Path;

pub fn replace(path: &Path, contents: &str) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
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
}
