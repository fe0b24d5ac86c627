//! Shared by the stages that run programs (`execute`, `trace`, `score`): the
//! sandbox's environment facts and start-up, and, for programs read from table
//! rows, their program, entry point and test cells as sandbox test cases, with
//! errors that name the row and column.

use crate::api::{EnvFact, Problem, RunCtx, StageError};
use crate::python::sandbox::{Limits, Mode, Sandbox, TestCase};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::rows::{At, Row, kind_of, text};
use crate::python::pyvalue;
use crate::python::sandbox;

/// The environment facts of every stage that runs programs in the sandbox:
/// the interpreter's version, and which interpreter was asked for.
pub fn sandbox_facts() -> Vec<EnvFact> {
    vec![
        EnvFact::Command {
            name: "sandbox_python".into(),
            argv: vec![
                "sh".into(),
                "-c".into(),
                "p=${TW_PYTHON:-/usr/bin/python3}; [ -x \"$p\" ] || p=python3; \"$p\" -VV".into(),
            ],
        },
        EnvFact::Var {
            name: "TW_PYTHON".into(),
        },
    ]
}

/// Start the sandbox for a stage and record in its manifest how isolated
/// the runs are (the engine, the policy, every warning).
pub fn open_sandbox(ctx: &mut RunCtx<'_>, workers: Option<usize>) -> Result<Sandbox, StageError> {
    let sandbox = Sandbox::new(workers)?;
    let iso = sandbox.isolation();
    // Loudly, once per process; every manifest records them.
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        for warning in &iso.warnings {
            eprintln!("tw: warning: {warning}");
        }
    });
    if !iso.warnings.is_empty() {
        ctx.note("sandbox_warnings", iso.warnings.clone());
    }
    ctx.note("sandbox", iso.fact());
    Ok(sandbox)
}

/// Record in a stage's manifest how often the sandbox itself failed and a
/// job was run again (0 on a healthy machine).
pub fn note_retries(ctx: &mut RunCtx<'_>, sandbox: &Sandbox) {
    ctx.note("sandbox_retries", sandbox.retries());
}

/// What a grading stage does with a problem it cannot grade: one without
/// tests, or whose tests lack the expected outputs a comparison needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Ungradable {
    /// Stop with an error that names the problems (the default: a program
    /// graded against nothing passes or fails for no reason).
    #[default]
    Fail,
    /// Leave them out of every output and count them in the manifest.
    Skip,
}

/// How a test input (or expected output) cell is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CellFormat {
    /// JSON: a list of arguments (`[[3, 5], 2]`), as a list cell or JSON text.
    #[default]
    Json,
    /// Python literal source: the arguments as written in a call
    /// (`[3, 5], 2`), evaluated with `ast.literal_eval` in the sandbox.
    Python,
    /// The sandbox's tagged JSON (`load_benchmark`'s tests): exact for
    /// tuples, sets, dicts with any keys, big ints, NaN and infinities.
    Tagged,
}

/// Program shape and limits shared by the running stages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ProgramMode {
    /// Call `entry_point(*args)`.
    Function,
    /// Run as `__main__` with the input on stdin.
    Stdio,
}

impl ProgramMode {
    pub fn sandbox_mode(&self) -> Mode {
        match self {
            ProgramMode::Function => Mode::Function,
            ProgramMode::Stdio => Mode::Stdio,
        }
    }

    /// The comparator when a stage's params name none.
    pub fn default_comparator(&self) -> sandbox::Comparator {
        match self {
            ProgramMode::Function => sandbox::Comparator::Exact,
            ProgramMode::Stdio => sandbox::Comparator::LcbStdio,
        }
    }
}

/// How a stage reads its tests table: which columns, in which formats.
pub struct TestColumns<'a> {
    pub problem: &'a str,
    pub input: &'a str,
    pub input_format: CellFormat,
    pub expected: Option<&'a str>,
    pub expected_format: CellFormat,
}

/// How a benchmark grades one problem's tests, as `load_benchmark` writes
/// it on each test row: the comparator and float tolerance of EvalPlus
/// files (`comparator`, `atol`, `dataset`), and for benchmarks graded by a
/// script of their own (HumanEval's `check`, MBPP's asserts) one more row
/// whose `check` column holds that script. Tables without these columns
/// grade as a stage's params say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GradingRules {
    pub comparator: Option<sandbox::Comparator>,
    pub atol: f64,
    /// EvalPlus's special oracles are per dataset (`humaneval`, `mbpp`).
    pub dataset: Option<String>,
    /// The benchmark's own check, run after the program as one script; when
    /// present it, not the per-call tests, decides whether a program passes.
    pub check: Option<String>,
}

