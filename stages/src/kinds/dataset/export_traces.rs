//! `export_traces`: split a trace set into a public tier (control-flow hashes and bounded ranges) and a restricted tier (the full traces).
//!
//! # What it does
//! The paper's dual-tier release. From the outputs of `trace` it writes:
//! - **public**, one row per run: the run and its problem id, the verdict,
//!   the number of steps; `control_flow`, a hash of the executed sequence of
//!   (event kind, line, depth); `line_hits`, how often each line ran; and
//!   `variables`: for each variable, in order of first appearance and named
//!   only `v0`, `v1`, ..., its type and a bounded range: for numbers the
//!   order-of-magnitude bounds of what it held (`[-10, 100]`, never the
//!   values), for strings and containers the bucket of their length (`0`,
//!   `1-4`, `5-16`, `17-64`, `65-256`, `257+`). No identifier of the program
//!   (variable or function names, exception types) and no value appears.
//!   Enough to benchmark (which lines run, how often, on what sizes), not
//!   enough to reconstruct the program's logic.
//! - **restricted**: the full line-level trace (`restricted_runs`,
//!   `restricted_events`: calls, locals, identifiers, values), for partners
//!   who agree to the access terms.
//!
//! Each tier comes with a manifest (`tiers/public.json`,
//! `tiers/restricted.json` beside the `public` artifact) saying what it
//! holds, what it leaves out, its access terms and its row counts. Sanitize
//! the restricted tier's text before it leaves (`sanitize`).
//!
//! # Params
//! - `id` (default `task_id`): the problem id column of `trace`'s outputs.
//! - `access` (default: vetted academic partners under a security addendum,
//!   no redistribution): the restricted tier's access terms, as written into
//!   its manifest.
//!
//! # Inputs
//! - `runs`, `events`: the outputs of `trace`.
//!
//! # Outputs
//! - `public`: `run`, the id, `verdict`, `steps`, `control_flow`,
//!   `line_hits` (JSON object line -> count), `variables` (JSON list).
//! - `restricted_runs`, `restricted_events`: `trace`'s tables as they are.
//!
//! # Caching
//! Params are in the key; reruns write the same bytes.
//!
//! # Example
//! ```yaml
//! release_traces:
//!   kind: export_traces
//!   inputs: { runs: traces.runs, events: traces.events }
//! ```

use crate::api::artifact;
use crate::api::rows;
use crate::api::rows::Row;
use crate::api::{InputSlot, RunCtx, Stage, StageError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub struct ExportTraces;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportTracesParams {
    #[serde(default = "default_id")]
    pub id: String,
    #[serde(default = "default_access")]
    pub access: String,
}

fn default_id() -> String {
    "task_id".into()
}
fn default_access() -> String {
    "vetted academic partners who sign a security addendum (safe handling, no redistribution)"
        .into()
}

impl Stage for ExportTraces {
    const KIND: &'static str = "export_traces";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("export_traces.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("runs"), InputSlot::one("events")];
    const OUTPUTS: &'static [&'static str] = &["public", "restricted_runs", "restricted_events"];
    type Params = ExportTracesParams;

    fn run(p: &ExportTracesParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let runs_table = ctx.input("runs")?;
        let events_table = ctx.input("events")?;
        let runs = artifact::table_to_json_rows(&runs_table)?;
        let events = artifact::table_to_json_rows(&events_table)?;
        for column in ["run", "verdict", "steps"] {
            rows::require_column(&runs, "runs", column, column)?;
        }
        for column in ["run", "kind", "line", "depth", "changed"] {
            rows::require_column(&events, "events", column, column)?;
        }
        let mut by_run: BTreeMap<u64, Vec<&Row>> = BTreeMap::new();
        for e in &events {
            let run = e.get("run").and_then(Value::as_u64).unwrap_or(0);
            by_run.entry(run).or_default().push(e);
        }
        let mut public = Vec::with_capacity(runs.len());
        for run in &runs {
            let index = run.get("run").and_then(Value::as_u64).unwrap_or(0);
            let steps = by_run.get(&index).map(Vec::as_slice).unwrap_or_default();
            let mut row = Map::new();
            row.insert("run".into(), Value::from(index));
            row.insert(p.id.clone(), run.get(&p.id).cloned().unwrap_or(Value::Null));
            row.insert(
                "verdict".into(),
                run.get("verdict").cloned().unwrap_or(Value::Null),
            );
            row.insert(
                "steps".into(),
                run.get("steps").cloned().unwrap_or(Value::Null),
            );
            let summary = summarise(steps);
            row.insert("control_flow".into(), Value::String(summary.control_flow));
            row.insert(
                "line_hits".into(),
                Value::String(summary.line_hits.to_string()),
            );
            row.insert(
                "variables".into(),
                Value::String(summary.variables.to_string()),
            );
            public.push(row);
        }
        let dir = ctx.output_path("public").with_file_name("tiers");
        fs_err::create_dir_all(&dir)?;
        let public_manifest = json!({
            "tier": "public",
            "access": "public",
            "rows": public.len(),
            "holds": ["run", p.id, "verdict", "steps",
                "control_flow: blake3 of the executed (event kind, line, depth) sequence",
                "line_hits: line -> times executed",
                "variables: per variable (named v0, v1, ... by first appearance) its type and a bounded range: order-of-magnitude bounds for numbers, a length bucket for strings and containers"],
            "leaves_out": ["source code", "variable, function and class names", "values", "inputs and outputs", "exception types and messages"],
        });
        let restricted_manifest = json!({
            "tier": "restricted",
            "access": p.access,
            "runs": runs.len(),
            "events": events.len(),
            "holds": ["the full line-level trace of every run as `trace` recorded it: calls, lines, returns, exceptions, locals, identifiers, values, inputs and outputs"],
        });
        for (name, manifest) in [
            ("public", public_manifest),
            ("restricted", restricted_manifest),
        ] {
            let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
            crate::api::fsutil::write_atomic(&dir.join(format!("{name}.json")), text.as_bytes())?;
        }
        ctx.note("runs", runs.len());
        let mut template = Map::new();
        template.insert("run".into(), Value::from(0u64));
        template.insert(p.id.clone(), Value::String(String::new()));
        template.insert("verdict".into(), Value::String(String::new()));
        template.insert("steps".into(), Value::from(0u64));
        for c in ["control_flow", "line_hits", "variables"] {
            template.insert(c.into(), Value::String(String::new()));
        }
        ctx.write_output(
            "public",
            &artifact::json_rows_to_typed_table(public, template)?,
        )?;
        ctx.write_output("restricted_runs", &runs_table)?;
        ctx.write_output("restricted_events", &events_table)
    }
}

