//! `grade_answers`: grade a model's replies to `reasoning_tasks` exercises.
//!
//! # What it does
//! Matches each reply to its exercise (`reasoning_tasks`' `task` key) and
//! grades it the way its kind's answer is checked:
//! - `output`: the reply's value (after `==` when it wrote the assertion;
//!   `[ANSWER]` tags and code fences removed) is checked by running the
//!   program and `assert f(<input>) == <value>` in the sandbox, as CRUXEval
//!   grades output prediction.
//! - `input`: the reply's arguments (or its call, or its assertion's left
//!   side) are checked by running `assert f(*<arguments>) == <output>`: any
//!   input giving the traced output is right, as CRUXEval grades input
//!   prediction.
//!
//!   One difference, on purpose: values are read with `ast.literal_eval`,
//!   never run. The prompts ask for literals; CRUXEval runs the answer as
//!   code, so an answer such as `1) or (True` passes there whatever the
//!   output. Here it is wrong ("malformed node").
//! - `coverage`: the first `yes` / `no` word of the reply.
//! - `next_state` and the debugger kinds: the first JSON object of the
//!   reply, equal to the answer's (line, changed variables; event, line,
//!   locals or value).
//! - `trace_cwm`: the reply's frames parsed and scored against the run's
//!   (`stages/src/text/cwm.rs`); right when the whole trace is exact, with
//!   the share of frames whose locals are right in `detail`.
//! - REval's probes, as REval's `evaluation.py` reads and checks them
//!   (`stages/src/text/reval.rs`): `reval_coverage` (YES/NO in the first
//!   three characters, otherwise NO), `reval_path` (the first answer line
//!   matched to program lines; any of the run's next lines is right),
//!   `reval_state` (`value; type` parsed and compared in the sandbox: the
//!   type by name, the value by `==`, floats within 1e-6, against each
//!   value the variable had after the line; `Nil` right only when the line
//!   never ran) and `reval_output` (the completed assertion; an assertion
//!   of a constant, or fewer asserts than asked, fails without running).
//!   Here too values are literals, read with `ast.literal_eval` where REval
//!   `eval`s and `exec`s them (so a `datetime` or `numpy` value REval's
//!   parser builds is wrong here), and the output assertion must be about
//!   the call asked, `assert <call> == <literal>`, where REval runs whatever
//!   the reply asserts (`assert f(1) == f(1)` passes there).
//!
//! A reply that cannot be read is wrong, with the reason; it never stops
//! the stage. Model-written text is never run as code; the checks (the
//! program, the literals) run inside the sandbox.
//!
//! # Params
//! - `task` (default `task_id`): the column of `replies` naming the
//!   exercise (`generate` writes the problem's `task_id`: give the problems
//!   `task_id: task`).
//! - `reply` (default `reply`): the column holding the reply text.
//! - `timeout` (default 3 s) and `memory_mb` (default 1024) per check run.
//!
//! # Inputs
//! - `tasks`: a `reasoning_tasks` output.
//! - `replies`: one row per reply (several per exercise when sampled; a
//!   `sample` column tells them apart).
//!
//! # Outputs
//! - `graded`: per reply: `task`, `id`, `run`, `kind`, `probe`, `sample`,
//!   `correct`, `reply`, `extracted` (what was read from the reply), `reason` (why
//!   it is wrong), `detail`.
//! - `summary`: long format, one row per (`kind`, `metric`): `value`, `n`.
//!   Every kind has `accuracy_pct`; `reval_coverage` also `precision_pct`,
//!   `recall_pct` and `f1_pct` (REval reports them); kind `reval` has
//!   `incremental_consistency_pct`, REval's IC score over the probes whose
//!   four replies are all present (100 x the mean of 1, 1/2, 1/4, 1/8 or 0
//!   per probe).
//!
//! # Caching
//! Keyed by the params and both inputs' content.
//!
//! # Example
//! ```yaml
//! graded:
//!   kind: grade_answers
//!   inputs: { tasks: exercises.tasks, replies: answers.candidates }
//! ```

