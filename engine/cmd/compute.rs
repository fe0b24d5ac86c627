//! The compute disclosure `tw report` writes beside the report stages' files:
//! what each model x dataset pair of a spec cost, from the manifests of its
//! cached stages (wall and CPU seconds, GPU seconds, LLM calls and tokens),
//! with an energy estimate from a power draw per device the user sets (the
//! paper discloses about 38 kWh per model-dataset pair).

use crate::plan::Plan;
use crate::spec::Spec;
use serde_json::Value;
use std::collections::BTreeMap;

/// Watts drawn per busy CPU core and per GPU, for the energy estimate.
#[derive(Debug, Clone, Copy)]
pub struct Power {
    pub cpu_watts: f64,
    pub gpu_watts: f64,
}

/// What one model x dataset pair cost.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Cost {
    pub stages: usize,
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    pub gpu_seconds: f64,
    pub llm_calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Some stage's CPU figure includes stages that ran beside it.
    pub cpu_overlapped: bool,
}

impl Cost {
    pub fn kwh(&self, power: Power) -> f64 {
        (self.cpu_seconds * power.cpu_watts + self.gpu_seconds * power.gpu_watts) / 3.6e6
    }
}

/// The model a node used: the one its manifest says it asked, else its
/// `model` param (a path or an endpoint's name).
fn model_of(params: &Value, notes: &BTreeMap<String, Value>) -> Option<String> {
    if let Some(m) = notes.get("model").and_then(Value::as_str) {
        return Some(m.to_string());
    }
    match params.get("model") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => o
            .get("name")
            .or_else(|| o.get("path"))
            .and_then(Value::as_str)
            .map(String::from),
        _ => None,
    }
}

/// The dataset a node worked on: its `labels.benchmark`, else the benchmark
/// of the nearest `load_benchmark` upstream, else the first upstream stage.
fn dataset_of(spec: &Spec, index: usize) -> Option<String> {
    let node = &spec.nodes()[index];
    let params = node.params_value.to_json();
    if let Some(b) = params
        .get("labels")
        .and_then(|l| l.get("benchmark"))
        .and_then(Value::as_str)
    {
        return Some(b.to_string());
    }
    let mut frontier = vec![index];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(i) = frontier.pop() {
        if !seen.insert(i) {
            continue;
        }
        let n = &spec.nodes()[i];
        if n.kind() == "load_benchmark" {
            return n
                .params_value
                .to_json()
                .get("benchmark")
                .and_then(Value::as_str)
                .map(String::from);
        }
        frontier.extend(n.upstream());
    }
    node.upstream()
        .first()
        .map(|&u| spec.nodes()[u].stage.clone())
}

/// The GPUs a node held: what it noted (`sft` in process notes the device
/// it trained on), else its `resources: gpus` (a launch on a cluster).
/// In-process generation on a GPU notes nothing yet, so it counts as none.
fn gpus_of(spec: &Spec, index: usize, notes: &BTreeMap<String, Value>) -> u64 {
    notes
        .get("gpus")
        .and_then(Value::as_u64)
        .or(spec.nodes()[index].resources.gpus)
        .unwrap_or(0)
}

/// Every cached stage's cost, summed per (model, dataset).
pub fn costs(spec: &Spec, plan: &Plan) -> BTreeMap<(String, String), Cost> {
    let mut out: BTreeMap<(String, String), Cost> = BTreeMap::new();
    for (i, planned) in plan.nodes.iter().enumerate() {
        let Some(m) = &planned.manifest else { continue };
        let node = &spec.nodes()[i];
        if node.kind() == "report" {
            continue;
        }
        let model =
            model_of(&node.params_value.to_json(), &m.notes).unwrap_or_else(|| "(no model)".into());
        let dataset = dataset_of(spec, i).unwrap_or_else(|| "(none)".into());
        let c = out.entry((model, dataset)).or_default();
        c.stages += 1;
        c.wall_seconds += m.wall_seconds;
        c.cpu_seconds += m.cpu_seconds.unwrap_or(0.0);
        c.cpu_overlapped |= m.cpu_overlapped;
        c.gpu_seconds += m.wall_seconds * gpus_of(spec, i, &m.notes) as f64;
        let n = |k: &str| m.notes.get(k).and_then(Value::as_u64).unwrap_or(0);
        c.llm_calls += n("llm_calls");
        c.prompt_tokens += n("prompt_tokens");
        c.completion_tokens += n("completion_tokens");
    }
    out
}

/// The table as Markdown and CSV.
pub fn render(costs: &BTreeMap<(String, String), Cost>, power: Power) -> (String, String) {
    let mut md = format!(
        "Compute per model x dataset, from the manifests of the cached stages (energy at {} W per busy CPU core, {} W per GPU)\n\n\
         | model | dataset | stages | wall s | CPU s | GPU s | LLM calls | tokens in | tokens out | kWh |\n\
         | :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        power.cpu_watts, power.gpu_watts
    );
    let mut csv = String::from(
        "model,dataset,stages,wall_seconds,cpu_seconds,gpu_seconds,llm_calls,prompt_tokens,completion_tokens,kwh\n",
    );
    let mut overlapped = false;
    for ((model, dataset), c) in costs {
        overlapped |= c.cpu_overlapped;
        // The numbers at Markdown's precision and at the CSV's.
        let cells = |digits: usize, kwh_digits: usize| {
            [
                c.stages.to_string(),
                format!("{:.digits$}", c.wall_seconds),
                format!("{:.digits$}", c.cpu_seconds),
                format!("{:.digits$}", c.gpu_seconds),
                c.llm_calls.to_string(),
                c.prompt_tokens.to_string(),
                c.completion_tokens.to_string(),
                format!("{:.kwh_digits$}", c.kwh(power)),
            ]
        };
        md.push_str(&format!(
            "| {model} | {dataset} | {} |\n",
            cells(1, 4).join(" | ")
        ));
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        csv.push_str(&format!(
            "{},{},{}\n",
            quote(model),
            quote(dataset),
            cells(3, 6).join(",")
        ));
    }
    md.push_str(
        "\nCPU seconds count `tw`'s process and the programs and trainers it ran; a stage a \
         remote endpoint served counts only its tokens here (the endpoint's own compute is not seen).",
    );
    if overlapped {
        md.push_str(
            " Some stages ran beside others in one process, so their CPU figures overlap: \
             an upper bound (`-j 1` measures each alone).",
        );
    }
    md.push('\n');
    (md, csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_counts_cpu_and_gpu_seconds_at_their_power() {
        let c = Cost {
            cpu_seconds: 3600.0,
            gpu_seconds: 7200.0,
            ..Cost::default()
        };
        let power = Power {
            cpu_watts: 10.0,
            gpu_watts: 400.0,
        };
        assert!((c.kwh(power) - (0.01 + 0.8)).abs() < 1e-12);
        let mut costs = BTreeMap::new();
        costs.insert(("m".to_string(), "humaneval".to_string()), c);
        let (md, csv) = render(&costs, power);
        assert!(
            md.contains("| m | humaneval | 0 | 0.0 | 3600.0 | 7200.0 | 0 | 0 | 0 | 0.8100 |"),
            "{md}"
        );
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("\"m\",\"humaneval\",0,"),
            "{csv}"
        );
    }
}
