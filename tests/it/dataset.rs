//! Dataset construction: benchmark loaders on real files and fixtures, and a
//! small HumanEval + CodeGen run of the whole chain, whose exported pairs are
//! re-verified: each failing test must fail on the buggy program and pass on
//! the patch when run again by an independent `execute` stage.

use crate::harness::{Project, status_map};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn benchmarks() -> Option<PathBuf> {
    tw_stages::testing::shared_data("TW_BENCHMARKS", "benchmarks", "HumanEval.jsonl.gz")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn export(p: &Project, spec: &str, target: &str) -> Vec<serde_json::Map<String, Value>> {
    let ran = p.tw(&["export", spec, target, "--format", "jsonl"]);
    assert_eq!(ran.code, 0, "export {target}: {}", ran.stderr);
    ran.stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap()
                .as_object()
                .unwrap()
                .clone()
        })
        .collect()
}

#[test]
#[ignore = "needs the benchmark data: ../shared/data or TW_BENCHMARKS (TW_REQUIRE_DATA)"]
fn humaneval_samples_become_repair_data_whose_failing_tests_really_separate() {
    let Some(data) = benchmarks() else { return };
    let p = Project::new();
    let spec = format!(
        r#"
experiment: mini_repair
matrix:
  repr: [next, concise2]
stages:
  humaneval:
    kind: load_benchmark
    params: {{ benchmark: humaneval, path: {data}/HumanEval.jsonl.gz, limit: 12 }}
  samples:
    kind: load_samples
    inputs: {{ problems: humaneval.problems }}
    params: {{ path: {data}/humaneval_codegen16b_100samples.jsonl, format: codet, per_problem: 12, on_error: skip }}
  verify:
    kind: execute
    inputs: {{ candidates: samples.candidates, tests: humaneval.tests }}
    params: {{ candidate_id: candidate, input_format: tagged, expected_format: tagged }}
  pairs:
    kind: mine_pairs
    inputs: {{ candidates: samples.candidates, verdicts: verify.summary, problems: humaneval.problems }}
    params: {{ threshold: 0.75, seed: 1 }}
  failing:
    kind: failing_tests
    inputs: {{ pairs: pairs.pairs, tests: humaneval.tests }}
    params: {{ per_pair: 1, seed: 1 }}
  traces:
    kind: trace
    inputs: {{ programs: failing.failing }}
    params: {{ id: pair_id, program: buggy, input: input, input_format: tagged, expected: expected, keep: [buggy, entry_point] }}
  represent:
    kind: represent
    inputs: {{ runs: traces.runs, events: traces.events }}
    params: {{ template: "{templates}/traces/${{repr}}.j2", id: pair_id, program: buggy }}
  sft:
    kind: export_sft
    inputs: {{ pairs: pairs.pairs, traces: "represent[*].rows" }}
    params:
      template: {templates}/prompts/sft_repair.j2
      representations: [next, concise2]
      variants: [x, y]
      splits: {{ above: sim0.75, below: sim0, random: rnd }}
  recheck_buggy:
    kind: execute
    inputs: {{ candidates: failing.failing, tests: failing.failing }}
    params: {{ problem: pair_id, candidate_id: pair_id, program: buggy, input_format: tagged, expected_format: tagged }}
  recheck_patch:
    kind: execute
    inputs: {{ candidates: failing.failing, tests: failing.failing }}
    params: {{ problem: pair_id, candidate_id: pair_id, program: patch, input_format: tagged, expected_format: tagged }}
  exercises:
    kind: reasoning_tasks
    inputs: {{ runs: traces.runs, events: traces.events }}
    params: {{ id: pair_id, program: buggy }}
  input_tasks:
    kind: filter
    inputs: {{ rows: exercises.tasks }}
    params: {{ where: "kind = 'input'" }}
  check_inputs:
    kind: execute
    inputs: {{ candidates: input_tasks.rows, tests: input_tasks.rows }}
    params: {{ problem: id, candidate_id: id, input: answer, input_format: python, expected: output, expected_format: tagged }}
"#,
        data = data.display(),
        templates = repo().join("templates").display(),
    );
    p.write("spec.yaml", &spec);
    p.run_ok("spec.yaml");

    let tests = export(&p, "spec.yaml", "humaneval.tests");
    assert!(tests.len() > 30, "{} tests for 12 problems", tests.len());
    let labels: BTreeSet<String> = export(&p, "spec.yaml", "verify.summary")
        .iter()
        .map(|r| r["label"].as_str().unwrap().to_string())
        .collect();
    assert!(
        labels.contains("correct") && labels.contains("wrong_answer"),
        "{labels:?}"
    );

    let pairs = export(&p, "spec.yaml", "pairs.pairs");
    assert!(!pairs.is_empty());
    for pair in &pairs {
        assert_ne!(pair["buggy"], pair["patch"]);
        let sim = pair["similarity"].as_f64().unwrap();
        assert_eq!(pair["above"].as_bool().unwrap(), sim > 0.75);
    }
    let above = pairs
        .iter()
        .filter(|r| r["above"] == Value::Bool(true))
        .count();
    let random = pairs
        .iter()
        .filter(|r| r["random"] == Value::Bool(true))
        .count();
    assert_eq!(random, above.min(pairs.len()));

    // The property: every kept failing test fails on the buggy program and passes
    // on the patch when an independent stage runs them again.
    let failing = export(&p, "spec.yaml", "failing.failing");
    assert!(!failing.is_empty());
    let buggy: BTreeMap<String, String> = export(&p, "spec.yaml", "recheck_buggy.summary")
        .into_iter()
        .map(|r| {
            (
                r["candidate"].as_str().unwrap().into(),
                r["label"].as_str().unwrap().into(),
            )
        })
        .collect();
    let patch: BTreeMap<String, String> = export(&p, "spec.yaml", "recheck_patch.summary")
        .into_iter()
        .map(|r| {
            (
                r["candidate"].as_str().unwrap().into(),
                r["label"].as_str().unwrap().into(),
            )
        })
        .collect();
    for row in &failing {
        let id = row["pair_id"].as_str().unwrap();
        assert_ne!(
            buggy[id], "correct",
            "{id}: its failing test passes on the buggy program"
        );
        assert_eq!(
            patch[id], "correct",
            "{id}: its failing test fails on the patch"
        );
    }

    // Every exported example comes from a pair with a separating test.
    let with_test: BTreeSet<&str> = failing
        .iter()
        .map(|r| r["pair_id"].as_str().unwrap())
        .collect();
    let rows = export(&p, "spec.yaml", "sft.rows");
    assert!(!rows.is_empty());
    for row in &rows {
        assert!(with_test.contains(row["uuid"].as_str().unwrap()));
        let messages: Value = serde_json::from_str(row["messages"].as_str().unwrap()).unwrap();
        assert_eq!(messages[0]["role"], "user");
        assert_eq!(messages[1]["role"], "assistant");
        let (user, answer) = (
            messages[0]["content"].as_str().unwrap(),
            messages[1]["content"].as_str().unwrap(),
        );
        match (
            row["format"].as_str().unwrap(),
            row["variant"].as_str().unwrap(),
        ) {
            ("naive", _) => assert!(user.contains("**BUGGY_PROGRAM**")),
            (_, "x") => assert!(user.contains("now you can output the correct code here")),
            (_, "y") => assert!(answer.len() > user.len() / 4 && answer.contains("```python")),
            other => panic!("unexpected {other:?}"),
        }
    }
    // The LLaMA-Factory files: one per dataset, registered in dataset_info.json.
    let summary = export(&p, "spec.yaml", "sft.summary");
    assert_eq!(
        summary.len(),
        3 * (1 + 2 * 2),
        "naive + 2 representations x 2 variants, x 3 splits"
    );
    let info_path = p
        .objects()
        .into_iter()
        .map(|o| o.join("llama_factory/dataset_info.json"))
        .find(|f| f.exists())
        .expect("dataset_info.json in the export's artifact");
    let info: Value = serde_json::from_str(&fs_err::read_to_string(&info_path).unwrap()).unwrap();
    for s in &summary {
        let name = s["dataset"].as_str().unwrap();
        let entry = &info[name];
        assert_eq!(entry["formatting"], "sharegpt");
        assert_eq!(entry["tags"]["user_tag"], "user");
        let file = info_path.with_file_name(entry["file_name"].as_str().unwrap());
        let lines = fs_err::read_to_string(&file).unwrap().lines().count() as u64;
        assert_eq!(lines, s["rows"].as_u64().unwrap(), "{name}");
    }
    assert!(
        summary
            .iter()
            .any(|s| s["dataset"] == "rq1_tracefmt_next_x_sim0.75")
    );

    // Exercises: every input-prediction answer, run again, gives the stated
    // output; every coverage answer agrees with the lines the trace visited;
    // every next-state answer names the line the trace ran next.
    let tasks = export(&p, "spec.yaml", "exercises.tasks");
    let kinds: BTreeSet<&str> = tasks.iter().map(|t| t["kind"].as_str().unwrap()).collect();
    assert!(
        kinds.contains("coverage") && kinds.contains("output"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds,
        BTreeSet::from(["coverage", "input", "next_state", "output"])
    );
    let checked = export(&p, "spec.yaml", "check_inputs.summary");
    assert_eq!(
        checked.len(),
        tasks.iter().filter(|t| t["kind"] == "input").count()
    );
    assert!(
        checked.iter().all(|c| c["label"] == "correct"),
        "{checked:?}"
    );
    let events = export(&p, "spec.yaml", "traces.events");
    let lines_of = |run: u64| -> Vec<u64> {
        events
            .iter()
            .filter(|e| e["run"].as_u64() == Some(run) && e["kind"] == "line")
            .map(|e| e["line"].as_u64().unwrap())
            .collect()
    };
    for t in &tasks {
        let run = t["run"].as_u64().unwrap();
        let line = t["line"].as_u64();
        match t["kind"].as_str().unwrap() {
            "coverage" => {
                let executed = lines_of(run).contains(&line.unwrap());
                assert_eq!(t["answer"], if executed { "yes" } else { "no" }, "{t:?}");
            }
            "next_state" => {
                let answer: Value = serde_json::from_str(t["answer"].as_str().unwrap()).unwrap();
                let next = answer["line"].as_u64().unwrap();
                let lines = lines_of(run);
                assert!(
                    lines
                        .windows(2)
                        .any(|w| w[0] == line.unwrap() && w[1] == next),
                    "{t:?}"
                );
            }
            _ => {}
        }
    }

    // A rerun is all cache hits.
    let statuses = p.statuses("spec.yaml");
    assert!(
        status_map(&statuses).values().all(|s| *s == "cached"),
        "{statuses:?}"
    );
}

#[test]
#[ignore = "needs the benchmark data: ../shared/data or TW_BENCHMARKS (TW_REQUIRE_DATA)"]
fn loaders_read_real_benchmarks_with_their_test_counts() {
    let Some(data) = benchmarks() else { return };
    let p = Project::new();
    p.write(
        "spec.yaml",
        &format!(
            r#"
experiment: loaders
stages:
  crux: {{ kind: load_benchmark, params: {{ benchmark: cruxeval, path: {d}/cruxeval.jsonl, limit: 30 }} }}
  pack: {{ kind: load_benchmark, params: {{ benchmark: humanevalpack, path: {d}/humanevalpack_python.jsonl, limit: 5 }} }}
  plus: {{ kind: load_benchmark, params: {{ benchmark: humaneval-plus, path: {d}/HumanEvalPlus.jsonl.gz, limit: 3, tests: all }} }}
  bcb: {{ kind: load_benchmark, params: {{ benchmark: bigcodebench, path: {d}/BigCodeBench.jsonl.gz }} }}
  mbpp: {{ kind: load_benchmark, params: {{ benchmark: mbpp, path: {d}/mbpp.jsonl, limit: 10 }} }}
"#,
            d = data.display()
        ),
    );
    p.run_ok("spec.yaml");
    // CRUXEval: one test per problem, its expected output equal to the published one.
    let crux = export(&p, "spec.yaml", "crux.tests");
    assert_eq!(crux.len(), 30);
    let pack = export(&p, "spec.yaml", "pack.problems");
    assert!(
        pack.iter()
            .all(|r| r["task_id"].as_str().unwrap().starts_with("HumanEval/"))
    );
    assert!(
        pack.iter()
            .all(|r| r["buggy"].as_str().is_some_and(|b| b.contains("def ")))
    );
    let plus = export(&p, "spec.yaml", "plus.tests");
    let suites: BTreeSet<&str> = plus.iter().map(|r| r["suite"].as_str().unwrap()).collect();
    assert_eq!(suites, BTreeSet::from(["base", "plus"]));
    assert!(plus.iter().all(|r| !r["expected"].is_null()));
    // BigCodeBench: only standard-library problems, each with its unittest.
    let bcb = export(&p, "spec.yaml", "bcb.problems");
    assert!(bcb.len() > 100 && bcb.len() < 1140, "{}", bcb.len());
    assert!(
        bcb.iter()
            .all(|r| r["test_program"].as_str().unwrap().contains("unittest"))
    );
    // MBPP: the entry point is the function its asserts call.
    let mbpp = export(&p, "spec.yaml", "mbpp.problems");
    assert_eq!(mbpp[0]["entry_point"], "min_cost");
    assert_eq!(mbpp[0]["n_tests"], 3);
}

#[test]
fn livecodebench_and_apps_fixtures_load_with_filters() {
    let f = fixtures();
    let p = Project::new();
    p.write(
        "spec.yaml",
        &format!(
            r#"
experiment: lcb
stages:
  lcb: {{ kind: load_benchmark, params: {{ benchmark: livecodebench, path: {f}/lcb/problems.jsonl }} }}
  lcb_window: {{ kind: load_benchmark, params: {{ benchmark: livecodebench, path: {f}/lcb/problems.jsonl, start_date: 2023-06-01, end_date: 2024-12-01, difficulty: [medium] }} }}
  apps: {{ kind: load_benchmark, params: {{ benchmark: apps, path: {f}/apps/problems.jsonl, difficulty: [interview] }} }}
"#,
            f = f.display()
        ),
    );
    p.run_ok("spec.yaml");
    let all = export(&p, "spec.yaml", "lcb.problems");
    assert_eq!(all.len(), 3);
    let tests = export(&p, "spec.yaml", "lcb.tests");
    // Public tests come first and are marked; private ones were base64+zlib+pickle.
    let abc: Vec<_> = tests
        .iter()
        .filter(|t| t["task_id"] == "abc300_a")
        .collect();
    assert_eq!(abc[0]["suite"], "public");
    assert_eq!(abc[0]["public"], true);
    assert!(abc.iter().skip(1).all(|t| t["suite"] == "private"));
    let window = export(&p, "spec.yaml", "lcb_window.problems");
    assert_eq!(window.len(), 1);
    assert_eq!(window[0]["difficulty"], "medium");
    let apps = export(&p, "spec.yaml", "apps.problems");
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0]["task_id"], "2001");
}

