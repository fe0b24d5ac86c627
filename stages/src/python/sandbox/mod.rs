//! The sandbox: runs untrusted Python programs in separate, limited processes.
//!
//! # Design
//! One warm worker per core (`worker.py`, embedded in the binary) imports the
//! standard library once and forks a child per job. The child drops to an
//! unprivileged uid (when `tw` runs as root), applies rlimits (address space,
//! file size, open files, processes, core dumps), gets a fresh working
//! directory and `/dev/null` for its standard streams, and runs the program on
//! each test of the job in order, reporting one JSON line per test over a
//! pipe. The worker enforces the per-test limit (`SIGALRM` in the child) and the
//! whole-job backstop (kills the child's process group; as PID 1 of its own
//! PID namespace it also kills every process the program left behind), then
//! compares outputs itself: expected values never enter the child. `tw` adds a
//! last backstop around each worker and replaces a worker that dies or hangs.
//!
//! Workers start with a cleared environment (no secrets leak in), a fixed
//! `PYTHONHASHSEED` (deterministic set and dict order), inside a new network
//! namespace (no network) and PID namespace where the kernel allows it. What
//! was possible is probed once and recorded in [`Isolation`]; what was not is
//! a warning, never a silent downgrade.
//!
//! # Program shapes ([`Mode`])
//! - `function`: the program defines `entry_point` (or `Class.method`, the class
//!   instantiated once); each test calls it with `args` and the output is compared
//!   with `expected` by the job's [`Comparator`]. Module state is shared across
//!   the tests of a job, as in EvalPlus and LiveCodeBench.
//! - `stdio`: the program runs as `__main__` once per test with `stdin`; its
//!   printed output is compared with `expected`.
//! - `script`: the program runs as `__main__`; it passes if it finishes without
//!   an exception (HumanEval's `check` programs, CRUXEval's asserts).
//!
//! # Comparators ([`Comparator`])
//! - `exact`: Python `==` on the decoded values.
//! - `evalplus`: EvalPlus rules: `==`; special oracles (HumanEval `find_zero`,
//!   MBPP set-equality and not-None tasks); for float outputs `atol` defaults to
//!   1e-6 and values are compared like `numpy.allclose(rtol=1e-7)` after type and
//!   length checks.
//! - `lcb_stdio`: LiveCodeBench stdio: strip, split into lines, equal line count,
//!   each line equal after strip or equal as lists of `Decimal`s.
//! - `lcb_call`: LiveCodeBench call-based: tuples become lists, then `==`.
//! - `apps_stdio`, `apps_call`: APPS `testing_util`'s lenient fallbacks.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

/// The tracer (`tracer.py`), also usable on its own: `python3 tracer.py --help`.
pub const TRACER: &str = include_str!("tracer.py");

