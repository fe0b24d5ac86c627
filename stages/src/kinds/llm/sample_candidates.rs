//! `sample_candidates`: sample k programs per problem from the in-process model (libtorch).
//!
//! # What it does
//! For every problem, asks the model for `k` samples and writes each one as
//! a candidate program, in the schema of `load_samples`, ready for
//! `execute` and `mine_pairs`. Two ways to ask:
//! - `completion` (default): the problem's `prompt` is continued as raw
//!   text, HumanEval style; the program is the prompt followed by the
//!   completion, cut at the first `stop` string (default: a new top-level
//!   `def`, `class`, `if __name__`, `print(` or comment, as Codex/CodeT did).
//! - `chat`: `template` renders the row into chat messages (JSON, like
//!   `templates/prompts/*.j2`), the model's chat format wraps them, and the
//!   program is the last Python code block of the reply.
//!
//! Each sample has its own seed, derived from `seed`, the task id and the
//! sample's index, so a problem's samples do not change when other problems
//! are added or `k` grows, and the same spec on the same model gives the same
//! programs. Model files (and a LoRA adapter's base) are content-hashed.
//!
//! # Params
//! - `model` (required): an HF model directory, or an `sft` LoRA adapter
//!   (then `base`, unless its `adapter_config.json` names a readable base).
//! - `k` (default 10), `temperature` (default 0.8; 0 is greedy), `top_p`
//!   (default 0.95), `max_tokens` (default 300), `seed` (default 0).
//! - `mode` (`completion` | `chat`, default `completion`); `template` (chat mode).
//! - `stop` (list; default the completion-mode list above, none in chat mode).
//! - `chat_format` (default `hf`: the model's own template; or a
//!   `templates/chat/*.j2` file), `device` (default `auto`), `dtype`
//!   (default `auto`), `batch_size` (default 8), `threads` (0 = libtorch's default).
//!
//! # Inputs
//! - `problems`: `task_id`, `prompt`, `entry_point` (a `load_benchmark` output);
//!   in chat mode, whatever columns the template reads.
//!
//! # Outputs
//! - `candidates`: `candidate` (`<task_id>#<n>`), `task_id`, `sample`,
//!   `program`, `entry_point`, `completion` (the raw text), `finish_reason`
//!   (`stop` | `length`), `completion_tokens`.
//!
//! # Caching
//! Every sampling param is in the key, with the model's files and the
//! template's bytes; a rerun costs no generation.
//!
//! # Example
//! ```yaml
//! candidates:
//!   kind: sample_candidates
//!   inputs: { problems: humaneval.problems }
//!   params: { model: ../models/smollm2-135m-instruct/hf, k: 20, temperature: 0.8 }
//! ```

use crate::api::artifact;
use crate::api::rows;
use crate::api::rows::{Row, nonempty_text};
use crate::api::{FileDep, InputSlot, PlanEnv, Problem, RunCtx, Stage, StageError};
use crate::llm::checkpoint;
use crate::llm::reply;
use crate::llm::{Backend, FinishReason, Message, Prompt, Request, Sampling};
use crate::model::{self, TchBackend};
use crate::text::templates;
use crate::text::templating;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub struct SampleCandidates;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AskMode {
    #[default]
    Completion,
    Chat,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleCandidatesParams {
    pub model: String,
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default = "default_k")]
    pub k: usize,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[serde(default = "default_top_p")]
    pub top_p: f64,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub mode: AskMode,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub stop: Option<Vec<String>>,
    #[serde(default = "crate::llm::checkpoint::default_chat")]
    pub chat_format: String,
    #[serde(default = "crate::llm::checkpoint::default_auto")]
    pub device: String,
    #[serde(default = "crate::llm::checkpoint::default_auto")]
    pub dtype: String,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub threads: usize,
}

fn default_k() -> usize {
    10
}
fn default_temperature() -> f64 {
    0.8
}
fn default_top_p() -> f64 {
    0.95
}
fn default_max_tokens() -> usize {
    300
}
fn default_batch() -> usize {
    8
}

/// Where Codex-era harnesses cut a function completion.
const COMPLETION_STOPS: [&str; 5] = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"];

impl SampleCandidatesParams {
    fn stops(&self) -> Vec<String> {
        match (&self.stop, self.mode) {
            (Some(stop), _) => stop.clone(),
            (None, AskMode::Completion) => COMPLETION_STOPS.iter().map(|s| s.to_string()).collect(),
            (None, AskMode::Chat) => Vec::new(),
        }
    }
}

