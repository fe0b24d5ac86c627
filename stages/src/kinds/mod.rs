//! Every stage kind: one file (or one folder) per kind, in folders by role.
//! Only [`crate::registry`] reaches in here; the engine knows kinds through it.
//!
//! **Rule:** a kind never imports another kind. What two kinds share lives in
//! the library modules they use (`api`, `bench`, `python`, `text`, `llm`,
//! `model`), so any kind can change or go without touching another. A kind
//! that spans several files (`sft`, `report`) imports only its own files. A
//! test in `tests/it/house.rs` checks this.
//!
//! - [`data`]: generic tables: `load`, `render`, `filter`, `select`, `sample`, `join`, `concat`;
//! - [`bench`]: benchmarks and generations: `load_benchmark`, `load_samples`, `score`;
//! - [`programs`]: running programs: `execute`, `trace`, `failing_tests`;
//! - [`dataset`]: building repair data: `mine_pairs`, `decontaminate`,
//!   `represent`, `reasoning_tasks`, `export_sft`;
//! - [`llm`]: asking models: `generate`, `sequential_scaling`,
//!   `parallel_scaling`, `sample_candidates`;
//! - [`sft`]: the `sft` kind (fine-tuning);
//! - `report` (feature `polars`): tables and plots.

pub mod bench;
pub mod data;
pub mod dataset;
pub mod llm;
pub mod programs;
#[cfg(feature = "polars")]
pub mod report;
pub mod sft;
