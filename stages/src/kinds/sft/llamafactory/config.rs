//! What the `llamafactory` backend writes: the dataset and its
//! `dataset_info.json`, the training YAML in the original study's format, the
//! DeepSpeed ZeRO-3 config; and the checks of the params they come from.

use super::super::params::SftParams;
use crate::api::{FileDep, PlanEnv, Problem, StageError};
use crate::llm::Message;
use crate::llm::checkpoint::{Method, model_dir_deps};
use crate::text::sharegpt::{sharegpt_dataset_info, valid_name};
use serde_json::{Map, Value, json};
use std::path::Path;

/// LLaMA-Factory's `examples/deepspeed/ds_z3_config.json`, which the study's
/// full fine-tuning configs name (the study did not ship it).
pub const DS_Z3_CONFIG: &str = r#"{
  "train_batch_size": "auto",
  "train_micro_batch_size_per_gpu": "auto",
  "gradient_accumulation_steps": "auto",
  "gradient_clipping": "auto",
  "zero_allow_untested_optimizer": true,
  "fp16": {
    "enabled": "auto",
    "loss_scale": 0,
    "loss_scale_window": 1000,
    "initial_scale_power": 16,
    "hysteresis": 2,
    "min_loss_scale": 1
  },
  "bf16": {
    "enabled": "auto"
  },
  "zero_optimization": {
    "stage": 3,
    "overlap_comm": false,
    "contiguous_gradients": true,
    "sub_group_size": 1e9,
    "reduce_bucket_size": "auto",
    "stage3_prefetch_bucket_size": "auto",
    "stage3_param_persistence_threshold": "auto",
    "stage3_max_live_parameters": 1e9,
    "stage3_max_reuse_distance": 1e9,
    "stage3_gather_16bit_weights_on_model_save": true
  },
  "comms_config": {
    "verbose": false
  },
  "monitor_config": {
    "enabled": true,
    "tag": "DeepSpeedMonitor",
    "csv_monitor": {
      "enabled": false
    }
  }
}
"#;

/// Paths inside the artifact directory (the launch's working directory).
pub const DIR: &str = "llama_factory";

pub const CONFIG: &str = "llama_factory/train.yaml";

pub const LOG: &str = "llama_factory/train.log";

pub const DATA_DIR: &str = "llama_factory/data";

pub const OUTPUT_DIR: &str = "checkpoint";

pub(super) const Z3_FILE: &str = "ds_z3_config.json";

/// Keys `tw` needs to find what LLaMA-Factory wrote; `extra` may not replace them.
pub(super) const RESERVED: [&str; 3] = ["output_dir", "dataset", "dataset_dir"];

/// `transformers`' `SchedulerType` values.
pub(super) const SCHEDULERS: [&str; 11] = [
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
];

/// Which DeepSpeed config the run uses.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum DeepSpeed {
    None,
    /// LLaMA-Factory's ZeRO-3 config, written by the stage.
    Z3,
    /// A config file of the user's, as written in the spec.
    File(String),
}

pub(super) fn deepspeed(p: &SftParams) -> DeepSpeed {
    match p.deepspeed.as_str() {
        "auto" if p.method == Method::Full => DeepSpeed::Z3,
        "auto" | "none" => DeepSpeed::None,
        "z3" => DeepSpeed::Z3,
        path => DeepSpeed::File(path.to_string()),
    }
}

/// The config's path relative to the artifact directory, as the YAML names it.
pub(super) fn deepspeed_ref(ds: &DeepSpeed) -> Option<String> {
    match ds {
        DeepSpeed::None => None,
        DeepSpeed::Z3 => Some(format!("{DIR}/{Z3_FILE}")),
        DeepSpeed::File(path) => Some(format!("{DIR}/{}", file_name(path))),
    }
}

pub(super) fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "deepspeed.json".into())
}

/// `model_name_or_path` of a `hf:ORG/NAME` model.
pub(super) fn hub_id(model: &str) -> Option<&str> {
    model.strip_prefix("hf:")
}

