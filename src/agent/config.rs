//! The agent's config file (json5, comments allowed; every key optional).
//! See docs/agent.md; `mhr agent --check` prints the effective values.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::patterns::glob_match;
use crate::track::config::TrackConfig;

pub const DEFAULT_AGENT_CONFIG: &str = "/etc/multihomed-routing/agent.json";
pub const DEFAULT_STATE_FILE: &str = "/run/multihomed-routing/agent.json";

#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// What to do with an uplink's routes in main.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MainMode {
    /// Copy into the address's table and take the uplink's default routes
    /// out of main (the default).
    Move,
    /// Copy into the table; leave main to a manager that owns it.
    Copy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Interfaces managed (`*` patterns); loopback never is.
    pub interfaces: Vec<String>,
    pub exclude: Vec<String>,
    /// Interfaces whose main routes are copied, not moved.
    pub copy_main: Vec<String>,
    /// Abstract names padded to 108 bytes, as the original's. (The
    /// server's name and uid come from the settings file.)
    pub padded: bool,
    /// The server's pool, when known: a table outside it is refused.
    pub tables: Option<(u32, u32)>,
    /// Lease requests sent before an address waits for the next pass.
    pub attempts: u32,
    pub retry: Duration,
    /// Giving up on moving an interface's default routes out of main after
    /// this many re-adds within `fight_window` (a manager fights back).
    pub fight_limit: u32,
    pub fight_window: Duration,
    /// RA handling in the agent (routes of router advertisements into the
    /// tables, out of main).
    pub ra: bool,
    /// The tracker: its settings (inline, or read from the file `track`
    /// names), or none.
    pub track: Option<TrackConfig>,
    /// Where the tracker's settings came from (for `--check`): "inline",
    /// a path, or nothing.
    pub track_source: TrackSource,
    /// Between two audits: the whole kernel read and compared with the
    /// model (drift is repaired at once from events; this catches what no
    /// event told).
    pub audit: Duration,
    pub state_file: PathBuf,
    /// MPTCP endpoints for the uplinks' addresses.
    pub mptcp: MptcpConfig,
    /// Which traffic uses which uplinks (`policies`, `rules`,
    /// `policy_base`).
    pub policies: crate::policy::Policies,
}

/// `mptcp`: an endpoint of the in-kernel path manager per uplink address.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MptcpConfig {
    pub enabled: bool,
    /// Interfaces whose endpoints are always `backup` (metered modems).
    pub backup: Vec<String>,
    /// Interfaces that never get an endpoint.
    pub never: Vec<String>,
    /// Interfaces whose endpoints also `signal` (hosts that serve MPTCP).
    pub signal: Vec<String>,
}

impl Default for MptcpConfig {
    fn default() -> MptcpConfig {
        MptcpConfig {
            enabled: true,
            backup: vec!["ww*".into()],
            never: Vec::new(),
            signal: Vec::new(),
        }
    }
}

impl MptcpConfig {
    pub fn is(&self, patterns: &[String], ifname: &str) -> bool {
        patterns.iter().any(|p| glob_match(p, ifname))
    }
}

/// Where the tracker's settings come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackSource {
    Off,
    Inline(serde_json::Value),
    File(PathBuf),
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            // Debian's names for wired, wireless, WWAN, USB and PPP uplinks.
            interfaces: ["eth*", "en*", "wl*", "ww*", "usb*", "ppp*"]
                .map(String::from)
                .to_vec(),
            exclude: Vec::new(),
            copy_main: Vec::new(),
            padded: true,
            tables: None,
            attempts: 5,
            retry: Duration::from_secs(2),
            fight_limit: 5,
            fight_window: Duration::from_secs(60),
            ra: true,
            track: Some(TrackConfig::default()),
            track_source: TrackSource::Inline(serde_json::json!({})),
            audit: Duration::from_secs(60),
            state_file: DEFAULT_STATE_FILE.into(),
            mptcp: MptcpConfig::default(),
            policies: crate::policy::Policies {
                base: crate::policy::config::DEFAULT_BASE,
                ..Default::default()
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    interfaces: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    copy_main: Option<Vec<String>>,
    padded: Option<bool>,
    tables: Option<[u32; 2]>,
    attempts: Option<u32>,
    retry_ms: Option<u64>,
    fight_limit: Option<u32>,
    fight_window_s: Option<u64>,
    ra: Option<bool>,
    track: Option<serde_json::Value>,
    audit_s: Option<u64>,
    state_file: Option<PathBuf>,
    mptcp: Option<MptcpConfig>,
    policies: Option<serde_json::Value>,
    rules: Option<serde_json::Value>,
    policy_base: Option<u32>,
}

