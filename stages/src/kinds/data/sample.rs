//! `sample`: a seeded random subset of rows.
//!
//! # What it does
//! Draws `n` rows (or a `fraction` of them) without replacement, using `seed`,
//! and keeps the drawn rows in their original order so that the artifact does
//! not depend on draw order. Asking for more rows than exist returns them all.
//!
//! # Params
//! - `n` (integer) or `fraction` (0..=1): exactly one of the two.
//! - `seed` (integer, default 0): same seed and input, same rows.
//!
//! # Inputs
//! - `rows`: any table.
//!
//! # Outputs
//! - `rows`: the sample.
//!
//! # Caching
//! Keyed by `n`/`fraction`, `seed` and the input's content hash: change the seed
//! to get a fresh sample.
//!
//! # Example
//! ```yaml
//! dev:
//!   kind: sample
//!   inputs: { rows: problems.rows }
//!   params: { n: 20, seed: 1 }
//! ```

use crate::api::frame::{polars_error, read_frame, write_frame};
use crate::api::{InputSlot, Problem, RunCtx, Stage, StageError};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

pub struct Sample;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleParams {
    #[serde(default)]
    pub n: Option<u64>,
    #[serde(default)]
    pub fraction: Option<f64>,
    #[serde(default)]
    pub seed: u64,
}

impl Stage for Sample {
    const KIND: &'static str = "sample";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("sample.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("rows")];
    const OUTPUTS: &'static [&'static str] = &["rows"];
    type Params = SampleParams;

    fn validate(p: &SampleParams) -> Vec<Problem> {
        match (p.n, p.fraction) {
            (Some(_), Some(_)) => vec![Problem::at("fraction", "give `n` or `fraction`, not both")],
            (None, None) => vec![Problem::at("", "give `n` or `fraction`")],
            (None, Some(f)) if !(0.0..=1.0).contains(&f) => {
                vec![Problem::at(
                    "fraction",
                    format!("`fraction` must be within 0..=1, got {f}"),
                )]
            }
            _ => Vec::new(),
        }
    }

    fn run(p: &SampleParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let frame = read_frame(ctx, "rows")?;
        let height = frame.height();
        let n = match (p.n, p.fraction) {
            (Some(n), _) => (n as usize).min(height),
            (None, Some(f)) => ((height as f64) * f).round() as usize,
            (None, None) => return Err(StageError::failed("give `n` or `fraction`")),
        };
        let index_name: PlSmallStr = "__tw_row".into();
        let mut out = frame
            .with_row_index(index_name.clone(), None)
            .map_err(polars_error)?
            .sample_n_literal(n, false, Some(true), Some(p.seed))
            .map_err(polars_error)?
            .sort([index_name.as_str()], SortMultipleOptions::default())
            .map_err(polars_error)?
            .drop(&index_name)
            .map_err(polars_error)?;
        write_frame(ctx, "rows", &mut out)
    }
}
