//! The sandbox as infrastructure: a worker that dies, hangs or answers
//! garbage is retried once and then fails the run, naming the worker and the
//! job (never a verdict on the program); retries are counted; the policy for
//! a machine without bubblewrap is followed and recorded.

use crate::harness::{Project, Ran};
use serde_json::{Value, json};

/// A one-problem HumanEval-format benchmark with `n` correct samples.
fn benchmark(p: &Project, n: usize) {
    let problem = json!({
        "task_id": "Inc/0",
        "prompt": "def inc(x):\n",
        "entry_point": "inc",
        "canonical_solution": "    return x + 1\n",
        "test": "def check(candidate):\n    assert candidate(1) == 2\n",
    });
    p.write("problems.jsonl", &format!("{problem}\n"));
    let sample = json!({"task_id": "Inc/0", "completion": "    return x + 1\n"});
    p.write("samples.jsonl", &format!("{sample}\n").repeat(n));
}

/// `score ... --json` on `problems.jsonl` and `samples.jsonl`, every sample
/// its own job (`--run-duplicates`: these tests count jobs, and their samples
/// repeat one program).
fn score_args<'a>(benchmark: &'a str, workers: &'a str) -> [&'a str; 15] {
    [
        "score",
        "--run-duplicates",
        "--benchmark",
        benchmark,
        "--problems",
        "problems.jsonl",
        "--samples",
        "samples.jsonl",
        "--k",
        "1",
        "--timeout",
        "0.5",
        "-j",
        workers,
        "--json",
    ]
}

/// The `--json` summary of a run that must have succeeded.
fn scored(ran: &Ran) -> Value {
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    serde_json::from_str(&ran.stdout).unwrap()
}

/// `tw [before] score ... --json` on that benchmark.
fn score_with(p: &Project, before: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut args = before.to_vec();
    args.extend(score_args("humaneval", "1"));
    p.tw_env(&args, env)
}

fn score(p: &Project, env: &[(&str, &str)]) -> Ran {
    score_with(p, &[], env)
}

#[test]
fn a_worker_that_dies_once_is_replaced_and_the_job_retried_and_counted() {
    // Each worker dies on its second job: the second sample is retried on a
    // fresh worker (its first job), once.
    let p = Project::new();
    benchmark(&p, 2);
    let ran = score(&p, &[("TW_FAILPOINT", "sandbox_worker:exit:2")]);
    let v = scored(&ran);
    assert_eq!(v["passed"], json!(2), "no sample pays for the sandbox: {v}");
    assert_eq!(v["sandbox_retries"], json!(1), "{v}");
}

#[test]
fn a_sandbox_that_keeps_failing_fails_the_run_and_names_the_worker_and_the_job() {
    for (failpoint, why) in [
        ("sandbox_worker:exit:1", "it exited"),
        ("sandbox_worker:garbage:1", "it answered garbage"),
    ] {
        let p = Project::new();
        benchmark(&p, 2);
        let ran = score(&p, &[("TW_FAILPOINT", failpoint)]);
        assert_eq!(ran.code, 1, "{failpoint}: {}", ran.stderr);
        assert!(
            ran.stderr
                .contains("sandbox worker 0 failed on Inc/0 sample 0 and again on a retry"),
            "{failpoint}: {}",
            ran.stderr
        );
        assert!(ran.stderr.contains(why), "{failpoint}: {}", ran.stderr);
        assert!(
            ran.stderr.contains("not the program"),
            "{failpoint}: {}",
            ran.stderr
        );
        assert!(ran.stdout.is_empty(), "no score from a broken sandbox");
    }
}

