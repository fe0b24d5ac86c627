//! `load`: read a data file (JSONL, JSON, CSV or Parquet; `.gz` too) into an artifact.
//!
//! # What it does
//! Reads one local file into a table. JSON values that are nested (lists,
//! objects) or of mixed types across rows are kept as JSON text in a string
//! column, so heterogeneous benchmark fields survive losslessly; scalar
//! columns get their natural type (integers, floats, booleans, strings).
//! A malformed row is an error naming the file and line, or, with
//! `on_error: skip`, a counted skip recorded in the artifact's manifest
//! (`skipped_rows`). Nothing is ever dropped silently.
//!
//! # Params
//! - `path` (string, required): the file, relative to the spec's directory.
//! - `format` (`auto` | `jsonl` | `json` | `csv` | `parquet`, default `auto`):
//!   `auto` picks by extension after stripping `.gz`.
//! - `on_error` (`fail` | `skip`, default `fail`): what a malformed row does.
//! - `limit` (integer, optional): keep only the first N rows (after skips).
//!
//! # Inputs
//! None.
//!
//! # Outputs
//! - `rows`: the table.
//!
//! # Caching
//! The file's bytes are hashed into the key, so editing the file reruns this
//! stage; moving the spec or renaming the stage does not.
//!
//! # Example
//! ```yaml
//! problems:
//!   kind: load
//!   params: { path: ../data/humaneval.jsonl.gz }
//! ```

use crate::api::artifact;
use crate::api::rows::{Format, OnError, detect, read_csv, read_json, read_jsonl};
use crate::api::{FileDep, InputSlot, PlanEnv, Problem, RunCtx, Stage, StageError};
use serde::{Deserialize, Serialize};

pub struct Load;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadParams {
    pub path: String,
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub limit: Option<u64>,
}

impl Stage for Load {
    const KIND: &'static str = "load";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("load.rs");
    const INPUTS: &'static [InputSlot] = &[];
    const OUTPUTS: &'static [&'static str] = &["rows"];
    type Params = LoadParams;

    fn validate(p: &LoadParams) -> Vec<Problem> {
        let mut problems = Vec::new();
        if p.path.trim().is_empty() {
            problems.push(Problem::at("path", "`path` is empty"));
        } else if p.format == Format::Auto && detect(&p.path).is_none() {
            problems.push(
                Problem::at(
                    "path",
                    format!("cannot tell the format of `{}` from its extension", p.path),
                )
                .help("set `format:` to one of jsonl, json, csv, parquet"),
            );
        }
        problems
    }

    fn file_deps(p: &LoadParams, _env: &PlanEnv) -> Vec<FileDep> {
        vec![FileDep {
            param: "path".into(),
            path: p.path.clone(),
        }]
    }

    fn run(p: &LoadParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let path = ctx.resolve(&p.path);
        let format = match p.format {
            Format::Auto => detect(&p.path).ok_or_else(|| {
                StageError::failed(format!("cannot tell the format of {}", path.display()))
            })?,
            f => f,
        };
        let limit = p.limit.map(|l| l as usize).unwrap_or(usize::MAX);
        let (table, skipped) = match format {
            Format::Parquet => {
                let mut t = artifact::read_table(&path)?;
                if t.num_rows() > limit {
                    t = t.slice(0, limit);
                }
                (t, 0)
            }
            Format::Jsonl => {
                let (rows, skipped) = read_jsonl(&path, p.on_error, limit)?;
                (artifact::json_rows_to_table(&rows)?.0, skipped)
            }
            Format::Json => {
                let (rows, skipped) = read_json(&path, p.on_error, limit)?;
                (artifact::json_rows_to_table(&rows)?.0, skipped)
            }
            Format::Csv => {
                let (rows, skipped) = read_csv(&path, p.on_error, limit)?;
                (artifact::json_rows_to_table(&rows)?.0, skipped)
            }
            Format::Auto => unreachable!("auto resolved above"),
        };
        ctx.note("skipped_rows", skipped);
        ctx.write_output("rows", &table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::NoProgress;
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::path::Path;

    fn run_load(
        dir: &Path,
        params: LoadParams,
    ) -> Result<(arrow::record_batch::RecordBatch, serde_json::Value), StageError> {
        let out = dir.join("out");
        fs_err::create_dir_all(&out).unwrap();
        let mut ctx = RunCtx::new("t", dir, BTreeMap::new(), &out, &NoProgress);
        Load::run(&params, &mut ctx)?;
        let (written, notes) = ctx.into_parts();
        let table = artifact::read_table(&written["rows"].path).unwrap();
        Ok((table, notes["skipped_rows"].clone()))
    }

    fn params(path: &str) -> LoadParams {
        LoadParams {
            path: path.into(),
            format: Format::Auto,
            on_error: OnError::Fail,
            limit: None,
        }
    }

    #[test]
    fn jsonl_gz_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let f = fs_err::File::create(dir.path().join("d.jsonl.gz")).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        writeln!(gz, "{{\"task_id\": \"HumanEval/0\", \"n\": 1}}").unwrap();
        writeln!(gz).unwrap();
        writeln!(gz, "{{\"task_id\": \"HumanEval/1\", \"n\": 2}}").unwrap();
        gz.finish().unwrap();
        let (t, skipped) = run_load(dir.path(), params("d.jsonl.gz")).unwrap();
        assert_eq!(t.num_rows(), 2);
        assert_eq!(skipped, 0);
    }

    #[test]
    fn malformed_jsonl_row_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("d.jsonl"), "{\"a\": 1}\n{\"a\": \n[1]\n").unwrap();
        let err = run_load(dir.path(), params("d.jsonl")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.ends_with("d.jsonl:2: invalid JSON: EOF while parsing a value at line 1 column 6"),
            "{msg}"
        );
        let mut p = params("d.jsonl");
        p.on_error = OnError::Skip;
        let (t, skipped) = run_load(dir.path(), p).unwrap();
        assert_eq!((t.num_rows(), skipped), (1, serde_json::json!(2)));
    }

    #[test]
    fn csv_types_are_inferred_per_column() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(
            dir.path().join("d.csv"),
            "id,score,ok,name\n1,0.5,true,a\n2,,false,\n",
        )
        .unwrap();
        let (t, _) = run_load(dir.path(), params("d.csv")).unwrap();
        let types: Vec<String> = t
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().to_string())
            .collect();
        assert_eq!(types, ["Int64", "Float64", "Boolean", "Utf8"]);
        assert_eq!(t.column(1).null_count(), 1);
    }

    #[test]
    fn json_array_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(
            dir.path().join("d.json"),
            "[{\"a\": 1}, {\"a\": 2}, {\"a\": 3}]",
        )
        .unwrap();
        let mut p = params("d.json");
        p.limit = Some(2);
        let (t, _) = run_load(dir.path(), p).unwrap();
        assert_eq!(t.num_rows(), 2);
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = run_load(dir.path(), params("nope.jsonl")).unwrap_err();
        assert!(err.to_string().contains("nope.jsonl"), "{err}");
    }

    #[test]
    fn validate_rejects_unknown_extension() {
        let problems = Load::validate(&params("data.txt"));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, vec!["path".to_string()]);
    }
}
