//! `mine_pairs`: pair each wrong program with the most similar correct program of its problem.
//!
//! # What it does
//! Reads verified candidates (an `execute` summary's `label`) and, per
//! problem, pairs every candidate labelled `wrong_answer` (the study's
//! "buggy" programs: they run but give wrong answers, no crash or timeout)
//! with the correct program closest to it by cosine similarity of code
//! embeddings: another correct candidate of the problem or, with `problems`
//! bound, the problem's `reference`. Identical programs (after stripping
//! trailing whitespace) are kept once per problem. Then three splits of the
//! original study, all drawn with `seed`:
//! - `above`: pairs with similarity above `threshold`;
//! - `below`: pairs below it, shuffled and cut to the size of `above`;
//! - `random`: all pairs, shuffled and cut to the size of `above`.
//!
//! # Params
//! - `threshold` (default 0.8, the paper's; the original configs used 0.75).
//! - `embedder`: `lexical` (default: hashed code-token and bigram counts, no
//!   weights needed) or `bert` (cargo feature `torch`) with `model`: a
//!   directory holding a BERT/RoBERTa encoder's `config.json`,
//!   `model.safetensors` and `tokenizer.json` (all-MiniLM-L6-v2, UniXcoder);
//!   mean pooling over real tokens. `device` (default `cpu`), `max_tokens` (default 512).
//! - `buggy_labels` (default `[wrong_answer]`), `include_reference` (default true).
//! - `seed` (default 0).
//!
//! # Inputs
//! - `candidates`: `candidate`, `task_id`, `program` (and `entry_point`).
//! - `verdicts`: `candidate`, `label` (an `execute` summary).
//! - `problems` (optional): `task_id`, `reference`, `entry_point`.
//!
//! # Outputs
//! - `pairs`: `pair_id` (the buggy candidate's id), `task_id`,
//!   `buggy_candidate`, `patch_candidate` (`reference` for the reference),
//!   `buggy`, `patch`, `entry_point`, `similarity`, and the split flags
//!   `above`, `below`, `random`.
//!
//! # Caching
//! Keyed by every param and both inputs' content; a `bert` model's files are
//! content-hashed, so new weights re-mine.
//!
//! # Example
//! ```yaml
//! pairs:
//!   kind: mine_pairs
//!   inputs: { candidates: samples.candidates, verdicts: verify.summary, problems: humaneval.problems }
//!   params: { threshold: 0.75, seed: 42 }
//! ```

use crate::api::artifact;
use crate::api::rng::SplitMix64;
use crate::api::rows;
use crate::api::rows::{Row, nonempty_text};
use crate::api::{FileDep, InputSlot, PlanEnv, Problem, RunCtx, Stage, StageError};
#[cfg(feature = "torch")]
use crate::model::bert;
use crate::text::embed::{Embedder, Lexical, cosine};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