#[test]
fn a_malformed_row_is_named_or_counted() {
    let p = Project::new();
    p.write(
        "bench.jsonl",
        "{\"id\": \"sample_0\", \"code\": \"def f(x):\\n    return x + 1\", \"input\": \"1\", \"output\": \"2\"}\n{\"id\": \"sample_1\"}\nnot json\n",
    );
    p.write(
        "spec.yaml",
        "experiment: bad\nstages:\n  crux: { kind: load_benchmark, params: { benchmark: cruxeval, path: bench.jsonl } }\n",
    );
    let ran = p.tw(&["run", "spec.yaml"]);
    assert_ne!(ran.code, 0);
    assert!(ran.stderr.contains("bench.jsonl:3"), "{}", ran.stderr);
    p.write(
        "spec.yaml",
        "experiment: bad\nstages:\n  crux: { kind: load_benchmark, params: { benchmark: cruxeval, path: bench.jsonl, on_error: skip } }\n",
    );
    p.run_ok("spec.yaml");
    let tests = export(&p, "spec.yaml", "crux.tests");
    assert_eq!(tests.len(), 1);
    assert_eq!(tests[0]["expected"], "2");
}

#[test]
fn decontamination_removes_rows_sharing_an_ngram_and_says_what_matched() {
    let p = Project::new();
    p.write(
        "rows.jsonl",
        "{\"pair_id\": \"a\", \"buggy\": \"def add(a, b):\\n    return a - b\", \"patch\": \"def add(a, b): return a + b\"}\n\
         {\"pair_id\": \"b\", \"buggy\": \"def Remove_Occ(s, ch):\\n    for i in range(len(s)):\\n        if s[i] == ch:\\n            s = s[0 : i] + s[i + 1:]\", \"patch\": \"x\"}\n",
    );
    p.write(
        "bench.jsonl",
        "{\"benchmark\": \"mbpp\", \"task_id\": \"11\", \"prompt\": \"Remove first and last occurrence\", \"reference\": \"def remove_Occ(s,ch): \\n    for i in range(len(s)): \\n        if (s[i] == ch): \\n            s = s[0 : i] + s[i + 1:] \\n            break\"}\n",
    );
    p.write(
        "spec.yaml",
        "experiment: decon\nstages:\n  rows: { kind: load, params: { path: rows.jsonl } }\n  bench: { kind: load, params: { path: bench.jsonl } }\n  clean:\n    kind: decontaminate\n    inputs: { rows: rows.rows, benchmarks: [bench.rows] }\n    params: { ngram: 10 }\n",
    );
    p.run_ok("spec.yaml");
    let kept = export(&p, "spec.yaml", "clean.rows");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["pair_id"], "a");
    let removed = export(&p, "spec.yaml", "clean.removed");
    assert_eq!(removed[0]["pair_id"], "b");
    assert_eq!(removed[0]["matched_benchmark"], "mbpp");
    assert_eq!(removed[0]["matched_task"], "11");
}

