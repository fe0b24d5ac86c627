//! LiveCodeBench's execution-reasoning scenarios, graded as `lcb_runner`
//! grades them (`lcb_runner/evaluation/compute_code_execution_metrics.py`,
//! `compute_test_output_prediction_metrics.py`, `utils/extraction_utils.py`).
//!
//! - `lcb-execution` / `lcb-execution-cot` (`livecodebench/execution-v2`
//!   rows: `id`, `question_id`, `function_name`, `code`, `input`, `output`,
//!   ...): the answer is read from the model's reply as `extract_execution_code`
//!   does (with CoT: after the first `[ANSWER]`; then after the first `==`;
//!   then before `[/ANSWER]`, or else the first line), and graded by running
//!   `code` and `assert <output> == <answer>` after the harness's imports (3
//!   s). A reply whose answer contains the input is skipped, not run; when
//!   every reply of a problem is skipped, all count as failed.
//! - `lcb-test-output` (`livecodebench/test_generation` rows: `question_id`,
//!   `test_id`, `function_name`, `starter_code`, `test` (JSON text of
//!   `[{input, output, testtype}]`), ...): the last line of the reply that
//!   starts with `assert` (else the first fenced block), the right-hand side
//!   of its `==` evaluated and compared with `json.loads` of the first test's
//!   output. Problems are `<question_id>_t<test_id>`.
//!
//! Samples are LiveCodeBench's own output files (a list of rows with
//! `output_list`, the raw replies), or `{task_id, generation}` rows.
//!
//! One difference, said where it matters: the harness's imports include
//! numpy and pandas, which tw's sandbox Python may lack; there they are
//! skipped, so an answer that uses `np.` or `pd.` fails where lcb_runner's
//! would run.

use super::family::{Family, Grading, LoadedRow};
use super::problem::LoadOptions;
use super::problem::{Problem, text_field};
use crate::api::rows::Row;
use crate::python::pyvalue::py_str_repr;
use serde_json::Value;

pub enum LcbScenario {
    /// `lcb-execution` (`cot: false`) and `lcb-execution-cot`.
    Execution { cot: bool },
    /// `lcb-test-output`.
    TestOutput,
}

/// `lcb_runner`'s `BASE_IMPORTS`, numpy and pandas only where installed.
const BASE_IMPORTS: &str = "\
from itertools import accumulate, chain, combinations, count, permutations, product, groupby, islice, repeat
from copy import deepcopy
from string import ascii_lowercase
from math import floor, log2, log10, sqrt, comb, gcd, ceil, inf, isqrt
from collections import defaultdict, deque, Counter
from bisect import bisect, bisect_left, bisect_right, insort
from heapq import heappush, heappop, heapify, merge
from functools import reduce, cache, lru_cache
from random import randrange, shuffle
from operator import itemgetter, sub
from re import search as re_search
from os.path import commonprefix
from typing import List, Tuple, Dict, Set, Optional, Union, Any, Callable, Iterable, Iterator, Generator
import copy
import string
import math
import collections
import bisect
import heapq
import functools
import random
import itertools
import operator
import re
try:
    import numpy as np
except ImportError:
    pass
try:
    import pandas as pd
except ImportError:
    pass
from math import log, prod
from collections import deque, defaultdict, Counter, OrderedDict
from itertools import accumulate, permutations, combinations, product, groupby, islice, chain, repeat, zip_longest, cycle
from functools import lru_cache, reduce, partial
from operator import iand
import sys
";

/// `extract_execution_code`: the answer in a code-execution reply.
pub fn extract_execution(reply: &str, cot: bool) -> String {
    let mut s = reply.to_string();
    if cot && s.contains("[ANSWER]") {
        s = s
            .split("[ANSWER]")
            .nth(1)
            .unwrap_or_default()
            .trim()
            .to_string();
    }
    if s.contains("==") {
        s = s.split("==").nth(1).unwrap_or_default().trim().to_string();
    }
    s = if s.contains("[/ANSWER]") {
        s.split("[/ANSWER]")
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    } else {
        s.split('\n').next().unwrap_or_default().trim().to_string()
    };
    s.trim().to_string()
}