pub struct MinePairs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EmbedderKind {
    #[default]
    Lexical,
    Bert,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinePairsParams {
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    #[serde(default)]
    pub embedder: EmbedderKind,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    #[serde(default = "default_buggy_labels")]
    pub buggy_labels: Vec<String>,
    #[serde(default = "yes")]
    pub include_reference: bool,
    #[serde(default)]
    pub seed: u64,
}

fn default_threshold() -> f64 {
    0.8
}
fn default_device() -> String {
    "cpu".into()
}
fn default_max_tokens() -> usize {
    512
}
fn default_buggy_labels() -> Vec<String> {
    vec!["wrong_answer".into()]
}
fn yes() -> bool {
    true
}

impl Stage for MinePairs {
    const KIND: &'static str = "mine_pairs";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("mine_pairs.rs");
    const INPUTS: &'static [InputSlot] = &[
        InputSlot::one("candidates"),
        InputSlot::one("verdicts"),
        InputSlot::one("problems").optional(),
    ];
    const OUTPUTS: &'static [&'static str] = &["pairs"];
    type Params = MinePairsParams;

    fn validate(p: &MinePairsParams) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !(-1.0..=1.0).contains(&p.threshold) {
            problems.push(Problem::at(
                "threshold",
                "a cosine similarity threshold lies in -1..=1",
            ));
        }
        match (p.embedder, &p.model) {
            (EmbedderKind::Bert, None) => problems.push(
                Problem::at(
                    "model",
                    "`embedder: bert` needs `model`: the encoder's directory",
                )
                .help("e.g. the all-MiniLM-L6-v2 directory scripts/setup-models.sh prepares"),
            ),
            (EmbedderKind::Lexical, Some(_)) => problems.push(Problem::at(
                "model",
                "`model` is read by `embedder: bert` only",
            )),
            _ => {}
        }
        #[cfg(not(feature = "torch"))]
        if p.embedder == EmbedderKind::Bert {
            problems.push(
                Problem::at("embedder", "`embedder: bert` runs on libtorch").help(format!(
                    "{}; or use `embedder: lexical`",
                    crate::api::rebuild_hint("torch")
                )),
            );
        }
        if p.buggy_labels.is_empty() {
            problems.push(Problem::at("buggy_labels", "name at least one label"));
        }
        problems
    }

    fn file_deps(p: &MinePairsParams, _env: &PlanEnv) -> Vec<FileDep> {
        let Some(model) = &p.model else {
            return Vec::new();
        };
        ["config.json", "tokenizer.json", "model.safetensors"]
            .into_iter()
            .map(|f| FileDep {
                param: "model".into(),
                path: format!("{}/{f}", model.trim_end_matches('/')),
            })
            .collect()
    }

    fn run(p: &MinePairsParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let candidates = artifact::table_to_json_rows(&ctx.input("candidates")?)?;
        let verdicts = artifact::table_to_json_rows(&ctx.input("verdicts")?)?;
        for column in ["candidate", "task_id", "program"] {
            rows::require_column(&candidates, "candidates", column, column)?;
        }
        for column in ["candidate", "label"] {
            rows::require_column(&verdicts, "verdicts", column, column)?;
        }
        let problems = if ctx.input_paths("problems").is_empty() {
            Vec::new()
        } else {
            artifact::table_to_json_rows(&ctx.input("problems")?)?
        };
        let labels: BTreeMap<String, String> = verdicts
            .iter()
            .filter_map(|r| Some((nonempty_text(r, "candidate")?, nonempty_text(r, "label")?)))
            .collect();
        let buggy_labels: BTreeSet<&str> = p.buggy_labels.iter().map(String::as_str).collect();

        // Per problem: the buggy and the correct programs, deduplicated.
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        let mut unlabelled = 0u64;
        for row in &candidates {
            let (Some(id), Some(task), Some(program)) = (
                nonempty_text(row, "candidate"),
                nonempty_text(row, "task_id"),
                nonempty_text(row, "program"),
            ) else {
                continue;
            };
            let Some(label) = labels.get(&id) else {
                unlabelled += 1;
                continue;
            };
            let group = groups.entry(task).or_default();
            if group.entry_point.is_none() {
                group.entry_point = nonempty_text(row, "entry_point");
            }
            let key = normalised(&program);
            if !group.seen.insert(key) {
                continue;
            }
            if label == "correct" {
                group.correct.push((id, program));
            } else if buggy_labels.contains(label.as_str()) {
                group.buggy.push((id, program));
            }
        }
        if p.include_reference {
            for row in &problems {
                let (Some(task), Some(reference)) = (
                    nonempty_text(row, "task_id"),
                    nonempty_text(row, "reference"),
                ) else {
                    continue;
                };
                if let Some(group) = groups.get_mut(&task) {
                    if group.seen.insert(normalised(&reference)) {
                        group.correct.push(("reference".into(), reference));
                    }
                    if group.entry_point.is_none() {
                        group.entry_point = nonempty_text(row, "entry_point");
                    }
                }
            }
        }

        let embedder = make_embedder(p, ctx)?;
        ctx.note("embedder", embedder.identity());
        let mut pairs: Vec<Pair> = Vec::new();
        let mut without_patch = 0u64;
        ctx.progress().set_total(groups.len() as u64);
        for (task, group) in &groups {
            ctx.progress().inc(1);
            if group.buggy.is_empty() {
                continue;
            }
            if group.correct.is_empty() {
                without_patch += group.buggy.len() as u64;
                continue;
            }
            let texts: Vec<&str> = group
                .correct
                .iter()
                .chain(&group.buggy)
                .map(|(_, program)| program.as_str())
                .collect();
            let vectors = embedder.embed(&texts)?;
            let (correct_vecs, buggy_vecs) = vectors.split_at(group.correct.len());
            for ((buggy_id, buggy), bv) in group.buggy.iter().zip(buggy_vecs) {
                let mut best = 0;
                let mut best_sim = f32::NEG_INFINITY;
                for (i, cv) in correct_vecs.iter().enumerate() {
                    let s = cosine(bv, cv);
                    if s > best_sim {
                        best_sim = s;
                        best = i;
                    }
                }
                let (patch_id, patch) = &group.correct[best];
                pairs.push(Pair {
                    task: task.clone(),
                    buggy_id: buggy_id.clone(),
                    patch_id: patch_id.clone(),
                    buggy: buggy.clone(),
                    patch: patch.clone(),
                    entry_point: group.entry_point.clone(),
                    // Rounded so that float noise across platforms cannot flip a split.
                    similarity: (best_sim as f64 * 1e6).round() / 1e6,
                });
            }
        }

        let above: Vec<usize> = (0..pairs.len())
            .filter(|&i| pairs[i].similarity > p.threshold)
            .collect();
        let below_all: Vec<usize> = (0..pairs.len())
            .filter(|&i| pairs[i].similarity < p.threshold)
            .collect();
        let mut rng = SplitMix64::new(p.seed);
        let below: BTreeSet<usize> = shuffled(below_all, &mut rng)
            .into_iter()
            .take(above.len())
            .collect();
        let random: BTreeSet<usize> = shuffled((0..pairs.len()).collect(), &mut rng)
            .into_iter()
            .take(above.len())
            .collect();
        let above: BTreeSet<usize> = above.into_iter().collect();
        ctx.note("pairs", pairs.len());
        ctx.note("above", above.len());
        ctx.note("below", below.len());
        ctx.note("random", random.len());
        ctx.note("unlabelled_candidates", unlabelled);
        ctx.note("buggy_without_correct_program", without_patch);

        let rows: Vec<Row> = pairs
            .into_iter()
            .enumerate()
            .map(|(i, pair)| {
                let mut r = Map::new();
                r.insert("pair_id".into(), Value::String(pair.buggy_id.clone()));
                r.insert("task_id".into(), Value::String(pair.task));
                r.insert("buggy_candidate".into(), Value::String(pair.buggy_id));
                r.insert("patch_candidate".into(), Value::String(pair.patch_id));
                r.insert("buggy".into(), Value::String(pair.buggy));
                r.insert("patch".into(), Value::String(pair.patch));
                r.insert(
                    "entry_point".into(),
                    pair.entry_point.map_or(Value::Null, Value::String),
                );
                r.insert("similarity".into(), serde_json::json!(pair.similarity));
                r.insert("above".into(), Value::Bool(above.contains(&i)));
                r.insert("below".into(), Value::Bool(below.contains(&i)));
                r.insert("random".into(), Value::Bool(random.contains(&i)));
                r
            })
            .collect();
        let mut template = Map::new();
        for t in [
            "pair_id",
            "task_id",
            "buggy_candidate",
            "patch_candidate",
            "buggy",
            "patch",
            "entry_point",
        ] {
            template.insert(t.into(), Value::String(String::new()));
        }
        template.insert("similarity".into(), serde_json::json!(0.5));
        for b in ["above", "below", "random"] {
            template.insert(b.into(), Value::Bool(false));
        }
        ctx.write_output(
            "pairs",
            &artifact::json_rows_to_typed_table(rows, template)?,
        )
    }
}

