//! REval's runtime-behaviour probes (Chen et al., "Reasoning Runtime
//! Behavior of a Program with LLM: How Far Are We?", ICSE 2025; the
//! `r-eval/REval` artifact): for one run of a program, a probe point (line
//! L, variable v) is asked about four times, in order:
//!
//! 1. coverage: is line L executed? (`YES` / `NO`)
//! 2. state: the value and type of v after line L runs (`value; type`, or
//!    `Nil` when L never runs);
//! 3. path: the line executed next after L (its source text, or `-1` when L
//!    never runs or the run ends there);
//! 4. output: the call's result, as a completed `assert f(...) == ...`.
//!
//! The ground truth follows REval's `dynamics.States`: the line events of
//! every function of the program in execution order, a line repeated right
//! away merged into one state (`Sandbox.add_state`). A line run several
//! times has several answers; any of them is right (REval's `any(...)`).
//! One difference, on purpose: the state after L is read from L's own scope
//! when L finishes (tw's tracer records it), where REval reads the next
//! state's locals, which after a call line are the callee's.
//!
//! Answers are read as REval's `_postprocess` reads them, and Incremental
//! Consistency scores a probe's four outcomes as `evaluation.Consistency`
//! does: 1 for all right, 1/2 for only the output wrong, 1/4 for the first
//! two right and the rest wrong, 1/8 for only coverage right, else 0 (a
//! right answer after a wrong one is not consistent).

use super::cwm::StepIn;
use std::collections::BTreeSet;

/// A probe's ground truth for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeTruth {
    pub covered: bool,
    /// Lines (1-based) that run right after L; `-1` for "not run / the end".
    pub next_lines: BTreeSet<i64>,
    /// `repr`s of v each time L finished (distinct, in order); empty: `Nil`.
    pub values: Vec<String>,
}

/// The variable a line assigns, if it is a plain name: `x = ...`,
/// `x += ...`, `for x in ...`, `x: int = ...`. REval's probes ask about
/// the variable a statement writes.
pub fn assigned_name(line: &str) -> Option<String> {
    let t = line.trim_start();
    let rest = t.strip_prefix("for ").unwrap_or(t);
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty()
        || name.chars().next().is_some_and(|c| c.is_ascii_digit())
        || is_keyword(&name)
    {
        return None;
    }
    let after = rest[name.len()..].trim_start();
    if t.starts_with("for ") {
        return after.starts_with("in ").then_some(name);
    }
    let assigns = after.starts_with(':') && after.contains('=')
        || (after.starts_with('=') && !after.starts_with("=="))
        || [
            "+=", "-=", "*=", "/=", "//=", "%=", "**=", "|=", "&=", "^=", ">>=", "<<=",
        ]
        .iter()
        .any(|op| after.starts_with(op));
    assigns.then_some(name)
}

fn is_keyword(word: &str) -> bool {
    matches!(
        word,
        "if" | "elif"
            | "else"
            | "while"
            | "return"
            | "yield"
            | "assert"
            | "del"
            | "pass"
            | "break"
            | "continue"
            | "raise"
            | "try"
            | "except"
            | "finally"
            | "with"
            | "import"
            | "from"
            | "global"
            | "nonlocal"
            | "lambda"
            | "not"
            | "print"
    )
}

/// REval's state sequence: the lines of the run's line events, a line
/// repeated right away merged; with the index of the step each state
/// started at and the last step merged into it.
fn states(steps: &[StepIn]) -> Vec<(u32, usize, usize)> {
    let mut out: Vec<(u32, usize, usize)> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        if s.kind != "line" {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.0 == s.line => last.2 = i,
            _ => out.push((s.line, i, i)),
        }
    }
    out
}

