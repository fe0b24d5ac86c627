//! The `model:` param of the stages that ask a model: which backend, and how
//! to reach it. Secrets are never params: an API key is read from the
//! environment variable `api_key_env` names, so it is neither hashed into a
//! cache key nor written to a manifest or the ledger.

use super::http::OpenAiApi;
use super::{Backend, Completion, LlmError, Request};
use crate::api::artifact;
use crate::api::{FileDep, InputSlot, PlanEnv, Problem, RunCtx, StageError};
#[cfg(feature = "torch")]
use crate::llm::checkpoint;
use serde::{Deserialize, Serialize};

/// A model to ask, as written in a spec.
///
/// ```yaml
/// model: { backend: openai, base_url: "http://127.0.0.1:8080/v1", name: smollm2 }
/// # replicas of one model (one vLLM server per GPU), `concurrency` requests each:
/// model: { backend: openai, base_url: ["http://gpu0:8000/v1", "http://gpu1:8000/v1"],
///          name: Qwen/Qwen2.5-Coder-7B-Instruct, concurrency: 16 }
/// # an item may override `concurrency` for its endpoint:
/// model: { backend: openai, name: m, concurrency: 4,
///          base_url: [{ url: "http://big:8000/v1", concurrency: 32 }, "http://small:8000/v1"] }
/// model: { backend: tch, path: ../models/smollm2/hf }
/// model: { backend: tch }   # the checkpoint an upstream `sft` wrote, wired as input `model`
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    /// An OpenAI-compatible HTTP endpoint (vLLM, llama.cpp server, OpenAI, DeepSeek).
    Openai {
        /// `http://host:port/v1`, or a list of endpoints serving the same
        /// model; default: the `OPENAI_BASE_URL` environment variable. A list
        /// is left out of the stage's key (see [`BaseUrl`]).
        #[serde(default, skip_serializing_if = "BaseUrl::is_list")]
        base_url: Option<BaseUrl>,
        /// The served model name sent in each request.
        name: String,
        #[serde(default)]
        api: OpenAiApi,
        /// Environment variable holding the API key (sent as a bearer token).
        #[serde(default)]
        api_key_env: Option<String>,
        /// The served weights file: content-hashed into the model's identity,
        /// so completions of other weights under the same name never replay.
        #[serde(default)]
        weights: Option<String>,
        /// Identity of the model in the ledger (default: `openai:<name>`, plus
        /// the weights' hash). Set it to a checkpoint hash or a dated snapshot.
        #[serde(default)]
        identity: Option<String>,
        /// Requests in flight at once, per endpoint (a list item may set its own).
        #[serde(default = "default_concurrency")]
        concurrency: usize,
        /// Ask for k samples of one prompt with one request (`n: k`); by
        /// default each sample is its own request with its own seed, because
        /// some servers ignore `n` (missing choices are asked for one by one).
        #[serde(default)]
        n_per_request: bool,
        /// Seconds one request may take.
        #[serde(default = "default_timeout")]
        timeout_s: f64,
        /// Retries after a 429, a 5xx, a timeout, a dropped connection or a
        /// malformed body, with exponential backoff from `backoff_s`.
        #[serde(default = "default_retries")]
        retries: u32,
        #[serde(default = "default_backoff")]
        backoff_s: f64,
    },
    /// The in-process libtorch model (cargo feature `torch`).
    Tch {
        /// An HF model directory, or an `sft` LoRA adapter. Leave it out to
        /// ask the checkpoint of an upstream `sft` stage instead: the stage
        /// then takes an input `model` (that stage's `model` output).
        #[serde(default)]
        path: Option<String>,
        #[serde(default)]
        base: Option<String>,
        #[serde(default = "default_chat")]
        chat_format: String,
        #[serde(default = "default_auto")]
        device: String,
        #[serde(default = "default_auto")]
        dtype: String,
        #[serde(default = "default_batch")]
        batch_size: usize,
    },
}

/// Where an OpenAI-compatible model is served: one `base_url`, or a list of
/// endpoints serving the same model (one vLLM server per GPU), each item a
/// URL or `{url, concurrency}`.
///
/// Requests go to the least-loaded endpoint with a free slot, and one that
/// fails (refused, timed out, 5xx, 429, garbage) is retried on another; see
/// [`super::http`]. The list is not part of the model's identity in the
/// ledger (no `base_url` is), and it is left out of the stage's cache key:
/// replicas serve the same model, so which of them answers, how many there
/// are and in what order they are listed change no output. A single string
/// stays in the key exactly as it always was, so existing keys do not move.
#[derive(Debug, Clone, PartialEq)]
pub enum BaseUrl {
    One(String),
    Many(Vec<Endpoint>),
}

