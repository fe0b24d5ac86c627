//! CPU tests on a tiny random model (and, when the converted SmolLM2 and a
//! Python with transformers are available, parity with HF; see `parity`).

use super::config::{ALL_LINEAR, LoraConfig};
use super::fixture::{tiny_model_dir, tiny_model_dir_with};
use super::generate::generate_batch;
use super::train::{self, Example, Method, TrainConfig, Trainer};
use super::*;
use crate::llm::checkpoint;
use crate::llm::{Backend, FinishReason, Message, Prompt, Request, Sampling};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

fn msgs(pairs: &[(&str, &str)]) -> Vec<Message> {
    pairs
        .iter()
        .map(|(r, c)| Message {
            role: r.to_string(),
            content: c.to_string(),
        })
        .collect()
}

fn tiny_examples(dir: &std::path::Path) -> (Vec<Example>, Codec) {
    let model = Transformer::load(dir, Device::Cpu, Kind::Float).expect("load");
    let codec = Codec::open(dir, &model.config).expect("codec");
    let chat = ChatFormat::open("hf", dir).expect("chat");
    let convs = [
        msgs(&[
            ("user", "fix the bug"),
            ("assistant", "def f ( x ) : return x + 1"),
        ]),
        msgs(&[
            ("system", "a b c"),
            ("user", "print 1"),
            ("assistant", "print ( 1 )"),
        ]),
        msgs(&[
            ("user", "trace line 2"),
            ("assistant", "x = 2"),
            ("user", "ok"),
            ("assistant", "yes"),
        ]),
        msgs(&[
            ("user", "for x in range 3"),
            ("assistant", "for x in range ( 3 ) : print ( x )"),
        ]),
    ];
    let examples = convs
        .iter()
        .map(|c| train::encode_conversation(&codec, &chat, c, 64).expect("encode"))
        .collect();
    (examples, codec)
}

fn config(method: Method, steps: i64, lr: f64) -> TrainConfig {
    TrainConfig {
        method: method.clone(),
        lora: (method == Method::Lora).then(|| LoraConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.0,
            targets: ALL_LINEAR.iter().map(|s| s.to_string()).collect(),
        }),
        learning_rate: lr,
        epochs: 1.0,
        max_steps: Some(steps),
        batch_size: 2,
        grad_accum: 1,
        warmup_ratio: 0.0,
        warmup_steps: None,
        weight_decay: 0.01,
        max_grad_norm: 1.0,
        packing: false,
        cutoff_len: 64,
        seed: 3,
    }
}

pub(crate) fn train_config_for(method: Method) -> TrainConfig {
    config(method, 5, 2e-2)
}

fn epoch_loss(steps: &[train::StepLog]) -> f64 {
    let tokens: i64 = steps.iter().map(|s| s.trained_tokens).sum();
    steps
        .iter()
        .map(|s| s.loss * s.trained_tokens as f64)
        .sum::<f64>()
        / tokens as f64
}

fn logits_of(model: &Transformer, ids: &[i64]) -> Tensor {
    tch::no_grad(|| model.forward_logits(&Tensor::from_slice(ids).unsqueeze(0), false))
}

#[test]
fn loss_is_only_on_assistant_turns_with_their_end_marker() {
    let dir = tiny_model_dir(Arch::Llama, 0);
    let (examples, codec) = tiny_examples(dir.path());
    let e = &examples[2];
    let trained: Vec<i64> = e
        .labels
        .iter()
        .copied()
        .filter(|&l| l != train::IGNORE)
        .collect();
    // "x = 2" <|im_end|> "\n" and "yes" <|im_end|> "\n".
    let expected: Vec<i64> = ["x", "=", "2", "<|im_end|>", "\n", "yes", "<|im_end|>", "\n"]
        .iter()
        .map(|w| codec.encode(w).expect("encode")[0])
        .collect();
    assert_eq!(trained, expected);
    assert_eq!(e.ids.len(), e.labels.len());
}

