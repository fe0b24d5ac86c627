//! Artifacts: one Parquet file per stage output, written so that equal tables
//! give equal bytes.
//!
//! Downstream cache keys hash upstream artifact *bytes*, so the writer's
//! settings are fixed here and nowhere else: a constant `created_by`, one
//! compression codec and level, fixed row-group and page sizes, no timestamps.
//! That is what makes early cutoff work: an upstream rerun that produces the
//! same table produces the same file, and downstream keys do not move.

use crate::api::StageError;
use arrow::array::{Array, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use std::path::Path;
use std::sync::Arc;

/// Bumping this changes artifact bytes, so it is part of every key (via the engine).
pub const ARTIFACT_FORMAT_VERSION: u32 = 1;

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_created_by(format!("tw artifact v{ARTIFACT_FORMAT_VERSION}"))
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("zstd level 3 is valid"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_size_limit(1024 * 1024)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .build()
}

/// Write `table` to `path` deterministically.
pub fn write_table(path: &Path, table: &RecordBatch) -> Result<(), StageError> {
    let file = fs_err::File::create(path)?;
    let mut writer = ArrowWriter::try_new(file, table.schema(), Some(writer_properties()))?;
    writer.write(table)?;
    writer.close()?;
    Ok(())
}

/// A table written a batch at a time, so that a stage producing many rows
/// holds only the current batch and the row group being encoded. The file
/// is byte-identical to [`write_table`] of the whole table: rows reach the
/// Parquet writer a whole row group at a time, as one big batch would.
pub struct TableStream {
    path: std::path::PathBuf,
    writer: Option<ArrowWriter<std::fs::File>>,
    schema: Option<SchemaRef>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    rows: usize,
}

/// Rows per row group. A stream hands the writer whole row groups: the
/// writer's page decisions depend on how each call's rows fall (tried:
/// calls of 1,024 or 100,000 rows give other bytes, whole row groups the
/// same).
const ROW_GROUP_ROWS: usize = 64 * 1024;

impl TableStream {
    pub fn new(path: &Path) -> TableStream {
        TableStream {
            path: path.to_path_buf(),
            writer: None,
            schema: None,
            pending: Vec::new(),
            pending_rows: 0,
            rows: 0,
        }
    }

    /// Append rows; every batch must have the first one's schema.
    pub fn write(&mut self, batch: RecordBatch) -> Result<(), StageError> {
        match &self.schema {
            None => self.schema = Some(batch.schema()),
            Some(schema) if schema != &batch.schema() => {
                return Err(StageError::failed(format!(
                    "{}: a batch's columns differ from the first batch's: {:?} after {:?}",
                    self.path.display(),
                    batch.schema().fields(),
                    schema.fields()
                )));
            }
            Some(_) => {}
        }
        self.rows += batch.num_rows();
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        if self.pending_rows >= ROW_GROUP_ROWS {
            let schema = self
                .schema
                .clone()
                .unwrap_or_else(|| Arc::new(Schema::empty()));
            let all = concat(&schema, &self.pending)?;
            let whole = (all.num_rows() / ROW_GROUP_ROWS) * ROW_GROUP_ROWS;
            self.writer()?.write(&all.slice(0, whole))?;
            self.pending = vec![all.slice(whole, all.num_rows() - whole)];
            self.pending_rows = all.num_rows() - whole;
        }
        Ok(())
    }

    fn writer(&mut self) -> Result<&mut ArrowWriter<std::fs::File>, StageError> {
        if self.writer.is_none() {
            let schema = self
                .schema
                .clone()
                .unwrap_or_else(|| Arc::new(Schema::empty()));
            let file = fs_err::File::create(&self.path)?.into_parts().0;
            self.writer = Some(ArrowWriter::try_new(
                file,
                schema,
                Some(writer_properties()),
            )?);
        }
        self.writer
            .as_mut()
            .ok_or_else(|| StageError::failed("no Parquet writer"))
    }

    /// Write what is left and close the file; `empty` gives the columns of
    /// a stream that got no batch. Returns the rows and the column names.
    pub fn finish(mut self, empty: RecordBatch) -> Result<(usize, Vec<String>), StageError> {
        if self.schema.is_none() {
            self.schema = Some(empty.schema());
            self.pending.push(empty);
        }
        let schema = self
            .schema
            .clone()
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        let rest = concat(&schema, &self.pending)?;
        let writer = self.writer()?;
        if rest.num_rows() > 0 {
            writer.write(&rest)?;
        }
        if let Some(w) = self.writer.take() {
            w.close()?;
        }
        let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
        Ok((self.rows, columns))
    }
}

/// Serialize `table` to Parquet bytes with the same settings as [`write_table`].
pub fn table_to_bytes(table: &RecordBatch) -> Result<Vec<u8>, StageError> {
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, table.schema(), Some(writer_properties()))?;
    writer.write(table)?;
    writer.close()?;
    Ok(buffer)
}

