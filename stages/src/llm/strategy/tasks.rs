//! Tasks: a problem row with its tests split into what the model may see
//! (public) and what grades it (private), read from a `load_benchmark`-style
//! pair of tables; and the program a reply stands for.

use crate::api::artifact;
use crate::api::rows;
use crate::api::rows::{Row, nonempty_text};
use crate::api::{RunCtx, StageError};
use crate::python::programs::{self, CellFormat, ProgramMode, TestColumns};
use crate::python::sandbox::TestCase;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One problem with its tests split into what the model may see and what grades it.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub row: Row,
    pub mode: ProgramMode,
    pub entry_point: Option<String>,
    /// Shown to the model and used to select.
    pub public: Vec<TestCase>,
    /// Never shown; grades the final program.
    pub private: Vec<TestCase>,
    pub atol: f64,
}

/// How a stage splits each problem's tests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TestSplit {
    /// Tests whose `public` column is true are public; a problem with none
    /// uses its first `public_count` tests as public instead.
    #[serde(default = "default_public_count")]
    pub public_count: usize,
    /// Grade on every test, public ones included (HumanEval's harness does),
    /// rather than on the private ones only.
    #[serde(default)]
    pub grade_on_all: bool,
}

impl Default for TestSplit {
    fn default() -> Self {
        TestSplit {
            public_count: default_public_count(),
            grade_on_all: false,
        }
    }
}

fn default_public_count() -> usize {
    1
}

/// Read `problems` and `tests` (the outputs of `load_benchmark`) into tasks.
pub fn load_tasks(ctx: &RunCtx<'_>, split: &TestSplit) -> Result<Vec<Task>, StageError> {
    let problems = artifact::table_to_json_rows(&ctx.input("problems")?)?;
    let tests = artifact::table_to_json_rows(&ctx.input("tests")?)?;
    rows::require_column(&problems, "problems", "task_id", "task_id")?;
    let mut suites: BTreeMap<String, Vec<(usize, TestCase)>> = BTreeMap::new();
    for mode in [ProgramMode::Function, ProgramMode::Stdio] {
        let ids: std::collections::BTreeSet<String> = problems
            .iter()
            .filter(|r| mode_of(r) == mode)
            .filter_map(|r| nonempty_text(r, "task_id"))
            .collect();
        let rows: Vec<Row> = tests
            .iter()
            .filter(|t| nonempty_text(t, "task_id").is_some_and(|id| ids.contains(&id)))
            .cloned()
            .collect();
        let columns = TestColumns {
            problem: "task_id",
            input: "input",
            input_format: CellFormat::Tagged,
            expected: Some("expected"),
            expected_format: CellFormat::Tagged,
        };
        for (id, cases) in programs::test_suites(&rows, &mode, &columns)? {
            let public_flags: Vec<(usize, TestCase)> = cases
                .into_iter()
                .map(|(i, c)| {
                    (
                        usize::from(rows[i].get("public").and_then(Value::as_bool) == Some(true)),
                        c,
                    )
                })
                .collect();
            suites.insert(id, public_flags);
        }
    }
    let mut out = Vec::with_capacity(problems.len());
    for (i, row) in problems.into_iter().enumerate() {
        let mut task = task_from_row(row, i)?;
        let cases = suites.remove(&task.id).unwrap_or_default();
        let any_public = cases.iter().any(|(p, _)| *p == 1);
        let mut public = Vec::new();
        let mut private = Vec::new();
        for (k, (flag, case)) in cases.into_iter().enumerate() {
            let is_public = if any_public {
                flag == 1
            } else {
                k < split.public_count
            };
            if is_public {
                if split.grade_on_all {
                    private.push(case.clone());
                }
                public.push(case);
            } else {
                private.push(case);
            }
        }
        if task.mode == ProgramMode::Function && task.entry_point.is_none() {
            return Err(StageError::BadInput {
                slot: "problems".into(),
                message: format!(
                    "row {i} ({}): a function-mode problem needs `entry_point`",
                    task.id
                ),
            });
        }
        task.public = public;
        task.private = private;
        out.push(task);
    }
    Ok(out)
}

fn mode_of(row: &Row) -> ProgramMode {
    match nonempty_text(row, "mode").as_deref() {
        Some("stdio") => ProgramMode::Stdio,
        _ => ProgramMode::Function,
    }
}

/// Problem row `i` as a task without tests (generation needs none).
pub fn task_from_row(row: Row, i: usize) -> Result<Task, StageError> {
    let id = nonempty_text(&row, "task_id").ok_or_else(|| StageError::BadInput {
        slot: "problems".into(),
        message: format!("row {i}: `task_id` is empty"),
    })?;
    Ok(Task {
        id,
        mode: mode_of(&row),
        entry_point: nonempty_text(&row, "entry_point"),
        atol: row.get("atol").and_then(Value::as_f64).unwrap_or(0.0),
        row,
        public: Vec::new(),
        private: Vec::new(),
    })
}

/// The program to run for a reply: the code, or, for a function task whose
/// code lacks the entry point (a bare body), the prompt followed by the code.
pub fn program_for(task: &Task, code: &str) -> String {
    match (&task.mode, &task.entry_point) {
        (ProgramMode::Function, Some(ep)) if !code.contains(&format!("def {ep}")) => {
            let prompt = nonempty_text(&task.row, "prompt").unwrap_or_default();
            format!("{prompt}{code}")
        }
        _ => code.to_string(),
    }
}

/// Constant label columns (`labels: {model: smollm2}`) added to a table's rows.
pub fn add_labels(rows: &mut [Row], labels: &BTreeMap<String, String>) {
    for row in rows {
        for (k, v) in labels {
            row.insert(k.clone(), Value::String(v.clone()));
        }
    }
}
