//! `sft`: fine-tune a causal LM on chat data, full or LoRA, in-process on libtorch.
//!
//! # What it does
//! Trains a Llama- or Qwen2-family model (HF directory: `config.json`,
//! safetensors, `tokenizer.json`) on conversations, as LLaMA-Factory's
//! `stage: sft` does: each row's messages are formatted with the chat format,
//! the loss covers only assistant turns (with their end-of-turn text),
//! sequences are cut at `cutoff_len`, batched with right padding or packed;
//! AdamW, cosine schedule with warmup, gradient accumulation and clipping.
//! bf16 on GPU (with f32 optimizer state), f32 on CPU. Needs the `torch` feature.
//!
//! # Params
//! - `model` (required): the base model directory (relative to the spec).
//! - `method`: `full` (default) or `lora`.
//! - `lora_rank` (8), `lora_alpha` (default 2 × rank), `lora_dropout` (0.0),
//!   `lora_target` (`[all]` = every linear layer; or names like `q_proj`).
//! - `learning_rate` (5e-5), `epochs` (3.0), `max_steps` (overrides epochs),
//!   `batch_size` (1), `grad_accum` (8), `warmup_ratio` (0.1) or
//!   `warmup_steps` (overrides the ratio; the study used 5),
//!   `weight_decay` (0.0), `max_grad_norm` (1.0; 0 = off), `cutoff_len` (2048),
//!   `packing` (false), `seed` (42).
//! - `chat_format`: `hf` (the model's own template, default) or a chat format
//!   file such as `templates/chat/chatml.j2`.
//! - `column`: the messages column (`messages`; ShareGPT `conversations` with
//!   `from`/`value` also works).
//! - `device` (`auto`, `cpu`, `cuda`, `cuda:N`), `dtype` (`auto`, `f32`, `bf16`),
//!   `threads` (libtorch CPU threads; 0 = its default).
//! - `resume_from`: a checkpoint directory an earlier `sft` wrote (its
//!   `trainer_state.json` and optimizer state); training continues from its step.
//!
//! # Inputs
//! - `rows`: one conversation per row; `messages` is a JSON list of
//!   `{role, content}` (the ShareGPT / OpenAI form the dataset stages write).
//!
//! # Outputs
//! - `model`: one row: `checkpoint` (directory next to this artifact),
//!   `method`, `base_model`, `steps`, `final_loss`, `examples`, `skipped`,
//!   `trained_tokens`, `fingerprint` (blake3 of the checkpoint files).
//!   A full run writes `model.safetensors` + `config.json`; LoRA writes PEFT's
//!   `adapter_model.safetensors` + `adapter_config.json`; both copy the tokenizer
//!   and add `optimizer.safetensors` + `trainer_state.json` for resuming.
//! - `loss`: one row per optimizer step: `step`, `epoch`, `loss`,
//!   `learning_rate`, `grad_norm`, `tokens`, `trained_tokens`, `seconds`.
//!
//! # Caching
//! The base model's files, the chat format file and a resumed checkpoint are
//! file dependencies (hashed by content), every hyperparameter is a param.
//! `device: auto` does not put the device in the key; name it to keep CPU and
//! GPU runs apart. A failed run leaves no checkpoint: it is written to a
//! `.partial` directory and renamed at the end, and the stage's staging
//! directory is discarded on error.
//!
//! # Example
//! ```yaml
//! repair_lora:
//!   kind: sft
//!   inputs: { rows: sft_data.rows }
//!   params: { model: models/smollm2, method: lora, lora_rank: 8, epochs: 1, learning_rate: 1e-4 }
//! ```

