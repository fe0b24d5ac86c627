//! `tw`'s model runtime on libtorch (the `tch` crate; cargo feature `torch`).
//!
//! - [`transformer`]: the Llama / Qwen2 decoder, HF-compatible names and numerics.
//! - [`weights`], [`lora`]: HF safetensors checkpoints (sharded too) and PEFT adapters.
//! - [`text`]: `tokenizer.json` and chat templates.
//! - [`generate`]: batched KV-cache generation; [`TchBackend`] serves it as an
//!   [`crate::llm::Backend`].
//! - [`train`], [`optim`]: full and LoRA fine-tuning with resumable state.
//! - [`bert`]: BERT/RoBERTa encoders as code embedders for `mine_pairs`.
//!
//! libtorch calls that fail (a CUDA out-of-memory, a shape error) panic inside
//! `tch`; the entry points the stages call ([`guard`]) turn those panics into
//! [`ModelError`]s.

pub mod bert;
pub mod config;
pub mod fixture;
pub mod generate;
pub mod lora;
pub mod optim;
pub mod text;
pub mod train;
pub mod transformer;
pub mod weights;

pub use config::{Arch, ModelConfig};
pub use lora::LoraConfig;
pub use text::{ChatFormat, Codec};
pub use transformer::Transformer;

use crate::llm::{Backend, Completion, LlmError, Prompt, Request};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tch::{Device, Kind};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "out of memory: {0}\n  hint: lower `batch_size` (raise `grad_accum` to keep the effective batch), `cutoff_len`, or use LoRA"
    )]
    OutOfMemory(String),
    #[error("libtorch: {0}")]
    Torch(String),
}

/// Run libtorch work, turning a panic inside `tch` into an error that says what
/// happened (out-of-memory gets its own variant and a hint).
pub fn guard<T>(f: impl FnOnce() -> Result<T, ModelError>) -> Result<T, ModelError> {
    quiet_guarded_panics();
    let was = IN_GUARD.with(|g| g.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_GUARD.with(|g| g.set(was));
    match result {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown failure".into());
            let first = torch_message(&message);
            if message.contains("out of memory")
                || message.contains("can't allocate memory")
                || message.contains("CUBLAS_STATUS_ALLOC_FAILED")
            {
                Err(ModelError::OutOfMemory(first))
            } else {
                Err(ModelError::Torch(first))
            }
        }
    }
}

thread_local! {
    /// Set while this thread runs inside [`guard`], whose caller reports the panic.
    static IN_GUARD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Install, once, a panic hook that stays silent for panics [`guard`] catches:
/// libtorch's message with its C++ stack would otherwise be printed before the
/// clean error. Every other panic goes to the hook that was there before.
fn quiet_guarded_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_GUARD.with(|g| g.get()) {
                previous(info);
            }
        }));
    });
}

static TORCH_RNG: Mutex<()> = Mutex::new(());

/// Held by whatever draws from libtorch's global random generator (training's
/// dropout, random initialisation), so concurrent users cannot change each
/// other's draws and a seeded run stays reproducible.
pub fn torch_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The useful part of a libtorch panic: `tch` panics with the Debug form of its
/// error (`called `Result::unwrap()` on an `Err` value: Torch("...\nframe #0: ...")`),
/// whose C++ stack frames say nothing to a user.
fn torch_message(panic: &str) -> String {
    let text = panic.split_once("Torch(\"").map_or(panic, |(_, rest)| rest);
    let end = [
        text.find("\\nframe #"),
        text.find("\nframe #"),
        text.find("\\nException raised"),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(text.len());
    let text = text[..end].trim_end_matches(['"', ')']);
    text.replace("\\n", " ").trim().to_string()
}

/// `auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`.
/// Whether `spec` names a device [`parse_device`] understands (available or not).
pub fn is_device_name(spec: &str) -> bool {
    matches!(spec, "auto" | "cpu" | "cuda" | "gpu")
        || spec
            .strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<usize>().is_ok())
}

pub fn parse_device(spec: &str) -> Result<Device, ModelError> {
    match spec {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => {
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err(ModelError::Invalid(
                    "device `cuda` requested but libtorch sees no CUDA device".into(),
                ))
            }
        }
        other => match other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) if (n as i64) < tch::Cuda::device_count() => Ok(Device::Cuda(n)),
            _ => Err(ModelError::Invalid(format!(
                "unknown or unavailable device `{other}` (auto, cpu, cuda, cuda:N)"
            ))),
        },
    }
}

/// `auto` (bf16 on GPU, f32 on CPU), `f32`, `bf16` or `f16`.
pub fn parse_kind(spec: &str, device: Device) -> Result<Kind, ModelError> {
    match spec {
        "auto" if device.is_cuda() => Ok(Kind::BFloat16),
        "auto" | "f32" | "float32" => Ok(Kind::Float),
        "bf16" | "bfloat16" => Ok(Kind::BFloat16),
        "f16" | "float16" => Ok(Kind::Half),
        other => Err(ModelError::Invalid(format!(
            "unknown dtype `{other}` (auto, f32, bf16, f16)"
        ))),
    }
}

