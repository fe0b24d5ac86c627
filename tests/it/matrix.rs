//! Matrix expansion: axes multiply only the stages that use them.

use crate::harness::{PROBLEMS, Project};

const GRID: &str = r#"experiment: grid
matrix:
  seed: [0, 1]
  level: [easy, hard]
stages:
  problems:
    kind: load
    params: { path: data/problems.jsonl }
  subset:
    kind: filter
    inputs: { rows: problems.rows }
    params: { where: "difficulty = '${level}'" }
  draw:
    kind: sample
    inputs: { rows: subset.rows }
    params: { n: 1, seed: "${seed}" }
  all:
    kind: concat
    inputs: { tables: "draw[*].rows" }
    params: { source_column: run }
"#;

fn grid() -> Project {
    let p = Project::new();
    p.write("data/problems.jsonl", PROBLEMS)
        .write("grid.yaml", GRID);
    p
}

#[test]
fn axes_expand_only_the_stages_that_use_them() {
    let p = grid();
    let ids: Vec<String> = p
        .statuses("grid.yaml")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        ids,
        [
            "problems",
            "subset[level=easy]",
            "subset[level=hard]",
            "draw[seed=0,level=easy]",
            "draw[seed=0,level=hard]",
            "draw[seed=1,level=easy]",
            "draw[seed=1,level=hard]",
            "all",
        ]
    );
    let out = p.run_ok("grid.yaml");
    assert!(out.contains("0 cached, 8 ran"), "{out}");
    let rows = p.tw(&["export", "grid.yaml", "all", "--format", "jsonl"]);
    let runs: Vec<i64> = rows
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["run"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(runs, [0, 1, 2, 3], "one row per draw, in matrix order");
}

#[test]
fn adding_an_axis_value_runs_only_the_new_instances_and_the_gather() {
    let p = grid();
    p.run_ok("grid.yaml");
    p.write(
        "grid.yaml",
        &GRID.replace("seed: [0, 1]", "seed: [0, 1, 2]"),
    );
    let st = p.statuses("grid.yaml");
    let to_run: Vec<&str> = st
        .iter()
        .filter(|(_, s)| s != "cached")
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(
        to_run,
        ["draw[seed=2,level=easy]", "draw[seed=2,level=hard]", "all"]
    );
    let by: std::collections::BTreeMap<_, _> = p
        .plan("grid.yaml")
        .into_iter()
        .map(|n| (n.0, n.3))
        .collect();
    assert_eq!(by["draw[seed=2,level=easy]"], vec!["new".to_string()]);
    assert_eq!(
        by["all"],
        vec![
            "input `tables` changes (draw[seed=2,level=easy], draw[seed=2,level=hard] rerun)"
                .to_string()
        ]
    );
}

#[test]
fn a_typed_placeholder_keeps_its_type() {
    let p = grid();
    let json = p.tw(&["plan", "grid.yaml", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let draw = &v["stages"][3];
    assert_eq!(
        draw["matrix"],
        serde_json::json!({"seed": 0, "level": "easy"})
    );
    assert_eq!(
        draw["inputs"],
        serde_json::json!({"rows": ["subset[level=easy].rows"]})
    );
}

#[test]
fn selecting_one_instance_by_id() {
    let p = grid();
    p.run_ok("grid.yaml");
    let ran = p.tw(&["run", "grid.yaml", "--force", "draw[seed=1,level=hard]"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("ran     draw[seed=1,level=hard]"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("6 cached, 1 ran, 1 cut off early"),
        "{}",
        ran.stderr
    );
    let show = p.tw(&["show", "grid.yaml", "draw[seed=1,level=hard].rows"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(show.stdout.starts_with("1 rows"), "{}", show.stdout);
    let ambiguous = p.tw(&["show", "grid.yaml", "draw"]);
    assert_eq!(ambiguous.code, 2);
    assert!(
        ambiguous
            .stderr
            .contains("matches several matrix instances"),
        "{}",
        ambiguous.stderr
    );
}
