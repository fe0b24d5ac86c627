//! Validated spec -> plan: the DAG of stage instances, each with its cache key
//! (where it can be known before running) and a status saying what will run
//! and *why*.
//!
//! A node's key needs the content hashes of its inputs, so it is known only
//! when every upstream node is cached. A node downstream of one that will run
//! is `after`: whether it really reruns is decided once the upstream's output
//! bytes exist (equal bytes cut it off early).

use super::key::{Facts, PreImage, input_hashes, pre_image};
use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::spec::{Spec, resolve::span_at};
use crate::store::{Manifest, OutputRecord, Store};
use serde::Serialize;
use std::collections::BTreeMap;
use tw_stages::api::CachePolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The artifact for this exact key is in the cache.
    Cached,
    /// Will run: reasons say why.
    Run,
    /// Will run because `--force` names it.
    Forced,
    /// Waits for an upstream that runs; reruns unless its output bytes are unchanged.
    After,
    /// Not selected by `--only/--from/--to`.
    Skipped,
    /// Reads files that do not exist, or waits for a stage that does
    /// (`tw plan --allow-missing`); `tw run` refuses such a plan.
    Missing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Cached => "cached",
            Status::Run => "run",
            Status::Forced => "forced",
            Status::After => "after",
            Status::Skipped => "skipped",
            Status::Missing => "missing",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PlannedNode {
    pub status: Status,
    pub key: Option<String>,
    pub pre_image: Option<PreImage>,
    pub reasons: Vec<String>,
    pub manifest: Option<Manifest>,
}

#[derive(Debug, Default, Clone)]
pub struct Selection {
    pub only: Vec<String>,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub force: Vec<String>,
    /// Plan stages whose files are missing as [`Status::Missing`] instead of
    /// failing: what a reader of a shared spec must provide before `tw run`.
    pub allow_missing: bool,
}

pub struct Plan {
    pub nodes: Vec<PlannedNode>,
    pub selected: Vec<bool>,
    pub forced: Vec<bool>,
}

impl Plan {
    pub fn count(&self, status: Status) -> usize {
        self.nodes.iter().filter(|n| n.status == status).count()
    }

    pub fn to_run(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n.status, Status::Run | Status::Forced | Status::After))
            .count()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("plan failed")]
    Spec(Vec<Diagnostic>),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Files that stages read but that do not exist, each reported at its param.
pub fn missing_files(spec: &Spec) -> Vec<Diagnostic> {
    let mut problems: Vec<Diagnostic> = Vec::new();
    for node in spec.nodes() {
        for dep in &node.file_deps {
            let path = tw_stages::api::resolve_path(&spec.base_dir, &dep.path);
            if path.is_file() {
                continue;
            }
            let span = span_at(&node.params_value, std::slice::from_ref(&dep.param));
            let d = Diagnostic::new(
                Code::MissingFile,
                format!(
                    "stage `{}` ({}) reads {}, which does not exist",
                    node.stage,
                    node.kind(),
                    path.display()
                ),
            )
            .at(span)
            .help("paths are relative to the spec file's directory");
            if !problems.contains(&d) {
                problems.push(d);
            }
        }
    }
    problems
}

/// Match `--only/--from/--to/--force` selectors (a stage name or an instance id).
fn matching(spec: &Spec, selector: &str, errors: &mut Vec<Diagnostic>) -> Vec<usize> {
    let hits: Vec<usize> = spec
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| n.id == selector || n.stage == selector)
        .map(|(i, _)| i)
        .collect();
    if hits.is_empty() {
        let names: Vec<&str> = spec.nodes().iter().map(|n| n.stage.as_str()).collect();
        errors.push(
            Diagnostic::new(
                Code::UnknownStageSelector,
                format!("no stage `{selector}` in this spec"),
            )
            .help(
                did_you_mean(selector, names.iter().copied()).unwrap_or_else(|| {
                    let mut unique = names.clone();
                    unique.dedup();
                    format!("stages: {}", unique.join(", "))
                }),
            ),
        );
    }
    hits
}

