//! Text for models: the minijinja environment and its helpers
//! ([`templating`]), loading template files ([`templates`]), the structured
//! trace model ([`tracemodel`]) and its renderer ([`trace_render`]), the
//! built-in trace formats ([`formats`]), token counts ([`tokens`]), code
//! embeddings for pair mining ([`embed`]), ShareGPT datasets ([`sharegpt`])
//! redaction of secrets and personal data ([`redact`]), exploit-pattern
//! flags for model-written code ([`exploit`]) and CWM's trace format:
//! rendering, parsing and scoring predicted traces ([`cwm`]), the older
//! CodeExecutor format read back ([`codeexecutor`]), and REval's probes and
//! consistency score ([`reval`]).
//!
//! May import: `api`, `python`, `llm::reply` (templates can call the DSPy adapter).

pub mod codeexecutor;
pub mod cwm;
pub mod embed;
pub mod exploit;
pub mod formats;
pub mod redact;
pub mod reval;
pub mod sharegpt;
pub mod templates;
pub mod templating;
pub mod tokens;
pub mod trace_render;
pub mod tracemodel;
