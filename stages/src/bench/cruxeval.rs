//! CRUXEval (`cruxeval.jsonl`): `f` on one recorded input, and its output.
//!
//! - Loading (`cruxeval`): one test, `f` on the recorded input; the expected
//!   output is what `f` returns.
//! - Grading (`cruxeval-i`, input prediction; `cruxeval-o`, output
//!   prediction), as the harness's `evaluation/utils_general.py` does: a
//!   generation is an expression, a whole call `f("K KBz")` for input
//!   prediction and a value for output prediction, and both modes run
//!   `code` then `assert <output> == <generation>` as one script (3 s); it
//!   passes when it runs without an exception. The harness skips an input
//!   prediction without `f(` and an output prediction that contains
//!   `f(<input>)` (they are not run, and not counted), and when no
//!   generation of a problem passes, counts every generation of it, skipped
//!   ones included, as failed: a problem's pass@k is over its generations
//!   that were not skipped if any passes, else over all of them.

use super::family::{Family, Grading, LoadedRow};
use super::problem::{LoadOptions, Parsed, Spec, required};
use super::problem::{Problem, text_field};
use crate::api::rows::{Row, cell_text};

/// The file (`Load`), or one of its two grading modes.
pub enum CruxEvalFamily {
    Load,
    /// `cruxeval-i`: input prediction.
    Input,
    /// `cruxeval-o`: output prediction.
    Output,
}

impl Family for CruxEvalFamily {
    fn load_row(&self, row: &Row, _options: &LoadOptions) -> LoadedRow {
        let mut out = Parsed::named(required(row, "id", "a CRUXEval")?);
        let code = required(row, "code", "a CRUXEval")?;
        // `f()` takes no arguments in a few problems: an empty input is fine.
        let input = cell_text(row, "input").ok_or("a CRUXEval row has no `input`")?;
        let output = required(row, "output", "a CRUXEval")?;
        out.prompt = code.clone();
        out.reference = Some(code.clone());
        out.entry_point = Some("f".into());
        out.test_program = Some(format!("{code}\nassert f({input}) == {output}\n"));
        out.tests.push(Spec::Source {
            source: input,
            suite: "base",
        });
        Ok(Some(out))
    }

    fn loads(&self) -> bool {
        matches!(self, CruxEvalFamily::Load)
    }

    fn grading(&self) -> Option<Grading> {
        (!matches!(self, CruxEvalFamily::Load)).then_some(Grading::Script)
    }

    fn problem(&self, row: &Row) -> Result<Problem, String> {
        let mut p = Problem::common(row);
        p.task_id = text_field(row, "id");
        p.code = text_field(row, "code");
        p.input = text_field(row, "input");
        p.output = text_field(row, "output");
        if p.task_id.is_empty() || p.code.is_empty() {
            return Err("a CRUXEval row needs `id` and `code`".into());
        }
        Ok(p)
    }

    fn script(&self, problem: &Problem, code: &str) -> Option<String> {
        match self {
            CruxEvalFamily::Input | CruxEvalFamily::Output => Some(format!(
                "{}\nassert {} == {code}",
                problem.code, problem.output
            )),
            CruxEvalFamily::Load => None,
        }
    }

    fn reference_answer(&self, p: &Problem) -> Result<Option<String>, String> {
        Ok(match self {
            // Input predictions are whole calls, as the published generations are.
            CruxEvalFamily::Input => Some(format!("f({})", p.input)),
            _ => Some(p.output.clone()),
        })
    }

    fn refuses(&self, problem: &Problem, code: &str) -> Option<String> {
        match self {
            CruxEvalFamily::Input if !code.contains("f(") => {
                Some("an input prediction without `f(`: CRUXEval skips it".to_string())
            }
            CruxEvalFamily::Output if code.contains(&format!("f({})", problem.input)) => Some(
                "an output prediction that calls `f` on the input: CRUXEval skips it".to_string(),
            ),
            _ => None,
        }
    }
}
