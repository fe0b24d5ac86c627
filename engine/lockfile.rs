//! `<spec>.lock`: the record a paper reader needs to check a reproduction.
//!
//! Written beside the spec after every `tw run`: for each stage instance its
//! kind, cache key and output content hashes. It has no timestamps, so an
//! identical rerun leaves it byte-for-byte unchanged and `git diff` shows
//! exactly which results moved.

use crate::run::RunReport;
use crate::spec::Spec;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tw_stages::api::fsutil;

#[derive(Serialize)]
struct LockFile<'a> {
    tw: &'static str,
    experiment: &'a str,
    /// False when some stage did not finish (failure, `--only`).
    complete: bool,
    stages: BTreeMap<&'a str, LockedStage<'a>>,
}

#[derive(Serialize)]
struct LockedStage<'a> {
    kind: &'a str,
    key: &'a str,
    outputs: BTreeMap<&'a str, LockedOutput<'a>>,
}

#[derive(Serialize)]
struct LockedOutput<'a> {
    hash: &'a str,
    rows: usize,
}

/// `specs/rq1.yaml` -> `specs/rq1.yaml.lock`.
pub fn path_for(spec: &Spec) -> PathBuf {
    let mut name = spec.path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    spec.path.with_file_name(name)
}

pub fn write(spec: &Spec, report: &RunReport) -> std::io::Result<PathBuf> {
    let mut stages = BTreeMap::new();
    for (node, result) in spec.nodes().iter().zip(&report.results) {
        if let Some((key, outputs)) = result {
            stages.insert(
                node.id.as_str(),
                LockedStage {
                    kind: node.kind(),
                    key,
                    outputs: outputs
                        .iter()
                        .map(|(name, o)| {
                            (
                                name.as_str(),
                                LockedOutput {
                                    hash: &o.hash,
                                    rows: o.rows,
                                },
                            )
                        })
                        .collect(),
                },
            );
        }
    }
    let lock = LockFile {
        tw: env!("CARGO_PKG_VERSION"),
        experiment: spec.experiment(),
        complete: stages.len() == spec.nodes().len(),
        stages,
    };
    let mut text = serde_json::to_string_pretty(&lock).expect("lock is plain data");
    text.push('\n');
    let path = path_for(spec);
    if fs_err::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        fsutil::write_atomic(&path, text.as_bytes())?;
    }
    Ok(path)
}
