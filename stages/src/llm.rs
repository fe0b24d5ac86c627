//! The interface every LLM backend implements: the in-process libtorch model
//! (`model::TchBackend`, feature `torch`) today, HTTP endpoints beside it. Stages
//! that sample from a model see only this trait.

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
}

/// A source of completions. Implementations batch internally as they see fit;
/// results come back in request order.
pub trait Backend: Send + Sync {
    /// What identifies the model for caching (a checkpoint hash, a served name).
    fn model_id(&self) -> String;
    fn complete(&self, requests: &[Request]) -> Result<Vec<Completion>, LlmError>;
}