/// One item of a `base_url` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub url: String,
    /// Requests in flight at once on this endpoint; default: the model's `concurrency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
}

impl BaseUrl {
    fn is_list(v: &Option<BaseUrl>) -> bool {
        matches!(v, Some(BaseUrl::Many(_)))
    }

    /// Each endpoint with its concurrency (`default` unless the item sets one).
    pub fn endpoints(&self, default: usize) -> Vec<(String, usize)> {
        match self {
            BaseUrl::One(url) => vec![(url.clone(), default)],
            BaseUrl::Many(items) => items
                .iter()
                .map(|e| (e.url.clone(), e.concurrency.unwrap_or(default)))
                .collect(),
        }
    }
}

impl Serialize for BaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BaseUrl::One(url) => s.serialize_str(url),
            BaseUrl::Many(items) => items.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for BaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BaseUrl;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a URL or a list of them (each a URL or `{url, concurrency}`)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BaseUrl, E> {
                Ok(BaseUrl::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<BaseUrl, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<EndpointItem>()? {
                    items.push(item.0);
                }
                Ok(BaseUrl::Many(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list item: `"http://..."` or `{url: "http://...", concurrency: 8}`.
struct EndpointItem(Endpoint);

impl<'de> Deserialize<'de> for EndpointItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = EndpointItem;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a URL or `{url, concurrency}`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EndpointItem, E> {
                Ok(EndpointItem(Endpoint {
                    url: v.to_string(),
                    concurrency: None,
                }))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<EndpointItem, A::Error> {
                Endpoint::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(EndpointItem)
            }
        }
        d.deserialize_any(V)
    }
}

/// Why `url` cannot be an endpoint, if it cannot.
fn bad_url(url: &str) -> Option<&'static str> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Some("must start with http:// or https://");
    }
    match url.parse::<ureq::http::Uri>() {
        Ok(uri) if uri.host().is_some_and(|h| !h.is_empty()) => None,
        _ => Some("is not a valid URL with a host"),
    }
}

fn default_concurrency() -> usize {
    4
}
fn default_timeout() -> f64 {
    120.0
}
fn default_retries() -> u32 {
    4
}
fn default_backoff() -> f64 {
    1.0
}
fn default_batch() -> usize {
    8
}
fn default_chat() -> String {
    "hf".into()
}
fn default_auto() -> String {
    "auto".into()
}

#[cfg(feature = "torch")]
fn model_dir_deps(param: &str, dir: &str, env: &PlanEnv) -> Vec<FileDep> {
    checkpoint::model_dir_deps(param, dir, env)
}

/// Without the model runtime the directory cannot be opened anyway; its
/// config stands in for it so that a missing directory is still reported.
#[cfg(not(feature = "torch"))]
fn model_dir_deps(param: &str, dir: &str, _env: &PlanEnv) -> Vec<FileDep> {
    vec![FileDep {
        param: param.into(),
        path: format!("{}/config.json", dir.trim_end_matches('/')),
    }]
}

/// The input slot that carries an `sft` checkpoint to a stage whose
/// `model: {backend: tch}` names no `path`.
pub const CHECKPOINT_SLOT: &str = "model";

impl ModelSpec {
    /// The input slot this model needs: an `sft` stage's `model` output when
    /// an in-process model names no `path`. Stages that ask a model add it to
    /// their inputs, so the engine wires, hashes and orders it like any input.
    pub fn input_slot(&self) -> Option<InputSlot> {
        match self {
            ModelSpec::Tch { path: None, .. } => Some(InputSlot::one(CHECKPOINT_SLOT)),
            _ => None,
        }
    }

