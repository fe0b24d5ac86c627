//! `execute`: run every candidate program on its problem's tests in the sandbox.
//!
//! # What it does
//! Candidates and tests meet on the `problem` column: each candidate runs on
//! every test row of its problem, in the tests table's order, in one sandbox
//! job (module state is shared across a candidate's tests, as in EvalPlus and
//! LiveCodeBench). Each test gets a verdict (`pass`, `wrong_answer`,
//! `runtime_error` with the exception type and message, `timeout`, `memory`,
//! `syntax_error`, `output_limit`, `skipped`) and the program's output. Without
//! an expected output a test passes when it runs to completion, which is how
//! to collect outputs (e.g. of a patched program, to find tests that separate
//! it from a buggy one).
//!
//! # Params
//! - `mode`: `function` (default) or `stdio`.
//! - `problem` (default `task_id`): the column joining candidates to tests.
//! - `candidate_id` (default: none, candidates are numbered by row): a column
//!   identifying each candidate.
//! - `program` (default `program`): the candidates' source column.
//! - `entry_point` (default `entry_point`): function to call, read from the
//!   candidate row, else from the test row (function mode).
//! - `input` (default `input`), `expected` (default `expected`; `null` for
//!   none): test columns. `input_format` / `expected_format`: `json` (default)
//!   or `python` (literal source, e.g. CRUXEval's `[1, 2], 3`).
//! - `comparator`: `exact` (Python `==`, the default for functions),
//!   `evalplus`, `lcb_stdio` (the default for stdin programs), `lcb_call`,
//!   `apps_stdio`, `apps_call` (see the sandbox docs). `atol` (EvalPlus float
//!   tolerance, default 0).
//! - `timeout` (seconds per test, default 3), `memory_mb` (default 4096),
//!   `stop_at_first_failure` (default false: every test runs).
//!
//! # Inputs
//! - `candidates`: one row per program to run.
//! - `tests`: one row per test, with the problem column.
//!
//! # Outputs
//! - `results`: one row per (candidate, test): `candidate`, the problem,
//!   `test` (index within the problem), `verdict`, `output` (the return value's
//!   repr or the printed text), `exc_type`, `exc_message`.
//! - `summary`: one row per candidate: `candidate`, the problem, `tests`,
//!   `passed`, `pass` (every test passed; false for a problem without tests),
//!   `first_failure` (test index), `first_verdict`, and `label`: `correct`
//!   (every test passed), `timeout` (a test timed out), `crash` (a test
//!   raised, ran out of memory or output, or the program does not parse),
//!   `wrong_answer` (every failure is a wrong answer: the study's "buggy"
//!   programs), or `no_tests`.
//!
//! # Caching
//! Limits and the comparator are params, so they are in the key, as is the
//! interpreter version. Durations are not recorded, so reruns write the same
//! bytes; a test that times out is, by nature, the one nondeterministic verdict.
//!
//! # Example
//! ```yaml
//! verify:
//!   kind: execute
//!   inputs: { candidates: repairs.rows, tests: mbpp_tests.rows }
//!   params: { candidate_id: sample_id, expected_format: python, timeout: 5 }
//! ```

