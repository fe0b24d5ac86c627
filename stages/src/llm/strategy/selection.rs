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
    /// Sample 0: no selection (plain pass@1 of the first sample).
    First,
    /// A seeded uniform draw.
    Random,
    /// The first candidate that passes every public test, else the first
    /// with the best public accuracy (the seed's `first` policy).
    PublicFilter,
    /// Best of N: the most public tests passed, ties broken by a seeded
    /// uniform draw among the tied (so a tie is not won by sample order).
    BestOfN,
    /// Agreement of outputs on model-written inputs among the candidates that
    /// pass the public tests (all, if none does): the seed's
    /// `generated_tests_majority`.
    OutputAgreement,
    /// The same vote among all candidates, public tests ignored: the seed's
    /// Table 3 "parallel" selection.
    OutputAgreementAll,
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
            Selection::OutputAgreementAll => "output_agreement_all",
            Selection::LlmJudgePointwise => "llm_judge_pointwise",
            Selection::LlmJudgePairwise => "llm_judge_pairwise",
        }
    }

    pub fn needs_inputs(self) -> bool {
        matches!(
            self,
            Selection::OutputAgreement
                | Selection::OutputAgreementAll
                | Selection::LlmJudgePointwise
                | Selection::LlmJudgePairwise
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
            Selection::PublicFilter => (select_by_public(pool.public), 0),
            Selection::BestOfN => (best_of_n(pool.public, pool.seed), 0),
            Selection::OutputAgreement
            | Selection::OutputAgreementAll
            | Selection::LlmJudgePointwise
            | Selection::LlmJudgePairwise => {
                let passing: Vec<usize> = (0..n).filter(|&i| pool.public[i].all_passed()).collect();
                let eligible = if passing.is_empty() || self == Selection::OutputAgreementAll {
                    (0..n).collect()
                } else {
                    passing
                };
                let outputs = (pool.outputs)()?;
                match (self, pool.judge) {
                    (Selection::OutputAgreement | Selection::OutputAgreementAll, _) => {
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

/// Best of N: the candidate with the most public tests passed; among tied
/// candidates a uniform draw seeded by `seed`.
pub fn best_of_n(public: &[SuiteResult], seed: u64) -> usize {
    let best = public.iter().map(|r| r.passed).max().unwrap_or(0);
    let tied: Vec<usize> = (0..public.len())
        .filter(|&i| public[i].passed == best)
        .collect();
    match tied.len() {
        0 => 0,
        1 => tied[0],
        n => tied[SplitMix64::new(seed).below(n as u64) as usize],
    }
}

/// Beam search over revisions: the parent each of the N samples of the next
/// round revises, the `width` best of this round by public accuracy (ties to
/// the lower index) taken in turn; `None` when a sample already passes every
/// public test (the problem is done).
pub fn beam_parents(public: &[SuiteResult], width: usize) -> Option<Vec<usize>> {
    if public.iter().any(SuiteResult::all_passed) {
        return None;
    }
    let mut order: Vec<usize> = (0..public.len()).collect();
    order.sort_by(|&a, &b| public[b].accuracy().total_cmp(&public[a].accuracy()));
    let width = width.clamp(1, public.len().max(1));
    Some((0..public.len()).map(|s| order[s % width]).collect())
}

/// A pointwise judgement as votes: every member of the cluster the judge
/// named (`best`, an index into `clusters`) gets one; a reply that names no
/// cluster (`-1`, out of range, unreadable) casts none.
pub fn pointwise_votes(votes: &mut [f64], clusters: &[(String, Vec<usize>)], best: Option<i64>) {
    if let Some((_, members)) = best
        .and_then(|i| usize::try_from(i).ok())
        .and_then(|i| clusters.get(i))
    {
        for &m in members {
            votes[m] += 1.0;
        }
    }
}

/// Pairwise judgements as votes. Each pair `(a, b)` of cluster
/// representatives was asked twice, `a` shown first and then `b`; a reply
/// names the better sample (0 or 1) or a tie (2). A consistent win scores 1,
/// a tie both times 0.5 each, anything else 0; the cluster with the unique
/// best positive score gives each of its members one vote.
pub fn pairwise_votes(
    votes: &mut [f64],
    clusters: &[(String, Vec<usize>)],
    pairs: &[(usize, usize)],
    replies: &[(Option<i64>, Option<i64>)],
) {
    let mut score = vec![0.0; clusters.len()];
    for (&(a, b), &(first, second)) in pairs.iter().zip(replies) {
        // Sample 0 is `a` in the first ask and `b` in the second.
        match (first, second) {
            (Some(0), Some(1)) => score[a] += 1.0,
            (Some(1), Some(0)) => score[b] += 1.0,
            (Some(2), Some(2)) => {
                score[a] += 0.5;
                score[b] += 0.5;
            }
            _ => {}
        }
    }
    let best = score.iter().copied().fold(f64::MIN, f64::max);
    if best > 0.0
        && score.iter().filter(|s| **s == best).count() == 1
        && let Some(c) = score.iter().position(|s| *s == best)
    {
        for &m in &clusters[c].1 {
            votes[m] += 1.0;
        }
    }
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
            plus: Vec::new(),
        }
    }

    fn outputs(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    /// Five candidates where every rule picks a different program. Public:
    /// 0 passes 1 of 3, 1 and 3 pass all, 2 passes 2, 4 passes 0. On the
    /// model's inputs, 2 and 4 agree with each other and with 0 on one
    /// input; 1 and 3 disagree with everyone.
    fn pool_picks(rule: Selection, seed: u64) -> usize {
        let public = [
            result(1, 3),
            result(3, 3),
            result(2, 3),
            result(3, 3),
            result(0, 3),
        ];
        let outs = outputs(&[
            &["a", "x"],
            &["b", "y"],
            &["a", "z"],
            &["c", "w"],
            &["a", "z"],
        ]);
        let programs: Vec<String> = (0..5).map(|i| format!("p{i}")).collect();
        let outputs = || Ok(outs.clone());
        rule.pick(&Pool {
            programs: &programs,
            public: &public,
            seed,
            outputs: &outputs,
            judge: None,
        })
        .unwrap()
        .0
    }

    #[test]
    fn each_rule_picks_its_own_candidate_from_one_pool() {
        assert_eq!(pool_picks(Selection::First, 0), 0);
        assert_eq!(pool_picks(Selection::PublicFilter, 0), 1);
        // Agreement among public passers (1, 3) is a tie: the first.
        assert_eq!(pool_picks(Selection::OutputAgreement, 0), 1);
        // Among all five, 2 agrees with 0 once and with 4 twice.
        assert_eq!(pool_picks(Selection::OutputAgreementAll, 0), 2);
        // Best of N draws between the tied 1 and 3, by seed.
        let picks: std::collections::BTreeSet<usize> = (0..32)
            .map(|seed| pool_picks(Selection::BestOfN, seed))
            .collect();
        assert_eq!(picks, [1, 3].into());
        assert_eq!(
            pool_picks(Selection::BestOfN, 5),
            pool_picks(Selection::BestOfN, 5)
        );
        let random: std::collections::BTreeSet<usize> = (0..64)
            .map(|seed| pool_picks(Selection::Random, seed))
            .collect();
        assert_eq!(random.len(), 5, "a seeded draw reaches every candidate");
    }

    #[test]
    fn best_of_n_is_not_the_public_filter() {
        // One clear winner: both agree.
        let public = [result(1, 3), result(2, 3), result(0, 3)];
        assert_eq!(best_of_n(&public, 0), 1);
        assert_eq!(select_by_public(&public), 1);
        // A tie at the top: the filter takes the first, best of N a seeded
        // draw; over seeds about half the draws take the second.
        let tied = [result(3, 3), result(3, 3)];
        let seconds = (0..200).filter(|s| best_of_n(&tied, *s) == 1).count();
        assert!((60..140).contains(&seconds), "{seconds}");
        assert!((0..200).all(|_| select_by_public(&tied) == 0));
    }

    #[test]
    fn beam_search_revises_the_best_and_stops_at_a_public_pass() {
        let round = [result(1, 5), result(4, 5), result(2, 5), result(4, 5)];
        // The two best (1 and 3, tied, in index order), each revised twice.
        assert_eq!(beam_parents(&round, 2), Some(vec![1, 3, 1, 3]));
        assert_eq!(beam_parents(&round, 1), Some(vec![1, 1, 1, 1]));
        // A width of N keeps every sample, best first: it never prunes.
        assert_eq!(beam_parents(&round, 4), Some(vec![1, 3, 2, 0]));
        let done = [result(1, 5), result(5, 5)];
        assert_eq!(beam_parents(&done, 1), None);
    }

    #[test]
    fn judges_votes_follow_their_replies() {
        let clusters = vec![
            ("1".to_string(), vec![0, 2]),
            ("2".to_string(), vec![1]),
            ("3".to_string(), vec![3]),
        ];
        let mut votes = vec![0.0; 4];
        pointwise_votes(&mut votes, &clusters, Some(0));
        assert_eq!(votes, [1.0, 0.0, 1.0, 0.0]);
        pointwise_votes(&mut votes, &clusters, Some(-1));
        pointwise_votes(&mut votes, &clusters, Some(7));
        pointwise_votes(&mut votes, &clusters, None);
        assert_eq!(
            votes,
            [1.0, 0.0, 1.0, 0.0],
            "a reply naming no cluster casts no vote"
        );

        let pairs = [(0, 1), (0, 2), (1, 2)];
        // Cluster 1 beats 0 consistently and ties 2 twice; 0 v 2 is inconsistent.
        let replies = [(Some(1), Some(0)), (Some(0), Some(0)), (Some(2), Some(2))];
        let mut votes = vec![0.0; 4];
        pairwise_votes(&mut votes, &clusters, &pairs, &replies);
        assert_eq!(
            votes,
            [0.0, 1.0, 0.0, 0.0],
            "cluster 1 scores 1.5, the unique best"
        );
        // Two clusters with the same best score: no vote.
        let mut votes = vec![0.0; 4];
        pairwise_votes(&mut votes, &clusters, &pairs[..1], &[(Some(2), Some(2))]);
        assert_eq!(votes, [0.0; 4]);
        // Order bias (the judge always names the first shown): no vote.
        let mut votes = vec![0.0; 4];
        pairwise_votes(&mut votes, &clusters, &pairs, &[(Some(0), Some(0)); 3]);
        assert_eq!(votes, [0.0; 4]);
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
        let task = |mode| {
            let mut row = Row::new();
            row.insert("task_id".into(), "t".into());
            row.insert("entry_point".into(), "f".into());
            if mode == ProgramMode::Stdio {
                row.insert("mode".into(), "stdio".into());
            }
            crate::llm::strategy::tasks::task_from_row(row, 0).unwrap()
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
