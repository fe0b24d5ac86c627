//! The structured trace model that representation templates render.
//!
//! A traced run (its tracer events plus its input, output and expected value)
//! becomes a [`TestView`]: the run's display strings, every step, and the list
//! of *states* the study's formats are built from (inputs, changed variables,
//! returns, exceptions, each numbered). Templates under `templates/traces/`
//! turn these into text; `represent` and `tw trace` share this code.
//!
//! Two ways to build states, chosen by [`Compat`]:
//! - `off` (default): one state per step that changed something, numbered in
//!   execution order; the input state sits on the `def` line; test inputs and
//!   outputs are shown as the Python reprs of the actual values.
//! - `sft` / `tts`: what the seed's PySnooper pipeline produced, for parity
//!   with the original data: a step's new and modified variables become
//!   separate states whose names run in reverse (PySnooper's line merge); all
//!   inputs come first, then changes, then exceptions and returns; test I/O is
//!   shown through a JSON round trip and cut at 100 characters; `sft` puts the
//!   inputs on line 0 (its injected decorator shifted them).

use crate::python::pyvalue;
use crate::python::sandbox::{TraceEvent, TraceEventKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Which state-building rules to follow; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compat {
    #[default]
    Off,
    Sft,
    Tts,
}

impl Compat {
    pub fn as_str(self) -> &'static str {
        match self {
            Compat::Off => "off",
            Compat::Sft => "sft",
            Compat::Tts => "tts",
        }
    }
}

/// One traced run, as the trace stage stored it.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    pub run: u64,
    pub verdict: String,
    /// `Some` when an expected value was given.
    pub passed: Option<bool>,
    /// Function mode: the argument list (tagged JSON). Stdio: the stdin text.
    pub input: Option<Value>,
    /// Function mode: the argument list after the call.
    pub input_after: Option<Value>,
    /// Function mode: the return value (tagged JSON). Stdio: what was printed.
    pub result: Option<Value>,
    pub expected: Option<Value>,
    pub exc_type: Option<String>,
    pub exc_message: Option<String>,
    pub truncated: Option<String>,
    pub events: Vec<TraceEvent>,
}

/// Knobs of the model that are params of `represent` (hence in its key).
/// The default: tw's own rules, values uncut, function mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelOptions {
    pub compat: Compat,
    /// Cut every value shown to this many characters (middle `...`).
    pub max_value_chars: Option<usize>,
    pub stdio: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

/// One numbered fact about a run: what the formats list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct State {
    /// 1-based number, the `(k)` of NExT and concise2.
    pub order: usize,
    pub line: i64,
    /// `init`, `locals`, `return` or `exception`.
    pub kind: &'static str,
    /// `init` / `locals`: `name = value` pairs joined by `, `.
    /// `return`: the value. `exception`: `Type: message`.
    pub text: String,
    pub vars: Vec<NameValue>,
    pub func: String,
    pub depth: u32,
}

/// One tracer event, with every visible variable after it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    pub step: u64,
    pub kind: &'static str,
    pub line: u32,
    pub depth: u32,
    pub func: String,
    pub changed: Vec<NameValue>,
    pub locals: Vec<NameValue>,
    /// `name = value` for every visible local, joined by `, `.
    pub locals_text: String,
    pub changed_text: String,
    pub value: Option<String>,
    pub exception: Option<String>,
    pub unwound: bool,
}

/// What a template sees for one test.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TestView {
    /// 1-based position among the tests shown.
    pub index: usize,
    pub run: u64,
    pub verdict: String,
    pub passed: Option<bool>,
    /// The input as shown: arguments joined by `, ` (stdin text for stdio).
    pub input: String,
    /// Each argument's repr (function mode).
    pub args: Vec<String>,
    pub expected: Option<String>,
    /// What the program returned or printed, as shown.
    pub output: Option<String>,
    /// `Type: message` when the run raised.
    pub exception: Option<String>,
    pub truncated: Option<String>,
    pub states: Vec<State>,
    pub steps: Vec<Step>,
}

