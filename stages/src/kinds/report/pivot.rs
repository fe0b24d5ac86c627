//! Wide tables from long rows (rows x columns -> value), gains against a
//! baseline column, and their Markdown, CSV and LaTeX renderings.

use std::collections::HashMap;
use std::fmt::Write as _;

/// Which cell of a row to set in bold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Highlight {
    #[default]
    None,
    Max,
    Min,
}

/// A table with row keys down the side and column keys across the top, in
/// order of first appearance in the data.
#[derive(Debug, Clone, PartialEq)]
pub struct Pivot {
    /// Names of the row key columns (`model`).
    pub row_names: Vec<String>,
    /// Names of the column key columns (`representation`, `strategy`); empty
    /// when the table has one value column.
    pub col_names: Vec<String>,
    /// The value's name, the header when there are no column keys.
    pub value_name: String,
    pub row_keys: Vec<Vec<String>>,
    pub col_keys: Vec<Vec<String>>,
    /// `cells[row][col]`; `None` where the data has no such combination.
    pub cells: Vec<Vec<Option<f64>>>,
    /// Values are differences from a baseline column (shown with a sign).
    pub signed: bool,
    /// A marker shown after a cell's value (`marks[row][col]`; empty: none),
    /// e.g. for a difference that holds up in a paired comparison.
    pub marks: Vec<Vec<&'static str>>,
}

/// Text shown where a row has no value for a column.
const MISSING: &str = "–";

impl Pivot {
    /// Build from `(row key, column key, value)` records; a repeated
    /// combination is an error (the caller aggregates first).
    pub fn from_records(
        row_names: Vec<String>,
        col_names: Vec<String>,
        value_name: String,
        records: Vec<(Vec<String>, Vec<String>, f64)>,
    ) -> Result<Pivot, String> {
        let mut row_index: HashMap<Vec<String>, usize> = HashMap::new();
        let mut col_index: HashMap<Vec<String>, usize> = HashMap::new();
        let mut row_keys = Vec::new();
        let mut col_keys = Vec::new();
        let mut placed = Vec::new();
        for (row, col, value) in records {
            let r = *row_index.entry(row.clone()).or_insert_with(|| {
                row_keys.push(row);
                row_keys.len() - 1
            });
            let c = *col_index.entry(col.clone()).or_insert_with(|| {
                col_keys.push(col);
                col_keys.len() - 1
            });
            placed.push((r, c, value));
        }
        let mut cells = vec![vec![None; col_keys.len()]; row_keys.len()];
        for (r, c, value) in placed {
            if cells[r][c].replace(value).is_some() {
                return Err(format!(
                    "two values for row {} column {}",
                    row_keys[r].join(" / "),
                    col_keys[c].join(" / ")
                ));
            }
        }
        Ok(Pivot {
            row_names,
            col_names,
            value_name,
            row_keys,
            col_keys,
            cells,
            signed: false,
            marks: Vec::new(),
        })
    }

