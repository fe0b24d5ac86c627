//! Traces as the sandbox returns them: the tracer's compact wire form
//! (`tracer.py`'s `summary()`), expanded into typed events.

use super::report::TestReport;
use serde::{Deserialize, Serialize};

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
    #[serde(default)]
    pub locals: Option<serde_json::Map<String, serde_json::Value>>,
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
        let bad = |e: String| format!("malformed trace from the sandbox: {e}");
        let compact = CompactTrace::deserialize(raw).map_err(|e| bad(e.to_string()))?;
        compact.expand().map(Some).map_err(bad)
    }
}

type Reprs = serde_json::Map<String, serde_json::Value>;

/// `[kind, line, depth, func, changed, snapshot, extra]`, see `tracer.py`.
type CompactEvent = (u8, u32, u32, usize, Option<Reprs>, i64, serde_json::Value);

/// The tracer's wire form (`tracer.py`, `summary()`): events as arrays,
/// function names and locals snapshots stored once and referenced by index.
#[derive(Deserialize)]
struct CompactTrace {
    funcs: Vec<String>,
    snapshots: Vec<Reprs>,
    events: Vec<CompactEvent>,
    truncated: Option<String>,
}

impl CompactTrace {
    fn expand(self) -> Result<Trace, String> {
        let mut events = Vec::with_capacity(self.events.len());
        for (step, (kind, line, depth, func, changed, snapshot, extra)) in
            self.events.into_iter().enumerate()
        {
            let func = self
                .funcs
                .get(func)
                .ok_or_else(|| format!("event {step} names function #{func}, which is not listed"))?
                .clone();
            let locals = match usize::try_from(snapshot) {
                Ok(i) => Some(
                    self.snapshots
                        .get(i)
                        .ok_or_else(|| {
                            format!("event {step} uses snapshot #{i}, which is missing")
                        })?
                        .clone(),
                ),
                Err(_) => None,
            };
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
