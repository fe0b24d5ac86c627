//! An OpenAI-compatible HTTP backend (vLLM, llama.cpp's `llama-server`,
//! OpenAI, DeepSeek): chat or text completions, bounded concurrency, retries
//! with exponential backoff on 429, 5xx, timeouts, dropped connections and
//! malformed bodies.
//!
//! Every sampling field is sent explicitly (temperature, top_p, max_tokens,
//! stop, seed), so the server's own defaults (vLLM's `generation_config`)
//! never decide a value silently: what the ledger records is what was used.
//!
//! # Many endpoints
//! The backend spreads requests over one or more endpoints serving the same
//! model (one vLLM server per GPU), each with its own `concurrency`:
//! - each attempt goes to the least-loaded endpoint (requests in flight over
//!   its concurrency) that has a free slot, ties going to the one that has
//!   served fewer;
//! - an attempt that fails in a way worth retrying (refused, dropped, timed
//!   out, 429, 5xx, a malformed body) marks its endpoint down for a back-off
//!   period (`backoff_s`, doubling with each failure in a row, or the
//!   server's `Retry-After`) and moves the request at once to an endpoint it
//!   has not tried yet; endpoints that are down are only used when none is up;
//! - a request fails only once every endpoint failed it `retries + 1` times
//!   (a round over all of them, then the backoff, then another round); the
//!   error names each endpoint and its last error. A 400/401/404 fails at once.
//!
//! With one endpoint this is the single-server client it always was.

use super::{Backend, Completion, EndpointStats, FinishReason, LlmError, Prompt, Request};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Which OpenAI endpoint to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OpenAiApi {
    /// `/chat/completions` with messages; a text prompt is sent as one user message.
    #[default]
    Chat,
    /// `/completions` with a text prompt; chat prompts are refused.
    Completions,
}

/// How to reach the model; see [`super::ModelSpec::Openai`].
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// One or more endpoints serving the same model.
    pub endpoints: Vec<EndpointConfig>,
    pub model: String,
    pub api: OpenAiApi,
    pub api_key: Option<String>,
    pub identity: String,
    pub n_per_request: bool,
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
}

/// One endpoint: its `base_url` (`http://host:port/v1`) and how many
/// requests it takes at once.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub base_url: String,
    pub concurrency: usize,
}

