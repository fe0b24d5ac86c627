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
    // Benchmark files are not in the repo: a checkout without `data/benchmarks`
    // (scripts/link-data.sh) may miss exactly those, and nothing else.
    let data_linked = root.join("data/benchmarks").exists();
    for spec in specs {
        let ran = p.tw(&["validate", spec.to_str().unwrap()]);
        if ran.code != 0 && !data_linked {
            let errors: Vec<&str> = ran
                .stderr
                .lines()
                .filter(|l| l.starts_with("error["))
                .collect();
            if !errors.is_empty()
                && errors.iter().all(|e| {
                    e.contains("tw::plan::missing_file") && e.contains("/data/benchmarks/")
                })
            {
                eprintln!(
                    "{}: benchmark data not linked; run scripts/link-data.sh",
                    spec.display()
                );
                continue;
            }
        }
        // Specs on the in-process model need the `torch` build; CI validates them there.
        if ran.code != 0 && !cfg!(feature = "torch") {
            let errors: Vec<&str> = ran
                .stderr
                .lines()
                .filter(|l| l.starts_with("error["))
                .collect();
            if !errors.is_empty()
                && errors
                    .iter()
                    .all(|e| e.contains("needs the cargo feature `torch`"))
            {
                eprintln!("{}: needs --features torch", spec.display());
                continue;
            }
        }
        assert_eq!(ran.code, 0, "{}: {}", spec.display(), ran.stderr);
    }
}
