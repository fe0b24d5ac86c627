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
use crate::api::rows::{Row, cell_text};
use crate::python::pyvalue;
use crate::python::sandbox::{Comparator, Job, Mode, Sandbox, TestCase, Verdict};
use serde_json::Value;
use std::collections::BTreeMap;

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
    ) -> Option<Graded> {
        Some(grade(problems, samples, settings, sandbox, progress))
    }
}

/// One suite (base or plus inputs) of a sample, or of the canonical solution
/// when `expected` is `None` (then with generous limits, outputs recorded).
fn job(
    problem: &Problem,
    code: &str,
    inputs: &[Value],
    expected: Option<&[(Value, f64)]>,
    settings: &ScoreSettings,
) -> Job {
    let min = settings.timeout_or(TIMEOUT);
    let mut job = Job::new(Mode::Function, code);
    job.entry_point = Some(problem.entry_point.clone());
    job.comparator = Comparator::Evalplus;
    job.atol = problem.atol;
    job.dataset = Some("humaneval".into());
    job.limits = limits(settings, min);
    let mut total = 0.0;
    job.tests = inputs
        .iter()
        .enumerate()
        .map(|(i, args)| {
            let (expected_value, timeout) = match expected {
                Some(exp) => {
                    let (value, gt_time) = &exp[i];
                    (
                        Some(value.clone()),
                        min.max(settings.gt_time_factor * gt_time),
                    )
                }
                // Running the canonical solution: generous limits, outputs are recorded.
                None => (None, 20.0),
            };
            total += timeout;
            TestCase {
                args_json: Some(args.clone()),
                expected: expected_value,
                timeout: Some(timeout),
                ..TestCase::default()
            }
        })
        .collect();
    if expected.is_some() {
        job.limits.backstop = Some(total.min(settings.max_seconds_per_suite) + 1.0);
        // EvalPlus scores with fast_check: a suite stops at its first failure.
        job.stop_at_first_failure = true;
        job.keep_output_values = false;
    }
    job
}

/// Grade `samples`: expected outputs come from running the canonical
/// solution here, with its time per input setting the per-test limits.
/// Returns the results and the problems whose canonical solution failed our
/// own run (there should be none).
fn grade(
    problems: &[Problem],
    samples: &[Sample],
    settings: &ScoreSettings,
    sandbox: &Sandbox,
    progress: &(dyn Fn() + Sync),
) -> Graded {
    let by_id: BTreeMap<&str, &Problem> =
        problems.iter().map(|p| (p.task_id.as_str(), p)).collect();
    let mut reference_failures = Vec::new();
    let mut reference_jobs = Vec::new();
    for p in problems {
        let code = format!("{}{}", p.prompt, p.canonical_solution);
        reference_jobs.push(job(p, &code, &p.base_input, None, settings));
        reference_jobs.push(job(p, &code, &p.plus_input, None, settings));
    }
    let reference = sandbox.run_all(&reference_jobs, &|| {});
    let mut expected: BTreeMap<&str, [Vec<(Value, f64)>; 2]> = BTreeMap::new();
    for (i, p) in problems.iter().enumerate() {
        let mut suites: [Vec<(Value, f64)>; 2] = [Vec::new(), Vec::new()];
        for (s, suite) in suites.iter_mut().enumerate() {
            for r in &reference[2 * i + s].results {
                if r.verdict != Verdict::Pass && !reference_failures.contains(&p.task_id) {
                    reference_failures.push(p.task_id.clone());
                }
                suite.push((
                    r.output.clone().unwrap_or(Value::Null),
                    r.duration.unwrap_or(0.0),
                ));
            }
        }
        expected.insert(p.task_id.as_str(), suites);
    }
    let mut jobs = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        let p = by_id[s.task_id.as_str()];
        let exp = &expected[s.task_id.as_str()];
        jobs.push(job(p, &s.code, &p.base_input, Some(&exp[0]), settings));
        jobs.push(job(p, &s.code, &p.plus_input, Some(&exp[1]), settings));
    }
    let reports = sandbox.run_all(&jobs, &|| {});
    let results = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let base = &reports[2 * i];
            let plus = &reports[2 * i + 1];
            let base_pass = base.passed();
            let plus_pass = base_pass && plus.passed();
            let (verdict, detail) = first_failure(base)
                .map(|(v, d)| (v, format!("base {d}")))
                .or_else(|| first_failure(plus).map(|(v, d)| (v, format!("plus {d}"))))
                .unwrap_or((Verdict::Pass, String::new()));
            progress();
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
    (results, reference_failures)
}
