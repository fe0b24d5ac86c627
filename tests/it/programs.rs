//! The stages that run programs: `execute` (candidates x tests) and `trace`
//! (raw tracer events), end to end through specs, with golden outputs.

use crate::harness::Project;

const TRACE_SPEC: &str = r#"
experiment: traces
stages:
  programs:
    kind: load
    params: { path: programs.jsonl }
  traced:
    kind: trace
    inputs: { programs: programs.rows }
    params: { max_repr: 40, keep: [note] }
"#;

/// One row per (program, input): a loop, a crash, and a recursive call.
const PROGRAMS: &str = r#"{"task_id": "loop", "note": "counts", "entry_point": "count_above", "program": "def count_above(nums, k):\n    total = 0\n    for x in nums:\n        if x > k:\n            total += 1\n    return total\n", "input": "[[3, 5, 1], 2]"}
{"task_id": "crash", "note": "divides by zero", "entry_point": "mean", "program": "def mean(xs):\n    s = sum(xs)\n    return s / len(xs)\n", "input": "[[]]"}
{"task_id": "class", "note": null, "entry_point": "Solution.fact", "program": "class Solution:\n    def fact(self, n):\n        acc = 1\n        while n > 1:\n            acc, n = acc * n, n - 1\n        return acc\n", "input": "[4]"}
"#;