pub(super) fn identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub(in crate::kinds::sft) fn problems(p: &SftParams) -> Vec<Problem> {
    let mut out = Vec::new();
    match &p.template {
        None => out.push(
            Problem::at(
                "template",
                "`backend: llamafactory` needs LLaMA-Factory's chat template name",
            )
            .help("e.g. deepseekcoder, llama3, gemma, qwen (the study's: deepseekcoder, llama3, gemma)"),
        ),
        Some(t) if !identifier(t) => {
            out.push(Problem::at("template", format!("`{t}` is not a template name")))
        }
        Some(_) => {}
    }
    if hub_id(&p.model).is_some_and(|id| id.is_empty() || id.contains(char::is_whitespace)) {
        out.push(Problem::at(
            "model",
            "`hf:` needs a Hub id, e.g. hf:meta-llama/Llama-3.1-8B",
        ));
    }
    if !valid_name(&p.dataset) {
        out.push(Problem::at(
            "dataset",
            format!(
                "`{}` cannot be a dataset file name (letters, digits, `_-.`)",
                p.dataset
            ),
        ));
    }
    if p.gpus == 0 {
        out.push(Problem::at("gpus", "must be at least 1"));
    }
    if let DeepSpeed::File(path) = deepspeed(p)
        && !path.ends_with(".json")
    {
        out.push(
            Problem::at("deepspeed", format!("`{path}` is not a DeepSpeed config"))
                .help("auto, z3, none, or a .json config file"),
        );
    }
    if !matches!(p.save_strategy.as_str(), "epoch" | "steps" | "no") {
        out.push(
            Problem::at(
                "save_strategy",
                format!("unknown save strategy `{}`", p.save_strategy),
            )
            .help("epoch, steps (with `extra: {save_steps: N}`) or no"),
        );
    }
    if !SCHEDULERS.contains(&p.lr_scheduler_type.as_str()) {
        out.push(
            Problem::at(
                "lr_scheduler_type",
                format!("unknown scheduler `{}`", p.lr_scheduler_type),
            )
            .help(SCHEDULERS.join(", ")),
        );
    }
    if p.logging_steps == 0 {
        out.push(Problem::at("logging_steps", "must be at least 1"));
    }
    if p.method == Method::Lora {
        if let Some(a) = p.lora_alpha
            && (a.fract() != 0.0 || a < 1.0)
        {
            out.push(Problem::at(
                "lora_alpha",
                "LLaMA-Factory takes a whole number of at least 1",
            ));
        }
        if p.lora_target.is_empty() {
            out.push(Problem::at("lora_target", "name `all` or some modules"));
        }
        for t in &p.lora_target {
            if !identifier(t) {
                out.push(Problem::at(
                    "lora_target",
                    format!("`{t}` is not a module name"),
                ));
            }
        }
    }
    for (key, value) in &p.extra {
        let at = format!("extra.{key}");
        if RESERVED.contains(&key.as_str()) {
            out.push(
                Problem::at(
                    &at,
                    format!("`{key}` is set by tw, which reads what is written there"),
                )
                .help("the dataset is named by `dataset`; the output is the stage's artifact"),
            );
        } else if !identifier(key) {
            out.push(Problem::at(&at, format!("`{key}` is not a YAML key")));
        } else if value.is_null() {
            out.push(Problem::at(&at, "needs a value"));
        }
    }
    if p.launcher.trim().is_empty() {
        out.push(Problem::at("launcher", "name a command"));
    }
    out
}

pub(in crate::kinds::sft) fn file_deps(p: &SftParams, env: &PlanEnv) -> Vec<FileDep> {
    let mut deps = match hub_id(&p.model) {
        Some(_) => Vec::new(),
        None => model_dir_deps("model", &p.model, env),
    };
    if let DeepSpeed::File(path) = deepspeed(p) {
        deps.push(FileDep {
            param: "deepspeed".into(),
            path,
        });
    }
    deps
}