use crate::api::artifact;
use crate::api::rows::{self, Row, cell_text};
use crate::api::{InputSlot, Problem, RunCtx, Stage, StageError};
use crate::bench::grading::{first_failure, script_job};
use crate::llm::reply::{self, CruxTask};
use crate::python::programs;
use crate::python::pyvalue::{self, py_str_repr};
use crate::text::{cwm, reval};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

pub struct GradeAnswers;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradeAnswersParams {
    #[serde(default = "default_task")]
    pub task: String,
    #[serde(default = "default_reply")]
    pub reply: String,
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    #[serde(default = "default_memory")]
    pub memory_mb: u64,
}

fn default_task() -> String {
    "task_id".into()
}
fn default_reply() -> String {
    "reply".into()
}
fn default_timeout() -> f64 {
    3.0
}
fn default_memory() -> u64 {
    1024
}

/// How one reply is decided: now, or by a check run in the sandbox.
enum Verdict {
    Decided {
        correct: bool,
        reason: Option<String>,
        detail: Option<String>,
    },
    Run(String),
}

fn right() -> Verdict {
    Verdict::Decided {
        correct: true,
        reason: None,
        detail: None,
    }
}

fn wrong(reason: impl Into<String>) -> Verdict {
    Verdict::Decided {
        correct: false,
        reason: Some(reason.into()),
        detail: None,
    }
}

impl Stage for GradeAnswers {
    const KIND: &'static str = "grade_answers";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("grade_answers.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("tasks"), InputSlot::one("replies")];
    const OUTPUTS: &'static [&'static str] = &["graded", "summary"];
    type Params = GradeAnswersParams;

    fn validate(p: &GradeAnswersParams) -> Vec<Problem> {
        let mut out = programs::check_limits(p.timeout, p.memory_mb);
        for (field, value) in [("task", &p.task), ("reply", &p.reply)] {
            if value.is_empty() {
                out.push(Problem::at(field, "name a column"));
            }
        }
        out
    }

    fn run(p: &GradeAnswersParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let tasks = artifact::table_to_json_rows(&ctx.input("tasks")?)?;
        let replies = artifact::table_to_json_rows(&ctx.input("replies")?)?;
        for column in ["task", "kind", "answer", "program", "call", "output"] {
            rows::require_column(&tasks, "tasks", column, "reasoning_tasks column")?;
        }
        for column in [p.task.as_str(), p.reply.as_str()] {
            rows::require_column(&replies, "replies", column, "replies column")?;
        }
        let by_key: BTreeMap<String, &Row> = tasks
            .iter()
            .filter_map(|t| Some((cell_text(t, "task")?, t)))
            .collect();
        let mut graded: Vec<Row> = Vec::with_capacity(replies.len());
        let mut verdicts: Vec<Verdict> = Vec::with_capacity(replies.len());
        let mut unmatched: Vec<String> = Vec::new();
        let mut answered: BTreeSet<String> = BTreeSet::new();
        for (i, reply_row) in replies.iter().enumerate() {
            let key = cell_text(reply_row, &p.task).ok_or_else(|| {
                StageError::failed(format!(
                    "input `replies`, row {i}: `{}` is not text",
                    p.task
                ))
            })?;
            let Some(task) = by_key.get(&key) else {
                unmatched.push(key);
                continue;
            };
            answered.insert(key.clone());
            let reply = cell_text(reply_row, &p.reply).unwrap_or_default();
            let kind = cell_text(task, "kind").unwrap_or_default();
            let (extracted, verdict) = grade(&kind, task, &reply)
                .map_err(|m| StageError::failed(format!("task `{key}`: {m}")))?;
            let mut r = Map::new();
            r.insert("task".into(), Value::String(key));
            for c in ["id", "run", "kind", "probe"] {
                r.insert(c.into(), task.get(c).cloned().unwrap_or(Value::Null));
            }
            r.insert(
                "sample".into(),
                reply_row
                    .get("sample")
                    .cloned()
                    .unwrap_or(Value::from(0u64)),
            );
            r.insert("reply".into(), Value::String(reply.clone()));
            r.insert("extracted".into(), Value::String(extracted));
            graded.push(r);
            verdicts.push(verdict);
        }
        if graded.is_empty() {
            return Err(StageError::BadInput {
                slot: "replies".into(),
                message: format!(
                    "no reply names an exercise: {} reply row(s), `{}` values such as {:?}; exercises are keyed by `task`, such as {:?}",
                    replies.len(),
                    p.task,
                    unmatched.iter().take(3).collect::<Vec<_>>(),
                    by_key.keys().take(3).collect::<Vec<_>>()
                ),
            });
        }
        if !unmatched.is_empty() {
            ctx.note("unmatched_replies", unmatched.len());
        }
        ctx.note("tasks_without_reply", by_key.len() - answered.len());

        // The checks that must run: model-written text, so in the sandbox.
        let memory = p.memory_mb << 20;
        let (slots, jobs): (Vec<usize>, Vec<_>) = verdicts
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                Verdict::Run(script) => Some((i, script_job(script.clone(), p.timeout, memory))),
                Verdict::Decided { .. } => None,
            })
            .unzip();
        if !jobs.is_empty() {
            let sandbox = programs::open_sandbox(ctx, None)?;
            ctx.progress().set_total(jobs.len() as u64);
            let progress = ctx.progress();
            let reports = sandbox.run_all(&jobs, &|| progress.inc(1))?;
            programs::note_retries(ctx, &sandbox);
            for (slot, report) in slots.into_iter().zip(reports) {
                verdicts[slot] = match first_failure(&report) {
                    None if report.passed() => right(),
                    None => wrong("the check did not run"),
                    Some((_, detail)) => wrong(detail.replacen("test 1: ", "", 1)),
                };
            }
        }
        ctx.note("checks_run", jobs.len());
        for (r, v) in graded.iter_mut().zip(verdicts) {
            let Verdict::Decided {
                correct,
                reason,
                detail,
            } = v
            else {
                unreachable!("every check ran above")
            };
            r.insert("correct".into(), Value::Bool(correct));
            r.insert("reason".into(), reason.map_or(Value::Null, Value::String));
            r.insert("detail".into(), detail.map_or(Value::Null, Value::String));
        }
        let summary = summarise(&graded, &by_key);
        ctx.note("replies", graded.len());
        ctx.write_output("graded", &artifact::json_rows_to_table(&graded)?.0)?;
        ctx.write_output("summary", &artifact::json_rows_to_table(&summary)?.0)
    }
}

