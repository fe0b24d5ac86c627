//! The one trait every stage kind implements ([`Stage`]), its object-safe view
//! for the registry and the engine ([`DynStage`]), and what a kind declares at
//! plan time: input slots, params problems, file dependencies, environment
//! facts, cache policy and LLM call bounds.
//!
//! A stage is pure with respect to its cache key: given the same kind, version,
//! params, input artifact bytes, file bytes and declared environment facts it
//! must write the same outputs. Anything else it depends on has to be declared
//! (`file_deps`, `env_facts`) so that it is hashed into the key.

use super::ctx::{RunCtx, resolve_path};
use super::error::StageError;
use super::value::{ParamError, ParamErrorKind, Value, ValueKind};
use crate::api::value;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

/// How many upstream artifacts a slot takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arity {
    /// Exactly one reference: `rows: problems.rows`.
    One,
    /// One or more: a list `[a.rows, b.rows]` or a gather `score[*].table`.
    Many,
}

/// A named input slot a stage reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSlot {
    pub name: &'static str,
    pub arity: Arity,
    pub optional: bool,
}

impl InputSlot {
    pub const fn one(name: &'static str) -> Self {
        InputSlot {
            name,
            arity: Arity::One,
            optional: false,
        }
    }

    pub const fn many(name: &'static str) -> Self {
        InputSlot {
            name,
            arity: Arity::Many,
            optional: false,
        }
    }

    pub const fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
}

/// A problem `validate` found in otherwise well-typed params.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Param path the problem is about (`["k"]`); empty means the whole params map.
    pub path: Vec<String>,
    pub message: String,
    pub help: Option<String>,
}

impl Problem {
    pub fn at(path: &str, message: impl Into<String>) -> Self {
        Problem {
            path: path
                .split('.')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// A file whose bytes belong in the cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDep {
    /// The param that names it (`template`), so a missing file is reported there.
    pub param: String,
    /// The path as written (relative paths are relative to the spec's directory).
    /// This string, not the resolved absolute path, is what goes in the key.
    pub path: String,
}

/// Facts about the environment a stage's output depends on, hashed into its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EnvFact {
    /// The trimmed stdout of a command (`python3 --version`), run once per plan.
    Command { name: String, argv: Vec<String> },
    /// The value of a non-secret environment variable.
    Var { name: String },
}

/// An upper bound on the model calls a stage makes, for `tw plan`: at most
/// `per_row` calls for each row of input `slot`. Completions already in the
/// ledger are replayed for free, so a run often makes fewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmCalls {
    pub slot: &'static str,
    /// `None` when the bound depends on data the plan cannot see.
    pub per_row: Option<u64>,
    /// How the bound is made up, e.g. `8 samples x (1 + 4 rounds)`.
    pub formula: String,
}

/// Whether a successful result may be stored (buck2 DICE `validity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    Store,
    /// Always rerun; outputs are still content-hashed so downstream can cut off.
    Never,
}

/// What the engine tells a stage at plan time.
#[derive(Debug, Clone)]
pub struct PlanEnv {
    /// Directory of the spec file; relative paths in params resolve against it.
    pub base_dir: PathBuf,
}

impl PlanEnv {
    pub fn resolve(&self, path: &str) -> PathBuf {
        resolve_path(&self.base_dir, path)
    }
}

/// The input slot a kind maps over ([`Stage::ROW_MAPPED`]). With `group`, rows
/// that share that column's value must stay in one shard (the kind looks at
/// them together, as `represent` does with a program's runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMap {
    pub slot: &'static str,
    pub group: Option<String>,
}

