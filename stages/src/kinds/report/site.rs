//! The study browser: a static site (`index.html`, opened from the file
//! system, no server) over a report's per-instance inputs.
//!
//! **Cells.** Each `instances` input belongs to the cell of the stage
//! instance that wrote it (`verify`, `seq[feedback=next]`); inputs of one
//! instance (`verify.summary`, `verify.results`) share a cell, and `split`
//! columns divide a table into several (`format` of SFT data).
//!
//! **Problems and attempts.** A cell's rows are grouped by the problem
//! column (`key`, `task_id`) and, within a problem, by the first `group`
//! column the cell has (`candidate`, `sample`, `uuid`): one attempt per
//! value, its rows in input order (a sequential run's rounds). Rows without
//! the group column describe the problem itself.
//!
//! **Context.** A `context` input adds what the cell's own tables do not
//! carry (the prompt of a generation, the tests, the trace events of a run)
//! to every cell it is *related* to: one of the two reads the other,
//! directly or not, and they agree on every matrix axis both have. Context
//! rows with the cell's group column join that attempt; others join the
//! problem. Test rows (`test` and `expected`) lend their `input` and
//! `expected` to an attempt's rows of the same `test`.
//!
//! **Loading.** The page embeds only the cells and their scores; a cell's
//! problem list and each problem are separate script files
//! (`data/c<cell>.js`, `data/c<cell>/p<problem>.js`) loaded when opened, so
//! a 16,400-sample study opens as fast as a small one.
//!
//! **Untrusted text.** Completions, programs and outputs are model-written
//! or user-supplied. The data files are JSON with `<`, `>`, `&` and the
//! line separators escaped, and the page builds every element with
//! `textContent`, never from markup, so nothing in them can run.

use crate::api::InputOrigin;
use crate::api::rows::cell_text;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::fmt::Write as _;

/// `browse:` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowseSpec {
    /// The problem column.
    #[serde(default = "default_key")]
    pub key: String,
    /// Candidates for the attempt column, the first a cell has wins.
    #[serde(default = "default_group")]
    pub group: Vec<String>,
    /// Candidates for the pass/fail column, the first a cell has wins.
    #[serde(default = "default_outcome")]
    pub outcome: Vec<String>,
    /// Columns whose values split a table into cells.
    #[serde(default)]
    pub split: Vec<String>,
    /// Longer text is cut in the page (the artifacts keep all of it).
    #[serde(default = "default_max_text")]
    pub max_text: usize,
    /// More rows of one table for one problem or attempt are cut too (a
    /// long trace's events).
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
}

impl Default for BrowseSpec {
    fn default() -> Self {
        BrowseSpec {
            key: default_key(),
            group: default_group(),
            outcome: default_outcome(),
            split: Vec::new(),
            max_text: default_max_text(),
            max_rows: default_max_rows(),
        }
    }
}

fn default_key() -> String {
    "task_id".into()
}
fn default_group() -> Vec<String> {
    ["candidate", "sample", "uuid"].map(String::from).to_vec()
}
fn default_outcome() -> Vec<String> {
    ["pass", "passed", "private_passed", "honest_pass"]
        .map(String::from)
        .to_vec()
}
fn default_max_text() -> usize {
    20_000
}
fn default_max_rows() -> usize {
    2_000
}

type Row = Map<String, Value>;

/// One input table with where it came from.
#[derive(Clone)]
pub struct Input {
    pub origin: InputOrigin,
    pub rows: Vec<Map<String, Value>>,
}

/// One file of the site: a path relative to the report directory.
pub struct SiteFile {
    pub name: String,
    pub media_type: &'static str,
    pub content: Vec<u8>,
}

/// What the site holds, for the stage's notes.
#[derive(Debug, Default)]
pub struct SiteStats {
    pub cells: usize,
    pub problems: usize,
    pub attempts: usize,
    pub bytes: usize,
}

