//! Stage kinds of `tw` and what they share. The engine depends on this crate,
//! never the reverse.
//!
//! Public, and why:
//! - [`api`]: the `Stage` trait and the plumbing the engine drives it with;
//! - [`registry`]: the one list of kinds; the engine reaches kinds only through it;
//! - [`bench`]: the benchmark model and harness rules, for `tw score`;
//! - [`python`]: the sandbox and trace jobs, for `tw trace` and the engine's tests;
//! - [`text`]: the trace renderer and built-in formats, for `tw trace`;
//! - [`llm`]: backends and the completion ledger;
//! - `model` (feature `torch`): the libtorch runtime, for its benchmarks;
//! - [`testing`] (hidden): the one way tests say they cannot run.
//!
//! Private: [`kinds`], one file per kind in folders by role.
//!
//! Adding a kind: see "Adding a stage kind" in the README.

pub mod api;
pub mod bench;
mod kinds;
pub mod llm;
#[cfg(feature = "torch")]
pub mod model;
pub mod python;
pub mod registry;
pub mod stats;
#[doc(hidden)]
pub mod testing;
pub mod text;

pub use api::{
    Arity, CachePolicy, DynStage, EnvFact, FileDep, InputSlot, NoProgress, ParsedParams, PlanEnv,
    Problem, Progress, RunCtx, Stage, StageError,
};
pub use registry::Registry;
