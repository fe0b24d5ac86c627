//! `sft`: fine-tune a causal LM on chat data, full or LoRA: in-process on libtorch, or with LLaMA-Factory.
//!
//! # What it does
//! Two backends train the same rows with the same hyperparameters.
//!
//! `backend: tch` (the default; needs the `torch` feature) trains a Llama- or
//! Qwen2-family model (HF directory: `config.json`, safetensors,
//! `tokenizer.json`) in-process on one device, as LLaMA-Factory's
//! `stage: sft` does: each row's messages are formatted with the chat format,
//! the loss covers only assistant turns (with their end-of-turn text),
//! sequences are cut at `cutoff_len`, batched with right padding or packed;
//! AdamW, cosine schedule with warmup, gradient accumulation and clipping.
//! bf16 on GPU (with f32 optimizer state), f32 on CPU.
//!
//! `backend: llamafactory` (any build) writes the rows as a LLaMA-Factory
//! ShareGPT dataset with its `dataset_info.json`, a training YAML in the
//! original study's format and, for full fine-tuning, the DeepSpeed ZeRO-3
//! config; then runs `llamafactory-cli train` (on `gpus` GPUs through
//! torchrun), keeps its log, and collects the checkpoint and the loss curve.
//! This is the multi-GPU path: full fine-tuning of 7B-9B models as in the study.
//! With `launch: false` it only writes the files, for clusters where jobs
//! are submitted by hand.
//!
//! # Params
//! Both backends:
//! - `model` (required): the base model directory (relative to the spec);
//!   with `llamafactory` also `hf:ORG/NAME`, a Hub id LLaMA-Factory downloads.
//! - `backend`: `tch` (default) or `llamafactory`.
//! - `method`: `full` (default) or `lora`.
//! - `lora_rank` (8), `lora_alpha` (default 2 × rank), `lora_dropout` (0.0),
//!   `lora_target` (`[all]` = every linear layer; or names like `q_proj`).
//! - `learning_rate` (5e-5), `epochs` (3.0), `max_steps` (overrides epochs),
//!   `batch_size` (1; per device), `grad_accum` (8), `warmup_ratio` (0.1) or
//!   `warmup_steps` (overrides the ratio; the study used 5),
//!   `weight_decay` (0.0), `max_grad_norm` (1.0; 0 = off), `cutoff_len` (2048),
//!   `packing` (false), `seed` (42). The study: `learning_rate: 2.0e-5`,
//!   `epochs: 2`, `warmup_steps: 5`, `grad_accum: 8`, `batch_size` 2 to 8.
//! - `column`: the messages column (`messages`; ShareGPT `conversations` with
//!   `from`/`value` also works).
//!
//! `backend: tch` only:
//! - `chat_format`: `hf` (the model's own template, default) or a chat format
//!   file such as `templates/chat/chatml.j2`.
//! - `device` (`auto`, `cpu`, `cuda`, `cuda:N`), `dtype` (`auto`, `f32`, `bf16`),
//!   `threads` (libtorch CPU threads; 0 = its default).
//! - `resume_from`: a checkpoint directory an earlier `sft` wrote (its
//!   `trainer_state.json` and optimizer state); training continues from its step.
//!
//! `backend: llamafactory` only:
//! - `template` (required): LLaMA-Factory's chat template name (`deepseekcoder`,
//!   `llama3`, `gemma`, `qwen`, ...).
//! - `gpus` (1): processes on this node; above 1, or with DeepSpeed, the run
//!   goes through torchrun (`FORCE_TORCHRUN=1`, `NPROC_PER_NODE=gpus`). The
//!   global batch is `batch_size × grad_accum × gpus`.
//! - `deepspeed`: `auto` (default: ZeRO-3 for `full`, none for `lora`, as the
//!   study), `z3` (LLaMA-Factory's `ds_z3_config.json`), `none`, or a JSON
//!   config file (relative to the spec; copied beside the YAML).
//! - `bf16` (true), `max_samples` (100000; 0 = no limit), `logging_steps` (10),
//!   `save_strategy` (`epoch`; or `steps`, `no`), `save_total_limit` (1),
//!   `lr_scheduler_type` (`cosine`), `dataset` (`tw_sft`: the dataset's name).
//! - `extra`: more YAML keys, e.g. `{flash_attn: fa2, report_to: none}`; a key
//!   the YAML already has is replaced (not `output_dir`, `dataset`, `dataset_dir`).
//! - `launcher` (`llamafactory-cli`): the command, on `PATH` or a path
//!   relative to the spec. `launch` (true): false writes the files only.
//!
//! # Inputs
//! - `rows`: one conversation per row; `messages` is a JSON list of
//!   `{role, content}` (the ShareGPT / OpenAI form the dataset stages write).
//!   With `llamafactory`, turns must be an optional `system` turn, then
//!   `user`/`assistant` pairs (LLaMA-Factory silently drops other rows; here
//!   they are an error naming the row).
//!
//! # Outputs
//! - `model`: one row: `checkpoint` (directory next to this artifact),
//!   `method`, `base_model`, `steps`, `final_loss`, `examples`, `skipped`,
//!   `trained_tokens`, `fingerprint` (blake3 of the checkpoint files).
//!   `tch`: a full run writes `model.safetensors` + `config.json`; LoRA writes
//!   PEFT's `adapter_model.safetensors` + `adapter_config.json`; both copy the
//!   tokenizer and add `optimizer.safetensors` + `trainer_state.json` for resuming.
//!   `llamafactory`: the checkpoint is LLaMA-Factory's `output_dir` as it left
//!   it (HF or PEFT files, `trainer_log.jsonl`, the epoch's `checkpoint-N/`);
//!   `skipped` counts rows over `max_samples`, `trained_tokens` is null unless
//!   `extra` turns on `include_num_input_tokens_seen`; three more columns:
//!   `backend`, `launched`, `config` (`llama_factory/train.yaml`). Beside the
//!   artifact, `llama_factory/` holds `train.yaml`, `train.log`,
//!   `ds_z3_config.json` and `data/` (`<dataset>.json`, `dataset_info.json`);
//!   rerun them by hand with `llamafactory-cli train llama_factory/train.yaml`
//!   from that directory. With `launch: false`, `checkpoint`, `final_loss`
//!   and `fingerprint` are null, `steps` is 0 and `loss` has no rows.
//! - `loss`: one row per optimizer step (`tch`) or per logged step
//!   (`llamafactory`, every `logging_steps`, from `trainer_log.jsonl`):
//!   `step`, `epoch`, `loss`, `learning_rate`, `grad_norm`, `tokens`,
//!   `trained_tokens`, `seconds` (null where LLaMA-Factory does not log them).
//!
//! # Caching
//! The base model's files, the chat format file, a resumed checkpoint and a
//! DeepSpeed config file are file dependencies (hashed by content), every
//! hyperparameter is a param; params left at their defaults hash as before
//! the `llamafactory` backend existed. `device: auto` does not put the device
//! in the key; name it to keep CPU and GPU runs apart. With `llamafactory`,
//! the key also holds the versions of LLaMA-Factory, transformers and torch
//! beside the launcher (a `hf:` model is only its name: pin a revision
//! yourself). A failed run leaves no checkpoint: the stage's staging
//! directory is discarded on error (`tch` also writes to a `.partial`
//! directory first); a failed LLaMA-Factory run's log is copied to the
//! temp directory and named in the error.
//!
//! # Example
//! ```yaml
//! repair_lora:
//!   kind: sft
//!   inputs: { rows: sft_data.rows }
//!   params: { model: models/smollm2, method: lora, lora_rank: 8, epochs: 1, learning_rate: 1e-4 }
//! repair_full_4gpu:
//!   kind: sft
//!   inputs: { rows: sft_data.rows }
//!   params: { backend: llamafactory, model: hf:deepseek-ai/deepseek-coder-6.7b-base,
//!             template: deepseekcoder, method: full, gpus: 4, batch_size: 8,
//!             learning_rate: 2.0e-5, epochs: 2, warmup_steps: 5 }
//! ```

