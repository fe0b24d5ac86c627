//! The stage API: what every stage kind is written against, and the plumbing
//! all of them share.
//!
//! - [`stage`]: the [`Stage`] trait, its object-safe [`DynStage`], and what a
//!   kind declares at plan time;
//! - [`ctx`]: [`RunCtx`], what a running stage reads and writes;
//! - [`error`]: the [`StageError`] a failing stage returns;
//! - [`artifact`]: the deterministic Parquet reader and writer, content hashes;
//! - [`value`]: spanned param values and their deserializer;
//! - [`rows`]: reading JSONL, JSON, CSV and Parquet files into rows, and
//!   reading cells of rows;
//! - [`rng`]: the seeded generator every draw comes from;
//! - [`fsutil`]: the one atomic file write (the store and the ledger use it);
//! - `frame` (feature `polars`): artifacts as polars frames.
//!
//! May import: nothing else of this crate. Everything else may import it.

pub mod artifact;
pub mod ctx;
pub mod error;
#[cfg(feature = "polars")]
pub mod frame;
pub mod fsutil;
pub mod rng;
pub mod rows;
pub mod stage;
pub mod value;

pub use ctx::{InputOrigin, NoProgress, Progress, RunCtx, WrittenOutput, resolve_path};
pub use error::StageError;
pub(crate) use stage::Erased;
pub use stage::{
    Arity, CachePolicy, DynStage, EnvFact, FileDep, InputSlot, LIKELY_TYPO, LlmCalls, ParsedParams,
    PlanEnv, Problem, RowMap, Stage, module_doc, name_similarity, rebuild_hint,
};
