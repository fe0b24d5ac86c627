//! The paper's specs proven on real outputs: MBPP-R graded on EvalPlus MBPP+
//! base and plus (Table 7's stages on a fixture in the published formats),
//! nothing graded against nothing, `execute` grading HumanEval as `tw score`
//! does, and the replay study on the 16,400 recorded CodeGen-16B samples.

use crate::dataset::export;
use crate::harness::Project;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures")
}

fn benchmarks() -> Option<PathBuf> {
    tw_stages::testing::shared_data("TW_BENCHMARKS", "benchmarks", "HumanEval.jsonl.gz")
}

/// Recorded repairs, two per MBPP-R problem: Mbpp/3's first passes base but
/// not plus (`is_not_prime(1)`), its second is right; Mbpp/8's first is still
/// wrong (cubes), its second right.
const REPAIRS: &str = concat!(
    r#"{"task_id": "Mbpp/3", "entry_point": "is_not_prime", "sample": 0, "program": "def is_not_prime(n):\n    return any(n % i == 0 for i in range(2, n))\n"}"#,
    "\n",
    r#"{"task_id": "Mbpp/3", "entry_point": "is_not_prime", "sample": 1, "program": "import math\ndef is_not_prime(n):\n    if n == 1:\n        return True\n    for i in range(2, int(math.sqrt(n)) + 1):\n        if n % i == 0:\n            return True\n    return False\n"}"#,
    "\n",
    r#"{"task_id": "Mbpp/8", "entry_point": "square_nums", "sample": 0, "program": "def square_nums(nums):\n    return [i ** 3 for i in nums]\n"}"#,
    "\n",
    r#"{"task_id": "Mbpp/8", "entry_point": "square_nums", "sample": 1, "program": "def square_nums(nums):\n    return [i * i for i in nums]\n"}"#,
    "\n",
);

fn table7_project() -> Project {
    let p = Project::new();
    let f = fixtures();
    p.write("repairs.jsonl", REPAIRS);
    p.write(
        "spec.yaml",
        &format!(
            r#"experiment: table7
stages:
  mbppplus: {{ kind: load_benchmark, params: {{ benchmark: mbpp-plus, path: {f}/mbppplus/MbppPlus.jsonl, tests: all }} }}
  mbppr: {{ kind: load_benchmark, params: {{ benchmark: mbpp-r, path: {f}/mbppr/mbpp_r_buggy.jsonl }} }}
  tests: {{ kind: concat, inputs: {{ tables: [mbppplus.tests, mbppr.tests] }} }}
  repairs: {{ kind: load, params: {{ path: repairs.jsonl }} }}
  greedy:
    kind: parallel_scaling
    inputs: {{ problems: mbppr.problems, tests: tests.rows, candidates: repairs.rows }}
    params: {{ selection: first, split: {{ public_suites: [seed_fail_base, seed_fail_plus] }}, labels: {{ representation: greedy }} }}
  bon:
    kind: parallel_scaling
    inputs: {{ problems: mbppr.problems, tests: tests.rows, candidates: repairs.rows }}
    params: {{ selection: best_of_n, split: {{ public_suites: [seed_fail_base, seed_fail_plus] }}, labels: {{ representation: best_of_n }} }}
  verify:
    kind: execute
    inputs: {{ candidates: repairs.rows, tests: mbppplus.tests }}
    params: {{ input_format: tagged, expected_format: tagged }}
"#,
            f = f.display()
        ),
    );
    p
}

fn pct(row: &serde_json::Map<String, Value>, column: &str) -> f64 {
    row[column]
        .as_f64()
        .unwrap_or_else(|| panic!("{column}: {row:?}"))
}

