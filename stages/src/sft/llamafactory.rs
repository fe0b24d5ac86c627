//! The `llamafactory` backend of `sft`: LLaMA-Factory's dataset, `dataset_info.json`
//! and training YAML in the original study's format, the DeepSpeed ZeRO-3
//! config, the launch of `llamafactory-cli train`, and the collection of its
//! checkpoint and loss log.
//!
//! Everything is written into the stage's artifact directory and named by
//! paths relative to it (the run's working directory), so the directory can
//! be moved, and rerun by hand: `llamafactory-cli train llama_factory/train.yaml`.

use super::{Method, SftParams, loss_template, model_dir_deps, read_conversations};
use crate::api::{EnvFact, FileDep, PlanEnv, Problem, Progress, RunCtx, StageError};
use crate::artifact;
use crate::export_sft::{sharegpt_dataset_info, valid_name};
use crate::llm::Message;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

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
const Z3_FILE: &str = "ds_z3_config.json";

/// Keys `tw` needs to find what LLaMA-Factory wrote; `extra` may not replace them.
const RESERVED: [&str; 3] = ["output_dir", "dataset", "dataset_dir"];

/// `transformers`' `SchedulerType` values.
const SCHEDULERS: [&str; 11] = [
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

/// Files of the checkpoint that record the run rather than define the model
/// (times, throughput): left out of its fingerprint.
const RUN_RECORDS: [&str; 4] = [
    "trainer_state.json",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
];

const INSTALL_HELP: &str = "install LLaMA-Factory with `pip install llamafactory` (and `pip install deepspeed` for ZeRO-3), or `eval \"$(scripts/setup-llamafactory.sh)\"` for the CPU install tw is tested with; or name the command with `launcher:`, or set `launch: false` to only write the files";

/// Which DeepSpeed config the run uses.
#[derive(Debug, Clone, PartialEq)]
enum DeepSpeed {
    None,
    /// LLaMA-Factory's ZeRO-3 config, written by the stage.
    Z3,
    /// A config file of the user's, as written in the spec.
    File(String),
}

fn deepspeed(p: &SftParams) -> DeepSpeed {
    match p.deepspeed.as_str() {
        "auto" if p.method == Method::Full => DeepSpeed::Z3,
        "auto" | "none" => DeepSpeed::None,
        "z3" => DeepSpeed::Z3,
        path => DeepSpeed::File(path.to_string()),
    }
}

/// The config's path relative to the artifact directory, as the YAML names it.
fn deepspeed_ref(ds: &DeepSpeed) -> Option<String> {
    match ds {
        DeepSpeed::None => None,
        DeepSpeed::Z3 => Some(format!("{DIR}/{Z3_FILE}")),
        DeepSpeed::File(path) => Some(format!("{DIR}/{}", file_name(path))),
    }
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "deepspeed.json".into())
}

/// `model_name_or_path` of a `hf:ORG/NAME` model.
fn hub_id(model: &str) -> Option<&str> {
    model.strip_prefix("hf:")
}

