//! A tiny random model directory (config, safetensors, a word-level
//! `tokenizer.json`, a ChatML template) for tests and examples that must run in
//! seconds on a CPU without downloading anything.

use super::{Arch, ModelConfig, Transformer, weights};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub fn tiny_config(arch: Arch) -> ModelConfig {
    let name = match arch {
        Arch::Llama => "LlamaForCausalLM",
        Arch::Qwen2 => "Qwen2ForCausalLM",
    };
    ModelConfig::from_json(&format!(
        r#"{{"architectures": ["{name}"], "vocab_size": 48, "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "max_position_embeddings": 256, "tie_word_embeddings": {tied},
            "bos_token_id": 1, "eos_token_id": 2}}"#,
        tied = arch == Arch::Llama
    ))
    .expect("valid tiny config")
}

/// Words of the tiny vocabulary: 0 `<unk>`, 1 `<s>`, 2 `</s>`, 3..=5 chat markers, then words.
const SPECIAL: [&str; 6] = [
    "<unk>",
    "<s>",
    "</s>",
    "<|im_start|>",
    "<|im_end|>",
    "<pad>",
];

/// The tiny model's word-level `tokenizer.json`.
pub fn tiny_tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    for (i, s) in SPECIAL.iter().enumerate() {
        vocab.insert(s.to_string(), i.into());
    }
    let words = [
        "user",
        "assistant",
        "system",
        "def",
        "f",
        "x",
        "return",
        "+",
        "1",
        "2",
        "3",
        "(",
        ")",
        ":",
        "fix",
        "bug",
        "the",
        "a",
        "b",
        "c",
        "print",
        "if",
        "else",
        "for",
        "in",
        "range",
        "=",
        "-",
        "*",
        "ok",
        "no",
        "yes",
        "trace",
        "line",
        "\n",
    ];
    for (i, w) in words.iter().enumerate() {
        vocab.insert(w.to_string(), (SPECIAL.len() + i).into());
    }
    let added: Vec<serde_json::Value> = SPECIAL
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": " +"}, "behavior": "Removed", "invert": false},
            {"type": "Split", "pattern": {"String": "\n"}, "behavior": "Isolated", "invert": false},
        ]},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    })
    .to_string()
}

/// A tiny model directory: random weights, config, tokenizer, chat template.
pub fn tiny_model_dir(arch: Arch, seed: i64) -> tempfile::TempDir {
    tiny_model_dir_with(arch, seed, true)
}

/// `unit_embeddings: false` keeps HF's std-0.02 init: near-uniform next-token
/// distributions, which is what sampling tests need.
pub fn tiny_model_dir_with(arch: Arch, seed: i64, unit_embeddings: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tiny_model(dir.path(), arch, seed, unit_embeddings);
    dir
}

/// Write a tiny model into `dir` (created if needed).
pub fn write_tiny_model(dir: &Path, arch: Arch, seed: i64, unit_embeddings: bool) {
    fs_err::create_dir_all(dir).expect("create model dir");
    let _rng = super::torch_rng_lock();
    tch::manual_seed(seed);
    let model = Transformer::new(tiny_config(arch), Device::Cpu, Kind::Float);
    let mut tensors: BTreeMap<String, Tensor> = model.base.variables().into_iter().collect();
    // Norm weights away from one, so loading them is actually checked.
    for (name, t) in tensors.iter_mut() {
        if name.ends_with("norm.weight") {
            *t = Tensor::rand_like(t) + 0.5;
        }
        // Unit-scale embeddings, as trained ones are: with std 0.02 and a tied head
        // every logit stays near zero and only full fine-tuning could escape that.
        if unit_embeddings && (name == "model.embed_tokens.weight" || name == "lm_head.weight") {
            *t = Tensor::randn_like(t);
        }
    }
    weights::write(tensors, &dir.join("model.safetensors")).expect("write weights");
    let config = serde_json::to_string(&model.config.to_hf_json()).expect("json");
    fs_err::write(dir.join("config.json"), config).expect("write config");
    fs_err::write(dir.join("tokenizer.json"), tiny_tokenizer_json()).expect("write tok");
    let template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    let tc =
        serde_json::json!({"eos_token": "</s>", "pad_token": "<pad>", "chat_template": template});
    fs_err::write(dir.join("tokenizer_config.json"), tc.to_string()).expect("write tc");
}
