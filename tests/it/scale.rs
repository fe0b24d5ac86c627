//! Scale-out: sharded stages (each shard its own cached artifact) and the
//! Slurm executor against a real single-node Slurm.

use crate::harness::Project;
use std::path::PathBuf;

/// `n` programs, each traced on one input; every third one crashes, so
/// `represent` (which shows failing runs) has work in every shard. Two runs
/// per program id, so `represent`'s grouping matters.
fn programs(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        let (program, input) = if i % 3 == 0 {
            (
                "def mean(xs):\n    s = sum(xs)\n    return s / len(xs)\n",
                "[[]]".to_string(),
            )
        } else {
            (
                "def mean(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s / len(xs)\n",
                format!("[[{i}, {}, 3]]", i + 1),
            )
        };
        for run in 0..2 {
            let input = if run == 0 {
                input.clone()
            } else {
                "[[1]]".into()
            };
            let row = serde_json::json!({
                "task_id": format!("p{i}"),
                "entry_point": "mean",
                "program": program,
                "input": input,
                "expected": "[2.0]",
            });
            text.push_str(&row.to_string());
            text.push('\n');
        }
    }
    text
}

/// Candidates (two per problem, one wrong) and their tests.
fn candidates_and_tests(n: usize) -> (String, String) {
    let mut candidates = String::new();
    let mut tests = String::new();
    for i in 0..n {
        for (k, body) in ["return a + b", "return a - b"].iter().enumerate() {
            let row = serde_json::json!({
                "task_id": format!("t{i}"),
                "candidate": format!("t{i}#{k}"),
                "entry_point": "add",
                "program": format!("def add(a, b):\n    {body}\n"),
            });
            candidates.push_str(&row.to_string());
            candidates.push('\n');
        }
        let test = serde_json::json!({"task_id": format!("t{i}"), "input": format!("[{i}, 2]"), "expected": format!("{}", i + 2)});
        tests.push_str(&test.to_string());
        tests.push('\n');
    }
    (candidates, tests)
}

/// The repo's trace templates (`next.j2` includes shared macros).
fn write_templates(p: &Project) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates/traces");
    for entry in fs_err::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        p.write(&name, &fs_err::read_to_string(entry.path()).unwrap());
    }
}

/// The same stages twice: plain, and sharded (`<id>_sharded`).
const SPEC: &str = r#"
experiment: scale
stages:
  programs:
    kind: load
    params: { path: programs.jsonl }
  candidates:
    kind: load
    params: { path: candidates.jsonl }
  tests:
    kind: load
    params: { path: tests.jsonl }
  traced:
    kind: trace
    inputs: { programs: programs.rows }
    params: { expected: expected, keep: [program] }
  traced_sharded:
    kind: trace
    inputs: { programs: programs.rows }
    params: { expected: expected, keep: [program] }
    shard: { rows: 4 }
    resources: { cpus: 1, mem: 500M, time: "10:00" }
  next:
    kind: represent
    inputs: { runs: traced.runs, events: traced.events }
    params: { template: next.j2 }
  next_sharded:
    kind: represent
    inputs: { runs: traced_sharded.runs, events: traced_sharded.events }
    params: { template: next.j2 }
    shard: { rows: 3 }
  verify:
    kind: execute
    inputs: { candidates: candidates.rows, tests: tests.rows }
  verify_sharded:
    kind: execute
    inputs: { candidates: candidates.rows, tests: tests.rows }
    shard: { rows: 5 }
"#;

fn project(programs_n: usize, tasks_n: usize) -> Project {
    let p = Project::new();
    let (candidates, tests) = candidates_and_tests(tasks_n);
    write_templates(&p);
    p.write("spec.yaml", SPEC)
        .write("programs.jsonl", &programs(programs_n))
        .write("candidates.jsonl", &candidates)
        .write("tests.jsonl", &tests);
    p
}

