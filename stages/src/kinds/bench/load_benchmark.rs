//! `load_benchmark`: read a benchmark as published into one problems table and one tests table.
//!
//! # What it does
//! Reads a benchmark file in its real format and writes every problem in one
//! schema, with its tests as separate rows, so the dataset and scaling stages
//! treat HumanEval, MBPP, LiveCodeBench and the rest alike:
//! - `humaneval` (`HumanEval.jsonl.gz`) and `humanevalpack` (HumanEvalPack's
//!   Python file, the source of HE-R: `buggy_solution` becomes `buggy`; ids
//!   become `HumanEval/N`): every `candidate(...)` call in `check` becomes a
//!   test (found with Python's `ast`, so `abs(candidate(x) - y) < 1e-6` counts
//!   too); the expected output is what the canonical solution returns.
//! - `humaneval-plus`, `mbpp-plus` (EvalPlus files): `base_input`, and with
//!   `tests: plus` or `all` also `plus_input`; expected outputs are computed
//!   by running the canonical solution in the sandbox, as EvalPlus does.
//! - `mbpp` (Google's `mbpp.jsonl`): the calls in `test_list` (the function
//!   tested is the one the asserts call that the reference defines).
//! - `he-r`, `mbpp-r`: the original study's repair benchmarks
//!   (`*_r_buggy.jsonl`): `buggy` is the program to repair; with its
//!   `*_eval_results.json` beside it, the failing inputs it recorded become
//!   tests without expected outputs (join the base benchmark's tests for more).
//! - `cruxeval`: `f` on the one recorded input.
//! - `bigcodebench`: by default only the problems whose `libs` are all in
//!   the interpreter's standard library (runnable here). Their tests are a
//!   unittest class, kept as `test_program`; the tests table stays empty.
//! - `livecodebench` (`code_generation_lite`): public and private tests (the
//!   private ones may be base64 of zlib of a pickled JSON string; the pickle
//!   is decoded, never unpickled), filtered by `start_date`/`end_date` on
//!   `contest_date` and by `difficulty`. Functional problems call
//!   `Solution.<func_name>`.
//! - `apps`: `input_output` with `fn_name` (call) or without (stdin),
//!   filtered by `difficulty` (`introductory`, `interview`, `competition`).
//!
//! A malformed row is an error naming the file and row, or with
//! `on_error: skip` a counted skip (`skipped_rows` in the manifest). Tests
//! whose input cannot be evaluated or on which the canonical solution fails
//! are dropped and counted (`dropped_tests`, with the first reasons), never
//! silently.
//!
//! # Params
//! - `benchmark` (required): `humaneval`, `humanevalpack`, `humaneval-plus`,
//!   `mbpp`, `mbpp-plus`, `he-r`, `mbpp-r`, `cruxeval`, `bigcodebench`,
//!   `livecodebench`, `apps`.
//! - `path` (required): the file, relative to the spec (`.gz` is read too).
//! - `tests` (`base` | `plus` | `all`, default `base`): EvalPlus input sets.
//! - `start_date`, `end_date` (`YYYY-MM-DD`, inclusive), `difficulty` (list):
//!   LiveCodeBench and APPS filters.
//! - `stdlib_only` (default true): BigCodeBench filter.
//! - `on_error` (`fail` | `skip`, default `fail`), `limit` (first N problems).
//! - `timeout` (seconds per reference run, default 10), `memory_mb` (default 4096).
//!
//! # Inputs
//! None.
//!
//! # Outputs
//! - `problems`: `task_id`, `benchmark`, `prompt` (what a model is shown),
//!   `entry_point` (null for stdin programs), `mode` (`function`|`stdio`),
//!   `reference` (a runnable correct program, when the benchmark has one),
//!   `buggy` (HE-R, MBPP-R, HumanEvalPack), `test_program` (the benchmark's
//!   own test script: HumanEval's `check`, MBPP's asserts, BigCodeBench's
//!   unittest), `atol`, `difficulty`, `contest_date`, `n_tests`.
//! - `tests`: `task_id`, `test` (index within the problem), `input` (function
//!   mode: the argument list as tagged JSON text, read with
//!   `input_format: tagged`; stdin mode: the text), `expected` (tagged JSON
//!   text or the expected stdout; null when unknown), `public` (shown to the
//!   model: LiveCodeBench's public tests), `suite` (`base`, `plus`, `public`,
//!   `private`, `test`, `seed_fail_base`, `seed_fail_plus`, `check`), and how
//!   the benchmark grades them, which `execute` and the scaling stages follow:
//!   `comparator` and `dataset` (`evalplus` and `humaneval`/`mbpp` for
//!   EvalPlus files, else null), `atol` (EvalPlus's float tolerance), and
//!   `check`. HumanEval, HumanEvalPack and MBPP, graded by a script of their
//!   own, get one more row per problem (`suite: check`, no input) whose
//!   `check` is that script (`test_program`): it decides whether a program
//!   passes, with the float tolerance and property checks the per-call
//!   tests cannot express (HumanEval/32, /38 and /50 have no per-call tests
//!   at all), so a program graded in a pipeline gets the verdict `tw score`
//!   gives it.
//!
//! # Caching
//! The file's bytes (and the MBPP-R/HE-R results file beside it) are in the
//! key, as is the interpreter version: expected outputs come from running
//! code. Reruns write identical bytes.
//!
//! # Example
//! ```yaml
//! humaneval:
//!   kind: load_benchmark
//!   params: { benchmark: humaneval, path: ../data/HumanEval.jsonl.gz }
//! ```

