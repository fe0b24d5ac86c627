//! `report`: result tables (Markdown, CSV, LaTeX) and plots (PNG, SVG) from
//! the tables other stages wrote.
//!
//! # What it does
//! Stacks every `rows` input (columns a table lacks are null), adds where
//! each row came from, and draws the `tables` and `plots` it is asked for.
//! Each input's rows get a `stage` column (the upstream stage's name) and one
//! column per matrix axis of that stage (`representation`, `n`, ...), unless
//! the table has such a column already: a gather like `seq[*].summary` can
//! be pivoted by its axes without labelling anything by hand.
//!
//! A **table** groups rows by `rows` x `columns` keys (in order of first
//! appearance), aggregates `value` in each group, and lays the groups out
//! wide: the paper's Tables 2, 3 and 7 are `rows: [model]`,
//! `columns: [representation, strategy]`, `value: honest_pct`. `baseline`
//! turns values into gains over a baseline column of the same row (Fig. 5).
//!
//! A **plot** is `line` (y against a numeric x, one line per `series` key
//! and y column: pass@1 against N or temperature (Fig. 4), per-round pass
//! rates, SFT loss curves), `bar` (y columns per x category, stacked: the
//! per-round error-type shares of Table 8a) or `heatmap` (a table drawn as
//! coloured cells: the gains heat map of Fig. 5).
//!
//! A table with **`compare`** also compares each cell with the baseline
//! cell of its row (`compare.axis` at `compare.baseline`) on the problems
//! both have (`compare.pair`, `task_id`): the difference, a paired
//! bootstrap interval over problems (seeded), the exact McNemar p-value
//! when outcomes are pass/fail (with Holm's adjustment over the table),
//! and, with `compare.seeds`, the mean and standard deviation of the
//! difference across seeds. Cells whose difference holds up get a `†`; a
//! second table, `<name>_paired`, lists every comparison, and a note under
//! it says which test was used on how many problems.
//!
//! With **`instances`** bound, the report is also a **study browser**:
//! `index.html` and `data/`, a static site opened from the file system
//! that shows every cell (stage instance x matrix axes) with its scores,
//! its problems (filter by verdict, search by id), every attempt at a
//! problem with what the model was shown and answered, its programs and
//! per-test verdicts, and two cells side by side with a diff of their
//! programs. `context` inputs add what the cells' own tables lack (the
//! prompts, the tests, trace events); see `site.rs` for how they join.
//! Each problem is its own file, loaded when opened.
//!
//! `tw report SPEC` runs what is needed and writes every file under
//! `reports/<stage>/`, with an `index.md` that shows them all.
//!
//! # Params
//! - `title` (optional): heading of `index.md`.
//! - `tables`: list of
//!   - `name` (required; snake_case, names the output and the files),
//!   - `rows` (required), `columns` (default none: one value column): key columns,
//!   - `value` (required): the numeric (or boolean) column shown,
//!   - `aggregate`: `mean` (default), `median`, `min`, `max`, `sum`,
//!     `count`, `first`, `last`: how rows sharing a key combine,
//!   - `where`: a SQL condition rows must meet first (as `filter`),
//!   - `baseline`: `{column: value}` among `columns`: show gains over it,
//!   - `compare`: `{axis, baseline, pair (task_id), seeds (a column,
//!     optional), resamples (10000), seed (0), level (0.95)}`: paired
//!     comparisons against the cells where `axis` is `baseline` (not with
//!     `baseline`),
//!   - `digits` (default 1), `highlight`: `none` (default) | `max` | `min`
//!     (bold the best cell of each row), `caption`,
//!   - `formats`: any of `markdown`, `csv`, `latex` (default all three).
//! - `plots`: list of
//!   - `name` (required), `kind` (required): `line` | `bar` | `heatmap`,
//!   - line: `x` (numeric), `y` (a column or a list), `series` (key
//!     columns, default none), `log_x` (log2 spacing, for N = 1, 2, 4, ...),
//!   - bar: `x` (categories), `y` (list: one segment each), `stacked` (default true),
//!   - heatmap: `rows`, `columns`, `value`, `baseline`, `digits`, as tables,
//!   - all: `where`, `aggregate`, `title`, `x_label`, `y_label`,
//!     `y_range` (`[lo, hi]`), `width` (800), `height` (500),
//!     `formats`: `png` and/or `svg` (default both).
//! - `browse` (all optional): `key` (the problem column, `task_id`),
//!   `group` (the attempt column: the first of `[candidate, sample, uuid]`
//!   a cell has), `outcome` (the pass/fail column: the first of `[pass,
//!   passed, private_passed, honest_pass]`), `split` (columns whose values
//!   divide a table into cells, e.g. `[format]`), `max_text` (20000
//!   bytes) and `max_rows` (2000) shown per field and per table.
//!
//! # Inputs
//! - `rows`: one or more tables (`summary`, `scores`, `loss`, ...).
//! - `instances` (optional): per-instance tables for the browser
//!   (`execute`'s `summary` and `results`, `sequential_scaling`'s `rounds`,
//!   `parallel_scaling`'s `selected`, `export_sft`'s `rows`).
//! - `context` (optional): tables joined into the related cells by problem
//!   (`load_benchmark`'s `problems` and `tests`, `generate`'s `candidates`,
//!   `trace`'s `runs` and `events`).
//!
//! # Outputs
//! - one output per table and per plot, named after it: the numbers shown
//!   (a table's wide form; a plot's `series`, `x`, `y` points or its grid);
//! - `<table>_paired` for a table with `compare`: per compared cell, the key
//!   columns, `pairs`, `baseline`, `value`, `diff`, `ci_low`, `ci_high`,
//!   `only_baseline`, `only_this` (discordant problems), `p_mcnemar`,
//!   `p_holm`, `seeds`, `diff_sd`, `holds`;
//! - `files`: `name` (`table3.md`, `data/c0/p3.js`), `item`, `format`,
//!   `media_type`, `content` (bytes) of every rendered file, plus
//!   `index.md` (and `index.html` with the browser).
//!
//! # Caching
//! Keyed by the params, the inputs' bytes and the ids of the stages they
//! come from (they label rows). Rendering is deterministic (fonts are
//! compiled in; bootstrap resamples are seeded), so equal inputs give
//! byte-identical files.
//!
//! # Example
//! ```yaml
//! report:
//!   kind: report
//!   inputs:
//!     rows: ["seq[*].summary", "seq[*].rounds"]
//!     instances: "seq[*].rounds"
//!     context: [humaneval.problems, humaneval.tests]
//!   params:
//!     tables:
//!       - { name: table3, rows: [model], columns: [representation], value: honest_pct, highlight: max }
//!       - name: final_round
//!         rows: [model]
//!         columns: [representation]
//!         value: private_passed
//!         where: "round = 4"
//!         compare: { axis: representation, baseline: notrace }
//!     plots:
//!       - { name: pass_vs_n, kind: line, x: n, y: honest_pct, series: [representation], log_x: true }
//! ```

