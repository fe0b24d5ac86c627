//! `join`: join two tables on key columns.
//!
//! # What it does
//! Joins `left` and `right` on `on` (same column names on both sides) or on
//! `left_on`/`right_on`. `how` is `inner`, `left`, `full`, `semi` or `anti`.
//! The output keeps the order of `left`'s rows (then `right`'s for a full
//! join), so equal inputs give equal bytes. Right-side columns whose names
//! collide with left ones get `suffix` (default `_right`).
//!
//! # Params
//! - `on` (list of strings) or `left_on` + `right_on` (lists of equal length).
//! - `how` (default `inner`).
//! - `suffix` (string, default `_right`).
//!
//! # Inputs
//! - `left`, `right`: tables.
//!
//! # Outputs
//! - `rows`: the joined table.
//!
//! # Caching
//! Keyed by the params and both inputs' content hashes.
//!
//! # Example
//! ```yaml
//! with_tests:
//!   kind: join
//!   inputs: { left: samples.rows, right: problems.rows }
//!   params: { on: [task_id], how: left }
//! ```

use crate::api::frame::{polars_error, read_frame, require_columns, write_frame};
use crate::api::{InputSlot, Problem, RunCtx, Stage, StageError};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

pub struct Join;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum How {
    #[default]
    Inner,
    Left,
    Full,
    Semi,
    Anti,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinParams {
    #[serde(default)]
    pub on: Vec<String>,
    #[serde(default)]
    pub left_on: Vec<String>,
    #[serde(default)]
    pub right_on: Vec<String>,
    #[serde(default)]
    pub how: How,
    #[serde(default = "default_suffix")]
    pub suffix: String,
}

fn default_suffix() -> String {
    "_right".into()
}

impl JoinParams {
    fn keys(&self) -> (Vec<String>, Vec<String>) {
        if self.on.is_empty() {
            (self.left_on.clone(), self.right_on.clone())
        } else {
            (self.on.clone(), self.on.clone())
        }
    }
}

impl Stage for Join {
    const KIND: &'static str = "join";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("join.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("left"), InputSlot::one("right")];
    const OUTPUTS: &'static [&'static str] = &["rows"];
    type Params = JoinParams;

    fn validate(p: &JoinParams) -> Vec<Problem> {
        let mut problems = Vec::new();
        let explicit = !p.left_on.is_empty() || !p.right_on.is_empty();
        if !p.on.is_empty() && explicit {
            problems.push(Problem::at(
                "on",
                "give `on` or `left_on`/`right_on`, not both",
            ));
        } else if p.on.is_empty() && !explicit {
            problems.push(Problem::at(
                "",
                "give the join keys: `on`, or `left_on` and `right_on`",
            ));
        } else if explicit && p.left_on.len() != p.right_on.len() {
            problems.push(Problem::at(
                "right_on",
                format!(
                    "`left_on` has {} columns but `right_on` has {}",
                    p.left_on.len(),
                    p.right_on.len()
                ),
            ));
        }
        if p.suffix.is_empty() {
            problems.push(Problem::at("suffix", "`suffix` is empty"));
        }
        problems
    }

    fn run(p: &JoinParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let left = read_frame(ctx, "left")?;
        let right = read_frame(ctx, "right")?;
        let (left_on, right_on) = p.keys();
        require_columns(&left, "left", &left_on)?;
        require_columns(&right, "right", &right_on)?;
        let how = match p.how {
            How::Inner => JoinType::Inner,
            How::Left => JoinType::Left,
            How::Full => JoinType::Full,
            How::Semi => JoinType::Semi,
            How::Anti => JoinType::Anti,
        };
        let mut args = JoinArgs::new(how).with_suffix(Some(p.suffix.as_str().into()));
        args.maintain_order = MaintainOrderJoin::LeftRight;
        let left_exprs: Vec<Expr> = left_on.iter().map(|c| col(c.as_str())).collect();
        let right_exprs: Vec<Expr> = right_on.iter().map(|c| col(c.as_str())).collect();
        let mut out = left
            .lazy()
            .join(right.lazy(), left_exprs, right_exprs, args)
            .collect()
            .map_err(polars_error)?;
        write_frame(ctx, "rows", &mut out)
    }
}
