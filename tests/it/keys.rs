//! Cache-key contracts (turborepo `final_hash_contract`): what must and must
//! not move a key.

use crate::harness::{PIPELINE, Project, pipeline_project};

const SPEC: &str = "specs/pipeline.yaml";

#[test]
fn reordering_keys_comments_and_renaming_stages_change_no_key() {
    let p = pipeline_project();
    p.run_ok(SPEC);
    let before = p.keys(SPEC);
    let reordered = r#"# the same pipeline, written differently
experiment: pipeline
stages:
  short_list:   # renamed from `slim`, params reordered
    params: { columns: [task_id, prompt_text] }
    inputs: { rows: prompt_rows.rows }
    kind: select
  loaded:
    params: { path: "data/problems.jsonl" }
    kind: load
  easy:
    params:
      where: "difficulty = 'easy'"
    inputs: { rows: loaded.rows }
    kind: filter
  notes:
    kind: render
    inputs: { rows: loaded.rows }
    params: { column: note, template: templates/note.j2 }
  prompt_rows:
    kind: render
    inputs: { rows: easy.rows }
    params: { column: prompt_text, template: templates/prompt.j2, trim: true }
"#;
    p.write("specs/reordered.yaml", reordered);
    let after = p.keys("specs/reordered.yaml");
    let sorted = |mut v: Vec<(String, String)>| {
        let mut keys: Vec<String> = v.drain(..).map(|(_, k)| k).collect();
        keys.sort();
        keys
    };
    assert_eq!(sorted(before), sorted(after));
    let st = p.statuses("specs/reordered.yaml");
    assert!(st.iter().all(|(_, s)| s == "cached"), "{st:?}");
}

#[test]
fn yaml_and_toml_versions_of_a_spec_give_identical_keys() {
    let p = pipeline_project();
    p.run_ok(SPEC);
    let toml = r#"experiment = "pipeline"

[stages.problems]
kind = "load"
params = { path = "data/problems.jsonl" }

[stages.easy]
kind = "filter"
inputs = { rows = "problems.rows" }
params = { where = "difficulty = 'easy'" }

[stages.prompts]
kind = "render"
inputs = { rows = "easy.rows" }
params = { template = "templates/prompt.j2", column = "prompt_text" }

[stages.notes]
kind = "render"
inputs = { rows = "problems.rows" }
params = { template = "templates/note.j2", column = "note" }

[stages.slim]
kind = "select"
inputs = { rows = "prompts.rows" }
params = { columns = ["task_id", "prompt_text"] }
"#;
    p.write("specs/pipeline.toml", toml);
    assert_eq!(p.keys(SPEC), p.keys("specs/pipeline.toml"));
}

#[test]
fn moving_the_spec_and_its_files_together_changes_no_key() {
    let p = pipeline_project();
    let keys = p.keys_when_cached(SPEC);
    for f in [
        "data/problems.jsonl",
        "templates/prompt.j2",
        "templates/header.j2",
        "templates/note.j2",
    ] {
        p.write(
            &format!("elsewhere/deep/{f}"),
            &p.read(&format!("specs/{f}")),
        );
    }
    p.write("elsewhere/deep/moved.yaml", PIPELINE);
    assert_eq!(keys, p.keys("elsewhere/deep/moved.yaml"));
}

impl Project {
    fn keys_when_cached(&self, spec: &str) -> Vec<(String, String)> {
        self.run_ok(spec);
        self.keys(spec)
    }
}

#[test]
fn defaults_apply_and_count_as_params() {
    let p = pipeline_project();
    p.run_ok(SPEC);
    let with_default = PIPELINE.replace(
        "stages:\n",
        "defaults:\n  render: { trim: true }\nstages:\n",
    );
    p.write("specs/defaults.yaml", &with_default);
    // `trim: true` is the built-in default, so nothing moves
    assert_eq!(p.keys(SPEC), p.keys("specs/defaults.yaml"));
    let changed = PIPELINE.replace(
        "stages:\n",
        "defaults:\n  render: { trim: false }\nstages:\n",
    );
    p.write("specs/defaults.yaml", &changed);
    let plan = p.plan("specs/defaults.yaml");
    let notes = plan.iter().find(|n| n.0 == "notes").unwrap();
    assert_eq!(notes.1, "run");
    assert_eq!(notes.3, vec!["params.trim: true -> false".to_string()]);
}

#[test]
fn key_contract_snapshot() {
    let p = pipeline_project();
    p.run_ok(SPEC);
    let lines: Vec<String> = p
        .keys(SPEC)
        .into_iter()
        .map(|(id, key)| format!("{id} {key}"))
        .collect();
    insta::assert_snapshot!("pipeline_keys", lines.join("\n"));
}
