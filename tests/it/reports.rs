//! `report` and `tw report`: paper-style tables and plots from the tables
//! other stages wrote, labelled by where each row came from.

use crate::harness::Project;

/// Summaries as `sequential_scaling` writes them, one file per representation
/// (the matrix axis), without a `representation` column: the report adds it.
const NONE: &str = r#"{"model": "smollm2", "n": 1, "honest_pct": 10.0, "oracle_pct": 10.0}
{"model": "smollm2", "n": 4, "honest_pct": 20.0, "oracle_pct": 30.0}
{"model": "qwen", "n": 1, "honest_pct": 40.0, "oracle_pct": 40.0}
{"model": "qwen", "n": 4, "honest_pct": 50.0, "oracle_pct": 60.0}
"#;
const NEXT: &str = r#"{"model": "smollm2", "n": 1, "honest_pct": 12.0, "oracle_pct": 12.0}
{"model": "smollm2", "n": 4, "honest_pct": 26.0, "oracle_pct": 36.0}
{"model": "qwen", "n": 1, "honest_pct": 39.0, "oracle_pct": 39.0}
{"model": "qwen", "n": 4, "honest_pct": 55.0, "oracle_pct": 66.0}
"#;

const SPEC: &str = r#"experiment: tables
matrix:
  representation: [none, next]
stages:
  summary:
    kind: load
    params: { path: "data/${representation}.jsonl" }
  report:
    kind: report
    inputs: { rows: "summary[*].rows" }
    params:
      title: Trace feedback
      tables:
        - { name: main, rows: [model], columns: [representation], value: honest_pct, where: "n = 4", highlight: max, caption: "pass@1 (%), N = 4" }
        - { name: gains, rows: [model], columns: [representation, n], value: honest_pct, baseline: { representation: none }, formats: [markdown] }
      plots:
        - { name: pass_vs_n, kind: line, x: n, y: honest_pct, series: [model, representation], log_x: true, y_label: "pass@1 (%)" }
        - { name: oracle_gap, kind: bar, x: representation, y: [honest_pct, oracle_pct], stacked: false, formats: [svg] }
        - { name: heat, kind: heatmap, rows: [model], columns: [representation, n], value: honest_pct, baseline: { representation: none } }
"#;

