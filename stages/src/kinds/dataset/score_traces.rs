//! `score_traces`: score predicted execution traces against the real ones.
//!
//! # What it does
//! Reads the `runs` and `events` of a `trace` stage (the truth) and a table
//! of `predictions` (a model's predicted trace per run, e.g. `generate`'s
//! `reply` to a CWM trace-prediction prompt), parses each prediction in the
//! `cwm` format (CWM's frames: `<|call_sep|>`, `<|line_sep|>`,
//! `<|return_sep|>`, `<|exception_sep|>`, locals as JSON strings with `..`
//! for unchanged values; see `stages/src/text/cwm.rs`) and compares it
//! frame by frame with the real trace rendered the same way: event kind,
//! line and locals per frame, the whole trace exactly, the output read from
//! the entry scope's return frame, and the first frame where they diverge.
//! A prediction that cannot be read is a scored failure with its reason,
//! never an error: what it got right before the unreadable frame counts.
//!
//! # Params
//! - `id` (default `task_id`), `program` (default `program`): columns of
//!   `runs` (the trace stage's `keep`), and `id` of `predictions` too.
//! - `prediction` (default `reply`): the column of `predictions` holding the
//!   predicted trace (frames only, or context and frames).
//! - `format` (default `cwm`): the predicted format: `cwm`, or
//!   `codeexecutor` (CodeExecutor's `<line> <N> <state>...</state>` entries,
//!   the state after each line, then `<output>`; `stages/src/text/
//!   codeexecutor.rs`). The truth is the real run rendered in the same
//!   format (`templates/traces/codeexecutor.j2`, every visible variable)
//!   and read back, so a perfect prediction is the rendering itself; its
//!   frames are line frames and the output, and "the end" is `<output>`.
//! - `mode`: `function` (default) or `stdio`, as traced.
//!
//! # Inputs
//! - `runs`, `events`: the outputs of a `trace` stage.
//! - `predictions`: one row per predicted run: `id`, the prediction, and
//!   `run` when an id has several runs (else each id's one run).
//!
//! # Outputs
//! - `scores`: per prediction: the id, `run`, `frames_truth`,
//!   `frames_predicted`, `kind_accuracy`, `line_accuracy`,
//!   `locals_accuracy` (call and line frames whose locals are all right),
//!   `variable_accuracy` (variables with the right value), `exact`,
//!   `output_truth`, `output_predicted`, `output_correct`, `diverge_at`
//!   (0-based frame), `divergence` (`locals: total = 2 for 1`, `line: 5 for
//!   4`, `missing frame`, `unreadable: ...`), `parse_error`.
//! - `summary`: one row: `predictions`, `exact_pct`, `output_pct`, and the
//!   means of the four accuracies (in percent), `unreadable`.
//!
//! # Caching
//! Keyed by the params and the inputs' bytes.
//!
//! # Example
//! ```yaml
//! scored:
//!   kind: score_traces
//!   inputs: { runs: traced.runs, events: traced.events, predictions: predicted.candidates }
//!   params: { id: task_id, program: program, prediction: reply }
//! ```

