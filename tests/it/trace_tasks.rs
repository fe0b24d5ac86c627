//! Today's trace formats: CWM frames rendered from real traces (golden),
//! parsed back and scored (round trip, perturbations, unreadable replies).

use crate::dataset::export;
use crate::harness::Project;
use serde_json::Value;
use std::path::PathBuf;

/// Loops, a crash, nested calls, recursion, mutation of an argument.
const PROGRAMS: &str = r#"{"task_id": "loop", "entry_point": "count_above", "program": "def count_above(nums, k):\n    total = 0\n    for x in nums:\n        if x > k:\n            total += 2\n    return total\n", "input": "[[3, 5, 1], 2]", "expected": "2"}
{"task_id": "crash", "entry_point": "mean", "program": "def mean(xs):\n    s = sum(xs)\n    return s / len(xs)\n", "input": "[[]]", "expected": "0"}
{"task_id": "nested", "entry_point": "sum_squares", "program": "def square(n):\n    return n * n\n\ndef sum_squares(xs):\n    out = 0\n    for x in xs:\n        out += square(x)\n    return out\n", "input": "[[1, 2]]", "expected": "5"}
{"task_id": "recursion", "entry_point": "fact", "program": "def fact(n):\n    if n <= 1:\n        return 1\n    return n * fact(n - 1)\n", "input": "[3]", "expected": "6"}
{"task_id": "mutation", "entry_point": "push_twice", "program": "def push_twice(items, v):\n    items.append(v)\n    items.append(v)\n    return len(items)\n", "input": "[[0], 7]", "expected": "3"}
"#;

fn project() -> Project {
    let p = Project::new();
    let cwm = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates/traces/cwm.j2");
    p.write("t/cwm.j2", &fs_err::read_to_string(cwm).unwrap());
    p.write("programs.jsonl", PROGRAMS);
    p.write(
        "spec.yaml",
        r#"experiment: cwm
stages:
  programs:
    kind: load
    params: { path: programs.jsonl }
  traced:
    kind: trace
    inputs: { programs: programs.rows }
    # Into the calls too: CWM traces every scope.
    params: { expected: expected, keep: [program, entry_point], depth: 4 }
  cwm:
    kind: represent
    inputs: { runs: traced.runs, events: traced.events }
    params: { template: t/cwm.j2, select: all }
  predictions:
    kind: load
    params: { path: predictions.jsonl }
  scored:
    kind: score_traces
    inputs: { runs: traced.runs, events: traced.events, predictions: predictions.rows }
    params: { prediction: reply }
"#,
    );
    p
}

