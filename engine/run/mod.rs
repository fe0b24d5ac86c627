//! Plan -> run: execute the plan's nodes in dependency order and commit each
//! result to the store.
//!
//! - [`schedule`]: the dependency-ordered, parallel loop; cut-off on equal
//!   upstream bytes; the run report;
//! - [`commit`]: the one "cached, or run and commit" path every result takes;
//! - [`unit`]: a unit of work (a stage, or one shard);
//! - [`executor`]: where units run: [`local`] (this process) or [`slurm`];
//! - [`shard`]: splitting a row-mapped input and gathering the shards.
//!
//! May import: `plan`, `spec`, `store`.

pub mod commit;
pub mod executor;
pub mod local;
pub mod schedule;
pub mod shard;
pub mod slurm;
pub mod unit;

pub use executor::{Executor, SlurmOptions};
pub use schedule::{NodeFailure, Outcome, RunError, RunOptions, RunReport, execute};