use crate::api::artifact;
use crate::api::rows::{OnError, Row, read_rows};
use crate::api::{EnvFact, FileDep, InputSlot, PlanEnv, Problem, RunCtx, Stage, StageError};
use crate::bench::benchmark::{Benchmark, name_list};
use crate::bench::problem::is_iso_day;
use crate::bench::problem::{InputSets, LoadOptions, Loaded, Parsed, Spec};
use crate::bench::reference::{run_reference, split_calls};
use crate::python::programs;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

pub struct LoadBenchmark;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBenchmarkParams {
    pub benchmark: Benchmark,
    pub path: String,
    #[serde(default)]
    pub tests: InputSets,
    #[serde(default)]
    pub start_date: Option<String>,
    #[serde(default)]
    pub end_date: Option<String>,
    #[serde(default)]
    pub difficulty: Vec<String>,
    #[serde(default = "yes")]
    pub stdlib_only: bool,
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    #[serde(default = "crate::python::trace_jobs::default_memory_mb")]
    pub memory_mb: u64,
}

fn yes() -> bool {
    true
}
fn default_timeout() -> f64 {
    10.0
}

impl LoadBenchmarkParams {
    fn options(&self) -> LoadOptions {
        LoadOptions {
            tests: self.tests,
            start_date: self.start_date.clone(),
            end_date: self.end_date.clone(),
            difficulty: self.difficulty.clone(),
            stdlib_only: self.stdlib_only,
        }
    }
}

