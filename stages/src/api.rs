//! The stage API: the one trait every stage kind implements, and what the
//! engine hands a stage when it runs.
//!
//! A stage is pure with respect to its cache key: given the same kind, version,
//! params, input artifact bytes, file bytes and declared environment facts it
//! must write the same outputs. Anything else it depends on has to be declared
//! (`file_deps`, `env_facts`) so that it is hashed into the key.

use crate::artifact;
use crate::value::{ParamError, ParamErrorKind, Value, ValueKind};
use arrow::record_batch::RecordBatch;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
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

/// Which stage (and matrix cell) produced an input artifact.
#[derive(Debug, Clone, PartialEq)]
pub struct InputOrigin {
    /// The upstream instance's id (`seq[repr=next]`), unique in the spec.
    pub id: String,
    /// The upstream stage's name as written in the spec.
    pub stage: String,
    /// Its matrix axis values, in axis order (empty outside a matrix).
    pub binding: Vec<(String, serde_json::Value)>,
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

pub fn resolve_path(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Errors a stage returns while running. The engine adds which stage it was.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A malformed record in an input file.
    #[error("{}:{line}: {message}", file.display())]
    BadRecord {
        file: PathBuf,
        line: usize,
        message: String,
    },
    /// An input table lacks something the stage needs (a column, a type).
    #[error("input `{slot}`: {message}")]
    BadInput { slot: String, message: String },
    #[error("template {}: {message}", path.display())]
    Template { path: PathBuf, message: String },
    #[error("{0}")]
    Failed(String),
}

impl StageError {
    pub fn failed(message: impl Into<String>) -> Self {
        StageError::Failed(message.into())
    }
}

/// Progress reporting for long stages; the engine draws bars on a terminal.
pub trait Progress: Send + Sync {
    fn set_total(&self, total: u64);
    fn inc(&self, delta: u64);
    fn set_message(&self, message: &str);
}

/// A progress sink that draws nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_total(&self, _total: u64) {}
    fn inc(&self, _delta: u64) {}
    fn set_message(&self, _message: &str) {}
}

/// One written output: its file and facts the engine records in the manifest.
#[derive(Debug, Clone)]
pub struct WrittenOutput {
    pub path: PathBuf,
    pub rows: usize,
    pub columns: Vec<String>,
}

/// Everything a running stage may touch: its inputs, its output directory, progress.
pub struct RunCtx<'a> {
    pub stage_id: &'a str,
    pub base_dir: &'a Path,
    inputs: BTreeMap<String, Vec<PathBuf>>,
    out_dir: &'a Path,
    written: BTreeMap<String, WrittenOutput>,
    notes: BTreeMap<String, serde_json::Value>,
    progress: &'a dyn Progress,
    ledger_dir: Option<PathBuf>,
    origins: BTreeMap<String, Vec<InputOrigin>>,
    row_offset: usize,
}

impl<'a> RunCtx<'a> {
    pub fn new(
        stage_id: &'a str,
        base_dir: &'a Path,
        inputs: BTreeMap<String, Vec<PathBuf>>,
        out_dir: &'a Path,
        progress: &'a dyn Progress,
    ) -> Self {
        RunCtx {
            stage_id,
            base_dir,
            inputs,
            out_dir,
            written: BTreeMap::new(),
            notes: BTreeMap::new(),
            progress,
            ledger_dir: None,
            origins: BTreeMap::new(),
            row_offset: 0,
        }
    }

    /// Set when this run is one shard of a sharded node: the index, in the
    /// whole input, of the first row of the [`Stage::ROW_MAPPED`] slot it sees.
    pub fn with_row_offset(mut self, offset: usize) -> Self {
        self.row_offset = offset;
        self
    }

    /// Index of this run's first row of the row-mapped slot in the whole
    /// input (0 unless sharded). Kinds whose output numbers rows add it, so a
    /// sharded run writes the same numbers as an unsharded one.
    pub fn row_offset(&self) -> usize {
        self.row_offset
    }

    /// Where each input artifact came from; the engine sets it for kinds that
    /// declare [`Stage::reads_input_origins`] (and hashes it into their key).
    pub fn with_input_origins(mut self, origins: BTreeMap<String, Vec<InputOrigin>>) -> Self {
        self.origins = origins;
        self
    }

