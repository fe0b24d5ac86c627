//! `failing_tests`: keep the tests that fail on a pair's buggy program and pass on its patch.
//!
//! # What it does
//! Runs both programs of every pair on every test of the pair's problem in
//! the sandbox and keeps each test the buggy program does not pass (a wrong
//! answer, an exception, a timeout) while the patch does: the tests that
//! separate the two, which the traces then show. Pairs without such a test
//! are dropped and counted (`pairs_without_failing_test`). With `per_pair`,
//! that many of a pair's separating tests are kept, chosen with `seed` (the
//! original study traced one random failing test per program).
//!
//! # Params
//! - `per_pair` (default: all), `seed` (default 0).
//! - `input_format`, `expected_format` (default `tagged`, as `load_benchmark`
//!   writes them), `mode` (`function` | `stdio`, default `function`),
//!   `comparator` (as for `execute`), `atol` (default 0).
//!   The tests' own `comparator` / `atol` columns apply when these are unset.
//! - `timeout` (seconds per test, default 3), `memory_mb` (default 4096).
//! - `on_ungradable` (`fail` | `skip`, default `fail`): a pair whose problem
//!   has no tests, or tests without expected outputs (nothing could separate
//!   its programs), stops the stage with an error naming the problems, or is
//!   left out and counted (`skipped_pairs`); pairs and tests that share no
//!   problem always fail. Task ids written differently meet (`Mbpp/250`, `250`).
//!
//! # Inputs
//! - `pairs`: `pair_id`, `task_id`, `buggy`, `patch`, `entry_point` (a
//!   `mine_pairs` output; any other columns are carried along).
//! - `tests`: `task_id`, `test`, `input`, `expected` (a `load_benchmark` output).
//!
//! # Outputs
//! - `failing`: one row per kept (pair, test): the pair's columns, then
//!   `test`, `input`, `expected`, `buggy_verdict`, `buggy_output`,
//!   `patch_output`. Feed it to `trace` with `program: buggy`.
//! - `summary`: one row per pair: `pair_id`, `task_id`, `tests`, `failing`
//!   (separating tests found), `kept`.
//!
//! # Caching
//! Limits, comparator and choice are params; the interpreter version is an
//! environment fact. A timeout is the one verdict that can differ on rerun.
//!
//! # Example
//! ```yaml
//! failing:
//!   kind: failing_tests
//!   inputs: { pairs: pairs.pairs, tests: humaneval.tests }
//!   params: { per_pair: 1, seed: 42 }
//! ```

use crate::api::artifact;
use crate::api::rng::SplitMix64;
use crate::api::rows;
use crate::api::rows::At;
use crate::api::rows::Row;
use crate::api::{EnvFact, InputSlot, Problem, RunCtx, Stage, StageError};
use crate::bench::gate::Gate;
use crate::bench::task_id::TaskIds;
use crate::python::programs::{self, CellFormat, ProgramMode, Ungradable};
use crate::python::sandbox::{Comparator, Job, Tagged, TestCase, TestReport, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

pub struct FailingTests;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailingTestsParams {
    #[serde(default)]
    pub per_pair: Option<u64>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "tagged")]
    pub input_format: CellFormat,
    #[serde(default = "tagged")]
    pub expected_format: CellFormat,
    #[serde(default = "function_mode")]
    pub mode: ProgramMode,
    #[serde(default)]
    pub comparator: Option<Comparator>,
    #[serde(default)]
    pub atol: f64,
    #[serde(default)]
    pub on_ungradable: Ungradable,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    #[serde(default = "crate::python::trace_jobs::default_memory_mb")]
    pub memory_mb: u64,
}

fn tagged() -> CellFormat {
    CellFormat::Tagged
}
fn function_mode() -> ProgramMode {
    ProgramMode::Function
}
fn default_timeout() -> f64 {
    3.0
}

