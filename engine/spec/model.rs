//! The spec schema, read from the spanned tree with every problem collected.
//!
//! ```yaml
//! experiment: rq1            # required: name, [A-Za-z0-9_-]
//! description: "..."         # optional
//! matrix:                    # optional: axis -> list of values
//!   format: [next, concise]
//!   seed: [0, 1]
//! defaults:                  # optional: kind -> params merged under each stage's own
//!   load: { on_error: skip }
//! stages:                    # required: id -> stage
//!   problems: { kind: load, params: { path: data/x.jsonl } }
//!   prompts:
//!     kind: render
//!     inputs: { rows: problems.rows }
//!     params: { template: t/${format}.j2 }
//! ```

use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::source::Span;
use tw_stages::api::value::{Key, Value, ValueKind};

#[derive(Debug, Clone)]
pub struct RawSpec {
    pub experiment: String,
    pub experiment_span: Span,
    pub description: Option<String>,
    pub matrix: Vec<Axis>,
    pub defaults: Vec<(Key, Value)>,
    pub stages: Vec<RawStage>,
}

#[derive(Debug, Clone)]
pub struct Axis {
    pub name: String,
    pub span: Span,
    pub values: Vec<Value>,
}

#[derive(Debug, Clone)]
pub struct RawStage {
    pub id: String,
    pub id_span: Span,
    pub kind: String,
    pub kind_span: Span,
    pub inputs: Vec<RawInput>,
    /// Always a map (empty when the spec gives none).
    pub params: Value,
    pub description: Option<String>,
    /// `shard: { rows: N }` as written; checked against the kind in `resolve`.
    pub shard: Option<Value>,
    /// `resources: { cpus, gpus, mem, time, partition }` for a cluster executor.
    pub resources: Option<Value>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct RawInput {
    pub slot: String,
    pub slot_span: Span,
    /// True when written as a list (`[a.rows, b.rows]`).
    pub listed: bool,
    pub refs: Vec<RawRef>,
}

/// `stage.output`, `stage[*].output`, or `stage` / `stage[*]` for a one-output stage.
#[derive(Debug, Clone)]
pub struct RawRef {
    pub stage: String,
    pub output: Option<String>,
    pub gather: bool,
    pub span: Span,
    pub text: String,
}

const TOP_FIELDS: &[&str] = &["experiment", "description", "matrix", "defaults", "stages"];
const STAGE_FIELDS: &[&str] = &[
    "kind",
    "inputs",
    "params",
    "description",
    "shard",
    "resources",
];

pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn unknown_field(key: &Key, what: &str, fields: &[&str]) -> Diagnostic {
    Diagnostic::new(
        Code::UnknownField,
        format!("unknown field `{}` in {what}", key.name),
    )
    .at(key.span)
    .help(
        did_you_mean(&key.name, fields.iter().copied())
            .unwrap_or_else(|| format!("expected one of {}", backticked(fields))),
    )
}

pub fn backticked(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn wrong_type(value: &Value, what: &str, expected: &str) -> Diagnostic {
    Diagnostic::new(
        Code::WrongType,
        format!("{what} must be {expected}, found {}", value.type_name()),
    )
    .at(value.span)
}

fn string_of(value: &Value, what: &str, errors: &mut Vec<Diagnostic>) -> Option<String> {
    match &value.kind {
        ValueKind::Str(s) => Some(s.clone()),
        _ => {
            errors.push(wrong_type(value, what, "a string"));
            None
        }
    }
}

pub fn read_spec(root: &Value, errors: &mut Vec<Diagnostic>) -> Option<RawSpec> {
    let Some(entries) = root.as_map() else {
        errors.push(wrong_type(
            root,
            "a spec",
            "a map with `experiment` and `stages`",
        ));
        return None;
    };
    let mut experiment = None;
    let mut description = None;
    let mut matrix = Vec::new();
    let mut defaults = Vec::new();
    let mut stages = None;
    for (key, value) in entries {
        match key.name.as_str() {
            "experiment" => {
                if let Some(name) = string_of(value, "`experiment`", errors) {
                    if valid_name(&name) {
                        experiment = Some((name, value.span));
                    } else {
                        errors.push(
                            Diagnostic::new(
                                Code::InvalidName,
                                format!("experiment name `{name}` is not valid"),
                            )
                            .at(value.span)
                            .help("use letters, digits, `_` and `-`, starting with a letter"),
                        );
                    }
                }
            }
            "description" => description = string_of(value, "`description`", errors),
            "matrix" => matrix = read_matrix(value, errors),
            "defaults" => match value.as_map() {
                Some(m) => {
                    for (kind, params) in m {
                        if params.as_map().is_none() {
                            errors.push(wrong_type(
                                params,
                                &format!("defaults for `{}`", kind.name),
                                "a map of params",
                            ));
                        } else {
                            defaults.push((kind.clone(), params.clone()));
                        }
                    }
                }
                None => errors.push(wrong_type(value, "`defaults`", "a map of kind -> params")),
            },
            "stages" => stages = Some(read_stages(value, errors)),
            _ => errors.push(unknown_field(key, "the spec", TOP_FIELDS)),
        }
    }
    let root_span = Span::new(root.span.file, 0, 0);
    if experiment.is_none() && !entries.iter().any(|(k, _)| k.name == "experiment") {
        errors.push(
            Diagnostic::new(Code::MissingField, "the spec has no `experiment` name")
                .at(root_span)
                .help("add `experiment: my_study` at the top"),
        );
    }
    let stages = match stages {
        Some(s) => s,
        None => {
            errors.push(
                Diagnostic::new(Code::MissingField, "the spec has no `stages`")
                    .at(root_span)
                    .help("add a `stages:` map of stage id -> { kind, inputs, params }"),
            );
            Vec::new()
        }
    };
    let (experiment, experiment_span) = experiment?;
    Some(RawSpec {
        experiment,
        experiment_span,
        description,
        matrix,
        defaults,
        stages,
    })
}

fn read_matrix(value: &Value, errors: &mut Vec<Diagnostic>) -> Vec<Axis> {
    let Some(entries) = value.as_map() else {
        errors.push(wrong_type(
            value,
            "`matrix`",
            "a map of axis -> list of values",
        ));
        return Vec::new();
    };
    let mut axes = Vec::new();
    for (key, values) in entries {
        if !valid_name(&key.name) {
            errors.push(
                Diagnostic::new(
                    Code::InvalidName,
                    format!("matrix axis `{}` is not a valid name", key.name),
                )
                .at(key.span)
                .help("use letters, digits, `_` and `-`, starting with a letter"),
            );
            continue;
        }
        match &values.kind {
            ValueKind::Seq(items) if items.is_empty() => errors.push(
                Diagnostic::new(
                    Code::EmptyAxis,
                    format!("matrix axis `{}` has no values", key.name),
                )
                .at(values.span)
                .help("give at least one value, or remove the axis"),
            ),
            ValueKind::Seq(items) => {
                let mut ok = true;
                for item in items {
                    if item.scalar_text().is_none() {
                        errors.push(wrong_type(
                            item,
                            &format!("a value of matrix axis `{}`", key.name),
                            "a scalar",
                        ));
                        ok = false;
                    }
                }
                let mut seen = Vec::new();
                for item in items {
                    let text = item.scalar_text();
                    if seen.contains(&text) {
                        errors.push(
                            Diagnostic::new(
                                Code::DuplicateKey,
                                format!("matrix axis `{}` lists a value twice", key.name),
                            )
                            .at(item.span),
                        );
                        ok = false;
                    }
                    seen.push(text);
                }
                if ok {
                    axes.push(Axis {
                        name: key.name.clone(),
                        span: key.span,
                        values: items.clone(),
                    });
                }
            }
            _ => errors.push(wrong_type(
                values,
                &format!("matrix axis `{}`", key.name),
                "a list",
            )),
        }
    }
    axes
}

fn read_stages(value: &Value, errors: &mut Vec<Diagnostic>) -> Vec<RawStage> {
    let Some(entries) = value.as_map() else {
        errors.push(wrong_type(value, "`stages`", "a map of stage id -> stage"));
        return Vec::new();
    };
    if entries.is_empty() {
        errors.push(Diagnostic::new(Code::MissingField, "`stages` is empty").at(value.span));
    }
    let mut stages = Vec::new();
    for (key, body) in entries {
        if !valid_name(&key.name) {
            errors.push(
                Diagnostic::new(
                    Code::InvalidName,
                    format!("stage id `{}` is not valid", key.name),
                )
                .at(key.span)
                .help("use letters, digits, `_` and `-`, starting with a letter or `_`"),
            );
            continue;
        }
        if let Some(stage) = read_stage(key, body, errors) {
            stages.push(stage);
        }
    }
    stages
}

fn read_stage(id: &Key, body: &Value, errors: &mut Vec<Diagnostic>) -> Option<RawStage> {
    let Some(entries) = body.as_map() else {
        errors.push(wrong_type(
            body,
            &format!("stage `{}`", id.name),
            "a map with `kind`",
        ));
        return None;
    };
    let mut kind = None;
    let mut inputs = Vec::new();
    let mut params = Value::new(ValueKind::Map(Vec::new()), body.span);
    let mut description = None;
    let mut shard = None;
    let mut resources = None;
    for (key, value) in entries {
        match key.name.as_str() {
            "shard" => shard = Some(value.clone()),
            "resources" => resources = Some(value.clone()),
            "kind" => kind = string_of(value, "`kind`", errors).map(|k| (k, value.span)),
            "inputs" => inputs = read_inputs(id, value, errors),
            "params" => match value.kind {
                ValueKind::Map(_) => params = value.clone(),
                ValueKind::Null => {}
                _ => errors.push(wrong_type(
                    value,
                    &format!("params of stage `{}`", id.name),
                    "a map",
                )),
            },
            "description" => description = string_of(value, "`description`", errors),
            _ => errors.push(unknown_field(
                key,
                &format!("stage `{}`", id.name),
                STAGE_FIELDS,
            )),
        }
    }
    let Some((kind, kind_span)) = kind else {
        if !entries.iter().any(|(k, _)| k.name == "kind") {
            errors.push(
                Diagnostic::new(
                    Code::MissingField,
                    format!("stage `{}` has no `kind`", id.name),
                )
                .at(id.span)
                .help("add `kind:`; `tw stages` lists the kinds"),
            );
        }
        return None;
    };
    Some(RawStage {
        id: id.name.clone(),
        id_span: id.span,
        kind,
        kind_span,
        inputs,
        params,
        description,
        shard,
        resources,
        span: body.span,
    })
}

fn read_inputs(stage: &Key, value: &Value, errors: &mut Vec<Diagnostic>) -> Vec<RawInput> {
    let Some(entries) = value.as_map() else {
        errors.push(wrong_type(
            value,
            &format!("inputs of stage `{}`", stage.name),
            "a map of slot -> reference",
        ));
        return Vec::new();
    };
    let mut inputs = Vec::new();
    for (slot, target) in entries {
        let (listed, items): (bool, Vec<&Value>) = match &target.kind {
            ValueKind::Seq(items) => (true, items.iter().collect()),
            _ => (false, vec![target]),
        };
        if listed && items.is_empty() {
            errors.push(
                Diagnostic::new(
                    Code::BadReference,
                    format!("input `{}` lists no references", slot.name),
                )
                .at(target.span),
            );
            continue;
        }
        let mut refs = Vec::new();
        for item in items {
            match item.as_str().map(|s| parse_ref(s, item.span)) {
                Some(Ok(r)) => refs.push(r),
                Some(Err(d)) => errors.push(d),
                None => errors.push(wrong_type(
                    item,
                    &format!("input `{}`", slot.name),
                    "a reference `stage.output`",
                )),
            }
        }
        inputs.push(RawInput {
            slot: slot.name.clone(),
            slot_span: slot.span,
            listed,
            refs,
        });
    }
    inputs
}

pub fn parse_ref(text: &str, span: Span) -> Result<RawRef, Diagnostic> {
    let bad = || {
        Diagnostic::new(Code::BadReference, format!("`{text}` is not a reference"))
            .at(span)
            .help("write `stage.output`, or `stage[*].output` to gather every matrix instance")
    };
    let (head, output) = match text.split_once('.') {
        Some((h, o)) => (h, Some(o)),
        None => (text, None),
    };
    let (stage, gather) = match head.strip_suffix("[*]") {
        Some(s) => (s, true),
        None => (head, false),
    };
    if !valid_name(stage) || output.is_some_and(|o| !valid_name(o)) {
        return Err(bad());
    }
    Ok(RawRef {
        stage: stage.to_string(),
        output: output.map(String::from),
        gather,
        span,
        text: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_parse() {
        let s = Span::default();
        let r = parse_ref("score[*].table", s).unwrap();
        assert_eq!(
            (r.stage.as_str(), r.output.as_deref(), r.gather),
            ("score", Some("table"), true)
        );
        let r = parse_ref("problems", s).unwrap();
        assert_eq!(
            (r.stage.as_str(), r.output, r.gather),
            ("problems", None, false)
        );
        assert!(parse_ref("a.b.c", s).is_err());
        assert!(parse_ref("a[1].b", s).is_err());
        assert!(parse_ref("", s).is_err());
    }
}
