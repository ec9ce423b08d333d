//! The operator's event scripts (run-parts names, a time limit, MHR_*
//! variables), run in the background on state changes and moves.

use std::path::Path;

use tracing::warn;

use crate::track::health::Health;

use super::*;

impl Tracker {
    /// Runs the operator's scripts in name order (like run-parts), in the
    /// background, each limited to `script_timeout`.
    pub(super) fn run_scripts(&self, env: Vec<(String, String)>) {
        let dir = self.cfg.scripts_dir.clone();
        let limit = self.cfg.script_timeout;
        tokio::spawn(async move {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return;
            };
            let mut scripts: Vec<_> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| is_executable(p))
                .collect();
            scripts.sort();
            for script in scripts {
                let mut cmd = tokio::process::Command::new(&script);
                cmd.envs(env.iter().map(|(k, v)| (k, v)))
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true);
                match tokio::time::timeout(limit, cmd.output()).await {
                    Ok(Ok(out)) if out.status.success() => {}
                    Ok(Ok(out)) => warn!(
                        script = %script.display(),
                        "event script failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                    Ok(Err(e)) => warn!(script = %script.display(), "cannot run event script: {e}"),
                    Err(_) => {
                        warn!(script = %script.display(), "event script killed after {} ms", limit.as_millis())
                    }
                }
            }
        });
    }
}

pub(super) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    // run-parts' rule: skip editor backups and package leftovers.
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    plain
        && std::fs::metadata(path)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
}

pub(super) fn uplink_env(id: &UplinkId, h: &Health) -> Vec<(String, String)> {
    vec![
        ("MHR_IFNAME".into(), id.ifname.clone()),
        ("MHR_FAMILY".into(), id.family.name().into()),
        ("MHR_ADDRESS".into(), id.address.to_string()),
        ("MHR_TABLE".into(), id.table.to_string()),
        ("MHR_STATE".into(), h.state.name().into()),
        (
            "MHR_RTT_MS".into(),
            h.rtt_ms.map(|r| format!("{r:.1}")).unwrap_or_default(),
        ),
        ("MHR_LOSS_PCT".into(), format!("{:.1}", h.loss_pct)),
    ]
}