mod paired;
mod pivot;
mod plot;
mod site;

pub use paired::CompareSpec;
pub use pivot::{Highlight, Pivot};
pub use site::BrowseSpec;

use crate::api::frame::read_frames;
use crate::api::{InputSlot, Problem, RunCtx, Stage, StageError};
use arrow::array::{ArrayRef, BinaryArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType as ArrowType, Field, Schema};
use plot::{Chart, Frame, Line};
use polars::prelude::*;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Report;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub tables: Vec<TableSpec>,
    #[serde(default)]
    pub plots: Vec<PlotSpec>,
    /// How the study browser groups the `instances` inputs.
    #[serde(default)]
    pub browse: BrowseSpec,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    #[default]
    Mean,
    Median,
    Min,
    Max,
    Sum,
    Count,
    First,
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    Markdown,
    Csv,
    Latex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    Png,
    Svg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlotKind {
    Line,
    Bar,
    Heatmap,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub name: String,
    pub rows: Vec<String>,
    #[serde(default)]
    pub columns: Vec<String>,
    pub value: String,
    #[serde(default)]
    pub aggregate: Aggregate,
    #[serde(default, rename = "where")]
    pub condition: Option<String>,
    #[serde(default)]
    pub baseline: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareSpec>,
    #[serde(default = "default_digits")]
    pub digits: usize,
    #[serde(default)]
    pub highlight: Highlight,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default = "default_table_formats")]
    pub formats: Vec<TableFormat>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlotSpec {
    pub name: String,
    pub kind: PlotKind,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub y: Vec<String>,
    #[serde(default)]
    pub series: Vec<String>,
    #[serde(default)]
    pub rows: Vec<String>,
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub baseline: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub aggregate: Aggregate,
    #[serde(default, rename = "where")]
    pub condition: Option<String>,
    #[serde(default)]
    pub log_x: bool,
    #[serde(default = "yes")]
    pub stacked: bool,
    #[serde(default)]
    pub y_range: Option<[f64; 2]>,
    #[serde(default = "default_digits")]
    pub digits: usize,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub x_label: Option<String>,
    #[serde(default)]
    pub y_label: Option<String>,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_image_formats")]
    pub formats: Vec<ImageFormat>,
}

fn default_digits() -> usize {
    1
}
fn default_table_formats() -> Vec<TableFormat> {
    vec![TableFormat::Markdown, TableFormat::Csv, TableFormat::Latex]
}
fn default_image_formats() -> Vec<ImageFormat> {
    vec![ImageFormat::Png, ImageFormat::Svg]
}
fn default_width() -> u32 {
    800
}
fn default_height() -> u32 {
    500
}
fn yes() -> bool {
    true
}

/// `y: honest_pct` or `y: [honest_pct, oracle_pct]`.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Names of outputs other than the items'.
const FILES: &str = "files";

fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Checks shared by tables and heat maps.
fn check_grid(
    at: &str,
    rows: &[String],
    columns: &[String],
    baseline: &BTreeMap<String, serde_json::Value>,
    digits: usize,
    out: &mut Vec<Problem>,
) {
    if rows.is_empty() {
        out.push(Problem::at(
            &format!("{at}.rows"),
            "name at least one row key column",
        ));
    }
    for c in columns {
        if rows.contains(c) {
            out.push(Problem::at(
                &format!("{at}.columns"),
                format!("`{c}` is both a row key and a column key"),
            ));
        }
    }
    for key in baseline.keys() {
        if !columns.contains(key) {
            out.push(
                Problem::at(
                    &format!("{at}.baseline"),
                    format!("`{key}` is not one of `columns`"),
                )
                .help("the baseline picks a column of the table, e.g. `{representation: none}`"),
            );
        }
    }
    if digits > 12 {
        out.push(Problem::at(&format!("{at}.digits"), "at most 12 digits"));
    }
}

fn paired_name(table: &str) -> String {
    format!("{table}_paired")
}

