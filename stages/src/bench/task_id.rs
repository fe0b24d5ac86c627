//! Task ids as benchmarks write them, and the one rule that lets them meet.
//!
//! The same MBPP problem is `250` in Google's `mbpp.jsonl`, `Mbpp/250` in
//! EvalPlus's MBPP+ and the study's MBPP-R, and `MBPP/250` in some
//! generations files; HumanEvalPack writes `Python/3` for `HumanEval/3`.
//! Every join of candidates, problems and tests goes through [`TaskIds`]:
//! an id meets the same id first, and otherwise the id with the same
//! [`key`] (the benchmark prefix dropped, case folded), provided exactly one
//! id on the other side has that key.

use std::collections::{BTreeMap, BTreeSet};

/// Prefixes benchmarks put before a problem number (compared case-insensitively).
const PREFIXES: &[&str] = &["mbpp/", "humaneval/", "python/"];

/// The id with a benchmark prefix (`Mbpp/`, `MBPP/`, `HumanEval/`,
/// `Python/`) removed and letters folded to lower case: `Mbpp/250` and `250`
/// both give `250`.
pub fn key(id: &str) -> String {
    let folded = id.trim().to_ascii_lowercase();
    for prefix in PREFIXES {
        if let Some(rest) = folded.strip_prefix(prefix)
            && !rest.is_empty()
        {
            return rest.to_string();
        }
    }
    folded
}

/// The ids of one side of a join, to find the one another side's id means.
#[derive(Debug, Default, Clone)]
pub struct TaskIds {
    exact: BTreeSet<String>,
    /// Each key and the one id that has it; `None` when several do.
    by_key: BTreeMap<String, Option<String>>,
}

impl TaskIds {
    pub fn new<'a>(ids: impl IntoIterator<Item = &'a str>) -> TaskIds {
        let mut out = TaskIds::default();
        for id in ids {
            if !out.exact.insert(id.to_string()) {
                continue;
            }
            out.by_key
                .entry(key(id))
                .and_modify(|slot| *slot = None)
                .or_insert_with(|| Some(id.to_string()));
        }
        out
    }

    /// The id on this side that `id` means: itself, else the only id with its key.
    pub fn find(&self, id: &str) -> Option<&str> {
        if let Some(found) = self.exact.get(id) {
            return Some(found.as_str());
        }
        self.by_key.get(&key(id)).and_then(|slot| slot.as_deref())
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    pub fn len(&self) -> usize {
        self.exact.len()
    }

    /// Up to `n` ids, for messages.
    pub fn examples(&self, n: usize) -> Vec<&str> {
        self.exact.iter().take(n).map(String::as_str).collect()
    }
}

/// `a`, `b`, `c` and N more (ids in backticks, for messages).
pub fn example_list<'a>(ids: impl IntoIterator<Item = &'a str>, total: usize) -> String {
    let shown: Vec<String> = ids.into_iter().take(3).map(|i| format!("`{i}`")).collect();
    let more = total.saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbpp_ids_meet_whatever_prefix_a_file_uses() {
        for id in ["Mbpp/250", "MBPP/250", "mbpp/250", "250", " 250 "] {
            assert_eq!(key(id), "250", "{id}");
        }
        assert_eq!(key("HumanEval/3"), "3");
        assert_eq!(key("Python/3"), "3");
        assert_eq!(key("abc301_a"), "abc301_a");
        assert_eq!(key("Mbpp/"), "mbpp/");

        let tests = TaskIds::new(["250", "251"]);
        assert_eq!(tests.find("Mbpp/250"), Some("250"));
        assert_eq!(tests.find("MBPP/251"), Some("251"));
        assert_eq!(tests.find("250"), Some("250"));
        assert_eq!(tests.find("Mbpp/252"), None);
        let plus = TaskIds::new(["Mbpp/250"]);
        assert_eq!(plus.find("250"), Some("Mbpp/250"));
    }

    #[test]
    fn an_exact_id_wins_and_an_ambiguous_key_matches_nothing() {
        // A table holding both HumanEval/3 and Mbpp/3: `3` is ambiguous.
        let ids = TaskIds::new(["HumanEval/3", "Mbpp/3", "7"]);
        assert_eq!(ids.find("Mbpp/3"), Some("Mbpp/3"));
        assert_eq!(ids.find("3"), None);
        assert_eq!(ids.find("MBPP/7"), Some("7"));
        assert_eq!(
            example_list(["a", "b", "c", "d"], 10),
            "`a`, `b`, `c` and 7 more"
        );
        assert_eq!(example_list(["a"], 1), "`a`");
    }
}