impl Stage for LoadBenchmark {
    const KIND: &'static str = "load_benchmark";
    // 2: HE-R / MBPP-R problems get an `entry_point`.
    // 3: tests carry their grading rules and script benchmarks a check row.
    const VERSION: u32 = 3;
    const SOURCE: &'static str = include_str!("load_benchmark.rs");
    const INPUTS: &'static [InputSlot] = &[];
    const OUTPUTS: &'static [&'static str] = &["problems", "tests"];
    type Params = LoadBenchmarkParams;

    fn validate(p: &LoadBenchmarkParams) -> Vec<Problem> {
        let mut problems = programs::check_limits(p.timeout, p.memory_mb);
        if !p.benchmark.family().loads() {
            problems.push(
                Problem::at(
                    "benchmark",
                    format!(
                        "`{}` is a grading mode, not a file to load",
                        p.benchmark.name()
                    ),
                )
                .help(format!("load one of {}", name_list(&Benchmark::loadable()))),
            );
        }
        for (name, day) in [("start_date", &p.start_date), ("end_date", &p.end_date)] {
            if let Some(day) = day.as_ref().filter(|d| !is_iso_day(d)) {
                problems.push(Problem::at(
                    name,
                    format!("`{day}` is not a YYYY-MM-DD date"),
                ));
            }
        }
        let dated = matches!(p.benchmark, Benchmark::LiveCodeBench);
        if !dated && (p.start_date.is_some() || p.end_date.is_some()) {
            problems.push(
                Problem::at("start_date", "date filters apply to `livecodebench` only")
                    .help("remove `start_date`/`end_date`"),
            );
        }
        if !p.difficulty.is_empty()
            && !matches!(p.benchmark, Benchmark::LiveCodeBench | Benchmark::Apps)
        {
            problems.push(Problem::at(
                "difficulty",
                "`difficulty` filters `livecodebench` and `apps` only",
            ));
        }
        if p.tests != InputSets::Base
            && !matches!(p.benchmark, Benchmark::HumanEvalPlus | Benchmark::MbppPlus)
        {
            problems.push(Problem::at(
                "tests",
                "`tests: plus|all` needs an EvalPlus benchmark (`humaneval-plus`, `mbpp-plus`)",
            ));
        }
        problems
    }

    fn file_deps(p: &LoadBenchmarkParams, env: &PlanEnv) -> Vec<FileDep> {
        let mut deps = vec![FileDep {
            param: "path".into(),
            path: p.path.clone(),
        }];
        for file in p.benchmark.family().companion_files(Path::new(&p.path)) {
            if env.resolve(&file.to_string_lossy()).exists() {
                deps.push(FileDep {
                    param: "path".into(),
                    path: file.to_string_lossy().into_owned(),
                });
            }
        }
        deps
    }

    fn env_facts(_p: &LoadBenchmarkParams) -> Vec<EnvFact> {
        programs::sandbox_facts()
    }

    fn run(p: &LoadBenchmarkParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let path = ctx.resolve(&p.path);
        let limit = p.limit.map_or(usize::MAX, |l| l as usize);
        let family = p.benchmark.family();
        let options = p.options();
        let (rows, mut skipped) = read_rows(&path, p.on_error)?;
        let mut loaded = Loaded::default();
        for (i, row) in rows.iter().enumerate() {
            if loaded.problems.len() >= limit {
                break;
            }
            match family.load_row(row, &options) {
                Ok(Some(parsed)) => loaded.problems.push(parsed),
                Ok(None) => loaded.filtered += 1,
                Err(e) if p.on_error == OnError::Skip => {
                    skipped += 1;
                    loaded.note_drop(format!("row {}: {e}", i + 1));
                }
                Err(message) => {
                    return Err(StageError::BadRecord {
                        file: path.clone(),
                        line: i + 1,
                        message,
                    });
                }
            }
        }
        loaded.filtered += family.finish(&path, &options, &mut loaded.problems)?;
        let needs_sandbox = loaded
            .problems
            .iter()
            .any(|prob: &Parsed| prob.tests.iter().any(|t| !matches!(t, Spec::Ready { .. })));
        if needs_sandbox {
            let sandbox = programs::open_sandbox(ctx, None)?;
            let limits = programs::limits(p.timeout, p.memory_mb);
            split_calls(&mut loaded, &sandbox, &limits)?;
            run_reference(&mut loaded, &sandbox, &limits, ctx.progress())?;
            programs::note_retries(ctx, &sandbox);
        }
        ctx.note("skipped_rows", skipped);
        ctx.note("filtered", loaded.filtered);
        ctx.note("dropped_tests", loaded.dropped);
        if !loaded.drop_reasons.is_empty() {
            ctx.note("dropped_examples", loaded.drop_reasons.clone());
        }
        let (problems, tests) = into_tables(loaded, p.benchmark);
        ctx.note("problems", problems.len());
        ctx.note("tests", tests.len());
        ctx.write_output(
            "problems",
            &artifact::json_rows_to_typed_table(problems, problem_template())?,
        )?;
        ctx.write_output(
            "tests",
            &artifact::json_rows_to_typed_table(tests, test_template())?,
        )
    }
}

