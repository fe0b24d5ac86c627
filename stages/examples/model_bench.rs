//! Training and generation throughput of tw's model runtime, on random weights
//! of a named architecture (no download). `bench/models.sh` runs it side
//! by side with the same measurement in HF Transformers + PEFT
//! (`bench/models_hf.py`) and prints the ratios.
//!
//! ```text
//! cargo run --release --features torch --example model_bench -- \
//!     --preset qwen2.5-0.5b --method lora --batch 8 --seq 512 --steps 10 --device cuda
//! ```
//! Prints one JSON line per measurement: `train` (tokens/s, step seconds, MFU
//! against `--peak-tflops`, default the H100 SXM's 989 dense bf16 TFLOPS on
//! CUDA) and `generate` (new tokens/s for a batch with a KV cache).

use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use tw_stages::llm::Sampling;
use tw_stages::model::config::{ALL_LINEAR, LoraConfig};
use tw_stages::model::optim::AdamW;
use tw_stages::model::{ModelConfig, Transformer, generate, parse_device, parse_kind};

fn preset(name: &str) -> Option<&'static str> {
    Some(match name {
        "smollm2-135m" => {
            r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 576, "intermediate_size": 1536,
            "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
            "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "vocab_size": 49152,
            "tie_word_embeddings": true, "max_position_embeddings": 8192, "eos_token_id": 2}"#
        }
        "qwen2.5-0.5b" => {
            r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "vocab_size": 151936,
            "tie_word_embeddings": true, "max_position_embeddings": 32768, "eos_token_id": 151645}"#
        }
        "qwen2.5-1.5b" => {
            r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 1536, "intermediate_size": 8960,
            "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "vocab_size": 151936,
            "tie_word_embeddings": true, "max_position_embeddings": 32768, "eos_token_id": 151645}"#
        }
        "llama3.2-1b" => {
            r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "intermediate_size": 8192,
            "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
            "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "vocab_size": 128256,
            "tie_word_embeddings": true, "max_position_embeddings": 131072, "eos_token_id": 128001}"#
        }
        _ => return None,
    })
}

struct Args(BTreeMap<String, String>);

