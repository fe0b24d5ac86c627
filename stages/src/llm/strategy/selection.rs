//! Selection rules: which of N candidates a strategy keeps without looking at
//! the private tests (public tests, agreement of outputs on model-written
//! inputs, judges' votes), and the test inputs a model writes for them.

use crate::api::StageError;
use crate::python::programs::ProgramMode;
use crate::python::sandbox::TestCase;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::runner::SuiteResult;
use super::tasks::Task;
use crate::api::rng::SplitMix64;
use crate::llm::reply;

/// The rules that pick one of N candidates without the private tests:
/// one variant each, and its arm in [`Selection::pick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    First,
    Random,
    PublicFilter,
    BestOfN,
    OutputAgreement,
    LlmJudgePointwise,
    LlmJudgePairwise,
}

impl Selection {
    pub fn as_str(self) -> &'static str {
        match self {
            Selection::First => "first",
            Selection::Random => "random",
            Selection::PublicFilter => "public_filter",
            Selection::BestOfN => "best_of_n",
            Selection::OutputAgreement => "output_agreement",
            Selection::LlmJudgePointwise => "llm_judge_pointwise",
            Selection::LlmJudgePairwise => "llm_judge_pairwise",
        }
    }

    pub fn needs_inputs(self) -> bool {
        matches!(
            self,
            Selection::OutputAgreement | Selection::LlmJudgePointwise | Selection::LlmJudgePairwise
        )
    }

    pub fn is_judge(self) -> bool {
        matches!(
            self,
            Selection::LlmJudgePointwise | Selection::LlmJudgePairwise
        )
    }
}

/// What a rule may look at for one task's candidates.
pub struct Pool<'a> {
    pub programs: &'a [String],
    /// Each candidate on the public tests.
    pub public: &'a [SuiteResult],
    /// The seed of this task's random draw.
    pub seed: u64,
    /// Each candidate's outputs on the model-written inputs (agreement, judges).
    pub outputs: &'a dyn Fn() -> Result<Vec<Vec<String>>, StageError>,
    /// The configured judge, when there is one.
    pub judge: Option<&'a Judge<'a>>,
}

/// A judge: given each candidate's outputs and the eligible candidates, its
/// votes per candidate and the model calls it made.
pub type Judge<'a> = dyn Fn(&[Vec<String>], &[usize]) -> Result<(Vec<f64>, usize), StageError> + 'a;

impl Selection {
    /// The candidate this rule keeps (`pool` is not empty) and the judge
    /// calls it made.
    pub fn pick(self, pool: &Pool<'_>) -> Result<(usize, usize), StageError> {
        let n = pool.programs.len();
        Ok(match self {
            Selection::First => (0, 0),
            Selection::Random => {
                let mut rng = SplitMix64::new(pool.seed);
                (rng.below(n as u64) as usize, 0)
            }
            Selection::PublicFilter | Selection::BestOfN => (select_by_public(pool.public), 0),
            Selection::OutputAgreement
            | Selection::LlmJudgePointwise
            | Selection::LlmJudgePairwise => {
                let passing: Vec<usize> = (0..n).filter(|&i| pool.public[i].all_passed()).collect();
                let eligible = if passing.is_empty() {
                    (0..n).collect()
                } else {
                    passing
                };
                let outputs = (pool.outputs)()?;
                match (self, pool.judge) {
                    (Selection::OutputAgreement, _) => {
                        (select_by_agreement(&outputs, &eligible), 0)
                    }
                    (_, Some(judge)) => {
                        let (votes, calls) = judge(&outputs, &eligible)?;
                        let pick = if votes.iter().all(|v| *v == 0.0) {
                            select_by_agreement(&outputs, &eligible)
                        } else {
                            argmax_votes(&votes, &eligible)
                        };
                        (pick, calls)
                    }
                    _ => (select_by_agreement(&outputs, &eligible), 0),
                }
            }
        })
    }
}

/// Index of the candidate a public-test rule picks: the first that passes
/// every public test; failing that, the first with the best public accuracy.
pub fn select_by_public(public: &[SuiteResult]) -> usize {
    if let Some(i) = public.iter().position(SuiteResult::all_passed) {
        return i;
    }
    let mut best = 0;
    for (i, r) in public.iter().enumerate() {
        if r.accuracy() > public[best].accuracy() {
            best = i;
        }
    }
    best
}

/// Index of the candidate whose outputs agree most with the others' on the
/// same inputs (`outputs[candidate][input]`), among `eligible`; the first on ties.
pub fn select_by_agreement(outputs: &[Vec<String>], eligible: &[usize]) -> usize {
    let mut best: Option<(usize, usize)> = None;
    for &i in eligible {
        let score: usize = eligible
            .iter()
            .filter(|&&j| j != i)
            .map(|&j| {
                outputs[i]
                    .iter()
                    .zip(&outputs[j])
                    .filter(|(a, b)| a == b)
                    .count()
            })
            .sum();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i).unwrap_or(0)
}

/// Clusters of candidates (among `eligible`) with the same output on input `k`,
/// in order of first appearance.
pub fn clusters(
    outputs: &[Vec<String>],
    eligible: &[usize],
    k: usize,
) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for &i in eligible {
        let Some(o) = outputs[i].get(k) else { continue };
        match out.iter_mut().find(|(v, _)| v == o) {
            Some((_, members)) => members.push(i),
            None => out.push((o.clone(), vec![i])),
        }
    }
    out
}