/// What a worker runs: the tracer's definitions, then the worker loop.
const WORKER: &str = concat!(include_str!("tracer.py"), "\n", include_str!("worker.py"));
/// The uid programs run as when `tw` is root (`nobody`).
const UNPRIVILEGED_UID: u32 = 65534;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Function,
    Stdio,
    Script,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<serde_json::Value>,
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
    pub tests: Vec<TestCase>,
    pub limits: Limits,
    /// Stop at the first test that does not pass (EvalPlus `fast_check`); the
    /// rest are `skipped`.
    pub stop_at_first_failure: bool,
    /// Return function outputs as values (needed to use them as expected outputs).
    pub keep_output_values: bool,
    /// Run every test under the tracer; each report then carries its trace.
    pub trace: Option<TraceSettings>,
}

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
            tests: Vec::new(),
            limits: Limits::default(),
            stop_at_first_failure: false,
            keep_output_values: true,
            trace: None,
        }
    }

    fn wire(&self, id: u64) -> serde_json::Value {
        let l = &self.limits;
        serde_json::json!({
            "id": id,
            "mode": self.mode,
            "program": self.program,
            "entry_point": self.entry_point,
            "prelude": self.prelude,
            "comparator": self.comparator,
            "atol": self.atol,
            "dataset": self.dataset,
            "tests": self.tests,
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
            "trace": self.trace,
        })
    }

    /// Seconds after which `tw` gives up on the worker itself.
    fn hard_deadline(&self) -> Duration {
        let l = &self.limits;
        let tests: f64 = self
            .tests
            .iter()
            .map(|t| t.timeout.unwrap_or(l.timeout))
            .sum();
        let backstop = l.backstop.unwrap_or(tests + l.setup_timeout + 1.0);
        Duration::from_secs_f64(backstop + 10.0)
    }
}

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
    /// The sandbox itself failed (worker died or stopped answering).
    SandboxError,
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
            Verdict::SandboxError => "sandbox_error",
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
    #[serde(default, deserialize_with = "null_is_a_value")]
    pub output: Option<serde_json::Value>,
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
fn null_is_a_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
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

    fn failed_all(job: &Job, verdict: Verdict, message: &str) -> JobReport {
        JobReport {
            results: (0..job.tests.len())
                .map(|test| TestReport {
                    test,
                    verdict,
                    exc_type: Some("Sandbox".into()),
                    exc_message: Some(message.to_string()),
                    output: None,
                    input: None,
                    input_after: None,
                    expected: None,
                    output_repr: None,
                    duration: None,
                    line: None,
                    trace: None,
                })
                .collect(),
            wall: 0.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no usable Python interpreter: {0}")]
    NoPython(String),
    #[error("cannot start a sandbox worker: {0}")]
    Spawn(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What isolation this machine allows, probed once per process.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Isolation {
    pub python: PathBuf,
    pub python_version: String,
    /// Programs cannot reach any network.
    pub network_namespace: bool,
    /// Stray processes are killed when a job ends, even after `setsid()`.
    pub pid_namespace: bool,
    /// Programs run as an unprivileged uid (process limits apply, files outside
    /// world-writable places cannot be written).
    pub unprivileged_uid: Option<u32>,
    pub warnings: Vec<String>,
}

impl Isolation {
    /// A short, stable description for cache keys and manifests.
    pub fn fact(&self) -> String {
        format!(
            "python {}; netns {}; pidns {}; uid {}",
            self.python_version,
            self.network_namespace,
            self.pid_namespace,
            self.unprivileged_uid
                .map_or("same".to_string(), |u| u.to_string())
        )
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The interpreter programs run under: `TW_PYTHON`, else the system
/// `/usr/bin/python3` (readable by an unprivileged uid, unlike a pyenv under
/// `/root`), else `python3` from `PATH`, resolved to its real executable.
pub fn find_python() -> Result<(PathBuf, String), SandboxError> {
    let candidates: Vec<String> = match std::env::var("TW_PYTHON") {
        Ok(p) if !p.is_empty() => vec![p],
        _ => vec!["/usr/bin/python3".into(), "python3".into()],
    };
    let mut errors = Vec::new();
    for candidate in candidates {
        let out = Command::new(&candidate)
            .args([
                "-c",
                "import sys; print(sys.executable); print(sys.version.split()[0])",
            ])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                let mut lines = text.lines();
                let exe = lines.next().unwrap_or_default().trim().to_string();
                let version = lines.next().unwrap_or_default().trim().to_string();
                if !exe.is_empty() {
                    return Ok((PathBuf::from(exe), version));
                }
            }
            Ok(o) => errors.push(format!("{candidate}: exit {}", o.status)),
            Err(e) => errors.push(format!("{candidate}: {e}")),
        }
    }
    Err(SandboxError::NoPython(errors.join("; ")))
}

fn probe_ok(program: &str, args: &[&str], expect: &str) -> bool {
    Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == expect)
        .unwrap_or(false)
}

/// Probe what isolation works here (namespaces, uid drop).
pub fn probe() -> Result<Isolation, SandboxError> {
    let (python, python_version) = find_python()?;
    let py = python.to_string_lossy().into_owned();
    let pid_check = "import os; print(os.getpid())";
    let root = is_root();
    let user_ns: &[&str] = if root { &[] } else { &["-r"] };
    let mut warnings = Vec::new();
    let mut args: Vec<&str> = user_ns.to_vec();
    args.extend([
        "--net",
        "--pid",
        "--fork",
        "--kill-child",
        &py,
        "-c",
        pid_check,
    ]);
    let (network_namespace, pid_namespace) = if probe_ok("unshare", &args, "1") {
        (true, true)
    } else {
        let mut net_only: Vec<&str> = user_ns.to_vec();
        net_only.extend(["--net", &py, "-c", "print(1)"]);
        if probe_ok("unshare", &net_only, "1") {
            warnings.push(
                "no PID namespace here: processes a program detaches with setsid() may outlive its job"
                    .to_string(),
            );
            (true, false)
        } else {
            warnings.push(
                "no network namespace here (unshare failed): programs CAN reach the network"
                    .to_string(),
            );
            (false, false)
        }
    };
    let unprivileged_uid = if root {
        let uid = UNPRIVILEGED_UID.to_string();
        let ok = probe_ok(
            "setpriv",
            &[
                "--reuid",
                &uid,
                "--regid",
                &uid,
                "--clear-groups",
                &py,
                "-S",
                "-c",
                "import json, email, decimal; print(1)",
            ],
            "1",
        );
        if ok {
            Some(UNPRIVILEGED_UID)
        } else {
            warnings.push(format!(
                "{py} cannot run as uid {UNPRIVILEGED_UID}: programs run as root (no process limit); set TW_PYTHON to a system interpreter"
            ));
            None
        }
    } else {
        warnings.push(
            "tw is not root: programs run as your uid, so the process limit counts your other processes"
                .to_string(),
        );
        None
    };
    Ok(Isolation {
        python,
        python_version,
        network_namespace,
        pid_namespace,
        unprivileged_uid,
        warnings,
    })
}

static ISOLATION: OnceLock<Result<Isolation, String>> = OnceLock::new();

/// The process-wide isolation probe (run once).
pub fn isolation() -> Result<&'static Isolation, SandboxError> {
    ISOLATION
        .get_or_init(|| probe().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| SandboxError::NoPython(e.clone()))
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Worker {
    fn spawn(iso: &Isolation, dir: &Path) -> Result<Worker, SandboxError> {
        let py = iso.python.to_string_lossy().into_owned();
        let mut argv: Vec<String> = Vec::new();
        if iso.network_namespace {
            argv.push("unshare".into());
            if !is_root() {
                argv.push("-r".into());
            }
            argv.push("--net".into());
            if iso.pid_namespace {
                argv.extend(["--pid", "--fork", "--kill-child"].map(String::from));
            }
        }
        argv.push(py);
        // -s -S: no site-packages; -B: no .pyc writes. Not -I/-E: the cleared
        // environment below is the whole environment, PYTHONHASHSEED included.
        argv.extend(["-s", "-S", "-B", "-c", WORKER].map(String::from));
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("HOME", dir)
            .env("PYTHONHASHSEED", "0")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .env("OMP_NUM_THREADS", "1")
            .env("TW_SANDBOX_DIR", dir)
            .env(
                "TW_DROP_UID",
                iso.unprivileged_uid
                    .map_or("-1".to_string(), |u| u.to_string()),
            )
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| SandboxError::Spawn(format!("{}: {e}", argv[0])))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        let mut worker = Worker {
            child,
            stdin,
            lines,
        };
        match worker.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("\"ready\": true") => Ok(worker),
            Ok(line) => {
                worker.kill();
                Err(SandboxError::Spawn(format!("unexpected greeting: {line}")))
            }
            Err(_) => {
                worker.kill();
                Err(SandboxError::Spawn("the worker did not start".into()))
            }
        }
    }

    fn kill(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send a job and wait for its reply; `None` if the worker died or hung.
    fn run(&mut self, job: &Job, id: u64) -> Option<Result<JobReport, String>> {
        let mut line = job.wire(id).to_string();
        line.push('\n');
        if self.stdin.write_all(line.as_bytes()).is_err() || self.stdin.flush().is_err() {
            return None;
        }
        match self.lines.recv_timeout(job.hard_deadline()) {
            Ok(reply) => {
                let value: serde_json::Value = match serde_json::from_str(&reply) {
                    Ok(v) => v,
                    Err(e) => return Some(Err(format!("malformed worker reply: {e}"))),
                };
                if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
                    return Some(Err(format!("worker error: {error}")));
                }
                Some(serde_json::from_value::<JobReport>(value).map_err(|e| e.to_string()))
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A set of warm workers; [`Sandbox::run_all`] spreads jobs over them.
pub struct Sandbox {
    isolation: &'static Isolation,
    dir: tempfile::TempDir,
    workers: usize,
}

impl Sandbox {
    /// `workers`: parallel worker processes (default: the number of cores).
    pub fn new(workers: Option<usize>) -> Result<Sandbox, SandboxError> {
        let isolation = isolation()?;
        let dir = tempfile::Builder::new().prefix("tw-sandbox-").tempdir()?;
        // Unprivileged children need to traverse into their job directories.
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let workers = workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        Ok(Sandbox {
            isolation,
            dir,
            workers,
        })
    }

    pub fn isolation(&self) -> &Isolation {
        self.isolation
    }

    /// Run every job; reports come back in job order. `progress` is called once per finished job.
    pub fn run_all(&self, jobs: &[Job], progress: &(dyn Fn() + Sync)) -> Vec<JobReport> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<std::sync::Mutex<Option<JobReport>>> =
            jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
        let threads = self.workers.min(jobs.len()).max(1);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut worker: Option<Worker> = None;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= jobs.len() {
                            break;
                        }
                        let report = self.run_one(&mut worker, &jobs[i], i as u64);
                        *slots[i].lock().expect("slot lock") = Some(report);
                        progress();
                    }
                });
            }
        });
        slots
            .into_iter()
            .map(|s| s.into_inner().expect("slot lock").expect("every job ran"))
            .collect()
    }

    /// Run one job on this thread's worker, starting or replacing it as needed.
    fn run_one(&self, worker: &mut Option<Worker>, job: &Job, id: u64) -> JobReport {
        if job.tests.is_empty() {
            return JobReport {
                results: Vec::new(),
                wall: 0.0,
            };
        }
        if worker.is_none() {
            match Worker::spawn(self.isolation, self.dir.path()) {
                Ok(w) => *worker = Some(w),
                Err(e) => return JobReport::failed_all(job, Verdict::SandboxError, &e.to_string()),
            }
        }
        let w = worker.as_mut().expect("worker present");
        match w.run(job, id) {
            Some(Ok(report)) => report,
            Some(Err(message)) => JobReport::failed_all(job, Verdict::SandboxError, &message),
            None => {
                // The worker died or hung on this job: replace it, and blame the job.
                let exited = w.child.try_wait().ok().flatten().is_some();
                *worker = None;
                if exited {
                    JobReport::failed_all(
                        job,
                        Verdict::RuntimeError,
                        "the sandbox worker was killed while running this program",
                    )
                } else {
                    JobReport::failed_all(
                        job,
                        Verdict::Timeout,
                        "the sandbox worker stopped answering (whole-job limit exceeded)",
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
