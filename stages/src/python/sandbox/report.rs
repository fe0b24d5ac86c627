//! What a worker reports: a verdict and its details per test.

use super::value::Tagged;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    WrongAnswer,
    RuntimeError,
    Timeout,
    Memory,
    SyntaxError,
    OutputLimit,
    /// Not run: an earlier test failed and the job stops at the first failure.
    Skipped,
    /// The program broke the report protocol (a report out of order,
    /// repeated, forged or unreadable): the test fails, and is marked so.
    ProtocolViolation,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::WrongAnswer => "wrong_answer",
            Verdict::RuntimeError => "runtime_error",
            Verdict::Timeout => "timeout",
            Verdict::Memory => "memory",
            Verdict::SyntaxError => "syntax_error",
            Verdict::OutputLimit => "output_limit",
            Verdict::Skipped => "skipped",
            Verdict::ProtocolViolation => "protocol_violation",
        }
    }
}

/// What happened on one test.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TestReport {
    pub test: usize,
    pub verdict: Verdict,
    #[serde(default)]
    pub exc_type: Option<String>,
    #[serde(default)]
    pub exc_message: Option<String>,
    /// Function mode: the returned value, tagged JSON. Stdio mode: printed text.
    #[serde(default, deserialize_with = "null_is_a_tagged_value")]
    pub output: Option<Tagged>,
    /// Traced function runs: the arguments as passed (tagged JSON list).
    #[serde(default, deserialize_with = "null_is_a_value")]
    pub input: Option<serde_json::Value>,
    /// Traced function runs: the arguments after the call (mutated in place
    /// or not), which the seed's test display showed.
    #[serde(default, deserialize_with = "null_is_a_value")]
    pub input_after: Option<serde_json::Value>,
    /// Traced function runs: the expected value (tagged JSON), when given.
    #[serde(default, deserialize_with = "null_is_a_value")]
    pub expected: Option<serde_json::Value>,
    /// Function mode: `repr` of the returned value, middle-truncated.
    #[serde(default)]
    pub output_repr: Option<String>,
    /// Seconds, measured in the child.
    #[serde(default)]
    pub duration: Option<f64>,
    /// Line of a syntax error.
    #[serde(default)]
    pub line: Option<u32>,
    /// The trace, when the job was traced. Kept raw: the traced program shares
    /// the child's process, so this is untrusted; [`TestReport::parsed_trace`]
    /// checks its shape.
    #[serde(default)]
    pub trace: Option<serde_json::Value>,
}

/// `None` only when the field is absent: a JSON `null` is Python's `None`.
fn null_is_a_tagged_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Tagged>, D::Error> {
    Tagged::deserialize(d).map(Some)
}

fn null_is_a_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobReport {
    pub results: Vec<TestReport>,
    /// Seconds the worker spent on the job.
    pub wall: f64,
}

impl JobReport {
    pub fn passed(&self) -> bool {
        !self.results.is_empty() && self.results.iter().all(|r| r.verdict == Verdict::Pass)
    }
}
