//! A plan as text (`tw plan`) and as JSON (`tw plan --json`, stable and sorted
//! for scripts and tests).

use super::build::{LlmEstimate, Plan, Status, llm_estimate};
use crate::spec::Spec;
use serde::Serialize;
use std::collections::BTreeMap;

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
