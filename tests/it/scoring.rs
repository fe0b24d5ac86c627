//! Scoring parity on the published benchmarks (`../shared/data/benchmarks`, or
//! `TW_BENCHMARKS`): reference solutions pass, known-buggy ones fail.

use crate::harness::Project;
use std::path::PathBuf;

fn benchmarks() -> Option<PathBuf> {
    tw_stages::testing::shared_data("TW_BENCHMARKS", "benchmarks", "HumanEval.jsonl.gz")
}

/// `tw score --json --k 1 --benchmark B --problems P <rest>`, which must succeed.
fn score_json(p: &Project, benchmark: &str, problems: &str, rest: &[&str]) -> serde_json::Value {
    let mut all = vec![
        "score",
        "--json",
        "--benchmark",
        benchmark,
        "--problems",
        problems,
    ];
    if !rest.contains(&"--k") {
        all.extend(["--k", "1"]);
    }
    all.extend_from_slice(rest);
    let ran = p.tw(&all);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    serde_json::from_str(&ran.stdout).unwrap()
}

#[test]
#[ignore = "needs the benchmark data: ../shared/data or TW_BENCHMARKS (TW_REQUIRE_DATA)"]
fn every_humaneval_canonical_solution_passes() {
    let Some(dir) = benchmarks() else { return };
    let p = Project::new();
    let problems = dir.join("HumanEval.jsonl.gz");
    let v = score_json(
        &p,
        "humaneval",
        problems.to_str().unwrap(),
        &["--reference"],
    );
    assert_eq!(
        (v["problems"].as_u64(), v["passed"].as_u64()),
        (Some(164), Some(164)),
        "{v}"
    );
}

#[test]
#[ignore = "needs the benchmark data: ../shared/data or TW_BENCHMARKS (TW_REQUIRE_DATA)"]
fn every_humanevalpack_buggy_solution_fails_its_test() {
    let Some(dir) = benchmarks() else { return };
    let p = Project::new();
    let pack = fs_err::read_to_string(dir.join("humanevalpack_python.jsonl")).unwrap();
    let mut samples = String::new();
    for line in pack.lines().filter(|l| !l.trim().is_empty()) {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let task = row["task_id"]
            .as_str()
            .unwrap()
            .replace("Python/", "HumanEval/");
        let sample = serde_json::json!({"task_id": task, "completion": row["buggy_solution"]});
        samples.push_str(&format!("{sample}\n"));
    }
    p.write("buggy.jsonl", &samples);
    let problems = dir.join("HumanEval.jsonl.gz");
    let v = score_json(
        &p,
        "humaneval",
        problems.to_str().unwrap(),
        &["--samples", "buggy.jsonl"],
    );
    assert_eq!(
        (v["samples"].as_u64(), v["passed"].as_u64()),
        (Some(164), Some(0)),
        "{v}"
    );
}

#[test]
#[ignore = "needs the benchmark data: ../shared/data or TW_BENCHMARKS (TW_REQUIRE_DATA)"]
fn humaneval_plus_canonical_solutions_pass_base_and_plus() {
    let Some(dir) = benchmarks() else { return };
    let p = Project::new();
    let problems = dir.join("HumanEvalPlus.jsonl.gz");
    let v = score_json(
        &p,
        "humaneval-plus",
        problems.to_str().unwrap(),
        &["--reference"],
    );
    assert_eq!(v["reference_failures"], serde_json::json!([]), "{v}");
    assert_eq!(
        (v["passed"].as_u64(), v["passed_plus"].as_u64()),
        (Some(164), Some(164)),
        "{v}"
    );
}