fn closure(spec: &Spec, start: &[usize], downstream: bool) -> Vec<bool> {
    let n = spec.nodes().len();
    let mut mark = vec![false; n];
    let mut stack: Vec<usize> = start.to_vec();
    let readers: Vec<Vec<usize>> = {
        let mut r = vec![Vec::new(); n];
        for (i, node) in spec.nodes().iter().enumerate() {
            for u in node.upstream() {
                r[u].push(i);
            }
        }
        r
    };
    while let Some(i) = stack.pop() {
        if mark[i] {
            continue;
        }
        mark[i] = true;
        if downstream {
            stack.extend(&readers[i]);
        } else {
            stack.extend(spec.nodes()[i].upstream());
        }
    }
    mark
}

pub fn select(
    spec: &Spec,
    selection: &Selection,
) -> Result<(Vec<bool>, Vec<bool>), Vec<Diagnostic>> {
    let n = spec.nodes().len();
    let mut errors = Vec::new();
    let mut selected = vec![true; n];
    if !selection.only.is_empty() {
        selected = vec![false; n];
        for s in &selection.only {
            for i in matching(spec, s, &mut errors) {
                selected[i] = true;
            }
        }
    }
    for (selectors, downstream) in [(&selection.from, true), (&selection.to, false)] {
        if selectors.is_empty() {
            continue;
        }
        let start: Vec<usize> = selectors
            .iter()
            .flat_map(|s| matching(spec, s, &mut errors))
            .collect();
        let reach = closure(spec, &start, downstream);
        for i in 0..n {
            selected[i] &= reach[i];
        }
    }
    let mut forced = vec![false; n];
    for s in &selection.force {
        for i in matching(spec, s, &mut errors) {
            forced[i] = true;
        }
    }
    if errors.is_empty() {
        Ok((selected, forced))
    } else {
        Err(errors)
    }
}

/// Known output hashes of a node that is cached.
fn outputs_of(planned: &PlannedNode) -> Option<&BTreeMap<String, OutputRecord>> {
    match planned.status {
        Status::Cached | Status::Skipped => planned.manifest.as_ref().map(|m| &m.outputs),
        _ => None,
    }
}

pub fn build(
    spec: &Spec,
    store: &Store,
    selection: &Selection,
    facts: &Facts,
) -> Result<Plan, PlanError> {
    let (selected, forced) = select(spec, selection).map_err(PlanError::Spec)?;
    let missing = missing_files(spec);
    if !missing.is_empty() && !selection.allow_missing {
        return Err(PlanError::Spec(missing));
    }
    let mut nodes: Vec<PlannedNode> = Vec::with_capacity(spec.nodes().len());
    let mut errors = Vec::new();
    for (i, node) in spec.nodes().iter().enumerate() {
        let absent: Vec<String> = node
            .file_deps
            .iter()
            .filter(|dep| !tw_stages::api::resolve_path(&spec.base_dir, &dep.path).is_file())
            .map(|dep| format!("needs {} (`{}`)", dep.path, dep.param))
            .collect();
        let blocked: Vec<String> = node
            .upstream()
            .into_iter()
            .filter(|&u| nodes[u].status == Status::Missing)
            .map(|u| spec.nodes()[u].id.clone())
            .collect();
        if !absent.is_empty() || !blocked.is_empty() {
            let mut reasons = absent;
            reasons.extend(blocked.iter().map(|u| format!("waits for `{u}`")));
            nodes.push(PlannedNode {
                status: Status::Missing,
                key: None,
                pre_image: None,
                reasons,
                manifest: None,
            });
            continue;
        }
        let hashes = {
            let hash_of =
                |n: usize, output: &str| outputs_of(&nodes[n])?.get(output).map(|r| r.hash.clone());
            input_hashes(node, &hash_of)
        };
        let Some(hashes) = hashes else {
            // Some upstream reruns (or is unavailable): the key is not known yet.
            let waiting: Vec<String> = node
                .upstream()
                .into_iter()
                .filter(|&u| outputs_of(&nodes[u]).is_none())
                .map(|u| spec.nodes()[u].id.clone())
                .collect();
            let status = if selected[i] {
                Status::After
            } else {
                Status::Skipped
            };
            let reasons = node
                .inputs
                .iter()
                .filter_map(|input| {
                    let ups: Vec<&str> = input
                        .sources
                        .iter()
                        .filter(|s| waiting.contains(&spec.nodes()[s.node].id))
                        .map(|s| spec.nodes()[s.node].id.as_str())
                        .collect();
                    if ups.is_empty() {
                        return None;
                    }
                    let mut unique: Vec<&str> = Vec::new();
                    for u in ups {
                        if !unique.contains(&u) {
                            unique.push(u);
                        }
                    }
                    let verb = if unique.len() == 1 { "reruns" } else { "rerun" };
                    Some(format!(
                        "input `{}` changes ({} {verb})",
                        input.slot,
                        unique.join(", ")
                    ))
                })
                .collect();
            nodes.push(PlannedNode {
                status,
                key: None,
                pre_image: None,
                reasons,
                manifest: None,
            });
            continue;
        };
        let pre = match pre_image(spec, node, hashes, facts) {
            Ok(p) => p,
            Err(d) => {
                errors.push(d);
                nodes.push(PlannedNode {
                    status: Status::Skipped,
                    key: None,
                    pre_image: None,
                    reasons: Vec::new(),
                    manifest: None,
                });
                continue;
            }
        };
        let key = pre.key();
        let manifest = store.lookup(&key);
        let cacheable = node.cache_policy == CachePolicy::Store;
        let (status, reasons) = if !selected[i] {
            (Status::Skipped, Vec::new())
        } else if forced[i] {
            (Status::Forced, vec!["forced (--force)".to_string()])
        } else if !cacheable {
            (Status::Run, vec!["not cacheable".to_string()])
        } else if manifest.is_some() {
            (Status::Cached, Vec::new())
        } else {
            let reasons = match store.node_record(spec.experiment(), &node.id) {
                None => vec!["new".to_string()],
                Some(record) if record.key == key => {
                    vec!["artifact missing from the cache".to_string()]
                }
                Some(record) => {
                    let diff = super::key::diff(&record.pre_image, &pre);
                    if diff.is_empty() {
                        vec!["artifact missing from the cache".to_string()]
                    } else {
                        diff
                    }
                }
            };
            (Status::Run, reasons)
        };
        nodes.push(PlannedNode {
            status,
            key: Some(key),
            pre_image: Some(pre),
            reasons,
            manifest: if cacheable { manifest } else { None },
        });
    }
    if !errors.is_empty() {
        return Err(PlanError::Spec(errors));
    }
    Ok(Plan {
        nodes,
        selected,
        forced,
    })
}

