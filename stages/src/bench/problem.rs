//! A benchmark problem as the grader sees it ([`Problem`]) and as
//! `load_benchmark` reads it ([`Parsed`], before its tests are final: some
//! still need the sandbox to evaluate their input or to compute the expected
//! output with the reference), a sample to grade, and reading the fields of a
//! published row (values or JSON text, as datasets ship them).

use crate::api::rows::{Row, cell_text};
use crate::python::pyvalue;
use crate::python::sandbox::TestCase;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A benchmark problem, with what every benchmark needs (unused fields empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Problem {
    pub task_id: String,
    pub prompt: String,
    pub entry_point: String,
    pub test: String,
    pub canonical_solution: String,
    pub base_input: Vec<Value>,
    pub plus_input: Vec<Value>,
    pub atol: f64,
    /// CRUXEval
    pub code: String,
    pub input: String,
    pub output: String,
    /// MBPP
    pub test_setup_code: String,
    pub test_list: Vec<String>,
    pub difficulty: Option<String>,
    /// LiveCodeBench / APPS: input/output tests, public ones first.
    /// Shared by every sample's job, so a problem's tests are held once.
    pub io_tests: std::sync::Arc<Vec<TestCase>>,
    /// LiveCodeBench / APPS: the function to call; none for stdin programs.
    pub fn_name: Option<String>,
    /// LiveCodeBench: `contest_date`.
    pub contest_date: Option<String>,
}

impl Problem {
    /// The fields every published row may have.
    pub fn common(row: &Row) -> Problem {
        Problem {
            task_id: text_field(row, "task_id"),
            prompt: text_field(row, "prompt"),
            entry_point: text_field(row, "entry_point"),
            test: text_field(row, "test"),
            canonical_solution: text_field(row, "canonical_solution"),
            difficulty: row
                .get("difficulty")
                .and_then(|d| d.as_str())
                .map(String::from),
            ..Problem::default()
        }
    }
}

/// One generated program for a problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub task_id: String,
    /// Position among this task's samples.
    pub index: usize,
    /// The full program (HumanEval prompts already prepended), or for CRUXEval the generation.
    pub code: String,
}

/// A text field; numbers and other values as their JSON text, null as empty.
pub fn text_field(row: &Row, key: &str) -> String {
    match row.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A JSON list field that may also arrive as JSON text (a `load`ed artifact).
pub fn list_field(row: &Row, key: &str) -> Result<Vec<Value>, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a.clone()),
        Some(Value::String(s)) => match serde_json::from_str(s) {
            Ok(Value::Array(a)) => Ok(a),
            _ => Err(format!("`{key}` is not a JSON list")),
        },
        Some(_) => Err(format!("`{key}` is not a list")),
    }
}

/// A field holding JSON, either as a value or as JSON text (how the
/// LiveCodeBench and APPS datasets ship it).
pub fn json_text_field(row: &Row, key: &str) -> Result<Option<Value>, String> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => serde_json::from_str(s)
            .map(Some)
            .map_err(|e| format!("`{key}` is not valid JSON: {e}")),
        Some(other) => Ok(Some(other.clone())),
    }
}

