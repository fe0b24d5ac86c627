//! LiveCodeBench (`code_generation_lite`'s `test*.jsonl`): public and private
//! tests; the private ones may be base64 of zlib of a pickled JSON string,
//! which is decoded, never unpickled.
//!
//! - Loading: problems filtered by `start_date`/`end_date` on `contest_date`
//!   and by `difficulty`; functional problems call `Solution.<func_name>`.
//! - Grading (lcb_runner): stdin programs on `input`, or
//!   `Solution().<func_name>(*json_lines(input))`; public then private tests;
//!   6 s per test, `(6 + 1) x n + 5` s per sample; stops at the first
//!   failure. Stdout lines stripped, equal count, each equal or equal as
//!   `Decimal`s; calls: top-level tuple -> list, `==`.

use super::family::{Family, Grading, IoRules, LoadedRow};
use super::problem::{LoadOptions, from_io_problem, list};
use super::problem::{Problem, json_text_field, text_field};
use crate::api::rows::Row;
use crate::python::sandbox::{Comparator, TestCase};
use serde_json::Value;
use std::io::Read;

pub struct LiveCodeBenchFamily;

impl Family for LiveCodeBenchFamily {
    fn load_row(&self, row: &Row, options: &LoadOptions) -> LoadedRow {
        let problem = self.problem(row)?;
        let public = list(row, "public_test_cases")?.len();
        let entry = problem.fn_name.as_ref().map(|f| format!("Solution.{f}"));
        Ok(from_io_problem(problem, row, options, entry, |n| {
            if n < public {
                ("public", true)
            } else {
                ("private", false)
            }
        }))
    }

    fn grading(&self) -> Option<Grading> {
        Some(Grading::Io(IoRules {
            call: Comparator::LcbCall,
            stdio: Comparator::LcbStdio,
            sample_backstop: true,
        }))
    }

    fn problem(&self, row: &Row) -> Result<Problem, String> {
        let mut p = Problem::common(row);
        p.task_id = text_field(row, "question_id");
        p.contest_date = row
            .get("contest_date")
            .and_then(|d| d.as_str())
            .map(String::from);
        p.fn_name = json_text_field(row, "metadata")?.and_then(|m| {
            m.get("func_name")
                .and_then(|f| f.as_str())
                .map(String::from)
        });
        let public = json_text_field(row, "public_test_cases")?;
        let private = private_tests(row)?;
        for (kind, tests) in [("public", public), ("private", private)] {
            let Some(tests) = tests else { continue };
            let Value::Array(tests) = tests else {
                return Err(format!("{}: {kind} tests are not a list", p.task_id));
            };
            for (n, t) in tests.iter().enumerate() {
                let case = test(t, p.fn_name.is_some())
                    .map_err(|e| format!("{}: {kind} test {n}: {e}", p.task_id))?;
                std::sync::Arc::make_mut(&mut p.io_tests).push(case);
            }
        }
        if p.task_id.is_empty() || p.io_tests.is_empty() {
            return Err("a LiveCodeBench row needs `question_id` and test cases".into());
        }
        Ok(p)
    }

    fn reference_answer(&self, _p: &Problem) -> Result<Option<String>, String> {
        Err("LiveCodeBench ships no reference solutions; pass --samples".into())
    }

    fn timeout(&self) -> f64 {
        6.0
    }
}

/// `private_test_cases`: JSON text, or (code_generation_lite) base64 of zlib
/// of a pickled JSON string. The pickle is read by a decoder that accepts
/// only a single string, never by unpickling.
fn private_tests(row: &Row) -> Result<Option<Value>, String> {
    let Some(Value::String(text)) = row.get("private_test_cases") else {
        return json_text_field(row, "private_test_cases");
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(Some(value));
    }
    use base64::Engine;
    let packed = base64::engine::general_purpose::STANDARD
        .decode(text.trim().as_bytes())
        .map_err(|e| format!("`private_test_cases` is neither JSON nor base64: {e}"))?;
    let mut pickled = Vec::new();
    flate2::read::ZlibDecoder::new(packed.as_slice())
        .read_to_end(&mut pickled)
        .map_err(|e| format!("`private_test_cases` is not zlib data: {e}"))?;
    let json = pickled_string(&pickled)?;
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|e| format!("`private_test_cases` decodes to invalid JSON: {e}"))
}