impl Stage for FailingTests {
    const KIND: &'static str = "failing_tests";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("failing_tests.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("pairs"), InputSlot::one("tests")];
    const OUTPUTS: &'static [&'static str] = &["failing", "summary"];
    type Params = FailingTestsParams;

    fn validate(p: &FailingTestsParams) -> Vec<Problem> {
        let mut problems = programs::check_limits(p.timeout, p.memory_mb);
        if p.per_pair == Some(0) {
            problems.push(Problem::at("per_pair", "`per_pair` must be at least 1"));
        }
        problems
    }

    fn env_facts(_p: &FailingTestsParams) -> Vec<EnvFact> {
        programs::sandbox_facts()
    }

    fn run(p: &FailingTestsParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let pairs = artifact::table_to_json_rows(&ctx.input("pairs")?)?;
        let tests = artifact::table_to_json_rows(&ctx.input("tests")?)?;
        for column in ["pair_id", "task_id", "buggy", "patch"] {
            rows::require_column(&pairs, "pairs", column, column)?;
        }
        for column in ["task_id", "input", "expected"] {
            rows::require_column(&tests, "tests", column, column)?;
        }
        // Each problem's tests: the rows (to copy into the output) and their cases.
        let suites = programs::test_suites(
            &tests,
            &p.mode,
            &programs::TestColumns {
                problem: "task_id",
                input: "input",
                input_format: p.input_format,
                expected: Some("expected"),
                expected_format: p.expected_format,
            },
        )?;
        let test_ids = TaskIds::new(suites.keys().map(String::as_str));
        let mut gate = Gate::default();
        let mut jobs = Vec::with_capacity(pairs.len() * 2);
        // Each pair graded, with its problem's suite; ungradable pairs are left out.
        let mut graded: Vec<(&Row, &programs::SuiteRows)> = Vec::with_capacity(pairs.len());
        for (i, pair) in pairs.iter().enumerate() {
            let id = rows::text(
                pair,
                "pair_id",
                &At {
                    slot: "pairs",
                    row: i,
                    id: None,
                },
            )?;
            let at = At {
                slot: "pairs",
                row: i,
                id: Some(&id),
            };
            let task = rows::text(pair, "task_id", &at)?;
            let Some(suite) = test_ids.find(&task).and_then(|id| suites.get(id)) else {
                gate.no_tests.insert(task);
                continue;
            };
            if suite.cases.is_empty() {
                gate.no_tests.insert(task);
                continue;
            }
            let without = suite.without_expected();
            if without > 0 {
                gate.no_expected.insert(task, (without, suite.cases.len()));
                continue;
            }
            graded.push((pair, suite));
            let cases: Arc<Vec<TestCase>> =
                Arc::new(suite.cases.iter().map(|(_, c)| c.clone()).collect());
            for column in ["buggy", "patch"] {
                let mut job = Job::new(p.mode.sandbox_mode(), rows::text(pair, column, &at)?);
                if p.mode == ProgramMode::Function {
                    job.entry_point =
                        Some(rows::optional_text(pair, "entry_point").ok_or_else(|| {
                            at.error("entry_point", "is empty: a function needs its name")
                        })?);
                }
                job.tests = Arc::clone(&cases);
                // The benchmark's comparison where its tests record one.
                let default = p.mode.default_comparator();
                suite.rules.apply(&mut job, p.comparator, p.atol, default);
                job.limits = programs::limits(p.timeout, p.memory_mb);
                jobs.push(job);
            }
        }
        let skipped = gate.settle(
            p.on_ungradable,
            graded.len(),
            pairs.len(),
            &test_ids,
            "pair",
        )?;
        if skipped > 0 {
            ctx.note("skipped_pairs", skipped);
            ctx.note("skipped_problems", gate.examples());
        }
        let sandbox = programs::open_sandbox(ctx, None)?;
        ctx.progress().set_total(jobs.len() as u64);
        let progress = ctx.progress();
        let reports = sandbox.run_all(&jobs, &|| progress.inc(1))?;
        programs::note_retries(ctx, &sandbox);

        let mut failing = Vec::new();
        let mut summary = Vec::with_capacity(graded.len());
        let mut without = 0u64;
        let mut rng = SplitMix64::new(p.seed);
        for (&(pair, suite), runs) in graded.iter().zip(reports.chunks(2)) {
            let task = pair
                .get("task_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let suite = suite.cases.as_slice();
            let (buggy, patch) = (&runs[0].results, &runs[1].results);
            let separating: Vec<usize> = (0..suite.len())
                .filter(|&t| {
                    let failed = buggy.get(t).is_some_and(|r| r.verdict != Verdict::Pass);
                    let passed = patch.get(t).is_some_and(|r| r.verdict == Verdict::Pass);
                    failed && passed
                })
                .collect();
            let kept = choose(&separating, p.per_pair, &mut rng);
            if kept.is_empty() {
                without += 1;
            }
            for &t in &kept {
                let (test_row, _) = suite[t];
                let mut row = (*pair).clone();
                let source = &tests[test_row];
                row.insert(
                    "test".into(),
                    source.get("test").cloned().unwrap_or(Value::from(t as u64)),
                );
                row.insert(
                    "input".into(),
                    source.get("input").cloned().unwrap_or(Value::Null),
                );
                row.insert(
                    "expected".into(),
                    source.get("expected").cloned().unwrap_or(Value::Null),
                );
                row.insert(
                    "buggy_verdict".into(),
                    Value::String(buggy[t].verdict.as_str().into()),
                );
                row.insert("buggy_output".into(), output(&buggy[t], &p.mode));
                row.insert("patch_output".into(), output(&patch[t], &p.mode));
                failing.push(row);
            }
            let mut s = Map::new();
            s.insert(
                "pair_id".into(),
                pair.get("pair_id").cloned().unwrap_or(Value::Null),
            );
            s.insert("task_id".into(), Value::String(task));
            s.insert("tests".into(), Value::from(suite.len() as u64));
            s.insert("failing".into(), Value::from(separating.len() as u64));
            s.insert("kept".into(), Value::from(kept.len() as u64));
            summary.push(s);
        }
        ctx.note("pairs", pairs.len());
        ctx.note("pairs_without_failing_test", without);
        ctx.note("failing_rows", failing.len());
        let mut template = pairs.first().cloned().unwrap_or_default();
        for (k, v) in [
            ("test", Value::from(0u64)),
            ("input", Value::String(String::new())),
            ("expected", Value::String(String::new())),
            ("buggy_verdict", Value::String(String::new())),
            ("buggy_output", Value::String(String::new())),
            ("patch_output", Value::String(String::new())),
        ] {
            template.insert(k.into(), v);
        }
        ctx.write_output(
            "failing",
            &artifact::json_rows_to_typed_table(failing, template)?,
        )?;
        let mut template = Map::new();
        template.insert("pair_id".into(), Value::String(String::new()));
        template.insert("task_id".into(), Value::String(String::new()));
        for n in ["tests", "failing", "kept"] {
            template.insert(n.into(), Value::from(0u64));
        }
        ctx.write_output(
            "summary",
            &artifact::json_rows_to_typed_table(summary, template)?,
        )
    }
}

