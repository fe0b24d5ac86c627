//! Shared by the strategy stages (`generate`, `sequential_scaling`,
//! `parallel_scaling`): tasks with public and private tests, prompt
//! templates, reading programs out of replies, running programs on a suite,
//! test feedback with the trace of a failing run, and the selection rules
//! with the two ways of scoring them.
//!
//! Scoring is done two ways, always both, always labelled:
//! - **honest**: the program the strategy selects without private tests is
//!   run on the private tests (what a user of the method would get);
//! - **oracle**: any of the N candidates passes the private tests (pass@N),
//!   which is what the seed reported as "selecting the best candidate".

use crate::api::{FileDep, PlanEnv, Problem, RunCtx, StageError};
use crate::llm::{Message, Prompt, Request, Sampling};
use crate::programs::{self, CellFormat, ProgramMode, Row, TestColumns, nonempty_text};
use crate::represent::{RenderRequest, RepresentParams, TraceRenderer};
use crate::sandbox::{Comparator, Job, JobReport, Sandbox, TestCase, TraceSettings, Verdict};
use crate::tracemodel::RunRecord;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// One problem with its tests split into what the model may see and what grades it.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub row: Row,
    pub mode: ProgramMode,
    pub entry_point: Option<String>,
    /// Shown to the model and used to select.
    pub public: Vec<TestCase>,
    /// Never shown; grades the final program.
    pub private: Vec<TestCase>,
    pub atol: f64,
}

/// How a stage splits each problem's tests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TestSplit {
    /// Tests whose `public` column is true are public; a problem with none
    /// uses its first `public_count` tests as public instead.
    #[serde(default = "default_public_count")]
    pub public_count: usize,
    /// Grade on every test, public ones included (HumanEval's harness does),
    /// rather than on the private ones only.
    #[serde(default)]
    pub grade_on_all: bool,
}

impl Default for TestSplit {
    fn default() -> Self {
        TestSplit {
            public_count: default_public_count(),
            grade_on_all: false,
        }
    }
}

fn default_public_count() -> usize {
    1
}

/// Read `problems` and `tests` (the outputs of `load_benchmark`) into tasks.
pub fn load_tasks(ctx: &RunCtx<'_>, split: &TestSplit) -> Result<Vec<Task>, StageError> {
    let problems = crate::artifact::table_to_json_rows(&ctx.input("problems")?)?;
    let tests = crate::artifact::table_to_json_rows(&ctx.input("tests")?)?;
    programs::require_column(&problems, "problems", "task_id", "task_id")?;
    let mut suites: BTreeMap<String, Vec<(usize, TestCase)>> = BTreeMap::new();
    for mode in [ProgramMode::Function, ProgramMode::Stdio] {
        let ids: std::collections::BTreeSet<String> = problems
            .iter()
            .filter(|r| mode_of(r) == mode)
            .filter_map(|r| nonempty_text(r, "task_id"))
            .collect();
        let rows: Vec<Row> = tests
            .iter()
            .filter(|t| nonempty_text(t, "task_id").is_some_and(|id| ids.contains(&id)))
            .cloned()
            .collect();
        let columns = TestColumns {
            problem: "task_id",
            input: "input",
            input_format: CellFormat::Tagged,
            expected: Some("expected"),
            expected_format: CellFormat::Tagged,
        };
        for (id, cases) in programs::test_suites(&rows, &mode, &columns)? {
            let public_flags: Vec<(usize, TestCase)> = cases
                .into_iter()
                .map(|(i, c)| {
                    (
                        usize::from(rows[i].get("public").and_then(Value::as_bool) == Some(true)),
                        c,
                    )
                })
                .collect();
            suites.insert(id, public_flags);
        }
    }
    let mut out = Vec::with_capacity(problems.len());
    for (i, row) in problems.into_iter().enumerate() {
        let mut task = task_from_row(row, i)?;
        let cases = suites.remove(&task.id).unwrap_or_default();
        let any_public = cases.iter().any(|(p, _)| *p == 1);
        let mut public = Vec::new();
        let mut private = Vec::new();
        for (k, (flag, case)) in cases.into_iter().enumerate() {
            let is_public = if any_public {
                flag == 1
            } else {
                k < split.public_count
            };
            if is_public {
                if split.grade_on_all {
                    private.push(case.clone());
                }
                public.push(case);
            } else {
                private.push(case);
            }
        }
        if task.mode == ProgramMode::Function && task.entry_point.is_none() {
            return Err(StageError::BadInput {
                slot: "problems".into(),
                message: format!(
                    "row {i} ({}): a function-mode problem needs `entry_point`",
                    task.id
                ),
            });
        }
        task.public = public;
        task.private = private;
        out.push(task);
    }
    Ok(out)
}