/// Read a whole Parquet file into one batch.
pub fn read_table(path: &Path) -> Result<RecordBatch, StageError> {
    let file = fs_err::File::open(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file.into_parts().0)
        .map_err(|e| StageError::failed(format!("{}: {e}", path.display())))?;
    read_batches(builder)
}

/// Read Parquet bytes (e.g. produced by polars) into one batch.
pub fn read_table_bytes(bytes: Vec<u8>) -> Result<RecordBatch, StageError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))?;
    read_batches(builder)
}

fn read_batches<T: parquet::file::reader::ChunkReader + 'static>(
    builder: ParquetRecordBatchReaderBuilder<T>,
) -> Result<RecordBatch, StageError> {
    let schema = builder.schema().clone();
    let reader = builder.build()?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    concat(&schema, &batches)
}

pub fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch, StageError> {
    if batches.is_empty() {
        return Ok(RecordBatch::new_empty(schema.clone()));
    }
    Ok(arrow::compute::concat_batches(schema, batches)?)
}

/// Column type inferred from JSON values, widest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnType {
    /// Only nulls seen so far.
    Unknown,
    Bool,
    Int,
    Float,
    Str,
    /// Nested or mixed values: stored as JSON text so nothing is lost.
    Json,
}

fn observe(current: ColumnType, value: &serde_json::Value) -> ColumnType {
    use serde_json::Value as J;
    let seen = match value {
        J::Null => return current,
        J::Bool(_) => ColumnType::Bool,
        J::Number(n) if n.is_i64() => ColumnType::Int,
        // An integer beyond 64 bits would lose digits as a float: keep its text.
        J::Number(n) if !n.to_string().contains(['.', 'e', 'E']) => ColumnType::Json,
        J::Number(_) => ColumnType::Float,
        J::String(_) => ColumnType::Str,
        J::Array(_) | J::Object(_) => ColumnType::Json,
    };
    match (current, seen) {
        (ColumnType::Unknown, s) => s,
        (c, s) if c == s => c,
        (ColumnType::Int, ColumnType::Float) | (ColumnType::Float, ColumnType::Int) => {
            ColumnType::Float
        }
        _ => ColumnType::Json,
    }
}

