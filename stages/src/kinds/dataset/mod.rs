//! Kinds that build the repair dataset: pair wrong programs with correct ones
//! (`mine_pairs`), drop overlaps with evaluation benchmarks (`decontaminate`),
//! render traces (`represent`), score predicted traces (`score_traces`),
//! write reasoning exercises (`reasoning_tasks`) and grade a model's
//! answers to them (`grade_answers`),
//! and fine-tuning files (`export_sft`), and make what is released safe to
//! release (`sanitize`, `flag_exploits`, `export_traces`: the two tiers).
//!
//! May import: `api`, `python`, `text`, `model` (the BERT embedder), `bench`
//! (the harnesses' script-job shape). Not another kind.

pub mod decontaminate;
pub mod export_sft;
pub mod export_traces;
pub mod flag_exploits;
pub mod grade_answers;
pub mod mine_pairs;
pub mod reasoning_tasks;
pub mod represent;
pub mod sanitize;
pub mod score_traces;