mod llamafactory;

use crate::api::{
    EnvFact, FileDep, InputSlot, PlanEnv, Problem, RunCtx, Stage, StageError, module_doc,
};
use crate::artifact;
use crate::llm::Message;
#[cfg(feature = "torch")]
use crate::model::lora::{ALL_LINEAR, LoraConfig};
#[cfg(feature = "torch")]
use crate::model::train::{self, TrainConfig, Trainer};
#[cfg(feature = "torch")]
use crate::model::{self, ChatFormat, Codec, ModelError, Transformer};
use arrow::array::Array;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct Sft;

/// Full fine-tuning or LoRA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Full,
    Lora,
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Full => "full",
            Method::Lora => "lora",
        }
    }
}

/// Who trains: the in-process libtorch runtime or LLaMA-Factory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    #[default]
    Tch,
    Llamafactory,
}

impl Backend {
    fn is_tch(&self) -> bool {
        *self == Backend::Tch
    }
}

/// The params. Those added with the `llamafactory` backend are left out of the
/// serialized form (the cache key) at their defaults, so older specs keep their keys.
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
    // --- added with `backend: llamafactory`; skipped in the key at their defaults ---
    #[serde(default, skip_serializing_if = "Backend::is_tch")]
    pub backend: Backend,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(
        default = "default_dataset",
        skip_serializing_if = "is_default_dataset"
    )]
    pub dataset: String,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub gpus: usize,
    #[serde(default = "default_auto", skip_serializing_if = "is_auto")]
    pub deepspeed: String,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub bf16: bool,
    #[serde(
        default = "default_max_samples",
        skip_serializing_if = "is_default_max_samples"
    )]
    pub max_samples: u64,
    #[serde(
        default = "default_logging_steps",
        skip_serializing_if = "is_default_logging_steps"
    )]
    pub logging_steps: u64,
    #[serde(
        default = "default_save_strategy",
        skip_serializing_if = "is_default_save_strategy"
    )]
    pub save_strategy: String,
    #[serde(default = "one_u64", skip_serializing_if = "is_one_u64")]
    pub save_total_limit: u64,
    #[serde(
        default = "default_scheduler",
        skip_serializing_if = "is_default_scheduler"
    )]
    pub lr_scheduler_type: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
    #[serde(
        default = "default_launcher",
        skip_serializing_if = "is_default_launcher"
    )]
    pub launcher: String,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub launch: bool,
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
fn is_one(n: &usize) -> bool {
    *n == 1
}
fn one_u64() -> u64 {
    1
}
fn is_one_u64(n: &u64) -> bool {
    *n == 1
}
fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
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
fn is_auto(s: &str) -> bool {
    s == "auto"
}
fn default_dataset() -> String {
    "tw_sft".into()
}
fn is_default_dataset(s: &str) -> bool {
    s == "tw_sft"
}
fn default_max_samples() -> u64 {
    100_000
}
fn is_default_max_samples(n: &u64) -> bool {
    *n == default_max_samples()
}
fn default_logging_steps() -> u64 {
    10
}
fn is_default_logging_steps(n: &u64) -> bool {
    *n == default_logging_steps()
}
fn default_save_strategy() -> String {
    "epoch".into()
}
fn is_default_save_strategy(s: &str) -> bool {
    s == "epoch"
}
fn default_scheduler() -> String {
    "cosine".into()
}
fn is_default_scheduler(s: &str) -> bool {
    s == "cosine"
}
fn default_launcher() -> String {
    "llamafactory-cli".into()
}
fn is_default_launcher(s: &str) -> bool {
    s == "llamafactory-cli"
}