fn identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub(super) fn problems(p: &SftParams) -> Vec<Problem> {
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

pub(super) fn file_deps(p: &SftParams, env: &PlanEnv) -> Vec<FileDep> {
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

/// The versions LLaMA-Factory trains with, read next to the launcher: its
/// own Python (a venv's `bin/python`) or the one on its `#!` line.
const VERSIONS: &str = r#"l=$(command -v "$0") || exit 1
py="$(dirname "$(readlink -f "$l")")/python"
[ -x "$py" ] || py=$(sed -n '1s/^#!//p' "$l")
$py -c 'import importlib.metadata as m
def v(d):
    try:
        return m.version(d)
    except Exception:
        return "-"
print(" ".join(d + " " + v(d) for d in ("llamafactory", "transformers", "torch", "peft", "deepspeed")))'"#;

pub(super) fn env_facts(p: &SftParams) -> Vec<EnvFact> {
    if !p.launch {
        return Vec::new();
    }
    vec![EnvFact::Command {
        name: "llamafactory".into(),
        argv: vec![
            "sh".into(),
            "-c".into(),
            VERSIONS.into(),
            p.launcher.clone(),
        ],
    }]
}

/// Why LLaMA-Factory's ShareGPT converter would drop a conversation: it wants
/// an optional system turn, then user/assistant pairs.
fn check_turns(messages: &[Message]) -> Result<(), String> {
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

fn yaml_value(v: &Value) -> String {
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

type Section = (&'static str, Vec<(String, String)>);

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
fn write_files(
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

pub(super) fn run(p: &SftParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
    let conversations = read_conversations(ctx, &p.column)?;
    if conversations.is_empty() {
        return Err(StageError::BadInput {
            slot: "rows".into(),
            message: "no rows: nothing to train on".into(),
        });
    }
    for (i, c) in conversations.iter().enumerate() {
        check_turns(c).map_err(|m| StageError::BadInput {
            slot: "rows".into(),
            message: format!("row {i}: `{}`: {m}", p.column),
        })?;
    }
    let dir = ctx
        .output_path("model")
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| StageError::failed("internal error: no artifact directory"))?;
    let model = match hub_id(&p.model) {
        Some(id) => id.to_string(),
        None => ctx.resolve(&p.model).to_string_lossy().into_owned(),
    };
    let ds = deepspeed(p);
    let src = match &ds {
        DeepSpeed::File(path) => Some(ctx.resolve(path)),
        _ => None,
    };
    write_files(p, &dir, &model, src.as_deref(), &conversations)?;
    let rows = conversations.len() as u64;
    let examples = if p.max_samples == 0 {
        rows
    } else {
        rows.min(p.max_samples)
    };
    ctx.note("config", CONFIG);
    ctx.note("launched", p.launch);

    let (outcome, loss) = if p.launch {
        let launcher = find_launcher(&p.launcher, ctx)?;
        launch(&launcher, p, &dir, ds != DeepSpeed::None, ctx)?;
        collect(&dir)?
    } else {
        (Outcome::default(), Vec::new())
    };
    ctx.note("steps", outcome.steps);
    let row = json!({
        "checkpoint": p.launch.then_some(OUTPUT_DIR),
        "method": p.method.name(),
        "base_model": p.model,
        "steps": outcome.steps,
        "final_loss": outcome.final_loss,
        "examples": examples,
        "skipped": rows - examples,
        "trained_tokens": outcome.trained_tokens,
        "fingerprint": outcome.fingerprint,
        "backend": "llamafactory",
        "launched": p.launch,
        "config": CONFIG,
    });
    let template = json!({
        "checkpoint": "", "method": "", "base_model": "", "steps": 0, "final_loss": 0.5,
        "examples": 0, "skipped": 0, "trained_tokens": 0, "fingerprint": "",
        "backend": "", "launched": true, "config": "",
    });
    let model_table = artifact::json_rows_to_typed_table(
        vec![row.as_object().cloned().unwrap_or_default()],
        template.as_object().cloned().unwrap_or_default(),
    )?;
    ctx.write_output("model", &model_table)?;
    let loss = artifact::json_rows_to_typed_table(loss, loss_template())?;
    ctx.write_output("loss", &loss)
}

/// The launcher: a path (relative to the spec) when it has a `/`, else a command on `PATH`.
fn find_launcher(launcher: &str, ctx: &RunCtx<'_>) -> Result<PathBuf, StageError> {
    let found = if launcher.contains('/') {
        let path = ctx.resolve(launcher);
        is_executable(&path).then_some(path)
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(launcher))
                .find(|c| is_executable(c))
        })
    };
    found.ok_or_else(|| missing_launcher(launcher))
}

fn missing_launcher(launcher: &str) -> StageError {
    let place = if launcher.contains('/') {
        "does not exist or is not executable"
    } else {
        "is not on PATH"
    };
    StageError::failed(format!(
        "the LLaMA-Factory launcher `{launcher}` {place}; {INSTALL_HELP}"
    ))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs_err::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Run `<launcher> train llama_factory/train.yaml` in `dir`, its output teed
/// into `llama_factory/train.log` and the progress line.
fn launch(
    launcher: &Path,
    p: &SftParams,
    dir: &Path,
    deepspeed: bool,
    ctx: &RunCtx<'_>,
) -> Result<(), StageError> {
    let log_path = dir.join(LOG);
    let log = Mutex::new(fs_err::File::create(&log_path)?);
    let mut cmd = Command::new(launcher);
    cmd.arg("train")
        .arg(CONFIG)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NPROC_PER_NODE", p.gpus.to_string())
        .env("PYTHONUNBUFFERED", "1");
    // DeepSpeed wants a distributed launch even on one GPU.
    if p.gpus > 1 || deepspeed {
        cmd.env("FORCE_TORCHRUN", "1");
    }
    let shown = format!("{} train {CONFIG}", p.launcher);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => missing_launcher(&p.launcher),
        _ => StageError::failed(format!("cannot start `{shown}`: {e}")),
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let progress = ctx.progress();
    let status = std::thread::scope(|s| {
        if let Some(out) = stdout {
            s.spawn(|| pump(out, &log, progress));
        }
        if let Some(err) = stderr {
            s.spawn(|| pump(err, &log, progress));
        }
        child.wait()
    })?;
    drop(log);
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&fs_err::read(&log_path)?).into_owned();
    let kept = keep_log(dir, ctx.stage_id)
        .map(|p| {
            format!(
                " (kept at {}; the staging directory is discarded)",
                p.display()
            )
        })
        .unwrap_or_default();
    Err(StageError::failed(format!(
        "`{shown}` failed ({status}); its log is {LOG}{kept}; its last lines:\n{}",
        last_lines(&text, 20)
    )))
}

/// Copy bytes from a child's stream into the log; show its latest line as progress.
fn pump(mut from: impl Read, log: &Mutex<fs_err::File>, progress: &dyn Progress) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Ok(mut f) = log.lock() {
                    let _ = f.write_all(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(line) = text
                    .split(['\n', '\r'])
                    .map(str::trim)
                    .rfind(|l| !l.is_empty())
                {
                    progress.set_message(&line.chars().take(100).collect::<String>());
                }
            }
        }
    }
}

/// The last `n` lines of a log, progress bars (`\r` rewrites) reduced to their last state.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.rsplit('\r').find(|s| !s.trim().is_empty()).unwrap_or(""))
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Copy a failed run's log and YAML out of the staging directory, which is discarded.
fn keep_log(dir: &Path, stage_id: &str) -> Option<PathBuf> {
    let stage: String = stage_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let keep = std::env::temp_dir().join(format!("tw-sft-{stage}-{}-{nanos}", std::process::id()));
    fs_err::create_dir_all(&keep).ok()?;
    fs_err::copy(dir.join(CONFIG), keep.join("train.yaml")).ok()?;
    fs_err::copy(dir.join(LOG), keep.join("train.log")).ok()?;
    Some(keep.join("train.log"))
}