#[test]
#[ignore = "needs the benchmark data: ../shared/data or TW_BENCHMARKS (TW_REQUIRE_DATA)"]
fn cruxeval_ground_truth_passes_in_both_modes() {
    let Some(dir) = benchmarks() else { return };
    let p = Project::new();
    let problems = dir.join("cruxeval.jsonl");
    for mode in ["cruxeval-i", "cruxeval-o"] {
        let v = score_json(&p, mode, problems.to_str().unwrap(), &["--reference"]);
        assert_eq!(
            (v["problems"].as_u64(), v["passed"].as_u64()),
            (Some(800), Some(800)),
            "{mode}: {v}"
        );
    }
    // a wrong prediction fails, and an output prediction that calls f() is not counted
    p.write(
        "gen.json",
        r#"{"sample_0": ["[(4, 1), (4, 1), (4, 1), (4, 1), (2, 3), (2, 3)]", "[]", "f([1, 1, 3, 1, 3, 1])"]}"#,
    );
    let ran = p.tw(&[
        "score",
        "--benchmark",
        "cruxeval-o",
        "--problems",
        problems.to_str().unwrap(),
        "--samples",
        "gen.json",
        "--k",
        "1",
        "--details",
        "d.jsonl",
        "--allow-partial",
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let details: Vec<serde_json::Value> = p
        .read("d.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let passes: Vec<bool> = details
        .iter()
        .map(|d| d["base_pass"].as_bool().unwrap())
        .collect();
    assert_eq!(passes, [true, false, false]);
}

/// A published generations file of CRUXEval's own repository (MIT), gzipped
/// under `fixtures/cruxeval/`, written back out under its published name.
fn published_generations(p: &Project, mode: &str) -> String {
    use std::io::Read;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "tests/it/fixtures/cruxeval/codellama-7b_temp0.2_{mode}.generations.json.gz"
    ));
    let mut text = String::new();
    tw_stages::api::rows::open(&path)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let name = format!("sample_codellama-7b_temp0.2_{mode}/generations.json");
    p.write(&name, &text);
    name
}

/// What CRUXEval's harness published for those files: its pass@1 and pass@5
/// (percent) and every generation's verdict.
fn published_scores() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures/cruxeval/codellama-7b_temp0.2.scored.json.gz");
    serde_json::from_reader(tw_stages::api::rows::open(&path).unwrap()).unwrap()
}

#[test]
#[ignore = "needs the benchmark data: ../shared/data or TW_BENCHMARKS (TW_REQUIRE_DATA)"]
fn cruxeval_published_samples_score_as_its_harness_scored_them() {
    let Some(dir) = benchmarks() else { return };
    let p = Project::new();
    let problems = dir.join("cruxeval.jsonl");
    let published = published_scores();
    for (mode, bench) in [("input", "cruxeval-i"), ("output", "cruxeval-o")] {
        let samples = published_generations(&p, mode);
        let details = format!("{mode}.details.jsonl");
        let v = score_json(
            &p,
            bench,
            problems.to_str().unwrap(),
            &["--samples", &samples, "--k", "1,5", "--details", &details],
        );
        let reference = &published[mode];
        let ours = |k: u64| {
            v["pass_at_k"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["suite"] == "base" && r["k"].as_u64() == Some(k))
                .map(|r| 100.0 * r["score"].as_f64().unwrap())
                .unwrap()
        };
        for k in [1u64, 5] {
            let theirs = reference[format!("pass_at_{k}")].as_f64().unwrap();
            assert!(
                (ours(k) - theirs).abs() < 1e-9,
                "{bench} pass@{k}: tw {} vs CRUXEval {theirs}",
                ours(k)
            );
        }
        // Every one of the 8,000 generations gets the harness's verdict.
        let mut compared = 0;
        for line in p.read(&details).lines() {
            let d: serde_json::Value = serde_json::from_str(line).unwrap();
            let task = d["task_id"].as_str().unwrap();
            let index = d["index"].as_u64().unwrap() as usize;
            let expected = reference["raw_scored_generations"][task][index]
                .as_bool()
                .unwrap();
            assert_eq!(
                d["base_pass"].as_bool(),
                Some(expected),
                "{bench} {task} #{index}: {d}"
            );
            compared += 1;
        }
        assert_eq!(compared, 8000, "{bench}");
    }
}

