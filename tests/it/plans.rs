//! `tw plan` output snapshots, and every spec shipped in `specs/` validates.

use crate::harness::pipeline_project;

const SPEC: &str = "specs/pipeline.yaml";

#[test]
fn plan_text_fresh_then_after_a_change() {
    let p = pipeline_project();
    let fresh = p.tw(&["plan", SPEC]);
    insta::assert_snapshot!("plan_fresh", fresh.normalized(&p));
    p.run_ok(SPEC);
    p.write(
        SPEC,
        &p.read(SPEC)
            .replace("columns: [task_id, prompt_text]", "columns: [prompt_text]"),
    );
    p.write("specs/templates/note.j2", "{{ task_id }}!");
    let changed = p.tw(&["plan", SPEC]);
    insta::assert_snapshot!("plan_after_change", changed.normalized(&p));
}

#[test]
fn every_shipped_spec_validates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut specs: Vec<_> = fs_err::read_dir(root.join("specs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "toml"))
        .collect();
    specs.sort();
    assert!(!specs.is_empty());
    let p = pipeline_project();
    for spec in specs {
        // Benchmark files and model weights are not in the repo (a reproduction
        // spec reads ones the user provides): the spec itself must still be right.
        let ran = p.tw(&["validate", "--allow-missing", spec.to_str().unwrap()]);
        assert_eq!(ran.code, 0, "{}: {}", spec.display(), ran.stderr);
    }
}

#[test]
fn plan_allow_missing_names_the_missing_files_and_what_waits_for_them() {
    let p = crate::harness::Project::new();
    p.write("data/here.jsonl", "{\"a\": 1}\n").write(
        "spec.yaml",
        r#"experiment: shared
stages:
  weights:
    kind: load
    params: { path: models/big/weights.jsonl }
  picked:
    kind: filter
    inputs: { rows: weights.rows }
    params: { where: "a = 1" }
  here:
    kind: load
    params: { path: data/here.jsonl }
"#,
    );
    let refused = p.tw(&["plan", "spec.yaml"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("models/big/weights.jsonl"),
        "{}",
        refused.stderr
    );

    let text = p.tw(&["plan", "spec.yaml", "--allow-missing"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    insta::assert_snapshot!("plan_allow_missing", text.normalized(&p));
    let json = p.tw(&["plan", "spec.yaml", "--allow-missing", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let status = |id: &str| {
        plan["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("weights"), "missing");
    assert_eq!(status("picked"), "missing");
    assert_eq!(status("here"), "run");
    assert_eq!(plan["summary"]["missing"], 2);

    let validated = p.tw(&["validate", "--allow-missing", "spec.yaml"]);
    assert_eq!(validated.code, 0, "{}", validated.stderr);
    assert!(
        validated.stdout.contains("1 file it reads is missing"),
        "{}",
        validated.stdout
    );
    // `tw run` never runs a plan with holes in it.
    let run = p.tw(&["run", "spec.yaml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}