fn check_compare(at: &str, t: &TableSpec, c: &CompareSpec, out: &mut Vec<Problem>) {
    let at = format!("{at}.compare");
    if !t.columns.contains(&c.axis) {
        out.push(
            Problem::at(
                &format!("{at}.axis"),
                format!("`{}` is not one of `columns`", c.axis),
            )
            .help("compare along a column key, e.g. `{axis: representation, baseline: none}`"),
        );
    }
    if c.baseline.is_null() || c.baseline.is_object() || c.baseline.is_array() {
        out.push(Problem::at(
            &format!("{at}.baseline"),
            "name the baseline's value of the axis, e.g. `none`",
        ));
    }
    if !t.baseline.is_empty() {
        out.push(Problem::at(
            &at,
            "a table shows gains (`baseline`) or paired comparisons (`compare`), not both",
        ));
    }
    for (field, name) in [("pair", Some(&c.pair)), ("seeds", c.seeds.as_ref())] {
        if let Some(name) = name
            && (t.rows.contains(name) || t.columns.contains(name))
        {
            out.push(Problem::at(
                &format!("{at}.{field}"),
                format!("`{name}` is already a key of the table"),
            ));
        }
    }
    if !(c.level > 0.5 && c.level < 1.0) {
        out.push(Problem::at(
            &format!("{at}.level"),
            format!("{} is not a confidence level in (0.5, 1)", c.level),
        ));
    }
    if c.resamples == 0 || c.resamples > 1_000_000 {
        out.push(Problem::at(
            &format!("{at}.resamples"),
            "between 1 and 1,000,000 resamples",
        ));
    }
}

fn check_condition(at: &str, condition: &Option<String>, out: &mut Vec<Problem>) {
    if let Some(c) = condition
        && let Err(e) = polars::sql::sql_expr(c)
    {
        out.push(Problem::at(
            &format!("{at}.where"),
            format!("not a SQL condition: {e}"),
        ));
    }
}