impl GradingRules {
    /// Set how a job compares outputs: a stage's own `comparator` / `atol`
    /// params where given, else the benchmark's rules, else `default`.
    pub fn apply(
        &self,
        job: &mut sandbox::Job,
        comparator: Option<sandbox::Comparator>,
        atol: f64,
        default: sandbox::Comparator,
    ) {
        job.comparator = comparator.or(self.comparator).unwrap_or(default);
        job.atol = if atol > 0.0 { atol } else { self.atol };
        job.dataset = self.dataset.clone();
    }
}

/// One problem's tests: its cases with the row each came from (table order,
/// check rows left out) and how the benchmark grades them.
#[derive(Debug, Clone, Default)]
pub struct SuiteRows {
    pub cases: Vec<(usize, TestCase)>,
    pub rules: GradingRules,
}

impl SuiteRows {
    /// Cases that say nothing about the output they expect.
    pub fn without_expected(&self) -> usize {
        self.cases.iter().filter(|(_, c)| !has_expected(c)).count()
    }
}

/// Whether a case carries an expected output in any form.
pub fn has_expected(case: &TestCase) -> bool {
    case.expected.is_some() || case.expected_json.is_some() || case.expected_literal.is_some()
}

/// Each problem's test cases, with the row each came from, in table order,
/// and the grading rules its rows record: built once and shared by every
/// program of the problem.
pub fn test_suites(
    tests: &[Row],
    mode: &ProgramMode,
    columns: &TestColumns<'_>,
) -> Result<std::collections::BTreeMap<String, SuiteRows>, StageError> {
    let mut suites: std::collections::BTreeMap<String, SuiteRows> = Default::default();
    for (i, row) in tests.iter().enumerate() {
        let problem = text(
            row,
            columns.problem,
            &At {
                slot: "tests",
                row: i,
                id: None,
            },
        )?;
        let at = At {
            slot: "tests",
            row: i,
            id: Some(&problem),
        };
        let suite = suites.entry(problem.clone()).or_default();
        read_rules(&mut suite.rules, row, &at)?;
        if row
            .get("check")
            .and_then(Value::as_str)
            .is_some_and(|c| !c.trim().is_empty())
        {
            continue;
        }
        let mut case = test_case(mode, columns.input_format, row, columns.input, &at)?;
        if let Some(expected) = columns.expected {
            set_expected(&mut case, mode, columns.expected_format, row, expected, &at)?;
        }
        suite.cases.push((i, case));
    }
    Ok(suites)
}

/// The grading columns of one test row, merged into its problem's rules.
fn read_rules(rules: &mut GradingRules, row: &Row, at: &At<'_>) -> Result<(), StageError> {
    if let Some(check) = row
        .get("check")
        .and_then(Value::as_str)
        .filter(|c| !c.trim().is_empty())
    {
        rules.check = Some(check.to_string());
    }
    if let Some(name) = row
        .get("comparator")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    {
        let comparator: sandbox::Comparator =
            serde_json::from_value(Value::String(name.to_string())).map_err(|_| {
                at.error(
                    "comparator",
                    format!("`{name}` is not a comparator (exact, evalplus, lcb_stdio, lcb_call, apps_stdio, apps_call)"),
                )
            })?;
        rules.comparator = Some(comparator);
    }
    if let Some(atol) = row.get("atol").and_then(Value::as_f64).filter(|a| *a > 0.0) {
        rules.atol = atol;
    }
    if let Some(dataset) = row
        .get("dataset")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
    {
        rules.dataset = Some(dataset.to_string());
    }
    Ok(())
}

/// Limits for a job from the common `timeout` / `memory_mb` params.
pub fn limits(timeout: f64, memory_mb: u64) -> Limits {
    Limits {
        timeout,
        memory_bytes: memory_mb << 20,
        ..Limits::default()
    }
}

pub fn check_limits(timeout: f64, memory_mb: u64) -> Vec<Problem> {
    let mut problems = Vec::new();
    if timeout.is_nan() || timeout <= 0.0 {
        problems.push(Problem::at(
            "timeout",
            "`timeout` must be a positive number of seconds",
        ));
    }
    if memory_mb < 64 {
        problems.push(
            Problem::at(
                "memory_mb",
                "`memory_mb` below 64 leaves Python unable to start",
            )
            .help("the default is 4096"),
        );
    }
    problems
}

