//! The whole key recipe: blake3 over a canonical record ([`PreImage`]) of
//! everything a stage's output may depend on, how that record is built for a
//! node ([`pre_image`]: its inputs' content hashes, the files it reads, its
//! environment facts), and how two records differ ([`diff`], the "why" of `tw plan`).
//!
//! The pre-image holds the stage kind and its implementation version, the
//! typed params after defaults, the content hashes of input artifacts and of
//! files read, and declared environment facts. It deliberately leaves out the
//! stage id, the spec path, comments, key order and secrets, so renaming a
//! stage, moving the spec or reformatting it never reruns anything.

use crate::diag::{Code, Diagnostic};
use crate::spec::{Node, Spec, resolve::span_at};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use tw_stages::api::EnvFact;
use tw_stages::api::artifact;

/// Bump when the recipe below changes; every key moves with it.
pub const KEY_RECIPE: u32 = 1;
const DERIVE_CONTEXT: &str = "tw stage key v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreImage {
    pub recipe: u32,
    pub artifact_format: u32,
    pub kind: String,
    pub kind_version: u32,
    pub params: serde_json::Value,
    /// slot -> content hashes of the bound artifacts, in spec order.
    pub inputs: BTreeMap<String, Vec<String>>,
    /// path as written in params -> content hash.
    pub files: BTreeMap<String, String>,
    /// fact name -> value.
    pub env: BTreeMap<String, String>,
    /// slot -> ids of the nodes the bound artifacts come from, only for kinds
    /// that read where their inputs came from (`report` labels rows with
    /// them). Empty, and then absent from the pre-image, for every other kind,
    /// so their keys do not move when an upstream stage is renamed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub origins: BTreeMap<String, Vec<String>>,
    /// Sharding, absent (and then out of the pre-image) for unsharded nodes:
    /// `{"rows": N}` for a sharded node, whose output gathers its shards, and
    /// `"part"` for one shard, whose row-mapped input is its chunk alone (so
    /// a shard's key does not depend on the shard size or its position).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<serde_json::Value>,
}

impl PreImage {
    pub fn key(&self) -> String {
        let json = serde_json::to_value(self).expect("pre-image is plain data");
        let mut hasher = blake3::Hasher::new_derive_key(DERIVE_CONTEXT);
        hasher.update(canonical_json(&json).as_bytes());
        hasher.finalize().to_hex().to_string()
    }
}

/// JSON with object keys sorted at every level and no whitespace. Written by
/// hand so no crate feature (`preserve_order`) can change the bytes.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Field-by-field differences between an old and a new pre-image, as reasons
/// a user can act on (`params.temperature: 0.2 -> 0.8`).
pub fn diff(old: &PreImage, new: &PreImage) -> Vec<String> {
    let mut reasons = Vec::new();
    if old.recipe != new.recipe || old.artifact_format != new.artifact_format {
        reasons.push(format!(
            "tw cache format changed (key recipe {} -> {}, artifact format {} -> {})",
            old.recipe, new.recipe, old.artifact_format, new.artifact_format
        ));
    }
    if old.kind != new.kind {
        reasons.push(format!("kind: {} -> {}", old.kind, new.kind));
    } else if old.kind_version != new.kind_version {
        reasons.push(format!(
            "`{}` version {} -> {}",
            new.kind, old.kind_version, new.kind_version
        ));
    }
    diff_json("params", &old.params, &new.params, &mut reasons);
    match (&old.shard, &new.shard) {
        (None, Some(s)) => reasons.push(format!("now sharded ({})", short(s))),
        (Some(_), None) => reasons.push("no longer sharded".into()),
        (Some(a), Some(b)) => diff_json("shard", a, b, &mut reasons),
        (None, None) => {}
    }
    for slot in union(old.inputs.keys(), new.inputs.keys()) {
        match (old.inputs.get(slot), new.inputs.get(slot)) {
            (Some(a), Some(b)) if a != b => reasons.push(format!("input `{slot}` changed")),
            (None, Some(_)) => reasons.push(format!("input `{slot}` added")),
            (Some(_), None) => reasons.push(format!("input `{slot}` removed")),
            _ => {}
        }
    }
    for slot in union(old.origins.keys(), new.origins.keys()) {
        if old.origins.get(slot) != new.origins.get(slot) {
            reasons.push(format!(
                "input `{slot}` now comes from {}",
                new.origins
                    .get(slot)
                    .map(|ids| ids.join(", "))
                    .unwrap_or_else(|| "(nothing)".into())
            ));
        }
    }
    for path in union(old.files.keys(), new.files.keys()) {
        match (old.files.get(path), new.files.get(path)) {
            (Some(a), Some(b)) if a != b => reasons.push(format!("file {path} changed")),
            (None, Some(_)) => reasons.push(format!("file {path} added")),
            (Some(_), None) => reasons.push(format!("file {path} no longer read")),
            _ => {}
        }
    }
    for fact in union(old.env.keys(), new.env.keys()) {
        let a = old.env.get(fact).map(String::as_str).unwrap_or("(none)");
        let b = new.env.get(fact).map(String::as_str).unwrap_or("(none)");
        if a != b {
            reasons.push(format!("env {fact}: {a} -> {b}"));
        }
    }
    reasons
}