use crate::api::{FileDep, InputSlot, PlanEnv, Problem, RunCtx, Stage, StageError, module_doc};
use crate::artifact;
use crate::llm::Message;
use crate::model::lora::{ALL_LINEAR, LoraConfig};
use crate::model::train::{self, Method, TrainConfig, Trainer};
use crate::model::{self, ChatFormat, Codec, ModelError, Transformer};
use arrow::array::Array;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub struct Sft;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftParams {
    pub model: String,
    #[serde(default = "default_method")]
    pub method: Method,
    #[serde(default = "default_rank")]
    pub lora_rank: i64,
    #[serde(default)]
    pub lora_alpha: Option<f64>,
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default = "default_target")]
    pub lora_target: Vec<String>,
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    #[serde(default = "default_epochs")]
    pub epochs: f64,
    #[serde(default)]
    pub max_steps: Option<i64>,
    #[serde(default = "one")]
    pub batch_size: usize,
    #[serde(default = "default_accum")]
    pub grad_accum: usize,
    #[serde(default = "default_warmup")]
    pub warmup_ratio: f64,
    #[serde(default)]
    pub warmup_steps: Option<i64>,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "default_clip")]
    pub max_grad_norm: f64,
    #[serde(default = "default_cutoff")]
    pub cutoff_len: usize,
    #[serde(default)]
    pub packing: bool,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "default_chat")]
    pub chat_format: String,
    #[serde(default = "default_column")]
    pub column: String,
    #[serde(default = "default_auto")]
    pub device: String,
    #[serde(default = "default_auto")]
    pub dtype: String,
    #[serde(default)]
    pub threads: usize,
    #[serde(default)]
    pub resume_from: Option<String>,
}

fn default_method() -> Method {
    Method::Full
}
fn default_rank() -> i64 {
    8
}
fn default_target() -> Vec<String> {
    vec!["all".into()]
}
fn default_lr() -> f64 {
    5e-5
}
fn default_epochs() -> f64 {
    3.0
}
fn one() -> usize {
    1
}
fn default_accum() -> usize {
    8
}
fn default_warmup() -> f64 {
    0.1
}
fn default_clip() -> f64 {
    1.0
}
fn default_cutoff() -> usize {
    2048
}
fn default_seed() -> u64 {
    42
}
pub(crate) fn default_chat() -> String {
    "hf".into()
}
fn default_column() -> String {
    "messages".into()
}
pub(crate) fn default_auto() -> String {
    "auto".into()
}

impl SftParams {
    fn train_config(&self) -> TrainConfig {
        let lora = (self.method == Method::Lora).then(|| LoraConfig {
            rank: self.lora_rank,
            alpha: self.lora_alpha.unwrap_or(2.0 * self.lora_rank as f64),
            dropout: self.lora_dropout,
            targets: if self.lora_target.iter().any(|t| t == "all") {
                ALL_LINEAR.iter().map(|s| s.to_string()).collect()
            } else {
                self.lora_target.clone()
            },
        });
        TrainConfig {
            method: self.method.clone(),
            lora,
            learning_rate: self.learning_rate,
            epochs: self.epochs,
            max_steps: self.max_steps,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            warmup_ratio: self.warmup_ratio,
            warmup_steps: self.warmup_steps,
            weight_decay: self.weight_decay,
            max_grad_norm: self.max_grad_norm,
            packing: self.packing,
            cutoff_len: self.cutoff_len,
            seed: self.seed,
        }
    }
}

/// What is wrong with a `device` and `dtype` pair of params, by the runtime's own parsers.
pub(crate) fn runtime_problems(device: &str, dtype: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    if !model::is_device_name(device) {
        out.push(
            Problem::at("device", format!("unknown device `{device}`"))
                .help("auto, cpu, cuda or cuda:N"),
        );
    }
    if let Err(e) = model::parse_kind(dtype, tch::Device::Cpu) {
        out.push(Problem::at("dtype", e.to_string()));
    }
    out
}