/// What was read from the reply, and how it is decided.
fn grade(kind: &str, task: &Row, reply: &str) -> Result<(String, Verdict), String> {
    let answer = cell_text(task, "answer").unwrap_or_default();
    let program = cell_text(task, "program").unwrap_or_default();
    let call = cell_text(task, "call").unwrap_or_default();
    let expected_output = || -> Result<String, String> {
        let tagged = cell_text(task, "output").unwrap_or_default();
        let value: Value = serde_json::from_str(&tagged)
            .map_err(|e| format!("`output` is not tagged JSON: {e}"))?;
        Ok(pyvalue::repr(&value))
    };
    Ok(match kind {
        "output" => {
            let value = assertion_value(reply);
            if value.is_empty() {
                (value, wrong("no answer in the reply"))
            } else {
                // Read as data before the program runs: never executed.
                let script = format!(
                    "import ast as __ast\n__answer = __ast.literal_eval({})\n{program}\nassert {call} == __answer\n",
                    py_str_repr(&value)
                );
                (value, Verdict::Run(script))
            }
        }
        "input" => {
            let name = call.split('(').next().unwrap_or("f").trim().to_string();
            let args = input_arguments(reply, &name);
            if args.is_empty() {
                (args, wrong("no arguments in the reply"))
            } else {
                let tuple = format!("({},)", args.trim_end().trim_end_matches(','));
                let script = format!(
                    "import ast as __ast\n__args = __ast.literal_eval({})\n__expected = __ast.literal_eval({})\n{program}\nassert {name}(*__args) == __expected\n",
                    py_str_repr(&tuple),
                    py_str_repr(&expected_output()?)
                );
                (args, Verdict::Run(script))
            }
        }
        "coverage" => {
            let word = reply::first_yes_no(reply);
            let verdict = match word {
                None => wrong("no yes or no in the reply"),
                Some(w) if w == answer => right(),
                Some(w) => wrong(format!("{w} for {answer}")),
            };
            (word.unwrap_or_default().to_string(), verdict)
        }
        "next_state" | "debug_step" | "debug_next" | "debug_out" | "debug_break" | "debug_back" => {
            let truth: Value = serde_json::from_str(&answer)
                .map_err(|e| format!("the answer is not JSON: {e}"))?;
            match reply::first_json_object(reply) {
                None => (String::new(), wrong("no JSON object in the reply")),
                Some(got) => {
                    let verdict = if normalise(&got) == normalise(&truth) {
                        right()
                    } else {
                        wrong(format!("{got} for {truth}"))
                    };
                    (got.to_string(), verdict)
                }
            }
        }
        "trace_cwm" => {
            let truth = cwm::parse(&answer, &program);
            let predicted = cwm::parse(reply, &program);
            let s = cwm::score(&predicted, &truth.frames, truth.ended);
            let detail = format!(
                "{} of {} frames; locals right in {:.1}%, lines in {:.1}%",
                s.frames_predicted,
                s.frames_truth,
                100.0 * s.locals_accuracy,
                100.0 * s.line_accuracy
            );
            let verdict = Verdict::Decided {
                correct: s.exact,
                reason: (!s.exact).then(|| {
                    format!(
                        "frame {}: {}",
                        s.diverge_at.unwrap_or(0),
                        s.divergence.clone().unwrap_or_default()
                    )
                }),
                detail: Some(detail),
            };
            (format!("{} frame(s)", predicted.frames.len()), verdict)
        }
        "reval_coverage" => {
            let got = reval::read_coverage(reply);
            let shown = if got { "YES" } else { "NO" };
            let verdict = if shown == answer {
                right()
            } else {
                wrong(format!("{shown} for {answer}"))
            };
            (shown.to_string(), verdict)
        }
        "reval_path" => {
            let expected: Vec<i64> = serde_json::from_str(&answer)
                .map_err(|e| format!("the answer is not a JSON list of lines: {e}"))?;
            let got = reval::read_path(reply, &program);
            let verdict = if got.iter().any(|l| expected.contains(l)) {
                right()
            } else {
                wrong(format!("line(s) {got:?} for {expected:?}"))
            };
            (
                reval::answer_text(reply)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
                verdict,
            )
        }
        "reval_state" => {
            let expected: Vec<String> = serde_json::from_str(&answer)
                .map_err(|e| format!("the answer is not a JSON list of reprs: {e}"))?;
            let text = reval::answer_text(reply).to_string();
            let script = state_check(&text, &expected);
            (text, Verdict::Run(script))
        }
        "reval_output" => {
            let question = format!("assert {call} == ??");
            let text = reval::answer_text(reply).to_string();
            let completed = reval::complete_output_answer(&text, &question);
            if reval::output_penalised(&completed, &question) {
                (
                    completed,
                    wrong("asserts a constant, or fewer asserts than asked"),
                )
            } else {
                match asserted_value(&completed, &call) {
                    Err(reason) => (completed, wrong(reason)),
                    Ok(value) => {
                        let script = format!(
                            "import ast as __ast\n__answer = __ast.literal_eval({})\n{program}\nassert {call} == __answer\n",
                            py_str_repr(&value)
                        );
                        (completed, Verdict::Run(script))
                    }
                }
            }
        }
        other => return Err(format!("kind `{other}` has no grader")),
    })
}

