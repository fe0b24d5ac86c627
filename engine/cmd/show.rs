//! `tw show` and `tw export`: read cached artifacts of a spec's stages.

use super::common::{Failure, load_spec, make_plan, open_store};
use crate::cli::ExportFormat;
use crate::plan::{Facts, Plan, Selection};
use crate::spec::Spec;
use crate::store::{OutputRecord, Store};
use arrow::record_batch::RecordBatch;
use std::io::IsTerminal;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use tw_stages::api::artifact;
use tw_stages::api::fsutil;

/// `tw show`: the schema and first rows of a cached output.
pub fn run_show(
    cache_dir: &Path,
    spec: &Path,
    target: &str,
    head: usize,
    stdout: &mut dyn Write,
) -> Result<(), Failure> {
    let spec = load_spec(spec)?;
    let store = open_store(cache_dir)?;
    let plan = make_plan(&spec, &store, &Selection::default(), &Facts::default())?;
    let path =
        locate(&spec, &plan, &store, target).map_err(|e| Failure::usage(format!("error: {e}")))?;
    show(&path, head, stdout).map_err(|e| Failure::runtime(format!("error: {e}")))
}

/// `tw export`: a cached output as JSONL, CSV or Parquet, to a file or stdout.
pub fn run_export(
    cache_dir: &Path,
    spec: &Path,
    target: &str,
    format: ExportFormat,
    output: Option<&Path>,
    stdout: &mut dyn Write,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::runtime(format!("error: {e}"));
    if format == ExportFormat::Parquet && output.is_none() && std::io::stdout().is_terminal() {
        return Err(Failure::usage(
            "error: parquet is binary: write it to a file with `-o FILE`",
        ));
    }
    let spec = load_spec(spec)?;
    let store = open_store(cache_dir)?;
    let plan = make_plan(&spec, &store, &Selection::default(), &Facts::default())?;
    let path =
        locate(&spec, &plan, &store, target).map_err(|e| Failure::usage(format!("error: {e}")))?;
    match output {
        Some(file) => {
            let mut buffer = Vec::new();
            export_table(&path, format, &mut buffer)
                .map_err(|e| Failure::runtime(format!("error: {e}")))?;
            fsutil::write_atomic(file, &buffer).map_err(io)
        }
        None => {
            export_table(&path, format, stdout).map_err(|e| Failure::runtime(format!("error: {e}")))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("no stage `{0}` in this spec{1}")]
    UnknownStage(String, String),
    #[error("stage `{stage}` has several outputs ({outputs}); name one as `{stage}.<output>`")]
    AmbiguousOutput { stage: String, outputs: String },
    #[error("stage `{stage}` has no output `{output}` (outputs: {outputs})")]
    UnknownOutput {
        stage: String,
        output: String,
        outputs: String,
    },
    #[error("`{0}` matches several matrix instances: {1}; name one")]
    AmbiguousInstance(String, String),
    #[error("stage `{0}` is not in the cache (status: {1}); run `tw run` first")]
    NotCached(String, String),
    #[error(transparent)]
    Stage(#[from] tw_stages::StageError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Locate the cached artifact for `STAGE[.output]` (STAGE may be an instance id).
pub fn locate(
    spec: &Spec,
    plan: &Plan,
    store: &Store,
    target: &str,
) -> Result<PathBuf, InspectError> {
    // Instance ids may contain dots inside brackets (`lr=0.1`): split after them.
    let split_from = target.rfind(']').map(|i| i + 1).unwrap_or(0);
    let (stage, output) = match target[split_from..].rfind('.') {
        Some(dot) => (
            &target[..split_from + dot],
            Some(&target[split_from + dot + 1..]),
        ),
        None => (target, None),
    };
    let matches: Vec<usize> = spec
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| n.id == stage || n.stage == stage)
        .map(|(i, _)| i)
        .collect();
    let i = match matches.as_slice() {
        [] => {
            let names: Vec<&str> = spec.nodes().iter().map(|n| n.id.as_str()).collect();
            let hint = crate::diag::did_you_mean(stage, names.iter().copied())
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            return Err(InspectError::UnknownStage(stage.to_string(), hint));
        }
        [one] => *one,
        many => {
            let ids: Vec<&str> = many.iter().map(|&i| spec.nodes()[i].id.as_str()).collect();
            return Err(InspectError::AmbiguousInstance(
                stage.to_string(),
                ids.join(", "),
            ));
        }
    };
    let node = &spec.nodes()[i];
    let outputs = node.outputs.join(", ");
    let output = match output {
        Some(o) if node.outputs.iter().any(|x| x == o) => o.to_string(),
        Some(o) => {
            return Err(InspectError::UnknownOutput {
                stage: node.id.clone(),
                output: o.to_string(),
                outputs,
            });
        }
        None if node.outputs.len() == 1 => node.outputs[0].clone(),
        None => {
            return Err(InspectError::AmbiguousOutput {
                stage: node.id.clone(),
                outputs,
            });
        }
    };
    let planned = &plan.nodes[i];
    let (Some(key), Some(manifest)) = (&planned.key, &planned.manifest) else {
        return Err(InspectError::NotCached(
            node.id.clone(),
            planned.status.as_str().into(),
        ));
    };
    let record: &OutputRecord = &manifest.outputs[&output];
    Ok(store.output_path(key, record))
}

pub fn show(path: &std::path::Path, head: usize, out: &mut dyn Write) -> Result<(), InspectError> {
    let table = artifact::read_table(path)?;
    writeln!(
        out,
        "{} rows, {} columns",
        table.num_rows(),
        table.num_columns()
    )?;
    for field in table.schema().fields() {
        writeln!(
            out,
            "  {}: {}{}",
            field.name(),
            field.data_type(),
            if field.is_nullable() {
                ""
            } else {
                " (not null)"
            }
        )?;
    }
    let shown = table.slice(0, head.min(table.num_rows()));
    if shown.num_rows() > 0 && shown.num_columns() > 0 {
        let truncated = truncate_cells(&shown)?;
        let text = arrow::util::pretty::pretty_format_batches(&[truncated])
            .map_err(tw_stages::StageError::from)?;
        writeln!(out, "{text}")?;
    }
    if table.num_rows() > shown.num_rows() {
        writeln!(out, "... {} more rows", table.num_rows() - shown.num_rows())?;
    }
    Ok(())
}

/// Long strings (programs, traces) would make the table unreadable: cut them.
fn truncate_cells(table: &RecordBatch) -> Result<RecordBatch, InspectError> {
    const MAX: usize = 60;
    let rows = artifact::table_to_json_rows(table)?;
    let cut: Vec<serde_json::Map<String, serde_json::Value>> = rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) if s.chars().count() > MAX => {
                            let mut t: String = s.chars().take(MAX - 3).collect();
                            t.push_str("...");
                            serde_json::Value::String(t.replace('\n', "\\n"))
                        }
                        serde_json::Value::String(s) => {
                            serde_json::Value::String(s.replace('\n', "\\n"))
                        }
                        other => other,
                    };
                    (k, v)
                })
                .collect()
        })
        .collect();
    let (t, _) = artifact::json_rows_to_table(&cut)?;
    Ok(t)
}

pub fn export_table(
    path: &std::path::Path,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<(), InspectError> {
    match format {
        ExportFormat::Parquet => {
            let bytes = fs_err::read(path)?;
            out.write_all(&bytes)?;
        }
        ExportFormat::Jsonl => {
            let table = artifact::read_table(path)?;
            for row in artifact::table_to_json_rows(&table)? {
                serde_json::to_writer(&mut *out, &row).map_err(std::io::Error::other)?;
                out.write_all(b"\n")?;
            }
        }
        ExportFormat::Csv => {
            let table = artifact::read_table(path)?;
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            writer.write(&table).map_err(tw_stages::StageError::from)?;
        }
    }
    Ok(())
}