/// The verdict of each sample in a `--details` file, in order.
fn detail_verdicts(p: &Project, file: &str) -> Vec<String> {
    p.read(file)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["verdict"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
#[ignore = "needs the benchmark data: ../shared/data or TW_BENCHMARKS (TW_REQUIRE_DATA)"]
fn cruxeval_skips_and_all_false_follow_its_harness() {
    let Some(dir) = benchmarks() else { return };
    let p = Project::new();
    let problems = dir.join("cruxeval.jsonl");
    let problems = problems.to_str().unwrap();
    // Input prediction: generations are whole calls, graded as
    // `assert <output> == <generation>`. A generation without `f(` is
    // skipped: sample_0 has one pass in two counted (pass@1 0.5); sample_1
    // passes nothing, so its skipped one counts as a failure too (0 of 2).
    p.write(
        "input/generations.json",
        r#"{"sample_0": ["f([1, 1, 3, 1, 3, 1])", "[1, 1, 3, 1, 3, 1]", "f([3, 3])"],
            "sample_1": ["(1, ), (1, ), (1, 2)", "f((1,), (3,), (4,))"]}"#,
    );
    // Without --allow-partial two of 800 problems are refused.
    let refused = p.tw(&[
        "score",
        "--benchmark",
        "cruxeval-i",
        "--problems",
        problems,
        "--samples",
        "input/generations.json",
        "--k",
        "1",
    ]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("cover 2 of the 800 problems"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("--allow-partial"),
        "{}",
        refused.stderr
    );
    let v = score_json(
        &p,
        "cruxeval-i",
        problems,
        &[
            "--samples",
            "input/generations.json",
            "--allow-partial",
            "--details",
            "i.jsonl",
        ],
    );
    assert_eq!(
        (v["problems"].as_u64(), v["problems_scored"].as_u64()),
        (Some(800), Some(2)),
        "{v}"
    );
    assert_eq!(v["pass_at_k"][0]["score"].as_f64(), Some(0.25), "{v}");
    let verdicts = detail_verdicts(&p, "i.jsonl");
    assert_eq!(
        verdicts,
        [
            "pass",
            "skipped",
            "runtime_error",
            "skipped",
            "runtime_error"
        ]
    );
    // The old convention (the input alone, wrapped in another call) is not
    // the benchmark's: `f(f(...))` fails.
    p.write(
        "wrapped/generations.json",
        r#"{"sample_0": ["f(f([1, 1, 3, 1, 3, 1]))"]}"#,
    );
    let v = score_json(
        &p,
        "cruxeval-i",
        problems,
        &["--samples", "wrapped/generations.json", "--allow-partial"],
    );
    assert_eq!(v["passed"].as_u64(), Some(0), "{v}");

    // Output prediction: a generation containing `f(<the input>)` is skipped
    // (sample_0: one pass in two counted); a call of `f` on another input is
    // graded; sample_1's only generation is skipped and so counts as failed.
    p.write(
        "output/generations.json",
        r#"{"sample_0": ["[(4, 1), (4, 1), (4, 1), (4, 1), (2, 3), (2, 3)]", "f([1, 1, 3, 1, 3, 1])", "f([1])"],
            "sample_1": ["f((1, ), (1, ), (1, 2))"]}"#,
    );
    let v = score_json(
        &p,
        "cruxeval-o",
        problems,
        &[
            "--samples",
            "output/generations.json",
            "--allow-partial",
            "--details",
            "o.jsonl",
        ],
    );
    assert_eq!(v["pass_at_k"][0]["score"].as_f64(), Some(0.25), "{v}");
    let verdicts = detail_verdicts(&p, "o.jsonl");
    assert_eq!(verdicts, ["pass", "skipped", "runtime_error", "skipped"]);
}

#[test]
fn score_stage_in_a_spec_caches_and_reports_pass_at_k() {
    let p = Project::new();
    p.write(
        "problems.jsonl",
        concat!(
            r#"{"task_id": "T/0", "prompt": "def add(a, b):\n", "entry_point": "add", "canonical_solution": "    return a + b\n", "test": "def check(f):\n    assert f(1, 2) == 3\n"}"#,
            "\n",
            r#"{"task_id": "T/1", "prompt": "def neg(a):\n", "entry_point": "neg", "canonical_solution": "    return -a\n", "test": "def check(f):\n    assert f(1) == -1\n"}"#,
            "\n"
        ),
    );
    p.write(
        "samples.jsonl",
        concat!(
            r#"{"task_id": "T/0", "completion": "    return a + b\n"}"#,
            "\n",
            r#"{"task_id": "T/0", "completion": "    return a - b\n"}"#,
            "\n",
            r#"{"task_id": "T/1", "completion": "    return -a\n"}"#,
            "\n",
            r#"{"task_id": "T/1", "completion": "    while True: pass\n"}"#,
            "\n",
        ),
    );
    p.write(
        "s.yaml",
        "experiment: scoring\nstages:\n  problems: { kind: load, params: { path: problems.jsonl } }\n  samples: { kind: load, params: { path: samples.jsonl } }\n  score:\n    kind: score\n    inputs: { problems: problems.rows, samples: samples.rows }\n    params: { benchmark: humaneval, k: [1, 2], timeout: 0.5, bootstrap: 0 }\n",
    );
    let out = p.run_ok("s.yaml");
    assert!(out.contains("0 cached, 3 ran"), "{out}");
    let scores = p.tw(&["export", "s.yaml", "score.scores", "--format", "jsonl"]);
    let rows: Vec<serde_json::Value> = scores
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["k"], 1);
    assert!((rows[0]["pass_at_k"].as_f64().unwrap() - 0.5).abs() < 1e-12);
    assert_eq!(rows[1]["k"], 2);
    assert!((rows[1]["pass_at_k"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    let verdicts = p.tw(&["export", "s.yaml", "score.verdicts", "--format", "jsonl"]);
    let v: Vec<serde_json::Value> = verdicts
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = v.iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["pass", "runtime_error", "pass", "timeout"]);
    // scorer settings are in the key: a new timeout rescores, the same one does not
    assert!(p.run_ok("s.yaml").contains("3 cached, 0 ran"));
    p.write(
        "s.yaml",
        &p.read("s.yaml").replace("timeout: 0.5", "timeout: 0.25"),
    );
    let plan = p.plan("s.yaml");
    assert_eq!(plan[2].3, vec!["params.timeout: 0.5 -> 0.25".to_string()]);
}

#[test]
fn a_repeated_program_runs_once_and_shares_its_verdict_unless_asked_to_run_each() {
    // T/0's coin flip passes or fails at random (`os.urandom`, which no seed
    // fixes): its 40 copies share one run's verdict by default, and with
    // --run-duplicates each flips its own coin (all 40 alike: p = 2^-39).
    // `return True` is a program of T/0 and of T/1: the same text under
    // another problem is graded there, against that problem's test.
    let p = Project::new();
    p.write(
        "problems.jsonl",
        concat!(
            r#"{"task_id": "T/0", "prompt": "def f():\n", "entry_point": "f", "canonical_solution": "    return True\n", "test": "def check(f):\n    assert f()\n"}"#,
            "\n",
            r#"{"task_id": "T/1", "prompt": "def f():\n", "entry_point": "f", "canonical_solution": "    return False\n", "test": "def check(f):\n    assert not f()\n"}"#,
            "\n"
        ),
    );
    let coin =
        r#"{"task_id": "T/0", "completion": "    import os\n    return os.urandom(1)[0] < 128\n"}"#;
    let mut samples = format!("{coin}\n").repeat(40);
    samples.push_str(concat!(
        r#"{"task_id": "T/0", "completion": "    return True\n"}"#,
        "\n",
        r#"{"task_id": "T/1", "completion": "    return True\n"}"#,
        "\n",
        r#"{"task_id": "T/1", "completion": "    return True\n"}"#,
        "\n",
        r#"{"task_id": "T/1", "completion": "    return False\n"}"#,
        "\n",
    ));
    p.write("samples.jsonl", &samples);
    let rest = [
        "--samples",
        "samples.jsonl",
        "--allow-partial",
        "--timeout",
        "2",
        "--details",
        "d.jsonl",
    ];
    let shared = score_json(&p, "humaneval", "problems.jsonl", &rest);
    // 39 coins and one `return True` of T/1 repeat an earlier sample.
    assert_eq!(shared["duplicates"], 40, "{shared}");
    let verdicts = detail_verdicts(&p, "d.jsonl");
    assert_eq!(verdicts.len(), 44);
    let coins = &verdicts[..40];
    assert!(coins.iter().all(|v| v == &coins[0]), "{coins:?}");
    assert_eq!(
        &verdicts[40..],
        ["pass", "runtime_error", "runtime_error", "pass"]
    );
    let indices: Vec<u64> = p
        .read("d.jsonl")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let expected: Vec<u64> = (0..41).chain(0..3).collect();
    assert_eq!(indices, expected, "every sample keeps its own index");

    let mut each = rest.to_vec();
    each.push("--run-duplicates");
    let own = score_json(&p, "humaneval", "problems.jsonl", &each);
    assert_eq!(own["duplicates"], 0, "{own}");
    let verdicts = detail_verdicts(&p, "d.jsonl");
    let coins = &verdicts[..40];
    assert!(coins.contains(&"pass".to_string()), "{coins:?}");
    assert!(coins.iter().any(|v| v != "pass"), "{coins:?}");
    assert_eq!(
        &verdicts[40..],
        ["pass", "runtime_error", "runtime_error", "pass"]
    );
}

fn fixture(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(rel)
        .display()
        .to_string()
}

fn suite_scores(v: &serde_json::Value) -> Vec<(String, f64)> {
    v["pass_at_k"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let score = (r["score"].as_f64().unwrap() * 1e4).round() / 1e4;
            (r["suite"].as_str().unwrap().to_string(), score)
        })
        .collect()
}

/// Hand-written LiveCodeBench rows in the code_generation_lite layout: JSON-text
/// public tests, base64+zlib+pickle private tests, a LeetCode-style functional
/// problem, and a stdout that only matches as Decimals.
#[test]
fn livecodebench_rows_score_with_lcb_rules_per_difficulty_and_date() {
    let p = Project::new();
    let problems = fixture("lcb/problems.jsonl");
    let samples = fixture("lcb/generations.json");
    let mut args = vec!["--samples", samples.as_str()];
    let v = score_json(&p, "livecodebench", &problems, &args);
    assert_eq!(
        (
            v["problems"].as_u64(),
            v["samples"].as_u64(),
            v["passed"].as_u64()
        ),
        (Some(3), Some(6), Some(4)),
        "{v}"
    );
    assert_eq!(
        suite_scores(&v),
        [
            ("base".to_string(), 0.6667),
            ("base/easy".to_string(), 1.0),
            ("base/medium".to_string(), 0.5),
            ("base/hard".to_string(), 0.5),
        ]
    );
    args.extend(["--start-date", "2023-06-01", "--end-date", "2023-12-31"]);
    let v = score_json(&p, "livecodebench", &problems, &args);
    assert_eq!(
        (v["problems"].as_u64(), v["samples"].as_u64()),
        (Some(1), Some(2)),
        "{v}"
    );
    let ran = p.tw(&[
        "score",
        "--benchmark",
        "livecodebench",
        "--problems",
        &problems,
        "--reference",
    ]);
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr
            .contains("LiveCodeBench ships no reference solutions"),
        "{}",
        ran.stderr
    );
}