impl SftParams {
    /// The effective LoRA alpha: LLaMA-Factory's and PEFT's default is 2 × rank.
    pub fn alpha(&self) -> f64 {
        self.lora_alpha.unwrap_or(2.0 * self.lora_rank as f64)
    }

    #[cfg(feature = "torch")]
    fn train_config(&self) -> TrainConfig {
        let lora = (self.method == Method::Lora).then(|| LoraConfig {
            rank: self.lora_rank,
            alpha: self.alpha(),
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

    /// Params of the other backend that are set away from their defaults.
    fn foreign_params(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        match self.backend {
            Backend::Tch => {
                let set = [
                    ("template", self.template.is_some()),
                    ("dataset", !is_default_dataset(&self.dataset)),
                    ("gpus", !is_one(&self.gpus)),
                    ("deepspeed", !is_auto(&self.deepspeed)),
                    ("bf16", !self.bf16),
                    ("max_samples", !is_default_max_samples(&self.max_samples)),
                    (
                        "logging_steps",
                        !is_default_logging_steps(&self.logging_steps),
                    ),
                    (
                        "save_strategy",
                        !is_default_save_strategy(&self.save_strategy),
                    ),
                    ("save_total_limit", !is_one_u64(&self.save_total_limit)),
                    (
                        "lr_scheduler_type",
                        !is_default_scheduler(&self.lr_scheduler_type),
                    ),
                    ("extra", !self.extra.is_empty()),
                    ("launcher", !is_default_launcher(&self.launcher)),
                    ("launch", !self.launch),
                ];
                out.extend(set.iter().filter(|(_, s)| *s).map(|(n, _)| *n));
            }
            Backend::Llamafactory => {
                let set = [
                    ("chat_format", self.chat_format != default_chat()),
                    ("device", !is_auto(&self.device)),
                    ("dtype", !is_auto(&self.dtype)),
                    ("threads", self.threads != 0),
                    ("resume_from", self.resume_from.is_some()),
                ];
                out.extend(set.iter().filter(|(_, s)| *s).map(|(n, _)| *n));
            }
        }
        out
    }
}

/// What is wrong with a `device` and `dtype` pair of params, by the runtime's own parsers.
#[cfg(feature = "torch")]
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
/// trainer state: its JSON and safetensors files, sorted); none when it cannot be read.
pub fn model_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") || n.ends_with(".safetensors"))
        .collect();
    names.sort();
    names
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

/// The conversations of input `rows`, one per row, from `column`.
fn read_conversations(
    ctx: &RunCtx<'_>,
    column_name: &str,
) -> Result<Vec<Vec<Message>>, StageError> {
    let table = ctx.input("rows")?;
    let column = artifact::string_column(&table, "rows", column_name)?;
    let mut conversations = Vec::with_capacity(table.num_rows());
    for i in 0..table.num_rows() {
        if column.is_null(i) {
            return Err(StageError::BadInput {
                slot: "rows".into(),
                message: format!("row {i}: `{column_name}` is null"),
            });
        }
        let messages = parse_messages(column.value(i)).map_err(|m| StageError::BadInput {
            slot: "rows".into(),
            message: format!("row {i}: `{column_name}`: {m}"),
        })?;
        conversations.push(messages);
    }
    Ok(conversations)
}

#[cfg(feature = "torch")]
fn failed(e: ModelError) -> StageError {
    StageError::Failed(e.to_string())
}

const NEEDS_TORCH: &str = "`tch` (the default backend) needs the cargo feature `torch`";
fn needs_torch_help() -> String {
    format!(
        "{}; or train with `backend: llamafactory`",
        crate::api::rebuild_hint("torch")
    )
}

/// Checks that hold for both backends.
fn common_problems(p: &SftParams) -> Vec<Problem> {
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
    if p.method == Method::Lora && p.lora_rank < 1 {
        out.push(Problem::at("lora_rank", "must be at least 1"));
    }
    let (other, this) = match p.backend {
        Backend::Tch => ("llamafactory", "tch"),
        Backend::Llamafactory => ("tch", "llamafactory"),
    };
    for name in p.foreign_params() {
        out.push(
            Problem::at(name, format!("applies to `backend: {other}` only")).help(format!(
                "this stage trains with `backend: {this}`; drop `{name}`"
            )),
        );
    }
    out
}

/// Checks of the in-process backend.
fn tch_problems(p: &SftParams) -> Vec<Problem> {
    let mut out = Vec::new();
    if !cfg!(feature = "torch") {
        out.push(Problem::at("backend", NEEDS_TORCH).help(needs_torch_help()));
    }
    if p.model.starts_with("hf:") {
        out.push(
            Problem::at("model", "`hf:` models are for `backend: llamafactory`")
                .help("name a local model directory"),
        );
    }
    #[cfg(feature = "torch")]
    {
        if p.method == Method::Lora {
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
    }
    out
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
        let mut out = common_problems(p);
        match p.backend {
            Backend::Tch => out.extend(tch_problems(p)),
            Backend::Llamafactory => out.extend(llamafactory::problems(p)),
        }
        out
    }

    fn file_deps(p: &SftParams, env: &PlanEnv) -> Vec<FileDep> {
        if p.backend == Backend::Llamafactory {
            return llamafactory::file_deps(p, env);
        }
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

    fn env_facts(p: &SftParams) -> Vec<EnvFact> {
        match p.backend {
            Backend::Tch => Vec::new(),
            Backend::Llamafactory => llamafactory::env_facts(p),
        }
    }

    fn run(p: &SftParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        match p.backend {
            Backend::Tch => run_tch(p, ctx),
            Backend::Llamafactory => llamafactory::run(p, ctx),
        }
    }
}

#[cfg(not(feature = "torch"))]
fn run_tch(_p: &SftParams, _ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
    Err(StageError::failed(format!(
        "{NEEDS_TORCH}: {}",
        needs_torch_help()
    )))
}

#[cfg(feature = "torch")]
fn run_tch(p: &SftParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
    let conversations = read_conversations(ctx, &p.column)?;
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
        let e = train::encode_conversation(&codec, &chat, messages, p.cutoff_len).map_err(|e| {
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
    model::guard(|| train::save(&net, &outcome, &cfg, &model_dir, &checkpoint)).map_err(failed)?;
    let fingerprint = model::fingerprint(&[&checkpoint]).map_err(failed)?;
    let trained: i64 = outcome.log.iter().map(|s| s.trained_tokens).sum();
    let final_loss = outcome.log.last().map(|s| s.loss);
    ctx.note("steps", outcome.log.len());
    ctx.note("skipped_examples", skipped);

    let row = serde_json::json!({
        "checkpoint": "checkpoint",
        "method": cfg.method.name(),
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
    let loss = artifact::json_rows_to_typed_table(log_rows, loss_template())?;
    ctx.write_output("loss", &loss)
}

/// Column types of the `loss` output, shared by both backends.
fn loss_template() -> serde_json::Map<String, serde_json::Value> {
    let template = serde_json::json!({
        "step": 0, "epoch": 0.5, "loss": 0.5, "learning_rate": 0.5, "grad_norm": 0.5,
        "tokens": 0, "trained_tokens": 0, "seconds": 0.5,
    });
    template.as_object().cloned().unwrap_or_default()
}

/// The model to train: the base, or the weights of the checkpoint being resumed.
#[cfg(feature = "torch")]
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

    fn params(v: serde_json::Value) -> SftParams {
        serde_json::from_value(v).expect("params")
    }

    fn problem_paths(p: &SftParams) -> Vec<String> {
        Sft::validate(p)
            .into_iter()
            .map(|p| p.path.join("."))
            .collect()
    }

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

    #[cfg(feature = "torch")]
    #[test]
    fn validation_reports_every_bad_hyperparameter() {
        let p = params(serde_json::json!({
            "model": "m", "method": "lora", "learning_rate": 0.0, "batch_size": 0,
            "lora_target": ["attn"], "device": "tpu", "warmup_ratio": 1.5
        }));
        assert_eq!(
            problem_paths(&p),
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

    #[cfg(not(feature = "torch"))]
    #[test]
    fn without_torch_the_default_backend_says_to_rebuild() {
        let p = params(serde_json::json!({
            "model": "m", "method": "lora", "learning_rate": 0.0, "warmup_ratio": 1.5
        }));
        let problems = Sft::validate(&p);
        let paths: Vec<String> = problems.iter().map(|p| p.path.join(".")).collect();
        assert_eq!(paths, ["learning_rate", "warmup_ratio", "backend"]);
        let torch = &problems[2];
        assert!(
            torch.message.contains("needs the cargo feature `torch`"),
            "{}",
            torch.message
        );
        let help = torch.help.as_deref().unwrap_or_default();
        assert!(help.contains("default feature `torch`"), "{help}");
        assert!(help.contains("backend: llamafactory"), "{help}");
        // The same params on LLaMA-Factory need no torch.
        let lf = params(serde_json::json!({
            "model": "m", "method": "lora", "backend": "llamafactory", "template": "llama3"
        }));
        assert!(Sft::validate(&lf).is_empty(), "{:?}", Sft::validate(&lf));
    }

    #[test]
    fn a_spec_that_names_no_backend_keeps_its_cache_key() {
        // The serialized params (what the cache key hashes) of `{model: m}`, as
        // before the `llamafactory` backend: its params must not appear at their defaults.
        let p = params(serde_json::json!({ "model": "m" }));
        assert_eq!(
            serde_json::to_string(&p).expect("serialize"),
            concat!(
                r#"{"model":"m","method":"full","lora_rank":8,"lora_alpha":null,"lora_dropout":0.0,"#,
                r#""lora_target":["all"],"learning_rate":0.00005,"epochs":3.0,"max_steps":null,"#,
                r#""batch_size":1,"grad_accum":8,"warmup_ratio":0.1,"warmup_steps":null,"#,
                r#""weight_decay":0.0,"max_grad_norm":1.0,"cutoff_len":2048,"packing":false,"#,
                r#""seed":42,"chat_format":"hf","column":"messages","device":"auto","dtype":"auto","#,
                r#""threads":0,"resume_from":null}"#
            )
        );
        // Naming a default explicitly hashes the same as leaving it out.
        let explicit = params(serde_json::json!({
            "model": "m", "backend": "tch", "gpus": 1, "deepspeed": "auto", "bf16": true,
            "max_samples": 100000, "logging_steps": 10, "save_strategy": "epoch",
            "save_total_limit": 1, "lr_scheduler_type": "cosine", "launch": true,
            "launcher": "llamafactory-cli", "dataset": "tw_sft", "extra": {}
        }));
        assert_eq!(
            serde_json::to_value(&explicit).expect("serialize"),
            serde_json::to_value(&p).expect("serialize")
        );
        let lf = params(serde_json::json!({ "model": "m", "backend": "llamafactory" }));
        assert_eq!(
            serde_json::to_value(&lf).expect("serialize")["backend"],
            "llamafactory"
        );
    }

    #[test]
    fn params_of_the_other_backend_are_rejected_by_name() {
        let tch = params(serde_json::json!({
            "model": "m", "template": "llama3", "gpus": 4, "launch": false
        }));
        let paths = problem_paths(&tch);
        for name in ["template", "gpus", "launch"] {
            assert!(paths.contains(&name.to_string()), "{paths:?}");
        }
        let lf = params(serde_json::json!({
            "model": "m", "backend": "llamafactory", "template": "llama3",
            "device": "cuda", "resume_from": "ck", "chat_format": "t.j2"
        }));
        assert_eq!(problem_paths(&lf), ["chat_format", "device", "resume_from"]);
        let message = &Sft::validate(&lf)[0].message;
        assert_eq!(message, "applies to `backend: tch` only");
    }
}
