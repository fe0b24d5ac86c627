//! `reasoning_tasks`: execution-reasoning exercises with verifiable answers, made from traces.
//!
//! # What it does
//! Turns every finished traced run of a function (a `trace` stage's `runs`
//! and `events`) into the paper's four kinds of exercise:
//! - `output`: CRUXEval-O style, `assert f(<input>) == ??`; the answer is
//!   the returned value's `repr`.
//! - `input`: CRUXEval-I style, `assert f(??) == <output>`; the answer is the
//!   traced input (any input giving that output is correct: check it by
//!   running the program, e.g. `execute` with `input_format: python`).
//! - `next_state`: the local variables after one executed line are shown;
//!   the answer is the next line executed and the variables it changes (JSON).
//! - `coverage`: "is line L executed for this input?"; the answer is `yes`
//!   or `no`, from the lines the trace visited. The line asked about is a
//!   code line of the program, executed or not with equal odds when both exist.
//!
//! Lines are the program's own line numbers (1-based). Runs that raised,
//! timed out or were truncated give no exercises (their answer would not be
//! checkable), and are counted (`skipped_runs`).
//!
//! # Params
//! - `kinds` (default all four), `seed` (default 0) for the line choices.
//! - `id` (default `task_id`), `program` (default `program`),
//!   `entry_point` (default `entry_point`): columns of `runs` (keep them in
//!   the trace stage).
//!
//! # Inputs
//! - `runs`, `events`: the outputs of a `trace` stage in function mode.
//!
//! # Outputs
//! - `tasks`: `id` (the run's id), `run`, `kind`, `prompt`, `answer`,
//!   `program`, `entry_point`, `input` and `output` (tagged JSON text), `line`
//!   (the line asked about, for `next_state` and `coverage`).
//!
//! # Caching
//! Keyed by the params and both inputs' content.
//!
//! # Example
//! ```yaml
//! exercises:
//!   kind: reasoning_tasks
//!   inputs: { runs: patch_traces.runs, events: patch_traces.events }
//!   params: { id: pair_id, program: patch, seed: 1 }
//! ```

use crate::api::artifact;
use crate::api::rng::SplitMix64;
use crate::api::rows;
use crate::api::rows::{Row, cell_text};
use crate::api::{InputSlot, Problem, RunCtx, Stage, StageError};
use crate::python::pyvalue;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

pub struct ReasoningTasks;

