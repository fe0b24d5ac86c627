//! The `sft` kind's `tch` backend: training in process on libtorch (feature
//! `torch`; without it, the backend says how to rebuild).

use super::params::{NEEDS_TORCH, SftParams, needs_torch_help};
#[cfg(feature = "torch")]
use super::params::{loss_template, read_conversations};
#[cfg(feature = "torch")]
use crate::api::artifact;
use crate::api::{Problem, RunCtx, StageError};
#[cfg(feature = "torch")]
use crate::model::config::ALL_LINEAR;
#[cfg(feature = "torch")]
use crate::model::train::{self, TrainConfig, Trainer};
#[cfg(feature = "torch")]
use crate::model::{self, ChatFormat, Codec, ModelError, Transformer};
#[cfg(feature = "torch")]
use std::path::Path;

#[cfg(feature = "torch")]
use crate::llm::checkpoint::{Method, runtime_problems};

#[cfg(feature = "torch")]
pub(super) fn failed(e: ModelError) -> StageError {
    StageError::Failed(e.to_string())
}

/// Checks of the in-process backend.
pub(super) fn tch_problems(p: &SftParams) -> Vec<Problem> {
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

#[cfg(not(feature = "torch"))]
pub(super) fn run_tch(_p: &SftParams, _ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
    Err(StageError::failed(format!(
        "{NEEDS_TORCH}: {}",
        needs_torch_help()
    )))
}

#[cfg(feature = "torch")]
pub(super) fn run_tch(p: &SftParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
    let conversations = read_conversations(ctx, &p.column)?;
    if p.threads > 0 {
        tch::set_num_threads(p.threads as i32);
    }
    let model_dir = ctx.resolve(&p.model);
    let resume = p.resume_from.as_ref().map(|r| ctx.resolve(r));
    let device = model::parse_device(&p.device).map_err(failed)?;
    let kind = model::parse_kind(&p.dtype, device).map_err(failed)?;
    // What `tw report`'s compute disclosure counts as GPU time.
    ctx.note("gpus", u64::from(device.is_cuda()));
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

/// The model to train: the base, or the weights of the checkpoint being resumed.
#[cfg(feature = "torch")]
pub(super) fn load_for_training(
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