impl TestView {
    pub fn build(index: usize, run: &RunRecord, opts: &ModelOptions) -> TestView {
        let cut = |s: &str| match opts.max_value_chars {
            Some(n) => pyvalue::middle_cut(s, n),
            None => s.to_string(),
        };
        let compat = opts.compat != Compat::Off;
        let (input, args) = if opts.stdio {
            let text = run.input.as_ref().and_then(Value::as_str).unwrap_or("");
            (cut(text), Vec::new())
        } else {
            match &run.input {
                // The seed showed its JSON copy of the arguments after the call.
                Some(v) if compat => {
                    // The TTS harness called `f(test_input)`: runs that
                    // reproduce it pass the input list as the one argument,
                    // and the seed displayed that list as it was before the
                    // call. SFT showed the JSON copy of the arguments after it.
                    let shown = match (opts.compat, pyvalue::sequence_items(v)) {
                        (Compat::Tts, Some(items)) if items.len() == 1 => {
                            pyvalue::seed_display_exact(&items[0])
                        }
                        _ => pyvalue::seed_display(run.input_after.as_ref().unwrap_or(v)),
                    };
                    (shown, Vec::new())
                }
                Some(v) => {
                    let args = pyvalue::sequence_items(v)
                        .map(|items| items.iter().map(|a| cut(&pyvalue::repr(a))).collect())
                        .unwrap_or_default();
                    (cut(&pyvalue::args_text(v)), args)
                }
                None => (String::new(), Vec::new()),
            }
        };
        let show = |v: &Value, seed: fn(&Value) -> String| {
            if opts.stdio {
                cut(v.as_str().unwrap_or(""))
            } else if compat {
                seed(v)
            } else {
                cut(&pyvalue::repr(v))
            }
        };
        let expected = run
            .expected
            .as_ref()
            .map(|v| show(v, pyvalue::seed_display));
        let output = run.result.as_ref().map(|v| {
            // The TTS harness showed the returned object; SFT its JSON copy.
            let seed_output = match opts.compat {
                Compat::Tts => pyvalue::seed_repr_exact,
                _ => pyvalue::seed_repr,
            };
            show(v, seed_output)
        });
        let exception = run
            .exc_type
            .as_ref()
            .map(|t| exception_text(t, run.exc_message.as_deref()));
        let states = match opts.compat {
            Compat::Off => states_in_order(&run.events, &cut, opts.stdio),
            c => seed_states(&run.events, c == Compat::Sft),
        };
        let steps = run.events.iter().map(|e| step_view(e, &cut)).collect();
        TestView {
            index,
            run: run.run,
            verdict: run.verdict.clone(),
            passed: run.passed,
            input,
            args,
            expected,
            output,
            exception,
            truncated: run.truncated.clone(),
            states,
            steps,
        }
    }
}

/// `traceback.format_exception_only` for the common case.
fn exception_text(exc_type: &str, message: Option<&str>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!("{exc_type}: {m}"),
        _ => exc_type.to_string(),
    }
}

fn pairs(map: Option<&Map<String, Value>>, cut: &dyn Fn(&str) -> String) -> Vec<NameValue> {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| NameValue {
                name: k.clone(),
                value: cut(v.as_str().unwrap_or_default()),
            })
            .collect()
    })
    .unwrap_or_default()
}

fn join_pairs<'a>(pairs: impl IntoIterator<Item = &'a NameValue>) -> String {
    pairs
        .into_iter()
        .map(|p| format!("{} = {}", p.name, p.value))
        .collect::<Vec<_>>()
        .join(", ")
}

fn step_view(e: &TraceEvent, cut: &dyn Fn(&str) -> String) -> Step {
    let changed = pairs(e.changed.as_ref(), cut);
    let locals = pairs(e.locals.as_deref(), cut);
    Step {
        step: e.step,
        kind: e.kind.as_str(),
        line: e.line,
        depth: e.depth,
        func: e.func.clone(),
        changed_text: join_pairs(&changed),
        locals_text: join_pairs(&locals),
        changed,
        locals,
        value: e.value.as_ref().map(|v| cut(v)),
        exception: e
            .exc_type
            .as_ref()
            .map(|t| exception_text(t, e.exc_message.as_deref())),
        unwound: e.unwound,
    }
}

