//! `concat`: stack tables vertically.
//!
//! # What it does
//! Appends the tables bound to `tables` in the order the spec lists them (for
//! a gather `stage[*].out`, matrix order). With `diagonal: true` (the default)
//! tables may have different columns: missing cells become null. With
//! `source_column`, each row records which input (0-based position) it came from.
//!
//! # Params
//! - `diagonal` (bool, default `true`): allow differing columns.
//! - `source_column` (string, optional): add the input position as a column.
//!
//! # Inputs
//! - `tables`: one or more tables (a list of references, or a gather).
//!
//! # Outputs
//! - `rows`: the stacked table.
//!
//! # Caching
//! Keyed by the params and every input's content hash, in order.
//!
//! # Example
//! ```yaml
//! all_scores:
//!   kind: concat
//!   inputs: { tables: "score[*].rows" }
//!   params: { source_column: run }
//! ```

use crate::api::frame::{polars_error, read_frames, write_frame};
use crate::api::{InputSlot, Problem, RunCtx, Stage, StageError};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

pub struct Concat;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcatParams {
    #[serde(default = "default_true")]
    pub diagonal: bool,
    #[serde(default)]
    pub source_column: Option<String>,
}

fn default_true() -> bool {
    true
}

impl Stage for Concat {
    const KIND: &'static str = "concat";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("concat.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::many("tables")];
    const OUTPUTS: &'static [&'static str] = &["rows"];
    type Params = ConcatParams;

    fn validate(p: &ConcatParams) -> Vec<Problem> {
        match &p.source_column {
            Some(c) if c.trim().is_empty() => {
                vec![Problem::at("source_column", "`source_column` is empty")]
            }
            _ => Vec::new(),
        }
    }

    fn run(p: &ConcatParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let mut frames = read_frames(ctx, "tables")?;
        if let Some(name) = &p.source_column {
            for (i, frame) in frames.iter_mut().enumerate() {
                let column = Column::new(name.as_str().into(), vec![i as i64; frame.height()]);
                frame.with_column(column).map_err(polars_error)?;
            }
        }
        let lazy: Vec<LazyFrame> = frames.into_iter().map(DataFrame::lazy).collect();
        let stacked = if p.diagonal {
            concat_lf_diagonal(lazy, UnionArgs::default())
        } else {
            concat(lazy, UnionArgs::default())
        };
        let mut out = stacked
            .and_then(LazyFrame::collect)
            .map_err(|e| StageError::BadInput {
                slot: "tables".into(),
                message: format!("tables cannot be stacked: {e}"),
            })?;
        write_frame(ctx, "rows", &mut out)
    }
}