/// HumanEval+ scoring hands out its jobs as they become ready (references,
/// then samples, plus suites after passing base suites): a sandbox that keeps
/// failing still ends the run, naming the job, and does not hang it.
#[test]
fn a_failing_sandbox_ends_an_evalplus_run_too() {
    let p = Project::new();
    let problem = json!({
        "task_id": "Inc/0", "prompt": "def inc(x):\n", "entry_point": "inc",
        "canonical_solution": "    return x + 1\n",
        "test": "def check(candidate):\n    assert candidate(1) == 2\n",
        "base_input": [[1]], "plus_input": [[2], [3]], "atol": 0,
    });
    p.write("problems.jsonl", &format!("{problem}\n"));
    let sample = json!({"task_id": "Inc/0", "completion": "    return x + 1\n"});
    p.write("samples.jsonl", &format!("{sample}\n").repeat(3));
    let args = score_args("humaneval-plus", "2");
    let ran = p.tw_env(&args, &[]);
    let v = scored(&ran);
    assert_eq!(
        (v["passed"].clone(), v["passed_plus"].clone()),
        (json!(3), json!(3)),
        "{v}"
    );
    // Every worker dies on its third job: references and samples are retried
    // on fresh workers and the run still scores everything.
    let ran = p.tw_env(&args, &[("TW_FAILPOINT", "sandbox_worker:exit:3")]);
    let v = scored(&ran);
    assert_eq!(v["passed_plus"], json!(3), "{v}");
    assert!(v["sandbox_retries"].as_u64().unwrap() >= 1, "{v}");
    // Every worker dies on its first job: the first reference fails twice.
    let started = std::time::Instant::now();
    let ran = p.tw_env(&args, &[("TW_FAILPOINT", "sandbox_worker:exit:1")]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("(canonical solution) and again on a retry"),
        "{}",
        ran.stderr
    );
    assert!(ran.stdout.is_empty(), "no score from a broken sandbox");
    assert!(started.elapsed().as_secs() < 60, "the run ended");
}

#[test]
fn a_hung_worker_is_killed_by_the_watchdog_and_the_run_ends() {
    let p = Project::new();
    benchmark(&p, 1);
    let started = std::time::Instant::now();
    let ran = score(&p, &[("TW_FAILPOINT", "sandbox_worker:hang:1")]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("did not answer within"),
        "{}",
        ran.stderr
    );
    // Twice the job's backstop (1.5 s) and 10 s of grace, and no more.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn retries_and_the_isolation_in_force_are_in_the_manifest() {
    let p = Project::new();
    benchmark(&p, 2);
    // The two samples repeat one program: `run_duplicates` makes each a job.
    p.write(
        "s.yaml",
        "experiment: sandboxed\nstages:\n  problems: { kind: load, params: { path: problems.jsonl } }\n  samples: { kind: load, params: { path: samples.jsonl } }\n  score:\n    kind: score\n    inputs: { problems: problems.rows, samples: samples.rows }\n    params: { benchmark: humaneval, k: [1], timeout: 0.5, bootstrap: 0, workers: 1, run_duplicates: true }\n",
    );
    let ran = p.tw_env(
        &["run", "s.yaml"],
        &[("TW_FAILPOINT", "sandbox_worker:exit:2")],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let manifests: Vec<Value> = p
        .objects()
        .iter()
        .filter_map(|dir| fs_err::read_to_string(dir.join("manifest.json")).ok())
        .map(|text| serde_json::from_str(&text).unwrap())
        .collect();
    let text = serde_json::to_string(&manifests).unwrap();
    assert!(text.contains("\"sandbox_retries\":1"), "{text}");
    assert!(text.contains("\"sandbox\":\""), "{text}");
}

#[test]
fn without_bubblewrap_require_refuses_auto_warns_and_none_is_recorded() {
    let p = Project::new();
    benchmark(&p, 1);
    let missing = [("TW_BWRAP", "/nonexistent/bwrap")];
    let ran = score_with(&p, &["--sandbox", "require"], &missing);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("the sandbox is required (--sandbox require) but bubblewrap cannot run here"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("apt-get install bubblewrap"),
        "{}",
        ran.stderr
    );

    for (policy, says) in [
        ("auto", "NO SANDBOX: bubblewrap cannot run here"),
        ("none", "sandbox opted out (--sandbox none)"),
    ] {
        let ran = score(&p, &[missing[0], ("TW_SANDBOX", policy)]);
        assert_eq!(ran.code, 0, "{policy}: {}", ran.stderr);
        assert!(ran.stderr.contains(says), "{policy}: {}", ran.stderr);
        let v: Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(v["passed"], json!(1));
        let fact = v["sandbox"].as_str().unwrap();
        assert!(fact.contains(&format!("policy {policy}")), "{fact}");
        assert!(!fact.contains("bubblewrap"), "{fact}");
    }
}
