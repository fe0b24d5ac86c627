//! Running candidate programs on a task's tests in the sandbox, and the test
//! feedback a model is shown: each failing test, with the trace of the
//! failing run in the configured representation.

use crate::api::{RunCtx, StageError};
use crate::python::programs::{self, ProgramMode};
use crate::python::sandbox::{
    Comparator, Job, JobReport, Sandbox, SandboxError, Tagged, TestCase, TraceSettings, Verdict,
};
use crate::text::trace_render::{RenderOptions, RenderRequest, TraceRenderer};
use crate::text::tracemodel::RunRecord;
use serde_json::{Map, Value};
use std::collections::HashMap;

use super::tasks::Task;
use crate::bench::grading;
use crate::python::pyvalue;
use crate::python::sandbox;

/// How programs run: limits and the trace representation for feedback.
pub struct Runner {
    pub sandbox: Sandbox,
    pub timeout: f64,
    pub memory_mb: u64,
    pub trace: Option<(TraceRenderer, RenderOptions)>,
    pub comparator: Option<Comparator>,
}

/// What one program did on one suite.
#[derive(Debug, Clone, Default)]
pub struct SuiteResult {
    pub passed: usize,
    pub total: usize,
    pub reports: Vec<sandbox::TestReport>,
    /// Which tests are EvalPlus plus tests (private suites; empty otherwise).
    pub plus: Vec<bool>,
}

impl SuiteResult {
    /// Every test passed (base and plus, where there are plus tests): a
    /// program that passes its benchmark.
    pub fn all_passed(&self) -> bool {
        self.total > 0 && self.passed == self.total
    }

    /// Every test that is not a plus test passed: EvalPlus's base score.
    /// Without plus tests, the same as [`SuiteResult::all_passed`].
    pub fn base_passed(&self) -> bool {
        if !self.plus.iter().any(|p| *p) {
            return self.all_passed();
        }
        let mut base = 0usize;
        for (i, is_plus) in self.plus.iter().enumerate() {
            if !is_plus {
                base += 1;
                if self
                    .reports
                    .get(i)
                    .is_none_or(|r| r.verdict != Verdict::Pass)
                {
                    return false;
                }
            }
        }
        base > 0
    }

    pub fn accuracy(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.passed as f64 / self.total as f64
        }
    }
}

/// Which suite of a task to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    Public,
    Private,
}

impl Runner {
    /// A sandbox for a stage's runs; `representation` traces public runs.
    pub fn open(
        ctx: &mut RunCtx<'_>,
        timeout: f64,
        memory_mb: u64,
        representation: &Option<String>,
        workers: Option<usize>,
    ) -> Result<Runner, StageError> {
        Ok(Runner {
            sandbox: programs::open_sandbox(ctx, workers)?,
            timeout,
            memory_mb,
            trace: open_representation(ctx, representation)?,
            comparator: None,
        })
    }

    /// Record the sandbox's retries in the stage's manifest.
    pub fn note(&self, ctx: &mut RunCtx<'_>) {
        programs::note_retries(ctx, &self.sandbox);
    }

    fn job(
        &self,
        task: &Task,
        program: &str,
        tests: Vec<TestCase>,
        traced: bool,
        fast: bool,
    ) -> Job {
        let mut job = Job::new(task.mode.sandbox_mode(), program.to_string());
        job.entry_point = task.entry_point.clone();
        // The benchmark's comparison, where its tests record one; a
        // problem's `atol` alone asks for EvalPlus's comparator.
        let default = if task.atol > 0.0 {
            Comparator::Evalplus
        } else {
            task.mode.default_comparator()
        };
        task.rules
            .apply(&mut job, self.comparator, task.atol, default);
        job.tests = tests.into();
        job.limits = programs::limits(self.timeout, self.memory_mb);
        job.stop_at_first_failure = fast;
        if traced {
            job.trace = Some(TraceSettings::default());
        }
        job
    }

