//! APPS (its `test.jsonl`/`train.jsonl`): `input_output` with `fn_name` (the
//! tests call it) or without (stdin programs).
//!
//! - Loading: problems filtered by `difficulty` (`introductory`,
//!   `interview`, `competition`).
//! - Grading (APPS `testing_util`): stdin programs, or `fn_name` called with
//!   each input list; 4 s per test; its lenient stdout fallbacks; calls:
//!   tuple -> list, wrapped expected values.

use super::family::{Family, Grading, IoRules, LoadedRow};
use super::problem::{LoadOptions, from_io_problem};
use super::problem::{Problem, json_text_field};
use crate::api::rows::Row;
use crate::python::sandbox::{Comparator, TestCase};
use serde_json::Value;

pub struct AppsFamily;

impl Family for AppsFamily {
    fn load_row(&self, row: &Row, options: &LoadOptions) -> LoadedRow {
        let problem = self.problem(row)?;
        let entry = problem.fn_name.clone();
        Ok(from_io_problem(problem, row, options, entry, |_| {
            ("test", false)
        }))
    }

    fn grading(&self) -> Option<Grading> {
        Some(Grading::Io(IoRules {
            call: Comparator::AppsCall,
            stdio: Comparator::AppsStdio,
            sample_backstop: false,
        }))
    }

    fn problem(&self, row: &Row) -> Result<Problem, String> {
        let mut p = Problem::common(row);
        p.task_id = match row.get("problem_id") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => p.task_id,
        };
        let io = json_text_field(row, "input_output")?.unwrap_or(Value::Null);
        p.fn_name = io.get("fn_name").and_then(|f| f.as_str()).map(String::from);
        let inputs = io.get("inputs").and_then(|v| v.as_array());
        let outputs = io.get("outputs").and_then(|v| v.as_array());
        let (Some(inputs), Some(outputs)) = (inputs, outputs) else {
            return Err(format!(
                "APPS problem {}: `input_output` needs `inputs` and `outputs` lists",
                p.task_id
            ));
        };
        if inputs.len() != outputs.len() || inputs.is_empty() {
            return Err(format!(
                "APPS problem {}: {} inputs but {} outputs",
                p.task_id,
                inputs.len(),
                outputs.len()
            ));
        }
        for (input, output) in inputs.iter().zip(outputs) {
            std::sync::Arc::make_mut(&mut p.io_tests).push(test(
                input,
                output,
                p.fn_name.is_some(),
            ));
        }
        p.canonical_solution = json_text_field(row, "solutions")
            .ok()
            .flatten()
            .and_then(|s| s.get(0).and_then(|c| c.as_str()).map(String::from))
            .unwrap_or_default();
        Ok(p)
    }

    fn reference_answer(&self, p: &Problem) -> Result<Option<String>, String> {
        // Some APPS problems have no solutions; they cannot self-check.
        Ok((!p.canonical_solution.is_empty()).then(|| p.canonical_solution.clone()))
    }

    fn timeout(&self) -> f64 {
        4.0
    }
}

/// One APPS test: stdin text (or lines) and expected text, or call arguments.
fn test(input: &serde_json::Value, output: &serde_json::Value, call: bool) -> TestCase {
    if call {
        let args = match input {
            serde_json::Value::Array(_) => input.clone(),
            other => serde_json::Value::Array(vec![other.clone()]),
        };
        return TestCase {
            args_json: Some(args),
            expected_json: Some(output.clone()),
            ..TestCase::default()
        };
    }
    let lines = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), String::from))
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    };
    TestCase {
        stdin: Some(lines(input)),
        expected: Some(serde_json::Value::String(lines(output)).into()),
        ..TestCase::default()
    }
}
