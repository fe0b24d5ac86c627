//! A job: a program, its tests and its limits, and how it goes to a worker.

use super::trace::TraceSettings;
use super::value::{Tagged, tagged_as_text};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Function,
    Stdio,
    Script,
    /// The program defines functions; the benchmark's check (`Job::check`)
    /// runs in the worker, outside the program's process, and each call it
    /// makes to a name the program defines is answered by the program.
    Calls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Comparator {
    #[default]
    Exact,
    Evalplus,
    LcbStdio,
    LcbCall,
    AppsStdio,
    AppsCall,
}

/// One test of a job. Values are tagged JSON (see `worker.py`: tuples, sets,
/// dicts with non-string keys, NaN and bytes survive exactly).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct TestCase {
    /// Positional arguments (a tagged-JSON list) for `function` mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// Or plain JSON arguments, as benchmarks publish them (objects are dicts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_json: Option<serde_json::Value>,
    /// Or the arguments as a Python literal tuple/list, `ast.literal_eval`ed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_literal: Option<String>,
    /// Standard input for `stdio` mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Expected output; without it a test passes when it runs to completion.
    /// On the wire it is a string holding the JSON text: the judge keeps
    /// suites that way and parses one test's value when it compares, so a
    /// large suite costs its text, not a Python object per item.
    #[serde(
        rename = "expected_text",
        skip_serializing_if = "Option::is_none",
        default,
        with = "tagged_as_text"
    )]
    pub expected: Option<Tagged>,
    /// Expected output as plain JSON (a JSON object is a dict), used as is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_json: Option<serde_json::Value>,
    /// Expected output as Python literal source, evaluated by the worker (never the child).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_literal: Option<String>,
    /// Per-test time limit overriding the job's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
}

/// Resource limits of one job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// Seconds per test.
    pub timeout: f64,
    /// Seconds for the whole job; default: the sum of test limits plus setup.
    pub backstop: Option<f64>,
    /// Seconds to run the program's top level before the first test.
    pub setup_timeout: f64,
    pub memory_bytes: u64,
    pub max_output_bytes: u64,
    pub max_file_bytes: u64,
    pub max_open_files: u64,
    pub max_processes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: 3.0,
            backstop: None,
            setup_timeout: 10.0,
            memory_bytes: 4 << 30,
            max_output_bytes: 1 << 20,
            max_file_bytes: 64 << 20,
            max_open_files: 256,
            max_processes: 64,
        }
    }
}

/// A program and the tests to run it on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    pub mode: Mode,
    pub program: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<String>,
    /// Source run in the program's namespace before it (imports a harness
    /// provides); its lines are not the program's.
    pub prelude: Option<String>,
    pub comparator: Comparator,
    /// EvalPlus per-problem absolute tolerance.
    pub atol: f64,
    /// EvalPlus special oracles are per dataset (`humaneval`, `mbpp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Shared between the jobs of one problem: the worker keeps recent
    /// suites, so each is sent and parsed once, not once per sample.
    pub tests: Arc<Vec<TestCase>>,
    pub limits: Limits,
    /// Stop at the first test that does not pass (EvalPlus `fast_check`); the
    /// rest are `skipped`.
    pub stop_at_first_failure: bool,
    /// Return function outputs as values (needed to use them as expected outputs).
    pub keep_output_values: bool,
    /// Describe a passing test's output (`output_repr`); scoring, which
    /// reads only failures, turns it off: a repr per passing test was a
    /// fifth of the worker's time on HumanEval+.
    pub repr_passing_outputs: bool,
    /// Run every test under the tracer; each report then carries its trace.
    pub trace: Option<TraceSettings>,
    /// `calls` mode: the benchmark's check code, run in the worker (never
    /// beside the program) with the program's names answered by the program.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// What errors call this job (`HumanEval/3 sample 7`); not sent.
    #[serde(skip)]
    pub label: Option<String>,
}

impl Job {
    pub fn new(mode: Mode, program: impl Into<String>) -> Self {
        Job {
            mode,
            program: program.into(),
            entry_point: None,
            prelude: None,
            comparator: Comparator::Exact,
            atol: 0.0,
            dataset: None,
            tests: Arc::new(Vec::new()),
            limits: Limits::default(),
            stop_at_first_failure: false,
            keep_output_values: true,
            repr_passing_outputs: true,
            trace: None,
            check: None,
            label: None,
        }
    }

    /// The job as the worker reads it, one line without its newline;
    /// `with_tests: false` when the worker already holds this suite (`suite`
    /// names it either way). Written as text, not built as a `Value`, so a
    /// large suite is never copied into a tree.
    pub(super) fn wire(&self, id: u64, suite: u64, with_tests: bool) -> String {
        let l = &self.limits;
        let wire = serde_json::json!({
            "id": id,
            "mode": self.mode,
            "program": self.program,
            "entry_point": self.entry_point,
            "prelude": self.prelude,
            "comparator": self.comparator,
            "atol": self.atol,
            "dataset": self.dataset,
            "suite": suite,
            "timeout": l.timeout,
            "backstop": l.backstop,
            "setup_timeout": l.setup_timeout,
            "memory_bytes": l.memory_bytes,
            "max_output_bytes": l.max_output_bytes,
            "max_file_bytes": l.max_file_bytes,
            "max_open_files": l.max_open_files,
            "max_processes": l.max_processes,
            "stop_at_first_failure": self.stop_at_first_failure,
            "keep_output_values": self.keep_output_values,
            "repr_passing_outputs": self.repr_passing_outputs,
            "trace": self.trace,
            "check": self.check,
        });
        let mut line = wire.to_string();
        if with_tests {
            line.pop(); // the object's closing brace
            line.push_str(",\"tests\":");
            line.push_str(&serde_json::to_string(&*self.tests).expect("tests serialize"));
            line.push('}');
        }
        line
    }

    /// Seconds after which `tw` gives up on the worker itself: the job's
    /// backstop (which the judge enforces) and a grace period.
    pub(super) fn hard_deadline(&self) -> std::time::Duration {
        let l = &self.limits;
        let tests: f64 = self
            .tests
            .iter()
            .map(|t| t.timeout.unwrap_or(l.timeout))
            .sum();
        let backstop = l.backstop.unwrap_or(tests + l.setup_timeout + 1.0);
        std::time::Duration::from_secs_f64(backstop.max(l.timeout) + 10.0)
    }

    pub(super) fn describe(&self, id: u64) -> String {
        self.label.clone().unwrap_or_else(|| format!("job #{id}"))
    }
}
