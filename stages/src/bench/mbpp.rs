//! MBPP (Google's `mbpp.jsonl`).
//!
//! - Loading: the calls in `test_list` become tests (the function tested is
//!   the one the asserts call that the reference defines); the expected
//!   output is what the reference returns.
//! - Grading (the harness's rule): `code + test_setup_code + test_list` as one
//!   script, 3 s; it passes when it runs without an exception.

use super::family::{Family, Grading, LoadedRow};
use super::problem::{LoadOptions, Parsed, Spec, list, required};
use super::problem::{Problem, list_field, text_field};
use crate::api::rows::{Row, cell_text};
use serde_json::Value;

pub struct MbppFamily;

impl Family for MbppFamily {
    fn load_row(&self, row: &Row, _options: &LoadOptions) -> LoadedRow {
        let mut out = Parsed::named(required(row, "task_id", "an MBPP")?);
        out.prompt = required(row, "text", "an MBPP")?;
        let setup = cell_text(row, "test_setup_code").unwrap_or_default();
        let code = required(row, "code", "an MBPP")?;
        out.reference = Some(if setup.trim().is_empty() {
            code
        } else {
            format!("{setup}\n{code}")
        });
        let asserts: Vec<String> = list(row, "test_list")?
            .into_iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        if asserts.is_empty() {
            return Err(format!("MBPP task {} has no `test_list`", out.task_id));
        }
        let script = asserts.join("\n");
        out.test_program = Some(format!("{setup}\n{script}\n"));
        out.tests.push(Spec::Script { script });
        Ok(Some(out))
    }

    fn grading(&self) -> Option<Grading> {
        Some(Grading::Script)
    }

    fn problem(&self, row: &Row) -> Result<Problem, String> {
        let mut p = Problem::common(row);
        p.task_id = match row.get("task_id") {
            Some(Value::Number(n)) => n.to_string(),
            _ => p.task_id,
        };
        p.canonical_solution = text_field(row, "code");
        p.test_setup_code = text_field(row, "test_setup_code");
        p.test_list = list_field(row, "test_list")?
            .into_iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        if p.test_list.is_empty() {
            return Err(format!("MBPP task {} has no `test_list`", p.task_id));
        }
        Ok(p)
    }

    fn reference_answer(&self, p: &Problem) -> Result<Option<String>, String> {
        Ok(Some(p.canonical_solution.clone()))
    }

    fn check_code(&self, problem: &Problem) -> Option<String> {
        Some(format!(
            "{}\n{}\n",
            problem.test_setup_code,
            problem.test_list.join("\n")
        ))
    }

    fn script(&self, problem: &Problem, code: &str) -> Option<String> {
        Some(format!(
            "{code}\n{}\n{}\n",
            problem.test_setup_code,
            problem.test_list.join("\n")
        ))
    }
}