/// Where a PEFT adapter's base model is: `base` if given, else the adapter's
/// `base_model_name_or_path` (relative to the adapter directory).
pub fn adapter_base(adapter_dir: &Path, base: Option<&Path>) -> Result<PathBuf, ModelError> {
    if let Some(b) = base {
        return Ok(b.to_path_buf());
    }
    let cfg = adapter_dir.join("adapter_config.json");
    let (_, named) = LoraConfig::from_peft_json(&cfg)?;
    let named = named.ok_or_else(|| ModelError::Checkpoint {
        path: cfg.clone(),
        message: "no `base_model_name_or_path`; name the base model explicitly".into(),
    })?;
    let p = PathBuf::from(&named);
    let p = if p.is_absolute() {
        p
    } else {
        adapter_dir.join(p)
    };
    if !p.join("config.json").is_file() {
        return Err(ModelError::Checkpoint {
            path: cfg,
            message: format!(
                "base model `{named}` is not a local model directory (hub names cannot be fetched here)"
            ),
        });
    }
    Ok(p)
}

/// A model directory opened for generation: full checkpoints, or a PEFT
/// adapter directory on top of its base.
pub fn open_model(
    dir: &Path,
    base: Option<&Path>,
    device: Device,
    kind: Kind,
) -> Result<(Transformer, PathBuf), ModelError> {
    if !dir.is_dir() {
        return Err(ModelError::Checkpoint {
            path: dir.to_path_buf(),
            message: "no such model directory".into(),
        });
    }
    guard(|| {
        if dir.join("adapter_config.json").is_file() {
            let base_dir = adapter_base(dir, base)?;
            let mut model = Transformer::load(&base_dir, device, kind)?;
            model.load_lora(dir)?;
            Ok((model, base_dir))
        } else {
            Ok((Transformer::load(dir, device, kind)?, dir.to_path_buf()))
        }
    })
}

/// The JSON and safetensors files of a model directory, sorted.
pub fn model_files(dir: &Path) -> Result<Vec<String>, ModelError> {
    let mut names: Vec<String> = fs_err::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") || n.ends_with(".safetensors"))
        .collect();
    names.sort();
    Ok(names)
}

/// blake3 over a model directory's config, tokenizer and weight files: the
/// model's identity for caches.
pub fn fingerprint(dirs: &[&Path]) -> Result<String, ModelError> {
    let mut h = blake3::Hasher::new();
    for dir in dirs {
        let names = model_files(dir)?
            .into_iter()
            .filter(|n| n != "trainer_state.json" && n != "optimizer.safetensors");
        for n in names {
            h.update(n.as_bytes());
            h.update_reader(fs_err::File::open(dir.join(&n))?)?;
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

/// The in-process model as an LLM backend: chat prompts are formatted with the
/// chat format, requests are batched `batch_size` at a time.
pub struct TchBackend {
    model: Mutex<Transformer>,
    codec: Codec,
    chat: ChatFormat,
    batch_size: usize,
    id: String,
}

impl TchBackend {
    /// `chat`: `hf` for the model's own template, or a chat format file.
    pub fn open(
        dir: &Path,
        base: Option<&Path>,
        chat: &str,
        device: Device,
        kind: Kind,
        batch_size: usize,
    ) -> Result<Self, ModelError> {
        let (model, base_dir) = open_model(dir, base, device, kind)?;
        let codec = Codec::open(&base_dir, &model.config)?;
        let chat_dir = if dir.join("tokenizer_config.json").is_file() {
            dir
        } else {
            &base_dir
        };
        let chat = ChatFormat::open(chat, chat_dir)?;
        let id = if base_dir == dir {
            fingerprint(&[dir])?
        } else {
            fingerprint(&[&base_dir, dir])?
        };
        Ok(TchBackend {
            model: Mutex::new(model),
            codec,
            chat,
            batch_size: batch_size.max(1),
            id,
        })
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    pub fn prompt_ids(&self, prompt: &Prompt) -> Result<Vec<i64>, ModelError> {
        match prompt {
            Prompt::Text(t) => self.codec.encode_prompt(t),
            Prompt::Chat(m) => self.codec.encode(&self.chat.render(m, true)?),
        }
    }
}

impl Backend for TchBackend {
    fn model_id(&self) -> String {
        format!("tch:{}", self.id)
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn complete(&self, requests: &[Request]) -> Result<Vec<Completion>, LlmError> {
        let model = self.model.lock().map_err(|_| {
            LlmError::Backend("the model was poisoned by an earlier failure".into())
        })?;
        let mut out = Vec::with_capacity(requests.len());
        for chunk in requests.chunks(self.batch_size) {
            let prompts = chunk
                .iter()
                .map(|r| self.prompt_ids(&r.prompt))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| LlmError::Backend(e.to_string()))?;
            let sampling: Vec<_> = chunk.iter().map(|r| &r.sampling).collect();
            let done = guard(|| generate::generate_batch(&model, &self.codec, &prompts, &sampling))
                .map_err(|e| LlmError::Backend(e.to_string()))?;
            out.extend(done);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod parity;
#[cfg(test)]
mod tests;
