//! Benchmark scoring with the reference harnesses' own rules, in the sandbox.
//!
//! | benchmark | program run | pass rule |
//! |---|---|---|
//! | `humaneval` | `prompt + completion + test + check(entry_point)` as a script, 3 s | runs without an exception (openai/human-eval) |
//! | `humaneval-plus` | the solution's `entry_point` on `base_input` then `plus_input` | EvalPlus: outputs equal to the canonical solution's under its comparator; per-test limit `max(4 s, 4 x canonical time)`; plus = base and plus |
//! | `mbpp` | `code + test_setup_code + test_list` as a script, 3 s | runs without an exception |
//! | `cruxeval-i` | `code` + `assert f(<generation>) == <output>` | runs without an exception |
//! | `cruxeval-o` | `code` + `assert f(<input>) == <generation>` | as above; a generation that calls `f(` is a failure |
//! | `livecodebench` | stdin programs on `input`, or `Solution().<func_name>(*json_lines(input))`; public then private tests (private ones may be base64+zlib+pickle); 6 s per test, `(6 + 1) x n + 5` s per sample; stops at the first failure | lcb_runner: stdout lines stripped, equal count, each equal or equal as `Decimal`s; calls: top-level tuple -> list, `==` |
//! | `apps` | stdin programs, or `fn_name` called with each input list; 4 s per test | APPS `testing_util`: its lenient stdout fallbacks; calls: tuple -> list, wrapped expected values |
//!
//! LiveCodeBench problems can be windowed by `contest_date` (`start_date`,
//! `end_date`), and problems with a `difficulty` get a pass@k per difficulty
//! (suite `base/easy`, ...) beside the overall one.
//!
//! pass@k uses the unbiased estimator `1 - prod(1 - k / arange(n - c + 1, n + 1))`
//! (1.0 when `n - c < k`), averaged over problems, and is reported only for the
//! k where every problem has at least k samples (the EvalPlus rule). A
//! bootstrap over problems gives a 95% interval.

use crate::api::StageError;
use crate::sandbox::{Comparator, Job, JobReport, Mode, Sandbox, TestCase, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Benchmark {
    #[serde(rename = "humaneval")]
    HumanEval,
    #[serde(rename = "humaneval-plus")]
    HumanEvalPlus,
    #[serde(rename = "mbpp")]
    Mbpp,
    #[serde(rename = "cruxeval-i")]
    CruxevalI,
    #[serde(rename = "cruxeval-o")]
    CruxevalO,
    #[serde(rename = "livecodebench")]
    LiveCodeBench,
    #[serde(rename = "apps")]
    Apps,
}

impl Benchmark {
    pub const ALL: [Benchmark; 7] = [
        Benchmark::HumanEval,
        Benchmark::HumanEvalPlus,
        Benchmark::Mbpp,
        Benchmark::CruxevalI,
        Benchmark::CruxevalO,
        Benchmark::LiveCodeBench,
        Benchmark::Apps,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Benchmark::HumanEval => "humaneval",
            Benchmark::HumanEvalPlus => "humaneval-plus",
            Benchmark::Mbpp => "mbpp",
            Benchmark::CruxevalI => "cruxeval-i",
            Benchmark::CruxevalO => "cruxeval-o",
            Benchmark::LiveCodeBench => "livecodebench",
            Benchmark::Apps => "apps",
        }
    }

    pub fn parse(name: &str) -> Option<Benchmark> {
        Benchmark::ALL.into_iter().find(|b| b.name() == name)
    }

    pub fn has_plus(self) -> bool {
        self == Benchmark::HumanEvalPlus
    }
}

/// Scorer settings; all of them belong in a score's cache key. They are also
/// the params of the `score` stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScoreSettings {
    /// `humaneval`, `humaneval-plus`, `mbpp`, `cruxeval-i`, `cruxeval-o`, `livecodebench`, `apps`.
    pub benchmark: String,
    /// Per-test seconds (HumanEval, MBPP, CRUXEval); the EvalPlus minimum.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// EvalPlus: per-test limit = max(timeout, factor x canonical time).
    #[serde(default = "default_factor")]
    pub gt_time_factor: f64,
    /// EvalPlus: cap on a whole suite's time.
    #[serde(default = "default_task_cap")]
    pub max_seconds_per_suite: f64,
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    #[serde(default)]
    pub workers: Option<usize>,
    #[serde(default = "default_k")]
    pub k: Vec<u32>,
    #[serde(default = "default_bootstrap")]
    pub bootstrap: u32,
    #[serde(default)]
    pub seed: u64,
    /// LiveCodeBench: only problems with `contest_date` on or after this day (`YYYY-MM-DD`).
    #[serde(default)]
    pub start_date: Option<String>,
    /// LiveCodeBench: only problems with `contest_date` on or before this day.
    #[serde(default)]
    pub end_date: Option<String>,
}

