//! Raw spec -> validated, matrix-expanded spec: kinds exist, params parse,
//! references resolve, no cycles. Every problem is collected and reported
//! together; nothing here touches the cache or the disk beyond the spec.

use super::model::{RawRef, RawSpec, RawStage, backticked};
use super::placement::{self, Resources, ShardSpec};
use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::source::Span;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeSet, HashMap};
use tw_stages::Registry;
use tw_stages::api::value::{Key, ParamError, ParamErrorKind, Value, ValueKind};
use tw_stages::api::{Arity, CachePolicy, DynStage, EnvFact, FileDep, ParsedParams};

/// One stage instance: a spec stage under one binding of its matrix axes.
pub struct Node {
    /// `stage` or `stage[axis=value,...]`: unique within the spec.
    pub id: String,
    pub stage: String,
    pub binding: Vec<(String, serde_json::Value)>,
    pub stage_impl: &'static dyn DynStage,
    pub params: ParsedParams,
    /// Params as written (defaults merged, `${axis}` substituted), for spans.
    pub params_value: Value,
    pub inputs: Vec<NodeInput>,
    pub outputs: Vec<String>,
    pub file_deps: Vec<FileDep>,
    pub env_facts: Vec<EnvFact>,
    pub cache_policy: CachePolicy,
    pub id_span: Span,
    pub description: Option<String>,
    /// `shard:`: run the row-mapped input in chunks, each its own cached unit.
    pub shard: Option<ShardSpec>,
    /// `resources:` for a cluster executor; never in the key.
    pub resources: Resources,
}

impl Node {
    pub fn kind(&self) -> &'static str {
        self.stage_impl.kind()
    }

    /// Indices of the nodes this one reads, deduplicated, ascending.
    pub fn upstream(&self) -> Vec<usize> {
        let set: BTreeSet<usize> = self
            .inputs
            .iter()
            .flat_map(|i| i.sources.iter().map(|s| s.node))
            .collect();
        set.into_iter().collect()
    }
}

pub struct NodeInput {
    pub slot: String,
    pub sources: Vec<OutputRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRef {
    pub node: usize,
    pub output: String,
}

pub struct Resolved {
    pub experiment: String,
    pub description: Option<String>,
    pub axes: Vec<String>,
    /// In topological order: every node comes after the nodes it reads.
    pub nodes: Vec<Node>,
}

struct StagePlan<'a> {
    raw: &'a RawStage,
    stage_impl: Option<&'static dyn DynStage>,
    params: Value,
    own_axes: BTreeSet<String>,
    upstream: Vec<usize>,
}