#[test]
fn apps_rows_score_with_its_lenient_rules() {
    let p = Project::new();
    let problems = fixture("apps/problems.jsonl");
    let samples = fixture("apps/generations.json");
    let v = score_json(&p, "apps", &problems, &["--samples", &samples]);
    assert_eq!(
        suite_scores(&v),
        [
            ("base".to_string(), 0.5),
            ("base/introductory".to_string(), 0.5),
            ("base/interview".to_string(), 0.5),
        ]
    );
    let v = score_json(&p, "apps", &problems, &["--reference"]);
    assert_eq!(
        (v["samples"].as_u64(), v["passed"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );
}

#[test]
fn a_tampered_pickle_is_refused_not_unpickled() {
    let p = Project::new();
    // base64(zlib(pickle of a tuple)): not a plain string, so it is rejected.
    let row = r#"{"question_id": "x", "contest_date": "2024-01-01", "difficulty": "easy", "public_test_cases": "[]", "private_test_cases": "eJxrYJkqwwABPZz5xXrFlcUlqblTerhSkzPyFQrK81JTprRN0QMAy/8MYw==", "metadata": "{}"}"#;
    p.write("lcb.jsonl", &format!("{row}\n"));
    let ran = p.tw(&[
        "score",
        "--benchmark",
        "livecodebench",
        "--problems",
        "lcb.jsonl",
        "--samples",
        "lcb.jsonl",
    ]);
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr.contains("lcb.jsonl:1") && ran.stderr.contains("refusing to unpickle"),
        "{}",
        ran.stderr
    );
}

/// Two problems of LiveCodeBench's code-execution scenario, as
/// `livecodebench/execution-v2` publishes its rows (hand-written).
const LCB_EXECUTION: &str = r#"{"question_id": "3000", "contest_id": "weekly-contest-1", "contest_date": "2023-08-01T00:00:00", "difficulty": "easy", "function_name": "sumEven", "code": "def sumEven(nums: List[int]) -> int:\n    return sum(x for x in nums if x % 2 == 0)", "input": "sumEven(nums = [1, 2, 3, 4])", "output": "6", "id": "sample_0", "problem_id": "3000", "numsteps": 10}
{"question_id": "3001", "contest_id": "weekly-contest-1", "contest_date": "2023-08-01T00:00:00", "difficulty": "easy", "function_name": "shout", "code": "def shout(s: str) -> str:\n    return s.upper() + '!'", "input": "shout(s = 'hi')", "output": "'HI!'", "id": "sample_1", "problem_id": "3001", "numsteps": 5}
"#;

/// Replies in LiveCodeBench's output-file format (`output_list`, raw), for
/// the direct and the chain-of-thought prompts.
const LCB_EXECUTION_REPLIES: &str = r#"[
 {"question_id": "3000", "id": "sample_0", "output_list": [
   "assert sumEven(nums = [1, 2, 3, 4]) == 6\n[/ANSWER]",
   "assert sumEven(nums = [1, 2, 3, 4]) == 10\n[/ANSWER]",
   "assert sumEven(nums = [1, 2, 3, 4]) == sumEven(nums = [1, 2, 3, 4])\n[/ANSWER]"]},
 {"question_id": "3001", "id": "sample_1", "output_list": [
   "Let's think: s is 'hi' so x == 'HI' then add !\n[ANSWER]\nassert shout(s = 'hi') == 'HI!'\n[/ANSWER]",
   "[ANSWER]assert shout(s = 'hi') == 'hi!'[/ANSWER]"]}
]"#;

