//! The manual, generated from the command line's own clap definitions ([`crate::cli::Cli`]), so
//! it cannot differ from `--help`: one page per command for `man --dir DIR`
//! (`doltgres-sidecar.1`, `doltgres-sidecar-run.1`, `doltgres-sidecar-backups-list.1`, ...), and
//! the whole manual as one page for `man`: the program's page, then a section per command with
//! its synopsis, description and options. Pages name each other as `doltgres-sidecar-run(1)`;
//! every page named is one `man --dir` writes. clap's `help` command is left out, as `--help`
//! says the same.

use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::Man;

use crate::cli::{Cli, VERSION};

/// One manual page.
pub struct Page {
    /// Its file name: `doltgres-sidecar-run.1`.
    pub file: String,
    /// roff.
    pub text: Vec<u8>,
}

/// The command line, built (every command knows its full name), without clap's `help` command.
fn command() -> clap::Command {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    command
}

fn man(command: clap::Command) -> Man {
    Man::new(command).source(format!("doltgres-sidecar {VERSION}"))
}

/// The commands under `command`, depth first, hidden ones left out.
fn commands(command: &clap::Command) -> Vec<clap::Command> {
    let mut all = Vec::new();
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        all.push(sub.clone());
        all.extend(commands(sub));
    }
    all
}

/// Every page: the program's, then each command's.
pub fn pages() -> io::Result<Vec<Page>> {
    let top = command();
    std::iter::once(top.clone())
        .chain(commands(&top))
        .map(|command| {
            let page = man(command);
            let mut text = Vec::new();
            page.render(&mut text)?;
            Ok(Page {
                file: page.get_filename(),
                text,
            })
        })
        .collect()
}

/// Writes every page into `dir` (made if missing); the paths written.
pub fn write_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    pages()?
        .into_iter()
        .map(|page| {
            let path = dir.join(&page.file);
            std::fs::write(&path, &page.text)?;
            Ok(path)
        })
        .collect()
}

/// The whole manual as one page.
pub fn manual() -> io::Result<Vec<u8>> {
    let top = command();
    let mut text = Vec::new();
    man(top.clone()).render(&mut text)?;
    for command in commands(&top) {
        let name = command
            .get_bin_name()
            .unwrap_or(command.get_name())
            .to_string();
        text.extend_from_slice(format!(".SH \"{}\"\n", name.replace('-', "\\-")).as_bytes());
        let page = man(command.clone());
        let mut sections = Vec::new();
        page.render_synopsis_section(&mut sections)?;
        page.render_description_section(&mut sections)?;
        if command.get_arguments().any(|a| !a.is_hide_set()) {
            page.render_options_section(&mut sections)?;
        }
        if command.has_subcommands() {
            page.render_subcommands_section(&mut sections)?;
        }
        // Sections of the command's page become subsections of its section here; the string
        // definitions every rendering starts with are already at the top.
        for line in String::from_utf8_lossy(&sections).lines() {
            if line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq") {
                continue;
            }
            let line = match line.strip_prefix(".SH ") {
                Some(heading) => format!(".SS {heading}"),
                None => line.to_string(),
            };
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
    }
    Ok(text)
}

/// The pages a roff text refers to: every `name(1)`.
pub fn references(text: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(text).replace("\\-", "-");
    let mut names: Vec<String> = text
        .match_indices("(1)")
        .filter_map(|(at, _)| {
            let start = text[..at]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .map_or(0, |i| i + 1);
            let name = &text[start..at];
            name.starts_with("doltgres-sidecar")
                .then(|| format!("{name}.1"))
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_named_is_written() {
        let pages = pages().unwrap();
        let files: Vec<&str> = pages.iter().map(|p| p.file.as_str()).collect();
        for name in [
            "doltgres-sidecar.1",
            "doltgres-sidecar-run.1",
            "doltgres-sidecar-check-config.1",
            "doltgres-sidecar-backups.1",
            "doltgres-sidecar-backups-list.1",
        ] {
            assert!(files.contains(&name), "{name} missing from {files:?}");
        }
        assert!(!files.iter().any(|f| f.contains("help")), "{files:?}");
        let manual = manual().unwrap();
        let mut named = references(&manual);
        for page in &pages {
            named.extend(references(&page.text));
        }
        assert!(named.len() > 10, "{named:?}");
        for name in named {
            assert!(
                files.contains(&name.as_str()),
                "{name} is named, not written"
            );
        }
    }

    #[test]
    fn the_manual_holds_every_command_and_option() {
        let manual = String::from_utf8(manual().unwrap()).unwrap();
        let top = command();
        for command in commands(&top) {
            let name = command.get_bin_name().unwrap().replace('-', "\\-");
            assert!(
                manual.contains(&format!(".SH \"{name}\"")),
                "no section for {name}"
            );
            for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    let flag = format!("\\-\\-{}", long.replace('-', "\\-"));
                    assert!(manual.contains(&flag), "{name}: {flag} missing");
                }
            }
        }
        assert_eq!(manual.matches(".TH ").count(), 1, "one page");
    }

    #[test]
    fn references_are_read_from_roff() {
        let text = b"see doltgres\\-sidecar\\-run(1) and doltgres\\-sidecar(1), not ls(1)";
        assert_eq!(
            references(text),
            ["doltgres-sidecar-run.1", "doltgres-sidecar.1"]
        );
    }
}