fn union<'a>(
    a: impl Iterator<Item = &'a String>,
    b: impl Iterator<Item = &'a String>,
) -> std::collections::BTreeSet<&'a String> {
    a.chain(b).collect()
}

fn short(v: &serde_json::Value) -> String {
    let text = canonical_json(v);
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn diff_json(path: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value as J;
    match (old, new) {
        (J::Object(a), J::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let sub = format!("{path}.{k}");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_json(&sub, x, y, out),
                    (None, Some(y)) => out.push(format!("{sub}: (unset) -> {}", short(y))),
                    (Some(x), None) => out.push(format!("{sub}: {} -> (unset)", short(x))),
                    (None, None) => {}
                }
            }
        }
        (a, b) if a != b => out.push(format!("{path}: {} -> {}", short(a), short(b))),
        _ => {}
    }
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
            .or_insert_with(|| artifact::hash_file(path).map_err(|e| e.to_string()))
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

pub(crate) fn fact_name(fact: &EnvFact) -> String {
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
        artifact_format: artifact::ARTIFACT_FORMAT_VERSION,
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
                        output: s.output.clone(),
                        ancestors: ancestors(spec, s.node),
                    }
                })
                .collect();
            (input.slot.clone(), origins)
        })
        .collect()
}

/// Ids of every node `node` reads from, transitively, in node order.
fn ancestors(spec: &Spec, node: usize) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        for up in spec.nodes()[n].upstream() {
            if seen.insert(up) {
                todo.push(up);
            }
        }
    }
    seen.into_iter()
        .map(|i| spec.nodes()[i].id.clone())
        .collect()
}

pub fn input_hashes(
    node: &Node,
    hash_of: &dyn Fn(usize, &str) -> Option<String>,
) -> Option<BTreeMap<String, Vec<String>>> {
    let mut map = BTreeMap::new();
    for input in &node.inputs {
        let mut hashes = Vec::new();
        for source in &input.sources {
            hashes.push(hash_of(source.node, &source.output)?);
        }
        map.insert(input.slot.clone(), hashes);
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    fn pre(params: serde_json::Value) -> PreImage {
        PreImage {
            recipe: KEY_RECIPE,
            artifact_format: 1,
            kind: "load".into(),
            kind_version: 1,
            params,
            inputs: BTreeMap::new(),
            files: BTreeMap::from([("a.jsonl".to_string(), "h1".to_string())]),
            env: BTreeMap::new(),
            origins: BTreeMap::new(),
            shard: None,
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"d": [1, {"z": 1, "y": 2}], "c": "x"}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn key_is_stable_and_sensitive() {
        let a = pre(json!({"path": "a.jsonl", "limit": 3}));
        let b = pre(json!({"limit": 3, "path": "a.jsonl"}));
        assert_eq!(a.key(), b.key());
        let c = pre(json!({"limit": 4, "path": "a.jsonl"}));
        assert_ne!(a.key(), c.key());
        assert_eq!(a.key().len(), 64);
    }

    #[test]
    fn diff_names_the_exact_field() {
        let a = pre(json!({"temperature": 0.2, "n": 1}));
        let mut b = pre(json!({"temperature": 0.8, "n": 1, "seed": 3}));
        b.files.insert("a.jsonl".into(), "h2".into());
        b.kind_version = 2;
        assert_eq!(
            diff(&a, &b),
            vec![
                "`load` version 1 -> 2",
                "params.seed: (unset) -> 3",
                "params.temperature: 0.2 -> 0.8",
                "file a.jsonl changed",
            ]
        );
    }
}
