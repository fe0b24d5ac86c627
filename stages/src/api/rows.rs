//! Rows: reading a JSONL, JSON or CSV file (`.gz` too) into JSON rows, with a
//! malformed row failing as `file:line` or counted as a skip; and reading the
//! cells of a row, with errors that name the table, row and column.

use super::error::StageError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// One table row, as JSON.
pub type Row = Map<String, Value>;

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

/// JSON rows of a JSONL or JSON file (by extension, `.gz` too), for the
/// stages that read a benchmark's own format.
pub fn read_rows(path: &Path, on_error: OnError) -> Result<(Vec<Row>, u64), StageError> {
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

pub fn detect(path: &str) -> Option<Format> {
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

pub fn open(path: &Path) -> Result<Box<dyn Read>, StageError> {
    let file = fs_err::File::open(path)?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Ok(Box::new(file))
    }
}

fn bad(path: &Path, line: usize, message: impl Into<String>) -> StageError {
    StageError::BadRecord {
        file: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

pub fn read_jsonl(
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

pub fn read_json(
    path: &Path,
    on_error: OnError,
    limit: usize,
) -> Result<(Vec<Row>, u64), StageError> {
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
pub fn read_csv(
    path: &Path,
    on_error: OnError,
    limit: usize,
) -> Result<(Vec<Row>, u64), StageError> {
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

/// Where a cell came from, for error messages.
pub struct At<'a> {
    pub slot: &'a str,
    pub row: usize,
    /// The row's id, when the stage knows one.
    pub id: Option<&'a str>,
}

impl At<'_> {
    pub fn error(&self, column: &str, message: impl std::fmt::Display) -> StageError {
        let which = match self.id {
            Some(id) => format!("row {} ({id})", self.row),
            None => format!("row {}", self.row),
        };
        StageError::BadInput {
            slot: self.slot.to_string(),
            message: format!("{which}, column `{column}`: {message}"),
        }
    }
}

/// Fail early, once, when a table lacks a column the params name.
pub fn require_column(
    rows: &[Row],
    slot: &str,
    column: &str,
    param: &str,
) -> Result<(), StageError> {
    match rows.first() {
        Some(first) if !first.contains_key(column) => Err(StageError::BadInput {
            slot: slot.into(),
            message: format!(
                "no column `{column}` (named by param `{param}`); columns are: {}",
                first.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }),
        _ => Ok(()),
    }
}

/// A text cell; numbers are accepted as their JSON text (ids are often ints).
pub fn text(row: &Row, column: &str, at: &At<'_>) -> Result<String, StageError> {
    match row.get(column) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Null) | None => Err(at.error(column, "is empty")),
        Some(other) => Err(at.error(column, format!("expected text, found {}", kind_of(other)))),
    }
}

/// A text or number cell as text (ids are often ints); `None` when absent,
/// null or another type.
pub fn cell_text(row: &Row, column: &str) -> Option<String> {
    match row.get(column) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// [`cell_text`], with an empty string counted as missing.
pub fn nonempty_text(row: &Row, column: &str) -> Option<String> {
    cell_text(row, column).filter(|s| !s.is_empty())
}

/// A text cell that may be missing or empty.
pub fn optional_text(row: &Row, column: &str) -> Option<String> {
    match row.get(column) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