#[test]
fn table7_stages_grade_mbpp_r_on_mbpp_plus_base_and_plus() {
    let p = table7_project();
    p.run_ok("spec.yaml");
    // Greedy (sample 0): Mbpp/3's passes base only, Mbpp/8's fails.
    let greedy = &export(&p, "spec.yaml", "greedy.summary")[0];
    assert_eq!(
        (pct(greedy, "honest_pct"), pct(greedy, "honest_plus_pct")),
        (50.0, 0.0),
        "{greedy:?}"
    );
    assert_eq!(
        (pct(greedy, "oracle_pct"), pct(greedy, "oracle_plus_pct")),
        (100.0, 100.0),
        "{greedy:?}"
    );
    // Best of N on the seed's failing inputs (their expected outputs taken
    // from MBPP+): the right program of each problem.
    let bon = &export(&p, "spec.yaml", "bon.summary")[0];
    assert_eq!(
        (pct(bon, "honest_pct"), pct(bon, "honest_plus_pct")),
        (100.0, 100.0),
        "{bon:?}"
    );
    let selected = export(&p, "spec.yaml", "bon.selected");
    let picks: Vec<(String, u64, u64)> = selected
        .iter()
        .map(|r| {
            (
                r["task_id"].as_str().unwrap().to_string(),
                r["candidate"].as_u64().unwrap(),
                r["public_passed"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        picks,
        [("Mbpp/3".into(), 1, 2), ("Mbpp/8".into(), 1, 2)],
        "the seed's two failing inputs are the public tests, with expected outputs"
    );
    // Plus never passes where base fails.
    for rows in [export(&p, "spec.yaml", "greedy.selected"), selected] {
        for r in rows {
            assert!(
                r["honest_pass"].as_bool().unwrap() || !r["honest_plus_pass"].as_bool().unwrap(),
                "{r:?}"
            );
        }
    }
    // `execute` on MBPP+ grades with EvalPlus's comparator: right and wrong repairs.
    let labels: Vec<String> = export(&p, "spec.yaml", "verify.summary")
        .iter()
        .map(|r| r["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        labels,
        ["wrong_answer", "correct", "wrong_answer", "correct"]
    );
}

#[test]
fn the_study_failing_inputs_alone_grade_nothing_and_say_so() {
    // rq1_full's old MBPP-R grading: the seed's failing inputs, which carry
    // no expected outputs, as the tests; every program that returned passed.
    let p = table7_project();
    let f = fixtures();
    p.write(
        "seed_only.yaml",
        &format!(
            r#"experiment: seed_only
stages:
  mbppr: {{ kind: load_benchmark, params: {{ benchmark: mbpp-r, path: {f}/mbppr/mbpp_r_buggy.jsonl }} }}
  repairs: {{ kind: load, params: {{ path: repairs.jsonl }} }}
  score:
    kind: parallel_scaling
    inputs: {{ problems: mbppr.problems, tests: mbppr.tests, candidates: repairs.rows }}
    params: {{ selection: first }}
  verify:
    kind: execute
    inputs: {{ candidates: repairs.rows, tests: mbppr.tests }}
    params: {{ input_format: tagged, expected_format: tagged }}
"#,
            f = f.display()
        ),
    );
    let ran = p.tw(&["run", "seed_only.yaml"]);
    assert_ne!(ran.code, 0, "{}", ran.stdout);
    for stage in ["score", "verify"] {
        assert!(
            ran.stderr.contains(&format!("`{stage}`")) || ran.stderr.contains(stage),
            "{}",
            ran.stderr
        );
    }
    assert!(ran.stderr.contains("input `tests`"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("lack expected outputs"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("`Mbpp/3`"), "{}", ran.stderr);
}

#[test]
fn mbpp_ids_meet_and_tests_of_other_problems_are_an_error() {
    // Table 7's old join: MBPP-R programs (`Mbpp/3`) on tests keyed as
    // Google's MBPP keys them (`3`). They meet now.
    let p = Project::new();
    p.write("repairs.jsonl", REPAIRS);
    p.write(
        "tests.jsonl",
        concat!(
            r#"{"task_id": "3", "input": "[10]", "expected": "true"}"#,
            "\n",
            r#"{"task_id": "8", "input": "[[1, 2]]", "expected": "[1, 4]"}"#,
            "\n",
        ),
    );
    p.write(
        "other.jsonl",
        r#"{"task_id": "11", "input": "[10]", "expected": "true"}"#,
    );
    p.write(
        "spec.yaml",
        r#"experiment: ids
stages:
  repairs: { kind: load, params: { path: repairs.jsonl } }
  tests: { kind: load, params: { path: tests.jsonl } }
  other: { kind: load, params: { path: other.jsonl } }
  verify:
    kind: execute
    inputs: { candidates: repairs.rows, tests: tests.rows }
    params: { input_format: tagged, expected_format: tagged }
"#,
    );
    p.run_ok("spec.yaml");
    let summary = export(&p, "spec.yaml", "verify.summary");
    let pass: Vec<bool> = summary
        .iter()
        .map(|r| r["pass"].as_bool().unwrap())
        .collect();
    assert_eq!(pass, [true, true, false, true], "{summary:?}");
    // Tests of other problems only: an error naming both sides, even when
    // skipping ungradable problems is allowed.
    p.write(
        "spec.yaml",
        r#"experiment: ids
stages:
  repairs: { kind: load, params: { path: repairs.jsonl } }
  other: { kind: load, params: { path: other.jsonl } }
  verify:
    kind: execute
    inputs: { candidates: repairs.rows, tests: other.rows }
    params: { input_format: tagged, expected_format: tagged, on_ungradable: skip }
"#,
    );
    let ran = p.tw(&["run", "spec.yaml"]);
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr.contains("no candidate has tests"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("`Mbpp/3`, `Mbpp/8`"), "{}", ran.stderr);
    assert!(ran.stderr.contains("`11`"), "{}", ran.stderr);
}

#[test]
fn an_ungradable_problem_is_a_counted_skip_only_when_asked() {
    let p = Project::new();
    p.write("repairs.jsonl", REPAIRS);
    // Mbpp/8 has tests; Mbpp/3 has none.
    p.write(
        "tests.jsonl",
        r#"{"task_id": "Mbpp/8", "input": "[[1, 2]]", "expected": "[1, 4]"}"#,
    );
    let spec = |policy: &str| {
        format!(
            r#"experiment: skip
stages:
  repairs: {{ kind: load, params: {{ path: repairs.jsonl }} }}
  tests: {{ kind: load, params: {{ path: tests.jsonl }} }}
  verify:
    kind: execute
    inputs: {{ candidates: repairs.rows, tests: tests.rows }}
    params: {{ input_format: tagged, expected_format: tagged, on_ungradable: {policy} }}
"#
        )
    };
    p.write("spec.yaml", &spec("fail"));
    let ran = p.tw(&["run", "spec.yaml"]);
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr.contains("1 problem(s) have no tests") && ran.stderr.contains("`Mbpp/3`"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("on_ungradable: skip"), "{}", ran.stderr);
    p.write("spec.yaml", &spec("skip"));
    p.run_ok("spec.yaml");
    let summary = export(&p, "spec.yaml", "verify.summary");
    assert_eq!(summary.len(), 2, "only Mbpp/8's candidates are graded");
    let manifests = p.manifests_text();
    assert!(
        manifests.contains("\"skipped_candidates\": 2"),
        "{manifests}"
    );
    assert!(manifests.contains("Mbpp/3: no tests"), "{manifests}");
}

/// HumanEval problems whose `check` the per-call tests cannot express: float
/// tolerance (/2, /4), a property of the answer (/32), and calls in loops
/// (/38, /50: no per-call tests at all).
const CHECKED: &str =
    "'HumanEval/2', 'HumanEval/4', 'HumanEval/32', 'HumanEval/38', 'HumanEval/50'";

#[test]
#[ignore = "needs the benchmark data: ../shared/data or TW_BENCHMARKS (TW_REQUIRE_DATA)"]
fn execute_grades_humaneval_with_its_check_as_tw_score_does() {
    let Some(dir) = benchmarks() else { return };
    let p = Project::new();
    // A correct program off by 1e-9: HumanEval/4's check allows 1e-6, `==` does not.
    p.write(
        "extra.jsonl",
        &format!(
            "{}\n",
            serde_json::json!({"candidate": "HumanEval/4#extra", "task_id": "HumanEval/4", "sample": 1000,
                "program": "def mean_absolute_deviation(numbers):\n    m = sum(numbers) / len(numbers)\n    return sum(abs(x - m) for x in numbers) / len(numbers) + 1e-9\n",
                "entry_point": "mean_absolute_deviation"})
        ),
    );
    p.write(
        "spec.yaml",
        &format!(
            r#"experiment: checked
stages:
  humaneval: {{ kind: load_benchmark, params: {{ benchmark: humaneval, path: {d}/HumanEval.jsonl.gz }} }}
  all: {{ kind: load_samples, inputs: {{ problems: humaneval.problems }}, params: {{ path: {d}/humaneval_codegen16b_100samples.jsonl, format: codet, per_problem: 40 }} }}
  picked: {{ kind: filter, inputs: {{ rows: all.candidates }}, params: {{ where: "task_id IN ({CHECKED})" }} }}
  extra: {{ kind: load, params: {{ path: extra.jsonl }} }}
  samples: {{ kind: concat, inputs: {{ tables: [picked.rows, extra.rows] }} }}
  verify:
    kind: execute
    inputs: {{ candidates: samples.rows, tests: humaneval.tests }}
    params: {{ candidate_id: candidate, input_format: tagged, expected_format: tagged, timeout: 3 }}
"#,
            d = dir.display()
        ),
    );
    p.run_ok("spec.yaml");
    let summary = export(&p, "spec.yaml", "verify.summary");
    let samples = export(&p, "spec.yaml", "samples.rows");
    let lines: String = samples
        .iter()
        .map(|r| format!("{}\n", Value::Object(r.clone())))
        .collect();
    p.write("samples.jsonl", &lines);
    let ran = p.tw(&[
        "score",
        "--benchmark",
        "humaneval",
        "--problems",
        dir.join("HumanEval.jsonl.gz").to_str().unwrap(),
        "--samples",
        "samples.jsonl",
        "--allow-partial",
        "--k",
        "1",
        "--details",
        "details.jsonl",
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let scored: BTreeMap<(String, u64), bool> = p
        .read("details.jsonl")
        .lines()
        .map(|l| {
            let d = serde_json::from_str::<Value>(l).unwrap();
            (
                (
                    d["task_id"].as_str().unwrap().to_string(),
                    d["index"].as_u64().unwrap(),
                ),
                d["base_pass"].as_bool().unwrap(),
            )
        })
        .collect();
    // `tw score` numbers each problem's samples in file order, as `samples` holds them.
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut differ = Vec::new();
    for (row, verdict) in samples.iter().zip(&summary) {
        let task = row["task_id"].as_str().unwrap().to_string();
        let index = seen.entry(task.clone()).or_default();
        let ours = verdict["pass"].as_bool().unwrap();
        if scored[&(task.clone(), *index)] != ours {
            differ.push(format!("{task} #{index}"));
        }
        *index += 1;
    }
    assert_eq!(summary.len(), 201);
    assert!(
        differ.is_empty(),
        "execute and tw score differ on {differ:?}"
    );
    assert!(
        scored.values().filter(|p| **p).count() > 20,
        "some samples pass"
    );
    // The off-by-1e-9 program is correct, not a wrong answer to mine, though
    // every per-call test, compared with `==`, says otherwise.
    let last = summary.last().unwrap();
    assert_eq!(
        (last["pass"].as_bool(), last["label"].as_str()),
        (Some(true), Some("correct")),
        "{last:?}"
    );
    assert_eq!(
        last["first_verdict"].as_str(),
        Some("wrong_answer"),
        "{last:?}"
    );
    // Problems without per-call tests are graded by their check, not skipped.
    for task in ["HumanEval/38", "HumanEval/50"] {
        assert!(
            summary
                .iter()
                .any(|r| r["task_id"] == task && r["pass"] == true),
            "{task}"
        );
    }
}

#[test]
#[ignore = "needs the benchmark data: ../shared/data or TW_BENCHMARKS (TW_REQUIRE_DATA)"]
fn replay_spec_agrees_with_tw_score_on_16400_recorded_samples() {
    let Some(dir) = benchmarks() else { return };
    let p = Project::new();
    // The spec as shipped, reading the benchmark files where this machine has them.
    let spec = fs_err::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("specs/replay_codegen.yaml"),
    )
    .unwrap()
    .replace("../data/benchmarks", &dir.display().to_string());
    p.write("replay.yaml", &spec);
    p.run_ok("replay.yaml");

    // Per sample: `execute` (via HumanEval's check in the pipeline) against
    // `score` (`tw score`'s code path), matched by problem and sample number.
    let graded: BTreeMap<String, bool> = export(&p, "replay.yaml", "graded.summary")
        .into_iter()
        .map(|r| {
            (
                r["candidate"].as_str().unwrap().to_string(),
                r["pass"].as_bool().unwrap(),
            )
        })
        .collect();
    let verdicts = export(&p, "replay.yaml", "score.verdicts");
    assert_eq!((graded.len(), verdicts.len()), (16_400, 16_400));
    let differ: Vec<String> = verdicts
        .iter()
        .filter_map(|v| {
            let id = format!(
                "{}#{}",
                v["task_id"].as_str().unwrap(),
                v["sample"].as_u64().unwrap()
            );
            (graded[&id] != v["base_pass"].as_bool().unwrap()).then_some(id)
        })
        .collect();
    eprintln!(
        "replay: execute and score agree on {} of 16400 samples",
        16_400 - differ.len()
    );
    assert!(differ.is_empty(), "execute and score differ on {differ:?}");

    let scores = export(&p, "replay.yaml", "score.scores");
    let pass_at = |k: u64| {
        scores
            .iter()
            .find(|r| r["suite"] == "base" && r["k"].as_u64() == Some(k))
            .map(|r| 100.0 * r["pass_at_k"].as_f64().unwrap())
            .unwrap()
    };
    let summary = |n: u64, rule: &str| {
        export(
            &p,
            "replay.yaml",
            &format!("select[n={n},selection={rule}].summary"),
        )
        .remove(0)
    };
    for rule in ["first", "random", "public_filter", "best_of_n"] {
        // Any of all 100 samples: the oracle is pass@100, computed apart.
        let all = summary(100, rule);
        assert!(
            (pct(&all, "oracle_pct") - pass_at(100)).abs() < 1e-9,
            "{rule}: {all:?}"
        );
        for n in [1u64, 5, 10, 25, 50, 100] {
            let s = summary(n, rule);
            assert!(
                (pct(&s, "pass_at_n_pct") - pass_at(n)).abs() < 1e-9,
                "{rule} n={n}: {s:?}"
            );
            assert!(
                pct(&s, "honest_pct") <= pct(&s, "oracle_pct"),
                "{rule} n={n}: {s:?}"
            );
        }
    }
    // No selection at N = 1: the share of first samples that pass, counted here.
    let firsts = graded
        .iter()
        .filter(|(id, _)| id.ends_with("#0"))
        .collect::<Vec<_>>();
    assert_eq!(firsts.len(), 164);
    let passing = firsts.iter().filter(|(_, pass)| **pass).count();
    let first = summary(1, "first");
    assert!(
        (pct(&first, "honest_pct") - 100.0 * passing as f64 / 164.0).abs() < 1e-9,
        "{first:?} vs {passing} of 164"
    );
    // The report renders from the same artifacts.
    let report = p.tw(&["report", "replay.yaml"]);
    assert_eq!(report.code, 0, "{}", report.stderr);

    // Paired: each rule against `first` on the same 164 problems, the
    // discordant problems counted here from the rules' own selections.
    let selected = |rule: &str| -> BTreeMap<String, bool> {
        export(
            &p,
            "replay.yaml",
            &format!("select[n=100,selection={rule}].selected"),
        )
        .into_iter()
        .map(|r| {
            (
                r["task_id"].as_str().unwrap().to_string(),
                r["honest_pass"].as_bool().unwrap(),
            )
        })
        .collect()
    };
    let first = selected("first");
    let best = selected("best_of_n");
    let only_first = first.iter().filter(|(t, ok)| **ok && !best[*t]).count() as u64;
    let only_best = best.iter().filter(|(t, ok)| **ok && !first[*t]).count() as u64;
    let paired = export(&p, "replay.yaml", "report.selection_by_problem_paired");
    let row = paired
        .iter()
        .find(|r| r["n"] == "100" && r["selection"] == "best_of_n")
        .unwrap_or_else(|| panic!("{paired:?}"));
    assert_eq!(row["pairs"].as_u64(), Some(164));
    assert_eq!(
        (row["only_baseline"].as_u64(), row["only_this"].as_u64()),
        (Some(only_first), Some(only_best))
    );
    let p_exact = exact_mcnemar(only_first, only_best);
    assert!(
        (row["p_mcnemar"].as_f64().unwrap() - p_exact).abs() < 1e-12 * p_exact.max(1e-300),
        "{row:?} vs {p_exact}"
    );
    assert_eq!(
        row["holds"], true,
        "best of 100 beats the first sample: {row:?}"
    );
    // At N = 1 every rule picks the first sample: no difference at all.
    for r in paired.iter().filter(|r| r["n"] == "1") {
        assert_eq!(
            (r["diff"].as_f64(), r["holds"].as_bool()),
            (Some(0.0), Some(false)),
            "{r:?}"
        );
    }
    // The browser: one cell per instance input, every sample an attempt.
    let site = p.path("reports/report");
    assert!(site.join("index.html").is_file());
    let attempts = p.notes("browser_attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        attempts[0].as_u64(),
        Some(16_400 + 24 * 164),
        "graded samples + one selection per cell and problem"
    );
    let cell0 = fs_err::read_to_string(site.join("data/c0.js")).unwrap();
    assert_eq!(
        cell0.matches("\"HumanEval/").count(),
        164,
        "{}",
        &cell0[..200]
    );
}

/// McNemar's exact p from the binomial tail, in exact integers where they fit.
fn exact_mcnemar(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // C(n, i) / 2^n summed with f64 running products (n <= 164 here).
    let mut term = 0.5f64.powi(n as i32);
    let mut tail = term;
    for i in 1..=k {
        term *= (n - i + 1) as f64 / i as f64;
        tail += term;
    }
    (2.0 * tail).min(1.0)
}

/// The paper's Table 3 as printed (LiveCodeBench easy): Greedy, CoT, then
/// sequential and parallel for w/o trace, CodeExecutor, Concise, NExT and
/// SemCoder (`concise2`).
const PRINTED_TABLE3: [(&str, [f64; 12]); 7] = [
    (
        "gpt-4o-mini",
        [
            73.08, 73.08, 98.46, 98.46, 99.23, 99.23, 99.23, 88.46, 80.77, 80.77, 84.62, 80.77,
        ],
    ),
    (
        "deepseek-chat",
        [
            84.62, 100.00, 100.00, 100.00, 100.00, 100.00, 100.00, 96.15, 96.15, 96.15, 96.15, 92.3,
        ],
    ),
    (
        "Marco-o1",
        [
            53.85, 50.00, 76.92, 69.23, 76.92, 73.08, 73.08, 61.54, 53.85, 69.23, 61.54, 57.69,
        ],
    ),
    (
        "phi-4",
        [
            53.85, 73.08, 100.00, 96.15, 100.00, 91.54, 100.00, 80.77, 76.92, 84.62, 80.77, 84.62,
        ],
    ),
    (
        "Llama-3.1-8B-Instruct",
        [
            34.62, 34.62, 67.69, 66.92, 74.62, 74.62, 65.38, 46.15, 42.31, 57.69, 57.69, 57.69,
        ],
    ),
    (
        "deepseek-coder-6.7b-instruct",
        [
            42.31, 46.15, 68.46, 61.54, 69.23, 76.15, 69.23, 53.85, 50.00, 57.69, 61.54, 50.00,
        ],
    ),
    (
        "Qwen2.5-Coder-7B-Instruct",
        [
            61.54, 34.62, 83.85, 87.69, 80.77, 90.77, 86.92, 53.85, 61.54, 65.38, 50.00, 53.85,
        ],
    ),
];

#[test]
#[ignore = "needs the original study's artifacts: ../shared/data or TW_SEED_ARTIFACTS (TW_REQUIRE_DATA)"]
fn table3_spec_reproduces_the_printed_cells_and_pairs_every_representation_with_no_trace() {
    let Some(dir) = tw_stages::testing::shared_data(
        "TW_SEED_ARTIFACTS",
        "seed-artifacts",
        "table3-outcomes.jsonl",
    ) else {
        return;
    };
    let p = Project::new();
    let spec = fs_err::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("specs/table3_outcomes.yaml"),
    )
    .unwrap()
    .replace("../data/seed-artifacts", &dir.display().to_string());
    p.write("table3.yaml", &spec);
    let ran = p.tw(&["report", "table3.yaml"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);

    let columns = ["greedy / notrace", "cot / notrace"]
        .into_iter()
        .map(String::from)
        .chain(["sequential", "parallel"].iter().flat_map(|s| {
            ["notrace", "codeexecutor", "concise", "next", "concise2"].map(|r| format!("{s} / {r}"))
        }))
        .collect::<Vec<_>>();
    let table = export(&p, "table3.yaml", "report.table3");
    let mut same = 0;
    let mut differ = Vec::new();
    for (model, printed) in PRINTED_TABLE3 {
        let row = table
            .iter()
            .find(|r| r["model"] == model)
            .unwrap_or_else(|| panic!("no {model}"));
        for (column, want) in columns.iter().zip(printed) {
            match row[column.as_str()].as_f64() {
                Some(got) if (got - want).abs() < 0.006 => same += 1,
                got => differ.push(format!(
                    "{model} {column}: printed {want}, recorded {got:?}"
                )),
            }
        }
    }
    eprintln!(
        "table 3: {same} of 84 printed cells recomputed exactly; differ:\n{}",
        differ.join("\n")
    );
    // What the recorded files cannot give: greedy for six of seven models (the
    // greedy files disagree with the printed column), deepseek-chat's sequential
    // runs (recorded nothing) and parallel runs (the trace files cover 2-16 of
    // 26 problems; its no-trace file gives 92.31), and Marco-o1's CoT (no file).
    assert_eq!(same, 67, "{differ:#?}");
    let expected_differ: Vec<String> = differ
        .iter()
        .filter(|d| {
            d.contains("greedy / notrace")
                || d.starts_with("deepseek-chat sequential")
                || d.starts_with("deepseek-chat parallel")
                || d.starts_with("Marco-o1 cot")
        })
        .cloned()
        .collect();
    assert_eq!(expected_differ, differ);

    // Paired against no trace: 6 models x 2 strategies x 4 representations, 26 problems each.
    let paired = export(&p, "table3.yaml", "report.representations_paired");
    assert_eq!(paired.len(), 48);
    assert!(
        paired.iter().all(|r| r["pairs"].as_u64() == Some(26)),
        "{paired:?}"
    );
    let holding: Vec<_> = paired.iter().filter(|r| r["holds"] == true).collect();
    assert!(
        holding.is_empty(),
        "no representation difference holds up: {holding:?}"
    );
    // One comparison by hand: Llama-3.1-8B parallel, NExT against no trace:
    // 3 problems pass only with NExT, none only without; p = 2 / 2^3.
    let llama = paired
        .iter()
        .find(|r| {
            r["model"] == "Llama-3.1-8B-Instruct"
                && r["strategy"] == "parallel"
                && r["representation"] == "next"
        })
        .unwrap();
    assert_eq!(
        (llama["only_baseline"].as_u64(), llama["only_this"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(llama["p_mcnemar"].as_f64(), Some(0.25));
    assert!((llama["diff"].as_f64().unwrap() - 300.0 / 26.0).abs() < 1e-9);
    // A sequential cell is a mean over rounds: fractions per problem get the
    // interval and no McNemar test.
    let seq = paired
        .iter()
        .find(|r| {
            r["model"] == "Llama-3.1-8B-Instruct"
                && r["strategy"] == "sequential"
                && r["representation"] == "concise"
        })
        .unwrap();
    assert!(
        seq["p_mcnemar"].is_null() && seq["only_this"].is_null(),
        "{seq:?}"
    );
    assert!(
        seq["ci_low"].as_f64().unwrap() < 0.0 && seq["ci_high"].as_f64().unwrap() > 0.0,
        "{seq:?}"
    );
    let final_round = export(&p, "table3.yaml", "report.final_round_paired");
    assert_eq!(final_round.len(), 24);
    assert!(
        final_round
            .iter()
            .all(|r| r["p_mcnemar"].is_f64() && r["holds"] == false),
        "{final_round:?}"
    );
    let index = p.read("reports/report/index.md");
    assert!(index.contains("Paired on `task_id`"), "{index}");
}

/// `tw score --details` pass per sample (`plus` for EvalPlus: base and plus),
/// keyed by problem and the sample's number within it.
fn scored(
    p: &Project,
    bench: &str,
    problems: &std::path::Path,
    samples: &str,
    plus: bool,
) -> Vec<bool> {
    let ran = p.tw(&[
        "score",
        "--benchmark",
        bench,
        "--problems",
        problems.to_str().unwrap(),
        "--samples",
        samples,
        "--allow-partial",
        "--k",
        "1",
        "--details",
        "details.jsonl",
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    p.read("details.jsonl")
        .lines()
        .map(|l| {
            let d = serde_json::from_str::<Value>(l).unwrap();
            d[if plus { "plus_pass" } else { "base_pass" }]
                .as_bool()
                .unwrap()
        })
        .collect()
}

#[test]
#[ignore = "needs the benchmark data: ../shared/data or TW_BENCHMARKS (TW_REQUIRE_DATA)"]
fn execute_and_tw_score_agree_on_humaneval_plus_and_mbpp() {
    let Some(dir) = benchmarks() else { return };
    let p = Project::new();
    // HumanEval+ (the Mini file: the plus inputs EvalPlus ships for quick
    // runs): 10 CodeGen samples of each of the first 12 problems (matched
    // to problems by HumanEval's prompts, which CodeT's file shares).
    let mini = dir.join("HumanEvalPlus-Mini.jsonl.gz");
    let first: Vec<String> = (0..12).map(|i| format!("'HumanEval/{i}'")).collect();
    p.write(
        "plus.yaml",
        &format!(
            r#"experiment: plus
stages:
  heplus: {{ kind: load_benchmark, params: {{ benchmark: humaneval-plus, path: {mini}, tests: all }} }}
  he: {{ kind: load_benchmark, params: {{ benchmark: humaneval, path: {d}/HumanEval.jsonl.gz }} }}
  all: {{ kind: load_samples, inputs: {{ problems: he.problems }}, params: {{ path: {d}/humaneval_codegen16b_100samples.jsonl, format: codet, per_problem: 10 }} }}
  picked: {{ kind: filter, inputs: {{ rows: all.candidates }}, params: {{ where: "task_id IN ({first})" }} }}
  verify:
    kind: execute
    inputs: {{ candidates: picked.rows, tests: heplus.tests }}
    params: {{ candidate_id: candidate, input_format: tagged, expected_format: tagged, timeout: 4, stop_at_first_failure: true }}
"#,
            mini = mini.display(),
            d = dir.display(),
            first = first.join(", ")
        ),
    );
    p.run_ok("plus.yaml");
    let executed: Vec<bool> = export(&p, "plus.yaml", "verify.summary")
        .iter()
        .map(|r| r["pass"].as_bool().unwrap())
        .collect();
    let samples: String = export(&p, "plus.yaml", "picked.rows")
        .into_iter()
        .map(|r| format!("{}\n", Value::Object(r)))
        .collect();
    p.write("plus_samples.jsonl", &samples);
    let by_score = scored(&p, "humaneval-plus", &mini, "plus_samples.jsonl", true);
    assert_eq!(executed.len(), 120);
    assert_eq!(
        executed, by_score,
        "execute vs tw score on HumanEval+ (base and plus)"
    );
    assert!(executed.iter().any(|p| *p) && executed.iter().any(|p| !*p));

    // MBPP: each reference program, and one that returns None.
    let mbpp = dir.join("mbpp.jsonl");
    p.write(
        "mbpp.yaml",
        &format!(
            "experiment: mbpp\nstages:\n  mbpp: {{ kind: load_benchmark, params: {{ benchmark: mbpp, path: {}, limit: 20 }} }}\n",
            mbpp.display()
        ),
    );
    p.run_ok("mbpp.yaml");
    let mut rows = String::new();
    for problem in export(&p, "mbpp.yaml", "mbpp.problems") {
        let entry = problem["entry_point"].as_str().unwrap();
        for program in [
            problem["reference"].as_str().unwrap().to_string(),
            format!("def {entry}(*args):\n    return None\n"),
        ] {
            rows.push_str(&format!(
                "{}\n",
                serde_json::json!({"task_id": problem["task_id"], "entry_point": entry, "solution": program, "program": program})
            ));
        }
    }
    p.write("mbpp_samples.jsonl", &rows);
    p.write(
        "mbpp.yaml",
        &format!(
            "experiment: mbpp\nstages:\n  mbpp: {{ kind: load_benchmark, params: {{ benchmark: mbpp, path: {}, limit: 20 }} }}\n  samples: {{ kind: load, params: {{ path: mbpp_samples.jsonl }} }}\n  verify:\n    kind: execute\n    inputs: {{ candidates: samples.rows, tests: mbpp.tests }}\n    params: {{ input_format: tagged, expected_format: tagged }}\n",
            mbpp.display()
        ),
    );
    p.run_ok("mbpp.yaml");
    let executed: Vec<bool> = export(&p, "mbpp.yaml", "verify.summary")
        .iter()
        .map(|r| r["pass"].as_bool().unwrap())
        .collect();
    let by_score = scored(&p, "mbpp", &mbpp, "mbpp_samples.jsonl", false);
    assert_eq!(executed.len(), 40);
    assert_eq!(executed, by_score, "execute vs tw score on MBPP");
    assert_eq!(executed.iter().filter(|p| **p).count(), 20, "{executed:?}");
}

#[test]
fn tw_report_discloses_compute_per_model_and_dataset() {
    let p = table7_project();
    let spec = p.read("spec.yaml")
        + "  report:\n    kind: report\n    inputs: { rows: [greedy.summary, bon.summary] }\n    params: { title: t, tables: [{ name: t7, rows: [selection], columns: [strategy], value: honest_pct }] }\n";
    p.write("spec.yaml", &spec);
    let ran = p.tw(&[
        "report",
        "spec.yaml",
        "--cpu-watts",
        "20",
        "--gpu-watts",
        "300",
        "-j",
        "1",
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains("compute/compute.md"), "{}", ran.stdout);
    let md = p.read("reports/compute/compute.md");
    assert!(
        md.contains("at 20 W per busy CPU core, 300 W per GPU"),
        "{md}"
    );
    // The stages that ran programs used CPU, and say so.
    let csv = p.read("reports/compute/compute.csv");
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|c| c.trim_matches('"').to_string())
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "{csv}");
    let cpu: f64 = rows.iter().map(|r| r[4].parse::<f64>().unwrap()).sum();
    let stages: u64 = rows.iter().map(|r| r[2].parse::<u64>().unwrap()).sum();
    assert!(cpu > 0.0, "{csv}");
    // The six stages the report needed (`verify` is not one of them).
    assert_eq!(stages, 6, "{csv}");
    assert!(
        rows.iter().any(|r| r[1] == "mbpp-r" || r[1] == "mbpp-plus"),
        "{csv}"
    );
    // Run alone (-j 1), no stage's CPU overlaps another's.
    assert!(!md.contains("overlap"), "{md}");
}