impl Stage for Report {
    const KIND: &'static str = "report";
    // 2: paired comparisons and the study browser. The key does not see
    // site.rs or site/browser.{js,css}: bump this when they change.
    const VERSION: u32 = 2;
    const SOURCE: &'static str = include_str!("mod.rs");
    const INPUTS: &'static [InputSlot] = &[
        InputSlot::many("rows"),
        InputSlot::many("instances").optional(),
        InputSlot::many("context").optional(),
    ];
    type Params = ReportParams;

    fn outputs(p: &ReportParams) -> Vec<String> {
        p.tables
            .iter()
            .flat_map(|t| {
                let paired = t.compare.as_ref().map(|_| paired_name(&t.name));
                std::iter::once(t.name.clone()).chain(paired)
            })
            .chain(p.plots.iter().map(|g| g.name.clone()))
            .chain([FILES.to_string()])
            .collect()
    }

    fn reads_input_origins(_p: &ReportParams) -> bool {
        true
    }

    fn validate(p: &ReportParams) -> Vec<Problem> {
        let mut out = Vec::new();
        if p.tables.is_empty() && p.plots.is_empty() {
            out.push(
                Problem::at("", "a report needs at least one of `tables`, `plots`")
                    .help("e.g. `tables: [{name: main, rows: [model], value: honest_pct}]`"),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        let names = p
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("tables.{i}"), &t.name))
            .chain(
                p.plots
                    .iter()
                    .enumerate()
                    .map(|(i, g)| (format!("plots.{i}"), &g.name)),
            );
        let paired_names: Vec<(String, String)> = p
            .tables
            .iter()
            .enumerate()
            .filter(|(_, t)| t.compare.is_some())
            .map(|(i, t)| (format!("tables.{i}.compare"), paired_name(&t.name)))
            .collect();
        for (at, name) in &paired_names {
            if !seen.insert(name.clone()) {
                out.push(Problem::at(
                    at,
                    format!("its paired table `{name}` has the name of another item"),
                ));
            }
        }
        for (at, name) in names {
            if !valid_name(name) || name == FILES || name == "index" {
                out.push(
                    Problem::at(
                        &format!("{at}.name"),
                        format!("`{name}` cannot name an item"),
                    )
                    .help("use snake_case other than `files` and `index`, e.g. `table3`"),
                );
            } else if !seen.insert(name.clone()) {
                out.push(Problem::at(
                    &format!("{at}.name"),
                    format!("`{name}` names two items; names must be unique"),
                ));
            }
        }
        for (i, t) in p.tables.iter().enumerate() {
            let at = format!("tables.{i}");
            check_grid(&at, &t.rows, &t.columns, &t.baseline, t.digits, &mut out);
            check_condition(&at, &t.condition, &mut out);
            if let Some(c) = &t.compare {
                check_compare(&at, t, c, &mut out);
            }
            if t.formats.is_empty() {
                out.push(Problem::at(
                    &format!("{at}.formats"),
                    "name at least one format",
                ));
            }
        }
        for (i, g) in p.plots.iter().enumerate() {
            let at = format!("plots.{i}");
            check_condition(&at, &g.condition, &mut out);
            if g.formats.is_empty() {
                out.push(Problem::at(
                    &format!("{at}.formats"),
                    "name at least one format",
                ));
            }
            for (field, v) in [("width", g.width), ("height", g.height)] {
                if !(100..=4096).contains(&v) {
                    out.push(Problem::at(
                        &format!("{at}.{field}"),
                        format!("{v} pixels is outside 100..=4096"),
                    ));
                }
            }
            if let Some([lo, hi]) = g.y_range
                && (lo >= hi || !lo.is_finite() || !hi.is_finite())
            {
                out.push(Problem::at(
                    &format!("{at}.y_range"),
                    "needs [lo, hi] with lo < hi",
                ));
            }
            let mut misplaced = |field: &str, set: bool, kinds: &str| {
                if set {
                    out.push(Problem::at(
                        &format!("{at}.{field}"),
                        format!("`{field}` applies to {kinds} plots only"),
                    ));
                }
            };
            match g.kind {
                PlotKind::Line | PlotKind::Bar => {
                    misplaced("rows", !g.rows.is_empty(), "heatmap");
                    misplaced("columns", !g.columns.is_empty(), "heatmap");
                    misplaced("value", g.value.is_some(), "heatmap");
                    misplaced("baseline", !g.baseline.is_empty(), "heatmap");
                    if g.kind == PlotKind::Bar {
                        misplaced("series", !g.series.is_empty(), "line");
                        misplaced("log_x", g.log_x, "line");
                    }
                    if g.x.is_none() {
                        out.push(Problem::at(&format!("{at}.x"), "name the x column"));
                    }
                    if g.y.is_empty() {
                        out.push(Problem::at(&format!("{at}.y"), "name the y column(s)"));
                    }
                }
                PlotKind::Heatmap => {
                    misplaced("x", g.x.is_some(), "line and bar");
                    misplaced("y", !g.y.is_empty(), "line and bar");
                    misplaced("series", !g.series.is_empty(), "line");
                    misplaced("log_x", g.log_x, "line");
                    if g.value.is_none() {
                        out.push(Problem::at(&format!("{at}.value"), "name the value column"));
                    }
                    check_grid(&at, &g.rows, &g.columns, &g.baseline, g.digits, &mut out);
                }
            }
        }
        out
    }

    fn run(p: &ReportParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let data = load(ctx)?;
        let mut files: Vec<RenderedFile> = Vec::new();
        let mut index = format!(
            "# {}\n\n",
            p.title.clone().unwrap_or_else(|| ctx.stage_id.to_string())
        );
        for t in &p.tables {
            let fail = |m: String| StageError::failed(format!("table `{}`: {m}", t.name));
            let pivot = grid(
                &data,
                &t.rows,
                &t.columns,
                &t.value,
                t.aggregate,
                &t.condition,
                &t.baseline,
            )
            .map_err(fail)?;
            let table = pivot_table(&pivot).map_err(fail)?;
            ctx.write_output(&t.name, &table)?;
            let mut pivot = pivot;
            let mut paired_markdown = None;
            if let Some(c) = &t.compare {
                let comparisons = compare(&data, t, c).map_err(fail)?;
                pivot.mark(
                    comparisons
                        .iter()
                        .filter(|x| x.holds(c.level))
                        .map(|x| (x.row.clone(), x.column.clone())),
                    paired::MARK,
                );
                let name = paired_name(&t.name);
                ctx.write_output(
                    &name,
                    &paired::table(&t.rows, &t.columns, &comparisons, c.level).map_err(fail)?,
                )?;
                ctx.note(
                    &format!("{name}_holding"),
                    comparisons.iter().filter(|x| x.holds(c.level)).count(),
                );
                let md = paired::markdown(
                    &t.columns,
                    &t.value,
                    &json_text(&c.baseline),
                    &comparisons,
                    c,
                    t.digits,
                );
                if t.formats.contains(&TableFormat::Csv) {
                    let csv =
                        paired_csv(&t.rows, &t.columns, &comparisons, c.level).map_err(fail)?;
                    files.push(RenderedFile {
                        name: format!("{name}.csv"),
                        item: name.clone(),
                        format: "csv",
                        media_type: "text/csv",
                        content: csv.into_bytes(),
                    });
                }
                if t.formats.contains(&TableFormat::Markdown) {
                    files.push(RenderedFile {
                        name: format!("{name}.md"),
                        item: name.clone(),
                        format: "markdown",
                        media_type: "text/markdown",
                        content: md.clone().into_bytes(),
                    });
                }
                paired_markdown = Some(md);
            }
            let markdown = pivot.to_markdown(t.digits, t.highlight, t.caption.as_deref());
            index.push_str(&format!("## {}\n\n{markdown}\n", t.name));
            if let Some(md) = &paired_markdown {
                index.push_str(&format!("Paired against the baseline:\n\n{md}\n"));
            }
            for format in &t.formats {
                let (ext, media_type, text) = match format {
                    TableFormat::Markdown => ("md", "text/markdown", markdown.clone()),
                    TableFormat::Csv => ("csv", "text/csv", pivot.to_csv().map_err(fail)?),
                    TableFormat::Latex => (
                        "tex",
                        "application/x-latex",
                        pivot.to_latex(t.digits, t.highlight, t.caption.as_deref(), &t.name),
                    ),
                };
                files.push(RenderedFile {
                    name: format!("{}.{ext}", t.name),
                    item: t.name.clone(),
                    format: format_name(format),
                    media_type,
                    content: text.into_bytes(),
                });
            }
        }
        for g in &p.plots {
            let fail = |m: String| StageError::failed(format!("plot `{}`: {m}", g.name));
            let (chart, points) = chart(&data, g).map_err(fail)?;
            ctx.write_output(&g.name, &points)?;
            let frame = Frame {
                title: g.title.clone().unwrap_or_else(|| g.name.clone()),
                x_label: g
                    .x_label
                    .clone()
                    .or_else(|| g.x.clone())
                    .unwrap_or_else(|| g.columns.join(" / ")),
                y_label: g.y_label.clone().unwrap_or_else(|| match g.kind {
                    PlotKind::Heatmap => g.rows.join(" / "),
                    _ => g.y.join(", "),
                }),
                width: g.width,
                height: g.height,
            };
            for format in &g.formats {
                let (ext, media_type, content) = match format {
                    ImageFormat::Png => {
                        ("png", "image/png", plot::png(&frame, &chart).map_err(fail)?)
                    }
                    ImageFormat::Svg => (
                        "svg",
                        "image/svg+xml",
                        plot::svg(&frame, &chart).map_err(fail)?.into_bytes(),
                    ),
                };
                files.push(RenderedFile {
                    name: format!("{}.{ext}", g.name),
                    item: g.name.clone(),
                    format: ext,
                    media_type,
                    content,
                });
            }
            let shown = if g.formats.contains(&ImageFormat::Png) {
                "png"
            } else {
                "svg"
            };
            index.push_str(&format!(
                "## {}\n\n![{}]({}.{shown})\n\n",
                g.name, g.name, g.name
            ));
        }
        if !ctx.input_paths("instances").is_empty() {
            let title = p.title.clone().unwrap_or_else(|| ctx.stage_id.to_string());
            let tables_html = site::markdown_html(
                index
                    .split_once('\n')
                    .map(|(_, rest)| rest)
                    .unwrap_or_default(),
            );
            let instances = site_inputs(ctx, "instances")?;
            let context = site_inputs(ctx, "context")?;
            let (site_files, stats) =
                site::build(&title, &tables_html, instances, &context, &p.browse)
                    .map_err(|m| StageError::failed(format!("browser: {m}")))?;
            ctx.note("browser_cells", stats.cells);
            ctx.note("browser_problems", stats.problems);
            ctx.note("browser_attempts", stats.attempts);
            ctx.note("browser_bytes", stats.bytes);
            ctx.note("browser_files", site_files.len());
            index.push_str(
                "## Browser\n\nOpen `index.html` in a browser: every cell, problem and attempt.\n",
            );
            for f in site_files {
                files.push(RenderedFile {
                    format: f.name.rsplit('.').next().map_or("bytes", |e| match e {
                        "html" => "html",
                        "css" => "css",
                        _ => "javascript",
                    }),
                    name: f.name,
                    item: "browser".into(),
                    media_type: f.media_type,
                    content: f.content,
                });
            }
        }
        files.push(RenderedFile {
            name: "index.md".into(),
            item: "index".into(),
            format: "markdown",
            media_type: "text/markdown",
            content: index.into_bytes(),
        });
        ctx.note("files", files.len());
        ctx.write_output(FILES, &files_table(&files)?)
    }
}

