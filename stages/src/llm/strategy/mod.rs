//! The test-time strategies' shared machinery, for the `generate`,
//! `sequential_scaling` and `parallel_scaling` kinds:
//!
//! - [`tasks`]: problems with public and private tests;
//! - [`prompts`]: prompt templates and sampling settings;
//! - [`runner`]: running programs on a suite, test feedback with traces;
//! - [`selection`]: the rules that pick one of N candidates.
//!
//! Replies are read by [`crate::llm::reply`], the one DSPy reply parser.
//!
//! Scoring is done two ways, always both, always labelled:
//! - **honest**: the program the strategy selects without private tests is
//!   run on the private tests (what a user of the method would get);
//! - **oracle**: any of the N candidates passes the private tests (pass@N),
//!   which is what the seed reported as "selecting the best candidate".
//!
//! May import: `api`, `python`, `text`, `llm`. Not the kinds.

pub mod prompts;
pub mod runner;
pub mod selection;
pub mod tasks;
