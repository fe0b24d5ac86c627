//! `export_sft`: write repair examples as LLaMA-Factory ShareGPT datasets, one per representation x split.
//!
//! # What it does
//! For every pair, renders the chat `template` (`templates/prompts/sft_repair.j2`:
//! user/assistant messages as JSON) once per format: `naive` (no trace: the
//! buggy program only) and each representation bound to `traces`, in variant
//! `x` (the trace in the prompt) and/or `y` (the trace after the fix, in the
//! answer). As in the original study, a pair is exported only when every
//! format has its rendering and each fits `max_tokens` (counted on Python's
//! `str(messages)` with a real BPE tokenizer), so all datasets hold the same
//! pairs; the rest are counted (`dropped_missing_trace`, `dropped_too_long`).
//! Each split flag of the pairs (`above`, `below`, `random` from
//! `mine_pairs`) then gives one dataset per format, written as JSONL
//! records `{"messages", "uuid", "token_size", "sim_score"}` in the
//! artifact's `llama_factory/` directory, with a `dataset_info.json` that
//! registers each file in ShareGPT format (`role`/`content`, `user`/`assistant`).
//!
//! # Params
//! - `template` (required): the messages template, relative to the spec.
//! - `representations` (required): one name per `traces` input, in order.
//! - `naive` (default true): also export the format without a trace.
//! - `variants` (default `[x]`): `x`, `y` or both; with both, names carry `_x`/`_y`.
//! - `splits` (default `{above: above, below: below, random: random}`): split
//!   column -> name in file names (the study: `{above: sim0.75, below: sim0, random: rnd}`).
//! - `prefix` (default `rq1_tracefmt`): `<prefix>_<format>[_<variant>]_<split>`.
//! - `max_tokens` (default 2048), `tokenizer` (default `o200k_base`, the
//!   study's gpt-4o-mini; or `cl100k_base`).
//! - `id` (default `pair_id`): the column joining traces to pairs.
//!
//! # Inputs
//! - `pairs`: `pair_id`, `buggy`, `patch`, `similarity` and the split columns.
//! - `traces` (one or more): `represent` outputs (the id and `trace_text`).
//!
//! # Outputs
//! - `rows`: one per exported record: `dataset`, `format`, `variant`,
//!   `split`, `uuid`, `task_id` (the pair's problem), `token_size`,
//!   `sim_score`, `messages` (JSON text).
//! - `summary`: one per dataset: `dataset`, `format`, `variant`, `split`,
//!   `rows`, `tokens` (total), `mean_tokens`. The files sit beside the
//!   `rows` artifact, in `llama_factory/`.
//!
//! # Caching
//! The template's bytes and every param are in the key; rerunning writes
//! identical files.
//!
//! # Example
//! ```yaml
//! sft_data:
//!   kind: export_sft
//!   inputs: { pairs: pairs.pairs, traces: "represent[*].rows" }
//!   params:
//!     template: ../templates/prompts/sft_repair.j2
//!     representations: [next, concise, codeexecutor, concise2]
//!     splits: { above: sim0.75, below: sim0, random: rnd }
//! ```

use crate::api::artifact;
use crate::api::rows;
use crate::api::rows::{Row, cell_text};
use crate::api::{FileDep, InputSlot, PlanEnv, Problem, RunCtx, Stage, StageError};
use crate::python::pyvalue;
use crate::text::sharegpt::{sharegpt_dataset_info, valid_name};
use crate::text::templates;
use crate::text::templating;
use crate::text::tokens::Tokenizer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub struct ExportSft;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSftParams {
    pub template: String,
    pub representations: Vec<String>,
    #[serde(default = "yes")]
    pub naive: bool,
    #[serde(default = "default_variants")]
    pub variants: Vec<String>,
    #[serde(default = "default_splits")]
    pub splits: BTreeMap<String, String>,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    #[serde(default = "default_tokenizer")]
    pub tokenizer: String,
    #[serde(default = "default_id")]
    pub id: String,
}

fn yes() -> bool {
    true
}
fn default_variants() -> Vec<String> {
    vec!["x".into()]
}
fn default_splits() -> BTreeMap<String, String> {
    ["above", "below", "random"]
        .into_iter()
        .map(|s| (s.to_string(), s.to_string()))
        .collect()
}
fn default_prefix() -> String {
    "rq1_tracefmt".into()
}
fn default_max_tokens() -> usize {
    2048
}
fn default_tokenizer() -> String {
    "o200k_base".into()
}
fn default_id() -> String {
    "pair_id".into()
}