/// The files of a model directory as key dependencies of `param`; a directory
/// that cannot be read becomes its `config.json`, reported missing at plan time.
pub fn model_dir_deps(param: &str, dir: &str, env: &PlanEnv) -> Vec<FileDep> {
    let files = model_files(&env.resolve(dir));
    if files.is_empty() {
        return vec![FileDep {
            param: param.into(),
            path: format!("{dir}/config.json"),
        }];
    }
    files
        .into_iter()
        .map(|f| FileDep {
            param: param.into(),
            path: format!("{}/{f}", dir.trim_end_matches('/')),
        })
        .collect()
}

/// Files of a model directory that define it (config, tokenizer, weights,
/// trainer state); none when it cannot be read.
pub fn model_files(dir: &Path) -> Vec<String> {
    model::model_files(dir).unwrap_or_default()
}

/// Messages of one row: `[{role, content}]`, or ShareGPT `[{from, value}]`.
pub fn parse_messages(text: &str) -> Result<Vec<Message>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let list = v.as_array().ok_or("not a JSON list of messages")?;
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let get = |k: &str| m.get(k).and_then(|x| x.as_str());
            let (role, content) = match (get("role"), get("content"), get("from"), get("value")) {
                (Some(r), Some(c), _, _) => (r.to_string(), c.to_string()),
                (_, _, Some(f), Some(v)) => (
                    match f {
                        "human" | "user" => "user",
                        "gpt" | "assistant" => "assistant",
                        "system" => "system",
                        other => {
                            return Err(format!("message {}: unknown sender `{other}`", i + 1));
                        }
                    }
                    .to_string(),
                    v.to_string(),
                ),
                _ => {
                    return Err(format!(
                        "message {}: needs `role` and `content` (or ShareGPT `from` and `value`)",
                        i + 1
                    ));
                }
            };
            Ok(Message { role, content })
        })
        .collect()
}

fn failed(e: ModelError) -> StageError {
    StageError::Failed(e.to_string())
}

impl Stage for Sft {
    const KIND: &'static str = "sft";
    const VERSION: u32 = 1;
    type Params = SftParams;

    fn doc() -> String {
        module_doc(include_str!("sft.rs"))
    }

    fn inputs(_p: &SftParams) -> Vec<InputSlot> {
        vec![InputSlot::one("rows")]
    }

    fn outputs(_p: &SftParams) -> Vec<String> {
        vec!["model".into(), "loss".into()]
    }