pub struct OpenAiBackend {
    config: OpenAiConfig,
    agent: ureq::Agent,
    pool: Pool,
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
        let pool = Pool::new(&config.endpoints, config.backoff);
        OpenAiBackend {
            config,
            agent,
            pool,
        }
    }

    /// The completions URL of endpoint `i`.
    fn url(&self, i: usize) -> String {
        let base = self.config.endpoints[i].base_url.trim_end_matches('/');
        match self.config.api {
            OpenAiApi::Chat => format!("{base}/chat/completions"),
            OpenAiApi::Completions => format!("{base}/completions"),
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
            (Prompt::Chat(messages), OpenAiApi::Chat) => body["messages"] = json!(messages),
            (Prompt::Text(text), OpenAiApi::Chat) => {
                body["messages"] = json!([{"role": "user", "content": text}])
            }
            (Prompt::Text(text), OpenAiApi::Completions) => body["prompt"] = json!(text),
            (Prompt::Chat(_), OpenAiApi::Completions) => {
                return Err(LlmError::Backend(
                    "a chat prompt cannot be sent to the completions API; set `model.api: chat`"
                        .into(),
                ));
            }
        }
        Ok(body)
    }

    /// One request with retries, moved between endpoints as they fail: `n`
    /// choices of it.
    fn post(&self, request: &Request, n: usize) -> Result<Vec<Completion>, LlmError> {
        let body = self.body(request, n)?.to_string();
        let count = self.config.endpoints.len();
        // The last error of each endpoint for this request.
        let mut errors: Vec<Option<String>> = vec![None; count];
        let mut round = 0u32;
        loop {
            round += 1;
            let mut tried = vec![false; count];
            let mut retry_after = None;
            while tried.iter().any(|t| !t) {
                let i = self.pool.acquire(&tried);
                let outcome = self.attempt(&self.url(i), &body, n);
                match outcome {
                    Attempt::Done(completions) => {
                        // Usage splits evenly over choices; the prompt is counted once.
                        let tokens = (
                            completions.first().map_or(0, |c| c.prompt_tokens as u64),
                            completions.iter().map(|c| c.completion_tokens as u64).sum(),
                        );
                        self.pool.release(i, Released::Served(tokens));
                        return Ok(completions);
                    }
                    Attempt::Fatal(e) => {
                        self.pool.release(i, Released::Refused);
                        return Err(e);
                    }
                    Attempt::Retry {
                        reason,
                        retry_after: after,
                    } => {
                        self.pool.release(i, Released::Failed(after));
                        tried[i] = true;
                        errors[i] = Some(reason);
                        retry_after = after.or(retry_after);
                    }
                }
            }
            if round > self.config.retries {
                break;
            }
            let backoff = self.config.backoff.saturating_mul(1 << (round - 1).min(16));
            std::thread::sleep(retry_after.unwrap_or(backoff).min(MAX_BACKOFF));
        }
        let mut failures: Vec<(String, String)> = errors
            .into_iter()
            .enumerate()
            .map(|(i, e)| (self.url(i), e.unwrap_or_default()))
            .collect();
        if count == 1 {
            let (url, reason) = failures.remove(0);
            return Err(LlmError::Unavailable {
                url,
                reason,
                attempts: round,
            });
        }
        Err(LlmError::AllUnavailable {
            failures,
            attempts: round,
        })
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
pub fn parse_choices(text: &str, api: OpenAiApi) -> Result<Vec<Completion>, String> {
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
            OpenAiApi::Chat => c
                .get("message")
                .and_then(|m| m.get("content"))
                .map(|content| content.as_str().unwrap_or_default().to_string()),
            OpenAiApi::Completions => c.get("text").and_then(Value::as_str).map(String::from),
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

    fn endpoints(&self) -> Vec<EndpointStats> {
        self.pool.stats(&self.config.endpoints)
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
        // One worker per slot: each endpoint's own limit is kept by the pool.
        let slots: usize = self.config.endpoints.iter().map(|e| e.concurrency).sum();
        let workers = slots.clamp(1, groups.len().max(1));
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

/// How an attempt on an endpoint ended, for its bookkeeping.
#[derive(Debug, Clone, Copy)]
enum Released {
    /// Completions came back, with (prompt, completion) tokens.
    Served((u64, u64)),
    /// The endpoint answered, refusing the request (400, 401, 404): no
    /// reason to think it is down.
    Refused,
    /// Refused connection, timeout, 429, 5xx, malformed body: down for a while
    /// (at least the `Retry-After` it sent, if any).
    Failed(Option<Duration>),
}

/// What one endpoint is doing.
#[derive(Debug, Clone, Default)]
struct Slot {
    limit: usize,
    in_flight: usize,
    served: u64,
    failed: u64,
    /// Tokens in and out of the requests it served, as its `usage` said.
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Failures in a row, each marking it down anew; zero once it serves.
    strikes: u32,
    /// Not to be asked before this, while another endpoint is up.
    down_until: Option<Instant>,
}

impl Slot {
    fn is_down(&self, now: Instant) -> bool {
        self.down_until.is_some_and(|t| t > now)
    }
}

/// The endpoints' slots: which one takes the next attempt.
struct Pool {
    slots: Mutex<Vec<Slot>>,
    freed: Condvar,
    backoff: Duration,
}

/// Where the next attempt goes.
#[derive(Debug, PartialEq, Eq)]
enum Pick {
    Take(usize),
    /// Every candidate is busy: wait for a slot, or until this moment (an
    /// endpoint comes back up).
    Wait(Option<Instant>),
}

/// The least-loaded endpoint not in `tried` with a free slot, preferring
/// endpoints that are up; among endpoints that are all down, the one back up
/// soonest. Load is requests in flight over the limit; ties go to the one
/// that served fewer, then to the first listed.
fn pick(slots: &[Slot], tried: &[bool], now: Instant) -> Pick {
    let candidates: Vec<usize> = (0..slots.len()).filter(|&i| !tried[i]).collect();
    let up: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| !slots[i].is_down(now))
        .collect();
    let free = |i: &usize| slots[*i].in_flight < slots[*i].limit;
    // a.in_flight / a.limit < b.in_flight / b.limit, without division.
    let load = |i: usize, j: usize| {
        (slots[i].in_flight * slots[j].limit)
            .cmp(&(slots[j].in_flight * slots[i].limit))
            .then(slots[i].served.cmp(&slots[j].served))
            .then(i.cmp(&j))
    };
    if !up.is_empty() {
        return match up.iter().copied().filter(free).min_by(|&a, &b| load(a, b)) {
            Some(i) => Pick::Take(i),
            // All busy; wake when one that is down comes back, to take it.
            None => Pick::Wait(
                candidates
                    .iter()
                    .filter_map(|&i| slots[i].down_until.filter(|t| *t > now))
                    .min(),
            ),
        };
    }
    match candidates.iter().copied().filter(free).min_by(|&a, &b| {
        slots[a]
            .down_until
            .cmp(&slots[b].down_until)
            .then(load(a, b))
    }) {
        Some(i) => Pick::Take(i),
        None => Pick::Wait(None),
    }
}

impl Pool {
    fn new(endpoints: &[EndpointConfig], backoff: Duration) -> Pool {
        Pool {
            slots: Mutex::new(
                endpoints
                    .iter()
                    .map(|e| Slot {
                        limit: e.concurrency.max(1),
                        ..Slot::default()
                    })
                    .collect(),
            ),
            freed: Condvar::new(),
            backoff,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a slot on an endpoint not in `tried` (at least one must not be),
    /// waiting for one to free up if need be.
    fn acquire(&self, tried: &[bool]) -> usize {
        let mut slots = self.lock();
        loop {
            let now = Instant::now();
            match pick(&slots, tried, now) {
                Pick::Take(i) => {
                    slots[i].in_flight += 1;
                    return i;
                }
                Pick::Wait(None) => {
                    slots = self.freed.wait(slots).unwrap_or_else(|e| e.into_inner());
                }
                Pick::Wait(Some(until)) => {
                    slots = self
                        .freed
                        .wait_timeout(slots, until.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    fn release(&self, i: usize, how: Released) {
        let mut slots = self.lock();
        let now = Instant::now();
        let slot = &mut slots[i];
        slot.in_flight = slot.in_flight.saturating_sub(1);
        match how {
            Released::Served((prompt, completion)) => {
                slot.served += 1;
                slot.prompt_tokens += prompt;
                slot.completion_tokens += completion;
                slot.strikes = 0;
                slot.down_until = None;
            }
            Released::Refused => {}
            Released::Failed(retry_after) => {
                slot.failed += 1;
                // Attempts in flight when it went down fail too: they do
                // not make the back-off longer.
                if !slot.is_down(now) {
                    slot.strikes += 1;
                    let backoff = self
                        .backoff
                        .saturating_mul(1 << (slot.strikes - 1).min(16))
                        .max(retry_after.unwrap_or_default())
                        .min(MAX_BACKOFF);
                    slot.down_until = Some(now + backoff);
                }
            }
        }
        drop(slots);
        self.freed.notify_all();
    }

    fn stats(&self, endpoints: &[EndpointConfig]) -> Vec<EndpointStats> {
        self.lock()
            .iter()
            .zip(endpoints)
            .map(|(s, e)| EndpointStats {
                base_url: e.base_url.clone(),
                served: s.served,
                failed: s.failed,
                prompt_tokens: s.prompt_tokens,
                completion_tokens: s.completion_tokens,
            })
            .collect()
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

    // ---- dispatch over many endpoints --------------------------------------

    fn slot(limit: usize, in_flight: usize, served: u64) -> Slot {
        Slot {
            limit,
            in_flight,
            served,
            ..Slot::default()
        }
    }

    #[test]
    fn the_least_loaded_endpoint_with_a_free_slot_is_picked() {
        let now = Instant::now();
        let none = [false; 3];
        // Load is relative to the limit: 1 of 4 beats 1 of 2 and 2 of 2 is full.
        let slots = [slot(2, 1, 0), slot(2, 2, 0), slot(4, 1, 0)];
        assert_eq!(pick(&slots, &none, now), Pick::Take(2));
        // Equal load: the one that served fewer, then the first listed.
        let slots = [slot(2, 0, 5), slot(2, 0, 3), slot(2, 0, 3)];
        assert_eq!(pick(&slots, &none, now), Pick::Take(1));
        // What this request already tried is out of the running.
        assert_eq!(pick(&slots, &[false, true, false], now), Pick::Take(2));
        // Every slot taken: wait.
        let slots = [slot(1, 1, 0), slot(2, 2, 0), slot(1, 1, 0)];
        assert_eq!(pick(&slots, &none, now), Pick::Wait(None));
    }

    #[test]
    fn an_endpoint_that_is_down_is_used_only_when_none_is_up() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let mut slots = [slot(4, 0, 0), slot(4, 3, 0)];
        slots[0].down_until = Some(later);
        assert_eq!(pick(&slots, &[false; 2], now), Pick::Take(1));
        // The one up is full: wait for it, or for the other to come back.
        slots[1].in_flight = 4;
        assert_eq!(pick(&slots, &[false; 2], now), Pick::Wait(Some(later)));
        // Back up once its back-off is over.
        assert_eq!(
            pick(&slots, &[false; 2], later + Duration::from_millis(1)),
            Pick::Take(0)
        );
        // Only down ones left to try: the one back up soonest.
        slots[1].in_flight = 0;
        slots[1].down_until = Some(now + Duration::from_secs(1));
        assert_eq!(pick(&slots, &[false; 2], now), Pick::Take(1));
        assert_eq!(pick(&slots, &[false, true], now), Pick::Take(0));
    }

    #[test]
    fn failures_in_a_row_lengthen_the_back_off_and_a_success_ends_it() {
        let pool = Pool::new(
            &[EndpointConfig {
                base_url: "x".into(),
                concurrency: 2,
            }],
            Duration::from_secs(1),
        );
        let down_for = |pool: &Pool| {
            pool.lock()[0]
                .down_until
                .map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64())
        };
        // Two attempts in flight fail together: one strike, not two.
        assert_eq!((pool.acquire(&[false]), pool.acquire(&[false])), (0, 0));
        pool.release(0, Released::Failed(None));
        pool.release(0, Released::Failed(None));
        let first = down_for(&pool).expect("down");
        assert!((0.5..=1.0).contains(&first), "{first}");
        // Another failure once it is back: twice as long; `Retry-After` wins if longer.
        pool.lock()[0].down_until = Some(Instant::now());
        pool.acquire(&[false]);
        pool.release(0, Released::Failed(Some(Duration::from_secs(30))));
        let second = down_for(&pool).expect("down");
        assert!((29.0..=30.0).contains(&second), "{second}");
        assert_eq!(pool.lock()[0].strikes, 2);
        pool.acquire(&[false]);
        pool.release(0, Released::Served((0, 0)));
        assert_eq!(down_for(&pool), None);
        let s = pool.lock()[0].clone();
        assert_eq!((s.served, s.failed, s.strikes, s.in_flight), (1, 3, 0, 0));
    }

    /// A tiny OpenAI chat server on a real local port: answers each request
    /// with `status` after `delay`, counting requests and the most it ever
    /// held at once.
    struct Responder {
        port: u16,
        hits: std::sync::Arc<AtomicUsize>,
        peak: std::sync::Arc<AtomicUsize>,
    }

    impl Responder {
        fn start(status: u16, delay: Duration) -> Responder {
            use std::io::{BufRead, Read, Write};
            use std::sync::Arc;
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let hits = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let now = Arc::new(AtomicUsize::new(0));
            let (h, p) = (hits.clone(), peak.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let (h, p, now) = (h.clone(), p.clone(), now.clone());
                    std::thread::spawn(move || {
                        let mut reader =
                            std::io::BufReader::new(stream.try_clone().expect("clone"));
                        let mut length = 0usize;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0u8; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        h.fetch_add(1, Ordering::SeqCst);
                        let held = now.fetch_add(1, Ordering::SeqCst) + 1;
                        p.fetch_max(held, Ordering::SeqCst);
                        std::thread::sleep(delay);
                        let text = if status == 200 {
                            json!({"choices": [{"index": 0, "message": {"content": format!("from {port}")}, "finish_reason": "stop"}],
                                   "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
                            .to_string()
                        } else {
                            "{\"error\": \"overloaded\"}".to_string()
                        };
                        now.fetch_sub(1, Ordering::SeqCst);
                        let mut stream = stream;
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                            text.len()
                        );
                    });
                }
            });
            Responder { port, hits, peak }
        }

        fn url(&self) -> String {
            format!("http://127.0.0.1:{}/v1", self.port)
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    /// A URL nothing listens on.
    fn dead_url() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        format!("http://127.0.0.1:{port}/v1")
    }

    fn backend(endpoints: &[(String, usize)], retries: u32, backoff_s: f64) -> OpenAiBackend {
        OpenAiBackend::new(OpenAiConfig {
            endpoints: endpoints
                .iter()
                .map(|(u, c)| EndpointConfig {
                    base_url: u.clone(),
                    concurrency: *c,
                })
                .collect(),
            model: "m".into(),
            api: OpenAiApi::Chat,
            api_key: None,
            identity: "openai:m".into(),
            n_per_request: false,
            timeout: Duration::from_secs(10),
            retries,
            backoff: Duration::from_secs_f64(backoff_s),
        })
    }

    fn requests(k: usize) -> Vec<Request> {
        (0..k)
            .map(|i| Request {
                prompt: Prompt::Text(format!("p{i}")),
                sampling: crate::llm::Sampling {
                    seed: i as u64,
                    ..Default::default()
                },
            })
            .collect()
    }

    /// Each request's own outcome.
    fn ask_each(b: &OpenAiBackend, k: usize) -> Vec<Result<Completion, LlmError>> {
        let out: Vec<Mutex<Option<Result<Completion, LlmError>>>> =
            (0..k).map(|_| Mutex::new(None)).collect();
        b.complete_each(&requests(k), &|i, r| {
            *out[i].lock().expect("lock") = Some(r);
        });
        out.into_iter()
            .map(|m| m.into_inner().expect("lock").expect("answered"))
            .collect()
    }

    fn served(b: &OpenAiBackend) -> Vec<(u64, u64)> {
        b.endpoints().iter().map(|e| (e.served, e.failed)).collect()
    }

    #[test]
    fn requests_spread_over_endpoints_within_each_ones_concurrency() {
        let small = Responder::start(200, Duration::from_millis(60));
        let big = Responder::start(200, Duration::from_millis(60));
        let b = backend(&[(small.url(), 1), (big.url(), 3)], 0, 0.01);
        let out = ask_each(&b, 16);
        assert!(out.iter().all(Result::is_ok), "{out:?}");
        assert!(
            small.peak.load(Ordering::SeqCst) <= 1,
            "small over its limit"
        );
        assert!(big.peak.load(Ordering::SeqCst) <= 3, "big over its limit");
        assert_eq!(small.hits() + big.hits(), 16);
        // Four slots, three of them on `big`: it takes most of the work.
        assert!(
            small.hits() >= 1 && big.hits() > small.hits(),
            "{} / {}",
            small.hits(),
            big.hits()
        );
        assert_eq!(
            served(&b),
            [(small.hits() as u64, 0), (big.hits() as u64, 0)]
        );
    }

    #[test]
    fn a_failing_endpoint_is_passed_over_and_marked_down() {
        let broken = Responder::start(500, Duration::ZERO);
        let good = Responder::start(200, Duration::from_millis(20));
        let dead = dead_url();
        // A long back-off: failing over must not wait for it.
        let b = backend(&[(dead, 1), (broken.url(), 1), (good.url(), 1)], 2, 30.0);
        let started = Instant::now();
        let out = ask_each(&b, 8);
        assert!(out.iter().all(Result::is_ok), "{out:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(good.hits(), 8);
        // Each failing endpoint was tried once, then left alone while down.
        assert_eq!(broken.hits(), 1);
        assert_eq!(served(&b), [(0, 1), (0, 1), (8, 0)]);
    }

    #[test]
    fn a_request_fails_only_when_every_endpoint_does_and_says_why_for_each() {
        let broken = Responder::start(503, Duration::ZERO);
        let dead = dead_url();
        let b = backend(&[(dead.clone(), 2), (broken.url(), 2)], 1, 0.01);
        let err = ask_each(&b, 1).remove(0).expect_err("fails");
        let text = err.to_string();
        assert!(
            matches!(err, LlmError::AllUnavailable { attempts: 2, .. }),
            "{text}"
        );
        assert!(
            text.contains(&format!("{dead}/chat/completions: connection")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{}/chat/completions: HTTP 503", broken.url())),
            "{text}"
        );
        assert!(text.contains("gave up after 2 attempts on each"), "{text}");
        // Each endpoint was tried once per round.
        assert_eq!(broken.hits(), 2);
        assert_eq!(served(&b), [(0, 2), (0, 2)]);
    }

    #[test]
    fn one_endpoint_keeps_the_single_server_error() {
        let dead = dead_url();
        let b = backend(&[(dead.clone(), 4)], 1, 0.01);
        let err = ask_each(&b, 1).remove(0).expect_err("fails");
        let text = err.to_string();
        assert!(
            matches!(err, LlmError::Unavailable { attempts: 2, .. }),
            "{text}"
        );
        assert!(
            text.starts_with(&format!("{dead}/chat/completions: connection")),
            "{text}"
        );
        assert!(text.ends_with("(gave up after 2 attempts)"), "{text}");
    }
}
