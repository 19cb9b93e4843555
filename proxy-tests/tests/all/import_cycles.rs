//! The import graph of `src/`, so that its shape does not get worse: a file's edges are the
//! `crate::…` and `super::…` paths it names outside comments and its unit tests, each resolved to
//! the file that defines the module; a parent naming its own children (`mod x;`, `x::f`) is not an
//! edge. There is no cycle between files, nor between top-level modules (a module's edges are
//! its files' edges to other modules), and a new one fails this test, so that the layers stay
//! layers: pure types and parsers at the bottom, `Shared` and orchestration at the top.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The cycles there are allowed to be: none. (A cycle, if one must be admitted for a while, is
/// listed here sorted, and the list only ever shrinks.)
const KNOWN: &[&[&str]] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../src")
}

/// Every `.rs` file under `dir`, as `a/b.rs` relative to `src/`, with its text.
fn read(dir: &Path, into: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let name = path.strip_prefix(src()).unwrap().display().to_string();
            into.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The module path a file defines: `a/b.rs` and `a/b/mod.rs` are `[a, b]`.
fn module_of(file: &str) -> Vec<String> {
    if file == "lib.rs" || file == "main.rs" {
        return Vec::new();
    }
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The file defining the longest prefix of `path` that names a module.
fn file_of(path: &[String], files: &BTreeMap<String, String>) -> Option<String> {
    (1..=path.len()).rev().find_map(|n| {
        let base = path[..n].join("/");
        [format!("{base}.rs"), format!("{base}/mod.rs")]
            .into_iter()
            .find(|f| files.contains_key(f))
    })
}

/// The code of a file without its comments and its `#[cfg(test)] mod tests`.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths after `crate::` or (any number of) `super::` in `code`, resolved from `module`.
fn named_modules(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let bytes = code.as_bytes();
    for (start, _) in code.char_indices() {
        let rest = &code[start..];
        let preceded = start > 0 && (word(bytes[start - 1] as char) || bytes[start - 1] == b':');
        if preceded || !(rest.starts_with("crate::") || rest.starts_with("super::")) {
            continue;
        }
        let segments: Vec<&str> = rest
            .split("::")
            .map(|s| s.split(|c: char| !word(c)).next().unwrap_or(""))
            .take_while(|s| !s.is_empty())
            .collect();
        let mut base: Vec<String> = Vec::new();
        let mut names = segments.iter().peekable();
        if names.peek() == Some(&&"crate") {
            names.next();
        } else {
            base = module.to_vec();
            while names.peek() == Some(&&"super") {
                names.next();
                base.pop();
            }
        }
        base.extend(names.map(|s| s.to_string()));
        out.push(base);
    }
    out
}

/// Strongly connected components with more than one file (Tarjan), each sorted.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: BTreeSet<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in &s.edges[v] {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.insert(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: BTreeSet::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found
}

fn graph(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    files
        .iter()
        .map(|(file, text)| {
            let targets = named_modules(&code(text), &module_of(file))
                .iter()
                .filter_map(|path| file_of(path, files))
                .filter(|target| target != file)
                .collect();
            (file.clone(), targets)
        })
        .collect()
}

/// The top-level module a file belongs to (`a/b/c.rs` is in `a`); `None` for the crate roots.
fn top_module(file: &str) -> Option<String> {
    module_of(file).into_iter().next()
}

/// The graph between top-level modules: an edge wherever a file of one names a file of another,
/// and wherever its text (comments too: a doc that points up the layers is a loop for its
/// reader) names `crate::<module>` of another.
fn module_graph(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let tops: BTreeSet<String> = files.keys().filter_map(|f| top_module(f)).collect();
    for (file, targets) in graph(files) {
        let Some(from) = top_module(&file) else {
            continue;
        };
        let text = &files[&file];
        let text = text
            .split("#[cfg(test)]\nmod tests {")
            .next()
            .unwrap_or(text);
        let named = text
            .split("crate::")
            .skip(1)
            .map(|rest| {
                rest.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .next()
            })
            .filter_map(|name| name.filter(|n| tops.contains(*n)).map(str::to_string));
        let edges = modules.entry(from.clone()).or_default();
        edges.extend(
            targets
                .iter()
                .filter_map(|t| top_module(t))
                .chain(named)
                .filter(|to| *to != from),
        );
    }
    for to in modules.values().flatten().cloned().collect::<Vec<_>>() {
        modules.entry(to).or_default();
    }
    modules
}

#[test]
fn no_cycle_between_top_level_modules() {
    let mut files = BTreeMap::new();
    read(&src(), &mut files);
    let modules = module_graph(&files);
    assert!(modules.len() > 30, "{:?}", modules.keys());
    let found = cycles(&modules);
    assert!(
        found.is_empty(),
        "top-level modules of src/ import one another in a cycle (move the state a module's \
         tasks share below them, or the tasks above): {found:#?}\nedges: {:#?}",
        found
            .iter()
            .flatten()
            .map(|m| (m, &modules[m]))
            .collect::<Vec<_>>()
    );
}

/// The window actions read an owned `Context`, never the shared state: nothing under
/// `window/actions/` names `crate::shared` (an action's reach stays what its context holds).
#[test]
fn window_actions_do_not_reach_for_the_shared_state() {
    let mut files = BTreeMap::new();
    read(&src(), &mut files);
    let actions: Vec<_> = files
        .keys()
        .filter(|f| f.starts_with("window/actions/"))
        .collect();
    assert!(actions.len() >= 5, "{actions:?}");
    let edges = graph(&files);
    for file in actions {
        let text = code(&files[file]);
        assert!(
            !edges[file].contains("shared.rs") && !text.contains("Shared"),
            "{file} uses the shared state: give the action what it reads in its Context"
        );
    }
}

#[test]
fn the_cycles_between_source_files_are_the_known_ones() {
    let mut files = BTreeMap::new();
    read(&src(), &mut files);
    let found = cycles(&graph(&files));
    let known: BTreeSet<Vec<String>> = KNOWN
        .iter()
        .map(|c| c.iter().map(|f| f.to_string()).collect())
        .collect();
    let new: Vec<_> = found.difference(&known).collect();
    let gone: Vec<_> = known.difference(&found).collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "import cycles between files of src/ changed.\nnew or grown (break them): {new:#?}\n\
         no longer there (remove them from KNOWN): {gone:#?}"
    );
}