fn mode_of(row: &Row) -> ProgramMode {
    match nonempty_text(row, "mode").as_deref() {
        Some("stdio") => ProgramMode::Stdio,
        _ => ProgramMode::Function,
    }
}

/// Problem row `i` as a task without tests (generation needs none).
pub fn task_from_row(row: Row, i: usize) -> Result<Task, StageError> {
    let id = nonempty_text(&row, "task_id").ok_or_else(|| StageError::BadInput {
        slot: "problems".into(),
        message: format!("row {i}: `task_id` is empty"),
    })?;
    Ok(Task {
        id,
        mode: mode_of(&row),
        entry_point: nonempty_text(&row, "entry_point"),
        atol: row.get("atol").and_then(Value::as_f64).unwrap_or(0.0),
        row,
        public: Vec::new(),
        private: Vec::new(),
    })
}

/// A chat-prompt template (`templates/prompts/*.j2`), loaded once.
pub struct PromptTemplate {
    env: minijinja::Environment<'static>,
    name: String,
    path: PathBuf,
    vars: Value,
}

impl PromptTemplate {
    pub fn open(
        ctx: &RunCtx<'_>,
        template: &str,
        vars: &BTreeMap<String, Value>,
    ) -> Result<Self, StageError> {
        let path = ctx.resolve(template);
        let (env, name) = crate::render::load_templates(&path)?;
        Ok(PromptTemplate {
            env,
            name,
            path,
            vars: Value::Object(vars.clone().into_iter().collect()),
        })
    }

    /// Render with the task's row, `question` (its prompt), `is_stdin`, and
    /// `extra` columns; the template prints chat messages as JSON.
    pub fn messages(
        &self,
        task: &Task,
        extra: &Map<String, Value>,
    ) -> Result<Vec<Message>, StageError> {
        let mut row = task.row.clone();
        row.entry("question".to_string())
            .or_insert_with(|| task.row.get("prompt").cloned().unwrap_or(Value::Null));
        row.insert(
            "is_stdin".into(),
            Value::Bool(task.mode == ProgramMode::Stdio),
        );
        for (k, v) in extra {
            row.insert(k.clone(), v.clone());
        }
        let value = crate::templating::json_value(&Value::Object(row));
        let vars = crate::templating::json_value(&self.vars);
        let text = self
            .env
            .get_template(&self.name)
            .and_then(|t| t.render(minijinja::context! { vars => vars, ..value }))
            .map_err(|e| StageError::Template {
                path: self.path.clone(),
                message: format!("{}: {}", task.id, crate::render::describe(&e)),
            })?;
        serde_json::from_str(text.trim()).map_err(|e| StageError::Template {
            path: self.path.clone(),
            message: format!(
                "{}: the template must print chat messages as JSON: {e}",
                task.id
            ),
        })
    }
}

pub fn template_deps(param: &str, template: &str, env: &PlanEnv) -> Vec<FileDep> {
    crate::render::template_deps(template, env)
        .into_iter()
        .map(|mut d| {
            d.param = param.into();
            d
        })
        .collect()
}

/// A sample's seed: fixed by (seed, task, sample, round), whatever else runs.
pub fn sample_seed(seed: u64, task: &str, sample: usize, round: usize) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(task.as_bytes());
    h.update(&(sample as u64).to_le_bytes());
    h.update(&(round as u64).to_le_bytes());
    let bytes: [u8; 8] = h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]);
    u64::from_le_bytes(bytes)
}

/// Sampling settings shared by the strategy stages.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    #[serde(default = "default_top_p")]
    pub top_p: f64,
    #[serde(default)]
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_tokens: default_max_tokens(),
            top_p: default_top_p(),
            stop: Vec::new(),
        }
    }
}

fn default_max_tokens() -> usize {
    512
}
fn default_top_p() -> f64 {
    1.0
}

impl SamplingParams {
    pub fn request(&self, messages: Vec<Message>, temperature: f64, seed: u64) -> Request {
        Request {
            prompt: Prompt::Chat(messages),
            sampling: Sampling {
                max_tokens: self.max_tokens,
                temperature,
                top_p: self.top_p,
                stop: self.stop.clone(),
                seed,
            },
        }
    }