    /// Problems with the spec, their paths under `param`.
    pub fn problems(&self, param: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        match self {
            ModelSpec::Openai {
                name,
                base_url,
                concurrency,
                timeout_s,
                backoff_s,
                ..
            } => {
                if name.trim().is_empty() {
                    out.push(Problem::at(&format!("{param}.name"), "must not be empty"));
                }
                match base_url {
                    None => {}
                    Some(BaseUrl::One(url)) => {
                        if let Some(why) = bad_url(url) {
                            out.push(
                                Problem::at(&format!("{param}.base_url"), why)
                                    .help("e.g. http://127.0.0.1:8080/v1"),
                            );
                        }
                    }
                    Some(BaseUrl::Many(items)) => {
                        if items.is_empty() {
                            out.push(
                                Problem::at(
                                    &format!("{param}.base_url"),
                                    "must list at least one endpoint",
                                )
                                .help("e.g. [\"http://127.0.0.1:8080/v1\", \"http://127.0.0.1:8081/v1\"]"),
                            );
                        }
                        let mut seen: Vec<&str> = Vec::new();
                        for (i, item) in items.iter().enumerate() {
                            // A map item's problems point into the map.
                            let at = format!("{param}.base_url.{i}");
                            let url_at = match item.concurrency {
                                Some(_) => format!("{at}.url"),
                                None => at.clone(),
                            };
                            if let Some(why) = bad_url(&item.url) {
                                out.push(
                                    Problem::at(&url_at, why).help("e.g. http://127.0.0.1:8080/v1"),
                                );
                            }
                            let same = item.url.trim_end_matches('/');
                            if let Some(j) = seen.iter().position(|u| *u == same) {
                                out.push(
                                    Problem::at(
                                        &url_at,
                                        format!("`{}` is listed twice (also item {j})", item.url),
                                    )
                                    .help("list each endpoint once; give it `{url, concurrency}` to send it more requests"),
                                );
                            }
                            seen.push(same);
                            if item.concurrency == Some(0) {
                                out.push(Problem::at(
                                    &format!("{at}.concurrency"),
                                    "must be at least 1",
                                ));
                            }
                        }
                    }
                }
                if *concurrency == 0 {
                    out.push(Problem::at(
                        &format!("{param}.concurrency"),
                        "must be at least 1",
                    ));
                }
                if !(*timeout_s > 0.0 && timeout_s.is_finite()) {
                    out.push(Problem::at(
                        &format!("{param}.timeout_s"),
                        "must be positive",
                    ));
                }
                if !(*backoff_s >= 0.0 && backoff_s.is_finite()) {
                    out.push(Problem::at(
                        &format!("{param}.backoff_s"),
                        "must be zero or positive",
                    ));
                }
            }
            ModelSpec::Tch {
                device,
                dtype,
                batch_size,
                ..
            } => {
                if !cfg!(feature = "torch") {
                    out.push(
                        Problem::at(
                            &format!("{param}.backend"),
                            "`tch` needs the cargo feature `torch`",
                        )
                        .help(crate::api::rebuild_hint("torch")),
                    );
                }
                if *batch_size == 0 {
                    out.push(Problem::at(
                        &format!("{param}.batch_size"),
                        "must be at least 1",
                    ));
                }
                #[cfg(feature = "torch")]
                out.extend(
                    checkpoint::runtime_problems(device, dtype)
                        .into_iter()
                        .map(|mut p| {
                            p.path.insert(0, param.to_string());
                            p
                        }),
                );
                let _ = (device, dtype);
            }
        }
        out
    }

    /// Files whose bytes identify the model (weights, checkpoint directories).
    pub fn file_deps(&self, param: &str, env: &PlanEnv) -> Vec<FileDep> {
        match self {
            ModelSpec::Openai { weights, .. } => weights
                .iter()
                .map(|w| FileDep {
                    param: format!("{param}.weights"),
                    path: w.clone(),
                })
                .collect(),
            ModelSpec::Tch { path, base, .. } => {
                // A checkpoint from an input is in the key through that
                // artifact, whose rows carry the checkpoint's fingerprint.
                let mut deps = path
                    .iter()
                    .flat_map(|p| model_dir_deps(&format!("{param}.path"), p, env))
                    .collect::<Vec<_>>();
                if let Some(b) = base {
                    deps.extend(model_dir_deps(&format!("{param}.base"), b, env));
                }
                deps
            }
        }
    }

    /// Requests in flight at once over every endpoint (the in-process model
    /// runs one batch at a time).
    pub fn concurrency(&self) -> usize {
        match self {
            ModelSpec::Openai {
                base_url: Some(b),
                concurrency,
                ..
            } => b.endpoints(*concurrency).iter().map(|(_, c)| c).sum(),
            ModelSpec::Openai { concurrency, .. } => *concurrency,
            ModelSpec::Tch { .. } => 1,
        }
    }

