//! `trace`: run programs on test inputs under the tracer and keep the raw events.
//!
//! # What it does
//! Each input row is one (program, test input) pair. The program runs in the
//! sandbox under `tw`'s line tracer (`sandbox/tracer.py`): a function program
//! is called with the row's arguments, a stdin program is run with the row's
//! input. Every event (call, line, return, exception) becomes a row, with the
//! variables the step created or changed and, by default, every visible local
//! after it. A program that crashes still yields its partial trace and the
//! exception; a run that hits `max_steps`, `max_bytes` or its time limit says
//! so in `truncated`. The same program and input always give the same events.
//!
//! # Params
//! - `mode`: `function` (default) or `stdio`.
//! - `id` (default `task_id`): column identifying the program in the outputs.
//! - `program` (default `program`): column with the source.
//! - `entry_point` (default `entry_point`): column naming the function to call
//!   (`name` or `Class.method`); function mode only.
//! - `input` (default `input`): column with the test input: the argument list
//!   (function mode; JSON list or JSON text, or Python source with
//!   `input_format: python`), or the stdin text.
//! - `input_format`: `json` (default) or `python`.
//! - `expected` (default none): column with the expected output (in
//!   `input_format`, or stdout text); runs are then marked `passed` or not,
//!   compared with `comparator` (default `exact`). `represent` shows failing
//!   runs by default, so set this when tracing tests.
//! - `comparator`: as for `execute`.
//! - `prelude` (default none): Python run in the program's namespace first,
//!   e.g. the imports a harness provided (APPS and the seed prepended 15
//!   import lines); it is not traced and does not shift line numbers.
//! - `keep` (default `[]`): input columns copied into `runs` (a test index, a label).
//! - `max_steps` (default 10000), `max_bytes` (default 4194304), `max_repr`
//!   (default 100 characters, middle ellipsis), `depth` (default 1 for
//!   functions: the entry only; 2 for stdin programs: the module and the
//!   functions it calls), `record_locals` (default true).
//! - `timeout` (seconds per run, default 10), `memory_mb` (default 4096).
//!
//! # Inputs
//! - `programs`: one row per run.
//!
//! # Outputs
//! - `runs`: one row per input row: `run` (the row's index), the id, kept
//!   columns, `verdict` (`pass` = finished, `runtime_error`, `timeout`, ...),
//!   `passed` (null without `expected`), `output` (the return value's repr,
//!   or what a stdin program printed), `exc_type`, `exc_message`, `steps`,
//!   `truncated`, and the values as tagged JSON text (see `pyvalue.rs`):
//!   `input` (the arguments, or the stdin text), `input_after` (the arguments
//!   after the call: a program may mutate them), `result`, `expected`.
//! - `events`: one row per event: `run`, the id, `step`, `kind`, `line`,
//!   `depth`, `func`, `changed` and `locals` (JSON objects of name -> repr, as
//!   text), `value` (returns), `unwound`, `exc_type`, `exc_message`.
//!
//! # Caching
//! Every tracer bound is a param, so it is in the key, as is the interpreter
//! version (an environment fact): traces depend on the Python that ran them.
//! Durations are not recorded, so a rerun writes identical bytes.
//!
//! # Example
//! ```yaml
//! traces:
//!   kind: trace
//!   inputs: { programs: failing_tests.rows }
//!   params: { program: buggy_code, input: test_input, max_steps: 2000 }
//! ```

