//! Every broken spec in `fixtures/bad_specs/` is broken in a different way;
//! each rendered error is a snapshot (exit code, stdout, stderr).

use crate::harness::Project;

fn check(name: &str) -> String {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures/bad_specs")
        .join(name);
    let p = Project::new();
    p.write(
        &format!("specs/{name}"),
        &fs_err::read_to_string(fixture).unwrap(),
    );
    let ran = p.tw(&["plan", &format!("specs/{name}")]);
    assert_eq!(ran.code, 2, "spec errors exit with 2:\n{}", ran.stderr);
    let validate = p.tw(&["validate", &format!("specs/{name}")]);
    assert_eq!(validate.code, 2);
    ran.normalized(&p)
}

macro_rules! bad_spec {
    ($test:ident, $file:literal) => {
        #[test]
        fn $test() {
            insta::assert_snapshot!(stringify!($test), check($file));
        }
    };
}

bad_spec!(unknown_kind, "unknown_kind.yaml");
bad_spec!(unknown_params_are_all_reported, "unknown_params.yaml");
bad_spec!(unknown_stage_reference, "unknown_stage_reference.yaml");
bad_spec!(unknown_output, "unknown_output.yaml");
bad_spec!(cycle_with_its_path, "cycle.yaml");
bad_spec!(unknown_axis, "unknown_axis.yaml");
bad_spec!(wrong_param_type, "wrong_param_type.yaml");
bad_spec!(unknown_top_level_fields, "unknown_top_level_fields.yaml");
bad_spec!(yaml_syntax, "yaml_syntax.yaml");
bad_spec!(toml_syntax, "toml_syntax.toml");
bad_spec!(many_problems_at_once, "many_problems.yaml");
bad_spec!(duplicate_key, "duplicate_key.yaml");
bad_spec!(input_arity, "input_arity.yaml");
bad_spec!(invalid_param_values, "invalid_param_values.yaml");
bad_spec!(missing_data_file, "missing_data_file.yaml");
bad_spec!(not_a_map, "not_a_map.yaml");

#[test]
fn missing_spec_file_and_wrong_extension_are_usage_errors() {
    let p = Project::new();
    let ran = p.tw(&["plan", "specs/nope.yaml"]);
    assert_eq!(ran.code, 2);
    assert!(ran.stderr.contains("cannot read spec"), "{}", ran.stderr);
    assert!(ran.stderr.contains("specs/nope.yaml"), "{}", ran.stderr);
    p.write("spec.json", "{}");
    let ran = p.tw(&["plan", "spec.json"]);
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr
            .contains("expected a .yaml, .yml or .toml extension"),
        "{}",
        ran.stderr
    );
}

#[test]
fn malformed_data_row_fails_the_stage_with_file_and_line() {
    let p = Project::new();
    p.write("data/rows.jsonl", "{\"a\": 1}\n{\"a\": 2\n");
    p.write("s.yaml", "experiment: e\nstages:\n  rows: { kind: load, params: { path: data/rows.jsonl } }\n  skip: { kind: load, params: { path: data/rows.jsonl, on_error: skip } }\n");
    let ran = p.tw(&["run", "s.yaml", "--keep-going"]);
    assert_eq!(ran.code, 1);
    assert!(
        ran.stderr.contains("error: stage `rows` (load) failed: "),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("data/rows.jsonl:2: invalid JSON"),
        "{}",
        ran.stderr
    );
    // the lenient twin ran and recorded its skip
    assert!(ran.stderr.contains("0 cached, 1 ran"), "{}", ran.stderr);
    let manifest = p
        .objects()
        .into_iter()
        .map(|o| fs_err::read_to_string(o.join("manifest.json")).unwrap())
        .next()
        .unwrap();
    assert!(manifest.contains("\"skipped_rows\": 1"), "{manifest}");
}