    /// Run each `(task index, program)` on a suite. Duplicate programs of a
    /// task run once. Public runs are traced when a representation is set.
    pub fn run(
        &self,
        tasks: &[Task],
        programs: &[(usize, String)],
        suite: Suite,
    ) -> Result<Vec<SuiteResult>, SandboxError> {
        let mut unique: HashMap<(usize, &str), usize> = HashMap::new();
        let mut jobs = Vec::new();
        let mut plus: Vec<Vec<bool>> = Vec::new();
        let mut slot = Vec::with_capacity(programs.len());
        for (t, program) in programs {
            let next = jobs.len();
            let j = *unique.entry((*t, program.as_str())).or_insert(next);
            if j == next {
                let task = &tasks[*t];
                let job = match (suite, &task.rules.check) {
                    // The benchmark's own check grades, as its harness does.
                    (Suite::Private, Some(check)) => {
                        grading::check_job(program, check, self.timeout, self.memory_mb << 20)
                    }
                    (Suite::Private, None) => {
                        self.job(task, program, task.private.clone(), false, true)
                    }
                    (Suite::Public, _) => self.job(
                        task,
                        program,
                        task.public.clone(),
                        self.trace.is_some(),
                        false,
                    ),
                };
                jobs.push(job);
                plus.push(match (suite, &task.rules.check) {
                    (Suite::Private, None) => task.private_plus.clone(),
                    _ => Vec::new(),
                });
            }
            slot.push(j);
        }
        let reports = if jobs.iter().any(|j| !j.tests.is_empty()) {
            self.sandbox.run_all(&jobs, &|| {})?
        } else {
            jobs.iter()
                .map(|_| JobReport {
                    results: Vec::new(),
                    wall: 0.0,
                })
                .collect()
        };
        let results: Vec<SuiteResult> = reports
            .into_iter()
            .zip(&jobs)
            .zip(plus)
            .map(|((r, job), plus)| SuiteResult {
                passed: r
                    .results
                    .iter()
                    .filter(|t| t.verdict == Verdict::Pass)
                    .count(),
                total: job.tests.len(),
                reports: r.results,
                plus,
            })
            .collect();
        Ok(slot.into_iter().map(|j| results[j].clone()).collect())
    }

    /// Run programs on inputs without expected outputs; each test's output as text.
    pub fn outputs(
        &self,
        task: &Task,
        programs: &[String],
        inputs: &[TestCase],
    ) -> Result<Vec<Vec<String>>, SandboxError> {
        let jobs: Vec<Job> = programs
            .iter()
            .map(|p| self.job(task, p, inputs.to_vec(), false, false))
            .collect();
        if inputs.is_empty() {
            return Ok(programs.iter().map(|_| Vec::new()).collect());
        }
        Ok(self
            .sandbox
            .run_all(&jobs, &|| {})?
            .into_iter()
            .map(|r| r.results.iter().map(|t| output_text(task, t)).collect())
            .collect())
    }

    /// The trace representation of a run, when one is configured and traced.
    pub fn trace_text(
        &self,
        task: &Task,
        program: &str,
        report: &sandbox::TestReport,
    ) -> Option<String> {
        let (renderer, options) = self.trace.as_ref()?;
        let trace = report.parsed_trace().ok().flatten()?;
        let record = RunRecord {
            run: 0,
            verdict: report.verdict.as_str().to_string(),
            passed: Some(report.verdict == Verdict::Pass),
            input: report.input.clone(),
            input_after: report.input_after.clone(),
            result: report.output.as_ref().map(Tagged::value),
            expected: report.expected.clone(),
            exc_type: report.exc_type.clone(),
            exc_message: report.exc_message.clone(),
            truncated: trace.truncated.clone(),
            events: trace.events,
        };
        renderer
            .render(&RenderRequest {
                id: &task.id,
                program,
                runs: std::slice::from_ref(&record),
                options,
            })
            .ok()
            .map(|t| stable_text(&t))
    }
}

/// Text a model is shown, with what differs between runs of the same program
/// removed: object addresses (`<function f at 0x7f3a...>`) become `0x...`.
/// Without this a prompt built from a run could not be replayed from the ledger.
pub fn stable_text(text: &str) -> String {
    static ADDRESS: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = ADDRESS.get_or_init(|| regex::Regex::new(r"0x[0-9a-fA-F]{6,}").expect("valid regex"));
    re.replace_all(text, "0x...").into_owned()
}

