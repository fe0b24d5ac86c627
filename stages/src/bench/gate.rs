//! The check every grading stage makes before it grades: that each problem
//! it is about to grade has tests, that those tests say what output they
//! expect, and that the programs and the tests name the same problems at
//! all (through [`super::task_id`]). A program graded against nothing
//! would pass or fail for no reason, and silently: MBPP-R programs joined
//! to tests keyed `250` instead of `Mbpp/250` all failed; the study's
//! failing inputs, which have no expected outputs, passed anything that
//! returned.

use super::task_id::{TaskIds, example_list};
use crate::api::StageError;
use crate::python::programs::Ungradable;
use std::collections::{BTreeMap, BTreeSet};

/// The problems a stage found it cannot grade, gathered while it plans its
/// runs; [`Gate::settle`] then fails or counts them.
#[derive(Debug, Default)]
pub struct Gate {
    /// Problems with no tests (none in the table, or none that grade).
    pub no_tests: BTreeSet<String>,
    /// Problems whose tests lack expected outputs: (without, of all).
    pub no_expected: BTreeMap<String, (usize, usize)>,
}

impl Gate {
    pub fn is_empty(&self) -> bool {
        self.no_tests.is_empty() && self.no_expected.is_empty()
    }

    /// Fail on what cannot be graded (`Ungradable::Fail`), or let it be
    /// skipped; either way fail when nothing at all can be graded. `graded`
    /// and `total` count what the stage grades (candidates, tasks); `tests`
    /// are the ids the tests table names. Returns how many were skipped.
    pub fn settle(
        &self,
        policy: Ungradable,
        graded: usize,
        total: usize,
        tests: &TaskIds,
        what: &str,
    ) -> Result<usize, StageError> {
        let skipped = total - graded;
        if self.is_empty() {
            return Ok(skipped);
        }
        let unknown = || {
            format!(
                "the tests table names {}",
                if tests.is_empty() {
                    "no problems at all (it is empty)".to_string()
                } else {
                    example_list(tests.examples(3), tests.len())
                }
            )
        };
        if graded == 0 && total > 0 && !self.no_tests.is_empty() && self.no_expected.is_empty() {
            return Err(StageError::BadInput {
                slot: "tests".into(),
                message: format!(
                    "no {what} has tests: the {what}s name {} and {}; task ids written \
                     differently meet (`Mbpp/250`, `MBPP/250` and `250` do), so these are \
                     different problems or the wrong tests table",
                    example_list(
                        self.no_tests.iter().map(String::as_str),
                        self.no_tests.len()
                    ),
                    unknown()
                ),
            });
        }
        if policy == Ungradable::Skip && graded > 0 {
            return Ok(skipped);
        }
        let mut reasons = Vec::new();
        if !self.no_tests.is_empty() {
            reasons.push(format!(
                "{} problem(s) have no tests, so their programs would be graded against nothing: {} ({})",
                self.no_tests.len(),
                example_list(self.no_tests.iter().map(String::as_str), self.no_tests.len()),
                unknown()
            ));
        }
        if !self.no_expected.is_empty() {
            let shown: Vec<String> = self
                .no_expected
                .iter()
                .take(3)
                .map(|(id, (without, of))| format!("`{id}`: {without} of {of} tests"))
                .collect();
            reasons.push(format!(
                "the tests of {} problem(s) lack expected outputs, so any program that returns would pass \
                 ({}{}); join tests that have them (for MBPP-R, EvalPlus MBPP+'s), or run without \
                 grading on purpose (`expected: null` in `execute`)",
                self.no_expected.len(),
                shown.join("; "),
                if self.no_expected.len() > 3 { "; ..." } else { "" }
            ));
        }
        let hint = if graded == 0 {
            String::new()
        } else {
            format!(
                "; `on_ungradable: skip` leaves them out ({skipped} of {total} {what}s) and counts them in the manifest"
            )
        };
        Err(StageError::BadInput {
            slot: "tests".into(),
            message: format!("{}{hint}", reasons.join("; ")),
        })
    }

    /// Up to 10 problems skipped, with why, for the manifest.
    pub fn examples(&self) -> Vec<String> {
        self.no_tests
            .iter()
            .map(|id| format!("{id}: no tests"))
            .chain(
                self.no_expected
                    .iter()
                    .map(|(id, (w, of))| format!("{id}: {w} of {of} tests lack expected outputs")),
            )
            .take(10)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_shared_fails_even_when_skipping_is_allowed() {
        let mut gate = Gate::default();
        gate.no_tests.insert("Mbpp/250".into());
        gate.no_tests.insert("Mbpp/251".into());
        let tests = TaskIds::new(["11", "12"]);
        for policy in [Ungradable::Fail, Ungradable::Skip] {
            let err = gate
                .settle(policy, 0, 2, &tests, "candidate")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("input `tests`: no candidate has tests"),
                "{err}"
            );
            assert!(err.contains("`Mbpp/250`, `Mbpp/251`"), "{err}");
            assert!(err.contains("`11`, `12`"), "{err}");
        }
    }

    #[test]
    fn some_ungradable_problems_fail_by_default_and_are_counted_when_skipped() {
        let mut gate = Gate::default();
        gate.no_expected.insert("Mbpp/2".into(), (3, 3));
        let tests = TaskIds::new(["Mbpp/2", "Mbpp/3"]);
        let err = gate
            .settle(Ungradable::Fail, 4, 5, &tests, "candidate")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`Mbpp/2`: 3 of 3 tests"), "{err}");
        assert!(err.contains("lack expected outputs"), "{err}");
        assert!(
            err.contains("`on_ungradable: skip` leaves them out (1 of 5 candidates)"),
            "{err}"
        );
        assert_eq!(
            gate.settle(Ungradable::Skip, 4, 5, &tests, "candidate")
                .unwrap(),
            1
        );
        assert_eq!(
            gate.examples(),
            ["Mbpp/2: 3 of 3 tests lack expected outputs"]
        );
        assert_eq!(
            Gate::default()
                .settle(Ungradable::Fail, 5, 5, &tests, "task")
                .unwrap(),
            0
        );
    }
}
