//! A model on disk: which files define a model directory (they go in the
//! cache key of every stage that reads it), where an `sft` stage's checkpoint
//! lives inside its artifact, the training method, and the checks and
//! defaults of the `device`/`dtype`/`chat_format` params of in-process models.

#[cfg(feature = "torch")]
use crate::api::Problem;
use crate::api::{FileDep, PlanEnv};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

pub fn default_chat() -> String {
    "hf".into()
}

pub fn default_auto() -> String {
    "auto".into()
}

/// What is wrong with a `device` and `dtype` pair of params, by the runtime's own parsers.
#[cfg(feature = "torch")]
pub fn runtime_problems(device: &str, dtype: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    if !crate::model::is_device_name(device) {
        out.push(
            Problem::at("device", format!("unknown device `{device}`"))
                .help("auto, cpu, cuda or cuda:N"),
        );
    }
    if let Err(e) = crate::model::parse_kind(dtype, tch::Device::Cpu) {
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

/// The checkpoint directory a `model` artifact (from `sft`) points at.
pub fn checkpoint_dir(model_artifact: &Path, checkpoint: &str) -> PathBuf {
    model_artifact
        .parent()
        .map(|d| d.join(checkpoint))
        .unwrap_or_else(|| PathBuf::from(checkpoint))
}