fn default_factor() -> f64 {
    4.0
}
fn default_task_cap() -> f64 {
    60.0
}
fn default_memory_mb() -> u64 {
    4096
}
fn default_k() -> Vec<u32> {
    vec![1, 10, 100]
}
fn default_bootstrap() -> u32 {
    1000
}

impl Default for ScoreSettings {
    fn default() -> Self {
        ScoreSettings {
            benchmark: Benchmark::HumanEval.name().to_string(),
            timeout: None,
            gt_time_factor: default_factor(),
            max_seconds_per_suite: default_task_cap(),
            memory_mb: default_memory_mb(),
            workers: None,
            k: default_k(),
            bootstrap: default_bootstrap(),
            seed: 0,
            start_date: None,
            end_date: None,
        }
    }
}

impl ScoreSettings {
    fn timeout_for(&self, bench: Benchmark) -> f64 {
        self.timeout.unwrap_or(match bench {
            Benchmark::HumanEvalPlus | Benchmark::Apps => 4.0,
            Benchmark::LiveCodeBench => 6.0,
            _ => 3.0,
        })
    }

    /// Whether a problem falls in the `start_date`..=`end_date` window.
    fn in_window(&self, problem: &Problem) -> bool {
        let Some(date) = problem.contest_date.as_deref() else {
            return self.start_date.is_none() && self.end_date.is_none();
        };
        let day = date.get(..10).unwrap_or(date);
        self.start_date.as_deref().is_none_or(|s| day >= s)
            && self.end_date.as_deref().is_none_or(|e| day <= e)
    }
}

/// Whether `day` is written `YYYY-MM-DD` (the form date windows compare).
pub fn is_iso_day(day: &str) -> bool {
    day.len() == 10
        && day.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

/// A benchmark problem, with what every benchmark needs (unused fields empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Problem {
    pub task_id: String,
    pub prompt: String,
    pub entry_point: String,
    pub test: String,
    pub canonical_solution: String,
    pub base_input: Vec<serde_json::Value>,
    pub plus_input: Vec<serde_json::Value>,
    pub atol: f64,
    /// CRUXEval
    pub code: String,
    pub input: String,
    pub output: String,
    /// MBPP
    pub test_setup_code: String,
    pub test_list: Vec<String>,
    pub difficulty: Option<String>,
    /// LiveCodeBench / APPS: input/output tests, public ones first.
    pub io_tests: Vec<TestCase>,
    /// LiveCodeBench / APPS: the function to call; none for stdin programs.
    pub fn_name: Option<String>,
    /// LiveCodeBench: `contest_date`.
    pub contest_date: Option<String>,
}

/// One generated program for a problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub task_id: String,
    /// Position among this task's samples.
    pub index: usize,
    /// The full program (HumanEval prompts already prepended), or for CRUXEval the generation.
    pub code: String,
}

fn read_text(path: &Path) -> Result<String, StageError> {
    let mut text = String::new();
    crate::load::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}

fn json_lines(path: &Path) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, StageError> {
    let (rows, _) = crate::load::read_jsonl(path, crate::load::OnError::Fail, usize::MAX)?;
    Ok(rows)
}

fn text_field(row: &serde_json::Map<String, serde_json::Value>, key: &str) -> String {
    match row.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A JSON list field that may also arrive as JSON text (a `load`ed artifact).
fn list_field(
    row: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Vec<serde_json::Value>, String> {
    match row.get(key) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(a)) => Ok(a.clone()),
        Some(serde_json::Value::String(s)) => match serde_json::from_str(s) {
            Ok(serde_json::Value::Array(a)) => Ok(a),
            _ => Err(format!("`{key}` is not a JSON list")),
        },
        Some(_) => Err(format!("`{key}` is not a list")),
    }
}