/// The right-hand side of `assert <call> == <value>`, the assertion
/// being about the call asked (spaces aside).
fn asserted_value(completed: &str, call: &str) -> Result<String, String> {
    let squash = |t: &str| t.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let line = completed
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("assert"))
        .ok_or("no assertion in the answer")?;
    let body = line.trim_start_matches("assert").trim();
    let (lhs, rhs) = body.split_once("==").ok_or("the assertion has no `==`")?;
    if squash(lhs) != squash(call) {
        return Err(format!(
            "the assertion is about `{}`, not `{call}`",
            lhs.trim()
        ));
    }
    Ok(rhs.trim().to_string())
}

/// The value of an output answer, read as CRUXEval reads one (after the
/// first `==`), from inside `[ANSWER]` tags or a fenced block.
fn assertion_value(reply: &str) -> String {
    let text = reply::extract_code(reval::answer_text(reply), "python");
    reply::cruxeval_answer(&text, CruxTask::Output, false)
}

/// The arguments of an input answer: bare arguments, `f(args)`, or
/// `assert f(args) == ...` (CRUXEval's reading, then the call's parentheses).
fn input_arguments(reply: &str, name: &str) -> String {
    let text = reply::extract_code(reval::answer_text(reply), "python");
    let call = reply::cruxeval_answer(&text, CruxTask::Input, false);
    match call
        .strip_prefix(name)
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.strip_suffix(')'))
    {
        Some(inner) => inner.trim().to_string(),
        None => call,
    }
}

