//! An OpenAI-compatible HTTP backend (vLLM, llama.cpp's `llama-server`,
//! OpenAI, DeepSeek): chat or text completions, bounded concurrency, retries
//! with exponential backoff on 429, 5xx, timeouts, dropped connections and
//! malformed bodies.
//!
//! Every sampling field is sent explicitly (temperature, top_p, max_tokens,
//! stop, seed), so the server's own defaults (vLLM's `generation_config`)
//! never decide a value silently: what the ledger records is what was used.

use super::{Backend, Completion, FinishReason, LlmError, Prompt, Request};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How to reach an endpoint; see [`super::ModelSpec::Openai`].
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    pub base_url: String,
    pub model: String,
    pub api: super::OpenAiApi,
    pub api_key: Option<String>,
    pub identity: String,
    pub concurrency: usize,
    pub n_per_request: bool,
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
}

pub struct OpenAiBackend {
    config: OpenAiConfig,
    agent: ureq::Agent,
}

/// Longest wait between two attempts, whatever the backoff or `Retry-After` say.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Characters of an error body quoted in a message.
const BODY_QUOTE: usize = 300;

impl OpenAiBackend {
    pub fn new(config: OpenAiConfig) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        OpenAiBackend { config, agent }
    }

    fn url(&self) -> String {
        let base = self.config.base_url.trim_end_matches('/');
        match self.config.api {
            super::OpenAiApi::Chat => format!("{base}/chat/completions"),
            super::OpenAiApi::Completions => format!("{base}/completions"),
        }
    }

    fn body(&self, request: &Request, n: usize) -> Result<Value, LlmError> {
        let s = &request.sampling;
        let mut body = json!({
            "model": self.config.model,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
        });
        if !s.stop.is_empty() {
            body["stop"] = json!(s.stop);
        }
        if n > 1 {
            body["n"] = json!(n);
        }
        match (&request.prompt, self.config.api) {
            (Prompt::Chat(messages), super::OpenAiApi::Chat) => body["messages"] = json!(messages),
            (Prompt::Text(text), super::OpenAiApi::Chat) => {
                body["messages"] = json!([{"role": "user", "content": text}])
            }
            (Prompt::Text(text), super::OpenAiApi::Completions) => body["prompt"] = json!(text),
            (Prompt::Chat(_), super::OpenAiApi::Completions) => {
                return Err(LlmError::Backend(
                    "a chat prompt cannot be sent to the completions API; set `model.api: chat`"
                        .into(),
                ));
            }
        }
        Ok(body)
    }

    /// One request with retries: `n` choices of it.
    fn post(&self, request: &Request, n: usize) -> Result<Vec<Completion>, LlmError> {
        let url = self.url();
        let body = self.body(request, n)?.to_string();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = self.attempt(&url, &body, n);
            let (reason, retry_after) = match outcome {
                Attempt::Done(completions) => return Ok(completions),
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retry {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            if attempt > self.config.retries {
                return Err(LlmError::Unavailable {
                    url,
                    reason,
                    attempts: attempt,
                });
            }
            let backoff = self
                .config
                .backoff
                .saturating_mul(1 << (attempt - 1).min(16));
            std::thread::sleep(retry_after.unwrap_or(backoff).min(MAX_BACKOFF));
        }
    }

    fn attempt(&self, url: &str, body: &str, n: usize) -> Attempt {
        let mut req = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        if let Some(key) = &self.config.api_key {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        let mut response = match req.send(body) {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    reason: transport_reason(&e),
                    retry_after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let text = match response.body_mut().read_to_string() {
            Ok(t) => t,
            Err(e) => {
                return Attempt::Retry {
                    reason: format!("reading the response: {}", transport_reason(&e)),
                    retry_after,
                };
            }
        };
        if status == 429 || status >= 500 {
            return Attempt::Retry {
                reason: format!("HTTP {status}: {}", quote(&text)),
                retry_after,
            };
        }
        if !(200..300).contains(&status) {
            return Attempt::Fatal(LlmError::Rejected {
                url: url.to_string(),
                status,
                body: quote(&text),
            });
        }
        match parse_choices(&text, self.config.api) {
            Ok(c) if c.is_empty() => Attempt::Retry {
                reason: "the response has no choices".into(),
                retry_after,
            },
            Ok(mut c) => {
                c.truncate(n);
                Attempt::Done(c)
            }
            Err(e) => Attempt::Retry {
                reason: format!("malformed response ({e}): {}", quote(&text)),
                retry_after,
            },
        }
    }

    /// Requests that differ only in their seed, sent as one `n`-choice request.
    fn groups(&self, requests: &[Request]) -> Vec<std::ops::Range<usize>> {
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            if self.config.n_per_request
                && let Some(last) = groups.last_mut()
                && last.end == i
                && same_but_seed(&requests[last.start], r)
            {
                last.end = i + 1;
                continue;
            }
            groups.push(i..i + 1);
        }
        groups
    }
}

enum Attempt {
    Done(Vec<Completion>),
    Fatal(LlmError),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

fn same_but_seed(a: &Request, b: &Request) -> bool {
    let s = &a.sampling;
    let t = &b.sampling;
    a.prompt == b.prompt
        && s.max_tokens == t.max_tokens
        && s.temperature == t.temperature
        && s.top_p == t.top_p
        && s.stop == t.stop
}

fn transport_reason(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::ConnectionFailed => "connection refused".into(),
        ureq::Error::Io(io) => format!("connection error: {io}"),
        other => other.to_string(),
    }
}

fn quote(text: &str) -> String {
    let t = text.trim();
    if t.chars().count() <= BODY_QUOTE {
        t.to_string()
    } else {
        format!("{}...", t.chars().take(BODY_QUOTE).collect::<String>())
    }
}

/// The choices of an OpenAI response body, in `index` order.
pub fn parse_choices(text: &str, api: super::OpenAiApi) -> Result<Vec<Completion>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("no `choices` list")?;
    let usage = v.get("usage");
    let prompt_tokens = usage
        .and_then(|u| u.get("prompt_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    let total_completion = usage
        .and_then(|u| u.get("completion_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    let mut out: Vec<(u64, Completion)> = Vec::with_capacity(choices.len());
    for (i, c) in choices.iter().enumerate() {
        let text = match api {
            super::OpenAiApi::Chat => c
                .get("message")
                .and_then(|m| m.get("content"))
                .map(|content| content.as_str().unwrap_or_default().to_string()),
            super::OpenAiApi::Completions => {
                c.get("text").and_then(Value::as_str).map(String::from)
            }
        }
        .ok_or_else(|| format!("choice {i} has no text"))?;
        let finish_reason = match c.get("finish_reason").and_then(Value::as_str) {
            Some("length") => FinishReason::Length,
            _ => FinishReason::Stop,
        };
        let index = c.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
        out.push((
            index,
            Completion {
                text,
                finish_reason,
                prompt_tokens,
                // Usage covers all choices; split it evenly (exact for n = 1).
                completion_tokens: total_completion / choices.len().max(1),
            },
        ));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

impl Backend for OpenAiBackend {
    fn model_id(&self) -> String {
        self.config.identity.clone()
    }

    fn complete(&self, requests: &[Request]) -> Result<Vec<Completion>, LlmError> {
        let slots: Vec<std::sync::Mutex<Option<Result<Completion, LlmError>>>> = requests
            .iter()
            .map(|_| std::sync::Mutex::new(None))
            .collect();
        self.complete_each(requests, &|i, r| {
            if let Ok(mut slot) = slots[i].lock() {
                *slot = Some(r);
            }
        });
        slots
            .into_iter()
            .map(|s| {
                s.into_inner()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| Err(LlmError::Backend("no result".into())))
            })
            .collect()
    }

    fn complete_each(
        &self,
        requests: &[Request],
        done: &(dyn Fn(usize, Result<Completion, LlmError>) + Sync),
    ) {
        let groups = self.groups(requests);
        let next = AtomicUsize::new(0);
        let workers = self.config.concurrency.clamp(1, groups.len().max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let g = next.fetch_add(1, Ordering::Relaxed);
                        let Some(range) = groups.get(g) else { break };
                        self.complete_group(requests, range.clone(), done);
                    }
                });
            }
        });
    }
}

