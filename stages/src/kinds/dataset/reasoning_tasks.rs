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
//! And, asked for by name, debugger actions over the run's frames as CWM's
//! debugger (`cwmdbg`) steps through them (`stages/src/text/cwm.rs`):
//! execution is paused at a line (about to run it, with its locals), and
//! the answer is where an action stops, as JSON: `{"event": "line", "line":
//! L, "locals": {...}}` (the locals before that line), `{"event": "return",
//! "line": L, "value": "..."}`, or `{"event": "end"}`.
//! - `debug_step`: the next frame, into a call; `debug_next`: the next,
//!   over a call; `debug_out`: on until the current function returns, then
//!   the caller's next frame; `debug_break`: on to the next time line L is
//!   about to run (a line the run reaches later);
//! - `debug_back` (inverse): which earlier state of the same function led
//!   here (its previous frame, a call passed over whole).
//!
//! And, asked for as `reval`, REval's probes (`stages/src/text/reval.rs`):
//! `probes` (line L, variable v) points per run, each asked four times in
//! order, in REval's answer formats between `[ANSWER]` and `[/ANSWER]`:
//! `reval_coverage` (is L executed? `YES`/`NO`), `reval_state` (`value;
//! type` of v after L, or `Nil`; the answer is the JSON list of v's `repr`s
//! each time L finished, any one right), `reval_path` (the next line's
//! source, or `-1`; the answer is the JSON list of next line numbers) and
//! `reval_output` (the completed `assert f(...) == ??`, one per run, its
//! answer the result's `repr`). L is a line that assigns a plain name v,
//! executed or not with equal odds; `grade_answers` scores the replies and
//! REval's Incremental Consistency over each probe's four outcomes.
//!
//! And, asked for as `trace_cwm`, the whole run to predict in CWM's trace
//! format: the prompt holds the format, the trace context (the program, its
//! entry point marked) and the call frame; the answer is every frame as
//! `tw trace --format cwm` renders them (`score_traces` and `grade_answers`
//! score a prediction frame by frame).
//!
//! Lines are the program's own line numbers (1-based). Runs that raised,
//! timed out or were truncated give no exercises (their answer would not be
//! checkable), and are counted (`skipped_runs`).
//!
//! # Params
//! - `kinds` (default the four above; the debugger kinds, `reval` and
//!   `trace_cwm` by name), `seed` (default 0) for the line and pause-point choices.
//! - `probes` (default 2): REval probe points per run.
//! - `id` (default `task_id`), `program` (default `program`),
//!   `entry_point` (default `entry_point`): columns of `runs` (keep them in
//!   the trace stage).
//!
//! # Inputs
//! - `runs`, `events`: the outputs of a `trace` stage in function mode.
//!
//! # Outputs
//! - `tasks`: `task` (`<id>/<run>/<kind>`, `/p<probe>` for a REval probe:
//!   unique, the key `generate` and `grade_answers` use), `id` (the run's
//!   id), `run`, `kind`, `prompt`, `answer`, `call` (`f(<input>)`),
//!   `program`, `entry_point`, `input` and `output` (tagged JSON text), `line`
//!   (the line asked about, for `next_state` and `coverage`; where execution
//!   is paused for the debugger kinds), `step` (the paused frame's index
//!   among the run's CWM frames, for the debugger kinds), `probe` and `var`
//!   (REval's probe index and variable).
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
use crate::text::cwm;
use crate::text::reval;
use crate::text::trace_render::{self, record_from_row};
use crate::text::tracemodel::{ModelOptions, TestView};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

pub struct ReasoningTasks;

const KINDS: [&str; 4] = ["output", "input", "next_state", "coverage"];
/// Debugger actions, asked for by name in `kinds`.
/// REval's probes, asked for as `reval` (tasks `reval_coverage`, `reval_state`,
/// `reval_path`, `reval_output`).
const REVAL: &str = "reval";
/// A whole trace to predict in CWM's format, asked for by name.
const TRACE_CWM: &str = "trace_cwm";
const DEBUG_KINDS: [&str; 5] = [
    "debug_step",
    "debug_next",
    "debug_out",
    "debug_break",
    "debug_back",
];

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
    #[serde(default = "default_probes")]
    pub probes: usize,
}

fn default_probes() -> usize {
    2
}

fn default_kinds() -> Vec<String> {
    KINDS.iter().map(|k| k.to_string()).collect()
}