/// An `atol` field: a number, or a number written as text; 0 when absent.
pub fn atol_field(row: &Row) -> f64 {
    row.get("atol")
        .and_then(|a| {
            a.as_f64()
                .or_else(|| a.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0.0)
}

/// Whether `day` is written `YYYY-MM-DD` (the form date windows compare).
pub fn is_iso_day(day: &str) -> bool {
    day.len() == 10
        && day.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

/// Whether a `contest_date` (or none) falls in the `start`..=`end` window of
/// days; a problem without a date is in only when there is no window.
pub fn in_window(date: Option<&str>, start: Option<&str>, end: Option<&str>) -> bool {
    match date {
        Some(date) => {
            let day = date.get(..10).unwrap_or(date);
            start.is_none_or(|s| day >= s) && end.is_none_or(|e| day <= e)
        }
        None => start.is_none() && end.is_none(),
    }
}

/// EvalPlus input sets (`tests:` of `load_benchmark`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InputSets {
    #[default]
    Base,
    Plus,
    All,
}

/// What `load_benchmark`'s params ask of a family parser.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub tests: InputSets,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub difficulty: Vec<String>,
    /// BigCodeBench: only problems whose `libs` are all in the standard library.
    pub stdlib_only: bool,
}

/// A test before it is final.
#[derive(Debug, Clone)]
pub enum Spec {
    Ready {
        input: Value,
        expected: Option<Value>,
        public: bool,
        suite: &'static str,
    },
    /// Tagged arguments; expected from the reference.
    Args { args: Value, suite: &'static str },
    /// Python source of the arguments; both evaluated by the reference job.
    Source { source: String, suite: &'static str },
    /// A test script to find the calls in (`candidate(...)` or the entry point).
    Script { script: String },
}

/// One problem as its family's parser read it.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub task_id: String,
    pub prompt: String,
    pub entry_point: Option<String>,
    pub stdio: bool,
    pub reference: Option<String>,
    pub buggy: Option<String>,
    pub test_program: Option<String>,
    pub atol: f64,
    pub difficulty: Option<String>,
    pub contest_date: Option<String>,
    pub libs: Vec<String>,
    pub tests: Vec<Spec>,
}

impl Parsed {
    /// A problem with this id and nothing else yet.
    pub fn named(task_id: String) -> Parsed {
        Parsed {
            task_id,
            ..Parsed::default()
        }
    }
}

/// A JSON list given as a value or as JSON text.
pub fn list(row: &Row, key: &str) -> Result<Vec<Value>, String> {
    list_field(row, key)
}

/// A text field that must be there and not empty.
pub fn required(row: &Row, key: &str, what: &str) -> Result<String, String> {
    cell_text(row, key)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{what} row has no `{key}`"))
}

/// A grader's test case as a final test row.
pub fn ready(case: TestCase, public: bool, suite: &'static str) -> Spec {
    let input = match (case.stdin, case.args, case.args_json) {
        (Some(stdin), _, _) => Value::String(stdin),
        (None, Some(args), _) => args,
        (None, None, Some(args)) => pyvalue::tagged_from_json(&args),
        (None, None, None) => Value::Array(Vec::new()),
    };
    let expected = case
        .expected
        .map(|e| e.value())
        .or_else(|| case.expected_json.map(|e| pyvalue::tagged_from_json(&e)));
    Spec::Ready {
        input,
        expected,
        public,
        suite,
    }
}

/// An input/output benchmark's graded problem (LiveCodeBench, APPS) as a
/// loaded one, after `options`' difficulty and date filters (`None` when they
/// leave it out): `entry_point` names what a functional test calls, and
/// `suite(n)` says the suite of test `n` and whether the model may see it.
pub fn from_io_problem(
    problem: Problem,
    row: &Row,
    options: &LoadOptions,
    entry_point: Option<String>,
    suite: impl Fn(usize) -> (&'static str, bool),
) -> Option<Parsed> {
    if !options.difficulty.is_empty()
        && !problem.difficulty.as_ref().is_some_and(|d| {
            options
                .difficulty
                .iter()
                .any(|want| want.eq_ignore_ascii_case(d))
        })
    {
        return None;
    }
    if !in_window(
        problem.contest_date.as_deref(),
        options.start_date.as_deref(),
        options.end_date.as_deref(),
    ) {
        return None;
    }
    let mut out = Parsed {
        task_id: problem.task_id.clone(),
        prompt: cell_text(row, "question_content")
            .or_else(|| cell_text(row, "question"))
            .unwrap_or_default(),
        difficulty: problem.difficulty.clone(),
        contest_date: problem.contest_date.clone(),
        stdio: problem.fn_name.is_none(),
        entry_point,
        ..Parsed::default()
    };
    if !problem.canonical_solution.is_empty() {
        out.reference = Some(problem.canonical_solution.clone());
    }
    for (n, case) in std::sync::Arc::unwrap_or_clone(problem.io_tests)
        .into_iter()
        .enumerate()
    {
        let (suite, public) = suite(n);
        out.tests.push(ready(case, public, suite));
    }
    Some(out)
}

/// Every problem read from a file, with what was left out and why.
#[derive(Default)]
pub struct Loaded {
    pub problems: Vec<Parsed>,
    /// Problems a filter left out.
    pub filtered: u64,
    /// Tests that could not be made final (their reasons: the first 20).
    pub dropped: u64,
    pub drop_reasons: Vec<String>,
}

const MAX_REASONS: usize = 20;

impl Loaded {
    pub fn note_drop(&mut self, reason: String) {
        if self.drop_reasons.len() < MAX_REASONS {
            self.drop_reasons.push(reason);
        }
    }

    pub fn drop_test(&mut self, task: &str, reason: impl std::fmt::Display) {
        self.dropped += 1;
        self.note_drop(format!("{task}: {reason}"));
    }
}
