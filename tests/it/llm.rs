//! LLM backends and test-time scaling: the OpenAI client against a scripted
//! HTTP server (500s, malformed JSON, slow answers, a dead endpoint, a
//! partial failure) and against a real llama.cpp `llama-server` serving
//! SmolLM2 (`scripts/setup-llama-server.sh`, `scripts/setup-models.sh`):
//! generation, sequential and parallel scaling, replay with the server dead,
//! a server killed mid-stage, and one stage spread over two servers and a
//! dead URL.

use crate::harness::Project;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Three HumanEval-format problems, each with a `check` of two asserts.
const PROBLEMS: &str = r#"{"task_id": "T/0", "prompt": "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n", "entry_point": "add", "canonical_solution": "    return a + b\n", "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"}
{"task_id": "T/1", "prompt": "def double(x):\n    \"\"\"Twice x.\"\"\"\n", "entry_point": "double", "canonical_solution": "    return 2 * x\n", "test": "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(0) == 0\n"}
{"task_id": "T/2", "prompt": "def last(xs):\n    \"\"\"The last element of xs.\"\"\"\n", "entry_point": "last", "canonical_solution": "    return xs[-1]\n", "test": "def check(candidate):\n    assert candidate([1, 2]) == 2\n    assert candidate([5]) == 5\n"}
"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the scripted server does with the k-th request (0-based) it receives.
type Script = dyn Fn(usize, &Value) -> (u16, String, Duration) + Send + Sync;

