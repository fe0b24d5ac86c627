//! The `sft` kind's params (both backends), their checks and defaults, and
//! reading the training conversations from the input table.

use crate::api::artifact;
use crate::api::{Problem, RunCtx, StageError};
use crate::llm::Message;
use crate::llm::checkpoint::{Method, default_auto, default_chat};
#[cfg(feature = "torch")]
use crate::model::config::{ALL_LINEAR, LoraConfig};
#[cfg(feature = "torch")]
use crate::model::train::TrainConfig;
use arrow::array::Array;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

pub(super) fn default_method() -> Method {
    Method::Full
}

pub(super) fn default_rank() -> i64 {
    8
}

pub(super) fn default_target() -> Vec<String> {
    vec!["all".into()]
}

pub(super) fn default_lr() -> f64 {
    5e-5
}

pub(super) fn default_epochs() -> f64 {
    3.0
}

pub(super) fn one() -> usize {
    1
}

pub(super) fn is_one(n: &usize) -> bool {
    *n == 1
}

pub(super) fn one_u64() -> u64 {
    1
}

pub(super) fn is_one_u64(n: &u64) -> bool {
    *n == 1
}

pub(super) fn yes() -> bool {
    true
}

pub(super) fn is_true(b: &bool) -> bool {
    *b
}

pub(super) fn default_accum() -> usize {
    8
}

pub(super) fn default_warmup() -> f64 {
    0.1
}

pub(super) fn default_clip() -> f64 {
    1.0
}

pub(super) fn default_cutoff() -> usize {
    2048
}

pub(super) fn default_seed() -> u64 {
    42
}

pub(super) fn default_column() -> String {
    "messages".into()
}

pub(super) fn is_auto(s: &str) -> bool {
    s == "auto"
}

pub(super) fn default_dataset() -> String {
    "tw_sft".into()
}

pub(super) fn is_default_dataset(s: &str) -> bool {
    s == "tw_sft"
}

pub(super) fn default_max_samples() -> u64 {
    100_000
}

pub(super) fn is_default_max_samples(n: &u64) -> bool {
    *n == default_max_samples()
}

pub(super) fn default_logging_steps() -> u64 {
    10
}

pub(super) fn is_default_logging_steps(n: &u64) -> bool {
    *n == default_logging_steps()
}

pub(super) fn default_save_strategy() -> String {
    "epoch".into()
}

pub(super) fn is_default_save_strategy(s: &str) -> bool {
    s == "epoch"
}

pub(super) fn default_scheduler() -> String {
    "cosine".into()
}

pub(super) fn is_default_scheduler(s: &str) -> bool {
    s == "cosine"
}

pub(super) fn default_launcher() -> String {
    "llamafactory-cli".into()
}

pub(super) fn is_default_launcher(s: &str) -> bool {
    s == "llamafactory-cli"
}

impl SftParams {
    /// The effective LoRA alpha: LLaMA-Factory's and PEFT's default is 2 × rank.
    #[cfg(feature = "torch")]
    pub fn alpha(&self) -> f64 {
        self.lora_alpha.unwrap_or(2.0 * self.lora_rank as f64)
    }

    #[cfg(feature = "torch")]
    pub(super) fn train_config(&self) -> TrainConfig {
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
    pub(super) fn foreign_params(&self) -> Vec<&'static str> {
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
pub(super) fn read_conversations(
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

pub(super) const NEEDS_TORCH: &str = "`tch` (the default backend) needs the cargo feature `torch`";

pub(super) fn needs_torch_help() -> String {
    format!(
        "{}; or train with `backend: llamafactory`",
        crate::api::rebuild_hint("torch")
    )
}

/// Checks that hold for both backends.
pub(super) fn common_problems(p: &SftParams) -> Vec<Problem> {
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

/// Column types of the `loss` output, shared by both backends.
pub(super) fn loss_template() -> serde_json::Map<String, serde_json::Value> {
    let template = serde_json::json!({
        "step": 0, "epoch": 0.5, "loss": 0.5, "learning_rate": 0.5, "grad_norm": 0.5,
        "tokens": 0, "trained_tokens": 0, "seconds": 0.5,
    });
    template.as_object().cloned().unwrap_or_default()
}
