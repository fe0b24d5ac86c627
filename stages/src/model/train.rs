//! Supervised fine-tuning, full or LoRA, as LLaMA-Factory's `stage: sft` does it:
//! loss only on assistant tokens, cutoff length, padding or packing, AdamW with
//! cosine schedule and warmup, gradient accumulation and clipping, a seed that
//! fixes data order and dropout. State is saved so training resumes exactly.

use super::config::LoraConfig;
use super::optim::{AdamW, cosine_lr};
use super::text::{ChatFormat, Codec};
use super::transformer::Transformer;
use super::{ModelError, weights};
use crate::api::rng::SplitMix64;
use crate::llm::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Reduction, Tensor};

/// Label of tokens that carry no loss (PyTorch's `ignore_index`).
pub const IGNORE: i64 = -100;

/// One tokenized conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub ids: Vec<i64>,
    /// `IGNORE` except on assistant tokens.
    pub labels: Vec<i64>,
}

impl Example {
    pub fn trained_tokens(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE).count()
    }
}

/// Tokenize a conversation: every assistant turn (with the format's end-of-turn
/// text) is trained on, everything else is context. The sequence is cut at
/// `cutoff_len` tokens.
pub fn encode_conversation(
    codec: &Codec,
    chat: &ChatFormat,
    messages: &[Message],
    cutoff_len: usize,
) -> Result<Example, ModelError> {
    let mut ids = Vec::new();
    let mut labels = Vec::new();
    let mut done = String::new();
    let mut any = false;
    for (i, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        any = true;
        let prompt = chat.render(&messages[..i], true)?;
        let full = chat.render(&messages[..=i], false)?;
        let (Some(context), Some(reply)) = (
            prompt.strip_prefix(done.as_str()),
            full.strip_prefix(prompt.as_str()),
        ) else {
            return Err(ModelError::Invalid(format!(
                "the chat format does not render message {} as an extension of the conversation before it",
                i + 1
            )));
        };
        let c = codec.encode(context)?;
        labels.extend(std::iter::repeat_n(IGNORE, c.len()));
        ids.extend(c);
        let r = codec.encode(reply)?;
        labels.extend_from_slice(&r);
        ids.extend(r);
        done = full;
    }
    if !any {
        return Err(ModelError::Invalid(
            "the conversation has no assistant message to train on".into(),
        ));
    }
    ids.truncate(cutoff_len);
    labels.truncate(cutoff_len);
    Ok(Example { ids, labels })
}

/// Full fine-tuning or LoRA; defined with the `sft` stage, which also builds without torch.
pub use crate::llm::checkpoint::Method;

/// Hyperparameters; the defaults follow the paper's LLaMA-Factory configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub method: Method,
    pub lora: Option<LoraConfig>,
    pub learning_rate: f64,
    pub epochs: f64,
    /// Stop after this many optimizer steps (overrides `epochs`).
    pub max_steps: Option<i64>,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub warmup_ratio: f64,
    /// Warmup in optimizer steps (LLaMA-Factory's `warmup_steps`); overrides the ratio.
    #[serde(default)]
    pub warmup_steps: Option<i64>,
    pub weight_decay: f64,
    /// 0 turns clipping off.
    pub max_grad_norm: f64,
    pub packing: bool,
    pub cutoff_len: usize,
    pub seed: u64,
}

/// One optimizer step of the loss curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    pub step: i64,
    pub epoch: f64,
    /// Mean cross-entropy per trained token over the step's micro-batches.
    pub loss: f64,
    pub learning_rate: f64,
    pub grad_norm: f64,
    /// Tokens fed (padding excluded) and tokens trained on.
    pub tokens: i64,
    pub trained_tokens: i64,
    pub seconds: f64,
}

/// A micro-batch: rows of ids and labels, right-padded.
struct MicroBatch {
    ids: Tensor,
    labels: Tensor,
    tokens: i64,
    trained: i64,
}