struct FakeServer {
    port: u16,
    hits: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl FakeServer {
    fn start(script: Box<Script>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::from(script);
        let (h, b) = (hits.clone(), bodies.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (h, b, script) = (h.clone(), b.clone(), script.clone());
                std::thread::spawn(move || serve(stream, &h, &b, script.as_ref()));
            }
        });
        FakeServer { port, hits, bodies }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn serve(stream: TcpStream, hits: &AtomicUsize, bodies: &Mutex<Vec<Value>>, script: &Script) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let k = hits.fetch_add(1, Ordering::SeqCst);
    bodies.lock().unwrap().push(request.clone());
    let (status, text, delay) = script(k, &request);
    std::thread::sleep(delay);
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// A chat reply whose code solves the problem the prompt names.
fn solving_reply(request: &Value) -> String {
    let prompt = request["messages"].to_string();
    let code = if prompt.contains("def add") {
        "def add(a, b):\n    return a + b"
    } else if prompt.contains("def double") {
        "def double(x):\n    return x + x"
    } else {
        "def last(xs):\n    y = xs[0]\n    return y * 10"
    };
    let content = format!(
        "[[ ## reasoning ## ]]\nsimple\n\n[[ ## code ## ]]\n```python\n{code}\n```\n\n[[ ## completed ## ]]"
    );
    json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
    .to_string()
}

fn ok() -> Duration {
    Duration::ZERO
}

fn project(model: &str, extra: &str) -> Project {
    project_sampling(model, 2, 200, extra)
}

/// HE-format problems and a `generate` stage asking `n` samples of each.
fn project_sampling(model: &str, n: usize, max_tokens: usize, extra: &str) -> Project {
    let p = Project::new();
    let templates = repo().join("templates");
    p.write("data/problems.jsonl", PROBLEMS).write(
        "spec.yaml",
        &format!(
            r#"experiment: tts
stages:
  he:
    kind: load_benchmark
    params: {{ benchmark: humaneval, path: data/problems.jsonl }}
  samples:
    kind: generate
    inputs: {{ problems: he.problems }}
    params:
      model: {model}
      template: {t}/prompts/nl2code.j2
      n: {n}
      sampling: {{ max_tokens: {max_tokens} }}
{extra}"#,
            t = templates.display()
        ),
    );
    p
}

/// A `debug` stage: sequential scaling with NExT traces, n = 2, `rounds` rounds.
fn sequential_stage(model: &str, rounds: usize, extra_param: &str) -> String {
    let t = repo().join("templates");
    format!(
        r#"  debug:
    kind: sequential_scaling
    inputs: {{ problems: he.problems, tests: he.tests }}
    params:
      model: {model}
      first_template: {t}/prompts/nl2code.j2
      debug_template: {t}/prompts/self_debug.j2
      representation: {t}/traces/next.j2
      n: 2
      rounds: {rounds}
      {extra_param}
"#,
        t = t.display()
    )
}

fn fast_model(url: &str) -> String {
    format!(
        r#"{{ backend: openai, base_url: "{url}", name: fake, retries: 3, backoff_s: 0.05, timeout_s: 2 }}"#
    )
}

fn manifests(p: &Project, kind: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let obj = p.path("cache/v1/obj");
    for shard in fs_err::read_dir(obj).into_iter().flatten().flatten() {
        for entry in fs_err::read_dir(shard.path()).unwrap().flatten() {
            let m = entry.path().join("manifest.json");
            if let Ok(text) = fs_err::read_to_string(&m) {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["kind"] == kind {
                    out.push(v);
                }
            }
        }
    }
    out
}

/// Completions in the project's ledger: complete record lines of its
/// segments (`cache/ledger/segments/*.jsonl`; a torn last line is not one).
fn ledger_files(p: &Project) -> usize {
    ledger_lines(p).len()
}

/// Every complete record line of the ledger's segments, in segment order.
fn ledger_lines(p: &Project) -> Vec<String> {
    let mut files: Vec<_> = fs_err::read_dir(p.path("cache/ledger/segments"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = fs_err::read_to_string(&f).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        out.extend(
            complete
                .lines()
                .filter(|l| l.starts_with("{\"key\":\""))
                .map(String::from),
        );
    }
    out
}

#[test]
fn retries_through_500s_malformed_json_and_slow_answers() {
    // Request 0: 500; 1: malformed JSON; 2: slower than the 2 s timeout;
    // later ones answer. Six samples (3 problems x 2) must all arrive.
    let server = FakeServer::start(Box::new(|k, req| match k {
        0 => (500, "{\"error\": \"overloaded\"}".into(), ok()),
        1 => (200, "{\"choices\": [".into(), ok()),
        2 => (200, solving_reply(req), Duration::from_secs(4)),
        _ => (200, solving_reply(req), ok()),
    }));
    let p = project(
        &format!(
            r#"{{ backend: openai, base_url: "{}", name: fake, retries: 3, backoff_s: 0.05, timeout_s: 2, concurrency: 1 }}"#,
            server.url()
        ),
        "",
    );
    p.run_ok("spec.yaml");
    assert_eq!(server.hits(), 6 + 3, "three failed attempts were retried");
    let m = &manifests(&p, "generate")[0];
    assert_eq!(m["notes"]["llm_calls"], 6);
    assert_eq!(m["notes"]["llm_replayed"], 0);
    // Every sampling field is sent explicitly, with a per-sample seed.
    let bodies = server.bodies.lock().unwrap();
    let seeds: std::collections::BTreeSet<String> =
        bodies.iter().map(|b| b["seed"].to_string()).collect();
    assert_eq!(seeds.len(), 6, "one seed per sample");
    for b in bodies.iter() {
        assert_eq!(b["model"], "fake");
        assert_eq!(b["temperature"], 0.7);
        assert_eq!(b["max_tokens"], 200);
        assert_eq!(b["top_p"], 1.0);
    }
}

#[test]
fn plan_bounds_the_llm_calls_and_a_cached_stage_makes_none() {
    let server = FakeServer::start(Box::new(|_, req| (200, solving_reply(req), ok())));
    let model = fast_model(&server.url());
    let p = project(&model, &sequential_stage(&model, 2, ""));
    let line = |stdout: &str, id: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id))
            .unwrap_or_else(|| panic!("no {id} in {stdout}"))
            .to_string()
    };
    // The problems are not loaded yet: a bound per problem only.
    let plan = p.tw(&["plan", "spec.yaml"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .starts_with("tts: 3 stages, 3 to run, LLM calls: 2 stages not yet bounded\n"),
        "{}",
        plan.stdout
    );
    assert!(
        line(&plan.stdout, "samples").ends_with(
            "LLM calls: 2 samples per row of `problems`, whose size is known once its upstream runs"
        ),
        "{}",
        plan.stdout
    );
    let ran = p.tw(&["run", "spec.yaml", "--only", "he"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let plan = p.tw(&["plan", "spec.yaml"]);
    assert!(
        plan.stdout
            .starts_with("tts: 3 stages, 2 to run, at most 24 LLM calls\n"),
        "{}",
        plan.stdout
    );
    assert!(
        line(&plan.stdout, "samples")
            .ends_with("at most 6 LLM calls (3 problems x 2 samples; ledger hits are free)"),
        "{}",
        plan.stdout
    );
    assert!(
        line(&plan.stdout, "debug").ends_with(
            "at most 18 LLM calls (3 problems x 2 samples x (1 + 2 rounds); ledger hits are free)"
        ),
        "{}",
        plan.stdout
    );
    let json = p.tw(&["plan", "spec.yaml", "--json"]);
    let json: Value = serde_json::from_str(&json.stdout).unwrap();
    let samples = json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "samples")
        .unwrap();
    assert_eq!(samples["llm_calls"]["at_most"], 6);
    p.run_ok("spec.yaml");
    assert!(server.hits() <= 24, "{} calls", server.hits());
    // Cached: nothing to ask.
    let plan = p.tw(&["plan", "spec.yaml"]);
    assert!(!plan.stdout.contains("LLM call"), "{}", plan.stdout);
}

#[test]
fn a_replay_needs_no_endpoint_and_a_new_ask_says_what_is_missing() {
    let server = FakeServer::start(Box::new(|_, req| (200, solving_reply(req), ok())));
    let model = fast_model(&server.url());
    let p = project(&model, "");
    p.run_ok("spec.yaml");
    let first = crate::dataset::export(&p, "spec.yaml", "samples.candidates");
    let hits = server.hits();
    // No base_url, no OPENAI_BASE_URL: the params changed, so the stage
    // reruns, and the ledger answers everything.
    let unset = r#"{ backend: openai, name: fake, retries: 3, backoff_s: 0.05, timeout_s: 2 }"#;
    p.write("spec.yaml", &p.read("spec.yaml").replace(&model, unset));
    let run = |p: &Project| {
        crate::harness::into_ran(
            p.command(&["run", "spec.yaml"])
                .env_remove("OPENAI_BASE_URL")
                .output()
                .unwrap(),
        )
    };
    let ran = run(&p);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        crate::dataset::export(&p, "spec.yaml", "samples.candidates"),
        first
    );
    assert_eq!(server.hits(), hits, "nothing was asked");
    // One more sample per problem must be asked for: now the missing URL is the error.
    p.write("spec.yaml", &p.read("spec.yaml").replace("n: 2", "n: 3"));
    let ran = run(&p);
    assert_eq!(ran.code, 1);
    assert!(
        ran.stderr
            .contains("3 of 9 completions failed (6 received and kept in the ledger")
            && ran
                .stderr
                .contains("model.base_url is not set and neither is OPENAI_BASE_URL"),
        "{}",
        ran.stderr
    );
}