/// One stage kind. Implement it on a unit struct in its own file and add it
/// to [`crate::registry::Registry::builtin`].
pub trait Stage: Send + Sync + 'static {
    /// Name used in specs (`kind: load`). snake_case; never reuse a retired name.
    const KIND: &'static str;
    /// Bump when the same params and inputs would now produce different output
    /// (a bug fix, a new column). Hashed into every key of this kind.
    const VERSION: u32;
    /// The input this kind maps over row by row, if it does: each output row
    /// depends only on its own rows of that slot (and on whole other inputs),
    /// so `shard:` may split the slot and concatenate the shards' outputs.
    /// Row numbers in outputs must add [`RunCtx::row_offset`].
    const ROW_MAPPED: Option<&'static str> = None;
    /// Typed params: `#[serde(deny_unknown_fields)]`, defaults via `#[serde(default)]`, no `flatten`.
    type Params: DeserializeOwned + Serialize + Debug + Send + Sync + 'static;

    /// The kind's source file, `include_str!("this_file.rs")`: its `//!` doc
    /// (What it does / Params / Inputs / Outputs / Caching / Example) is the
    /// kind's documentation, so the doc has one home.
    const SOURCE: &'static str;
    /// The input slots, when they do not depend on the params (else
    /// implement [`Stage::inputs`]).
    const INPUTS: &'static [InputSlot] = &[];
    /// The outputs, one Parquet artifact each, when they do not depend on the
    /// params (else implement [`Stage::outputs`]).
    const OUTPUTS: &'static [&'static str] = &[];

    fn inputs(_p: &Self::Params) -> Vec<InputSlot> {
        Self::INPUTS.to_vec()
    }
    fn outputs(_p: &Self::Params) -> Vec<String> {
        Self::OUTPUTS.iter().map(|o| o.to_string()).collect()
    }
    /// Checks serde can't express. Return every problem, not the first.
    fn validate(_p: &Self::Params) -> Vec<Problem> {
        Vec::new()
    }
    /// Files whose bytes belong in the key (a data file, a template and its includes).
    fn file_deps(_p: &Self::Params, _env: &PlanEnv) -> Vec<FileDep> {
        Vec::new()
    }
    fn env_facts(_p: &Self::Params) -> Vec<EnvFact> {
        Vec::new()
    }
    fn cache_policy(_p: &Self::Params) -> CachePolicy {
        CachePolicy::Store
    }
    /// Whether the stage reads which upstream stage each input came from
    /// ([`RunCtx::input_origins`]). Those ids then go in its key, so renaming
    /// an upstream stage reruns it; keep `false` unless output depends on them.
    fn reads_input_origins(_p: &Self::Params) -> bool {
        false
    }
    /// The most LLM calls the stage makes per row of an input slot, for
    /// `tw plan`; `None` for kinds that ask no model.
    fn llm_calls(_p: &Self::Params) -> Option<LlmCalls> {
        None
    }
    /// With [`Stage::ROW_MAPPED`]: the column whose equal values must stay in
    /// one shard because the kind looks at those rows together.
    fn row_group(_p: &Self::Params) -> Option<String> {
        None
    }
    /// Read inputs from `ctx`, write every declared output; touch nothing else.
    fn run(p: &Self::Params, ctx: &mut RunCtx<'_>) -> Result<(), StageError>;
}

/// Params after parsing: typed value for the stage, canonical JSON for the key.
#[derive(Clone)]
pub struct ParsedParams {
    typed: Arc<dyn Any + Send + Sync>,
    /// The typed params re-serialized, so defaults are filled in and key order
    /// and spelling of the source do not matter.
    pub canonical: serde_json::Value,
}

impl Debug for ParsedParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ParsedParams({})", self.canonical)
    }
}

/// Object-safe view of a [`Stage`], used by the registry and the engine.
pub trait DynStage: Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    fn doc(&self) -> String;
    /// Parse params; on unknown fields keep going so that every one is reported.
    fn parse_params(&self, params: &Value) -> Result<ParsedParams, Vec<ParamError>>;
    fn inputs(&self, p: &ParsedParams) -> Vec<InputSlot>;
    fn outputs(&self, p: &ParsedParams) -> Vec<String>;
    fn validate(&self, p: &ParsedParams) -> Vec<Problem>;
    fn file_deps(&self, p: &ParsedParams, env: &PlanEnv) -> Vec<FileDep>;
    fn env_facts(&self, p: &ParsedParams) -> Vec<EnvFact>;
    fn cache_policy(&self, p: &ParsedParams) -> CachePolicy;
    fn reads_input_origins(&self, p: &ParsedParams) -> bool;
    fn llm_calls(&self, p: &ParsedParams) -> Option<LlmCalls>;
    fn row_map(&self, p: &ParsedParams) -> Option<RowMap>;
    /// [`Stage::ROW_MAPPED`], without params.
    fn row_mapped_slot(&self) -> Option<&'static str>;
    fn run(&self, p: &ParsedParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError>;
}

pub(crate) struct Erased<S: Stage>(PhantomData<S>);

impl<S: Stage> Erased<S> {
    pub(crate) fn new() -> Self {
        Erased(PhantomData)
    }

    fn typed(p: &ParsedParams) -> &S::Params {
        p.typed
            .downcast_ref::<S::Params>()
            .expect("params parsed by another stage kind")
    }
}

const MAX_UNKNOWN_FIELDS_REPORTED: usize = 32;

