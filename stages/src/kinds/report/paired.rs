//! Paired comparisons in a table (`compare:`): each cell against the
//! baseline cell of the same row on the problems both have, with a paired
//! bootstrap interval, an exact McNemar p-value for pass/fail outcomes, and,
//! across seeds, the mean and standard deviation of the difference.
//!
//! Why paired: two representations tried on the same 26 problems differ
//! mostly because the problems differ; pairing removes that and leaves the
//! question a reviewer asks, "does this representation change outcomes on
//! the same problems more than chance would?"

use crate::stats;
use arrow::array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType as ArrowType, Field, Schema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// `compare: { axis: representation, baseline: notrace }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareSpec {
    /// The column key whose values are compared (one of the table's `columns`).
    pub axis: String,
    /// The value of `axis` every other value is compared with.
    pub baseline: serde_json::Value,
    /// The column naming the unit outcomes are paired on.
    #[serde(default = "default_pair")]
    pub pair: String,
    /// A column naming replicate runs (seeds); each cell's difference is then
    /// also reported per seed, as mean and standard deviation.
    #[serde(default)]
    pub seeds: Option<String>,
    #[serde(default = "default_resamples")]
    pub resamples: u32,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_level")]
    pub level: f64,
}

fn default_pair() -> String {
    "task_id".into()
}
fn default_resamples() -> u32 {
    10_000
}
fn default_level() -> f64 {
    0.95
}

/// One compared cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub row: Vec<String>,
    pub column: Vec<String>,
    /// Problems present in both cells.
    pub pairs: usize,
    /// Means over the paired problems.
    pub baseline: f64,
    pub value: f64,
    pub diff: f64,
    pub ci: (f64, f64),
    /// Pairs where only the baseline passed, and only this cell: set when
    /// every paired outcome is pass/fail.
    pub discordant: Option<(u64, u64)>,
    pub p_mcnemar: Option<f64>,
    /// Holm-adjusted p over the table's comparisons.
    pub p_holm: Option<f64>,
    /// Seeds paired, and the standard deviation of the per-seed differences.
    pub seeds: usize,
    pub diff_sd: Option<f64>,
}

impl Comparison {
    /// The difference holds up at the level: McNemar's p below `1 - level`
    /// for pass/fail outcomes, otherwise an interval that excludes zero.
    pub fn holds(&self, level: f64) -> bool {
        match self.p_mcnemar {
            Some(p) => p < 1.0 - level,
            None => self.ci.0 > 0.0 || self.ci.1 < 0.0,
        }
    }
}

/// Per unit (problem) values of one cell, per seed.
type Cell = BTreeMap<String, BTreeMap<String, f64>>;

/// One problem's value in one cell (and seed): the table's aggregate over
/// the rows that share the cell, the seed and the problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub row: Vec<String>,
    pub column: Vec<String>,
    pub seed: String,
    pub pair: String,
    pub value: f64,
}

