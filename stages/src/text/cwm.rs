//! CWM's trace format (Meta's Code World Model, 2025): render a traced run
//! as CWM frames, parse a model's predicted frames back, and score a
//! prediction against the real trace.
//!
//! The format, from CWM's public prompting guide (`PROMPTING_GUIDE.md`) and
//! its debugger demo (`demos/cwmdbg.py`):
//!
//! ```text
//! <|trace_context_start|>$CONTEXT<|frame_sep|>
//! <|call_sep|>$LOCALS<|action_sep|>$SOURCE<|frame_sep|>
//! <|line_sep|>$LOCALS<|action_sep|>$SOURCE<|frame_sep|>
//! <|return_sep|><|action_sep|>$SOURCE<|arg_sep|>$VALUE<|frame_sep|>
//! <|exception_sep|><|action_sep|>$SOURCE<|arg_sep|>$VALUE<|frame_sep|>
//! <|end_of_text|>
//! ```
//!
//! - The context is the program with the entry point's `def` line marked
//!   `  # << START_OF_TRACE`.
//! - A frame is an observation and an action: the locals *before* the line
//!   runs (a call frame: the arguments), then the source line. tw's tracer
//!   records the state a line left behind, so a line frame shows the state
//!   its scope's previous event left.
//! - Locals are a JSON object whose values are JSON strings (the values'
//!   `repr`s); a value unchanged since the previous frame of the same scope
//!   is written `".."`. As in `cwmdbg`, "the same scope" stops at a call or
//!   return frame: the first frame after a callee returns lists its
//!   variables in full.
//! - Return and exception frames carry the value as a JSON string: the
//!   return value's `repr`, or the exception's (`ValueError('bad')`). A
//!   frame left by an exception returns `None`, as `sys.settrace` reports it.
//! - `<|end_of_text|>` follows the entry scope's return.
//!
//! Source lines are written as in the program, without the line break. The
//! tokenizer's `<|begin_of_text|>` is not part of the text.

use crate::python::pyvalue;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt::Write as _;

pub const CONTEXT_START: &str = "<|trace_context_start|>";
pub const FRAME_SEP: &str = "<|frame_sep|>";
pub const ACTION_SEP: &str = "<|action_sep|>";
pub const ARG_SEP: &str = "<|arg_sep|>";
pub const END: &str = "<|end_of_text|>";
pub const START_MARKER: &str = "  # << START_OF_TRACE";
/// A value unchanged since the scope's previous frame.
pub const SAME: &str = "..";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Call,
    Line,
    Return,
    Exception,
}

impl Kind {
    pub fn token(self) -> &'static str {
        match self {
            Kind::Call => "<|call_sep|>",
            Kind::Line => "<|line_sep|>",
            Kind::Return => "<|return_sep|>",
            Kind::Exception => "<|exception_sep|>",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::Line => "line",
            Kind::Return => "return",
            Kind::Exception => "exception",
        }
    }

    const ALL: [Kind; 4] = [Kind::Call, Kind::Line, Kind::Return, Kind::Exception];

    fn has_locals(self) -> bool {
        matches!(self, Kind::Call | Kind::Line)
    }
}

/// One frame with every local written out (no `..`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub kind: Kind,
    /// 1-based; `None` when a predicted source line is not in the program.
    pub line: Option<u32>,
    pub source: String,
    /// Name -> repr, in the order the program created them.
    pub locals: Vec<(String, String)>,
    /// Return value or exception, as a repr.
    pub arg: Option<String>,
}