/// Default states: inputs, then one state per step that changed variables,
/// each exception, and the return (not a script's), numbered in execution order.
fn states_in_order(events: &[TraceEvent], cut: &dyn Fn(&str) -> String, stdio: bool) -> Vec<State> {
    let mut states = Vec::new();
    for e in events {
        let (kind, vars, text) = match e.kind {
            TraceEventKind::Call | TraceEventKind::Line => {
                let vars = pairs(e.changed.as_ref(), cut);
                if vars.is_empty() {
                    continue;
                }
                let kind = if e.kind == TraceEventKind::Call {
                    "init"
                } else {
                    "locals"
                };
                let text = join_pairs(&vars);
                (kind, vars, text)
            }
            TraceEventKind::Exception => (
                "exception",
                Vec::new(),
                exception_text(
                    e.exc_type.as_deref().unwrap_or("Exception"),
                    e.exc_message.as_deref(),
                ),
            ),
            TraceEventKind::Return if e.unwound => continue,
            // A script's module "returns" None; what it printed is its output.
            TraceEventKind::Return if stdio && e.func == "<module>" => continue,
            TraceEventKind::Return => ("return", Vec::new(), cut(e.value.as_deref().unwrap_or(""))),
        };
        states.push(State {
            order: states.len() + 1,
            line: i64::from(e.line),
            kind,
            text,
            vars,
            func: e.func.clone(),
            depth: e.depth,
        });
    }
    states
}

/// The seed's states (PySnooper log -> `align_trace` -> `DynStates`), built
/// from the same events. PySnooper decorated the entry function, so every
/// call of it counts (recursive ones too, when traced deep enough) and no
/// other function does.
fn seed_states(events: &[TraceEvent], init_on_line_zero: bool) -> Vec<State> {
    let state =
        |line: i64, kind: &'static str, vars: Vec<NameValue>, text: String, e: &TraceEvent| State {
            order: 0,
            line,
            kind,
            text,
            vars,
            func: e.func.clone(),
            depth: e.depth,
        };
    let mut init = Vec::new();
    let mut changes = Vec::new();
    // Exceptions and returns, in the order their kind first appeared.
    let mut ends: Vec<(&'static str, Vec<State>)> = Vec::new();
    let entry = events
        .iter()
        .find(|e| e.depth == 1)
        .map(|e| e.func.as_str());
    // The last locals snapshot of the frame at each depth.
    let mut previous: BTreeMap<u32, &Map<String, Value>> = BTreeMap::new();
    for e in events.iter().filter(|e| Some(e.func.as_str()) == entry) {
        let prior = previous.get(&e.depth).copied();
        match e.kind {
            TraceEventKind::Call => {
                previous.remove(&e.depth);
                let vars = pairs(e.changed.as_ref(), &|s| s.to_string());
                if !vars.is_empty() {
                    let line = if init_on_line_zero {
                        0
                    } else {
                        i64::from(e.line)
                    };
                    let text = merged_reversed(&vars);
                    init.push(state(line, "init", vars, text, e));
                }
            }
            TraceEventKind::Line => {
                let vars = pairs(e.changed.as_ref(), &|s| s.to_string());
                // PySnooper writes `New var` and `Modified var` lines in the
                // frame's variable order; runs of one kind merge into one state.
                let mut run: Vec<NameValue> = Vec::new();
                let mut run_is_new = None;
                for v in vars {
                    let is_new = !prior.is_some_and(|p| p.contains_key(&v.name));
                    if run_is_new.is_some_and(|k| k != is_new) {
                        let text = merged_reversed(&run);
                        changes.push(state(
                            i64::from(e.line),
                            "locals",
                            std::mem::take(&mut run),
                            text,
                            e,
                        ));
                    }
                    run_is_new = Some(is_new);
                    run.push(v);
                }
                if !run.is_empty() {
                    let text = merged_reversed(&run);
                    changes.push(state(i64::from(e.line), "locals", run, text, e));
                }
            }
            TraceEventKind::Exception => {
                let text = pyvalue::middle_cut(
                    &exception_text(
                        e.exc_type.as_deref().unwrap_or("Exception"),
                        e.exc_message.as_deref(),
                    ),
                    100,
                );
                push_end(
                    &mut ends,
                    "exception",
                    state(i64::from(e.line), "exception", Vec::new(), text, e),
                );
            }
            TraceEventKind::Return if e.unwound => {}
            TraceEventKind::Return => {
                let text = e.value.clone().unwrap_or_default();
                push_end(
                    &mut ends,
                    "return",
                    state(i64::from(e.line), "return", Vec::new(), text, e),
                );
            }
        }
        if let Some(locals) = &e.locals {
            previous.insert(e.depth, locals);
        }
    }
    let mut states: Vec<State> = init
        .into_iter()
        .chain(changes)
        .chain(ends.into_iter().flat_map(|(_, s)| s))
        .collect();
    for (i, s) in states.iter_mut().enumerate() {
        s.order = i + 1;
    }
    states
}

