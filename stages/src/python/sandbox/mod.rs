//! The sandbox: runs untrusted Python programs and grades them where the
//! programs cannot reach.
//!
//! # Design
//! One warm worker per core, each in its own bubblewrap sandbox
//! ([`isolation`]). In it, `worker.py`'s judge reads jobs and keeps their
//! expected values; a zygote, forked before the judge reads any job into new
//! user, PID and mount namespaces whose PID 1 it is, forks each program's
//! process, which reads only its own job, drops every capability and runs
//! under rlimits in a `/tmp` emptied after every job. The program's process
//! receives inputs only and reports outputs, one frame per test with a
//! per-job nonce, in order; the judge compares. Anything else on the channel
//! is a [`Verdict::ProtocolViolation`]; a program that ends early fails the
//! tests it did not report. After each job the zygote kills every process
//! the program left. A trivial test costs a few milliseconds
//! (`bench/sandbox.sh`).
//!
//! Failures of the sandbox itself (a worker that cannot start, dies, hangs or
//! answers garbage) are never verdicts: the job is retried once on a fresh
//! worker, then the run fails with [`SandboxError::Worker`] naming the worker
//! and the job. Retries are counted in [`RunSummary`] (and manifests). Every
//! job has a backstop; the judge kills a program past it, and `tw` kills a
//! worker that does not answer 10 s after it, so no run hangs on its last jobs.
//!
//! [`Sandbox::run_each`] takes jobs lazily and hands each report over as it
//! arrives, so memory does not grow with the number of samples.
//!
//! # Program shapes ([`Mode`])
//! - `function`: the program defines `entry_point` (or `Class.method`, the class
//!   instantiated once); each test calls it with `args` and the output is compared
//!   with `expected` by the job's [`Comparator`], in the judge. Module state is
//!   shared across the tests of a job, as in EvalPlus and LiveCodeBench.
//! - `stdio`: the program runs as `__main__` once per test with `stdin`; its
//!   printed output is compared with `expected`.
//! - `script`: the program runs as `__main__`; it passes if it finishes without
//!   an exception (HumanEval's `check` programs, CRUXEval's asserts). The test
//!   code runs beside the program, so a program written against tw that
//!   inspects its own interpreter can still forge a pass (README, "What a
//!   program can still do"); `calls` mode cannot be forged that way.
//! - `calls`: the benchmark's check runs in the judge with the program's names
//!   answered by the program's process, one call at a time.
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

mod error;
mod isolation;
mod job;
mod pool;
mod report;
mod trace;
mod value;

pub use error::{INSTALL_HINT, SandboxError};
pub use isolation::{
    Engine, Isolation, Policy, TMPFS_BYTES, UNPRIVILEGED_UID, find_python, policy, set_policy,
};
pub use job::{Comparator, Job, Limits, Mode, TestCase};
pub use pool::{RunSummary, Sandbox, isolation};
pub use report::{JobReport, TestReport, Verdict};
pub use trace::{Trace, TraceEvent, TraceEventKind, TraceSettings};
pub use value::Tagged;

/// The tracer (`tracer.py`), also usable on its own: `python3 tracer.py --help`.
pub const TRACER: &str = include_str!("tracer.py");

#[cfg(test)]
mod tests;