pub fn resolve(
    raw: &RawSpec,
    registry: &'static Registry,
    base_dir: &std::path::Path,
    errors: &mut Vec<Diagnostic>,
) -> Option<Resolved> {
    let start_errors = errors.len();
    let axis_names: Vec<String> = raw.matrix.iter().map(|a| a.name.clone()).collect();
    let kind_names = registry.names();

    let unknown_kind = |kind: &str, span: Span| -> Diagnostic {
        match registry.needs_feature(kind) {
            Some(feature) => Diagnostic::new(
                Code::KindUnavailable,
                format!("stage kind `{kind}` is not in this build of tw"),
            )
            .at(span)
            .help(tw_stages::api::rebuild_hint(feature)),
            None => Diagnostic::new(Code::UnknownKind, format!("unknown stage kind `{kind}`"))
                .at(span)
                .label("not a stage kind")
                .help(
                    did_you_mean(kind, kind_names.iter().copied())
                        .unwrap_or_else(|| "`tw stages` lists the kinds".to_string()),
                ),
        }
    };

    let mut defaults: HashMap<&str, &Value> = HashMap::new();
    for (kind, params) in &raw.defaults {
        if registry.get(&kind.name).is_none() {
            errors.push(unknown_kind(&kind.name, kind.span));
        } else {
            defaults.insert(kind.name.as_str(), params);
        }
    }

    let index: HashMap<&str, usize> = raw
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let stage_names: Vec<&str> = raw.stages.iter().map(|s| s.id.as_str()).collect();

    let mut plans: Vec<StagePlan<'_>> = Vec::new();
    for stage in &raw.stages {
        let stage_impl = registry.get(&stage.kind);
        if stage_impl.is_none() {
            errors.push(unknown_kind(&stage.kind, stage.kind_span));
        }
        let params = merge_defaults(&stage.params, defaults.get(stage.kind.as_str()).copied());
        let mut own_axes = BTreeSet::new();
        let mut bad_axes = false;
        for (name, span) in axis_references(&params) {
            if axis_names.contains(&name) {
                own_axes.insert(name);
            } else {
                bad_axes = true;
                errors.push(
                    Diagnostic::new(
                        Code::UnknownAxis,
                        format!("`${{{name}}}` names no matrix axis"),
                    )
                    .at(span)
                    .help(
                        did_you_mean(&name, axis_names.iter().map(String::as_str)).unwrap_or_else(
                            || {
                                if axis_names.is_empty() {
                                    "the spec has no `matrix:`; write `$${` for a literal `${`"
                                        .to_string()
                                } else {
                                    format!("matrix axes: {}", axis_names.join(", "))
                                }
                            },
                        ),
                    ),
                );
            }
        }
        let mut upstream = Vec::new();
        for input in &stage.inputs {
            for r in &input.refs {
                match index.get(r.stage.as_str()) {
                    Some(&i) => upstream.push(i),
                    None => errors.push(
                        Diagnostic::new(
                            Code::UnknownStage,
                            format!(
                                "stage `{}` reads `{}`, but no stage is named `{}`",
                                stage.id, r.text, r.stage
                            ),
                        )
                        .at(r.span)
                        .label("no such stage")
                        .help(
                            did_you_mean(&r.stage, stage_names.iter().copied())
                                .unwrap_or_else(|| format!("stages: {}", stage_names.join(", "))),
                        ),
                    ),
                }
            }
        }
        plans.push(StagePlan {
            raw: stage,
            // Params naming an unknown axis are already reported: do not parse them too.
            stage_impl: if bad_axes { None } else { stage_impl },
            params,
            own_axes,
            upstream,
        });
    }

    let order = match stage_order(&plans) {
        Ok(order) => order,
        Err(cycle) => {
            // `cycle` is in data-flow order (each stage reads the one before it),
            // starting at the first-declared stage; point at where it reads the last.
            let names: Vec<&str> = cycle.iter().map(|&i| plans[i].raw.id.as_str()).collect();
            let first = &plans[cycle[0]];
            let last = cycle[cycle.len() - 1];
            let span = first
                .raw
                .inputs
                .iter()
                .flat_map(|i| &i.refs)
                .find(|r| r.stage == plans[last].raw.id)
                .map(|r| r.span)
                .unwrap_or(first.raw.id_span);
            let mut path = names.clone();
            path.push(names[0]);
            let mut d = Diagnostic::new(
                Code::Cycle,
                format!(
                    "stages depend on each other in a cycle: {}",
                    path.join(" -> ")
                ),
            )
            .at(span)
            .help("a stage may only read stages that do not read it back");
            for w in path.windows(2) {
                d = d.note(format!("`{}` reads `{}`", w[1], w[0]));
            }
            errors.push(d);
            // Still check each stage's params once so every problem shows up.
            for plan in &plans {
                let binding: Vec<(String, Value)> = raw
                    .matrix
                    .iter()
                    .map(|a| (a.name.clone(), a.values[0].clone()))
                    .collect();
                if let Some(stage_impl) = plan.stage_impl {
                    let value = interpolate(&plan.params, &binding);
                    parse_params(plan.raw, stage_impl, &value, errors);
                }
            }
            return None;
        }
    };

    // Axes of a stage: those its params name, plus those of every stage it reads
    // one instance of. A gather (`stage[*]`) reads them all and so inherits nothing.
    let mut axes_of: Vec<BTreeSet<String>> = vec![BTreeSet::new(); plans.len()];
    for &i in &order {
        let mut axes = plans[i].own_axes.clone();
        for input in &plans[i].raw.inputs {
            for r in input.refs.iter().filter(|r| !r.gather) {
                if let Some(&u) = index.get(r.stage.as_str()) {
                    axes.extend(axes_of[u].iter().cloned());
                }
            }
        }
        axes_of[i] = axes;
    }

    let mut nodes: Vec<Node> = Vec::new();
    // (stage index, binding restricted to its axes) -> node index
    let mut instances: HashMap<(usize, Vec<(String, String)>), usize> = HashMap::new();
    let mut instance_order: Vec<Vec<usize>> = vec![Vec::new(); plans.len()];
    let mut failed_stages: BTreeSet<usize> = BTreeSet::new();

    for &i in &order {
        let plan = &plans[i];
        let Some(stage_impl) = plan.stage_impl else {
            failed_stages.insert(i);
            continue;
        };
        let stage_axes: Vec<&super::model::Axis> = raw
            .matrix
            .iter()
            .filter(|a| axes_of[i].contains(&a.name))
            .collect();
        for combo in product(&stage_axes) {
            let binding: Vec<(String, Value)> = stage_axes
                .iter()
                .zip(&combo)
                .map(|(a, &v)| (a.name.clone(), a.values[v].clone()))
                .collect();
            let key = binding_key(&binding);
            let value = interpolate(&plan.params, &binding);
            let Some(params) = parse_params(plan.raw, stage_impl, &value, errors) else {
                failed_stages.insert(i);
                continue;
            };
            let mut ok = true;
            for problem in stage_impl.validate(&params) {
                ok = false;
                let span = span_at(&value, &problem.path);
                let what = if problem.path.is_empty() {
                    String::new()
                } else {
                    format!("param `{}` of ", problem.path.join("."))
                };
                push_unique(
                    errors,
                    Diagnostic::new(
                        Code::InvalidParam,
                        format!(
                            "{what}stage `{}` ({}): {}",
                            plan.raw.id, plan.raw.kind, problem.message
                        ),
                    )
                    .at(span)
                    .help_opt(problem.help),
                );
            }
            let declared = stage_impl.inputs(&params);
            let mut inputs = Vec::new();
            for input in &plan.raw.inputs {
                let Some(slot) = declared.iter().find(|s| s.name == input.slot) else {
                    ok = false;
                    let names: Vec<&str> = declared.iter().map(|s| s.name).collect();
                    push_unique(
                        errors,
                        Diagnostic::new(
                            Code::UnknownInput,
                            format!(
                                "stage kind `{}` has no input `{}`",
                                plan.raw.kind, input.slot
                            ),
                        )
                        .at(input.slot_span)
                        .help(
                            did_you_mean(&input.slot, names.iter().copied()).unwrap_or_else(|| {
                                if names.is_empty() {
                                    format!("`{}` takes no inputs", plan.raw.kind)
                                } else {
                                    format!("inputs of `{}`: {}", plan.raw.kind, backticked(&names))
                                }
                            }),
                        ),
                    );
                    continue;
                };
                let mut sources = Vec::new();
                for r in &input.refs {
                    let Some(&u) = index.get(r.stage.as_str()) else {
                        ok = false;
                        continue;
                    };
                    if failed_stages.contains(&u) {
                        ok = false;
                        continue;
                    }
                    let candidates: Vec<usize> = if r.gather {
                        instance_order[u]
                            .iter()
                            .copied()
                            .filter(|&n| consistent(&nodes[n].binding, &binding))
                            .collect()
                    } else {
                        let restricted: Vec<(String, String)> = key
                            .iter()
                            .filter(|(a, _)| axes_of[u].contains(a))
                            .cloned()
                            .collect();
                        instances
                            .get(&(u, restricted))
                            .copied()
                            .into_iter()
                            .collect()
                    };
                    for n in candidates {
                        match resolve_output(r, &nodes[n], plan.raw) {
                            Ok(output) => sources.push(OutputRef { node: n, output }),
                            Err(d) => {
                                ok = false;
                                push_unique(errors, d);
                            }
                        }
                    }
                }
                let many = input.listed || input.refs.iter().any(|r| r.gather) || sources.len() > 1;
                if slot.arity == Arity::One && many {
                    ok = false;
                    push_unique(
                        errors,
                        Diagnostic::new(
                            Code::InputArity,
                            format!(
                                "input `{}` of `{}` takes exactly one reference, not a list or a gather",
                                input.slot, plan.raw.kind
                            ),
                        )
                        .at(input.slot_span)
                        .help("reference one `stage.output`; use `concat` to stack several tables first"),
                    );
                }
                inputs.push(NodeInput {
                    slot: input.slot.clone(),
                    sources,
                });
            }
            for slot in declared.iter().filter(|s| !s.optional) {
                if !plan.raw.inputs.iter().any(|i| i.slot == slot.name) {
                    ok = false;
                    push_unique(
                        errors,
                        Diagnostic::new(
                            Code::MissingInput,
                            format!(
                                "stage `{}` ({}) needs input `{}`",
                                plan.raw.id, plan.raw.kind, slot.name
                            ),
                        )
                        .at(plan.raw.id_span)
                        .help(format!(
                            "add `inputs: {{ {}: <stage>.<output> }}`",
                            slot.name
                        )),
                    );
                }
            }
            let mut placement_errors = Vec::new();
            let shard = plan.raw.shard.as_ref().and_then(|v| {
                placement::read_shard(
                    &plan.raw.id,
                    &plan.raw.kind,
                    stage_impl.row_mapped_slot().is_some(),
                    &registry.row_mapped_kinds(),
                    v,
                    &mut placement_errors,
                )
            });
            let resources = plan
                .raw
                .resources
                .as_ref()
                .map(|v| placement::read_resources(&plan.raw.id, v, &mut placement_errors))
                .unwrap_or_default();
            for d in placement_errors {
                ok = false;
                push_unique(errors, d);
            }
            if !ok {
                failed_stages.insert(i);
                continue;
            }
            let env = tw_stages::PlanEnv {
                base_dir: base_dir.to_path_buf(),
            };
            let node = Node {
                id: instance_id(&plan.raw.id, &binding),
                stage: plan.raw.id.clone(),
                binding: binding
                    .iter()
                    .map(|(a, v)| (a.clone(), v.to_json()))
                    .collect(),
                stage_impl,
                outputs: stage_impl.outputs(&params),
                file_deps: stage_impl.file_deps(&params, &env),
                env_facts: stage_impl.env_facts(&params),
                cache_policy: stage_impl.cache_policy(&params),
                params,
                params_value: value,
                inputs,
                id_span: plan.raw.id_span,
                description: plan.raw.description.clone(),
                shard,
                resources,
            };
            instances.insert((i, key), nodes.len());
            instance_order[i].push(nodes.len());
            nodes.push(node);
        }
    }
    if errors.len() > start_errors {
        return None;
    }
    Some(Resolved {
        experiment: raw.experiment.clone(),
        description: raw.description.clone(),
        axes: axis_names,
        nodes,
    })
}