impl<S: Stage> DynStage for Erased<S> {
    fn kind(&self) -> &'static str {
        S::KIND
    }

    fn version(&self) -> u32 {
        S::VERSION
    }

    fn doc(&self) -> String {
        module_doc(S::SOURCE)
    }

    fn parse_params(&self, params: &Value) -> Result<ParsedParams, Vec<ParamError>> {
        // serde stops at the first error; to report every unknown param at once,
        // drop each offending key and try again.
        let mut current = params.clone();
        let mut errors: Vec<ParamError> = Vec::new();
        // Keys dropped to find further errors, and likely intended names of
        // unknown ones: a later "missing" error about them would be noise.
        let mut excused: Vec<String> = Vec::new();
        loop {
            match value::from_value::<S::Params>(&current) {
                Ok(typed) if errors.is_empty() => {
                    let canonical = serde_json::to_value(&typed).map_err(|e| {
                        vec![<ParamError as serde::de::Error>::custom(format!(
                            "params cannot be serialized for the cache key: {e}"
                        ))]
                    })?;
                    return Ok(ParsedParams {
                        typed: Arc::new(typed),
                        canonical,
                    });
                }
                Ok(_) => return Err(errors),
                Err(e) => {
                    let retry = match (e.kind.as_ref(), e.path.first()) {
                        (ParamErrorKind::UnknownField { field, expected }, None) => {
                            excused.extend(closest(field, expected));
                            remove_key(&mut current, field)
                        }
                        (ParamErrorKind::MissingField { field }, None) => {
                            if excused.iter().any(|x| x == field) {
                                // Say nothing, but stop: the typo's error already covers it.
                                return Err(errors);
                            }
                            false
                        }
                        (_, Some(top)) => {
                            excused.push(top.clone());
                            let top = top.clone();
                            remove_key(&mut current, &top)
                        }
                        _ => false,
                    };
                    errors.push(e);
                    if !retry || errors.len() >= MAX_UNKNOWN_FIELDS_REPORTED {
                        return Err(errors);
                    }
                }
            }
        }
    }

    fn inputs(&self, p: &ParsedParams) -> Vec<InputSlot> {
        S::inputs(Self::typed(p))
    }

    fn outputs(&self, p: &ParsedParams) -> Vec<String> {
        S::outputs(Self::typed(p))
    }

    fn validate(&self, p: &ParsedParams) -> Vec<Problem> {
        S::validate(Self::typed(p))
    }

    fn file_deps(&self, p: &ParsedParams, env: &PlanEnv) -> Vec<FileDep> {
        S::file_deps(Self::typed(p), env)
    }

    fn env_facts(&self, p: &ParsedParams) -> Vec<EnvFact> {
        S::env_facts(Self::typed(p))
    }

    fn cache_policy(&self, p: &ParsedParams) -> CachePolicy {
        S::cache_policy(Self::typed(p))
    }

    fn reads_input_origins(&self, p: &ParsedParams) -> bool {
        S::reads_input_origins(Self::typed(p))
    }

    fn llm_calls(&self, p: &ParsedParams) -> Option<LlmCalls> {
        S::llm_calls(Self::typed(p))
    }

    fn row_map(&self, p: &ParsedParams) -> Option<RowMap> {
        S::ROW_MAPPED.map(|slot| RowMap {
            slot,
            group: S::row_group(Self::typed(p)),
        })
    }

    fn row_mapped_slot(&self) -> Option<&'static str> {
        S::ROW_MAPPED
    }

    fn run(&self, p: &ParsedParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        S::run(Self::typed(p), ctx)
    }
}

/// The help for a kind or param that needs a cargo feature this build left out.
/// Both features (`polars`, `torch`) are in the default build, which
/// `scripts/setup.sh` and `cargo install --path .` make.
pub fn rebuild_hint(feature: &str) -> String {
    let first = if feature == "torch" {
        " after `scripts/setup-torch.sh`"
    } else {
        ""
    };
    format!(
        "this `tw` was built without the default feature `{feature}`: rebuild it with the \
         default features (`scripts/setup.sh`, or `cargo install --locked --path .`{first})"
    )
}

/// How alike a misspelled name and a candidate are, in 0..=1; a prefix either
/// way counts as close. The one rule behind every "did you mean" of `tw`.
pub fn name_similarity(name: &str, candidate: &str) -> f64 {
    let score = strsim::normalized_damerau_levenshtein(name, candidate);
    if candidate.starts_with(name) || name.starts_with(candidate) {
        score.max(0.75)
    } else {
        score
    }
}

/// Candidates at least this similar are likely the intended name.
pub const LIKELY_TYPO: f64 = 0.6;

fn closest(field: &str, expected: &[&'static str]) -> Vec<String> {
    expected
        .iter()
        .filter(|e| name_similarity(field, e) >= LIKELY_TYPO)
        .map(|e| e.to_string())
        .collect()
}

fn remove_key(value: &mut Value, field: &str) -> bool {
    if let ValueKind::Map(entries) = &mut value.kind {
        let before = entries.len();
        entries.retain(|(k, _)| k.name != field);
        return entries.len() != before;
    }
    false
}

/// Strip the leading `//!` block of a source file: the stage's documentation.
pub fn module_doc(source: &'static str) -> String {
    let mut out = String::new();
    for line in source.lines() {
        if let Some(rest) = line.strip_prefix("//!") {
            out.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            out.push('\n');
        } else if !out.is_empty() {
            break;
        }
    }
    out
}