use crate::api::{EnvFact, InputSlot, Problem, RunCtx, Stage, StageError, module_doc};
use crate::artifact;
use crate::programs::{self, At, CellFormat, ProgramMode, Row};
use crate::sandbox::{Comparator, Job, JobReport, TraceSettings};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub struct Trace;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TraceParams {
    #[serde(default = "function_mode")]
    pub mode: ProgramMode,
    #[serde(default = "default_id")]
    pub id: String,
    #[serde(default = "default_program")]
    pub program: String,
    #[serde(default = "default_entry_point")]
    pub entry_point: String,
    #[serde(default = "default_input")]
    pub input: String,
    #[serde(default)]
    pub input_format: CellFormat,
    #[serde(default)]
    pub expected: Option<String>,
    #[serde(default)]
    pub comparator: Comparator,
    #[serde(default)]
    pub prelude: Option<String>,
    #[serde(default)]
    pub keep: Vec<String>,
    #[serde(default = "default_max_steps")]
    pub max_steps: u64,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    #[serde(default = "default_max_repr")]
    pub max_repr: u32,
    #[serde(default)]
    pub depth: Option<u32>,
    #[serde(default = "yes")]
    pub record_locals: bool,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
}

fn function_mode() -> ProgramMode {
    ProgramMode::Function
}
pub(crate) fn default_id() -> String {
    "task_id".into()
}
pub(crate) fn default_program() -> String {
    "program".into()
}
pub(crate) fn default_entry_point() -> String {
    "entry_point".into()
}
pub(crate) fn default_input() -> String {
    "input".into()
}
fn default_max_steps() -> u64 {
    TraceSettings::default().max_steps
}
fn default_max_bytes() -> u64 {
    TraceSettings::default().max_bytes
}
fn default_max_repr() -> u32 {
    TraceSettings::default().max_repr
}
fn yes() -> bool {
    true
}
fn default_timeout() -> f64 {
    10.0
}
pub(crate) fn default_memory_mb() -> u64 {
    4096
}

impl TraceParams {
    pub fn settings(&self) -> TraceSettings {
        TraceSettings {
            max_steps: self.max_steps,
            max_bytes: self.max_bytes,
            max_repr: self.max_repr,
            depth: self.depth,
            record_locals: self.record_locals,
        }
    }
}

impl Stage for Trace {
    const KIND: &'static str = "trace";
    const VERSION: u32 = 2;
    const ROW_MAPPED: Option<&'static str> = Some("programs");
    type Params = TraceParams;

    fn doc() -> String {
        module_doc(include_str!("trace.rs"))
    }

    fn inputs(_p: &TraceParams) -> Vec<InputSlot> {
        vec![InputSlot::one("programs")]
    }

    fn outputs(_p: &TraceParams) -> Vec<String> {
        vec!["runs".into(), "events".into()]
    }

    fn validate(p: &TraceParams) -> Vec<Problem> {
        let mut problems = programs::check_limits(p.timeout, p.memory_mb);
        if p.max_steps == 0 {
            problems.push(Problem::at("max_steps", "`max_steps` must be at least 1"));
        }
        if p.max_bytes < 1024 {
            problems.push(Problem::at(
                "max_bytes",
                "`max_bytes` must be at least 1024",
            ));
        }
        if p.max_repr < 8 {
            problems.push(Problem::at(
                "max_repr",
                "`max_repr` must be at least 8 characters",
            ));
        }
        if p.depth == Some(0) {
            problems.push(
                Problem::at("depth", "`depth` must be at least 1")
                    .help("1 traces the entry function (or a stdin program's module) only"),
            );
        }
        problems
    }

    fn env_facts(_p: &TraceParams) -> Vec<EnvFact> {
        programs::sandbox_facts()
    }

