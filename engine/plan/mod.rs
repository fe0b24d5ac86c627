//! Validated spec -> plan: the DAG of stage instances, each with its cache key
//! (where it can be known before running) and a status saying what will run
//! and *why*.
//!
//! - [`key`]: the whole key recipe (pre-image, environment facts, input hashes);
//! - [`build`]: statuses, selections (`--only`/`--from`/`--to`/`--force`),
//!   missing files, LLM call bounds;
//! - [`render`]: the plan as text and JSON.
//!
//! May import: `spec`, `store`, `diag`.

pub mod build;
pub mod key;
pub mod render;

pub use build::{
    LlmEstimate, Plan, PlanError, PlannedNode, Selection, Status, build, llm_estimate,
    missing_files, select,
};
pub use key::{Facts, KEY_RECIPE, PreImage, input_hashes, input_origins, pre_image};
pub use render::{render_json, render_text};
