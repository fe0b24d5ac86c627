//! Tasks: a problem row with its tests split into what the model may see
//! (public) and what grades it (private), read from a `load_benchmark`-style
//! pair of tables; and the program a reply stands for.

use crate::api::artifact;
use crate::api::rows;
use crate::api::rows::{Row, nonempty_text};
use crate::api::{RunCtx, StageError};
use crate::bench::gate::Gate;
use crate::bench::task_id::TaskIds;
use crate::python::programs::{
    self, CellFormat, GradingRules, ProgramMode, TestColumns, Ungradable,
};
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
    /// Never shown; grades the final program (with `rules.check`, the check does).
    pub private: Vec<TestCase>,
    /// Which private tests are EvalPlus `plus` tests, parallel to `private`:
    /// plus counts only when every other private test passes too.
    pub private_plus: Vec<bool>,
    /// Where each public and private test sits in the problem's suite (the
    /// `test` numbering of `execute`'s results), parallel to `public`/`private`.
    pub public_index: Vec<usize>,
    pub private_index: Vec<usize>,
    /// How many per-call tests the suite has (`execute` numbers the check
    /// row after them).
    pub n_cases: usize,
    /// How the benchmark grades the tests (comparator, tolerance, its check).
    pub rules: GradingRules,
    pub atol: f64,
}

impl Task {
    /// Whether the task has EvalPlus plus tests, so a plus score means something.
    pub fn has_plus(&self) -> bool {
        self.private_plus.iter().any(|p| *p)
    }
}

/// How a stage splits each problem's tests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TestSplit {
    /// Tests whose `public` column is true are public; a problem with none
    /// uses its first `public_count` tests as public instead.
    #[serde(default = "default_public_count")]
    pub public_count: usize,
    /// Tests of these suites are the public ones instead (e.g. MBPP-R's
    /// `seed_fail_base`, `seed_fail_plus`: the inputs the study's buggy
    /// programs failed, shown in the repair prompts); their expected outputs
    /// come from a graded test of the problem with the same input.
    #[serde(default)]
    pub public_suites: Vec<String>,
    /// Grade on every test, public ones included (HumanEval's harness does),
    /// rather than on the private ones only.
    #[serde(default)]
    pub grade_on_all: bool,
}

impl Default for TestSplit {
    fn default() -> Self {
        TestSplit {
            public_count: default_public_count(),
            public_suites: Vec::new(),
            grade_on_all: false,
        }
    }
}

fn default_public_count() -> usize {
    1
}

/// Tasks, and what loading them found.
pub struct Loaded {
    pub tasks: Vec<Task>,
    /// Problems left out as ungradable (`on_ungradable: skip`).
    pub skipped: usize,
    pub skipped_examples: Vec<String>,
    /// Public tests that still have no expected output (they pass when the
    /// program returns; feedback and selection see only crashes on them).
    pub public_without_expected: usize,
}

impl Loaded {
    /// Record in the stage's manifest what loading skipped or could not fill.
    pub fn note(&self, ctx: &mut RunCtx<'_>) {
        if self.skipped > 0 {
            ctx.note("skipped_tasks", self.skipped);
            ctx.note("skipped_problems", self.skipped_examples.clone());
        }
        if self.public_without_expected > 0 {
            ctx.note(
                "public_tests_without_expected",
                self.public_without_expected,
            );
        }
    }
}

