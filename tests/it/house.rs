//! The house rules that a test can check by reading the sources: every skip
//! goes through one helper that CI can forbid, a stage kind never imports
//! another kind, and no two files import each other, however indirectly.
//!
//! The import graph is read from the sources: a file depends on another when
//! it names an item that file defines, through a `use`, a qualified path
//! (`crate::`, `super::`, a child module) or a path in a string such as a
//! serde default. `pub use` re-exports are followed to the file that defines
//! the item, so a folder's `mod.rs` that re-exports its files makes no arrow
//! of its own. Comments and `#[cfg(test)] mod tests { ... }` blocks are left
//! out: tests may look anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs_err::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn sources() -> Vec<(PathBuf, String)> {
    ["engine", "stages/src", "stages/examples", "tests/it"]
        .iter()
        .flat_map(|d| rust_files(&repo().join(d)))
        .map(|p| {
            let text = fs_err::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// A test skips only through `tw_stages::testing::have`, which a `TW_REQUIRE_*`
/// variable turns into a failure: no other code prints a skip or reads those variables.
#[test]
fn every_skip_goes_through_the_one_helper_that_ci_can_forbid() {
    let testing = repo().join("stages/src/testing.rs");
    let this = repo().join("tests/it/house.rs");
    let print_skip = regex::Regex::new(r#"print(ln)?!\(\s*"skip"#).unwrap();
    let read_require = regex::Regex::new(r#"var(_os)?\(\s*"TW_REQUIRE_"#).unwrap();
    let mut offenders = Vec::new();
    for (path, text) in sources() {
        if path == testing || path == this {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            if print_skip.is_match(line) || read_require.is_match(line) {
                offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "skip through tw_stages::testing::have instead:\n{}",
        offenders.join("\n")
    );
}

/// One crate's files as modules, and what each file names.
struct Crate {
    /// Module path (`["kinds", "data", "load"]`) -> file, relative to the repo.
    modules: BTreeMap<Vec<String>, PathBuf>,
    /// File -> its module path.
    module_of: BTreeMap<PathBuf, Vec<String>>,
    /// File -> its text without comments and unit-test blocks.
    code: BTreeMap<PathBuf, String>,
}

fn strip_comments_and_tests(text: &str) -> String {
    // `pub(in crate::x)` restricts visibility; it imports nothing.
    let restricted = regex::Regex::new(r"pub\(in [^)]*\)").unwrap();
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        // `#[cfg(test)] mod tests { ... }` to the end of the file (it is last by habit),
        // or to its closing brace at column 0.
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod ") && next.ends_with('{'))
        {
            for inner in lines.by_ref() {
                if inner == "}" {
                    break;
                }
            }
            continue;
        }
        let code = match line.find("//") {
            // Not inside a string: a `//` after an odd number of quotes is in one.
            Some(i) if line[..i].matches('"').count() % 2 == 0 => &line[..i],
            _ => line,
        };
        let code = restricted.replace_all(code, "pub");
        out.push_str(&code);
        out.push('\n');
    }
    out
}

impl Crate {
    fn read(root: &Path, skip: &[&str]) -> Crate {
        let mut modules = BTreeMap::new();
        let mut module_of = BTreeMap::new();
        let mut code = BTreeMap::new();
        for file in rust_files(root) {
            let rel = file.strip_prefix(root).unwrap();
            if skip.iter().any(|s| rel.starts_with(s)) {
                continue;
            }
            let mut segs: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if matches!(segs.last().map(String::as_str), Some("mod" | "lib")) {
                segs.pop();
            }
            let shown = file
                .strip_prefix(repo())
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| file.clone());
            modules.insert(segs.clone(), shown.clone());
            module_of.insert(shown.clone(), segs);
            code.insert(
                shown,
                strip_comments_and_tests(&fs_err::read_to_string(&file).unwrap()),
            );
        }
        Crate {
            modules,
            module_of,
            code,
        }
    }

    fn is_module(&self, segs: &[String]) -> bool {
        self.modules.contains_key(segs)
    }

    /// The file that defines what `path` names, seen from module `from`.
    fn resolve(&self, from: &[String], path: &[String], depth: usize) -> Option<PathBuf> {
        if depth > 8 || path.is_empty() {
            return None;
        }
        let (mut base, rest): (Vec<String>, &[String]) = match path[0].as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (from.to_vec(), &path[1..]),
            "super" => {
                let mut base = from.to_vec();
                let mut i = 0;
                while path.get(i).map(String::as_str) == Some("super") {
                    base.pop();
                    i += 1;
                }
                (base, &path[i..])
            }
            first => {
                let mut child = from.to_vec();
                child.push(first.to_string());
                if !self.is_module(&child) {
                    return None;
                }
                (from.to_vec(), path)
            }
        };
        let mut i = 0;
        while i < rest.len() {
            let mut next = base.clone();
            next.push(rest[i].clone());
            if !self.is_module(&next) {
                break;
            }
            base = next;
            i += 1;
        }
        let file = self.modules.get(&base)?.clone();
        // An item the module re-exports: the file that defines it.
        if let Some(item) = rest.get(i)
            && let Some(target) = self.reexport(&file, item)
        {
            return self.resolve(&base, &target, depth + 1).or(Some(file));
        }
        Some(file)
    }

    /// Where `pub use` in `file` takes `item` from.
    fn reexport(&self, file: &Path, item: &str) -> Option<Vec<String>> {
        let code = &self.code[file];
        for statement in use_statements(code).into_iter().filter(|s| s.public) {
            for leaf in &statement.leaves {
                if leaf.last().map(String::as_str) == Some(item) {
                    return Some(leaf.clone());
                }
            }
        }
        None
    }

    /// file -> files it depends on (not itself).
    fn graph(&self) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
        let qualified =
            regex::Regex::new(r"\b(crate|super|self)(::[A-Za-z_][A-Za-z0-9_]*)+").unwrap();
        let relative =
            regex::Regex::new(r"(?:^|[^:\w])([a-z_][a-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)+)")
                .unwrap();
        let mut graph = BTreeMap::new();
        for (file, code) in &self.code {
            let from = &self.module_of[file];
            let mut deps = BTreeSet::new();
            let mut add = |path: Vec<String>| {
                if let Some(target) = self.resolve(from, &path, 0)
                    && &target != file
                {
                    deps.insert(target);
                }
            };
            for statement in use_statements(code) {
                if !statement.public {
                    for leaf in statement.leaves {
                        add(leaf);
                    }
                }
            }
            for line in code.lines() {
                if line.trim_start().starts_with("use ")
                    || line.trim_start().starts_with("pub ") && line.contains(" use ")
                {
                    continue;
                }
                for m in qualified.find_iter(line) {
                    add(m.as_str().split("::").map(String::from).collect());
                }
                for c in relative.captures_iter(line) {
                    add(c[1].split("::").map(String::from).collect());
                }
            }
            graph.insert(file.clone(), deps);
        }
        graph
    }
}

struct UseStatement {
    public: bool,
    leaves: Vec<Vec<String>>,
}

/// `use a::{b, c::{d as e}};` statements as leaf paths (`a::b`, `a::c::d`).
fn use_statements(code: &str) -> Vec<UseStatement> {
    let re = regex::Regex::new(r"(?m)^\s*(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);").unwrap();
    re.captures_iter(code)
        .map(|c| UseStatement {
            public: c.get(1).is_some_and(|v| v.as_str().trim() == "pub"),
            leaves: leaves(&c[2].split_whitespace().collect::<Vec<_>>().join(" ")),
        })
        .collect()
}

fn leaves(tree: &str) -> Vec<Vec<String>> {
    fn walk(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let tree = tree.trim();
        if let Some(open) = tree.find('{') {
            let head: Vec<String> = tree[..open]
                .trim_end_matches("::")
                .split("::")
                .filter(|s| !s.is_empty())
                .map(|s| s.trim().to_string())
                .collect();
            let base: Vec<String> = prefix.iter().cloned().chain(head).collect();
            let body = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let (mut depth, mut start) = (0, 0);
            for (i, ch) in body.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        walk(&body[start..i], &base, out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            walk(&body[start..], &base, out);
            return;
        }
        let name = tree.split(" as ").next().unwrap_or(tree).trim();
        if name.is_empty() || name == "*" {
            return;
        }
        let mut path: Vec<String> = prefix.to_vec();
        path.extend(name.split("::").map(|s| s.trim().to_string()));
        if path.last().map(String::as_str) == Some("self") {
            path.pop();
        }
        out.push(path);
    }
    let mut out = Vec::new();
    walk(tree, &[], &mut out);
    out
}

fn stages_crate() -> Crate {
    Crate::read(&repo().join("stages/src"), &[])
}

fn engine_crate() -> Crate {
    Crate::read(&repo().join("engine"), &["main.rs"])
}

/// Files of a cycle, if the graph has one (Tarjan's strongly connected components).
fn cycles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct State<'a> {
        graph: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on_stack: BTreeSet<&'a PathBuf>,
        next: usize,
        found: Vec<Vec<PathBuf>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a PathBuf) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.graph.contains_key(w) {
                continue;
            }
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

fn describe_cycles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> String {
    cycles(graph)
        .iter()
        .map(|c| {
            let files: BTreeSet<&PathBuf> = c.iter().collect();
            let arrows: Vec<String> = c
                .iter()
                .flat_map(|f| {
                    graph[f]
                        .iter()
                        .filter(|t| files.contains(t))
                        .map(move |t| format!("  {} -> {}", f.display(), t.display()))
                })
                .collect();
            format!("a cycle of {} files:\n{}", c.len(), arrows.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_two_files_import_each_other_in_either_crate() {
    for (name, krate) in [("tw-stages", stages_crate()), ("tw", engine_crate())] {
        let graph = krate.graph();
        let report = describe_cycles(&graph);
        assert!(report.is_empty(), "{name}: {report}");
    }
}

/// The kind a file of `stages/src/kinds/` belongs to: `kinds/<role>/<kind>`
/// (a file, or a folder for a kind of several files), or `kinds/<kind>/` for a
/// role folder that is one kind (`sft`, `report`); `None` for a role's `mod.rs`.
fn kind_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix("stages/src/kinds").ok()?;
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [_] => None,
        [role, rest @ ..] if ["sft", "report"].contains(&role.as_str()) => {
            let _ = rest;
            Some(role.clone())
        }
        [_, last] if last == "mod.rs" => None,
        [role, kind, ..] => Some(format!("{role}/{}", kind.trim_end_matches(".rs"))),
        [] => None,
    }
}

#[test]
fn a_kind_never_imports_another_kind() {
    let krate = stages_crate();
    let graph = krate.graph();
    let mut offenders = Vec::new();
    let mut kinds = BTreeSet::new();
    for (file, deps) in &graph {
        let Some(kind) = kind_of(file) else { continue };
        kinds.insert(kind.clone());
        for dep in deps {
            if let Some(other) = kind_of(dep)
                && other != kind
            {
                offenders.push(format!(
                    "{} ({kind}) -> {} ({other})",
                    file.display(),
                    dep.display()
                ));
            }
        }
    }
    // The rule is checked on every kind: the registry's 25 live in 23 files and 2 folders.
    assert!(kinds.len() >= 25, "{kinds:?}");
    assert!(
        offenders.is_empty(),
        "move what two kinds share into a library module:\n{}",
        offenders.join("\n")
    );
}

/// The checker itself: it sees a re-export through to its file, a cycle
/// through `super::`, and an import of one kind by another.
#[test]
fn the_import_checker_finds_cycles_and_follows_reexports() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(p, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\n");
    write("a/mod.rs", "pub mod x;\npub mod y;\npub use x::Thing;\n");
    write("a/x.rs", "use super::y::helper;\npub struct Thing;\n");
    write(
        "a/y.rs",
        "pub fn helper() -> crate::a::Thing { crate::a::Thing }\n",
    );
    write(
        "b.rs",
        "#[serde(default = \"crate::a::y::helper\")]\nstruct S;\n// crate::a::x::Thing\n",
    );
    let krate = Crate::read(root, &[]);
    let graph = krate.graph();
    let names = |f: &str| -> BTreeSet<String> {
        graph
            .iter()
            .find(|(k, _)| k.ends_with(f))
            .map(|(_, v)| {
                v.iter()
                    .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap()
    };
    // `crate::a::Thing` is `a/x.rs`'s, through the re-export in `a/mod.rs`.
    assert_eq!(names("y.rs"), BTreeSet::from(["x.rs".to_string()]));
    // The string path counts; the comment does not.
    assert_eq!(names("b.rs"), BTreeSet::from(["y.rs".to_string()]));
    assert!(names("mod.rs").is_empty());
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].len(), 2);
}