/// Build a table from JSON objects. Columns appear in first-seen order; a
/// column with nested or mixed values becomes a string column of JSON text
/// (`json_columns` lists them), so heterogeneous benchmark fields such as
/// EvalPlus `base_input` survive losslessly.
pub fn json_rows_to_table(
    rows: &[serde_json::Map<String, serde_json::Value>],
) -> Result<(RecordBatch, Vec<String>), StageError> {
    let mut names: Vec<String> = Vec::new();
    let mut types: Vec<ColumnType> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for row in rows {
        for (key, value) in row {
            let i = *index.entry(key.clone()).or_insert_with(|| {
                names.push(key.clone());
                types.push(ColumnType::Unknown);
                names.len() - 1
            });
            types[i] = observe(types[i], value);
        }
    }
    let mut fields = Vec::with_capacity(names.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(names.len());
    let mut json_columns = Vec::new();
    for (name, ty) in names.iter().zip(&types) {
        let cells = rows.iter().map(|r| r.get(name));
        let (data_type, array): (DataType, ArrayRef) = match ty {
            ColumnType::Bool => {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                cells.for_each(|c| b.append_option(c.and_then(|v| v.as_bool())));
                (DataType::Boolean, Arc::new(b.finish()))
            }
            ColumnType::Int => {
                let mut b = Int64Builder::with_capacity(rows.len());
                cells.for_each(|c| b.append_option(c.and_then(|v| v.as_i64())));
                (DataType::Int64, Arc::new(b.finish()))
            }
            ColumnType::Float => {
                let mut b = Float64Builder::with_capacity(rows.len());
                cells.for_each(|c| b.append_option(c.and_then(|v| v.as_f64())));
                (DataType::Float64, Arc::new(b.finish()))
            }
            ColumnType::Str | ColumnType::Unknown => {
                let mut b = StringBuilder::new();
                cells.for_each(|c| b.append_option(c.and_then(|v| v.as_str())));
                (DataType::Utf8, Arc::new(b.finish()))
            }
            ColumnType::Json => {
                json_columns.push(name.clone());
                let mut b = StringBuilder::new();
                cells.for_each(|c| match c {
                    None | Some(serde_json::Value::Null) => b.append_null(),
                    Some(v) => b.append_value(v.to_string()),
                });
                (DataType::Utf8, Arc::new(b.finish()))
            }
        };
        fields.push(Field::new(name, data_type, true));
        columns.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    let batch = RecordBatch::try_new_with_options(schema, columns, &options)?;
    Ok((batch, json_columns))
}

/// Rows as a table whose column types come from `template` (a row of typed
/// placeholder values; `null` lets the data decide), so a column that happens
/// to be all null, or a table with no rows, keeps the same schema.
pub fn json_rows_to_typed_table(
    mut rows: Vec<serde_json::Map<String, serde_json::Value>>,
    template: serde_json::Map<String, serde_json::Value>,
) -> Result<RecordBatch, StageError> {
    rows.insert(0, template);
    let (table, _) = json_rows_to_table(&rows)?;
    Ok(table.slice(1, rows.len() - 1))
}

/// Cast the wide or view string and binary types other writers (polars) use
/// to the plain ones, so every artifact of equal content has one schema.
pub fn normalize(table: RecordBatch) -> Result<RecordBatch, StageError> {
    let needs = |t: &DataType| {
        matches!(
            t,
            DataType::LargeUtf8 | DataType::Utf8View | DataType::LargeBinary | DataType::BinaryView
        )
    };
    if !table.schema().fields().iter().any(|f| needs(f.data_type())) {
        return Ok(table);
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in table.schema().fields().iter().zip(table.columns()) {
        let target = match field.data_type() {
            DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
            DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
            other => other.clone(),
        };
        let column = if &target == field.data_type() {
            column.clone()
        } else {
            arrow::compute::cast(column, &target)?
        };
        fields.push(Field::new(field.name(), target, field.is_nullable()));
        columns.push(column);
    }
    batch(fields, columns, table.num_rows())
}

/// A batch from fields and columns; the explicit row count keeps zero-column tables valid.
fn batch(
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
    rows: usize,
) -> Result<RecordBatch, StageError> {
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &options,
    )?)
}

/// Rows of `table` as JSON objects (for templates, JSONL export and display).
pub fn table_to_json_rows(
    table: &RecordBatch,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, StageError> {
    let mut buffer = Vec::new();
    {
        let mut writer = arrow::json::writer::LineDelimitedWriter::new(&mut buffer);
        writer.write(table)?;
        writer.finish()?;
    }
    let mut rows = Vec::with_capacity(table.num_rows());
    for line in buffer.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let value: serde_json::Value = serde_json::from_slice(line)
            .map_err(|e| StageError::failed(format!("arrow json writer produced bad JSON: {e}")))?;
        match value {
            serde_json::Value::Object(map) => rows.push(complete_row(table, map)),
            _ => {
                return Err(StageError::failed(
                    "arrow json writer produced a non-object row",
                ));
            }
        }
    }
    Ok(rows)
}

/// arrow's JSON writer omits null cells; templates expect every column present.
fn complete_row(
    table: &RecordBatch,
    map: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    let mut map = map;
    for field in table.schema().fields() {
        let value = map.remove(field.name()).unwrap_or(serde_json::Value::Null);
        out.insert(field.name().clone(), value);
    }
    out
}

/// Add (or replace) a string column at the end of `table`.
pub fn with_string_column(
    table: &RecordBatch,
    name: &str,
    values: Vec<Option<String>>,
) -> Result<RecordBatch, StageError> {
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in table.schema().fields().iter().zip(table.columns()) {
        if field.name() != name {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    let mut builder = StringBuilder::new();
    for v in &values {
        builder.append_option(v.as_deref());
    }
    fields.push(Field::new(name, DataType::Utf8, true));
    columns.push(Arc::new(builder.finish()));
    batch(fields, columns, table.num_rows())
}

/// A column's values as strings, for stages that need one text column.
pub fn string_column<'t>(
    table: &'t RecordBatch,
    slot: &str,
    name: &str,
) -> Result<&'t arrow::array::StringArray, StageError> {
    let column = table
        .column_by_name(name)
        .ok_or_else(|| StageError::BadInput {
            slot: slot.into(),
            message: format!("no column `{name}`"),
        })?;
    column
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .ok_or_else(|| StageError::BadInput {
            slot: slot.into(),
            message: format!("column `{name}` is {}, not a string", column.data_type()),
        })
}

/// blake3 of a file's bytes, hex.
pub fn hash_file(path: &Path) -> Result<String, std::io::Error> {
    let mut hasher = blake3::Hasher::new();
    let file = fs_err::File::open(path)?;
    hasher.update_reader(file)?;
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A table streamed in uneven batches is the same file, byte for byte,
    /// as the whole table written at once (200,000 rows: several row
    /// groups, many pages); and an empty stream is the empty table's file.
    #[test]
    fn a_streamed_table_is_byte_identical_to_the_whole_one() {
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = (0..200_000u64)
            .map(|i| {
                let mut r = serde_json::Map::new();
                r.insert("candidate".into(), json!(format!("c{}", i / 7)));
                r.insert("test".into(), json!(i % 7));
                r.insert(
                    "verdict".into(),
                    json!(if i % 3 == 0 { "pass" } else { "wrong_answer" }),
                );
                r.insert(
                    "output".into(),
                    if i % 5 == 0 {
                        json!(null)
                    } else {
                        json!(format!("[{i}, {}]", i * i))
                    },
                );
                r
            })
            .collect();
        let (whole, _) = json_rows_to_table(&rows).expect("table");
        let dir = tempfile::tempdir().expect("tempdir");
        write_table(&dir.path().join("whole.parquet"), &whole).expect("write");
        let mut stream = TableStream::new(&dir.path().join("streamed.parquet"));
        let mut at = 0usize;
        for (k, size) in [1usize, 999, 5000, 3, 70_000, 1024, 77]
            .iter()
            .cycle()
            .enumerate()
        {
            if at >= whole.num_rows() {
                break;
            }
            let n = (*size + k % 13).min(whole.num_rows() - at);
            stream.write(whole.slice(at, n)).expect("write");
            at += n;
        }
        let (n, _) = stream.finish(whole.slice(0, 0)).expect("finish");
        assert_eq!(n, 200_000);
        let a = fs_err::read(dir.path().join("whole.parquet")).expect("read");
        let b = fs_err::read(dir.path().join("streamed.parquet")).expect("read");
        assert!(
            a == b,
            "the streamed file differs ({} and {} bytes)",
            a.len(),
            b.len()
        );

        write_table(&dir.path().join("empty.parquet"), &whole.slice(0, 0)).expect("write");
        let (n, _) = TableStream::new(&dir.path().join("empty-streamed.parquet"))
            .finish(whole.slice(0, 0))
            .expect("finish");
        assert_eq!(n, 0);
        assert_eq!(
            fs_err::read(dir.path().join("empty.parquet")).expect("read"),
            fs_err::read(dir.path().join("empty-streamed.parquet")).expect("read")
        );
    }

    fn rows(v: serde_json::Value) -> Vec<serde_json::Map<String, serde_json::Value>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect()
    }

    #[test]
    fn infers_scalar_types_and_keeps_nested_as_json() {
        let (t, json_cols) = json_rows_to_table(&rows(json!([
            {"id": 1, "x": 1, "name": "a", "ok": true, "input": [[1, "a"]]},
            {"id": 2, "x": 2.5, "ok": null, "input": [2]},
        ])))
        .unwrap();
        let schema = t.schema();
        let types: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            vec![
                DataType::Int64,
                DataType::Float64,
                DataType::Utf8,
                DataType::Boolean,
                DataType::Utf8
            ]
        );
        assert_eq!(json_cols, vec!["input".to_string()]);
        let back = table_to_json_rows(&t).unwrap();
        assert_eq!(back[0]["input"], json!("[[1,\"a\"]]"));
        assert_eq!(back[1]["name"], serde_json::Value::Null);
    }

    #[test]
    fn integers_beyond_64_bits_keep_every_digit() {
        let rows: Vec<serde_json::Map<String, serde_json::Value>> =
            vec![serde_json::from_str(r#"{"n": 100000000000000000000000, "m": 1}"#).unwrap()];
        let (t, json_cols) = json_rows_to_table(&rows).unwrap();
        assert_eq!(json_cols, vec!["n".to_string()]);
        let back = table_to_json_rows(&t).unwrap();
        assert_eq!(back[0]["n"], json!("100000000000000000000000"));
    }

    #[test]
    fn equal_tables_give_equal_bytes() {
        let data = rows(json!([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]));
        let (t1, _) = json_rows_to_table(&data).unwrap();
        let (t2, _) = json_rows_to_table(&data).unwrap();
        assert_eq!(table_to_bytes(&t1).unwrap(), table_to_bytes(&t2).unwrap());
        let back = read_table_bytes(table_to_bytes(&t1).unwrap()).unwrap();
        assert_eq!(back, t1);
    }

    #[test]
    fn empty_input_gives_empty_table() {
        let (t, _) = json_rows_to_table(&[]).unwrap();
        assert_eq!(t.num_rows(), 0);
        assert_eq!(t.num_columns(), 0);
        let bytes = table_to_bytes(&t).unwrap();
        assert_eq!(read_table_bytes(bytes).unwrap().num_rows(), 0);
    }
}
