//! The house rules that a test can check by reading the sources.

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
