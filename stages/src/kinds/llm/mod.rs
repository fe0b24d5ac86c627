//! Kinds that ask a model: for programs (`generate`), round after round with
//! test feedback (`sequential_scaling`), to choose among N (`parallel_scaling`),
//! and from the in-process model for dataset candidates (`sample_candidates`,
//! feature `torch`).
//!
//! May import: `api`, `python`, `text`, `llm`, `model`. Not another kind.

pub mod generate;
pub mod parallel_scaling;
#[cfg(feature = "torch")]
pub mod sample_candidates;
pub mod sequential_scaling;