    /// Open the backend the spec names.
    pub fn open(&self, ctx: &RunCtx<'_>) -> Result<Box<dyn Backend>, StageError> {
        match self {
            ModelSpec::Openai {
                base_url,
                name,
                api,
                api_key_env,
                weights,
                identity,
                concurrency,
                n_per_request,
                timeout_s,
                retries,
                backoff_s,
            } => {
                let identity = match identity {
                    Some(id) => id.clone(),
                    None => {
                        let mut id = format!("openai:{name}");
                        if let Some(w) = weights {
                            let path = ctx.resolve(w);
                            let hash = artifact::hash_file(&path).map_err(|e| {
                                StageError::failed(format!("model.weights {}: {e}", path.display()))
                            })?;
                            id.push_str(&format!("@{}", &hash[..16]));
                        }
                        id
                    }
                };
                // A run the ledger answers needs no endpoint and no key: say
                // what is missing only if a completion must really be asked for.
                let endpoints = match base_url
                    .clone()
                    .or_else(|| std::env::var("OPENAI_BASE_URL").ok().map(BaseUrl::One))
                {
                    Some(b) => b
                        .endpoints(*concurrency)
                        .into_iter()
                        .map(|(base_url, concurrency)| super::http::EndpointConfig {
                            base_url,
                            concurrency,
                        })
                        .collect(),
                    None => {
                        return Ok(Box::new(Unconfigured {
                            identity,
                            why: "model.base_url is not set and neither is OPENAI_BASE_URL; name the endpoint (e.g. http://127.0.0.1:8080/v1)".into(),
                        }));
                    }
                };
                let api_key = match api_key_env {
                    Some(var) => match std::env::var(var) {
                        Ok(key) => Some(key),
                        Err(_) => {
                            return Ok(Box::new(Unconfigured {
                                identity,
                                why: format!(
                                    "model.api_key_env names `{var}`, which is not set in the environment"
                                ),
                            }));
                        }
                    },
                    None => None,
                };
                Ok(Box::new(super::http::OpenAiBackend::new(
                    super::http::OpenAiConfig {
                        endpoints,
                        model: name.clone(),
                        api: *api,
                        api_key,
                        identity,
                        n_per_request: *n_per_request,
                        timeout: std::time::Duration::from_secs_f64(*timeout_s),
                        retries: *retries,
                        backoff: std::time::Duration::from_secs_f64(*backoff_s),
                    },
                )))
            }
            #[cfg(feature = "torch")]
            ModelSpec::Tch {
                path,
                base,
                chat_format,
                device,
                dtype,
                batch_size,
            } => {
                use crate::model;
                let failed = |e: model::ModelError| StageError::failed(e.to_string());
                let device = model::parse_device(device).map_err(failed)?;
                let kind = model::parse_kind(dtype, device).map_err(failed)?;
                let chat = if chat_format == "hf" {
                    "hf".to_string()
                } else {
                    ctx.resolve(chat_format).to_string_lossy().into_owned()
                };
                let base = base.as_ref().map(|b| ctx.resolve(b));
                let dir = match path {
                    Some(p) => ctx.resolve(p),
                    None => upstream_checkpoint(ctx)?,
                };
                let backend = model::guard(|| {
                    model::TchBackend::open(&dir, base.as_deref(), &chat, device, kind, *batch_size)
                })
                .map_err(failed)?;
                Ok(Box::new(backend))
            }
            #[cfg(not(feature = "torch"))]
            ModelSpec::Tch { .. } => Err(StageError::Failed(format!(
                "model.backend `tch` needs the cargo feature `torch`; {}",
                crate::api::rebuild_hint("torch")
            ))),
        }
    }
}
/// The checkpoint directory named by the one row of input `model` (an `sft`
/// stage's `model` output), which lives next to that artifact in the cache.
#[cfg(feature = "torch")]
fn upstream_checkpoint(ctx: &RunCtx<'_>) -> Result<std::path::PathBuf, StageError> {
    let table = ctx.input(CHECKPOINT_SLOT)?;
    let rows = artifact::table_to_json_rows(&table)?;
    let artifact = &ctx.input_paths(CHECKPOINT_SLOT)[0];
    let checkpoint = match rows.as_slice() {
        [row] => row.get("checkpoint").and_then(|v| v.as_str()),
        _ => None,
    }
    .ok_or_else(|| {
        StageError::failed(format!(
            "input `{CHECKPOINT_SLOT}` ({}) must be one row with a `checkpoint` column, as `sft` writes; it has {} row(s)",
            artifact.display(),
            rows.len()
        ))
    })?;
    let dir = checkpoint::checkpoint_dir(artifact, checkpoint);
    if !dir.is_dir() {
        return Err(StageError::failed(format!(
            "input `{CHECKPOINT_SLOT}` names checkpoint {}, which is missing; `tw run --force` the `sft` stage to write it again",
            dir.display()
        )));
    }
    Ok(dir)
}

