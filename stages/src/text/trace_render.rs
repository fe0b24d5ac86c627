//! Rendering traced runs as text: a run's row and event rows (what `trace`
//! writes) back into a [`RunRecord`], and a [`TraceRenderer`] that renders a
//! representation template over the structured trace model
//! ([`super::tracemodel`]). The `represent` kind, the strategy stages' test
//! feedback and `tw trace` all render through here.

use super::tracemodel::{Compat, ModelOptions, RunRecord, TestView};
use crate::api::StageError;
use crate::api::rows::Row;
use crate::python::programs::ProgramMode;
use crate::python::sandbox::{TraceEvent, TraceEventKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// How a run is shown, whatever the template: the knobs the trace model and
/// the templates read. Its defaults are the `represent` kind's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RenderOptions {
    #[serde(default = "function_mode")]
    pub mode: ProgramMode,
    #[serde(default)]
    pub compat: Compat,
    #[serde(default)]
    pub max_value_chars: Option<usize>,
    #[serde(default = "three")]
    pub loop_threshold: usize,
    #[serde(default = "two")]
    pub keep_first: usize,
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            mode: function_mode(),
            compat: Compat::default(),
            max_value_chars: None,
            loop_threshold: three(),
            keep_first: two(),
            vars: BTreeMap::new(),
        }
    }
}

pub fn function_mode() -> ProgramMode {
    ProgramMode::Function
}
pub fn two() -> usize {
    2
}
pub fn three() -> usize {
    3
}

pub fn record_from_row(row: &Row) -> Result<RunRecord, String> {
    let text = |k: &str| row.get(k).and_then(Value::as_str).map(String::from);
    let json =
        |k: &str| super::tracemodel::json_cell(row.get(k)).map_err(|e| format!("`{k}`: {e}"));
    Ok(RunRecord {
        run: row
            .get("run")
            .and_then(Value::as_u64)
            .ok_or("`run` is not a number")?,
        verdict: text("verdict").unwrap_or_default(),
        passed: row.get("passed").and_then(Value::as_bool),
        input: json("input")?,
        input_after: json("input_after")?,
        result: json("result")?,
        expected: json("expected")?,
        exc_type: text("exc_type"),
        exc_message: text("exc_message"),
        truncated: text("truncated"),
        events: Vec::new(),
    })
}

pub fn event_from_row(row: &Row) -> Result<TraceEvent, String> {
    let text = |k: &str| row.get(k).and_then(Value::as_str).map(String::from);
    let number = |k: &str| {
        row.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("`{k}` is not a number"))
    };
    let kind = match text("kind").as_deref() {
        Some("call") => TraceEventKind::Call,
        Some("line") => TraceEventKind::Line,
        Some("return") => TraceEventKind::Return,
        Some("exception") => TraceEventKind::Exception,
        other => return Err(format!("unknown event kind {other:?}")),
    };
    Ok(TraceEvent {
        step: number("step")?,
        kind,
        line: u32::try_from(number("line")?).map_err(|e| e.to_string())?,
        depth: u32::try_from(number("depth")?).map_err(|e| e.to_string())?,
        func: text("func").unwrap_or_default(),
        changed: super::tracemodel::reprs_cell(row.get("changed"))
            .map_err(|e| format!("`changed`: {e}"))?,
        locals: super::tracemodel::reprs_cell(row.get("locals"))
            .map_err(|e| format!("`locals`: {e}"))?
            .map(Arc::new),
        value: text("value"),
        unwound: row.get("unwound").and_then(Value::as_bool).unwrap_or(false),
        exc_type: text("exc_type"),
        exc_message: text("exc_message"),
    })
}

/// A trace stage's `events` rows, grouped by their run; a malformed row is
/// an error naming it.
pub fn events_by_run(events: &[Row]) -> Result<BTreeMap<u64, Vec<TraceEvent>>, String> {
    let mut out: BTreeMap<u64, Vec<TraceEvent>> = BTreeMap::new();
    for (i, row) in events.iter().enumerate() {
        let event = event_from_row(row).map_err(|e| format!("input `events`, row {i}: {e}"))?;
        let run = row.get("run").and_then(Value::as_u64).unwrap_or_default();
        out.entry(run).or_default().push(event);
    }
    Ok(out)
}

/// What one rendering needs.
pub struct RenderRequest<'a> {
    pub id: &'a str,
    pub program: &'a str,
    pub runs: &'a [RunRecord],
    pub options: &'a RenderOptions,
}

/// A loaded representation template (and the templates it includes).
pub struct TraceRenderer {
    env: minijinja::Environment<'static>,
    name: String,
}

impl TraceRenderer {
    pub fn from_file(path: &Path) -> Result<TraceRenderer, StageError> {
        let (env, name) = super::templates::load_templates(path)?;
        env.get_template(&name).map_err(|e| StageError::Template {
            path: path.to_path_buf(),
            message: super::templates::describe(&e),
        })?;
        Ok(TraceRenderer { env, name })
    }

    /// From in-memory sources: `(name, text)`, the first one is rendered.
    pub fn from_sources(
        main: String,
        sources: Vec<(String, String)>,
    ) -> Result<TraceRenderer, minijinja::Error> {
        let mut env = super::templating::environment()?;
        for (name, text) in sources {
            env.add_template_owned(name, text)?;
        }
        env.get_template(&main)?;
        Ok(TraceRenderer { env, name: main })
    }

    pub fn render(&self, req: &RenderRequest<'_>) -> Result<String, String> {
        let p = req.options;
        let opts = ModelOptions {
            compat: p.compat,
            max_value_chars: p.max_value_chars,
            stdio: p.mode == ProgramMode::Stdio,
        };
        let tests: Vec<TestView> = req
            .runs
            .iter()
            .enumerate()
            .map(|(i, run)| TestView::build(i + 1, run, &opts))
            .collect();
        let code_lines: Vec<String> = req.program.split('\n').map(String::from).collect();
        let context = minijinja::context! {
            id => req.id.to_string(),
            program => req.program.to_string(),
            code_lines => code_lines,
            tests => minijinja::Value::from(minijinja::value::Serde(&tests)),
            compat => p.compat.as_str(),
            mode => if opts.stdio { "stdio" } else { "function" },
            knobs => minijinja::context! {
                loop_threshold => p.loop_threshold,
                keep_first => p.keep_first,
            },
            vars => super::templating::json_value(&serde_json::to_value(&p.vars).unwrap_or_default()),
        };
        let template = self
            .env
            .get_template(&self.name)
            .map_err(|e| super::templates::describe(&e))?;
        template
            .render(context)
            .map_err(|e| super::templates::describe(&e))
    }
}