/// What the run did at line `line`, about variable `var`.
pub fn probe_truth(steps: &[StepIn], line: u32, var: &str) -> ProbeTruth {
    let states = states(steps);
    let mut next_lines = BTreeSet::new();
    let mut values: Vec<String> = Vec::new();
    let mut covered = false;
    for (k, &(l, _, _)) in states.iter().enumerate() {
        if l != line {
            continue;
        }
        covered = true;
        next_lines.insert(states.get(k + 1).map_or(-1, |s| i64::from(s.0)));
    }
    // Every time the line finished: its own line event carries the state
    // it left (a merged repeat: each run of the line).
    for s in steps.iter().filter(|s| s.kind == "line" && s.line == line) {
        if let Some(v) = s.locals.iter().find(|nv| nv.name == var)
            && !values.contains(&v.value)
        {
            values.push(v.value.clone());
        }
    }
    if !covered {
        next_lines.insert(-1);
    }
    ProbeTruth {
        covered,
        next_lines,
        values,
    }
}

/// The text between `[ANSWER]` and `[/ANSWER]` (either may be missing), as
/// REval's `_postprocess` cuts it.
pub fn answer_text(reply: &str) -> &str {
    let mut r = reply.trim();
    if let Some(i) = r.find("[ANSWER]") {
        r = r[i + 8..].trim();
    }
    for end in ["[/ANSWER]", "[/ANSWER"] {
        if let Some(i) = r.find(end) {
            r = r[..i].trim();
        }
    }
    r
}

/// A coverage reply: `YES` / `NO` in the first three characters of the
/// answer; empty or ambiguous is read as `NO` (REval's `Coverage._postprocess`).
pub fn read_coverage(reply: &str) -> bool {
    let upper = reply.to_uppercase();
    let ans = answer_text(&upper);
    let head: String = ans.chars().take(3).collect();
    let (yes, no) = (head.contains("YES"), head.contains("NO"));
    yes && !no
}

/// A path reply as REval reads it: the first line of the answer, `-1`, or a
/// source line matched (stripped) against the program's lines; `-2` when
/// nothing matches. Returns the candidate line numbers.
pub fn read_path(reply: &str, program: &str) -> Vec<i64> {
    let ans = answer_text(reply);
    let first = ans.split('\n').next().unwrap_or("").trim();
    if first.is_empty() {
        return vec![-2];
    }
    if first == "-1" {
        return vec![-1];
    }
    let lines: Vec<i64> = program
        .split('\n')
        .enumerate()
        .filter(|(_, l)| l.trim() == first)
        .map(|(i, _)| i as i64 + 1)
        .collect();
    if lines.is_empty() { vec![-2] } else { lines }
}

/// REval's `penalty_pattern`: an output answer that asserts a constant, or
/// has fewer asserts than the question, fails without running.
pub fn output_penalised(answer: &str, question: &str) -> bool {
    const TRIVIAL: [&str; 6] = [
        "assertTrue(True)",
        "assertFalse(False)",
        "assert True",
        "assert False",
        "assert True == True",
        "assert False == False",
    ];
    TRIVIAL.iter().any(|t| answer.contains(t))
        || answer.matches("assert").count() < question.matches("assert").count().max(1)
}