/// Problems from benchmark rows (JSONL rows or a loaded table's rows).
pub fn problems_from_rows(
    bench: Benchmark,
    rows: &[serde_json::Map<String, serde_json::Value>],
    origin: &Path,
) -> Result<Vec<Problem>, StageError> {
    let mut problems = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let bad = |message: String| StageError::BadRecord {
            file: origin.to_path_buf(),
            line: i + 1,
            message,
        };
        let mut p = Problem {
            task_id: text_field(row, "task_id"),
            prompt: text_field(row, "prompt"),
            entry_point: text_field(row, "entry_point"),
            test: text_field(row, "test"),
            canonical_solution: text_field(row, "canonical_solution"),
            difficulty: row
                .get("difficulty")
                .and_then(|d| d.as_str())
                .map(String::from),
            ..Problem::default()
        };
        match bench {
            Benchmark::HumanEval | Benchmark::HumanEvalPlus => {
                if p.task_id.is_empty() || p.entry_point.is_empty() {
                    return Err(bad(
                        "a HumanEval row needs `task_id` and `entry_point`".into()
                    ));
                }
                if bench == Benchmark::HumanEvalPlus {
                    p.base_input = list_field(row, "base_input").map_err(bad)?;
                    p.plus_input = list_field(row, "plus_input").map_err(bad)?;
                    p.atol = row
                        .get("atol")
                        .and_then(|a| {
                            a.as_f64()
                                .or_else(|| a.as_str().and_then(|s| s.parse().ok()))
                        })
                        .unwrap_or(0.0);
                    if p.base_input.is_empty() {
                        return Err(bad(format!(
                            "{}: no `base_input` (is this HumanEval+?)",
                            p.task_id
                        )));
                    }
                }
            }
            Benchmark::Mbpp => {
                p.task_id = match row.get("task_id") {
                    Some(serde_json::Value::Number(n)) => n.to_string(),
                    _ => p.task_id,
                };
                p.canonical_solution = text_field(row, "code");
                p.test_setup_code = text_field(row, "test_setup_code");
                p.test_list = list_field(row, "test_list")
                    .map_err(bad)?
                    .into_iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                if p.test_list.is_empty() {
                    return Err(bad(format!("MBPP task {} has no `test_list`", p.task_id)));
                }
            }
            Benchmark::LiveCodeBench => {
                p.task_id = text_field(row, "question_id");
                p.contest_date = row
                    .get("contest_date")
                    .and_then(|d| d.as_str())
                    .map(String::from);
                p.fn_name = json_text_field(row, "metadata")
                    .map_err(bad)?
                    .and_then(|m| {
                        m.get("func_name")
                            .and_then(|f| f.as_str())
                            .map(String::from)
                    });
                let public = json_text_field(row, "public_test_cases").map_err(bad)?;
                let private = lcb_private_tests(row).map_err(bad)?;
                for (kind, tests) in [("public", public), ("private", private)] {
                    let Some(tests) = tests else { continue };
                    let serde_json::Value::Array(tests) = tests else {
                        return Err(bad(format!("{}: {kind} tests are not a list", p.task_id)));
                    };
                    for (n, t) in tests.iter().enumerate() {
                        let case = lcb_test(t, p.fn_name.is_some())
                            .map_err(|e| bad(format!("{}: {kind} test {n}: {e}", p.task_id)))?;
                        p.io_tests.push(case);
                    }
                }
                if p.task_id.is_empty() || p.io_tests.is_empty() {
                    return Err(bad(
                        "a LiveCodeBench row needs `question_id` and test cases".into(),
                    ));
                }
            }
            Benchmark::Apps => {
                p.task_id = match row.get("problem_id") {
                    Some(serde_json::Value::Number(n)) => n.to_string(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    _ => p.task_id,
                };
                let io = json_text_field(row, "input_output")
                    .map_err(bad)?
                    .unwrap_or(serde_json::Value::Null);
                p.fn_name = io.get("fn_name").and_then(|f| f.as_str()).map(String::from);
                let inputs = io.get("inputs").and_then(|v| v.as_array());
                let outputs = io.get("outputs").and_then(|v| v.as_array());
                let (Some(inputs), Some(outputs)) = (inputs, outputs) else {
                    return Err(bad(format!(
                        "APPS problem {}: `input_output` needs `inputs` and `outputs` lists",
                        p.task_id
                    )));
                };
                if inputs.len() != outputs.len() || inputs.is_empty() {
                    return Err(bad(format!(
                        "APPS problem {}: {} inputs but {} outputs",
                        p.task_id,
                        inputs.len(),
                        outputs.len()
                    )));
                }
                for (input, output) in inputs.iter().zip(outputs) {
                    p.io_tests
                        .push(apps_test(input, output, p.fn_name.is_some()));
                }
                p.canonical_solution = json_text_field(row, "solutions")
                    .ok()
                    .flatten()
                    .and_then(|s| s.get(0).and_then(|c| c.as_str()).map(String::from))
                    .unwrap_or_default();
            }
            Benchmark::CruxevalI | Benchmark::CruxevalO => {
                p.task_id = text_field(row, "id");
                p.code = text_field(row, "code");
                p.input = text_field(row, "input");
                p.output = text_field(row, "output");
                if p.task_id.is_empty() || p.code.is_empty() {
                    return Err(bad("a CRUXEval row needs `id` and `code`".into()));
                }
            }
        }
        problems.push(p);
    }
    Ok(problems)
}

/// A field holding JSON, either as a value or as JSON text (how the
/// LiveCodeBench and APPS datasets ship it).
fn json_text_field(
    row: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<serde_json::Value>, String> {
    match row.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => serde_json::from_str(s)
            .map(Some)
            .map_err(|e| format!("`{key}` is not valid JSON: {e}")),
        Some(other) => Ok(Some(other.clone())),
    }
}