    /// Origins of the artifacts bound to `slot`, parallel to [`RunCtx::input_paths`];
    /// empty unless the kind reads origins.
    pub fn input_origins(&self, slot: &str) -> &[InputOrigin] {
        self.origins.get(slot).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Where LLM completions are kept (`<cache>/ledger`); the engine sets it.
    pub fn with_ledger_dir(mut self, dir: PathBuf) -> Self {
        self.ledger_dir = Some(dir);
        self
    }

    /// The model a stage asks, behind the completion ledger.
    pub fn open_llm(&self, model: &crate::llm::ModelSpec) -> Result<crate::llm::Llm, StageError> {
        let dir = self.ledger_dir.clone().ok_or_else(|| {
            StageError::failed(
                "internal error: no completion ledger directory was set for this stage",
            )
        })?;
        let ledger =
            crate::llm::Ledger::open(&dir).map_err(|e| StageError::failed(e.to_string()))?;
        Ok(crate::llm::Llm::new(model.open(self)?, ledger))
    }

    /// Record what asking the model cost in the manifest.
    pub fn note_llm(&mut self, llm: &crate::llm::Llm) {
        let stats = llm.stats();
        self.note("model", llm.model_id().to_string());
        self.note("llm_calls", stats.calls);
        self.note("llm_replayed", stats.replayed);
        self.note("prompt_tokens", stats.prompt_tokens);
        self.note("completion_tokens", stats.completion_tokens);
        llm.note_endpoints(self);
    }

    /// Paths of the Parquet artifacts bound to `slot` (empty for an unbound optional slot).
    pub fn input_paths(&self, slot: &str) -> &[PathBuf] {
        self.inputs.get(slot).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The single table bound to a `One` slot.
    pub fn input(&self, slot: &str) -> Result<RecordBatch, StageError> {
        match self.input_paths(slot) {
            [one] => artifact::read_table(one),
            other => Err(StageError::BadInput {
                slot: slot.into(),
                message: format!("expected one artifact, got {}", other.len()),
            }),
        }
    }

    /// Every table bound to a `Many` slot, in the order the spec lists them.
    pub fn inputs(&self, slot: &str) -> Result<Vec<RecordBatch>, StageError> {
        self.input_paths(slot)
            .iter()
            .map(|p| artifact::read_table(p))
            .collect()
    }

    /// Resolve a path from params against the spec's directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        resolve_path(self.base_dir, path)
    }

    /// Write the table for output `slot` with the deterministic Parquet writer.
    pub fn write_output(&mut self, slot: &str, table: &RecordBatch) -> Result<(), StageError> {
        let path = self.output_path(slot);
        artifact::write_table(&path, table)?;
        self.written.insert(
            slot.to_string(),
            WrittenOutput {
                path,
                rows: table.num_rows(),
                columns: table
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
            },
        );
        Ok(())
    }

    /// Where output `slot` lives inside the staging directory.
    pub fn output_path(&self, slot: &str) -> PathBuf {
        self.out_dir.join(format!("{slot}.parquet"))
    }

    /// Record a fact for the manifest (rows skipped, calls made, ...).
    pub fn note(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.notes.insert(key.to_string(), value.into());
    }

    pub fn progress(&self) -> &dyn Progress {
        self.progress
    }

    pub fn into_parts(
        self,
    ) -> (
        BTreeMap<String, WrittenOutput>,
        BTreeMap<String, serde_json::Value>,
    ) {
        (self.written, self.notes)
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

    /// The module's `//!` doc: What it does / Params / Inputs / Outputs / Caching / Example.
    /// Implement as `module_doc(include_str!("this_file.rs"))` so the doc has one home.
    fn doc() -> String;
    fn inputs(p: &Self::Params) -> Vec<InputSlot>;
    fn outputs(p: &Self::Params) -> Vec<String>;
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
        S::doc()
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
            match crate::value::from_value::<S::Params>(&current) {
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

/// How alike a misspelled name and a candidate are, in 0..=1; a prefix either
/// way counts as close. The one rule behind every "did you mean" of `tw`.
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
