//! AdamW (decoupled weight decay, as `torch.optim.AdamW`) with f32 master copies
//! of bf16 parameters, global-norm gradient clipping and the cosine schedule
//! with linear warmup of `transformers.get_cosine_schedule_with_warmup`.
//!
//! Written here rather than taken from `tch::nn::Optimizer` because its state
//! (moments, step) must be saved and restored for resumable training.

use super::ModelError;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Optimizer steps taken.
    pub step: i64,
    params: Vec<Param>,
}

struct Param {
    name: String,
    /// The model's variable (any kind; receives the gradient).
    var: Tensor,
    /// f32 master copy when `var` is not f32.
    master: Option<Tensor>,
    m: Tensor,
    v: Tensor,
}

impl AdamW {
    pub fn new(vars: BTreeMap<String, Tensor>, weight_decay: f64) -> Self {
        let _guard = tch::no_grad_guard();
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let master = (var.kind() != Kind::Float).then(|| var.to_kind(Kind::Float));
                let m = var.zeros_like().to_kind(Kind::Float);
                let v = var.zeros_like().to_kind(Kind::Float);
                Param {
                    name,
                    var,
                    master,
                    m,
                    v,
                }
            })
            .collect();
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            params,
        }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.var.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Scale gradients so their global L2 norm is at most `max_norm` (0 = off);
    /// returns the norm before clipping, as `clip_grad_norm_` does.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let _guard = tch::no_grad_guard();
        let mut total = 0.0f64;
        for p in &self.params {
            let g = p.var.grad();
            if g.defined() {
                total += g
                    .to_kind(Kind::Float)
                    .pow_tensor_scalar(2)
                    .sum(Kind::Float)
                    .double_value(&[]);
            }
        }
        let norm = total.sqrt();
        if max_norm > 0.0 && norm > max_norm {
            let scale = max_norm / (norm + 1e-6);
            for p in &self.params {
                let mut g = p.var.grad();
                if g.defined() {
                    let _ = g.g_mul_scalar_(scale);
                }
            }
        }
        norm
    }

    /// One update at learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        for p in &mut self.params {
            let g = p.var.grad();
            if !g.defined() {
                continue;
            }
            let g = g.to_kind(Kind::Float);
            let mut w = match &p.master {
                Some(m) => m.shallow_clone(),
                None => p.var.shallow_clone(),
            };
            if self.weight_decay != 0.0 {
                let _ = w.g_mul_scalar_(1.0 - lr * self.weight_decay);
            }
            let _ = p.m.g_mul_scalar_(self.beta1);
            let _ = p.m.g_add_(&(&g * (1.0 - self.beta1)));
            let _ = p.v.g_mul_scalar_(self.beta2);
            let _ = p.v.g_add_(&(&g * &g * (1.0 - self.beta2)));
            let denom = (&p.v / bc2).sqrt() + self.eps;
            let update = (&p.m / denom) * (lr / bc1);
            let _ = w.g_sub_(&update);
            if let Some(master) = &p.master {
                p.var.copy_(&master.to_kind(p.var.kind()));
            }
        }
    }

    /// Moments (and master copies) as named tensors, for a resumable checkpoint.
    pub fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for p in &self.params {
            out.insert(format!("exp_avg.{}", p.name), p.m.shallow_clone());
            out.insert(format!("exp_avg_sq.{}", p.name), p.v.shallow_clone());
            if let Some(master) = &p.master {
                out.insert(format!("master.{}", p.name), master.shallow_clone());
            }
        }
        out
    }

    /// Restore moments saved by [`AdamW::state_tensors`] into this optimizer.
    pub fn load_state(&mut self, path: &Path, step: i64) -> Result<(), ModelError> {
        let tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
            .map_err(|e| ModelError::Checkpoint {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
            .into_iter()
            .collect();
        let _guard = tch::no_grad_guard();
        for p in &mut self.params {
            let get = |prefix: &str| {
                tensors
                    .get(&format!("{prefix}.{}", p.name))
                    .ok_or_else(|| ModelError::Checkpoint {
                        path: path.to_path_buf(),
                        message: format!("no optimizer state for `{}`", p.name),
                    })
            };
            let device = p.m.device();
            p.m.copy_(&get("exp_avg")?.to_device(device));
            p.v.copy_(&get("exp_avg_sq")?.to_device(device));
            if let Some(master) = &mut p.master {
                master.copy_(&get("master")?.to_device(device));
            }
        }
        self.step = step;
        Ok(())
    }
}

/// HF's cosine schedule: linear warmup from 0, then half a cosine down to 0.
/// `step` counts from 0 (the first optimizer step uses `lr_at(0)`).
pub fn cosine_lr(base: f64, step: i64, warmup: i64, total: i64) -> f64 {
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    base * (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_matches_transformers() {
        // get_cosine_schedule_with_warmup(opt, 2, 10) with lr 1.0, steps 0..10.
        let expected = [
            0.0, 0.5, 1.0, 0.9619397, 0.8535534, 0.6913417, 0.5, 0.3086583, 0.1464466, 0.0380602,
        ];
        for (step, e) in expected.iter().enumerate() {
            assert!(
                (cosine_lr(1.0, step as i64, 2, 10) - e).abs() < 1e-6,
                "step {step}"
            );
        }
    }

    #[test]
    fn adamw_matches_torch_on_one_parameter() {
        // torch.optim.AdamW([w], lr=0.1, weight_decay=0.01), w = [1, -2], grad = [0.5, 0.25],
        // two steps: w = [0.79810100, -2.19590199].
        let w = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = AdamW::new(BTreeMap::from([("w".to_string(), w.shallow_clone())]), 0.01);
        for _ in 0..2 {
            opt.zero_grad();
            let loss = (&w * Tensor::from_slice(&[0.5f32, 0.25])).sum(Kind::Float);
            loss.backward();
            opt.step(0.1);
        }
        let got: Vec<f32> = Vec::try_from(&w).unwrap();
        assert!((got[0] - 0.798_101).abs() < 1e-6, "{got:?}");
        assert!((got[1] + 2.195_902).abs() < 1e-6, "{got:?}");
    }
}