/// The string inside a pickle that holds exactly one `str` (protocols 2-5).
pub fn pickled_string(bytes: &[u8]) -> Result<String, String> {
    let refuse = |what: &str| Err(format!("refusing to unpickle `private_test_cases`: {what}"));
    let mut at = 0usize;
    let mut found: Option<String> = None;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let end = at.checked_add(n).filter(|e| *e <= bytes.len());
        match end {
            Some(end) => {
                let slice = &bytes[*at..end];
                *at = end;
                Ok(slice)
            }
            None => Err("refusing to unpickle `private_test_cases`: truncated pickle".to_string()),
        }
    };
    let le = |b: &[u8]| {
        b.iter()
            .rev()
            .fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
    };
    loop {
        let op = take(&mut at, 1)?[0];
        match op {
            0x80 => {
                take(&mut at, 1)?;
            }
            0x95 => {
                take(&mut at, 8)?;
            }
            0x8c | b'X' | 0x8d => {
                let width = match op {
                    0x8c => 1,
                    b'X' => 4,
                    _ => 8,
                };
                let len = usize::try_from(le(take(&mut at, width)?)).map_err(|_| {
                    "refusing to unpickle `private_test_cases`: huge string".to_string()
                })?;
                if found.is_some() {
                    return refuse("more than one object");
                }
                let text = std::str::from_utf8(take(&mut at, len)?).map_err(|_| {
                    "refusing to unpickle `private_test_cases`: bad UTF-8".to_string()
                })?;
                found = Some(text.to_string());
            }
            0x94 => {}
            b'q' => {
                take(&mut at, 1)?;
            }
            b'r' => {
                take(&mut at, 4)?;
            }
            b'.' => {
                return match found {
                    Some(text) => Ok(text),
                    None => refuse("no string in it"),
                };
            }
            other => {
                return refuse(&format!(
                    "opcode 0x{other:02x} is not part of a pickled string"
                ));
            }
        }
    }
}

/// One LiveCodeBench test: `{input, output, testtype}`.
fn test(test: &serde_json::Value, functional: bool) -> Result<TestCase, String> {
    let input = test
        .get("input")
        .and_then(|v| v.as_str())
        .ok_or("no `input` text")?;
    let output = test
        .get("output")
        .and_then(|v| v.as_str())
        .ok_or("no `output` text")?;
    let kind = test.get("testtype").and_then(|v| v.as_str());
    if functional || kind == Some("functional") {
        // lcb_runner: one JSON value per input line; the output is JSON.
        let args: Result<Vec<serde_json::Value>, _> =
            input.split('\n').map(serde_json::from_str).collect();
        let args = args.map_err(|e| format!("an input line is not JSON: {e}"))?;
        let expected: serde_json::Value =
            serde_json::from_str(output).map_err(|e| format!("the output is not JSON: {e}"))?;
        Ok(TestCase {
            args_json: Some(serde_json::Value::Array(args)),
            expected_json: Some(expected),
            ..TestCase::default()
        })
    } else {
        Ok(TestCase {
            stdin: Some(input.to_string()),
            expected: Some(serde_json::Value::String(output.to_string()).into()),
            ..TestCase::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pickled_strings_decode_and_anything_else_is_refused() {
        let p2 = [
            128, 2, 88, 10, 0, 0, 0, 91, 123, 34, 97, 34, 58, 32, 49, 125, 93, 113, 0, 46,
        ];
        let p4 = [
            128, 4, 149, 14, 0, 0, 0, 0, 0, 0, 0, 140, 10, 91, 123, 34, 97, 34, 58, 32, 49, 125,
            93, 148, 46,
        ];
        assert_eq!(pickled_string(&p2).unwrap(), r#"[{"a": 1}]"#);
        assert_eq!(pickled_string(&p4).unwrap(), r#"[{"a": 1}]"#);
        // A GLOBAL opcode (`c`), as in a pickle that would call os.system.
        let global = b"\x80\x02cos\nsystem\nq\x00.";
        assert!(pickled_string(global).unwrap_err().contains("opcode 0x63"));
        assert!(pickled_string(&p4[..15]).unwrap_err().contains("truncated"));
    }
}