fn push_unique(errors: &mut Vec<Diagnostic>, d: Diagnostic) {
    if !errors.contains(&d) {
        errors.push(d);
    }
}

fn resolve_output(r: &RawRef, upstream: &Node, reader: &RawStage) -> Result<String, Diagnostic> {
    let outputs: Vec<&str> = upstream.outputs.iter().map(String::as_str).collect();
    match &r.output {
        Some(o) if outputs.contains(&o.as_str()) => Ok(o.clone()),
        Some(o) => Err(Diagnostic::new(
            Code::UnknownOutput,
            format!(
                "stage `{}` reads `{}`, but `{}` ({}) has no output `{o}`",
                reader.id,
                r.text,
                r.stage,
                upstream.kind()
            ),
        )
        .at(r.span)
        .label("no such output")
        .help(
            did_you_mean(o, outputs.iter().copied())
                .unwrap_or_else(|| format!("outputs: {}", backticked(&outputs))),
        )),
        None if outputs.len() == 1 => Ok(outputs[0].to_string()),
        None => Err(Diagnostic::new(
            Code::BadReference,
            format!("`{}` has several outputs; name one", r.stage),
        )
        .at(r.span)
        .help(format!("outputs: {}", backticked(&outputs)))),
    }
}

/// Parse params; turn serde errors into diagnostics at the offending span.
fn parse_params(
    stage: &RawStage,
    stage_impl: &dyn DynStage,
    value: &Value,
    errors: &mut Vec<Diagnostic>,
) -> Option<ParsedParams> {
    match stage_impl.parse_params(value) {
        Ok(p) => Some(p),
        Err(param_errors) => {
            for e in param_errors {
                push_unique(errors, param_diagnostic(stage, &e, value));
            }
            None
        }
    }
}