    pub fn problems(&self, temperature: f64) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.max_tokens == 0 {
            out.push(Problem::at("sampling.max_tokens", "must be at least 1"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            out.push(Problem::at("sampling.top_p", "must be in (0, 1]"));
        }
        if !(temperature >= 0.0 && temperature.is_finite()) {
            out.push(Problem::at(
                "temperature",
                "must be zero (greedy) or positive",
            ));
        }
        out
    }
}

/// A reply read as DSPy output fields (`[[ ## code ## ]]`), or as plain text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    pub reasoning: String,
    pub code: String,
}

/// The `reasoning` and the program of a reply. Code is the content of the
/// `code` field when the reply has DSPy markers, else the whole reply; in
/// both, the last complete fenced block wins and an unterminated fence keeps
/// its whole body (never its first character, the seed's bug).
pub fn parse_reply(text: &str) -> Reply {
    let field = |name: &str| -> Option<String> {
        let marker = format!("[[ ## {name} ## ]]");
        let start = text.find(&marker)? + marker.len();
        let rest = &text[start..];
        let end = rest.find("[[ ##").unwrap_or(rest.len());
        Some(rest[..end].trim().to_string())
    };
    let code_text = field("code").unwrap_or_else(|| text.to_string());
    Reply {
        reasoning: field("reasoning").unwrap_or_default(),
        code: crate::reply::extract_code(&code_text, "python"),
    }
}

/// The program to run for a reply: the code, or, for a function task whose
/// code lacks the entry point (a bare body), the prompt followed by the code.
pub fn program_for(task: &Task, code: &str) -> String {
    match (&task.mode, &task.entry_point) {
        (ProgramMode::Function, Some(ep)) if !code.contains(&format!("def {ep}")) => {
            let prompt = nonempty_text(&task.row, "prompt").unwrap_or_default();
            format!("{prompt}{code}")
        }
        _ => code.to_string(),
    }
}

/// How programs run: limits and the trace representation for feedback.
pub struct Runner {
    pub sandbox: Sandbox,
    pub timeout: f64,
    pub memory_mb: u64,
    pub trace: Option<(TraceRenderer, RepresentParams)>,
    pub comparator: Option<Comparator>,
}

/// What one program did on one suite.
#[derive(Debug, Clone, Default)]
pub struct SuiteResult {
    pub passed: usize,
    pub total: usize,
    pub reports: Vec<crate::sandbox::TestReport>,
}

impl SuiteResult {
    pub fn all_passed(&self) -> bool {
        self.total > 0 && self.passed == self.total
    }

    pub fn accuracy(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.passed as f64 / self.total as f64
        }
    }
}

/// Which suite of a task to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    Public,
    Private,
}

impl Runner {
    /// A sandbox for a stage's runs; `representation` traces public runs.
    pub fn open(
        ctx: &mut RunCtx<'_>,
        timeout: f64,
        memory_mb: u64,
        representation: &Option<String>,
        workers: Option<usize>,
    ) -> Result<Runner, StageError> {
        Ok(Runner {
            sandbox: programs::open_sandbox(ctx, workers)?,
            timeout,
            memory_mb,
            trace: open_representation(ctx, representation)?,
            comparator: None,
        })
    }

    fn job(
        &self,
        task: &Task,
        program: &str,
        tests: Vec<TestCase>,
        traced: bool,
        fast: bool,
    ) -> Job {
        let mut job = Job::new(task.mode.sandbox_mode(), program.to_string());
        job.entry_point = task.entry_point.clone();
        job.comparator = self.comparator.unwrap_or_else(|| {
            if task.atol > 0.0 {
                Comparator::Evalplus
            } else {
                task.mode.default_comparator()
            }
        });
        job.atol = task.atol;
        job.tests = tests;
        job.limits = programs::limits(self.timeout, self.memory_mb);
        job.stop_at_first_failure = fast;
        if traced {
            job.trace = Some(TraceSettings::default());
        }
        job
    }