#[test]
fn full_fine_tuning_lowers_the_loss() {
    let dir = tiny_model_dir(Arch::Llama, 1);
    let (examples, codec) = tiny_examples(dir.path());
    let mut model = Transformer::load(dir.path(), Device::Cpu, Kind::Float).expect("load");
    let mut trainer = Trainer {
        model: &mut model,
        config: config(Method::Full, 40, 1e-2),
        examples,
        pad_id: codec.pad_id,
    };
    let out = trainer.train(None, None, |_| {}).expect("train");
    assert_eq!(out.log.len(), 40);
    // Two steps make an epoch; compare the first epoch with the last.
    let (first, last) = (epoch_loss(&out.log[..2]), epoch_loss(&out.log[38..]));
    assert!(last < first * 0.5, "loss {first} -> {last}");
}

#[test]
fn lora_trains_adapters_and_leaves_base_weights_bit_identical() {
    let dir = tiny_model_dir(Arch::Qwen2, 2);
    let (examples, codec) = tiny_examples(dir.path());
    let mut model = Transformer::load(dir.path(), Device::Cpu, Kind::Float).expect("load");
    let before: BTreeMap<String, Tensor> = model
        .base
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.copy()))
        .collect();
    let probe = examples[0].ids.clone();
    let base_logits = logits_of(&model, &probe);
    let mut trainer = Trainer {
        model: &mut model,
        config: config(Method::Lora, 40, 1e-1),
        examples,
        pad_id: codec.pad_id,
    };
    let out = trainer.train(None, None, |_| {}).expect("train");
    let (first, last) = (epoch_loss(&out.log[..2]), epoch_loss(&out.log[38..]));
    assert!(last < first * 0.7, "loss {first} -> {last}");
    for (name, v) in model.base.variables() {
        assert!(v.equal(&before[&name]), "base `{name}` changed");
    }
    // 2 layers x 7 modules x (A, B), PEFT names.
    let adapters = model.lora_tensors();
    assert_eq!(adapters.len(), 28);
    assert!(adapters.contains_key("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
    let tuned_logits = logits_of(&model, &probe);
    assert!(!tuned_logits.allclose(&base_logits, 1e-3, 1e-3, false));
}

#[test]
fn checkpoints_round_trip_exactly_full_and_lora() {
    for method in [Method::Full, Method::Lora] {
        let dir = tiny_model_dir(Arch::Llama, 3);
        let (examples, codec) = tiny_examples(dir.path());
        let cfg = config(method.clone(), 3, 1e-2);
        let mut model = Transformer::load(dir.path(), Device::Cpu, Kind::Float).expect("load");
        let mut trainer = Trainer {
            model: &mut model,
            config: cfg.clone(),
            examples: examples.clone(),
            pad_id: codec.pad_id,
        };
        let out = trainer.train(None, None, |_| {}).expect("train");
        let ckpt = tempfile::tempdir().expect("tempdir");
        let target = ckpt.path().join("checkpoint");
        train::save(&model, &out, &cfg, dir.path(), &target).expect("save");
        assert!(!ckpt.path().join("checkpoint.partial").exists());
        let (reloaded, _) = open_model(&target, None, Device::Cpu, Kind::Float).expect("reload");
        let a = logits_of(&model, &examples[1].ids);
        let b = logits_of(&reloaded, &examples[1].ids);
        assert!(a.equal(&b), "{method:?}: logits differ after reload");
        let files = checkpoint::model_files(&target);
        match method {
            Method::Full => assert!(files.contains(&"model.safetensors".to_string())),
            Method::Lora => {
                assert!(files.contains(&"adapter_model.safetensors".to_string()));
                let cfg: serde_json::Value = serde_json::from_str(
                    &fs_err::read_to_string(target.join("adapter_config.json")).expect("read"),
                )
                .expect("json");
                assert_eq!(cfg["r"], 4);
                assert_eq!(cfg["lora_alpha"].as_f64(), Some(8.0));
                assert_eq!(cfg["peft_type"], "LORA");
            }
        }
    }
}

#[test]
fn resuming_gives_the_same_next_step_loss() {
    for method in [Method::Full, Method::Lora] {
        let dir = tiny_model_dir(Arch::Llama, 4);
        let (examples, codec) = tiny_examples(dir.path());
        let mut cfg = config(method.clone(), 5, 1e-2);
        cfg.warmup_ratio = 0.2;
        if let Some(l) = cfg.lora.as_mut() {
            l.dropout = 0.1;
        }
        let run = |stop: Option<i64>, resume: Option<&std::path::Path>| {
            let mut model = match (resume, &method) {
                (Some(r), Method::Full) => Transformer::load(r, Device::Cpu, Kind::Float),
                (Some(r), Method::Lora) => {
                    let mut m =
                        Transformer::load(dir.path(), Device::Cpu, Kind::Float).expect("load");
                    m.load_lora(r).map(|_| m)
                }
                (None, _) => Transformer::load(dir.path(), Device::Cpu, Kind::Float),
            }
            .expect("load");
            let mut trainer = Trainer {
                model: &mut model,
                config: cfg.clone(),
                examples: examples.clone(),
                pad_id: codec.pad_id,
            };
            let out = trainer.train(resume, stop, |_| {}).expect("train");
            (model, out)
        };
        let (_, straight) = run(None, None);
        let (half_model, half) = run(Some(2), None);
        let ckpt = tempfile::tempdir().expect("tempdir");
        let target = ckpt.path().join("ck");
        train::save(&half_model, &half, &cfg, dir.path(), &target).expect("save");
        let (_, resumed) = run(None, Some(&target));
        assert_eq!(resumed.log.len(), 5);
        for step in 2..5 {
            let (a, b) = (straight.log[step].loss, resumed.log[step].loss);
            assert!(
                (a - b).abs() < 1e-6,
                "{method:?} step {}: {a} vs {b}",
                step + 1
            );
            assert_eq!(
                straight.log[step].learning_rate,
                resumed.log[step].learning_rate
            );
        }
    }
}

#[test]
fn kv_cache_and_left_padding_agree_with_full_recompute() {
    let dir = tiny_model_dir(Arch::Qwen2, 5);
    let model = Transformer::load(dir.path(), Device::Cpu, Kind::Float).expect("load");
    let codec = Codec::open(dir.path(), &model.config).expect("codec");
    let prompts = vec![vec![1, 9, 10, 11, 12, 13], vec![1, 20, 21]];
    let greedy = Sampling {
        max_tokens: 8,
        ..Sampling::default()
    };
    // Reference: recompute the whole sequence for every new token, one prompt at a time.
    let mut reference = Vec::new();
    for p in &prompts {
        let mut ids = p.clone();
        let mut out = Vec::new();
        for _ in 0..8 {
            let logits = logits_of(&model, &ids);
            let next = logits
                .get(0)
                .get(ids.len() as i64 - 1)
                .argmax(0, false)
                .int64_value(&[]);
            if codec.eos_ids.contains(&next) {
                break;
            }
            out.push(next);
            ids.push(next);
        }
        reference.push(out);
    }
    let both = generate_batch(&model, &codec, &prompts, &[&greedy, &greedy]).expect("generate");
    for (got, want) in both.iter().zip(&reference) {
        assert_eq!(got.text, codec.decode(want).expect("decode"));
        assert_eq!(got.completion_tokens, want.len());
    }
    let alone = generate_batch(&model, &codec, &prompts[1..], &[&greedy]).expect("generate");
    assert_eq!(alone[0].text, both[1].text);
}

#[test]
fn same_seed_same_tokens_and_stop_strings_end_generation() {
    let dir = tiny_model_dir_with(Arch::Llama, 6, false);
    let backend =
        TchBackend::open(dir.path(), None, "hf", Device::Cpu, Kind::Float, 4).expect("open");
    let request = |seed: u64, stop: Vec<String>| Request {
        prompt: Prompt::Chat(msgs(&[("user", "fix the bug")])),
        sampling: Sampling {
            max_tokens: 12,
            temperature: 1.0,
            top_p: 0.95,
            stop,
            seed,
        },
    };
    let first = backend
        .complete(&[request(7, vec![]), request(8, vec![]), request(7, vec![])])
        .expect("complete");
    assert_eq!(first[0], first[2]);
    let again = backend.complete(&[request(7, vec![])]).expect("complete");
    assert_eq!(again[0], first[0]);
    let draws: std::collections::BTreeSet<String> = (0..6)
        .map(|s| {
            backend
                .complete(&[request(100 + s, vec![])])
                .expect("complete")[0]
                .text
                .clone()
        })
        .collect();
    assert!(draws.len() > 1, "sampling ignored the seed: {draws:?}");
    // Stop at the first word the unconstrained sample produced after its first one.
    let words: Vec<&str> = first[0].text.split_whitespace().collect();
    if words.len() >= 2 {
        let stopped = backend
            .complete(&[request(7, vec![words[1].to_string()])])
            .expect("complete");
        assert_eq!(stopped[0].finish_reason, FinishReason::Stop);
        assert!(!stopped[0].text.contains(words[1]) || words[0].contains(words[1]));
    }
    assert!(backend.model_id().starts_with("tch:"));
}

#[test]
fn bad_checkpoints_fail_with_the_path_and_the_tensor() {
    let missing = open_model(
        std::path::Path::new("/nonexistent/model"),
        None,
        Device::Cpu,
        Kind::Float,
    )
    .expect_err("missing dir");
    assert!(
        missing.to_string().contains("/nonexistent/model"),
        "{missing}"
    );

    let dir = tiny_model_dir(Arch::Llama, 7);
    let text = fs_err::read_to_string(dir.path().join("config.json")).expect("read");
    let mut config: serde_json::Value = serde_json::from_str(&text).expect("json");
    config["intermediate_size"] = 96.into();
    fs_err::write(dir.path().join("config.json"), config.to_string()).expect("write");
    let err = Transformer::load(dir.path(), Device::Cpu, Kind::Float).expect_err("shape");
    let msg = err.to_string();
    // Any of the three MLP projections may be the first one checked.
    assert!(
        msg.contains("model.safetensors") && msg.contains("mlp."),
        "{msg}"
    );
    assert!(
        msg.contains("64") && msg.contains("96") && msg.contains("has shape"),
        "{msg}"
    );
}

#[test]
fn sharded_checkpoints_load_like_a_single_file() {
    let dir = tiny_model_dir(Arch::Qwen2, 8);
    let single = Transformer::load(dir.path(), Device::Cpu, Kind::Float).expect("load");
    let tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(dir.path().join("model.safetensors")).expect("read");
    let (first, second): (Vec<_>, Vec<_>) = tensors
        .into_iter()
        .partition(|(name, _)| name.contains("layers.0.") || name.contains("embed"));
    let mut map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        for (name, _) in &part {
            map.insert(name.clone(), file.into());
        }
        weights::write(part.into_iter().collect(), &dir.path().join(file)).expect("write shard");
    }
    fs_err::remove_file(dir.path().join("model.safetensors")).expect("remove");
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    fs_err::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .expect("index");
    let sharded = Transformer::load(dir.path(), Device::Cpu, Kind::Float).expect("load shards");
    let ids = [1, 9, 10, 11];
    assert!(logits_of(&single, &ids).equal(&logits_of(&sharded, &ids)));

    // A shard the index names but the directory lacks is reported by name.
    fs_err::remove_file(dir.path().join("model-00002-of-00002.safetensors")).expect("remove");
    let err = Transformer::load(dir.path(), Device::Cpu, Kind::Float).expect_err("missing shard");
    assert!(
        err.to_string().contains("model-00002-of-00002.safetensors"),
        "{err}"
    );
}

