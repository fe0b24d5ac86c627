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

/// Run the project's `reference.py` on these tasks and the programs file;
/// it exits non-zero, printing what differs, when an answer is not its own.
fn check_with_reference(p: &Project, tasks: &[serde_json::Map<String, Value>], seed: u64) {
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
    assert!(
        ran.status.success(),
        "seed {seed}:\n{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
}

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
        check_with_reference(&p, &tasks, seed);
        checked += tasks.len();
    }
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    // Every finished run, every kind, six seeds (the crash gives none; a run
    // may lack a later line to break at or an earlier step to go back to).
    assert!(checked >= 6 * 4 * 4, "{checked}");
    eprintln!("debugger tasks: {checked} answers re-derived by re-running the programs");
}

/// The programs above and one with a branch that is not taken, so that
/// REval's probes meet unexecuted lines.
fn reval_programs() -> String {
    PROGRAMS.to_string()
        + r#"{"task_id": "branch", "entry_point": "classify", "program": "def classify(n):\n    label = 'small'\n    if n > 10:\n        label = 'big'\n        n = n // 10\n    else:\n        n = n + 1\n    return (label, n)\n", "input": "[3]", "expected": "[\"small\", 4]"}
"#
}

/// The traces and every kind of exercise, REval's probes and whole-trace
/// prediction included; `grade_answers` appended when replies exist.
fn exercises_project(seed: u64, grade: bool) -> Project {
    let p = project();
    p.write("programs.jsonl", &reval_programs());
    let mut spec = format!(
        r#"experiment: exercises
stages:
  programs:
    kind: load
    params: {{ path: programs.jsonl }}
  traced:
    kind: trace
    inputs: {{ programs: programs.rows }}
    params: {{ expected: expected, keep: [program, entry_point], depth: 4 }}
  exercises:
    kind: reasoning_tasks
    inputs: {{ runs: traced.runs, events: traced.events }}
    params:
      kinds: [output, input, next_state, coverage, debug_step, debug_next, debug_out, debug_break, debug_back, reval, trace_cwm]
      seed: {seed}
      probes: 3
"#
    );
    if grade {
        spec.push_str(
            r#"  replies:
    kind: load
    params: { path: replies.jsonl }
  graded:
    kind: grade_answers
    inputs: { tasks: exercises.tasks, replies: replies.rows }
"#,
        );
    }
    p.write("ex.yaml", &spec);
    p
}

/// REval's ground truth re-derived apart from tw, as REval's `dynamics.py`
/// collects it: line events of the program's functions under
/// `sys.settrace`, a line repeated right away merged into one state; the
/// next line after each state (-1 at the end, {-1} when never run); the
/// variable's value when the line finished, read at its frame's next event.
const REFERENCE_REVAL: &str = r#"
import json, sys

def run(src, entry, args):
    ns = {}
    exec(compile(src, "<prog>", "exec"), ns)
    lines, after, pending = [], {}, {}
    def tracer(frame, event, arg):
        if frame.f_code.co_filename != "<prog>":
            return None
        fid = id(frame)
        if event in ("line", "return") and fid in pending:
            after[pending.pop(fid)] = {k: repr(v) for k, v in frame.f_locals.items()}
        if event == "line":
            pending[fid] = len(lines)
            lines.append(frame.f_lineno)
        return tracer
    sys.settrace(tracer)
    try:
        result = ns[entry](*args)
    finally:
        sys.settrace(None)
    return lines, after, result

