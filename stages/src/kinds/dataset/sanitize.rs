//! `sanitize`: redact secrets and personal data from text about to be released, and draw the sample a person reviews.
//!
//! # What it does
//! Scans the named text `columns` of every row (rendered traces, prompts,
//! completions, SFT messages) for secrets and personal data, with the rules
//! of `text/redact.rs` (the secret families of gitleaks' default rule set:
//! AWS, GitHub, Slack, Stripe, OpenAI and GCP keys, private keys, JWTs;
//! passwords in URLs; e-mail and IPv4 addresses; phone numbers), and
//! replaces each finding with a typed placeholder (`<secret:aws_access_key>`,
//! `<email>`, `<ip>`, `<phone>`). With `on_finding: drop` a row with any
//! finding is discarded instead (the paper's "traces failing a check are
//! discarded"), and counted.
//!
//! Release review: a seeded sample of `review_fraction` of the rows (at
//! least `review_min`, all when there are fewer) goes to the `review` output
//! with every placeholder marked `⟦...⟧`, for a person to read. The person
//! records the review in `review_file` (relative to the spec), a JSON object
//! `{"sample": "<the sample's hash>", "reviewer": "...", "date":
//! "YYYY-MM-DD", "verdict": "approved" | "rejected", "notes": "..."}`. The
//! stage checks it: a missing or stale review (a hash of another sample) is
//! said on stderr and in the manifest (`review: missing`, with the hash to
//! write); a rejected one fails the stage. Writing the file reruns the stage
//! (it is a file the stage reads), so the next export records the review.
//!
//! # Params
//! - `columns` (required): the text columns to sanitize.
//! - `id` (default: none, rows are numbered): the column naming a row in the review.
//! - `on_finding`: `mask` (default) or `drop`.
//! - `review_fraction` (default 0.02), `review_min` (default 20), `seed` (default 0).
//! - `review_file` (default `reviews/sanitize.json`).
//!
//! # Inputs
//! - `rows`: any table with the `columns`.
//!
//! # Outputs
//! - `rows`: the rows (all columns), the `columns` redacted, plus
//!   `redactions` (findings in the row) and `redacted` (JSON: kind -> count).
//! - `review`: the sample: `row`, `id`, `column`, `text` (placeholders marked).
//! - `summary`: one row per kind of finding: `kind`, `findings`, `rows`;
//!   and `kind: all` with the rows scanned, flagged and dropped.
//!
//! # Caching
//! Params and the review file's bytes are in the key. Rerunning writes the
//! same bytes.
//!
//! # Example
//! ```yaml
//! release:
//!   kind: sanitize
//!   inputs: { rows: sft_data.rows }
//!   params: { columns: [messages], id: uuid, review_file: reviews/sft.json }
//! ```

