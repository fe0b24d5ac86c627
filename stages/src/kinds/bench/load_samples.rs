//! `load_samples`: read existing model generations as candidate programs for a benchmark's problems.
//!
//! # What it does
//! Reads a generations file in one of the published layouts and writes one
//! row per candidate program, matched to a problem of `problems` (a
//! `load_benchmark` output):
//! - `evalplus`: `{task_id, solution}` (a whole program) or
//!   `{task_id, completion}` (the problem's prompt is prepended);
//! - `codet`: `{prompt, samples: [...]}` (CodeT's 100 CodeGen samples per
//!   HumanEval problem). Rows carry no task id and their prompts lack the
//!   doctest examples, so each row is matched to the problem whose prompt
//!   it equals, else to the one sharing its longest common prefix, which
//!   must be unique and reach past the `def` line. The program is the row's
//!   prompt followed by the sample;
//! - `lcb`: `{question_id, code_list: [...]}` (LiveCodeBench).
//!
//! A row for an unknown problem, an ambiguous match or a row without code is
//! an error naming the file and row, or with `on_error: skip` a counted
//! skip (`skipped_rows`).
//!
//! # Params
//! - `path` (required), `format` (`evalplus` | `codet` | `lcb`, default `evalplus`).
//! - `per_problem` (default: all): keep the first N samples of each problem.
//! - `on_error` (`fail` | `skip`, default `fail`).
//!
//! # Inputs
//! - `problems`: `task_id`, `prompt`, `entry_point` (from `load_benchmark`).
//!
//! # Outputs
//! - `candidates`: `candidate` (`<task_id>#<n>`), `task_id`, `sample` (n,
//!   the position among the problem's samples), `program`, `entry_point`.
//!
//! # Caching
//! The file's bytes and the problems' content are in the key.
//!
//! # Example
//! ```yaml
//! candidates:
//!   kind: load_samples
//!   inputs: { problems: humaneval.problems }
//!   params: { path: ../data/humaneval_codegen16b_100samples.jsonl, format: codet, per_problem: 20 }
//! ```

use crate::api::artifact;
use crate::api::rows;
use crate::api::rows::OnError;
use crate::api::rows::{Row, nonempty_text};
use crate::api::{FileDep, InputSlot, PlanEnv, RunCtx, Stage, StageError};
use crate::bench::task_id::TaskIds;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub struct LoadSamples;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SampleFormat {
    #[default]
    Evalplus,
    Codet,
    Lcb,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSamplesParams {
    pub path: String,
    #[serde(default)]
    pub format: SampleFormat,
    #[serde(default)]
    pub per_problem: Option<u64>,
    #[serde(default)]
    pub on_error: OnError,
}

impl Stage for LoadSamples {
    const KIND: &'static str = "load_samples";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("load_samples.rs");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("problems")];
    const OUTPUTS: &'static [&'static str] = &["candidates"];
    type Params = LoadSamplesParams;

    fn file_deps(p: &LoadSamplesParams, _env: &PlanEnv) -> Vec<FileDep> {
        vec![FileDep {
            param: "path".into(),
            path: p.path.clone(),
        }]
    }

    fn run(p: &LoadSamplesParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let problems = artifact::table_to_json_rows(&ctx.input("problems")?)?;
        rows::require_column(&problems, "problems", "task_id", "task_id")?;
        let index = ProblemIndex::new(&problems);
        let path = ctx.resolve(&p.path);
        let (rows, mut skipped) = rows::read_rows(&path, p.on_error)?;
        let per_problem = p.per_problem.map_or(usize::MAX, |n| n as usize);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut out = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let programs = match candidates_of(p.format, row, &index) {
                Ok(found) => found,
                Err(_) if p.on_error == OnError::Skip => {
                    skipped += 1;
                    continue;
                }
                Err(message) => {
                    return Err(StageError::BadRecord {
                        file: path.clone(),
                        line: i + 1,
                        message,
                    });
                }
            };
            for (task, program) in programs {
                let n = counts.entry(task.clone()).or_default();
                if *n >= per_problem {
                    continue;
                }
                let mut r = Map::new();
                r.insert("candidate".into(), Value::String(format!("{task}#{n}")));
                r.insert("task_id".into(), Value::String(task.clone()));
                r.insert("sample".into(), Value::from(*n as u64));
                r.insert("program".into(), Value::String(program));
                r.insert(
                    "entry_point".into(),
                    index.entry_point(&task).map_or(Value::Null, Value::String),
                );
                out.push(r);
                *n += 1;
            }
        }
        ctx.note("skipped_rows", skipped);
        ctx.note("candidates", out.len());
        ctx.note("problems_with_samples", counts.len());
        let mut template = Map::new();
        for text in ["candidate", "task_id"] {
            template.insert(text.into(), Value::String(String::new()));
        }
        template.insert("sample".into(), Value::from(0u64));
        template.insert("program".into(), Value::String(String::new()));
        template.insert("entry_point".into(), Value::String(String::new()));
        ctx.write_output(
            "candidates",
            &artifact::json_rows_to_typed_table(out, template)?,
        )
    }
}