/// Every run rendered in CWM's format, by task id. The spec runs first with
/// an empty prediction: a scored failure, not an error.
fn rendered(p: &Project) -> Vec<(String, String)> {
    p.write(
        "predictions.jsonl",
        "{\"task_id\": \"loop\", \"reply\": \"\"}\n",
    );
    p.run_ok("spec.yaml");
    export(p, "spec.yaml", "cwm.rows")
        .into_iter()
        .map(|r| {
            (
                r["task_id"].as_str().unwrap().to_string(),
                r["trace_text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn predictions(rows: &[(String, String)]) -> String {
    rows.iter()
        .map(|(id, reply)| serde_json::json!({"task_id": id, "reply": reply}).to_string() + "\n")
        .collect()
}

#[test]
fn cwm_renders_real_traces_as_its_golden_and_they_score_exact() {
    let p = project();
    let traces = rendered(&p);
    let golden: String = traces
        .iter()
        .map(|(id, text)| {
            format!(
                "==== {id}\n{}\n",
                text.replace("<|frame_sep|>", "<|frame_sep|>\n")
            )
        })
        .collect();
    insta::assert_snapshot!("template_cwm", golden);

    // Round trip: each real trace, fed back as the prediction, scores 100%.
    p.write("predictions.jsonl", &predictions(&traces));
    p.run_ok("spec.yaml");
    let scores = export(&p, "spec.yaml", "scored.scores");
    assert_eq!(scores.len(), 5);
    for s in &scores {
        assert_eq!(s["exact"], true, "{s:?}");
        for k in [
            "kind_accuracy",
            "line_accuracy",
            "locals_accuracy",
            "variable_accuracy",
        ] {
            assert_eq!(s[k].as_f64(), Some(1.0), "{k}: {s:?}");
        }
    }
    let by_id = |id: &str| scores.iter().find(|s| s["task_id"] == id).unwrap().clone();
    assert_eq!(by_id("recursion")["output_truth"], "6");
    assert_eq!(by_id("recursion")["output_correct"], true);
    // The crash never returns normally: no output to read.
    assert_eq!(by_id("crash")["output_truth"], Value::Null);
    let summary = &export(&p, "spec.yaml", "scored.summary")[0];
    assert_eq!(summary["exact_pct"].as_f64(), Some(100.0));
}

#[test]
fn the_scorer_reports_exactly_the_divergence_it_was_given() {
    let p = project();
    let traces = rendered(&p);
    let loop_trace = &traces.iter().find(|(id, _)| id == "loop").unwrap().1;
    // Frames only, as a model would reply after the prompt's context.
    let frames = loop_trace
        .split_once("<|frame_sep|>")
        .unwrap()
        .1
        .to_string();
    let parts: Vec<&str> = frames.split("<|frame_sep|>").collect();
    // One local changed: `total` after the first `total += 2` claimed to be 3.
    let changed_local = frames.replacen(r#""total": "2""#, r#""total": "3""#, 1);
    // One line: the frame running line 5 claims line 6's source.
    let changed_line = frames.replacen(
        "<|action_sep|>            total += 2",
        "<|action_sep|>    return total",
        1,
    );
    // A frame dropped: the third.
    let dropped: String = parts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, f)| f.to_string())
        .collect::<Vec<_>>()
        .join("<|frame_sep|>");
    let malformed = frames.replacen("<|action_sep|>", "", 1);
    let rows = [
        ("local".to_string(), changed_local),
        ("line".to_string(), changed_line),
        ("dropped".to_string(), dropped),
        ("malformed".to_string(), malformed),
    ];
    let preds: String = rows
        .iter()
        .map(|(case, reply)| {
            serde_json::json!({"task_id": "loop", "case": case, "reply": reply}).to_string() + "\n"
        })
        .collect();
    p.write("predictions.jsonl", &preds);
    p.run_ok("spec.yaml");
    let scores = export(&p, "spec.yaml", "scored.scores");
    assert_eq!(scores.len(), 4);
    let divergence = |i: usize| {
        (
            scores[i]["diverge_at"].as_u64(),
            scores[i]["divergence"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let (_, what) = divergence(0);
    assert_eq!(what, "locals: total = 3 for 2");
    let (_, line_what) = divergence(1);
    assert_eq!(line_what, "line: 6 for 5");
    let (drop_at, _) = divergence(2);
    assert_eq!(drop_at, Some(2));
    assert_eq!(
        scores[2]["frames_predicted"].as_u64(),
        Some(scores[2]["frames_truth"].as_u64().unwrap() - 1)
    );
    let (bad_at, bad) = divergence(3);
    assert_eq!(bad_at, Some(0));
    assert!(bad.starts_with("unreadable: no <|action_sep|>"), "{bad}");
    assert!(
        scores[3]["parse_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("frame 0:"))
    );
    for s in &scores {
        assert_eq!(s["exact"], false, "{s:?}");
    }
}

#[test]
fn predictions_that_name_no_traced_run_fail_loudly() {
    let p = project();
    p.write(
        "predictions.jsonl",
        "{\"task_id\": \"nope\", \"reply\": \"\"}\n",
    );
    let ran = p.tw(&["run", "spec.yaml"]);
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr.contains("no prediction names a traced run"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("nope"), "{}", ran.stderr);
}

/// Debugger semantics re-derived apart from tw: the program re-run under
/// `sys.settrace`, its frames collected as CWM shows them (the locals when a
/// line is about to run), and step / next / out / break / back computed on
/// those frames by this script's own rules.
const REFERENCE_DEBUGGER: &str = r#"
import json, sys

def frames_of(src, entry, args):
    ns = {}
    exec(compile(src, "<prog>", "exec"), ns)
    out = []
    def tracer(frame, event, arg):
        if frame.f_code.co_filename != "<prog>":
            return None
        locs = {k: repr(v) for k, v in frame.f_locals.items()}
        if event == "call":
            out.append({"event": "call", "line": frame.f_lineno, "locals": locs})
        elif event == "line":
            out.append({"event": "line", "line": frame.f_lineno, "locals": locs})
        elif event == "return":
            unwound = out and out[-1]["event"] == "exception" and out[-1]["line"] == frame.f_lineno
            out.append({"event": "return", "line": frame.f_lineno, "value": "None" if unwound else repr(arg)})
        elif event == "exception":
            out.append({"event": "exception", "line": frame.f_lineno, "value": repr(arg[1])})
        return tracer
    sys.settrace(tracer)
    try:
        ns[entry](*args)
    except Exception:
        pass
    finally:
        sys.settrace(None)
    return out

def ret_of(fr, call):
    depth = 0
    for j in range(call, len(fr)):
        if fr[j]["event"] == "call":
            depth += 1
        elif fr[j]["event"] == "return":
            depth -= 1
            if depth == 0:
                return j
    return None

def stop(fr, at, kind, target):
    if kind == "debug_step":
        j = at + 1
    elif kind == "debug_next":
        j = at + 1
        if j < len(fr) and fr[j]["event"] == "call":
            j = ret_of(fr, j) + 1
    elif kind == "debug_out":
        j = at + 1
        while j < len(fr) and fr[j]["event"] != "return":
            j = ret_of(fr, j) + 1 if fr[j]["event"] == "call" else j + 1
        j += 1
    elif kind == "debug_break":
        j = next((k for k in range(at + 1, len(fr)) if fr[k]["event"] == "line" and fr[k]["line"] == target), len(fr))
    else:  # debug_back: the previous frame of this function, calls passed over
        j = at - 1
        while fr[j]["event"] in ("return", "exception"):
            if fr[j]["event"] == "return":
                depth = 0
                while True:
                    depth += {"return": 1, "call": -1}.get(fr[j]["event"], 0)
                    if fr[j]["event"] == "call" and depth == 0:
                        break
                    j -= 1
            j -= 1
    return fr[j] if 0 <= j < len(fr) else {"event": "end"}

tasks = [json.loads(l) for l in open(sys.argv[1])]
inputs = {json.loads(l)["task_id"]: json.loads(l) for l in open(sys.argv[2])}
bad = 0
for t in tasks:
    src, entry = t["program"], t["entry_point"]
    fr = frames_of(src, entry, json.loads(inputs[t["id"]]["input"]))
    at = t["step"]
    assert fr[at]["event"] == "line" and fr[at]["line"] == t["line"], (t["id"], at, fr[at])
    target = int(t["prompt"].split("breakpoint is set at line ")[1].split()[0]) if t["kind"] == "debug_break" else None
    want = stop(fr, at, t["kind"], target)
    got = json.loads(t["answer"])
    if got != want:
        bad += 1
        print("DIFFER", t["id"], t["kind"], at, "tw:", got, "reference:", want)
print(f"checked {len(tasks)} bad {bad}")
sys.exit(1 if bad else 0)
"#;

#[test]
fn debugger_answers_agree_with_a_rerun_of_the_program() {
    let p = project();
    p.write("reference.py", REFERENCE_DEBUGGER);
    let spec = p.read("spec.yaml")
        + r#"  exercises:
    kind: reasoning_tasks
    inputs: { runs: traced.runs, events: traced.events }
    params: { kinds: [debug_step, debug_next, debug_out, debug_break, debug_back], seed: SEED }
"#;
    let mut checked = 0usize;
    let mut kinds = std::collections::BTreeSet::new();
    // Several seeds: different pause points and breakpoints.
    for seed in 0..6 {
        p.write("spec.yaml", &spec.replace("SEED", &seed.to_string()));
        let _ = rendered(&p);
        let tasks = export(&p, "spec.yaml", "exercises.tasks");
        assert!(!tasks.is_empty());
        for t in &tasks {
            kinds.insert(t["kind"].as_str().unwrap().to_string());
            assert!(
                t["prompt"].as_str().unwrap().contains("paused at line"),
                "{t:?}"
            );
        }
        let lines: String = tasks
            .iter()
            .map(|t| serde_json::to_string(t).unwrap() + "\n")
            .collect();
        p.write("tasks.jsonl", &lines);
        let ran = std::process::Command::new("python3")
            .args(["reference.py", "tasks.jsonl", "programs.jsonl"])
            .current_dir(p.path("."))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&ran.stdout);
        assert!(
            ran.status.success(),
            "seed {seed}:\n{out}{}",
            String::from_utf8_lossy(&ran.stderr)
        );
        checked += tasks.len();
    }
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    // Every finished run, every kind, six seeds (the crash gives none; a run
    // may lack a later line to break at or an earlier step to go back to).
    assert!(checked >= 6 * 4 * 4, "{checked}");
    eprintln!("debugger tasks: {checked} answers re-derived by re-running the programs");
}
