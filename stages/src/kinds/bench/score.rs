//! `score`: run generated programs on a benchmark's tests in the sandbox and report pass@k.
//!
//! # What it does
//! Scores every sample against its problem with the reference harness's own
//! rules (see `scoring.rs`: HumanEval's `check` program, EvalPlus base and plus
//! with expected outputs from running the canonical solution, MBPP's asserts,
//! CRUXEval's `assert <output> == <generation>` with its skip rules). Reports
//! per-sample verdicts and the unbiased pass@k, base and plus, with a
//! bootstrap 95% interval; k is reported only where every problem has at
//! least k samples. Samples that cover only some problems are refused unless
//! `allow_partial: true` (the manifest then says how many were scored).
//!
//! # Params
//! - `benchmark` (required): `humaneval`, `humaneval-plus`, `mbpp`, `cruxeval-i`,
//!   `cruxeval-o`, `livecodebench`, `apps`.
//! - `k` (list, default `[1, 10, 100]`).
//! - `timeout` (seconds per test; default 3, EvalPlus minimum 4).
//! - `gt_time_factor` (default 4), `max_seconds_per_suite` (default 60): EvalPlus limits.
//! - `memory_mb` (default 4096), `workers` (default: cores), `bootstrap` (default 1000), `seed` (default 0).
//! - `start_date`, `end_date` (`YYYY-MM-DD`): LiveCodeBench's contest-date window.
//! - `allow_partial` (default false): score samples that cover only some problems.
//! - `run_duplicates` (default false): run every sample. By default a sample
//!   whose program is the same as an earlier sample's for the same problem
//!   takes that run's verdict (programs run with a fixed hash seed; only a
//!   program that draws random numbers, reads the clock or races its limit
//!   could come out otherwise); the manifest's `duplicates` counts them.
//!
//! # Inputs
//! - `problems`: benchmark rows as published (`load` them from the JSONL).
//! - `samples`: `{task_id, completion | solution | program}` rows (EvalPlus
//!   style, or a `load_samples` / `generate` candidates table),
//!   `{task_id, generation}` for CRUXEval, `{question_id, code_list}` for
//!   LiveCodeBench, `{problem_id, solution}` for APPS.
//!
//! # Outputs
//! - `verdicts`: one row per sample: `task_id`, `sample`, `base_pass`, `plus_pass`, `verdict`, `detail`.
//! - `scores`: one row per (suite, k): `suite`, `k`, `pass_at_k`, `ci_low`, `ci_high`, `problems`.
//!   Suites are `base` (and `plus` for EvalPlus), then, when problems carry a
//!   `difficulty`, one per level (`base/easy`, `base/medium`, ...).
//!
//! # Caching
//! Every scorer setting is a param, so it is in the key; both inputs are keyed
//! by content (the dataset hash); the interpreter version is an environment
//! fact. Changing a timeout rescores; re-running does not.
//!
//! # Example
//! ```yaml
//! he_score:
//!   kind: score
//!   inputs: { problems: humaneval.rows, samples: completions.rows }
//!   params: { benchmark: humaneval, k: [1, 10] }
//! ```

use crate::api::artifact;
use crate::api::{EnvFact, InputSlot, Problem, RunCtx, Stage, StageError};
use crate::bench::{Benchmark, ScoreSettings};
use crate::python::programs;
use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;

pub struct Score;