/// What the public tier says about one run.
struct Summary {
    control_flow: String,
    line_hits: Value,
    variables: Value,
}

/// One variable's type and the extremes it reached.
#[derive(Default)]
struct Seen {
    kind: String,
    min: Option<f64>,
    max: Option<f64>,
    longest: Option<usize>,
    truncated: bool,
}

fn summarise(events: &[&Row]) -> Summary {
    let mut flow = String::new();
    let mut hits: BTreeMap<u64, u64> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    for e in events {
        let kind = e.get("kind").and_then(Value::as_str).unwrap_or_default();
        let line = e.get("line").and_then(Value::as_u64).unwrap_or(0);
        let depth = e.get("depth").and_then(Value::as_u64).unwrap_or(0);
        flow.push_str(&format!("{kind}:{line}:{depth};"));
        if kind == "line" {
            *hits.entry(line).or_default() += 1;
        }
        let changed: Map<String, Value> = e
            .get("changed")
            .and_then(Value::as_str)
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        for (name, repr) in changed {
            let Some(repr) = repr.as_str() else { continue };
            if !seen.contains_key(&name) {
                order.push(name.clone());
            }
            let s = seen.entry(name).or_default();
            let (kind, number, length, truncated) = classify(repr);
            if s.kind.is_empty() {
                s.kind = kind.to_string();
            } else if s.kind != kind {
                s.kind = "mixed".into();
            }
            if let Some(x) = number {
                s.min = Some(s.min.map_or(x, |m| m.min(x)));
                s.max = Some(s.max.map_or(x, |m| m.max(x)));
            }
            if let Some(n) = length {
                s.longest = Some(s.longest.map_or(n, |m| m.max(n)));
            }
            s.truncated |= truncated;
        }
    }
    let variables: Vec<Value> = order
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let s = &seen[name];
            let mut v = Map::new();
            v.insert("var".into(), Value::String(format!("v{i}")));
            v.insert("type".into(), Value::String(s.kind.clone()));
            if let (Some(lo), Some(hi)) = (s.min, s.max) {
                v.insert("range".into(), json!([bound_below(lo), bound_above(hi)]));
            }
            if let Some(n) = s.longest {
                let bucket = if s.truncated {
                    "257+"
                } else {
                    length_bucket(n)
                };
                v.insert("len".into(), Value::String(bucket.into()));
            }
            Value::Object(v)
        })
        .collect();
    Summary {
        control_flow: blake3::hash(flow.as_bytes()).to_hex()[..32].to_string(),
        line_hits: Value::Object(
            hits.into_iter()
                .map(|(l, n)| (l.to_string(), Value::from(n)))
                .collect(),
        ),
        variables: Value::Array(variables),
    }
}