    /// Run each `(task index, program)` on a suite. Duplicate programs of a
    /// task run once. Public runs are traced when a representation is set.
    pub fn run(
        &self,
        tasks: &[Task],
        programs: &[(usize, String)],
        suite: Suite,
    ) -> Vec<SuiteResult> {
        let mut unique: HashMap<(usize, &str), usize> = HashMap::new();
        let mut jobs = Vec::new();
        let mut slot = Vec::with_capacity(programs.len());
        for (t, program) in programs {
            let next = jobs.len();
            let j = *unique.entry((*t, program.as_str())).or_insert(next);
            if j == next {
                let task = &tasks[*t];
                let (tests, traced, fast) = match suite {
                    Suite::Public => (task.public.clone(), self.trace.is_some(), false),
                    Suite::Private => (task.private.clone(), false, true),
                };
                jobs.push(self.job(task, program, tests, traced, fast));
            }
            slot.push(j);
        }
        let reports = if jobs.iter().any(|j| !j.tests.is_empty()) {
            self.sandbox.run_all(&jobs, &|| {})
        } else {
            jobs.iter()
                .map(|_| JobReport {
                    results: Vec::new(),
                    wall: 0.0,
                })
                .collect()
        };
        let results: Vec<SuiteResult> = reports
            .into_iter()
            .zip(&jobs)
            .map(|(r, job)| SuiteResult {
                passed: r
                    .results
                    .iter()
                    .filter(|t| t.verdict == Verdict::Pass)
                    .count(),
                total: job.tests.len(),
                reports: r.results,
            })
            .collect();
        slot.into_iter().map(|j| results[j].clone()).collect()
    }

    /// Run programs on inputs without expected outputs; each test's output as text.
    pub fn outputs(
        &self,
        task: &Task,
        programs: &[String],
        inputs: &[TestCase],
    ) -> Vec<Vec<String>> {
        let jobs: Vec<Job> = programs
            .iter()
            .map(|p| self.job(task, p, inputs.to_vec(), false, false))
            .collect();
        if inputs.is_empty() {
            return programs.iter().map(|_| Vec::new()).collect();
        }
        self.sandbox
            .run_all(&jobs, &|| {})
            .into_iter()
            .map(|r| r.results.iter().map(|t| output_text(task, t)).collect())
            .collect()
    }

    /// The trace representation of a run, when one is configured and traced.
    pub fn trace_text(
        &self,
        task: &Task,
        program: &str,
        report: &crate::sandbox::TestReport,
    ) -> Option<String> {
        let (renderer, params) = self.trace.as_ref()?;
        let trace = report.parsed_trace().ok().flatten()?;
        let record = RunRecord {
            run: 0,
            verdict: report.verdict.as_str().to_string(),
            passed: Some(report.verdict == Verdict::Pass),
            input: report.input.clone(),
            input_after: report.input_after.clone(),
            result: report.output.clone(),
            expected: report.expected.clone(),
            exc_type: report.exc_type.clone(),
            exc_message: report.exc_message.clone(),
            truncated: trace.truncated.clone(),
            events: trace.events,
        };
        renderer
            .render(&RenderRequest {
                id: &task.id,
                program,
                runs: std::slice::from_ref(&record),
                params,
            })
            .ok()
            .map(|t| stable_text(&t))
    }
}

/// Text a model is shown, with what differs between runs of the same program
/// removed: object addresses (`<function f at 0x7f3a...>`) become `0x...`.
/// Without this a prompt built from a run could not be replayed from the ledger.
pub fn stable_text(text: &str) -> String {
    static ADDRESS: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = ADDRESS.get_or_init(|| regex::Regex::new(r"0x[0-9a-fA-F]{6,}").expect("valid regex"));
    re.replace_all(text, "0x...").into_owned()
}

/// What a program printed or returned on a test, as the model is shown it.
pub fn output_text(task: &Task, t: &crate::sandbox::TestReport) -> String {
    stable_text(&raw_output_text(task, t))
}

fn raw_output_text(task: &Task, t: &crate::sandbox::TestReport) -> String {
    match t.verdict {
        Verdict::Pass | Verdict::WrongAnswer => match task.mode {
            ProgramMode::Function => t.output_repr.clone().unwrap_or_default(),
            ProgramMode::Stdio => t
                .output
                .as_ref()
                .and_then(|o| o.as_str().map(String::from))
                .unwrap_or_default(),
        },
        other => format!(
            "{}: {}: {}",
            other.as_str(),
            t.exc_type.clone().unwrap_or_default(),
            t.exc_message.clone().unwrap_or_default()
        ),
    }
}

/// A test's input as the model is shown it.
pub fn input_text(task: &Task, case: &TestCase) -> String {
    match task.mode {
        ProgramMode::Stdio => case.stdin.clone().unwrap_or_default(),
        ProgramMode::Function => {
            if let Some(a) = &case.args {
                crate::pyvalue::args_text(a)
            } else if let Some(a) = &case.args_json {
                crate::pyvalue::args_text(&crate::pyvalue::tagged_from_json(a))
            } else {
                case.args_literal.clone().unwrap_or_default()
            }
        }
    }
}

