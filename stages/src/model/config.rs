//! A decoder's Hugging Face `config.json`, reduced to what the forward pass needs.

use super::ModelError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The decoder families `tw` runs. They share one implementation; the
/// differences (biases on Q/K/V, RoPE scaling) are fields of [`ModelConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// `LlamaForCausalLM`: Llama 2/3, SmolLM2, DeepSeek-Coder, CodeLlama.
    Llama,
    /// `Qwen2ForCausalLM`: Qwen2, Qwen2.5, Qwen2.5-Coder (biases on Q, K, V).
    Qwen2,
}

/// How RoPE frequencies are rescaled for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (DeepSeek-Coder, CodeLlama-style).
    Linear {
        factor: f64,
    },
    /// Llama 3.1's piecewise frequency scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: i64,
    pub tie_word_embeddings: bool,
    /// Biases on the Q, K and V projections (Qwen2, or `attention_bias: true`).
    pub qkv_bias: bool,
    pub bos_token_id: Option<i64>,
    /// Every id that ends a generation (`eos_token_id` may be a list).
    pub eos_token_ids: Vec<i64>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: i64,
    hidden_size: i64,
    intermediate_size: i64,
    num_hidden_layers: i64,
    num_attention_heads: i64,
    #[serde(default)]
    num_key_value_heads: Option<i64>,
    #[serde(default)]
    head_dim: Option<i64>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: i64,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    bos_token_id: Option<serde_json::Value>,
    #[serde(default)]
    eos_token_id: Option<serde_json::Value>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> i64 {
    4096
}

fn ids(v: &Option<serde_json::Value>) -> Vec<i64> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|x| x.as_i64()).collect(),
        _ => Vec::new(),
    }
}

impl ModelConfig {
    /// Read `config.json` in a model directory.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join("config.json");
        let text = fs_err::read_to_string(&path)?;
        Self::from_json(&text).map_err(|message| ModelError::Config { path, message })
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let arch_name = raw
            .architectures
            .first()
            .cloned()
            .or(raw.model_type.clone())
            .unwrap_or_default();
        let arch = match arch_name.as_str() {
            "LlamaForCausalLM" | "llama" => Arch::Llama,
            "Qwen2ForCausalLM" | "qwen2" => Arch::Qwen2,
            other => {
                return Err(format!(
                    "architecture `{other}` is not supported; tw runs LlamaForCausalLM \
                     (Llama, SmolLM2, DeepSeek-Coder) and Qwen2ForCausalLM (Qwen2.5-Coder)"
                ));
            }
        };
        if let Some(act) = &raw.hidden_act
            && act != "silu"
        {
            return Err(format!("hidden_act `{act}` is not supported (silu)"));
        }
        let rope_scaling = match &raw.rope_scaling {
            None | Some(serde_json::Value::Null) => RopeScaling::None,
            Some(v) => {
                let kind = v
                    .get("rope_type")
                    .or_else(|| v.get("type"))
                    .and_then(|t| t.as_str())
                    .unwrap_or("default");
                let num = |k: &str| v.get(k).and_then(|x| x.as_f64());
                match kind {
                    "default" => RopeScaling::None,
                    "linear" => RopeScaling::Linear {
                        factor: num("factor").ok_or("rope_scaling.factor is missing")?,
                    },
                    "llama3" => RopeScaling::Llama3 {
                        factor: num("factor").ok_or("rope_scaling.factor is missing")?,
                        low_freq_factor: num("low_freq_factor").unwrap_or(1.0),
                        high_freq_factor: num("high_freq_factor").unwrap_or(4.0),
                        original_max_position_embeddings: num("original_max_position_embeddings")
                            .unwrap_or(8192.0),
                    },
                    other => {
                        return Err(format!(
                            "rope_scaling type `{other}` is not supported (linear, llama3)"
                        ));
                    }
                }
            }
        };
        let heads = raw.num_attention_heads;
        let kv = raw.num_key_value_heads.unwrap_or(heads);
        if heads <= 0 || kv <= 0 || heads % kv != 0 {
            return Err(format!(
                "num_attention_heads ({heads}) must be a positive multiple of num_key_value_heads ({kv})"
            ));
        }
        let head_dim = raw.head_dim.unwrap_or(raw.hidden_size / heads);
        if head_dim % 2 != 0 {
            return Err(format!("head_dim {head_dim} must be even for RoPE"));
        }
        Ok(ModelConfig {
            arch,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: raw.num_hidden_layers,
            num_heads: heads,
            num_kv_heads: kv,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta: raw.rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings,
            tie_word_embeddings: raw.tie_word_embeddings,
            qkv_bias: raw.attention_bias.unwrap_or(arch == Arch::Qwen2),
            bos_token_id: ids(&raw.bos_token_id).first().copied(),
            eos_token_ids: ids(&raw.eos_token_id),
        })
    }

    /// A `config.json` for this configuration, as HF `transformers` reads it.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "architectures": [match self.arch { Arch::Llama => "LlamaForCausalLM", Arch::Qwen2 => "Qwen2ForCausalLM" }],
            "model_type": match self.arch { Arch::Llama => "llama", Arch::Qwen2 => "qwen2" },
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.qkv_bias,
            "torch_dtype": "float32",
        });
        if let Some(bos) = self.bos_token_id {
            v["bos_token_id"] = bos.into();
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => v["eos_token_id"] = (*one).into(),
            many => v["eos_token_id"] = many.to_vec().into(),
        }
        match &self.rope_scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => {
                v["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": factor})
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                v["rope_scaling"] = serde_json::json!({
                    "rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
                    "high_freq_factor": high_freq_factor,
                    "original_max_position_embeddings": original_max_position_embeddings,
                })
            }
        }
        v
    }

    /// Parameters of the model (embeddings counted once when tied).
    pub fn num_params(&self) -> i64 {
        let h = self.hidden_size;
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let bias = if self.qkv_bias { q + 2 * kv } else { 0 };
        let layer = h * q + 2 * h * kv + q * h + bias + 3 * h * self.intermediate_size + 2 * h;
        let emb = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { emb };
        emb + head + self.num_layers * layer + h
    }

    /// Inverse RoPE frequencies, one per pair of head dimensions.
    pub fn rope_inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim as f64;
        let base: Vec<f64> = (0..self.head_dim / 2)
            .map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / d))
            .collect();
        match self.rope_scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }
}

