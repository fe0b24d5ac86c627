//! Stage kinds of `tw`: the [`Stage`] trait, the [`Registry`] of kinds, and one
//! file per kind. The engine depends on this crate, never the reverse.
//!
//! Adding a kind: see "Adding a stage kind" in the README.

pub mod api;
pub mod artifact;
pub mod embed;
pub mod llm;
#[cfg(feature = "torch")]
pub mod model;
pub mod pyvalue;
mod reasoning_tasks;
pub mod registry;
pub mod reply;
pub mod rng;
pub mod sandbox;
pub mod scoring;
pub mod templating;
#[doc(hidden)]
pub mod testing;
pub mod tokens;
pub mod tracemodel;
pub mod value;

mod decontaminate;
mod execute;
mod export_sft;
mod failing_tests;
mod generate;
mod load;
mod load_benchmark;
mod load_samples;
mod mine_pairs;
mod parallel_scaling;
pub mod programs;
mod render;
pub mod represent;
#[cfg(feature = "torch")]
mod sample_candidates;
pub mod score;
mod sequential_scaling;
pub mod sft;
pub mod trace;
pub mod tts;

#[cfg(feature = "polars")]
mod concat;
#[cfg(feature = "polars")]
mod filter;
#[cfg(feature = "polars")]
mod join;
#[cfg(feature = "polars")]
mod relational;
#[cfg(feature = "polars")]
pub mod report;
#[cfg(feature = "polars")]
mod sample;
#[cfg(feature = "polars")]
mod select;

pub use api::{
    Arity, CachePolicy, DynStage, EnvFact, FileDep, InputSlot, NoProgress, ParsedParams, PlanEnv,
    Problem, Progress, RunCtx, Stage, StageError,
};
pub use registry::Registry;
