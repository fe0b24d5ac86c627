//! LoRA adapters in PEFT's format: `adapter_model.safetensors` with keys
//! `base_model.model.<module>.lora_A.weight` and an `adapter_config.json`, so
//! PEFT and vLLM load what `tw` trains, and `tw` loads what they train.

use super::ModelError;
use super::config::{ALL_LINEAR, LoraConfig};
use super::transformer::{LoraPair, Transformer};
use crate::api::rng::SplitMix64;
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;
use tch::nn::VarStore;

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