/// An endpoint that cannot be asked (no URL, no key): replays from the
/// ledger still work; anything that must be asked fails saying why.
struct Unconfigured {
    identity: String,
    why: String,
}

impl Backend for Unconfigured {
    fn model_id(&self) -> String {
        self.identity.clone()
    }

    fn complete(&self, _requests: &[Request]) -> Result<Vec<Completion>, LlmError> {
        Err(LlmError::Backend(self.why.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> ModelSpec {
        serde_json::from_value(v).expect("parses")
    }

    fn paths(spec: &ModelSpec) -> Vec<(String, String)> {
        spec.problems("model")
            .into_iter()
            .map(|p| (p.path.join("."), p.message))
            .collect()
    }

    #[test]
    fn base_url_is_one_url_or_a_list_of_urls_and_url_concurrency_maps() {
        let one = parse(json!({"backend": "openai", "name": "m", "base_url": "http://a:1/v1"}));
        let ModelSpec::Openai { base_url, .. } = &one else {
            unreachable!()
        };
        assert_eq!(base_url, &Some(BaseUrl::One("http://a:1/v1".into())));
        assert_eq!(one.concurrency(), 4);
        let many = parse(json!({"backend": "openai", "name": "m", "concurrency": 2,
            "base_url": ["http://a:1/v1", {"url": "http://b:1/v1", "concurrency": 8}]}));
        let ModelSpec::Openai {
            base_url: Some(b), ..
        } = &many
        else {
            unreachable!()
        };
        assert_eq!(
            b.endpoints(2),
            [
                ("http://a:1/v1".to_string(), 2),
                ("http://b:1/v1".to_string(), 8)
            ]
        );
        assert_eq!(many.concurrency(), 10, "concurrency is per endpoint");
        assert!(paths(&many).is_empty(), "{:?}", paths(&many));
        let err = serde_json::from_value::<ModelSpec>(json!({"backend": "openai", "name": "m",
            "base_url": [{"url": "http://a:1/v1", "slots": 8}]}))
        .expect_err("unknown field");
        assert!(err.to_string().contains("slots"), "{err}");
        assert!(
            serde_json::from_value::<ModelSpec>(
                json!({"backend": "openai", "name": "m", "base_url": 3})
            )
            .is_err()
        );
    }

    #[test]
    fn a_single_url_stays_in_the_key_as_before_and_a_list_is_left_out() {
        let key = |v: serde_json::Value| serde_json::to_value(parse(v)).expect("serializes");
        let one = key(json!({"backend": "openai", "name": "m", "base_url": "http://a:1/v1"}));
        assert_eq!(one["base_url"], "http://a:1/v1");
        let unset = key(json!({"backend": "openai", "name": "m"}));
        assert_eq!(unset["base_url"], serde_json::Value::Null);
        let ab = key(json!({"backend": "openai", "name": "m",
            "base_url": ["http://a:1/v1", "http://b:1/v1"]}));
        let ba = key(json!({"backend": "openai", "name": "m",
            "base_url": [{"url": "http://b:1/v1", "concurrency": 9}, "http://a:1/v1", "http://c:1/v1"]}));
        assert!(ab.get("base_url").is_none(), "{ab}");
        assert_eq!(
            ab, ba,
            "order, size and per-endpoint limits are not in the key"
        );
    }

    #[test]
    fn endpoint_problems_name_their_place_in_the_list() {
        let spec = parse(json!({"backend": "openai", "name": "m", "base_url": []}));
        assert_eq!(
            paths(&spec),
            [(
                "model.base_url".to_string(),
                "must list at least one endpoint".to_string()
            )]
        );
        let spec = parse(json!({"backend": "openai", "name": "m", "base_url": [
            "http://a:1/v1", "ftp://b/v1", {"url": "http://", "concurrency": 0}, "http://a:1/v1/"]}));
        assert_eq!(
            paths(&spec),
            [
                (
                    "model.base_url.1".to_string(),
                    "must start with http:// or https://".to_string()
                ),
                (
                    "model.base_url.2.url".to_string(),
                    "is not a valid URL with a host".to_string()
                ),
                (
                    "model.base_url.2.concurrency".to_string(),
                    "must be at least 1".to_string()
                ),
                (
                    "model.base_url.3".to_string(),
                    "`http://a:1/v1/` is listed twice (also item 0)".to_string()
                ),
            ]
        );
        let spec = parse(json!({"backend": "openai", "name": "m", "base_url": "localhost:8080"}));
        assert_eq!(
            paths(&spec),
            [(
                "model.base_url".to_string(),
                "must start with http:// or https://".to_string()
            )]
        );
    }
}