fn project() -> Project {
    let p = Project::new();
    p.write("data/none.jsonl", NONE)
        .write("data/next.jsonl", NEXT)
        .write("spec.yaml", SPEC);
    p
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn tw_report_writes_tables_and_plots_labelled_by_matrix_axis() {
    let p = project();
    let ran = p.tw(&["report", "spec.yaml", "--out", "out"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let written: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(
        written,
        [
            "out/report/main.md",
            "out/report/main.csv",
            "out/report/main.tex",
            "out/report/gains.md",
            "out/report/pass_vs_n.png",
            "out/report/pass_vs_n.svg",
            "out/report/oracle_gap.svg",
            "out/report/heat.png",
            "out/report/heat.svg",
            "out/report/index.md",
            "out/compute/compute.md",
            "out/compute/compute.csv",
        ]
    );
    // Rows: models; columns: the matrix axis the report added; N = 4 only.
    assert_eq!(
        p.read("out/report/main.md"),
        "pass@1 (%), N = 4\n\n\
         | model | none | next |\n\
         | :--- | ---: | ---: |\n\
         | smollm2 | 20.0 | **26.0** |\n\
         | qwen | 50.0 | **55.0** |\n"
    );
    assert_eq!(
        p.read("out/report/main.csv"),
        "model,none,next\nsmollm2,20,26\nqwen,50,55\n"
    );
    let tex = p.read("out/report/main.tex");
    assert!(tex.contains("\\caption{pass@1 (\\%), N = 4}"), "{tex}");
    assert!(tex.contains("qwen & 50.0 & \\textbf{55.0} \\\\"), "{tex}");
    // Gains over the same N's baseline, signed.
    assert_eq!(
        p.read("out/report/gains.md"),
        "| model | next / 1 | next / 4 |\n\
         | :--- | ---: | ---: |\n\
         | smollm2 | +2.0 | +6.0 |\n\
         | qwen | -1.0 | +5.0 |\n"
    );
    let png = fs_err::read(p.path("out/report/pass_vs_n.png")).unwrap();
    assert_eq!(png_size(&png), (800, 500));
    let svg = p.read("out/report/pass_vs_n.svg");
    for label in ["smollm2 / none", "qwen / next", "pass@1 (%)"] {
        assert!(svg.contains(&format!("\n{label}\n")), "svg lacks {label}");
    }
    let index = p.read("out/report/index.md");
    assert!(index.starts_with("# Trace feedback\n"), "{index}");
    assert!(index.contains("![heat](heat.png)"), "{index}");
    assert!(index.contains("![oracle_gap](oracle_gap.svg)"), "{index}");
    // The numbers behind a plot are an artifact too.
    let points = crate::dataset::export(&p, "spec.yaml", "report.pass_vs_n");
    assert_eq!(points.len(), 8);
    assert_eq!(points[0]["series"], "smollm2 / none");
    assert_eq!(points[1]["x"], 4.0);
    assert_eq!(points[1]["y"], 20.0);

    // Again: nothing runs, the same bytes are written.
    let again = p.tw(&["report", "spec.yaml", "--out", "out2"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("0 ran"), "{}", again.stderr);
    assert_eq!(
        fs_err::read(p.path("out2/report/pass_vs_n.png")).unwrap(),
        png
    );
    assert_eq!(
        fs_err::read(p.path("out2/report/heat.png")).unwrap(),
        fs_err::read(p.path("out/report/heat.png")).unwrap()
    );
}

#[test]
fn a_renamed_upstream_reruns_only_the_report_and_the_plan_says_why() {
    let p = project();
    p.run_ok("spec.yaml");
    p.write(
        "spec.yaml",
        &SPEC
            .replace("  summary:\n", "  scores:\n")
            .replace("summary[*].rows", "scores[*].rows"),
    );
    let plan = p.tw(&["plan", "spec.yaml"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let report_line = plan
        .stdout
        .lines()
        .find(|l| l.contains(" report "))
        .unwrap();
    assert!(
        report_line.trim_start().starts_with("run"),
        "{}",
        plan.stdout
    );
    assert!(
        report_line.contains(
            "input `rows` now comes from scores[representation=none], scores[representation=next]"
        ),
        "{report_line}"
    );
    for line in plan.stdout.lines().filter(|l| l.contains(" load ")) {
        assert!(line.trim_start().starts_with("cached"), "{}", plan.stdout);
    }
    let out = p.run_ok("spec.yaml");
    assert!(out.contains("2 cached, 1 ran"), "{out}");
}

#[test]
fn report_problems_are_reported_at_once_and_data_problems_name_the_item() {
    let p = project();
    p.write(
        "bad.yaml",
        r#"experiment: bad
stages:
  summary:
    kind: load
    params: { path: data/none.jsonl }
  report:
    kind: report
    inputs: { rows: summary.rows }
    params:
      tables:
        - { name: main, rows: [model], columns: [n], value: honest_pct, baseline: { representation: none } }
        - { name: main, rows: [model], value: honest_pct, where: "n = = 4" }
      plots:
        - { name: files, kind: line, x: n, y: honest_pct, rows: [model] }
        - { name: grid, kind: heatmap, rows: [model], columns: [n] }
"#,
    );
    let ran = p.tw(&["validate", "bad.yaml"]);
    assert_eq!(ran.code, 2);
    for expected in [
        "`representation` is not one of `columns`",
        "`main` names two items",
        "not a SQL condition",
        "`files` cannot name an item",
        "`rows` applies to heatmap plots only",
        "name the value column",
    ] {
        assert!(
            ran.stderr.contains(expected),
            "missing {expected:?}:\n{}",
            ran.stderr
        );
    }
    assert!(ran.stderr.contains("bad.yaml:"), "{}", ran.stderr);

    p.write(
        "typo.yaml",
        &SPEC.replace("value: honest_pct, where", "value: honest, where"),
    );
    let ran = p.tw(&["run", "typo.yaml"]);
    assert_eq!(ran.code, 1);
    assert!(
        ran.stderr.contains("table `main`: no column `honest` in the inputs (columns: model, n, honest_pct, oracle_pct, stage, representation)"),
        "{}",
        ran.stderr
    );
    // What finished is kept: only the report is left to run.
    let plan = p.tw(&["plan", "typo.yaml"]);
    assert!(
        plan.stdout.contains("3 stages, 1 to run"),
        "{}",
        plan.stdout
    );
}

#[test]
fn tw_report_needs_a_report_stage_and_no_run_needs_the_cache() {
    let p = project();
    p.write(
        "plain.yaml",
        "experiment: plain\nstages:\n  s:\n    kind: load\n    params: { path: data/none.jsonl }\n",
    );
    let ran = p.tw(&["report", "plain.yaml"]);
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr.contains("has no stage of kind `report`"),
        "{}",
        ran.stderr
    );
    let ran = p.tw(&["report", "spec.yaml", "--stage", "summary"]);
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr
            .contains("`summary` is not a report stage of tables (report stages: report)"),
        "{}",
        ran.stderr
    );
    let ran = p.tw(&["report", "spec.yaml", "--no-run"]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("report"), "{}", ran.stderr);
    assert!(ran.stderr.contains("without --no-run"), "{}", ran.stderr);
    assert!(!p.path("reports").exists(), "nothing written");
}

#[test]
fn loss_curves_are_told_apart_by_the_stage_they_came_from() {
    let p = Project::new();
    // `sft` writes its loss table without naming the run; the report does.
    p.write(
        "data/full.jsonl",
        "{\"step\": 1, \"loss\": 2.0}\n{\"step\": 2, \"loss\": 1.5}\n{\"step\": 3, \"loss\": 1.2}\n",
    )
    .write(
        "data/lora.jsonl",
        "{\"step\": 1, \"loss\": 2.1}\n{\"step\": 2, \"loss\": 1.9}\n{\"step\": 3, \"loss\": 1.8}\n",
    )
    .write(
        "loss.yaml",
        r#"experiment: loss
stages:
  full_sft:
    kind: load
    params: { path: data/full.jsonl }
  lora_sft:
    kind: load
    params: { path: data/lora.jsonl }
  curves:
    kind: report
    inputs: { rows: [full_sft.rows, lora_sft.rows] }
    params:
      plots:
        - { name: loss, kind: line, x: step, y: loss, series: [stage], formats: [png] }
      tables:
        - { name: final, rows: [stage], value: loss, aggregate: last, digits: 2, formats: [csv] }
"#,
    );
    let ran = p.tw(&["report", "loss.yaml"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let points = crate::dataset::export(&p, "loss.yaml", "curves.loss");
    let series: Vec<(&str, f64)> = points
        .iter()
        .map(|r| (r["series"].as_str().unwrap(), r["y"].as_f64().unwrap()))
        .collect();
    assert_eq!(
        series,
        [
            ("full_sft", 2.0),
            ("full_sft", 1.5),
            ("full_sft", 1.2),
            ("lora_sft", 2.1),
            ("lora_sft", 1.9),
            ("lora_sft", 1.8)
        ]
    );
    assert_eq!(
        p.read("reports/curves/final.csv"),
        "stage,loss\nfull_sft,1.2\nlora_sft,1.8\n"
    );
    assert_eq!(
        png_size(&fs_err::read(p.path("reports/curves/loss.png")).unwrap()),
        (800, 500)
    );
}