/// LiveCodeBench's `private_test_cases`: JSON text, or (code_generation_lite)
/// base64 of zlib of a pickled JSON string. The pickle is read by a decoder
/// that accepts only a single string, never by unpickling.
fn lcb_private_tests(
    row: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<serde_json::Value>, String> {
    let Some(serde_json::Value::String(text)) = row.get("private_test_cases") else {
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
fn lcb_test(test: &serde_json::Value, functional: bool) -> Result<TestCase, String> {
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
            expected: Some(serde_json::Value::String(output.to_string())),
            ..TestCase::default()
        })
    }
}

/// One APPS test: stdin text (or lines) and expected text, or call arguments.
fn apps_test(input: &serde_json::Value, output: &serde_json::Value, call: bool) -> TestCase {
    if call {
        let args = match input {
            serde_json::Value::Array(_) => input.clone(),
            other => serde_json::Value::Array(vec![other.clone()]),
        };
        return TestCase {
            args_json: Some(args),
            expected_json: Some(output.clone()),
            ..TestCase::default()
        };
    }
    let lines = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), String::from))
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    };
    TestCase {
        stdin: Some(lines(input)),
        expected: Some(serde_json::Value::String(lines(output))),
        ..TestCase::default()
    }
}

pub fn load_problems(bench: Benchmark, path: &Path) -> Result<Vec<Problem>, StageError> {
    problems_from_rows(bench, &json_lines(path)?, path)
}

/// Samples from rows `{task_id, completion | solution}`; HumanEval completions get the prompt prepended.
pub fn samples_from_rows(
    bench: Benchmark,
    rows: &[serde_json::Map<String, serde_json::Value>],
    problems: &[Problem],
    origin: &Path,
) -> Result<Vec<Sample>, StageError> {
    let by_id: BTreeMap<&str, &Problem> =
        problems.iter().map(|p| (p.task_id.as_str(), p)).collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut samples = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let bad = |message: String| StageError::BadRecord {
            file: origin.to_path_buf(),
            line: i + 1,
            message,
        };
        // EvalPlus rows say `task_id`; LiveCodeBench's `question_id`; APPS's `problem_id`.
        let id_key = ["task_id", "question_id", "problem_id"]
            .into_iter()
            .find(|k| row.contains_key(*k))
            .unwrap_or("task_id");
        let mut task_id = match row.get(id_key) {
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => text_field(row, id_key),
        };
        if bench == Benchmark::Mbpp {
            task_id = task_id.trim_start_matches("Mbpp/").to_string();
        }
        let Some(problem) = by_id.get(task_id.as_str()) else {
            return Err(bad(format!("sample for unknown task `{task_id}`")));
        };
        let codes: Vec<String> = if let Some(list) = row.get("code_list") {
            // LiveCodeBench's generations file: every program of a question in one row.
            let Some(list) = list.as_array() else {
                return Err(bad("`code_list` is not a list".into()));
            };
            list.iter()
                .map(|c| c.as_str().map_or_else(|| c.to_string(), String::from))
                .collect()
        } else if let Some(serde_json::Value::String(s)) = row.get("solution") {
            vec![s.clone()]
        } else if let Some(serde_json::Value::String(c)) = row.get("completion") {
            vec![match bench {
                Benchmark::HumanEval | Benchmark::HumanEvalPlus => format!("{}{c}", problem.prompt),
                _ => c.clone(),
            }]
        } else if let Some(serde_json::Value::String(g)) = row.get("generation") {
            vec![g.clone()]
        } else {
            return Err(bad(
                "a sample needs `solution`, `completion`, `generation` or `code_list`".into(),
            ));
        };
        for code in codes {
            let index = counts.entry(task_id.clone()).or_default();
            samples.push(Sample {
                task_id: task_id.clone(),
                index: *index,
                code,
            });
            *index += 1;
        }
    }
    Ok(samples)
}

/// Load samples: JSONL of `{task_id, completion|solution}`, or CRUXEval's
/// `generations.json` (`{"sample_0": ["...", ...], ...}`).
pub fn load_samples(
    bench: Benchmark,
    path: &Path,
    problems: &[Problem],
) -> Result<Vec<Sample>, StageError> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let whole_json = name.trim_end_matches(".gz").ends_with(".json");
    if whole_json {
        let text = read_text(path)?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| StageError::BadRecord {
                file: path.to_path_buf(),
                line: e.line(),
                message: format!("invalid JSON: {e}"),
            })?;
        if let serde_json::Value::Object(map) = value {
            let mut rows = Vec::new();
            for (task_id, generations) in map {
                let list = match generations {
                    serde_json::Value::Array(a) => a,
                    other => vec![other],
                };
                for g in list {
                    let mut row = serde_json::Map::new();
                    row.insert("task_id".into(), serde_json::Value::String(task_id.clone()));
                    row.insert("generation".into(), g);
                    rows.push(row);
                }
            }
            return samples_from_rows(bench, &rows, problems, path);
        }
        if let serde_json::Value::Array(items) = value {
            let rows: Vec<_> = items
                .into_iter()
                .filter_map(|v| match v {
                    serde_json::Value::Object(m) => Some(m),
                    _ => None,
                })
                .collect();
            return samples_from_rows(bench, &rows, problems, path);
        }
        return Err(StageError::BadRecord {
            file: path.to_path_buf(),
            line: 1,
            message: "expected a map of task id -> generations, or a list of samples".into(),
        });
    }
    samples_from_rows(bench, &json_lines(path)?, problems, path)
}

