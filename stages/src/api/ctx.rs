//! What a running stage gets from the engine: [`RunCtx`] (its inputs, its output
//! directory, notes for the manifest, progress) and where its inputs came from.

use super::artifact;
use super::error::StageError;
use arrow::record_batch::RecordBatch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which stage (and matrix cell) produced an input artifact.
#[derive(Debug, Clone, PartialEq)]
pub struct InputOrigin {
    /// The upstream instance's id (`seq[repr=next]`), unique in the spec.
    pub id: String,
    /// The upstream stage's name as written in the spec.
    pub stage: String,
    /// Its matrix axis values, in axis order (empty outside a matrix).
    pub binding: Vec<(String, serde_json::Value)>,
    /// The output read (`summary`).
    pub output: String,
    /// Ids of every instance it reads from, directly or not: lets a report
    /// tell related inputs (a generation and its grading) from unrelated ones.
    pub ancestors: Vec<String>,
}

pub fn resolve_path(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Progress reporting for long stages; the engine draws bars on a terminal.
pub trait Progress: Send + Sync {
    fn set_total(&self, total: u64);
    fn inc(&self, delta: u64);
    fn set_message(&self, message: &str);
}

/// A progress sink that draws nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_total(&self, _total: u64) {}
    fn inc(&self, _delta: u64) {}
    fn set_message(&self, _message: &str) {}
}

/// One written output: its file and facts the engine records in the manifest.
#[derive(Debug, Clone)]
pub struct WrittenOutput {
    pub path: PathBuf,
    pub rows: usize,
    pub columns: Vec<String>,
}

/// Everything a running stage may touch: its inputs, its output directory, progress.
pub struct RunCtx<'a> {
    pub stage_id: &'a str,
    pub base_dir: &'a Path,
    inputs: BTreeMap<String, Vec<PathBuf>>,
    out_dir: &'a Path,
    written: BTreeMap<String, WrittenOutput>,
    notes: BTreeMap<String, serde_json::Value>,
    progress: &'a dyn Progress,
    ledger_dir: Option<PathBuf>,
    origins: BTreeMap<String, Vec<InputOrigin>>,
    row_offset: usize,
}

impl<'a> RunCtx<'a> {
    pub fn new(
        stage_id: &'a str,
        base_dir: &'a Path,
        inputs: BTreeMap<String, Vec<PathBuf>>,
        out_dir: &'a Path,
        progress: &'a dyn Progress,
    ) -> Self {
        RunCtx {
            stage_id,
            base_dir,
            inputs,
            out_dir,
            written: BTreeMap::new(),
            notes: BTreeMap::new(),
            progress,
            ledger_dir: None,
            origins: BTreeMap::new(),
            row_offset: 0,
        }
    }

    /// Set when this run is one shard of a sharded node: the index, in the
    /// whole input, of the first row of the [`Stage::ROW_MAPPED`] slot it sees.
    pub fn with_row_offset(mut self, offset: usize) -> Self {
        self.row_offset = offset;
        self
    }

    /// Index of this run's first row of the row-mapped slot in the whole
    /// input (0 unless sharded). Kinds whose output numbers rows add it, so a
    /// sharded run writes the same numbers as an unsharded one.
    pub fn row_offset(&self) -> usize {
        self.row_offset
    }

    /// Where each input artifact came from; the engine sets it for kinds that
    /// declare [`Stage::reads_input_origins`] (and hashes it into their key).
    pub fn with_input_origins(mut self, origins: BTreeMap<String, Vec<InputOrigin>>) -> Self {
        self.origins = origins;
        self
    }

    /// Origins of the artifacts bound to `slot`, parallel to [`RunCtx::input_paths`];
    /// empty unless the kind reads origins.
    pub fn input_origins(&self, slot: &str) -> &[InputOrigin] {
        self.origins.get(slot).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Where LLM completions are kept (`<cache>/ledger`); the engine sets it.
    pub fn with_ledger_dir(mut self, dir: PathBuf) -> Self {
        self.ledger_dir = Some(dir);
        self
    }

    /// Where LLM completions are kept, when the engine set it; `crate::llm::open`
    /// reads it.
    pub fn ledger_dir(&self) -> Option<&Path> {
        self.ledger_dir.as_deref()
    }

    /// Paths of the Parquet artifacts bound to `slot` (empty for an unbound optional slot).
    pub fn input_paths(&self, slot: &str) -> &[PathBuf] {
        self.inputs.get(slot).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The single table bound to a `One` slot.
    pub fn input(&self, slot: &str) -> Result<RecordBatch, StageError> {
        match self.input_paths(slot) {
            [one] => artifact::read_table(one),
            other => Err(StageError::BadInput {
                slot: slot.into(),
                message: format!("expected one artifact, got {}", other.len()),
            }),
        }
    }

    /// Every table bound to a `Many` slot, in the order the spec lists them.
    pub fn inputs(&self, slot: &str) -> Result<Vec<RecordBatch>, StageError> {
        self.input_paths(slot)
            .iter()
            .map(|p| artifact::read_table(p))
            .collect()
    }

    /// Resolve a path from params against the spec's directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        resolve_path(self.base_dir, path)
    }

    /// Write the table for output `slot` with the deterministic Parquet writer.
    pub fn write_output(&mut self, slot: &str, table: &RecordBatch) -> Result<(), StageError> {
        let path = self.output_path(slot);
        artifact::write_table(&path, table)?;
        self.written.insert(
            slot.to_string(),
            WrittenOutput {
                path,
                rows: table.num_rows(),
                columns: table
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
            },
        );
        Ok(())
    }

    /// A stream for output `slot`, written a batch at a time; hand it back
    /// to [`RunCtx::finish_stream`]. Stages whose rows grow with their input
    /// (one per candidate and test) write this way to stay flat in memory.
    pub fn stream_output(&self, slot: &str) -> artifact::TableStream {
        artifact::TableStream::new(&self.output_path(slot))
    }

    /// Close a stream from [`RunCtx::stream_output`]; `empty` gives the
    /// columns when it got no rows.
    pub fn finish_stream(
        &mut self,
        slot: &str,
        stream: artifact::TableStream,
        empty: RecordBatch,
    ) -> Result<(), StageError> {
        let (rows, columns) = stream.finish(empty)?;
        self.written.insert(
            slot.to_string(),
            WrittenOutput {
                path: self.output_path(slot),
                rows,
                columns,
            },
        );
        Ok(())
    }

    /// Where output `slot` lives inside the staging directory.
    pub fn output_path(&self, slot: &str) -> PathBuf {
        self.out_dir.join(format!("{slot}.parquet"))
    }

    /// Record a fact for the manifest (rows skipped, calls made, ...).
    pub fn note(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.notes.insert(key.to_string(), value.into());
    }

    pub fn progress(&self) -> &dyn Progress {
        self.progress
    }

    pub fn into_parts(
        self,
    ) -> (
        BTreeMap<String, WrittenOutput>,
        BTreeMap<String, serde_json::Value>,
    ) {
        (self.written, self.notes)
    }
}