#[test]
fn mbpp_plus_fixture_loads_base_and_plus_inputs_with_computed_outputs() {
    let p = Project::new();
    p.write(
        "spec.yaml",
        &format!(
            "experiment: mbppplus\nstages:\n  mbpp:\n    kind: load_benchmark\n    params: {{ benchmark: mbpp-plus, path: {}/mbppplus/MbppPlus.jsonl, tests: all }}\n",
            fixtures().display()
        ),
    );
    p.run_ok("spec.yaml");
    let problems = export(&p, "spec.yaml", "mbpp.problems");
    assert_eq!(problems.len(), 2);
    assert_eq!(problems[0]["entry_point"], "is_not_prime");
    let tests = export(&p, "spec.yaml", "mbpp.tests");
    let seen: Vec<(&str, &str, &str)> = tests
        .iter()
        .map(|t| {
            (
                t["task_id"].as_str().unwrap(),
                t["suite"].as_str().unwrap(),
                t["expected"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("Mbpp/3", "base", "false"),
            ("Mbpp/3", "base", "true"),
            ("Mbpp/3", "base", "true"),
            ("Mbpp/3", "plus", "true"),
            ("Mbpp/3", "plus", "false"),
            ("Mbpp/8", "base", "[1,4,9,16,25,36,49,64,81,100]"),
            ("Mbpp/8", "base", "[100,400,900]"),
            ("Mbpp/8", "plus", "[]"),
            ("Mbpp/8", "plus", "[9,0.25]"),
        ]
    );
}