/// One scored sample.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SampleResult {
    pub task_id: String,
    pub index: usize,
    pub base_pass: bool,
    /// EvalPlus: base and plus both pass. None for benchmarks without plus tests.
    pub plus_pass: Option<bool>,
    /// Verdict of the first failing test (base first), or `pass`.
    pub verdict: Verdict,
    pub detail: String,
}

impl SampleResult {
    /// A result for a benchmark without plus tests.
    fn without_plus(sample: &Sample, verdict: Verdict, detail: String) -> SampleResult {
        SampleResult {
            task_id: sample.task_id.clone(),
            index: sample.index,
            base_pass: verdict == Verdict::Pass,
            plus_pass: None,
            verdict,
            detail,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PassAtK {
    pub suite: String,
    pub k: u32,
    pub score: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub problems: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    pub benchmark: String,
    /// Problems scored (after the date window).
    pub problems: usize,
    pub samples: Vec<SampleResult>,
    pub pass_at_k: Vec<PassAtK>,
    /// k values asked for but not reported because some problem has fewer samples.
    pub skipped_k: Vec<u32>,
    /// EvalPlus: problems whose canonical solution failed our own run (should be none).
    pub reference_failures: Vec<String>,
}

fn limits(settings: &ScoreSettings, timeout: f64) -> crate::sandbox::Limits {
    crate::sandbox::Limits {
        timeout,
        memory_bytes: settings.memory_mb << 20,
        ..crate::sandbox::Limits::default()
    }
}

fn script_job(program: String, settings: &ScoreSettings, timeout: f64) -> Job {
    let mut job = Job::new(Mode::Script, program);
    job.tests = vec![TestCase::default()];
    job.limits = limits(settings, timeout);
    // openai/human-eval kills a sample at timeout + 1 s.
    job.limits.backstop = Some(timeout + 1.0);
    job
}

/// The program a sample runs as, for the script-shaped benchmarks.
pub fn script_program(bench: Benchmark, problem: &Problem, code: &str) -> Option<String> {
    match bench {
        Benchmark::HumanEval => Some(format!(
            "{code}\n{}\ncheck({})\n",
            problem.test, problem.entry_point
        )),
        Benchmark::Mbpp => Some(format!(
            "{code}\n{}\n{}\n",
            problem.test_setup_code,
            problem.test_list.join("\n")
        )),
        Benchmark::CruxevalI => Some(format!(
            "{}\nassert f({code}) == {}\n",
            problem.code, problem.output
        )),
        Benchmark::CruxevalO => Some(format!(
            "{}\nassert f({}) == {code}\n",
            problem.code, problem.input
        )),
        Benchmark::HumanEvalPlus | Benchmark::LiveCodeBench | Benchmark::Apps => None,
    }
}

fn evalplus_job(
    problem: &Problem,
    code: &str,
    inputs: &[serde_json::Value],
    expected: Option<&[(serde_json::Value, f64)]>,
    settings: &ScoreSettings,
) -> Job {
    let min = settings.timeout_for(Benchmark::HumanEvalPlus);
    let mut job = Job::new(Mode::Function, code);
    job.entry_point = Some(problem.entry_point.clone());
    job.comparator = Comparator::Evalplus;
    job.atol = problem.atol;
    job.dataset = Some("humaneval".into());
    job.limits = limits(settings, min);
    let mut total = 0.0;
    job.tests = inputs
        .iter()
        .enumerate()
        .map(|(i, args)| {
            let (expected_value, timeout) = match expected {
                Some(exp) => {
                    let (value, gt_time) = &exp[i];
                    (
                        Some(value.clone()),
                        min.max(settings.gt_time_factor * gt_time),
                    )
                }
                // Running the canonical solution: generous limits, outputs are recorded.
                None => (None, 20.0),
            };
            total += timeout;
            TestCase {
                args_json: Some(args.clone()),
                expected: expected_value,
                timeout: Some(timeout),
                ..TestCase::default()
            }
        })
        .collect();
    if expected.is_some() {
        job.limits.backstop = Some(total.min(settings.max_seconds_per_suite) + 1.0);
        // EvalPlus scores with fast_check: a suite stops at its first failure.
        job.stop_at_first_failure = true;
        job.keep_output_values = false;
    }
    job
}

/// A LiveCodeBench or APPS sample: its program on every test of the problem.
fn io_job(bench: Benchmark, problem: &Problem, code: &str, settings: &ScoreSettings) -> Job {
    let timeout = settings.timeout_for(bench);
    let lcb = bench == Benchmark::LiveCodeBench;
    let mut job = match &problem.fn_name {
        Some(name) => {
            let mut job = Job::new(Mode::Function, code);
            // Both harnesses instantiate `Solution` when the program defines it.
            job.entry_point = Some(if code.contains("class Solution") {
                format!("Solution.{name}")
            } else {
                name.clone()
            });
            job.comparator = if lcb {
                Comparator::LcbCall
            } else {
                Comparator::AppsCall
            };
            job
        }
        None => {
            let mut job = Job::new(Mode::Stdio, code);
            job.comparator = if lcb {
                Comparator::LcbStdio
            } else {
                Comparator::AppsStdio
            };
            job
        }
    };
    job.tests = problem.io_tests.clone();
    job.limits = limits(settings, timeout);
    if lcb {
        // lcb_runner: the whole sample gets (timeout + 1) per test plus 5 s.
        job.limits.backstop = Some((timeout + 1.0) * job.tests.len() as f64 + 5.0);
    }
    // Both harnesses count a sample as passing only if every test passes.
    job.stop_at_first_failure = true;
    job.keep_output_values = false;
    job
}

fn first_failure(report: &JobReport) -> Option<(Verdict, String)> {
    report
        .results
        .iter()
        .find(|r| r.verdict != Verdict::Pass)
        .map(|r| {
            let mut detail = format!("test {}: {}", r.test, r.verdict.as_str());
            if let Some(t) = &r.exc_type {
                detail.push_str(&format!(" ({t}"));
                if let Some(m) = r.exc_message.as_deref().filter(|m| !m.is_empty()) {
                    let m: String = m.chars().take(200).collect();
                    detail.push_str(&format!(": {m}"));
                }
                detail.push(')');
            }
            (r.verdict, detail)
        })
}

/// Score `samples` against `problems` in `sandbox`.
pub fn score(
    bench: Benchmark,
    problems: &[Problem],
    samples: &[Sample],
    settings: &ScoreSettings,
    sandbox: &Sandbox,
    progress: &(dyn Fn() + Sync),
) -> Result<ScoreReport, StageError> {
    let windowed: Vec<Problem>;
    let in_window: Vec<Sample>;
    let (problems, samples) = if settings.start_date.is_some() || settings.end_date.is_some() {
        windowed = problems
            .iter()
            .filter(|p| settings.in_window(p))
            .cloned()
            .collect();
        let kept: std::collections::BTreeSet<&str> =
            windowed.iter().map(|p| p.task_id.as_str()).collect();
        in_window = samples
            .iter()
            .filter(|s| kept.contains(s.task_id.as_str()))
            .cloned()
            .collect();
        (windowed.as_slice(), in_window.as_slice())
    } else {
        (problems, samples)
    };
    let by_id: BTreeMap<&str, &Problem> =
        problems.iter().map(|p| (p.task_id.as_str(), p)).collect();
    let mut reference_failures = Vec::new();
    let results: Vec<SampleResult> = if bench == Benchmark::HumanEvalPlus {
        // Expected outputs come from running the canonical solution here, with
        // its time per input setting the per-test limits (EvalPlus).
        let mut reference_jobs = Vec::new();
        for p in problems {
            let code = format!("{}{}", p.prompt, p.canonical_solution);
            reference_jobs.push(evalplus_job(p, &code, &p.base_input, None, settings));
            reference_jobs.push(evalplus_job(p, &code, &p.plus_input, None, settings));
        }
        let reference = sandbox.run_all(&reference_jobs, &|| {});
        let mut expected: BTreeMap<&str, [Vec<(serde_json::Value, f64)>; 2]> = BTreeMap::new();
        for (i, p) in problems.iter().enumerate() {
            let mut suites: [Vec<(serde_json::Value, f64)>; 2] = [Vec::new(), Vec::new()];
            for (s, suite) in suites.iter_mut().enumerate() {
                for r in &reference[2 * i + s].results {
                    if r.verdict != Verdict::Pass && !reference_failures.contains(&p.task_id) {
                        reference_failures.push(p.task_id.clone());
                    }
                    suite.push((
                        r.output.clone().unwrap_or(serde_json::Value::Null),
                        r.duration.unwrap_or(0.0),
                    ));
                }
            }
            expected.insert(p.task_id.as_str(), suites);
        }
        let mut jobs = Vec::with_capacity(samples.len() * 2);
        for s in samples {
            let p = by_id[s.task_id.as_str()];
            let exp = &expected[s.task_id.as_str()];
            jobs.push(evalplus_job(
                p,
                &s.code,
                &p.base_input,
                Some(&exp[0]),
                settings,
            ));
            jobs.push(evalplus_job(
                p,
                &s.code,
                &p.plus_input,
                Some(&exp[1]),
                settings,
            ));
        }
        let reports = sandbox.run_all(&jobs, &|| {});
        samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let base = &reports[2 * i];
                let plus = &reports[2 * i + 1];
                let base_pass = base.passed();
                let plus_pass = base_pass && plus.passed();
                let (verdict, detail) = first_failure(base)
                    .map(|(v, d)| (v, format!("base {d}")))
                    .or_else(|| first_failure(plus).map(|(v, d)| (v, format!("plus {d}"))))
                    .unwrap_or((Verdict::Pass, String::new()));
                progress();
                SampleResult {
                    task_id: s.task_id.clone(),
                    index: s.index,
                    base_pass,
                    plus_pass: Some(plus_pass),
                    verdict,
                    detail,
                }
            })
            .collect()
    } else if matches!(bench, Benchmark::LiveCodeBench | Benchmark::Apps) {
        let jobs: Vec<Job> = samples
            .iter()
            .map(|s| io_job(bench, by_id[s.task_id.as_str()], &s.code, settings))
            .collect();
        let reports = sandbox.run_all(&jobs, progress);
        samples
            .iter()
            .zip(&reports)
            .map(|(s, r)| {
                let (verdict, detail) = first_failure(r).unwrap_or((Verdict::Pass, String::new()));
                SampleResult::without_plus(s, verdict, detail)
            })
            .collect()
    } else {
        let timeout = settings.timeout_for(bench);
        let mut cheats = vec![false; samples.len()];
        let jobs: Vec<Job> = samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let p = by_id[s.task_id.as_str()];
                // CRUXEval skips output predictions that just call the function.
                if bench == Benchmark::CruxevalO && s.code.contains("f(") {
                    cheats[i] = true;
                }
                let program = script_program(bench, p, &s.code).expect("script-shaped benchmark");
                script_job(program, settings, timeout)
            })
            .collect();
        let reports = sandbox.run_all(&jobs, progress);
        samples
            .iter()
            .zip(&reports)
            .zip(&cheats)
            .map(|((s, r), &cheat)| {
                let (verdict, detail) = if cheat {
                    (
                        Verdict::WrongAnswer,
                        "the prediction calls f(), which CRUXEval does not count".to_string(),
                    )
                } else {
                    first_failure(r).unwrap_or((Verdict::Pass, String::new()))
                };
                SampleResult::without_plus(s, verdict, detail)
            })
            .collect()
    };
    let (pass_at_k, skipped_k) = pass_at_k_table(bench, problems, &results, settings);
    Ok(ScoreReport {
        benchmark: bench.name().to_string(),
        problems: problems.len(),
        samples: results,
        pass_at_k,
        skipped_k,
        reference_failures,
    })
}