fn param_diagnostic(stage: &RawStage, e: &ParamError, params: &Value) -> Diagnostic {
    let span = e.span.unwrap_or(params.span);
    let at = if e.path.is_empty() {
        String::new()
    } else {
        format!(" (at `{}`)", e.path.join("."))
    };
    match e.kind.as_ref() {
        ParamErrorKind::UnknownField { field, expected } => Diagnostic::new(
            Code::UnknownParam,
            format!(
                "stage `{}` ({}) has no param `{field}`{at}",
                stage.id, stage.kind
            ),
        )
        .at(span)
        .label("unknown param")
        .help(
            did_you_mean(field, expected.iter().copied()).unwrap_or_else(|| {
                if expected.is_empty() {
                    format!("`{}` takes no params here", stage.kind)
                } else {
                    format!("params: {}", backticked(expected))
                }
            }),
        ),
        ParamErrorKind::MissingField { field } => Diagnostic::new(
            Code::MissingParam,
            format!(
                "stage `{}` ({}) needs param `{field}`{at}",
                stage.id, stage.kind
            ),
        )
        .at(span)
        .help(format!(
            "`tw stages describe {}` documents its params",
            stage.kind
        )),
        ParamErrorKind::Invalid => {
            let name = if e.path.is_empty() {
                "params".to_string()
            } else {
                format!("param `{}`", e.path.join("."))
            };
            Diagnostic::new(
                Code::InvalidParam,
                format!(
                    "{name} of stage `{}` ({}): {}",
                    stage.id, stage.kind, e.message
                ),
            )
            .at(span)
        }
    }
}

