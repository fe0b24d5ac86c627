//! `represent`: render each program's traced runs as one trace representation.
//!
//! # What it does
//! Reads the `runs` and `events` of a `trace` stage, groups them by program,
//! picks the runs to show (by default one failing run, chosen with a seeded
//! RNG), builds the structured trace model (`tracemodel.rs`: inputs, numbered
//! states, steps) and renders `template` with it. The study's formats are
//! templates under `templates/traces/` (`notrace`, `next`, `concise`,
//! `codeexecutor`, `scratchpad`, `concise2`, `semcoder`); a new
//! representation is a new template file. Each row records its token count
//! and is cut to `max_tokens` when set.
//!
//! # Params
//! - `template` (required): template file, relative to the spec.
//! - `id` (default `task_id`), `program` (default `program`): columns of
//!   `runs` (keep the program in the trace stage: `keep: [program]`).
//! - `mode`: `function` (default) or `stdio`, as traced.
//! - `tests` (default 1): runs shown per program; `select`: `failing`
//!   (default: runs whose `passed` is false, or that did not finish) or `all`;
//!   `seed` (default 0) for the choice.
//! - `compat`: `off` (default), `sft` or `tts`: reproduce the seed's states
//!   and test display for parity (see the README's table of fixes).
//! - `max_value_chars` (default none): cut every value shown.
//! - `loop_threshold` (default 3), `keep_first` (default 2): loop compression
//!   in NExT and concise2 (a line run more than `loop_threshold` times keeps
//!   its first `keep_first` entries, `...`, and the last).
//! - `max_tokens` (default none), `tokenizer` (default `cl100k_base`; or
//!   `o200k_base`): the budget, counted with a real BPE tokenizer.
//! - `max_chars` (default none): cut the text to this many characters and
//!   append `... [truncated, total length=N]` (N: its full length), as the
//!   seed's TTS harness did at 1024; applied before `max_tokens`.
//! - `column` (default `trace_text`), `vars` (constants, as `vars`).
//!
//! # Inputs
//! - `runs`, `events`: the outputs of a `trace` stage.
//!
//! # Outputs
//! - `rows`: one per program with a run to show: the id, the program, the
//!   runs shown (`runs_shown`, JSON list), `column`, `tokens` (of the text as
//!   written), `tokens_full` (before the budget cut) and `token_truncated`.
//!
//! # Caching
//! The template's bytes (and those it includes) and every knob are in the key,
//! so editing one template reruns only the stages that render it.
//!
//! # Example
//! ```yaml
//! next:
//!   kind: represent
//!   inputs: { runs: traced.runs, events: traced.events }
//!   params: { template: ../templates/traces/next.j2, max_tokens: 2048 }
//! ```

use crate::api::artifact;
use crate::api::rng;
use crate::api::rows;
use crate::api::rows::Row;
use crate::api::{FileDep, InputSlot, PlanEnv, Problem, RunCtx, Stage, StageError};
use crate::python::programs::ProgramMode;
use crate::text::templates;
use crate::text::tokens::Tokenizer;
use crate::text::trace_render::{
    self, RenderOptions, RenderRequest, TraceRenderer, record_from_row,
};
use crate::text::tracemodel::Compat;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub struct Represent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    #[default]
    Failing,
    All,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RepresentParams {
    pub template: String,
    #[serde(default = "crate::python::trace_jobs::default_id")]
    pub id: String,
    #[serde(default = "crate::python::trace_jobs::default_program")]
    pub program: String,
    #[serde(default = "crate::text::trace_render::function_mode")]
    pub mode: ProgramMode,
    #[serde(default = "one")]
    pub tests: usize,
    #[serde(default)]
    pub select: Select,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub compat: Compat,
    #[serde(default)]
    pub max_value_chars: Option<usize>,
    #[serde(default = "crate::text::trace_render::three")]
    pub loop_threshold: usize,
    #[serde(default = "crate::text::trace_render::two")]
    pub keep_first: usize,
    #[serde(default)]
    pub max_tokens: Option<usize>,
    #[serde(default)]
    pub max_chars: Option<usize>,
    #[serde(default)]
    pub tokenizer: Tokenizer,
    #[serde(default = "default_column")]
    pub column: String,
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
}

