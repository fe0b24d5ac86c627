//! The original study's repair benchmarks, HE-R and MBPP-R, as it shipped
//! them (`*_r_buggy.jsonl`): `solution` is the buggy program to repair. With
//! its `*_eval_results.json` beside it (EvalPlus's results format), the
//! failing inputs it recorded become tests without expected outputs (join the
//! base benchmark's tests for more).

use super::family::{Family, LoadedRow};
use super::problem::{LoadOptions, Parsed, Spec, required};
use crate::api::StageError;
use crate::api::rows::{Row, cell_text};
use crate::python::pyvalue;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub struct RepairFamily;

impl Family for RepairFamily {
    fn load_row(&self, row: &Row, _options: &LoadOptions) -> LoadedRow {
        let mut out = Parsed::named(required(row, "task_id", "a repair-benchmark")?);
        out.buggy = Some(
            cell_text(row, "solution")
                .ok_or_else(|| format!("{}: no `solution` (the buggy program)", out.task_id))?,
        );
        out.prompt = cell_text(row, "prompt").unwrap_or_default();
        out.entry_point = repair_entry_point(&out.prompt, out.buggy.as_deref());
        Ok(Some(out))
    }

    fn companion_files(&self, path: &Path) -> Vec<PathBuf> {
        vec![seed_results_path(path)]
    }

    fn finish(
        &self,
        path: &Path,
        _options: &LoadOptions,
        problems: &mut Vec<Parsed>,
    ) -> Result<u64, StageError> {
        attach_seed_failures(problems, &seed_results_path(path))?;
        Ok(0)
    }
}

/// `x_buggy.jsonl` -> `x_buggy_eval_results.json`, as the study shipped them.
pub fn seed_results_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.trim_end_matches(".gz").trim_end_matches(".jsonl");
    path.with_file_name(format!("{stem}_eval_results.json"))
}

/// The seed's `*_eval_results.json`: `{"eval": {task: [{base_fail_tests, plus_fail_tests}]}}`.
fn attach_seed_failures(problems: &mut [Parsed], path: &Path) -> Result<(), StageError> {
    if !path.exists() {
        return Ok(());
    }
    let text = fs_err::read_to_string(path)?;
    let value: Value = serde_json::from_str(&text).map_err(|e| StageError::BadRecord {
        file: path.to_path_buf(),
        line: e.line(),
        message: format!("invalid JSON: {e}"),
    })?;
    let Some(eval) = value.get("eval").and_then(Value::as_object) else {
        return Err(StageError::BadRecord {
            file: path.to_path_buf(),
            line: 1,
            message: "no `eval` object (is this an EvalPlus results file?)".into(),
        });
    };
    for problem in problems {
        let Some(entry) = eval.get(&problem.task_id).and_then(|e| e.get(0)) else {
            continue;
        };
        for (key, suite) in [
            ("base_fail_tests", "seed_fail_base"),
            ("plus_fail_tests", "seed_fail_plus"),
        ] {
            for args in entry
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if args.is_array() {
                    problem.tests.push(Spec::Ready {
                        input: pyvalue::tagged_from_json(args),
                        expected: None,
                        public: false,
                        suite,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The function a repair benchmark's tests call. The seed's files do not say:
/// HE-R prompts are HumanEval's, which end with the tested function's
/// signature (helpers come first), and MBPP-R prompts are prose, so take the
/// last top-level `def` of the prompt, else of the buggy program.
fn repair_entry_point(prompt: &str, buggy: Option<&str>) -> Option<String> {
    static DEF: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let def = DEF
        .get_or_init(|| regex::Regex::new(r"(?m)^def\s+([A-Za-z_]\w*)\s*\(").expect("valid regex"));
    let last = |text: &str| def.captures_iter(text).last().map(|c| c[1].to_string());
    last(prompt).or_else(|| buggy.and_then(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_entry_points_come_from_the_prompt_then_the_program() {
        let he = "def is_palindrome(s: str) -> bool:\n    return s == s[::-1]\n\n\ndef make_palindrome(string: str) -> str:\n    \"\"\" doc \"\"\"\n";
        assert_eq!(
            repair_entry_point(he, None).as_deref(),
            Some("make_palindrome")
        );
        let mbpp_prose = "Write a function to find the shared elements.";
        let buggy = "import math\ndef helper(x):\n    return x\n\ndef similar_elements(a, b):\n    def inner(y):\n        return y\n    return set(a) - set(b)\n";
        assert_eq!(
            repair_entry_point(mbpp_prose, Some(buggy)).as_deref(),
            Some("similar_elements")
        );
        assert_eq!(repair_entry_point(mbpp_prose, Some("x = 1\n")), None);
    }

    #[test]
    fn results_file_sits_beside_the_buggy_programs() {
        assert_eq!(
            seed_results_path(Path::new("/d/mbpp_r_buggy.jsonl")),
            PathBuf::from("/d/mbpp_r_buggy_eval_results.json")
        );
    }
}