struct ProblemIndex<'a> {
    rows: &'a [Row],
    by_id: BTreeMap<String, usize>,
    /// Task ids written differently (`Mbpp/2`, `2`) meet through it.
    ids: TaskIds,
}

impl<'a> ProblemIndex<'a> {
    fn new(rows: &'a [Row]) -> Self {
        let by_id: BTreeMap<String, usize> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| nonempty_text(r, "task_id").map(|id| (id, i)))
            .collect();
        let ids = TaskIds::new(by_id.keys().map(String::as_str));
        ProblemIndex { rows, by_id, ids }
    }

    fn get(&self, task: &str) -> Option<&Row> {
        self.ids
            .find(task)
            .and_then(|id| self.by_id.get(id))
            .map(|&i| &self.rows[i])
    }

    fn entry_point(&self, task: &str) -> Option<String> {
        self.get(task).and_then(|r| nonempty_text(r, "entry_point"))
    }

    /// The problem whose prompt is `prompt`, or shares the longest common
    /// prefix with it, beyond its `def` line, and uniquely.
    fn match_prompt(&self, prompt: &str) -> Result<String, String> {
        let mut best: Vec<(usize, String)> = Vec::new();
        for row in self.rows {
            let (Some(id), Some(theirs)) =
                (nonempty_text(row, "task_id"), nonempty_text(row, "prompt"))
            else {
                continue;
            };
            if theirs == prompt {
                return Ok(id);
            }
            let common = common_prefix(&theirs, prompt);
            // The shared prefix must cover the whole signature line, not just `def f(`.
            let past_def = nonempty_text(row, "entry_point")
                .and_then(|e| theirs.find(&format!("def {e}(")))
                .map(|at| theirs[at..].find('\n').map_or(theirs.len(), |end| at + end))
                .is_some_and(|line_end| common > line_end);
            if !past_def {
                continue;
            }
            match best.first() {
                Some((len, _)) if *len > common => {}
                Some((len, _)) if *len == common => best.push((common, id)),
                _ => best = vec![(common, id)],
            }
        }
        match best.as_slice() {
            [(_, id)] => Ok(id.clone()),
            [] => Err("its prompt matches no problem's prompt past the `def` line".into()),
            several => Err(format!(
                "its prompt matches {} problems equally well ({})",
                several.len(),
                several
                    .iter()
                    .map(|(_, id)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

fn texts(row: &Row, key: &str) -> Result<Vec<String>, String> {
    match row.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or(format!("an item of `{key}` is not text"))
            })
            .collect(),
        Some(_) => Err(format!("`{key}` is not a list")),
        None => Err(format!("no `{key}`")),
    }
}

/// The (task, program) pairs of one row.
fn candidates_of(
    format: SampleFormat,
    row: &Row,
    index: &ProblemIndex<'_>,
) -> Result<Vec<(String, String)>, String> {
    match format {
        SampleFormat::Evalplus => {
            let task = nonempty_text(row, "task_id").ok_or("no `task_id`")?;
            let problem = index
                .get(&task)
                .ok_or_else(|| format!("sample for unknown task `{task}`"))?;
            let task = nonempty_text(problem, "task_id").unwrap_or(task);
            if let Some(solution) = nonempty_text(row, "solution") {
                Ok(vec![(task, solution)])
            } else if let Some(completion) = row.get("completion").and_then(Value::as_str) {
                let prompt = nonempty_text(problem, "prompt").unwrap_or_default();
                Ok(vec![(task, format!("{prompt}{completion}"))])
            } else {
                Err("a sample needs `solution` or `completion`".into())
            }
        }
        SampleFormat::Codet => {
            let prompt = nonempty_text(row, "prompt").ok_or("no `prompt`")?;
            let task = index.match_prompt(&prompt)?;
            Ok(texts(row, "samples")?
                .into_iter()
                .map(|s| (task.clone(), format!("{prompt}{s}")))
                .collect())
        }
        SampleFormat::Lcb => {
            let task = nonempty_text(row, "question_id").ok_or("no `question_id`")?;
            index
                .get(&task)
                .ok_or_else(|| format!("generations for unknown question `{task}`"))?;
            Ok(texts(row, "code_list")?
                .into_iter()
                .map(|code| (task.clone(), code))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(v: Value) -> Vec<Row> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect()
    }

    #[test]
    fn prompts_match_exactly_or_by_a_unique_prefix_past_the_def_line() {
        let problems = rows(json!([
            {"task_id": "A", "entry_point": "f", "prompt": "def f(x):\n    \"\"\"Doc.\n    >>> f(1)\n    \"\"\"\n"},
            {"task_id": "B", "entry_point": "g", "prompt": "def g(x):\n    \"\"\"Other.\"\"\"\n"},
            {"task_id": "C", "entry_point": "f", "prompt": "def f(y):\n    pass\n"},
        ]));
        let index = ProblemIndex::new(&problems);
        assert_eq!(
            index
                .match_prompt("def g(x):\n    \"\"\"Other.\"\"\"\n")
                .unwrap(),
            "B"
        );
        assert_eq!(
            index
                .match_prompt("def f(x):\n    \"\"\"Doc.\n    \"\"\"\n")
                .unwrap(),
            "A"
        );
        // Shares only `def f(` with both A and C: not past either def line.
        let err = index.match_prompt("def f(z):\n").unwrap_err();
        assert!(err.contains("matches no problem"), "{err}");
        let twins = rows(json!([
            {"task_id": "A", "entry_point": "f", "prompt": "def f(x):\n    a\n"},
            {"task_id": "B", "entry_point": "f", "prompt": "def f(x):\n    b\n"},
        ]));
        let err = ProblemIndex::new(&twins)
            .match_prompt("def f(x):\n    c\n")
            .unwrap_err();
        assert!(err.contains("2 problems equally well (A, B)"), "{err}");
    }

    #[test]
    fn completions_get_the_prompt_and_unknown_tasks_are_named() {
        let problems = rows(json!([{"task_id": "Mbpp/2", "prompt": "P\n", "entry_point": "f"}]));
        let index = ProblemIndex::new(&problems);
        let got = candidates_of(
            SampleFormat::Evalplus,
            &rows(json!([{"task_id": "Mbpp/2", "completion": "    return 1\n"}]))[0],
            &index,
        )
        .unwrap();
        assert_eq!(
            got,
            vec![("Mbpp/2".to_string(), "P\n    return 1\n".to_string())]
        );
        let err = candidates_of(
            SampleFormat::Evalplus,
            &rows(json!([{"task_id": "Mbpp/9", "solution": "x"}]))[0],
            &index,
        )
        .unwrap_err();
        assert!(err.contains("unknown task `Mbpp/9`"), "{err}");
    }
}