use crate::api::artifact;
use crate::api::rng::SplitMix64;
use crate::api::rows;
use crate::api::rows::Row;
use crate::api::{FileDep, InputSlot, PlanEnv, Problem, RunCtx, Stage, StageError};
use crate::text::redact;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub struct Sanitize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnFinding {
    #[default]
    Mask,
    Drop,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanitizeParams {
    pub columns: Vec<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub on_finding: OnFinding,
    #[serde(default = "default_fraction")]
    pub review_fraction: f64,
    #[serde(default = "default_min")]
    pub review_min: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_review_file")]
    pub review_file: String,
}

fn default_fraction() -> f64 {
    0.02
}
fn default_min() -> usize {
    20
}
fn default_review_file() -> String {
    "reviews/sanitize.json".into()
}

impl Stage for Sanitize {
    const KIND: &'static str = "sanitize";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("sanitize.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("rows")];
    const OUTPUTS: &'static [&'static str] = &["rows", "review", "summary"];
    type Params = SanitizeParams;

    fn validate(p: &SanitizeParams) -> Vec<Problem> {
        let mut out = Vec::new();
        if p.columns.is_empty() {
            out.push(
                Problem::at("columns", "name the text columns to sanitize")
                    .help("e.g. `columns: [trace_text]` after `represent`, `[messages]` after `export_sft`"),
            );
        }
        if !(0.0..=1.0).contains(&p.review_fraction) || p.review_fraction.is_nan() {
            out.push(Problem::at("review_fraction", "must be between 0 and 1"));
        }
        out
    }

    fn file_deps(p: &SanitizeParams, env: &PlanEnv) -> Vec<FileDep> {
        // The review is written after a run; once it exists it is read.
        if crate::api::resolve_path(&env.base_dir, &p.review_file).exists() {
            vec![FileDep {
                param: "review_file".into(),
                path: p.review_file.clone(),
            }]
        } else {
            Vec::new()
        }
    }

    fn run(p: &SanitizeParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let input = artifact::table_to_json_rows(&ctx.input("rows")?)?;
        for column in &p.columns {
            rows::require_column(&input, "rows", column, "columns")?;
        }
        if let Some(id) = &p.id {
            rows::require_column(&input, "rows", id, "id")?;
        }
        let mut kept: Vec<Row> = Vec::with_capacity(input.len());
        let mut kept_index: Vec<usize> = Vec::with_capacity(input.len());
        let mut totals: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
        let (mut flagged, mut dropped) = (0usize, 0usize);
        for (i, mut row) in input.into_iter().enumerate() {
            let mut found: BTreeMap<&'static str, usize> = BTreeMap::new();
            for column in &p.columns {
                if let Some(Value::String(text)) = row.get(column) {
                    let (clean, counts) = redact::redact(text);
                    for (kind, n) in counts {
                        *found.entry(kind).or_default() += n;
                    }
                    row.insert(column.clone(), Value::String(clean));
                }
            }
            for (kind, n) in &found {
                let t = totals.entry(kind).or_default();
                t.0 += n;
                t.1 += 1;
            }
            if !found.is_empty() {
                flagged += 1;
                if p.on_finding == OnFinding::Drop {
                    dropped += 1;
                    continue;
                }
            }
            let n: usize = found.values().sum();
            row.insert("redactions".into(), Value::from(n as u64));
            row.insert("redacted".into(), Value::String(json!(found).to_string()));
            kept.push(row);
            kept_index.push(i);
        }

        // The review sample: seeded, in row order.
        let want = ((kept.len() as f64 * p.review_fraction).ceil() as usize)
            .max(p.review_min)
            .min(kept.len());
        let mut pool: Vec<usize> = (0..kept.len()).collect();
        let mut rng = SplitMix64::new(p.seed);
        let mut picked = Vec::with_capacity(want);
        while picked.len() < want {
            let j = rng.below(pool.len() as u64) as usize;
            picked.push(pool.swap_remove(j));
        }
        picked.sort_unstable();
        let mut review = Vec::new();
        for &k in &picked {
            let row = &kept[k];
            let id =
                p.id.as_ref()
                    .and_then(|c| rows::optional_text(row, c))
                    .unwrap_or_else(|| kept_index[k].to_string());
            for column in &p.columns {
                let text = row.get(column).and_then(Value::as_str).unwrap_or_default();
                let mut r = Map::new();
                r.insert("row".into(), Value::from(kept_index[k] as u64));
                r.insert("id".into(), Value::String(id.clone()));
                r.insert("column".into(), Value::String(column.clone()));
                r.insert("text".into(), Value::String(mark(text)));
                review.push(r);
            }
        }
        let sample_hash = blake3::hash(
            serde_json::to_string(&review)
                .unwrap_or_default()
                .as_bytes(),
        )
        .to_hex()
        .to_string();
        check_review(p, ctx, &sample_hash, review.len())?;

        let mut summary = Vec::new();
        for (kind, (findings, rows)) in &totals {
            let mut r = Map::new();
            r.insert("kind".into(), Value::String((*kind).into()));
            r.insert("findings".into(), Value::from(*findings as u64));
            r.insert("rows".into(), Value::from(*rows as u64));
            summary.push(r);
        }
        let mut all = Map::new();
        all.insert("kind".into(), Value::String("all".into()));
        all.insert(
            "findings".into(),
            Value::from(totals.values().map(|t| t.0).sum::<usize>() as u64),
        );
        all.insert("rows".into(), Value::from(flagged as u64));
        summary.push(all);
        ctx.note("rows_flagged", flagged);
        ctx.note("rows_dropped", dropped);
        ctx.note("review_rows", review.len());

        let mut template = kept.first().cloned().unwrap_or_default();
        template.insert("redactions".into(), Value::from(0u64));
        template.insert("redacted".into(), Value::String(String::new()));
        ctx.write_output("rows", &artifact::json_rows_to_typed_table(kept, template)?)?;
        let mut t = Map::new();
        t.insert("row".into(), Value::from(0u64));
        for c in ["id", "column", "text"] {
            t.insert(c.into(), Value::String(String::new()));
        }
        ctx.write_output("review", &artifact::json_rows_to_typed_table(review, t)?)?;
        let mut t = Map::new();
        t.insert("kind".into(), Value::String(String::new()));
        t.insert("findings".into(), Value::from(0u64));
        t.insert("rows".into(), Value::from(0u64));
        ctx.write_output("summary", &artifact::json_rows_to_typed_table(summary, t)?)
    }
}

