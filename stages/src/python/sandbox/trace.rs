//! Traces as the sandbox returns them: the tracer's compact wire form
//! (`tracer.py`'s `summary()`), expanded into typed events.

use super::report::TestReport;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Tracer bounds and scope (see `tracer.py`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceSettings {
    /// Events recorded before tracing switches off.
    pub max_steps: u64,
    /// Approximate bytes of event text recorded before tracing switches off.
    pub max_bytes: u64,
    /// Characters per value `repr` (middle ellipsis beyond).
    pub max_repr: u32,
    /// Frames traced below the entry (1: the entry function, or a stdin
    /// program's module, only); default 1 for functions, 2 for stdin programs.
    pub depth: Option<u32>,
    /// Record every visible local at each step, not only the changed ones.
    pub record_locals: bool,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            max_steps: 10_000,
            max_bytes: 4 << 20,
            max_repr: 100,
            depth: None,
            record_locals: true,
        }
    }
}

/// One traced run: the events, and why tracing stopped early (if it did).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Trace {
    pub events: Vec<TraceEvent>,
    /// `max_steps`, `max_bytes`, `timeout`, `memory`, `output_limit`.
    pub truncated: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceEventKind {
    Call,
    Line,
    Return,
    Exception,
}

impl TraceEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceEventKind::Call => "call",
            TraceEventKind::Line => "line",
            TraceEventKind::Return => "return",
            TraceEventKind::Exception => "exception",
        }
    }
}

/// One tracer event. Values are reprs; `changed` and `locals` map names to reprs
/// in the order the program created them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceEvent {
    pub step: u64,
    pub kind: TraceEventKind,
    pub line: u32,
    pub depth: u32,
    pub func: String,
    #[serde(default)]
    pub changed: Option<serde_json::Map<String, serde_json::Value>>,
    /// Shared by consecutive events of a frame that changed nothing.
    #[serde(default)]
    pub locals: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    /// `return`: the returned value.
    #[serde(default)]
    pub value: Option<String>,
    /// `return`: the frame was left by an exception.
    #[serde(default)]
    pub unwound: bool,
    #[serde(default)]
    pub exc_type: Option<String>,
    #[serde(default)]
    pub exc_message: Option<String>,
}

impl TestReport {
    /// The trace, typed; an error names what is malformed.
    pub fn parsed_trace(&self) -> Result<Option<Trace>, String> {
        let Some(raw) = &self.trace else {
            return Ok(None);
        };
        Trace::from_wire(raw)
            .map(Some)
            .map_err(|e| format!("malformed trace from the sandbox: {e}"))
    }
}

impl Trace {
    /// A trace from the tracer's wire form (`tracer.py`'s `summary()`), with
    /// every visible local rebuilt at each step when it was asked for.
    pub fn from_wire(raw: &serde_json::Value) -> Result<Trace, String> {
        CompactTrace::deserialize(raw)
            .map_err(|e| e.to_string())?
            .expand()
    }
}

type Reprs = serde_json::Map<String, serde_json::Value>;

/// The tracer's wire form (`tracer.py`, `summary()`): per event four
/// little-endian `i32` (kind, line, depth, function index) in base64, and
/// the sparse parts as flat lists: `changed`, triples (step, name, repr) of
/// what call and line events changed (null: deleted); `extra`, pairs (step,
/// return value or `[type, message]`); `before`, triples of changes no line
/// made. With `locals`, every visible local at each step is rebuilt here
/// from those changes.
#[derive(Deserialize)]
struct CompactTrace {
    funcs: Vec<String>,
    events: String,
    #[serde(default)]
    changed: Vec<serde_json::Value>,
    #[serde(default)]
    extra: Vec<serde_json::Value>,
    #[serde(default)]
    before: Vec<serde_json::Value>,
    #[serde(default)]
    locals: bool,
    truncated: Option<String>,
}

/// A flat list of (step, name, value) triples, by step, names in order.
fn by_step(list: Vec<serde_json::Value>, what: &str) -> Result<HashMap<usize, Reprs>, String> {
    if !list.len().is_multiple_of(3) {
        return Err(format!("`{what}` is not (step, name, value) triples"));
    }
    let mut out: HashMap<usize, Reprs> = HashMap::new();
    let mut items = list.into_iter();
    while let (Some(step), Some(name), Some(value)) = (items.next(), items.next(), items.next()) {
        let (Some(step), serde_json::Value::String(name)) = (step.as_u64(), name) else {
            return Err(format!("`{what}` holds a triple without a step and a name"));
        };
        out.entry(step as usize).or_default().insert(name, value);
    }
    Ok(out)
}