/// Compare every cell with its baseline cell: the one whose column key has
/// `baseline` at position `axis_at` and this cell's key elsewhere.
pub fn compare(
    units: Vec<Unit>,
    axis_at: usize,
    baseline: &str,
    spec: &CompareSpec,
) -> Result<Vec<Comparison>, String> {
    let mut cells: BTreeMap<(Vec<String>, Vec<String>), Cell> = BTreeMap::new();
    let mut order: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for u in units {
        let key = (u.row, u.column);
        if !cells.contains_key(&key) {
            order.push(key.clone());
        }
        cells
            .entry(key)
            .or_default()
            .entry(u.seed)
            .or_default()
            .insert(u.pair, u.value);
    }
    if !order.iter().any(|(_, c)| c[axis_at] == baseline) {
        let seen: Vec<String> = order
            .iter()
            .map(|(_, c)| c[axis_at].clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // Say what the column holds, briefly: it may be long text that only
        // shares the axis's name.
        let shown: Vec<String> = seen
            .iter()
            .take(8)
            .map(|v| match v.char_indices().nth(40) {
                Some((at, _)) => format!("{}…", &v[..at]),
                None => v.clone(),
            })
            .collect();
        let more = seen.len().saturating_sub(shown.len());
        return Err(format!(
            "no rows have {} = {baseline}; it has: {}{}",
            spec.axis,
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    let mut out = Vec::new();
    for (row, column) in &order {
        if column[axis_at] == baseline {
            continue;
        }
        let mut base_key = column.clone();
        base_key[axis_at] = baseline.to_string();
        let Some(base) = cells.get(&(row.clone(), base_key)) else {
            continue;
        };
        let this = &cells[&(row.clone(), column.clone())];
        if let Some(c) = pair_cells(row, column, this, base, spec) {
            out.push(c);
        }
    }
    holm(&mut out);
    Ok(out)
}

/// The comparison of two cells, or `None` when they share no problem.
fn pair_cells(
    row: &[String],
    column: &[String],
    this: &Cell,
    base: &Cell,
    spec: &CompareSpec,
) -> Option<Comparison> {
    // Per problem: the mean over the seeds both cells ran on it.
    let mut per_unit: BTreeMap<&str, (f64, f64, usize)> = BTreeMap::new();
    let mut per_seed_diff = Vec::new();
    for (seed, units) in this {
        let Some(base_units) = base.get(seed) else {
            continue;
        };
        let (mut sum_this, mut sum_base, mut n) = (0.0, 0.0, 0usize);
        for (unit, v) in units {
            if let Some(b) = base_units.get(unit) {
                let e = per_unit.entry(unit.as_str()).or_default();
                e.0 += v;
                e.1 += b;
                e.2 += 1;
                sum_this += v;
                sum_base += b;
                n += 1;
            }
        }
        if n > 0 {
            per_seed_diff.push((sum_this - sum_base) / n as f64);
        }
    }
    if per_unit.is_empty() {
        return None;
    }
    let xs: Vec<f64> = per_unit.values().map(|(x, _, n)| x / *n as f64).collect();
    let ys: Vec<f64> = per_unit.values().map(|(_, y, n)| y / *n as f64).collect();
    let diffs: Vec<f64> = xs.iter().zip(&ys).map(|(x, y)| x - y).collect();
    let ci = stats::bootstrap_interval(&diffs, spec.resamples, spec.seed, spec.level);
    let discordant = pass_fail_levels(xs.iter().chain(&ys)).map(|pass| {
        let only_base = xs
            .iter()
            .zip(&ys)
            .filter(|(x, y)| **y == pass && **x != pass)
            .count();
        let only_this = xs
            .iter()
            .zip(&ys)
            .filter(|(x, y)| **x == pass && **y != pass)
            .count();
        (only_base as u64, only_this as u64)
    });
    Some(Comparison {
        row: row.to_vec(),
        column: column.to_vec(),
        pairs: diffs.len(),
        baseline: stats::mean(&ys),
        value: stats::mean(&xs),
        diff: stats::mean(&diffs),
        ci,
        discordant,
        p_mcnemar: discordant.map(|(b, c)| stats::mcnemar_exact(b, c)),
        p_holm: None,
        seeds: per_seed_diff.len(),
        diff_sd: (per_seed_diff.len() > 1).then(|| stats::sample_sd(&per_seed_diff)),
    })
}

/// The value that means "passed" when every outcome is pass/fail: 1 for
/// shares and booleans, 100 for percentages; `None` for anything else.
fn pass_fail_levels<'a>(values: impl Iterator<Item = &'a f64> + Clone) -> Option<f64> {
    [1.0, 100.0]
        .into_iter()
        .find(|pass| values.clone().all(|v| *v == 0.0 || v == pass))
}

/// Holm's step-down adjustment over the McNemar p-values of one table: a
/// table of 56 comparisons at 0.05 expects about three false alarms.
fn holm(comparisons: &mut [Comparison]) {
    let mut tested: Vec<(usize, f64)> = comparisons
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.p_mcnemar.map(|p| (i, p)))
        .collect();
    tested.sort_by(|a, b| a.1.total_cmp(&b.1));
    let m = tested.len();
    let mut running = 0.0f64;
    for (rank, (i, p)) in tested.into_iter().enumerate() {
        running = running.max(((m - rank) as f64 * p).min(1.0));
        comparisons[i].p_holm = Some(running);
    }
}

/// The comparisons as an artifact, one row each.
pub fn table(
    row_names: &[String],
    col_names: &[String],
    comparisons: &[Comparison],
    level: f64,
) -> Result<RecordBatch, String> {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    let mut text = |name: &str, values: Vec<String>, fields: &mut Vec<Field>| {
        fields.push(Field::new(name, ArrowType::Utf8, false));
        arrays.push(Arc::new(StringArray::from_iter_values(values)));
    };
    for (i, name) in row_names.iter().enumerate() {
        text(
            name,
            comparisons.iter().map(|c| c.row[i].clone()).collect(),
            &mut fields,
        );
    }
    for (i, name) in col_names.iter().enumerate() {
        if row_names.contains(name) {
            continue;
        }
        text(
            name,
            comparisons.iter().map(|c| c.column[i].clone()).collect(),
            &mut fields,
        );
    }
    let float = |f: fn(&Comparison) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from(
            comparisons.iter().map(f).collect::<Vec<_>>(),
        ))
    };
    let u64s = |f: fn(&Comparison) -> Option<u64>| -> ArrayRef {
        Arc::new(UInt64Array::from(
            comparisons.iter().map(f).collect::<Vec<_>>(),
        ))
    };
    let columns: Vec<(&str, ArrowType, ArrayRef)> = vec![
        ("pairs", ArrowType::UInt64, u64s(|c| Some(c.pairs as u64))),
        ("baseline", ArrowType::Float64, float(|c| Some(c.baseline))),
        ("value", ArrowType::Float64, float(|c| Some(c.value))),
        ("diff", ArrowType::Float64, float(|c| Some(c.diff))),
        ("ci_low", ArrowType::Float64, float(|c| Some(c.ci.0))),
        ("ci_high", ArrowType::Float64, float(|c| Some(c.ci.1))),
        (
            "only_baseline",
            ArrowType::UInt64,
            u64s(|c| c.discordant.map(|d| d.0)),
        ),
        (
            "only_this",
            ArrowType::UInt64,
            u64s(|c| c.discordant.map(|d| d.1)),
        ),
        ("p_mcnemar", ArrowType::Float64, float(|c| c.p_mcnemar)),
        ("p_holm", ArrowType::Float64, float(|c| c.p_holm)),
        ("seeds", ArrowType::UInt64, u64s(|c| Some(c.seeds as u64))),
        ("diff_sd", ArrowType::Float64, float(|c| c.diff_sd)),
    ];
    for (name, dtype, array) in columns {
        fields.push(Field::new(name, dtype, true));
        arrays.push(array);
    }
    fields.push(Field::new("holds", ArrowType::Boolean, false));
    arrays.push(Arc::new(BooleanArray::from(
        comparisons
            .iter()
            .map(|c| c.holds(level))
            .collect::<Vec<_>>(),
    )));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| e.to_string())
}