/// The check catches what it is for: an edge that closes a loop makes a new cycle.
#[test]
fn a_new_cycle_is_found() {
    let mut files = BTreeMap::new();
    for (name, text) in [
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("a.rs", "use crate::b::thing; // crate::c in a comment\n"),
        ("b/mod.rs", "pub mod inner;\n"),
        ("b/inner.rs", "fn f() { super::super::a::g() }\n"),
    ] {
        files.insert(name.to_string(), text.to_string());
    }
    let mut edges = graph(&files);
    assert!(cycles(&edges).is_empty(), "{edges:?}");
    edges
        .get_mut("b/mod.rs")
        .unwrap()
        .insert("b/inner.rs".into());
    assert_eq!(
        cycles(&edges),
        BTreeSet::from([vec![
            "a.rs".to_string(),
            "b/inner.rs".to_string(),
            "b/mod.rs".to_string()
        ]])
    );
    files.insert(
        "b/mod.rs".into(),
        "pub mod inner;\nuse self::inner::x;\n".into(),
    );
    assert_eq!(
        graph(&files)["b/inner.rs"],
        BTreeSet::from(["a.rs".to_string()])
    );
}

/// The module check catches a cycle that no two files make: `a/x.rs` names `b`, and `b/y.rs`
/// names `a/z.rs`.
#[test]
fn a_cycle_between_modules_is_found_where_files_have_none() {
    let mut files = BTreeMap::new();
    for (name, text) in [
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("a/mod.rs", "pub mod x;\npub mod z;\n"),
        ("a/x.rs", "use crate::b::State;\n"),
        ("a/z.rs", "pub struct Z;\n"),
        ("b/mod.rs", "pub mod y;\npub struct State;\n"),
        ("b/y.rs", "use crate::a::z::Z;\n"),
    ] {
        files.insert(name.to_string(), text.to_string());
    }
    assert!(cycles(&graph(&files)).is_empty());
    assert_eq!(
        cycles(&module_graph(&files)),
        BTreeSet::from([vec!["a".to_string(), "b".to_string()]])
    );
    files.insert("b/y.rs".into(), "pub fn f() {}\n".into());
    assert!(cycles(&module_graph(&files)).is_empty());
    // A doc comment that names a module above makes the loop too.
    files.insert(
        "b/y.rs".into(),
        "//! What uses this is [`crate::a`].\n".into(),
    );
    assert_eq!(
        cycles(&module_graph(&files)),
        BTreeSet::from([vec!["a".to_string(), "b".to_string()]])
    );
}