const APP_JS: &str = include_str!("site/browser.js");
const APP_CSS: &str = include_str!("site/browser.css");

#[derive(Default)]
struct Part {
    title: String,
    rows: Vec<Map<String, Value>>,
}

#[derive(Default)]
struct Attempt {
    parts: Vec<Part>,
}

#[derive(Default)]
struct ProblemRows {
    shared: Vec<Part>,
    attempts: IndexMap<String, Attempt>,
}

struct Cell {
    id: String,
    stage: String,
    axes: Vec<(String, String)>,
    /// The instance ids its tables come from and everything they read.
    origin_ids: Vec<String>,
    ancestors: Vec<String>,
    binding: Vec<(String, Value)>,
    tables: Vec<(String, Vec<Map<String, Value>>)>,
}

fn part_push(parts: &mut Vec<Part>, title: &str, row: Map<String, Value>) {
    match parts.iter_mut().find(|p| p.title == title) {
        Some(p) => p.rows.push(row),
        None => parts.push(Part {
            title: title.to_string(),
            rows: vec![row],
        }),
    }
}

/// A matrix axis value as shown: strings as they are, others as JSON.
fn binding_text(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Build the site's files. `tables_html` is the report's tables and plots,
/// shown on the first page.
pub fn build(
    title: &str,
    tables_html: &str,
    instances: Vec<Input>,
    context: &[Input],
    spec: &BrowseSpec,
) -> Result<(Vec<SiteFile>, SiteStats), String> {
    let cells = cells_of(instances, spec)?;
    let context = bridge_context(context, &spec.key)?;
    let mut files = Vec::new();
    let mut stats = SiteStats::default();
    let mut manifest_cells = Vec::new();
    for (ci, cell) in cells.iter().enumerate() {
        let group = spec
            .group
            .iter()
            .find(|g| {
                cell.tables
                    .iter()
                    .any(|(_, rows)| rows.iter().any(|r| r.contains_key(*g)))
            })
            .cloned();
        let outcome = spec
            .outcome
            .iter()
            .find(|o| {
                cell.tables
                    .iter()
                    .any(|(_, rows)| rows.iter().any(|r| r.contains_key(*o)))
            })
            .cloned();
        let mut problems: IndexMap<String, ProblemRows> = IndexMap::new();
        for (title, rows) in &cell.tables {
            for row in rows {
                let key = cell_text(row, &spec.key).ok_or_else(|| {
                    format!(
                        "`{title}` has a row without `{}` (browse.key); its columns: {}",
                        spec.key,
                        row.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                })?;
                let problem = problems.entry(key).or_default();
                match group.as_ref().and_then(|g| cell_text(row, g)) {
                    Some(a) => part_push(
                        &mut problem.attempts.entry(a).or_default().parts,
                        title,
                        row.clone(),
                    ),
                    None => part_push(&mut problem.shared, title, row.clone()),
                }
            }
        }
        // Related context: joined by problem, and by attempt where it can be.
        for c in &context {
            if !related(cell, &c.origin) {
                continue;
            }
            let title = format!("{}.{}", c.origin.id, c.origin.output);
            let by_attempt = group
                .as_ref()
                .filter(|g| c.rows.first().is_some_and(|r| r.contains_key(*g)));
            for row in &c.rows {
                let Some(key) = cell_text(row, &spec.key) else {
                    continue;
                };
                let Some(problem) = problems.get_mut(&key) else {
                    continue;
                };
                match by_attempt {
                    Some(g) => {
                        if let Some(a) =
                            cell_text(row, g).and_then(|a| problem.attempts.get_mut(&a))
                        {
                            part_push(&mut a.parts, &title, row.clone());
                        }
                    }
                    None => part_push(&mut problem.shared, &title, row.clone()),
                }
            }
        }
        let mut index_rows = Vec::new();
        let (mut cell_attempts, mut cell_passed, mut cell_solved) = (0usize, 0usize, 0usize);
        for (pi, (key, problem)) in problems.into_iter().enumerate() {
            let problem = lend_test_columns(problem);
            let mut attempts_json = Vec::new();
            let (mut passed, mut graded) = (0usize, 0usize);
            for (id, attempt) in &problem.attempts {
                let (ok, label) = attempt_outcome(attempt, outcome.as_deref());
                if let Some(ok) = ok {
                    graded += 1;
                    passed += usize::from(ok);
                }
                attempts_json.push(json!({
                    "id": id,
                    "pass": ok,
                    "label": label,
                    "parts": parts_json(&attempt.parts, spec),
                }));
            }
            let verdict = match (graded, passed) {
                (0, _) => "ungraded",
                (g, p) if p == g => "pass",
                (_, 0) => "fail",
                _ => "mixed",
            };
            cell_attempts += problem.attempts.len();
            cell_passed += passed;
            cell_solved += usize::from(passed > 0);
            let data = json!({
                "key": key,
                "verdict": verdict,
                "shared": parts_json(&problem.shared, spec),
                "attempts": attempts_json,
            });
            let name = format!("data/c{ci}/p{pi}.js");
            files.push(data_file(&name, &format!("c{ci}/p{pi}"), &data));
            index_rows.push(json!([
                key,
                verdict,
                problem.attempts.len(),
                passed,
                graded
            ]));
        }
        stats.problems += index_rows.len();
        stats.attempts += cell_attempts;
        let n_problems = index_rows.len();
        files.push(data_file(
            &format!("data/c{ci}.js"),
            &format!("c{ci}"),
            &json!({ "problems": index_rows }),
        ));
        manifest_cells.push(json!({
            "id": cell.id,
            "stage": cell.stage,
            "axes": cell.axes,
            "tables": cell.tables.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            "group": group,
            "outcome": outcome,
            "problems": n_problems,
            "attempts": cell_attempts,
            "passed": cell_passed,
            "solved": cell_solved,
        }));
    }
    stats.cells = cells.len();
    let manifest = json!({ "title": title, "cells": manifest_cells });
    files.push(SiteFile {
        name: "index.html".into(),
        media_type: "text/html",
        content: page(title, tables_html, &manifest).into_bytes(),
    });
    files.push(SiteFile {
        name: "browser.js".into(),
        media_type: "text/javascript",
        content: APP_JS.as_bytes().to_vec(),
    });
    files.push(SiteFile {
        name: "browser.css".into(),
        media_type: "text/css",
        content: APP_CSS.as_bytes().to_vec(),
    });
    stats.bytes = files.iter().map(|f| f.content.len()).sum();
    Ok((files, stats))
}

/// Group instance tables into cells: one per stage instance (and split value).
fn cells_of(instances: Vec<Input>, spec: &BrowseSpec) -> Result<Vec<Cell>, String> {
    let mut cells: IndexMap<String, Cell> = IndexMap::new();
    for input in instances {
        let title = format!("{}.{}", input.origin.id, input.origin.output);
        if let Some(first) = input.rows.first()
            && !first.contains_key(&spec.key)
        {
            return Err(format!(
                "`{title}` has no `{}` column (browse.key) to group problems by; it has: {}",
                spec.key,
                first.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let mut by_split: IndexMap<Vec<(String, String)>, Vec<Row>> = IndexMap::new();
        for row in input.rows {
            let split: Vec<(String, String)> = spec
                .split
                .iter()
                .filter_map(|s| cell_text(&row, s).map(|v| (s.clone(), v)))
                .collect();
            by_split.entry(split).or_default().push(row);
        }
        for (split, rows) in by_split {
            let mut id = input.origin.id.clone();
            for (k, v) in &split {
                let _ = write!(id, " {k}={v}");
            }
            let cell = cells.entry(id.clone()).or_insert_with(|| Cell {
                id,
                stage: input.origin.stage.clone(),
                axes: input
                    .origin
                    .binding
                    .iter()
                    .map(|(k, v)| (k.clone(), binding_text(v)))
                    .chain(split.iter().cloned())
                    .collect(),
                origin_ids: vec![input.origin.id.clone()],
                ancestors: input.origin.ancestors.clone(),
                binding: input.origin.binding.clone(),
                tables: Vec::new(),
            });
            cell.tables.push((title.clone(), rows));
        }
    }
    Ok(cells.into_values().collect())
}

/// A context input belongs with a cell when one reads the other and they
/// agree on the matrix axes both have.
fn related(cell: &Cell, origin: &InputOrigin) -> bool {
    let lineage = cell.ancestors.contains(&origin.id)
        || cell
            .origin_ids
            .iter()
            .any(|id| origin.ancestors.contains(id))
        || cell.origin_ids.contains(&origin.id);
    let agree = origin.binding.iter().all(|(axis, v)| {
        cell.binding
            .iter()
            .find(|(a, _)| a == axis)
            .is_none_or(|(_, w)| w == v)
    });
    lineage && agree
}

/// Copy `input` and `expected` of the problem's test rows onto attempt rows
/// that name a `test` but lack them (`execute.results` has the output, the
/// tests have what was expected).
fn lend_test_columns(mut problem: ProblemRows) -> ProblemRows {
    let mut tests: std::collections::HashMap<String, (Value, Value)> = Default::default();
    for part in &problem.shared {
        for row in &part.rows {
            if let (Some(t), Some(expected)) = (cell_text(row, "test"), row.get("expected")) {
                tests.insert(
                    t,
                    (
                        row.get("input").cloned().unwrap_or(Value::Null),
                        expected.clone(),
                    ),
                );
            }
        }
    }
    if tests.is_empty() {
        return problem;
    }
    for attempt in problem.attempts.values_mut() {
        for part in &mut attempt.parts {
            for row in &mut part.rows {
                let Some((input, expected)) = cell_text(row, "test").and_then(|t| tests.get(&t))
                else {
                    continue;
                };
                if !row.contains_key("expected") {
                    let (input, expected) = (input.clone(), expected.clone());
                    if !row.contains_key("input") {
                        row.insert("input".into(), input);
                    }
                    row.insert("expected".into(), expected);
                }
            }
        }
    }
    problem
}

/// Passed or not (the last row that says), and its `label`, if any.
fn attempt_outcome(attempt: &Attempt, outcome: Option<&str>) -> (Option<bool>, Option<String>) {
    let Some(column) = outcome else {
        return (None, None);
    };
    for part in &attempt.parts {
        if let Some(row) = part
            .rows
            .iter()
            .rev()
            .find(|r| r.get(column).is_some_and(|v| !v.is_null()))
        {
            let ok = match &row[column] {
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|v| v > 0.0),
                Value::String(s) => matches!(s.as_str(), "true" | "pass" | "passed" | "1"),
                _ => false,
            };
            let label = cell_text(row, "label");
            return (Some(ok), label);
        }
    }
    (None, None)
}

fn parts_json(parts: &[Part], spec: &BrowseSpec) -> Value {
    Value::Array(
        parts
            .iter()
            .map(|p| {
                json!({
                    "title": p.title,
                    "rows": p.rows.iter().take(spec.max_rows).map(|r| cut_row(r, spec.max_text)).collect::<Vec<_>>(),
                    "cut_rows": p.rows.len().saturating_sub(spec.max_rows),
                })
            })
            .collect(),
    )
}

/// Context tables that lack the problem column get it through another
/// context table they share an id with: a trace's `events` (`pair_id`)
/// through its `runs` (`pair_id`, `task_id`). A table that cannot be placed
/// is an error naming it.
fn bridge_context<'a>(
    context: &'a [Input],
    key: &str,
) -> Result<Vec<std::borrow::Cow<'a, Input>>, String> {
    let has =
        |input: &Input, column: &str| input.rows.first().is_some_and(|r| r.contains_key(column));
    let mut out = Vec::new();
    for c in context {
        if c.rows.is_empty() || has(c, key) {
            out.push(std::borrow::Cow::Borrowed(c));
            continue;
        }
        let columns: Vec<&String> = c.rows[0].keys().collect();
        let is_id = |name: &str| {
            name.ends_with("_id") || ["id", "run", "uuid", "candidate"].contains(&name)
        };
        let bridge = context.iter().filter(|b| has(b, key)).find_map(|b| {
            columns
                .iter()
                .filter(|col| is_id(col) && has(b, col))
                .map(|col| (b, (*col).clone()))
                .next()
        });
        let Some((b, via)) = bridge else {
            return Err(format!(
                "context `{}.{}` has no `{key}` column (browse.key), and no other context table \
                 maps one of its ids to `{key}`; its columns: {}",
                c.origin.id,
                c.origin.output,
                columns
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let map: std::collections::HashMap<String, Value> = b
            .rows
            .iter()
            .filter_map(|r| Some((cell_text(r, &via)?, r.get(key)?.clone())))
            .collect();
        let rows = c
            .rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if let Some(k) = cell_text(&r, &via).and_then(|v| map.get(&v)) {
                    r.insert(key.to_string(), k.clone());
                }
                r
            })
            .collect();
        out.push(std::borrow::Cow::Owned(Input {
            origin: c.origin.clone(),
            rows,
        }));
    }
    Ok(out)
}

fn cut_row(row: &Map<String, Value>, max_text: usize) -> Value {
    Value::Object(
        row.iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) if s.len() > max_text => {
                        let mut end = max_text;
                        while !s.is_char_boundary(end) {
                            end -= 1;
                        }
                        Value::String(format!(
                            "{}\n… [cut here: {} more bytes; the artifact has all of it]",
                            &s[..end],
                            s.len() - end
                        ))
                    }
                    other => other.clone(),
                };
                (k.clone(), v)
            })
            .collect(),
    )
}

