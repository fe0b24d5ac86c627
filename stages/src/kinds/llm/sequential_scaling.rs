//! `sequential_scaling`: N samples, each revised over up to R self-debug
//! rounds with test feedback and a trace of the failing run.
//!
//! # What it does
//! Round 0 asks `first_template` (e.g. `nl2code.j2`) `n` times at
//! `temperature`. Each program runs on the problem's public tests; a sample
//! that passes them all stops. Every other sample is revised: round r renders
//! `debug_template` (`self_debug.j2`) with the question and the sample's
//! history (reasoning, code and test feedback of each round, `context: all`,
//! or the latest only, `last`). The feedback of a failing public test carries
//! the `representation` of its run (a trace template such as
//! `templates/traces/next.j2`; none: test results only), as the paper's
//! sequential scaling did. `search: beam` revises the `beam_width` best
//! samples of each round (by public accuracy) instead of each sample its own
//! history: beam search over revisions; a problem stops when any sample
//! passes.
//!
//! Every program of every round is then graded on the private tests (by the
//! benchmark's own check where `load_benchmark` recorded one: HumanEval,
//! MBPP) and
//! scored two ways, per round r (each sample's program at round min(r, its
//! last)):
//! - `honest_pct`: the program a public-test rule selects (the first that
//!   passes every public test, else the best public accuracy) passes;
//! - `oracle_pct`: any of the N passes (pass@N), the seed's
//!   `oracle_all_rounds`; `summary.oracle_mean_pct` is its mean over rounds,
//!   the number the paper's Table 3 reports as "Sequential Scaling".
//!
//! Each sample of each round has its own seed (from `seed`, the task, the
//! sample and the round), where the seed raised the temperature by 1e-4 per
//! round to dodge its cache.
//!
//! # Params
//! - `model` (required): see `generate` (one endpoint or a list of them).
//! - `first_template`, `debug_template` (required): prompt templates; `vars`.
//! - `n` (default 8), `temperature` (default 0.7), `rounds` (default 4: the
//!   paper's R; the seed's scripts ran 5 rounds in all, `rounds: 4` here).
//! - `representation` (default none): trace template shown in feedback.
//! - `context`: `all` (default) | `last`.
//! - `search`: `independent` (default) | `beam`; `beam_width` (default 2).
//! - `split`: `public_count` (default 1: tests used as public when none is
//!   marked), `public_suites` (tests of these suites are public instead,
//!   e.g. MBPP-R's `seed_fail_base`), `grade_on_all` (default false).
//! - `on_ungradable` (`fail` | `skip`, default `fail`): a problem with no
//!   private tests (and no benchmark check), or private tests without
//!   expected outputs, stops the stage with an error naming it, or is left
//!   out and counted (`skipped_tasks`).
//! - `sampling` (`max_tokens`, `top_p`, `stop`), `seed` (default 0),
//!   `timeout` (seconds per test, default 6), `memory_mb` (default 2048),
//!   `labels` (constant columns for `report`, e.g. `{model: smollm2}`).
//!
//! # Inputs
//! - `problems`, `tests`: outputs of `load_benchmark`.
//! - `model` (only with `model: {backend: tch}` and no `path`): an `sft`
//!   stage's `model` output; its checkpoint (full or LoRA) is the model asked.
//!
//! # Outputs
//! - `rounds`: `task_id`, `sample`, `round`, `parent` (the sample revised),
//!   `program`, `reasoning`, `messages` (the chat messages asked, JSON),
//!   `reply` (the model's whole answer), `public_passed`, `public_total`,
//!   `private_passed`, `stopped`, `feedback` (JSON).
//! - `scores`: per round: `round`, `tasks`, `honest_pct`, `oracle_pct`
//!   (with EvalPlus plus tests among the private ones, these are the base
//!   scores, and `honest_plus_pct`, `oracle_plus_pct` count a program that
//!   passes base and plus),
//!   `public_solved_pct`, `error_share_*` (shares of failing samples by
//!   verdict of their first failing public test), plus `labels`.
//! - `summary`: one row: `strategy`, `representation`, `n`, `temperature`,
//!   `rounds`, `tasks`, `honest_pct`, `oracle_pct` (final round),
//!   `oracle_mean_pct`, `honest_plus_pct` and `oracle_plus_pct` (with plus
//!   tests), plus `labels`.
//!
//! # Caching
//! As `generate`: params and template bytes in the key; every round's
//! completions in the ledger, so a rerun or a resumed run replays them.
//!
//! # Example
//! ```yaml
//! sequential:
//!   kind: sequential_scaling
//!   inputs: { problems: he.problems, tests: he.tests }
//!   params:
//!     model: { backend: openai, base_url: "http://127.0.0.1:8080/v1", name: smollm2 }
//!     first_template: ../templates/prompts/nl2code.j2
//!     debug_template: ../templates/prompts/self_debug.j2
//!     representation: ../templates/traces/next.j2
//!     n: 8
//!     temperature: 0.7
//!     rounds: 4
//! ```