#[test]
fn lcb_execution_follows_lcb_runner_on_its_published_formats() {
    let p = Project::new();
    p.write("execution.jsonl", LCB_EXECUTION);
    p.write("replies.json", LCB_EXECUTION_REPLIES);
    let score = |bench: &str, details: &str| {
        score_json(
            &p,
            bench,
            "execution.jsonl",
            &["--samples", "replies.json", "--details", details],
        )
    };
    // Direct: sample_0's first reply is right, its second wrong (the assert
    // fails), its third contains the input and is skipped: 1 of 2. sample_1's replies have an
    // `==` in the reasoning before `[ANSWER]`, so the direct reading takes
    // "'HI' then add !" (a syntax error): 0 of 2.
    let direct = score("lcb-execution", "direct.jsonl");
    assert_eq!(
        detail_verdicts(&p, "direct.jsonl"),
        [
            "pass",
            "runtime_error",
            "skipped",
            "syntax_error",
            "runtime_error"
        ]
    );
    assert!(
        (direct["pass_at_k"][0]["score"].as_f64().unwrap() - 0.25).abs() < 1e-12,
        "{direct}"
    );
    // Chain of thought: the answer after `[ANSWER]`: sample_1's first reply passes.
    let cot = score("lcb-execution-cot", "cot.jsonl");
    assert_eq!(
        detail_verdicts(&p, "cot.jsonl"),
        ["pass", "runtime_error", "skipped", "pass", "runtime_error"]
    );
    assert!(
        (cot["pass_at_k"][0]["score"].as_f64().unwrap() - 0.5).abs() < 1e-12,
        "{cot}"
    );
    // Every reply skipped: they all count as failed (lcb_runner's `[False] * n`).
    p.write(
        "skipped.json",
        r#"[{"id": "sample_0", "output_list": ["assert sumEven(nums = [1, 2, 3, 4]) == sumEven(nums = [1, 2, 3, 4])"]},
            {"id": "sample_1", "output_list": ["assert shout(s = 'hi') == 'HI!'"]}]"#,
    );
    let v = score_json(
        &p,
        "lcb-execution",
        "execution.jsonl",
        &["--samples", "skipped.json"],
    );
    assert!(
        (v["pass_at_k"][0]["score"].as_f64().unwrap() - 0.5).abs() < 1e-12,
        "{v}"
    );
}

