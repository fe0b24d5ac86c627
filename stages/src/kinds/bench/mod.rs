//! Kinds for benchmarks: read one as published (`load_benchmark`), read
//! existing generations (`load_samples`), grade generations with the
//! benchmark's own harness rules (`score`). The benchmarks themselves live in
//! [`crate::bench`].
//!
//! May import: `api`, `bench`, `python`. Not another kind.

pub mod load_benchmark;
pub mod load_samples;
pub mod score;
