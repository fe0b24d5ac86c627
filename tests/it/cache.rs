//! Caching behaviour end to end: reruns, invalidation, early cutoff, crashes,
//! concurrency, and the inspection commands.

use crate::harness::{Project, into_ran, pipeline_project, status_map};

const SPEC: &str = "specs/pipeline.yaml";

#[test]
fn identical_rerun_executes_nothing() {
    let p = pipeline_project();
    let first = p.run_ok(SPEC);
    assert!(
        first.contains("0 cached, 5 ran, 0 cut off early"),
        "{first}"
    );
    let second = p.run_ok(SPEC);
    assert!(
        second.contains("5 cached, 0 ran, 0 cut off early"),
        "{second}"
    );
    let plan = p.tw(&["plan", SPEC]);
    assert!(
        plan.stdout.starts_with("pipeline: 5 stages, 0 to run\n"),
        "{}",
        plan.stdout
    );
    // the lock file is unchanged by an identical rerun
    let lock = p.read("specs/pipeline.yaml.lock");
    p.run_ok(SPEC);
    assert_eq!(lock, p.read("specs/pipeline.yaml.lock"));
    assert!(lock.contains("\"complete\": true"));
}

#[test]
fn changing_a_param_reruns_that_stage_and_its_dependents_only() {
    let p = pipeline_project();
    p.run_ok(SPEC);
    p.write(
        SPEC,
        &p.read(SPEC).replace("difficulty = 'easy'", "n_tests > 2"),
    );
    let plan = p.plan(SPEC);
    let by_id: std::collections::BTreeMap<_, _> = plan
        .iter()
        .map(|(id, st, _, r)| (id.as_str(), (st.as_str(), r.clone())))
        .collect();
    assert_eq!(by_id["problems"].0, "cached");
    assert_eq!(by_id["notes"].0, "cached");
    assert_eq!(by_id["easy"].0, "run");
    assert_eq!(
        by_id["easy"].1,
        vec!["params.where: \"difficulty = 'easy'\" -> \"n_tests > 2\"".to_string()]
    );
    assert_eq!(by_id["prompts"].0, "after");
    assert_eq!(
        by_id["prompts"].1,
        vec!["input `rows` changes (easy reruns)".to_string()]
    );
    assert_eq!(by_id["slim"].0, "after");
    let out = p.run_ok(SPEC);
    assert!(out.contains("2 cached, 3 ran, 0 cut off early"), "{out}");
}

#[test]
fn equal_upstream_bytes_cut_downstream_off() {
    let p = pipeline_project();
    p.run_ok(SPEC);
    // A different expression that selects the same rows: `easy` reruns, its bytes
    // are identical, so `prompts` and `slim` are cut off.
    p.write(
        SPEC,
        &p.read(SPEC)
            .replace("difficulty = 'easy'", "difficulty IN ('easy')"),
    );
    let out = p.run_ok(SPEC);
    assert!(out.contains("2 cached, 1 ran, 2 cut off early"), "{out}");
    assert!(out.contains("cut off prompts"), "{out}");
}

#[test]
fn editing_a_template_reruns_exactly_the_stages_that_read_it() {
    let p = pipeline_project();
    p.run_ok(SPEC);
    // header.j2 is included by prompt.j2 only
    p.write("specs/templates/header.j2", "# Task to repair");
    let st = p.statuses(SPEC);
    let m = status_map(&st);
    assert_eq!(
        (m["problems"], m["easy"], m["notes"]),
        ("cached", "cached", "cached")
    );
    assert_eq!((m["prompts"], m["slim"]), ("run", "after"));
    let reasons = p
        .plan(SPEC)
        .into_iter()
        .find(|n| n.0 == "prompts")
        .unwrap()
        .3;
    assert_eq!(
        reasons,
        vec!["file templates/header.j2 changed".to_string()]
    );
    p.run_ok(SPEC);
    p.write(
        "specs/templates/note.j2",
        "{{ task_id }}: {{ n_tests }} tests",
    );
    let st = p.statuses(SPEC);
    let m = status_map(&st);
    assert_eq!(m["notes"], "run");
    assert_eq!(st.iter().filter(|(_, s)| s != "cached").count(), 1);
}

#[test]
fn editing_the_data_file_reruns_the_loader() {
    let p = pipeline_project();
    p.run_ok(SPEC);
    let mut data = p.read("specs/data/problems.jsonl");
    data.push_str("{\"task_id\": \"t5\", \"difficulty\": \"hard\", \"n_tests\": 2, \"prompt\": \"def f5():\"}\n");
    p.write("specs/data/problems.jsonl", &data);
    let plan = p.plan(SPEC);
    assert_eq!(plan[0].1, "run");
    assert_eq!(
        plan[0].3,
        vec!["file data/problems.jsonl changed".to_string()]
    );
    // the new row is hard: `easy` reruns with equal bytes, so prompts/slim cut off
    let out = p.run_ok(SPEC);
    assert!(out.contains("0 cached, 3 ran, 2 cut off early"), "{out}");
}

