//! The cache store: content-addressed, versioned, written atomically.
//!
//! ```text
//! cache/v1/obj/<k[0..2]>/<key>/manifest.json   key pre-image, stage, spec, rows, timings
//! cache/v1/obj/<k[0..2]>/<key>/<output>.parquet one file per output
//! cache/v1/nodes/<experiment>/<node>.json       last pre-image per node (for `tw plan` reasons)
//! cache/v1/tmp/<pid>-<n>/                       staging; renamed into obj/ on success
//! cache/v1/locks/<key>.lock                     one writer per key across processes
//! ```
//!
//! A stage writes into a staging directory; only after every output is hashed
//! and the manifest written is the directory renamed into `obj/`. A crash or
//! Ctrl-C mid-stage leaves only a staging directory, which no lookup sees and
//! the next run or `tw gc` removes. Two processes racing on one key: the
//! per-key lock makes the second wait and then find the first's result.

use crate::plan::PreImage;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tw_stages::api::artifact;
use tw_stages::api::fsutil::{hostname, write_atomic, write_synced};

pub const LAYOUT: &str = "v1";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{}: corrupt manifest: {message}", path.display())]
    BadManifest { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputRecord {
    pub file: String,
    pub hash: String,
    pub rows: usize,
    pub bytes: u64,
    pub columns: Vec<String>,
}

impl OutputRecord {
    /// The record of output `name`, written to `path` with `rows` rows.
    pub fn for_file(
        name: &str,
        path: &Path,
        rows: usize,
        columns: Vec<String>,
    ) -> Result<Self, std::io::Error> {
        Ok(OutputRecord {
            file: format!("{name}.parquet"),
            hash: artifact::hash_file(path)?,
            rows,
            bytes: fs_err::metadata(path)?.len(),
            columns,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub key: String,
    pub pre_image: PreImage,
    pub kind: String,
    /// The node that first produced this artifact (others may share it).
    pub node: String,
    pub experiment: String,
    pub spec: String,
    pub outputs: BTreeMap<String, OutputRecord>,
    #[serde(default)]
    pub notes: BTreeMap<String, serde_json::Value>,
    pub created_unix: u64,
    pub wall_seconds: f64,
    /// CPU seconds (user + system) of `tw`'s process and the children it
    /// reaped (the sandbox's workers, LLaMA-Factory) while the unit ran;
    /// `None` where `/proc` is not there.
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    /// Other units ran in the same process at the same time, so
    /// `cpu_seconds` includes theirs (an upper bound).
    #[serde(default)]
    pub cpu_overlapped: bool,
    pub tool: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeRecord {
    pub node: String,
    pub key: String,
    pub pre_image: PreImage,
}

pub struct Store {
    root: PathBuf,
    base: PathBuf,
}

/// A staging directory; dropped without commit, it is removed.
pub struct Staging {
    pub dir: PathBuf,
    committed: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs_err::remove_dir_all(&self.dir);
        }
    }
}

/// An exclusive lock on one key, released on drop.
pub struct KeyLock {
    _file: std::fs::File,
}

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let base = root.join(LAYOUT);
        for sub in ["obj", "tmp", "nodes", "locks"] {
            fs_err::create_dir_all(base.join(sub))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
            base,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where every LLM completion is kept (`<cache>/ledger`): outside the
    /// versioned layout, since completions outlive any key recipe, and never
    /// touched by `tw gc`.
    pub fn ledger_dir(&self) -> PathBuf {
        self.root.join("ledger")
    }

    /// A fresh directory for one Slurm job of `stage` (its scripts, task
    /// files and logs): `v1/slurm/<stage>-<time>-<pid>`.
    pub fn slurm_job_dir(&self, stage: &str) -> Result<PathBuf, StoreError> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let dir = self
            .base
            .join("slurm")
            .join(format!("{stage}-{stamp}-{}", std::process::id()));
        fs_err::create_dir_all(&dir)?;
        Ok(dir)
    }

    pub fn object_dir(&self, key: &str) -> PathBuf {
        self.base.join("obj").join(&key[..2]).join(key)
    }

    /// The manifest of `key` if its object is complete (every output file present with its size).
    pub fn lookup(&self, key: &str) -> Option<Manifest> {
        let dir = self.object_dir(key);
        let text = fs_err::read_to_string(dir.join("manifest.json")).ok()?;
        let manifest: Manifest = serde_json::from_str(&text).ok()?;
        let complete = manifest.outputs.values().all(|o| {
            fs_err::metadata(dir.join(&o.file))
                .map(|m| m.len() == o.bytes)
                .unwrap_or(false)
        });
        complete.then_some(manifest)
    }

    /// Store a sharded node's chunk under its content hash; returns the hash
    /// and the path. Chunks are cheap to recut, so `gc` drops them all.
    pub fn put_chunk(
        &self,
        table: &arrow::array::RecordBatch,
    ) -> Result<(String, PathBuf), StoreError> {
        let bytes = artifact::table_to_bytes(table)
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let dir = self.base.join("chunks");
        fs_err::create_dir_all(&dir)?;
        let path = dir.join(format!("{hash}.parquet"));
        let complete = fs_err::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64);
        if !complete {
            write_atomic(&path, &bytes)?;
        }
        Ok((hash, path))
    }

    pub fn output_path(&self, key: &str, record: &OutputRecord) -> PathBuf {
        self.object_dir(key).join(&record.file)
    }

    pub fn begin(&self) -> Result<Staging, StoreError> {
        let n = STAGING_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .base
            .join("tmp")
            .join(format!("{}-{n}-{}", std::process::id(), hostname()));
        if dir.exists() {
            fs_err::remove_dir_all(&dir)?;
        }
        fs_err::create_dir_all(&dir)?;
        Ok(Staging {
            dir,
            committed: false,
        })
    }

    /// Write the manifest into the staging dir and move it into place atomically.
    /// If another process committed the same key meanwhile, keep theirs.
    pub fn commit(&self, mut staging: Staging, manifest: &Manifest) -> Result<(), StoreError> {
        let text = serde_json::to_string_pretty(manifest).expect("manifest is plain data");
        write_synced(&staging.dir.join("manifest.json"), text.as_bytes())?;
        let target = self.object_dir(&manifest.key);
        fs_err::create_dir_all(target.parent().expect("object dir has a parent"))?;
        if self.lookup(&manifest.key).is_some() {
            return Ok(());
        }
        if target.exists() {
            // A damaged object (missing files): replace it.
            fs_err::remove_dir_all(&target)?;
        }
        match fs_err::rename(&staging.dir, &target) {
            Ok(()) => {
                staging.committed = true;
                Ok(())
            }
            Err(_) if self.lookup(&manifest.key).is_some() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn lock(&self, key: &str) -> Result<KeyLock, StoreError> {
        let path = self.base.join("locks").join(format!("{key}.lock"));
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        let file = file.into_parts().0;
        file.lock()?;
        Ok(KeyLock { _file: file })
    }

    fn node_path(&self, experiment: &str, node: &str) -> PathBuf {
        self.base
            .join("nodes")
            .join(sanitize(experiment))
            .join(format!("{}.json", sanitize(node)))
    }

    pub fn node_record(&self, experiment: &str, node: &str) -> Option<NodeRecord> {
        let text = fs_err::read_to_string(self.node_path(experiment, node)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn write_node_record(
        &self,
        experiment: &str,
        record: &NodeRecord,
    ) -> Result<(), StoreError> {
        if self.node_record(experiment, &record.node).as_ref() == Some(record) {
            return Ok(());
        }
        let path = self.node_path(experiment, &record.node);
        fs_err::create_dir_all(path.parent().expect("node record has a parent"))?;
        let text = serde_json::to_string_pretty(record).expect("record is plain data");
        write_atomic(&path, text.as_bytes())?;
        Ok(())
    }

    /// Every complete or damaged object key in the store.
    pub fn object_keys(&self) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        for shard in fs_err::read_dir(self.base.join("obj"))? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in fs_err::read_dir(shard.path())? {
                let entry = entry?;
                keys.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Re-hash every artifact against its manifest.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        for key in self.object_keys()? {
            let dir = self.object_dir(&key);
            let manifest_path = dir.join("manifest.json");
            let manifest: Manifest = match fs_err::read_to_string(&manifest_path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            {
                Ok(m) => m,
                Err(e) => {
                    report
                        .corrupt
                        .push((key, format!("manifest unreadable: {e}")));
                    continue;
                }
            };
            if manifest.key != key || manifest.pre_image.key() != key {
                report
                    .corrupt
                    .push((key, "manifest does not match its key".to_string()));
                continue;
            }
            let mut problems = Vec::new();
            for (name, output) in &manifest.outputs {
                let path = dir.join(&output.file);
                match artifact::hash_file(&path) {
                    Ok(h) if h == output.hash => {}
                    Ok(h) => problems.push(format!(
                        "output `{name}` hash {} != recorded {}",
                        &h[..12],
                        &output.hash[..12]
                    )),
                    Err(e) => problems.push(format!("output `{name}`: {e}")),
                }
            }
            if problems.is_empty() {
                report.ok += 1;
            } else {
                report.corrupt.push((key, problems.join("; ")));
            }
        }
        Ok(report)
    }

    pub fn remove_object(&self, key: &str) -> Result<u64, StoreError> {
        let dir = self.object_dir(key);
        let bytes = dir_size(&dir);
        fs_err::remove_dir_all(&dir)?;
        Ok(bytes)
    }

    /// Remove every object not in `keep`, and staging dirs of dead processes.
    pub fn gc(&self, keep: &BTreeSet<String>, dry_run: bool) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        for key in self.object_keys()? {
            if keep.contains(&key) {
                report.kept += 1;
                continue;
            }
            report.removed += 1;
            if dry_run {
                report.bytes += dir_size(&self.object_dir(&key));
            } else {
                report.bytes += self.remove_object(&key)?;
            }
        }
        if !dry_run {
            report.stale_staging = self.clean_stale_staging()?;
            let chunks = self.base.join("chunks");
            if chunks.exists() {
                report.bytes += dir_size(&chunks);
                fs_err::remove_dir_all(&chunks)?;
            }
        }
        Ok(report)
    }

    /// Staging dirs left by processes that are gone (crash, kill -9).
    pub fn clean_stale_staging(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        for entry in fs_err::read_dir(self.base.join("tmp"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut fields = name.splitn(3, '-');
            let pid = fields.next().and_then(|p| p.parse::<u32>().ok());
            let host = fields.nth(1);
            // Another machine's worker (a cluster job on the shared cache) is
            // judged by age alone: its pid means nothing here.
            let alive = if host.is_some_and(|h| h != hostname()) {
                let age = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok());
                age.is_none_or(|a| a < std::time::Duration::from_secs(2 * 24 * 3600))
            } else {
                pid.is_some_and(|p| {
                    p == std::process::id() || Path::new(&format!("/proc/{p}")).exists()
                })
            };
            if !alive {
                fs_err::remove_dir_all(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub ok: usize,
    pub corrupt: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub struct GcReport {
    pub kept: usize,
    pub removed: usize,
    pub bytes: u64,
    pub stale_staging: usize,
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// File names for node ids like `train[seed=0,lr=0.1]`: readable, collision-free.
fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == name {
        clean
    } else {
        let h = blake3::hash(name.as_bytes()).to_hex();
        format!("{clean}-{}", &h[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_plain_names_and_disambiguates_others() {
        assert_eq!(sanitize("load_1"), "load_1");
        let a = sanitize("train[seed=0]");
        assert!(a.starts_with("train_seed_0_-"));
        assert_ne!(a, sanitize("train[seed_0]"));
    }

    #[test]
    fn uncommitted_staging_is_removed_and_stale_dirs_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let staging = store.begin().unwrap();
        let path = staging.dir.clone();
        fs_err::write(path.join("x"), "y").unwrap();
        drop(staging);
        assert!(!path.exists());
        // a dir left by a dead process (pid 0 never names a live user process dir here)
        let dead = dir.path().join("v1/tmp/999999999-0");
        fs_err::create_dir_all(&dead).unwrap();
        assert_eq!(store.clean_stale_staging().unwrap(), 1);
        assert!(!dead.exists());
    }
}
