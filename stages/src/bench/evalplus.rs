//! EvalPlus: HumanEval+ and MBPP+ (`HumanEvalPlus.jsonl.gz`, MBPP+'s file),
//! the problems with their `base_input` and `plus_input` lists.
//!
//! - Loading: `base_input`, and with `tests: plus` or `all` also
//!   `plus_input`; expected outputs come from running the canonical solution
//!   in the sandbox, as EvalPlus does.
//! - Grading HumanEval+ (EvalPlus's `evaluate`): the solution's `entry_point`
//!   on `base_input` then `plus_input`, outputs equal to the canonical
//!   solution's under its comparator (`atol` for floats); per-test limit
//!   `max(4 s, 4 x canonical time)`; a suite stops at its first failure
//!   (`fast_check`); plus passes when base and plus both pass.

use super::family::{Family, Grading, LoadedRow};
use super::grading::{Graded, SampleResult, ScoreSettings, first_failure, limits};
use super::problem::Sample;
use super::problem::{InputSets, LoadOptions, Parsed, Spec, list, required};
use super::problem::{Problem, atol_field, list_field};
use crate::api::StageError;
use crate::api::rows::{Row, cell_text};
use crate::python::pyvalue;
use crate::python::sandbox::{
    Comparator, Job, JobReport, Mode, Sandbox, Tagged, TestCase, Verdict,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// `mbpp`: MBPP+ (loaded, not graded); else HumanEval+.
pub struct EvalPlusFamily {
    pub mbpp: bool,
}

/// EvalPlus's minimum per-test seconds.
const TIMEOUT: f64 = 4.0;

impl Family for EvalPlusFamily {
    fn load_row(&self, row: &Row, options: &LoadOptions) -> LoadedRow {
        let mut out = Parsed::named(required(row, "task_id", "an EvalPlus")?);
        out.prompt = required(row, "prompt", "an EvalPlus")?;
        out.entry_point = Some(required(row, "entry_point", "an EvalPlus")?);
        out.reference = Some(if !self.mbpp {
            format!(
                "{}{}",
                out.prompt,
                required(row, "canonical_solution", "an EvalPlus")?
            )
        } else {
            cell_text(row, "code")
                .or_else(|| cell_text(row, "canonical_solution"))
                .ok_or("an MBPP+ row has no `code`")?
        });
        out.test_program = cell_text(row, "test");
        out.atol = atol_field(row);
        let mut sets = Vec::new();
        if options.tests != InputSets::Plus {
            sets.push(("base_input", "base"));
        }
        if options.tests != InputSets::Base {
            sets.push(("plus_input", "plus"));
        }
        for (key, suite) in sets {
            for args in list(row, key)? {
                if !args.is_array() {
                    return Err(format!(
                        "{}: an entry of `{key}` is not an argument list",
                        out.task_id
                    ));
                }
                out.tests.push(Spec::Args {
                    args: pyvalue::tagged_from_json(&args),
                    suite,
                });
            }
        }
        if out.tests.is_empty() && options.tests != InputSets::Plus {
            return Err(format!(
                "{}: no `base_input` (is this an EvalPlus file?)",
                out.task_id
            ));
        }
        Ok(Some(out))
    }

    fn grading(&self) -> Option<Grading> {
        (!self.mbpp).then_some(Grading::EvalPlus)
    }

    fn problem(&self, row: &Row) -> Result<Problem, String> {
        let mut p = Problem::common(row);
        super::humaneval::check_ids(&p)?;
        p.base_input = list_field(row, "base_input")?;
        p.plus_input = list_field(row, "plus_input")?;
        p.atol = atol_field(row);
        if p.base_input.is_empty() {
            return Err(format!(
                "{}: no `base_input` (is this HumanEval+?)",
                p.task_id
            ));
        }
        Ok(p)
    }

    fn reference_answer(&self, p: &Problem) -> Result<Option<String>, String> {
        Ok(Some(format!("{}{}", p.prompt, p.canonical_solution)))
    }

    fn timeout(&self) -> f64 {
        TIMEOUT
    }

    fn grade_with_reference(
        &self,
        problems: &[Problem],
        samples: &[Sample],
        settings: &ScoreSettings,
        sandbox: &Sandbox,
        progress: &(dyn Fn() + Sync),
    ) -> Option<Result<Graded, StageError>> {
        Some(grade(problems, samples, settings, sandbox, progress))
    }
}

/// The canonical solution on one suite (base or plus inputs), with
/// generous limits; its outputs and times become the suite's expectations.
fn reference_job(problem: &Problem, inputs: &[Value], settings: &ScoreSettings) -> Job {
    let code = format!("{}{}", problem.prompt, problem.canonical_solution);
    let mut job = Job::new(Mode::Function, code);
    job.entry_point = Some(problem.entry_point.clone());
    job.comparator = Comparator::Evalplus;
    job.atol = problem.atol;
    job.dataset = Some("humaneval".into());
    job.limits = limits(settings, settings.timeout_or(TIMEOUT));
    job.tests = Arc::new(
        inputs
            .iter()
            .map(|args| TestCase {
                args_json: Some(args.clone()),
                timeout: Some(20.0),
                ..TestCase::default()
            })
            .collect(),
    );
    job.label = Some(format!("{} (canonical solution)", problem.task_id));
    job
}

/// A suite's tests: each input with the canonical output and the per-test
/// limit `max(timeout, factor x canonical time)`; built once per problem and
/// shared by every sample's job.
fn suite_tests(
    inputs: &[Value],
    reference: JobReport,
    settings: &ScoreSettings,
) -> (Vec<TestCase>, bool) {
    let min = settings.timeout_or(TIMEOUT);
    let mut all_passed = true;
    let tests = inputs
        .iter()
        .zip(reference.results)
        .map(|(args, r)| {
            all_passed &= r.verdict == Verdict::Pass;
            TestCase {
                args_json: Some(args.clone()),
                expected: Some(r.output.unwrap_or_else(|| Tagged::new(&Value::Null))),
                timeout: Some(min.max(settings.gt_time_factor * r.duration.unwrap_or(0.0))),
                ..TestCase::default()
            }
        })
        .collect();
    (tests, all_passed)
}

/// A suite's result for a sample: passed, and its first failure.
type SuiteOutcome = (bool, Option<(Verdict, String)>);

/// One suite of a sample.
fn sample_job(
    problem: &Problem,
    sample: &Sample,
    suite: &Arc<Vec<TestCase>>,
    name: &str,
    settings: &ScoreSettings,
) -> Job {
    let mut job = Job::new(Mode::Function, sample.code.clone());
    job.entry_point = Some(problem.entry_point.clone());
    job.comparator = Comparator::Evalplus;
    job.atol = problem.atol;
    job.dataset = Some("humaneval".into());
    job.limits = limits(settings, settings.timeout_or(TIMEOUT));
    let total: f64 = suite.iter().filter_map(|t| t.timeout).sum();
    job.limits.backstop = Some(total.min(settings.max_seconds_per_suite) + 1.0);
    job.tests = Arc::clone(suite);
    // EvalPlus scores with fast_check: a suite stops at its first failure.
    job.stop_at_first_failure = true;
    job.keep_output_values = false;
    job.label = Some(format!(
        "{} sample {} ({name})",
        sample.task_id, sample.index
    ));
    job
}

/// Grade `samples`: expected outputs come from running the canonical
/// solution here, with its time per input setting the per-test limits.
/// Each problem's suites are built once; sample jobs are made as workers
/// free up and reduced to a verdict as they finish, so memory stays flat.
fn grade(
    problems: &[Problem],
    samples: &[Sample],
    settings: &ScoreSettings,
    sandbox: &Sandbox,
    progress: &(dyn Fn() + Sync),
) -> Result<Graded, StageError> {
    let mut suites: Vec<[Option<Arc<Vec<TestCase>>>; 2]> = vec![[None, None]; problems.len()];
    let mut failed = vec![false; problems.len()];
    let reference_jobs = problems.iter().flat_map(|p| {
        [
            reference_job(p, &p.base_input, settings),
            reference_job(p, &p.plus_input, settings),
        ]
    });
    let mut summary = sandbox.run_each(reference_jobs, &mut |i, report| {
        let p = &problems[i / 2];
        let inputs = if i % 2 == 0 {
            &p.base_input
        } else {
            &p.plus_input
        };
        let (tests, passed) = suite_tests(inputs, report, settings);
        failed[i / 2] |= !passed;
        suites[i / 2][i % 2] = Some(Arc::new(tests));
    })?;
    let reference_failures = problems
        .iter()
        .zip(&failed)
        .filter(|(_, f)| **f)
        .map(|(p, _)| p.task_id.clone())
        .collect();
    let index: BTreeMap<&str, usize> = problems
        .iter()
        .enumerate()
        .map(|(i, p)| (p.task_id.as_str(), i))
        .collect();
    let jobs = samples.iter().flat_map(|s| {
        let i = index[s.task_id.as_str()];
        let [base, plus] = &suites[i];
        let p = &problems[i];
        [
            sample_job(p, s, base.as_ref().expect("base suite"), "base", settings),
            sample_job(p, s, plus.as_ref().expect("plus suite"), "plus", settings),
        ]
    });
    // Per job: passed, and the first failure.
    let mut outcomes: Vec<Option<SuiteOutcome>> = vec![None; samples.len() * 2];
    let mut done = vec![0u8; samples.len()];
    let run = sandbox.run_each(jobs, &mut |i, report| {
        outcomes[i] = Some((report.passed(), first_failure(&report)));
        done[i / 2] += 1;
        if done[i / 2] == 2 {
            progress();
        }
    })?;
    summary.retries += run.retries;
    let results = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (base_pass, base_failure) = outcomes[2 * i].take().expect("base graded");
            let (plus_passed, plus_failure) = outcomes[2 * i + 1].take().expect("plus graded");
            let plus_pass = base_pass && plus_passed;
            let (verdict, detail) = base_failure
                .map(|(v, d)| (v, format!("base {d}")))
                .or_else(|| plus_failure.map(|(v, d)| (v, format!("plus {d}"))))
                .unwrap_or((Verdict::Pass, String::new()));
            SampleResult {
                task_id: s.task_id.clone(),
                index: s.index,
                base_pass,
                plus_pass: Some(plus_pass),
                verdict,
                detail,
            }
        })
        .collect();
    Ok(Graded {
        results,
        reference_failures,
        summary,
    })
}
