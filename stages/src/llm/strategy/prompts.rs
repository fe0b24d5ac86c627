//! What a strategy asks: its prompt templates (rendered into chat messages)
//! and sampling settings, with a per-sample seed derived from the task, the
//! sample and the round, so every request is reproducible and replayable.

use crate::api::{FileDep, PlanEnv, Problem, RunCtx, StageError};
use crate::llm::{Message, Prompt, Request, Sampling};
use crate::python::programs::ProgramMode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::tasks::Task;
use crate::text::templates;
use crate::text::templating;

/// A chat-prompt template (`templates/prompts/*.j2`), loaded once.
pub struct PromptTemplate {
    env: minijinja::Environment<'static>,
    name: String,
    path: PathBuf,
    vars: Value,
}

impl PromptTemplate {
    pub fn open(
        ctx: &RunCtx<'_>,
        template: &str,
        vars: &BTreeMap<String, Value>,
    ) -> Result<Self, StageError> {
        let path = ctx.resolve(template);
        let (env, name) = templates::load_templates(&path)?;
        Ok(PromptTemplate {
            env,
            name,
            path,
            vars: Value::Object(vars.clone().into_iter().collect()),
        })
    }

    /// Render with the task's row, `question` (its prompt), `is_stdin`, and
    /// `extra` columns; the template prints chat messages as JSON.
    pub fn messages(
        &self,
        task: &Task,
        extra: &Map<String, Value>,
    ) -> Result<Vec<Message>, StageError> {
        let mut row = task.row.clone();
        row.entry("question".to_string())
            .or_insert_with(|| task.row.get("prompt").cloned().unwrap_or(Value::Null));
        row.insert(
            "is_stdin".into(),
            Value::Bool(task.mode == ProgramMode::Stdio),
        );
        for (k, v) in extra {
            row.insert(k.clone(), v.clone());
        }
        let value = templating::json_value(&Value::Object(row));
        let vars = templating::json_value(&self.vars);
        let text = self
            .env
            .get_template(&self.name)
            .and_then(|t| t.render(minijinja::context! { vars => vars, ..value }))
            .map_err(|e| StageError::Template {
                path: self.path.clone(),
                message: format!("{}: {}", task.id, templates::describe(&e)),
            })?;
        serde_json::from_str(text.trim()).map_err(|e| StageError::Template {
            path: self.path.clone(),
            message: format!(
                "{}: the template must print chat messages as JSON: {e}",
                task.id
            ),
        })
    }
}

pub fn template_deps(param: &str, template: &str, env: &PlanEnv) -> Vec<FileDep> {
    templates::template_deps(template, env)
        .into_iter()
        .map(|mut d| {
            d.param = param.into();
            d
        })
        .collect()
}

/// A sample's seed: fixed by (seed, task, sample, round), whatever else runs.
pub fn sample_seed(seed: u64, task: &str, sample: usize, round: usize) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(task.as_bytes());
    h.update(&(sample as u64).to_le_bytes());
    h.update(&(round as u64).to_le_bytes());
    let bytes: [u8; 8] = h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]);
    u64::from_le_bytes(bytes)
}

/// Sampling settings shared by the strategy stages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    #[serde(default = "default_top_p")]
    pub top_p: f64,
    #[serde(default)]
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_tokens: default_max_tokens(),
            top_p: default_top_p(),
            stop: Vec::new(),
        }
    }
}

fn default_max_tokens() -> usize {
    512
}

fn default_top_p() -> f64 {
    1.0
}

impl SamplingParams {
    pub fn request(&self, messages: Vec<Message>, temperature: f64, seed: u64) -> Request {
        Request {
            prompt: Prompt::Chat(messages),
            sampling: Sampling {
                max_tokens: self.max_tokens,
                temperature,
                top_p: self.top_p,
                stop: self.stop.clone(),
                seed,
            },
        }
    }

    pub fn problems(&self, temperature: f64) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.max_tokens == 0 {
            out.push(Problem::at("sampling.max_tokens", "must be at least 1"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            out.push(Problem::at("sampling.top_p", "must be in (0, 1]"));
        }
        if !(temperature >= 0.0 && temperature.is_finite()) {
            out.push(Problem::at(
                "temperature",
                "must be zero (greedy) or positive",
            ));
        }
        out
    }
}