/// The modules LoRA adapts when `target` is `all` (every linear layer but the head,
/// as LLaMA-Factory's `lora_target: all`).
pub const ALL_LINEAR: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: i64,
    pub alpha: f64,
    pub dropout: f64,
    /// Short module names (`q_proj`), see [`ALL_LINEAR`].
    pub targets: Vec<String>,
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// PEFT's `adapter_config.json`.
    pub fn peft_json(&self, base_model: &str) -> serde_json::Value {
        serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.rank,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": self.targets,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "use_rslora": false,
            "use_dora": false,
            "layers_to_transform": null,
            "layers_pattern": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null,
        })
    }

    /// Read PEFT's `adapter_config.json`; returns the config and the base model path.
    pub fn from_peft_json(path: &Path) -> Result<(Self, Option<String>), ModelError> {
        let text = fs_err::read_to_string(path)?;
        let bad = |message: String| ModelError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if v.get("peft_type").and_then(|t| t.as_str()) != Some("LORA") {
            return Err(bad("`peft_type` is not LORA".into()));
        }
        let rank = v
            .get("r")
            .and_then(|r| r.as_i64())
            .ok_or_else(|| bad("no integer `r`".into()))?;
        let alpha = v.get("lora_alpha").and_then(|a| a.as_f64()).unwrap_or(8.0);
        if v.get("use_rslora").and_then(|x| x.as_bool()) == Some(true)
            || v.get("use_dora").and_then(|x| x.as_bool()) == Some(true)
        {
            return Err(bad("rsLoRA and DoRA adapters are not supported".into()));
        }
        let targets = match v.get("target_modules") {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            Some(serde_json::Value::String(s)) if s == "all-linear" => {
                ALL_LINEAR.iter().map(|s| s.to_string()).collect()
            }
            _ => return Err(bad("`target_modules` must be a list of module names".into())),
        };
        let base = v
            .get("base_model_name_or_path")
            .and_then(|b| b.as_str())
            .map(String::from);
        Ok((
            LoraConfig {
                rank,
                alpha,
                dropout: v
                    .get("lora_dropout")
                    .and_then(|d| d.as_f64())
                    .unwrap_or(0.0),
                targets,
            },
            base,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 576,
        "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
        "num_key_value_heads": 3, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
        "vocab_size": 49152, "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2,
        "max_position_embeddings": 8192, "hidden_act": "silu"}"#;

    #[test]
    fn smollm2_config_counts_its_published_parameters() {
        let c = ModelConfig::from_json(SMOLLM2).unwrap();
        assert_eq!(c.arch, Arch::Llama);
        assert_eq!(c.head_dim, 64);
        assert!(!c.qkv_bias);
        assert_eq!(c.eos_token_ids, vec![2]);
        // The GGUF's own count for SmolLM2-135M.
        assert_eq!(c.num_params(), 134_515_008);
    }

    #[test]
    fn qwen2_gets_qkv_bias_and_unknown_architectures_are_named() {
        let q = SMOLLM2.replace("LlamaForCausalLM", "Qwen2ForCausalLM");
        assert!(ModelConfig::from_json(&q).unwrap().qkv_bias);
        let g = SMOLLM2.replace("LlamaForCausalLM", "GPTNeoXForCausalLM");
        let err = ModelConfig::from_json(&g).unwrap_err();
        assert!(
            err.contains("`GPTNeoXForCausalLM` is not supported"),
            "{err}"
        );
    }

    #[test]
    fn llama3_rope_scaling_keeps_high_and_scales_low_frequencies() {
        let text = SMOLLM2.replace(
            "\"hidden_act\": \"silu\"",
            "\"hidden_act\": \"silu\", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \
             \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}",
        );
        let scaled = ModelConfig::from_json(&text).unwrap();
        let plain = ModelConfig::from_json(SMOLLM2).unwrap();
        let (s, p) = (scaled.rope_inv_freq(), plain.rope_inv_freq());
        assert_eq!(s[0], p[0]);
        let last = p.len() - 1;
        assert!((s[last] - p[last] / 8.0).abs() < 1e-15);
        let round = ModelConfig::from_json(&scaled.to_hf_json().to_string()).unwrap();
        assert_eq!(round.rope_scaling, scaled.rope_scaling);
    }
}