const KINDS: [&str; 4] = ["output", "input", "next_state", "coverage"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasoningTasksParams {
    #[serde(default = "default_kinds")]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "crate::python::trace_jobs::default_id")]
    pub id: String,
    #[serde(default = "crate::python::trace_jobs::default_program")]
    pub program: String,
    #[serde(default = "crate::python::trace_jobs::default_entry_point")]
    pub entry_point: String,
}

fn default_kinds() -> Vec<String> {
    KINDS.iter().map(|k| k.to_string()).collect()
}

impl Stage for ReasoningTasks {
    const KIND: &'static str = "reasoning_tasks";
    const VERSION: u32 = 2;
    const SOURCE: &'static str = include_str!("reasoning_tasks.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("runs"), InputSlot::one("events")];
    const OUTPUTS: &'static [&'static str] = &["tasks"];
    type Params = ReasoningTasksParams;

    fn validate(p: &ReasoningTasksParams) -> Vec<Problem> {
        let mut problems = Vec::new();
        for k in &p.kinds {
            if !KINDS.contains(&k.as_str()) {
                problems.push(
                    Problem::at("kinds", format!("unknown kind `{k}`"))
                        .help("use output, input, next_state, coverage"),
                );
            }
        }
        if p.kinds.is_empty() {
            problems.push(Problem::at("kinds", "list at least one kind"));
        }
        problems
    }

    fn run(p: &ReasoningTasksParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let runs = artifact::table_to_json_rows(&ctx.input("runs")?)?;
        let events = artifact::table_to_json_rows(&ctx.input("events")?)?;
        for column in [
            p.id.as_str(),
            p.program.as_str(),
            p.entry_point.as_str(),
            "run",
            "verdict",
            "result",
            "input",
        ] {
            rows::require_column(&runs, "runs", column, column)?;
        }
        let mut by_run: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
        for e in &events {
            if let Some(run) = e.get("run").and_then(Value::as_i64) {
                by_run.entry(run).or_default().push(e);
            }
        }
        let wanted: BTreeSet<&str> = p.kinds.iter().map(String::as_str).collect();
        let mut rng = SplitMix64::new(p.seed);
        let mut tasks = Vec::new();
        let mut skipped = 0u64;
        for row in &runs {
            // A wrong answer still finished: its output is what the program returns.
            let finished = matches!(
                row.get("verdict").and_then(Value::as_str),
                Some("pass" | "wrong_answer")
            ) && row.get("truncated").and_then(Value::as_bool) != Some(true);
            let (Some(run), Some(program), Some(entry), Some(input), Some(result)) = (
                row.get("run").and_then(Value::as_i64),
                cell_text(row, &p.program),
                cell_text(row, &p.entry_point),
                cell_text(row, "input").and_then(|t| serde_json::from_str::<Value>(&t).ok()),
                cell_text(row, "result").and_then(|t| serde_json::from_str::<Value>(&t).ok()),
            ) else {
                skipped += 1;
                continue;
            };
            if !finished {
                skipped += 1;
                continue;
            }
            let id = cell_text(row, &p.id).unwrap_or_default();
            let call = entry.rsplit('.').next().unwrap_or(&entry).to_string();
            let args = pyvalue::args_text(&input);
            let out = pyvalue::repr(&result);
            let shown = format!("```python\n{}\n```\n", program.trim_end());
            let mut push = |kind: &str, prompt: String, answer: String, line: Option<u64>| {
                let mut r = Map::new();
                r.insert("id".into(), Value::String(id.clone()));
                r.insert("run".into(), Value::from(run));
                r.insert("kind".into(), Value::String(kind.into()));
                r.insert("prompt".into(), Value::String(prompt));
                r.insert("answer".into(), Value::String(answer));
                r.insert("program".into(), Value::String(program.clone()));
                r.insert("entry_point".into(), Value::String(entry.clone()));
                r.insert("input".into(), Value::String(input.to_string()));
                r.insert("output".into(), Value::String(result.to_string()));
                r.insert("line".into(), line.map_or(Value::Null, Value::from));
                tasks.push(r);
            };
            if wanted.contains("output") {
                push(
                    "output",
                    format!(
                        "{shown}Complete the assertion with a literal (no expressions, no function calls) containing the output when executing the code on the given input:\nassert {call}({args}) == ??"
                    ),
                    out.clone(),
                    None,
                );
            }
            if wanted.contains("input") {
                push(
                    "input",
                    format!(
                        "{shown}Find any input such that executing the code on it leads to the given output. Answer with the arguments of the call:\nassert {call}(??) == {out}"
                    ),
                    args.clone(),
                    None,
                );
            }
            let steps: Vec<&Row> = by_run
                .get(&run)
                .map(|evs| {
                    evs.iter()
                        .copied()
                        .filter(|e| e.get("kind").and_then(Value::as_str) == Some("line"))
                        .collect()
                })
                .unwrap_or_default();
            if wanted.contains("next_state") && steps.len() >= 2 {
                let k = rng.below(steps.len() as u64 - 1) as usize;
                let (now, next) = (steps[k], steps[k + 1]);
                let line = now.get("line").and_then(Value::as_u64).unwrap_or(0);
                let locals = cell_text(now, "locals").unwrap_or_else(|| "{}".into());
                let next_line = next.get("line").and_then(Value::as_u64).unwrap_or(0);
                // A line event carries the line that ran and what it changed.
                let effect = cell_text(next, "changed")
                    .and_then(|c| serde_json::from_str::<Value>(&c).ok())
                    .unwrap_or(json!({}));
                push(
                    "next_state",
                    format!(
                        "{shown}The call `{call}({args})` is running. Line {line} has just executed; the local variables are now:\n{locals}\nWhich line executes next, and which variables does that line change (JSON object of name -> repr)? Answer as JSON: {{\"line\": L, \"changed\": {{...}}}}"
                    ),
                    json!({ "line": next_line, "changed": effect }).to_string(),
                    Some(line),
                );
            }
            if wanted.contains("coverage") {
                let executed: BTreeSet<u64> = steps
                    .iter()
                    .filter_map(|e| e.get("line").and_then(Value::as_u64))
                    .collect();
                let code_lines = code_lines(&program);
                let (hit, miss): (Vec<u64>, Vec<u64>) =
                    code_lines.iter().partition(|l| executed.contains(l));
                let pool = match (hit.is_empty(), miss.is_empty()) {
                    (false, false) => {
                        if rng.below(2) == 0 {
                            &hit
                        } else {
                            &miss
                        }
                    }
                    (false, true) => &hit,
                    (true, false) => &miss,
                    (true, true) => continue,
                };
                let line = pool[rng.below(pool.len() as u64) as usize];
                let answer = if executed.contains(&line) {
                    "yes"
                } else {
                    "no"
                };
                let numbered: String = program
                    .lines()
                    .enumerate()
                    .map(|(i, l)| format!("{:>3} {l}\n", i + 1))
                    .collect();
                push(
                    "coverage",
                    format!(
                        "```python\n{numbered}```\nIs line {line} executed when `{call}({args})` runs? Answer yes or no."
                    ),
                    answer.into(),
                    Some(line),
                );
            }
        }
        ctx.note("tasks", tasks.len());
        ctx.note("skipped_runs", skipped);
        let mut template = Map::new();
        for t in [
            "id",
            "kind",
            "prompt",
            "answer",
            "program",
            "entry_point",
            "input",
            "output",
        ] {
            template.insert(t.into(), Value::String(String::new()));
        }
        template.insert("run".into(), Value::from(0i64));
        template.insert("line".into(), Value::from(0u64));
        ctx.write_output(
            "tasks",
            &artifact::json_rows_to_typed_table(tasks, template)?,
        )
    }
}

/// Lines inside function bodies that hold code (not blank, not a comment,
/// not a `def`/`class` header, not a docstring line).
pub fn code_lines(program: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut in_doc: Option<&str> = None;
    for (i, line) in program.lines().enumerate() {
        let t = line.trim();
        if let Some(q) = in_doc {
            if t.contains(q) {
                in_doc = None;
            }
            continue;
        }
        for q in ["\"\"\"", "'''"] {
            if t.starts_with(q) {
                if !(t.len() >= 6 && t[3..].contains(q)) {
                    in_doc = Some(q);
                }
                break;
            }
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        if in_doc.is_some()
            || t.starts_with("\"\"\"")
            || t.starts_with("'''")
            || t.is_empty()
            || t.starts_with('#')
            || !indented
            || t.starts_with("def ")
            || t.starts_with("class ")
            || t.starts_with('@')
        {
            continue;
        }
        out.push(i as u64 + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_lines_are_body_statements_only() {
        let program = "import math\n\ndef f(x):\n    \"\"\"Doc\n    more.\n    \"\"\"\n    # note\n    if x:\n        return 1\n    return 2\n";
        assert_eq!(code_lines(program), vec![8, 9, 10]);
    }
}