/// Why LLaMA-Factory's ShareGPT converter would drop a conversation: it wants
/// an optional system turn, then user/assistant pairs.
pub(super) fn check_turns(messages: &[Message]) -> Result<(), String> {
    let skip = usize::from(messages.first().is_some_and(|m| m.role == "system"));
    let turns = &messages[skip..];
    if turns.is_empty() {
        return Err("no user or assistant turn".into());
    }
    for (k, m) in turns.iter().enumerate() {
        let want = if k.is_multiple_of(2) {
            "user"
        } else {
            "assistant"
        };
        if m.role != want {
            return Err(format!(
                "message {} is `{}` where LLaMA-Factory expects `{want}` (an optional system turn, then user/assistant pairs)",
                k + skip + 1,
                m.role
            ));
        }
    }
    if !turns.len().is_multiple_of(2) {
        return Err("ends with a user turn: LLaMA-Factory trains on conversations that end with the assistant".into());
    }
    Ok(())
}

/// A float PyYAML (YAML 1.1, LLaMA-Factory's reader) reads as a float: a dot
/// in the mantissa and a signed exponent (`2.0e-5`, never `2e-5`, a string there).
pub fn yaml_float(x: f64) -> String {
    if x == 0.0 {
        return "0.0".into();
    }
    if (1e-3..1e7).contains(&x.abs()) {
        let s = x.to_string();
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{x:e}");
    let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.0")
    };
    let exponent = if exponent.starts_with('-') {
        exponent.to_string()
    } else {
        format!("+{exponent}")
    };
    format!("{mantissa}e{exponent}")
}

/// A string as a YAML scalar: plain when that reads back as the same string
/// in YAML 1.1 and 1.2, JSON-quoted (a valid YAML double-quoted scalar) otherwise.
pub fn yaml_str(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '_')
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | ',' | '-' | '+' | '@')
        })
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null"
        );
    if plain {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

pub(super) fn yaml_value(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => yaml_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => yaml_str(s),
        other => other.to_string(),
    }
}

pub(super) type Section = (&'static str, Vec<(String, String)>);

/// `llama_factory/train.yaml`: the study's configs (stage sft, the dataset
/// block, the output block, the train block) with this stage's values; `model`
/// is LLaMA-Factory's `model_name_or_path`, `deepspeed` the config's path.
pub fn train_yaml(p: &SftParams, model: &str, deepspeed: Option<&str>) -> String {
    fn kv(k: &str, v: impl Into<String>) -> (String, String) {
        (k.to_string(), v.into())
    }
    let int = |n: u64| n.to_string();
    let mut method = vec![
        kv("stage", "sft"),
        kv("do_train", "true"),
        kv("finetuning_type", p.method.name()),
    ];
    if p.method == Method::Lora {
        let target = if p.lora_target.iter().any(|t| t == "all") {
            "all".to_string()
        } else {
            p.lora_target.join(",")
        };
        method.push(kv("lora_target", yaml_str(&target)));
        method.push(kv("lora_rank", p.lora_rank.to_string()));
        if let Some(a) = p.lora_alpha {
            method.push(kv("lora_alpha", (a.round() as i64).to_string()));
        }
        if p.lora_dropout != 0.0 {
            method.push(kv("lora_dropout", yaml_float(p.lora_dropout)));
        }
    }
    if let Some(ds) = deepspeed {
        method.push(kv("deepspeed", yaml_str(ds)));
    }
    let mut dataset = vec![
        kv("dataset", yaml_str(&p.dataset)),
        kv("dataset_dir", DATA_DIR),
        kv(
            "template",
            yaml_str(p.template.as_deref().unwrap_or("default")),
        ),
        kv("cutoff_len", int(p.cutoff_len as u64)),
    ];
    if p.max_samples > 0 {
        dataset.push(kv("max_samples", int(p.max_samples)));
    }
    dataset.push(kv("overwrite_cache", "true"));
    dataset.push(kv("preprocessing_num_workers", "16"));
    if p.packing {
        dataset.push(kv("packing", "true"));
    }
    let output = vec![
        kv("output_dir", OUTPUT_DIR),
        kv("logging_steps", int(p.logging_steps)),
        kv("save_strategy", yaml_str(&p.save_strategy)),
        kv("save_total_limit", int(p.save_total_limit)),
        kv("plot_loss", "true"),
        kv("overwrite_output_dir", "false"),
    ];
    let mut train = vec![
        kv("per_device_train_batch_size", int(p.batch_size as u64)),
        kv("gradient_accumulation_steps", int(p.grad_accum as u64)),
        kv("learning_rate", yaml_float(p.learning_rate)),
        kv("num_train_epochs", yaml_float(p.epochs)),
    ];
    if let Some(s) = p.max_steps {
        train.push(kv("max_steps", s.to_string()));
    }
    train.push(kv("lr_scheduler_type", yaml_str(&p.lr_scheduler_type)));
    match p.warmup_steps {
        Some(w) => train.push(kv("warmup_steps", w.to_string())),
        None if p.warmup_ratio > 0.0 => train.push(kv("warmup_ratio", yaml_float(p.warmup_ratio))),
        None => {}
    }
    if p.weight_decay != 0.0 {
        train.push(kv("weight_decay", yaml_float(p.weight_decay)));
    }
    if p.max_grad_norm != 1.0 {
        train.push(kv("max_grad_norm", yaml_float(p.max_grad_norm)));
    }
    train.push(kv("bf16", p.bf16.to_string()));
    train.push(kv("ddp_timeout", "180000000"));
    train.push(kv("seed", p.seed.to_string()));
    train.push(kv("report_to", "tensorboard"));

    let mut sections: Vec<Section> = vec![
        ("model", vec![kv("model_name_or_path", yaml_str(model))]),
        ("method", method),
        ("dataset", dataset),
        ("output", output),
        ("train", train),
    ];
    let mut added = Vec::new();
    for (key, value) in &p.extra {
        let value = yaml_value(value);
        let existing = sections
            .iter_mut()
            .flat_map(|(_, entries)| entries.iter_mut())
            .find(|(k, _)| k == key);
        match existing {
            Some((_, v)) => *v = value,
            None => added.push((key.clone(), value)),
        }
    }
    if !added.is_empty() {
        sections.push(("extra", added));
    }
    let mut text = String::new();
    for (i, (name, entries)) in sections.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&format!("### {name}\n"));
        for (k, v) in entries {
            text.push_str(&format!("{k}: {v}\n"));
        }
    }
    text
}