impl OpenAiBackend {
    fn complete_group(
        &self,
        requests: &[Request],
        range: std::ops::Range<usize>,
        done: &(dyn Fn(usize, Result<Completion, LlmError>) + Sync),
    ) {
        let mut next = range.start;
        if range.len() > 1 {
            match self.post(&requests[range.start], range.len()) {
                Ok(choices) => {
                    for c in choices {
                        done(next, Ok(c));
                        next += 1;
                    }
                }
                // A server that refuses `n` > 1: ask one by one below.
                Err(LlmError::Rejected { .. }) => {}
                Err(e) => {
                    let message = e.to_string();
                    for i in range {
                        done(i, Err(LlmError::Backend(message.clone())));
                    }
                    return;
                }
            }
        }
        // Choices a server did not return (some ignore `n`) are asked for one by one.
        for (i, request) in requests.iter().enumerate().take(range.end).skip(next) {
            done(
                i,
                self.post(request, 1)
                    .and_then(|mut c| c.pop().ok_or_else(|| LlmError::Backend("no choice".into()))),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::OpenAiApi;

    #[test]
    fn choices_are_read_in_index_order_with_their_finish_reason() {
        let body = r#"{"choices":[{"index":1,"message":{"content":"b"},"finish_reason":"length"},
            {"index":0,"message":{"content":"a"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":7,"completion_tokens":10}}"#;
        let c = parse_choices(body, OpenAiApi::Chat).expect("parses");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].text, "a");
        assert_eq!(c[1].text, "b");
        assert_eq!(c[1].finish_reason, FinishReason::Length);
        assert_eq!(c[0].prompt_tokens, 7);
        assert_eq!(c[0].completion_tokens, 5);
    }

    #[test]
    fn malformed_bodies_are_errors_not_empty_completions() {
        assert!(parse_choices("{\"choices\": [", OpenAiApi::Chat).is_err());
        assert!(parse_choices("{\"error\": \"x\"}", OpenAiApi::Chat).is_err());
        assert!(parse_choices(r#"{"choices":[{"index":0}]}"#, OpenAiApi::Completions).is_err());
    }
}
