//! The `sft` stage end to end (feature `torch`): a spec fine-tunes a tiny random
//! model with LoRA and in full, caches the checkpoint, reruns nothing, and
//! fails clearly on a bad model path or a malformed row. With `TW_SMOLLM2_HF`
//! (scripts/setup-models.sh) it also fine-tunes the real SmolLM2-135M.

use crate::harness::{Project, status_map};
use std::path::{Path, PathBuf};
use tw_stages::llm::{Backend, Message, Prompt, Request, Sampling};
use tw_stages::model::{Arch, TchBackend, fixture};

const DATA: &str = r#"{"id": 1, "messages": [{"role": "user", "content": "fix the bug"}, {"role": "assistant", "content": "def f ( x ) : return x + 1"}]}
{"id": 2, "messages": [{"role": "user", "content": "print 1"}, {"role": "assistant", "content": "print ( 1 )"}]}
{"id": 3, "conversations": null, "messages": [{"role": "system", "content": "a b"}, {"role": "user", "content": "trace line 2"}, {"role": "assistant", "content": "x = 2"}]}
"#;

fn spec(method: &str, extra: &str) -> String {
    format!(
        r#"experiment: tune
stages:
  data:
    kind: load
    params: {{ path: data/sft.jsonl }}
  tune:
    kind: sft
    inputs: {{ rows: data.rows }}
    params: {{ model: tiny, method: {method}, max_steps: 6, batch_size: 2, grad_accum: 1,
              learning_rate: 0.05, warmup_ratio: 0.0, cutoff_len: 64, device: cpu, threads: 1{extra} }}
"#
    )
}

fn project() -> Project {
    let p = Project::new();
    fixture::write_tiny_model(&p.path("tiny"), Arch::Llama, 1, true);
    p.write("data/sft.jsonl", DATA);
    p
}

/// The object directory holding the committed checkpoint.
fn checkpoint(p: &Project) -> PathBuf {
    p.objects()
        .into_iter()
        .map(|o| o.join("checkpoint"))
        .find(|c| c.is_dir())
        .expect("a committed checkpoint")
}

