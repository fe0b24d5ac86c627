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

use crate::api::artifact;
use crate::api::rows;
use crate::api::rows::Row;
use crate::api::{EnvFact, InputSlot, Problem, RunCtx, Stage, StageError};
use crate::python::programs::{self, ProgramMode};
use crate::python::trace_jobs::{TraceParams, empty_event, empty_run, job_for_row, report_rows};

pub struct Trace;

impl Stage for Trace {
    const KIND: &'static str = "trace";
    const VERSION: u32 = 2;
    const SOURCE: &'static str = include_str!("trace.rs");
    const ROW_MAPPED: Option<&'static str> = Some("programs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("programs")];
    const OUTPUTS: &'static [&'static str] = &["runs", "events"];
    type Params = TraceParams;

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
        rows::require_column(&rows, slot, &p.program, "program")?;
        rows::require_column(&rows, slot, &p.id, "id")?;
        if p.mode == ProgramMode::Function {
            rows::require_column(&rows, slot, &p.entry_point, "entry_point")?;
        }
        for column in &p.keep {
            rows::require_column(&rows, slot, column, "keep")?;
        }
        if let Some(column) = &p.expected {
            rows::require_column(&rows, slot, column, "expected")?;
        }
        for (i, row) in rows.iter().enumerate() {
            let (id, job) = job_for_row(p, row, slot, i)?;
            jobs.push(job);
            ids.push(id);
        }
        let sandbox = programs::open_sandbox(ctx, None)?;
        ctx.progress().set_total(jobs.len() as u64);
        let progress = ctx.progress();
        let reports = sandbox.run_all(&jobs, &|| progress.inc(1))?;
        programs::note_retries(ctx, &sandbox);

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