/// The paired comparisons as CSV, full precision, for other tools.
fn paired_csv(
    rows: &[String],
    columns: &[String],
    comparisons: &[paired::Comparison],
    level: f64,
) -> Result<String, String> {
    let batch = paired::table(rows, columns, comparisons, level)?;
    let mut bytes = Vec::new();
    {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut bytes);
        writer.write(&batch).map_err(|e| e.to_string())?;
    }
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

fn format_name(format: &TableFormat) -> &'static str {
    match format {
        TableFormat::Markdown => "markdown",
        TableFormat::Csv => "csv",
        TableFormat::Latex => "latex",
    }
}

struct RenderedFile {
    name: String,
    item: String,
    format: &'static str,
    media_type: &'static str,
    content: Vec<u8>,
}

fn files_table(files: &[RenderedFile]) -> Result<RecordBatch, StageError> {
    let text = |f: fn(&RenderedFile) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(files.iter().map(f)))
    };
    let schema = Schema::new(vec![
        Field::new("name", ArrowType::Utf8, false),
        Field::new("item", ArrowType::Utf8, false),
        Field::new("format", ArrowType::Utf8, false),
        Field::new("media_type", ArrowType::Utf8, false),
        Field::new("content", ArrowType::Binary, false),
    ]);
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![
            text(|f| &f.name),
            text(|f| &f.item),
            text(|f| f.format),
            text(|f| f.media_type),
            Arc::new(BinaryArray::from_iter_values(
                files.iter().map(|f| f.content.as_slice()),
            )),
        ],
    )?)
}

/// The tables bound to `slot`, as rows, with where each came from.
fn site_inputs(ctx: &RunCtx<'_>, slot: &str) -> Result<Vec<site::Input>, StageError> {
    let origins = ctx.input_origins(slot).to_vec();
    let tables = ctx.inputs(slot)?;
    tables
        .iter()
        .zip(origins)
        .map(|(t, origin)| {
            Ok(site::Input {
                origin,
                rows: crate::api::artifact::table_to_json_rows(t)?,
            })
        })
        .collect()
}

/// Every input stacked, with `stage` and matrix-axis columns added where missing.
fn load(ctx: &RunCtx<'_>) -> Result<DataFrame, StageError> {
    let frames = read_frames(ctx, "rows")?;
    let origins = ctx.input_origins("rows");
    let mut lazy = Vec::with_capacity(frames.len());
    for (i, frame) in frames.into_iter().enumerate() {
        let mut extra: Vec<Expr> = Vec::new();
        if let Some(origin) = origins.get(i) {
            let has = |name: &str| frame.get_column_names().iter().any(|c| c.as_str() == name);
            if !has("stage") {
                extra.push(lit(origin.stage.as_str()).alias("stage"));
            }
            for (axis, value) in &origin.binding {
                if !has(axis) {
                    extra.push(json_literal(value).alias(axis.as_str()));
                }
            }
        }
        lazy.push(frame.lazy().with_columns(extra));
    }
    if lazy.is_empty() {
        return Err(StageError::BadInput {
            slot: "rows".into(),
            message: "no tables to report on".into(),
        });
    }
    concat_lf_diagonal(lazy, UnionArgs::default())
        .and_then(LazyFrame::collect)
        .map_err(|e| StageError::BadInput {
            slot: "rows".into(),
            message: format!("the input tables cannot be stacked: {e}"),
        })
}

fn json_literal(value: &serde_json::Value) -> Expr {
    match value {
        serde_json::Value::String(s) => lit(s.as_str()),
        serde_json::Value::Bool(b) => lit(*b),
        // Typed, not dynamic literals: a table with the axis as a column
        // (Int64) and one given it from its origin must stack.
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => lit(i).cast(DataType::Int64),
            None => lit(n.as_f64().unwrap_or(f64::NAN)).cast(DataType::Float64),
        },
        other => lit(other.to_string()),
    }
}