use crate::api::artifact;
use crate::api::rows::Row;
use crate::api::{FileDep, InputSlot, LlmCalls, PlanEnv, Problem, RunCtx, Stage, StageError};
use crate::llm::ModelSpec;
use crate::llm::reply;
use crate::llm::strategy::prompts;
use crate::llm::strategy::prompts::SamplingParams;
use crate::llm::strategy::runner;
use crate::llm::strategy::runner::{Suite, SuiteResult};
use crate::llm::strategy::selection;
use crate::llm::strategy::tasks;
use crate::llm::strategy::tasks::TestSplit;
use crate::python::programs;
use crate::python::programs::Ungradable;
use crate::python::sandbox::Verdict;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub struct SequentialScaling;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Context {
    #[default]
    All,
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Search {
    #[default]
    Independent,
    Beam,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequentialParams {
    pub model: ModelSpec,
    pub first_template: String,
    pub debug_template: String,
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
    #[serde(default = "default_n")]
    pub n: usize,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[serde(default = "default_rounds")]
    pub rounds: usize,
    #[serde(default)]
    pub representation: Option<String>,
    #[serde(default)]
    pub context: Context,
    #[serde(default)]
    pub search: Search,
    #[serde(default = "default_beam")]
    pub beam_width: usize,
    #[serde(default)]
    pub split: TestSplit,
    #[serde(default)]
    pub on_ungradable: Ungradable,
    #[serde(default)]
    pub sampling: SamplingParams,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "crate::llm::strategy::runner::default_timeout")]
    pub timeout: f64,
    #[serde(default = "crate::llm::strategy::runner::default_memory")]
    pub memory_mb: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_n() -> usize {
    8
}
fn default_temperature() -> f64 {
    0.7
}
fn default_rounds() -> usize {
    4
}
fn default_beam() -> usize {
    2
}
/// One sample's state after a round.
#[derive(Debug, Clone)]
struct Step {
    /// The round that produced it (later rounds carry a stopped sample over).
    round: usize,
    parent: usize,
    program: String,
    reasoning: String,
    /// The chat messages asked (JSON) and the reply, as the browser shows them.
    messages: String,
    reply: String,
    public: SuiteResult,
    feedback: Vec<Value>,
    /// The rounds shown to the next revision: `{reasoning, code, feedback}`.
    history: Vec<Value>,
}

/// Verdicts a failing sample is counted under in `error_share_*`.
const ERROR_KINDS: [&str; 5] = [
    "wrong_answer",
    "runtime_error",
    "timeout",
    "syntax_error",
    "other",
];

impl Stage for SequentialScaling {
    const KIND: &'static str = "sequential_scaling";
    // 2: base and plus scores, no grading against nothing.
    const VERSION: u32 = 3;
    const SOURCE: &'static str = include_str!("sequential_scaling.rs");
    const OUTPUTS: &'static [&'static str] = &["rounds", "scores", "summary"];
    type Params = SequentialParams;

    fn inputs(p: &SequentialParams) -> Vec<InputSlot> {
        let mut slots = vec![InputSlot::one("problems"), InputSlot::one("tests")];
        slots.extend(p.model.input_slot());
        slots
    }

    fn llm_calls(p: &SequentialParams) -> Option<LlmCalls> {
        // Beam search also revises `n` programs a round (parents repeat).
        Some(LlmCalls {
            slot: "problems",
            per_row: Some((p.n * (1 + p.rounds)) as u64),
            formula: format!(
                "{} sample{} x (1 + {} round{})",
                p.n,
                if p.n == 1 { "" } else { "s" },
                p.rounds,
                if p.rounds == 1 { "" } else { "s" }
            ),
        })
    }

    fn validate(p: &SequentialParams) -> Vec<Problem> {
        let mut out = p.model.problems("model");
        if p.n == 0 {
            out.push(Problem::at("n", "must be at least 1"));
        }
        if p.search == Search::Beam && (p.beam_width == 0 || p.beam_width > p.n) {
            out.push(Problem::at(
                "beam_width",
                format!("must be in 1..={} (`n`)", p.n),
            ));
        }
        out.extend(p.sampling.problems(p.temperature));
        out.extend(programs::check_limits(p.timeout, p.memory_mb));
        out
    }

    fn file_deps(p: &SequentialParams, env: &PlanEnv) -> Vec<FileDep> {
        let mut deps = p.model.file_deps("model", env);
        deps.extend(prompts::template_deps(
            "first_template",
            &p.first_template,
            env,
        ));
        deps.extend(prompts::template_deps(
            "debug_template",
            &p.debug_template,
            env,
        ));
        if let Some(r) = &p.representation {
            deps.extend(prompts::template_deps("representation", r, env));
        }
        deps
    }

    fn env_facts(_p: &SequentialParams) -> Vec<crate::api::EnvFact> {
        programs::sandbox_facts()
    }

    fn run(p: &SequentialParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let loaded = tasks::load_tasks(ctx, &p.split, p.on_ungradable)?;
        loaded.note(ctx);
        let tasks = loaded.tasks;
        let has_plus = tasks.iter().any(tasks::Task::has_plus);
        let mut vars = p.vars.clone();
        vars.entry("context".into())
            .or_insert(json!(match p.context {
                Context::All => "all",
                Context::Last => "last",
            }));
        let first = prompts::PromptTemplate::open(ctx, &p.first_template, &vars)?;
        let debug = prompts::PromptTemplate::open(ctx, &p.debug_template, &vars)?;
        let runner = runner::Runner::open(ctx, p.timeout, p.memory_mb, &p.representation, None)?;
        let llm = crate::llm::Llm::open(ctx, &p.model)?;
        ctx.progress()
            .set_total((tasks.len() * p.n * (p.rounds + 1)) as u64);

        // steps[task][round][sample]
        let mut steps: Vec<Vec<Vec<Step>>> = vec![Vec::new(); tasks.len()];
        for round in 0..=p.rounds {
            // Who is revised this round, and from which parent.
            let mut asks = Vec::new();
            let mut owners: Vec<(usize, usize, usize)> = Vec::new(); // (task, sample, parent)
            let mut asked: Vec<String> = Vec::new(); // the messages of each ask, as JSON
            for (t, task) in tasks.iter().enumerate() {
                let parents: Vec<usize> = if round == 0 {
                    (0..p.n).collect()
                } else {
                    let last = &steps[t][round - 1];
                    match p.search {
                        Search::Independent => (0..p.n)
                            .map(|s| {
                                if last[s].public.all_passed() {
                                    usize::MAX
                                } else {
                                    s
                                }
                            })
                            .collect(),
                        Search::Beam => {
                            let publics: Vec<SuiteResult> =
                                last.iter().map(|s| s.public.clone()).collect();
                            selection::beam_parents(&publics, p.beam_width)
                                .unwrap_or_else(|| vec![usize::MAX; p.n])
                        }
                    }
                };
                for (sample, &parent) in parents.iter().enumerate() {
                    if parent == usize::MAX {
                        continue;
                    }
                    let messages = if round == 0 {
                        first.messages(task, &Map::new())?
                    } else {
                        let history = &steps[t][round - 1][parent].history;
                        let mut extra = Map::new();
                        extra.insert("rounds".into(), Value::Array(history.clone()));
                        debug.messages(task, &extra)?
                    };
                    let seed = prompts::sample_seed(p.seed, &task.id, sample, round);
                    asked.push(serde_json::to_string(&messages).unwrap_or_default());
                    asks.push((
                        p.sampling.request(messages, p.temperature, seed),
                        (round * p.n + sample) as u64,
                    ));
                    owners.push((t, sample, parent));
                }
            }
            let skipped = tasks.len() * p.n - owners.len();
            ctx.progress().inc(skipped as u64);
            ctx.progress().set_message(&format!("round {round}"));
            let completions = match llm.complete(&asks, ctx.progress()) {
                Ok(c) => c,
                Err(e) => {
                    llm.note(ctx);
                    return Err(StageError::failed(format!(
                        "round {round}: asking {}: {e}",
                        llm.model_id()
                    )));
                }
            };
            let replies: Vec<reply::Reply> = completions
                .iter()
                .map(|c| reply::parse_reply(&c.text))
                .collect();
            let texts: Vec<String> = completions.iter().map(|c| c.text.clone()).collect();
            let programs: Vec<(usize, String)> = owners
                .iter()
                .zip(&replies)
                .map(|(&(t, _, _), r)| (t, tasks::program_for(&tasks[t], &r.code)))
                .collect();
            let public = runner.run(&tasks, &programs, Suite::Public)?;
            // Carry stopped samples over; fill in the revised ones.
            let mut next: Vec<Vec<Option<Step>>> = (0..tasks.len())
                .map(|t| {
                    (0..p.n)
                        .map(|s| {
                            if round == 0 {
                                None
                            } else {
                                Some(steps[t][round - 1][s].clone())
                            }
                        })
                        .collect()
                })
                .collect();
            for (((((&(t, sample, parent), reply), (_, program)), result), messages), text) in
                owners
                    .iter()
                    .zip(replies)
                    .zip(programs)
                    .zip(public)
                    .zip(asked.drain(..))
                    .zip(texts)
            {
                let feedback = runner::feedback(&runner, &tasks[t], &program, &result);
                let mut history = if round == 0 {
                    Vec::new()
                } else {
                    steps[t][round - 1][parent].history.clone()
                };
                history.push(
                    json!({"reasoning": reply.reasoning, "code": reply.code, "feedback": feedback}),
                );
                next[t][sample] = Some(Step {
                    round,
                    parent,
                    program,
                    reasoning: reply.reasoning,
                    messages,
                    reply: text,
                    public: result,
                    feedback,
                    history,
                });
            }
            for (t, row) in next.into_iter().enumerate() {
                steps[t].push(
                    row.into_iter()
                        .map(|s| s.unwrap_or_else(empty_step))
                        .collect(),
                );
            }
        }
        llm.note(ctx);

        // Grade every distinct program once on the private tests.
        let mut all: Vec<(usize, String)> = Vec::new();
        for (t, rounds) in steps.iter().enumerate() {
            for round in rounds {
                for s in round {
                    all.push((t, s.program.clone()));
                }
            }
        }
        let graded = runner.run(&tasks, &all, Suite::Private)?;
        runner.note(ctx);
        // Each program's (base, plus) verdicts; plus counts only with base.
        let mut private: BTreeMap<(usize, &str), (bool, bool)> = BTreeMap::new();
        for ((t, program), r) in all.iter().zip(&graded) {
            private.insert((*t, program.as_str()), (r.base_passed(), r.all_passed()));
        }

        let representation = runner::representation_name(&p.representation);
        let mut round_rows = Vec::new();
        let mut score_rows = Vec::new();
        let mut oracle_by_round = Vec::new();
        let mut honest_by_round = Vec::new();
        let mut plus_by_round: Vec<(f64, f64)> = Vec::new();
        #[allow(clippy::needless_range_loop)] // `round` indexes every task's rounds
        for round in 0..=p.rounds {
            let (mut honest, mut oracle, mut solved) = (0usize, 0usize, 0usize);
            let (mut honest_plus, mut oracle_plus) = (0usize, 0usize);
            let mut errors: BTreeMap<&str, usize> = BTreeMap::new();
            let mut failing = 0usize;
            for (t, task) in tasks.iter().enumerate() {
                let current = &steps[t][round];
                let publics: Vec<SuiteResult> = current.iter().map(|s| s.public.clone()).collect();
                let chosen = selection::select_by_public(&publics);
                let verdict = |s: &Step| private[&(t, s.program.as_str())];
                honest += usize::from(verdict(&current[chosen]).0);
                honest_plus += usize::from(verdict(&current[chosen]).1);
                oracle += usize::from(current.iter().any(|s| verdict(s).0));
                oracle_plus += usize::from(current.iter().any(|s| verdict(s).1));
                solved += usize::from(current.iter().any(|s| s.public.all_passed()));
                for (sample, s) in current.iter().enumerate() {
                    let revised = s.round == round;
                    if !s.public.all_passed() {
                        failing += 1;
                        *errors.entry(error_kind(&s.public)).or_default() += 1;
                    }
                    if revised {
                        let mut r = Map::new();
                        r.insert("task_id".into(), Value::String(task.id.clone()));
                        r.insert("sample".into(), Value::from(sample as u64));
                        r.insert("round".into(), Value::from(round as u64));
                        r.insert("parent".into(), Value::from(s.parent as u64));
                        r.insert("program".into(), Value::String(s.program.clone()));
                        r.insert("reasoning".into(), Value::String(s.reasoning.clone()));
                        r.insert("messages".into(), Value::String(s.messages.clone()));
                        r.insert("reply".into(), Value::String(s.reply.clone()));
                        r.insert("public_passed".into(), Value::from(s.public.passed as u64));
                        r.insert("public_total".into(), Value::from(s.public.total as u64));
                        r.insert(
                            "private_passed".into(),
                            Value::Bool(private[&(t, s.program.as_str())].0),
                        );
                        r.insert("stopped".into(), Value::Bool(s.public.all_passed()));
                        r.insert(
                            "feedback".into(),
                            Value::String(Value::Array(s.feedback.clone()).to_string()),
                        );
                        round_rows.push(r);
                    }
                }
            }
            let pct = |k: usize| {
                if tasks.is_empty() {
                    0.0
                } else {
                    100.0 * k as f64 / tasks.len() as f64
                }
            };
            oracle_by_round.push(pct(oracle));
            honest_by_round.push(pct(honest));
            plus_by_round.push((pct(honest_plus), pct(oracle_plus)));
            let mut r = Map::new();
            r.insert("round".into(), Value::from(round as u64));
            r.insert("tasks".into(), Value::from(tasks.len() as u64));
            r.insert("honest_pct".into(), json!(pct(honest)));
            r.insert("oracle_pct".into(), json!(pct(oracle)));
            if has_plus {
                r.insert("honest_plus_pct".into(), json!(pct(honest_plus)));
                r.insert("oracle_plus_pct".into(), json!(pct(oracle_plus)));
            }
            r.insert("public_solved_pct".into(), json!(pct(solved)));
            for kind in ERROR_KINDS {
                let share = if failing == 0 {
                    0.0
                } else {
                    errors.get(kind).copied().unwrap_or(0) as f64 / failing as f64
                };
                r.insert(format!("error_share_{kind}"), json!(share));
            }
            r.insert(
                "representation".into(),
                Value::String(representation.clone()),
            );
            score_rows.push(r);
        }
        tasks::add_labels(&mut score_rows, &p.labels);
        let mut summary = Map::new();
        summary.insert(
            "strategy".into(),
            Value::String(match p.search {
                Search::Independent => "sequential".into(),
                Search::Beam => "beam".into(),
            }),
        );
        summary.insert("representation".into(), Value::String(representation));
        summary.insert("n".into(), Value::from(p.n as u64));
        summary.insert("temperature".into(), json!(p.temperature));
        summary.insert("rounds".into(), Value::from(p.rounds as u64));
        summary.insert("tasks".into(), Value::from(tasks.len() as u64));
        summary.insert(
            "honest_pct".into(),
            json!(honest_by_round.last().copied().unwrap_or(0.0)),
        );
        summary.insert(
            "oracle_pct".into(),
            json!(oracle_by_round.last().copied().unwrap_or(0.0)),
        );
        let mean = oracle_by_round.iter().sum::<f64>() / oracle_by_round.len().max(1) as f64;
        summary.insert("oracle_mean_pct".into(), json!(mean));
        if has_plus && let Some((honest_plus, oracle_plus)) = plus_by_round.last() {
            summary.insert("honest_plus_pct".into(), json!(honest_plus));
            summary.insert("oracle_plus_pct".into(), json!(oracle_plus));
        }
        let mut summary = vec![summary];
        tasks::add_labels(&mut summary, &p.labels);

        ctx.write_output(
            "rounds",
            &artifact::json_rows_to_typed_table(round_rows, rounds_template())?,
        )?;
        ctx.write_output("scores", &artifact::json_rows_to_table(&score_rows)?.0)?;
        ctx.write_output("summary", &artifact::json_rows_to_table(&summary)?.0)
    }
}