/// `extract_test_output_code` and `check_testcase_output`, run in the
/// sandbox on the reply (`REPLY`) and the expected output (`EXPECTED`).
const TEST_OUTPUT_CHECK: &str = r##"
import ast, json

def _parse_assert_statement(statement):
    try:
        parsed = ast.parse(statement, mode="exec")
    except SyntaxError:
        return "Invalid syntax"
    if len(parsed.body) == 0:
        return "Empty statement"
    if not isinstance(parsed.body[0], ast.Assert):
        return "Not an assert statement"
    comparison = parsed.body[0].test
    if not isinstance(comparison, ast.Compare) or not isinstance(comparison.ops[0], ast.Eq):
        return "Not an equality assertion"
    return ast.get_source_segment(statement, comparison.comparators[0])

def _extract(model_output):
    lines = model_output.split("\n")
    asserts = [i for i, line in enumerate(lines) if line.startswith("assert")]
    if asserts:
        return lines[asserts[-1]]
    starts = [i for i, line in enumerate(lines) if "```python" in line or "```Python" in line]
    start = starts[0] if starts else None
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if start is not None:
        fences = [start] + [i for i in fences if i > start]
    if len(fences) < 2:
        return ""
    return "\n".join(lines[fences[0] + 1 : fences[1]])

def _check(testcase_str, expected_output):
    if len(testcase_str.splitlines()) > 1:
        for line in testcase_str.splitlines():
            if line.startswith("#"):
                continue
            if "assert" in line:
                testcase_str = line
                break
    testcase_str = testcase_str.strip()
    if "assert" in testcase_str:
        testcase_output_str = str(_parse_assert_statement(testcase_str))
    else:
        testcase_output_str = testcase_str
    result = None
    try:
        got = eval(testcase_output_str)
    except BaseException:
        result = False
    try:
        want = json.loads(expected_output)
    except BaseException:
        result = False
    if result is None:
        result = got == want
    return result

assert _check(_extract(REPLY), EXPECTED) is True, "the predicted output differs"
"##;

impl Family for LcbScenario {
    fn load_row(&self, _row: &Row, _options: &LoadOptions) -> LoadedRow {
        Err("LiveCodeBench's execution scenarios are graded by `tw score`, not loaded".into())
    }

    fn loads(&self) -> bool {
        false
    }

    fn grading(&self) -> Option<Grading> {
        Some(Grading::Script)
    }

    fn problem(&self, row: &Row) -> Result<Problem, String> {
        let mut p = Problem::common(row);
        p.contest_date = row
            .get("contest_date")
            .and_then(Value::as_str)
            .map(String::from);
        match self {
            LcbScenario::Execution { .. } => {
                p.task_id = text_field(row, "id");
                p.code = text_field(row, "code");
                p.input = text_field(row, "input");
                p.output = text_field(row, "output");
                if p.task_id.is_empty() || p.code.is_empty() || p.output.is_empty() {
                    return Err(
                        "a LiveCodeBench execution row needs `id`, `code` and `output`".into(),
                    );
                }
            }
            LcbScenario::TestOutput => {
                p.task_id = test_output_id(row)
                    .ok_or("a LiveCodeBench test-output row needs `question_id` and `test_id`")?;
                p.code = text_field(row, "starter_code");
                p.fn_name = Some(text_field(row, "function_name")).filter(|f| !f.is_empty());
                let tests: Value = match row.get("test") {
                    Some(Value::String(s)) => {
                        serde_json::from_str(s).map_err(|e| format!("`test` is not JSON: {e}"))?
                    }
                    Some(v) => v.clone(),
                    None => return Err("a LiveCodeBench test-output row has no `test`".into()),
                };
                let first = tests
                    .as_array()
                    .and_then(|t| t.first())
                    .ok_or("`test` has no test")?;
                p.input = first
                    .get("input")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into();
                p.output = first
                    .get("output")
                    .and_then(Value::as_str)
                    .ok_or("the first test has no `output` text")?
                    .into();
            }
        }
        Ok(p)
    }

