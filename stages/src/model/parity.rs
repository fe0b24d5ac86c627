//! Parity with Hugging Face `transformers` and PEFT, run by `scripts/hf_reference.py`.
//!
//! Needs `TW_TORCH_PYTHON` (a Python with torch, transformers and peft:
//! `scripts/setup-torch.sh --with-hf`) and, for the SmolLM2 test, `TW_SMOLLM2_HF`
//! (`scripts/setup-models.sh`). Without them these tests say so and pass, unless
//! `TW_REQUIRE_MODELS=1` (CI sets it), which turns a missing setup into a failure.

use super::fixture::tiny_model_dir;
use super::train::{self, Method, Trainer};
use super::*;
use crate::llm::{Backend, Message, Prompt, Request, Sampling};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn setup(var: &str) -> Option<PathBuf> {
    crate::testing::env_path(crate::testing::Need::Models, var)
}

/// Run the HF reference on `requests` and read its tensors back.
fn reference(model_dir: &Path, requests: &serde_json::Value) -> BTreeMap<String, Tensor> {
    let python = setup("TW_TORCH_PYTHON").expect("checked by the caller");
    let work = tempfile::tempdir().expect("tempdir");
    let req = work.path().join("requests.json");
    fs_err::write(&req, requests.to_string()).expect("write requests");
    let out = work.path().join("out.safetensors");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/hf_reference.py");
    let status = std::process::Command::new(python)
        .arg(script)
        .arg(model_dir)
        .arg(&req)
        .arg(&out)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .status()
        .expect("run python");
    assert!(status.success(), "hf_reference.py failed");
    Tensor::read_safetensors(&out)
        .expect("read reference")
        .into_iter()
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn ids_of(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.to_kind(Kind::Int64)).expect("ids")
}

#[test]
#[ignore = "needs SmolLM2 and the HF reference: scripts/setup-models.sh, scripts/setup-torch.sh --with-hf (TW_REQUIRE_MODELS)"]
fn smollm2_logits_and_greedy_text_match_transformers() {
    let (Some(dir), Some(_)) = (setup("TW_SMOLLM2_HF"), setup("TW_TORCH_PYTHON")) else {
        return;
    };
    let user = |c: &str| Message {
        role: "user".into(),
        content: c.into(),
    };
    let chats = [
        vec![user(
            "Write a Python function that returns the sum of a list.",
        )],
        vec![
            Message {
                role: "system".into(),
                content: "You repair buggy Python programs.".into(),
            },
            user("def add(a, b):\n    return a - b\n\nFix the bug."),
        ],
    ];
    let texts = ["def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"];
    let greedy_tokens = 24;
    let mut requests: Vec<serde_json::Value> = chats
        .iter()
        .map(|c| serde_json::json!({"chat": c, "greedy_tokens": greedy_tokens}))
        .collect();
    requests.extend(
        texts
            .iter()
            .map(|t| serde_json::json!({"text": t, "greedy_tokens": greedy_tokens})),
    );
    let expected = reference(&dir, &serde_json::Value::Array(requests));

    let backend = TchBackend::open(&dir, None, "hf", Device::Cpu, Kind::Float, 4).expect("open");
    let (model, _) = open_model(&dir, None, Device::Cpu, Kind::Float).expect("load");
    let prompts: Vec<Prompt> = chats
        .iter()
        .map(|c| Prompt::Chat(c.clone()))
        .chain(texts.iter().map(|t| Prompt::Text(t.to_string())))
        .collect();
    let mut worst = 0.0f64;
    for (i, prompt) in prompts.iter().enumerate() {
        let ids = backend.prompt_ids(prompt).expect("ids");
        assert_eq!(
            ids,
            ids_of(&expected[&format!("ids.{i}")]),
            "prompt {i}: token ids"
        );
        let ours =
            tch::no_grad(|| model.forward_logits(&Tensor::from_slice(&ids).unsqueeze(0), false))
                .get(0);
        let diff = max_abs_diff(&ours, &expected[&format!("logits.{i}")]);
        worst = worst.max(diff);
        assert!(diff < 1e-4, "prompt {i}: max |Δlogit| = {diff:e}");
    }
    eprintln!("SmolLM2-135M f32: max |Δlogit| vs transformers = {worst:e}");

    let requests: Vec<Request> = prompts
        .iter()
        .map(|p| Request {
            prompt: p.clone(),
            sampling: Sampling {
                max_tokens: greedy_tokens,
                ..Sampling::default()
            },
        })
        .collect();
    // One batch (left-padded) and one at a time must both equal HF's greedy text.
    let batched = backend.complete(&requests).expect("generate");
    for (i, got) in batched.iter().enumerate() {
        let want_ids: Vec<i64> = ids_of(&expected[&format!("greedy.{i}")])
            .into_iter()
            .filter(|t| !backend.codec().eos_ids.contains(t))
            .collect();
        let want = backend.codec().decode(&want_ids).expect("decode");
        assert_eq!(got.text, want, "request {i}: greedy text");
        let single = backend.complete(&requests[i..=i]).expect("generate");
        assert_eq!(single[0].text, want, "request {i} alone");
    }
}

#[test]
#[ignore = "needs SmolLM2 and the HF reference: scripts/setup-models.sh, scripts/setup-torch.sh --with-hf (TW_REQUIRE_MODELS)"]
fn transformers_and_peft_load_what_tw_trains() {
    let Some(_) = setup("TW_TORCH_PYTHON") else {
        return;
    };
    for method in [Method::Full, Method::Lora] {
        let dir = tiny_model_dir(Arch::Qwen2, 11);
        let mut model = Transformer::load(dir.path(), Device::Cpu, Kind::Float).expect("load");
        let codec = Codec::open(dir.path(), &model.config).expect("codec");
        let chat = ChatFormat::open("hf", dir.path()).expect("chat");
        let conv = vec![
            Message {
                role: "user".into(),
                content: "fix the bug".into(),
            },
            Message {
                role: "assistant".into(),
                content: "def f ( x ) : return x + 1".into(),
            },
        ];
        let example = train::encode_conversation(&codec, &chat, &conv, 64).expect("encode");
        let mut cfg = super::tests::train_config_for(method.clone());
        cfg.max_steps = Some(5);
        let out = Trainer {
            model: &mut model,
            config: cfg.clone(),
            examples: vec![example.clone()],
            pad_id: codec.pad_id,
        }
        .train(None, None, |_| {})
        .expect("train");
        let ckpt = tempfile::tempdir().expect("tempdir");
        let target = ckpt.path().join("ck");
        train::save(&model, &out, &cfg, dir.path(), &target).expect("save");
        let expected = reference(&target, &serde_json::json!([{"ids": example.ids}]));
        let ours = tch::no_grad(|| {
            model.forward_logits(&Tensor::from_slice(&example.ids).unsqueeze(0), false)
        })
        .get(0);
        let diff = max_abs_diff(&ours, &expected["logits.0"]);
        assert!(diff < 1e-5, "{method:?}: max |Δlogit| = {diff:e}");
        // Training moved the model: the check compares a tuned model, not the base.
        let base = Transformer::load(dir.path(), Device::Cpu, Kind::Float).expect("base");
        let before = tch::no_grad(|| {
            base.forward_logits(&Tensor::from_slice(&example.ids).unsqueeze(0), false)
        })
        .get(0);
        assert!(
            max_abs_diff(&before, &ours) > 1e-3,
            "{method:?}: training changed nothing"
        );
    }
}
