//! `generate`: ask a model for programs: greedy, chain-of-thought, or N samples.
//!
//! # What it does
//! Renders `template` (chat messages as JSON, e.g.
//! `templates/prompts/nl2code.j2`) for every problem and asks the model
//! through the completion ledger: `greedy` asks once at temperature 0 without
//! a reasoning field (DSPy `Predict`, the paper's Greedy column), `cot` asks
//! once at temperature 0 with one (`ChainOfThought`, the CoT column),
//! `sample` asks `n` times at `temperature` with one seed per sample (the
//! candidates of parallel scaling and best-of-N). The program is the reply's
//! `code` field (or its last fenced block); a function body without its
//! `def` gets the problem's prompt in front.
//!
//! # Params
//! - `model` (required): `{backend: openai, base_url, name, ...}` or
//!   `{backend: tch, path}` (see the README's "LLM backends"). `base_url`
//!   may list endpoints serving the same model (one vLLM server per GPU),
//!   each a URL or `{url, concurrency}`; `concurrency` (default 4) is per
//!   endpoint. Each request goes to the least-loaded endpoint with a free
//!   slot; one that fails is marked down for a back-off and the request
//!   moves to another, so the stage fails only if every endpoint does.
//! - `template` (required): the prompt template; `vars`: constants for it
//!   (`vars.cot` defaults to false for `greedy`, true otherwise).
//! - `strategy`: `greedy` | `cot` | `sample` (default).
//! - `n` (default 8) and `temperature` (default 0.7): `sample` only.
//! - `sampling`: `max_tokens` (default 512), `top_p` (default 1.0), `stop`.
//! - `seed` (default 0): each sample's seed is derived from it, the task and
//!   the sample's index.
//!
//! # Inputs
//! - `problems`: `task_id`, `prompt`, `entry_point`, `mode` (a
//!   `load_benchmark` output), plus whatever the template reads.
//! - `model` (only with `model: {backend: tch}` and no `path`): an `sft`
//!   stage's `model` output; its checkpoint (full or LoRA) is the model asked.
//!
//! # Outputs
//! - `candidates`: `candidate` (`<task_id>#<n>`), `task_id`, `sample`,
//!   `program`, `entry_point` (the problem's; empty for stdin programs),
//!   `messages` (the chat messages asked, JSON), `reasoning`, `reply`,
//!   `finish_reason`, `completion_tokens`.
//!
//! # Caching
//! The key covers the params (a single `base_url` included; a list of
//! endpoints is not, so adding, dropping or reordering replicas reruns
//! nothing) and the template's bytes. Completions live in the ledger under
//! (prompt, model, sampling, index, seed), never the endpoint: a rerun with
//! another `base_url`, or after a crash, replays what was received and asks
//! only for the rest. The manifest records `llm_calls`, `llm_replayed` and,
//! per endpoint, the requests it `served` and attempts that `failed`
//! (`llm_endpoints`).
//!
//! # Example
//! ```yaml
//! samples:
//!   kind: generate
//!   inputs: { problems: humaneval.problems }
//!   params:
//!     model: { backend: openai, base_url: "http://127.0.0.1:8080/v1", name: smollm2 }
//!     template: ../templates/prompts/nl2code.j2
//!     n: 16
//!     temperature: 0.7
//! ```

use crate::api::artifact;
use crate::api::rows;
use crate::api::{FileDep, InputSlot, LlmCalls, PlanEnv, Problem, RunCtx, Stage, StageError};
use crate::llm::reply;
use crate::llm::strategy::prompts;
use crate::llm::strategy::prompts::SamplingParams;
use crate::llm::strategy::tasks;
use crate::llm::{FinishReason, ModelSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub struct Generate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Greedy,
    Cot,
    #[default]
    Sample,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateParams {
    pub model: ModelSpec,
    pub template: String,
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default = "default_n")]
    pub n: usize,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[serde(default)]
    pub sampling: SamplingParams,
    #[serde(default)]
    pub seed: u64,
}

fn default_n() -> usize {
    8
}
fn default_temperature() -> f64 {
    0.7
}

impl GenerateParams {
    fn n(&self) -> usize {
        match self.strategy {
            Strategy::Sample => self.n,
            _ => 1,
        }
    }
    fn temperature(&self) -> f64 {
        match self.strategy {
            Strategy::Sample => self.temperature,
            _ => 0.0,
        }
    }
}