#[test]
fn a_dead_endpoint_fails_clearly_and_a_partial_run_resumes_with_only_the_rest() {
    // Nothing listens: the error names the URL and the cause.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/v1", dead.local_addr().unwrap().port());
    drop(dead);
    let p = project(&fast_model(&url), "");
    let ran = p.tw(&["run", "spec.yaml"]);
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr.contains(&format!("{url}/chat/completions")),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("gave up after 4 attempts"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("0 received"), "{}", ran.stderr);

    // A server that rejects every request about `last`: the other four land.
    let flaky = FakeServer::start(Box::new(|_, req| {
        if req["messages"].to_string().contains("def last") {
            (400, "{\"error\": \"bad request\"}".into(), ok())
        } else {
            (200, solving_reply(req), ok())
        }
    }));
    let p = project(&fast_model(&flaky.url()), "");
    let ran = p.tw(&["run", "spec.yaml"]);
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr
            .contains("2 of 6 completions failed (4 received and kept in the ledger"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("HTTP 400"), "{}", ran.stderr);
    assert_eq!(ledger_files(&p), 4);

    // The next run, against a healthy server on another port, asks for two.
    let healthy = FakeServer::start(Box::new(|_, req| (200, solving_reply(req), ok())));
    let spec = p.read("spec.yaml").replace(&flaky.url(), &healthy.url());
    p.write("spec.yaml", &spec);
    p.run_ok("spec.yaml");
    assert_eq!(healthy.hits(), 2);
    let m = &manifests(&p, "generate")[0];
    assert_eq!(
        (
            m["notes"]["llm_calls"].as_u64(),
            m["notes"]["llm_replayed"].as_u64()
        ),
        (Some(2), Some(4))
    );
}

