//! `filter`: keep the rows of a table for which a SQL boolean expression holds.
//!
//! # What it does
//! Evaluates `where` (the body of a SQL `WHERE` clause, polars SQL dialect)
//! on every row of `rows` and keeps those where it is true. Row order is kept.
//!
//! # Params
//! - `where` (string, required): e.g. `difficulty = 'easy' AND n_tests > 3`.
//!
//! # Inputs
//! - `rows`: any table.
//!
//! # Outputs
//! - `rows`: the matching rows, same columns.
//!
//! # Caching
//! Keyed by the expression text and the input's content hash.
//!
//! # Example
//! ```yaml
//! easy:
//!   kind: filter
//!   inputs: { rows: problems.rows }
//!   params: { where: "difficulty = 'easy'" }
//! ```

use crate::api::frame::{polars_error, read_frame, write_frame};
use crate::api::{InputSlot, Problem, RunCtx, Stage, StageError};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

pub struct Filter;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterParams {
    #[serde(rename = "where")]
    pub condition: String,
}

impl Stage for Filter {
    const KIND: &'static str = "filter";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("filter.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("rows")];
    const OUTPUTS: &'static [&'static str] = &["rows"];
    type Params = FilterParams;

    fn validate(p: &FilterParams) -> Vec<Problem> {
        if p.condition.trim().is_empty() {
            return vec![
                Problem::at("where", "`where` is empty")
                    .help("write a SQL condition, e.g. `score > 0.5`"),
            ];
        }
        if let Err(e) = polars::sql::sql_expr(&p.condition) {
            return vec![Problem::at("where", format!("not a SQL expression: {e}"))];
        }
        Vec::new()
    }

    fn run(p: &FilterParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let frame = read_frame(ctx, "rows")?;
        let predicate = polars::sql::sql_expr(&p.condition).map_err(polars_error)?;
        let mut out =
            frame
                .lazy()
                .filter(predicate)
                .collect()
                .map_err(|e| StageError::BadInput {
                    slot: "rows".into(),
                    message: format!("`where: {}` failed: {e}", p.condition),
                })?;
        write_frame(ctx, "rows", &mut out)
    }
}
