//! Plan -> run: execute stages in dependency order, independent ones in
//! parallel, committing each result atomically to the store.
//!
//! A node whose upstream reran is keyed again once the upstream's output
//! bytes exist; if that key is already cached the node is "cut off early"
//! (DICE-style equality): nothing downstream of an unchanged table reruns.

use crate::plan::{Facts, Plan, Status, input_hashes, pre_image};
use crate::spec::Spec;
use crate::store::{KeyLock, Manifest, NodeRecord, OutputRecord, Store};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tw_stages::api::{CachePolicy, Progress, RunCtx, StageError};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub jobs: usize,
    pub keep_going: bool,
    pub progress: bool,
}

/// How one node ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Cached,
    Ran,
    CutOff,
    Failed,
    /// Not run: an upstream failed, or the run stopped after a failure.
    NotRun,
    /// Not selected by `--only/--from/--to`.
    Unselected,
}

#[derive(Debug)]
pub struct NodeFailure {
    pub node: String,
    pub kind: String,
    pub error: String,
}

#[derive(Debug)]
pub struct RunReport {
    pub outcomes: Vec<Outcome>,
    /// Key and outputs of every node that is now in the cache.
    pub results: Vec<Option<(String, BTreeMap<String, OutputRecord>)>>,
    pub failures: Vec<NodeFailure>,
    pub wall: Duration,
}

impl RunReport {
    pub fn count(&self, outcome: Outcome) -> usize {
        self.outcomes.iter().filter(|o| **o == outcome).count()
    }

    pub fn summary_line(&self) -> String {
        let mut line = format!(
            "{} cached, {} ran, {} cut off early",
            self.count(Outcome::Cached),
            self.count(Outcome::Ran),
            self.count(Outcome::CutOff)
        );
        let failed = self.count(Outcome::Failed);
        if failed > 0 {
            line.push_str(&format!(
                ", {failed} failed, {} not run",
                self.count(Outcome::NotRun)
            ));
        }
        line.push_str(&format!("; wall time {:.2}s", self.wall.as_secs_f64()));
        line
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("stage `{node}` needs `{upstream}`, which is neither cached nor selected")]
    MissingUpstream { node: String, upstream: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot start worker threads: {0}")]
    Pool(String),
}

struct BarProgress(ProgressBar);

impl Progress for BarProgress {
    fn set_total(&self, total: u64) {
        self.0.set_length(total);
        self.0.set_style(
            ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
    }
    fn inc(&self, delta: u64) {
        self.0.inc(delta);
    }
    fn set_message(&self, message: &str) {
        self.0.set_message(message.to_string());
    }
}

enum Done {
    Ran {
        key: String,
        outputs: BTreeMap<String, OutputRecord>,
        seconds: f64,
    },
    /// Another process committed this key while we waited for its lock.
    FoundCached {
        key: String,
        outputs: BTreeMap<String, OutputRecord>,
    },
    Failed(String),
}

/// Test hook (fail-rs style): `TW_FAILPOINT=before_commit:<node>:exit|sleep`
/// makes the process die or hang after a stage wrote its outputs but before
/// the commit, to prove that nothing half-written becomes visible.
fn failpoint(node: &str) {
    let Ok(spec) = std::env::var("TW_FAILPOINT") else {
        return;
    };
    let mut parts = spec.splitn(3, ':');
    if parts.next() != Some("before_commit") || parts.next() != Some(node) {
        return;
    }
    match parts.next() {
        Some("sleep") => {
            eprintln!("tw: failpoint before_commit:{node}: sleeping");
            std::thread::sleep(Duration::from_secs(3600));
        }
        _ => std::process::exit(137),
    }
}

pub fn execute(
    spec: &Spec,
    store: &Store,
    plan: &Plan,
    facts: &Facts,
    options: &RunOptions,
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let nodes = spec.nodes();
    let n = nodes.len();
    let _ = store.clean_stale_staging();

    let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
    let mut results: Vec<Option<(String, BTreeMap<String, OutputRecord>)>> = vec![None; n];
    for (i, planned) in plan.nodes.iter().enumerate() {
        if !plan.selected[i] {
            outcomes[i] = Some(Outcome::Unselected);
            if let (Some(key), Some(m)) = (&planned.key, &planned.manifest) {
                results[i] = Some((key.clone(), m.outputs.clone()));
            }
        }
    }
    // A selected node may not depend on an unselected one that has no artifact.
    for (i, node) in nodes.iter().enumerate() {
        if !plan.selected[i] {
            continue;
        }
        for u in node.upstream() {
            if !plan.selected[u] && results[u].is_none() {
                return Err(RunError::MissingUpstream {
                    node: node.id.clone(),
                    upstream: nodes[u].id.clone(),
                });
            }
        }
    }

    let multi = MultiProgress::with_draw_target(if options.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let log = |line: String| {
        if multi.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = multi.println(line);
        }
    };
    let id_w = nodes.iter().map(|n| n.id.len()).max().unwrap_or(0);
    let kind_w = nodes.iter().map(|n| n.kind().len()).max().unwrap_or(0);

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.jobs.max(1))
        .build()
        .map_err(|e| RunError::Pool(e.to_string()))?;
    let (tx, rx) = mpsc::channel::<(usize, Done)>();
    let mut running = 0usize;
    let mut stop = false;
    let mut failures = Vec::new();