#[test]
fn scaling_stages_select_and_score_honestly_and_as_the_oracle_did() {
    // The fake model solves `add` and `double` and gets `last` wrong; so the
    // oracle and the honest selection agree on 2 of 3 problems.
    let server = FakeServer::start(Box::new(|_, req| (200, solving_reply(req), ok())));
    let model = fast_model(&server.url());
    let extra = r#"  pick:
    kind: parallel_scaling
    inputs: { problems: he.problems, tests: he.tests, candidates: samples.candidates }
    params: { selection: public_filter, labels: { model: fake } }
"#
    .to_string()
        + &sequential_stage(&model, 2, "labels: { model: fake }");
    let extra = extra
        + r#"  report:
    kind: report
    inputs: { rows: [pick.summary, debug.summary, debug.scores] }
    params:
      tables:
        - { name: main, rows: [model], columns: [strategy, representation], value: honest_pct, where: "strategy IS NOT NULL", formats: [markdown] }
      plots:
        - { name: rounds, kind: line, x: round, y: [honest_pct, oracle_pct], where: "round IS NOT NULL", formats: [svg] }
"#;
    let p = project(&model, &extra);
    p.run_ok("spec.yaml");
    let summary = crate::dataset::export(&p, "spec.yaml", "pick.summary");
    assert_eq!(summary[0]["honest_pct"].as_f64().unwrap().round(), 67.0);
    assert_eq!(summary[0]["oracle_pct"].as_f64().unwrap().round(), 67.0);
    assert_eq!(summary[0]["model"], "fake");
    let seq = crate::dataset::export(&p, "spec.yaml", "debug.summary");
    assert_eq!(seq[0]["strategy"], "sequential");
    assert_eq!(seq[0]["representation"], "next");
    assert_eq!(seq[0]["oracle_mean_pct"].as_f64().unwrap().round(), 67.0);
    // `last` is wrong on its public test, so its samples were revised in
    // rounds 1 and 2 with feedback that carries the NExT trace of the run.
    let rounds = crate::dataset::export(&p, "spec.yaml", "debug.rounds");
    let last: Vec<_> = rounds.iter().filter(|r| r["task_id"] == "T/2").collect();
    assert_eq!(last.len(), 2 * 3);
    let solved: Vec<_> = rounds.iter().filter(|r| r["task_id"] == "T/0").collect();
    assert_eq!(
        solved.len(),
        2,
        "a sample that passes its public tests stops"
    );
    let feedback: Vec<Value> = serde_json::from_str(last[0]["feedback"].as_str().unwrap()).unwrap();
    assert_eq!(feedback[0]["passed"], false);
    assert!(
        feedback[0]["trace"].as_str().unwrap().contains("xs"),
        "{feedback:?}"
    );
    // The report reads the strategies' own summaries.
    let ran = p.tw(&["report", "spec.yaml", "--no-run"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let rounds = crate::dataset::export(&p, "spec.yaml", "report.rounds");
    assert_eq!(
        rounds.len(),
        2 * 3,
        "honest and oracle lines over rounds 0..=2"
    );
    assert_eq!(
        p.read("reports/report/main.md"),
        "| model | parallel / none | sequential / next |\n\
         | :--- | ---: | ---: |\n\
         | fake | 66.7 | 66.7 |\n"
    );
    let bodies = server.bodies.lock().unwrap();
    assert!(
        bodies.iter().any(|b| b["messages"]
            .to_string()
            .contains("[Round 0 Test Feedback]")),
        "revisions see the feedback"
    );
}

/// A URL nothing listens on.
fn dead_url() -> String {
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/v1", dead.local_addr().unwrap().port());
    drop(dead);
    url
}

/// `base_url` as a YAML list of endpoints, with the rest of `fast_model`.
fn fast_models(urls: &[&str], extra: &str) -> String {
    let list: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        r#"{{ backend: openai, base_url: [{}], name: fake, retries: 3, backoff_s: 0.05, timeout_s: 2{extra} }}"#,
        list.join(", ")
    )
}

/// `llm_endpoints` of a manifest: base_url -> (served, failed).
fn endpoint_notes(m: &Value) -> std::collections::BTreeMap<String, (u64, u64)> {
    m["notes"]["llm_endpoints"]
        .as_object()
        .unwrap_or_else(|| panic!("no llm_endpoints in {}", m["notes"]))
        .iter()
        .map(|(url, v)| {
            (
                url.clone(),
                (v["served"].as_u64().unwrap(), v["failed"].as_u64().unwrap()),
            )
        })
        .collect()
}

#[test]
fn a_list_of_endpoints_shares_the_work_survives_a_dead_one_and_stays_out_of_the_key() {
    let slow = |_: usize, req: &Value| (200, solving_reply(req), Duration::from_millis(50));
    let (a, b) = (
        FakeServer::start(Box::new(slow)),
        FakeServer::start(Box::new(slow)),
    );
    let dead = dead_url();
    let (au, bu) = (a.url(), b.url());
    let model = fast_models(&[&dead, &au, &bu], ", concurrency: 1");
    let p = project_sampling(&model, 4, 200, "");
    p.run_ok("spec.yaml");
    assert_eq!(a.hits() + b.hits(), 12, "each sample asked once");
    let m = &manifests(&p, "generate")[0];
    assert_eq!(m["notes"]["llm_calls"], 12);
    let notes = endpoint_notes(m);
    let (served_a, served_b) = (notes[&au], notes[&bu]);
    assert_eq!(
        (served_a.0 as usize, served_b.0 as usize),
        (a.hits(), b.hits())
    );
    assert!(
        served_a.0 > 0 && served_b.0 > 0,
        "both live endpoints served: {notes:?}"
    );
    assert_eq!(notes[&dead].0, 0);
    assert!(notes[&dead].1 >= 1, "the dead one was tried: {notes:?}");
    // Tokens in and out per endpoint (each reply says 10 in, 5 out), and
    // they add up to the stage's totals.
    let tokens = |url: &str, k: &str| m["notes"]["llm_endpoints"][url][k].as_u64().unwrap();
    for url in [&au, &bu] {
        assert_eq!(tokens(url, "prompt_tokens"), 10 * notes[url].0, "{url}");
        assert_eq!(tokens(url, "completion_tokens"), 5 * notes[url].0, "{url}");
    }
    assert_eq!(
        tokens(&au, "prompt_tokens") + tokens(&bu, "prompt_tokens"),
        m["notes"]["prompt_tokens"].as_u64().unwrap()
    );
    // The manifest says what the stage cost the machine.
    assert!(m["wall_seconds"].as_f64().unwrap() > 0.0, "{m}");
    assert!(m["cpu_seconds"].as_f64().is_some(), "{m}");
    let first = crate::dataset::export(&p, "spec.yaml", "samples.candidates");

    // Reordered, without the dead one, another concurrency per endpoint:
    // the same replicas of the same model, so nothing reruns.
    let other = fast_models(&[&bu, &au], ", concurrency: 1").replace(
        &format!("\"{au}\""),
        &format!("{{ url: \"{au}\", concurrency: 3 }}"),
    );
    p.write("spec.yaml", &p.read("spec.yaml").replace(&model, &other));
    let statuses = p.statuses("spec.yaml");
    assert!(statuses.iter().all(|(_, s)| s == "cached"), "{statuses:?}");

    // One `base_url`, as a plain string, is in the key: the stage reruns and
    // the ledger answers everything (the ledger never sees the endpoint).
    p.write(
        "spec.yaml",
        &p.read("spec.yaml").replace(&other, &fast_model(&dead)),
    );
    p.run_ok("spec.yaml");
    let m = manifests(&p, "generate");
    assert_eq!(m.len(), 2);
    let rerun = m.iter().find(|m| m["notes"]["llm_replayed"] == 12).unwrap();
    assert_eq!(rerun["notes"]["llm_calls"], 0);
    assert_eq!(
        crate::dataset::export(&p, "spec.yaml", "samples.candidates"),
        first
    );
    assert_eq!(a.hits() + b.hits(), 12, "nothing more was asked");

    // Every endpoint failing: the error names each with its own cause.
    let broken = FakeServer::start(Box::new(|_, _| {
        (503, "{\"error\": \"overloaded\"}".into(), ok())
    }));
    let p = project(&fast_models(&[&dead, &broken.url()], ""), "");
    let ran = p.tw(&["run", "spec.yaml"]);
    assert_ne!(ran.code, 0);
    for needle in [
        "every endpoint failed (gave up after 4 attempts on each)".to_string(),
        format!("{dead}/chat/completions: connection"),
        format!("{}/chat/completions: HTTP 503", broken.url()),
        "0 received".to_string(),
    ] {
        assert!(ran.stderr.contains(&needle), "{needle}\n{}", ran.stderr);
    }
}

#[test]
fn a_bad_endpoint_list_is_reported_where_it_is_written() {
    let p = project(
        r#"{ backend: openai, base_url: ["http://127.0.0.1:1/v1", "127.0.0.1:2/v1", { url: "http://127.0.0.1:3/v1", concurrency: 0 }], name: fake }"#,
        "",
    );
    let ran = p.tw(&["plan", "spec.yaml"]);
    assert_ne!(ran.code, 0);
    for needle in [
        "model.base_url.1",
        "must start with http:// or https://",
        "model.base_url.2.concurrency",
        "must be at least 1",
    ] {
        assert!(ran.stderr.contains(needle), "{needle}\n{}", ran.stderr);
    }
    let p = project(r#"{ backend: openai, base_url: [], name: fake }"#, "");
    let ran = p.tw(&["plan", "spec.yaml"]);
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr.contains("model.base_url")
            && ran.stderr.contains("must list at least one endpoint"),
        "{}",
        ran.stderr
    );
}

// ---- against a real llama.cpp server -------------------------------------

struct LlamaServer {
    child: std::process::Child,
    port: u16,
}

/// One real server at a time: two of them, beside the rest of the suite,
/// would share two cores and time out instead of testing anything.
static ONE_SERVER: Mutex<()> = Mutex::new(());

impl LlamaServer {
    fn start(port: Option<u16>) -> Option<LlamaServer> {
        Self::start_with(port, 2, 4)
    }

    /// A server with `threads` CPU threads and `slots` parallel slots.
    fn start_with(port: Option<u16>, threads: usize, slots: usize) -> Option<LlamaServer> {
        let (server, gguf) = match (
            std::env::var("TW_LLAMA_SERVER"),
            std::env::var("TW_SMOLLM2_GGUF"),
        ) {
            (Ok(s), Ok(g)) => (s, g),
            _ => {
                tw_stages::testing::have(
                    tw_stages::testing::Need::Llm,
                    false,
                    "TW_LLAMA_SERVER or TW_SMOLLM2_GGUF is not set",
                );
                return None;
            }
        };
        let port = port.unwrap_or_else(|| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = std::process::Command::new(server)
            .args([
                "-m",
                &gguf,
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "-c",
                "8192",
                "-np",
                &slots.to_string(),
                "-t",
                &threads.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut s = LlamaServer { child, port };
        // The server's log, for a failure to say why it did not come up.
        let last_lines = || {
            let text = fs_err::read_to_string(log.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "llama-server exited ({status}) before it was healthy:\n{}",
                    last_lines()
                );
            }
            if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = write!(
                    c,
                    "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                );
                let mut text = String::new();
                let _ = c.read_to_string(&mut text);
                if text.starts_with("HTTP/1.1 200") {
                    return Some(s);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "llama-server did not become healthy on port {port} in 60 s:\n{}",
            last_lines()
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn llama_model(url: &str) -> String {
    let gguf = std::env::var("TW_SMOLLM2_GGUF").unwrap_or_default();
    format!(
        r#"{{ backend: openai, base_url: "{url}", name: smollm2, weights: "{gguf}", retries: 2, backoff_s: 0.2, timeout_s: 900, concurrency: 4 }}"#
    )
}

#[test]
#[ignore = "needs llama-server: scripts/setup-llama-server.sh, scripts/setup-models.sh (TW_REQUIRE_LLM)"]
fn real_server_runs_scaling_and_a_rerun_replays_with_the_server_dead() {
    let _one = ONE_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(server) = LlamaServer::start(None) else {
        return;
    };
    let t = repo().join("templates");
    let model = llama_model(&server.url());
    let extra = format!(
        r#"  vote:
    kind: parallel_scaling
    inputs: {{ problems: he.problems, tests: he.tests, candidates: samples.candidates }}
    params:
      selection: output_agreement
      model: {model}
      inputs_template: {t}/prompts/test_inputs.j2
      sampling: {{ max_tokens: 200 }}
  judge:
    kind: parallel_scaling
    inputs: {{ problems: he.problems, tests: he.tests, candidates: samples.candidates }}
    params:
      selection: llm_judge_pairwise
      model: {model}
      inputs_template: {t}/prompts/test_inputs.j2
      judge_template: {t}/prompts/judge_pairwise.j2
      representation: {t}/traces/concise.j2
      sampling: {{ max_tokens: 120 }}
"#,
        t = t.display()
    ) + &sequential_stage(&model, 1, "sampling: { max_tokens: 200 }");
    let p = project(&model, &extra);
    p.run_ok("spec.yaml");
    let calls: u64 = ["generate", "parallel_scaling", "sequential_scaling"]
        .iter()
        .flat_map(|k| manifests(&p, k))
        .map(|m| m["notes"]["llm_calls"].as_u64().unwrap_or(0))
        .sum();
    // `debug`'s first round asks exactly what `samples` asks, so whichever
    // stage gets there first makes those 6 calls and the other replays them:
    // the floor is 6 samples + 3 test-input asks for each of `vote` and
    // `judge` (their token budgets differ), and every call is one ledger entry.
    assert!(calls >= 6 + 3 + 3, "the model was asked ({calls} calls)");
    assert_eq!(
        calls as usize,
        ledger_files(&p),
        "each distinct completion is asked once"
    );
    for target in ["vote.summary", "judge.summary", "debug.summary"] {
        let s = crate::dataset::export(&p, "spec.yaml", target);
        let honest = s[0]["honest_pct"].as_f64().unwrap();
        let oracle = s[0]["oracle_pct"].as_f64().unwrap();
        assert!(
            (0.0..=oracle).contains(&honest),
            "{target}: honest {honest} > oracle {oracle}"
        );
    }
    let before: Vec<_> = ["samples.candidates", "debug.rounds", "judge.selected"]
        .iter()
        .map(|t| crate::dataset::export(&p, "spec.yaml", t))
        .collect();

    // Forget every stage result but keep the ledger; stop the server. The
    // rerun must make no call at all and reproduce every output.
    drop(server);
    fs_err::remove_dir_all(p.path("cache/v1")).unwrap();
    p.run_ok("spec.yaml");
    for m in ["generate", "parallel_scaling", "sequential_scaling"]
        .iter()
        .flat_map(|k| manifests(&p, k))
    {
        if m["notes"].get("llm_calls").is_some() {
            assert_eq!(m["notes"]["llm_calls"], 0, "{}", m["node"]);
        }
    }
    let after: Vec<_> = ["samples.candidates", "debug.rounds", "judge.selected"]
        .iter()
        .map(|t| crate::dataset::export(&p, "spec.yaml", t))
        .collect();
    assert_eq!(before, after);
}

#[test]
#[ignore = "needs llama-server: scripts/setup-llama-server.sh, scripts/setup-models.sh (TW_REQUIRE_LLM)"]
fn real_server_killed_mid_stage_keeps_what_arrived() {
    let _one = ONE_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(server) = LlamaServer::start(None) else {
        return;
    };
    let port = server.port;
    let model = llama_model(&server.url()).replace("concurrency: 4", "concurrency: 1");
    let p = project_sampling(&model, 12, 96, "");
    let mut run = p
        .command(&["run", "spec.yaml"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // Kill the server once some completions have landed (a loaded machine may be slow).
    while ledger_files(&p) < 3 && started.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = ledger_files(&p);
    assert!(seen >= 1, "no completion arrived in 600 s");
    drop(server);
    let mut stderr = String::new();
    run.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        !run.wait().unwrap().success(),
        "the run fails when its server dies"
    );
    let kept = ledger_files(&p);
    assert!(
        (seen..36).contains(&kept),
        "{kept} completions kept, {seen} seen before the kill\n{stderr}"
    );
    assert!(
        stderr.contains("received and kept in the ledger"),
        "{stderr}"
    );

    let _server = LlamaServer::start(Some(port)).unwrap();
    p.run_ok("spec.yaml");
    let m = &manifests(&p, "generate")[0];
    assert_eq!(m["notes"]["llm_replayed"].as_u64(), Some(kept as u64));
    assert_eq!(m["notes"]["llm_calls"].as_u64(), Some(36 - kept as u64));
    assert_eq!(ledger_files(&p), 36);
}

#[test]
#[ignore = "needs llama-server: scripts/setup-llama-server.sh, scripts/setup-models.sh (TW_REQUIRE_LLM)"]
fn real_servers_share_a_stage_past_a_dead_url_and_a_single_url_replays_it() {
    let _one = ONE_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    // Two servers on two cores: one thread and two slots each.
    let Some(a) = LlamaServer::start_with(None, 1, 2) else {
        return;
    };
    let Some(b) = LlamaServer::start_with(None, 1, 2) else {
        return;
    };
    let dead = dead_url();
    let list = format!("[\"{dead}\", \"{}\", \"{}\"]", a.url(), b.url());
    let model = llama_model(&a.url())
        .replace(&format!("\"{}\"", a.url()), &list)
        .replace("concurrency: 4", "concurrency: 2");
    let p = project_sampling(&model, 2, 16, "");
    p.run_ok("spec.yaml");
    let m = &manifests(&p, "generate")[0];
    assert_eq!(m["notes"]["llm_calls"], 6);
    let notes = endpoint_notes(m);
    let (served_a, served_b) = (notes[&a.url()].0, notes[&b.url()].0);
    assert!(
        served_a > 0 && served_b > 0,
        "both servers served: {notes:?}"
    );
    assert_eq!(served_a + served_b, 6);
    assert_eq!(notes[&dead].0, 0);
    assert!(notes[&dead].1 >= 1, "the dead URL was tried: {notes:?}");
    assert_eq!(ledger_files(&p), 6);
    let first = crate::dataset::export(&p, "spec.yaml", "samples.candidates");

    // Both servers stopped; one `base_url`: the stage reruns (a single URL is
    // in its key) and the ledger answers every completion, byte for byte.
    drop(a);
    drop(b);
    let single = llama_model(&dead).replace("concurrency: 4", "concurrency: 2");
    p.write("spec.yaml", &p.read("spec.yaml").replace(&model, &single));
    p.run_ok("spec.yaml");
    let m = manifests(&p, "generate");
    let rerun = m
        .iter()
        .find(|m| m["notes"]["llm_replayed"] == 6)
        .unwrap_or_else(|| panic!("no replaying manifest in {m:?}"));
    assert_eq!(rerun["notes"]["llm_calls"], 0);
    assert_eq!(
        crate::dataset::export(&p, "spec.yaml", "samples.candidates"),
        first
    );
}

/// The ledger at ten thousand completions: `tw` killed with SIGKILL part way
/// keeps every completion whose line was written; the rerun asks only for
/// the rest and replays the kept ones byte for byte; the whole ledger is two
/// segments and a lock file.
#[test]
#[ignore = "needs llama-server: scripts/setup-llama-server.sh, scripts/setup-models.sh (TW_REQUIRE_LLM)"]
fn ledger_survives_kill_9_at_ten_thousand_completions() {
    let _one = ONE_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(server) = LlamaServer::start(None) else {
        return;
    };
    // 3 problems x 3,334 samples, one token each.
    let p = project_sampling(&llama_model(&server.url()), 3334, 1, "");
    let total = 3 * 3334;
    let mut run = p
        .command(&["run", "spec.yaml", "--no-progress"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while ledger_files(&p) < 2000 && started.elapsed() < Duration::from_secs(900) {
        std::thread::sleep(Duration::from_millis(50));
    }
    run.kill().unwrap(); // SIGKILL
    run.wait().unwrap();
    let kept = ledger_lines(&p);
    assert!(
        (2000..total).contains(&kept.len()),
        "{} completions kept of {total}",
        kept.len()
    );
    p.run_ok("spec.yaml");
    let m = &manifests(&p, "generate")[0];
    assert_eq!(m["notes"]["llm_replayed"].as_u64(), Some(kept.len() as u64));
    assert_eq!(
        m["notes"]["llm_calls"].as_u64(),
        Some((total - kept.len()) as u64)
    );
    let after = ledger_lines(&p);
    assert_eq!(after.len(), total);
    // The kept records are still there, unchanged, and first.
    assert_eq!(after[..kept.len()], kept[..]);
    let files = walk_files(&p.path("cache/ledger"));
    assert_eq!(files.len(), 3, "two segments and the lock: {files:?}");
    eprintln!(
        "ledger: {} of {total} completions kept through kill -9; {} asked again",
        kept.len(),
        total - kept.len()
    );
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs_err::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Three writers on one ledger at once: two local runs (the same requests
/// under different stage keys: one URL, then a list of one) and, where
/// Slurm runs, a sharded run whose shards are Slurm tasks. Every completion
/// is stored once, and all runs went on with the same completions.
#[test]
#[ignore = "needs llama-server and Slurm: scripts/setup-llama-server.sh, scripts/setup-models.sh, scripts/setup-slurm.sh (TW_REQUIRE_LLM, TW_REQUIRE_SLURM)"]
fn concurrent_runs_and_slurm_tasks_share_one_ledger() {
    let _one = ONE_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(server) = LlamaServer::start(None) else {
        return;
    };
    let model = llama_model(&server.url());
    let p = project_sampling(&model, 400, 1, "");
    let listed = model.replace(
        &format!("\"{}\"", server.url()),
        &format!("[\"{}\"]", server.url()),
    );
    let spec = p.read("spec.yaml");
    p.write("listed.yaml", &spec.replace(&model, &listed));
    p.write(
        "sharded.yaml",
        &spec.replace(
            "  samples:\n    kind: generate\n",
            "  samples:\n    kind: generate\n    shard: { rows: 1 }\n",
        ),
    );
    let slurm = crate::scale::slurm_available();
    let mut runs = vec![
        p.command(&["run", "spec.yaml", "--no-progress"])
            .spawn()
            .unwrap(),
        p.command(&["run", "listed.yaml", "--no-progress"])
            .spawn()
            .unwrap(),
    ];
    if slurm {
        runs.push(
            p.command(&[
                "run",
                "sharded.yaml",
                "--executor",
                "slurm",
                "--poll",
                "0.2",
                "--no-progress",
            ])
            .spawn()
            .unwrap(),
        );
    }
    for mut r in runs {
        assert!(r.wait().unwrap().success());
    }
    let lines = ledger_lines(&p);
    let keys: std::collections::BTreeSet<&str> = lines.iter().map(|l| &l[8..72]).collect();
    assert_eq!(lines.len(), 1200, "every completion stored once");
    assert_eq!(keys.len(), 1200);
    let mut specs = vec!["spec.yaml", "listed.yaml"];
    if slurm {
        specs.push("sharded.yaml");
    }
    let outputs: Vec<Vec<String>> = specs
        .iter()
        .map(|s| {
            crate::dataset::export(&p, s, "samples.candidates")
                .iter()
                .map(|c| format!("{} {}", c["candidate"], c["reply"]))
                .collect()
        })
        .collect();
    for o in &outputs[1..] {
        assert_eq!(
            o, &outputs[0],
            "the runs went on with different completions"
        );
    }
    let m = manifests(&p, "generate");
    let calls: u64 = m
        .iter()
        .filter_map(|m| m["notes"]["llm_calls"].as_u64())
        .sum();
    eprintln!(
        "one ledger, {} writers: 1200 completions stored once; {calls} asked of the server in all",
        specs.len()
    );
}
