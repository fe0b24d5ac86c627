//! `decontaminate`: drop training rows that share an n-gram with an evaluation benchmark.
//!
//! # What it does
//! Lower-cases the text of `columns` in every row and of `against` in every
//! benchmark row, splits it into words (runs of letters, digits and `_`), and
//! removes each row that shares any run of `ngram` consecutive words with a
//! benchmark row (the paper's n-gram decontamination; a shared n-gram is a
//! shared substring up to spacing and case). Removed rows are kept in
//! `removed` with what they matched, so the report shows what was removed
//! and why. Texts shorter than `ngram` words cannot match.
//!
//! # Params
//! - `columns` (default `[buggy, patch]`): text columns of `rows` to check.
//! - `against` (default `[prompt, reference]`): text columns of the benchmark
//!   tables (missing ones are skipped; at least one must exist).
//! - `ngram` (default 10).
//!
//! # Inputs
//! - `rows`: the table to clean (e.g. `mine_pairs` pairs).
//! - `benchmarks` (one or more): `load_benchmark` problems (their `benchmark`
//!   and `task_id` name the match).
//!
//! # Outputs
//! - `rows`: the rows without a match, same columns.
//! - `removed`: the removed rows plus `matched_benchmark`, `matched_task`,
//!   `matched_column`, `overlap` (the first shared n-gram).
//!
//! # Caching
//! Keyed by the params and every input's content.
//!
//! # Example
//! ```yaml
//! clean:
//!   kind: decontaminate
//!   inputs: { rows: pairs.pairs, benchmarks: [mbpp.problems, cruxeval.problems] }
//!   params: { ngram: 10 }
//! ```

use crate::api::artifact;
use crate::api::rows;
use crate::api::rows::cell_text;
use crate::api::{InputSlot, Problem, RunCtx, Stage, StageError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

pub struct Decontaminate;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecontaminateParams {
    #[serde(default = "default_columns")]
    pub columns: Vec<String>,
    #[serde(default = "default_against")]
    pub against: Vec<String>,
    #[serde(default = "default_ngram")]
    pub ngram: usize,
}

fn default_columns() -> Vec<String> {
    vec!["buggy".into(), "patch".into()]
}
fn default_against() -> Vec<String> {
    vec!["prompt".into(), "reference".into()]
}
fn default_ngram() -> usize {
    10
}

impl Stage for Decontaminate {
    const KIND: &'static str = "decontaminate";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("decontaminate.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("rows"), InputSlot::many("benchmarks")];
    const OUTPUTS: &'static [&'static str] = &["rows", "removed"];
    type Params = DecontaminateParams;

    fn validate(p: &DecontaminateParams) -> Vec<Problem> {
        let mut problems = Vec::new();
        if p.ngram == 0 {
            problems.push(Problem::at("ngram", "`ngram` must be at least 1"));
        }
        if p.columns.is_empty() {
            problems.push(Problem::at("columns", "name at least one column to check"));
        }
        if p.against.is_empty() {
            problems.push(Problem::at("against", "name at least one benchmark column"));
        }
        problems
    }

    fn run(p: &DecontaminateParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let table = ctx.input("rows")?;
        let rows = artifact::table_to_json_rows(&table)?;
        for column in &p.columns {
            rows::require_column(&rows, "rows", column, "columns")?;
        }
        // Every benchmark n-gram, by hash, to the first (benchmark, task, column) holding it.
        let mut index: HashMap<u64, usize> = HashMap::new();
        let mut origins: Vec<(String, String, String)> = Vec::new();
        for (b, bench) in ctx.inputs("benchmarks")?.into_iter().enumerate() {
            let bench_rows = artifact::table_to_json_rows(&bench)?;
            let present: Vec<&String> = p
                .against
                .iter()
                .filter(|c| {
                    bench_rows
                        .first()
                        .is_some_and(|r| r.contains_key(c.as_str()))
                })
                .collect();
            if present.is_empty() && !bench_rows.is_empty() {
                return Err(StageError::BadInput {
                    slot: "benchmarks".into(),
                    message: format!(
                        "table {b} has none of the columns in `against` ({})",
                        p.against.join(", ")
                    ),
                });
            }
            for row in &bench_rows {
                let name =
                    cell_text(row, "benchmark").unwrap_or_else(|| format!("benchmarks[{b}]"));
                let task = cell_text(row, "task_id").unwrap_or_default();
                for column in &present {
                    let Some(body) = cell_text(row, column) else {
                        continue;
                    };
                    let words = words(&body);
                    for gram in words.windows(p.ngram) {
                        index.entry(hash(gram)).or_insert_with(|| {
                            origins.push((name.clone(), task.clone(), (*column).clone()));
                            origins.len() - 1
                        });
                    }
                }
            }
        }
        let mut keep = Vec::with_capacity(rows.len());
        let mut removed = Vec::new();
        let mut by_benchmark: std::collections::BTreeMap<String, u64> = Default::default();
        for (i, row) in rows.iter().enumerate() {
            let mut hit = None;
            'columns: for column in &p.columns {
                let Some(body) = cell_text(row, column) else {
                    continue;
                };
                let words = words(&body);
                for gram in words.windows(p.ngram) {
                    if let Some(&origin) = index.get(&hash(gram)) {
                        hit = Some((origin, gram.join(" ")));
                        break 'columns;
                    }
                }
            }
            match hit {
                None => keep.push(i),
                Some((origin, overlap)) => {
                    let (bench, task, column) = &origins[origin];
                    *by_benchmark.entry(bench.clone()).or_default() += 1;
                    let mut r = row.clone();
                    r.insert("matched_benchmark".into(), Value::String(bench.clone()));
                    r.insert("matched_task".into(), Value::String(task.clone()));
                    r.insert("matched_column".into(), Value::String(column.clone()));
                    r.insert("overlap".into(), Value::String(overlap));
                    removed.push(r);
                }
            }
        }
        ctx.note("kept", keep.len());
        ctx.note("removed", removed.len());
        ctx.note(
            "removed_by_benchmark",
            serde_json::to_value(&by_benchmark).unwrap_or(Value::Null),
        );
        let indices =
            arrow::array::UInt32Array::from(keep.iter().map(|&i| i as u32).collect::<Vec<_>>());
        let kept = arrow::compute::take_record_batch(&table, &indices)
            .map_err(|e| StageError::failed(format!("selecting kept rows: {e}")))?;
        ctx.write_output("rows", &kept)?;
        let mut template = rows.first().cloned().unwrap_or_default();
        for c in [
            "matched_benchmark",
            "matched_task",
            "matched_column",
            "overlap",
        ] {
            template.insert(c.into(), Value::String(String::new()));
        }
        ctx.write_output(
            "removed",
            &artifact::json_rows_to_typed_table(removed, template)?,
        )
    }
}

/// Lower-cased runs of letters, digits and `_`.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn hash(gram: &[String]) -> u64 {
    let mut h = blake3::Hasher::new();
    for w in gram {
        h.update(w.as_bytes());
        h.update(b" ");
    }
    let bytes: [u8; 8] = h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_ignore_case_spacing_and_punctuation() {
        assert_eq!(
            words("def Foo(x):\n  return x+1"),
            vec!["def", "foo", "x", "return", "x", "1"]
        );
        assert_eq!(hash(&words("a  B c")), hash(&words("A b\nc")));
        assert_ne!(hash(&words("a b c")), hash(&words("a b d")));
    }
}