use crate::api::artifact;
use crate::api::rows;
use crate::api::rows::{At, Row};
use crate::api::{EnvFact, InputSlot, Problem, RunCtx, Stage, StageError};
use crate::python::programs::{self, CellFormat, ProgramMode};
use crate::python::sandbox;
use crate::python::sandbox::{Comparator, Job, Tagged, TestCase, Verdict};
use crate::python::trace_jobs::{
    default_entry_point, default_id, default_input, default_memory_mb, default_program,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub struct Execute;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecuteParams {
    #[serde(default = "function_mode")]
    pub mode: ProgramMode,
    #[serde(default = "default_id")]
    pub problem: String,
    #[serde(default)]
    pub candidate_id: Option<String>,
    #[serde(default = "default_program")]
    pub program: String,
    #[serde(default = "default_entry_point")]
    pub entry_point: String,
    #[serde(default = "default_input")]
    pub input: String,
    #[serde(default = "default_expected")]
    pub expected: Option<String>,
    #[serde(default)]
    pub input_format: CellFormat,
    #[serde(default)]
    pub expected_format: CellFormat,
    #[serde(default)]
    pub comparator: Option<Comparator>,
    #[serde(default)]
    pub atol: f64,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    #[serde(default)]
    pub stop_at_first_failure: bool,
}

fn function_mode() -> ProgramMode {
    ProgramMode::Function
}
fn default_expected() -> Option<String> {
    Some("expected".into())
}
fn default_timeout() -> f64 {
    3.0
}

impl ExecuteParams {
    fn comparator(&self) -> Comparator {
        self.comparator
            .unwrap_or_else(|| self.mode.default_comparator())
    }
}

impl Stage for Execute {
    const KIND: &'static str = "execute";
    const VERSION: u32 = 2;
    const SOURCE: &'static str = include_str!("execute.rs");
    const ROW_MAPPED: Option<&'static str> = Some("candidates");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("candidates"), InputSlot::one("tests")];
    const OUTPUTS: &'static [&'static str] = &["results", "summary"];
    type Params = ExecuteParams;

    fn validate(p: &ExecuteParams) -> Vec<Problem> {
        let mut problems = programs::check_limits(p.timeout, p.memory_mb);
        let comparator = p.comparator();
        let stdio_comparator = matches!(comparator, Comparator::LcbStdio | Comparator::AppsStdio);
        if stdio_comparator != (p.mode == ProgramMode::Stdio) && comparator != Comparator::Exact {
            problems.push(
                Problem::at(
                    "comparator",
                    format!("comparator `{}` does not fit `mode: {}`", comparator_name(comparator), mode_name(&p.mode)),
                )
                .help("stdin programs use `lcb_stdio` or `apps_stdio`; functions use `exact`, `evalplus`, `lcb_call` or `apps_call`"),
            );
        }
        if p.atol < 0.0 || p.atol.is_nan() {
            problems.push(Problem::at("atol", "`atol` must be zero or positive"));
        }
        problems
    }

    fn env_facts(_p: &ExecuteParams) -> Vec<EnvFact> {
        programs::sandbox_facts()
    }

    fn run(p: &ExecuteParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let candidates = artifact::table_to_json_rows(&ctx.input("candidates")?)?;
        let tests = artifact::table_to_json_rows(&ctx.input("tests")?)?;
        rows::require_column(&candidates, "candidates", &p.problem, "problem")?;
        rows::require_column(&candidates, "candidates", &p.program, "program")?;
        if let Some(id) = &p.candidate_id {
            rows::require_column(&candidates, "candidates", id, "candidate_id")?;
        }
        rows::require_column(&tests, "tests", &p.problem, "problem")?;
        rows::require_column(&tests, "tests", &p.input, "input")?;
        if let Some(expected) = &p.expected {
            rows::require_column(&tests, "tests", expected, "expected")?;
        }

        let suites = programs::test_suites(
            &tests,
            &p.mode,
            &programs::TestColumns {
                problem: &p.problem,
                input: &p.input,
                input_format: p.input_format,
                expected: p.expected.as_deref(),
                expected_format: p.expected_format,
            },
        )?;
        // A problem's entry point, when its test rows name one.
        let by_problem: BTreeMap<String, Suite> = suites
            .into_iter()
            .map(|(problem, cases)| {
                let entry_point = cases
                    .iter()
                    .find_map(|(row, _)| rows::optional_text(&tests[*row], &p.entry_point));
                let cases = std::sync::Arc::new(cases.into_iter().map(|(_, case)| case).collect());
                (problem, Suite { cases, entry_point })
            })
            .collect();

        let mut jobs = Vec::with_capacity(candidates.len());
        let mut keys = Vec::with_capacity(candidates.len());
        for (i, row) in candidates.iter().enumerate() {
            let problem = rows::text(
                row,
                &p.problem,
                &At {
                    slot: "candidates",
                    row: i,
                    id: None,
                },
            )?;
            let candidate = match &p.candidate_id {
                Some(column) => rows::text(
                    row,
                    column,
                    &At {
                        slot: "candidates",
                        row: i,
                        id: Some(&problem),
                    },
                )?,
                None => (ctx.row_offset() + i).to_string(),
            };
            let at = At {
                slot: "candidates",
                row: i,
                id: Some(&candidate),
            };
            let suite = by_problem.get(&problem);
            let mut job = Job::new(p.mode.sandbox_mode(), rows::text(row, &p.program, &at)?);
            if p.mode == ProgramMode::Function {
                let entry = rows::optional_text(row, &p.entry_point)
                    .or_else(|| suite.and_then(|s| s.entry_point.clone()));
                job.entry_point = Some(entry.ok_or_else(|| {
                    at.error(&p.entry_point, "no entry point: the column is missing or empty in both the candidate and its tests")
                })?);
            }
            job.tests = suite
                .map(|s| std::sync::Arc::clone(&s.cases))
                .unwrap_or_default();
            job.comparator = p.comparator();
            job.atol = p.atol;
            job.limits = programs::limits(p.timeout, p.memory_mb);
            job.stop_at_first_failure = p.stop_at_first_failure;
            job.keep_output_values = false;
            jobs.push(job);
            keys.push((candidate, problem));
        }

        let sandbox = programs::open_sandbox(ctx, None)?;
        ctx.progress().set_total(jobs.len() as u64);
        let progress = ctx.progress();
        let reports = sandbox.run_all(&jobs, &|| progress.inc(1))?;
        programs::note_retries(ctx, &sandbox);

        let mut results: Vec<Row> = Vec::new();
        let mut summary: Vec<Row> = Vec::with_capacity(jobs.len());
        let mut verdict_counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        for ((candidate, problem), report) in keys.iter().zip(&reports) {
            for r in &report.results {
                *verdict_counts.entry(r.verdict.as_str()).or_default() += 1;
                let output = match p.mode {
                    ProgramMode::Function => r.output_repr.clone(),
                    ProgramMode::Stdio => r.output.as_ref().and_then(Tagged::as_text),
                };
                let mut row = Map::new();
                row.insert("candidate".into(), Value::String(candidate.clone()));
                row.insert(p.problem.clone(), Value::String(problem.clone()));
                row.insert("test".into(), Value::from(r.test as u64));
                row.insert("verdict".into(), Value::String(r.verdict.as_str().into()));
                row.insert("output".into(), text_or_null(output));
                row.insert("exc_type".into(), text_or_null(r.exc_type.clone()));
                row.insert("exc_message".into(), text_or_null(r.exc_message.clone()));
                results.push(row);
            }
            let passed = report
                .results
                .iter()
                .filter(|r| r.verdict == Verdict::Pass)
                .count();
            let first = report.results.iter().find(|r| r.verdict != Verdict::Pass);
            let mut row = Map::new();
            row.insert("candidate".into(), Value::String(candidate.clone()));
            row.insert(p.problem.clone(), Value::String(problem.clone()));
            row.insert("tests".into(), Value::from(report.results.len() as u64));
            row.insert("passed".into(), Value::from(passed as u64));
            row.insert("pass".into(), Value::Bool(report.passed()));
            row.insert(
                "first_failure".into(),
                first.map_or(Value::Null, |r| Value::from(r.test as u64)),
            );
            row.insert(
                "first_verdict".into(),
                first.map_or(Value::Null, |r| Value::String(r.verdict.as_str().into())),
            );
            row.insert("label".into(), Value::String(label(&report.results).into()));
            summary.push(row);
        }
        let without_tests = reports.iter().filter(|r| r.results.is_empty()).count();
        if without_tests > 0 {
            ctx.note("candidates_without_tests", without_tests);
        }
        ctx.note(
            "verdicts",
            serde_json::to_value(&verdict_counts).unwrap_or(Value::Null),
        );
        ctx.write_output(
            "results",
            &artifact::json_rows_to_typed_table(results, empty_result(&p.problem))?,
        )?;
        ctx.write_output(
            "summary",
            &artifact::json_rows_to_typed_table(summary, empty_summary(&p.problem))?,
        )
    }
}