fn one() -> usize {
    1
}
fn default_column() -> String {
    "trace_text".into()
}

impl RepresentParams {
    /// The knobs the renderer reads.
    pub fn render_options(&self) -> RenderOptions {
        RenderOptions {
            mode: self.mode.clone(),
            compat: self.compat,
            max_value_chars: self.max_value_chars,
            loop_threshold: self.loop_threshold,
            keep_first: self.keep_first,
            vars: self.vars.clone(),
        }
    }
}

impl Stage for Represent {
    const KIND: &'static str = "represent";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("represent.rs");
    const ROW_MAPPED: Option<&'static str> = Some("runs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("runs"), InputSlot::one("events")];
    const OUTPUTS: &'static [&'static str] = &["rows"];
    type Params = RepresentParams;

    fn validate(p: &RepresentParams) -> Vec<Problem> {
        let mut problems = Vec::new();
        if p.template.trim().is_empty() {
            problems.push(Problem::at("template", "`template` is empty"));
        }
        if p.tests == 0 {
            problems.push(Problem::at("tests", "`tests` must be at least 1"));
        }
        if p.keep_first == 0 || p.loop_threshold <= p.keep_first {
            problems.push(
                Problem::at(
                    "loop_threshold",
                    "`loop_threshold` must exceed `keep_first` (at least 1)",
                )
                .help("the seed's NExT: loop_threshold 3, keep_first 2"),
            );
        }
        if p.max_chars == Some(0) {
            problems.push(Problem::at("max_chars", "`max_chars` must be at least 1"));
        }
        if p.max_tokens == Some(0) {
            problems.push(Problem::at("max_tokens", "`max_tokens` must be at least 1"));
        }
        if p.max_value_chars.is_some_and(|n| n < 8) {
            problems.push(Problem::at(
                "max_value_chars",
                "`max_value_chars` must be at least 8",
            ));
        }
        problems
    }

    fn file_deps(p: &RepresentParams, env: &PlanEnv) -> Vec<FileDep> {
        templates::template_deps(&p.template, env)
    }

    fn row_group(p: &RepresentParams) -> Option<String> {
        Some(p.id.clone())
    }

    fn run(p: &RepresentParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let path = ctx.resolve(&p.template);
        let renderer = TraceRenderer::from_file(&path)?;
        let options = p.render_options();
        let runs = artifact::table_to_json_rows(&ctx.input("runs")?)?;
        let events = artifact::table_to_json_rows(&ctx.input("events")?)?;
        for column in [p.id.as_str(), p.program.as_str(), "run", "verdict"] {
            rows::require_column(&runs, "runs", column, "runs column")?;
        }
        let mut events_by_run = trace_render::events_by_run(&events).map_err(StageError::failed)?;
        // Programs in order of first appearance; their runs in run order.
        let mut order: Vec<String> = Vec::new();
        let mut by_program: BTreeMap<String, Vec<(usize, &Row)>> = BTreeMap::new();
        for (i, row) in runs.iter().enumerate() {
            let id = cell_text(row, &p.id).ok_or_else(|| {
                StageError::failed(format!("input `runs`, row {i}: `{}` is not text", p.id))
            })?;
            if !by_program.contains_key(&id) {
                order.push(id.clone());
            }
            by_program.entry(id).or_default().push((i, row));
        }
        ctx.progress().set_total(order.len() as u64);
        let mut out: Vec<Row> = Vec::with_capacity(order.len());
        let mut without = 0usize;
        let mut cut = 0usize;
        for id in &order {
            let candidates: Vec<&(usize, &Row)> = by_program[id]
                .iter()
                .filter(|(_, row)| p.select == Select::All || is_failing(row))
                .collect();
            if candidates.is_empty() {
                without += 1;
                ctx.progress().inc(1);
                continue;
            }
            let chosen = choose(&candidates, p.tests, p.seed, id);
            let first = chosen[0].1;
            let program = cell_text(first, &p.program).ok_or_else(|| {
                StageError::failed(format!(
                    "input `runs`, row {}: `{}` is not text (keep the program in the trace stage: `keep: [{}]`)",
                    chosen[0].0, p.program, p.program
                ))
            })?;
            let mut records = Vec::with_capacity(chosen.len());
            for (i, row) in &chosen {
                let mut record = record_from_row(row)
                    .map_err(|e| StageError::failed(format!("input `runs`, row {i}: {e}")))?;
                record.events = events_by_run.remove(&record.run).unwrap_or_default();
                records.push(record);
            }
            let rendered = renderer
                .render(&RenderRequest {
                    id,
                    program: &program,
                    runs: &records,
                    options: &options,
                })
                .map_err(|e| StageError::Template {
                    path: path.clone(),
                    message: format!("program `{id}`: {e}"),
                })?;
            let rendered = match p.max_chars {
                Some(max) => cut_chars(rendered, max),
                None => rendered,
            };
            let (text, tokens_full) = match p.max_tokens {
                Some(max) => p.tokenizer.truncate(&rendered, max),
                None => {
                    let n = p.tokenizer.count(&rendered);
                    (rendered, n)
                }
            };
            let tokens = if text.is_empty() {
                0
            } else {
                p.tokenizer.count(&text)
            };
            let truncated = tokens < tokens_full;
            cut += usize::from(truncated);
            let mut row = Map::new();
            row.insert(p.id.clone(), Value::String(id.clone()));
            row.insert(p.program.clone(), Value::String(program));
            let shown: Vec<u64> = records.iter().map(|r| r.run).collect();
            row.insert(
                "runs_shown".into(),
                Value::String(serde_json::to_string(&shown).unwrap_or_default()),
            );
            row.insert(p.column.clone(), Value::String(text));
            row.insert("tokens".into(), Value::from(tokens as u64));
            row.insert("tokens_full".into(), Value::from(tokens_full as u64));
            row.insert("token_truncated".into(), Value::Bool(truncated));
            out.push(row);
            ctx.progress().inc(1);
        }
        ctx.note("programs", out.len());
        ctx.note("without_runs_to_show", without);
        ctx.note("cut_to_budget", cut);
        let mut empty = Map::new();
        empty.insert(p.id.clone(), Value::String(String::new()));
        empty.insert(p.program.clone(), Value::String(String::new()));
        empty.insert("runs_shown".into(), Value::String(String::new()));
        empty.insert(p.column.clone(), Value::String(String::new()));
        empty.insert("tokens".into(), Value::from(0u64));
        empty.insert("tokens_full".into(), Value::from(0u64));
        empty.insert("token_truncated".into(), Value::Bool(false));
        ctx.write_output("rows", &artifact::json_rows_to_typed_table(out, empty)?)
    }
}