    pool.in_place_scope(|scope| {
        loop {
            // Launch every node whose upstream is done; settle cache hits inline.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for i in 0..n {
                    if outcomes[i].is_some() {
                        continue;
                    }
                    let ups = nodes[i].upstream();
                    if ups
                        .iter()
                        .any(|&u| matches!(outcomes[u], Some(Outcome::Failed | Outcome::NotRun)))
                    {
                        outcomes[i] = Some(Outcome::NotRun);
                        progressed = true;
                        continue;
                    }
                    if stop {
                        if ups.iter().all(|&u| results[u].is_some()) && running == 0 {
                            outcomes[i] = Some(Outcome::NotRun);
                            progressed = true;
                        }
                        continue;
                    }
                    if !ups.iter().all(|&u| results[u].is_some()) {
                        continue;
                    }
                    let node = &nodes[i];
                    let lookup = |u: usize| results[u].as_ref().map(|(_, o)| o);
                    let hashes =
                        input_hashes(node, &lookup).expect("upstream results are complete");
                    let pre = match pre_image(spec, node, hashes, facts) {
                        Ok(p) => p,
                        Err(d) => {
                            failures.push(NodeFailure {
                                node: node.id.clone(),
                                kind: node.kind().to_string(),
                                error: d.message,
                            });
                            outcomes[i] = Some(Outcome::Failed);
                            stop = !options.keep_going;
                            progressed = true;
                            continue;
                        }
                    };
                    let key = pre.key();
                    let forced = plan.forced[i];
                    let cacheable = node.cache_policy == CachePolicy::Store;
                    // The plan already read this key's manifest when it could key the node.
                    let planned = &plan.nodes[i];
                    let known = planned
                        .manifest
                        .as_ref()
                        .filter(|_| planned.key.as_deref() == Some(key.as_str()))
                        .cloned();
                    if !forced
                        && cacheable
                        && let Some(m) = known.or_else(|| store.lookup(&key))
                    {
                        let outcome = if plan.nodes[i].status == Status::After {
                            log(format!(
                                "  cut off {:<id_w$}  {:<kind_w$}  (upstream output unchanged)",
                                node.id,
                                node.kind()
                            ));
                            Outcome::CutOff
                        } else {
                            Outcome::Cached
                        };
                        record_node(store, spec, &node.id, &key, pre);
                        results[i] = Some((key, m.outputs));
                        outcomes[i] = Some(outcome);
                        progressed = true;
                        continue;
                    }
                    // Run it on the pool.
                    outcomes[i] = Some(Outcome::Ran); // provisional: running
                    running += 1;
                    progressed = true;
                    let input_paths: BTreeMap<String, Vec<PathBuf>> = node
                        .inputs
                        .iter()
                        .map(|input| {
                            let paths = input
                                .sources
                                .iter()
                                .map(|s| {
                                    let (ukey, outs) =
                                        results[s.node].as_ref().expect("upstream done");
                                    store.output_path(ukey, &outs[&s.output])
                                })
                                .collect();
                            (input.slot.clone(), paths)
                        })
                        .collect();
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_prefix(node.id.clone());
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:>20} {spinner} {elapsed} {msg}")
                            .expect("valid template"),
                    );
                    bar.enable_steady_tick(Duration::from_millis(200));
                    let tx = tx.clone();
                    scope.spawn(move |_| {
                        let done = run_node(spec, store, i, key, pre, forced, input_paths, &bar);
                        bar.finish_and_clear();
                        let _ = tx.send((i, done));
                    });
                }
            }
            if running == 0 {
                break;
            }
            let Ok((i, done)) = rx.recv() else { break };
            running -= 1;
            let node = &nodes[i];
            match done {
                Done::Ran {
                    key,
                    outputs,
                    seconds,
                } => {
                    let rows: usize = outputs.values().map(|o| o.rows).sum();
                    log(format!(
                        "  ran     {:<id_w$}  {:<kind_w$}  {seconds:.2}s  {rows} rows",
                        node.id,
                        node.kind()
                    ));
                    results[i] = Some((key, outputs));
                    outcomes[i] = Some(Outcome::Ran);
                }
                Done::FoundCached { key, outputs } => {
                    results[i] = Some((key, outputs));
                    outcomes[i] = Some(Outcome::Cached);
                }
                Done::Failed(error) => {
                    log(format!(
                        "  FAILED  {:<id_w$}  {:<kind_w$}  {error}",
                        node.id,
                        node.kind()
                    ));
                    failures.push(NodeFailure {
                        node: node.id.clone(),
                        kind: node.kind().to_string(),
                        error,
                    });
                    outcomes[i] = Some(Outcome::Failed);
                    if !options.keep_going {
                        stop = true;
                    }
                }
            }
        }
    });
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::NotRun))
        .collect();
    Ok(RunReport {
        outcomes,
        results,
        failures,
        wall: started.elapsed(),
    })
}