/// Unbiased pass@k for one problem: n samples, c correct (Chen et al. 2021),
/// computed on the same float path as the reference implementations.
pub fn pass_at_k(n: u64, c: u64, k: u64) -> f64 {
    if n - c < k {
        return 1.0;
    }
    let mut prod = 1.0f64;
    for i in (n - c + 1)..=n {
        prod *= 1.0 - k as f64 / i as f64;
    }
    1.0 - prod
}

/// Per problem: samples, base passes, plus passes, difficulty.
type Counts<'a> = (u64, u64, u64, Option<&'a str>);

fn pass_at_k_table(
    bench: Benchmark,
    problems: &[Problem],
    results: &[SampleResult],
    settings: &ScoreSettings,
) -> (Vec<PassAtK>, Vec<u32>) {
    // (n, c_base, c_plus) per problem, in problem order; problems without samples are left out.
    let mut counts: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for r in results {
        let e = counts.entry(r.task_id.as_str()).or_default();
        e.0 += 1;
        e.1 += u64::from(r.base_pass);
        e.2 += u64::from(r.plus_pass.unwrap_or(false));
    }
    let rows: Vec<Counts<'_>> = problems
        .iter()
        .filter_map(|p| {
            counts
                .get(p.task_id.as_str())
                .map(|&(n, b, c)| (n, b, c, p.difficulty.as_deref()))
        })
        .collect();
    let min_n = rows.iter().map(|r| r.0).min().unwrap_or(0);
    let mut suites = vec![("base", 1usize)];
    if bench.has_plus() {
        suites.push(("plus", 2usize));
    }
    // Per-difficulty groups in the benchmarks' own order, then any others.
    const ORDER: [&str; 6] = [
        "easy",
        "medium",
        "hard",
        "introductory",
        "interview",
        "competition",
    ];
    let mut levels: Vec<&str> = rows.iter().filter_map(|r| r.3).collect();
    levels.sort_by_key(|l| (ORDER.iter().position(|o| o == l).unwrap_or(ORDER.len()), *l));
    levels.dedup();
    let mut groups: Vec<(Option<&str>, Vec<&Counts<'_>>)> = vec![(None, rows.iter().collect())];
    if !levels.is_empty() {
        for level in levels {
            groups.push((
                Some(level),
                rows.iter().filter(|r| r.3 == Some(level)).collect(),
            ));
        }
    }
    let mut table = Vec::new();
    let mut skipped = Vec::new();
    for &k in &settings.k {
        if rows.is_empty() || u64::from(k) > min_n {
            skipped.push(k);
            continue;
        }
        for (level, group) in &groups {
            for (suite, column) in &suites {
                let per_problem: Vec<f64> = group
                    .iter()
                    .map(|r| {
                        let c = if *column == 1 { r.1 } else { r.2 };
                        pass_at_k(r.0, c, u64::from(k))
                    })
                    .collect();
                let score = mean(&per_problem);
                let (ci_low, ci_high) = bootstrap(
                    &per_problem,
                    settings.bootstrap,
                    settings.seed ^ u64::from(k),
                );
                table.push(PassAtK {
                    suite: match level {
                        Some(level) => format!("{suite}/{level}"),
                        None => suite.to_string(),
                    },
                    k,
                    score,
                    ci_low,
                    ci_high,
                    problems: group.len(),
                });
            }
        }
    }
    (table, skipped)
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// 95% percentile interval of the mean over problems resampled with replacement.
fn bootstrap(values: &[f64], rounds: u32, seed: u64) -> (f64, f64) {
    if values.is_empty() || rounds == 0 {
        let m = mean(values);
        return (m, m);
    }
    let mut rng = crate::rng::SplitMix64::new(seed.wrapping_add(crate::rng::SplitMix64::GAMMA));
    let n = values.len() as u64;
    let mut means: Vec<f64> = (0..rounds)
        .map(|_| (0..n).map(|_| values[rng.below(n) as usize]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    (at(0.025), at(0.975))
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

    #[test]
    fn date_windows_compare_days() {
        assert!(is_iso_day("2024-01-31") && !is_iso_day("2024-1-31") && !is_iso_day("yesterday"));
        let settings = ScoreSettings {
            start_date: Some("2023-06-01".into()),
            end_date: Some("2023-12-31".into()),
            ..ScoreSettings::default()
        };
        let at = |d: Option<&str>| Problem {
            contest_date: d.map(String::from),
            ..Problem::default()
        };
        assert!(settings.in_window(&at(Some("2023-12-31T23:59:00"))));
        assert!(!settings.in_window(&at(Some("2024-01-01T00:00:00"))));
        assert!(!settings.in_window(&at(Some("2023-05-31"))));
        assert!(!settings.in_window(&at(None)));
        assert!(ScoreSettings::default().in_window(&at(None)));
    }

    #[test]
    fn pass_at_k_matches_worked_values() {
        assert_eq!(pass_at_k(10, 0, 1), 0.0);
        assert!((pass_at_k(10, 3, 1) - 0.3).abs() < 1e-12);
        // 1 - C(7,5)/C(10,5) = 1 - 21/252
        assert!((pass_at_k(10, 3, 5) - (1.0 - 21.0 / 252.0)).abs() < 1e-12);
        assert_eq!(pass_at_k(10, 8, 5), 1.0);
        assert_eq!(pass_at_k(1, 1, 1), 1.0);
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_is_seeded() {
        let v: Vec<f64> = (0..50).map(|i| f64::from(i % 2)).collect();
        let (lo, hi) = bootstrap(&v, 500, 7);
        assert!(lo < 0.5 && hi > 0.5 && lo > 0.2 && hi < 0.8, "{lo} {hi}");
        assert_eq!((lo, hi), bootstrap(&v, 500, 7));
        assert_eq!(bootstrap(&[1.0; 5], 100, 1), (1.0, 1.0));
    }

    #[test]
    fn k_is_reported_only_where_every_problem_has_enough_samples() {
        let problems = vec![
            Problem {
                task_id: "a".into(),
                ..Problem::default()
            },
            Problem {
                task_id: "b".into(),
                ..Problem::default()
            },
        ];
        let r = |t: &str, i, ok| SampleResult {
            task_id: t.into(),
            index: i,
            base_pass: ok,
            plus_pass: None,
            verdict: Verdict::Pass,
            detail: String::new(),
        };
        let results = vec![r("a", 0, true), r("a", 1, false), r("b", 0, false)];
        let settings = ScoreSettings {
            k: vec![1, 2],
            bootstrap: 0,
            ..ScoreSettings::default()
        };
        let (table, skipped) =
            pass_at_k_table(Benchmark::HumanEval, &problems, &results, &settings);
        assert_eq!(skipped, vec![2]);
        assert_eq!(table.len(), 1);
        assert!((table[0].score - 0.25).abs() < 1e-12);
    }
}