impl Stage for ReasoningTasks {
    const KIND: &'static str = "reasoning_tasks";
    const VERSION: u32 = 4;
    const SOURCE: &'static str = include_str!("reasoning_tasks.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("runs"), InputSlot::one("events")];
    const OUTPUTS: &'static [&'static str] = &["tasks"];
    type Params = ReasoningTasksParams;

    fn validate(p: &ReasoningTasksParams) -> Vec<Problem> {
        let mut problems = Vec::new();
        for k in &p.kinds {
            if !KINDS.contains(&k.as_str())
                && !DEBUG_KINDS.contains(&k.as_str())
                && k != REVAL
                && k != TRACE_CWM
            {
                problems.push(
                    Problem::at("kinds", format!("unknown kind `{k}`")).help(
                        "use output, input, next_state, coverage, debug_step, debug_next, debug_out, debug_break, debug_back, reval, trace_cwm",
                    ),
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
        let debugging = DEBUG_KINDS.iter().any(|k| wanted.contains(k));
        let probing = wanted.contains(REVAL);
        let predicting = wanted.contains(TRACE_CWM);
        if probing && p.probes == 0 {
            return Err(StageError::failed(
                "`probes: 0` with `reval`: ask for at least one probe point",
            ));
        }
        let mut trace_events = if debugging || probing || predicting {
            trace_render::events_by_run(&events).map_err(StageError::failed)?
        } else {
            BTreeMap::new()
        };
        let mut rng = SplitMix64::new(p.seed);
        let mut tasks = Vec::new();
        let mut skipped = 0u64;
        let mut no_probe_points = 0u64;
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
            // The program with line numbers, for the questions about lines.
            let numbered: String = program
                .lines()
                .enumerate()
                .map(|(i, l)| format!("{:>3} {l}\n", i + 1))
                .collect();
            let call_text = format!("{call}({args})");
            let mut push = |kind: &str, prompt: String, answer: String, at: At| {
                let mut task = format!("{id}/{run}/{kind}");
                if let Some(probe) = at.probe {
                    task.push_str(&format!("/p{probe}"));
                }
                let mut r = Map::new();
                r.insert("task".into(), Value::String(task));
                r.insert("id".into(), Value::String(id.clone()));
                r.insert("run".into(), Value::from(run));
                r.insert("kind".into(), Value::String(kind.into()));
                r.insert("prompt".into(), Value::String(prompt));
                r.insert("answer".into(), Value::String(answer));
                r.insert("call".into(), Value::String(call_text.clone()));
                r.insert("program".into(), Value::String(program.clone()));
                r.insert("entry_point".into(), Value::String(entry.clone()));
                r.insert("input".into(), Value::String(input.to_string()));
                r.insert("output".into(), Value::String(result.to_string()));
                r.insert("line".into(), at.line.map_or(Value::Null, Value::from));
                r.insert(
                    "step".into(),
                    at.step.map_or(Value::Null, |s| Value::from(s as u64)),
                );
                r.insert(
                    "probe".into(),
                    at.probe.map_or(Value::Null, |s| Value::from(s as u64)),
                );
                r.insert("var".into(), at.var.map_or(Value::Null, Value::String));
                tasks.push(r);
            };
            if wanted.contains("output") {
                push(
                    "output",
                    format!(
                        "{shown}Complete the assertion with a literal (no expressions, no function calls) containing the output when executing the code on the given input:\nassert {call}({args}) == ??"
                    ),
                    out.clone(),
                    At::default(),
                );
            }
            if wanted.contains("input") {
                push(
                    "input",
                    format!(
                        "{shown}Find any input such that executing the code on it leads to the given output. Answer with the arguments of the call:\nassert {call}(??) == {out}"
                    ),
                    args.clone(),
                    At::default(),
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
                    At::line(line),
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
                push(
                    "coverage",
                    format!(
                        "```python\n{numbered}```\nIs line {line} executed when `{call}({args})` runs? Answer yes or no."
                    ),
                    answer.into(),
                    At::line(line),
                );
            }
            let run_steps = if debugging || probing || predicting {
                let mut record = record_from_row(row).map_err(StageError::failed)?;
                record.events = trace_events.remove(&record.run).unwrap_or_default();
                let view = TestView::build(1, &record, &ModelOptions::default());
                cwm::steps_of(&view)
            } else {
                Vec::new()
            };
            if probing {
                let points = probe_points(&program, &run_steps, p.probes, &mut rng);
                if points.is_empty() {
                    no_probe_points += 1;
                }
                for (probe, (line, var)) in points.iter().enumerate() {
                    let truth = reval::probe_truth(&run_steps, *line, var);
                    let codeline = program
                        .split('\n')
                        .nth(*line as usize - 1)
                        .unwrap_or("")
                        .trim_end();
                    let at = || At {
                        line: Some(u64::from(*line)),
                        probe: Some(probe),
                        var: Some(var.clone()),
                        ..At::default()
                    };
                    let head = format!("[PYTHON]\n{numbered}{call_text}\n[/PYTHON]\n[QUESTION]\n");
                    push(
                        "reval_coverage",
                        format!(
                            "{head}Is line {line} ({codeline}) executed when {call_text} is called? Answer with only YES or NO.\n[/QUESTION]\nProvide your answer in [ANSWER] and [/ANSWER] tags."
                        ),
                        if truth.covered { "YES" } else { "NO" }.into(),
                        at(),
                    );
                    push(
                        "reval_state",
                        format!(
                            "{head}Is line {line} ({codeline}) executed when {call_text} is called? If so, what is the value and type of the variable {var} after line {line} is executed? Answer in \"value; type\" format (a Python constant; a Python class name). If not, answer Nil.\n[/QUESTION]\nProvide your answer in [ANSWER] and [/ANSWER] tags."
                        ),
                        json!(truth.values).to_string(),
                        at(),
                    );
                    push(
                        "reval_path",
                        format!(
                            "{head}If the line `{codeline}` is executed when {call_text} is called, answer with the next line of code to be executed. If not, or the program terminates after this line, answer with -1.\n[/QUESTION]\nProvide your answer, one line of code, in [ANSWER] and [/ANSWER] tags."
                        ),
                        json!(truth.next_lines).to_string(),
                        at(),
                    );
                }
                if !points.is_empty() {
                    push(
                        "reval_output",
                        format!(
                            "[PYTHON]\n{}\n\nassert {call_text} == ??\n[/PYTHON]\nComplete the assertion by replacing the question marks with the output, considering executing the code on the given input. Provide the completed assertion in [ANSWER] and [/ANSWER] tags.",
                            program.trim_end()
                        ),
                        out.clone(),
                        At::default(),
                    );
                }
            }
            if predicting {
                let frames = cwm::frames_from_steps(&run_steps, &program);
                if !frames.is_empty() {
                    let entry_line = frames.first().and_then(|f| f.line);
                    push(
                        TRACE_CWM,
                        format!(
                            "Predict the execution trace of `{call_text}` in CWM's trace format: one frame per event (call, line, return, exception), each ending with {sep}; a line frame is `<|line_sep|>` + the local variables before the line as a JSON object of repr strings (\"..\" for a value unchanged since the scope's previous frame) + `<|action_sep|>` + the source line; a return frame is `<|return_sep|><|action_sep|>` + the line + `<|arg_sep|>` + the returned repr as a JSON string. End with {end} when the call returns. Write every frame, the call frame first.\n\n{start}{context}{sep}\nThe first frame:\n{first}",
                            sep = cwm::FRAME_SEP,
                            end = cwm::END,
                            start = cwm::CONTEXT_START,
                            context = cwm::context(&program, entry_line),
                            first = cwm::render_frames(&frames[..1], false),
                        ),
                        cwm::render_frames(&frames, cwm::ends(&run_steps)),
                        At::default(),
                    );
                }
            }
            if debugging {
                let frames = cwm::frames_from_steps(&run_steps, &program);
                // Pause points: line frames, seeded.
                let pauses: Vec<usize> = (0..frames.len())
                    .filter(|&i| frames[i].kind == cwm::Kind::Line)
                    .collect();
                for kind in DEBUG_KINDS.iter().filter(|k| wanted.contains(*k)) {
                    if pauses.is_empty() {
                        break;
                    }
                    let at = if *kind == "debug_back" {
                        // Something must have led here: not the first line.
                        let later: Vec<usize> = pauses.iter().copied().filter(|&i| i > 1).collect();
                        if later.is_empty() {
                            continue;
                        }
                        later[rng.below(later.len() as u64) as usize]
                    } else {
                        pauses[rng.below(pauses.len() as u64) as usize]
                    };
                    let here = &frames[at];
                    let line = here.line.unwrap_or(0);
                    let locals = cwm::frame_json(Some(here))["locals"].to_string();
                    let paused = format!(
                        "```python\n{numbered}```\n`{call}({args})` is running under a debugger, paused at line {line} (about to run it) with the local variables {locals}.\n"
                    );
                    let answer_form = "Answer as JSON: {\"event\": \"line\", \"line\": L, \"locals\": {name: repr}} for a line about to run (its locals before it runs), {\"event\": \"return\", \"line\": L, \"value\": repr} for a return, or {\"event\": \"end\"} if the run ends first.";
                    let (question, stop) = match *kind {
                        "debug_step" => (
                            "The debugger steps once (`step`, into a call if this line makes one). Where does it stop?".to_string(),
                            cwm::act(&frames, at, cwm::Action::Step),
                        ),
                        "debug_next" => (
                            "The debugger steps over this line (`next`: a call it makes runs to its return). Where does it stop?".to_string(),
                            cwm::act(&frames, at, cwm::Action::Next),
                        ),
                        "debug_out" => (
                            "The debugger steps out (`out`: on until the current function returns, then one step in its caller). Where does it stop?".to_string(),
                            cwm::act(&frames, at, cwm::Action::Out),
                        ),
                        "debug_break" => {
                            let ahead: BTreeSet<u32> = frames[at + 1..]
                                .iter()
                                .filter(|f| f.kind == cwm::Kind::Line)
                                .filter_map(|f| f.line)
                                .collect();
                            if ahead.is_empty() {
                                continue;
                            }
                            let ahead: Vec<u32> = ahead.into_iter().collect();
                            let target = ahead[rng.below(ahead.len() as u64) as usize];
                            (
                                format!("A breakpoint is set at line {target} and the debugger continues. Where does it stop?"),
                                cwm::act(&frames, at, cwm::Action::Break(target)),
                            )
                        }
                        _ => (
                            "Which state of this function led here: where was it paused just before (its previous step, a call passed over whole)?".to_string(),
                            cwm::previous_in_scope(&frames, at),
                        ),
                    };
                    push(
                        kind,
                        format!("{paused}{question} {answer_form}"),
                        cwm::frame_json(stop.and_then(|j| frames.get(j))).to_string(),
                        At {
                            line: Some(u64::from(line)),
                            step: Some(at),
                            ..At::default()
                        },
                    );
                }
            }
        }
        ctx.note("tasks", tasks.len());
        ctx.note("skipped_runs", skipped);
        if probing {
            ctx.note("runs_without_probe_points", no_probe_points);
        }
        let mut template = Map::new();
        for t in [
            "task",
            "id",
            "kind",
            "prompt",
            "answer",
            "call",
            "var",
            "program",
            "entry_point",
            "input",
            "output",
        ] {
            template.insert(t.into(), Value::String(String::new()));
        }
        template.insert("run".into(), Value::from(0i64));
        template.insert("line".into(), Value::from(0u64));
        template.insert("step".into(), Value::from(0u64));
        template.insert("probe".into(), Value::from(0u64));
        ctx.write_output(
            "tasks",
            &artifact::json_rows_to_typed_table(tasks, template)?,
        )
    }
}

/// Where a task points in the run: the line asked about, the paused frame,
/// REval's probe index and variable.
#[derive(Default)]
struct At {
    line: Option<u64>,
    step: Option<usize>,
    probe: Option<usize>,
    var: Option<String>,
}

impl At {
    fn line(line: u64) -> At {
        At {
            line: Some(line),
            ..At::default()
        }
    }
}

/// REval probe points: up to `n` distinct lines that assign a plain name,
/// each drawn from the executed or the unexecuted ones with equal odds
/// (when both exist), with the name they assign.
fn probe_points(
    program: &str,
    steps: &[cwm::StepIn],
    n: usize,
    rng: &mut SplitMix64,
) -> Vec<(u32, String)> {
    let lines: Vec<&str> = program.split('\n').collect();
    let executed: BTreeSet<u32> = steps
        .iter()
        .filter(|s| s.kind == "line")
        .map(|s| s.line)
        .collect();
    type Points = Vec<(u32, String)>;
    let (mut hit, mut miss): (Points, Points) = code_lines(program)
        .into_iter()
        .filter_map(|l| {
            let l = l as u32;
            reval::assigned_name(lines.get(l as usize - 1)?).map(|v| (l, v))
        })
        .partition(|(l, _)| executed.contains(l));
    let mut out = Vec::new();
    while out.len() < n && !(hit.is_empty() && miss.is_empty()) {
        let pool = match (hit.is_empty(), miss.is_empty()) {
            (false, false) => {
                if rng.below(2) == 0 {
                    &mut hit
                } else {
                    &mut miss
                }
            }
            (false, true) => &mut hit,
            _ => &mut miss,
        };
        let k = rng.below(pool.len() as u64) as usize;
        out.push(pool.remove(k));
    }
    out.sort();
    out
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
