//! The maps stay true: every file under `src/` is in `docs/ARCHITECTURE.md`'s module map
//! and opens with a `//!` line, and the `use crate::…`/`super::…` imports between files
//! form no circle (a module's own submodules are its parts and do not count).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sources() -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("src"), &mut out);
    out.sort();
    out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap().to_string_lossy().into_owned()
}

#[test]
fn every_source_file_is_in_the_module_map_and_says_what_it_owns() {
    let map = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    for f in sources() {
        let name = rel(&f);
        if !map.contains(&format!("`{name}`")) {
            missing.push(name.clone());
        }
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.starts_with("//!"), "{name} does not open with a //! line");
    }
    assert!(
        missing.is_empty(),
        "not in docs/ARCHITECTURE.md's module map: {missing:?}"
    );
}

/// The module a file is (`src/core/writer.rs` → `core::writer`; `mod.rs`, `lib.rs` and
/// `main.rs` are their directory's).
fn module_of(f: &Path) -> Vec<String> {
    let r = rel(f);
    let mut parts: Vec<String> = r
        .trim_start_matches("src/")
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    parts
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(s: &str) -> Vec<String> {
    let s = s.trim();
    let Some(open) = s.find('{') else {
        return vec![s.to_string()];
    };
    let (pre, inner) = (&s[..open], &s[open + 1..s.len() - 1]);
    let (mut parts, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for ch in inner.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if ch == ',' && depth == 0 {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    parts.push(cur);
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p).into_iter().map(move |e| format!("{pre}{e}")))
        .collect()
}

/// The paths a file names: its `use` items, expanded, and inline `crate::`/`super::` paths.
fn paths_in(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("use ") {
        let boundary = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric() && rest.as_bytes()[i - 1] != b'_';
        let after = &rest[i + 4..];
        if boundary {
            if let Some(end) = after.find(';') {
                for p in expand(&after[..end]) {
                    out.push(p.split(" as ").next().unwrap_or("").trim().to_string());
                }
            }
        }
        rest = after;
    }
    for word in ["crate::", "super::", "self::"] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(word) {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            out.push(tail[..end].to_string());
            rest = &rest[i + word.len()..];
        }
    }
    out
}

#[test]
fn the_imports_between_source_files_form_no_circle() {
    let files = sources();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for f in &files {
        let me = module_of(f);
        let text = std::fs::read_to_string(f).unwrap();
        for p in paths_in(&text) {
            let segs: Vec<String> = p.split("::").filter(|s| !s.is_empty()).map(String::from).collect();
            let Some(first) = segs.first() else { continue };
            let path: Vec<String> = match first.as_str() {
                "crate" | "intakeq_fs" => segs[1..].to_vec(),
                "super" => me[..me.len().saturating_sub(1)]
                    .iter()
                    .cloned()
                    .chain(segs[1..].iter().cloned())
                    .collect(),
                "self" => me.iter().cloned().chain(segs[1..].iter().cloned()).collect(),
                _ => continue,
            };
            let target = (0..=path.len())
                .rev()
                .map(|k| path[..k].to_vec())
                .find(|m| modules.contains(m));
            if let Some(t) = target {
                // A module's own submodules are its parts: parent → child is structure.
                if t != me && !t.starts_with(&me) {
                    edges.entry(me.clone()).or_default().insert(t);
                }
            }
        }
    }
    // A circle is a module that reaches itself.
    let name = |m: &Vec<String>| {
        if m.is_empty() {
            "crate".to_string()
        } else {
            m.join("::")
        }
    };
    let mut circles = Vec::new();
    for start in &modules {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(Vec<String>, Vec<String>)> = vec![(start.clone(), vec![name(start)])];
        while let Some((at, trail)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                if next == start {
                    circles.push(format!("{} -> {}", trail.join(" -> "), name(start)));
                } else if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(name(next));
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles between files:\n{}",
        circles.join("\n")
    );
    // The checker sees imports at all (a parser that found none would pass anything).
    assert!(edges
        .get(&vec!["core".to_string(), "writer".to_string()])
        .is_some_and(|e| e.contains(&vec!["core".to_string(), "state".to_string()])));
}
