//! Trace jobs: how a row of a table becomes a traced sandbox job
//! ([`job_for_row`], from [`TraceParams`]) and how the sandbox's report
//! becomes `runs` and `events` rows ([`report_rows`]). The `trace` kind runs
//! them over a table; `tw trace` over one call. Also the column-name and
//! limit defaults that the kinds reading programs from tables share.

use crate::api::StageError;
use crate::api::rows;
use crate::api::rows::{At, Row};
use crate::python::programs::{self, CellFormat, ProgramMode};
use crate::python::sandbox;
use crate::python::sandbox::{Comparator, Job, JobReport, Tagged, TraceSettings};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

pub fn default_id() -> String {
    "task_id".into()
}

pub fn default_program() -> String {
    "program".into()
}

pub fn default_entry_point() -> String {
    "entry_point".into()
}

pub fn default_input() -> String {
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

pub fn default_memory_mb() -> u64 {
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

/// The sandbox job for one input row, and the row's program id. `tw trace`
/// builds its one job here too, so the command shows what the stage stores.
pub fn job_for_row(
    p: &TraceParams,
    row: &Row,
    slot: &str,
    i: usize,
) -> Result<(String, Job), StageError> {
    let id = rows::text(
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
    let mut job = Job::new(p.mode.sandbox_mode(), rows::text(row, &p.program, &at)?);
    if p.mode == ProgramMode::Function {
        job.entry_point = Some(rows::text(row, &p.entry_point, &at)?);
    }
    let mut case = programs::test_case(&p.mode, p.input_format, row, &p.input, &at)?;
    if let Some(column) = &p.expected {
        programs::set_expected(&mut case, &p.mode, p.input_format, row, column, &at)?;
    }
    std::sync::Arc::make_mut(&mut job.tests).push(case);
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
            Some(_) => Value::Bool(test.verdict == sandbox::Verdict::Pass),
            None => Value::Null,
        },
    );
    let output = match p.mode {
        ProgramMode::Function => test.output_repr.clone(),
        ProgramMode::Stdio => test.output.as_ref().and_then(Tagged::as_text),
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
            test.output.as_ref().map(Tagged::value),
            test.expected.clone(),
        ),
        ProgramMode::Stdio => (
            job.tests[0].stdin.clone().map(Value::String),
            None,
            test.output.as_ref().map(Tagged::value),
            job.tests[0].expected.as_ref().map(|e| e.value()),
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
        e.insert("changed".into(), map_text(event.changed.as_ref()));
        e.insert("locals".into(), map_text(event.locals.as_deref()));
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
fn map_text(v: Option<&Map<String, Value>>) -> Value {
    v.map_or(Value::Null, |m| {
        Value::String(serde_json::to_string(m).unwrap_or_default())
    })
}

/// A typed row so an empty runs table still has its columns.
pub fn empty_run(p: &TraceParams) -> Row {
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
pub fn empty_event(id: &str) -> Row {
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