/// A value's type, number (numbers), length (strings, containers) and
/// whether its repr was cut, read from the repr the tracer recorded.
fn classify(repr: &str) -> (&'static str, Option<f64>, Option<usize>, bool) {
    let r = repr.trim();
    let truncated = r.contains('…') || r.contains("...");
    if r == "True" || r == "False" {
        return ("bool", None, None, false);
    }
    if r == "None" {
        return ("none", None, None, false);
    }
    if let Ok(i) = r.parse::<i128>() {
        return ("int", Some(i as f64), None, false);
    }
    if let Ok(x) = r.parse::<f64>() {
        return ("float", Some(x), None, false);
    }
    let quoted = |s: &str| {
        (s.starts_with('\'') && s.ends_with('\'')) || (s.starts_with('"') && s.ends_with('"'))
    };
    if quoted(r) && r.len() >= 2 {
        return (
            "str",
            None,
            Some(r[1..r.len() - 1].chars().count()),
            truncated,
        );
    }
    if r.starts_with("b'") || r.starts_with("b\"") {
        return ("bytes", None, Some(r.len().saturating_sub(3)), truncated);
    }
    let kind = match r.chars().next() {
        Some('[') => "list",
        Some('(') => "tuple",
        Some('{') if r.contains(':') => "dict",
        Some('{') => "set",
        _ if r == "set()" => "set",
        _ => return ("object", None, None, truncated),
    };
    (kind, None, Some(top_level_items(r)), truncated)
}

/// Items of a container repr: commas at the top level, quotes respected.
fn top_level_items(r: &str) -> usize {
    let inner = r.get(1..r.len().saturating_sub(1)).unwrap_or("");
    if inner.trim().is_empty() {
        return 0;
    }
    let (mut depth, mut quote, mut escaped, mut commas) = (0i32, None::<char>, false, 0usize);
    for c in inner.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '[' | '(' | '{' => depth += 1,
            ']' | ')' | '}' => depth -= 1,
            ',' if depth == 0 => commas += 1,
            _ => {}
        }
    }
    // `(1,)` has one item and one comma.
    if inner.trim_end().ends_with(',') {
        commas
    } else {
        commas + 1
    }
}

fn length_bucket(n: usize) -> &'static str {
    match n {
        0 => "0",
        1..=4 => "1-4",
        5..=16 => "5-16",
        17..=64 => "17-64",
        65..=256 => "65-256",
        _ => "257+",
    }
}

/// The power of ten at or below `x` (0 for values in [0, 1); negative
/// values bounded by minus a power of ten).
fn bound_below(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    if x >= 0.0 {
        if x < 1.0 {
            0.0
        } else {
            10f64.powi(x.log10().floor() as i32)
        }
    } else {
        -bound_above(-x)
    }
}

/// The power of ten above `x` (1 for values in [0, 1)).
fn bound_above(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    if x >= 0.0 {
        if x < 1.0 {
            1.0
        } else {
            10f64.powi(x.log10().floor() as i32 + 1)
        }
    } else {
        -bound_below(-x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reprs_are_read_as_types_numbers_and_lengths() {
        assert_eq!(classify("42"), ("int", Some(42.0), None, false));
        assert_eq!(classify("-2.5"), ("float", Some(-2.5), None, false));
        assert_eq!(classify("'zed'"), ("str", None, Some(3), false));
        assert_eq!(
            classify("[1, [2, 3], 'a,b']"),
            ("list", None, Some(3), false)
        );
        assert_eq!(classify("(1,)"), ("tuple", None, Some(1), false));
        assert_eq!(classify("{'a': 1, 'b': 2}"), ("dict", None, Some(2), false));
        assert_eq!(classify("{1, 2}"), ("set", None, Some(2), false));
        assert_eq!(classify("[]"), ("list", None, Some(0), false));
        assert_eq!(classify("<__main__.Node object at 0x7f>").0, "object");
    }

    #[test]
    fn numbers_are_bounded_by_powers_of_ten() {
        assert_eq!((bound_below(0.0), bound_above(6.0)), (0.0, 10.0));
        assert_eq!(
            (bound_below(6000.0), bound_above(6000.0)),
            (1000.0, 10000.0)
        );
        assert_eq!((bound_below(-3.0), bound_above(-3.0)), (-10.0, -1.0));
        assert_eq!((bound_below(0.25), bound_above(0.25)), (0.0, 1.0));
        assert_eq!(length_bucket(3), "1-4");
        assert_eq!(length_bucket(300), "257+");
    }
}