/// What a program printed or returned on a test, as the model is shown it.
pub fn output_text(task: &Task, t: &sandbox::TestReport) -> String {
    stable_text(&raw_output_text(task, t))
}

fn raw_output_text(task: &Task, t: &sandbox::TestReport) -> String {
    match t.verdict {
        Verdict::Pass | Verdict::WrongAnswer => match task.mode {
            ProgramMode::Function => t.output_repr.clone().unwrap_or_default(),
            ProgramMode::Stdio => t
                .output
                .as_ref()
                .and_then(Tagged::as_text)
                .unwrap_or_default(),
        },
        other => format!(
            "{}: {}: {}",
            other.as_str(),
            t.exc_type.clone().unwrap_or_default(),
            t.exc_message.clone().unwrap_or_default()
        ),
    }
}

/// A test's input as the model is shown it.
pub fn input_text(task: &Task, case: &TestCase) -> String {
    match task.mode {
        ProgramMode::Stdio => case.stdin.clone().unwrap_or_default(),
        ProgramMode::Function => {
            if let Some(a) = &case.args {
                pyvalue::args_text(a)
            } else if let Some(a) = &case.args_json {
                pyvalue::args_text(&pyvalue::tagged_from_json(a))
            } else {
                case.args_literal.clone().unwrap_or_default()
            }
        }
    }
}

fn expected_text(task: &Task, case: &TestCase) -> String {
    let expected = case.expected.as_ref().map(|e| e.value());
    match (&task.mode, &expected, &case.expected_json) {
        (ProgramMode::Stdio, Some(Value::String(s)), _) => s.clone(),
        (_, Some(v), _) => pyvalue::repr(v),
        (_, None, Some(v)) => pyvalue::repr(&pyvalue::tagged_from_json(v)),
        _ => case.expected_literal.clone().unwrap_or_default(),
    }
}

/// The feedback of one run on the public tests, as `_feedback.j2` reads it:
/// `{input, expected, output, passed, trace?}` per test; the first failing
/// test carries the trace representation of its run.
pub fn feedback(runner: &Runner, task: &Task, program: &str, result: &SuiteResult) -> Vec<Value> {
    let mut traced_one = false;
    task.public
        .iter()
        .zip(&result.reports)
        .map(|(case, report)| {
            let passed = report.verdict == Verdict::Pass;
            let mut m = Map::new();
            m.insert("input".into(), Value::String(input_text(task, case)));
            m.insert("expected".into(), Value::String(expected_text(task, case)));
            m.insert("output".into(), Value::String(output_text(task, report)));
            m.insert("passed".into(), Value::Bool(passed));
            if !passed && !traced_one {
                traced_one = true;
                if let Some(t) = runner.trace_text(task, program, report) {
                    m.insert("trace".into(), Value::String(format!("\n{t}")));
                }
            }
            Value::Object(m)
        })
        .collect()
}

/// A representation param: a trace template, or `none`.
pub fn open_representation(
    ctx: &RunCtx<'_>,
    representation: &Option<String>,
) -> Result<Option<(TraceRenderer, RenderOptions)>, StageError> {
    let Some(path) = representation else {
        return Ok(None);
    };
    let renderer = TraceRenderer::from_file(&ctx.resolve(path))?;
    // A representation in a strategy renders with the `represent` kind's defaults.
    Ok(Some((renderer, RenderOptions::default())))
}

/// The name a representation is reported under: its template's file stem, or `none`.
pub fn representation_name(representation: &Option<String>) -> String {
    representation
        .as_ref()
        .and_then(|p| {
            std::path::Path::new(p)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "none".into())
}

/// Per-test seconds a strategy's candidates get by default.
pub fn default_timeout() -> f64 {
    6.0
}

pub fn default_memory() -> u64 {
    2048
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_so_prompts_replay() {
        assert_eq!(
            stable_text("<function f at 0x7f3a2b1c9d30> and 0x10"),
            "<function f at 0x...> and 0x10"
        );
    }
}
