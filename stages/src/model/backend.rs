//! [`TchBackend`]: the in-process model as an LLM backend (the `model: {backend:
//! tch}` param), a checkpoint or a LoRA adapter over its base, identified by
//! the content hash of its files.

use super::runtime::{ModelError, guard};
use super::{ChatFormat, Codec, LoraConfig, Transformer, generate};
use crate::llm::{Backend, Completion, LlmError, Prompt, Request};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tch::{Device, Kind};

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
