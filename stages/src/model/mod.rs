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
//! [`ModelError`]s (`runtime.rs` holds both, with device and dtype parsing).
//!
//! May import: `api`, `llm` (the backend interface), `text` (chat templates,
//! embeddings). Not the kinds.

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

pub use config::LoraConfig;
pub use config::{Arch, ModelConfig};
pub use text::{ChatFormat, Codec};
pub use transformer::Transformer;

mod backend;
mod runtime;

pub use backend::{TchBackend, adapter_base, fingerprint, model_files, open_model};
pub use runtime::{ModelError, guard, is_device_name, parse_device, parse_kind, torch_rng_lock};

#[cfg(test)]
mod parity;
#[cfg(test)]
mod tests;