/// The index with the highest vote among `eligible`, the first on ties.
pub fn argmax_votes(votes: &[f64], eligible: &[usize]) -> usize {
    let mut best: Option<usize> = None;
    for &i in eligible {
        if best.is_none_or(|b| votes[i] > votes[b]) {
            best = Some(i);
        }
    }
    best.unwrap_or(0)
}

/// Test inputs in a model's reply: JSON objects with an `input` (function
/// tasks: an argument list, or one argument), or `Input: ... Output: ...`
/// blocks (stdin tasks). Duplicates are dropped.
pub fn parse_generated_inputs(task: &Task, reply: &str, limit: usize) -> Vec<TestCase> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let text = reply::field_or_all(reply, "tests");
    match task.mode {
        ProgramMode::Function => {
            for object in json_objects(&text) {
                let Some(input) = object.get("input") else {
                    continue;
                };
                let args = match input {
                    Value::Array(_) => input.clone(),
                    other => Value::Array(vec![other.clone()]),
                };
                if seen.insert(args.to_string()) {
                    out.push(TestCase {
                        args_json: Some(args),
                        ..TestCase::default()
                    });
                }
            }
        }
        ProgramMode::Stdio => {
            for chunk in text.split("Input:").skip(1) {
                let input = chunk.split("Output:").next().unwrap_or_default().trim();
                let input = input.trim_matches('`').trim();
                if !input.is_empty() && seen.insert(input.to_string()) {
                    out.push(TestCase {
                        stdin: Some(format!("{input}\n")),
                        ..TestCase::default()
                    });
                }
            }
        }
    }
    out.truncate(limit);
    out
}

/// Every balanced `{...}` block of `text` that parses as a JSON object.
fn json_objects(text: &str) -> Vec<Map<String, Value>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            let mut depth = 0usize;
            let mut in_string = false;
            let mut escaped = false;
            let mut end = None;
            for (j, &b) in bytes.iter().enumerate().skip(i) {
                if in_string {
                    match b {
                        _ if escaped => escaped = false,
                        b'\\' => escaped = true,
                        b'"' => in_string = false,
                        _ => {}
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            if let Some(j) = end
                && let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&text[i..=j])
            {
                out.push(m);
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rows::Row;

    fn result(passed: usize, total: usize) -> SuiteResult {
        SuiteResult {
            passed,
            total,
            reports: Vec::new(),
        }
    }

    #[test]
    fn public_selection_takes_the_first_full_pass_else_the_best_accuracy() {
        assert_eq!(
            select_by_public(&[result(1, 3), result(3, 3), result(3, 3)]),
            1
        );
        assert_eq!(
            select_by_public(&[result(1, 3), result(2, 3), result(2, 3)]),
            1
        );
        assert_eq!(select_by_public(&[result(0, 0), result(0, 2)]), 0);
    }

    #[test]
    fn agreement_picks_the_majority_output_and_the_first_on_ties() {
        let outputs = |v: &[&[&str]]| -> Vec<Vec<String>> {
            v.iter()
                .map(|r| r.iter().map(|s| s.to_string()).collect())
                .collect()
        };
        // Candidates 1 and 3 agree on both inputs; 0 and 2 are loners.
        let o = outputs(&[&["1", "x"], &["2", "4"], &["3", "y"], &["2", "4"]]);
        assert_eq!(select_by_agreement(&o, &[0, 1, 2, 3]), 1);
        // Restricted to the public-test survivors, 3 wins alone.
        assert_eq!(select_by_agreement(&o, &[0, 2, 3]), 0);
        assert_eq!(select_by_agreement(&o, &[3]), 3);
        let c = clusters(&o, &[0, 1, 2, 3], 0);
        assert_eq!(
            c.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
            vec![vec![0], vec![1, 3], vec![2]]
        );
    }

    #[test]
    fn generated_inputs_are_read_from_json_objects_or_input_blocks() {
        let task = |mode| Task {
            id: "t".into(),
            row: Row::new(),
            mode,
            entry_point: Some("f".into()),
            public: Vec::new(),
            private: Vec::new(),
            atol: 0.0,
        };
        let reply = r#"[[ ## tests ## ]]
{"input": [1, 2], "output": 3} junk {"input": 5, "output": 5} {"input": [1, 2], "output": 3} {"output": 1}"#;
        let got = parse_generated_inputs(&task(ProgramMode::Function), reply, 10);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].args_json, Some(serde_json::json!([1, 2])));
        assert_eq!(got[1].args_json, Some(serde_json::json!([5])));
        let got = parse_generated_inputs(
            &task(ProgramMode::Stdio),
            "Input: 3\n4 Output: 7\nInput: `1` Output: 1",
            1,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].stdin.as_deref(), Some("3\n4\n"));
        assert_eq!(
            reply::parse_index(
                "[[ ## best_idx ## ]]\n 2 \n[[ ## completed ## ]]",
                "best_idx"
            ),
            Some(2)
        );
        assert_eq!(reply::parse_index("no idea", "best_idx"), None);
    }
}
