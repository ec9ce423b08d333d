//! The server's config file: the original keys in JSON with `//` and `/* */`
//! comments, plus additions with defaults. See `docs/config.md`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::addr::Family;
use crate::dgram::MAX_ABSTRACT_NAME;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/table_allocator_server_config.json";
pub const DEFAULT_DB_PATH: &str = "/var/lib/table-allocator/leases.db";
/// Bounds the bitmaps' memory (128 KiB per family at this size).
pub const MAX_NUM_TABLES: u32 = 1 << 20;

/// One documented config key: the source of the config man page, and the
/// list of keys the parser knows.
pub struct KeyDoc {
    pub name: &'static str,
    pub kind: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        name: "socket_path",
        kind: "string",
        default: "\"tas_socket\"",
        meaning: "Abstract socket name, 1 to 107 bytes; clients pass it with -d.",
    },
    KeyDoc {
        name: "table_offset",
        kind: "integer",
        default: "10000",
        meaning: "First table of each pool; at least 1.",
    },
    KeyDoc {
        name: "num_tables",
        kind: "integer",
        default: "1000",
        meaning: "Tables per family, 1 to 1048576. The range must stay within 32 bits and must not cover the kernel's tables 253-255 (default, main, local).",
    },
    KeyDoc {
        name: "table_timeout",
        kind: "integer",
        default: "3600",
        meaning: "Lease time in seconds, 1 to ten years.",
    },
    KeyDoc {
        name: "db_path",
        kind: "string",
        default: "\"/var/lib/table-allocator/leases.db\"",
        meaning: "The sqlite lease database; its directory is created. A database of the original server (table RtTables) is adopted on first start.",
    },
    KeyDoc {
        name: "do_syslog",
        kind: "bool",
        default: "false",
        meaning: "Log to syslog (facility daemon).",
    },
    KeyDoc {
        name: "log_path",
        kind: "string",
        default: "none",
        meaning: "Log to this file (appended) instead of stderr.",
    },
    KeyDoc {
        name: "addr_families",
        kind: "object",
        default: "{\"inet\": true, \"inet6\": true}",
        meaning: "Which pools exist: keys inet, inet6, unspec with values true or false; at least one must be true.",
    },
    KeyDoc {
        name: "allowed_uids",
        kind: "list of integers",
        default: "[]",
        meaning: "Uids besides root that may request and release.",
    },
    KeyDoc {
        name: "allowed_gids",
        kind: "list of integers",
        default: "[]",
        meaning: "Gids whose members may request and release.",
    },
    KeyDoc {
        name: "socket_padded",
        kind: "bool",
        default: "true",
        meaning: "Bind the NUL-padded abstract name, as the original does; only set false if every client uses the short form.",
    },
    KeyDoc {
        name: "metrics_path",
        kind: "string",
        default: "none",
        meaning: "Write Prometheus text-format metrics to this file (replaced atomically), for node_exporter's textfile collector.",
    },
    KeyDoc {
        name: "metrics_interval",
        kind: "integer",
        default: "15",
        meaning: "Seconds between metrics writes, 1 to 3600; the file is also written at start and at shutdown.",
    },
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} is not valid JSON: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config {path}: key {key:?}: {message}")]
    Key {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub socket_path: String,
    pub table_offset: u32,
    pub num_tables: u32,
    /// Seconds.
    pub table_timeout: u64,
    pub db_path: PathBuf,
    pub do_syslog: bool,
    pub log_path: Option<PathBuf>,
    pub families: Vec<Family>,
    pub allowed_uids: Vec<u32>,
    pub allowed_gids: Vec<u32>,
    /// Bind the NUL-padded abstract name, as the original does.
    pub socket_padded: bool,
    pub metrics_path: Option<PathBuf>,
    /// Seconds.
    pub metrics_interval: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            socket_path: crate::protocol::DEFAULT_SERVER_NAME.into(),
            table_offset: 10000,
            num_tables: 1000,
            table_timeout: 3600,
            db_path: DEFAULT_DB_PATH.into(),
            do_syslog: false,
            log_path: None,
            families: vec![Family::Inet, Family::Inet6],
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            socket_padded: true,
            metrics_path: None,
            metrics_interval: 15,
        }
    }
}

/// A parsed config and the warnings it produced (unknown keys).
#[derive(Debug)]
pub struct Loaded {
    pub config: ServerConfig,
    pub warnings: Vec<String>,
}