/// Read `problems` and `tests` (the outputs of `load_benchmark`) into tasks.
/// Problems and tests meet by task id (written differently, they still meet:
/// `Mbpp/250` and `250`). A problem with nothing to grade it (no private
/// tests and no check, or private tests without expected outputs) stops the
/// stage, or with `Ungradable::Skip` is left out and counted.
pub fn load_tasks(
    ctx: &RunCtx<'_>,
    split: &TestSplit,
    policy: Ungradable,
) -> Result<Loaded, StageError> {
    let problems = artifact::table_to_json_rows(&ctx.input("problems")?)?;
    let tests = artifact::table_to_json_rows(&ctx.input("tests")?)?;
    rows::require_column(&problems, "problems", "task_id", "task_id")?;
    // Each problem's suite, with the `public` flag and suite name of each case.
    let mut suites: BTreeMap<String, (Vec<FlaggedCase>, GradingRules)> = BTreeMap::new();
    for mode in [ProgramMode::Function, ProgramMode::Stdio] {
        let ids: std::collections::BTreeSet<String> = problems
            .iter()
            .filter(|r| mode_of(r) == mode)
            .filter_map(|r| nonempty_text(r, "task_id"))
            .collect();
        let ids = TaskIds::new(ids.iter().map(String::as_str));
        let rows: Vec<Row> = tests
            .iter()
            .filter(|t| nonempty_text(t, "task_id").is_some_and(|id| ids.find(&id).is_some()))
            .cloned()
            .collect();
        let columns = TestColumns {
            problem: "task_id",
            input: "input",
            input_format: CellFormat::Tagged,
            expected: Some("expected"),
            expected_format: CellFormat::Tagged,
        };
        for (id, suite) in programs::test_suites(&rows, &mode, &columns)? {
            let cases = suite
                .cases
                .into_iter()
                .map(|(i, c)| {
                    let public = rows[i].get("public").and_then(Value::as_bool) == Some(true);
                    let name = nonempty_text(&rows[i], "suite").unwrap_or_default();
                    (public, name, c)
                })
                .collect();
            suites.insert(id, (cases, suite.rules));
        }
    }
    let test_ids = TaskIds::new(suites.keys().map(String::as_str));
    let total = problems.len();
    let mut gate = Gate::default();
    let mut public_without_expected = 0usize;
    let mut out = Vec::with_capacity(problems.len());
    for (i, row) in problems.into_iter().enumerate() {
        let mut task = task_from_row(row, i)?;
        let (cases, rules) = test_ids
            .find(&task.id)
            .and_then(|id| suites.remove(id))
            .unwrap_or_default();
        let any_public = cases.iter().any(|(p, _, _)| *p);
        task.n_cases = cases.len();
        let mut public = Vec::new();
        let mut private = Vec::new();
        for (k, (flag, suite, case)) in cases.into_iter().enumerate() {
            let is_public = if !split.public_suites.is_empty() {
                split.public_suites.contains(&suite)
            } else if any_public {
                flag
            } else {
                k < split.public_count
            };
            if is_public {
                if split.grade_on_all {
                    private.push((k, suite.clone(), case.clone()));
                }
                public.push((k, case));
            } else {
                private.push((k, suite, case));
            }
        }
        // A public test without an expected output takes it from a graded
        // test of the problem with the same input.
        for (_, case) in public
            .iter_mut()
            .filter(|(_, c)| !programs::has_expected(c))
        {
            if let Some((_, _, graded)) = private
                .iter()
                .find(|(_, _, g)| programs::has_expected(g) && same_input(g, case))
            {
                case.expected = graded.expected.clone();
                case.expected_json = graded.expected_json.clone();
                case.expected_literal = graded.expected_literal.clone();
            } else {
                public_without_expected += 1;
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
        if rules.check.is_none() {
            let without = private
                .iter()
                .filter(|(_, _, c)| !programs::has_expected(c))
                .count();
            if private.is_empty() {
                gate.no_tests.insert(task.id.clone());
                continue;
            }
            if without > 0 {
                gate.no_expected
                    .insert(task.id.clone(), (without, private.len()));
                continue;
            }
        }
        task.public_index = public.iter().map(|(k, _)| *k).collect();
        task.public = public.into_iter().map(|(_, c)| c).collect();
        task.private_index = private.iter().map(|(k, _, _)| *k).collect();
        task.private_plus = private.iter().map(|(_, s, _)| s == "plus").collect();
        task.private = private.into_iter().map(|(_, _, c)| c).collect();
        task.rules = rules;
        out.push(task);
    }
    let skipped = gate.settle(policy, out.len(), total, &test_ids, "problem")?;
    Ok(Loaded {
        tasks: out,
        skipped,
        skipped_examples: gate.examples(),
        public_without_expected,
    })
}

/// A test case with its `public` flag and the name of its suite.
type FlaggedCase = (bool, String, TestCase);

/// Whether two cases give the program the same input.
fn same_input(a: &TestCase, b: &TestCase) -> bool {
    a.args == b.args
        && a.args_json == b.args_json
        && a.args_literal == b.args_literal
        && a.stdin == b.stdin
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
        private_plus: Vec::new(),
        public_index: Vec::new(),
        private_index: Vec::new(),
        n_cases: 0,
        rules: GradingRules::default(),
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