/// Span of the node at `path` inside `value`, or the deepest ancestor that exists.
pub fn span_at(value: &Value, path: &[String]) -> Span {
    let mut current = value;
    for segment in path {
        let next = match &current.kind {
            ValueKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| &k.name == segment)
                .map(|(_, v)| v),
            ValueKind::Seq(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(v) => current = v,
            None => break,
        }
    }
    current.span
}

fn merge_defaults(params: &Value, defaults: Option<&Value>) -> Value {
    let Some(ValueKind::Map(default_entries)) = defaults.map(|d| &d.kind) else {
        return params.clone();
    };
    let own = params.as_map().unwrap_or(&[]);
    let mut merged: Vec<(Key, Value)> = default_entries
        .iter()
        .filter(|(k, _)| !own.iter().any(|(o, _)| o.name == k.name))
        .cloned()
        .collect();
    merged.extend(own.iter().cloned());
    Value::new(ValueKind::Map(merged), params.span)
}

/// Every `${name}` in the strings of `value`, with the span of the string.
fn axis_references(value: &Value) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    walk_strings(value, &mut |s, span| {
        for name in placeholders(s) {
            out.push((name, span));
        }
    });
    out
}

fn walk_strings(value: &Value, f: &mut dyn FnMut(&str, Span)) {
    match &value.kind {
        ValueKind::Str(s) => f(s, value.span),
        ValueKind::Seq(items) => items.iter().for_each(|v| walk_strings(v, f)),
        ValueKind::Map(entries) => entries.iter().for_each(|(_, v)| walk_strings(v, f)),
        _ => {}
    }
}