/// Apply a step's changes to a frame's locals: null removes the name (the
/// others keep their order), a value sets it (a new name goes last).
fn apply(scope: &mut Reprs, delta: &Reprs) {
    for (name, value) in delta {
        if value.is_null() {
            scope.shift_remove(name);
        } else {
            scope.insert(name.clone(), value.clone());
        }
    }
}

impl CompactTrace {
    fn expand(self) -> Result<Trace, String> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.events.as_bytes())
            .map_err(|e| format!("events are not base64: {e}"))?;
        if !bytes.len().is_multiple_of(16) {
            return Err(format!(
                "events are {} bytes, not four 32-bit integers per event",
                bytes.len()
            ));
        }
        let count = bytes.len() / 16;
        let mut changed_at = by_step(self.changed, "changed")?;
        let mut before_at = by_step(self.before, "before")?;
        if !self.extra.len().is_multiple_of(2) {
            return Err("`extra` is not (step, value) pairs".into());
        }
        let mut extra_at = HashMap::new();
        let mut items = self.extra.into_iter();
        while let (Some(step), Some(value)) = (items.next(), items.next()) {
            let step = step.as_u64().ok_or("`extra` holds a pair without a step")?;
            extra_at.insert(step as usize, value);
        }
        for (what, steps) in [
            ("changed", changed_at.keys().max()),
            ("extra", extra_at.keys().max()),
            ("before", before_at.keys().max()),
        ] {
            if let Some(&step) = steps.filter(|&&s| s >= count) {
                return Err(format!("`{what}` names step {step} of {count}"));
            }
        }
        let mut events = Vec::with_capacity(count);
        // The locals of the frame running at each depth (index depth - 1).
        let mut scopes: Vec<Arc<Reprs>> = Vec::new();
        for (step, raw) in bytes.chunks_exact(16).enumerate() {
            let int = |i: usize| {
                let mut word = [0u8; 4];
                word.copy_from_slice(&raw[4 * i..4 * i + 4]);
                i32::from_le_bytes(word)
            };
            let (kind, line, depth, func) = (int(0), int(1), int(2), int(3));
            let (Ok(line), Ok(depth), Ok(func)) = (
                u32::try_from(line),
                u32::try_from(depth),
                usize::try_from(func),
            ) else {
                return Err(format!(
                    "event {step} has a negative line, depth or function"
                ));
            };
            let func = self
                .funcs
                .get(func)
                .ok_or_else(|| format!("event {step} names function #{func}, which is not listed"))?
                .clone();
            let changed = match kind {
                0 | 1 => Some(changed_at.remove(&step).unwrap_or_default()),
                _ => None,
            };
            let locals = if self.locals {
                let at = depth.max(1) as usize - 1;
                if scopes.len() <= at {
                    scopes.resize_with(at + 1, Default::default);
                }
                let scope = &mut scopes[at];
                if kind == 0 {
                    *scope = Default::default();
                }
                if let Some(before) = before_at.remove(&step) {
                    apply(Arc::make_mut(scope), &before);
                }
                if let Some(changed) = changed.as_ref().filter(|c| !c.is_empty()) {
                    apply(Arc::make_mut(scope), changed);
                }
                (kind != 3).then(|| Arc::clone(scope))
            } else {
                None
            };
            // A deleted name is not among what a step changed.
            let changed = changed.map(|mut c| {
                c.retain(|_, v| !v.is_null());
                c
            });
            let extra = extra_at.remove(&step).unwrap_or(serde_json::Value::Null);
            let text = |v: &serde_json::Value| v.as_str().map(String::from);
            let (kind, value, unwound, exc_type, exc_message) = match kind {
                0 => (TraceEventKind::Call, None, false, None, None),
                1 => (TraceEventKind::Line, None, false, None, None),
                2 => (TraceEventKind::Return, text(&extra), false, None, None),
                3 => (
                    TraceEventKind::Exception,
                    None,
                    false,
                    extra.get(0).and_then(text),
                    extra.get(1).and_then(text),
                ),
                4 => (TraceEventKind::Return, None, true, None, None),
                other => return Err(format!("event {step} has unknown kind {other}")),
            };
            events.push(TraceEvent {
                step: step as u64,
                kind,
                line,
                depth,
                func,
                changed,
                locals,
                value,
                unwound,
                exc_type,
                exc_message,
            });
        }
        Ok(Trace {
            events,
            truncated: self.truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

    fn wire(events: &[[i32; 4]]) -> String {
        let bytes: Vec<u8> = events
            .iter()
            .flatten()
            .flat_map(|i| i.to_le_bytes())
            .collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn names(map: Option<&Reprs>) -> Vec<String> {
        map.unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
            .collect()
    }

    /// Locals are rebuilt per frame from call and line changes: a deleted name
    /// leaves without moving the others, a callee's frame does not touch its
    /// caller's, changes no line made apply before the event's own, and an
    /// exception shows none.
    #[test]
    fn locals_are_rebuilt_from_changes() {
        let raw = json!({
            "funcs": ["main", "helper"],
            "events": wire(&[
                [0, 1, 1, 0], [1, 2, 1, 0], [1, 3, 1, 0], [0, 9, 2, 1], [2, 9, 2, 1],
                [1, 4, 1, 0], [3, 4, 1, 0], [1, 5, 1, 0], [2, 5, 1, 0],
            ]),
            "changed": [
                0, "a", "1", 0, "b", "2",
                1, "c", "3",
                3, "x", "7",
                2, "a", null, 2, "b", "20",
                5, "a", "9",
            ],
            "extra": [4, "7", 6, ["ValueError", "bad"], 8, "None"],
            "before": [8, "c", "30"],
            "locals": true,
            "truncated": null,
        });
        let t = Trace::from_wire(&raw).unwrap();
        let ev = &t.events;
        assert_eq!(names(ev[0].locals.as_deref()), ["a=1", "b=2"]);
        assert_eq!(names(ev[1].locals.as_deref()), ["a=1", "b=2", "c=3"]);
        assert_eq!(
            names(ev[2].locals.as_deref()),
            ["b=20", "c=3"],
            "a deleted, b keeps its place"
        );
        assert_eq!(
            names(ev[2].changed.as_ref()),
            ["b=20"],
            "a deletion is no change"
        );
        assert_eq!(names(ev[3].locals.as_deref()), ["x=7"]);
        assert_eq!(ev[4].value.as_deref(), Some("7"));
        assert_eq!(
            names(ev[5].locals.as_deref()),
            ["b=20", "c=3", "a=9"],
            "the caller's frame is intact"
        );
        assert_eq!(ev[6].kind, TraceEventKind::Exception);
        assert!(ev[6].locals.is_none() && ev[6].changed.is_none());
        assert_eq!(ev[6].exc_type.as_deref(), Some("ValueError"));
        assert_eq!(
            names(ev[7].changed.as_ref()),
            Vec::<String>::new(),
            "a line without changes: {{}}"
        );
        assert_eq!(
            names(ev[8].locals.as_deref()),
            ["b=20", "c=30", "a=9"],
            "`before` applies"
        );
        assert!(ev[8].changed.is_none());
    }

    #[test]
    fn without_locals_only_changes_are_kept() {
        let raw = json!({
            "funcs": ["f"], "events": wire(&[[0, 1, 1, 0], [1, 2, 1, 0], [2, 2, 1, 0]]),
            "changed": [0, "n", "1", 1, "n", "2"], "extra": [2, "2"],
            "locals": false, "truncated": "max_steps",
        });
        let t = Trace::from_wire(&raw).unwrap();
        assert!(t.events.iter().all(|e| e.locals.is_none()));
        assert_eq!(names(t.events[1].changed.as_ref()), ["n=2"]);
        assert_eq!(t.truncated.as_deref(), Some("max_steps"));
    }

    #[test]
    fn malformed_wire_forms_are_named() {
        let base = || json!({"funcs": ["f"], "events": wire(&[[0, 1, 1, 0]]), "truncated": null});
        let cases = [
            ("events", json!("not base64!"), "not base64"),
            ("events", json!("AAAA"), "not four 32-bit integers"),
            ("events", json!(wire(&[[0, 1, 1, 3]])), "function #3"),
            ("events", json!(wire(&[[7, 1, 1, 0]])), "unknown kind 7"),
            ("events", json!(wire(&[[1, -1, 1, 0]])), "negative"),
            (
                "changed",
                json!([5, "a", "1"]),
                "`changed` names step 5 of 1",
            ),
            (
                "changed",
                json!([0, "a"]),
                "not (step, name, value) triples",
            ),
            ("changed", json!([0, 1, "a"]), "without a step and a name"),
            ("extra", json!([1, "x"]), "`extra` names step 1 of 1"),
            ("extra", json!(["x", "y"]), "without a step"),
        ];
        for (field, value, want) in cases {
            let mut raw = base();
            raw[field] = value;
            let err = Trace::from_wire(&raw).unwrap_err();
            assert!(err.contains(want), "{field}: {err}");
        }
    }
}