/// The marker a holding difference gets in tables.
pub const MARK: &str = "†";

/// The paired table in Markdown, and the note under it that says what was
/// tested on how many problems.
pub fn markdown(
    col_names: &[String],
    value: &str,
    baseline: &str,
    comparisons: &[Comparison],
    spec: &CompareSpec,
    digits: usize,
) -> String {
    let pct = |p: f64| {
        if p < 0.001 {
            "<0.001".to_string()
        } else {
            format!("{p:.3}")
        }
    };
    let level_pct = spec.level * 100.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| | {} | pairs | {baseline} | this | Δ | {level_pct}% CI | only {baseline} / only this | McNemar p | Holm p | |",
        col_names.join(" / ")
    );
    let _ = writeln!(
        out,
        "|:---|:---|---:|---:|---:|---:|:---:|:---:|---:|---:|:---:|"
    );
    for c in comparisons {
        let mut delta = format!("{:+.digits$}", c.diff);
        if let Some(sd) = c.diff_sd {
            let _ = write!(delta, " ± {sd:.digits$}");
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.digits$} | {:.digits$} | {delta} | [{:+.digits$}, {:+.digits$}] | {} | {} | {} | {} |",
            c.row.join(" / ").replace('|', "\\|"),
            c.column.join(" / ").replace('|', "\\|"),
            c.pairs,
            c.baseline,
            c.value,
            c.ci.0,
            c.ci.1,
            c.discordant
                .map(|(b, t)| format!("{b} / {t}"))
                .unwrap_or_else(|| "–".into()),
            c.p_mcnemar.map(pct).unwrap_or_else(|| "–".into()),
            c.p_holm.map(pct).unwrap_or_else(|| "–".into()),
            if c.holds(spec.level) { MARK } else { "" },
        );
    }
    out.push('\n');
    out.push_str(&note(value, baseline, comparisons, spec));
    out
}

