//! Kinds that run programs in the sandbox: on their tests (`execute`), under
//! the tracer (`trace`), and both programs of a pair to find the tests that
//! separate them (`failing_tests`).
//!
//! May import: `api`, `python`. Not another kind.

pub mod execute;
pub mod failing_tests;
pub mod trace;