fn into_tables(loaded: Loaded, source: Benchmark) -> (Vec<Row>, Vec<Row>) {
    let mut problems = Vec::with_capacity(loaded.problems.len());
    let mut tests = Vec::new();
    let text = |v: Option<String>| v.map_or(Value::Null, Value::String);
    let evalplus = source.evalplus_dataset();
    for p in loaded.problems {
        // How the benchmark grades these tests, on every row of the problem.
        let rules = |row: &mut Row, check: Option<String>| {
            row.insert(
                "comparator".into(),
                text(evalplus.map(|_| "evalplus".to_string())),
            );
            row.insert("atol".into(), serde_json::json!(p.atol));
            row.insert("dataset".into(), text(evalplus.map(String::from)));
            row.insert("check".into(), text(check));
        };
        let mut n = 0u64;
        for spec in p.tests {
            let Spec::Ready {
                input,
                expected,
                public,
                suite,
            } = spec
            else {
                continue;
            };
            let mut row = Map::new();
            row.insert("task_id".into(), Value::String(p.task_id.clone()));
            row.insert("test".into(), Value::from(n));
            row.insert("input".into(), stored_cell(input, p.stdio));
            row.insert(
                "expected".into(),
                expected.map_or(Value::Null, |e| stored_cell(e, p.stdio)),
            );
            row.insert("public".into(), Value::Bool(public));
            row.insert("suite".into(), Value::String(suite.into()));
            rules(&mut row, None);
            tests.push(row);
            n += 1;
        }
        if source.graded_by_check_script()
            && let Some(check) = p.test_program.clone()
        {
            // The benchmark's own check: it decides pass or fail, as the
            // harness does; the calls above serve traces and feedback.
            let mut row = Map::new();
            row.insert("task_id".into(), Value::String(p.task_id.clone()));
            row.insert("test".into(), Value::from(n));
            row.insert("input".into(), Value::Null);
            row.insert("expected".into(), Value::Null);
            row.insert("public".into(), Value::Bool(false));
            row.insert("suite".into(), Value::String("check".into()));
            rules(&mut row, Some(check));
            tests.push(row);
        }
        let mut row = Map::new();
        row.insert("task_id".into(), Value::String(p.task_id));
        row.insert("benchmark".into(), Value::String(source.name().into()));
        row.insert("prompt".into(), Value::String(p.prompt));
        row.insert("entry_point".into(), text(p.entry_point));
        row.insert(
            "mode".into(),
            Value::String(if p.stdio { "stdio" } else { "function" }.into()),
        );
        row.insert("reference".into(), text(p.reference));
        row.insert("buggy".into(), text(p.buggy));
        row.insert("test_program".into(), text(p.test_program));
        row.insert("atol".into(), serde_json::json!(p.atol));
        row.insert("difficulty".into(), text(p.difficulty));
        row.insert("contest_date".into(), text(p.contest_date));
        row.insert("n_tests".into(), Value::from(n));
        problems.push(row);
    }
    (problems, tests)
}

/// Stdin texts stay text; tagged values are stored as their JSON text.
fn stored_cell(v: Value, stdio: bool) -> Value {
    match v {
        Value::String(s) if stdio => Value::String(s),
        other => Value::String(other.to_string()),
    }
}

fn problem_template() -> Row {
    let mut r = Map::new();
    for text in [
        "task_id",
        "benchmark",
        "prompt",
        "entry_point",
        "mode",
        "reference",
        "buggy",
        "test_program",
    ] {
        r.insert(text.into(), Value::String(String::new()));
    }
    r.insert("atol".into(), serde_json::json!(0.5));
    r.insert("difficulty".into(), Value::String(String::new()));
    r.insert("contest_date".into(), Value::String(String::new()));
    r.insert("n_tests".into(), Value::from(0u64));
    r
}

fn test_template() -> Row {
    let mut r = Map::new();
    r.insert("task_id".into(), Value::String(String::new()));
    r.insert("test".into(), Value::from(0u64));
    r.insert("input".into(), Value::String(String::new()));
    r.insert("expected".into(), Value::String(String::new()));
    r.insert("public".into(), Value::Bool(false));
    r.insert("suite".into(), Value::String(String::new()));
    r.insert("comparator".into(), Value::String(String::new()));
    r.insert("atol".into(), serde_json::json!(0.5));
    r.insert("dataset".into(), Value::String(String::new()));
    r.insert("check".into(), Value::String(String::new()));
    r
}
