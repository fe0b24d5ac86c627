//! Where and in how many pieces a stage runs: `shard:` and `resources:`.
//!
//! Neither changes what a stage computes, so `resources` stays out of the
//! key; `shard` goes in it only as the gathered node's shard size (see
//! [`crate::key::PreImage::shard`]).

use crate::diag::{Code, Diagnostic};
use crate::spec::model::backticked;
use tw_stages::api::value::{Value, ValueKind};

/// `shard: { rows: N }`: split the kind's row-mapped input into chunks of N
/// rows (keeping a group's rows together), run each chunk as its own cached
/// unit, and concatenate the outputs in chunk order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSpec {
    pub rows: usize,
}

/// What a cluster executor asks for per job (a shard, or a whole stage).
/// Empty fields use the cluster's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpus: Option<u64>,
    pub gpus: Option<u64>,
    /// Slurm's `--mem` syntax: `16G`, `4000M`.
    pub mem: Option<String>,
    /// Slurm's `--time` syntax: `2:00:00`, `1-00:00:00`, minutes.
    pub time: Option<String>,
    pub partition: Option<String>,
}

const SHARD_FIELDS: &[&str] = &["rows"];
const RESOURCE_FIELDS: &[&str] = &["cpus", "gpus", "mem", "time", "partition"];

/// `shardable`: the kinds that map over rows, for the help of a kind that does not.
pub fn read_shard(
    stage: &str,
    kind: &str,
    row_mapped: bool,
    shardable: &[&str],
    value: &Value,
    errors: &mut Vec<Diagnostic>,
) -> Option<ShardSpec> {
    let Some(entries) = value.as_map() else {
        errors.push(
            Diagnostic::new(
                Code::WrongType,
                format!(
                    "`shard` of stage `{stage}` must be a map, found {}",
                    value.type_name()
                ),
            )
            .at(value.span)
            .help("write `shard: { rows: 500 }`"),
        );
        return None;
    };
    if !row_mapped {
        errors.push(
            Diagnostic::new(
                Code::InvalidParam,
                format!(
                    "stage `{stage}` ({kind}) cannot be sharded: `{kind}` does not map over rows"
                ),
            )
            .at(value.span)
            .help(format!(
                "shard the stages that do: {}",
                backticked(shardable)
            )),
        );
        return None;
    }
    let mut rows = None;
    let mut ok = true;
    for (key, v) in entries {
        match key.name.as_str() {
            "rows" => match v.kind {
                ValueKind::Int(n) if n > 0 => rows = Some(n as usize),
                _ => {
                    ok = false;
                    errors.push(
                        Diagnostic::new(
                            Code::InvalidParam,
                            format!("`shard.rows` of stage `{stage}` must be a positive integer"),
                        )
                        .at(v.span),
                    );
                }
            },
            _ => {
                ok = false;
                errors.push(
                    Diagnostic::new(
                        Code::UnknownField,
                        format!("unknown field `{}` in `shard` of stage `{stage}`", key.name),
                    )
                    .at(key.span)
                    .help(format!("expected {}", backticked(SHARD_FIELDS))),
                );
            }
        }
    }
    match rows {
        Some(rows) if ok => Some(ShardSpec { rows }),
        None if ok => {
            errors.push(
                Diagnostic::new(
                    Code::MissingField,
                    format!("`shard` of stage `{stage}` does not say how many rows per shard"),
                )
                .at(value.span)
                .help("write `shard: { rows: 500 }`"),
            );
            None
        }
        _ => None,
    }
}

pub fn read_resources(stage: &str, value: &Value, errors: &mut Vec<Diagnostic>) -> Resources {
    let mut resources = Resources::default();
    let Some(entries) = value.as_map() else {
        errors.push(
            Diagnostic::new(
                Code::WrongType,
                format!(
                    "`resources` of stage `{stage}` must be a map, found {}",
                    value.type_name()
                ),
            )
            .at(value.span)
            .help("e.g. `resources: { cpus: 8, gpus: 1, mem: 32G, time: \"4:00:00\", partition: gpu }`"),
        );
        return resources;
    };
    for (key, v) in entries {
        let count = |errors: &mut Vec<Diagnostic>| match v.kind {
            ValueKind::Int(n) if n >= 0 => Some(n as u64),
            _ => {
                errors.push(
                    Diagnostic::new(
                        Code::InvalidParam,
                        format!(
                            "`resources.{}` of stage `{stage}` must be a non-negative integer",
                            key.name
                        ),
                    )
                    .at(v.span),
                );
                None
            }
        };
        let text = |errors: &mut Vec<Diagnostic>| match &v.kind {
            ValueKind::Str(s) if !s.trim().is_empty() && !s.contains(char::is_whitespace) => {
                Some(s.clone())
            }
            ValueKind::Int(n) if *n > 0 => Some(n.to_string()),
            _ => {
                errors.push(
                    Diagnostic::new(
                        Code::InvalidParam,
                        format!(
                            "`resources.{}` of stage `{stage}` must be one word, as Slurm writes it",
                            key.name
                        ),
                    )
                    .at(v.span)
                    .help("e.g. `mem: 32G`, `time: \"4:00:00\"`, `partition: gpu`"),
                );
                None
            }
        };
        match key.name.as_str() {
            "cpus" => resources.cpus = count(errors),
            "gpus" => resources.gpus = count(errors),
            "mem" => resources.mem = text(errors),
            "time" => resources.time = text(errors),
            "partition" => resources.partition = text(errors),
            _ => errors.push(
                Diagnostic::new(
                    Code::UnknownField,
                    format!(
                        "unknown field `{}` in `resources` of stage `{stage}`",
                        key.name
                    ),
                )
                .at(key.span)
                .help(format!("expected one of {}", backticked(RESOURCE_FIELDS))),
            ),
        }
    }
    resources
}
