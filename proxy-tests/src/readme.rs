//! The README's shell blocks, read as a reader would type them: the first ```` ```sh ```` block
//! under a heading, one command per line, the comment after `#` dropped, and a line with
//! optional parts (`[--json]`, `[--force | --if-empty]`) expanded into each way of typing it.

use std::path::Path;

/// The commands of the first `sh` block under the heading `## {heading}`.
pub fn block(readme: &str, heading: &str) -> Vec<String> {
    let title = format!("## {heading}\n");
    let at = readme
        .find(&title)
        .unwrap_or_else(|| panic!("the README has no {title:?}"));
    let rest = &readme[at + title.len()..];
    let start = rest
        .find("```sh\n")
        .unwrap_or_else(|| panic!("no sh block under {heading:?}"))
        + "```sh\n".len();
    let end = rest[start..].find("```").expect("an unclosed block") + start;
    rest[start..end]
        .lines()
        .map(without_comment)
        .filter(|line| !line.is_empty())
        .collect()
}

/// The README of the repository the tests belong to.
pub fn text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("README.md");
    std::fs::read_to_string(path).expect("README.md")
}

/// The line without its trailing `# comment`.
fn without_comment(line: &str) -> String {
    let cut = line
        .char_indices()
        .find(|&(i, c)| c == '#' && (i == 0 || line[..i].ends_with(char::is_whitespace)))
        .map_or(line.len(), |(i, _)| i);
    line[..cut].trim().to_string()
}

/// Every way of typing a line with an optional part: `[A]` is without it and with `A`;
/// `[A | B]` is without it, with `A` and with `B`. In the README's order.
pub fn variants(line: &str) -> Vec<String> {
    let Some(open) = line.find('[') else {
        return vec![line.to_string()];
    };
    let close = line[open..].find(']').expect("an unclosed [") + open;
    let (before, inside, after) = (&line[..open], &line[open + 1..close], &line[close + 1..]);
    let mut lines = Vec::new();
    for choice in std::iter::once("").chain(inside.split('|').map(str::trim)) {
        let typed = format!("{} {choice} {}", before.trim_end(), after.trim_start());
        let typed = typed.split_whitespace().collect::<Vec<_>>().join(" ");
        lines.extend(variants(&typed));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_comments_and_variants() {
        let readme = "x\n## Start here\n\ntext\n```sh\na b   # c # d\n\n# only\nPGPASSWORD=p psql -p 1  # e\n```\n## Next\n```sh\nz\n```\n";
        assert_eq!(
            block(readme, "Start here"),
            ["a b", "PGPASSWORD=p psql -p 1"]
        );
        assert_eq!(block(readme, "Next"), ["z"]);
        assert_eq!(variants("x list [--json]"), ["x list", "x list --json"]);
        assert_eq!(
            variants("r --to DIR [--force | --if-empty]"),
            ["r --to DIR", "r --to DIR --force", "r --to DIR --if-empty"]
        );
        assert_eq!(variants("m [--dir DIR] x"), ["m x", "m --dir DIR x"]);
    }
}