impl Stage for Generate {
    const KIND: &'static str = "generate";
    // 2: candidates carry the problem's `entry_point`, as `load_samples` writes it.
    const VERSION: u32 = 3;
    const SOURCE: &'static str = include_str!("generate.rs");
    const ROW_MAPPED: Option<&'static str> = Some("problems");
    const OUTPUTS: &'static [&'static str] = &["candidates"];
    type Params = GenerateParams;

    fn inputs(p: &GenerateParams) -> Vec<InputSlot> {
        let mut slots = vec![InputSlot::one("problems")];
        slots.extend(p.model.input_slot());
        slots
    }

    fn llm_calls(p: &GenerateParams) -> Option<LlmCalls> {
        let n = p.n() as u64;
        Some(LlmCalls {
            slot: "problems",
            per_row: Some(n),
            formula: format!("{n} sample{}", if n == 1 { "" } else { "s" }),
        })
    }

    fn validate(p: &GenerateParams) -> Vec<Problem> {
        let mut out = p.model.problems("model");
        if p.n == 0 {
            out.push(Problem::at("n", "must be at least 1"));
        }
        if p.strategy != Strategy::Sample && p.n != default_n() && p.n != 1 {
            out.push(
                Problem::at("n", "`greedy` and `cot` ask once per problem")
                    .help("use `strategy: sample` for N samples"),
            );
        }
        out.extend(p.sampling.problems(p.temperature));
        out
    }

    fn file_deps(p: &GenerateParams, env: &PlanEnv) -> Vec<FileDep> {
        let mut deps = p.model.file_deps("model", env);
        deps.extend(prompts::template_deps("template", &p.template, env));
        deps
    }

    fn run(p: &GenerateParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let problems = artifact::table_to_json_rows(&ctx.input("problems")?)?;
        rows::require_column(&problems, "problems", "task_id", "task_id")?;
        let tasks: Vec<tasks::Task> = problems
            .iter()
            .enumerate()
            .map(|(i, row)| tasks::task_from_row(row.clone(), i))
            .collect::<Result<_, _>>()?;
        let mut vars = p.vars.clone();
        vars.entry("cot".into())
            .or_insert(Value::Bool(p.strategy != Strategy::Greedy));
        let template = prompts::PromptTemplate::open(ctx, &p.template, &vars)?;
        let llm = crate::llm::Llm::open(ctx, &p.model)?;
        let mut asks = Vec::new();
        // What each problem's model was shown, kept beside its replies (the browser shows it).
        let mut prompts = Vec::with_capacity(tasks.len());
        for task in &tasks {
            let messages = template.messages(task, &Map::new())?;
            prompts.push(serde_json::to_string(&messages).unwrap_or_default());
            for sample in 0..p.n() {
                let seed = prompts::sample_seed(p.seed, &task.id, sample, 0);
                asks.push((
                    p.sampling.request(messages.clone(), p.temperature(), seed),
                    sample as u64,
                ));
            }
        }
        ctx.progress().set_total(asks.len() as u64);
        let result = llm.complete(&asks, ctx.progress());
        llm.note(ctx);
        let completions =
            result.map_err(|e| StageError::failed(format!("asking {}: {e}", llm.model_id())))?;
        let mut rows = Vec::with_capacity(completions.len());
        let mut it = completions.into_iter();
        for (task, prompt) in tasks.iter().zip(&prompts) {
            for sample in 0..p.n() {
                let Some(c) = it.next() else { break };
                let reply = reply::parse_reply(&c.text);
                let mut r = Map::new();
                r.insert(
                    "candidate".into(),
                    Value::String(format!("{}#{sample}", task.id)),
                );
                r.insert("task_id".into(), Value::String(task.id.clone()));
                r.insert("sample".into(), Value::from(sample as u64));
                r.insert(
                    "program".into(),
                    Value::String(tasks::program_for(task, &reply.code)),
                );
                r.insert(
                    "entry_point".into(),
                    Value::String(task.entry_point.clone().unwrap_or_default()),
                );
                r.insert("messages".into(), Value::String(prompt.clone()));
                r.insert("reasoning".into(), Value::String(reply.reasoning));
                r.insert("reply".into(), Value::String(c.text));
                r.insert(
                    "finish_reason".into(),
                    Value::String(
                        if c.finish_reason == FinishReason::Length {
                            "length"
                        } else {
                            "stop"
                        }
                        .into(),
                    ),
                );
                r.insert(
                    "completion_tokens".into(),
                    Value::from(c.completion_tokens as u64),
                );
                rows.push(r);
            }
        }
        let mut template_row = Map::new();
        for t in [
            "candidate",
            "task_id",
            "program",
            "entry_point",
            "messages",
            "reasoning",
            "reply",
            "finish_reason",
        ] {
            template_row.insert(t.into(), Value::String(String::new()));
        }
        template_row.insert("sample".into(), Value::from(0u64));
        template_row.insert("completion_tokens".into(), Value::from(0u64));
        ctx.write_output(
            "candidates",
            &artifact::json_rows_to_typed_table(rows, template_row)?,
        )
    }
}