/// A key value as shown in headers: strings as they are, numbers shortest.
fn key_text(value: &AnyValue<'_>) -> String {
    match value {
        AnyValue::Null => "none".into(),
        AnyValue::Float64(v) => plot::tick(*v),
        AnyValue::Float32(v) => plot::tick(*v as f64),
        other => other.str_value().into_owned(),
    }
}

fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => plot::tick(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::Null => "none".into(),
        other => other.to_string(),
    }
}

fn require(data: &DataFrame, wanted: &[&String]) -> Result<(), String> {
    let have: Vec<&str> = data.get_column_names().iter().map(|c| c.as_str()).collect();
    for name in wanted {
        if !have.contains(&name.as_str()) {
            return Err(format!(
                "no column `{name}` in the inputs (columns: {})",
                have.join(", ")
            ));
        }
    }
    Ok(())
}

fn aggregate_expr(column: &str, aggregate: Aggregate) -> Expr {
    let value = col(column).cast(DataType::Float64);
    match aggregate {
        Aggregate::Mean => value.mean(),
        Aggregate::Median => value.median(),
        Aggregate::Min => value.min(),
        Aggregate::Max => value.max(),
        Aggregate::Sum => value.sum(),
        Aggregate::Count => value.count().cast(DataType::Float64),
        Aggregate::First => value.first(),
        Aggregate::Last => value.last(),
    }
}

/// Filter, group by `keys` (never empty: validation asks for row keys or an
/// x) in order of first appearance, and aggregate each
/// of `values`; value columns come back as `__v0`, `__v1`, ...
fn grouped(
    data: &DataFrame,
    keys: &[String],
    values: &[String],
    aggregate: Aggregate,
    condition: &Option<String>,
) -> Result<DataFrame, String> {
    require(data, &keys.iter().chain(values).collect::<Vec<_>>())?;
    for v in values {
        let dtype = data.column(v).map_err(|e| e.to_string())?.dtype().clone();
        if !(dtype.is_primitive_numeric() || dtype == DataType::Boolean || dtype == DataType::Null)
        {
            return Err(format!("`{v}` holds {dtype}, not numbers"));
        }
    }
    let mut lazy = data.clone().lazy();
    if let Some(c) = condition {
        let predicate = polars::sql::sql_expr(c).map_err(|e| e.to_string())?;
        lazy = lazy.filter(predicate);
    }
    let key_exprs: Vec<Expr> = keys.iter().map(|k| col(k.as_str())).collect();
    let aggs: Vec<Expr> = values
        .iter()
        .enumerate()
        .map(|(i, v)| aggregate_expr(v, aggregate).alias(format!("__v{i}")))
        .collect();
    let frame = lazy
        .group_by_stable(key_exprs)
        .agg(aggs)
        .collect()
        .map_err(|e| match condition {
            Some(c) => format!("`where: {c}` or the aggregation failed: {e}"),
            None => format!("aggregation failed: {e}"),
        })?;
    if frame.height() == 0 {
        return Err(match condition {
            Some(c) => format!("no rows left after `where: {c}`"),
            None => "the inputs have no rows".into(),
        });
    }
    Ok(frame)
}

fn key_at(frame: &DataFrame, names: &[String], row: usize) -> Result<Vec<String>, String> {
    names
        .iter()
        .map(|n| {
            let column = frame.column(n).map_err(|e| e.to_string())?;
            Ok(key_text(&column.get(row).map_err(|e| e.to_string())?))
        })
        .collect()
}

fn value_column(frame: &DataFrame, i: usize) -> Result<Vec<Option<f64>>, String> {
    let column = frame
        .column(&format!("__v{i}"))
        .map_err(|e| e.to_string())?;
    let cast = column.cast(&DataType::Float64).map_err(|e| e.to_string())?;
    Ok(cast
        .f64()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|v| v.filter(|v| !v.is_nan()))
        .collect())
}

/// The wide table of `value` by `rows` x `columns`, gains when `baseline` is set.
fn grid(
    data: &DataFrame,
    rows: &[String],
    columns: &[String],
    value: &str,
    aggregate: Aggregate,
    condition: &Option<String>,
    baseline: &BTreeMap<String, serde_json::Value>,
) -> Result<Pivot, String> {
    let keys: Vec<String> = rows.iter().chain(columns).cloned().collect();
    let frame = grouped(data, &keys, &[value.to_string()], aggregate, condition)?;
    let values = value_column(&frame, 0)?;
    let mut records = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        if let Some(v) = v {
            records.push((key_at(&frame, rows, i)?, key_at(&frame, columns, i)?, v));
        }
    }
    let pivot = Pivot::from_records(rows.to_vec(), columns.to_vec(), value.to_string(), records)?;
    if baseline.is_empty() {
        return Ok(pivot);
    }
    let positions: Vec<(usize, String)> = baseline
        .iter()
        .map(|(k, v)| {
            let at = columns.iter().position(|c| c == k).unwrap_or_default();
            (at, json_text(v))
        })
        .collect();
    pivot.gains(&positions)
}