/// JSON that is safe inside a script: the characters that could end a
/// script element or a line in old parsers are written as escapes.
pub fn script_json(value: &Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn data_file(name: &str, id: &str, value: &Value) -> SiteFile {
    SiteFile {
        name: name.to_string(),
        media_type: "text/javascript",
        content: format!(
            "twData({}, {});\n",
            script_json(&Value::String(id.into())),
            script_json(value)
        )
        .into_bytes(),
    }
}

/// Escape text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, tables_html: &str, manifest: &Value) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<link rel=\"stylesheet\" href=\"browser.css\">\n</head>\n<body>\n\
         <header><a href=\"#/\" id=\"home\">{title}</a><span id=\"crumbs\"></span></header>\n\
         <main id=\"app\"></main>\n\
         <template id=\"report-tables\">{tables_html}</template>\n\
         <script>window.TW_SITE = {};</script>\n\
         <script src=\"browser.js\"></script>\n</body>\n</html>\n",
        script_json(manifest),
        title = html_escape(title),
    )
}

/// The report's Markdown (`index.md`: headings, tables, paragraphs, images)
/// as HTML, every piece of text escaped.
pub fn markdown_html(markdown: &str) -> String {
    let mut out = String::new();
    let mut table: Vec<Vec<String>> = Vec::new();
    let flush = |table: &mut Vec<Vec<String>>, out: &mut String| {
        if table.is_empty() {
            return;
        }
        out.push_str("<table class=\"report\">");
        for (i, row) in table.iter().enumerate() {
            if i == 1 {
                continue; // the rule line
            }
            let tag = if i == 0 { "th" } else { "td" };
            out.push_str("<tr>");
            for cell in row {
                let _ = write!(out, "<{tag}>{}</{tag}>", inline(cell));
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>\n");
        table.clear();
    };
    for line in markdown.lines() {
        let t = line.trim();
        if t.starts_with('|') {
            table.push(split_row(t));
            continue;
        }
        flush(&mut table, &mut out);
        if t.is_empty() {
            continue;
        }
        if let Some(h) = t.strip_prefix("## ") {
            let _ = writeln!(out, "<h2>{}</h2>", inline(h));
        } else if let Some(h) = t.strip_prefix("# ") {
            let _ = writeln!(out, "<h1>{}</h1>", inline(h));
        } else if let Some(rest) = t.strip_prefix("![")
            && let Some((alt, src)) = rest.split_once("](")
        {
            let src = src.trim_end_matches(')');
            let _ = writeln!(
                out,
                "<p><img alt=\"{}\" src=\"{}\"></p>",
                html_escape(alt),
                html_escape(src)
            );
        } else {
            let _ = writeln!(out, "<p>{}</p>", inline(t));
        }
    }
    flush(&mut table, &mut out);
    out
}

/// `| a | b \| c |` -> [`a`, `b | c`].
fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cur.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    cells.push(cur.trim().to_string());
    cells
}

/// Escape, then `**bold**`, `*emphasis*` and `` `code` `` (the report's own Markdown).
fn inline(text: &str) -> String {
    let escaped = html_escape(text);
    let mut out = String::new();
    let mut rest = escaped.as_str();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("**")
            && let Some(end) = r.find("**")
        {
            let _ = write!(out, "<b>{}</b>", &r[..end]);
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('`')
            && let Some(end) = r.find('`')
        {
            let _ = write!(out, "<code>{}</code>", &r[..end]);
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix('*')
            && let Some(end) = r.find('*')
            && end > 0
        {
            let _ = write!(out, "<em>{}</em>", &r[..end]);
            rest = &r[end + 1..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(id: &str, output: &str, ancestors: &[&str]) -> InputOrigin {
        InputOrigin {
            id: id.into(),
            stage: id.split('[').next().unwrap_or(id).into(),
            binding: vec![],
            output: output.into(),
            ancestors: ancestors.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn row(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn cells_group_problems_and_attempts_and_join_related_context() {
        let instances = vec![
            Input {
                origin: origin("verify", "summary", &["samples", "bench"]),
                rows: vec![
                    row(
                        json!({"task_id": "t/1", "candidate": "t/1#0", "pass": true, "label": "correct"}),
                    ),
                    row(
                        json!({"task_id": "t/1", "candidate": "t/1#1", "pass": false, "label": "wrong_answer"}),
                    ),
                    row(
                        json!({"task_id": "t/2", "candidate": "t/2#0", "pass": false, "label": "crash"}),
                    ),
                ],
            },
            Input {
                origin: origin("verify", "results", &["samples", "bench"]),
                rows: vec![row(
                    json!({"task_id": "t/1", "candidate": "t/1#1", "test": 0, "output": "3"}),
                )],
            },
        ];
        let context = vec![
            Input {
                origin: origin("samples", "candidates", &["bench"]),
                rows: vec![row(
                    json!({"task_id": "t/1", "candidate": "t/1#1", "program": "</script><script>alert(1)</script>"}),
                )],
            },
            Input {
                origin: origin("bench", "tests", &[]),
                rows: vec![row(
                    json!({"task_id": "t/1", "test": 0, "input": "[1]", "expected": "4"}),
                )],
            },
            // Unrelated: neither reads the other.
            Input {
                origin: origin("other", "rows", &["bench"]),
                rows: vec![row(json!({"task_id": "t/1", "note": "not shown"}))],
            },
        ];
        let (files, stats) =
            build("t", "", instances, &context, &BrowseSpec::default()).expect("site");
        assert_eq!((stats.cells, stats.problems, stats.attempts), (1, 2, 3));
        let get = |name: &str| {
            let f = files.iter().find(|f| f.name == name).expect(name);
            String::from_utf8(f.content.clone()).expect("utf8")
        };
        let index = get("data/c0.js");
        assert!(index.contains(r#"["t/1","mixed",2,1,2]"#), "{index}");
        assert!(index.contains(r#"["t/2","fail",1,0,1]"#), "{index}");
        let p0 = get("data/c0/p0.js");
        // The sample's program joined its attempt, escaped for a script.
        assert!(
            p0.contains(r"\u003c/script\u003e\u003cscript\u003ealert(1)"),
            "{p0}"
        );
        assert!(!p0.contains("</script>"));
        // The test's expected output lent to the result row of test 0.
        assert!(
            p0.contains(r#""test":0,"output":"3","input":"[1]","expected":"4""#),
            "{p0}"
        );
        assert!(!p0.contains("not shown"));
        let html = get("index.html");
        assert!(html.contains("\"problems\":2"), "{html}");
    }

    #[test]
    fn context_without_the_key_joins_through_a_table_that_has_it() {
        let instances = vec![Input {
            origin: origin("verify", "summary", &[]),
            rows: vec![row(
                json!({"task_id": "t/1", "candidate": "a", "pass": false}),
            )],
        }];
        let runs = Input {
            origin: origin("traces", "runs", &["verify"]),
            rows: vec![row(
                json!({"run": 0, "pair_id": "p7", "task_id": "t/1", "verdict": "pass"}),
            )],
        };
        let events = Input {
            origin: origin("traces", "events", &["verify"]),
            rows: (0..5)
                .map(|i| row(json!({"run": 0, "pair_id": "p7", "step": i, "line": i + 2})))
                .collect(),
        };
        let spec = BrowseSpec {
            max_rows: 3,
            ..BrowseSpec::default()
        };
        let (files, _) =
            build("t", "", instances, &[runs.clone(), events.clone()], &spec).expect("site");
        let p0 = files
            .iter()
            .find(|f| f.name == "data/c0/p0.js")
            .expect("problem");
        let text = String::from_utf8(p0.content.clone()).expect("utf8");
        assert!(
            text.contains(r#""title":"traces.events","rows":[{"run":0,"pair_id":"p7","step":0"#),
            "{text}"
        );
        assert!(text.contains(r#""cut_rows":2"#), "{text}");
        // Alone, events cannot be placed: said, not dropped.
        let instances = vec![Input {
            origin: origin("verify", "summary", &[]),
            rows: vec![row(
                json!({"task_id": "t/1", "candidate": "a", "pass": false}),
            )],
        }];
        let err = build("t", "", instances, &[events], &spec)
            .err()
            .expect("error");
        assert!(
            err.contains("context `traces.events` has no `task_id` column"),
            "{err}"
        );
    }

    #[test]
    fn a_table_without_the_key_is_named() {
        let instances = vec![Input {
            origin: origin("verify", "summary", &[]),
            rows: vec![row(json!({"candidate": "a", "pass": true}))],
        }];
        let err = build("t", "", instances, &[], &BrowseSpec::default())
            .err()
            .expect("error");
        assert!(
            err.contains("`verify.summary` has no `task_id` column"),
            "{err}"
        );
    }

    #[test]
    fn markdown_tables_become_escaped_html() {
        let html = markdown_html(
            "# T <x>\n\n| a | b \\| c |\n|:--|--:|\n| **1.0**† | <img> |\n\n*note*\n",
        );
        assert!(html.contains("<h1>T &lt;x&gt;</h1>"), "{html}");
        assert!(html.contains("<th>b | c</th>"), "{html}");
        assert!(
            html.contains("<td><b>1.0</b>†</td><td>&lt;img&gt;</td>"),
            "{html}"
        );
        assert!(html.contains("<p><em>note</em></p>"), "{html}");
    }
}
