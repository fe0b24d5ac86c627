//! The one way a result gets into the cache. [`cached`] is the cache-hit
//! test (forced stages and kinds that store nothing never hit);
//! [`cached_or_commit`] takes the key's lock, tests again (another process may
//! have committed meanwhile), has the caller produce the outputs in a staging
//! directory, writes the manifest, commits atomically and records the node for
//! `tw plan`'s reasons. A plain stage run in this process or by a Slurm task,
//! one shard, and a sharded node's gathered output all go through it.

use super::unit::{Unit, UnitDone};
use crate::plan::PreImage;
use crate::spec::Spec;
use crate::store::{Manifest, NodeRecord, OutputRecord, Store};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tw_stages::api::{CachePolicy, StageError};

/// What a producer wrote into the staging directory.
pub struct Produced {
    pub outputs: BTreeMap<String, OutputRecord>,
    pub notes: BTreeMap<String, serde_json::Value>,
}

/// The manifest under `key` when the cache may answer for it: not when the
/// node is forced or its kind stores nothing. `known` is a manifest already
/// read for this key (the plan read it), saving a second read.
pub fn cached(
    store: &Store,
    key: &str,
    policy: CachePolicy,
    forced: bool,
    known: Option<Manifest>,
) -> Option<Manifest> {
    if forced || policy != CachePolicy::Store {
        return None;
    }
    known.or_else(|| store.lookup(key))
}

/// `unit`'s result from the cache, or produced now by `produce` (given the
/// staging directory) and committed under the unit's key.
pub fn cached_or_commit(
    store: &Store,
    spec: &Spec,
    node_index: usize,
    unit: &Unit,
    produce: impl FnOnce(&Path) -> Result<Produced, String>,
) -> Result<UnitDone, String> {
    let node = &spec.nodes()[node_index];
    let _lock = store
        .lock(&unit.key)
        .map_err(|e| format!("cannot lock the cache: {e}"))?;
    if let Some(m) = cached(store, &unit.key, node.cache_policy, unit.forced, None) {
        return Ok(UnitDone {
            outputs: m.outputs,
            notes: m.notes,
            seconds: 0.0,
            cached: true,
        });
    }
    let staging = store
        .begin()
        .map_err(|e| format!("cannot create a staging directory: {e}"))?;
    let started = Instant::now();
    let cpu = CpuWindow::open();
    let produced = produce(&staging.dir);
    let (cpu_seconds, cpu_overlapped) = cpu.close();
    let produced = produced?;
    let seconds = started.elapsed().as_secs_f64();
    let mut manifest = manifest(
        spec,
        node_index,
        unit,
        produced.outputs.clone(),
        produced.notes.clone(),
        seconds,
    );
    manifest.cpu_seconds = cpu_seconds;
    manifest.cpu_overlapped = cpu_overlapped;
    failpoint(&unit.label());
    store
        .commit(staging, &manifest)
        .map_err(|e| format!("cannot store the result: {e}"))?;
    if unit.shard.is_none() {
        record_node(store, spec, &node.id, &unit.key, unit.pre_image.clone());
    }
    Ok(UnitDone {
        outputs: produced.outputs,
        notes: produced.notes,
        seconds,
        cached: false,
    })
}

/// Units running in this process now, and units started so far: a unit
/// that saw another start or run beside it shares its CPU figure.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// The CPU time of one unit's run, measured on the process.
struct CpuWindow {
    cpu: Option<f64>,
    alone_at_start: bool,
    started: usize,
}

impl CpuWindow {
    fn open() -> CpuWindow {
        let alone_at_start = RUNNING.fetch_add(1, Ordering::SeqCst) == 0;
        let started = STARTED.fetch_add(1, Ordering::SeqCst) + 1;
        CpuWindow {
            cpu: process_cpu_seconds(),
            alone_at_start,
            started,
        }
    }

    /// CPU seconds used since `open`, and whether another unit overlapped.
    fn close(self) -> (Option<f64>, bool) {
        let used = match (self.cpu, process_cpu_seconds()) {
            (Some(a), Some(b)) => Some(((b - a) * 100.0).round() / 100.0),
            _ => None,
        };
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        let overlapped = !self.alone_at_start || STARTED.load(Ordering::SeqCst) != self.started;
        (used, overlapped)
    }
}

/// User + system seconds of this process and its reaped children, from
/// `/proc/self/stat` (fields 14-17, in USER_HZ ticks: 100 per second on Linux).
fn process_cpu_seconds() -> Option<f64> {
    let stat = fs_err::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields resume after its `)`.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some(ticks as f64 / 100.0)
}

/// Test hook (fail-rs style): `TW_FAILPOINT=before_commit:<unit>:exit|sleep`
/// makes the process die or hang after a stage (or one shard, `<node> shard
/// <k>`) wrote its outputs but before the commit, to prove that nothing
/// half-written becomes visible. `exit_once=<file>` dies only while `<file>`
/// does not exist (and creates it), to prove a failed shard is retried.
fn failpoint(unit: &str) {
    let Ok(spec) = std::env::var("TW_FAILPOINT") else {
        return;
    };
    let mut parts = spec.splitn(3, ':');
    if parts.next() != Some("before_commit") || parts.next() != Some(unit) {
        return;
    }
    match parts.next() {
        Some("sleep") => {
            eprintln!("tw: failpoint before_commit:{unit}: sleeping");
            std::thread::sleep(Duration::from_secs(3600));
        }
        Some(action) if action.starts_with("exit_once=") => {
            let marker = &action["exit_once=".len()..];
            if std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(marker)
                .is_ok()
            {
                eprintln!("tw: failpoint before_commit:{unit}: exiting once");
                std::process::exit(137);
            }
        }
        _ => {
            eprintln!("tw: failpoint before_commit:{unit}: exiting");
            std::process::exit(137)
        }
    }
}

fn manifest(
    spec: &Spec,
    node_index: usize,
    unit: &Unit,
    outputs: BTreeMap<String, OutputRecord>,
    notes: BTreeMap<String, serde_json::Value>,
    seconds: f64,
) -> Manifest {
    let node = &spec.nodes()[node_index];
    Manifest {
        key: unit.key.clone(),
        pre_image: unit.pre_image.clone(),
        kind: node.kind().to_string(),
        node: match unit.shard {
            Some(k) => format!("{}#{k}", node.id),
            None => node.id.clone(),
        },
        experiment: spec.experiment().to_string(),
        spec: spec.path.display().to_string(),
        outputs,
        notes,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        wall_seconds: seconds,
        cpu_seconds: None,
        cpu_overlapped: false,
        tool: format!("tw {}", env!("CARGO_PKG_VERSION")),
    }
}

/// Remember the pre-image a node last ran or hit the cache with: `tw plan`
/// diffs against it to say why the node reruns. Best effort: a failure here
/// only costs a less precise reason later.
pub fn record_node(store: &Store, spec: &Spec, node: &str, key: &str, pre_image: PreImage) {
    let _ = store.write_node_record(
        spec.experiment(),
        &NodeRecord {
            node: node.to_string(),
            key: key.to_string(),
            pre_image,
        },
    );
}

pub fn describe(e: &StageError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