impl Stage for ExportSft {
    const KIND: &'static str = "export_sft";
    const VERSION: u32 = 2;
    const SOURCE: &'static str = include_str!("export_sft.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("pairs"), InputSlot::many("traces")];
    const OUTPUTS: &'static [&'static str] = &["rows", "summary"];
    type Params = ExportSftParams;

    fn validate(p: &ExportSftParams) -> Vec<Problem> {
        let mut problems = Vec::new();
        if p.representations.is_empty() {
            problems.push(Problem::at(
                "representations",
                "name the representation of each `traces` input",
            ));
        }
        for (i, name) in p.representations.iter().enumerate() {
            if !valid_name(name) || name == "naive" {
                problems.push(Problem::at(
                    &format!("representations[{i}]"),
                    format!(
                        "`{name}` cannot be a file-name part (letters, digits, `_-.`; not `naive`)"
                    ),
                ));
            }
        }
        for v in &p.variants {
            if v != "x" && v != "y" {
                problems.push(Problem::at(
                    "variants",
                    format!("unknown variant `{v}`: use `x` and/or `y`"),
                ));
            }
        }
        if p.variants.is_empty() {
            problems.push(Problem::at("variants", "list `x`, `y` or both"));
        }
        for name in p.splits.values() {
            if !valid_name(name) {
                problems.push(Problem::at(
                    "splits",
                    format!("`{name}` cannot be a file-name part"),
                ));
            }
        }
        if !valid_name(&p.prefix) {
            problems.push(Problem::at(
                "prefix",
                format!("`{}` cannot be a file-name part", p.prefix),
            ));
        }
        if Tokenizer::parse(&p.tokenizer).is_none() {
            problems.push(
                Problem::at("tokenizer", format!("unknown tokenizer `{}`", p.tokenizer))
                    .help("use `o200k_base` or `cl100k_base`"),
            );
        }
        problems
    }

    fn file_deps(p: &ExportSftParams, env: &PlanEnv) -> Vec<FileDep> {
        templates::template_deps(&p.template, env)
    }

    fn run(p: &ExportSftParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let pairs = artifact::table_to_json_rows(&ctx.input("pairs")?)?;
        for column in [p.id.as_str(), "buggy", "patch"] {
            rows::require_column(&pairs, "pairs", column, column)?;
        }
        for split in p.splits.keys() {
            rows::require_column(&pairs, "pairs", split, "splits")?;
        }
        let traces = ctx.inputs("traces")?;
        if traces.len() != p.representations.len() {
            return Err(StageError::BadInput {
                slot: "traces".into(),
                message: format!(
                    "{} tables bound but {} representations named: name one per table, in order",
                    traces.len(),
                    p.representations.len()
                ),
            });
        }
        let mut by_format: Vec<(String, BTreeMap<String, String>)> = Vec::new();
        for (name, table) in p.representations.iter().zip(traces) {
            let rows = artifact::table_to_json_rows(&table)?;
            rows::require_column(&rows, "traces", &p.id, "id")?;
            rows::require_column(&rows, "traces", "trace_text", "trace_text")?;
            let texts = rows
                .iter()
                .filter_map(|r| Some((cell_text(r, &p.id)?, cell_text(r, "trace_text")?)))
                .collect();
            by_format.push((name.clone(), texts));
        }

        let main = ctx.resolve(&p.template);
        let (env, main_name) = templates::load_templates(&main)?;
        let template = env
            .get_template(&main_name)
            .map_err(|e| StageError::Template {
                path: main.clone(),
                message: e.to_string(),
            })?;
        let tokenizer = Tokenizer::parse(&p.tokenizer)
            .ok_or_else(|| StageError::failed("unknown tokenizer"))?;
        let render = |row: &Row,
                      trace: Option<&str>,
                      naive: bool,
                      variant: &str|
         -> Result<Value, StageError> {
            let ctx_row = json!({
                "program": cell_text(row, "buggy").unwrap_or_default(),
                "fix": cell_text(row, "patch").unwrap_or_default(),
                "trace_text": trace.unwrap_or_default(),
            });
            let vars = json!({ "naive": naive, "variant": variant });
            let text = template
                .render(minijinja::context! {
                    row => templating::json_value(&ctx_row),
                    vars => templating::json_value(&vars),
                    ..templating::json_value(&ctx_row)
                })
                .map_err(|e| StageError::Template {
                    path: main.clone(),
                    message: e.to_string(),
                })?;
            serde_json::from_str(text.trim()).map_err(|e| StageError::Template {
                path: main.clone(),
                message: format!("the template must print the messages as JSON: {e}"),
            })
        };

        // Formats in a fixed order: naive, then each representation x variant.
        let mut formats: Vec<(String, String, Option<usize>)> = Vec::new();
        if p.naive {
            formats.push(("naive".into(), "x".into(), None));
        }
        for (i, (name, _)) in by_format.iter().enumerate() {
            for v in &p.variants {
                formats.push((name.clone(), v.clone(), Some(i)));
            }
        }
        let mut missing = 0u64;
        let mut too_long = 0u64;
        let mut records: Vec<(usize, Vec<(Value, usize)>)> = Vec::new();
        'pairs: for (i, pair) in pairs.iter().enumerate() {
            let id = cell_text(pair, &p.id).unwrap_or_default();
            let mut rendered = Vec::with_capacity(formats.len());
            for (_, variant, source) in &formats {
                let trace = match source {
                    Some(s) => match by_format[*s].1.get(&id) {
                        Some(t) => Some(t.as_str()),
                        None => {
                            missing += 1;
                            continue 'pairs;
                        }
                    },
                    None => None,
                };
                let messages = render(pair, trace, source.is_none(), variant)?;
                let tokens = tokenizer.count(&pyvalue::repr(&pyvalue::tagged_from_json(&messages)));
                if tokens >= p.max_tokens {
                    too_long += 1;
                    continue 'pairs;
                }
                rendered.push((messages, tokens));
            }
            records.push((i, rendered));
        }

        let many_variants = p.variants.len() > 1;
        let dir = ctx.output_path("rows").with_file_name("llama_factory");
        fs_err::create_dir_all(&dir)?;
        let mut rows = Vec::new();
        let mut summary = Vec::new();
        let mut dataset_info = Map::new();
        for (split_column, split_name) in &p.splits {
            for (f, (format, variant, _)) in formats.iter().enumerate() {
                let dataset = if many_variants && format != "naive" {
                    format!("{}_{format}_{variant}_{split_name}", p.prefix)
                } else {
                    format!("{}_{format}_{split_name}", p.prefix)
                };
                let mut lines = String::new();
                let mut count = 0u64;
                let mut tokens_total = 0u64;
                for (i, rendered) in &records {
                    let pair = &pairs[*i];
                    if pair.get(split_column).and_then(Value::as_bool) != Some(true) {
                        continue;
                    }
                    let (messages, tokens) = &rendered[f];
                    let uuid = cell_text(pair, &p.id).unwrap_or_default();
                    let sim = pair.get("similarity").cloned().unwrap_or(Value::Null);
                    let record = json!({
                        "messages": messages,
                        "uuid": uuid,
                        "token_size": tokens,
                        "sim_score": sim,
                    });
                    lines.push_str(&record.to_string());
                    lines.push('\n');
                    count += 1;
                    tokens_total += *tokens as u64;
                    let mut r = Map::new();
                    r.insert("dataset".into(), Value::String(dataset.clone()));
                    r.insert("format".into(), Value::String(format.clone()));
                    r.insert("variant".into(), Value::String(variant.clone()));
                    r.insert("split".into(), Value::String(split_name.clone()));
                    r.insert("uuid".into(), Value::String(uuid));
                    r.insert(
                        "task_id".into(),
                        Value::String(cell_text(pair, "task_id").unwrap_or_default()),
                    );
                    r.insert("token_size".into(), Value::from(*tokens as u64));
                    r.insert("sim_score".into(), sim);
                    r.insert("messages".into(), Value::String(messages.to_string()));
                    rows.push(r);
                }
                let file = format!("{dataset}.jsonl");
                fs_err::write(dir.join(&file), lines)?;
                dataset_info.insert(dataset.clone(), sharegpt_dataset_info(&file, false));
                let mut s = Map::new();
                s.insert("dataset".into(), Value::String(dataset));
                s.insert("format".into(), Value::String(format.clone()));
                s.insert("variant".into(), Value::String(variant.clone()));
                s.insert("split".into(), Value::String(split_name.clone()));
                s.insert("rows".into(), Value::from(count));
                s.insert("tokens".into(), Value::from(tokens_total));
                let mean = if count == 0 {
                    0.0
                } else {
                    tokens_total as f64 / count as f64
                };
                s.insert("mean_tokens".into(), json!((mean * 10.0).round() / 10.0));
                summary.push(s);
            }
        }
        let info = serde_json::to_string_pretty(&Value::Object(dataset_info))
            .map_err(|e| StageError::failed(e.to_string()))?;
        fs_err::write(dir.join("dataset_info.json"), info + "\n")?;
        ctx.note("pairs", pairs.len());
        ctx.note("exported_pairs", records.len());
        ctx.note("dropped_missing_trace", missing);
        ctx.note("dropped_too_long", too_long);
        ctx.note("datasets", summary.len());

        let mut template_row = Map::new();
        for t in ["dataset", "format", "variant", "split", "uuid", "task_id"] {
            template_row.insert(t.into(), Value::String(String::new()));
        }
        template_row.insert("token_size".into(), Value::from(0u64));
        template_row.insert("sim_score".into(), json!(0.5));
        template_row.insert("messages".into(), Value::String(String::new()));
        ctx.write_output(
            "rows",
            &artifact::json_rows_to_typed_table(rows, template_row)?,
        )?;
        let mut template_summary = Map::new();
        for t in ["dataset", "format", "variant", "split"] {
            template_summary.insert(t.into(), Value::String(String::new()));
        }
        template_summary.insert("rows".into(), Value::from(0u64));
        template_summary.insert("tokens".into(), Value::from(0u64));
        template_summary.insert("mean_tokens".into(), json!(0.5));
        ctx.write_output(
            "summary",
            &artifact::json_rows_to_typed_table(summary, template_summary)?,
        )
    }
}