use crate::api::artifact;
use crate::api::rows::{self, Row, cell_text};
use crate::api::{InputSlot, Problem, RunCtx, Stage, StageError};
use crate::python::programs::ProgramMode;
use crate::text::trace_render::{self, record_from_row};
use crate::text::trace_render::{RenderOptions, RenderRequest};
use crate::text::tracemodel::{Compat, ModelOptions, TestView};
use crate::text::{codeexecutor, cwm, formats};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub struct ScoreTraces;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceFormat {
    #[default]
    Cwm,
    /// CodeExecutor's `<line> <N> <state>...</state>` entries and `<output>`.
    Codeexecutor,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreTracesParams {
    #[serde(default = "default_id")]
    pub id: String,
    #[serde(default = "default_program")]
    pub program: String,
    #[serde(default = "default_prediction")]
    pub prediction: String,
    #[serde(default)]
    pub format: TraceFormat,
    #[serde(default = "crate::text::trace_render::function_mode")]
    pub mode: ProgramMode,
}

fn default_id() -> String {
    "task_id".into()
}
fn default_program() -> String {
    "program".into()
}
fn default_prediction() -> String {
    "reply".into()
}

impl Stage for ScoreTraces {
    const KIND: &'static str = "score_traces";
    const VERSION: u32 = 2;
    const SOURCE: &'static str = include_str!("score_traces.rs");
    const INPUTS: &'static [InputSlot] = &[
        InputSlot::one("runs"),
        InputSlot::one("events"),
        InputSlot::one("predictions"),
    ];
    const OUTPUTS: &'static [&'static str] = &["scores", "summary"];
    type Params = ScoreTracesParams;

    fn validate(p: &ScoreTracesParams) -> Vec<Problem> {
        let mut out = Vec::new();
        for (field, value) in [
            ("id", &p.id),
            ("program", &p.program),
            ("prediction", &p.prediction),
        ] {
            if value.is_empty() {
                out.push(Problem::at(field, "name a column"));
            }
        }
        out
    }

    fn run(p: &ScoreTracesParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let runs = artifact::table_to_json_rows(&ctx.input("runs")?)?;
        let events = artifact::table_to_json_rows(&ctx.input("events")?)?;
        let predictions = artifact::table_to_json_rows(&ctx.input("predictions")?)?;
        for column in [p.id.as_str(), p.program.as_str(), "run"] {
            rows::require_column(&runs, "runs", column, "runs column")?;
        }
        for column in [p.id.as_str(), p.prediction.as_str()] {
            rows::require_column(&predictions, "predictions", column, "predictions column")?;
        }
        let events_by_run = trace_render::events_by_run(&events).map_err(StageError::failed)?;
        let mut runs_of: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
        for row in &runs {
            if let Some(id) = cell_text(row, &p.id) {
                runs_of.entry(id).or_default().push(row);
            }
        }
        let opts = ModelOptions {
            compat: Compat::Off,
            max_value_chars: None,
            stdio: p.mode == ProgramMode::Stdio,
        };
        let codeexecutor_renderer = match p.format {
            TraceFormat::Codeexecutor => Some(
                formats::renderer("codeexecutor")
                    .ok_or_else(|| {
                        StageError::failed("the built-in codeexecutor format is missing")
                    })?
                    .map_err(|e| StageError::failed(format!("the codeexecutor template: {e}")))?,
            ),
            TraceFormat::Cwm => None,
        };
        let mut out: Vec<Row> = Vec::with_capacity(predictions.len());
        let mut unmatched: Vec<String> = Vec::new();
        for (i, pred) in predictions.iter().enumerate() {
            let at = |m: String| StageError::failed(format!("input `predictions`, row {i}: {m}"));
            let id = cell_text(pred, &p.id).ok_or_else(|| at(format!("`{}` is not text", p.id)))?;
            let Some(candidates) = runs_of.get(&id) else {
                unmatched.push(id);
                continue;
            };
            let run_row = match pred.get("run").and_then(Value::as_u64) {
                Some(run) => candidates
                    .iter()
                    .find(|r| r.get("run").and_then(Value::as_u64) == Some(run))
                    .ok_or_else(|| at(format!("`{id}` has no run {run} in `runs`")))?,
                None if candidates.len() == 1 => &candidates[0],
                None => {
                    return Err(at(format!(
                        "`{id}` has {} runs; give `predictions` a `run` column to say which was predicted",
                        candidates.len()
                    )));
                }
            };
            let program = cell_text(run_row, &p.program).ok_or_else(|| {
                at(format!(
                    "the run of `{id}` has no text in `{}` (keep the program in the trace stage: `keep: [{}]`)",
                    p.program, p.program
                ))
            })?;
            let mut record = record_from_row(run_row).map_err(at)?;
            record.events = events_by_run.get(&record.run).cloned().unwrap_or_default();
            let view = TestView::build(1, &record, &opts);
            let text = cell_text(pred, &p.prediction).unwrap_or_default();
            let (parsed, truth, ended) = match p.format {
                TraceFormat::Cwm => {
                    let steps = cwm::steps_of(&view);
                    let truth = cwm::frames_from_steps(&steps, &program);
                    (cwm::parse(&text, &program), truth, cwm::ends(&steps))
                }
                TraceFormat::Codeexecutor => {
                    let renderer = codeexecutor_renderer.as_ref().ok_or_else(|| {
                        StageError::failed("the built-in codeexecutor format is missing")
                    })?;
                    let options = RenderOptions {
                        mode: p.mode.clone(),
                        ..RenderOptions::default()
                    };
                    let rendered = renderer
                        .render(&RenderRequest {
                            id: &id,
                            program: &program,
                            runs: std::slice::from_ref(&record),
                            options: &options,
                        })
                        .map_err(|e| at(format!("rendering the real trace: {e}")))?;
                    let truth = codeexecutor::parse(&rendered, &program);
                    if let Some(e) = &truth.error {
                        // Only a run without a single line event and output
                        // gets here: nothing to compare with.
                        return Err(at(format!(
                            "the real trace of `{id}` does not read back as CodeExecutor: frame {}: {}",
                            e.frame, e.reason
                        )));
                    }
                    (
                        codeexecutor::parse(&text, &program),
                        truth.frames,
                        truth.ended,
                    )
                }
            };
            let s = cwm::score(&parsed, &truth, ended);
            let mut r = Map::new();
            r.insert(p.id.clone(), Value::String(id));
            r.insert("run".into(), Value::from(record.run));
            if let Value::Object(fields) = serde_json::to_value(&s).unwrap_or_default() {
                r.extend(fields);
            }
            out.push(r);
        }
        if out.is_empty() {
            return Err(StageError::BadInput {
                slot: "predictions".into(),
                message: format!(
                    "no prediction names a traced run: {} prediction(s), ids such as {:?}; runs have ids such as {:?}",
                    predictions.len(),
                    unmatched.iter().take(3).collect::<Vec<_>>(),
                    runs_of.keys().take(3).collect::<Vec<_>>()
                ),
            });
        }
        if !unmatched.is_empty() {
            ctx.note("unmatched_predictions", unmatched.len());
            ctx.note(
                "unmatched_examples",
                Value::from(unmatched.iter().take(5).cloned().collect::<Vec<_>>()),
            );
        }
        let n = out.len() as f64;
        let mean = |k: &str| {
            100.0
                * out
                    .iter()
                    .filter_map(|r| r.get(k).and_then(Value::as_f64))
                    .sum::<f64>()
                / n
        };
        let share = |k: &str| {
            100.0
                * out
                    .iter()
                    .filter(|r| r.get(k) == Some(&Value::Bool(true)))
                    .count() as f64
                / n
        };
        let mut summary = Map::new();
        summary.insert("predictions".into(), Value::from(out.len() as u64));
        summary.insert("exact_pct".into(), Value::from(share("exact")));
        summary.insert("output_pct".into(), Value::from(share("output_correct")));
        for k in [
            "kind_accuracy",
            "line_accuracy",
            "locals_accuracy",
            "variable_accuracy",
        ] {
            summary.insert(format!("{k}_pct"), Value::from(mean(k)));
        }
        summary.insert(
            "unreadable".into(),
            Value::from(
                out.iter()
                    .filter(|r| !r.get("parse_error").is_none_or(Value::is_null))
                    .count() as u64,
            ),
        );
        ctx.note("predictions", out.len());
        ctx.write_output("scores", &artifact::json_rows_to_table(&out)?.0)?;
        ctx.write_output("summary", &artifact::json_rows_to_table(&[summary])?.0)
    }
}
