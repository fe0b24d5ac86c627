//! Reference runs for `load_benchmark`: finding the calls a benchmark's test
//! script makes (HumanEval's `check`, MBPP's asserts), evaluating test inputs
//! written as Python source, and computing every expected output by running
//! the reference solution, in the sandbox. A test the reference cannot run is
//! dropped and counted, never silently.

use super::problem::{Loaded, Spec};
use crate::api::{Progress, StageError};
use crate::python::sandbox::{Comparator, Job, Limits, Mode, Sandbox, Tagged, TestCase, Verdict};
use serde_json::Value;
use std::collections::BTreeMap;

/// Finds the calls a test script makes to the function under test. Reads
/// `{"script", "code", "entry"}` on stdin; prints `{"entry", "calls", "skipped"}`.
const SPLIT_CALLS: &str = r#"
import ast, json, sys

req = json.loads(sys.stdin.read())
script = req["script"]
tree = ast.parse(script)
entry = req.get("entry")
if not entry:
    defined = []
    try:
        for node in ast.parse(req.get("code") or "").body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.append(node.name)
    except SyntaxError:
        pass
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in defined:
            entry = node.func.id
            break
names = {"candidate", entry}
calls, skipped, seen = [], 0, set()

class Calls(ast.NodeVisitor):
    def visit_Call(self, node):
        global skipped
        if isinstance(node.func, ast.Name) and node.func.id in names:
            if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
                skipped += 1
                return
            source = ", ".join(ast.get_source_segment(script, a) for a in node.args)
            if source not in seen:
                seen.add(source)
                calls.append(source)
            return
        self.generic_visit(node)

Calls().visit(tree)
print(json.dumps({"entry": entry, "calls": calls, "skipped": skipped}))
"#;

