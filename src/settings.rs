//! The host's settings file, `/etc/default/multihomed-routing`: one place
//! for every entry point. `mhr` reads it itself (so udev, which runs `mhr`
//! directly, and the hook shims see the same settings), and systemd reads it
//! as the units' `EnvironmentFile`. Its format is therefore the part both
//! understand: `NAME=value` lines, the value optionally in single or double
//! quotes, `#` comments; no `export`, no expansion.

use std::path::Path;

pub const DEFAULTS_FILE: &str = "/etc/default/multihomed-routing";
/// Names a different settings file (tests, a second instance).
pub const DEFAULTS_ENV: &str = "MHR_DEFAULTS";

/// One `NAME=value` line (and whether it began with `export`), or why it
/// cannot be read; `None` for blank lines and comments.
fn parse_line(line: &str) -> Option<Result<(String, String, bool), String>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    // Tolerated for files written for the old shims, which sourced the file.
    let (line, exported) = match line.strip_prefix("export ") {
        Some(rest) => (rest.trim_start(), true),
        None => (line, false),
    };
    let Some((name, value)) = line.split_once('=') else {
        return Some(Err(format!("{line:?} is not NAME=value")));
    };
    if name.is_empty()
        || name.starts_with(|c: char| c.is_ascii_digit())
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Some(Err(format!("{name:?} is not a variable name")));
    }
    let unquoted = ['\'', '"'].iter().find_map(|q| {
        value
            .strip_prefix(*q)
            .and_then(|v| v.strip_suffix(*q))
            .filter(|v| !v.contains(*q))
    });
    Some(Ok((
        name.to_owned(),
        unquoted.unwrap_or(value).to_owned(),
        exported,
    )))
}

/// The settings in `text`, with a warning per line that could not be read
/// (or was read but would be refused by systemd).
pub fn parse(text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut vars = Vec::new();
    let mut warnings = Vec::new();
    for (n, line) in text.lines().enumerate() {
        match parse_line(line) {
            None => {}
            Some(Ok((name, value, exported))) => {
                if exported {
                    warnings.push(format!(
                        "line {}: drop `export` (systemd's EnvironmentFile refuses it)",
                        n + 1
                    ));
                }
                vars.push((name, value));
            }
            Some(Err(e)) => warnings.push(format!("line {}: {e}", n + 1)),
        }
    }
    (vars, warnings)
}

/// Reads the settings file (`MHR_DEFAULTS`, else the installed path) into
/// the environment, below what the environment already says: a variable set
/// by the caller wins over the file, the file over the built-in default.
/// Call first thing in `main`, before any thread starts. Returns warnings
/// to log once logging is up.
pub fn load_into_env() -> Vec<String> {
    let path = std::env::var_os(DEFAULTS_ENV)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| DEFAULTS_FILE.into());
    load_from(&path)
}

fn load_from(path: &Path) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![format!("{}: {e}", path.display())],
    };
    let (vars, warnings) = parse(&text);
    for (name, value) in vars {
        if !name.starts_with("MHR_") {
            continue;
        }
        if std::env::var_os(&name).is_none() {
            // SAFETY (edition 2021: safe fn): called before threads start.
            std::env::set_var(&name, value);
        }
    }
    warnings
        .into_iter()
        .map(|w| format!("{}: {w}", path.display()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_systemd_and_sh_both_read() {
        let (vars, warnings) = parse(
            "# comment\n\nMHR_A=plain\nMHR_B='ww*,enx*'\nMHR_C=\"x y\"\nMHR_D = spaced\nexport MHR_E=old\nnonsense\n1X=2\n",
        );
        assert_eq!(
            vars,
            [
                ("MHR_A".into(), "plain".into()),
                ("MHR_B".into(), "ww*,enx*".into()),
                ("MHR_C".into(), "x y".into()),
                ("MHR_E".into(), "old".into()),
            ]
        );
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings[0].contains("line 6"), "{warnings:?}");
        assert!(warnings[1].contains("line 7") && warnings[1].contains("export"));
    }

    #[test]
    fn the_shipped_file_has_no_warnings() {
        let (_, warnings) = parse(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/default/multihomed-routing"
        )));
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
