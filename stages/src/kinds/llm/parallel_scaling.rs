//! `parallel_scaling`: select one of N candidate programs per problem, and
//! score the selection honestly and as the oracle did.
//!
//! # What it does
//! Takes the first `n` candidates of each problem (all when unset; one
//! `generate` run serves every N of a sweep), runs them on the public tests,
//! and selects one by `selection`:
//! - `first`: sample 0 (with `n: 1` on greedy output: plain pass@1);
//! - `random`: a seeded random candidate;
//! - `public_filter`: the first candidate that passes every public test,
//!   else the first with the best public accuracy (the seed's `first`);
//! - `best_of_n`: the most public tests passed, ties broken by a seeded
//!   uniform draw among the tied (BoN with public tests as the reward; the
//!   filter above lets sample order break ties instead);
//! - `output_agreement`: the model writes test inputs (`inputs_template`,
//!   e.g. `test_inputs.j2`); candidates that pass the public tests (all, if
//!   none does) run on them; the one whose outputs agree with the most
//!   others wins (the seed's `generated_tests_majority`);
//! - `output_agreement_all`: the same vote among all candidates, public
//!   tests ignored: what the seed ran as "LLM judge" in Table 3;
//! - `llm_judge_pointwise`: on each generated input with more than one
//!   distinct output, the model (`judge_template`: `judge_pointwise.j2`)
//!   picks the right output; members of that cluster get a vote;
//! - `llm_judge_pairwise`: on each such input, the model compares cluster
//!   representatives two at a time, both orders (`judge_pairwise.j2`); a
//!   consistent win scores 1, a double tie 0.5 each, an inconsistent pair
//!   0; the cluster with the unique best score gets a vote. With
//!   `representation`, each sample shows the trace of its run on the input:
//!   the trace-reading judge the paper describes.
//!
//!   Judges fall back to `output_agreement` when they cast no vote.
//!
//! Scoring: `honest_pass` (the selected program passes the private tests;
//! by the benchmark's own check where `load_benchmark` recorded one) and
//! `oracle_pass` (any of the N does: pass@N, what the seed's "best
//! candidate" measured), both per problem and in `summary`. With EvalPlus
//! plus tests among the private ones these are base scores, and
//! `honest_plus_pass` / `oracle_plus_pass` count a program that passes base
//! and plus (plus counts only with base, as EvalPlus does).
//!
//! Generations graded elsewhere: with `graded: true`, the candidates'
//! verdicts come from an `execute` results table (input `graded`, the same
//! candidates on the same tests) instead of running them again, so one
//! `execute` serves a whole sweep over `n` and rules; `summary` then also
//! gives `pass_at_n_pct`, the unbiased pass@N estimate over every graded
//! sample of each problem (`samples_per_task`), beside the oracle of the
//! first N. This is how to bring generations from vLLM or any other
//! sampler: `load_samples`, `execute`, then `parallel_scaling`
//! (`specs/replay_codegen.yaml`).
//!
//! # Params
//! - `selection` (required), `n` (default all), `seed` (default 0).
//! - `model`: the model that writes inputs and judges (needed by
//!   `output_agreement` and the judges); see `generate` (one endpoint or
//!   a list of them).
//! - `inputs_template`, `judge_template`, `vars`; `max_inputs` (default 8);
//!   `representation` (judges only; default none).
//! - `sampling`, `judge_temperature` (default 0), `split` (as for
//!   `sequential_scaling`), `timeout` (default 6), `memory_mb` (default
//!   2048), `labels`.
//! - `graded` (default false), `candidate_id` (default: row numbers, as
//!   `execute` numbers candidates).
//! - `on_ungradable` (`fail` | `skip`, default `fail`): a problem with
//!   nothing to grade it stops the stage with an error naming it, or is
//!   left out and counted (`skipped_tasks`).
//!
//! # Inputs
//! - `problems`, `tests`: outputs of `load_benchmark`.
//! - `candidates`: `task_id`, `sample`, `program` (a `generate` or
//!   `load_samples` output).
//! - `graded` (with `graded: true`): `execute`'s `results` for these candidates.
//! - `model` (only with `model: {backend: tch}` and no `path`): an `sft`
//!   stage's `model` output; its checkpoint (full or LoRA) is the model asked.
//!
//! # Outputs
//! - `selected`: per problem: `task_id`, `candidate` (sample index),
//!   `program`, `candidates` (N), `public_passed`, `public_total`,
//!   `generated_inputs`, `judge_calls`, `honest_pass`, `oracle_pass`.
//! - `summary`: `strategy` (`parallel`), `selection`, `representation`,
//!   `n`, `tasks`, `honest_pct`, `oracle_pct`, `honest_plus_pct` and
//!   `oracle_plus_pct` (with plus tests), `pass_at_n_pct` and
//!   `samples_per_task` (graded), plus `labels`.
//!
//! # Caching
//! Params, templates and the candidates' bytes are in the key; test inputs
//! and judgements come through the completion ledger, so changing only `n`
//! or the selection rule asks nothing twice.
//!
//! # Example
//! ```yaml
//! vote:
//!   kind: parallel_scaling
//!   inputs: { problems: he.problems, tests: he.tests, candidates: samples.candidates }
//!   params:
//!     selection: output_agreement
//!     model: { backend: openai, base_url: "http://127.0.0.1:8080/v1", name: smollm2 }
//!     inputs_template: ../templates/prompts/test_inputs.j2
//! ```