/// `tw plan` as text: one line per node, aligned.
/// What a planned stage may cost in model calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LlmEstimate {
    /// At most this many calls; `None` when the input is not computed yet
    /// or the bound depends on data.
    pub at_most: Option<u64>,
    /// `30 problems x 8 samples x (1 + 4 rounds)`.
    pub formula: String,
}

impl LlmEstimate {
    pub fn describe(&self) -> String {
        match self.at_most {
            Some(n) => format!(
                "at most {n} LLM call{} ({}; ledger hits are free)",
                if n == 1 { "" } else { "s" },
                self.formula
            ),
            None => format!("LLM calls: {}", self.formula),
        }
    }
}

/// The model calls node `i` may make if it runs: `None` for kinds that ask
/// no model and for nodes that will not run (cached, skipped).
pub fn llm_estimate(spec: &Spec, plan: &Plan, i: usize) -> Option<LlmEstimate> {
    let node = &spec.nodes()[i];
    let calls = node.stage_impl.llm_calls(&node.params)?;
    if !matches!(
        plan.nodes[i].status,
        Status::Run | Status::Forced | Status::After
    ) {
        return None;
    }
    let rows: Option<usize> = node
        .inputs
        .iter()
        .find(|input| input.slot == calls.slot)
        .and_then(|input| {
            input
                .sources
                .iter()
                .map(|s| {
                    plan.nodes[s.node]
                        .manifest
                        .as_ref()
                        .and_then(|m| m.outputs.get(&s.output))
                        .map(|o| o.rows)
                })
                .sum()
        });
    let at_most = match (rows, calls.per_row) {
        (Some(rows), Some(per_row)) => Some(rows as u64 * per_row),
        _ => None,
    };
    let formula = match (rows, calls.per_row) {
        (Some(rows), _) => format!("{rows} {} x {}", calls.slot, calls.formula),
        (None, Some(_)) => format!(
            "{} per row of `{}`, whose size is known once its upstream runs",
            calls.formula, calls.slot
        ),
        (None, None) => format!("{} per row of `{}`", calls.formula, calls.slot),
    };
    Some(LlmEstimate { at_most, formula })
}