tasks = [json.loads(l) for l in open(sys.argv[1])]
inputs = {json.loads(l)["task_id"]: json.loads(l) for l in open(sys.argv[2])}
bad = 0
for t in tasks:
    lines, after, result = run(t["program"], t["entry_point"], json.loads(inputs[t["id"]]["input"]))
    merged = [l for i, l in enumerate(lines) if i == 0 or lines[i - 1] != l]
    L, var, kind = t["line"], t["var"], t["kind"]
    if kind == "reval_coverage":
        want = "YES" if L in lines else "NO"
        got = t["answer"]
    elif kind == "reval_path":
        want = sorted({merged[k + 1] if k + 1 < len(merged) else -1 for k, l in enumerate(merged) if l == L} or {-1})
        got = json.loads(t["answer"])
    elif kind == "reval_state":
        want = []
        for i, l in enumerate(lines):
            if l == L and var in after.get(i, {}) and after[i][var] not in want:
                want.append(after[i][var])
        got = json.loads(t["answer"])
    elif kind == "reval_output":
        want, got = repr(result), t["answer"]
    else:
        continue
    if got != want:
        bad += 1
        print("DIFFER", t["task"], "tw:", got, "reference:", want)
print(f"checked {len(tasks)} bad {bad}")
sys.exit(1 if bad else 0)
"#;

#[test]
fn reval_answers_agree_with_a_rerun_of_the_program() {
    let mut checked = 0usize;
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..5 {
        let p = exercises_project(seed, false);
        p.write("reference.py", REFERENCE_REVAL);
        p.run_ok("ex.yaml");
        let tasks: Vec<_> = export(&p, "ex.yaml", "exercises.tasks")
            .into_iter()
            .filter(|t| t["kind"].as_str().unwrap().starts_with("reval_"))
            .collect();
        for t in &tasks {
            let kind = t["kind"].as_str().unwrap();
            if kind == "reval_coverage" {
                seen.insert(format!("coverage {}", t["answer"].as_str().unwrap()));
            }
            if kind == "reval_state" && t["answer"] == "[]" {
                seen.insert("state Nil".to_string());
            }
            // Keys are unique and name the probe.
            if kind != "reval_output" {
                assert!(
                    t["task"]
                        .as_str()
                        .unwrap()
                        .ends_with(&format!("/{kind}/p{}", t["probe"])),
                    "{t:?}"
                );
            }
        }
        check_with_reference(&p, &tasks, seed);
        checked += tasks.len();
    }
    // Executed and unexecuted lines both asked about, and a Nil state.
    for want in ["coverage YES", "coverage NO", "state Nil"] {
        assert!(seen.contains(want), "{want} never asked: {seen:?}");
    }
    assert!(checked >= 5 * 3 * 4, "{checked}");
    eprintln!("REval probes: {checked} answers re-derived by re-running the programs");
}

/// A reply giving each exercise's own answer, as a model would write it.
fn right_reply(t: &serde_json::Map<String, Value>) -> String {
    let answer = t["answer"].as_str().unwrap();
    let call = t["call"].as_str().unwrap();
    match t["kind"].as_str().unwrap() {
        "output" | "reval_output" => format!("[ANSWER]\nassert {call} == {answer}\n[/ANSWER]"),
        "input" => format!(
            "```python\n{}({answer})\n```",
            t["entry_point"].as_str().unwrap()
        ),
        "reval_coverage" => format!("[ANSWER]\n{answer}\n[/ANSWER]"),
        "reval_state" => {
            let values: Vec<String> = serde_json::from_str(answer).unwrap();
            match values.first() {
                None => "[ANSWER]\nNil\n[/ANSWER]".to_string(),
                Some(v) => {
                    let kind = match v.chars().next().unwrap() {
                        '[' => "list",
                        '(' => "tuple",
                        '{' => "dict",
                        '\'' | '"' => "str",
                        _ if v == "True" || v == "False" => "bool",
                        _ if v.contains('.') => "float",
                        _ => "int",
                    };
                    format!("[ANSWER]\n{v}; {kind}\n[/ANSWER]")
                }
            }
        }
        "reval_path" => {
            let next: Vec<i64> = serde_json::from_str(answer).unwrap();
            let program = t["program"].as_str().unwrap();
            let text = match next[0] {
                -1 => "-1".to_string(),
                l => program
                    .lines()
                    .nth(l as usize - 1)
                    .unwrap()
                    .trim()
                    .to_string(),
            };
            format!("[ANSWER]\n{text}\n[/ANSWER]")
        }
        _ => answer.to_string(),
    }
}

