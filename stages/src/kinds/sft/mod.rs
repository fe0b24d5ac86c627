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
mod params;
mod tch;

pub use params::SftParams;
use params::{Backend, common_problems};
use tch::{run_tch, tch_problems};

use crate::api::{EnvFact, FileDep, InputSlot, PlanEnv, Problem, RunCtx, Stage, StageError};
use crate::llm::checkpoint::model_dir_deps;
use crate::text::templates;

pub struct Sft;

impl Stage for Sft {
    const KIND: &'static str = "sft";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("mod.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("rows")];
    const OUTPUTS: &'static [&'static str] = &["model", "loss"];
    type Params = SftParams;

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
            for mut d in templates::template_deps(&p.chat_format, env) {
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

#[cfg(test)]
mod tests {
    use super::params::parse_messages;
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