/// LiveCodeBench's test-output-prediction rows (`livecodebench/test_generation`).
const LCB_TEST_OUTPUT: &str = r#"{"question_title": "sum of evens", "question_content": "Return the sum of the even numbers.", "question_id": "3000", "contest_id": "weekly-contest-1", "contest_date": "2023-08-01T00:00:00", "difficulty": "easy", "test": "[{\"input\": \"[1, 2, 3, 4]\", \"output\": \"6\", \"testtype\": \"functional\"}]", "starter_code": "class Solution:\n    def sumEven(self, nums: List[int]) -> int:\n        ", "function_name": "sumEven", "test_id": 0}
{"question_title": "flags", "question_content": "Is the list sorted?", "question_id": "3002", "contest_id": "weekly-contest-1", "contest_date": "2023-08-01T00:00:00", "difficulty": "easy", "test": "[{\"input\": \"[1, 2]\", \"output\": \"true\", \"testtype\": \"functional\"}]", "starter_code": "class Solution:\n    def isSorted(self, nums: List[int]) -> bool:\n        ", "function_name": "isSorted", "test_id": 0}
"#;

#[test]
fn lcb_test_output_compares_the_predicted_value_with_the_json_output() {
    let p = Project::new();
    p.write("tests.jsonl", LCB_TEST_OUTPUT);
    // The last `assert` line's right-hand side, evaluated, against
    // `json.loads(output)`: `True` meets JSON `true`; a fenced block with no
    // assert line is read whole; an unparsable answer fails.
    p.write(
        "replies.json",
        r#"[{"question_id": "3000", "test_id": 0, "output_list": [
              "```python\nassert sumEven([1, 2, 3, 4]) == 5\n```\nassert sumEven([1, 2, 3, 4]) == 6",
              "```python\n6\n```",
              "assert sumEven([1, 2, 3, 4]) == 5"]},
            {"question_id": "3002", "test_id": 0, "output_list": [
              "assert isSorted([1, 2]) == True",
              "assert isSorted([1, 2]) == true",
              "assert isSorted([1, 2]) == (1 <"]}]"#,
    );
    let v = score_json(
        &p,
        "lcb-test-output",
        "tests.jsonl",
        &["--samples", "replies.json", "--details", "d.jsonl"],
    );
    assert_eq!(
        detail_verdicts(&p, "d.jsonl"),
        [
            "pass",
            "pass",
            "runtime_error",
            "pass",
            "runtime_error",
            "runtime_error"
        ]
    );
    assert!(
        (v["pass_at_k"][0]["score"].as_f64().unwrap() - 0.5).abs() < 1e-12,
        "{v}"
    );
}
