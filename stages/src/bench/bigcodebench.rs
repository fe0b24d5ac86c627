//! BigCodeBench (`BigCodeBench.jsonl.gz`): by default only the problems whose
//! `libs` are all in the interpreter's standard library (runnable here).
//! Their tests are a unittest class, kept as `test_program`; the tests table
//! stays empty.

use super::family::{Family, LoadedRow};
use super::problem::{LoadOptions, Parsed, required};
use crate::api::StageError;
use crate::api::rows::{Row, cell_text};
use crate::python::sandbox;
use serde_json::Value;
use std::path::Path;

pub struct BigCodeBenchFamily;

impl Family for BigCodeBenchFamily {
    fn load_row(&self, row: &Row, _options: &LoadOptions) -> LoadedRow {
        let mut out = Parsed::named(required(row, "task_id", "a BigCodeBench")?);
        out.prompt = required(row, "complete_prompt", "a BigCodeBench")?;
        let canonical = required(row, "canonical_solution", "a BigCodeBench")?;
        out.reference = Some(format!("{}{canonical}", out.prompt));
        out.entry_point = Some(cell_text(row, "entry_point").unwrap_or_else(|| "task_func".into()));
        out.test_program = Some(required(row, "test", "a BigCodeBench")?);
        out.libs = match row.get("libs") {
            Some(Value::String(s)) => parse_libs(s),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Some(out))
    }

    fn finish(
        &self,
        _path: &Path,
        options: &LoadOptions,
        problems: &mut Vec<Parsed>,
    ) -> Result<u64, StageError> {
        if !options.stdlib_only {
            return Ok(0);
        }
        let stdlib = stdlib_modules()?;
        let before = problems.len();
        problems.retain(|prob| {
            prob.libs
                .iter()
                .all(|lib| stdlib.contains(lib.split('.').next().unwrap_or(lib)))
        });
        Ok((before - problems.len()) as u64)
    }
}

/// BigCodeBench ships `libs` as Python list text (`"['random', 'itertools']"`).
fn parse_libs(text: &str) -> Vec<String> {
    text.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The interpreter's `sys.stdlib_module_names`.
fn stdlib_modules() -> Result<std::collections::BTreeSet<String>, StageError> {
    let (python, _) = sandbox::find_python().map_err(|e| StageError::failed(e.to_string()))?;
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys; print('\\n'.join(sorted(sys.stdlib_module_names)))",
        ])
        .output()?;
    if !out.status.success() {
        return Err(StageError::failed(format!(
            "{} could not list its standard library",
            python.display()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigcodebench_libs_parse_from_python_list_text() {
        assert_eq!(
            parse_libs("['random', 'itertools']"),
            vec!["random", "itertools"]
        );
        assert!(parse_libs("[]").is_empty());
    }
}