/// Sequences for one epoch, in that epoch's shuffled order.
pub(crate) fn epoch_sequences(examples: &[Example], cfg: &TrainConfig, epoch: i64) -> Vec<Example> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut rng = SplitMix64::new(cfg.seed ^ (epoch as u64).wrapping_mul(SplitMix64::GAMMA));
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    if !cfg.packing {
        return order.into_iter().map(|i| examples[i].clone()).collect();
    }
    // Greedy packing without splitting an example, as LLaMA-Factory's `packing`.
    let mut out = Vec::new();
    let mut cur = Example {
        ids: Vec::new(),
        labels: Vec::new(),
    };
    for i in order {
        let e = &examples[i];
        if !cur.ids.is_empty() && cur.ids.len() + e.ids.len() > cfg.cutoff_len {
            out.push(std::mem::replace(
                &mut cur,
                Example {
                    ids: Vec::new(),
                    labels: Vec::new(),
                },
            ));
        }
        cur.ids.extend_from_slice(&e.ids);
        cur.labels.extend_from_slice(&e.labels);
    }
    if !cur.ids.is_empty() {
        out.push(cur);
    }
    out
}

fn micro_batches(
    seqs: &[Example],
    batch_size: usize,
    pad: i64,
    device: tch::Device,
) -> Vec<MicroBatch> {
    seqs.chunks(batch_size)
        .map(|chunk| {
            let len = chunk.iter().map(|e| e.ids.len()).max().unwrap_or(1);
            let mut ids = Vec::with_capacity(chunk.len() * len);
            let mut labels = Vec::with_capacity(chunk.len() * len);
            let mut tokens = 0;
            let mut trained = 0;
            for e in chunk {
                ids.extend_from_slice(&e.ids);
                ids.extend(std::iter::repeat_n(pad, len - e.ids.len()));
                labels.extend_from_slice(&e.labels);
                labels.extend(std::iter::repeat_n(IGNORE, len - e.labels.len()));
                tokens += e.ids.len() as i64;
                // The first token is never predicted.
                trained += e.labels.iter().skip(1).filter(|&&l| l != IGNORE).count() as i64;
            }
            let shape = [chunk.len() as i64, len as i64];
            MicroBatch {
                ids: Tensor::from_slice(&ids).view(shape).to_device(device),
                labels: Tensor::from_slice(&labels).view(shape).to_device(device),
                tokens,
                trained,
            }
        })
        .collect()
}

/// Summed next-token cross-entropy over labelled positions.
fn summed_loss(model: &Transformer, batch: &MicroBatch) -> Tensor {
    let logits = model.forward_logits(&batch.ids, true);
    let t = logits.size()[1];
    let v = logits.size()[2];
    let shifted = logits
        .narrow(1, 0, t - 1)
        .to_kind(Kind::Float)
        .reshape([-1, v]);
    let targets = batch.labels.narrow(1, 1, t - 1).reshape([-1]);
    shifted.cross_entropy_loss::<Tensor>(&targets, None, Reduction::Sum, IGNORE, 0.0)
}

/// What `trainer_state.json` records, enough to resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    pub global_step: i64,
    pub total_steps: i64,
    pub config: TrainConfig,
    pub log_history: Vec<StepLog>,
}

pub struct Trainer<'a> {
    pub model: &'a mut Transformer,
    pub config: TrainConfig,
    pub examples: Vec<Example>,
    pub pad_id: i64,
}

pub struct TrainOutcome {
    pub log: Vec<StepLog>,
    pub optimizer: AdamW,
    pub total_steps: i64,
}

