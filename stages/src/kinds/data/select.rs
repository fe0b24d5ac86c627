//! `select`: compute, keep, drop and rename columns.
//!
//! # What it does
//! First adds the `derive` columns (each a SQL expression over the input's
//! columns, as `filter`'s conditions are), then keeps the columns listed in
//! `columns` (in that order; all when omitted), then removes those in
//! `drop`, then applies `rename` (`{old: new}`). A column that does not
//! exist is an error naming it and listing those that do.
//!
//! # Params
//! - `derive` (map name -> SQL expression, default empty): new (or
//!   replaced) columns, e.g. `{pass_pct: "CASE WHEN passed THEN 100.0 ELSE 0.0 END"}`;
//!   every expression reads the input's columns, not each other.
//! - `columns` (list of strings, optional): columns to keep, in order.
//! - `drop` (list of strings, default empty): columns to remove.
//! - `rename` (map old -> new, default empty).
//!
//! # Inputs
//! - `rows`: any table.
//!
//! # Outputs
//! - `rows`: the reshaped table; row order is kept.
//!
//! # Caching
//! Keyed by the params and the input's content hash.
//!
//! # Example
//! ```yaml
//! slim:
//!   kind: select
//!   inputs: { rows: problems.rows }
//!   params: { columns: [task_id, prompt], rename: { prompt: question } }
//! ```

use crate::api::frame::{polars_error, read_frame, require_columns, write_frame};
use crate::api::{InputSlot, Problem, RunCtx, Stage, StageError};
use polars::prelude::IntoLazy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub struct Select;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectParams {
    // Left out of the key when empty: specs written before `derive` keep their keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub derive: BTreeMap<String, String>,
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    #[serde(default)]
    pub drop: Vec<String>,
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
}

impl Stage for Select {
    const KIND: &'static str = "select";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("select.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("rows")];
    const OUTPUTS: &'static [&'static str] = &["rows"];
    type Params = SelectParams;

    fn validate(p: &SelectParams) -> Vec<Problem> {
        let mut problems = Vec::new();
        if p.columns.is_none() && p.drop.is_empty() && p.rename.is_empty() && p.derive.is_empty() {
            problems.push(Problem::at(
                "",
                "`select` needs at least one of `derive`, `columns`, `drop`, `rename`",
            ));
        }
        for (name, expr) in &p.derive {
            if let Err(e) = polars::sql::sql_expr(expr) {
                problems.push(Problem::at(
                    &format!("derive.{name}"),
                    format!("not a SQL expression: {e}"),
                ));
            }
        }
        if let Some(columns) = &p.columns {
            let mut seen = std::collections::BTreeSet::new();
            for c in columns {
                if !seen.insert(c) {
                    problems.push(Problem::at(
                        "columns",
                        format!("column `{c}` is listed twice"),
                    ));
                }
            }
        }
        problems
    }

    fn run(p: &SelectParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let mut frame = read_frame(ctx, "rows")?;
        if !p.derive.is_empty() {
            let exprs = p
                .derive
                .iter()
                .map(|(name, sql)| {
                    polars::sql::sql_expr(sql)
                        .map(|e| e.alias(name.as_str()))
                        .map_err(polars_error)
                })
                .collect::<Result<Vec<_>, _>>()?;
            frame =
                frame
                    .lazy()
                    .with_columns(exprs)
                    .collect()
                    .map_err(|e| StageError::BadInput {
                        slot: "rows".into(),
                        message: format!("a `derive` expression failed: {e}"),
                    })?;
        }
        if let Some(columns) = &p.columns {
            require_columns(&frame, "rows", columns)?;
            frame = frame
                .select(columns.iter().map(String::as_str))
                .map_err(polars_error)?;
        }
        require_columns(&frame, "rows", &p.drop)?;
        for name in &p.drop {
            frame = frame.drop(name).map_err(polars_error)?;
        }
        let old: Vec<String> = p.rename.keys().cloned().collect();
        require_columns(&frame, "rows", &old)?;
        for (from, to) in &p.rename {
            frame
                .rename(from, to.as_str().into())
                .map_err(polars_error)?;
        }
        write_frame(ctx, "rows", &mut frame)
    }
}
