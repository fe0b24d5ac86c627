//! The `tw` engine: spec -> validated spec -> plan -> run, over a
//! content-addressed cache of Parquet artifacts.
//!
//! - [`spec`]: parse YAML/TOML into a spanned tree, check it, expand the matrix.
//! - [`plan`]: key every stage instance and say what runs and why.
//! - [`run`]: execute in dependency order, in parallel, committing atomically.
//! - [`store`]: the cache layout, locks, verification and garbage collection.
//! - [`cli`]: the commands, and the one place errors are rendered for users.
//!
//! Stage kinds live in the `tw-stages` crate; the engine depends on it, never
//! the reverse.

pub mod cli;
pub mod diag;
pub mod executor;
pub mod inspect;
pub mod key;
pub mod lockfile;
pub mod plan;
pub mod report_cmd;
pub mod run;
pub mod score_cmd;
pub mod shard;
pub mod source;
pub mod spec;
pub mod store;
pub mod trace_cmd;