/// Turn every `Script` test into `Source` tests, one per call found.
pub fn split_calls(
    loaded: &mut Loaded,
    sandbox: &Sandbox,
    limits: &Limits,
) -> Result<(), StageError> {
    let mut jobs = Vec::new();
    let mut owners = Vec::new();
    for (i, problem) in loaded.problems.iter().enumerate() {
        for spec in &problem.tests {
            if let Spec::Script { script } = spec {
                let request = serde_json::json!({
                    "script": script,
                    "code": problem.reference,
                    "entry": problem.entry_point,
                });
                let mut job = Job::new(Mode::Stdio, SPLIT_CALLS);
                job.tests = vec![TestCase {
                    stdin: Some(request.to_string()),
                    ..TestCase::default()
                }]
                .into();
                job.limits = limits.clone();
                job.comparator = Comparator::Exact;
                jobs.push(job);
                owners.push(i);
            }
        }
    }
    if jobs.is_empty() {
        return Ok(());
    }
    let reports = sandbox.run_all(&jobs, &|| {})?;
    let mut found: BTreeMap<usize, (Option<String>, Vec<String>)> = BTreeMap::new();
    for (owner, report) in owners.into_iter().zip(reports) {
        let task = loaded.problems[owner].task_id.clone();
        let result = report.results.first();
        let parsed = result
            .filter(|r| r.verdict == Verdict::Pass)
            .and_then(|r| r.output.as_ref().and_then(Tagged::as_text))
            .and_then(|text| serde_json::from_str::<Value>(text.trim()).ok());
        let Some(parsed) = parsed else {
            let why = result
                .map(|r| {
                    format!(
                        "{} {}",
                        r.verdict.as_str(),
                        r.exc_message.clone().unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| "no report".into());
            loaded.drop_test(&task, format!("its test script could not be parsed: {why}"));
            continue;
        };
        let skipped = parsed.get("skipped").and_then(Value::as_u64).unwrap_or(0);
        for _ in 0..skipped {
            loaded.drop_test(&task, "a call with keyword or starred arguments");
        }
        let entry = parsed
            .get("entry")
            .and_then(Value::as_str)
            .map(String::from);
        let calls = parsed
            .get("calls")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let slot = found.entry(owner).or_default();
        slot.0 = slot.0.take().or(entry);
        slot.1.extend::<Vec<String>>(calls);
    }
    for (i, problem) in loaded.problems.iter_mut().enumerate() {
        let had_script = problem
            .tests
            .iter()
            .any(|t| matches!(t, Spec::Script { .. }));
        if !had_script {
            continue;
        }
        problem.tests.retain(|t| !matches!(t, Spec::Script { .. }));
        if let Some((entry, calls)) = found.remove(&i) {
            if problem.entry_point.is_none() {
                problem.entry_point = entry;
            }
            problem
                .tests
                .extend(calls.into_iter().map(|source| Spec::Source {
                    source,
                    suite: "base",
                }));
        }
    }
    Ok(())
}

/// A reference run of one test: (arguments, output), or why it failed.
type Outcome = Result<(Value, Value), String>;

/// Evaluate `Source` inputs and compute every expected output by running the
/// reference, one sandbox job per problem.
pub fn run_reference(
    loaded: &mut Loaded,
    sandbox: &Sandbox,
    limits: &Limits,
    progress: &dyn Progress,
) -> Result<(), StageError> {
    let mut jobs = Vec::new();
    let mut owners = Vec::new();
    for (i, problem) in loaded.problems.iter().enumerate() {
        let pending: Vec<&Spec> = problem
            .tests
            .iter()
            .filter(|t| matches!(t, Spec::Args { .. } | Spec::Source { .. }))
            .collect();
        if pending.is_empty() {
            continue;
        }
        let (Some(reference), Some(entry)) = (&problem.reference, &problem.entry_point) else {
            continue;
        };
        // `_tw_case(kind, case)` returns `[args, output]`: the arguments as given
        // (`args`) or evaluated from their source (`source`, by index), and what
        // the reference returns on a copy of them.
        let mut lambdas = Vec::new();
        let mut cases = Vec::with_capacity(pending.len());
        for spec in &pending {
            let (kind, case) = match spec {
                Spec::Args { args, .. } => ("args", args.clone()),
                Spec::Source { source, .. } => {
                    lambdas.push(format!("    lambda: [{source}],"));
                    ("source", Value::from(lambdas.len() - 1))
                }
                _ => unreachable!("only pending tests are collected"),
            };
            cases.push(TestCase {
                args: Some(Value::Array(vec![Value::String(kind.into()), case])),
                ..TestCase::default()
            });
        }
        let program = format!(
            "{reference}\n\nimport copy as _tw_copy\ncandidate = {entry}\n_tw_sources = [\n{}\n]\n\n\
             def _tw_case(kind, case):\n    args = list(case) if kind == 'args' else _tw_sources[case]()\n    \
             return [args, {entry}(*_tw_copy.deepcopy(args))]\n",
            lambdas.join("\n"),
        );
        let mut job = Job::new(Mode::Function, program);
        job.entry_point = Some("_tw_case".into());
        job.tests = cases.into();
        job.limits = limits.clone();
        job.comparator = Comparator::Exact;
        job.keep_output_values = true;
        jobs.push(job);
        owners.push(i);
    }
    progress.set_total(jobs.len() as u64);
    let reports = sandbox.run_all(&jobs, &|| progress.inc(1))?;
    let mut results: BTreeMap<usize, Vec<Outcome>> = BTreeMap::new();
    for (owner, report) in owners.into_iter().zip(reports) {
        let outcomes = report
            .results
            .iter()
            .map(
                |r| match (&r.verdict, r.output.as_ref().map(Tagged::value)) {
                    (Verdict::Pass, Some(Value::Array(pair))) if pair.len() == 2 => {
                        Ok((pair[0].clone(), pair[1].clone()))
                    }
                    (verdict, _) => Err(format!(
                        "the reference gave {}{}",
                        verdict.as_str(),
                        r.exc_message
                            .as_ref()
                            .map(|m| format!(" ({}: {m})", r.exc_type.clone().unwrap_or_default()))
                            .unwrap_or_default()
                    )),
                },
            )
            .collect();
        results.insert(owner, outcomes);
    }
    let mut drops = Vec::new();
    for (i, problem) in loaded.problems.iter_mut().enumerate() {
        let mut outcomes = results.remove(&i).unwrap_or_default().into_iter();
        let mut tests = Vec::with_capacity(problem.tests.len());
        for spec in std::mem::take(&mut problem.tests) {
            match spec {
                Spec::Args { suite, .. } | Spec::Source { suite, .. } => match outcomes.next() {
                    Some(Ok((args, out))) => tests.push(Spec::Ready {
                        input: args,
                        expected: Some(out),
                        public: false,
                        suite,
                    }),
                    Some(Err(why)) => drops.push((problem.task_id.clone(), why)),
                    None => drops.push((
                        problem.task_id.clone(),
                        "no reference to compute the expected output".into(),
                    )),
                },
                ready => tests.push(ready),
            }
        }
        problem.tests = tests;
    }
    for (task, why) in drops {
        loaded.drop_test(&task, why);
    }
    Ok(())
}