    fn run(p: &TraceParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let slot = "programs";
        let rows = artifact::table_to_json_rows(&ctx.input(slot)?)?;
        let mut jobs = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        programs::require_column(&rows, slot, &p.program, "program")?;
        programs::require_column(&rows, slot, &p.id, "id")?;
        if p.mode == ProgramMode::Function {
            programs::require_column(&rows, slot, &p.entry_point, "entry_point")?;
        }
        for column in &p.keep {
            programs::require_column(&rows, slot, column, "keep")?;
        }
        if let Some(column) = &p.expected {
            programs::require_column(&rows, slot, column, "expected")?;
        }
        for (i, row) in rows.iter().enumerate() {
            let (id, job) = job_for_row(p, row, slot, i)?;
            jobs.push(job);
            ids.push(id);
        }
        let sandbox = programs::open_sandbox(ctx, None)?;
        ctx.progress().set_total(jobs.len() as u64);
        let progress = ctx.progress();
        let reports = sandbox.run_all(&jobs, &|| progress.inc(1));

        let mut runs: Vec<Row> = Vec::with_capacity(rows.len());
        let mut events: Vec<Row> = Vec::new();
        for (i, ((report, row), (job, id))) in reports
            .iter()
            .zip(&rows)
            .zip(jobs.iter().zip(&ids))
            .enumerate()
        {
            let (run, run_events) = report_rows(p, ctx.row_offset() + i, id, row, job, report)?;
            runs.push(run);
            events.extend(run_events);
        }
        let truncated = runs.iter().filter(|r| !r["truncated"].is_null()).count();
        ctx.note("runs", runs.len());
        ctx.note("events", events.len());
        ctx.note("truncated_runs", truncated);
        ctx.write_output(
            "runs",
            &artifact::json_rows_to_typed_table(runs, empty_run(p))?,
        )?;
        ctx.write_output(
            "events",
            &artifact::json_rows_to_typed_table(events, empty_event(&p.id))?,
        )
    }
}

/// The sandbox job for one input row, and the row's program id. `tw trace`
/// builds its one job here too, so the command shows what the stage stores.
pub fn job_for_row(
    p: &TraceParams,
    row: &Row,
    slot: &str,
    i: usize,
) -> Result<(String, Job), StageError> {
    let id = programs::text(
        row,
        &p.id,
        &At {
            slot,
            row: i,
            id: None,
        },
    )?;
    let at = At {
        slot,
        row: i,
        id: Some(&id),
    };
    let mut job = Job::new(p.mode.sandbox_mode(), programs::text(row, &p.program, &at)?);
    if p.mode == ProgramMode::Function {
        job.entry_point = Some(programs::text(row, &p.entry_point, &at)?);
    }
    let mut case = programs::test_case(&p.mode, p.input_format, row, &p.input, &at)?;
    if let Some(column) = &p.expected {
        programs::set_expected(&mut case, &p.mode, p.input_format, row, column, &at)?;
    }
    job.tests.push(case);
    job.comparator = p.comparator;
    job.prelude = p.prelude.clone();
    job.limits = programs::limits(p.timeout, p.memory_mb);
    job.trace = Some(p.settings());
    Ok((id, job))
}

