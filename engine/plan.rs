//! Validated spec -> plan: the DAG of stage instances, each with its cache key
//! (where it can be known before running) and a status saying what will run
//! and *why*.
//!
//! A node's key needs the content hashes of its inputs, so it is known only
//! when every upstream node is cached. A node downstream of one that will run
//! is `after`: whether it really reruns is decided once the upstream's output
//! bytes exist (equal bytes cut it off early).

use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::key::{KEY_RECIPE, PreImage};
use crate::spec::{Node, Spec, resolve::span_at};
use crate::store::{Manifest, OutputRecord, Store};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use tw_stages::api::{CachePolicy, EnvFact};

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

/// Hashes of files and values of environment facts, computed once per process.
#[derive(Default)]
pub struct Facts {
    files: Mutex<HashMap<std::path::PathBuf, Result<String, String>>>,
    env: Mutex<HashMap<EnvFact, String>>,
}

impl Facts {
    fn file_hash(&self, path: &std::path::Path) -> Result<String, String> {
        let mut files = self.files.lock().expect("facts lock");
        files
            .entry(path.to_path_buf())
            .or_insert_with(|| tw_stages::artifact::hash_file(path).map_err(|e| e.to_string()))
            .clone()
    }

    fn env_value(&self, fact: &EnvFact) -> String {
        let mut env = self.env.lock().expect("facts lock");
        env.entry(fact.clone())
            .or_insert_with(|| match fact {
                EnvFact::Var { name } => std::env::var(name).unwrap_or_default(),
                EnvFact::Command { argv, .. } => match std::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .output()
                {
                    Ok(out) if out.status.success() => {
                        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
                        if text.is_empty() {
                            String::from_utf8_lossy(&out.stderr).trim().to_string()
                        } else {
                            text
                        }
                    }
                    Ok(out) => format!("unavailable (exit {})", out.status),
                    Err(e) => format!("unavailable ({e})"),
                },
            })
            .clone()
    }
}

fn fact_name(fact: &EnvFact) -> String {
    match fact {
        EnvFact::Var { name } => format!("var:{name}"),
        EnvFact::Command { name, .. } => name.clone(),
    }
}

/// Pre-image of `node` given the content hashes of its inputs.
pub fn pre_image(
    spec: &Spec,
    node: &Node,
    input_hashes: BTreeMap<String, Vec<String>>,
    facts: &Facts,
) -> Result<PreImage, Diagnostic> {
    let mut files = BTreeMap::new();
    for dep in &node.file_deps {
        let path = tw_stages::api::resolve_path(&spec.base_dir, &dep.path);
        match facts.file_hash(&path) {
            Ok(hash) => {
                files.insert(dep.path.clone(), hash);
            }
            Err(e) => {
                let span = span_at(&node.params_value, std::slice::from_ref(&dep.param));
                return Err(Diagnostic::new(
                    Code::MissingFile,
                    format!(
                        "stage `{}` ({}) reads {}: {e}",
                        node.id,
                        node.kind(),
                        path.display()
                    ),
                )
                .at(span)
                .help("paths are relative to the spec file's directory"));
            }
        }
    }
    let env = node
        .env_facts
        .iter()
        .map(|f| (fact_name(f), facts.env_value(f)))
        .collect();
    Ok(PreImage {
        recipe: KEY_RECIPE,
        artifact_format: tw_stages::artifact::ARTIFACT_FORMAT_VERSION,
        kind: node.kind().to_string(),
        kind_version: node.stage_impl.version(),
        params: node.params.canonical.clone(),
        inputs: input_hashes,
        files,
        env,
        origins: input_origins(spec, node)
            .into_iter()
            .map(|(slot, origins)| (slot, origins.into_iter().map(|o| o.id).collect()))
            .collect(),
        shard: node
            .shard
            .as_ref()
            .map(|s| serde_json::json!({ "rows": s.rows })),
    })
}