/// A table's paired comparisons: each problem's value per cell (and seed),
/// aggregated as the table aggregates, then compared with the baseline cell.
fn compare(
    data: &DataFrame,
    t: &TableSpec,
    c: &CompareSpec,
) -> Result<Vec<paired::Comparison>, String> {
    let axis_at = t
        .columns
        .iter()
        .position(|col| *col == c.axis)
        .ok_or_else(|| format!("`compare.axis` `{}` is not one of `columns`", c.axis))?;
    let seeds: Vec<String> = c.seeds.iter().cloned().collect();
    let keys: Vec<String> = t
        .rows
        .iter()
        .chain(&t.columns)
        .chain(&seeds)
        .chain([&c.pair])
        .cloned()
        .collect();
    let frame = grouped(
        data,
        &keys,
        std::slice::from_ref(&t.value),
        t.aggregate,
        &t.condition,
    )?;
    let values = value_column(&frame, 0)?;
    let mut units = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        let Some(value) = v else { continue };
        units.push(paired::Unit {
            row: key_at(&frame, &t.rows, i)?,
            column: key_at(&frame, &t.columns, i)?,
            seed: key_at(&frame, &seeds, i)?.join(""),
            pair: key_at(&frame, std::slice::from_ref(&c.pair), i)?.join(""),
            value,
        });
    }
    paired::compare(units, axis_at, &json_text(&c.baseline), c)
}