fn graded_with(p: &Project, replies: &[(String, String)]) -> Vec<serde_json::Map<String, Value>> {
    p.write("replies.jsonl", &predictions(replies));
    p.run_ok("ex.yaml");
    export(p, "ex.yaml", "graded.graded")
}

fn metric(p: &Project, kind: &str, name: &str) -> f64 {
    export(p, "ex.yaml", "graded.summary")
        .iter()
        .find(|r| r["kind"] == kind && r["metric"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))["value"]
        .as_f64()
        .unwrap()
}

#[test]
fn grade_answers_grades_every_kind_and_revals_consistency() {
    let p = exercises_project(1, false);
    p.run_ok("ex.yaml");
    let tasks = export(&p, "ex.yaml", "exercises.tasks");
    let p = exercises_project(1, true);
    let key = |t: &serde_json::Map<String, Value>| t["task"].as_str().unwrap().to_string();
    let kinds: std::collections::BTreeSet<String> = tasks
        .iter()
        .map(|t| t["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds.len(), 14, "every kind made: {kinds:?}");

    // Every exercise's own answer, written as a model writes it: all right.
    let right: Vec<(String, String)> = tasks.iter().map(|t| (key(t), right_reply(t))).collect();
    let graded = graded_with(&p, &right);
    assert_eq!(graded.len(), tasks.len());
    for g in &graded {
        assert_eq!(g["correct"], true, "{g:?}");
    }
    for kind in &kinds {
        assert_eq!(metric(&p, kind, "accuracy_pct"), 100.0, "{kind}");
    }
    assert_eq!(metric(&p, "reval", "incremental_consistency_pct"), 100.0);
    assert_eq!(metric(&p, "reval_coverage", "f1_pct"), 100.0);
    let probes = export(&p, "ex.yaml", "graded.summary")
        .iter()
        .find(|r| r["metric"] == "incremental_consistency_pct")
        .unwrap()["n"]
        .as_u64()
        .unwrap();
    assert_eq!(
        probes as usize,
        tasks
            .iter()
            .filter(|t| t["kind"] == "reval_coverage")
            .count()
    );

    // REval's worked cases: the output wrong everywhere -> each probe 1,1,1,0
    // (1/2); the path wrong too -> 1,1,0,0 (1/4); coverage wrong first -> 0
    // whatever follows.
    let with = |wrong: &[&str], reply: &str| -> Vec<(String, String)> {
        tasks
            .iter()
            .map(|t| {
                let kind = t["kind"].as_str().unwrap();
                let text = if wrong.contains(&kind) {
                    if kind == "reval_coverage" {
                        let flipped = if t["answer"] == "YES" { "NO" } else { "YES" };
                        format!("[ANSWER]\n{flipped}\n[/ANSWER]")
                    } else {
                        reply.replace("CALL", t["call"].as_str().unwrap())
                    }
                } else {
                    right_reply(t)
                };
                (key(t), text)
            })
            .collect()
    };
    graded_with(
        &p,
        &with(
            &["reval_output"],
            "[ANSWER]\nassert CALL == 'nope'\n[/ANSWER]",
        ),
    );
    assert_eq!(metric(&p, "reval", "incremental_consistency_pct"), 50.0);
    assert_eq!(metric(&p, "reval_output", "accuracy_pct"), 0.0);
    graded_with(
        &p,
        &with(
            &["reval_output", "reval_path"],
            "[ANSWER]\nassert CALL == 'nope'\n[/ANSWER]",
        ),
    );
    assert_eq!(metric(&p, "reval", "incremental_consistency_pct"), 25.0);
    assert_eq!(metric(&p, "reval_state", "accuracy_pct"), 100.0);
    graded_with(&p, &with(&["reval_coverage"], ""));
    assert_eq!(metric(&p, "reval", "incremental_consistency_pct"), 0.0);
    assert_eq!(metric(&p, "reval_state", "accuracy_pct"), 100.0);

    // Wrong, unreadable and hostile replies: each a wrong grade with its
    // reason, the stage never failing.
    let find = |kind: &str, id: &str| {
        tasks
            .iter()
            .find(|t| t["kind"] == kind && t["id"] == id)
            .unwrap_or_else(|| panic!("no {kind} for {id}"))
    };
    let cases: Vec<(&serde_json::Map<String, Value>, String, bool, &str)> = vec![
        // fact(4) is 24, not 6; fact(3) is the traced input, any input works.
        (
            find("input", "recursion"),
            "4".into(),
            false,
            "AssertionError",
        ),
        (
            find("input", "recursion"),
            "assert fact(3) == 6".into(),
            true,
            "",
        ),
        (
            find("output", "recursion"),
            "assert fact(3) == 7".into(),
            false,
            "AssertionError",
        ),
        // An expression that would pass if run as code is not a literal.
        (
            find("output", "recursion"),
            "[ANSWER]assert fact(3) == 1) or (True[/ANSWER]".into(),
            false,
            "SyntaxError",
        ),
        (
            find("output", "recursion"),
            "__import__('os').system('touch /tmp/tw-grade-mark')".into(),
            false,
            "ValueError",
        ),
        (find("output", "recursion"), "".into(), false, "no answer"),
        (
            find("coverage", "loop"),
            "I cannot tell".into(),
            false,
            "no yes or no",
        ),
        (
            find("next_state", "loop"),
            "the next line is 4".into(),
            false,
            "no JSON object",
        ),
        (
            find("debug_step", "loop"),
            "{\"event\": \"end\"}".into(),
            false,
            "for {",
        ),
        (
            find("trace_cwm", "loop"),
            "<|line_sep|>{}<|action_sep|>".into(),
            false,
            "frame 0",
        ),
        (
            find("reval_output", "branch"),
            "assert classify(3) == classify(3)".into(),
            false,
            "ValueError",
        ),
        (
            find("reval_output", "branch"),
            "assert True".into(),
            false,
            "constant",
        ),
        (
            find("reval_output", "branch"),
            "assert classify(4) == ('small', 5)".into(),
            false,
            "not `classify(3)`",
        ),
        (
            find("reval_output", "branch"),
            "[ANSWER]\nassert classify(3) == ('small', 4)\n[/ANSWER]".into(),
            true,
            "",
        ),
        (
            find("reval_state", "branch"),
            "[ANSWER]\n1; float\n[/ANSWER]".into(),
            false,
            "",
        ),
        (
            find("reval_state", "branch"),
            "maybe 3".into(),
            false,
            "no `value; type`",
        ),
    ];
    let replies: Vec<(String, String)> = cases
        .iter()
        .map(|(t, r, _, _)| (key(t), r.clone()))
        .collect();
    // Several replies to one exercise: each graded on its own row.
    let graded = graded_with(&p, &replies);
    assert_eq!(graded.len(), cases.len());
    for ((t, reply, ok, reason), g) in cases.iter().zip(&graded) {
        assert_eq!(g["task"].as_str().unwrap(), key(t));
        assert_eq!(g["correct"], *ok, "{reply:?}: {g:?}");
        let why = g["reason"].as_str().unwrap_or("");
        assert!(
            why.contains(reason),
            "{reply:?}: reason {why:?}, wanted {reason:?}"
        );
    }
    assert!(
        !std::path::Path::new("/tmp/tw-grade-mark").exists(),
        "a reply was run as code"
    );

    // Replies that name no exercise stop the stage, naming both sides.
    p.write(
        "replies.jsonl",
        "{\"task_id\": \"nope\", \"reply\": \"yes\"}\n",
    );
    let ran = p.tw(&["run", "ex.yaml"]);
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr.contains("no reply names an exercise"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("nope") && ran.stderr.contains("branch/5/coverage"),
        "{}",
        ran.stderr
    );
}

/// The older CodeExecutor format scored the same way: each real trace
/// rendered by `represent` and fed back scores 100%; one changed value, one
/// dropped entry and a changed output are reported exactly.
#[test]
fn codeexecutor_predictions_round_trip_and_report_their_divergence() {
    let p = project();
    let ce = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates/traces/codeexecutor.j2");
    let seed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates/traces/_seed.j2");
    p.write("t/codeexecutor.j2", &fs_err::read_to_string(ce).unwrap());
    p.write("t/_seed.j2", &fs_err::read_to_string(seed).unwrap());
    let spec = p.read("spec.yaml")
        + r#"  ce:
    kind: represent
    inputs: { runs: traced.runs, events: traced.events }
    params: { template: t/codeexecutor.j2, select: all }
  scored_ce:
    kind: score_traces
    inputs: { runs: traced.runs, events: traced.events, predictions: predictions.rows }
    params: { prediction: reply, format: codeexecutor }
"#;
    p.write("spec.yaml", &spec);
    let _ = rendered(&p);
    let texts: Vec<(String, String)> = export(&p, "spec.yaml", "ce.rows")
        .into_iter()
        .map(|r| {
            (
                r["task_id"].as_str().unwrap().to_string(),
                r["trace_text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(texts.len(), 5);
    p.write("predictions.jsonl", &predictions(&texts));
    p.run_ok("spec.yaml");
    let scores = export(&p, "spec.yaml", "scored_ce.scores");
    for s in &scores {
        assert_eq!(s["exact"], true, "{s:?}");
        assert_eq!(s["variable_accuracy"].as_f64(), Some(1.0), "{s:?}");
    }
    let by_id = |scores: &[serde_json::Map<String, Value>], id: &str| {
        scores.iter().find(|s| s["task_id"] == id).unwrap().clone()
    };
    assert_eq!(by_id(&scores, "loop")["output_truth"], "4");
    assert_eq!(by_id(&scores, "loop")["output_correct"], true);

    // Perturbations of the loop's trace (count_above([3, 5, 1], 2)).
    let loop_text = &texts.iter().find(|(id, _)| id == "loop").unwrap().1;
    let entries: Vec<&str> = loop_text
        .lines()
        .filter(|l| l.starts_with("<line>"))
        .collect();
    let fourth = entries[3];
    assert!(
        fourth.starts_with("<line> <5>") && fourth.contains("total = 2"),
        "{fourth}"
    );
    let changed = loop_text.replacen(fourth, &fourth.replace("total = 2", "total = 3"), 1);
    let dropped = loop_text.replacen(&format!("{}\n", entries[1]), "", 1);
    let output = loop_text.replace("<output>4", "<output>5");
    for (text, at, divergence) in [
        (changed, 3, "locals: total = 3 for 2"),
        (dropped, 1, "line: 4 for 3"),
        (output, entries.len(), "value: 5 for 4"),
    ] {
        p.write("predictions.jsonl", &predictions(&[("loop".into(), text)]));
        p.run_ok("spec.yaml");
        let s = by_id(&export(&p, "spec.yaml", "scored_ce.scores"), "loop");
        assert_eq!(s["exact"], false);
        assert_eq!(s["diverge_at"].as_u64(), Some(at as u64), "{s:?}");
        assert_eq!(s["divergence"], divergence, "{s:?}");
    }
}

/// `specs/trace_tasks.yaml` as shipped: every kind of exercise made from the
/// repair pairs' traces, asked of SmolLM2 in-process, graded and reported;
/// the consistency score recomputed here from the graded rows.
#[test]
#[ignore = "needs SmolLM2 (scripts/setup-models.sh, TW_REQUIRE_MODELS) and the benchmark data (TW_REQUIRE_DATA)"]
fn trace_tasks_spec_asks_the_in_process_model_and_grades_every_kind() {
    use tw_stages::testing::{Need, env_path, shared_data};
    let Some(model) = env_path(Need::Models, "TW_SMOLLM2_HF") else {
        return;
    };
    let Some(data) = shared_data("TW_BENCHMARKS", "benchmarks", "HumanEval.jsonl.gz") else {
        return;
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let spec = fs_err::read_to_string(root.join("specs/trace_tasks.yaml"))
        .unwrap()
        .replace("../data/benchmarks", &data.display().to_string())
        .replace(
            "../models/smollm2-135m-instruct/hf",
            &model.display().to_string(),
        )
        .replace(
            "../templates",
            &root.join("templates").display().to_string(),
        );
    let p = Project::new();
    p.write("tt.yaml", &spec);
    p.run_ok("tt.yaml");
    let tasks = export(&p, "tt.yaml", "exercises.tasks");
    let kinds: std::collections::BTreeSet<&str> =
        tasks.iter().map(|t| t["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 14, "{kinds:?}");
    let answers = export(&p, "tt.yaml", "answers.candidates");
    assert_eq!(answers.len(), tasks.len());
    let graded = export(&p, "tt.yaml", "graded.graded");
    assert_eq!(graded.len(), tasks.len());
    assert!(graded.iter().all(|g| g["correct"].is_boolean()));
    let summary = export(&p, "tt.yaml", "graded.summary");
    let value = |kind: &str, metric: &str| {
        summary
            .iter()
            .find(|r| r["kind"] == kind && r["metric"] == metric)
            .unwrap_or_else(|| panic!("no {kind} {metric}: {summary:?}"))["value"]
            .as_f64()
            .unwrap()
    };
    for kind in &kinds {
        let right = graded
            .iter()
            .filter(|g| g["kind"] == *kind && g["correct"] == true)
            .count() as f64;
        let all = graded.iter().filter(|g| g["kind"] == *kind).count() as f64;
        assert!(
            (value(kind, "accuracy_pct") - 100.0 * right / all).abs() < 1e-9,
            "{kind}"
        );
    }
    // REval's IC from the graded rows, by its rules, apart from tw's code.
    let ok = |id: &Value, run: &Value, kind: &str, probe: Option<&Value>| {
        graded
            .iter()
            .find(|g| {
                g["id"] == *id
                    && g["run"] == *run
                    && g["kind"] == kind
                    && probe.is_none_or(|p| g["probe"] == *p)
            })
            .map(|g| g["correct"] == true)
            .unwrap()
    };
    let scores: Vec<f64> = graded
        .iter()
        .filter(|g| g["kind"] == "reval_coverage")
        .map(|g| {
            let probe = Some(&g["probe"]);
            let seq = [
                ok(&g["id"], &g["run"], "reval_coverage", probe),
                ok(&g["id"], &g["run"], "reval_state", probe),
                ok(&g["id"], &g["run"], "reval_path", probe),
                ok(&g["id"], &g["run"], "reval_output", None),
            ];
            match seq {
                [true, true, true, true] => 1.0,
                [true, true, true, false] => 0.5,
                [true, true, false, false] => 0.25,
                [true, false, false, false] => 0.125,
                _ => 0.0,
            }
        })
        .collect();
    let ic = 100.0 * scores.iter().sum::<f64>() / scores.len() as f64;
    assert!((value("reval", "incremental_consistency_pct") - ic).abs() < 1e-9);
    let traced = export(&p, "tt.yaml", "trace_scores.summary");
    assert_eq!(
        traced[0]["predictions"].as_u64().unwrap() as usize,
        tasks.iter().filter(|t| t["kind"] == "trace_cwm").count()
    );
    let ran = p.tw(&["report", "tt.yaml"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let table = p.read("reports/report/accuracy.md");
    assert!(
        table.contains("reval_state") && table.contains("trace_cwm"),
        "{table}"
    );
    assert!(p.path("reports/report/index.html").is_file());
    eprintln!("{table}\n{}", p.read("reports/report/reval.md"));
    eprintln!(
        "trace_tasks: {} exercises over {} runs; accuracy per kind: {}; REval IC {ic:.1}; CWM traces exact {}%",
        tasks.len(),
        tasks
            .iter()
            .map(|t| (t["id"].to_string(), t["run"].to_string()))
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        kinds
            .iter()
            .map(|k| format!("{k} {:.0}", value(k, "accuracy_pct")))
            .collect::<Vec<_>>()
            .join(", "),
        traced[0]["exact_pct"]
    );
    // A rerun asks the model nothing and grades nothing again.
    let again = p.run_ok("tt.yaml");
    assert!(again.contains(" 0 ran"), "{again}");
}
