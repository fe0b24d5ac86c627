//! LoRA adapters in PEFT's format: `adapter_model.safetensors` with keys
//! `base_model.model.<module>.lora_A.weight` and an `adapter_config.json`, so
//! PEFT and vLLM load what `tw` trains, and `tw` loads what they train.

use super::ModelError;
use super::transformer::{LoraPair, Transformer};
use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;
use tch::nn::VarStore;

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

/// A per-module offset for the LoRA init seed, so modules differ.
fn module_seed(layer: usize, module: &str) -> u64 {
    let mut h = (layer as u64).wrapping_mul(SplitMix64::GAMMA);
    for b in module.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
    }
    h
}

fn peft_prefix(layer: usize, module: &str) -> String {
    format!("base_model.model.model.layers.{layer}.{module}")
}

impl Transformer {
    /// Attach fresh adapters (A random as PEFT's Kaiming-uniform init, drawn from a
    /// generator seeded with `seed` rather than libtorch's global one; B zero, so the
    /// model's output is unchanged) and freeze the base weights.
    pub fn attach_lora(&mut self, config: LoraConfig, seed: u64) -> Result<(), ModelError> {
        for t in &config.targets {
            if !ALL_LINEAR.contains(&t.as_str()) {
                return Err(ModelError::Invalid(format!(
                    "LoRA target `{t}` is not a linear layer of this model (one of {})",
                    ALL_LINEAR.join(", ")
                )));
            }
        }
        let vs = VarStore::new(self.device());
        let kind = self.kind();
        if self.adapters.is_some() {
            return Err(ModelError::Invalid(
                "LoRA adapters are already attached".into(),
            ));
        }
        let root = vs.root();
        let scale = config.scale();
        for (i, layer) in self.layers_mut().iter_mut().enumerate() {
            for (module, linear) in layer.linears_mut() {
                let short = module.rsplit('.').next().unwrap_or(module);
                if !config.targets.iter().any(|t| t == short) {
                    continue;
                }
                let mut p = &root / "base_model" / "model" / "model" / "layers" / i;
                for part in module.split('.') {
                    p = &p / part;
                }
                let fan_in = linear.in_features();
                // PEFT: kaiming_uniform_(a=sqrt(5)) on A, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
                let bound = 1.0 / (fan_in as f64).sqrt();
                let a = (&p / "lora_A").zeros("weight", &[config.rank, fan_in]);
                let mut rng = SplitMix64::new(seed ^ module_seed(i, module));
                let values: Vec<f32> = (0..config.rank * fan_in)
                    .map(|_| {
                        ((rng.next_u64() >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) * bound
                    })
                    .map(|v| v as f32)
                    .collect();
                tch::no_grad(|| {
                    let mut a = a.shallow_clone();
                    a.copy_(
                        &Tensor::from_slice(&values)
                            .view([config.rank, fan_in])
                            .to_device(a.device()),
                    );
                });
                let b = (&p / "lora_B").zeros("weight", &[linear.out_features(), config.rank]);
                linear.lora = Some(LoraPair {
                    a,
                    b,
                    scale,
                    dropout: config.dropout,
                });
            }
        }
        let mut vs = vs;
        if kind != tch::Kind::Float {
            // Same kind as the base; the optimizer keeps f32 master copies.
            vs.set_kind(kind);
        }
        vs.unfreeze();
        self.base.freeze();
        self.adapters = Some((vs, config));
        relink(self);
        Ok(())
    }

    /// Load a PEFT adapter directory into freshly attached adapters.
    pub fn load_lora(&mut self, dir: &Path) -> Result<(), ModelError> {
        let (config, _) = LoraConfig::from_peft_json(&dir.join("adapter_config.json"))?;
        // The values are overwritten below; the seed does not matter.
        self.attach_lora(config, 0)?;
        let file = dir.join("adapter_model.safetensors");
        let tensors = Tensor::read_safetensors(&file).map_err(|e| ModelError::Checkpoint {
            path: file.clone(),
            message: e.to_string(),
        })?;
        // PEFT writes keys without the adapter name; some tools keep `.default`.
        let tensors = tensors
            .into_iter()
            .map(|(k, t)| (k.replace(".default.weight", ".weight"), t))
            .collect();
        let vars = self
            .adapters
            .as_ref()
            .map(|(vs, _)| vs.variables())
            .unwrap_or_default();
        let mut filled = Default::default();
        let mut unexpected = Vec::new();
        super::weights::copy_named(&vars, tensors, &file, &mut filled, &mut unexpected, |_| {
            false
        })?;
        super::weights::finish(&vars, &filled, &unexpected, dir)?;
        relink(self);
        Ok(())
    }

    /// Adapter tensors under PEFT's key names.
    pub fn lora_tensors(&self) -> BTreeMap<String, Tensor> {
        self.adapters
            .as_ref()
            .map(|(vs, _)| vs.variables().into_iter().collect())
            .unwrap_or_default()
    }

    /// Fold the adapters into the base weights (`W += scale * B A`) and drop them.
    pub fn merge_lora(&mut self) {
        let _guard = tch::no_grad_guard();
        for layer in self.layers_mut() {
            for (_, linear) in layer.linears_mut() {
                if let Some(l) = linear.lora.take() {
                    let delta = l.b.matmul(&l.a) * l.scale;
                    let mut w = linear.weight.shallow_clone();
                    w += delta.to_kind(w.kind());
                }
            }
        }
        self.adapters = None;
    }
}

/// Point each layer's LoRA pair at the variables of the adapter store (after a
/// load, or a change of kind), so the forward pass uses the trained tensors.
fn relink(model: &mut Transformer) {
    let Some((vs, _)) = &model.adapters else {
        return;
    };
    let vars = vs.variables();
    for (i, layer) in model.layers_mut().iter_mut().enumerate() {
        for (module, linear) in layer.linears_mut() {
            if let Some(l) = &mut linear.lora {
                let prefix = peft_prefix(i, module);
                if let (Some(a), Some(b)) = (
                    vars.get(&format!("{prefix}.lora_A.weight")),
                    vars.get(&format!("{prefix}.lora_B.weight")),
                ) {
                    l.a = a.shallow_clone();
                    l.b = b.shallow_clone();
                }
            }
        }
    }
}