impl AgentConfig {
    /// The config at `path`; a missing file at the default path means the
    /// defaults.
    pub fn load(path: &Path) -> Result<AgentConfig, AgentConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && path == Path::new(DEFAULT_AGENT_CONFIG) =>
            {
                Ok(AgentConfig::default())
            }
            Err(source) => Err(AgentConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, AgentConfigError> {
        let bad = |message: String| AgentConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let value = crate::jsonkeys::parse_json5(text).map_err(|e| bad(e.for_people()))?;
        // `track: null` (no tracker) is not the same as no `track` key.
        let track_key = value.as_object().and_then(|o| o.get("track")).cloned();
        let raw: Raw = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        let d = AgentConfig::default();
        let tables = match raw.tables {
            None => None,
            Some([a, b]) if a <= b && crate::protocol::check_table(a, None).is_ok() => Some((a, b)),
            Some([a, b]) => {
                return Err(bad(format!(
                    "key \"tables\": [{a}, {b}] is not a range of usable tables"
                )))
            }
        };
        let attempts = raw.attempts.unwrap_or(d.attempts);
        if !(1..=100).contains(&attempts) {
            return Err(bad(format!("key \"attempts\": {attempts} is not 1 to 100")));
        }
        let retry = match raw.retry_ms {
            None => d.retry,
            Some(ms) if (10..=60_000).contains(&ms) => Duration::from_millis(ms),
            Some(ms) => return Err(bad(format!("key \"retry_ms\": {ms} is not 10 to 60000"))),
        };
        let fight_window = match raw.fight_window_s {
            None => d.fight_window,
            Some(s) if (1..=86_400).contains(&s) => Duration::from_secs(s),
            Some(s) => {
                return Err(bad(format!(
                    "key \"fight_window_s\": {s} is not 1 to 86400"
                )))
            }
        };
        let audit = match raw.audit_s {
            None => d.audit,
            Some(s) if (5..=86_400).contains(&s) => Duration::from_secs(s),
            Some(s) => return Err(bad(format!("key \"audit_s\": {s} is not 5 to 86400"))),
        };
        let _ = raw.track;
        let track_source = match track_key {
            None => d.track_source.clone(),
            Some(serde_json::Value::Null | serde_json::Value::Bool(false)) => TrackSource::Off,
            Some(serde_json::Value::Bool(true)) => TrackSource::Inline(serde_json::json!({})),
            Some(serde_json::Value::String(p)) => TrackSource::File(p.into()),
            Some(v @ serde_json::Value::Object(_)) => TrackSource::Inline(v),
            Some(v) => {
                return Err(bad(format!(
                    "key \"track\": {v} is neither the tracker's settings, a file naming them, nor null"
                )))
            }
        };
        let track = match &track_source {
            TrackSource::Off => None,
            TrackSource::Inline(v) => Some(
                TrackConfig::from_value(v.clone(), path)
                    .map_err(|e| bad(format!("key \"track\": {e}")))?,
            ),
            TrackSource::File(p) => {
                Some(TrackConfig::load(p).map_err(|e| bad(format!("key \"track\": {e}")))?)
            }
        };
        let policies = crate::policy::Policies::parse(raw.policies, raw.rules, raw.policy_base)
            .map_err(bad)?;
        Ok(AgentConfig {
            interfaces: raw.interfaces.unwrap_or(d.interfaces),
            exclude: raw.exclude.unwrap_or(d.exclude),
            copy_main: raw.copy_main.unwrap_or(d.copy_main),
            padded: raw.padded.unwrap_or(d.padded),
            tables,
            attempts,
            retry,
            fight_limit: raw.fight_limit.unwrap_or(d.fight_limit).max(1),
            fight_window,
            ra: raw.ra.unwrap_or(d.ra),
            track,
            track_source,
            audit,
            state_file: raw.state_file.unwrap_or(d.state_file),
            mptcp: raw.mptcp.unwrap_or(d.mptcp),
            policies,
        })
    }

    /// Is `ifname` one of ours? Loopback never is.
    pub fn manages(&self, ifname: &str) -> bool {
        ifname != "lo"
            && self.interfaces.iter().any(|p| glob_match(p, ifname))
            && !self.exclude.iter().any(|p| glob_match(p, ifname))
    }

    pub fn main_mode(&self, ifname: &str) -> MainMode {
        if self.copy_main.iter().any(|p| glob_match(p, ifname)) {
            MainMode::Copy
        } else {
            MainMode::Move
        }
    }

    /// The values in effect, as the config file would say them.
    pub fn effective(&self) -> serde_json::Value {
        serde_json::json!({
            "interfaces": self.interfaces,
            "exclude": self.exclude,
            "copy_main": self.copy_main,
            "padded": self.padded,
            "tables": self.tables.map(|(a, b)| [a, b]),
            "attempts": self.attempts,
            "retry_ms": self.retry.as_millis() as u64,
            "fight_limit": self.fight_limit,
            "fight_window_s": self.fight_window.as_secs(),
            "ra": self.ra,
            "track": match &self.track_source {
                TrackSource::Off => serde_json::Value::Null,
                TrackSource::File(_) | TrackSource::Inline(_) => {
                    self.track.as_ref().map(|t| t.effective()).unwrap_or_default()
                }
            },
            "audit_s": self.audit.as_secs(),
            "mptcp": self.mptcp,
            "policies": self.policies.list,
            "rules": self.policies.written,
            "policy_base": self.policies.base,
            "state_file": self.state_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_patterns_and_bad_values() {
        let p = Path::new("agent.json");
        let c = AgentConfig::parse("{}", p).unwrap();
        assert_eq!(c, AgentConfig::default());
        assert!(c.manages("eth0") && c.manages("wwan0") && !c.manages("lo"));
        assert!(!c.manages("docker0"));
        let c = AgentConfig::parse(
            r#"{ // comments are fine
                interfaces: ["*"], exclude: ["veth*"], copy_main: ["wl*"] }"#,
            p,
        )
        .unwrap();
        assert!(c.manages("wan1") && !c.manages("veth3") && !c.manages("lo"));
        assert_eq!(c.main_mode("wlan0"), MainMode::Copy);
        assert_eq!(c.main_mode("wan1"), MainMode::Move);
        for (text, key) in [
            (r#"{"tables": [255, 300]}"#, "tables"),
            (r#"{"tables": [300, 200]}"#, "tables"),
            (r#"{"attempts": 0}"#, "attempts"),
            (r#"{"retry_ms": 1}"#, "retry_ms"),
            (r#"{"no_such_key": 1}"#, "no_such_key"),
            (r#"{"ra": true, "ra": false}"#, "ra"),
        ] {
            let e = AgentConfig::parse(text, p).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        // The shipped file says the defaults; the reference lists every key.
        let shipped = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/agent/agent.json"
        ));
        assert_eq!(
            AgentConfig::parse(shipped, p).unwrap(),
            AgentConfig::default()
        );
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/agent.md"));
        let keys = c.effective();
        for key in keys.as_object().unwrap().keys() {
            assert!(
                shipped.contains(&format!("\"{key}\"")),
                "{key} not in the shipped config"
            );
            assert!(
                doc.contains(&format!("| `{key}` |")),
                "{key} not in docs/agent.md"
            );
        }
        // What --check prints reads back as the same config.
        let c = AgentConfig::parse(
            r#"{"tables": [10000, 10063], "track": {"interval_ms": 300}}"#,
            p,
        )
        .unwrap();
        let again = AgentConfig::parse(&c.effective().to_string(), p).unwrap();
        assert_eq!(c.track, again.track);
        assert_eq!(c.tables, again.tables);
        // The tracker off, or its settings in a file of their own.
        assert!(AgentConfig::parse(r#"{"track": null}"#, p)
            .unwrap()
            .track
            .is_none());
        let e = AgentConfig::parse(r#"{"track": "/nonexistent/track.json"}"#, p).unwrap_err();
        assert!(e.to_string().contains("track"), "{e}");
        let e = AgentConfig::parse(r#"{"track": {"interval_ms": 0}}"#, p).unwrap_err();
        assert!(e.to_string().contains("interval_ms"), "{e}");
    }
}