impl Stage for Score {
    const KIND: &'static str = "score";
    // 2: CRUXEval's harness rules; incomplete runs refused.
    const VERSION: u32 = 2;
    const SOURCE: &'static str = include_str!("score.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("problems"), InputSlot::one("samples")];
    const OUTPUTS: &'static [&'static str] = &["verdicts", "scores"];
    type Params = ScoreSettings;

    fn validate(p: &ScoreSettings) -> Vec<Problem> {
        let mut problems = Vec::new();
        if Benchmark::parse_graded(&p.benchmark).is_none() {
            let names: Vec<&str> = Benchmark::graded().iter().map(|b| b.name()).collect();
            problems.push(
                Problem::at("benchmark", format!("unknown benchmark `{}`", p.benchmark))
                    .help(format!("one of: {}", names.join(", "))),
            );
        }
        if p.k.is_empty() || p.k.contains(&0) {
            problems.push(Problem::at("k", "`k` must list positive integers"));
        }
        if p.timeout.is_some_and(|t| t <= 0.0) {
            problems.push(Problem::at("timeout", "`timeout` must be positive"));
        }
        for (param, date) in [("start_date", &p.start_date), ("end_date", &p.end_date)] {
            if let Some(d) = date.as_deref().filter(|d| !crate::bench::is_iso_day(d)) {
                problems.push(
                    Problem::at(param, format!("`{d}` is not a date"))
                        .help("write it as YYYY-MM-DD"),
                );
            }
        }
        problems
    }

    fn env_facts(_p: &ScoreSettings) -> Vec<EnvFact> {
        programs::sandbox_facts()
    }

    fn run(p: &ScoreSettings, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let bench = Benchmark::parse_graded(&p.benchmark)
            .ok_or_else(|| StageError::failed(format!("unknown benchmark `{}`", p.benchmark)))?;
        let origin = std::path::PathBuf::from(format!("<input problems of {}>", ctx.stage_id));
        let problem_rows = artifact::table_to_json_rows(&ctx.input("problems")?)?;
        let problems = crate::bench::problems_from_rows(bench, &problem_rows, &origin)?;
        let sample_rows = artifact::table_to_json_rows(&ctx.input("samples")?)?;
        let origin = std::path::PathBuf::from(format!("<input samples of {}>", ctx.stage_id));
        let samples = crate::bench::samples_from_rows(bench, &sample_rows, &problems, &origin)?;
        let sandbox = programs::open_sandbox(ctx, p.workers)?;
        ctx.progress().set_total(samples.len() as u64);
        let progress = ctx.progress();
        let report =
            crate::bench::score(bench, &problems, &samples, p, &sandbox, &|| progress.inc(1))?;
        programs::note_retries(ctx, &sandbox);
        ctx.note("problems", report.problems);
        ctx.note("problems_scored", report.problems_scored);
        ctx.note("duplicates", report.duplicates);
        if !report.reference_failures.is_empty() {
            ctx.note("reference_failures", report.reference_failures.join(", "));
        }
        let verdicts = verdict_table(&report)?;
        let scores = score_table(&report)?;
        ctx.write_output("verdicts", &verdicts)?;
        ctx.write_output("scores", &scores)
    }
}

pub fn verdict_table(report: &crate::bench::ScoreReport) -> Result<RecordBatch, StageError> {
    let mut task = StringBuilder::new();
    let mut sample = Int64Builder::new();
    let mut base = BooleanBuilder::new();
    let mut plus = BooleanBuilder::new();
    let mut verdict = StringBuilder::new();
    let mut detail = StringBuilder::new();
    for s in &report.samples {
        task.append_value(&s.task_id);
        sample.append_value(s.index as i64);
        base.append_value(s.base_pass);
        plus.append_option(s.plus_pass);
        verdict.append_value(s.verdict.as_str());
        detail.append_value(&s.detail);
    }
    let schema = Schema::new(vec![
        Field::new("task_id", DataType::Utf8, false),
        Field::new("sample", DataType::Int64, false),
        Field::new("base_pass", DataType::Boolean, false),
        Field::new("plus_pass", DataType::Boolean, true),
        Field::new("verdict", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(task.finish()),
        Arc::new(sample.finish()),
        Arc::new(base.finish()),
        Arc::new(plus.finish()),
        Arc::new(verdict.finish()),
        Arc::new(detail.finish()),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

pub fn score_table(report: &crate::bench::ScoreReport) -> Result<RecordBatch, StageError> {
    let mut suite = StringBuilder::new();
    let mut k = Int64Builder::new();
    let mut score = Float64Builder::new();
    let mut low = Float64Builder::new();
    let mut high = Float64Builder::new();
    let mut n = Int64Builder::new();
    for row in &report.pass_at_k {
        suite.append_value(&row.suite);
        k.append_value(i64::from(row.k));
        score.append_value(row.score);
        low.append_value(row.ci_low);
        high.append_value(row.ci_high);
        n.append_value(row.problems as i64);
    }
    let schema = Schema::new(vec![
        Field::new("suite", DataType::Utf8, false),
        Field::new("k", DataType::Int64, false),
        Field::new("pass_at_k", DataType::Float64, false),
        Field::new("ci_low", DataType::Float64, false),
        Field::new("ci_high", DataType::Float64, false),
        Field::new("problems", DataType::Int64, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(suite.finish()),
        Arc::new(k.finish()),
        Arc::new(score.finish()),
        Arc::new(low.finish()),
        Arc::new(high.finish()),
        Arc::new(n.finish()),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}
