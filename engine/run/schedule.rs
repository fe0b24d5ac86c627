//! Plan -> run: execute stages in dependency order, independent ones in
//! parallel, committing each result atomically to the store.
//!
//! A node whose upstream reran is keyed again once the upstream's output
//! bytes exist; if that key is already cached the node is "cut off early"
//! (DICE-style equality): nothing downstream of an unchanged table reruns.
//!
//! Each node to run goes to the [`Executor`] as units: itself, or for a
//! `shard:` node its uncached shards ([`super::shard`]), whose outputs this
//! process then gathers and commits under the node's key.

use super::commit::{cached, record_node};
use super::executor::Executor;
use super::shard;
use super::unit::Unit;
use crate::plan::{Facts, Plan, PreImage, Status, input_hashes, pre_image};
use crate::spec::Spec;
use crate::store::{OutputRecord, Store};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tw_stages::api::Progress;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub jobs: usize,
    pub keep_going: bool,
    pub progress: bool,
    /// Where units run: this process, or Slurm jobs on the shared cache.
    pub executor: Executor,
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
        /// (shards, shards run now) for a sharded node.
        shards: Option<(usize, usize)>,
    },
    /// Another process committed this key while we waited for its lock.
    FoundCached {
        key: String,
        outputs: BTreeMap<String, OutputRecord>,
    },
    Failed(String),
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
                    let hash_of = |u: usize, output: &str| {
                        results[u].as_ref()?.1.get(output).map(|r| r.hash.clone())
                    };
                    let hashes =
                        input_hashes(node, &hash_of).expect("upstream results are complete");
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
                    // The plan already read this key's manifest when it could key the node.
                    let planned = &plan.nodes[i];
                    let known = planned
                        .manifest
                        .as_ref()
                        .filter(|_| planned.key.as_deref() == Some(key.as_str()))
                        .cloned();
                    if let Some(m) = cached(store, &key, node.cache_policy, forced, known) {
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
                    let log = &log;
                    scope.spawn(move |_| {
                        let done = run_node(
                            spec,
                            store,
                            i,
                            key,
                            pre,
                            forced,
                            input_paths,
                            &bar,
                            &options.executor,
                            log,
                        );
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
                    shards,
                } => {
                    let rows: usize = outputs.values().map(|o| o.rows).sum();
                    let shards = shards
                        .map(|(n, ran)| format!("  ({ran} of {n} shards ran)"))
                        .unwrap_or_default();
                    log(format!(
                        "  ran     {:<id_w$}  {:<kind_w$}  {seconds:.2}s  {rows} rows{shards}",
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

/// Run one node with `executor`: a plain node is one unit; a sharded node
/// is split, its uncached shards run, and their outputs are gathered into
/// the node's artifact.
#[allow(clippy::too_many_arguments)]
fn run_node(
    spec: &Spec,
    store: &Store,
    i: usize,
    key: String,
    pre: PreImage,
    forced: bool,
    input_paths: BTreeMap<String, Vec<PathBuf>>,
    bar: &ProgressBar,
    executor: &Executor,
    log: &(dyn Fn(String) + Sync),
) -> Done {
    let node = &spec.nodes()[i];
    let progress = BarProgress(bar.clone());
    let unit = Unit {
        node: node.id.clone(),
        shard: None,
        key,
        pre_image: pre,
        inputs: input_paths,
        row_offset: 0,
        forced,
    };
    let result = match &node.shard {
        // Whoever runs the unit records the node for `tw plan`'s reasons.
        None => executor
            .run_units(spec, store, i, std::slice::from_ref(&unit), &progress, log)
            .pop()
            .expect("one result per unit")
            .map(|done| (done, None)),
        Some(shard) => shard::run_sharded(spec, store, i, &unit, shard, executor, &progress, log),
    };
    match result {
        Ok((done, _)) if done.cached => Done::FoundCached {
            key: unit.key,
            outputs: done.outputs,
        },
        Ok((done, shards)) => Done::Ran {
            key: unit.key,
            outputs: done.outputs,
            seconds: done.seconds,
            shards,
        },
        Err(e) => Done::Failed(e),
    }
}