impl Trainer<'_> {
    fn steps_per_epoch(&self) -> i64 {
        // Packing changes the number of sequences (not with the epoch: the same
        // examples fill the blocks); padding keeps one per example.
        let seqs = if self.config.packing {
            epoch_sequences(&self.examples, &self.config, 0).len()
        } else {
            self.examples.len()
        };
        let micro = seqs.div_ceil(self.config.batch_size.max(1));
        micro.div_ceil(self.config.grad_accum.max(1)).max(1) as i64
    }

    /// Train until the configured end, starting from `resume` (a checkpoint that
    /// [`save`] wrote) if given. `on_step` sees each step's log as it happens.
    pub fn train(
        &mut self,
        resume: Option<&Path>,
        stop_after: Option<i64>,
        mut on_step: impl FnMut(&StepLog),
    ) -> Result<TrainOutcome, ModelError> {
        // Dropout draws from libtorch's one global generator; another training (or
        // a test) using it meanwhile would change this run's draws.
        let _rng = super::torch_rng_lock();
        let cfg = self.config.clone();
        if self.examples.is_empty() {
            return Err(ModelError::Invalid("no training examples".into()));
        }
        if cfg.method == Method::Lora && self.model.adapters.is_none() {
            let lora = cfg
                .lora
                .clone()
                .ok_or_else(|| ModelError::Invalid("method lora needs a LoRA config".into()))?;
            self.model.attach_lora(lora, cfg.seed)?;
        }
        let trainable: BTreeMap<String, Tensor> = match cfg.method {
            Method::Full => self.model.base.variables().into_iter().collect(),
            Method::Lora => self.model.lora_tensors(),
        };
        let mut opt = AdamW::new(trainable, cfg.weight_decay);
        let per_epoch = self.steps_per_epoch();
        let total = cfg
            .max_steps
            .unwrap_or_else(|| (cfg.epochs * per_epoch as f64).ceil() as i64)
            .max(1);
        let warmup = cfg
            .warmup_steps
            .unwrap_or_else(|| (cfg.warmup_ratio * total as f64).ceil() as i64);
        let mut log = Vec::new();
        let mut start = 0;
        if let Some(dir) = resume {
            let state = read_state(dir)?;
            if state.config.method != cfg.method || state.config.seed != cfg.seed {
                return Err(ModelError::Checkpoint {
                    path: dir.to_path_buf(),
                    message: "was trained with another method or seed; it cannot be resumed with these settings".into(),
                });
            }
            opt.load_state(&dir.join("optimizer.safetensors"), state.global_step)?;
            start = state.global_step;
            log = state.log_history;
        }
        let device = self.model.device();
        let end = stop_after.map_or(total, |s| s.min(total));
        let mut epoch_cache: Option<(i64, Vec<MicroBatch>)> = None;
        for step in start..end {
            let clock = std::time::Instant::now();
            let epoch = step / per_epoch;
            let within = (step % per_epoch) as usize;
            if epoch_cache.as_ref().map(|c| c.0) != Some(epoch) {
                let seqs = epoch_sequences(&self.examples, &cfg, epoch);
                epoch_cache = Some((
                    epoch,
                    micro_batches(&seqs, cfg.batch_size.max(1), self.pad_id, device),
                ));
            }
            let batches = &epoch_cache.as_ref().map(|c| &c.1).expect("filled above");
            let ga = cfg.grad_accum.max(1);
            let lo = (within * ga).min(batches.len());
            let hi = ((within + 1) * ga).min(batches.len());
            let group = &batches[lo..hi];
            let trained: i64 = group.iter().map(|b| b.trained).sum();
            let tokens: i64 = group.iter().map(|b| b.tokens).sum();
            // Dropout draws depend only on (seed, step), so a resumed run repeats them.
            tch::manual_seed((cfg.seed as i64).wrapping_add(step));
            opt.zero_grad();
            let mut loss_sum = 0.0;
            for b in group {
                let loss = summed_loss(self.model, b);
                loss_sum += loss.double_value(&[]);
                (loss / trained.max(1) as f64).backward();
            }
            let grad_norm = opt.clip_grad_norm(cfg.max_grad_norm);
            let lr = cosine_lr(cfg.learning_rate, step, warmup, total);
            opt.step(lr);
            opt.zero_grad();
            let entry = StepLog {
                step: step + 1,
                epoch: epoch as f64 + (within + 1) as f64 / per_epoch as f64,
                loss: loss_sum / trained.max(1) as f64,
                learning_rate: lr,
                grad_norm,
                tokens,
                trained_tokens: trained,
                seconds: clock.elapsed().as_secs_f64(),
            };
            if !entry.loss.is_finite() {
                return Err(ModelError::Invalid(format!(
                    "the loss became {} at step {}; lower the learning rate",
                    entry.loss, entry.step
                )));
            }
            on_step(&entry);
            log.push(entry);
        }
        Ok(TrainOutcome {
            log,
            optimizer: opt,
            total_steps: total,
        })
    }
}