/// The seed's character cut: the first `max` characters and a marker with
/// the full length.
fn cut_chars(text: String, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max).collect();
    cut.push_str(&format!("... [truncated, total length={total}]"));
    cut
}

fn cell_text(row: &Row, column: &str) -> Option<String> {
    row.get(column).and_then(Value::as_str).map(String::from)
}

fn is_failing(row: &Row) -> bool {
    match row.get("passed") {
        Some(Value::Bool(passed)) => !passed,
        _ => row.get("verdict").and_then(Value::as_str) != Some("pass"),
    }
}

/// `n` of the candidates, chosen by a shuffle seeded with (`seed`, program id),
/// returned in run order.
fn choose<'a>(
    candidates: &[&'a (usize, &'a Row)],
    n: usize,
    seed: u64,
    id: &str,
) -> Vec<&'a (usize, &'a Row)> {
    let mut picked: Vec<&(usize, &Row)> = candidates.to_vec();
    if picked.len() > n {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&seed.to_le_bytes());
        hasher.update(id.as_bytes());
        let start = u64::from_le_bytes(
            hasher.finalize().as_bytes()[..8]
                .try_into()
                .unwrap_or([0; 8]),
        );
        let mut rng = rng::SplitMix64::new(start);
        // Fisher-Yates.
        for i in (1..picked.len()).rev() {
            picked.swap(i, rng.below(i as u64 + 1) as usize);
        }
        picked.truncate(n);
        picked.sort_by_key(|(i, _)| *i);
    }
    picked
}
