//! [`StageError`]: what a stage returns when it fails while running. The engine
//! adds which stage it was. Its own file, so that every other `api` file (and the
//! artifact reader) can use it without importing the stage trait.

use std::path::PathBuf;

/// Errors a stage returns while running. The engine adds which stage it was.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A malformed record in an input file.
    #[error("{}:{line}: {message}", file.display())]
    BadRecord {
        file: PathBuf,
        line: usize,
        message: String,
    },
    /// An input table lacks something the stage needs (a column, a type).
    #[error("input `{slot}`: {message}")]
    BadInput { slot: String, message: String },
    #[error("template {}: {message}", path.display())]
    Template { path: PathBuf, message: String },
    #[error("{0}")]
    Failed(String),
}

impl StageError {
    pub fn failed(message: impl Into<String>) -> Self {
        StageError::Failed(message.into())
    }
}