fn export(p: &Project, spec: &str, target: &str) -> String {
    let ran = p.tw(&["export", spec, target, "--format", "jsonl"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    ran.stdout
}

#[test]
fn trace_stage_writes_golden_events_and_runs() {
    let p = Project::new();
    p.write("spec.yaml", TRACE_SPEC)
        .write("programs.jsonl", PROGRAMS);
    p.run_ok("spec.yaml");
    insta::assert_snapshot!("trace_runs", export(&p, "spec.yaml", "traced.runs"));
    insta::assert_snapshot!("trace_events", export(&p, "spec.yaml", "traced.events"));
    // Traces are deterministic: forcing a rerun writes the same bytes, so the
    // object key and content are unchanged.
    let before = export(&p, "spec.yaml", "traced.events");
    let ran = p.tw(&["run", "spec.yaml", "--force", "traced"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(export(&p, "spec.yaml", "traced.events"), before);
}

const EXECUTE_SPEC: &str = r#"
experiment: verify
stages:
  candidates:
    kind: load
    params: { path: candidates.jsonl }
  tests:
    kind: load
    params: { path: tests.jsonl }
  verify:
    kind: execute
    inputs: { candidates: candidates.rows, tests: tests.rows }
    params: { candidate_id: sample, timeout: 1, on_ungradable: skip }
"#;

const CANDIDATES: &str = r#"{"sample": "add-ok", "task_id": "add", "entry_point": "add", "program": "def add(a, b):\n    return a + b\n"}
{"sample": "add-off-by-one", "task_id": "add", "entry_point": "add", "program": "def add(a, b):\n    return a + b + 1\n"}
{"sample": "add-hangs", "task_id": "add", "entry_point": "add", "program": "def add(a, b):\n    while True:\n        pass\n"}
{"sample": "add-syntax", "task_id": "add", "entry_point": "add", "program": "def add(a, b)\n    return a + b\n"}
{"sample": "pairs-ok", "task_id": "pairs", "entry_point": "pairs", "program": "def pairs(d):\n    return [list(kv) for kv in sorted(d.items())]\n"}
{"sample": "pairs-tuples", "task_id": "pairs", "entry_point": "pairs", "program": "def pairs(d):\n    return sorted(d.items())\n"}
{"sample": "no-tests", "task_id": "orphan", "entry_point": "f", "program": "def f():\n    return 1\n"}
"#;

const TESTS: &str = r#"{"task_id": "add", "input": "[1, 2]", "expected": "3"}
{"task_id": "add", "input": "[[1], [2]]", "expected": "[1, 2]"}
{"task_id": "pairs", "input": "[{\"b\": 2, \"a\": 1}]", "expected": "[[\"a\", 1], [\"b\", 2]]"}
"#;

#[test]
fn execute_runs_every_candidate_on_its_problems_tests() {
    let p = Project::new();
    p.write("spec.yaml", EXECUTE_SPEC)
        .write("candidates.jsonl", CANDIDATES)
        .write("tests.jsonl", TESTS);
    p.run_ok("spec.yaml");
    // The candidate whose problem has no tests is left out, and counted.
    insta::assert_snapshot!("execute_summary", export(&p, "spec.yaml", "verify.summary"));
    let manifests = p.manifests_text();
    assert!(
        manifests.contains("\"skipped_candidates\": 1"),
        "{manifests}"
    );
    assert!(manifests.contains("orphan: no tests"), "{manifests}");
    // `exact` is Python `==`: tuples are not the JSON lists (use `lcb_call` to equate them).
    insta::assert_snapshot!("execute_results", export(&p, "spec.yaml", "verify.results"));
    // A rerun executes nothing.
    let statuses = p.statuses("spec.yaml");
    assert!(statuses.iter().all(|(_, s)| s == "cached"), "{statuses:?}");
}

#[test]
fn execute_takes_python_literal_tests_and_stdin_programs() {
    let p = Project::new();
    p.write(
        "spec.yaml",
        r#"
experiment: literal
stages:
  candidates:
    kind: load
    params: { path: candidates.jsonl }
  tests:
    kind: load
    params: { path: tests.jsonl }
  calls:
    kind: execute
    inputs: { candidates: candidates.rows, tests: tests.rows }
    params: { input_format: python, expected_format: python }
  stdin_tests:
    kind: load
    params: { path: stdin_tests.jsonl }
  scripts:
    kind: load
    params: { path: scripts.jsonl }
  stdio:
    kind: execute
    inputs: { candidates: scripts.rows, tests: stdin_tests.rows }
    params: { mode: stdio }
"#,
    )
    .write(
        "candidates.jsonl",
        r#"{"task_id": "f", "entry_point": "f", "program": "def f(xs, t):\n    return (len(xs), t)\n"}
"#,
    )
    .write(
        "tests.jsonl",
        r#"{"task_id": "f", "input": "[1, 2], 'a'", "expected": "(2, 'a')"}
{"task_id": "f", "input": "{3}, None", "expected": "(1, None)"}
"#,
    )
    .write(
        "scripts.jsonl",
        r#"{"task_id": "sum", "program": "a, b = map(int, input().split())\nprint(a + b)\n"}
"#,
    )
    .write(
        "stdin_tests.jsonl",
        r#"{"task_id": "sum", "input": "2 3\n", "expected": "5"}
{"task_id": "sum", "input": "1 1\n", "expected": "3\n"}
"#,
    );
    p.run_ok("spec.yaml");
    let calls = export(&p, "spec.yaml", "calls.summary");
    assert!(
        calls.contains(r#""tests":2,"passed":2,"pass":true"#),
        "{calls}"
    );
    let stdio = export(&p, "spec.yaml", "stdio.results");
    let verdicts: Vec<&str> = stdio
        .lines()
        .map(|l| {
            if l.contains("\"pass\"") {
                "pass"
            } else {
                "other"
            }
        })
        .collect();
    assert_eq!(verdicts, ["pass", "other"], "{stdio}");
}

#[test]
fn a_missing_column_or_malformed_cell_names_the_row() {
    let p = Project::new();
    p.write("spec.yaml", EXECUTE_SPEC)
        .write("candidates.jsonl", CANDIDATES)
        .write(
            "tests.jsonl",
            "{\"task_id\": \"add\", \"input\": \"[1, 2]\", \"expected\": \"3\"}\n{\"task_id\": \"add\", \"input\": \"[1, 2\", \"expected\": \"3\"}\n",
        );
    let ran = p.tw(&["run", "spec.yaml"]);
    assert_eq!(ran.code, 1);
    assert!(
        ran.stderr
            .contains("input `tests`: row 1 (add), column `input`: not valid JSON"),
        "{}",
        ran.stderr
    );
    // The loads before it are kept.
    let statuses = p.statuses("spec.yaml");
    let map = crate::harness::status_map(&statuses);
    assert_eq!(
        (map["candidates"], map["tests"], map["verify"]),
        ("cached", "cached", "run")
    );

    p.write(
        "tests.jsonl",
        "{\"task_id\": \"add\", \"args\": \"[1, 2]\"}\n",
    );
    let ran = p.tw(&["run", "spec.yaml"]);
    assert_eq!(ran.code, 1);
    assert!(
        ran.stderr.contains(
            "input `tests`: no column `input` (named by param `input`); columns are: task_id, args"
        ),
        "{}",
        ran.stderr
    );
}
