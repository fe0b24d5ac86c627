//! The `tw` engine: spec -> validated spec -> plan -> run, over a
//! content-addressed cache of Parquet artifacts.
//!
//! - [`spec`]: parse YAML/TOML into a spanned tree, check it, expand the matrix;
//! - [`plan`]: key every stage instance and say what runs and why;
//! - [`run`]: execute in dependency order, in parallel, committing atomically;
//! - [`store`]: every cache path, locks, verification and garbage collection;
//! - [`cmd`]: the commands; [`cli`]: their clap types;
//! - [`diag`], [`source`]: diagnostics with `file:line:col`; [`lockfile`]: `SPEC.lock`.
//!
//! Stage kinds live in the `tw-stages` crate; the engine depends on it, never
//! the reverse.

pub mod cli;
pub mod cmd;
pub mod diag;
pub mod lockfile;
pub mod plan;
pub mod run;
pub mod source;
pub mod spec;
pub mod store;