impl ServerConfig {
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
        let syntax = |message: String| ConfigError::Syntax {
            path: path.to_owned(),
            message,
        };
        let value = crate::jsonkeys::parse_json5(text).map_err(|e| syntax(e.for_people()))?;
        let Value::Object(obj) = value else {
            return Err(syntax("the top level must be an object".into()));
        };
        let r = Reader { path, obj: &obj };
        let mut warnings = Vec::new();
        for key in obj.keys() {
            if !KEYS.iter().any(|k| k.name == key) {
                warnings.push(format!(
                    "config {}: unknown key {key:?} ignored",
                    path.display()
                ));
            }
        }
        let d = ServerConfig::default();
        let socket_path = r.string("socket_path")?.unwrap_or(d.socket_path);
        if socket_path.is_empty()
            || socket_path.len() > MAX_ABSTRACT_NAME
            || socket_path.contains('\0')
        {
            return Err(r.bad(
                "socket_path",
                format!("must be 1 to {MAX_ABSTRACT_NAME} bytes without NUL"),
            ));
        }
        let table_offset = r.uint("table_offset")?.unwrap_or(d.table_offset as u64);
        let num_tables = r.uint("num_tables")?.unwrap_or(d.num_tables as u64);
        let table_timeout = r.uint("table_timeout")?.unwrap_or(d.table_timeout);
        if table_offset == 0 {
            return Err(r.bad(
                "table_offset",
                "must be at least 1 (table 0 is the kernel's unspec table)",
            ));
        }
        if num_tables == 0 || num_tables > MAX_NUM_TABLES as u64 {
            return Err(r.bad("num_tables", format!("must be 1 to {MAX_NUM_TABLES}")));
        }
        let last = table_offset + num_tables - 1;
        if last > u32::MAX as u64 {
            return Err(r.bad(
                "num_tables",
                format!("table_offset {table_offset} + num_tables {num_tables} leaves the 32-bit table range"),
            ));
        }
        if table_offset <= 255 && last >= 253 {
            return Err(r.bad(
                "table_offset",
                format!("the range {table_offset}..={last} covers the kernel's tables 253-255 (default, main, local)"),
            ));
        }
        if table_timeout == 0 {
            return Err(r.bad("table_timeout", "must be at least 1 second"));
        }
        // Deadlines are kept as Instants; keep them far from overflow.
        if table_timeout > 10 * 365 * 86400 {
            return Err(r.bad("table_timeout", "must be at most ten years"));
        }
        let families = match obj.get("addr_families") {
            None => d.families,
            Some(Value::Object(fams)) => {
                let mut out = Vec::new();
                for (name, v) in fams {
                    let family = Family::ALL
                        .into_iter()
                        .find(|f| f.name() == name)
                        .ok_or_else(|| {
                            r.bad(
                                "addr_families",
                                format!("unknown family {name:?} (inet, inet6, unspec)"),
                            )
                        })?;
                    match v {
                        Value::Bool(true) => out.push(family),
                        Value::Bool(false) => {}
                        _ => {
                            return Err(
                                r.bad(&format!("addr_families.{name}"), "must be true or false")
                            )
                        }
                    }
                }
                out.sort();
                out
            }
            Some(_) => return Err(r.bad("addr_families", "must be an object of booleans")),
        };
        if families.is_empty() {
            return Err(r.bad("addr_families", "enables no address family"));
        }
        let config = ServerConfig {
            socket_path,
            table_offset: table_offset as u32,
            num_tables: num_tables as u32,
            table_timeout,
            db_path: r.string("db_path")?.map(PathBuf::from).unwrap_or(d.db_path),
            do_syslog: r.boolean("do_syslog")?.unwrap_or(d.do_syslog),
            log_path: r.string("log_path")?.map(PathBuf::from),
            families,
            allowed_uids: r.ids("allowed_uids")?,
            allowed_gids: r.ids("allowed_gids")?,
            socket_padded: r.boolean("socket_padded")?.unwrap_or(d.socket_padded),
            metrics_path: r.string("metrics_path")?.map(PathBuf::from),
            metrics_interval: r.uint("metrics_interval")?.unwrap_or(d.metrics_interval),
        };
        if !(1..=3600).contains(&config.metrics_interval) {
            return Err(r.bad("metrics_interval", "must be 1 to 3600 seconds"));
        }
        if config
            .metrics_path
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(r.bad("metrics_path", "must not be empty"));
        }
        if config.db_path.as_os_str().is_empty() {
            return Err(r.bad("db_path", "must not be empty"));
        }
        Ok(Loaded { config, warnings })
    }
}

struct Reader<'a> {
    path: &'a Path,
    obj: &'a Map<String, Value>,
}

impl Reader<'_> {
    fn bad(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Key {
            path: self.path.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.bad(key, format!("must be a string, not {other}"))),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.bad(key, format!("must be true or false, not {other}"))),
        }
    }

    /// A whole, non-negative number; `86400.5`, `-1` and `"60"` are refused.
    fn uint(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                if let Some(u) = n.as_u64() {
                    return Ok(Some(u));
                }
                // json5 may hand whole numbers over as floats.
                match n.as_f64() {
                    Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => {
                        Ok(Some(f as u64))
                    }
                    _ => Err(self.bad(key, format!("must be a whole number >= 0, not {n}"))),
                }
            }
            Some(other) => Err(self.bad(key, format!("must be a number, not {other}"))),
        }
    }

    fn ids(&self, key: &str) -> Result<Vec<u32>, ConfigError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|u| u32::try_from(u).ok())
                        .ok_or_else(|| self.bad(key, format!("{v} is not a uid/gid")))
                })
                .collect(),
            Some(other) => Err(self.bad(key, format!("must be a list of numbers, not {other}"))),
        }
    }
}

#[cfg(test)]
mod tests;