fn rows(p: &Project, spec: &str, target: &str) -> Vec<serde_json::Value> {
    let ran = p.tw(&["export", spec, target, "--format", "jsonl"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    ran.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// SmolLM2's HF directory (scripts/setup-models.sh); `None` skips, unless CI requires it.
fn smollm2() -> Option<PathBuf> {
    tw_stages::testing::env_path(tw_stages::testing::Need::Models, "TW_SMOLLM2_HF")
}

/// SmolLM2 and the directory holding `HumanEval.jsonl.gz`, or a skip.
fn smollm2_and_humaneval() -> Option<(PathBuf, PathBuf)> {
    let dir = smollm2()?;
    let data =
        tw_stages::testing::shared_data("TW_BENCHMARKS", "benchmarks", "HumanEval.jsonl.gz")?;
    Some((dir, data))
}

#[test]
fn lora_sft_writes_a_peft_adapter_and_a_loss_curve_and_reruns_nothing() {
    let p = project();
    p.write("lora.yaml", &spec("lora", ", lora_rank: 4"));
    p.run_ok("lora.yaml");
    let ck = checkpoint(&p);
    for f in [
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(ck.join(f).is_file(), "checkpoint lacks {f}");
    }
    assert!(!ck.join("model.safetensors").exists());
    let cfg: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(ck.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["r"], 4);
    assert_eq!(
        cfg["lora_alpha"].as_f64(),
        Some(8.0),
        "alpha defaults to 2 x rank"
    );
    assert_eq!(cfg["target_modules"].as_array().unwrap().len(), 7);

    let model = rows(&p, "lora.yaml", "tune.model");
    assert_eq!(model.len(), 1);
    assert_eq!(model[0]["method"], "lora");
    assert_eq!(model[0]["steps"], 6);
    assert_eq!(model[0]["examples"], 3);
    let loss = rows(&p, "lora.yaml", "tune.loss");
    assert_eq!(loss.len(), 6);
    assert_eq!(loss[0]["step"], 1);
    assert!(loss.iter().all(|r| r["loss"].as_f64().unwrap().is_finite()));

    // The adapter serves generation through the in-process backend.
    let backend = TchBackend::open(
        &ck,
        Some(&p.path("tiny")),
        "hf",
        tch::Device::Cpu,
        tch::Kind::Float,
        2,
    )
    .unwrap();
    let done = backend
        .complete(&[Request {
            prompt: Prompt::Chat(vec![Message {
                role: "user".into(),
                content: "fix the bug".into(),
            }]),
            sampling: Sampling {
                max_tokens: 4,
                ..Sampling::default()
            },
        }])
        .unwrap();
    assert_eq!(done.len(), 1);

    let statuses = p.statuses("lora.yaml");
    assert_eq!(status_map(&statuses)["tune"], "cached");
    // A changed hyperparameter retrains; the base model's bytes are in the key too.
    p.write("lora.yaml", &spec("lora", ", lora_rank: 2"));
    assert_eq!(status_map(&p.statuses("lora.yaml"))["tune"], "run");
    p.write("lora.yaml", &spec("lora", ", lora_rank: 4"));
    fixture::write_tiny_model(&p.path("tiny"), Arch::Llama, 2, true);
    assert_eq!(status_map(&p.statuses("lora.yaml"))["tune"], "run");
}

#[test]
fn full_sft_writes_a_loadable_model_and_resumes_from_its_checkpoint() {
    let p = project();
    p.write("full.yaml", &spec("full", ""));
    p.run_ok("full.yaml");
    let ck = checkpoint(&p);
    assert!(ck.join("model.safetensors").is_file());
    assert!(ck.join("config.json").is_file());
    let first = rows(&p, "full.yaml", "tune.loss");

    // Copy the checkpoint out of the cache and continue it to 9 steps.
    let saved = p.path("saved");
    copy_dir(&ck, &saved);
    p.write(
        "more.yaml",
        &spec("full", ", resume_from: saved").replace("max_steps: 6", "max_steps: 9"),
    );
    p.run_ok("more.yaml");
    let more = rows(&p, "more.yaml", "tune.loss");
    assert_eq!(more.len(), 9);
    // The first six steps are the resumed history, byte for byte.
    assert_eq!(more[..6], first[..]);
    let model = rows(&p, "more.yaml", "tune.model");
    assert_eq!(model[0]["steps"], 9);
}

fn copy_dir(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for e in fs_err::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs_err::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn bad_model_paths_and_rows_are_named() {
    let p = project();
    p.write(
        "bad.yaml",
        &spec("lora", "").replace("model: tiny", "model: nowhere"),
    );
    let ran = p.tw(&["run", "bad.yaml"]);
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr.contains("nowhere/config.json") && ran.stderr.contains("model"),
        "{}",
        ran.stderr
    );

    p.write(
        "data/sft.jsonl",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"ok\"}]}\n{\"messages\": [{\"speaker\": \"x\"}]}\n",
    );
    p.write("rows.yaml", &spec("lora", ""));
    let ran = p.tw(&["run", "rows.yaml"]);
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr.contains("row 1") && ran.stderr.contains("needs `role` and `content`"),
        "{}",
        ran.stderr
    );
    assert!(p.objects().iter().all(|o| !o.join("checkpoint").exists()));
}

#[test]
#[ignore = "needs SmolLM2 and the HF reference: scripts/setup-models.sh, scripts/setup-torch.sh --with-hf (TW_REQUIRE_MODELS)"]
fn smollm2_lora_sft_runs_on_cpu() {
    let Some(dir) = smollm2() else { return };
    let p = Project::new();
    p.write(
        "data/sft.jsonl",
        r#"{"messages": [{"role": "user", "content": "Fix: def add(a, b): return a - b"}, {"role": "assistant", "content": "def add(a, b):\n    return a + b"}]}
{"messages": [{"role": "user", "content": "Fix: def neg(x): return x"}, {"role": "assistant", "content": "def neg(x):\n    return -x"}]}
"#,
    );
    p.write(
        "smol.yaml",
        &format!(
            r#"experiment: smol
stages:
  data:
    kind: load
    params: {{ path: data/sft.jsonl }}
  tune:
    kind: sft
    inputs: {{ rows: data.rows }}
    params: {{ model: "{}", method: lora, lora_rank: 8, max_steps: 4, batch_size: 2, grad_accum: 1,
              learning_rate: 0.001, warmup_ratio: 0.0, cutoff_len: 96, device: cpu }}
"#,
            dir.display()
        ),
    );
    p.run_ok("smol.yaml");
    let loss = rows(&p, "smol.yaml", "tune.loss");
    assert_eq!(loss.len(), 4);
    let (first, last) = (
        loss[0]["loss"].as_f64().unwrap(),
        loss[3]["loss"].as_f64().unwrap(),
    );
    // The same two examples every step: the loss must fall.
    assert!(last < first, "loss {first} -> {last}");
}

const PROBLEMS: &str = r#"{"task_id": "t/0", "prompt": "def add(a, b):\n", "entry_point": "add"}
{"task_id": "t/1", "prompt": "def neg(x):\n", "entry_point": "neg"}
"#;

fn sampling_spec(k: usize) -> String {
    format!(
        r#"experiment: sample
stages:
  problems:
    kind: load
    params: {{ path: data/problems.jsonl }}
  cands:
    kind: sample_candidates
    inputs: {{ problems: problems.rows }}
    params: {{ model: tiny, k: {k}, max_tokens: 6, temperature: 1.0, top_p: 1.0, device: cpu, threads: 1, batch_size: 4 }}
"#
    )
}

#[test]
fn sample_candidates_draws_k_seeded_programs_per_problem_and_reruns_nothing() {
    let p = Project::new();
    fixture::write_tiny_model(&p.path("tiny"), Arch::Llama, 1, false);
    p.write("data/problems.jsonl", PROBLEMS);
    p.write("sample.yaml", &sampling_spec(3));
    p.run_ok("sample.yaml");
    let three = rows(&p, "sample.yaml", "cands.candidates");
    assert_eq!(three.len(), 6);
    for row in &three {
        let task = row["task_id"].as_str().unwrap();
        let prompt = if task == "t/0" {
            "def add(a, b):\n"
        } else {
            "def neg(x):\n"
        };
        let program = row["program"].as_str().unwrap();
        assert_eq!(
            program,
            format!("{prompt}{}", row["completion"].as_str().unwrap())
        );
        assert!(row["completion_tokens"].as_u64().unwrap() <= 6);
        assert_eq!(
            row["candidate"].as_str().unwrap(),
            format!("{task}#{}", row["sample"].as_u64().unwrap())
        );
    }
    // Temperature 1 on a near-uniform model: the samples of a problem differ.
    let t0: std::collections::BTreeSet<&str> = three
        .iter()
        .filter(|r| r["task_id"] == "t/0")
        .map(|r| r["completion"].as_str().unwrap())
        .collect();
    assert!(t0.len() > 1, "{t0:?}");
    let statuses = p.statuses("sample.yaml");
    assert!(status_map(&statuses).values().all(|s| *s == "cached"));

    // More samples per problem: the first three of each stay exactly the same,
    // though they now share batches with other requests.
    p.write("sample.yaml", &sampling_spec(4));
    p.run_ok("sample.yaml");
    let four = rows(&p, "sample.yaml", "cands.candidates");
    assert_eq!(four.len(), 8);
    for row in &three {
        let same = four
            .iter()
            .find(|r| r["candidate"] == row["candidate"])
            .unwrap();
        assert_eq!(
            same["completion"], row["completion"],
            "{}",
            row["candidate"]
        );
    }
}

#[test]
#[ignore = "needs SmolLM2 and the HF reference: scripts/setup-models.sh, scripts/setup-torch.sh --with-hf (TW_REQUIRE_MODELS)"]
fn smollm2_samples_humaneval_programs_that_the_sandbox_verifies() {
    let Some((dir, data)) = smollm2_and_humaneval() else {
        return;
    };
    let p = Project::new();
    p.write(
        "smol.yaml",
        &format!(
            r#"experiment: smol_sample
stages:
  humaneval:
    kind: load_benchmark
    params: {{ benchmark: humaneval, path: "{data}/HumanEval.jsonl.gz", limit: 2 }}
  cands:
    kind: sample_candidates
    inputs: {{ problems: humaneval.problems }}
    params: {{ model: "{model}", k: 2, max_tokens: 48, temperature: 0.8, device: cpu }}
  verify:
    kind: execute
    inputs: {{ candidates: cands.candidates, tests: humaneval.tests }}
    params: {{ candidate_id: candidate, input_format: tagged, expected_format: tagged }}
"#,
            data = data.display(),
            model = dir.display()
        ),
    );
    p.run_ok("smol.yaml");
    let cands = rows(&p, "smol.yaml", "cands.candidates");
    assert_eq!(cands.len(), 4);
    assert!(cands.iter().all(|c| {
        c["program"]
            .as_str()
            .unwrap()
            .contains("def has_close_elements")
            || c["program"]
                .as_str()
                .unwrap()
                .contains("def separate_paren_groups")
    }));
    let labels = rows(&p, "smol.yaml", "verify.summary");
    assert_eq!(labels.len(), 4);
    assert!(labels.iter().all(|l| l["tests"].as_u64().unwrap() > 0));
}

#[test]
#[ignore = "needs SmolLM2 and the HF reference: scripts/setup-models.sh, scripts/setup-torch.sh --with-hf (TW_REQUIRE_MODELS)"]
fn smollm2_in_process_generates_through_the_ledger_and_replays_for_free() {
    let Some((dir, data)) = smollm2_and_humaneval() else {
        return;
    };
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates");
    let p = Project::new();
    p.write(
        "gen.yaml",
        &format!(
            r#"experiment: smol_generate
stages:
  humaneval:
    kind: load_benchmark
    params: {{ benchmark: humaneval, path: "{data}/HumanEval.jsonl.gz", limit: 2 }}
  greedy:
    kind: generate
    inputs: {{ problems: humaneval.problems }}
    params:
      model: {{ backend: tch, path: "{model}", device: cpu }}
      template: {t}/prompts/nl2code.j2
      strategy: sample
      n: 2
      sampling: {{ max_tokens: 32 }}
  pick:
    kind: parallel_scaling
    inputs: {{ problems: humaneval.problems, tests: humaneval.tests, candidates: greedy.candidates }}
    params: {{ selection: best_of_n }}
"#,
            data = data.display(),
            model = dir.display(),
            t = templates.display()
        ),
    );
    p.run_ok("gen.yaml");
    let first = rows(&p, "gen.yaml", "greedy.candidates");
    assert_eq!(first.len(), 4, "2 problems x 2 samples");
    assert!(
        first
            .iter()
            .all(|c| c["completion_tokens"].as_u64().unwrap() > 0)
    );
    let notes = |p: &Project| -> serde_json::Value {
        let text = p.tw(&["plan", "gen.yaml", "--json"]).stdout;
        let plan: serde_json::Value = serde_json::from_str(&text).unwrap();
        let key = plan["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "greedy")
            .unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string();
        let manifest = p.path(&format!("cache/v1/obj/{}/{key}/manifest.json", &key[..2]));
        serde_json::from_str::<serde_json::Value>(&fs_err::read_to_string(manifest).unwrap())
            .unwrap()["notes"]
            .clone()
    };
    let cold = notes(&p);
    assert_eq!(cold["llm_calls"], 4);
    assert!(
        cold["model"].as_str().unwrap().starts_with("tch:"),
        "{cold}"
    );
    // Without the cached artifacts, the ledger answers: no generation, same programs.
    fs_err::remove_dir_all(p.path("cache/v1")).unwrap();
    p.run_ok("gen.yaml");
    let warm = notes(&p);
    assert_eq!(warm["llm_calls"], 0, "{warm}");
    assert_eq!(warm["llm_replayed"], 4, "{warm}");
    assert_eq!(rows(&p, "gen.yaml", "greedy.candidates"), first);
    assert_eq!(rows(&p, "gen.yaml", "pick.summary").len(), 1);
}

#[test]
fn a_stage_asks_the_checkpoint_an_upstream_sft_wrote() {
    let p = project();
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates");
    p.write(
        "data/problems.jsonl",
        r#"{"task_id": "T/0", "prompt": "def f(x):\n    \"\"\"Add one.\"\"\"\n", "entry_point": "f"}
"#,
    );
    let ask = |name: &str, model: &str, inputs: &str| {
        format!(
            r#"  {name}:
    kind: generate
    inputs: {{ problems: problems.rows{inputs} }}
    params:
      model: {model}
      template: {t}/prompts/nl2code.j2
      strategy: greedy
      sampling: {{ max_tokens: 4 }}
"#,
            t = templates.display()
        )
    };
    let spec = spec("lora", ", lora_rank: 4")
        + "  problems:\n    kind: load\n    params: { path: data/problems.jsonl }\n"
        + &ask(
            "tuned",
            "{ backend: tch, device: cpu }",
            ", model: tune.model",
        )
        + &ask("base", "{ backend: tch, path: tiny, device: cpu }", "");
    p.write("ask.yaml", &spec);
    let plan = p.tw(&["plan", "ask.yaml"]).stdout;
    assert!(
        plan.contains("input `model` changes (tune reruns)"),
        "the checkpoint is an input like any other:\n{plan}"
    );
    p.run_ok("ask.yaml");
    let model_of = |stage: &str| -> String {
        let text = p.tw(&["plan", "ask.yaml", "--json"]).stdout;
        let plan: serde_json::Value = serde_json::from_str(&text).unwrap();
        let key = plan["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == stage)
            .unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string();
        let manifest = p.path(&format!("cache/v1/obj/{}/{key}/manifest.json", &key[..2]));
        let m: serde_json::Value =
            serde_json::from_str(&fs_err::read_to_string(manifest).unwrap()).unwrap();
        assert_eq!(m["notes"]["llm_calls"], 1, "{stage}: {m}");
        m["notes"]["model"].as_str().unwrap().to_string()
    };
    let (tuned, base) = (model_of("tuned"), model_of("base"));
    assert!(tuned.starts_with("tch:") && base.starts_with("tch:"));
    assert_ne!(tuned, base, "the adapter is part of the model's identity");

    // A checkpoint gone from the cache is named, with the way to write it again.
    fs_err::remove_dir_all(checkpoint(&p)).unwrap();
    let tuned_obj = p
        .objects()
        .into_iter()
        .find(|o| {
            fs_err::read_to_string(o.join("manifest.json"))
                .is_ok_and(|m| m.contains(r#""node": "tuned""#) || m.contains(r#""node":"tuned""#))
        })
        .expect("the tuned stage's object");
    fs_err::remove_dir_all(tuned_obj).unwrap();
    let failed = p.tw(&["run", "ask.yaml"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("which is missing") && failed.stderr.contains("--force"),
        "{}",
        failed.stderr
    );
}
