//! `tw gc`: remove cached artifacts that none of the given specs uses (a
//! sharded node's shards are kept with it).

use super::common::{Failure, load_spec, make_plan, open_store};
use crate::plan::{Facts, Selection};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
pub fn run(
    cache_dir: &Path,
    specs: &[PathBuf],
    dry_run: bool,
    stdout: &mut dyn Write,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::runtime(format!("error: {e}"));
    let store = open_store(cache_dir)?;
    let mut keep = BTreeSet::new();
    for path in specs {
        let spec = load_spec(path)?;
        let plan = make_plan(&spec, &store, &Selection::default(), &Facts::default())?;
        for planned in &plan.nodes {
            let (Some(key), Some(manifest)) = (&planned.key, &planned.manifest) else {
                continue;
            };
            keep.insert(key.clone());
            // A sharded node's shards: kept so a rerun after new rows runs only new shards.
            if let Some(parts) = manifest.notes.get("shard_keys").and_then(|k| k.as_array()) {
                keep.extend(parts.iter().filter_map(|k| k.as_str().map(String::from)));
            }
        }
    }
    let report = store
        .gc(&keep, dry_run)
        .map_err(|e| Failure::runtime(format!("error: {e}")))?;
    writeln!(
        stdout,
        "{} {} artifact{} ({:.1} MiB), kept {}{}",
        if dry_run { "would remove" } else { "removed" },
        report.removed,
        if report.removed == 1 { "" } else { "s" },
        report.bytes as f64 / (1024.0 * 1024.0),
        report.kept,
        if report.stale_staging > 0 {
            format!(
                ", cleaned {} interrupted staging dirs",
                report.stale_staging
            )
        } else {
            String::new()
        }
    )
    .map_err(io)
}
