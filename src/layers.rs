//! The layer rule, enforced: every module imports only from its own row of the map in `lib.rs`
//! or the rows above it. The map is read from `lib.rs`'s own documentation, so the table people
//! read and the rule the build checks cannot drift apart. Every `crate::` path in `src/` counts,
//! in `use` lines and in code, test modules included; `super::` paths at a file's top level are
//! resolved to the parent module. A path into a module the map does not place fails too, so a
//! new module has to be given its row.
//!
//! All of this file is test code: `lib.rs` declares it as `#[cfg(test)] mod layers;`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The map's rows in order: the module path of each row (`pipeline::asr`), by rank.
fn rows(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! |"))
        .filter_map(|row| {
            let cell = row.split('|').nth(1)?.trim();
            let name = cell.strip_prefix('`')?.strip_suffix('`')?;
            Some(name.to_owned())
        })
        .collect()
}

/// The rank of the row a module path belongs to: the longest row that is a prefix of it.
fn rank(rows: &[String], path: &[&str]) -> Option<usize> {
    rows.iter()
        .enumerate()
        .filter(|(_, row)| {
            let row: Vec<&str> = row.split("::").collect();
            path.len() >= row.len() && path[..row.len()] == row[..]
        })
        .max_by_key(|(_, row)| row.split("::").count())
        .map(|(i, _)| i)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `src/pipeline/asr/mod.rs` -> `["pipeline", "asr"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// An import found in a file: its line number, the line, and the module path it names.
struct Import {
    line: usize,
    text: String,
    path: Vec<String>,
}

/// Every `crate::a::b` path in the file's code (comments left out), and every top-level
/// `use super::...` resolved against the file's module; `use` groups (`crate::a::{b, c::d}`)
/// are opened up to the paths inside them.
fn imports(module: &[String], text: &str) -> Vec<Import> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let code = line.split("//").next().unwrap_or("");
        let trimmed = code.trim_start();
        let top_level = code.len() == trimmed.len();
        let is_use = trimmed.starts_with("use ") || trimmed.starts_with("pub use ");
        if is_use {
            // The whole statement, however many lines it spans.
            let first = i;
            let mut stmt = code.to_owned();
            while !stmt.contains(';') && i + 1 < lines.len() {
                i += 1;
                stmt.push(' ');
                stmt.push_str(lines[i].split("//").next().unwrap_or(""));
            }
            let body = stmt
                .trim_start()
                .trim_start_matches("pub ")
                .trim_start_matches("use ");
            let body = body.trim_end().trim_end_matches(';').trim();
            let resolved: Vec<Vec<String>> = if let Some(rest) = body.strip_prefix("crate::") {
                expand(rest)
            } else if let Some(rest) = body.strip_prefix("super::") {
                // Inside an inline module (tests), `super` is the file's own module: in the
                // same row by definition.
                match module.split_last() {
                    Some((_, parent)) if top_level => expand(rest)
                        .into_iter()
                        .map(|p| parent.iter().cloned().chain(p).collect())
                        .collect(),
                    _ => Vec::new(),
                }
            } else {
                // A path relative to this module (`use db::Store`, `use self::x`): its own
                // children, or a crate outside (`serde`), which resolves to the module itself.
                let rest = body.strip_prefix("self::").unwrap_or(body);
                expand(rest)
                    .into_iter()
                    .map(|p| module.iter().cloned().chain(p).collect())
                    .collect()
            };
            for path in resolved {
                out.push(Import {
                    line: first + 1,
                    text: lines[first].trim().to_owned(),
                    path,
                });
            }
        } else {
            let mut rest = code;
            while let Some(at) = rest.find("crate::") {
                let before = rest[..at].chars().last();
                let after = &rest[at + "crate::".len()..];
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    let path: Vec<String> = after
                        .split("::")
                        .map(|seg| {
                            seg.chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_')
                                .collect::<String>()
                        })
                        .take_while(|seg| !seg.is_empty())
                        .collect();
                    out.push(Import {
                        line: i + 1,
                        text: line.trim().to_owned(),
                        path,
                    });
                }
                rest = after;
            }
        }
        i += 1;
    }
    out
}

/// `a::{b, c::{d, e}}` -> `[a, b]`, `[a, c, d]`, `[a, c, e]`.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&inner[start..]);
        return parts
            .into_iter()
            .filter(|p| !p.trim().is_empty())
            .flat_map(expand)
            .collect();
    }
    match tree.split_once("::") {
        Some((head, rest)) => expand(rest)
            .into_iter()
            .map(|mut p| {
                p.insert(0, head.to_owned());
                p
            })
            .collect(),
        None => {
            // `Name as Alias`: the name is what is imported.
            let leaf = tree.split_whitespace().next().unwrap_or(tree);
            if leaf == "self" || leaf == "*" || leaf.is_empty() {
                vec![Vec::new()]
            } else {
                vec![vec![leaf.to_owned()]]
            }
        }
    }
}

/// Every import in `src/` that breaks the rule, as readable lines.
fn violations(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let rows = rows(&lib);
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut out = Vec::new();
    for file in files {
        let module = module_of(src, &file);
        // The crate root and the binary only declare and call.
        if module.is_empty() || module == ["lib"] || module == ["main"] || module == ["layers"] {
            continue;
        }
        let segs: Vec<&str> = module.iter().map(String::as_str).collect();
        let text = std::fs::read_to_string(&file).unwrap();
        let Some(own) = rank(&rows, &segs) else {
            // A folder whose parts have rows of their own (`pipeline`, `sinks`) only declares
            // them; it may import nothing. Anything else needs a row.
            let prefix = format!("{}::", module.join("::"));
            let container = rows.iter().any(|r| r.starts_with(&prefix));
            match imports(&module, &text).first() {
                _ if !container => out.push(format!(
                    "{}: module {} has no row in lib.rs's map",
                    file.display(),
                    module.join("::")
                )),
                Some(imp) => out.push(format!(
                    "{}:{}: `{}` only gathers the rows under it and may import nothing: {}",
                    file.display(),
                    imp.line,
                    module.join("::"),
                    imp.text
                )),
                None => {}
            }
            continue;
        };
        for imp in imports(&module, &text) {
            let segs: Vec<&str> = imp.path.iter().map(String::as_str).collect();
            match rank(&rows, &segs) {
                Some(r) if r <= own => {}
                Some(r) => out.push(format!(
                    "{}:{}: `{}` ({}) imports `{}` ({}), a later row of the map: {}",
                    file.display(),
                    imp.line,
                    module.join("::"),
                    rows[own],
                    imp.path.join("::"),
                    rows[r],
                    imp.text
                )),
                None => out.push(format!(
                    "{}:{}: `{}` is in no row of lib.rs's map: {}",
                    file.display(),
                    imp.line,
                    imp.path.join("::"),
                    imp.text
                )),
            }
        }
    }
    out
}

#[test]
fn no_module_imports_a_layer_below_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "imports against the layer order:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_map_names_every_module_once_and_each_exists() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let rows = rows(&lib);
    assert!(rows.len() > 10, "the map was not found in lib.rs: {rows:?}");
    let mut seen = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        assert!(seen.insert(row, i).is_none(), "{row} is in the map twice");
        let rel: PathBuf = row.split("::").collect();
        assert!(
            src.join(&rel).with_extension("rs").is_file()
                || src.join(&rel).join("mod.rs").is_file(),
            "the map names {row}, which is not a module"
        );
    }
    // Every top-level module of the crate has a row.
    for line in lib.lines() {
        if let Some(m) = line
            .strip_prefix("pub mod ")
            .and_then(|m| m.strip_suffix(';'))
        {
            assert!(
                rows.iter()
                    .any(|r| r == m || r.starts_with(&format!("{m}::"))),
                "lib.rs declares `{m}`, which the map leaves out"
            );
        }
    }
}

/// The test itself: an upward import planted in a copy of a file is found, with its line.
#[test]
fn an_upward_import_is_caught_with_its_line() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&src, dir.path());
    let victim = dir.path().join("pipeline/segment.rs");
    let text = std::fs::read_to_string(&victim).unwrap();
    let planted = text.replacen(
        "use crate::",
        "use crate::sinks::store::{\n    Store,\n};\nuse crate::",
        1,
    );
    std::fs::write(&victim, planted).unwrap();
    let found = violations(dir.path());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("pipeline/segment.rs")
            && found[0].contains("imports `sinks::store::Store` (sinks::store)")
            && found[0].contains("use crate::sinks::store::{"),
        "{}",
        found[0]
    );
    // An inline path in code counts as much as a `use`.
    std::fs::write(
        &victim,
        text.replace(
            "pub fn leg(&self) -> Leg {",
            "pub fn leg(&self) -> Leg {\n        let _ = crate::daemon::ServeOptions::default;",
        ),
    )
    .unwrap();
    let found = violations(dir.path());
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("(daemon)"), "{}", found[0]);
}

/// The module a path lands in: the longest prefix of it that is a file of `src/`.
fn owner<'a>(
    modules: &'a BTreeMap<Vec<String>, PathBuf>,
    path: &[String],
) -> Option<&'a Vec<String>> {
    (1..=path.len())
        .rev()
        .find_map(|n| modules.get_key_value(&path[..n]).map(|(k, _)| k))
}

/// Import cycles between files (outside test modules), as module paths.
fn cycles(src: &Path) -> Vec<Vec<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let mut edges: BTreeMap<&Vec<String>, Vec<&Vec<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or("");
        let mut to: Vec<&Vec<String>> = imports(module, code)
            .iter()
            .filter_map(|imp| owner(&modules, &imp.path))
            .filter(|m| *m != module)
            .collect();
        to.sort();
        to.dedup();
        edges.insert(module, to);
    }
    // Strongly connected components (Tarjan), iteratively small enough to recurse.
    struct Walk<'a> {
        edges: &'a BTreeMap<&'a Vec<String>, Vec<&'a Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, (usize, usize)>,
        stack: Vec<&'a Vec<String>>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a Vec<String>) {
        w.index.insert(v, (w.next, w.next));
        w.next += 1;
        w.stack.push(v);
        for &u in w.edges.get(v).into_iter().flatten() {
            if !w.index.contains_key(u) {
                visit(w, u);
                let low = w.index[u].1.min(w.index[v].1);
                w.index.get_mut(v).unwrap().1 = low;
            } else if w.stack.contains(&u) {
                let low = w.index[u].0.min(w.index[v].1);
                w.index.get_mut(v).unwrap().1 = low;
            }
        }
        if w.index[v].0 == w.index[v].1 {
            let mut comp = Vec::new();
            while let Some(u) = w.stack.pop() {
                comp.push(u.join("::"));
                if u == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                w.found.push(comp);
            }
        }
    }
    let mut w = Walk {
        edges: &edges,
        index: BTreeMap::new(),
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !w.index.contains_key(v) {
            visit(&mut w, v);
        }
    }
    w.found
}

/// Rows keep cycles out across folders; inside a folder one is allowed only where the
/// folder's `mod.rs` says why (its `//!` names the import cycle).
#[test]
fn import_cycles_stay_inside_one_folder_and_are_explained() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for cycle in cycles(&src) {
        // The folder: the shortest module of the cycle, which the others sit under.
        let folder = cycle.iter().min_by_key(|m| m.len()).unwrap().clone();
        assert!(
            cycle.iter().all(|m| m.starts_with(&folder)),
            "an import cycle across folders: {cycle:?}"
        );
        let rel: PathBuf = folder.split("::").collect();
        let doc = std::fs::read_to_string(src.join(rel).join("mod.rs")).unwrap_or_default();
        assert!(
            doc.lines()
                .take_while(|l| l.starts_with("//!"))
                .any(|l| l.contains("import cycle")),
            "{folder}'s files import each other ({cycle:?}), and its mod.rs does not say why"
        );
    }
}

/// A cycle planted between two files of one folder is found.
#[test]
fn a_cycle_between_two_files_is_found() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&src, dir.path());
    assert!(
        !cycles(dir.path())
            .iter()
            .any(|c| c.contains(&"ingest::twilio".to_owned())),
        "{:?}",
        cycles(dir.path())
    );
    let twilio = dir.path().join("ingest/twilio.rs");
    let text = std::fs::read_to_string(&twilio).unwrap();
    std::fs::write(
        &twilio,
        text.replacen(
            "use crate::",
            "use crate::ingest::ws::TwilioAuth;\nuse crate::",
            1,
        ),
    )
    .unwrap();
    let found = cycles(dir.path());
    assert!(
        found
            .iter()
            .any(|c| c == &["ingest::twilio".to_owned(), "ingest::ws".to_owned()]),
        "{found:?}"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}