/// One problem's tests, and an entry point named by any of its test rows.
#[derive(Default)]
struct Suite {
    cases: std::sync::Arc<Vec<TestCase>>,
    entry_point: Option<String>,
}

/// The study's verification label of one candidate.
pub fn label(results: &[sandbox::TestReport]) -> &'static str {
    if results.is_empty() {
        return "no_tests";
    }
    let mut wrong = false;
    let mut crash = false;
    for r in results {
        match r.verdict {
            Verdict::Pass | Verdict::Skipped => {}
            Verdict::Timeout => return "timeout",
            Verdict::WrongAnswer => wrong = true,
            Verdict::RuntimeError
            | Verdict::Memory
            | Verdict::SyntaxError
            | Verdict::OutputLimit
            | Verdict::ProtocolViolation => crash = true,
        }
    }
    match (crash, wrong) {
        (true, _) => "crash",
        (false, true) => "wrong_answer",
        (false, false) => "correct",
    }
}

fn text_or_null(v: Option<String>) -> Value {
    v.map_or(Value::Null, Value::String)
}

fn comparator_name(c: Comparator) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn mode_name(m: &ProgramMode) -> &'static str {
    match m {
        ProgramMode::Function => "function",
        ProgramMode::Stdio => "stdio",
    }
}

fn empty_result(problem: &str) -> Row {
    let mut r = Map::new();
    r.insert("candidate".into(), Value::String(String::new()));
    r.insert(problem.into(), Value::String(String::new()));
    r.insert("test".into(), Value::from(0u64));
    for text in ["verdict", "output", "exc_type", "exc_message"] {
        r.insert(text.into(), Value::String(String::new()));
    }
    r
}

fn empty_summary(problem: &str) -> Row {
    let mut r = Map::new();
    r.insert("candidate".into(), Value::String(String::new()));
    r.insert(problem.into(), Value::String(String::new()));
    r.insert("tests".into(), Value::from(0u64));
    r.insert("passed".into(), Value::from(0u64));
    r.insert("pass".into(), Value::Bool(false));
    r.insert("first_failure".into(), Value::from(0u64));
    r.insert("first_verdict".into(), Value::String(String::new()));
    r.insert("label".into(), Value::String(String::new()));
    r
}