/// A pivot as an artifact: key columns as text, one float column per header.
fn pivot_table(pivot: &Pivot) -> Result<RecordBatch, String> {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (i, name) in pivot.row_names.iter().enumerate() {
        fields.push(Field::new(name, ArrowType::Utf8, false));
        columns.push(Arc::new(StringArray::from_iter_values(
            pivot.row_keys.iter().map(|k| k[i].as_str()),
        )));
    }
    for (c, header) in pivot.column_headers().iter().enumerate() {
        if fields.iter().any(|f| f.name() == header) {
            return Err(format!(
                "column header `{header}` repeats a row key's name; rename one of them"
            ));
        }
        fields.push(Field::new(header, ArrowType::Float64, true));
        columns.push(Arc::new(Float64Array::from(
            pivot.cells.iter().map(|row| row[c]).collect::<Vec<_>>(),
        )));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}

fn points_table(series: &[String], x: &[f64], y: &[f64]) -> Result<RecordBatch, String> {
    let schema = Schema::new(vec![
        Field::new("series", ArrowType::Utf8, false),
        Field::new("x", ArrowType::Float64, false),
        Field::new("y", ArrowType::Float64, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from_iter_values(series)),
            Arc::new(Float64Array::from(x.to_vec())),
            Arc::new(Float64Array::from(y.to_vec())),
        ],
    )
    .map_err(|e| e.to_string())
}

/// The chart for a plot and the numbers it shows.
fn chart(data: &DataFrame, g: &PlotSpec) -> Result<(Chart, RecordBatch), String> {
    let y_range = g.y_range.map(|[lo, hi]| (lo, hi));
    match g.kind {
        PlotKind::Line => {
            let x = g.x.clone().unwrap_or_default();
            let keys: Vec<String> = g.series.iter().chain([&x]).cloned().collect();
            let frame = grouped(data, &keys, &g.y, g.aggregate, &g.condition)?;
            let xs = frame
                .column(&x)
                .and_then(|c| c.cast(&DataType::Float64))
                .map_err(|e| format!("x column `{x}` is not numeric: {e}"))?;
            let xs: Vec<Option<f64>> = xs.f64().map_err(|e| e.to_string())?.iter().collect();
            let mut lines: Vec<Line> = Vec::new();
            for (j, y) in g.y.iter().enumerate() {
                let ys = value_column(&frame, j)?;
                for (i, (x, v)) in xs.iter().zip(ys).enumerate() {
                    let (Some(x), Some(v)) = (x, v) else { continue };
                    let mut label = key_at(&frame, &g.series, i)?.join(" / ");
                    if g.y.len() > 1 {
                        label = if label.is_empty() {
                            y.clone()
                        } else {
                            format!("{label}: {y}")
                        };
                    }
                    match lines.iter_mut().find(|l| l.label == label) {
                        Some(line) => line.points.push((*x, v)),
                        None => lines.push(Line {
                            label,
                            points: vec![(*x, v)],
                        }),
                    }
                }
            }
            if g.log_x && lines.iter().flat_map(|l| &l.points).any(|p| p.0 <= 0.0) {
                return Err(format!("`log_x` needs x > 0, and `{x}` has values <= 0"));
            }
            let (mut s, mut px, mut py) = (Vec::new(), Vec::new(), Vec::new());
            for line in &mut lines {
                line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
                for &(x, y) in &line.points {
                    s.push(line.label.clone());
                    px.push(x);
                    py.push(y);
                }
            }
            let points = points_table(&s, &px, &py)?;
            Ok((
                Chart::Lines {
                    lines,
                    log_x: g.log_x,
                    y_range,
                },
                points,
            ))
        }
        PlotKind::Bar => {
            let x = g.x.clone().unwrap_or_default();
            let frame = grouped(
                data,
                std::slice::from_ref(&x),
                &g.y,
                g.aggregate,
                &g.condition,
            )?;
            let categories: Vec<String> = (0..frame.height())
                .map(|i| key_at(&frame, std::slice::from_ref(&x), i).map(|k| k.join("")))
                .collect::<Result<_, _>>()?;
            let mut segments = Vec::new();
            let (mut s, mut px, mut py) = (Vec::new(), Vec::new(), Vec::new());
            for (j, y) in g.y.iter().enumerate() {
                let values: Vec<f64> = value_column(&frame, j)?
                    .into_iter()
                    .map(|v| v.unwrap_or(0.0))
                    .collect();
                for (c, v) in values.iter().enumerate() {
                    s.push(y.clone());
                    px.push(c as f64);
                    py.push(*v);
                }
                segments.push((y.clone(), values));
            }
            let points = points_table(&s, &px, &py)?;
            Ok((
                Chart::Bars {
                    categories,
                    segments,
                    stacked: g.stacked,
                    y_range,
                },
                points,
            ))
        }
        PlotKind::Heatmap => {
            let value = g.value.clone().unwrap_or_default();
            let pivot = grid(
                data,
                &g.rows,
                &g.columns,
                &value,
                g.aggregate,
                &g.condition,
                &g.baseline,
            )?;
            let table = pivot_table(&pivot)?;
            Ok((
                Chart::Heatmap {
                    pivot,
                    digits: g.digits,
                },
                table,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> DataFrame {
        df!(
            "model" => ["m1", "m1", "m1", "m1", "m2", "m2"],
            "representation" => ["none", "next", "none", "next", "none", "next"],
            "n" => [1i64, 1, 8, 8, 1, 1],
            "honest_pct" => [10.0, 20.0, 30.0, 50.0, 5.0, 4.0],
            "passed" => [true, false, true, true, false, false],
        )
        .expect("frame")
    }

    #[test]
    fn grid_aggregates_each_cell_and_subtracts_the_baseline() {
        let data = frame();
        let mean = grid(
            &data,
            &["model".into()],
            &["representation".into()],
            "honest_pct",
            Aggregate::Mean,
            &None,
            &BTreeMap::new(),
        )
        .expect("grid");
        assert_eq!(mean.column_headers(), vec!["none", "next"]);
        assert_eq!(
            mean.cells,
            vec![vec![Some(20.0), Some(35.0)], vec![Some(5.0), Some(4.0)]]
        );
        let gains = grid(
            &data,
            &["model".into()],
            &["representation".into()],
            "honest_pct",
            Aggregate::Max,
            &Some("n = 8 OR model = 'm2'".into()),
            &BTreeMap::from([("representation".to_string(), serde_json::json!("none"))]),
        )
        .expect("grid");
        assert_eq!(gains.column_headers(), vec!["next"]);
        assert_eq!(gains.cells, vec![vec![Some(20.0)], vec![Some(-1.0)]]);
        // Booleans average to a share; numeric keys print as written.
        let share = grid(
            &data,
            &["n".into()],
            &[],
            "passed",
            Aggregate::Mean,
            &None,
            &BTreeMap::new(),
        )
        .expect("grid");
        assert_eq!(
            share.row_keys,
            vec![vec!["1".to_string()], vec!["8".to_string()]]
        );
        assert_eq!(share.cells, vec![vec![Some(0.25)], vec![Some(1.0)]]);
    }

    #[test]
    fn compare_pairs_each_problem_aggregated_as_the_table_aggregates() {
        // Two rows per problem and representation: `max` asks "any passed".
        let data = df!(
            "model" => ["m"; 8],
            "representation" => ["none", "none", "none", "none", "next", "next", "next", "next"],
            "task_id" => ["a", "a", "b", "b", "a", "a", "b", "b"],
            "passed" => [false, false, false, true, true, false, false, true],
        )
        .expect("frame");
        let spec: TableSpec = serde_json::from_value(serde_json::json!({
            "name": "t", "rows": ["model"], "columns": ["representation"], "value": "passed",
            "aggregate": "max", "compare": {"axis": "representation", "baseline": "none"}
        }))
        .expect("spec");
        let c = compare(&data, &spec, spec.compare.as_ref().expect("compare")).expect("compare");
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].pairs, c[0].discordant), (2, Some((0, 1))));
        assert_eq!((c[0].baseline, c[0].value), (0.5, 1.0));
    }

    #[test]
    fn a_missing_or_non_numeric_column_or_an_empty_filter_is_named() {
        let data = frame();
        let err = |value: &str, condition: Option<&str>| {
            grid(
                &data,
                &["model".into()],
                &[],
                value,
                Aggregate::Mean,
                &condition.map(String::from),
                &BTreeMap::new(),
            )
            .expect_err("fails")
        };
        let missing = err("honest", None);
        assert!(missing.contains("no column `honest`"), "{missing}");
        assert!(missing.contains("honest_pct"), "{missing}");
        assert_eq!(
            err("representation", None),
            "`representation` holds str, not numbers"
        );
        assert_eq!(
            err("honest_pct", Some("n > 100")),
            "no rows left after `where: n > 100`"
        );
    }

    #[test]
    fn line_points_are_sorted_per_series_and_named_by_y_when_several() {
        let data = frame();
        let spec = PlotSpec {
            name: "p".into(),
            kind: PlotKind::Line,
            x: Some("n".into()),
            y: vec!["honest_pct".into()],
            series: vec!["representation".into()],
            rows: vec![],
            columns: vec![],
            value: None,
            baseline: BTreeMap::new(),
            aggregate: Aggregate::Mean,
            condition: Some("model = 'm1'".into()),
            log_x: true,
            stacked: true,
            y_range: None,
            digits: 1,
            title: None,
            x_label: None,
            y_label: None,
            width: 400,
            height: 300,
            formats: vec![ImageFormat::Svg],
        };
        let (drawn, points) = chart(&data, &spec).expect("chart");
        let Chart::Lines { lines, .. } = drawn else {
            panic!("a line chart")
        };
        assert_eq!(
            lines,
            vec![
                Line {
                    label: "none".into(),
                    points: vec![(1.0, 10.0), (8.0, 30.0)]
                },
                Line {
                    label: "next".into(),
                    points: vec![(1.0, 20.0), (8.0, 50.0)]
                },
            ]
        );
        assert_eq!(points.num_rows(), 4);
        let mut two = spec.clone();
        two.y = vec!["honest_pct".into(), "passed".into()];
        two.series = vec![];
        let (Chart::Lines { lines, .. }, _) = chart(&data, &two).expect("chart") else {
            panic!("a line chart")
        };
        let labels: Vec<&str> = lines.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(labels, vec!["honest_pct", "passed"]);
    }
}