fn export(p: &Project, target: &str) -> String {
    let ran = p.tw(&["export", "spec.yaml", target, "--format", "jsonl"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    ran.stdout
}

const OUTPUTS: &[(&str, &str)] = &[
    ("traced", "runs"),
    ("traced", "events"),
    ("next", "rows"),
    ("verify", "results"),
    ("verify", "summary"),
];

#[test]
fn a_sharded_stage_writes_what_the_unsharded_stage_writes() {
    let p = project(7, 6);
    let log = p.run_ok("spec.yaml");
    // 14 runs in shards of 4 rows; 7 programs (2 runs each) in shards that
    // close at 3 rows or more and never split a program (4, 4, 4, 2 runs);
    // 12 candidates in shards of 5.
    assert!(
        log.contains("traced_sharded  4 shards of up to 4 rows: 0 cached, 4 to run"),
        "{log}"
    );
    assert!(
        log.contains("next_sharded  4 shards of up to 3 rows: 0 cached, 4 to run"),
        "{log}"
    );
    assert!(
        log.contains("verify_sharded  3 shards of up to 5 rows: 0 cached, 3 to run"),
        "{log}"
    );
    for (stage, output) in OUTPUTS {
        let plain = export(&p, &format!("{stage}.{output}"));
        let sharded = export(&p, &format!("{stage}_sharded.{output}"));
        assert!(!plain.is_empty(), "{stage}.{output} is empty");
        assert_eq!(plain, sharded, "{stage}.{output} differs when sharded");
    }
    // Row numbers continue across shards: runs are numbered 0..14.
    let runs = export(&p, "traced_sharded.runs");
    let numbers: Vec<u64> = runs
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["run"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(numbers, (0..14).collect::<Vec<_>>());
    // Each shard is its own artifact, kept by `gc` while the spec uses the node.
    let before = p.objects().len();
    let gc = p.tw(&["gc", "spec.yaml"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert_eq!(p.objects().len(), before, "{}", gc.stdout);
    assert!(before >= 9 + 4 + 3 + 3, "{before} objects");
}

#[test]
fn appending_rows_runs_only_the_new_shards() {
    let p = project(7, 6);
    p.run_ok("spec.yaml");
    // 3 more programs (6 runs): the 3 full shards of 4 runs keep their keys;
    // the last partial one (2 runs) grows, and one more shard appears.
    p.write("programs.jsonl", &programs(10));
    let log = p.run_ok("spec.yaml");
    assert!(
        log.contains("traced_sharded  5 shards of up to 4 rows: 3 cached, 2 to run"),
        "{log}"
    );
    assert!(log.contains("(2 of 5 shards ran)"), "{log}");
    for (stage, output) in &OUTPUTS[..3] {
        assert_eq!(
            export(&p, &format!("{stage}.{output}")),
            export(&p, &format!("{stage}_sharded.{output}"))
        );
    }
    // The plan says why the sharded node reruns, and then everything is cached.
    let statuses = p.statuses("spec.yaml");
    assert!(statuses.iter().all(|(_, s)| s == "cached"), "{statuses:?}");
}

#[test]
fn a_failed_shard_is_the_only_one_a_rerun_runs() {
    let p = project(7, 6);
    // The process dies while shard 2 of `traced_sharded` commits.
    let crashed = p.tw_env(
        &["run", "spec.yaml", "-j", "1", "--to", "traced_sharded"],
        &[("TW_FAILPOINT", "before_commit:traced_sharded shard 2:exit")],
    );
    assert_ne!(crashed.code, 0, "{}", crashed.stderr);
    assert!(
        crashed
            .stderr
            .contains("failpoint before_commit:traced_sharded shard 2"),
        "{}",
        crashed.stderr
    );
    let log = p.run_ok("spec.yaml");
    assert!(
        log.contains("traced_sharded  4 shards of up to 4 rows: 2 cached, 2 to run"),
        "{log}"
    );
    assert_eq!(
        export(&p, "traced.events"),
        export(&p, "traced_sharded.events")
    );
}

#[test]
fn shard_and_resources_errors_name_the_field() {
    let p = Project::new();
    p.write(
        "spec.yaml",
        r#"
experiment: bad
stages:
  programs:
    kind: load
    params: { path: programs.jsonl }
    shard: { rows: 10 }
  traced:
    kind: trace
    inputs: { programs: programs.rows }
    shard: { rows: 0, by: x }
    resources: { gpus: many, memory: 4G }
"#,
    )
    .write("programs.jsonl", "");
    let ran = p.tw(&["validate", "spec.yaml"]);
    assert_eq!(ran.code, 2);
    insta::assert_snapshot!("shard_errors", ran.normalized(&p));
}

/// A real Slurm (scripts/setup-slurm.sh) is on this machine: `sbatch` on
/// PATH and a node that answers. `TW_REQUIRE_SLURM=1` turns its absence
/// into a failure (CI sets it).
pub(crate) fn slurm_available() -> bool {
    let up = std::process::Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .map(|o| o.status.success() && !o.stdout.is_empty())
        .unwrap_or(false);
    tw_stages::testing::have(
        tw_stages::testing::Need::Slurm,
        up,
        "no Slurm answers `sinfo`",
    )
}

#[test]
#[ignore = "needs Slurm: scripts/setup-slurm.sh (TW_REQUIRE_SLURM)"]
fn the_slurm_executor_writes_what_the_local_executor_writes() {
    if !slurm_available() {
        return;
    }
    let local = project(7, 6);
    local.run_ok("spec.yaml");
    let cluster = project(7, 6);
    // Shard 1 of `traced_sharded` dies once on the cluster: tw resubmits it alone.
    let marker = cluster.path("failed-once");
    let ran = cluster.tw_env(
        &[
            "run",
            "spec.yaml",
            "--executor",
            "slurm",
            "--poll",
            "0.2",
            "--no-progress",
        ],
        &[(
            "TW_FAILPOINT",
            &format!(
                "before_commit:traced_sharded shard 1:exit_once={}",
                marker.display()
            ),
        )],
    );
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        marker.exists(),
        "the failpoint never fired:\n{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("traced_sharded shard 1 failed")
            && ran.stderr.contains("resubmitting")
            && ran.stderr.contains("attempt 2"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("traced_sharded  job "),
        "{}",
        ran.stderr
    );
    // Every artifact is byte-identical to the local executor's.
    for (stage, output) in OUTPUTS {
        for id in [stage.to_string(), format!("{stage}_sharded")] {
            let target = format!("{id}.{output}");
            let mut bytes = Vec::new();
            for p in [&local, &cluster] {
                let file = p.path(&format!("{id}-{output}.parquet"));
                let ran = p.tw(&[
                    "export",
                    "spec.yaml",
                    &target,
                    "--format",
                    "parquet",
                    "-o",
                    file.to_str().unwrap(),
                ]);
                assert_eq!(ran.code, 0, "{}", ran.stderr);
                bytes.push(fs_err::read(&file).unwrap());
            }
            assert!(!bytes[0].is_empty());
            assert!(bytes[0] == bytes[1], "{target} differs between executors");
        }
    }
    assert_eq!(local.keys("spec.yaml"), cluster.keys("spec.yaml"));
    // The job script asked for the stage's resources.
    let scripts: Vec<String> = walk(&cluster.path("cache/v1/slurm"))
        .into_iter()
        .filter(|p| {
            p.to_string_lossy().contains("traced_sharded")
                && p.extension().is_some_and(|e| e == "sh")
        })
        .map(|p| fs_err::read_to_string(p).unwrap())
        .collect();
    assert_eq!(scripts.len(), 2, "one job, one resubmission");
    assert!(
        scripts
            .iter()
            .all(|s| s.contains("#SBATCH --cpus-per-task=1")
                && s.contains("#SBATCH --mem=500M")
                && s.contains("#SBATCH --time=10:00"))
    );
    assert!(
        scripts
            .iter()
            .any(|s| s.contains("#SBATCH --array=0,1,2,3"))
    );
    assert!(scripts.iter().any(|s| s.contains("#SBATCH --array=1\n")));
    // A second run submits nothing.
    let again = cluster.tw(&["run", "spec.yaml", "--executor", "slurm", "--no-progress"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(!again.stderr.contains("submitted"), "{}", again.stderr);
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs_err::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