/// What a finished run left: for the `model` row.
#[derive(Debug, Default)]
struct Outcome {
    steps: i64,
    final_loss: Option<f64>,
    trained_tokens: Option<i64>,
    fingerprint: Option<String>,
}

/// Seconds of LLaMA-Factory's `elapsed_time` (`H:MM:SS`, or `N days, H:MM:SS`).
fn seconds(text: &str) -> Option<f64> {
    let (days, clock) = match text.split_once(", ") {
        Some((d, c)) => (d.split_whitespace().next()?.parse::<f64>().ok()?, c),
        None => (0.0, text),
    };
    let mut total = 0.0;
    for part in clock.split(':') {
        total = total * 60.0 + part.trim().parse::<f64>().ok()?;
    }
    Some(days * 86400.0 + total)
}

/// The checkpoint, step count and loss curve of a finished run in `dir`.
fn collect(dir: &Path) -> Result<(Outcome, Vec<Map<String, Value>>), StageError> {
    let checkpoint = dir.join(OUTPUT_DIR);
    if !checkpoint.is_dir() {
        return Err(StageError::failed(format!(
            "LLaMA-Factory finished without writing {OUTPUT_DIR}/ (its output_dir); see {LOG}"
        )));
    }
    let read_json = |name: &str| -> Option<Value> {
        let text = fs_err::read_to_string(checkpoint.join(name)).ok()?;
        serde_json::from_str(&text).ok()
    };
    let state = read_json("trainer_state.json");
    let history: Vec<Map<String, Value>> = state
        .as_ref()
        .and_then(|s| s.get("log_history"))
        .and_then(Value::as_array)
        .map(|h| h.iter().filter_map(|e| e.as_object().cloned()).collect())
        .unwrap_or_default();
    let step_of = |e: &Map<String, Value>, key: &str| e.get(key).and_then(Value::as_i64);
    let grad_norms: BTreeMap<i64, Value> = history
        .iter()
        .filter_map(|e| Some((step_of(e, "step")?, e.get("grad_norm")?.clone())))
        .collect();

    let log: Vec<Map<String, Value>> = fs_err::read_to_string(checkpoint.join("trainer_log.jsonl"))
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|v| v.as_object().cloned())
                .collect()
        })
        .unwrap_or_default();
    let mut loss = Vec::new();
    let mut last_seconds = 0.0;
    let mut last_tokens: Option<i64> = None;
    if log.is_empty() {
        // No trainer_log.jsonl: the HF trainer's own log history.
        for e in history.iter().filter(|e| e.contains_key("loss")) {
            let field = |k: &str| e.get(k).cloned().unwrap_or(Value::Null);
            loss.push(Map::from_iter([
                ("step".to_string(), field("step")),
                ("epoch".to_string(), field("epoch")),
                ("loss".to_string(), field("loss")),
                ("learning_rate".to_string(), field("learning_rate")),
                ("grad_norm".to_string(), field("grad_norm")),
            ]));
        }
    }
    for e in log.iter().filter(|e| e.contains_key("loss")) {
        let step = step_of(e, "current_steps");
        let mut r = Map::new();
        r.insert("step".into(), step.map(Value::from).unwrap_or(Value::Null));
        r.insert(
            "epoch".into(),
            e.get("epoch").cloned().unwrap_or(Value::Null),
        );
        r.insert("loss".into(), e.get("loss").cloned().unwrap_or(Value::Null));
        r.insert(
            "learning_rate".into(),
            e.get("lr").cloned().unwrap_or(Value::Null),
        );
        r.insert(
            "grad_norm".into(),
            step.and_then(|s| grad_norms.get(&s).cloned())
                .unwrap_or(Value::Null),
        );
        let tokens = e.get("total_tokens").and_then(Value::as_i64);
        r.insert(
            "tokens".into(),
            tokens
                .map(|t| Value::from(t - last_tokens.unwrap_or(0)))
                .unwrap_or(Value::Null),
        );
        if tokens.is_some() {
            last_tokens = tokens;
        }
        let elapsed = e
            .get("elapsed_time")
            .and_then(Value::as_str)
            .and_then(seconds);
        r.insert(
            "seconds".into(),
            elapsed
                .map(|s| json!(s - last_seconds))
                .unwrap_or(Value::Null),
        );
        if let Some(s) = elapsed {
            last_seconds = s;
        }
        loss.push(r);
    }
    let steps = state
        .as_ref()
        .and_then(|s| s.get("global_step"))
        .and_then(Value::as_i64)
        .or_else(|| log.iter().filter_map(|e| step_of(e, "current_steps")).max())
        .unwrap_or(0);
    let final_loss = loss
        .last()
        .and_then(|r| r.get("loss"))
        .and_then(Value::as_f64);
    let trained_tokens = last_tokens.or_else(|| {
        state
            .as_ref()
            .and_then(|s| s.get("num_input_tokens_seen"))
            .and_then(Value::as_i64)
            .filter(|&t| t > 0)
    });
    let fingerprint = fingerprint(&checkpoint)?;
    Ok((
        Outcome {
            steps,
            final_loss,
            trained_tokens,
            fingerprint: Some(fingerprint),
        },
        loss,
    ))
}

