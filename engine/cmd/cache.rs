//! `tw cache verify`: re-hash every artifact against its manifest.

use super::common::{Failure, open_store};
use std::io::Write;
use std::path::Path;
pub fn verify(
    cache_dir: &Path,
    delete_corrupt: bool,
    stdout: &mut dyn Write,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::runtime(format!("error: {e}"));
    let store = open_store(cache_dir)?;
    let report = store
        .verify()
        .map_err(|e| Failure::runtime(format!("error: {e}")))?;
    for (key, problem) in &report.corrupt {
        writeln!(stdout, "corrupt {}: {problem}", &key[..key.len().min(12)]).map_err(io)?;
        if delete_corrupt {
            store
                .remove_object(key)
                .map_err(|e| Failure::runtime(format!("error: {e}")))?;
        }
    }
    writeln!(
        stdout,
        "{} artifacts ok, {} corrupt{}",
        report.ok,
        report.corrupt.len(),
        if delete_corrupt && !report.corrupt.is_empty() {
            " (removed)"
        } else {
            ""
        }
    )
    .map_err(io)?;
    if report.corrupt.is_empty() || delete_corrupt {
        Ok(())
    } else {
        Err(Failure::runtime(
            "error: the cache has corrupt artifacts; `tw cache verify --delete-corrupt` removes them",
        ))
    }
}