impl Stage for SampleCandidates {
    const KIND: &'static str = "sample_candidates";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("sample_candidates.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("problems")];
    const OUTPUTS: &'static [&'static str] = &["candidates"];
    type Params = SampleCandidatesParams;

    fn validate(p: &SampleCandidatesParams) -> Vec<Problem> {
        let mut out = Vec::new();
        if p.k == 0 {
            out.push(Problem::at("k", "must be at least 1"));
        }
        if p.max_tokens == 0 {
            out.push(Problem::at("max_tokens", "must be at least 1"));
        }
        if p.temperature < 0.0 || !p.temperature.is_finite() {
            out.push(Problem::at(
                "temperature",
                "must be zero (greedy) or positive",
            ));
        }
        if !(p.top_p > 0.0 && p.top_p <= 1.0) {
            out.push(Problem::at("top_p", "must be in (0, 1]"));
        }
        if p.batch_size == 0 {
            out.push(Problem::at("batch_size", "must be at least 1"));
        }
        match (p.mode, &p.template) {
            (AskMode::Chat, None) => out.push(
                Problem::at(
                    "template",
                    "`mode: chat` needs `template`: the messages to send",
                )
                .help("e.g. ../templates/prompts/nl2code.j2"),
            ),
            (AskMode::Completion, Some(_)) => out.push(Problem::at(
                "template",
                "`template` is read in `mode: chat` only; completion mode continues `prompt`",
            )),
            _ => {}
        }
        out.extend(checkpoint::runtime_problems(&p.device, &p.dtype));
        out
    }

    fn file_deps(p: &SampleCandidatesParams, env: &PlanEnv) -> Vec<FileDep> {
        let mut deps = checkpoint::model_dir_deps("model", &p.model, env);
        if let Some(base) = &p.base {
            deps.extend(checkpoint::model_dir_deps("base", base, env));
        }
        if let Some(t) = &p.template {
            deps.extend(templates::template_deps(t, env));
        }
        if p.chat_format != "hf" {
            for mut d in templates::template_deps(&p.chat_format, env) {
                d.param = "chat_format".into();
                deps.push(d);
            }
        }
        deps
    }

    fn run(p: &SampleCandidatesParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let problems = artifact::table_to_json_rows(&ctx.input("problems")?)?;
        rows::require_column(&problems, "problems", "task_id", "task_id")?;
        if p.mode == AskMode::Completion {
            rows::require_column(&problems, "problems", "prompt", "mode")?;
        }
        let failed = |e: model::ModelError| StageError::failed(e.to_string());
        let prompts = prompts(p, ctx, &problems)?;
        if p.threads > 0 {
            tch::set_num_threads(p.threads as i32);
        }
        let device = model::parse_device(&p.device).map_err(failed)?;
        let kind = model::parse_kind(&p.dtype, device).map_err(failed)?;
        let chat = if p.chat_format == "hf" {
            "hf".to_string()
        } else {
            ctx.resolve(&p.chat_format).to_string_lossy().into_owned()
        };
        let base = p.base.as_ref().map(|b| ctx.resolve(b));
        let backend = model::guard(|| {
            TchBackend::open(
                &ctx.resolve(&p.model),
                base.as_deref(),
                &chat,
                device,
                kind,
                p.batch_size,
            )
        })
        .map_err(failed)?;
        ctx.note("model", backend.model_id());

        let stops = p.stops();
        let mut requests = Vec::with_capacity(problems.len() * p.k);
        let mut owners = Vec::with_capacity(requests.capacity());
        for (row, (task, prompt)) in problems.iter().zip(&prompts) {
            for sample in 0..p.k {
                requests.push(Request {
                    prompt: prompt.clone(),
                    sampling: Sampling {
                        max_tokens: p.max_tokens,
                        temperature: p.temperature,
                        top_p: p.top_p,
                        stop: stops.clone(),
                        seed: sample_seed(p.seed, task, sample),
                    },
                });
                owners.push((row, task, sample));
            }
        }
        ctx.progress().set_total(requests.len() as u64);
        let mut completions = Vec::with_capacity(requests.len());
        // One batch at a time so that progress moves and a failure names its problem.
        for (chunk, who) in requests
            .chunks(p.batch_size)
            .zip(owners.chunks(p.batch_size))
        {
            let done = backend
                .complete(chunk)
                .map_err(|e| StageError::failed(format!("sampling for `{}`: {e}", who[0].1)))?;
            ctx.progress().inc(done.len() as u64);
            completions.extend(done);
        }

        let mut rows = Vec::with_capacity(completions.len());
        let mut tokens = 0usize;
        for ((row, task, sample), completion) in owners.into_iter().zip(completions) {
            tokens += completion.completion_tokens;
            let program = match p.mode {
                AskMode::Completion => {
                    format!(
                        "{}{}",
                        nonempty_text(row, "prompt").unwrap_or_default(),
                        completion.text
                    )
                }
                AskMode::Chat => reply::extract_code(&completion.text, "python"),
            };
            let mut r = Map::new();
            r.insert(
                "candidate".into(),
                Value::String(format!("{task}#{sample}")),
            );
            r.insert("task_id".into(), Value::String(task.clone()));
            r.insert("sample".into(), Value::from(sample as u64));
            r.insert("program".into(), Value::String(program));
            r.insert(
                "entry_point".into(),
                nonempty_text(row, "entry_point").map_or(Value::Null, Value::String),
            );
            r.insert("completion".into(), Value::String(completion.text));
            r.insert(
                "finish_reason".into(),
                Value::String(
                    match completion.finish_reason {
                        FinishReason::Stop => "stop",
                        FinishReason::Length => "length",
                    }
                    .into(),
                ),
            );
            r.insert(
                "completion_tokens".into(),
                Value::from(completion.completion_tokens as u64),
            );
            rows.push(r);
        }
        ctx.note("samples", rows.len());
        ctx.note("completion_tokens", tokens);
        let mut template = Map::new();
        for t in [
            "candidate",
            "task_id",
            "program",
            "entry_point",
            "completion",
            "finish_reason",
        ] {
            template.insert(t.into(), Value::String(String::new()));
        }
        template.insert("sample".into(), Value::from(0u64));
        template.insert("completion_tokens".into(), Value::from(0u64));
        ctx.write_output(
            "candidates",
            &artifact::json_rows_to_typed_table(rows, template)?,
        )
    }
}