/// Every placeholder marked `⟦...⟧`, so a reader sees what was taken out.
fn mark(text: &str) -> String {
    let mut out = text.to_string();
    let mut placeholders: Vec<&str> = redact::kinds()
        .into_iter()
        .map(redact::placeholder)
        .collect();
    placeholders.sort_unstable();
    placeholders.dedup();
    for ph in placeholders {
        out = out.replace(ph, &format!("⟦{ph}⟧"));
    }
    out
}

/// What a person recorded about a review sample.
#[derive(Debug, Deserialize)]
struct Review {
    sample: String,
    #[serde(default)]
    reviewer: String,
    #[serde(default)]
    date: String,
    verdict: String,
    #[serde(default)]
    notes: String,
}

/// Say whether this sample was reviewed; fail on a rejected review.
fn check_review(
    p: &SanitizeParams,
    ctx: &mut RunCtx<'_>,
    sample: &str,
    rows: usize,
) -> Result<(), StageError> {
    ctx.note("review_sample", sample);
    let path = ctx.resolve(&p.review_file);
    let missing = |ctx: &mut RunCtx<'_>, why: String| {
        eprintln!(
            "tw: warning: the release review is {why}: read the `review` output ({rows} rows) and record it in {} as \
             {{\"sample\": \"{sample}\", \"reviewer\": \"...\", \"date\": \"YYYY-MM-DD\", \"verdict\": \"approved\"}}",
            path.display()
        );
        ctx.note("review", why);
    };
    let Ok(text) = fs_err::read_to_string(&path) else {
        missing(ctx, "missing".into());
        return Ok(());
    };
    let review: Review = serde_json::from_str(&text).map_err(|e| StageError::BadRecord {
        file: path.clone(),
        line: e.line(),
        message: format!(
            "not a review record ({e}); expected {{\"sample\", \"reviewer\", \"date\", \"verdict\"}}"
        ),
    })?;
    if review.sample != sample {
        missing(
            ctx,
            format!("stale (it reviewed sample {}, not this one)", review.sample),
        );
        return Ok(());
    }
    match review.verdict.as_str() {
        "approved" => {
            ctx.note(
                "review",
                format!("approved by {} on {}", review.reviewer, review.date),
            );
            Ok(())
        }
        "rejected" => Err(StageError::failed(format!(
            "{}: the review of this sample rejected it ({}: {})",
            path.display(),
            review.reviewer,
            review.notes
        ))),
        other => Err(StageError::BadRecord {
            file: path.clone(),
            line: 1,
            message: format!("verdict `{other}`: write `approved` or `rejected`"),
        }),
    }
}