/// The test case for one input cell.
pub fn test_case(
    mode: &ProgramMode,
    format: CellFormat,
    row: &Row,
    column: &str,
    at: &At<'_>,
) -> Result<TestCase, StageError> {
    let cell = row.get(column).cloned().unwrap_or(Value::Null);
    match mode {
        ProgramMode::Stdio => match cell {
            Value::String(s) => Ok(TestCase {
                stdin: Some(s),
                ..TestCase::default()
            }),
            Value::Null => Ok(TestCase {
                stdin: Some(String::new()),
                ..TestCase::default()
            }),
            other => Err(at.error(
                column,
                format!("a stdin input must be text, found {}", kind_of(&other)),
            )),
        },
        ProgramMode::Function => match format {
            CellFormat::Json => {
                let args = json_cell(cell, column, at)?;
                if !args.is_array() {
                    return Err(at.error(
                        column,
                        "function arguments must be a JSON list (`[arg1, arg2]`)",
                    ));
                }
                Ok(TestCase {
                    args_json: Some(args),
                    ..TestCase::default()
                })
            }
            CellFormat::Python => {
                let source = match cell {
                    Value::String(s) => s,
                    other => {
                        return Err(at.error(
                            column,
                            format!("expected Python source text, found {}", kind_of(&other)),
                        ));
                    }
                };
                let trimmed = source.trim();
                let literal = if trimmed.is_empty() {
                    "()".to_string()
                } else {
                    format!("({trimmed},)")
                };
                Ok(TestCase {
                    args_literal: Some(literal),
                    ..TestCase::default()
                })
            }
            CellFormat::Tagged => {
                let args = json_cell(cell, column, at)?;
                if pyvalue::sequence_items(&args).is_none() {
                    return Err(at.error(
                        column,
                        "function arguments must be a tagged JSON list (`[arg1, arg2]`)",
                    ));
                }
                Ok(TestCase {
                    args: Some(args),
                    ..TestCase::default()
                })
            }
        },
    }
}

/// Fill `case.expected*` from an expected-output cell.
pub fn set_expected(
    case: &mut TestCase,
    mode: &ProgramMode,
    format: CellFormat,
    row: &Row,
    column: &str,
    at: &At<'_>,
) -> Result<(), StageError> {
    let cell = row.get(column).cloned().unwrap_or(Value::Null);
    if matches!(mode, ProgramMode::Stdio) {
        return match cell {
            Value::String(s) => {
                case.expected = Some(Value::String(s).into());
                Ok(())
            }
            other => Err(at.error(
                column,
                format!("an expected stdout must be text, found {}", kind_of(&other)),
            )),
        };
    }
    match format {
        CellFormat::Json => case.expected_json = Some(json_cell(cell, column, at)?),
        CellFormat::Python => match cell {
            Value::String(s) => case.expected_literal = Some(s),
            other => {
                return Err(at.error(
                    column,
                    format!("expected Python source text, found {}", kind_of(&other)),
                ));
            }
        },
        // A missing cell is no expectation; Python's `None` is the text `null`.
        CellFormat::Tagged => match cell {
            Value::Null => {}
            cell => case.expected = Some(json_cell(cell, column, at)?.into()),
        },
    }
    Ok(())
}

/// A JSON cell: list/number cells as they are; text is parsed as JSON.
fn json_cell(cell: Value, column: &str, at: &At<'_>) -> Result<Value, StageError> {
    match cell {
        Value::String(s) => serde_json::from_str(&s)
            .map_err(|e| at.error(column, format!("not valid JSON ({e}): {}", preview(&s)))),
        Value::Null => Err(at.error(column, "is empty")),
        other => Ok(other),
    }
}

fn preview(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, Value)]) -> Row {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn json_text_cells_become_argument_lists() {
        let at = At {
            slot: "programs",
            row: 3,
            id: Some("t/3"),
        };
        let r = row(&[("input", Value::String("[[1, 2], 3]".into()))]);
        let case = test_case(&ProgramMode::Function, CellFormat::Json, &r, "input", &at).unwrap();
        assert_eq!(case.args_json, Some(serde_json::json!([[1, 2], 3])));
        let bad = row(&[("input", Value::String("[1, 2".into()))]);
        let err = test_case(&ProgramMode::Function, CellFormat::Json, &bad, "input", &at)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row 3 (t/3), column `input`: not valid JSON"),
            "{err}"
        );
        let scalar = row(&[("input", serde_json::json!(5))]);
        let err = test_case(
            &ProgramMode::Function,
            CellFormat::Json,
            &scalar,
            "input",
            &at,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("must be a JSON list"), "{err}");
    }

    #[test]
    fn python_cells_are_wrapped_as_a_tuple_literal() {
        let at = At {
            slot: "s",
            row: 0,
            id: None,
        };
        let r = row(&[("input", Value::String("[3, 5], 'a'".into()))]);
        let case = test_case(&ProgramMode::Function, CellFormat::Python, &r, "input", &at).unwrap();
        assert_eq!(case.args_literal.as_deref(), Some("([3, 5], 'a',)"));
        let empty = row(&[("input", Value::String("  ".into()))]);
        let case = test_case(
            &ProgramMode::Function,
            CellFormat::Python,
            &empty,
            "input",
            &at,
        )
        .unwrap();
        assert_eq!(case.args_literal.as_deref(), Some("()"));
    }
}