use crate::api::artifact;
use crate::api::rows;
use crate::api::rows::nonempty_text;
use crate::api::{FileDep, InputSlot, LlmCalls, PlanEnv, Problem, RunCtx, Stage, StageError};
use crate::bench::task_id::{TaskIds, example_list};
use crate::llm::reply;
use crate::llm::strategy::prompts;
use crate::llm::strategy::prompts::SamplingParams;
use crate::llm::strategy::runner;
use crate::llm::strategy::runner::{Suite, SuiteResult};
use crate::llm::strategy::selection::{self, Judge, Pool, Selection};
use crate::llm::strategy::tasks;
use crate::llm::strategy::tasks::TestSplit;
use crate::llm::{Llm, ModelSpec};
use crate::python::programs;
use crate::python::programs::Ungradable;
use crate::python::sandbox::{TestCase, TestReport, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub struct ParallelScaling;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelParams {
    pub selection: Selection,
    #[serde(default)]
    pub n: Option<usize>,
    #[serde(default)]
    pub model: Option<ModelSpec>,
    #[serde(default)]
    pub inputs_template: Option<String>,
    #[serde(default)]
    pub judge_template: Option<String>,
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
    #[serde(default = "default_max_inputs")]
    pub max_inputs: usize,
    #[serde(default)]
    pub representation: Option<String>,
    #[serde(default)]
    pub sampling: SamplingParams,
    #[serde(default)]
    pub judge_temperature: f64,
    #[serde(default)]
    pub split: TestSplit,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "crate::llm::strategy::runner::default_timeout")]
    pub timeout: f64,
    #[serde(default = "crate::llm::strategy::runner::default_memory")]
    pub memory_mb: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Read each candidate's verdicts from an `execute` results table (input
    /// `graded`) instead of running the candidates again.
    #[serde(default)]
    pub graded: bool,
    /// The candidates' id column, as `execute`'s `candidate_id` named it
    /// (default: none, candidates are numbered by row, as `execute` does).
    #[serde(default)]
    pub candidate_id: Option<String>,
    #[serde(default)]
    pub on_ungradable: Ungradable,
}

fn default_max_inputs() -> usize {
    8
}

