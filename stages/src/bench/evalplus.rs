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
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
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
        progress: &(dyn Fn(usize) + Sync),
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
    job.repr_passing_outputs = false;
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
    job.repr_passing_outputs = false;
    job.label = Some(format!(
        "{} sample {} ({name})",
        sample.task_id, sample.index
    ));
    job
}

/// Grade `samples`: expected outputs come from running the canonical
/// solution here, with its time per input setting the per-test limits.
/// Jobs are handed out as they become ready (`Sandbox::run_dynamic`): every
/// reference first, a problem's samples as soon as its base suite is built
/// (so no worker waits for the slowest reference), and a sample's plus suite
/// only once its base suite passed (plus_pass needs both, and a base failure
/// is the sample's detail): four in five plus jobs are never forked here.
/// Memory stays flat: one small outcome per sample.
fn grade(
    problems: &[Problem],
    samples: &[Sample],
    settings: &ScoreSettings,
    sandbox: &Sandbox,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Graded, StageError> {
    #[derive(Clone, Copy)]
    enum Task {
        /// The canonical solution of a problem on suite 0 (base) or 1 (plus).
        Reference(usize, usize),
        /// A sample on suite 0 or 1.
        Sample(usize, usize),
    }
    struct State {
        ready: VecDeque<Task>,
        handed: Vec<Task>,
        suites: Vec<[Option<Arc<Vec<TestCase>>>; 2]>,
        failed: Vec<bool>,
        /// Samples whose base suite passed before their plus suite was built.
        waiting: Vec<Vec<usize>>,
        outcomes: Vec<[Option<SuiteOutcome>; 2]>,
    }
    let index: BTreeMap<&str, usize> = problems
        .iter()
        .enumerate()
        .map(|(i, p)| (p.task_id.as_str(), i))
        .collect();
    let problem_of: Vec<usize> = samples.iter().map(|s| index[s.task_id.as_str()]).collect();
    let mut samples_of = vec![Vec::new(); problems.len()];
    for (s, &p) in problem_of.iter().enumerate() {
        samples_of[p].push(s);
    }
    let state = RefCell::new(State {
        ready: (0..problems.len())
            .flat_map(|p| [Task::Reference(p, 0), Task::Reference(p, 1)])
            .collect(),
        handed: Vec::new(),
        suites: vec![[None, None]; problems.len()],
        failed: vec![false; problems.len()],
        waiting: vec![Vec::new(); problems.len()],
        outcomes: vec![[None, None]; samples.len()],
    });
    let summary = sandbox.run_dynamic(
        &mut || {
            let mut st = state.borrow_mut();
            let task = st.ready.pop_front()?;
            st.handed.push(task);
            Some(match task {
                Task::Reference(p, k) => {
                    let inputs = [&problems[p].base_input, &problems[p].plus_input][k];
                    reference_job(&problems[p], inputs, settings)
                }
                Task::Sample(s, k) => {
                    let p = problem_of[s];
                    let suite = st.suites[p][k].as_ref().expect("suite built");
                    sample_job(
                        &problems[p],
                        &samples[s],
                        suite,
                        ["base", "plus"][k],
                        settings,
                    )
                }
            })
        },
        &mut |i, report| {
            let mut guard = state.borrow_mut();
            let st = &mut *guard;
            match st.handed[i] {
                Task::Reference(p, k) => {
                    let inputs = [&problems[p].base_input, &problems[p].plus_input][k];
                    let (tests, passed) = suite_tests(inputs, report, settings);
                    st.failed[p] |= !passed;
                    st.suites[p][k] = Some(Arc::new(tests));
                    let now_ready: Vec<usize> = if k == 0 {
                        samples_of[p].clone()
                    } else {
                        std::mem::take(&mut st.waiting[p])
                    };
                    st.ready
                        .extend(now_ready.into_iter().map(|s| Task::Sample(s, k)));
                }
                Task::Sample(s, k) => {
                    let passed = report.passed();
                    st.outcomes[s][k] = Some((passed, first_failure(&report)));
                    let p = problem_of[s];
                    if k == 1 || !passed {
                        progress(s);
                    } else if st.suites[p][1].is_some() {
                        // Plus jobs first: they finish the samples begun.
                        st.ready.push_front(Task::Sample(s, 1));
                    } else {
                        st.waiting[p].push(s);
                    }
                }
            }
        },
    )?;
    let State {
        failed,
        mut outcomes,
        ..
    } = state.into_inner();
    let reference_failures = problems
        .iter()
        .zip(&failed)
        .filter(|(_, f)| **f)
        .map(|(p, _)| p.task_id.clone())
        .collect();
    let results = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let [base, plus] = &mut outcomes[i];
            let (base_pass, base_failure) = base.take().expect("base graded");
            let (plus_passed, plus_failure) = plus.take().unwrap_or((false, None));
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