/// The dataset file: a JSON list of `{"messages": [{role, content}, ...]}`, one record a line.
pub fn dataset_json(conversations: &[Vec<Message>]) -> String {
    let mut text = String::from("[\n");
    for (i, messages) in conversations.iter().enumerate() {
        if i > 0 {
            text.push_str(",\n");
        }
        let turns: Vec<Value> = messages
            .iter()
            .map(|m| json!({ "role": m.role, "content": m.content }))
            .collect();
        text.push_str(&json!({ "messages": turns }).to_string());
    }
    text.push_str("\n]\n");
    text
}

/// Write `llama_factory/` into `dir`: data, `dataset_info.json`, the DeepSpeed
/// config and `train.yaml`. `deepspeed_src` is the user's config file, resolved.
pub(super) fn write_files(
    p: &SftParams,
    dir: &Path,
    model: &str,
    deepspeed_src: Option<&Path>,
    conversations: &[Vec<Message>],
) -> Result<(), StageError> {
    let data = dir.join(DATA_DIR);
    fs_err::create_dir_all(&data)?;
    let file = format!("{}.json", p.dataset);
    fs_err::write(data.join(&file), dataset_json(conversations))?;
    let mut info = Map::new();
    info.insert(p.dataset.clone(), sharegpt_dataset_info(&file, true));
    let info = serde_json::to_string_pretty(&Value::Object(info))
        .map_err(|e| StageError::failed(e.to_string()))?;
    fs_err::write(data.join("dataset_info.json"), info + "\n")?;
    let ds = deepspeed(p);
    match (&ds, deepspeed_src) {
        (DeepSpeed::Z3, _) => fs_err::write(dir.join(DIR).join(Z3_FILE), DS_Z3_CONFIG)?,
        (DeepSpeed::File(path), Some(src)) => {
            fs_err::copy(src, dir.join(DIR).join(file_name(path)))?;
        }
        _ => {}
    }
    let yaml = train_yaml(p, model, deepspeed_ref(&ds).as_deref());
    fs_err::write(dir.join(CONFIG), yaml)?;
    Ok(())
}