impl Stage for ParallelScaling {
    const KIND: &'static str = "parallel_scaling";
    // 2: graded input, distinct best of N, base and plus, no grading against nothing.
    const VERSION: u32 = 2;
    const SOURCE: &'static str = include_str!("parallel_scaling.rs");
    const OUTPUTS: &'static [&'static str] = &["selected", "summary"];
    type Params = ParallelParams;

    fn inputs(p: &ParallelParams) -> Vec<InputSlot> {
        let mut slots = vec![
            InputSlot::one("problems"),
            InputSlot::one("tests"),
            InputSlot::one("candidates"),
        ];
        if p.graded {
            slots.push(InputSlot::one("graded"));
        }
        slots.extend(p.model.iter().flat_map(ModelSpec::input_slot));
        slots
    }

    fn llm_calls(p: &ParallelParams) -> Option<LlmCalls> {
        let inputs = p.max_inputs as u64;
        let (per_row, formula) = match p.selection {
            s if !s.needs_inputs() => return None,
            Selection::OutputAgreement => (Some(1), "1 test-input reply".to_string()),
            Selection::LlmJudgePointwise => (
                Some(1 + inputs),
                format!("1 test-input reply + {inputs} judgements"),
            ),
            // Every pair of distinct-output clusters, both orders, on every input.
            _ => (
                p.n.map(|n| 1 + inputs * (n * n.saturating_sub(1)) as u64),
                match p.n {
                    Some(n) => format!(
                        "1 test-input reply + {inputs} inputs x {n}x{} ordered pairs",
                        n.saturating_sub(1)
                    ),
                    None => format!(
                        "1 test-input reply + {inputs} inputs x ordered pairs of candidates (set `n` to bound it)"
                    ),
                },
            ),
        };
        Some(LlmCalls {
            slot: "problems",
            per_row,
            formula,
        })
    }

    fn validate(p: &ParallelParams) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Some(m) = &p.model {
            out.extend(m.problems("model"));
        }
        if p.n == Some(0) {
            out.push(Problem::at("n", "must be at least 1"));
        }
        if p.candidate_id.is_some() && !p.graded {
            out.push(
                Problem::at("candidate_id", "names the candidates in a `graded` table; without `graded: true` nothing reads it")
                    .help("add `graded: true` and the input `graded: <execute stage>.results`"),
            );
        }
        let s = p.selection.as_str();
        if p.selection.needs_inputs() {
            if p.model.is_none() {
                out.push(Problem::at(
                    "model",
                    format!("`selection: {s}` asks a model for test inputs; name it"),
                ));
            }
            if p.inputs_template.is_none() {
                out.push(
                    Problem::at(
                        "inputs_template",
                        format!("`selection: {s}` needs a test-input prompt"),
                    )
                    .help("e.g. ../templates/prompts/test_inputs.j2"),
                );
            }
        }
        if p.selection.is_judge() && p.judge_template.is_none() {
            out.push(
                Problem::at(
                    "judge_template",
                    format!("`selection: {s}` needs the judge's prompt"),
                )
                .help("judge_pointwise.j2 or judge_pairwise.j2 under templates/prompts/"),
            );
        }
        if p.representation.is_some() && p.selection != Selection::LlmJudgePairwise {
            out.push(Problem::at(
                "representation",
                "only `llm_judge_pairwise` shows traces; other rules would ignore it",
            ));
        }
        out.extend(p.sampling.problems(p.judge_temperature));
        out.extend(programs::check_limits(p.timeout, p.memory_mb));
        out
    }

    fn file_deps(p: &ParallelParams, env: &PlanEnv) -> Vec<FileDep> {
        let mut deps = Vec::new();
        if let Some(m) = &p.model {
            deps.extend(m.file_deps("model", env));
        }
        for (param, t) in [
            ("inputs_template", &p.inputs_template),
            ("judge_template", &p.judge_template),
            ("representation", &p.representation),
        ] {
            if let Some(t) = t {
                deps.extend(prompts::template_deps(param, t, env));
            }
        }
        deps
    }

    fn env_facts(_p: &ParallelParams) -> Vec<crate::api::EnvFact> {
        programs::sandbox_facts()
    }

    fn run(p: &ParallelParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let loaded = tasks::load_tasks(ctx, &p.split, p.on_ungradable)?;
        loaded.note(ctx);
        let tasks = loaded.tasks;
        let candidates = artifact::table_to_json_rows(&ctx.input("candidates")?)?;
        rows::require_column(&candidates, "candidates", "program", "program")?;
        if let Some(column) = &p.candidate_id {
            rows::require_column(&candidates, "candidates", column, "candidate_id")?;
        }
        let task_ids = TaskIds::new(tasks.iter().map(|t| t.id.as_str()));
        let mut by_task: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
        for (i, row) in candidates.iter().enumerate() {
            let task = nonempty_text(row, "task_id").ok_or_else(|| StageError::BadInput {
                slot: "candidates".into(),
                message: format!("row {i}: `task_id` is empty"),
            })?;
            let sample = row
                .get("sample")
                .and_then(Value::as_u64)
                .unwrap_or(i as u64);
            let program = row
                .get("program")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let id = match &p.candidate_id {
                Some(column) => nonempty_text(row, column).unwrap_or_default(),
                None => i.to_string(),
            };
            let task = task_ids.find(&task).map_or(task, String::from);
            by_task.entry(task).or_default().push(Candidate {
                sample,
                program,
                id,
            });
        }
        if !candidates.is_empty() && tasks.iter().all(|t| !by_task.contains_key(&t.id)) {
            return Err(StageError::BadInput {
                slot: "candidates".into(),
                message: format!(
                    "no candidate is for a problem of `problems`: candidates name {}, problems {}",
                    example_list(by_task.keys().map(String::as_str), by_task.len()),
                    example_list(tasks.iter().map(|t| t.id.as_str()), tasks.len())
                ),
            });
        }
        let runner = runner::Runner::open(ctx, p.timeout, p.memory_mb, &None, None)?;
        // Judges that read traces run each cluster's representative traced.
        let tracer = match &p.representation {
            Some(_) => Some(runner::Runner::open(
                ctx,
                p.timeout,
                p.memory_mb,
                &p.representation,
                Some(1),
            )?),
            None => None,
        };
        let llm = match &p.model {
            Some(m) if p.selection.needs_inputs() => Some(crate::llm::Llm::open(ctx, m)?),
            _ => None,
        };
        let inputs_prompt = match &p.inputs_template {
            Some(t) if p.selection.needs_inputs() => {
                Some(prompts::PromptTemplate::open(ctx, t, &p.vars)?)
            }
            _ => None,
        };
        let judge_prompt = match &p.judge_template {
            Some(t) if p.selection.is_judge() => {
                Some(prompts::PromptTemplate::open(ctx, t, &p.vars)?)
            }
            _ => None,
        };

        // Each task's candidates, in sample order; the first `n` compete.
        let mut everyone: Vec<Vec<Candidate>> = tasks
            .iter()
            .map(|t| {
                let mut c = by_task.remove(&t.id).unwrap_or_default();
                c.sort_by_key(|c| c.sample);
                c
            })
            .collect();
        let pools: Vec<Vec<String>> = everyone
            .iter()
            .map(|c| {
                c.iter()
                    .take(p.n.unwrap_or(usize::MAX))
                    .map(|c| c.program.clone())
                    .collect()
            })
            .collect();
        ctx.progress().set_total(tasks.len() as u64);
        let (public, private, all_private) = if p.graded {
            let graded = Graded::read(ctx)?;
            let mut public = Vec::with_capacity(tasks.len());
            let mut private = Vec::with_capacity(tasks.len());
            let mut all_private = Vec::with_capacity(tasks.len());
            for (task, cands) in tasks.iter().zip(&mut everyone) {
                let results: Vec<(SuiteResult, SuiteResult)> = cands
                    .iter()
                    .map(|c| graded.suites(task, &c.id))
                    .collect::<Result<_, _>>()?;
                all_private.push(
                    results
                        .iter()
                        .map(|(_, r)| r.base_passed())
                        .collect::<Vec<_>>(),
                );
                let n = p.n.unwrap_or(usize::MAX).min(results.len());
                let (pubs, privs): (Vec<_>, Vec<_>) = results.into_iter().take(n).unzip();
                public.push(pubs);
                private.push(privs);
            }
            (public, private, Some(all_private))
        } else {
            let flat = |suite| {
                let programs: Vec<(usize, String)> = pools
                    .iter()
                    .enumerate()
                    .flat_map(|(t, pool)| pool.iter().map(move |prog| (t, prog.clone())))
                    .collect();
                let mut results = runner.run(&tasks, &programs, suite)?.into_iter();
                Ok::<_, StageError>(
                    pools
                        .iter()
                        .map(|pool| {
                            pool.iter()
                                .map(|_| results.next().unwrap_or_default())
                                .collect::<Vec<_>>()
                        })
                        .collect::<Vec<Vec<SuiteResult>>>(),
                )
            };
            (flat(Suite::Public)?, flat(Suite::Private)?, None)
        };

        // Test inputs for every task at once, so the model is asked in one batch.
        let generated: Vec<Vec<TestCase>> = match (&llm, &inputs_prompt) {
            (Some(llm), Some(prompt)) => {
                let mut asks = Vec::new();
                for task in &tasks {
                    let messages = prompt.messages(task, &Map::new())?;
                    let seed = prompts::sample_seed(p.seed, &task.id, 0, 0);
                    asks.push((p.sampling.request(messages, p.judge_temperature, seed), 0));
                }
                let replies = complete(llm, &asks, "test inputs")?;
                tasks
                    .iter()
                    .zip(replies)
                    .map(|(task, reply)| {
                        selection::parse_generated_inputs(task, &reply, p.max_inputs)
                    })
                    .collect()
            }
            _ => tasks.iter().map(|_| Vec::new()).collect(),
        };

        let has_plus = tasks.iter().any(tasks::Task::has_plus);
        let mut rows = Vec::with_capacity(tasks.len());
        let (mut honest, mut oracle) = (0usize, 0usize);
        let (mut honest_plus_count, mut oracle_plus_count) = (0usize, 0usize);
        for (t, task) in tasks.iter().enumerate() {
            let pool = &pools[t];
            let mut judge_calls = 0usize;
            let chosen = if pool.is_empty() {
                None
            } else {
                let outputs = || {
                    runner
                        .outputs(task, pool, &generated[t])
                        .map_err(StageError::from)
                };
                let judge_fn =
                    |outputs: &[Vec<String>], eligible: &[usize]| match (&llm, &judge_prompt) {
                        (Some(llm), Some(judge)) => judge_votes(
                            p,
                            llm,
                            judge,
                            tracer.as_ref(),
                            task,
                            pool,
                            &generated[t],
                            outputs,
                            eligible,
                        ),
                        _ => Ok((Vec::new(), 0)),
                    };
                let judge: Option<&Judge<'_>> = if llm.is_some() && judge_prompt.is_some() {
                    Some(&judge_fn)
                } else {
                    None
                };
                let (chosen, calls) = p.selection.pick(&Pool {
                    programs: pool,
                    public: &public[t],
                    seed: prompts::sample_seed(p.seed, &task.id, 0, 0),
                    outputs: &outputs,
                    judge,
                })?;
                judge_calls = calls;
                Some(chosen)
            };
            let honest_pass = chosen.is_some_and(|c| private[t][c].base_passed());
            let oracle_pass = private[t].iter().any(SuiteResult::base_passed);
            let honest_plus = chosen.is_some_and(|c| private[t][c].all_passed());
            let oracle_plus = private[t].iter().any(SuiteResult::all_passed);
            honest += usize::from(honest_pass);
            oracle += usize::from(oracle_pass);
            honest_plus_count += usize::from(honest_plus);
            oracle_plus_count += usize::from(oracle_plus);
            let mut r = Map::new();
            r.insert("task_id".into(), Value::String(task.id.clone()));
            r.insert(
                "candidate".into(),
                chosen.map_or(Value::Null, |c| Value::from(c as u64)),
            );
            r.insert(
                "program".into(),
                Value::String(chosen.map(|c| pool[c].clone()).unwrap_or_default()),
            );
            r.insert("candidates".into(), Value::from(pool.len() as u64));
            let pub_result = chosen.map(|c| public[t][c].clone()).unwrap_or_default();
            r.insert(
                "public_passed".into(),
                Value::from(pub_result.passed as u64),
            );
            r.insert("public_total".into(), Value::from(task.public.len() as u64));
            r.insert(
                "generated_inputs".into(),
                Value::from(generated[t].len() as u64),
            );
            r.insert("judge_calls".into(), Value::from(judge_calls as u64));
            r.insert("honest_pass".into(), Value::Bool(honest_pass));
            r.insert("oracle_pass".into(), Value::Bool(oracle_pass));
            if has_plus {
                r.insert("honest_plus_pass".into(), Value::Bool(honest_plus));
                r.insert("oracle_plus_pass".into(), Value::Bool(oracle_plus));
            }
            rows.push(r);
            ctx.progress().inc(1);
        }
        if let Some(llm) = &llm {
            llm.note(ctx);
        }
        runner.note(ctx);
        let pct = |k: usize| {
            if tasks.is_empty() {
                0.0
            } else {
                100.0 * k as f64 / tasks.len() as f64
            }
        };
        let n =
            p.n.unwrap_or_else(|| pools.iter().map(Vec::len).max().unwrap_or(0));
        let mut summary = Map::new();
        summary.insert("strategy".into(), Value::String("parallel".into()));
        summary.insert(
            "selection".into(),
            Value::String(p.selection.as_str().into()),
        );
        summary.insert(
            "representation".into(),
            Value::String(runner::representation_name(&p.representation)),
        );
        summary.insert("n".into(), Value::from(n as u64));
        summary.insert("tasks".into(), Value::from(tasks.len() as u64));
        summary.insert("honest_pct".into(), json!(pct(honest)));
        summary.insert("oracle_pct".into(), json!(pct(oracle)));
        if has_plus {
            summary.insert("honest_plus_pct".into(), json!(pct(honest_plus_count)));
            summary.insert("oracle_plus_pct".into(), json!(pct(oracle_plus_count)));
        }
        // pass@N over every graded candidate (the unbiased estimator), beside
        // the oracle over the first N: the two agree in expectation.
        if let Some(all) = all_private
            .as_ref()
            .filter(|all| all.iter().all(|a| a.len() >= n))
        {
            let estimates: Vec<f64> = all
                .iter()
                .map(|passes| {
                    let c = passes.iter().filter(|p| **p).count() as u64;
                    crate::bench::scoring::pass_at_k(passes.len() as u64, c, n as u64)
                })
                .collect();
            let mean = if estimates.is_empty() {
                0.0
            } else {
                100.0 * estimates.iter().sum::<f64>() / estimates.len() as f64
            };
            summary.insert("pass_at_n_pct".into(), json!(mean));
            summary.insert(
                "samples_per_task".into(),
                Value::from(all.iter().map(Vec::len).min().unwrap_or(0) as u64),
            );
        }
        let mut summary = vec![summary];
        tasks::add_labels(&mut summary, &p.labels);
        let mut template = Map::new();
        for c in ["task_id", "program"] {
            template.insert(c.into(), Value::String(String::new()));
        }
        for c in [
            "candidate",
            "candidates",
            "public_passed",
            "public_total",
            "generated_inputs",
            "judge_calls",
        ] {
            template.insert(c.into(), Value::from(0u64));
        }
        template.insert("honest_pass".into(), Value::Bool(false));
        template.insert("oracle_pass".into(), Value::Bool(false));
        if has_plus {
            template.insert("honest_plus_pass".into(), Value::Bool(false));
            template.insert("oracle_plus_pass".into(), Value::Bool(false));
        }
        ctx.write_output(
            "selected",
            &artifact::json_rows_to_typed_table(rows, template)?,
        )?;
        ctx.write_output("summary", &artifact::json_rows_to_table(&summary)?.0)
    }
}

