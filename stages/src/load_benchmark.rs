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
//!   `private`, `test`, `seed_fail_base`, `seed_fail_plus`).
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

use crate::api::{
    EnvFact, FileDep, InputSlot, PlanEnv, Problem, RunCtx, Stage, StageError, module_doc,
};
use crate::artifact;
use crate::load::OnError;
use crate::programs::{self, Row, cell_text};
use crate::sandbox::{Comparator, Job, Mode, TestCase, Verdict};
use crate::scoring::{self, Benchmark};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct LoadBenchmark;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    #[serde(rename = "humaneval")]
    HumanEval,
    #[serde(rename = "humanevalpack")]
    HumanEvalPack,
    #[serde(rename = "humaneval-plus")]
    HumanEvalPlus,
    Mbpp,
    MbppPlus,
    HeR,
    MbppR,
    #[serde(rename = "cruxeval")]
    CruxEval,
    #[serde(rename = "bigcodebench")]
    BigCodeBench,
    #[serde(rename = "livecodebench")]
    LiveCodeBench,
    Apps,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::HumanEval => "humaneval",
            Source::HumanEvalPack => "humanevalpack",
            Source::HumanEvalPlus => "humaneval-plus",
            Source::Mbpp => "mbpp",
            Source::MbppPlus => "mbpp-plus",
            Source::HeR => "he-r",
            Source::MbppR => "mbpp-r",
            Source::CruxEval => "cruxeval",
            Source::BigCodeBench => "bigcodebench",
            Source::LiveCodeBench => "livecodebench",
            Source::Apps => "apps",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InputSets {
    #[default]
    Base,
    Plus,
    All,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBenchmarkParams {
    pub benchmark: Source,
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
    #[serde(default = "crate::trace::default_memory_mb")]
    pub memory_mb: u64,
}

fn yes() -> bool {
    true
}
fn default_timeout() -> f64 {
    10.0
}

impl Stage for LoadBenchmark {
    const KIND: &'static str = "load_benchmark";
    // 2: HE-R / MBPP-R problems get an `entry_point`.
    const VERSION: u32 = 2;
    type Params = LoadBenchmarkParams;

    fn doc() -> String {
        module_doc(include_str!("load_benchmark.rs"))
    }

    fn inputs(_p: &LoadBenchmarkParams) -> Vec<InputSlot> {
        Vec::new()
    }

    fn outputs(_p: &LoadBenchmarkParams) -> Vec<String> {
        vec!["problems".into(), "tests".into()]
    }

    fn validate(p: &LoadBenchmarkParams) -> Vec<Problem> {
        let mut problems = programs::check_limits(p.timeout, p.memory_mb);
        for (name, day) in [("start_date", &p.start_date), ("end_date", &p.end_date)] {
            if let Some(day) = day.as_ref().filter(|d| !scoring::is_iso_day(d)) {
                problems.push(Problem::at(
                    name,
                    format!("`{day}` is not a YYYY-MM-DD date"),
                ));
            }
        }
        let dated = matches!(p.benchmark, Source::LiveCodeBench);
        if !dated && (p.start_date.is_some() || p.end_date.is_some()) {
            problems.push(
                Problem::at("start_date", "date filters apply to `livecodebench` only")
                    .help("remove `start_date`/`end_date`"),
            );
        }
        if !p.difficulty.is_empty() && !matches!(p.benchmark, Source::LiveCodeBench | Source::Apps)
        {
            problems.push(Problem::at(
                "difficulty",
                "`difficulty` filters `livecodebench` and `apps` only",
            ));
        }
        if p.tests != InputSets::Base
            && !matches!(p.benchmark, Source::HumanEvalPlus | Source::MbppPlus)
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
        if matches!(p.benchmark, Source::HeR | Source::MbppR) {
            let results = seed_results_path(Path::new(&p.path));
            if env.resolve(&results.to_string_lossy()).exists() {
                deps.push(FileDep {
                    param: "path".into(),
                    path: results.to_string_lossy().into_owned(),
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
        let (rows, mut skipped) = crate::load::read_rows(&path, p.on_error)?;
        let mut loaded = Loaded::default();
        for (i, row) in rows.iter().enumerate() {
            if loaded.problems.len() >= limit {
                break;
            }
            match parse_row(p, row, &path, i) {
                Ok(Some(parsed)) => loaded.problems.push(parsed),
                Ok(None) => loaded.filtered += 1,
                Err(e) if p.on_error == OnError::Skip => {
                    skipped += 1;
                    loaded.note_drop(format!("row {}: {e}", i + 1));
                }
                Err(e) => return Err(e),
            }
        }
        if matches!(p.benchmark, Source::HeR | Source::MbppR) {
            attach_seed_failures(&mut loaded, &seed_results_path(&path))?;
        }
        if p.benchmark == Source::BigCodeBench && p.stdlib_only {
            let stdlib = stdlib_modules()?;
            let before = loaded.problems.len();
            loaded.problems.retain(|prob| {
                prob.libs
                    .iter()
                    .all(|lib| stdlib.contains(lib.split('.').next().unwrap_or(lib)))
            });
            loaded.filtered += (before - loaded.problems.len()) as u64;
        }
        let needs_sandbox = loaded
            .problems
            .iter()
            .any(|prob| prob.tests.iter().any(|t| !matches!(t, Spec::Ready { .. })));
        if needs_sandbox {
            let sandbox = programs::open_sandbox(ctx, None)?;
            split_calls(p, &mut loaded, &sandbox)?;
            run_reference(p, &mut loaded, &sandbox, ctx)?;
        }
        ctx.note("skipped_rows", skipped);
        ctx.note("filtered", loaded.filtered);
        ctx.note("dropped_tests", loaded.dropped);
        if !loaded.drop_reasons.is_empty() {
            ctx.note("dropped_examples", loaded.drop_reasons.clone());
        }
        let (problems, tests) = loaded.into_tables(p.benchmark);
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

/// `x_buggy.jsonl` -> `x_buggy_eval_results.json`, as the study shipped them.
fn seed_results_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.trim_end_matches(".gz").trim_end_matches(".jsonl");
    path.with_file_name(format!("{stem}_eval_results.json"))
}

/// A test before it is final: some need the sandbox to evaluate the input or
/// to compute the expected output with the reference.
#[derive(Debug, Clone)]
enum Spec {
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

#[derive(Debug, Clone, Default)]
struct Parsed {
    task_id: String,
    prompt: String,
    entry_point: Option<String>,
    stdio: bool,
    reference: Option<String>,
    buggy: Option<String>,
    test_program: Option<String>,
    atol: f64,
    difficulty: Option<String>,
    contest_date: Option<String>,
    libs: Vec<String>,
    tests: Vec<Spec>,
}

#[derive(Default)]
struct Loaded {
    problems: Vec<Parsed>,
    filtered: u64,
    dropped: u64,
    drop_reasons: Vec<String>,
}

const MAX_REASONS: usize = 20;

impl Loaded {
    fn note_drop(&mut self, reason: String) {
        if self.drop_reasons.len() < MAX_REASONS {
            self.drop_reasons.push(reason);
        }
    }

    fn drop_test(&mut self, task: &str, reason: impl std::fmt::Display) {
        self.dropped += 1;
        self.note_drop(format!("{task}: {reason}"));
    }

    fn into_tables(self, source: Source) -> (Vec<Row>, Vec<Row>) {
        let mut problems = Vec::with_capacity(self.problems.len());
        let mut tests = Vec::new();
        for p in self.problems {
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
                tests.push(row);
                n += 1;
            }
            let text = |v: Option<String>| v.map_or(Value::Null, Value::String);
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
    r
}

/// A JSON list given as a value or as JSON text.
fn list(row: &Row, key: &str) -> Result<Vec<Value>, String> {
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

fn required(row: &Row, key: &str, what: &str) -> Result<String, String> {
    cell_text(row, key)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{what} row has no `{key}`"))
}

fn parse_row(
    p: &LoadBenchmarkParams,
    row: &Row,
    path: &Path,
    i: usize,
) -> Result<Option<Parsed>, StageError> {
    let bad = |message: String| StageError::BadRecord {
        file: path.to_path_buf(),
        line: i + 1,
        message,
    };
    parse(p, row).map_err(bad)
}

fn parse(p: &LoadBenchmarkParams, row: &Row) -> Result<Option<Parsed>, String> {
    let mut out = Parsed::default();
    match p.benchmark {
        Source::HumanEval | Source::HumanEvalPack => {
            let id = required(row, "task_id", "a HumanEval")?;
            out.task_id = id.replace("Python/", "HumanEval/");
            out.prompt = required(row, "prompt", "a HumanEval")?;
            let entry = required(row, "entry_point", "a HumanEval")?;
            let canonical = required(row, "canonical_solution", "a HumanEval")?;
            out.reference = Some(format!("{}{canonical}", out.prompt));
            if p.benchmark == Source::HumanEvalPack {
                let buggy = required(row, "buggy_solution", "a HumanEvalPack")?;
                out.buggy = Some(format!("{}{buggy}", out.prompt));
            }
            let test = required(row, "test", "a HumanEval")?;
            out.test_program = Some(format!("{test}\ncheck({entry})\n"));
            out.tests.push(Spec::Script { script: test });
            out.entry_point = Some(entry);
        }
        Source::HumanEvalPlus | Source::MbppPlus => {
            out.task_id = required(row, "task_id", "an EvalPlus")?;
            out.prompt = required(row, "prompt", "an EvalPlus")?;
            out.entry_point = Some(required(row, "entry_point", "an EvalPlus")?);
            out.reference = Some(if p.benchmark == Source::HumanEvalPlus {
                format!(
                    "{}{}",
                    out.prompt,
                    required(row, "canonical_solution", "an EvalPlus")?
                )
            } else {
                cell_text(row, "code")
                    .or_else(|| cell_text(row, "canonical_solution"))
                    .ok_or("an MBPP+ row has no `code`")?
            });
            out.test_program = cell_text(row, "test");
            out.atol = row
                .get("atol")
                .and_then(|a| {
                    a.as_f64()
                        .or_else(|| a.as_str().and_then(|s| s.parse().ok()))
                })
                .unwrap_or(0.0);
            let mut sets = Vec::new();
            if p.tests != InputSets::Plus {
                sets.push(("base_input", "base"));
            }
            if p.tests != InputSets::Base {
                sets.push(("plus_input", "plus"));
            }
            for (key, suite) in sets {
                for args in list(row, key)? {
                    if !args.is_array() {
                        return Err(format!(
                            "{}: an entry of `{key}` is not an argument list",
                            out.task_id
                        ));
                    }
                    out.tests.push(Spec::Args {
                        args: crate::pyvalue::tagged_from_json(&args),
                        suite,
                    });
                }
            }
            if out.tests.is_empty() && p.tests != InputSets::Plus {
                return Err(format!(
                    "{}: no `base_input` (is this an EvalPlus file?)",
                    out.task_id
                ));
            }
        }
        Source::Mbpp => {
            out.task_id = required(row, "task_id", "an MBPP")?;
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
        }
        Source::HeR | Source::MbppR => {
            out.task_id = required(row, "task_id", "a repair-benchmark")?;
            out.buggy =
                Some(cell_text(row, "solution").ok_or_else(|| {
                    format!("{}: no `solution` (the buggy program)", out.task_id)
                })?);
            out.prompt = cell_text(row, "prompt").unwrap_or_default();
            out.entry_point = repair_entry_point(&out.prompt, out.buggy.as_deref());
        }
        Source::CruxEval => {
            out.task_id = required(row, "id", "a CRUXEval")?;
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
        }
        Source::BigCodeBench => {
            out.task_id = required(row, "task_id", "a BigCodeBench")?;
            out.prompt = required(row, "complete_prompt", "a BigCodeBench")?;
            let canonical = required(row, "canonical_solution", "a BigCodeBench")?;
            out.reference = Some(format!("{}{canonical}", out.prompt));
            out.entry_point =
                Some(cell_text(row, "entry_point").unwrap_or_else(|| "task_func".into()));
            out.test_program = Some(required(row, "test", "a BigCodeBench")?);
            out.libs = match row.get("libs") {
                Some(Value::String(s)) => parse_libs(s),
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                _ => Vec::new(),
            };
        }
        Source::LiveCodeBench | Source::Apps => {
            let bench = if p.benchmark == Source::Apps {
                Benchmark::Apps
            } else {
                Benchmark::LiveCodeBench
            };
            let problem =
                scoring::problems_from_rows(bench, std::slice::from_ref(row), Path::new(""))
                    .map_err(|e| match e {
                        StageError::BadRecord { message, .. } => message,
                        other => other.to_string(),
                    })?
                    .remove(0);
            if !p.difficulty.is_empty()
                && !problem
                    .difficulty
                    .as_ref()
                    .is_some_and(|d| p.difficulty.iter().any(|want| want.eq_ignore_ascii_case(d)))
            {
                return Ok(None);
            }
            let day = problem
                .contest_date
                .as_deref()
                .map(|d| d.get(..10).unwrap_or(d));
            let in_window = match day {
                Some(day) => {
                    p.start_date.as_deref().is_none_or(|s| day >= s)
                        && p.end_date.as_deref().is_none_or(|e| day <= e)
                }
                None => p.start_date.is_none() && p.end_date.is_none(),
            };
            if !in_window {
                return Ok(None);
            }
            let public = if bench == Benchmark::LiveCodeBench {
                list(row, "public_test_cases")?.len()
            } else {
                0
            };
            out.task_id = problem.task_id.clone();
            out.prompt = cell_text(row, "question_content")
                .or_else(|| cell_text(row, "question"))
                .unwrap_or_default();
            out.difficulty = problem.difficulty.clone();
            out.contest_date = problem.contest_date.clone();
            out.stdio = problem.fn_name.is_none();
            out.entry_point = problem.fn_name.as_ref().map(|f| match bench {
                Benchmark::LiveCodeBench => format!("Solution.{f}"),
                _ => f.clone(),
            });
            if !problem.canonical_solution.is_empty() {
                out.reference = Some(problem.canonical_solution.clone());
            }
            for (n, case) in problem.io_tests.into_iter().enumerate() {
                let (suite, is_public) = match bench {
                    Benchmark::LiveCodeBench if n < public => ("public", true),
                    Benchmark::LiveCodeBench => ("private", false),
                    _ => ("test", false),
                };
                out.tests.push(ready(case, is_public, suite));
            }
        }
    }
    Ok(Some(out))
}

/// BigCodeBench ships `libs` as Python list text (`"['random', 'itertools']"`).
fn parse_libs(text: &str) -> Vec<String> {
    text.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A scorer's test case as a final test row.
fn ready(case: TestCase, public: bool, suite: &'static str) -> Spec {
    let input = match (case.stdin, case.args, case.args_json) {
        (Some(stdin), _, _) => Value::String(stdin),
        (None, Some(args), _) => args,
        (None, None, Some(args)) => crate::pyvalue::tagged_from_json(&args),
        (None, None, None) => Value::Array(Vec::new()),
    };
    let expected = case.expected.or_else(|| {
        case.expected_json
            .map(|e| crate::pyvalue::tagged_from_json(&e))
    });
    Spec::Ready {
        input,
        expected,
        public,
        suite,
    }
}

/// The seed's `*_eval_results.json`: `{"eval": {task: [{base_fail_tests, plus_fail_tests}]}}`.
fn attach_seed_failures(loaded: &mut Loaded, path: &Path) -> Result<(), StageError> {
    if !path.exists() {
        return Ok(());
    }
    let text = fs_err::read_to_string(path)?;
    let value: Value = serde_json::from_str(&text).map_err(|e| StageError::BadRecord {
        file: path.to_path_buf(),
        line: e.line(),
        message: format!("invalid JSON: {e}"),
    })?;
    let Some(eval) = value.get("eval").and_then(Value::as_object) else {
        return Err(StageError::BadRecord {
            file: path.to_path_buf(),
            line: 1,
            message: "no `eval` object (is this an EvalPlus results file?)".into(),
        });
    };
    for problem in &mut loaded.problems {
        let Some(entry) = eval.get(&problem.task_id).and_then(|e| e.get(0)) else {
            continue;
        };
        for (key, suite) in [
            ("base_fail_tests", "seed_fail_base"),
            ("plus_fail_tests", "seed_fail_plus"),
        ] {
            for args in entry
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if args.is_array() {
                    problem.tests.push(Spec::Ready {
                        input: crate::pyvalue::tagged_from_json(args),
                        expected: None,
                        public: false,
                        suite,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The interpreter's `sys.stdlib_module_names`.
fn stdlib_modules() -> Result<std::collections::BTreeSet<String>, StageError> {
    let (python, _) =
        crate::sandbox::find_python().map_err(|e| StageError::failed(e.to_string()))?;
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys; print('\\n'.join(sorted(sys.stdlib_module_names)))",
        ])
        .output()?;
    if !out.status.success() {
        return Err(StageError::failed(format!(
            "{} could not list its standard library",
            python.display()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect())
}

/// Finds the calls a test script makes to the function under test. Reads
/// `{"script", "code", "entry"}` on stdin; prints `{"entry", "calls", "skipped"}`.
const SPLIT_CALLS: &str = r#"
import ast, json, sys

req = json.loads(sys.stdin.read())
script = req["script"]
tree = ast.parse(script)
entry = req.get("entry")
if not entry:
    defined = []
    try:
        for node in ast.parse(req.get("code") or "").body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.append(node.name)
    except SyntaxError:
        pass
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in defined:
            entry = node.func.id
            break
names = {"candidate", entry}
calls, skipped, seen = [], 0, set()

class Calls(ast.NodeVisitor):
    def visit_Call(self, node):
        global skipped
        if isinstance(node.func, ast.Name) and node.func.id in names:
            if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
                skipped += 1
                return
            source = ", ".join(ast.get_source_segment(script, a) for a in node.args)
            if source not in seen:
                seen.add(source)
                calls.append(source)
            return
        self.generic_visit(node)

Calls().visit(tree)
print(json.dumps({"entry": entry, "calls": calls, "skipped": skipped}))
"#;

/// Turn every `Script` test into `Source` tests, one per call found.
fn split_calls(
    p: &LoadBenchmarkParams,
    loaded: &mut Loaded,
    sandbox: &crate::sandbox::Sandbox,
) -> Result<(), StageError> {
    let mut jobs = Vec::new();
    let mut owners = Vec::new();
    for (i, problem) in loaded.problems.iter().enumerate() {
        for spec in &problem.tests {
            if let Spec::Script { script } = spec {
                let request = serde_json::json!({
                    "script": script,
                    "code": problem.reference,
                    "entry": problem.entry_point,
                });
                let mut job = Job::new(Mode::Stdio, SPLIT_CALLS);
                job.tests = vec![TestCase {
                    stdin: Some(request.to_string()),
                    ..TestCase::default()
                }];
                job.limits = programs::limits(p.timeout, p.memory_mb);
                job.comparator = Comparator::Exact;
                jobs.push(job);
                owners.push(i);
            }
        }
    }
    if jobs.is_empty() {
        return Ok(());
    }
    let reports = sandbox.run_all(&jobs, &|| {});
    let mut found: BTreeMap<usize, (Option<String>, Vec<String>)> = BTreeMap::new();
    for (owner, report) in owners.into_iter().zip(reports) {
        let task = loaded.problems[owner].task_id.clone();
        let result = report.results.first();
        let parsed = result
            .filter(|r| r.verdict == Verdict::Pass)
            .and_then(|r| r.output.as_ref().and_then(Value::as_str))
            .and_then(|text| serde_json::from_str::<Value>(text.trim()).ok());
        let Some(parsed) = parsed else {
            let why = result
                .map(|r| {
                    format!(
                        "{} {}",
                        r.verdict.as_str(),
                        r.exc_message.clone().unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| "no report".into());
            loaded.drop_test(&task, format!("its test script could not be parsed: {why}"));
            continue;
        };
        let skipped = parsed.get("skipped").and_then(Value::as_u64).unwrap_or(0);
        for _ in 0..skipped {
            loaded.drop_test(&task, "a call with keyword or starred arguments");
        }
        let entry = parsed
            .get("entry")
            .and_then(Value::as_str)
            .map(String::from);
        let calls = parsed
            .get("calls")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let slot = found.entry(owner).or_default();
        slot.0 = slot.0.take().or(entry);
        slot.1.extend::<Vec<String>>(calls);
    }
    for (i, problem) in loaded.problems.iter_mut().enumerate() {
        let had_script = problem
            .tests
            .iter()
            .any(|t| matches!(t, Spec::Script { .. }));
        if !had_script {
            continue;
        }
        problem.tests.retain(|t| !matches!(t, Spec::Script { .. }));
        if let Some((entry, calls)) = found.remove(&i) {
            if problem.entry_point.is_none() {
                problem.entry_point = entry;
            }
            problem
                .tests
                .extend(calls.into_iter().map(|source| Spec::Source {
                    source,
                    suite: "base",
                }));
        }
    }
    Ok(())
}

/// A reference run of one test: (arguments, output), or why it failed.
type Outcome = Result<(Value, Value), String>;

/// Evaluate `Source` inputs and compute every expected output by running the
/// reference, one sandbox job per problem.
fn run_reference(
    p: &LoadBenchmarkParams,
    loaded: &mut Loaded,
    sandbox: &crate::sandbox::Sandbox,
    ctx: &RunCtx<'_>,
) -> Result<(), StageError> {
    let mut jobs = Vec::new();
    let mut owners = Vec::new();
    for (i, problem) in loaded.problems.iter().enumerate() {
        let pending: Vec<&Spec> = problem
            .tests
            .iter()
            .filter(|t| matches!(t, Spec::Args { .. } | Spec::Source { .. }))
            .collect();
        if pending.is_empty() {
            continue;
        }
        let (Some(reference), Some(entry)) = (&problem.reference, &problem.entry_point) else {
            continue;
        };
        // `_tw_case(kind, case)` returns `[args, output]`: the arguments as given
        // (`args`) or evaluated from their source (`source`, by index), and what
        // the reference returns on a copy of them.
        let mut lambdas = Vec::new();
        let mut cases = Vec::with_capacity(pending.len());
        for spec in &pending {
            let (kind, case) = match spec {
                Spec::Args { args, .. } => ("args", args.clone()),
                Spec::Source { source, .. } => {
                    lambdas.push(format!("    lambda: [{source}],"));
                    ("source", Value::from(lambdas.len() - 1))
                }
                _ => unreachable!("only pending tests are collected"),
            };
            cases.push(TestCase {
                args: Some(Value::Array(vec![Value::String(kind.into()), case])),
                ..TestCase::default()
            });
        }
        let program = format!(
            "{reference}\n\nimport copy as _tw_copy\ncandidate = {entry}\n_tw_sources = [\n{}\n]\n\n\
             def _tw_case(kind, case):\n    args = list(case) if kind == 'args' else _tw_sources[case]()\n    \
             return [args, {entry}(*_tw_copy.deepcopy(args))]\n",
            lambdas.join("\n"),
        );
        let mut job = Job::new(Mode::Function, program);
        job.entry_point = Some("_tw_case".into());
        job.tests = cases;
        job.limits = programs::limits(p.timeout, p.memory_mb);
        job.comparator = Comparator::Exact;
        job.keep_output_values = true;
        jobs.push(job);
        owners.push(i);
    }
    ctx.progress().set_total(jobs.len() as u64);
    let progress = ctx.progress();
    let reports = sandbox.run_all(&jobs, &|| progress.inc(1));
    let mut results: BTreeMap<usize, Vec<Outcome>> = BTreeMap::new();
    for (owner, report) in owners.into_iter().zip(reports) {
        let outcomes = report
            .results
            .iter()
            .map(|r| match (&r.verdict, &r.output) {
                (Verdict::Pass, Some(Value::Array(pair))) if pair.len() == 2 => {
                    Ok((pair[0].clone(), pair[1].clone()))
                }
                (verdict, _) => Err(format!(
                    "the reference gave {}{}",
                    verdict.as_str(),
                    r.exc_message
                        .as_ref()
                        .map(|m| format!(" ({}: {m})", r.exc_type.clone().unwrap_or_default()))
                        .unwrap_or_default()
                )),
            })
            .collect();
        results.insert(owner, outcomes);
    }
    let mut drops = Vec::new();
    for (i, problem) in loaded.problems.iter_mut().enumerate() {
        let mut outcomes = results.remove(&i).unwrap_or_default().into_iter();
        let mut tests = Vec::with_capacity(problem.tests.len());
        for spec in std::mem::take(&mut problem.tests) {
            match spec {
                Spec::Args { suite, .. } | Spec::Source { suite, .. } => match outcomes.next() {
                    Some(Ok((args, out))) => tests.push(Spec::Ready {
                        input: args,
                        expected: Some(out),
                        public: false,
                        suite,
                    }),
                    Some(Err(why)) => drops.push((problem.task_id.clone(), why)),
                    None => drops.push((
                        problem.task_id.clone(),
                        "no reference to compute the expected output".into(),
                    )),
                },
                ready => tests.push(ready),
            }
        }
        problem.tests = tests;
    }
    for (task, why) in drops {
        loaded.drop_test(&task, why);
    }
    Ok(())
}

/// The function a repair benchmark's tests call. The seed's files do not say:
/// HE-R prompts are HumanEval's, which end with the tested function's
/// signature (helpers come first), and MBPP-R prompts are prose, so take the
/// last top-level `def` of the prompt, else of the buggy program.
fn repair_entry_point(prompt: &str, buggy: Option<&str>) -> Option<String> {
    static DEF: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let def = DEF
        .get_or_init(|| regex::Regex::new(r"(?m)^def\s+([A-Za-z_]\w*)\s*\(").expect("valid regex"));
    let last = |text: &str| def.captures_iter(text).last().map(|c| c[1].to_string());
    last(prompt).or_else(|| buggy.and_then(last))
}

#[cfg(test)]
mod tests {
    #[test]
    fn repair_entry_points_come_from_the_prompt_then_the_program() {
        let he = "def is_palindrome(s: str) -> bool:\n    return s == s[::-1]\n\n\ndef make_palindrome(string: str) -> str:\n    \"\"\" doc \"\"\"\n";
        assert_eq!(
            repair_entry_point(he, None).as_deref(),
            Some("make_palindrome")
        );
        let mbpp_prose = "Write a function to find the shared elements.";
        let buggy = "import math\ndef helper(x):\n    return x\n\ndef similar_elements(a, b):\n    def inner(y):\n        return y\n    return set(a) - set(b)\n";
        assert_eq!(
            repair_entry_point(mbpp_prose, Some(buggy)).as_deref(),
            Some("similar_elements")
        );
        assert_eq!(repair_entry_point(mbpp_prose, Some("x = 1\n")), None);
    }

    use super::*;

    #[test]
    fn bigcodebench_libs_parse_from_python_list_text() {
        assert_eq!(
            parse_libs("['random', 'itertools']"),
            vec!["random", "itertools"]
        );
        assert!(parse_libs("[]").is_empty());
    }

    #[test]
    fn results_file_sits_beside_the_buggy_programs() {
        assert_eq!(
            seed_results_path(Path::new("/d/mbpp_r_buggy.jsonl")),
            PathBuf::from("/d/mbpp_r_buggy_eval_results.json")
        );
    }
}