#[test]
fn packing_fills_blocks_up_to_the_cutoff_without_losing_tokens() {
    let dir = tiny_model_dir(Arch::Llama, 9);
    let (examples, codec) = tiny_examples(dir.path());
    let mut cfg = config(Method::Full, 30, 1e-2);
    cfg.packing = true;
    let longest = examples
        .iter()
        .map(|e| e.ids.len())
        .max()
        .expect("examples");
    cfg.cutoff_len = 2 * longest;
    let packed = train::epoch_sequences(&examples, &cfg, 0);
    assert!(packed.len() < examples.len(), "nothing was packed");
    assert!(packed.iter().all(|s| s.ids.len() <= 2 * longest));
    let total = |v: &[Example]| v.iter().map(|e| e.ids.len()).sum::<usize>();
    assert_eq!(total(&packed), total(&examples));
    let trained = |v: &[Example]| v.iter().map(Example::trained_tokens).sum::<usize>();
    assert_eq!(trained(&packed), trained(&examples));

    let mut model = Transformer::load(dir.path(), Device::Cpu, Kind::Float).expect("load");
    let out = Trainer {
        model: &mut model,
        config: cfg,
        examples: examples.clone(),
        pad_id: codec.pad_id,
    }
    .train(None, None, |_| {})
    .expect("train");
    assert!(out.log.last().expect("steps").loss < out.log[0].loss * 0.5);

    // The cutoff cuts the token sequence and its labels together.
    let chat = ChatFormat::open("hf", dir.path()).expect("chat");
    let conv = msgs(&[
        ("user", "fix the bug"),
        ("assistant", "def f ( x ) : return x + 1"),
    ]);
    let cut = train::encode_conversation(&codec, &chat, &conv, 5).expect("encode");
    assert_eq!((cut.ids.len(), cut.labels.len()), (5, 5));
}

