//! `mhr-docs DIR`: man pages and shell completions of the one program
//! (under its three names), generated from the same clap definitions as
//! `--help` when the package is built: the program that starts on every
//! DHCP event carries neither the generators nor their output.

mod man;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use mhr::cli::{ClientArgs, MhrArgs, ServerArgs};

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: mhr-docs DIR (writes DIR/man and DIR/completions)");
        return ExitCode::from(2);
    };
    let run = || -> std::io::Result<()> {
        for f in man::write_man_pages(&dir.join("man"))? {
            println!("{}", f.display());
        }
        for f in write_completions(&dir.join("completions"))? {
            println!("{}", f.display());
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mhr-docs: {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// Writes bash, zsh and fish completions for each name into `dir`.
fn write_completions(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use clap_complete::Shell;
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for mut cmd in [
        ServerArgs::command(),
        ClientArgs::command(),
        MhrArgs::command(),
    ] {
        let name = cmd.get_name().to_owned();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            written.push(clap_complete::generate_to(shell, &mut cmd, &name, dir)?);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::man::write_man_pages;
    use super::*;

    #[test]
    fn man_pages_build() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_man_pages(dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "table_allocator_server.8",
            "table_allocator_client.8",
            "mhr.8",
            "mhr-dhclient-hook.8",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert!(!names.iter().any(|n| n == "mhr-help.8"), "{names:?}");
        let client = std::fs::read_to_string(dir.path().join("table_allocator_client.8")).unwrap();
        assert!(client.contains("destination"));
        for section in [
            ".SH EXIT STATUS",
            ".SH FILES",
            ".SH SEE ALSO",
            ".SH EXAMPLES",
        ] {
            assert!(client.contains(section), "{section}");
        }
        let status = std::fs::read_to_string(dir.path().join("mhr-status.8")).unwrap();
        // The synopsis names the command as typed, not the page.
        assert!(status.contains("\\fBmhr status\\fR"), "{status}");
        assert!(
            !status.contains("docs/"),
            "no paths relative to the source tree"
        );
        // Examples keep their lines.
        let top = std::fs::read_to_string(dir.path().join("mhr.8")).unwrap();
        assert!(top.contains(".SH EXAMPLES\n.nf\nmhr status "), "{top}");
        let config =
            std::fs::read_to_string(dir.path().join("table_allocator_server_config.json.5"))
                .unwrap();
        for k in mhr::server::config::KEYS {
            assert!(config.contains(&format!(".B {}", k.name)), "{}", k.name);
        }
    }

    #[test]
    fn completions_build() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_completions(dir.path()).unwrap();
        assert_eq!(files.len(), 9);
        let bash = std::fs::read_to_string(dir.path().join("mhr.bash")).unwrap();
        assert!(bash.contains("dhclient-hook"));
    }
}