#[test]
fn a_crash_before_commit_leaves_nothing_visible_and_the_next_run_completes() {
    let p = pipeline_project();
    let ran = p.tw_env(
        &["run", SPEC, "-j", "1"],
        &[("TW_FAILPOINT", "before_commit:prompts:exit")],
    );
    assert_eq!(ran.code, 137, "{}", ran.stderr);
    // prompts' staging dir exists but is not an artifact
    let st = p.statuses(SPEC);
    let m = status_map(&st);
    assert_eq!(m["prompts"], "run");
    assert_eq!(m["easy"], "cached");
    let staged = fs_err::read_dir(p.path("cache/v1/tmp")).unwrap().count();
    assert_eq!(
        staged, 1,
        "the interrupted stage's staging dir is left behind"
    );
    let out = p.run_ok(SPEC);
    assert!(out.contains("ran     prompts"), "{out}");
    assert!(!out.contains("ran     easy"), "{out}");
    assert_eq!(
        fs_err::read_dir(p.path("cache/v1/tmp")).unwrap().count(),
        0,
        "stale staging is cleaned"
    );
    assert_eq!(p.tw(&["cache", "verify"]).code, 0);
}

#[test]
fn sigkill_mid_stage_leaves_nothing_visible() {
    let p = pipeline_project();
    let mut child = p
        .command(&["run", SPEC, "-j", "1"])
        .env("TW_FAILPOINT", "before_commit:slim:sleep")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // wait until slim has written its output into staging and hangs before the commit
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in std::io::BufRead::lines(stderr) {
        let line = line.unwrap();
        let reached = line.contains("failpoint before_commit:slim");
        seen.push(line);
        if reached {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains("failpoint")),
        "{seen:?}"
    );
    let staged: Vec<_> = fs_err::read_dir(p.path("cache/v1/tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(staged.len(), 1);
    assert!(staged[0].path().join("rows.parquet").exists());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status_map(&p.statuses(SPEC))["slim"], "run");
    let out = p.run_ok(SPEC);
    assert!(out.contains("4 cached, 1 ran"), "{out}");
}

#[test]
fn a_failing_stage_exits_1_keeps_finished_results_and_names_the_stage() {
    let p = pipeline_project();
    p.write("specs/templates/note.j2", "{{ no_such_column }}");
    let ran = p.tw(&["run", SPEC, "-j", "1"]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("error: stage `notes` (render) failed: template"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("undefined"), "{}", ran.stderr);
    // a failure is never stored as a success
    p.write(
        "specs/templates/note.j2",
        "{{ task_id }} has {{ n_tests }} tests",
    );
    let st = p.statuses(SPEC);
    assert_eq!(status_map(&st)["notes"], "run");
    let lock = p.read("specs/pipeline.yaml.lock");
    assert!(lock.contains("\"complete\": false"), "{lock}");
}

#[test]
fn keep_going_runs_independent_stages_after_a_failure() {
    let p = pipeline_project();
    p.write("specs/templates/note.j2", "{{ no_such_column }}");
    let ran = p.tw(&["run", SPEC, "-j", "1", "--keep-going"]);
    assert_eq!(ran.code, 1);
    assert!(
        ran.stderr
            .contains("0 cached, 4 ran, 0 cut off early, 1 failed, 0 not run"),
        "{}",
        ran.stderr
    );
}

#[test]
fn only_from_to_and_force_select_correctly() {
    let p = pipeline_project();
    let ran = p.tw(&["run", SPEC, "--only", "easy"]);
    assert_eq!(
        ran.code, 2,
        "upstream not cached must be refused: {}",
        ran.stderr
    );
    assert!(
        ran.stderr
            .contains("stage `easy` needs `problems`, which is neither cached nor selected"),
        "{}",
        ran.stderr
    );

    let out = p.run_ok_args(&["run", SPEC, "--to", "easy"]);
    assert!(out.contains("0 cached, 2 ran"), "{out}");
    let out = p.run_ok_args(&["run", SPEC, "--from", "prompts"]);
    assert!(out.contains("0 cached, 2 ran"), "{out}");
    let out = p.run_ok_args(&["run", SPEC, "--only", "notes"]);
    assert!(out.contains("0 cached, 1 ran"), "{out}");
    let out = p.run_ok_args(&["run", SPEC, "--force", "easy"]);
    assert!(
        out.contains("2 cached, 1 ran, 2 cut off early"),
        "forced stage reruns, equal bytes keep downstream: {out}"
    );
    let ran = p.tw(&["plan", SPEC, "--only", "eazy"]);
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr.contains("no stage `eazy` in this spec"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("did you mean `easy`?"),
        "{}",
        ran.stderr
    );
}

impl Project {
    fn run_ok_args(&self, args: &[&str]) -> String {
        let ran = self.tw(args);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        ran.stderr
    }
}

#[test]
fn two_processes_on_one_cache_do_not_corrupt_it() {
    let p = pipeline_project();
    let a = p.command(&["run", SPEC, "-j", "2"]).spawn_output();
    let b = p.command(&["run", SPEC, "-j", "2"]).spawn_output();
    let (a, b) = (
        into_ran(a.wait_with_output().unwrap()),
        into_ran(b.wait_with_output().unwrap()),
    );
    assert_eq!((a.code, b.code), (0, 0), "{}\n{}", a.stderr, b.stderr);
    assert_eq!(p.objects().len(), 5);
    let verify = p.tw(&["cache", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    assert!(verify.stdout.contains("5 artifacts ok, 0 corrupt"));
    assert!(p.run_ok(SPEC).contains("5 cached, 0 ran"));
}

trait SpawnOutput {
    fn spawn_output(&mut self) -> std::process::Child;
}

impl SpawnOutput for std::process::Command {
    fn spawn_output(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn show_and_export_read_cached_outputs() {
    let p = pipeline_project();
    let ran = p.tw(&["show", SPEC, "slim"]);
    assert_eq!(ran.code, 2);
    assert!(ran.stderr.contains("not in the cache"), "{}", ran.stderr);
    p.run_ok(SPEC);
    let show = p.tw(&["show", SPEC, "slim.rows", "--head", "2"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(
        show.stdout
            .starts_with("3 rows, 2 columns\n  task_id: Utf8\n  prompt_text: Utf8\n"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("# Task\\nFix t0:\\ndef f0():"),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("... 1 more rows"), "{}", show.stdout);

    let jsonl = p.tw(&["export", SPEC, "slim", "--format", "jsonl"]);
    assert_eq!(jsonl.code, 0, "{}", jsonl.stderr);
    let first: serde_json::Value =
        serde_json::from_str(jsonl.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"task_id": "t0", "prompt_text": "# Task\nFix t0:\ndef f0():"})
    );
    assert_eq!(jsonl.stdout.lines().count(), 3);

    let csv = p.tw(&["export", SPEC, "easy", "--format", "csv"]);
    assert!(
        csv.stdout
            .starts_with("task_id,difficulty,n_tests,prompt\nt0,easy,3,def f0():\n"),
        "{}",
        csv.stdout
    );

    let out = p.path("easy.parquet");
    let pq = p.tw(&[
        "export",
        SPEC,
        "easy",
        "--format",
        "parquet",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(pq.code, 0, "{}", pq.stderr);
    assert_eq!(&fs_err::read(&out).unwrap()[..4], b"PAR1");

    let bad = p.tw(&["show", SPEC, "slim.nope"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("has no output `nope` (outputs: rows)"),
        "{}",
        bad.stderr
    );
}

#[test]
fn verify_detects_corruption_and_gc_removes_unreferenced_artifacts() {
    let p = pipeline_project();
    p.run_ok(SPEC);
    let victim = p.objects().into_iter().next().unwrap().join("rows.parquet");
    let mut bytes = fs_err::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs_err::write(&victim, bytes).unwrap();
    let verify = p.tw(&["cache", "verify"]);
    assert_eq!(verify.code, 1);
    assert!(
        verify.stdout.contains("4 artifacts ok, 1 corrupt"),
        "{}",
        verify.stdout
    );
    let fixed = p.tw(&["cache", "verify", "--delete-corrupt"]);
    assert_eq!(fixed.code, 0);
    assert_eq!(p.objects().len(), 4);
    p.run_ok(SPEC);

    // After a param change, the old `easy`, `prompts` and `slim` artifacts are unreferenced.
    p.write(
        SPEC,
        &p.read(SPEC).replace("difficulty = 'easy'", "n_tests > 2"),
    );
    p.run_ok(SPEC);
    assert_eq!(p.objects().len(), 8);
    let dry = p.tw(&["gc", SPEC, "--dry-run"]);
    assert!(
        dry.stdout.starts_with("would remove 3 artifacts"),
        "{}",
        dry.stdout
    );
    assert_eq!(p.objects().len(), 8);
    let gc = p.tw(&["gc", SPEC]);
    assert!(
        gc.stdout.starts_with("removed 3 artifacts"),
        "{}",
        gc.stdout
    );
    assert_eq!(p.objects().len(), 5);
    assert!(p.run_ok(SPEC).contains("5 cached, 0 ran"));
}

#[test]
fn stages_are_documented_from_their_files() {
    let p = Project::new();
    let list = p.tw(&["stages"]);
    assert_eq!(list.code, 0);
    assert!(
        list.stdout.contains("`load`: read a data file"),
        "{}",
        list.stdout
    );
    let describe = p.tw(&["stages", "describe", "filter"]);
    assert!(describe.stdout.contains("# Params"), "{}", describe.stdout);
    let bad = p.tw(&["stages", "describe", "filtr"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("did you mean `filter`?"),
        "{}",
        bad.stderr
    );
}