    /// Each cell minus the cell of the same row whose column key matches
    /// `baseline` (column-key position -> value) in those positions and this
    /// column's key elsewhere. Baseline columns themselves are dropped.
    pub fn gains(&self, baseline: &[(usize, String)]) -> Result<Pivot, String> {
        let is_baseline = |key: &[String]| baseline.iter().all(|(i, v)| &key[*i] == v);
        if !self.col_keys.iter().any(|k| is_baseline(k)) {
            return Err(format!(
                "no column matches the baseline {}; columns are: {}",
                baseline
                    .iter()
                    .map(|(i, v)| format!("{}={v}", self.col_names[*i]))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.col_keys
                    .iter()
                    .map(|k| k.join(" / "))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut keep = Vec::new();
        let mut partner = Vec::new();
        for (c, key) in self.col_keys.iter().enumerate() {
            if is_baseline(key) {
                continue;
            }
            let mut wanted = key.clone();
            for (i, v) in baseline {
                wanted[*i] = v.clone();
            }
            keep.push(c);
            partner.push(self.col_keys.iter().position(|k| *k == wanted));
        }
        let cells = self
            .cells
            .iter()
            .map(|row| {
                keep.iter()
                    .zip(&partner)
                    .map(|(&c, base)| match (row[c], base.and_then(|b| row[b])) {
                        (Some(v), Some(b)) => Some(v - b),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        Ok(Pivot {
            row_names: self.row_names.clone(),
            col_names: self.col_names.clone(),
            value_name: format!("{} gain", self.value_name),
            row_keys: self.row_keys.clone(),
            col_keys: keep.iter().map(|&c| self.col_keys[c].clone()).collect(),
            cells,
            signed: true,
            marks: Vec::new(),
        })
    }

    /// Put `mark` after the cells at these (row key, column key) pairs.
    pub fn mark(
        &mut self,
        at: impl IntoIterator<Item = (Vec<String>, Vec<String>)>,
        mark: &'static str,
    ) {
        for (row, col) in at {
            let (Some(r), Some(c)) = (
                self.row_keys.iter().position(|k| *k == row),
                self.col_keys.iter().position(|k| *k == col),
            ) else {
                continue;
            };
            if self.marks.is_empty() {
                self.marks = vec![vec![""; self.col_keys.len()]; self.row_keys.len()];
            }
            self.marks[r][c] = mark;
        }
    }

    fn mark_at(&self, r: usize, c: usize) -> &'static str {
        self.marks
            .get(r)
            .and_then(|m| m.get(c))
            .copied()
            .unwrap_or("")
    }

    /// One header per value column: the column key joined by ` / `.
    pub fn column_headers(&self) -> Vec<String> {
        if self.col_names.is_empty() {
            return vec![self.value_name.clone()];
        }
        self.col_keys.iter().map(|k| k.join(" / ")).collect()
    }

    pub fn format_value(&self, value: Option<f64>, digits: usize) -> Option<String> {
        value.map(|v| {
            if self.signed {
                format!("{v:+.digits$}")
            } else {
                format!("{v:.digits$}")
            }
        })
    }

    /// Which cells of each row to set in bold: every tie of the best, and
    /// none in a row whose values all look the same (nothing stands out).
    fn best(&self, highlight: Highlight, digits: usize) -> Vec<Vec<bool>> {
        self.cells
            .iter()
            .map(|row| {
                // Compare what is printed, so that visibly equal values tie.
                let shown: Vec<Option<f64>> = row
                    .iter()
                    .map(|v| {
                        self.format_value(*v, digits)
                            .and_then(|s| s.parse::<f64>().ok())
                    })
                    .collect();
                let best = shown
                    .iter()
                    .flatten()
                    .copied()
                    .reduce(|a, b| match highlight {
                        Highlight::Max => a.max(b),
                        Highlight::Min => a.min(b),
                        Highlight::None => a,
                    });
                let present: Vec<f64> = shown.iter().flatten().copied().collect();
                let all_equal = present.windows(2).all(|w| w[0] == w[1]);
                shown
                    .iter()
                    .map(|v| {
                        highlight != Highlight::None
                            && present.len() > 1
                            && !all_equal
                            && v.is_some()
                            && *v == best
                    })
                    .collect()
            })
            .collect()
    }

    /// A GitHub-flavoured Markdown table.
    pub fn to_markdown(
        &self,
        digits: usize,
        highlight: Highlight,
        caption: Option<&str>,
    ) -> String {
        let escape = |s: &str| s.replace('|', "\\|");
        let mut out = String::new();
        if let Some(caption) = caption {
            let _ = writeln!(out, "{caption}\n");
        }
        let headers: Vec<String> = self
            .row_names
            .iter()
            .chain(&self.column_headers())
            .map(|h| escape(h))
            .collect();
        let _ = writeln!(out, "| {} |", headers.join(" | "));
        let rules: Vec<&str> = self
            .row_names
            .iter()
            .map(|_| ":---")
            .chain(self.column_headers().iter().map(|_| "---:"))
            .collect();
        let _ = writeln!(out, "| {} |", rules.join(" | "));
        let bold = self.best(highlight, digits);
        for (r, ((key, row), bold)) in self.row_keys.iter().zip(&self.cells).zip(bold).enumerate() {
            let mut cells: Vec<String> = key.iter().map(|k| escape(k)).collect();
            for (c, (value, bold)) in row.iter().zip(bold).enumerate() {
                let mark = self.mark_at(r, c);
                cells.push(match self.format_value(*value, digits) {
                    Some(s) if bold => format!("**{s}**{mark}"),
                    Some(s) => format!("{s}{mark}"),
                    None => MISSING.into(),
                });
            }
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }

    /// CSV with full-precision values (empty where missing), for other tools.
    pub fn to_csv(&self) -> Result<String, String> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let headers: Vec<String> = self
            .row_names
            .iter()
            .cloned()
            .chain(self.column_headers())
            .collect();
        writer.write_record(&headers).map_err(|e| e.to_string())?;
        for (key, row) in self.row_keys.iter().zip(&self.cells) {
            let mut record: Vec<String> = key.clone();
            record.extend(
                row.iter()
                    .map(|v| v.map(|v| v.to_string()).unwrap_or_default()),
            );
            writer.write_record(&record).map_err(|e| e.to_string())?;
        }
        let bytes = writer.into_inner().map_err(|e| e.to_string())?;
        String::from_utf8(bytes).map_err(|e| e.to_string())
    }

    /// A booktabs `table` environment; with two or more column keys the first
    /// one becomes a spanning header over its group, as in the paper's tables.
    pub fn to_latex(
        &self,
        digits: usize,
        highlight: Highlight,
        caption: Option<&str>,
        label: &str,
    ) -> String {
        let mut out = String::new();
        out.push_str("% Generated by tw report; needs \\usepackage{booktabs}.\n");
        out.push_str("\\begin{table}[t]\n\\centering\n");
        if let Some(caption) = caption {
            let _ = writeln!(out, "\\caption{{{}}}", latex_escape(caption));
        }
        let _ = writeln!(out, "\\label{{tab:{}}}", latex_escape(label));
        let n_rows = self.row_names.len();
        let n_cols = self.column_headers().len();
        let _ = writeln!(
            out,
            "\\begin{{tabular}}{{{}{}}}",
            "l".repeat(n_rows),
            "r".repeat(n_cols)
        );
        out.push_str("\\toprule\n");
        let lead = "& ".repeat(n_rows.saturating_sub(1));
        let sub_headers: Vec<String> = if self.col_names.len() >= 2 {
            let mut groups: Vec<(String, usize)> = Vec::new();
            for key in &self.col_keys {
                match groups.last_mut() {
                    Some((g, n)) if *g == key[0] => *n += 1,
                    _ => groups.push((key[0].clone(), 1)),
                }
            }
            let spans: Vec<String> = groups
                .iter()
                .map(|(g, n)| format!("\\multicolumn{{{n}}}{{c}}{{{}}}", latex_escape(g)))
                .collect();
            let _ = writeln!(
                out,
                "{lead}{} & {} \\\\",
                latex_escape(&self.col_names[0]),
                spans.join(" & ")
            );
            let mut start = n_rows + 1;
            let mut rules = String::new();
            for (_, n) in &groups {
                let _ = write!(rules, "\\cmidrule(lr){{{start}-{}}}", start + n - 1);
                start += n;
            }
            let _ = writeln!(out, "{rules}");
            self.col_keys
                .iter()
                .map(|k| latex_escape(&k[1..].join(" / ")))
                .collect()
        } else {
            self.column_headers()
                .iter()
                .map(|h| latex_escape(h))
                .collect()
        };
        let row_headers: Vec<String> = self.row_names.iter().map(|h| latex_escape(h)).collect();
        let _ = writeln!(
            out,
            "{} & {} \\\\",
            row_headers.join(" & "),
            sub_headers.join(" & ")
        );
        out.push_str("\\midrule\n");
        let bold = self.best(highlight, digits);
        for (r, ((key, row), bold)) in self.row_keys.iter().zip(&self.cells).zip(bold).enumerate() {
            let mut cells: Vec<String> = key.iter().map(|k| latex_escape(k)).collect();
            for (c, (value, bold)) in row.iter().zip(bold).enumerate() {
                // The paired comparisons' marker is a dagger in print too.
                let mark = if self.mark_at(r, c).is_empty() {
                    ""
                } else {
                    "$^\\dagger$"
                };
                cells.push(match self.format_value(*value, digits) {
                    Some(s) if bold => format!("\\textbf{{{s}}}{mark}"),
                    Some(s) => format!("{s}{mark}"),
                    None => "--".into(),
                });
            }
            let _ = writeln!(out, "{} \\\\", cells.join(" & "));
        }
        out.push_str("\\bottomrule\n\\end{tabular}\n\\end{table}\n");
        out
    }
}

/// Escape LaTeX's special characters in running text.
pub fn latex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '\\' => out.push_str("\\textbackslash{}"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    /// Two models x (representation x strategy), one cell missing.
    fn table() -> Pivot {
        Pivot::from_records(
            k(&["model"]),
            k(&["representation", "strategy"]),
            "honest_pct".into(),
            vec![
                (k(&["smollm2"]), k(&["notrace", "seq"]), 10.0),
                (k(&["smollm2"]), k(&["next", "seq"]), 12.5),
                (k(&["smollm2"]), k(&["notrace", "par"]), 20.0),
                (k(&["smollm2"]), k(&["next", "par"]), 19.0),
                (k(&["qwen_7b"]), k(&["notrace", "seq"]), 40.0),
                (k(&["qwen_7b"]), k(&["next", "seq"]), 40.0),
                (k(&["qwen_7b"]), k(&["notrace", "par"]), 45.0),
            ],
        )
        .expect("distinct records")
    }

    #[test]
    fn keys_keep_first_appearance_order_and_missing_cells_stay_empty() {
        let t = table();
        assert_eq!(t.row_keys, vec![k(&["smollm2"]), k(&["qwen_7b"])]);
        assert_eq!(
            t.column_headers(),
            k(&["notrace / seq", "next / seq", "notrace / par", "next / par"])
        );
        assert_eq!(t.cells[1], vec![Some(40.0), Some(40.0), Some(45.0), None]);
    }

    #[test]
    fn duplicate_records_are_an_error() {
        let err = Pivot::from_records(
            k(&["m"]),
            k(&["r"]),
            "v".into(),
            vec![(k(&["a"]), k(&["x"]), 1.0), (k(&["a"]), k(&["x"]), 2.0)],
        )
        .expect_err("duplicate");
        assert_eq!(err, "two values for row a column x");
    }

    #[test]
    fn gains_subtract_the_baseline_of_the_same_strategy_and_drop_it() {
        let g = table()
            .gains(&[(0, "notrace".into())])
            .expect("baseline exists");
        assert_eq!(g.column_headers(), k(&["next / seq", "next / par"]));
        assert_eq!(g.cells[0], vec![Some(2.5), Some(-1.0)]);
        // qwen has no `next / par`: no gain rather than a made-up one.
        assert_eq!(g.cells[1], vec![Some(0.0), None]);
        assert_eq!(g.format_value(Some(2.5), 1).as_deref(), Some("+2.5"));
        let err = table()
            .gains(&[(0, "scratchpad".into())])
            .expect_err("no column");
        assert!(err.contains("representation=scratchpad"), "{err}");
        assert!(err.contains("notrace / seq"), "{err}");
    }

    #[test]
    fn markdown_bolds_every_tie_of_the_row_best_and_marks_missing_cells() {
        let md = table().to_markdown(1, Highlight::Max, Some("Table 3"));
        assert_eq!(
            md,
            "Table 3\n\n\
             | model | notrace / seq | next / seq | notrace / par | next / par |\n\
             | :--- | ---: | ---: | ---: | ---: |\n\
             | smollm2 | 10.0 | 12.5 | **20.0** | 19.0 |\n\
             | qwen_7b | 40.0 | 40.0 | **45.0** | – |\n"
        );
        let min = table().to_markdown(0, Highlight::Min, None);
        assert!(
            min.contains("| qwen_7b | **40** | **40** | 45 | – |"),
            "{min}"
        );
        let flat = Pivot::from_records(
            k(&["m"]),
            k(&["r"]),
            "v".into(),
            vec![(k(&["a"]), k(&["x"]), 0.0), (k(&["a"]), k(&["y"]), 0.0)],
        )
        .expect("records");
        assert!(
            flat.to_markdown(1, Highlight::Max, None)
                .ends_with("| a | 0.0 | 0.0 |\n"),
            "a row of equal values has no best"
        );
    }

    #[test]
    fn csv_keeps_full_precision_and_quotes_when_needed() {
        let t = Pivot::from_records(
            k(&["model"]),
            Vec::new(),
            "pass@1".into(),
            vec![(k(&["a, b"]), Vec::new(), 1.0 / 3.0)],
        )
        .expect("one record");
        assert_eq!(
            t.to_csv().expect("csv"),
            "model,pass@1\n\"a, b\",0.3333333333333333\n"
        );
    }

    #[test]
    fn latex_groups_the_first_column_key_and_escapes_text() {
        let tex = table().to_latex(1, Highlight::Max, Some("Pass@1 (%) & more"), "rq3_table");
        let body: Vec<&str> = tex.lines().collect();
        assert!(body.contains(&"\\caption{Pass@1 (\\%) \\& more}"), "{tex}");
        assert!(body.contains(&"\\label{tab:rq3\\_table}"), "{tex}");
        assert!(body.contains(&"\\begin{tabular}{lrrrr}"), "{tex}");
        // Runs of the first key are grouped as they appear: notrace, next, notrace, next.
        assert!(
            body.contains(
                &"representation & \\multicolumn{1}{c}{notrace} & \\multicolumn{1}{c}{next} & \\multicolumn{1}{c}{notrace} & \\multicolumn{1}{c}{next} \\\\"
            ),
            "{tex}"
        );
        assert!(
            body.contains(
                &"\\cmidrule(lr){2-2}\\cmidrule(lr){3-3}\\cmidrule(lr){4-4}\\cmidrule(lr){5-5}"
            ),
            "{tex}"
        );
        assert!(
            body.contains(&"model & seq & seq & par & par \\\\"),
            "{tex}"
        );
        assert!(
            body.contains(&"qwen\\_7b & 40.0 & 40.0 & \\textbf{45.0} & -- \\\\"),
            "{tex}"
        );
        assert_eq!(
            latex_escape("a_b^c~d\\e"),
            "a\\_b\\textasciicircum{}c\\textasciitilde{}d\\textbackslash{}e"
        );
    }
}
