//! The tracker's config file (docs/track.md): JSON with comments. Unknown
//! keys and impossible values are errors naming the key.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::addr::Family;
use crate::track::doubt::TimingConfig;
use crate::track::health::Thresholds;

/// Bytes of payload in an ICMP echo probe.
pub const ICMP_PAYLOAD: usize = 16;

pub const DEFAULT_TRACK_CONFIG: &str = "/etc/multihomed-routing/track.json";
pub const DEFAULT_STATE_FILE: &str = "/run/multihomed-routing/track-state.json";
pub const DEFAULT_SCRIPTS_DIR: &str = "/etc/multihomed-routing/track.d";
/// Between the per-address `to` rules (20000) and the come-up order of the
/// `iif lo` rules (91000): bound sockets and on-link destinations keep
/// their own tables; everything else unbound from this host follows the
/// tracker's choice.
pub const DEFAULT_UNBOUND_PRIORITY: u32 = 50000;

#[derive(Debug, thiserror::Error)]
pub enum TrackConfigError {
    #[error("cannot read tracker config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tracker config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// What a probe asks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Target {
    /// ICMP echo (ICMPv6 for IPv6 targets).
    Icmp { address: IpAddr },
    /// A TCP connect; a refusal (RST) counts as an answer, since it came
    /// back over the uplink.
    Tcp { address: IpAddr, port: u16 },
    /// A DNS query to a server; any answer to it counts.
    Dns {
        address: IpAddr,
        #[serde(default = "default_dns_name")]
        name: String,
    },
}

fn default_dns_name() -> String {
    ".".into()
}

impl Target {
    pub fn address(&self) -> IpAddr {
        match self {
            Target::Icmp { address }
            | Target::Tcp { address, .. }
            | Target::Dns { address, .. } => *address,
        }
    }

    pub fn family(&self) -> Family {
        crate::addr::family_of(&self.address())
    }