/// Where each bound artifact of `node` comes from, for kinds that ask
/// ([`tw_stages::api::Stage::reads_input_origins`]): the stage gets them when
/// it runs, and their ids go in its key.
pub fn input_origins(
    spec: &Spec,
    node: &Node,
) -> BTreeMap<String, Vec<tw_stages::api::InputOrigin>> {
    if !node.stage_impl.reads_input_origins(&node.params) {
        return BTreeMap::new();
    }
    node.inputs
        .iter()
        .map(|input| {
            let origins = input
                .sources
                .iter()
                .map(|s| {
                    let upstream = &spec.nodes()[s.node];
                    tw_stages::api::InputOrigin {
                        id: upstream.id.clone(),
                        stage: upstream.stage.clone(),
                        binding: upstream.binding.clone(),
                    }
                })
                .collect();
            (input.slot.clone(), origins)
        })
        .collect()
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

pub fn input_hashes<'a>(
    node: &Node,
    outputs: &dyn Fn(usize) -> Option<&'a BTreeMap<String, OutputRecord>>,
) -> Option<BTreeMap<String, Vec<String>>> {
    let mut map = BTreeMap::new();
    for input in &node.inputs {
        let mut hashes = Vec::new();
        for source in &input.sources {
            let records = outputs(source.node)?;
            hashes.push(records.get(&source.output)?.hash.clone());
        }
        map.insert(input.slot.clone(), hashes);
    }
    Some(map)
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
            let lookup = |n: usize| outputs_of(&nodes[n]);
            input_hashes(node, &lookup)
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
                    let diff = crate::key::diff(&record.pre_image, &pre);
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
    fn describe(&self) -> String {
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

pub fn render_text(spec: &Spec, plan: &Plan) -> String {
    let mut out = String::new();
    let total = spec.nodes().len();
    let estimates: Vec<Option<LlmEstimate>> =
        (0..total).map(|i| llm_estimate(spec, plan, i)).collect();
    let known: u64 = estimates.iter().flatten().filter_map(|e| e.at_most).sum();
    let unknown = estimates
        .iter()
        .flatten()
        .filter(|e| e.at_most.is_none())
        .count();
    let calls = match (estimates.iter().flatten().count(), unknown) {
        (0, _) => String::new(),
        (_, 0) => format!(", at most {known} LLM calls"),
        (_, u) => {
            let unbounded = format!("{u} stage{} not yet bounded", if u == 1 { "" } else { "s" });
            if known == 0 {
                format!(", LLM calls: {unbounded}")
            } else {
                format!(", at most {known} LLM calls + {unbounded}")
            }
        }
    };
    let missing = match plan.count(Status::Missing) {
        0 => String::new(),
        n => format!(
            ", {n} stage{} missing files (`tw run` needs them first)",
            if n == 1 { "" } else { "s" }
        ),
    };
    out.push_str(&format!(
        "{}: {total} stage{}, {} to run{calls}{missing}\n",
        spec.experiment(),
        if total == 1 { "" } else { "s" },
        plan.to_run()
    ));
    let id_w = spec.nodes().iter().map(|n| n.id.len()).max().unwrap_or(0);
    let kind_w = spec
        .nodes()
        .iter()
        .map(|n| n.kind().len())
        .max()
        .unwrap_or(0);
    for ((node, planned), estimate) in spec.nodes().iter().zip(&plan.nodes).zip(&estimates) {
        let key = planned.key.as_deref().map(|k| &k[..12]).unwrap_or("-");
        let mut reasons = planned.reasons.clone();
        if let Some(e) = estimate {
            reasons.push(e.describe());
        }
        if let Some(shard) = &node.shard
            && matches!(planned.status, Status::Run | Status::After | Status::Forced)
        {
            reasons.push(format!(
                "in shards of {} rows; cached shards are reused",
                shard.rows
            ));
        }
        let reasons = reasons.join("; ");
        let line = format!(
            "  {:<7} {:<id_w$}  {:<kind_w$}  {:<12}  {}",
            planned.status.as_str(),
            node.id,
            node.kind(),
            key,
            reasons
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    experiment: &'a str,
    spec: String,
    summary: BTreeMap<&'static str, usize>,
    stages: Vec<JsonNode<'a>>,
}

#[derive(Serialize)]
struct JsonNode<'a> {
    id: &'a str,
    stage: &'a str,
    kind: &'a str,
    status: Status,
    key: Option<&'a str>,
    reasons: &'a [String],
    matrix: BTreeMap<&'a str, &'a serde_json::Value>,
    inputs: BTreeMap<&'a str, Vec<String>>,
    outputs: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    llm_calls: Option<LlmEstimate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_rows: Option<usize>,
}

/// `tw plan --json`: stable, sorted, for scripts and tests.
pub fn render_json(spec: &Spec, plan: &Plan) -> String {
    let mut summary = BTreeMap::new();
    for status in [
        Status::Cached,
        Status::Run,
        Status::Forced,
        Status::After,
        Status::Skipped,
    ] {
        summary.insert(status.as_str(), plan.count(status));
    }
    let missing = plan.count(Status::Missing);
    if missing > 0 {
        summary.insert(Status::Missing.as_str(), missing);
    }
    summary.insert("total", spec.nodes().len());
    let stages = spec
        .nodes()
        .iter()
        .zip(&plan.nodes)
        .enumerate()
        .map(|(i, (node, planned))| JsonNode {
            id: &node.id,
            stage: &node.stage,
            kind: node.kind(),
            status: planned.status,
            key: planned.key.as_deref(),
            reasons: &planned.reasons,
            matrix: node.binding.iter().map(|(a, v)| (a.as_str(), v)).collect(),
            inputs: node
                .inputs
                .iter()
                .map(|i| {
                    (
                        i.slot.as_str(),
                        i.sources
                            .iter()
                            .map(|s| format!("{}.{}", spec.nodes()[s.node].id, s.output))
                            .collect(),
                    )
                })
                .collect(),
            outputs: &node.outputs,
            llm_calls: llm_estimate(spec, plan, i),
            shard_rows: node.shard.as_ref().map(|s| s.rows),
        })
        .collect();
    let plan = JsonPlan {
        experiment: spec.experiment(),
        spec: spec.path.display().to_string(),
        summary,
        stages,
    };
    serde_json::to_string_pretty(&plan).expect("plan is plain data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_facts_are_computed_once_and_failures_are_recorded() {
        let facts = Facts::default();
        let fact = EnvFact::Command {
            name: "python".into(),
            argv: vec!["sh".into(), "-c".into(), "echo Python 3.11.7".into()],
        };
        assert_eq!(facts.env_value(&fact), "Python 3.11.7");
        assert_eq!(fact_name(&fact), "python");
        let missing = EnvFact::Command {
            name: "nope".into(),
            argv: vec!["/nonexistent/tw-test-binary".into()],
        };
        assert!(facts.env_value(&missing).starts_with("unavailable ("));
        let failing = EnvFact::Command {
            name: "fails".into(),
            argv: vec!["sh".into(), "-c".into(), "exit 3".into()],
        };
        assert!(facts.env_value(&failing).starts_with("unavailable (exit"));
        let var = EnvFact::Var {
            name: "TW_TEST_SURELY_UNSET_VAR".into(),
        };
        assert_eq!(facts.env_value(&var), "");
        assert_eq!(fact_name(&var), "var:TW_TEST_SURELY_UNSET_VAR");
    }
}