/// Each problem's task id and what to send for it.
fn prompts(
    p: &SampleCandidatesParams,
    ctx: &RunCtx<'_>,
    problems: &[Row],
) -> Result<Vec<(String, Prompt)>, StageError> {
    let bad = |i: usize, message: String| StageError::BadInput {
        slot: "problems".into(),
        message: format!("row {i}: {message}"),
    };
    let template = match (&p.mode, &p.template) {
        (AskMode::Chat, Some(t)) => {
            let main = ctx.resolve(t);
            let (env, name) = templates::load_templates(&main)?;
            Some((env, name, main))
        }
        _ => None,
    };
    let mut out = Vec::with_capacity(problems.len());
    for (i, row) in problems.iter().enumerate() {
        let task =
            nonempty_text(row, "task_id").ok_or_else(|| bad(i, "`task_id` is empty".into()))?;
        let prompt = match &template {
            None => Prompt::Text(
                nonempty_text(row, "prompt")
                    .ok_or_else(|| bad(i, format!("{task}: `prompt` is empty")))?,
            ),
            Some((env, name, path)) => {
                let value = templating::json_value(&Value::Object(row.clone()));
                let text = env
                    .get_template(name)
                    .and_then(|t| t.render(minijinja::context! { row => value.clone(), vars => minijinja::context! {}, ..value }))
                    .map_err(|e| StageError::Template {
                        path: path.clone(),
                        message: format!("row {i} ({task}): {e}"),
                    })?;
                let messages: Vec<Message> =
                    serde_json::from_str(text.trim()).map_err(|e| StageError::Template {
                        path: path.clone(),
                        message: format!(
                            "row {i} ({task}): the template must print chat messages as JSON: {e}"
                        ),
                    })?;
                Prompt::Chat(messages)
            }
        };
        out.push((task, prompt));
    }
    Ok(out)
}

/// A sample's own seed: the same for the same (seed, task, index), whatever
/// else the run samples.
fn sample_seed(seed: u64, task: &str, sample: usize) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(task.as_bytes());
    h.update(&(sample as u64).to_le_bytes());
    let bytes: [u8; 8] = h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_seeds_depend_on_seed_task_and_index_only() {
        assert_eq!(
            sample_seed(1, "HumanEval/0", 3),
            sample_seed(1, "HumanEval/0", 3)
        );
        let all = [
            sample_seed(1, "HumanEval/0", 3),
            sample_seed(2, "HumanEval/0", 3),
            sample_seed(1, "HumanEval/1", 3),
            sample_seed(1, "HumanEval/0", 4),
        ];
        let distinct: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    fn completion_mode_stops_at_the_next_top_level_statement_unless_told() {
        let p: SampleCandidatesParams =
            serde_json::from_value(serde_json::json!({ "model": "m" })).unwrap();
        assert!(p.stops().contains(&"\ndef ".to_string()));
        let chat: SampleCandidatesParams = serde_json::from_value(
            serde_json::json!({ "model": "m", "mode": "chat", "template": "t.j2" }),
        )
        .unwrap();
        assert!(chat.stops().is_empty());
        assert!(SampleCandidates::validate(&chat).is_empty());
        let no_template: SampleCandidatesParams =
            serde_json::from_value(serde_json::json!({ "model": "m", "mode": "chat", "k": 0 }))
                .unwrap();
        let problems = SampleCandidates::validate(&no_template);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