/// One candidate program of a task.
struct Candidate {
    sample: u64,
    program: String,
    /// The id `execute` gave it (its `candidate` column).
    id: String,
}

/// Verdicts `execute` recorded: per candidate, per test, in its numbering.
struct Graded {
    verdicts: BTreeMap<String, BTreeMap<u64, Verdict>>,
}

impl Graded {
    fn read(ctx: &RunCtx<'_>) -> Result<Graded, StageError> {
        let rows = artifact::table_to_json_rows(&ctx.input("graded")?)?;
        for column in ["candidate", "test", "verdict"] {
            rows::require_column(&rows, "graded", column, column)?;
        }
        let mut verdicts: BTreeMap<String, BTreeMap<u64, Verdict>> = BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            let bad = |what: &str| StageError::BadInput {
                slot: "graded".into(),
                message: format!("row {i}: {what} (is this an `execute` results table?)"),
            };
            let candidate = nonempty_text(row, "candidate").ok_or_else(|| bad("no `candidate`"))?;
            let test = row
                .get("test")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("no `test`"))?;
            let verdict: Verdict = row
                .get("verdict")
                .cloned()
                .and_then(|v| serde_json::from_value(v).ok())
                .ok_or_else(|| bad("no known `verdict`"))?;
            verdicts.entry(candidate).or_default().insert(test, verdict);
        }
        Ok(Graded { verdicts })
    }

    /// A candidate's public and private results, as running it would give.
    fn suites(
        &self,
        task: &tasks::Task,
        candidate: &str,
    ) -> Result<(SuiteResult, SuiteResult), StageError> {
        let missing = |test: usize| StageError::BadInput {
            slot: "graded".into(),
            message: format!(
                "no verdict for candidate `{candidate}` on test {test} of `{}`: grade the same \
                 candidates on the same tests with `execute` (and the same `candidate_id`)",
                task.id
            ),
        };
        let verdicts = self.verdicts.get(candidate);
        let verdict = |test: usize| {
            verdicts
                .and_then(|v| v.get(&(test as u64)))
                .copied()
                .ok_or_else(|| missing(test))
        };
        let suite = |indices: &[usize], plus: Vec<bool>| -> Result<SuiteResult, StageError> {
            let reports = indices
                .iter()
                .map(|&k| Ok(report(k, verdict(k)?)))
                .collect::<Result<Vec<_>, StageError>>()?;
            Ok(SuiteResult {
                passed: reports
                    .iter()
                    .filter(|r| r.verdict == Verdict::Pass)
                    .count(),
                total: reports.len(),
                reports,
                plus,
            })
        };
        let public = suite(&task.public_index, Vec::new())?;
        let private = match &task.rules.check {
            Some(_) => suite(&[task.n_cases], Vec::new())?,
            None => suite(&task.private_index, task.private_plus.clone())?,
        };
        Ok((public, private))
    }
}