pub fn read_state(dir: &Path) -> Result<TrainerState, ModelError> {
    let path = dir.join("trainer_state.json");
    if !path.is_file() {
        return Err(ModelError::Checkpoint {
            path: dir.to_path_buf(),
            message: "no trainer_state.json: not a checkpoint tw can resume".into(),
        });
    }
    let text = fs_err::read_to_string(&path)?;
    serde_json::from_str(&text).map_err(|e| ModelError::Checkpoint {
        path,
        message: e.to_string(),
    })
}

/// Write a checkpoint into `dir` (which must not exist): a full model as HF
/// safetensors + `config.json`, or a PEFT adapter; tokenizer files copied from
/// `base_dir`; the optimizer and trainer state for resuming. Everything goes to a
/// `.partial` sibling first and is renamed into place at the end.
pub fn save(
    model: &Transformer,
    outcome: &TrainOutcome,
    config: &TrainConfig,
    base_dir: &Path,
    dir: &Path,
) -> Result<(), ModelError> {
    let partial = PathBuf::from(format!("{}.partial", dir.display()));
    if partial.exists() {
        fs_err::remove_dir_all(&partial)?;
    }
    fs_err::create_dir_all(&partial)?;
    match config.method {
        Method::Full => {
            let mut tensors: BTreeMap<String, Tensor> =
                model.base.variables().into_iter().collect();
            if model.config.tie_word_embeddings {
                tensors.remove("lm_head.weight");
            }
            weights::write(tensors, &partial.join("model.safetensors"))?;
            let json = serde_json::to_string_pretty(&model.config.to_hf_json()).unwrap_or_default();
            fs_err::write(partial.join("config.json"), json)?;
        }
        Method::Lora => {
            let (_, lora) = model
                .adapters
                .as_ref()
                .ok_or_else(|| ModelError::Invalid("no adapters to save".into()))?;
            weights::write(
                model.lora_tensors(),
                &partial.join("adapter_model.safetensors"),
            )?;
            let base = fs_err::canonicalize(base_dir)?;
            let json = serde_json::to_string_pretty(&lora.peft_json(&base.to_string_lossy()))
                .unwrap_or_default();
            fs_err::write(partial.join("adapter_config.json"), json)?;
        }
    }
    for name in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "special_tokens_map.json",
    ] {
        let src = base_dir.join(name);
        if src.is_file() {
            fs_err::copy(&src, partial.join(name))?;
        }
    }
    weights::write(
        outcome.optimizer.state_tensors(),
        &partial.join("optimizer.safetensors"),
    )?;
    let state = TrainerState {
        global_step: outcome.optimizer.step,
        total_steps: outcome.total_steps,
        config: config.clone(),
        log_history: outcome.log.clone(),
    };
    let json = serde_json::to_string_pretty(&state).unwrap_or_default();
    fs_err::write(partial.join("trainer_state.json"), json)?;
    if dir.exists() {
        fs_err::remove_dir_all(dir)?;
    }
    fs_err::rename(&partial, dir)?;
    Ok(())
}