    /// Bytes a probe costs on the wire, both ways, IP headers included
    /// (a DNS answer is estimated at twice its query).
    pub fn cost(&self) -> u64 {
        let ip = if self.family() == Family::Inet6 {
            40
        } else {
            20
        };
        match self {
            Target::Icmp { .. } => 2 * (ip + 8 + ICMP_PAYLOAD as u64),
            // SYN and SYN-ACK with options, then our RST.
            Target::Tcp { .. } => 2 * (ip + 40) + ip + 20,
            Target::Dns { name, .. } => {
                let query = 12 + name.len() as u64 + 2 + 4;
                2 * (ip + 8) + 3 * query
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Icmp { address } => format!("icmp {address}"),
            Target::Tcp { address, port } => {
                format!("tcp {}", std::net::SocketAddr::new(*address, *port))
            }
            Target::Dns { address, name } => format!("dns {address} {name}"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    interfaces: Option<Vec<String>>,
    targets: Option<Vec<Target>>,
    interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    adaptive: Option<bool>,
    rto_min_ms: Option<u64>,
    burst_interval_ms: Option<u64>,
    down_silence_ms: Option<u64>,
    passive: Option<bool>,
    passive_after_ms: Option<u64>,
    down_after: Option<u32>,
    up_after: Option<u32>,
    window: Option<usize>,
    degraded_loss_pct: Option<f64>,
    degraded_rtt_ms: Option<f64>,
    preference: Option<Vec<String>>,
    budget_bytes_hour: Option<Vec<Budget>>,
    unbound_priority: Option<u32>,
    scripts_dir: Option<PathBuf>,
    script_timeout_ms: Option<u64>,
    state_file: Option<PathBuf>,
}

/// The shipped probe budget for cellular uplinks (`ww*`), bytes an hour.
pub const DEFAULT_WWAN_BUDGET: u64 = 200_000;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Interface pattern (`*` wildcard).
    pub interfaces: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrackConfig {
    /// Which managed uplinks are tracked (patterns).
    pub interfaces: Vec<String>,
    pub targets: Vec<Target>,
    /// Between two probes of one uplink (they rotate over the targets).
    pub interval: Duration,
    pub timeout: Duration,
    /// Probe deadlines and bursts (`timing.timeout` is `timeout`).
    pub timing: TimingConfig,
    /// Read the host's TCP connections per uplink (the passive signal).
    pub passive: bool,
    /// Connections stalled this long to two or more remotes, while probes
    /// are answered: degraded.
    pub passive_after: Duration,
    pub thresholds: Thresholds,
    pub preference: Vec<String>,
    pub budgets: Vec<Budget>,
    pub unbound_priority: u32,
    pub scripts_dir: PathBuf,
    pub script_timeout: Duration,
    pub state_file: PathBuf,
}

impl TrackConfig {
    /// The settings in effect, under the config file's own keys (what
    /// `mhr agent --check` prints under `track`).
    pub fn effective(&self) -> serde_json::Value {
        let th = &self.thresholds;
        serde_json::json!({
            "interfaces": self.interfaces,
            "targets": self.targets,
            "interval_ms": self.interval.as_millis() as u64,
            "timeout_ms": self.timeout.as_millis() as u64,
            "adaptive": self.timing.adaptive,
            "rto_min_ms": self.timing.rto_min.as_millis() as u64,
            "burst_interval_ms": self.timing.burst_interval.as_millis() as u64,
            "down_silence_ms": th.down_silence.as_millis() as u64,
            "passive": self.passive,
            "passive_after_ms": self.passive_after.as_millis() as u64,
            "down_after": th.down_after,
            "up_after": th.up_after,
            "window": th.window,
            "degraded_loss_pct": th.degraded_loss_pct,
            "degraded_rtt_ms": th.degraded_rtt_ms,
            "preference": self.preference,
            "budget_bytes_hour": self.budgets,
            "unbound_priority": self.unbound_priority,
            "scripts_dir": self.scripts_dir,
            "script_timeout_ms": self.script_timeout.as_millis() as u64,
            "state_file": self.state_file,
        })
    }
}

impl Default for TrackConfig {
    fn default() -> Self {
        let icmp = |a: &str| Target::Icmp {
            address: a.parse().expect("literal"),
        };
        TrackConfig {
            interfaces: vec!["*".into()],
            targets: vec![
                icmp("1.1.1.1"),
                icmp("8.8.8.8"),
                icmp("2606:4700:4700::1111"),
                icmp("2001:4860:4860::8888"),
            ],
            // With the bursts' fifth on top, 7,200 probes an hour at most:
            // the same bytes as the tracker that probed every 500 ms.
            interval: Duration::from_millis(600),
            timeout: Duration::from_millis(1000),
            timing: TimingConfig {
                adaptive: true,
                rto_min: Duration::from_millis(100),
                timeout: Duration::from_millis(1000),
                burst_interval: Duration::from_millis(100),
            },
            passive: true,
            passive_after: Duration::from_secs(3),
            thresholds: Thresholds::default(),
            preference: Vec::new(),
            // Cellular modems (Debian names them ww*) are metered: 200 kB/h
            // a family instead of 634 kB/h (IPv4) and 922 kB/h (IPv6), at
            // the cost of a slower steady pace (about 1.9 s between probes;
            // doubt still bursts).
            budgets: vec![Budget {
                interfaces: "ww*".into(),
                bytes: DEFAULT_WWAN_BUDGET,
            }],
            unbound_priority: DEFAULT_UNBOUND_PRIORITY,
            scripts_dir: DEFAULT_SCRIPTS_DIR.into(),
            script_timeout: Duration::from_secs(10),
            state_file: DEFAULT_STATE_FILE.into(),
        }
    }
}

impl TrackConfig {
    /// The config at `path`; a missing file at the default path means the
    /// defaults.
    pub fn load(path: &Path) -> Result<TrackConfig, TrackConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && path == Path::new(DEFAULT_TRACK_CONFIG) =>
            {
                Ok(TrackConfig::default())
            }
            Err(source) => Err(TrackConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<TrackConfig, TrackConfigError> {
        let value = crate::jsonkeys::parse_json5(text).map_err(|e| TrackConfigError::Invalid {
            path: path.to_owned(),
            message: e.for_people(),
        })?;
        Self::from_value(value, path)
    }

    /// The config from JSON already read (the agent's `track` key).
    pub fn from_value(
        value: serde_json::Value,
        path: &Path,
    ) -> Result<TrackConfig, TrackConfigError> {
        let bad = |message: String| TrackConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let raw: Raw = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        let d = TrackConfig::default();
        let ms = |key: &str, v: Option<u64>, default: Duration, max: u64| match v {
            None => Ok(default),
            Some(v) if (1..=max).contains(&v) => Ok(Duration::from_millis(v)),
            Some(v) => Err(bad(format!("key \"{key}\": {v} is not 1 to {max} ms"))),
        };
        let interval = ms("interval_ms", raw.interval_ms, d.interval, 3_600_000)?;
        let timeout = ms("timeout_ms", raw.timeout_ms, d.timeout, 60_000)?;
        let timing = TimingConfig {
            adaptive: raw.adaptive.unwrap_or(d.timing.adaptive),
            rto_min: ms("rto_min_ms", raw.rto_min_ms, d.timing.rto_min, 60_000)?.min(timeout),
            timeout,
            burst_interval: ms(
                "burst_interval_ms",
                raw.burst_interval_ms,
                d.timing.burst_interval,
                60_000,
            )?,
        };
        let down_silence = match raw.down_silence_ms {
            None => d.thresholds.down_silence,
            Some(v) if v <= 60_000 => Duration::from_millis(v),
            Some(v) => {
                return Err(bad(format!(
                    "key \"down_silence_ms\": {v} is not 0 to 60000 ms"
                )))
            }
        };
        let script_timeout = ms(
            "script_timeout_ms",
            raw.script_timeout_ms,
            d.script_timeout,
            3_600_000,
        )?;
        let th = Thresholds {
            down_after: raw.down_after.unwrap_or(d.thresholds.down_after),
            up_after: raw.up_after.unwrap_or(d.thresholds.up_after),
            window: raw.window.unwrap_or(d.thresholds.window),
            degraded_loss_pct: raw
                .degraded_loss_pct
                .unwrap_or(d.thresholds.degraded_loss_pct),
            degraded_rtt_ms: raw.degraded_rtt_ms.unwrap_or(d.thresholds.degraded_rtt_ms),
            down_silence,
        };
        for (key, v) in [("down_after", th.down_after), ("up_after", th.up_after)] {
            if !(1..=1000).contains(&v) {
                return Err(bad(format!("key \"{key}\": {v} is not 1 to 1000 probes")));
            }
        }
        if !(1..=10_000).contains(&th.window) {
            return Err(bad(format!(
                "key \"window\": {} is not 1 to 10000 probes",
                th.window
            )));
        }
        if !(0.0..=100.0).contains(&th.degraded_loss_pct) {
            return Err(bad("key \"degraded_loss_pct\": must be 0 to 100".into()));
        }
        if !(th.degraded_rtt_ms > 0.0 && th.degraded_rtt_ms.is_finite()) {
            return Err(bad("key \"degraded_rtt_ms\": must be above 0".into()));
        }
        let targets = raw.targets.unwrap_or(d.targets);
        if targets.is_empty() {
            return Err(bad("key \"targets\": at least one target is needed".into()));
        }
        for t in &targets {
            let a = t.address();
            if a.is_unspecified() || a.is_loopback() || a.is_multicast() {
                return Err(bad(format!(
                    "key \"targets\": {} cannot be probed over an uplink",
                    t.describe()
                )));
            }
            if let Target::Tcp { port: 0, .. } = t {
                return Err(bad("key \"targets\": a tcp target needs a port".into()));
            }
        }
        let unbound_priority = raw.unbound_priority.unwrap_or(d.unbound_priority);
        if !(20001..=90999).contains(&unbound_priority) {
            return Err(bad(format!(
                "key \"unbound_priority\": {unbound_priority} must lie between the per-address rules (20000) and the iif lo rules (91000)"
            )));
        }
        Ok(TrackConfig {
            interfaces: raw.interfaces.unwrap_or(d.interfaces),
            targets,
            interval,
            timeout,
            timing,
            passive: raw.passive.unwrap_or(d.passive),
            passive_after: ms(
                "passive_after_ms",
                raw.passive_after_ms,
                d.passive_after,
                3_600_000,
            )?,
            thresholds: th,
            preference: raw.preference.unwrap_or_default(),
            budgets: raw.budget_bytes_hour.unwrap_or(d.budgets),
            unbound_priority,
            scripts_dir: raw.scripts_dir.unwrap_or(d.scripts_dir),
            script_timeout,
            state_file: raw.state_file.unwrap_or(d.state_file),
        })
    }

    pub fn tracks(&self, ifname: &str) -> bool {
        self.interfaces
            .iter()
            .any(|p| crate::patterns::glob_match(p, ifname))
    }

    pub fn budget_for(&self, ifname: &str) -> Option<u64> {
        self.budgets
            .iter()
            .find(|b| crate::patterns::glob_match(&b.interfaces, ifname))
            .map(|b| b.bytes)
    }

    pub fn targets_for(&self, family: Family) -> Vec<Target> {
        self.targets
            .iter()
            .filter(|t| t.family() == family)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests;
