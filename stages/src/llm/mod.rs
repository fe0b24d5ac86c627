//! The interface every LLM backend implements, and what stands between it and
//! the stages that ask for completions.
//!
//! - [`Backend`]: an OpenAI-compatible HTTP endpoint ([`http::OpenAiBackend`]:
//!   vLLM, llama.cpp's server, OpenAI, DeepSeek) or the in-process libtorch
//!   model (`model::TchBackend`, feature `torch`).
//! - [`ModelSpec`]: the `model:` param of every stage that asks a model.
//! - [`ledger::Ledger`]: every completion stored content-addressed, so a rerun
//!   replays it at zero tokens and an interrupted stage keeps what it received.
//! - [`Llm`]: a backend behind its ledger; the only way stages ask.
//! - [`reply`]: DSPy's ChatAdapter format, and the one parser of replies.
//! - [`strategy`]: what the test-time strategy kinds share.
//! - [`checkpoint`]: model directories and checkpoints on disk.
//!
//! May import: `api`, `python`, `text`, `model` (the in-process backend). Not the kinds.

pub mod checkpoint;
pub mod http;
pub mod ledger;
pub mod reply;
mod spec;
pub mod strategy;

pub use http::OpenAiApi;
pub use ledger::{CallStats, Ledger, Llm};
pub use spec::{BaseUrl, Endpoint, ModelSpec};

use serde::{Deserialize, Serialize};

/// One chat message (`{"role": "user", "content": "..."}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// What to complete: raw text, or chat messages the backend formats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    Text(String),
    Chat(Vec<Message>),
}

/// Sampling settings of one request. `temperature` 0 means greedy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub max_tokens: usize,
    pub temperature: f64,
    pub top_p: f64,
    /// Generation stops before the first of these strings; it is not returned.
    pub stop: Vec<String>,
    /// Same seed, same prompt, same settings: same tokens.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            stop: Vec::new(),
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub prompt: Prompt,
    pub sampling: Sampling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{0}")]
    Backend(String),
    /// The endpoint answered with an error that retrying will not fix (400, 401, 404).
    #[error("{url}: HTTP {status}: {body}")]
    Rejected {
        url: String,
        status: u16,
        body: String,
    },
    /// Retries ran out: the endpoint is down, overloaded or answering garbage.
    #[error("{url}: {reason} (gave up after {attempts} attempts)")]
    Unavailable {
        url: String,
        reason: String,
        attempts: u32,
    },
    /// Retries ran out on every endpoint of a list: each with its last error.
    #[error(
        "every endpoint failed (gave up after {attempts} attempts on each): {}",
        failures.iter().map(|(url, reason)| format!("{url}: {reason}")).collect::<Vec<_>>().join("; ")
    )]
    AllUnavailable {
        failures: Vec<(String, String)>,
        attempts: u32,
    },
    /// Some completions arrived and are kept in the ledger; the rest did not.
    #[error(
        "{failed} of {total} completions failed ({received} received and kept in the ledger; a rerun asks only for the rest): {first}"
    )]
    Partial {
        total: usize,
        received: usize,
        failed: usize,
        first: Box<LlmError>,
    },
    #[error("completion ledger {}: {message}", path.display())]
    Ledger {
        path: std::path::PathBuf,
        message: String,
    },
}

/// What one endpoint of an HTTP backend did so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointStats {
    pub base_url: String,
    /// Requests it answered (one request may carry `n` choices).
    pub served: u64,
    /// Attempts that failed on it and were retried (here or elsewhere).
    pub failed: u64,
    /// Tokens in (prompts) and out (completions) of what it served.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A source of completions. Implementations batch internally as they see fit;
/// results come back in request order.
pub trait Backend: Send + Sync {
    /// What identifies the model for caching (a checkpoint hash, a served name).
    fn model_id(&self) -> String;
    fn complete(&self, requests: &[Request]) -> Result<Vec<Completion>, LlmError>;

    /// The endpoints asked and what each did; empty for in-process models.
    fn endpoints(&self) -> Vec<EndpointStats> {
        Vec::new()
    }

    /// Complete each request, handing every result to `done` as soon as it is
    /// known, so that what arrived survives a later failure. The default asks
    /// [`Backend::complete`] in batches of `batch` requests.
    fn complete_each(
        &self,
        requests: &[Request],
        done: &(dyn Fn(usize, Result<Completion, LlmError>) + Sync),
    ) {
        let batch = self.batch_size().max(1);
        for (c, chunk) in requests.chunks(batch).enumerate() {
            match self.complete(chunk) {
                Ok(completions) => {
                    for (i, completion) in completions.into_iter().enumerate() {
                        done(c * batch + i, Ok(completion));
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    for i in 0..chunk.len() {
                        done(c * batch + i, Err(LlmError::Backend(message.clone())));
                    }
                }
            }
        }
    }

    /// Requests [`Backend::complete_each`] hands to [`Backend::complete`] at once.
    fn batch_size(&self) -> usize {
        8
    }
}