#[test]
fn allocation_failures_become_out_of_memory_errors_with_a_hint() {
    let err = guard(|| {
        // 16 TiB: more than any machine here has, so libtorch's allocator refuses.
        let t = Tensor::zeros([1i64 << 42], (Kind::Float, Device::Cpu));
        Ok(t.size())
    })
    .expect_err("cannot allocate");
    let msg = err.to_string();
    assert!(matches!(err, ModelError::OutOfMemory(_)), "{msg}");
    assert!(msg.contains("hint: lower `batch_size`"), "{msg}");
    // libtorch's message, without its C++ stack frames.
    assert!(
        msg.contains("can't allocate memory") && !msg.contains("frame #"),
        "{msg}"
    );
}

#[test]
fn bf16_training_keeps_bf16_weights_and_f32_optimizer_state() {
    let dir = tiny_model_dir(Arch::Llama, 10);
    let (examples, codec) = tiny_examples(dir.path());
    let mut model = Transformer::load(dir.path(), Device::Cpu, Kind::BFloat16).expect("load");
    let out = Trainer {
        model: &mut model,
        config: config(Method::Full, 20, 1e-2),
        examples,
        pad_id: codec.pad_id,
    }
    .train(None, None, |_| {})
    .expect("train");
    let (first, last) = (epoch_loss(&out.log[..2]), epoch_loss(&out.log[18..]));
    assert!(last < first * 0.7, "loss {first} -> {last}");
    assert!(
        model
            .base
            .variables()
            .values()
            .all(|v| v.kind() == Kind::BFloat16)
    );
    let state = out.optimizer.state_tensors();
    // Moments and an f32 master copy for every bf16 parameter.
    assert!(state.keys().any(|k| k.starts_with("master.")));
    assert!(state.values().all(|t| t.kind() == Kind::Float));
}
