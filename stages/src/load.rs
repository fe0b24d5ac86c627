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

use crate::api::{FileDep, InputSlot, PlanEnv, Problem, RunCtx, Stage, StageError, module_doc};
use crate::artifact;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

pub struct Load;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Auto,
    Jsonl,
    Json,
    Csv,
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    #[default]
    Fail,
    Skip,
}

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
    type Params = LoadParams;

    fn doc() -> String {
        module_doc(include_str!("load.rs"))
    }

    fn inputs(_p: &LoadParams) -> Vec<InputSlot> {
        Vec::new()
    }

    fn outputs(_p: &LoadParams) -> Vec<String> {
        vec!["rows".into()]
    }

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

/// JSON rows of a JSONL or JSON file (by extension, `.gz` too), for the
/// stages that read a benchmark's own format.
pub(crate) fn read_rows(path: &Path, on_error: OnError) -> Result<(Vec<Row>, u64), StageError> {
    match detect(&path.to_string_lossy()) {
        Some(Format::Json) => read_json(path, on_error, usize::MAX),
        Some(Format::Jsonl) | None => read_jsonl(path, on_error, usize::MAX),
        Some(other) => Err(bad(
            path,
            1,
            format!("expected JSONL or JSON, not {other:?}").to_lowercase(),
        )),
    }
}

fn detect(path: &str) -> Option<Format> {
    let lower = path.to_ascii_lowercase();
    let stem = lower.strip_suffix(".gz").unwrap_or(&lower);
    let ext = Path::new(stem).extension()?.to_str()?;
    match ext {
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        "json" => Some(Format::Json),
        "csv" => Some(Format::Csv),
        "parquet" | "pq" => Some(Format::Parquet),
        _ => None,
    }
}

pub(crate) fn open(path: &Path) -> Result<Box<dyn Read>, StageError> {
    let file = fs_err::File::open(path)?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Ok(Box::new(file))
    }
}

type Row = serde_json::Map<String, serde_json::Value>;

fn bad(path: &Path, line: usize, message: impl Into<String>) -> StageError {
    StageError::BadRecord {
        file: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

pub(crate) fn read_jsonl(
    path: &Path,
    on_error: OnError,
    limit: usize,
) -> Result<(Vec<Row>, u64), StageError> {
    let reader = BufReader::new(open(path)?);
    let mut rows = Vec::new();
    let mut skipped = 0;
    for (i, line) in reader.lines().enumerate() {
        if rows.len() >= limit {
            break;
        }
        let line_no = i + 1;
        let line = line.map_err(|e| bad(path, line_no, format!("unreadable line: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            Ok(other) => Err(format!(
                "expected a JSON object, found {}",
                json_type(&other)
            )),
            Err(e) => Err(format!("invalid JSON: {e}")),
        };
        match (parsed, on_error) {
            (Ok(row), _) => rows.push(row),
            (Err(_), OnError::Skip) => skipped += 1,
            (Err(message), OnError::Fail) => {
                return Err(bad(path, line_no, message));
            }
        }
    }
    Ok((rows, skipped))
}

fn read_json(path: &Path, on_error: OnError, limit: usize) -> Result<(Vec<Row>, u64), StageError> {
    let mut text = String::new();
    open(path)?
        .read_to_string(&mut text)
        .map_err(|e| bad(path, 1, format!("unreadable: {e}")))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| bad(path, e.line(), format!("invalid JSON: {e}")))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        other => {
            return Err(bad(
                path,
                1,
                format!(
                    "expected a JSON array of objects, found {}",
                    json_type(&other)
                ),
            ));
        }
    };
    let mut rows = Vec::new();
    let mut skipped = 0;
    for (i, item) in items.into_iter().enumerate() {
        if rows.len() >= limit {
            break;
        }
        match (item, on_error) {
            (serde_json::Value::Object(map), _) => rows.push(map),
            (_, OnError::Skip) => skipped += 1,
            (other, OnError::Fail) => {
                return Err(StageError::failed(format!(
                    "{}: element {i} of the top-level array is {}, not an object",
                    path.display(),
                    json_type(&other)
                )));
            }
        }
    }
    Ok((rows, skipped))
}

/// CSV cells become integers, floats or booleans where every cell of the
/// column parses as one; empty cells are nulls.
fn read_csv(path: &Path, on_error: OnError, limit: usize) -> Result<(Vec<Row>, u64), StageError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(open(path)?);
    let headers = reader
        .headers()
        .map_err(|e| bad(path, 1, format!("unreadable header: {e}")))?
        .clone();
    let mut raw: Vec<Vec<String>> = Vec::new();
    let mut skipped = 0;
    for record in reader.records() {
        if raw.len() >= limit {
            break;
        }
        match (record, on_error) {
            (Ok(r), _) => raw.push(r.iter().map(String::from).collect()),
            (Err(_), OnError::Skip) => skipped += 1,
            (Err(e), OnError::Fail) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                return Err(bad(path, line, e.to_string()));
            }
        }
    }
    let kinds: Vec<CellKind> = (0..headers.len())
        .map(|c| column_kind(raw.iter().map(|r| r[c].as_str())))
        .collect();
    let rows = raw
        .into_iter()
        .map(|r| {
            headers
                .iter()
                .zip(r)
                .zip(&kinds)
                .map(|((h, cell), kind)| (h.to_string(), kind.convert(cell)))
                .collect()
        })
        .collect();
    Ok((rows, skipped))
}

#[derive(Clone, Copy)]
enum CellKind {
    Int,
    Float,
    Bool,
    Str,
}

fn column_kind<'a>(cells: impl Iterator<Item = &'a str> + Clone) -> CellKind {
    let non_empty = cells.filter(|c| !c.is_empty());
    if non_empty.clone().next().is_none() {
        return CellKind::Str;
    }
    if non_empty.clone().all(|c| c.parse::<i64>().is_ok()) {
        CellKind::Int
    } else if non_empty.clone().all(|c| c.parse::<f64>().is_ok()) {
        CellKind::Float
    } else if non_empty.clone().all(|c| c == "true" || c == "false") {
        CellKind::Bool
    } else {
        CellKind::Str
    }
}

impl CellKind {
    fn convert(self, cell: String) -> serde_json::Value {
        if cell.is_empty() {
            return serde_json::Value::Null;
        }
        match self {
            CellKind::Int => cell.parse::<i64>().map(Into::into).unwrap_or_default(),
            CellKind::Float => cell
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number)
                .unwrap_or_default(),
            CellKind::Bool => serde_json::Value::Bool(cell == "true"),
            CellKind::Str => serde_json::Value::String(cell),
        }
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::NoProgress;
    use std::collections::BTreeMap;
    use std::io::Write;

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