/// REval's `Output._postprocess_phase2`: an answer with fewer lines than the
/// question gets the question's first lines in front.
pub fn complete_output_answer(answer: &str, question: &str) -> String {
    let q: Vec<&str> = question.trim().split('\n').collect();
    let a: Vec<&str> = answer.trim().split('\n').collect();
    if a.len() >= q.len() {
        return answer.to_string();
    }
    q[..q.len() - a.len()]
        .iter()
        .chain(a.iter())
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

/// One probe's incremental-consistency score from its four outcomes in
/// REval's order (coverage, state, path, output).
pub fn incremental_consistency(outcomes: [bool; 4]) -> f64 {
    match outcomes {
        [true, true, true, true] => 1.0,
        [true, true, true, false] => 0.5,
        [true, true, false, false] => 0.25,
        [true, false, false, false] => 0.125,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(l: u32, locals: &[(&str, &str)]) -> StepIn {
        StepIn::new("line", l, 1, locals)
    }

    /// REval's worked example: outcomes 1, 1, 0, 0 score 1/2^2; the other
    /// consistent prefixes 1, 1/2, 1/8; anything else (a right answer after
    /// a wrong one) 0.
    #[test]
    fn incremental_consistency_follows_revals_rules() {
        assert_eq!(incremental_consistency([true, true, false, false]), 0.25);
        assert_eq!(incremental_consistency([true, true, true, true]), 1.0);
        assert_eq!(incremental_consistency([true, true, true, false]), 0.5);
        assert_eq!(incremental_consistency([true, false, false, false]), 0.125);
        assert_eq!(incremental_consistency([false, false, false, false]), 0.0);
        assert_eq!(incremental_consistency([false, true, true, true]), 0.0);
        assert_eq!(incremental_consistency([true, false, true, true]), 0.0);
        assert_eq!(incremental_consistency([true, true, false, true]), 0.0);
    }

    #[test]
    fn assigned_names() {
        assert_eq!(assigned_name("    total = 0").as_deref(), Some("total"));
        assert_eq!(assigned_name("    total += x").as_deref(), Some("total"));
        assert_eq!(assigned_name("    n: int = 3").as_deref(), Some("n"));
        assert_eq!(
            assigned_name("    for i in range(3):").as_deref(),
            Some("i")
        );
        assert_eq!(assigned_name("    if x == 1:"), None);
        assert_eq!(assigned_name("    x == 1"), None);
        assert_eq!(assigned_name("    return x"), None);
        assert_eq!(assigned_name("    xs[0] = 1"), None);
        assert_eq!(assigned_name("    for a, b in zip(x, y):"), None);
    }

    /// A loop: line 3 runs twice, then line 4; line 5 never runs.
    #[test]
    fn truth_of_a_loop() {
        let steps = vec![
            line(2, &[("s", "0")]),
            line(3, &[("s", "0"), ("i", "0")]),
            line(4, &[("s", "0"), ("i", "0")]),
            line(3, &[("s", "0"), ("i", "1")]),
            line(4, &[("s", "1"), ("i", "1")]),
            line(3, &[("s", "1"), ("i", "1")]),
            line(6, &[("s", "1"), ("i", "1")]),
        ];
        let t = probe_truth(&steps, 4, "s");
        assert!(t.covered);
        assert_eq!(t.next_lines, BTreeSet::from([3]));
        assert_eq!(t.values, vec!["0", "1"]);
        let t = probe_truth(&steps, 3, "i");
        assert_eq!(t.next_lines, BTreeSet::from([4, 6]));
        let t = probe_truth(&steps, 6, "s");
        assert_eq!(t.next_lines, BTreeSet::from([-1]), "the run ends after it");
        let t = probe_truth(&steps, 5, "s");
        assert!(!t.covered);
        assert!(t.values.is_empty());
        assert_eq!(t.next_lines, BTreeSet::from([-1]));
    }

    /// A line repeated right away is one state (REval's `add_state`): the
    /// next line after it is the first other line.
    #[test]
    fn repeated_lines_merge() {
        let steps = vec![line(2, &[]), line(2, &[("x", "1")]), line(3, &[("x", "1")])];
        assert_eq!(probe_truth(&steps, 2, "x").next_lines, BTreeSet::from([3]));
    }

    #[test]
    fn replies_read_as_reval_reads_them() {
        assert!(read_coverage("[ANSWER]\nYES\n[/ANSWER]"));
        assert!(read_coverage("yes, it runs"));
        assert!(!read_coverage("NO"));
        assert!(!read_coverage(""), "empty is NO");
        assert!(
            !read_coverage("I think YES"),
            "only the first three characters count: neither, read as NO"
        );
        let program = "def f(x):\n    y = x\n    return y\n";
        assert_eq!(read_path("[ANSWER]\nreturn y\n[/ANSWER]", program), vec![3]);
        assert_eq!(read_path("-1", program), vec![-1]);
        assert_eq!(read_path("z = 2", program), vec![-2]);
        assert_eq!(read_path("", program), vec![-2]);
    }

    #[test]
    fn output_answers_are_completed_and_penalised_as_reval_does() {
        let q = "assert f(1) == ??";
        assert!(!output_penalised("assert f(1) == 2", q));
        assert!(output_penalised("assert True", q));
        assert!(output_penalised("2", q), "no assert at all");
        let q2 = "x = 1\nassert f(x) == ??";
        assert_eq!(
            complete_output_answer("assert f(x) == 2", q2),
            "x = 1\nassert f(x) == 2"
        );
    }
}