/// Names inside `${...}`; `$${` escapes a literal `${`.
fn placeholders(s: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find("${") {
        if pos > 0 && rest.as_bytes()[pos - 1] == b'$' {
            rest = &rest[pos + 2..];
            continue;
        }
        let after = &rest[pos + 2..];
        match after.find('}') {
            Some(end) => {
                names.push(after[..end].trim().to_string());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    names
}

fn interpolate(value: &Value, binding: &[(String, Value)]) -> Value {
    match &value.kind {
        ValueKind::Str(s) if s.contains("${") => {
            let names = placeholders(s);
            if names.len() == 1
                && s.trim() == format!("${{{}}}", names[0])
                && let Some((_, v)) = binding.iter().find(|(a, _)| *a == names[0])
            {
                return Value::new(v.kind.clone(), value.span);
            }
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(pos) = rest.find("${") {
                if pos > 0 && rest.as_bytes()[pos - 1] == b'$' {
                    out.push_str(&rest[..pos - 1]);
                    out.push_str("${");
                    rest = &rest[pos + 2..];
                    continue;
                }
                out.push_str(&rest[..pos]);
                let after = &rest[pos + 2..];
                let Some(end) = after.find('}') else {
                    out.push_str(&rest[pos..]);
                    rest = "";
                    break;
                };
                let name = after[..end].trim();
                match binding
                    .iter()
                    .find(|(a, _)| a == name)
                    .and_then(|(_, v)| v.scalar_text())
                {
                    Some(text) => out.push_str(&text),
                    None => out.push_str(&rest[pos..pos + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            Value::new(ValueKind::Str(out), value.span)
        }
        ValueKind::Seq(items) => Value::new(
            ValueKind::Seq(items.iter().map(|v| interpolate(v, binding)).collect()),
            value.span,
        ),
        ValueKind::Map(entries) => Value::new(
            ValueKind::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), interpolate(v, binding)))
                    .collect(),
            ),
            value.span,
        ),
        _ => value.clone(),
    }
}

fn binding_key(binding: &[(String, Value)]) -> Vec<(String, String)> {
    binding
        .iter()
        .map(|(a, v)| (a.clone(), v.scalar_text().unwrap_or_default()))
        .collect()
}

fn consistent(upstream: &[(String, serde_json::Value)], mine: &[(String, Value)]) -> bool {
    upstream.iter().all(|(axis, value)| {
        mine.iter()
            .find(|(a, _)| a == axis)
            .is_none_or(|(_, v)| v.to_json() == *value)
    })
}

pub fn instance_id(stage: &str, binding: &[(String, Value)]) -> String {
    if binding.is_empty() {
        return stage.to_string();
    }
    let parts: Vec<String> = binding
        .iter()
        .map(|(a, v)| format!("{a}={}", v.scalar_text().unwrap_or_default()))
        .collect();
    format!("{stage}[{}]", parts.join(","))
}

/// Every combination of value indices, first axis slowest.
fn product(axes: &[&super::model::Axis]) -> Vec<Vec<usize>> {
    let mut combos = vec![Vec::new()];
    for axis in axes {
        let mut next = Vec::with_capacity(combos.len() * axis.values.len());
        for combo in &combos {
            for v in 0..axis.values.len() {
                let mut c = combo.clone();
                c.push(v);
                next.push(c);
            }
        }
        combos = next;
    }
    combos
}

/// Topological order of stages (declaration order among equals), or a cycle.
fn stage_order(plans: &[StagePlan<'_>]) -> Result<Vec<usize>, Vec<usize>> {
    let mut graph: DiGraph<usize, ()> = DiGraph::new();
    let ids: Vec<NodeIndex> = (0..plans.len()).map(|i| graph.add_node(i)).collect();
    for (i, plan) in plans.iter().enumerate() {
        for &u in &plan.upstream {
            graph.update_edge(ids[u], ids[i], ());
        }
    }
    // Kahn's algorithm with a min-heap on declaration order for a stable order.
    let mut indegree: Vec<usize> = ids
        .iter()
        .map(|&n| {
            graph
                .neighbors_directed(n, petgraph::Direction::Incoming)
                .count()
        })
        .collect();
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = indegree
        .iter()
        .enumerate()
        .filter(|(_, d)| **d == 0)
        .map(|(i, _)| std::cmp::Reverse(i))
        .collect();
    let mut order = Vec::with_capacity(plans.len());
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        order.push(i);
        for next in graph.neighbors_directed(ids[i], petgraph::Direction::Outgoing) {
            let j = graph[next];
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(std::cmp::Reverse(j));
            }
        }
    }
    if order.len() == plans.len() {
        return Ok(order);
    }
    // Report one cycle, as a path, starting from its first-declared stage.
    let sccs = petgraph::algo::tarjan_scc(&graph);
    let cyclic = sccs
        .into_iter()
        .filter(|c| c.len() > 1 || graph.contains_edge(c[0], c[0]))
        .min_by_key(|c| c.iter().map(|&n| graph[n]).min())
        .unwrap_or_default();
    let members: BTreeSet<usize> = cyclic.iter().map(|&n| graph[n]).collect();
    let start = *members.iter().next().unwrap_or(&0);
    let mut path = vec![start];
    let mut current = start;
    loop {
        // follow an edge to an upstream member (readers point at what they read)
        let next = plans[current]
            .upstream
            .iter()
            .copied()
            .filter(|u| members.contains(u))
            .min();
        match next {
            Some(n) if n == start || path.contains(&n) => break,
            Some(n) => {
                path.push(n);
                current = n;
            }
            None => break,
        }
    }
    // Present as data flow (upstream first), starting at the first-declared stage.
    path.reverse();
    let first = path
        .iter()
        .enumerate()
        .min_by_key(|(_, s)| **s)
        .map_or(0, |(i, _)| i);
    path.rotate_left(first);
    Err(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_escapes() {
        assert_eq!(placeholders("a ${x} b ${ y }"), vec!["x", "y"]);
        assert_eq!(placeholders("$${x} ${z}"), vec!["z"]);
        let binding = vec![(
            "x".to_string(),
            Value::new(ValueKind::Int(3), Span::default()),
        )];
        let v = interpolate(
            &Value::new(ValueKind::Str("${x}".into()), Span::default()),
            &binding,
        );
        assert_eq!(v.kind, ValueKind::Int(3));
        let v = interpolate(
            &Value::new(ValueKind::Str("s${x}-$${x}".into()), Span::default()),
            &binding,
        );
        assert_eq!(v.kind, ValueKind::Str("s3-${x}".into()));
    }
}
