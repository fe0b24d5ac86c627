//! Shared plumbing for the polars-backed relational kinds (`filter`, `select`,
//! `sample`, `join`, `concat`): artifacts in, a polars `DataFrame` in the
//! middle, and back out through the deterministic artifact writer so that equal
//! tables still give equal bytes.

use crate::api::artifact;
use crate::api::{RunCtx, StageError};
use polars::prelude::*;

pub(crate) fn polars_error(e: PolarsError) -> StageError {
    StageError::failed(format!("polars: {e}"))
}

/// Read the artifact bound to a `One` slot as a polars frame.
pub(crate) fn read_frame(ctx: &RunCtx<'_>, slot: &str) -> Result<DataFrame, StageError> {
    match ctx.input_paths(slot) {
        [one] => read_path(one),
        other => Err(StageError::BadInput {
            slot: slot.into(),
            message: format!("expected one artifact, got {}", other.len()),
        }),
    }
}

pub(crate) fn read_frames(ctx: &RunCtx<'_>, slot: &str) -> Result<Vec<DataFrame>, StageError> {
    ctx.input_paths(slot).iter().map(|p| read_path(p)).collect()
}

fn read_path(path: &std::path::Path) -> Result<DataFrame, StageError> {
    let file = fs_err::File::open(path)?.into_parts().0;
    ParquetReader::new(file).finish().map_err(polars_error)
}

/// Write `frame` as output `slot`, normalised to the artifact conventions.
pub(crate) fn write_frame(
    ctx: &mut RunCtx<'_>,
    slot: &str,
    frame: &mut DataFrame,
) -> Result<(), StageError> {
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .finish(frame)
        .map_err(polars_error)?;
    let table = artifact::normalize(artifact::read_table_bytes(bytes)?)?;
    ctx.write_output(slot, &table)
}

/// Column names a stage refers to must exist; say which one did not, and what did.
pub(crate) fn require_columns(
    frame: &DataFrame,
    slot: &str,
    wanted: &[String],
) -> Result<(), StageError> {
    let have: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    for name in wanted {
        if !have.contains(name) {
            return Err(StageError::BadInput {
                slot: slot.into(),
                message: format!("no column `{name}` (columns: {})", have.join(", ")),
            });
        }
    }
    Ok(())
}