/// blake3 over the checkpoint's top-level JSON and safetensors files (names
/// and bytes, sorted), as the `tch` backend's fingerprint, without the files
/// that record the run (times) rather than the model.
fn fingerprint(dir: &Path) -> Result<String, StageError> {
    let mut h = blake3::Hasher::new();
    for name in super::model_files(dir) {
        if RUN_RECORDS.contains(&name.as_str()) {
            continue;
        }
        h.update(name.as_bytes());
        h.update_reader(fs_err::File::open(dir.join(&name))?)?;
    }
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::NoProgress;
    use crate::sft::Sft;
    use crate::{Stage, artifact};
    use std::collections::BTreeSet;
    use yaml_rust2::{Yaml, YamlLoader};

    /// The keys of every configuration of the study's RQ1 cells
    /// (`examples/train_ijcai25/rq1_overview*/*.yaml`, see
    /// seed-framework.md section 4), without the LoRA and DeepSpeed keys.
    const STUDY_KEYS: [&str; 25] = [
        "model_name_or_path",
        "stage",
        "do_train",
        "finetuning_type",
        "save_total_limit",
        "dataset",
        "template",
        "cutoff_len",
        "max_samples",
        "overwrite_cache",
        "preprocessing_num_workers",
        "output_dir",
        "logging_steps",
        "save_strategy",
        "plot_loss",
        "overwrite_output_dir",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "learning_rate",
        "num_train_epochs",
        "lr_scheduler_type",
        "warmup_steps",
        "bf16",
        "ddp_timeout",
        "report_to",
    ];
    /// What tw adds: where its data lives, and the seed the study left at its default (42).
    const TW_KEYS: [&str; 2] = ["dataset_dir", "seed"];

    const ROWS: [&str; 3] = [
        r#"[{"role": "user", "content": "fix: def f(x): return x"}, {"role": "assistant", "content": "def f(x): return x + 1"}]"#,
        r#"[{"from": "system", "value": "You repair code."}, {"from": "human", "value": "print 1"}, {"from": "gpt", "value": "print(1)"}]"#,
        r#"[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]"#,
    ];

    fn params(v: Value) -> SftParams {
        let p: SftParams = serde_json::from_value(v).expect("params");
        let problems = Sft::validate(&p);
        assert!(problems.is_empty(), "{problems:?}");
        p
    }

    /// The study's cell on DeepSeek-Coder-6.7B: `method` with its settings.
    fn study(method: Value) -> Value {
        let mut v = json!({
            "backend": "llamafactory",
            "model": "hf:deepseek-ai/deepseek-coder-6.7b-base",
            "template": "deepseekcoder",
            "dataset": "rq1_tracefmt_exe_sim0.75",
            "batch_size": 8,
            "grad_accum": 8,
            "learning_rate": 2.0e-5,
            "epochs": 2.0,
            "warmup_steps": 5,
            "cutoff_len": 2048,
            "launch": false,
        });
        if let (Some(o), Some(m)) = (v.as_object_mut(), method.as_object()) {
            o.extend(m.clone());
        }
        v
    }

    struct Ran {
        /// The artifact (staging) directory.
        dir: tempfile::TempDir,
        model: Vec<Map<String, Value>>,
        loss: Vec<Map<String, Value>>,
    }

    fn run_rows(p: &SftParams, rows: &[&str]) -> Result<Ran, StageError> {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = tempfile::tempdir().expect("tempdir");
        let table: Vec<Map<String, Value>> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut m = Map::new();
                m.insert("id".into(), json!(i));
                m.insert("messages".into(), json!(r));
                m
            })
            .collect();
        let (t, _) = artifact::json_rows_to_table(&table).expect("table");
        let input = base.path().join("rows.parquet");
        artifact::write_table(&input, &t).expect("write");
        let inputs = BTreeMap::from([("rows".to_string(), vec![input])]);
        let mut ctx = RunCtx::new("tune", base.path(), inputs, dir.path(), &NoProgress);
        Sft::run(p, &mut ctx)?;
        let (written, _) = ctx.into_parts();
        let read = |slot: &str| {
            artifact::table_to_json_rows(&artifact::read_table(&written[slot].path).expect("read"))
                .expect("rows")
        };
        Ok(Ran {
            model: read("model"),
            loss: read("loss"),
            dir,
        })
    }

    fn run(p: &SftParams) -> Result<Ran, StageError> {
        run_rows(p, &ROWS)
    }

    fn yaml(dir: &Path) -> (String, Yaml) {
        let text = fs_err::read_to_string(dir.join(CONFIG)).expect("train.yaml");
        let docs = YamlLoader::load_from_str(&text).expect("YAML");
        assert_eq!(docs.len(), 1);
        (text, docs[0].clone())
    }

    fn keys(doc: &Yaml) -> BTreeSet<String> {
        doc.as_hash()
            .expect("a mapping")
            .keys()
            .map(|k| k.as_str().expect("string key").to_string())
            .collect()
    }

    fn expected_keys(extra: &[&str]) -> BTreeSet<String> {
        STUDY_KEYS
            .iter()
            .chain(&TW_KEYS)
            .chain(extra)
            .map(|k| k.to_string())
            .collect()
    }

    /// The values every study config shares, read back as LLaMA-Factory reads them.
    fn assert_study_values(text: &str, doc: &Yaml, batch: i64) {
        let s = |k: &str| doc[k].as_str().map(str::to_string);
        let i = |k: &str| doc[k].as_i64();
        let b = |k: &str| doc[k].as_bool();
        assert_eq!(
            s("model_name_or_path").as_deref(),
            Some("deepseek-ai/deepseek-coder-6.7b-base")
        );
        assert_eq!(s("stage").as_deref(), Some("sft"));
        assert_eq!(b("do_train"), Some(true));
        assert_eq!(s("dataset").as_deref(), Some("rq1_tracefmt_exe_sim0.75"));
        assert_eq!(s("dataset_dir").as_deref(), Some(DATA_DIR));
        assert_eq!(s("template").as_deref(), Some("deepseekcoder"));
        assert_eq!(i("cutoff_len"), Some(2048));
        assert_eq!(i("max_samples"), Some(100000));
        assert_eq!(b("overwrite_cache"), Some(true));
        assert_eq!(i("preprocessing_num_workers"), Some(16));
        assert_eq!(s("output_dir").as_deref(), Some(OUTPUT_DIR));
        assert_eq!(i("logging_steps"), Some(10));
        assert_eq!(s("save_strategy").as_deref(), Some("epoch"));
        assert_eq!(i("save_total_limit"), Some(1));
        assert_eq!(b("plot_loss"), Some(true));
        assert_eq!(b("overwrite_output_dir"), Some(false));
        assert_eq!(i("per_device_train_batch_size"), Some(batch));
        assert_eq!(i("gradient_accumulation_steps"), Some(8));
        assert_eq!(doc["learning_rate"].as_f64(), Some(2.0e-5));
        assert_eq!(doc["num_train_epochs"].as_f64(), Some(2.0));
        assert_eq!(s("lr_scheduler_type").as_deref(), Some("cosine"));
        assert_eq!(i("warmup_steps"), Some(5));
        assert_eq!(b("bf16"), Some(true));
        assert_eq!(i("ddp_timeout"), Some(180000000));
        assert_eq!(s("report_to").as_deref(), Some("tensorboard"));
        assert_eq!(i("seed"), Some(42));
        // Spelled as the study spells them: PyYAML reads `2e-5` as a string.
        for line in [
            "learning_rate: 2.0e-5",
            "num_train_epochs: 2.0",
            "bf16: true",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        // The study's block comments, in its order.
        let blocks: Vec<&str> = text.lines().filter(|l| l.starts_with("### ")).collect();
        assert_eq!(
            blocks,
            [
                "### model",
                "### method",
                "### dataset",
                "### output",
                "### train"
            ]
        );
    }

    #[test]
    fn full_fine_tuning_writes_the_study_yaml_with_zero3() {
        let ran = run(&params(study(json!({ "method": "full" })))).expect("run");
        let (text, doc) = yaml(ran.dir.path());
        assert_eq!(keys(&doc), expected_keys(&["deepspeed"]), "{text}");
        assert_study_values(&text, &doc, 8);
        assert_eq!(doc["finetuning_type"].as_str(), Some("full"));
        // The ZeRO-3 config exists where the YAML says, and is LLaMA-Factory's.
        let ds = doc["deepspeed"].as_str().expect("deepspeed");
        assert_eq!(ds, "llama_factory/ds_z3_config.json");
        let config: Value =
            serde_json::from_str(&fs_err::read_to_string(ran.dir.path().join(ds)).expect("ds"))
                .expect("JSON");
        assert_eq!(config["zero_optimization"]["stage"], 3);
        assert_eq!(
            config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"],
            true
        );
        for auto in [
            "train_batch_size",
            "train_micro_batch_size_per_gpu",
            "gradient_accumulation_steps",
        ] {
            assert_eq!(config[auto], "auto");
        }
        assert_eq!(config["bf16"]["enabled"], "auto");
    }

    #[test]
    fn lora_cells_write_rank_and_target_all_without_deepspeed() {
        for rank in [8, 64] {
            let p = params(study(
                json!({ "method": "lora", "lora_rank": rank, "batch_size": 4 }),
            ));
            let ran = run(&p).expect("run");
            let (text, doc) = yaml(ran.dir.path());
            assert_eq!(
                keys(&doc),
                expected_keys(&["lora_target", "lora_rank"]),
                "{text}"
            );
            assert_study_values(&text, &doc, 4);
            assert_eq!(doc["finetuning_type"].as_str(), Some("lora"));
            assert_eq!(doc["lora_target"].as_str(), Some("all"));
            assert_eq!(doc["lora_rank"].as_i64(), Some(rank));
            // lora_alpha is left to LLaMA-Factory (2 x rank), as in the study.
            assert!(doc["lora_alpha"].is_badvalue());
            assert!(!ran.dir.path().join(DIR).join(Z3_FILE).exists());
        }
    }

    #[test]
    fn dataset_info_and_data_follow_the_sharegpt_schema() {
        let ran = run(&params(study(json!({ "method": "lora" })))).expect("run");
        let data = ran.dir.path().join(DATA_DIR);
        let info: Value = serde_json::from_str(
            &fs_err::read_to_string(data.join("dataset_info.json")).expect("info"),
        )
        .expect("JSON");
        let info = info.as_object().expect("object");
        assert_eq!(
            info.keys().collect::<Vec<_>>(),
            ["rq1_tracefmt_exe_sim0.75"]
        );
        let entry = &info["rq1_tracefmt_exe_sim0.75"];
        let entry_keys: Vec<&String> = entry.as_object().expect("entry").keys().collect();
        assert_eq!(entry_keys, ["file_name", "formatting", "columns", "tags"]);
        assert_eq!(entry["formatting"], "sharegpt");
        assert_eq!(entry["columns"], json!({ "messages": "messages" }));
        assert_eq!(
            entry["tags"],
            json!({
                "role_tag": "role", "content_tag": "content", "user_tag": "user",
                "assistant_tag": "assistant", "system_tag": "system"
            })
        );
        // The study's own entries (and export_sft's) are the same, less the system tag.
        let study_entry = sharegpt_dataset_info("x.jsonl", false);
        assert_eq!(study_entry["tags"].as_object().map(|t| t.len()), Some(4));

        let file = entry["file_name"].as_str().expect("file_name");
        assert_eq!(file, "rq1_tracefmt_exe_sim0.75.json");
        let records: Value =
            serde_json::from_str(&fs_err::read_to_string(data.join(file)).expect("data"))
                .expect("the data file is JSON");
        let records = records.as_array().expect("a list");
        assert_eq!(records.len(), ROWS.len());
        let roles = ["system", "user", "assistant"];
        for r in records {
            assert_eq!(r.as_object().map(|o| o.len()), Some(1), "{r}");
            for m in r["messages"].as_array().expect("messages") {
                assert!(roles.contains(&m["role"].as_str().expect("role")), "{m}");
                assert!(m["content"].is_string(), "{m}");
            }
        }
        // ShareGPT `from`/`value` rows come out as `role`/`content`.
        assert_eq!(
            records[1]["messages"],
            json!([
                { "role": "system", "content": "You repair code." },
                { "role": "user", "content": "print 1" },
                { "role": "assistant", "content": "print(1)" }
            ])
        );
    }

    #[test]
    fn without_launching_the_model_row_says_so() {
        let ran = run(&params(study(
            json!({ "method": "lora", "max_samples": 2 }),
        )))
        .expect("run");
        let row = &ran.model[0];
        assert_eq!(row["checkpoint"], Value::Null);
        assert_eq!(row["launched"], false);
        assert_eq!(row["steps"], 0);
        assert_eq!(row["examples"], 2);
        assert_eq!(row["skipped"], 1);
        assert_eq!(row["method"], "lora");
        assert_eq!(row["base_model"], "hf:deepseek-ai/deepseek-coder-6.7b-base");
        assert_eq!(row["config"], CONFIG);
        assert_eq!(row["fingerprint"], Value::Null);
        assert!(ran.loss.is_empty());
        assert!(!ran.dir.path().join(LOG).exists());
    }

    #[test]
    fn floats_and_strings_are_written_as_pyyaml_reads_them() {
        assert_eq!(yaml_float(2.0e-5), "2.0e-5");
        assert_eq!(yaml_float(1.5e-5), "1.5e-5");
        assert_eq!(yaml_float(2.0e-4), "2.0e-4");
        assert_eq!(yaml_float(0.1), "0.1");
        assert_eq!(yaml_float(2.0), "2.0");
        assert_eq!(yaml_float(0.0), "0.0");
        assert_eq!(yaml_float(3e10), "3.0e+10");
        assert_eq!(yaml_str("deepseekcoder"), "deepseekcoder");
        assert_eq!(yaml_str("/models/a b"), "\"/models/a b\"");
        assert_eq!(yaml_str("no"), "\"no\"");
        assert_eq!(yaml_str("1e-4"), "\"1e-4\"");
        assert_eq!(yaml_str("a: b"), "\"a: b\"");
    }

    #[test]
    fn extra_keys_replace_or_follow_and_reserved_ones_are_refused() {
        let mut v = study(json!({ "method": "lora" }));
        v["extra"] = json!({ "report_to": "none", "flash_attn": "fa2", "save_steps": 500 });
        v["deepspeed"] = json!("z3");
        v["gpus"] = json!(4);
        let p = params(v);
        let text = train_yaml(&p, "m", deepspeed_ref(&deepspeed(&p)).as_deref());
        assert!(text.contains("report_to: none\n"), "{text}");
        assert!(!text.contains("tensorboard"), "{text}");
        assert!(
            text.ends_with("### extra\nflash_attn: fa2\nsave_steps: 500\n"),
            "{text}"
        );
        assert!(
            text.contains("deepspeed: llama_factory/ds_z3_config.json\n"),
            "{text}"
        );

        let bad: SftParams = serde_json::from_value(json!({
            "model": "m", "backend": "llamafactory", "deepspeed": "zero3",
            "lr_scheduler_type": "cosine_annealing", "gpus": 0, "dataset": "a b",
            "extra": { "output_dir": "/x", "report_to": null }
        }))
        .expect("parse");
        let paths: Vec<String> = Sft::validate(&bad)
            .into_iter()
            .map(|p| p.path.join("."))
            .collect();
        assert_eq!(
            paths,
            [
                "template",
                "dataset",
                "gpus",
                "deepspeed",
                "lr_scheduler_type",
                "extra.output_dir",
                "extra.report_to"
            ]
        );
    }

    #[test]
    fn rows_llamafactory_would_drop_are_an_error_naming_the_row() {
        let p = params(study(json!({ "method": "lora" })));
        let rows = [
            ROWS[0],
            r#"[{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]"#,
        ];
        let e = run_rows(&p, &rows).err().expect("an error").to_string();
        assert!(e.contains("row 1"), "{e}");
        assert!(e.contains("expects `user`"), "{e}");
        let odd = [r#"[{"role": "user", "content": "y"}]"#];
        let e = run_rows(&p, &odd).err().expect("an error").to_string();
        assert!(e.contains("ends with a user turn"), "{e}");
    }

    #[test]
    fn a_missing_launcher_says_how_to_install_it() {
        let mut v = study(json!({ "method": "lora" }));
        v["launch"] = json!(true);
        v["launcher"] = json!("tw-surely-missing-llamafactory-cli");
        let e = run(&params(v.clone())).err().expect("an error").to_string();
        assert!(
            e.contains("`tw-surely-missing-llamafactory-cli` is not on PATH"),
            "{e}"
        );
        assert!(e.contains("pip install llamafactory"), "{e}");
        assert!(e.contains("launch: false"), "{e}");
        v["launcher"] = json!("venv/bin/llamafactory-cli");
        let e = run(&params(v)).err().expect("an error").to_string();
        assert!(
            e.contains("`venv/bin/llamafactory-cli` does not exist"),
            "{e}"
        );
    }

    /// A stand-in launcher: a shell script in its own directory.
    fn script(body: &str) -> (tempfile::TempDir, String) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("llamafactory-cli");
        fs_err::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let shown = path.to_string_lossy().into_owned();
        (dir, shown)
    }

    #[test]
    fn a_failed_launch_names_its_log_and_shows_its_last_lines() {
        let (_bin, launcher) = script(
            "echo \"args: $*\"\necho 'loading' >&2\necho 'RuntimeError: CUDA out of memory' >&2\nexit 3",
        );
        let mut v = study(json!({ "method": "full", "gpus": 2 }));
        v["launch"] = json!(true);
        v["launcher"] = json!(launcher);
        let e = run(&params(v)).err().expect("an error").to_string();
        assert!(e.contains("train llama_factory/train.yaml` failed"), "{e}");
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(e.contains("its log is llama_factory/train.log"), "{e}");
        assert!(e.contains("  RuntimeError: CUDA out of memory"), "{e}");
        assert!(e.contains("args: train llama_factory/train.yaml"), "{e}");
        // The log outlives the discarded staging directory.
        let kept = e
            .split("kept at ")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .expect("a kept log");
        let log = fs_err::read_to_string(kept).expect("kept log");
        assert!(log.contains("CUDA out of memory"), "{log}");
        if let Some(d) = Path::new(kept).parent() {
            let _ = fs_err::remove_dir_all(d);
        }
    }

    /// What LLaMA-Factory leaves in output_dir (`trainer_log.jsonl` as its
    /// LogCallback writes it, `trainer_state.json` as the HF trainer does).
    const FINISHED: &str = r#"set -e
test "$1" = train && test -f "$2"
grep -q '^dataset_dir: llama_factory/data$' "$2"
echo "NPROC_PER_NODE=$NPROC_PER_NODE FORCE_TORCHRUN=${FORCE_TORCHRUN:-unset}"
mkdir -p checkpoint/checkpoint-4
echo '{"r": 8}' > checkpoint/adapter_config.json
printf 'weights' > checkpoint/adapter_model.safetensors
echo '{"train_runtime": 1.5}' > checkpoint/all_results.json
cat > checkpoint/trainer_log.jsonl <<'END'
{"current_steps": 2, "total_steps": 4, "loss": 2.5, "lr": 2e-05, "epoch": 1.0, "percentage": 50.0, "elapsed_time": "0:00:10", "remaining_time": "0:00:10"}
{"current_steps": 4, "total_steps": 4, "loss": 1.25, "lr": 0.0, "epoch": 2.0, "percentage": 100.0, "elapsed_time": "0:00:25", "remaining_time": "0:00:00"}
{"current_steps": 4, "total_steps": 4, "epoch": 2.0, "percentage": 100.0, "elapsed_time": "0:00:26", "remaining_time": "0:00:00"}
END
cat > checkpoint/trainer_state.json <<'END'
{"global_step": 4, "log_history": [{"epoch": 1.0, "grad_norm": 3.5, "learning_rate": 2e-05, "loss": 2.5, "step": 2}, {"epoch": 2.0, "grad_norm": 1.5, "learning_rate": 0.0, "loss": 1.25, "step": 4}, {"epoch": 2.0, "step": 4, "train_loss": 1.9}]}
END"#;

    #[test]
    fn a_finished_launch_gives_the_checkpoint_and_the_loss_curve() {
        let (_bin, launcher) = script(FINISHED);
        let mut v = study(json!({ "method": "lora", "lora_rank": 64 }));
        v["launch"] = json!(true);
        v["launcher"] = json!(launcher);
        let ran = run(&params(v)).expect("run");
        let log = fs_err::read_to_string(ran.dir.path().join(LOG)).expect("log");
        assert!(
            log.contains("NPROC_PER_NODE=1 FORCE_TORCHRUN=unset"),
            "{log}"
        );
        let row = &ran.model[0];
        assert_eq!(row["checkpoint"], OUTPUT_DIR);
        assert_eq!(row["launched"], true);
        assert_eq!(row["steps"], 4);
        assert_eq!(row["final_loss"], 1.25);
        assert_eq!(row["examples"], 3);
        assert_eq!(row["skipped"], 0);
        assert_eq!(row["trained_tokens"], Value::Null);
        // The fingerprint covers the model files, not the run's records.
        let ck = ran.dir.path().join(OUTPUT_DIR);
        let fp = row["fingerprint"]
            .as_str()
            .expect("fingerprint")
            .to_string();
        fs_err::write(ck.join("all_results.json"), "{}").expect("write");
        assert_eq!(fingerprint(&ck).expect("fingerprint"), fp);
        fs_err::write(ck.join("adapter_model.safetensors"), "other").expect("write");
        assert_ne!(fingerprint(&ck).expect("fingerprint"), fp);

        assert_eq!(ran.loss.len(), 2);
        assert_eq!(
            Value::Object(ran.loss[1].clone()),
            json!({
                "step": 4, "epoch": 2.0, "loss": 1.25, "learning_rate": 0.0, "grad_norm": 1.5,
                "tokens": null, "trained_tokens": null, "seconds": 15.0
            })
        );
        assert_eq!(ran.loss[0]["seconds"], 10.0);
        assert_eq!(ran.loss[0]["grad_norm"], 3.5);
    }

    #[test]
    fn deepspeed_and_gpus_start_torchrun() {
        let (_bin, launcher) = script(
            "echo \"NPROC_PER_NODE=$NPROC_PER_NODE FORCE_TORCHRUN=${FORCE_TORCHRUN:-unset}\"\nmkdir -p checkpoint",
        );
        for (method, gpus, expect) in [
            ("full", 1, "NPROC_PER_NODE=1 FORCE_TORCHRUN=1"),
            ("lora", 4, "NPROC_PER_NODE=4 FORCE_TORCHRUN=1"),
        ] {
            let mut v = study(json!({ "method": method, "gpus": gpus }));
            v["launch"] = json!(true);
            v["launcher"] = json!(launcher);
            let ran = run(&params(v)).expect("run");
            let log = fs_err::read_to_string(ran.dir.path().join(LOG)).expect("log");
            assert!(log.contains(expect), "{method}: {log}");
            assert_eq!(ran.model[0]["steps"], 0);
            assert!(ran.loss.is_empty());
        }
    }

    #[test]
    fn a_user_deepspeed_config_is_a_file_dependency_and_is_copied() {
        let base = tempfile::tempdir().expect("tempdir");
        fs_err::write(
            base.path().join("ds_z2.json"),
            "{\"zero_optimization\": {\"stage\": 2}}",
        )
        .expect("write");
        let mut v = study(json!({ "method": "full" }));
        v["deepspeed"] = json!("ds_z2.json");
        let p = params(v);
        let env = PlanEnv {
            base_dir: base.path().to_path_buf(),
        };
        // A Hub model has no files; the config has.
        assert_eq!(
            Sft::file_deps(&p, &env),
            [FileDep {
                param: "deepspeed".into(),
                path: "ds_z2.json".into()
            }]
        );
        let out = tempfile::tempdir().expect("tempdir");
        write_files(
            &p,
            out.path(),
            "m",
            Some(&base.path().join("ds_z2.json")),
            &[],
        )
        .expect("write");
        assert!(out.path().join(DIR).join("ds_z2.json").is_file());
        let (_, doc) = yaml(out.path());
        assert_eq!(doc["deepspeed"].as_str(), Some("llama_factory/ds_z2.json"));
        // A dry run depends on no installed LLaMA-Factory; a launch records its versions.
        assert!(Sft::env_facts(&p).is_empty());
        let mut launched = study(json!({ "method": "full" }));
        launched["launch"] = json!(true);
        assert_eq!(Sft::env_facts(&params(launched)).len(), 1);
    }

    /// LoRA on SmolLM2-135M for two steps on CPU through the real
    /// `llamafactory-cli` (scripts/setup-llamafactory.sh, scripts/setup-models.sh).
    #[test]
    #[ignore = "needs LLaMA-Factory: scripts/setup-llamafactory.sh (TW_REQUIRE_LLAMAFACTORY)"]
    fn real_llamafactory_trains_smollm2_lora_on_cpu() {
        use crate::testing::{Need, env_path};
        let (Some(launcher), Some(model)) = (
            env_path(Need::LlamaFactory, "TW_LLAMAFACTORY_CLI"),
            env_path(Need::Models, "TW_SMOLLM2_HF"),
        ) else {
            return;
        };
        let (launcher, model) = (launcher.display().to_string(), model.display().to_string());
        let p = params(json!({
            "backend": "llamafactory", "model": model, "template": "smollm2",
            "method": "lora", "lora_rank": 8, "max_steps": 2, "batch_size": 2,
            "grad_accum": 1, "learning_rate": 2.0e-4, "warmup_steps": 0, "cutoff_len": 256,
            "bf16": false, "logging_steps": 1, "launcher": launcher,
            "extra": { "preprocessing_num_workers": 1 }
        }));
        let ran = match run(&p) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let row = &ran.model[0];
        assert_eq!(row["steps"], 2, "{row:?}");
        assert_eq!(ran.loss.len(), 2, "{:?}", ran.loss);
        for r in &ran.loss {
            let loss = r["loss"].as_f64().expect("loss");
            assert!(loss.is_finite() && loss > 0.0, "{r:?}");
            assert!(r["grad_norm"].as_f64().is_some(), "{r:?}");
        }
        assert_eq!(row["final_loss"], ran.loss[1]["loss"]);
        let ck = ran.dir.path().join(OUTPUT_DIR);
        let adapter: Value = serde_json::from_str(
            &fs_err::read_to_string(ck.join("adapter_config.json")).expect("adapter_config"),
        )
        .expect("JSON");
        assert_eq!(adapter["r"], 8);
        assert_eq!(adapter["lora_alpha"], 16);
        assert_eq!(adapter["target_modules"].as_array().map(Vec::len), Some(7));
        assert!(ck.join("adapter_model.safetensors").is_file());
        assert!(row["fingerprint"].as_str().is_some_and(|f| f.len() == 64));
        // The study's default `report_to: tensorboard` wrote its event files.
        assert!(ck.join("runs").is_dir());
        // Downstream stages on the in-process runtime load LLaMA-Factory's adapter.
        #[cfg(feature = "torch")]
        {
            let (_, base) = crate::model::open_model(&ck, None, tch::Device::Cpu, tch::Kind::Float)
                .expect("the tch runtime loads the adapter");
            assert_eq!(base, PathBuf::from(&model));
        }
    }
}