#[allow(clippy::too_many_arguments)]
fn run_node(
    spec: &Spec,
    store: &Store,
    i: usize,
    key: String,
    pre: crate::key::PreImage,
    forced: bool,
    input_paths: BTreeMap<String, Vec<PathBuf>>,
    bar: &ProgressBar,
) -> Done {
    let node = &spec.nodes()[i];
    let _lock: KeyLock = match store.lock(&key) {
        Ok(l) => l,
        Err(e) => return Done::Failed(format!("cannot lock the cache: {e}")),
    };
    if !forced
        && node.cache_policy == CachePolicy::Store
        && let Some(m) = store.lookup(&key)
    {
        return Done::FoundCached {
            key,
            outputs: m.outputs,
        };
    }
    let staging = match store.begin() {
        Ok(s) => s,
        Err(e) => return Done::Failed(format!("cannot create a staging directory: {e}")),
    };
    let started = Instant::now();
    let progress = BarProgress(bar.clone());
    let mut ctx = RunCtx::new(
        &node.id,
        &spec.base_dir,
        input_paths,
        &staging.dir,
        &progress,
    )
    .with_ledger_dir(store.root().join("ledger"))
    .with_input_origins(crate::plan::input_origins(spec, node));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        node.stage_impl.run(&node.params, &mut ctx)
    }));
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Done::Failed(describe(&e)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            return Done::Failed(format!("internal error: the stage panicked: {message}"));
        }
    }
    let (written, notes) = ctx.into_parts();
    let mut outputs = BTreeMap::new();
    for name in &node.outputs {
        let Some(w) = written.get(name) else {
            return Done::Failed(format!(
                "internal error: the stage did not write its output `{name}`"
            ));
        };
        let hash = match tw_stages::artifact::hash_file(&w.path) {
            Ok(h) => h,
            Err(e) => return Done::Failed(e.to_string()),
        };
        let bytes = fs_err::metadata(&w.path).map(|m| m.len()).unwrap_or(0);
        outputs.insert(
            name.clone(),
            OutputRecord {
                file: format!("{name}.parquet"),
                hash,
                rows: w.rows,
                bytes,
                columns: w.columns.clone(),
            },
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let manifest = Manifest {
        key: key.clone(),
        pre_image: pre.clone(),
        kind: node.kind().to_string(),
        node: node.id.clone(),
        experiment: spec.experiment().to_string(),
        spec: spec.path.display().to_string(),
        outputs: outputs.clone(),
        notes,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        wall_seconds: seconds,
        tool: format!("tw {}", env!("CARGO_PKG_VERSION")),
    };
    failpoint(&node.id);
    if let Err(e) = store.commit(staging, &manifest) {
        return Done::Failed(format!("cannot store the result: {e}"));
    }
    record_node(store, spec, &node.id, &key, pre);
    Done::Ran {
        key,
        outputs,
        seconds,
    }
}

/// Remember the pre-image a node last ran or hit the cache with: `tw plan`
/// diffs against it to say why the node reruns. Best effort: a failure here
/// only costs a less precise reason later.
fn record_node(store: &Store, spec: &Spec, node: &str, key: &str, pre_image: crate::key::PreImage) {
    let _ = store.write_node_record(
        spec.experiment(),
        &NodeRecord {
            node: node.to_string(),
            key: key.to_string(),
            pre_image,
        },
    );
}

fn describe(e: &StageError) -> String {
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