/// Numbers compared as numbers (`3` and `3.0` alike in a line field).
fn normalise(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or(v.clone(), |f| {
            if f.fract() == 0.0 && f.abs() < 1e15 {
                Value::from(f as i64)
            } else {
                Value::from(f)
            }
        }),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, x)| (k.clone(), normalise(x))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        _ => v.clone(),
    }
}

/// REval's `State._postprocess` and `_eq` as a script: passes when the
/// `value; type` answer matches one of the values the variable had.
fn state_check(answer: &str, expected: &[String]) -> String {
    let expected: Vec<String> = expected.iter().map(|e| py_str_repr(e)).collect();
    format!(
        r#"import ast, re
ANSWER = {answer}
EXPECTED = [{expected}]
NIL = object()

def read(resp):
    for a, b in (('\u2018', "'"), ('\u2019', "'"), ('\u201c', '"'), ('\u201d', '"')):
        resp = resp.replace(a, b)
    resp = resp.strip()
    if resp.capitalize() == 'Nil' or resp == '[Nil]':
        return NIL
    semicolon = resp.rfind(';')
    if semicolon == -1:
        raise AssertionError('no `value; type` in the answer')
    value, kind = resp[:semicolon].strip(), resp[semicolon + 1:].strip().lower()
    if value.capitalize() == 'Nil':
        return NIL
    m = re.match(r"<class '(.*)'>", kind)
    if m:
        kind = m.group(1)
    m = re.match(r"(.*)\[.*\]", kind)
    if m:
        kind = m.group(1)
    kind = {{'string': 'str', 'integer': 'int'}}.get(kind, kind)
    if ',' in kind or 'tuple' in kind:
        kind = 'tuple'
    kind = kind.split('.')[-1]
    if kind == 'str':
        try:
            return ast.literal_eval(value), 'str'
        except Exception:
            return value, 'str'
    if value == 'None' or kind == 'nonetype':
        return None, 'nonetype'
    return ast.literal_eval(value), kind

got = read(ANSWER)
if got is NIL or not EXPECTED:
    assert got is NIL and not EXPECTED, 'Nil for a value' if got is NIL else 'a value for Nil (the line never ran)'
else:
    value, kind = got
    assert type(value).__name__.lower() == kind, 'the value is not of the type given'
    def same(text):
        try:
            actual = ast.literal_eval(text)
        except Exception:
            return False
        if type(actual).__name__.lower() != kind:
            return False
        if kind == 'float':
            return abs(value - actual) < 1e-6
        try:
            return bool(value == actual)
        except Exception:
            return False
    assert any(same(t) for t in EXPECTED), 'wrong value or type'
"#,
        answer = py_str_repr(answer),
        expected = expected.join(", ")
    )
}