impl Args {
    fn get(&self, k: &str, default: &str) -> String {
        self.0
            .get(k)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
    fn num(&self, k: &str, default: f64) -> f64 {
        self.get(k, &default.to_string())
            .parse()
            .unwrap_or_else(|_| {
                eprintln!("--{k} must be a number");
                std::process::exit(2)
            })
    }
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut map = BTreeMap::new();
    for pair in raw.chunks(2) {
        match pair {
            [k, v] if k.starts_with("--") => {
                map.insert(k.trim_start_matches("--").to_string(), v.clone());
            }
            _ => {
                eprintln!(
                    "usage: model_bench --preset NAME [--method full|lora] [--batch B] [--seq T] [--steps N] [--device D] [--dtype K] [--gen-batch B] [--gen-prompt P] [--gen-tokens G] [--peak-tflops F] [--skip train|generate]"
                );
                std::process::exit(2);
            }
        }
    }
    let args = Args(map);
    let preset_name = args.get("preset", "smollm2-135m");
    let Some(json) = preset(&preset_name) else {
        eprintln!(
            "unknown preset `{preset_name}` (smollm2-135m, qwen2.5-0.5b, qwen2.5-1.5b, llama3.2-1b)"
        );
        std::process::exit(2);
    };
    let config = ModelConfig::from_json(json).expect("preset config");
    let device = parse_device(&args.get("device", "auto")).expect("device");
    let kind = parse_kind(&args.get("dtype", "auto"), device).expect("dtype");
    let method = args.get("method", "lora");
    let batch = args.num("batch", 4.0) as i64;
    let seq = args.num("seq", 256.0) as i64;
    let steps = args.num("steps", 5.0) as usize;
    let warmup = args.num("warmup", 2.0) as usize;
    let rank = args.num("rank", 8.0) as i64;
    let peak = args.num("peak-tflops", if device.is_cuda() { 989.0 } else { 0.0 });
    let skip = args.get("skip", "");
    let threads = args.num("threads", 0.0) as i32;
    if threads > 0 {
        tch::set_num_threads(threads);
    }
    tch::manual_seed(0);
    let n_params = config.num_params() as f64;
    let mut model = Transformer::new(config.clone(), device, kind);

    if skip != "train" {
        let trainable: BTreeMap<String, Tensor> = if method == "lora" {
            model
                .attach_lora(
                    LoraConfig {
                        rank,
                        alpha: 2.0 * rank as f64,
                        dropout: 0.0,
                        targets: ALL_LINEAR.iter().map(|s| s.to_string()).collect(),
                    },
                    0,
                )
                .expect("lora");
            model.lora_tensors()
        } else {
            model.base.variables().into_iter().collect()
        };
        let mut opt = AdamW::new(trainable, 0.0);
        let ids = Tensor::randint(config.vocab_size, [batch, seq], (Kind::Int64, device));
        let mut times = Vec::new();
        for i in 0..warmup + steps {
            sync(device);
            let t = Instant::now();
            let logits = model.forward_logits(&ids, true);
            let v = logits.size()[2];
            let loss = logits
                .narrow(1, 0, seq - 1)
                .to_kind(Kind::Float)
                .reshape([-1, v])
                .cross_entropy_for_logits(&ids.narrow(1, 1, seq - 1).reshape([-1]));
            loss.backward();
            opt.clip_grad_norm(1.0);
            opt.step(1e-5);
            opt.zero_grad();
            sync(device);
            if i >= warmup {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        let step = times.iter().sum::<f64>() / times.len() as f64;
        let tokens = (batch * seq) as f64 / step;
        // Full training: 6N per token (forward 2N, backward 4N) plus causal attention
        // 6·L·T·d. LoRA computes no gradients for the frozen weights: two thirds of that.
        let attn = 6.0
            * config.num_layers as f64
            * seq as f64
            * (config.num_heads * config.head_dim) as f64;
        let full = 6.0 * n_params + attn;
        let per_token = if method == "lora" {
            full * 2.0 / 3.0
        } else {
            full
        };
        let tflops = per_token * tokens / 1e12;
        println!(
            "{}",
            serde_json::json!({"impl": "tw", "phase": "train", "preset": preset_name, "method": method,
                "device": format!("{device:?}"), "dtype": format!("{kind:?}"), "batch": batch, "seq": seq,
                "params": n_params, "step_s": step, "tokens_per_s": tokens, "tflops": tflops,
                "mfu": if peak > 0.0 { Some(tflops / peak) } else { None }})
        );
    }

    if skip != "generate" {
        if model.adapters.is_some() {
            model.merge_lora();
        }
        let gen_batch = args.num("gen-batch", 8.0) as usize;
        let prompt_len = args.num("gen-prompt", 128.0) as usize;
        let new_tokens = args.num("gen-tokens", 128.0) as usize;
        let sampling = Sampling {
            max_tokens: new_tokens,
            ..Sampling::default()
        };
        // Random weights rarely emit EOS; an impossible id makes every row run to max_tokens.
        let codec = tw_stages::model::Codec::for_benchmark(-1, 0);
        let prompts: Vec<Vec<i64>> = (0..gen_batch)
            .map(|r| {
                (0..prompt_len)
                    .map(|i| ((r * 7919 + i * 104_729) % 30_000) as i64 + 100)
                    .collect()
            })
            .collect();
        let refs: Vec<&Sampling> = (0..gen_batch).map(|_| &sampling).collect();
        let _ = generate::generate_batch(&model, &codec, &prompts[..1], &refs[..1]);
        sync(device);
        let t = Instant::now();
        let out = generate::generate_batch(&model, &codec, &prompts, &refs).expect("generate");
        sync(device);
        let secs = t.elapsed().as_secs_f64();
        let produced: usize = out.iter().map(|c| c.completion_tokens).sum();
        println!(
            "{}",
            serde_json::json!({"impl": "tw", "phase": "generate", "preset": preset_name,
                "device": format!("{device:?}"), "dtype": format!("{kind:?}"), "batch": gen_batch,
                "prompt": prompt_len, "new_tokens": new_tokens, "seconds": secs,
                "tokens_per_s": produced as f64 / secs})
        );
    }
}
