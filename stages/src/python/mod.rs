//! Running Python: the sandbox ([`sandbox`]: a pool of forked workers under
//! limits, with the tracer), Python values as JSON ([`pyvalue`]), programs and
//! their tests read from tables ([`programs`]), and trace jobs ([`trace_jobs`]).
//!
//! May import: `api`. Everything else may import it.

pub mod programs;
pub mod pyvalue;
pub mod sandbox;
pub mod trace_jobs;