fn report(test: usize, verdict: Verdict) -> TestReport {
    TestReport {
        test,
        verdict,
        exc_type: None,
        exc_message: None,
        output: None,
        input: None,
        input_after: None,
        expected: None,
        output_repr: None,
        duration: None,
        line: None,
        trace: None,
    }
}

/// The replies to `asks`; a failure names what was asked. (What asking cost
/// is noted once the stage is done: a failed stage stores no manifest.)
fn complete(
    llm: &Llm,
    asks: &[(crate::llm::Request, u64)],
    what: &str,
) -> Result<Vec<String>, StageError> {
    llm.complete(asks, &crate::api::NoProgress)
        .map(|c| c.into_iter().map(|c| c.text).collect())
        .map_err(|e| StageError::failed(format!("{what}: asking {}: {e}", llm.model_id())))
}

/// The judge's votes per candidate, and how many judgements were asked for.
#[allow(clippy::too_many_arguments)]
fn judge_votes(
    p: &ParallelParams,
    llm: &Llm,
    judge: &prompts::PromptTemplate,
    tracer: Option<&runner::Runner>,
    task: &tasks::Task,
    pool: &[String],
    inputs: &[TestCase],
    outputs: &[Vec<String>],
    eligible: &[usize],
) -> Result<(Vec<f64>, usize), StageError> {
    let mut votes = vec![0.0; pool.len()];
    let mut calls = 0usize;
    for (k, case) in inputs.iter().enumerate() {
        let clusters = selection::clusters(outputs, eligible, k);
        if clusters.len() < 2 {
            continue;
        }
        let test_input = runner::input_text(task, case);
        let mut extra = Map::new();
        extra.insert("test_input".into(), Value::String(test_input.clone()));
        match p.selection {
            Selection::LlmJudgePointwise => {
                extra.insert(
                    "outputs".into(),
                    Value::Array(
                        clusters
                            .iter()
                            .map(|(o, _)| Value::String(o.clone()))
                            .collect(),
                    ),
                );
                let messages = judge.messages(task, &extra)?;
                let seed = prompts::sample_seed(p.seed, &task.id, k, 1);
                let reply = complete(
                    llm,
                    &[(
                        p.sampling.request(messages, p.judge_temperature, seed),
                        k as u64,
                    )],
                    "judge",
                )?;
                calls += 1;
                let best = reply
                    .first()
                    .and_then(|r| reply::parse_index(r, "best_idx"));
                selection::pointwise_votes(&mut votes, &clusters, best);
            }
            _ => {
                // Cluster representatives, with the trace of their run on this input.
                let reps: Vec<Value> = clusters
                    .iter()
                    .map(|(out, members)| {
                        let code = &pool[members[0]];
                        let mut s = Map::new();
                        s.insert("code".into(), Value::String(code.clone()));
                        s.insert("output".into(), Value::String(out.clone()));
                        if let Some(tracer) = tracer {
                            let traced = tracer.run(
                                std::slice::from_ref(&task_with_public(task, case)),
                                &[(0, code.clone())],
                                Suite::Public,
                            )?;
                            if let Some(report) = traced.first().and_then(|r| r.reports.first())
                                && let Some(text) = tracer.trace_text(task, code, report)
                            {
                                s.insert("trace".into(), Value::String(text));
                            }
                        }
                        Ok(Value::Object(s))
                    })
                    .collect::<Result<_, StageError>>()?;
                let mut asks = Vec::new();
                let mut pairs = Vec::new();
                for a in 0..reps.len() {
                    for b in a + 1..reps.len() {
                        for (x, y) in [(a, b), (b, a)] {
                            let mut e = extra.clone();
                            e.insert(
                                "samples".into(),
                                Value::Array(vec![reps[x].clone(), reps[y].clone()]),
                            );
                            let messages = judge.messages(task, &e)?;
                            let seed = prompts::sample_seed(p.seed, &task.id, k, 2 + asks.len());
                            asks.push((
                                p.sampling.request(messages, p.judge_temperature, seed),
                                k as u64,
                            ));
                        }
                        pairs.push((a, b));
                    }
                }
                let replies = complete(llm, &asks, "judge")?;
                calls += replies.len();
                let judged: Vec<(Option<i64>, Option<i64>)> = (0..pairs.len())
                    .map(|j| {
                        (
                            reply::parse_index(&replies[2 * j], "best_sample_idx"),
                            reply::parse_index(&replies[2 * j + 1], "best_sample_idx"),
                        )
                    })
                    .collect();
                selection::pairwise_votes(&mut votes, &clusters, &pairs, &judged);
            }
        }
    }
    Ok((votes, calls))
}

/// The task with one input as its only public test, to trace a run on it.
fn task_with_public(task: &tasks::Task, case: &TestCase) -> tasks::Task {
    let mut t = task.clone();
    t.public = vec![case.clone()];
    t
}