#[derive(Default)]
struct Group {
    buggy: Vec<(String, String)>,
    correct: Vec<(String, String)>,
    seen: BTreeSet<String>,
    entry_point: Option<String>,
}

struct Pair {
    task: String,
    buggy_id: String,
    patch_id: String,
    buggy: String,
    patch: String,
    entry_point: Option<String>,
    similarity: f64,
}

fn normalised(program: &str) -> String {
    program
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Fisher-Yates with the stage's seeded generator.
fn shuffled(mut items: Vec<usize>, rng: &mut SplitMix64) -> Vec<usize> {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
    items
}

fn make_embedder(p: &MinePairsParams, ctx: &RunCtx<'_>) -> Result<Box<dyn Embedder>, StageError> {
    match p.embedder {
        EmbedderKind::Lexical => Ok(Box::new(Lexical::default())),
        #[cfg(feature = "torch")]
        EmbedderKind::Bert => {
            let model = p.model.as_deref().unwrap_or_default();
            let embedder = bert::BertEmbedder::load(&ctx.resolve(model), &p.device, p.max_tokens)
                .map_err(|e| StageError::failed(e.to_string()))?;
            Ok(Box::new(embedder))
        }
        #[cfg(not(feature = "torch"))]
        EmbedderKind::Bert => {
            let _ = ctx;
            Err(StageError::Failed(format!(
                "`embedder: bert` runs on libtorch; {}",
                crate::api::rebuild_hint("torch")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffles_are_seeded_permutations() {
        let a = shuffled((0..50).collect(), &mut SplitMix64::new(7));
        let b = shuffled((0..50).collect(), &mut SplitMix64::new(7));
        let c = shuffled((0..50).collect(), &mut SplitMix64::new(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }
}