fn output(report: &TestReport, mode: &ProgramMode) -> Value {
    match mode {
        ProgramMode::Function => report
            .output_repr
            .clone()
            .map_or(Value::Null, Value::String),
        ProgramMode::Stdio => report.output.as_ref().map_or(Value::Null, Tagged::value),
    }
}

/// `n` of `items` chosen with `rng`, in their original order; all without `n`.
fn choose(items: &[usize], n: Option<u64>, rng: &mut SplitMix64) -> Vec<usize> {
    let Some(n) = n else {
        return items.to_vec();
    };
    let mut pool = items.to_vec();
    let mut picked = Vec::new();
    while picked.len() < n as usize && !pool.is_empty() {
        let j = rng.below(pool.len() as u64) as usize;
        picked.push(pool.swap_remove(j));
    }
    picked.sort_unstable();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_is_seeded_ordered_and_bounded() {
        let items = [1, 4, 6, 9, 12];
        assert_eq!(
            choose(&items, None, &mut SplitMix64::new(0)),
            items.to_vec()
        );
        let a = choose(&items, Some(2), &mut SplitMix64::new(3));
        assert_eq!(a, choose(&items, Some(2), &mut SplitMix64::new(3)));
        assert_eq!(a.len(), 2);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            choose(&items, Some(9), &mut SplitMix64::new(3)),
            items.to_vec()
        );
    }
}