fn expected_text(task: &Task, case: &TestCase) -> String {
    match (&task.mode, &case.expected, &case.expected_json) {
        (ProgramMode::Stdio, Some(Value::String(s)), _) => s.clone(),
        (_, Some(v), _) => crate::pyvalue::repr(v),
        (_, None, Some(v)) => crate::pyvalue::repr(&crate::pyvalue::tagged_from_json(v)),
        _ => case.expected_literal.clone().unwrap_or_default(),
    }
}

/// The feedback of one run on the public tests, as `_feedback.j2` reads it:
/// `{input, expected, output, passed, trace?}` per test; the first failing
/// test carries the trace representation of its run.
pub fn feedback(runner: &Runner, task: &Task, program: &str, result: &SuiteResult) -> Vec<Value> {
    let mut traced_one = false;
    task.public
        .iter()
        .zip(&result.reports)
        .map(|(case, report)| {
            let passed = report.verdict == Verdict::Pass;
            let mut m = Map::new();
            m.insert("input".into(), Value::String(input_text(task, case)));
            m.insert("expected".into(), Value::String(expected_text(task, case)));
            m.insert("output".into(), Value::String(output_text(task, report)));
            m.insert("passed".into(), Value::Bool(passed));
            if !passed && !traced_one {
                traced_one = true;
                if let Some(t) = runner.trace_text(task, program, report) {
                    m.insert("trace".into(), Value::String(format!("\n{t}")));
                }
            }
            Value::Object(m)
        })
        .collect()
}

/// A representation param: a trace template, or `none`.
pub fn open_representation(
    ctx: &RunCtx<'_>,
    representation: &Option<String>,
) -> Result<Option<(TraceRenderer, RepresentParams)>, StageError> {
    let Some(path) = representation else {
        return Ok(None);
    };
    let renderer = TraceRenderer::from_file(&ctx.resolve(path))?;
    let params: RepresentParams =
        serde_json::from_value(serde_json::json!({ "template": path }))
            .map_err(|e| StageError::failed(format!("representation params: {e}")))?;
    Ok(Some((renderer, params)))
}

/// The name a representation is reported under: its template's file stem, or `none`.
pub fn representation_name(representation: &Option<String>) -> String {
    representation
        .as_ref()
        .and_then(|p| {
            std::path::Path::new(p)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "none".into())
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
    let text = parse_reply_field(reply, "tests");
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

fn parse_reply_field(reply: &str, name: &str) -> String {
    let marker = format!("[[ ## {name} ## ]]");
    match reply.find(&marker) {
        Some(start) => {
            let rest = &reply[start + marker.len()..];
            rest[..rest.find("[[ ##").unwrap_or(rest.len())].to_string()
        }
        None => reply.to_string(),
    }
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

/// A judge's answer: the integer in its `field` (DSPy marker) or the reply's first integer.
pub fn parse_index(reply: &str, field: &str) -> Option<i64> {
    static INTEGER: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = INTEGER.get_or_init(|| regex::Regex::new(r"-?\d+").expect("valid regex"));
    re.find(&parse_reply_field(reply, field))
        .and_then(|m| m.as_str().parse().ok())
}

/// Constant label columns (`labels: {model: smollm2}`) added to a table's rows.
pub fn add_labels(rows: &mut [Row], labels: &BTreeMap<String, String>) {
    for row in rows {
        for (k, v) in labels {
            row.insert(k.clone(), Value::String(v.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn addresses_are_masked_so_prompts_replay() {
        assert_eq!(
            stable_text("<function f at 0x7f3a2b1c9d30> and 0x10"),
            "<function f at 0x...> and 0x10"
        );
    }

    #[test]
    fn replies_give_their_code_field_or_their_last_block() {
        let r = parse_reply(
            "[[ ## reasoning ## ]]\nloop\n\n[[ ## code ## ]]\n```python\ndef f():\n    return 1\n```\n\n[[ ## completed ## ]]",
        );
        assert_eq!(r.reasoning, "loop");
        assert_eq!(r.code, "def f():\n    return 1");
        // An unterminated fence keeps its body (the seed kept its first character).
        assert_eq!(
            parse_reply("```python\ndef g(): pass").code,
            "def g(): pass"
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
            parse_index(
                "[[ ## best_idx ## ]]\n 2 \n[[ ## completed ## ]]",
                "best_idx"
            ),
            Some(2)
        );
        assert_eq!(parse_index("no idea", "best_idx"), None);
    }
}