/// One tracer event as the representations see it (`TestView.steps`).
#[derive(Debug, Clone, Deserialize)]
pub struct StepIn {
    pub kind: String,
    pub line: u32,
    pub depth: u32,
    #[serde(default)]
    pub locals: Vec<NameValueIn>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub exception: Option<String>,
    #[serde(default)]
    pub unwound: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NameValueIn {
    pub name: String,
    pub value: String,
}

impl StepIn {
    /// A step with these locals and no value or exception (tests build
    /// traces this way).
    pub fn new(kind: &str, line: u32, depth: u32, locals: &[(&str, &str)]) -> StepIn {
        StepIn {
            kind: kind.into(),
            line,
            depth,
            locals: locals
                .iter()
                .map(|(n, v)| NameValueIn {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            value: None,
            exception: None,
            unwound: false,
        }
    }
}

fn source_of(code_lines: &[&str], line: u32) -> String {
    code_lines
        .get((line as usize).wrapping_sub(1))
        .map(|l| l.trim_end_matches('\r').to_string())
        .unwrap_or_default()
}

/// `Type: message` (the tracer's exception text) as `Type('message')`.
fn exception_repr(text: &str) -> String {
    match text.split_once(": ") {
        Some((kind, message)) => format!("{kind}({})", pyvalue::py_str_repr(message)),
        None => format!("{}()", text.trim_end_matches(':')),
    }
}

/// The frames of one traced run: tracer events in order, each line frame
/// carrying the state before its line.
pub fn frames_from_steps(steps: &[StepIn], program: &str) -> Vec<Frame> {
    let code_lines: Vec<&str> = program.split('\n').collect();
    let mut out = Vec::with_capacity(steps.len());
    // The state each active scope's last event left, innermost last.
    let mut scopes: Vec<Vec<(String, String)>> = Vec::new();
    let pairs = |s: &StepIn| -> Vec<(String, String)> {
        s.locals
            .iter()
            .map(|nv| (nv.name.clone(), nv.value.clone()))
            .collect()
    };
    for s in steps {
        let source = source_of(&code_lines, s.line);
        match s.kind.as_str() {
            "call" => {
                let args = pairs(s);
                out.push(Frame {
                    kind: Kind::Call,
                    line: Some(s.line),
                    source,
                    locals: args.clone(),
                    arg: None,
                });
                scopes.push(args);
            }
            "line" => {
                let before = scopes.last().cloned().unwrap_or_default();
                out.push(Frame {
                    kind: Kind::Line,
                    line: Some(s.line),
                    source,
                    locals: before,
                    arg: None,
                });
                if let Some(top) = scopes.last_mut() {
                    *top = pairs(s);
                }
            }
            "return" => {
                let arg = if s.unwound {
                    "None".to_string()
                } else {
                    s.value.clone().unwrap_or_else(|| "None".into())
                };
                out.push(Frame {
                    kind: Kind::Return,
                    line: Some(s.line),
                    source,
                    locals: Vec::new(),
                    arg: Some(arg),
                });
                scopes.pop();
            }
            "exception" => out.push(Frame {
                kind: Kind::Exception,
                line: Some(s.line),
                source,
                locals: Vec::new(),
                arg: Some(exception_repr(
                    s.exception.as_deref().unwrap_or("Exception"),
                )),
            }),
            _ => {}
        }
    }
    out
}

/// A traced run's steps as this module reads them.
pub fn steps_of(view: &super::tracemodel::TestView) -> Vec<StepIn> {
    view.steps
        .iter()
        .map(|s| StepIn {
            kind: s.kind.to_string(),
            line: s.line,
            depth: s.depth,
            locals: s
                .locals
                .iter()
                .map(|nv| NameValueIn {
                    name: nv.name.clone(),
                    value: nv.value.clone(),
                })
                .collect(),
            value: s.value.clone(),
            exception: s.exception.clone(),
            unwound: s.unwound,
        })
        .collect()
}

/// Whether the trace reached the entry scope's return (the end marker).
pub fn ends(steps: &[StepIn]) -> bool {
    let entry = steps.first().map(|s| s.depth).unwrap_or(1);
    steps
        .last()
        .is_some_and(|s| s.kind == "return" && s.depth == entry)
}

/// The program as CWM's context: the entry point's line marked.
pub fn context(program: &str, entry_line: Option<u32>) -> String {
    program
        .split('\n')
        .enumerate()
        .map(|(i, l)| {
            if Some(i as u32 + 1) == entry_line {
                format!("{l}{START_MARKER}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// JSON text of a string, as Python's `json.dumps` writes it.
fn json_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// `json.dumps` of the locals (`{"a": "1", "b": ".."}`).
fn locals_json(locals: &[(String, String)]) -> String {
    let body: Vec<String> = locals
        .iter()
        .map(|(k, v)| format!("{}: {}", json_str(k), json_str(v)))
        .collect();
    format!("{{{}}}", body.join(", "))
}

/// The frames as CWM text, values unchanged within a scope written `..`,
/// then the end marker when the run ended.
pub fn render_frames(frames: &[Frame], ended: bool) -> String {
    let mut out = String::new();
    // The values the current scope's frames have shown since its call (or
    // since the last return): `None` right after a return.
    let mut seen: Option<Vec<(String, String)>> = None;
    for f in frames {
        out.push_str(f.kind.token());
        if f.kind.has_locals() {
            let shown: Vec<(String, String)> = f
                .locals
                .iter()
                .map(|(k, v)| {
                    let same = f.kind == Kind::Line
                        && seen
                            .as_ref()
                            .is_some_and(|s| s.iter().any(|(sk, sv)| sk == k && sv == v));
                    (k.clone(), if same { SAME.into() } else { v.clone() })
                })
                .collect();
            out.push_str(&locals_json(&shown));
            seen = Some(f.locals.clone());
        }
        out.push_str(ACTION_SEP);
        out.push_str(&f.source);
        if let Some(arg) = &f.arg {
            out.push_str(ARG_SEP);
            out.push_str(&json_str(arg));
        }
        if f.kind == Kind::Return {
            seen = None;
        }
        out.push_str(FRAME_SEP);
    }
    if ended {
        out.push_str(END);
    }
    out
}

/// The whole trace-prediction text: context, then frames.
pub fn render(program: &str, steps: &[StepIn]) -> String {
    let frames = frames_from_steps(steps, program);
    let entry = steps.iter().find(|s| s.kind == "call").map(|s| s.line);
    format!(
        "{CONTEXT_START}{}{FRAME_SEP}{}",
        context(program, entry),
        render_frames(&frames, ends(steps))
    )
}

/// A prediction that could not be read: where and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// 0-based frame index.
    pub frame: usize,
    pub reason: String,
}

/// What a predicted trace says: its frames (`..` resolved where the
/// scope's earlier frames allow; unresolved stay `..`), whether it ended,
/// and the first frame it could not read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    pub frames: Vec<Frame>,
    pub ended: bool,
    pub error: Option<ParseError>,
}

/// Read predicted frames. `text` may start with the context (as `render`
/// writes it) or with the first frame; a model's reply usually has only
/// frames. Frames after `<|end_of_text|>` are ignored.
pub fn parse(text: &str, program: &str) -> Parsed {
    let code_lines: Vec<&str> = program
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    let mut body = text.trim_start();
    if let Some(rest) = body.strip_prefix("<|begin_of_text|>") {
        body = rest;
    }
    if body.starts_with(CONTEXT_START) {
        body = match body.find(FRAME_SEP) {
            Some(at) => &body[at + FRAME_SEP.len()..],
            None => "",
        };
    }
    let mut parsed = Parsed::default();
    let mut raw: Vec<Vec<(String, String)>> = Vec::new();
    for (i, chunk) in body.split(FRAME_SEP).enumerate() {
        let chunk = chunk.trim_start_matches(['\n', ' ']);
        if chunk.trim().is_empty() {
            continue;
        }
        if chunk.trim_start().starts_with(END) {
            parsed.ended = true;
            break;
        }
        let after = parsed.frames.last().and_then(|f| f.line);
        match parse_frame(chunk, &code_lines, after) {
            Ok((frame, shown)) => {
                raw.push(shown);
                parsed.frames.push(frame);
            }
            Err(reason) => {
                parsed.error = Some(ParseError { frame: i, reason });
                break;
            }
        }
    }
    resolve_same(&mut parsed.frames, &raw);
    parsed
}

/// `after`: the previous frame's line. A source line the program has twice
/// (`items.append(v)` on lines 2 and 3) is taken as the first copy after it,
/// as control flow mostly moves down; else the first copy.
fn parse_frame(
    chunk: &str,
    code_lines: &[&str],
    after: Option<u32>,
) -> Result<(Frame, Vec<(String, String)>), String> {
    let kind = Kind::ALL
        .into_iter()
        .find(|k| chunk.starts_with(k.token()))
        .ok_or_else(|| {
            let head: String = chunk.chars().take(30).collect();
            format!("no event token at the start of the frame: {head:?}")
        })?;
    let rest = &chunk[kind.token().len()..];
    let (locals_text, action) = rest
        .split_once(ACTION_SEP)
        .ok_or("no <|action_sep|> before the source line")?;
    let mut shown = Vec::new();
    if kind.has_locals() {
        let value: Value = serde_json::from_str(locals_text.trim())
            .map_err(|e| format!("locals are not JSON: {e}"))?;
        let Value::Object(map) = value else {
            return Err("locals are not a JSON object".into());
        };
        for (k, v) in map {
            let Value::String(v) = v else {
                return Err(format!("local `{k}` is not a JSON string"));
            };
            shown.push((k, v));
        }
    } else if !locals_text.trim().is_empty() {
        return Err(format!("a {} frame has locals", kind.as_str()));
    }
    let (source, arg) = match action.split_once(ARG_SEP) {
        Some((source, arg)) => {
            let arg: Value = serde_json::from_str(arg.trim())
                .map_err(|e| format!("the value is not JSON: {e}"))?;
            let arg = match arg {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (source, Some(arg))
        }
        None => (action, None),
    };
    match (kind, &arg) {
        (Kind::Return | Kind::Exception, None) => {
            return Err(format!(
                "a {} frame without <|arg_sep|> and a value",
                kind.as_str()
            ));
        }
        (Kind::Call | Kind::Line, Some(_)) => {
            return Err(format!("a {} frame with a value", kind.as_str()));
        }
        _ => {}
    }
    let source = source
        .trim_end_matches(['\n', '\r'])
        .trim_end_matches(START_MARKER)
        .to_string();
    let matches: Vec<u32> = code_lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_end_matches(START_MARKER) == source)
        .map(|(i, _)| i as u32 + 1)
        .collect();
    let line = matches
        .iter()
        .find(|&&l| after.is_some_and(|a| l > a))
        .or(matches.first())
        .copied();
    Ok((
        Frame {
            kind,
            line,
            source,
            locals: shown.clone(),
            arg,
        },
        shown,
    ))
}

/// Replace `..` by the value the scope showed last, walking back as
/// `cwmdbg` does: through line and exception frames, into the call frame,
/// never past a call or return.
fn resolve_same(frames: &mut [Frame], raw: &[Vec<(String, String)>]) {
    for i in 0..frames.len() {
        if frames[i].kind != Kind::Line {
            continue;
        }
        let mut resolved = raw[i].clone();
        for (k, v) in resolved.iter_mut() {
            if v != SAME {
                continue;
            }
            let mut j = i;
            while j > 0 {
                j -= 1;
                if let Some((_, w)) = frames[j].locals.iter().find(|(n, _)| n == k)
                    && w != SAME
                {
                    *v = w.clone();
                    break;
                }
                if matches!(frames[j].kind, Kind::Call | Kind::Return) {
                    break;
                }
            }
        }
        frames[i].locals = resolved;
    }
}

/// How a predicted trace compares with the real one, frame by frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceScore {
    pub frames_truth: usize,
    pub frames_predicted: usize,
    /// Shares of the real frames the prediction matches at the same index
    /// (the line by its source text).
    pub kind_accuracy: f64,
    pub line_accuracy: f64,
    /// Call and line frames whose locals match exactly.
    pub locals_accuracy: f64,
    /// Variables (real or predicted) of call and line frames with the right value.
    pub variable_accuracy: f64,
    /// Every frame and the end marker identical, nothing unreadable.
    pub exact: bool,
    /// The value of the entry scope's return: real, predicted, equal.
    pub output_truth: Option<String>,
    pub output_predicted: Option<String>,
    pub output_correct: bool,
    /// First frame where they differ, and how (`kind`, `line`, `locals: x`, ...).
    pub diverge_at: Option<usize>,
    pub divergence: Option<String>,
    /// Why the prediction could not be read past `diverge_at`, if so.
    pub parse_error: Option<String>,
}

/// The value the entry scope returned: its return frame (the first return
/// back at the first call's level). None when it was left by an exception:
/// its return frame comes right after an exception frame (an exception that
/// was caught is followed by the lines of its handler).
fn entry_output(frames: &[Frame]) -> Option<String> {
    // A format without call frames (CodeExecutor): its one return frame.
    if !frames.iter().any(|f| f.kind == Kind::Call) {
        return frames
            .iter()
            .rev()
            .find(|f| f.kind == Kind::Return)
            .and_then(|f| f.arg.clone());
    }
    let mut depth = 0i64;
    for (i, f) in frames.iter().enumerate() {
        match f.kind {
            Kind::Call => depth += 1,
            Kind::Return => {
                depth -= 1;
                if depth == 0 {
                    let unwound = i > 0 && frames[i - 1].kind == Kind::Exception;
                    return if unwound { None } else { f.arg.clone() };
                }
            }
            _ => {}
        }
    }
    None
}

pub fn score(predicted: &Parsed, truth: &[Frame], truth_ended: bool) -> TraceScore {
    let n = truth.len();
    let (mut kind, mut line, mut locals, mut vars_ok, mut vars_all, mut frames_with_locals) =
        (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    let mut divergence: Option<(usize, String)> = None;
    let note = |i: usize, what: String, d: &mut Option<(usize, String)>| {
        if d.is_none() {
            *d = Some((i, what));
        }
    };
    for (i, t) in truth.iter().enumerate() {
        let Some(p) = predicted.frames.get(i) else {
            let why = match &predicted.error {
                Some(e) if e.frame <= i => format!("unreadable: {}", e.reason),
                _ => "missing frame".into(),
            };
            note(i, why, &mut divergence);
            if t.kind.has_locals() {
                frames_with_locals += 1;
                vars_all += t.locals.len();
            }
            continue;
        };
        if p.kind == t.kind {
            kind += 1;
        } else {
            note(
                i,
                format!("kind: {} for {}", p.kind.as_str(), t.kind.as_str()),
                &mut divergence,
            );
        }
        // The model writes the line's text, not its number: the same text
        // is the same line (a program may repeat a line).
        if p.source == t.source {
            line += 1;
        } else {
            let shown = |l: Option<u32>| l.map_or("?".to_string(), |l| l.to_string());
            note(
                i,
                format!("line: {} for {}", shown(p.line), shown(t.line)),
                &mut divergence,
            );
        }
        if t.kind.has_locals() {
            frames_with_locals += 1;
            let mut names: Vec<&String> = t.locals.iter().map(|(k, _)| k).collect();
            for (k, _) in &p.locals {
                if !names.contains(&k) {
                    names.push(k);
                }
            }
            let get = |m: &[(String, String)], k: &str| {
                m.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
            };
            let mut all_ok = names.len() == t.locals.len();
            for k in &names {
                vars_all += 1;
                if get(&t.locals, k) == get(&p.locals, k) {
                    vars_ok += 1;
                } else {
                    all_ok = false;
                    note(
                        i,
                        format!(
                            "locals: {k} = {} for {}",
                            get(&p.locals, k).unwrap_or_else(|| "(missing)".into()),
                            get(&t.locals, k).unwrap_or_else(|| "(none)".into())
                        ),
                        &mut divergence,
                    );
                }
            }
            if all_ok {
                locals += 1;
            }
        }
        if p.arg != t.arg {
            note(
                i,
                format!(
                    "value: {} for {}",
                    p.arg.as_deref().unwrap_or("(none)"),
                    t.arg.as_deref().unwrap_or("(none)")
                ),
                &mut divergence,
            );
        }
    }
    if predicted.frames.len() > n {
        note(n, "extra frame".into(), &mut divergence);
    }
    if divergence.is_none() && predicted.ended != truth_ended {
        let what = if truth_ended {
            "no end marker"
        } else {
            "an end marker where the trace goes on"
        };
        note(n, what.into(), &mut divergence);
    }
    let share = |k: usize, of: usize| if of == 0 { 1.0 } else { k as f64 / of as f64 };
    let output_truth = entry_output(truth);
    let output_predicted = entry_output(&predicted.frames);
    TraceScore {
        frames_truth: n,
        frames_predicted: predicted.frames.len(),
        kind_accuracy: share(kind, n),
        line_accuracy: share(line, n),
        locals_accuracy: share(locals, frames_with_locals),
        variable_accuracy: share(vars_ok, vars_all),
        exact: divergence.is_none() && predicted.error.is_none(),
        output_correct: output_truth.is_some() && output_truth == output_predicted,
        output_truth,
        output_predicted,
        diverge_at: divergence.as_ref().map(|d| d.0),
        divergence: divergence.map(|d| d.1),
        parse_error: predicted
            .error
            .as_ref()
            .map(|e| format!("frame {}: {}", e.frame, e.reason)),
    }
}

/// A debugger action over a trace, as `cwmdbg` offers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The next frame (into a call).
    Step,
    /// The next frame, stepping over a call: past its return.
    Next,
    /// On until the current scope returns, then one frame more (the caller's
    /// next). Nested calls are passed over. (`cwmdbg`'s loop stops after the
    /// first nested call's return instead; this is the action it means.)
    Out,
    /// On to the next time line `L` is about to run, in any scope.
    Break(u32),
}

/// The frame index where `action` from frame `at` stops; `None` when the
/// run ends first.
pub fn act(frames: &[Frame], at: usize, action: Action) -> Option<usize> {
    let after_return = |call: usize| matching_return(frames, call).map(|r| r + 1);
    match action {
        Action::Step => Some(at + 1),
        Action::Next => match frames.get(at + 1)?.kind {
            Kind::Call => after_return(at + 1),
            _ => Some(at + 1),
        },
        Action::Out => {
            let mut j = at + 1;
            loop {
                let f = frames.get(j)?;
                match f.kind {
                    Kind::Call => j = matching_return(frames, j)? + 1,
                    Kind::Return => return Some(j + 1).filter(|&k| k < frames.len()),
                    _ => j += 1,
                }
            }
        }
        Action::Break(line) => (at + 1..frames.len())
            .find(|&j| frames[j].kind == Kind::Line && frames[j].line == Some(line)),
    }
    .filter(|&j| j < frames.len())
}

/// The return frame of the call frame at `call`.
fn matching_return(frames: &[Frame], call: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, f) in frames.iter().enumerate().skip(call) {
        match f.kind {
            Kind::Call => depth += 1,
            Kind::Return => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// The frame of the same scope before frame `at` (a call in between is
/// passed over whole): the state that led here. `None` at the scope's call.
pub fn previous_in_scope(frames: &[Frame], at: usize) -> Option<usize> {
    if frames.get(at)?.kind == Kind::Call {
        return None;
    }
    let mut j = at.checked_sub(1)?;
    loop {
        match frames[j].kind {
            Kind::Return => {
                // Back over the callee: to its call, then the frame before it.
                let mut depth = 0usize;
                loop {
                    match frames[j].kind {
                        Kind::Return => depth += 1,
                        Kind::Call => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j = j.checked_sub(1)?;
                }
                j = j.checked_sub(1)?;
            }
            Kind::Exception => j = j.checked_sub(1)?,
            _ => return Some(j),
        }
    }
}

/// A frame as a debugger shows it, for answers: event, line, the locals
/// (call and line frames) or the value (return and exception frames).
pub fn frame_json(frame: Option<&Frame>) -> Value {
    let Some(f) = frame else {
        return serde_json::json!({ "event": "end" });
    };
    let mut m = serde_json::Map::new();
    m.insert("event".into(), Value::from(f.kind.as_str()));
    m.insert("line".into(), f.line.map_or(Value::Null, Value::from));
    if f.kind.has_locals() {
        let locals: serde_json::Map<String, Value> = f
            .locals
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        m.insert("locals".into(), Value::Object(locals));
    } else {
        m.insert(
            "value".into(),
            f.arg.clone().map_or(Value::Null, Value::from),
        );
    }
    Value::Object(m)
}

/// A short human-readable listing of frames (debugging, test failures).
pub fn describe(frames: &[Frame]) -> String {
    let mut out = String::new();
    for (i, f) in frames.iter().enumerate() {
        let _ = writeln!(
            out,
            "{i:>3} {:<9} L{:<3} {:?} {}",
            f.kind.as_str(),
            f.line.map_or("?".into(), |l| l.to_string()),
            f.locals,
            f.arg.as_deref().unwrap_or("")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUM: &str =
        "def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total";

    fn step(kind: &str, line: u32, depth: u32, locals: &[(&str, &str)]) -> StepIn {
        StepIn::new(kind, line, depth, locals)
    }

    /// `f([1, 2])` as tw's tracer records it: each line with the state it left.
    fn sum_steps() -> Vec<StepIn> {
        let xs = ("xs", "[1, 2]");
        let mut ret = step("return", 5, 1, &[xs, ("total", "3"), ("x", "2")]);
        ret.value = Some("3".into());
        vec![
            step("call", 1, 1, &[xs]),
            step("line", 2, 1, &[xs, ("total", "0")]),
            step("line", 3, 1, &[xs, ("total", "0"), ("x", "1")]),
            step("line", 4, 1, &[xs, ("total", "1"), ("x", "1")]),
            step("line", 3, 1, &[xs, ("total", "1"), ("x", "2")]),
            step("line", 4, 1, &[xs, ("total", "3"), ("x", "2")]),
            step("line", 3, 1, &[xs, ("total", "3"), ("x", "2")]),
            step("line", 5, 1, &[xs, ("total", "3"), ("x", "2")]),
            ret,
        ]
    }

    #[test]
    fn a_loop_renders_as_cwm_frames_with_unchanged_values_as_dots() {
        let text = render(SUM, &sum_steps());
        let want = concat!(
            "<|trace_context_start|>def f(xs):  # << START_OF_TRACE\n    total = 0\n    for x in xs:\n        total += x\n    return total<|frame_sep|>",
            r#"<|call_sep|>{"xs": "[1, 2]"}<|action_sep|>def f(xs):<|frame_sep|>"#,
            r#"<|line_sep|>{"xs": ".."}<|action_sep|>    total = 0<|frame_sep|>"#,
            r#"<|line_sep|>{"xs": "..", "total": "0"}<|action_sep|>    for x in xs:<|frame_sep|>"#,
            r#"<|line_sep|>{"xs": "..", "total": "..", "x": "1"}<|action_sep|>        total += x<|frame_sep|>"#,
            r#"<|line_sep|>{"xs": "..", "total": "1", "x": ".."}<|action_sep|>    for x in xs:<|frame_sep|>"#,
            r#"<|line_sep|>{"xs": "..", "total": "..", "x": "2"}<|action_sep|>        total += x<|frame_sep|>"#,
            r#"<|line_sep|>{"xs": "..", "total": "3", "x": ".."}<|action_sep|>    for x in xs:<|frame_sep|>"#,
            r#"<|line_sep|>{"xs": "..", "total": "..", "x": ".."}<|action_sep|>    return total<|frame_sep|>"#,
            r#"<|return_sep|><|action_sep|>    return total<|arg_sep|>"3"<|frame_sep|>"#,
            "<|end_of_text|>",
        );
        assert_eq!(text, want);
    }

    #[test]
    fn a_rendered_trace_parses_back_and_scores_exact() {
        let truth = frames_from_steps(&sum_steps(), SUM);
        let parsed = parse(&render(SUM, &sum_steps()), SUM);
        assert_eq!(parsed.error, None);
        assert!(parsed.ended);
        assert_eq!(parsed.frames, truth, "{}", describe(&parsed.frames));
        let s = score(&parsed, &truth, true);
        assert!(s.exact, "{s:?}");
        assert_eq!(
            (
                s.kind_accuracy,
                s.line_accuracy,
                s.locals_accuracy,
                s.variable_accuracy
            ),
            (1.0, 1.0, 1.0, 1.0)
        );
        assert_eq!(
            (s.output_truth.as_deref(), s.output_correct),
            (Some("3"), true)
        );
        // A model's reply has frames only: the same.
        let frames_only = render_frames(&truth, true);
        assert_eq!(parse(&frames_only, SUM).frames, truth);
    }

    #[test]
    fn each_perturbation_is_reported_where_it_happens() {
        let truth = frames_from_steps(&sum_steps(), SUM);
        let scored = |frames: Vec<Frame>, ended: bool| {
            score(&parse(&render_frames(&frames, ended), SUM), &truth, true)
        };
        // One local changed: frame 4 says total = 2.
        let mut one_local = truth.clone();
        one_local[4].locals[1].1 = "2".into();
        let s = scored(one_local, true);
        assert!(!s.exact);
        assert_eq!(s.diverge_at, Some(4));
        assert_eq!(s.divergence.as_deref(), Some("locals: total = 2 for 1"));
        assert_eq!(s.kind_accuracy, 1.0);
        assert!((s.locals_accuracy - 7.0 / 8.0).abs() < 1e-12, "{s:?}");
        // One line number: frame 3 runs line 5's source instead of line 4's.
        let mut one_line = truth.clone();
        one_line[3].source = "    return total".into();
        let s = scored(one_line, true);
        assert_eq!(
            (s.diverge_at, s.divergence.as_deref()),
            (Some(3), Some("line: 5 for 4"))
        );
        assert!((s.line_accuracy - 8.0 / 9.0).abs() < 1e-12);
        // A frame dropped: everything after it shifts, the first difference is where it was.
        let mut dropped = truth.clone();
        dropped.remove(5);
        let s = scored(dropped, true);
        assert_eq!(s.diverge_at, Some(5));
        assert_eq!(s.frames_predicted, 8);
        // The output read from the entry scope's return frame.
        let mut wrong_output = truth.clone();
        wrong_output[8].arg = Some("4".into());
        let s = scored(wrong_output, true);
        assert_eq!(
            (s.output_predicted.as_deref(), s.output_correct),
            (Some("4"), false)
        );
        assert_eq!(s.divergence.as_deref(), Some("value: 4 for 3"));
        // No end marker.
        let s = scored(truth.clone(), false);
        assert_eq!(
            (s.diverge_at, s.divergence.as_deref()),
            (Some(9), Some("no end marker"))
        );
    }

    #[test]
    fn a_malformed_prediction_is_a_scored_failure_with_a_reason() {
        let truth = frames_from_steps(&sum_steps(), SUM);
        for (text, reason) in [
            ("", "missing frame"),
            ("just some prose", "unreadable: no event token"),
            (
                "<|line_sep|>{\"xs\": [1, 2]}<|action_sep|>def f(xs):<|frame_sep|>",
                "unreadable: local `xs` is not a JSON string",
            ),
            (
                "<|call_sep|>{\"xs\": \"[1, 2]\"<|action_sep|>def f(xs):<|frame_sep|>",
                "unreadable: locals are not JSON",
            ),
            (
                "<|call_sep|>{\"xs\": \"[1, 2]\"}def f(xs):<|frame_sep|>",
                "unreadable: no <|action_sep|>",
            ),
            (
                "<|call_sep|>{\"xs\": \"[1, 2]\"}<|action_sep|>def f(xs):<|frame_sep|><|return_sep|><|action_sep|>    return total<|frame_sep|>",
                "unreadable: a return frame without",
            ),
        ] {
            let s = score(&parse(text, SUM), &truth, true);
            assert!(!s.exact && !s.output_correct, "{text}");
            let d = s.divergence.clone().unwrap_or_default();
            assert!(d.starts_with(reason), "{text}: {d} ({:?})", s.parse_error);
        }
    }

    #[test]
    fn a_call_and_its_return_reset_the_dots_and_exceptions_have_a_repr() {
        let program =
            "def g(a):\n    b = h(a)\n    return b\ndef h(n):\n    raise ValueError('bad')";
        let mut exc = step("exception", 5, 2, &[("n", "1")]);
        exc.exception = Some("ValueError: bad".into());
        let mut unwound = step("return", 5, 2, &[("n", "1")]);
        unwound.unwound = true;
        let mut g_exc = step("exception", 2, 1, &[("a", "1")]);
        g_exc.exception = Some("ValueError: bad".into());
        let mut g_unwound = step("return", 2, 1, &[("a", "1")]);
        g_unwound.unwound = true;
        let steps = vec![
            step("call", 1, 1, &[("a", "1")]),
            step("line", 2, 1, &[("a", "1")]),
            step("call", 4, 2, &[("n", "1")]),
            step("line", 5, 2, &[("n", "1")]),
            exc,
            unwound,
            g_exc,
            g_unwound,
        ];
        let text = render(program, &steps);
        assert!(
            text.contains(r#"<|line_sep|>{"a": ".."}<|action_sep|>    b = h(a)"#),
            "{text}"
        );
        assert!(
            text.contains(r#"<|call_sep|>{"n": "1"}<|action_sep|>def h(n):"#),
            "{text}"
        );
        assert!(text.contains(r#"<|exception_sep|><|action_sep|>    raise ValueError('bad')<|arg_sep|>"ValueError('bad')""#), "{text}");
        assert!(
            text.contains(
                r#"<|return_sep|><|action_sep|>    raise ValueError('bad')<|arg_sep|>"None""#
            ),
            "{text}"
        );
        assert!(text.ends_with("<|end_of_text|>"), "{text}");
        let truth = frames_from_steps(&steps, program);
        let parsed = parse(&text, program);
        assert_eq!(parsed.frames, truth);
        assert!(score(&parsed, &truth, true).exact);
    }

    #[test]
    fn a_repeated_source_line_is_read_as_the_copy_after_the_previous_frame() {
        let program = "def push_twice(items, v):\n    items.append(v)\n    items.append(v)\n    return len(items)";
        let mut ret = step("return", 4, 1, &[("items", "[0, 7, 7]"), ("v", "7")]);
        ret.value = Some("3".into());
        let steps = vec![
            step("call", 1, 1, &[("items", "[0]"), ("v", "7")]),
            step("line", 2, 1, &[("items", "[0, 7]"), ("v", "7")]),
            step("line", 3, 1, &[("items", "[0, 7, 7]"), ("v", "7")]),
            step("line", 4, 1, &[("items", "[0, 7, 7]"), ("v", "7")]),
            ret,
        ];
        let truth = frames_from_steps(&steps, program);
        let parsed = parse(&render(program, &steps), program);
        let lines: Vec<Option<u32>> = parsed.frames.iter().map(|f| f.line).collect();
        assert_eq!(lines, vec![Some(1), Some(2), Some(3), Some(4), Some(4)]);
        assert!(score(&parsed, &truth, true).exact);
    }

    #[test]
    fn debugger_actions_step_into_over_and_out_of_calls() {
        // sum_squares([1, 2]) with square traced: frames as in the golden file.
        let f = |kind: Kind, line: u32| Frame {
            kind,
            line: Some(line),
            source: String::new(),
            locals: Vec::new(),
            arg: None,
        };
        use Kind::{Call, Line, Return};
        let frames = vec![
            f(Call, 4),   // 0 sum_squares
            f(Line, 5),   // 1
            f(Line, 6),   // 2
            f(Line, 7),   // 3 out += square(x)
            f(Call, 1),   // 4 square(1)
            f(Line, 2),   // 5
            f(Return, 2), // 6
            f(Line, 6),   // 7
            f(Line, 7),   // 8
            f(Call, 1),   // 9 square(2)
            f(Line, 2),   // 10
            f(Return, 2), // 11
            f(Line, 6),   // 12
            f(Line, 8),   // 13
            f(Return, 8), // 14
        ];
        assert_eq!(act(&frames, 3, Action::Step), Some(4), "into the call");
        assert_eq!(act(&frames, 3, Action::Next), Some(7), "over it");
        assert_eq!(act(&frames, 5, Action::Out), Some(7), "out of square");
        assert_eq!(
            act(&frames, 1, Action::Out),
            None,
            "out of the entry: the run ends"
        );
        assert_eq!(act(&frames, 3, Action::Break(2)), Some(5));
        assert_eq!(act(&frames, 5, Action::Break(8)), Some(13));
        assert_eq!(act(&frames, 13, Action::Break(5)), None);
        assert_eq!(previous_in_scope(&frames, 7), Some(3), "back over the call");
        assert_eq!(previous_in_scope(&frames, 5), Some(4));
        assert_eq!(previous_in_scope(&frames, 0), None);
        assert_eq!(frame_json(None), serde_json::json!({"event": "end"}));
    }

    #[test]
    fn dots_after_a_return_cannot_be_resolved_and_count_as_wrong() {
        // The caller's frame after the callee returned must list values in full.
        let program = "def g(a):\n    b = h(a)\n    return b\ndef h(n):\n    return n";
        let mut h_ret = step("return", 5, 2, &[("n", "1")]);
        h_ret.value = Some("1".into());
        let mut g_ret = step("return", 3, 1, &[("a", "1"), ("b", "1")]);
        g_ret.value = Some("1".into());
        let steps = vec![
            step("call", 1, 1, &[("a", "1")]),
            step("line", 2, 1, &[("a", "1"), ("b", "1")]),
            step("call", 4, 2, &[("n", "1")]),
            step("line", 5, 2, &[("n", "1")]),
            h_ret,
            step("line", 3, 1, &[("a", "1"), ("b", "1")]),
            g_ret,
        ];
        let text = render(program, &steps);
        assert!(
            text.contains(r#"<|line_sep|>{"a": "1", "b": "1"}<|action_sep|>    return b"#),
            "{text}"
        );
        let truth = frames_from_steps(&steps, program);
        let lazy = text.replace(
            r#"{"a": "1", "b": "1"}<|action_sep|>    return b"#,
            r#"{"a": "..", "b": ".."}<|action_sep|>    return b"#,
        );
        let s = score(&parse(&lazy, program), &truth, true);
        assert_eq!(
            (s.diverge_at, s.divergence.as_deref()),
            (Some(5), Some("locals: a = .. for 1"))
        );
    }
}