    fn sample_id(&self, row: &Row) -> Option<String> {
        match self {
            LcbScenario::Execution { .. } => row
                .get("id")
                .and_then(Value::as_str)
                .map(String::from)
                .filter(|_| !row.contains_key("task_id")),
            LcbScenario::TestOutput => test_output_id(row).filter(|_| !row.contains_key("task_id")),
        }
    }

    fn script(&self, problem: &Problem, reply: &str) -> Option<String> {
        Some(match self {
            LcbScenario::Execution { cot } => format!(
                "{BASE_IMPORTS}\n{}\nassert {} == {}",
                problem.code,
                problem.output,
                extract_execution(reply, *cot)
            ),
            LcbScenario::TestOutput => format!(
                "REPLY = {}\nEXPECTED = {}\n{TEST_OUTPUT_CHECK}",
                py_str_repr(reply),
                py_str_repr(&problem.output)
            ),
        })
    }

    fn refuses(&self, problem: &Problem, reply: &str) -> Option<String> {
        match self {
            LcbScenario::Execution { cot }
                if extract_execution(reply, *cot).contains(&problem.input) =>
            {
                Some("an answer that contains the input: LiveCodeBench skips it".into())
            }
            _ => None,
        }
    }

    fn reference_answer(&self, p: &Problem) -> Result<Option<String>, String> {
        match self {
            // The recorded output, as a direct answer would write it.
            LcbScenario::Execution { .. } => Ok(Some(format!(
                "assert {}({}) == {}",
                if p.entry_point.is_empty() {
                    "f"
                } else {
                    &p.entry_point
                },
                p.input,
                p.output
            ))),
            LcbScenario::TestOutput => Err(
                "LiveCodeBench's test-output rows hold JSON, not a Python answer; pass --samples"
                    .into(),
            ),
        }
    }
}

fn test_output_id(row: &Row) -> Option<String> {
    let question = text_field(row, "question_id");
    let test = match row.get("test_id") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => return None,
    };
    (!question.is_empty()).then(|| format!("{question}_t{test}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_extract_execution_code_reads_them() {
        // Direct: after the first `==`, before `[/ANSWER]`.
        assert_eq!(extract_execution("assert f(3) == 9\n[/ANSWER]", false), "9");
        assert_eq!(
            extract_execution("assert f(3) == [1, 2][/ANSWER] trailing", false),
            "[1, 2]"
        );
        // No closing tag: the first line after `==`.
        assert_eq!(
            extract_execution("assert f(3) == 'ab'\nmore text", false),
            "'ab'"
        );
        // Chain-of-thought: after `[ANSWER]` first, so an `==` in the reasoning is passed.
        let cot = "x == 2 here, so\n[ANSWER]\nassert f(2) == 4\n[/ANSWER]";
        assert_eq!(extract_execution(cot, true), "4");
        assert_eq!(extract_execution(cot, false), "2 here, so");
        // Only the part between the first and second `==` (lcb_runner's split).
        assert_eq!(extract_execution("assert f(1) == 2 == 2", false), "2");
        // A bare value.
        assert_eq!(extract_execution("42", false), "42");
    }

    #[test]
    fn an_answer_containing_the_input_is_skipped() {
        let p = Problem {
            input: "[1, 2]".into(),
            output: "3".into(),
            code: "def f(x):\n    return sum(x)".into(),
            ..Problem::default()
        };
        let family = LcbScenario::Execution { cot: false };
        assert!(
            family
                .refuses(&p, "assert f([1, 2]) == f([1, 2])")
                .is_some()
        );
        assert!(family.refuses(&p, "assert f([1, 2]) == 3").is_none());
        let script = family
            .script(&p, "assert f([1, 2]) == 3")
            .unwrap_or_default();
        assert!(
            script.ends_with("def f(x):\n    return sum(x)\nassert 3 == 3"),
            "{script}"
        );
    }
}