/// Accuracy per kind; REval's coverage precision, recall and F1; its
/// Incremental Consistency per (run, probe, sample).
fn summarise(graded: &[Row], tasks: &BTreeMap<String, &Row>) -> Vec<Row> {
    let metric = |kind: &str, name: &str, value: f64, n: usize| -> Row {
        let mut r = Map::new();
        r.insert("kind".into(), Value::String(kind.into()));
        r.insert("metric".into(), Value::String(name.into()));
        r.insert("value".into(), Value::from(value));
        r.insert("n".into(), Value::from(n as u64));
        r
    };
    let correct = |r: &Row| r.get("correct") == Some(&Value::Bool(true));
    let kind_of = |r: &Row| cell_text(r, "kind").unwrap_or_default();
    let mut by_kind: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in graded {
        by_kind.entry(kind_of(r)).or_default().push(r);
    }
    let mut out = Vec::new();
    for (kind, rs) in &by_kind {
        let ok = rs.iter().filter(|r| correct(r)).count();
        out.push(metric(
            kind,
            "accuracy_pct",
            100.0 * ok as f64 / rs.len() as f64,
            rs.len(),
        ));
        if kind == "reval_coverage" {
            let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
            for r in rs {
                let said_yes = cell_text(r, "extracted").as_deref() == Some("YES");
                let truth_yes = cell_text(r, "task")
                    .and_then(|t| tasks.get(&t).and_then(|t| cell_text(t, "answer")))
                    .as_deref()
                    == Some("YES");
                match (said_yes, truth_yes) {
                    (true, true) => tp += 1,
                    (true, false) => fp += 1,
                    (false, true) => fn_ += 1,
                    _ => {}
                }
            }
            let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
            let (precision, recall) = (share(tp, tp + fp), share(tp, tp + fn_));
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            out.push(metric(kind, "precision_pct", 100.0 * precision, rs.len()));
            out.push(metric(kind, "recall_pct", 100.0 * recall, rs.len()));
            out.push(metric(kind, "f1_pct", 100.0 * f1, rs.len()));
        }
    }
    // Incremental consistency: a probe's coverage, state and path replies
    // with its run's output reply, per sample.
    type Key = (String, String, String);
    let run_key = |r: &Row| -> Key {
        (
            cell_text(r, "id").unwrap_or_default(),
            r.get("run").map(Value::to_string).unwrap_or_default(),
            r.get("sample").map(Value::to_string).unwrap_or_default(),
        )
    };
    let mut outputs: BTreeMap<Key, bool> = BTreeMap::new();
    let mut probes: BTreeMap<(Key, String), [Option<bool>; 3]> = BTreeMap::new();
    for r in graded {
        let slot = match kind_of(r).as_str() {
            "reval_output" => {
                outputs.insert(run_key(r), correct(r));
                continue;
            }
            "reval_coverage" => 0,
            "reval_state" => 1,
            "reval_path" => 2,
            _ => continue,
        };
        let probe = r.get("probe").map(Value::to_string).unwrap_or_default();
        probes.entry((run_key(r), probe)).or_default()[slot] = Some(correct(r));
    }
    let scores: Vec<f64> = probes
        .iter()
        .filter_map(|((run, _), [c, s, p])| {
            let o = outputs.get(run)?;
            Some(reval::incremental_consistency([(*c)?, (*s)?, (*p)?, *o]))
        })
        .collect();
    if !probes.is_empty() {
        let mean = if scores.is_empty() {
            0.0
        } else {
            100.0 * scores.iter().sum::<f64>() / scores.len() as f64
        };
        out.push(metric(
            "reval",
            "incremental_consistency_pct",
            mean,
            scores.len(),
        ));
        out.push(metric(
            "reval",
            "incomplete_probes",
            (probes.len() - scores.len()) as f64,
            probes.len(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_from_replies() {
        assert_eq!(
            assertion_value("[ANSWER]assert f(1) == [1, 2][/ANSWER]"),
            "[1, 2]"
        );
        assert_eq!(assertion_value("```python\n3\n```"), "3");
        assert_eq!(input_arguments("assert f(1, 'a') == 3", "f"), "1, 'a'");
        assert_eq!(input_arguments("f([1])", "f"), "[1]");
        assert_eq!(input_arguments("[ANSWER]2, 3[/ANSWER]", "f"), "2, 3");
        assert_eq!(reply::first_yes_no("Yes, it is."), Some("yes"));
        assert_eq!(reply::first_yes_no("It is not run: NO"), Some("no"));
        assert_eq!(reply::first_yes_no("maybe"), None);
        assert_eq!(
            reply::first_json_object("Sure: {\"line\": 3, \"changed\": {\"s\": \"'}'\"}} done"),
            Some(serde_json::json!({"line": 3, "changed": {"s": "'}'"}}))
        );
        assert_eq!(
            reply::first_json_object("{not json} {\"a\": 1}"),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(
            normalise(&serde_json::json!({"line": 3.0})),
            serde_json::json!({"line": 3})
        );
    }
}