fn empty_step() -> Step {
    Step {
        round: 0,
        parent: 0,
        program: String::new(),
        reasoning: String::new(),
        messages: String::new(),
        reply: String::new(),
        public: SuiteResult::default(),
        feedback: Vec::new(),
        history: Vec::new(),
    }
}

/// The verdict of a sample's first failing public test, as an error kind.
fn error_kind(public: &SuiteResult) -> &'static str {
    match public
        .reports
        .iter()
        .find(|r| r.verdict != Verdict::Pass)
        .map(|r| r.verdict)
    {
        Some(Verdict::WrongAnswer) => "wrong_answer",
        Some(Verdict::RuntimeError) => "runtime_error",
        Some(Verdict::Timeout) => "timeout",
        Some(Verdict::SyntaxError) => "syntax_error",
        _ => "other",
    }
}

fn rounds_template() -> Row {
    let mut t = Map::new();
    for c in [
        "task_id",
        "program",
        "reasoning",
        "messages",
        "reply",
        "feedback",
    ] {
        t.insert(c.into(), Value::String(String::new()));
    }
    for c in ["sample", "round", "parent", "public_passed", "public_total"] {
        t.insert(c.into(), Value::from(0u64));
    }
    t.insert("private_passed".into(), Value::Bool(false));
    t.insert("stopped".into(), Value::Bool(false));
    t
}