    fn validate(p: &SftParams) -> Vec<Problem> {
        let mut out = Vec::new();
        if p.learning_rate <= 0.0 || !p.learning_rate.is_finite() {
            out.push(Problem::at("learning_rate", "must be a positive number"));
        }
        if p.batch_size == 0 {
            out.push(Problem::at("batch_size", "must be at least 1"));
        }
        if p.grad_accum == 0 {
            out.push(Problem::at("grad_accum", "must be at least 1"));
        }
        if p.cutoff_len < 2 {
            out.push(Problem::at("cutoff_len", "must be at least 2 tokens"));
        }
        if p.epochs <= 0.0 && p.max_steps.is_none() {
            out.push(Problem::at("epochs", "must be positive (or set max_steps)"));
        }
        if let Some(s) = p.max_steps
            && s < 1
        {
            out.push(Problem::at("max_steps", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&p.warmup_ratio) {
            out.push(Problem::at("warmup_ratio", "must be in [0, 1)"));
        }
        if p.warmup_steps.is_some_and(|w| w < 0) {
            out.push(Problem::at("warmup_steps", "must be zero or positive"));
        }
        if !(0.0..1.0).contains(&p.lora_dropout) {
            out.push(Problem::at("lora_dropout", "must be in [0, 1)"));
        }
        if p.method == Method::Lora {
            if p.lora_rank < 1 {
                out.push(Problem::at("lora_rank", "must be at least 1"));
            }
            for t in &p.lora_target {
                if t != "all" && !ALL_LINEAR.contains(&t.as_str()) {
                    out.push(
                        Problem::at("lora_target", format!("`{t}` is not a linear layer"))
                            .help(format!("all, or any of {}", ALL_LINEAR.join(", "))),
                    );
                }
            }
        }
        out.extend(runtime_problems(&p.device, &p.dtype));
        out
    }

    fn file_deps(p: &SftParams, env: &PlanEnv) -> Vec<FileDep> {
        let mut deps = model_dir_deps("model", &p.model, env);
        if let Some(r) = &p.resume_from {
            deps.extend(model_dir_deps("resume_from", r, env));
        }
        if p.chat_format != "hf" {
            for mut d in crate::render::template_deps(&p.chat_format, env) {
                d.param = "chat_format".into();
                deps.push(d);
            }
        }
        deps
    }

    fn run(p: &SftParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let table = ctx.input("rows")?;
        let column = artifact::string_column(&table, "rows", &p.column)?;
        let mut conversations = Vec::with_capacity(table.num_rows());
        for i in 0..table.num_rows() {
            if column.is_null(i) {
                return Err(StageError::BadInput {
                    slot: "rows".into(),
                    message: format!("row {i}: `{}` is null", p.column),
                });
            }
            let messages = parse_messages(column.value(i)).map_err(|m| StageError::BadInput {
                slot: "rows".into(),
                message: format!("row {i}: `{}`: {m}", p.column),
            })?;
            conversations.push(messages);
        }
        if p.threads > 0 {
            tch::set_num_threads(p.threads as i32);
        }
        let model_dir = ctx.resolve(&p.model);
        let resume = p.resume_from.as_ref().map(|r| ctx.resolve(r));
        let device = model::parse_device(&p.device).map_err(failed)?;
        let kind = model::parse_kind(&p.dtype, device).map_err(failed)?;
        let cfg = p.train_config();

        let mut net =
            model::guard(|| load_for_training(&model_dir, resume.as_deref(), &cfg, device, kind))
                .map_err(failed)?;
        let codec = Codec::open(&model_dir, &net.config).map_err(failed)?;
        let chat_spec = if p.chat_format == "hf" {
            "hf".to_string()
        } else {
            ctx.resolve(&p.chat_format).to_string_lossy().into_owned()
        };
        let chat = ChatFormat::open(&chat_spec, &model_dir).map_err(failed)?;

        let mut examples = Vec::new();
        let mut skipped = 0usize;
        for (i, messages) in conversations.iter().enumerate() {
            let e =
                train::encode_conversation(&codec, &chat, messages, p.cutoff_len).map_err(|e| {
                    StageError::BadInput {
                        slot: "rows".into(),
                        message: format!("row {i}: {e}"),
                    }
                })?;
            // Cut off before any assistant token: nothing to learn from it.
            if e.labels.iter().skip(1).all(|&l| l == train::IGNORE) {
                skipped += 1;
            } else {
                examples.push(e);
            }
        }
        let pad_id = codec.pad_id;
        let example_count = examples.len();
        let progress = ctx.progress();
        let outcome = model::guard(|| {
            let mut trainer = Trainer {
                model: &mut net,
                config: cfg.clone(),
                examples: std::mem::take(&mut examples),
                pad_id,
            };
            trainer.train(resume.as_deref(), None, |s| {
                progress.inc(1);
                progress.set_message(&format!("step {} loss {:.4}", s.step, s.loss));
            })
        })
        .map_err(failed)?;

        let checkpoint = ctx.output_path("model").with_file_name("checkpoint");
        model::guard(|| train::save(&net, &outcome, &cfg, &model_dir, &checkpoint))
            .map_err(failed)?;
        let fingerprint = model::fingerprint(&[&checkpoint]).map_err(failed)?;
        let trained: i64 = outcome.log.iter().map(|s| s.trained_tokens).sum();
        let final_loss = outcome.log.last().map(|s| s.loss);
        ctx.note("steps", outcome.log.len());
        ctx.note("skipped_examples", skipped);

        let row = serde_json::json!({
            "checkpoint": "checkpoint",
            "method": match cfg.method { Method::Full => "full", Method::Lora => "lora" },
            "base_model": p.model,
            "steps": outcome.optimizer.step,
            "final_loss": final_loss,
            "examples": example_count,
            "skipped": skipped,
            "trained_tokens": trained,
            "fingerprint": fingerprint,
        });
        let rows = vec![row.as_object().cloned().unwrap_or_default()];
        let (model_table, _) = artifact::json_rows_to_table(&rows)?;
        ctx.write_output("model", &model_table)?;

        let template = serde_json::json!({
            "step": 0, "epoch": 0.5, "loss": 0.5, "learning_rate": 0.5, "grad_norm": 0.5,
            "tokens": 0, "trained_tokens": 0, "seconds": 0.5,
        });
        let log_rows = outcome
            .log
            .iter()
            .map(|s| {
                serde_json::to_value(s)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default()
            })
            .collect();
        let loss = artifact::json_rows_to_typed_table(
            log_rows,
            template.as_object().cloned().unwrap_or_default(),
        )?;
        ctx.write_output("loss", &loss)
    }
}

/// The model to train: the base, or the weights of the checkpoint being resumed.
fn load_for_training(
    model_dir: &Path,
    resume: Option<&Path>,
    cfg: &TrainConfig,
    device: tch::Device,
    kind: tch::Kind,
) -> Result<Transformer, ModelError> {
    match (resume, &cfg.method) {
        (Some(r), Method::Full) => {
            let state = train::read_state(r)?;
            if state.config.method != Method::Full {
                return Err(ModelError::Checkpoint {
                    path: r.to_path_buf(),
                    message: "holds a LoRA adapter; resume it with method lora".into(),
                });
            }
            Transformer::load(r, device, kind)
        }
        (Some(r), Method::Lora) => {
            let mut m = Transformer::load(model_dir, device, kind)?;
            m.load_lora(r)?;
            Ok(m)
        }
        (None, _) => {
            if !model_dir.join("config.json").is_file() {
                return Err(ModelError::Checkpoint {
                    path: model_dir.to_path_buf(),
                    message: "not a model directory (no config.json)".into(),
                });
            }
            Transformer::load(model_dir, device, kind)
        }
    }
}

/// The checkpoint directory a `model` artifact (from `sft`) points at.
pub fn checkpoint_dir(model_artifact: &Path, checkpoint: &str) -> PathBuf {
    model_artifact
        .parent()
        .map(|d| d.join(checkpoint))
        .unwrap_or_else(|| PathBuf::from(checkpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_as_openai_or_sharegpt_and_bad_ones_are_named() {
        let openai = parse_messages(
            r#"[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]"#,
        )
        .expect("openai");
        let sharegpt =
            parse_messages(r#"[{"from": "human", "value": "hi"}, {"from": "gpt", "value": "ok"}]"#)
                .expect("sharegpt");
        assert_eq!(openai, sharegpt);
        assert_eq!(openai[1].role, "assistant");
        let bad = parse_messages(r#"[{"from": "robot", "value": "x"}]"#).expect_err("sender");
        assert!(bad.contains("message 1: unknown sender `robot`"), "{bad}");
        assert!(
            parse_messages("{}")
                .expect_err("not a list")
                .contains("not a JSON list")
        );
    }

    #[test]
    fn validation_reports_every_bad_hyperparameter() {
        let p: SftParams = serde_json::from_value(serde_json::json!({
            "model": "m", "method": "lora", "learning_rate": 0.0, "batch_size": 0,
            "lora_target": ["attn"], "device": "tpu", "warmup_ratio": 1.5
        }))
        .expect("parse");
        let problems: Vec<String> = Sft::validate(&p)
            .into_iter()
            .map(|p| p.path.join("."))
            .collect();
        assert_eq!(
            problems,
            [
                "learning_rate",
                "batch_size",
                "warmup_ratio",
                "lora_target",
                "device"
            ]
        );
        assert_eq!(p.train_config().lora.expect("lora").alpha, 16.0);
    }
}