fn push_end(ends: &mut Vec<(&'static str, Vec<State>)>, kind: &'static str, s: State) {
    match ends.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, list)) => list.push(s),
        None => ends.push((kind, vec![s])),
    }
}

/// `align_trace`: consecutive same-kind lines fold into the last one as
/// `last + ", " + earlier`, so names come out in reverse.
fn merged_reversed(vars: &[NameValue]) -> String {
    join_pairs(vars.iter().rev())
}

/// Deserialize helper: `null`/missing or text holding JSON.
pub fn json_cell(v: Option<&Value>) -> Result<Option<Value>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => serde_json::from_str(s)
            .map(Some)
            .map_err(|e| format!("not JSON: {e}")),
        Some(other) => Ok(Some(other.clone())),
    }
}

/// A name -> repr map stored as JSON text by the trace stage.
pub fn reprs_cell(v: Option<&Value>) -> Result<Option<Map<String, Value>>, String> {
    match json_cell(v)? {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err("expected a JSON object of name -> repr".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(step: u64, kind: TraceEventKind, line: u32, changed: Value, locals: Value) -> TraceEvent {
        TraceEvent {
            step,
            kind,
            line,
            depth: 1,
            func: "f".into(),
            changed: changed.as_object().cloned(),
            locals: locals.as_object().cloned().map(std::sync::Arc::new),
            value: None,
            unwound: false,
            exc_type: None,
            exc_message: None,
        }
    }

    fn sample() -> RunRecord {
        let mut ret = ev(3, TraceEventKind::Return, 3, Value::Null, Value::Null);
        ret.value = Some("2".into());
        RunRecord {
            run: 0,
            verdict: "wrong_answer".into(),
            passed: Some(false),
            input: Some(json!([[3, 5], 2])),
            result: Some(json!(2)),
            expected: Some(json!({"tuple": [1, 2]})),
            events: vec![
                ev(
                    0,
                    TraceEventKind::Call,
                    1,
                    json!({"nums": "[3, 5]", "k": "2"}),
                    json!({"nums": "[3, 5]", "k": "2"}),
                ),
                ev(
                    1,
                    TraceEventKind::Line,
                    2,
                    json!({"a": "1", "b": "2"}),
                    json!({"nums": "[3, 5]", "k": "2", "a": "1", "b": "2"}),
                ),
                ev(
                    2,
                    TraceEventKind::Line,
                    3,
                    json!({"a": "5", "c": "0", "b": "7"}),
                    json!({"nums": "[3, 5]", "k": "2", "a": "5", "b": "7", "c": "0"}),
                ),
                ret,
            ],
            ..Default::default()
        }
    }

    #[test]
    fn default_states_follow_execution() {
        let opts = ModelOptions {
            compat: Compat::Off,
            max_value_chars: None,
            stdio: false,
        };
        let t = TestView::build(1, &sample(), &opts);
        let got: Vec<_> = t
            .states
            .iter()
            .map(|s| (s.order, s.line, s.kind, s.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (1, 1, "init", "nums = [3, 5], k = 2"),
                (2, 2, "locals", "a = 1, b = 2"),
                (3, 3, "locals", "a = 5, c = 0, b = 7"),
                (4, 3, "return", "2"),
            ]
        );
        assert_eq!(t.input, "[3, 5], 2");
        assert_eq!(t.expected.as_deref(), Some("(1, 2)"));
        assert_eq!(
            t.steps[2].locals_text,
            "nums = [3, 5], k = 2, a = 5, b = 7, c = 0"
        );
    }

    #[test]
    fn seed_states_split_new_from_modified_and_reverse_names() {
        let opts = ModelOptions {
            compat: Compat::Sft,
            max_value_chars: None,
            stdio: false,
        };
        let t = TestView::build(1, &sample(), &opts);
        let got: Vec<_> = t
            .states
            .iter()
            .map(|s| (s.order, s.line, s.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (1, 0, "k = 2, nums = [3, 5]"),
                (2, 2, "b = 2, a = 1"),
                (3, 3, "a = 5"),
                (4, 3, "c = 0"),
                (5, 3, "b = 7"),
                (6, 3, "2"),
            ]
        );
        assert_eq!(t.input, "'[3, 5], 2'");
        assert_eq!(t.expected.as_deref(), Some("'1, 2'"));
        assert_eq!(t.output.as_deref(), Some("2"));
    }
}