/// What was tested, on how many problems, and what the marker means.
pub fn note(value: &str, baseline: &str, comparisons: &[Comparison], spec: &CompareSpec) -> String {
    let pairs: Vec<usize> = comparisons.iter().map(|c| c.pairs).collect();
    let (lo, hi) = (
        pairs.iter().min().copied().unwrap_or(0),
        pairs.iter().max().copied().unwrap_or(0),
    );
    let paired = if lo == hi {
        format!("{lo}")
    } else {
        format!("{lo} to {hi}")
    };
    let tested = comparisons.iter().filter(|c| c.p_mcnemar.is_some()).count();
    let holding = comparisons.iter().filter(|c| c.holds(spec.level)).count();
    let alpha = 1.0 - spec.level;
    let seeds = comparisons.iter().map(|c| c.seeds).max().unwrap_or(0);
    let mut note = format!(
        "*Paired on `{}`: each cell against `{} = {baseline}` in the same row and columns, \
         over the problems both have ({paired} per comparison, {} comparisons). \
         Δ: difference of the means of `{value}` over those problems. \
         {}% CI: paired bootstrap over problems ({} resamples, seed {}). \
         McNemar p: exact two-sided test on the problems only one side passed, \
         for pass/fail outcomes ({tested} of {} comparisons; – where outcomes are not pass/fail). \
         {MARK}: p < {alpha:.2} (or, without a McNemar test, an interval that excludes 0): \
         {holding} of {}. ",
        spec.pair,
        spec.axis,
        comparisons.len(),
        spec.level * 100.0,
        spec.resamples,
        spec.seed,
        comparisons.len(),
        comparisons.len(),
    );
    if tested > 0 {
        let _ = write!(
            note,
            "With {tested} tests at {alpha:.2}, about {:.1} would cross by chance alone; \
             Holm p adjusts for that. ",
            tested as f64 * alpha
        );
    }
    if seeds > 1 {
        let _ = write!(
            note,
            "Δ ± sd: over {seeds} seeds (`{}`), the mean and standard deviation of the per-seed differences; \
             problems are averaged over seeds before the interval and the test. ",
            spec.seeds.as_deref().unwrap_or_default()
        );
    }
    note.truncate(note.trim_end().len());
    note.push_str("*\n");
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CompareSpec {
        CompareSpec {
            axis: "representation".into(),
            baseline: serde_json::json!("none"),
            pair: "task_id".into(),
            seeds: None,
            resamples: 2000,
            seed: 0,
            level: 0.95,
        }
    }

    /// Pass/fail outcomes per representation and problem; the second seed
    /// flips the first problem (replicate noise).
    fn units(reps: &[(&str, &[bool])], seeds: usize) -> Vec<Unit> {
        let mut out = Vec::new();
        for (name, outcomes) in reps {
            for s in 0..seeds {
                for (t, ok) in outcomes.iter().enumerate() {
                    let ok = if s == 1 && t == 0 { !ok } else { *ok };
                    out.push(Unit {
                        row: vec!["m".into()],
                        column: vec![name.to_string()],
                        seed: s.to_string(),
                        pair: format!("t{t}"),
                        value: f64::from(u8::from(ok)),
                    });
                }
            }
        }
        out
    }

    #[test]
    fn a_clear_gain_holds_up_and_an_equal_cell_does_not() {
        let base: Vec<bool> = (0..26).map(|i| i < 10).collect();
        let gain: Vec<bool> = (0..26).map(|i| i < 20).collect(); // +10 problems, none lost
        let same: Vec<bool> = (0..26).map(|i| i < 10).collect();
        let data = units(&[("none", &base), ("next", &gain), ("concise", &same)], 1);
        let out = compare(data, 0, "none", &spec()).expect("compare");
        assert_eq!(out.len(), 2);
        let next = &out[0];
        assert_eq!(next.column, vec!["next"]);
        assert_eq!((next.pairs, next.discordant), (26, Some((0, 10))));
        assert!((next.diff - 10.0 / 26.0).abs() < 1e-12);
        assert_eq!(next.p_mcnemar, Some(2.0 / 1024.0));
        assert!(next.ci.0 > 0.0 && next.holds(0.95));
        let concise = &out[1];
        assert_eq!(concise.discordant, Some((0, 0)));
        assert_eq!(concise.p_mcnemar, Some(1.0));
        assert_eq!(concise.ci, (0.0, 0.0));
        assert!(!concise.holds(0.95));
        // Holm: two tests; the smaller p doubles.
        assert_eq!(next.p_holm, Some(4.0 / 1024.0));
        let md = markdown(
            &["representation".into()],
            "passed",
            "none",
            &out,
            &spec(),
            1,
        );
        assert!(md.contains("| m | next | 26 |"), "{md}");
        assert!(md.contains("0 / 10") && md.contains(MARK), "{md}");
        assert!(md.contains("26 per comparison, 2 comparisons"), "{md}");
    }

    #[test]
    fn seeds_give_a_spread_and_fractional_outcomes_use_the_interval() {
        let base: Vec<bool> = (0..12).map(|i| i < 4).collect();
        let gain: Vec<bool> = (0..12).map(|i| i < 8).collect();
        let mut s = spec();
        s.seeds = Some("seed".into());
        let out =
            compare(units(&[("none", &base), ("next", &gain)], 2), 0, "none", &s).expect("compare");
        let c = &out[0];
        assert_eq!(c.seeds, 2);
        // Problem t0 passes in one seed of each: 0.5, not pass/fail.
        assert_eq!(c.p_mcnemar, None);
        assert_eq!(c.diff_sd, Some(0.0)); // both seeds flip the same problem on both sides
        assert!(c.holds(0.95) == (c.ci.0 > 0.0));
        let md = note("passed", "none", &out, &s);
        assert!(md.contains("over 2 seeds"), "{md}");
    }

    #[test]
    fn only_problems_both_cells_have_are_paired_and_a_missing_baseline_is_named() {
        let mut data = units(
            &[("none", &[true, false, false]), ("next", &[true, true])],
            1,
        );
        data.retain(|u| !(u.column[0] == "none" && u.pair == "t0"));
        let out = compare(data, 0, "none", &spec()).expect("compare");
        assert_eq!((out[0].pairs, out[0].discordant), (1, Some((0, 1))));
        let err = compare(units(&[("next", &[true, false])], 1), 0, "none", &spec())
            .expect_err("no baseline");
        assert_eq!(err, "no rows have representation = none; it has: next");
    }
}