/// The `runs` row and the `events` rows of run `i`.
pub fn report_rows(
    p: &TraceParams,
    i: usize,
    id: &str,
    row: &Row,
    job: &Job,
    report: &JobReport,
) -> Result<(Row, Vec<Row>), StageError> {
    let test = report
        .results
        .first()
        .ok_or_else(|| StageError::failed(format!("run {i}: the sandbox returned no result")))?;
    let trace = test
        .parsed_trace()
        .map_err(|e| StageError::failed(format!("run {i} ({id}): {e}")))?;
    let mut run = Map::new();
    run.insert("run".into(), Value::from(i as u64));
    run.insert(p.id.clone(), Value::String(id.to_string()));
    for column in &p.keep {
        run.insert(
            column.clone(),
            row.get(column).cloned().unwrap_or(Value::Null),
        );
    }
    let verdict = test.verdict.as_str();
    run.insert("verdict".into(), Value::String(verdict.into()));
    run.insert(
        "passed".into(),
        match p.expected {
            Some(_) => Value::Bool(test.verdict == crate::sandbox::Verdict::Pass),
            None => Value::Null,
        },
    );
    let output = match p.mode {
        ProgramMode::Function => test.output_repr.clone(),
        ProgramMode::Stdio => test
            .output
            .as_ref()
            .and_then(|o| o.as_str().map(String::from)),
    };
    run.insert("output".into(), output.map_or(Value::Null, Value::String));
    run.insert("exc_type".into(), opt_text(&test.exc_type));
    run.insert("exc_message".into(), opt_text(&test.exc_message));
    let (steps, truncated) = match &trace {
        Some(t) => (t.events.len(), t.truncated.clone()),
        None => (0, None),
    };
    run.insert("steps".into(), Value::from(steps as u64));
    run.insert("truncated".into(), opt_text(&truncated));
    let (input, input_after, result, expected) = match p.mode {
        ProgramMode::Function => (
            test.input.clone(),
            test.input_after.clone(),
            test.output.clone(),
            test.expected.clone(),
        ),
        ProgramMode::Stdio => (
            job.tests[0].stdin.clone().map(Value::String),
            None,
            test.output.clone(),
            job.tests[0].expected.clone(),
        ),
    };
    run.insert("input".into(), json_text(input));
    run.insert("input_after".into(), json_text(input_after));
    run.insert("result".into(), json_text(result));
    run.insert("expected".into(), json_text(expected));
    let mut events = Vec::new();
    for event in trace.iter().flat_map(|t| &t.events) {
        let mut e = Map::new();
        e.insert("run".into(), Value::from(i as u64));
        e.insert(p.id.clone(), Value::String(id.to_string()));
        e.insert("step".into(), Value::from(event.step));
        e.insert("kind".into(), Value::String(event.kind.as_str().into()));
        e.insert("line".into(), Value::from(event.line));
        e.insert("depth".into(), Value::from(event.depth));
        e.insert("func".into(), Value::String(event.func.clone()));
        e.insert("changed".into(), map_text(&event.changed));
        e.insert("locals".into(), map_text(&event.locals));
        e.insert("value".into(), opt_text(&event.value));
        e.insert("unwound".into(), Value::Bool(event.unwound));
        e.insert("exc_type".into(), opt_text(&event.exc_type));
        e.insert("exc_message".into(), opt_text(&event.exc_message));
        events.push(e);
    }
    Ok((run, events))
}

/// A tagged value as JSON text (Parquet has no union type).
fn json_text(v: Option<Value>) -> Value {
    v.map_or(Value::Null, |v| Value::String(v.to_string()))
}

fn opt_text(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

/// A name -> repr map as JSON text (it keeps the program's order).
fn map_text(v: &Option<Map<String, Value>>) -> Value {
    v.as_ref().map_or(Value::Null, |m| {
        Value::String(serde_json::to_string(m).unwrap_or_default())
    })
}

/// A typed row so an empty runs table still has its columns.
fn empty_run(p: &TraceParams) -> Row {
    let mut r = Map::new();
    r.insert("run".into(), Value::from(0u64));
    r.insert(p.id.clone(), Value::String(String::new()));
    for column in &p.keep {
        r.insert(column.clone(), Value::Null);
    }
    r.insert("verdict".into(), Value::String(String::new()));
    r.insert("passed".into(), Value::Bool(false));
    for text in ["output", "exc_type", "exc_message"] {
        r.insert(text.into(), Value::String(String::new()));
    }
    r.insert("steps".into(), Value::from(0u64));
    for text in ["truncated", "input", "input_after", "result", "expected"] {
        r.insert(text.into(), Value::String(String::new()));
    }
    r
}

/// A typed row so an empty events table still has its columns.
fn empty_event(id: &str) -> Row {
    let mut e = Map::new();
    e.insert("run".into(), Value::from(0u64));
    e.insert(id.into(), Value::String(String::new()));
    e.insert("step".into(), Value::from(0u64));
    for text in [
        "kind",
        "func",
        "changed",
        "locals",
        "value",
        "exc_type",
        "exc_message",
    ] {
        e.insert(text.into(), Value::String(String::new()));
    }
    e.insert("line".into(), Value::from(0u64));
    e.insert("depth".into(), Value::from(0u64));
    e.insert("unwound".into(), Value::Bool(false));
    // Keep the column order of real events.
    let order = [
        "run",
        id,
        "step",
        "kind",
        "line",
        "depth",
        "func",
        "changed",
        "locals",
        "value",
        "unwound",
        "exc_type",
        "exc_message",
    ];
    order
        .iter()
        .map(|k| (k.to_string(), e.remove(*k).unwrap_or(Value::Null)))
        .collect()
}
