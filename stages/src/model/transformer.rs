//! The decoder forward pass (Llama and Qwen2 families), written to Hugging Face
//! `transformers` semantics so logits agree with it: RMSNorm computed in f32,
//! rotate-half RoPE, grouped-query attention, SwiGLU MLP, optional tied head.
//!
//! Variables are named exactly as in HF checkpoints (`model.layers.3.self_attn.q_proj.weight`),
//! so loading and saving are name-for-name copies. LoRA adapters live in a
//! second [`VarStore`] under PEFT's names, which keeps the base weights
//! untouched (frozen, and bit-identical after LoRA training).

use super::ModelError;
use super::config::LoraConfig;
use super::config::ModelConfig;
use std::path::Path;
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};

/// A linear projection (`y = x W^T + b`), with an optional LoRA update
/// `scale * B(A(dropout(x)))`.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub lora: Option<LoraPair>,
}

#[derive(Debug)]
pub struct LoraPair {
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f64,
    pub dropout: f64,
}

impl Linear {
    fn new(p: nn::Path, inputs: i64, outputs: i64, bias: bool, std: f64) -> Self {
        Linear {
            weight: p.var("weight", &[outputs, inputs], init(std)),
            bias: bias.then(|| p.zeros("bias", &[outputs])),
            lora: None,
        }
    }

    // `y += ..` on a Tensor is an in-place add, which autograd cannot differentiate
    // through here; a new tensor is needed.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.linear(&self.weight, self.bias.as_ref());
        if let Some(l) = &self.lora {
            let h = x.dropout(l.dropout, train);
            y = y + h.linear::<Tensor>(&l.a, None).linear::<Tensor>(&l.b, None) * l.scale;
        }
        y
    }

    pub fn in_features(&self) -> i64 {
        self.weight.size()[1]
    }

    pub fn out_features(&self) -> i64 {
        self.weight.size()[0]
    }
}

#[derive(Debug)]
pub struct Layer {
    pub input_layernorm: Tensor,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub post_attention_layernorm: Tensor,
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Layer {
    /// The layer's projections by their HF module names.
    pub fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        [
            ("self_attn.q_proj", &mut self.q_proj),
            ("self_attn.k_proj", &mut self.k_proj),
            ("self_attn.v_proj", &mut self.v_proj),
            ("self_attn.o_proj", &mut self.o_proj),
            ("mlp.gate_proj", &mut self.gate_proj),
            ("mlp.up_proj", &mut self.up_proj),
            ("mlp.down_proj", &mut self.down_proj),
        ]
    }
}

/// Keys and values seen so far, per layer: `[batch, kv_heads, seen, head_dim]`.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(num_layers: i64) -> Self {
        KvCache {
            layers: (0..num_layers).map(|_| None).collect(),
        }
    }

    /// How many positions are cached.
    pub fn seen(&self) -> i64 {
        match self.layers.first() {
            Some(Some((k, _))) => k.size()[2],
            _ => 0,
        }
    }
}

/// A decoder-only transformer with HF weights, on one device.
#[derive(Debug)]
pub struct Transformer {
    pub config: ModelConfig,
    /// The base weights; frozen while LoRA trains.
    pub base: VarStore,
    /// LoRA adapters (PEFT names), when attached.
    pub adapters: Option<(VarStore, LoraConfig)>,
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Option<Tensor>,
    inv_freq: Tensor,
}

/// Normal(0, std) weights; std 0 means zeros, for variables a checkpoint fills
/// (no work, and no draw from libtorch's global generator).
fn init(std: f64) -> nn::Init {
    if std == 0.0 {
        nn::Init::Const(0.0)
    } else {
        nn::Init::Randn {
            mean: 0.0,
            stdev: std,
        }
    }
}

fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Tensor {
    // HF computes the statistics in f32 and casts back before the weight.
    let kind = x.kind();
    let h = x.to_kind(Kind::Float);
    let var = h.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
    let normed = (h * (var + eps).rsqrt()).to_kind(kind);
    weight * normed
}

fn rotate_half(x: &Tensor) -> Tensor {
    let half = x.size()[x.dim() - 1] / 2;
    let x1 = x.narrow(-1, 0, half);
    let x2 = x.narrow(-1, half, half);
    Tensor::cat(&[-x2, x1], -1)
}

impl Transformer {
    /// A model with freshly initialised weights (normal, std 0.02; norms at one).
    /// Draws from libtorch's global generator: hold [`super::torch_rng_lock`].
    pub fn new(config: ModelConfig, device: Device, kind: Kind) -> Self {
        Self::with_init(config, device, kind, 0.02)
    }

    fn with_init(config: ModelConfig, device: Device, kind: Kind, std: f64) -> Self {
        let mut base = VarStore::new(device);
        let root = base.root();
        let c = &config;
        let model = &root / "model";
        let embed_tokens =
            (&model / "embed_tokens").var("weight", &[c.vocab_size, c.hidden_size], init(std));
        let q = c.num_heads * c.head_dim;
        let kv = c.num_kv_heads * c.head_dim;
        let layers = (0..c.num_layers)
            .map(|i| {
                let l = &model / "layers" / i;
                let attn = &l / "self_attn";
                let mlp = &l / "mlp";
                Layer {
                    input_layernorm: (&l / "input_layernorm").ones("weight", &[c.hidden_size]),
                    q_proj: Linear::new(&attn / "q_proj", c.hidden_size, q, c.qkv_bias, std),
                    k_proj: Linear::new(&attn / "k_proj", c.hidden_size, kv, c.qkv_bias, std),
                    v_proj: Linear::new(&attn / "v_proj", c.hidden_size, kv, c.qkv_bias, std),
                    o_proj: Linear::new(&attn / "o_proj", q, c.hidden_size, false, std),
                    post_attention_layernorm: (&l / "post_attention_layernorm")
                        .ones("weight", &[c.hidden_size]),
                    gate_proj: Linear::new(
                        &mlp / "gate_proj",
                        c.hidden_size,
                        c.intermediate_size,
                        false,
                        std,
                    ),
                    up_proj: Linear::new(
                        &mlp / "up_proj",
                        c.hidden_size,
                        c.intermediate_size,
                        false,
                        std,
                    ),
                    down_proj: Linear::new(
                        &mlp / "down_proj",
                        c.intermediate_size,
                        c.hidden_size,
                        false,
                        std,
                    ),
                }
            })
            .collect();
        let norm = (&model / "norm").ones("weight", &[c.hidden_size]);
        let lm_head = (!c.tie_word_embeddings)
            .then(|| (&root / "lm_head").var("weight", &[c.vocab_size, c.hidden_size], init(std)));
        let inv_freq = Tensor::from_slice(&config.rope_inv_freq())
            .to_kind(Kind::Float)
            .to_device(device);
        if kind != Kind::Float {
            base.set_kind(kind);
        }
        Transformer {
            config,
            base,
            adapters: None,
            embed_tokens,
            layers,
            norm,
            lm_head,
            inv_freq,
        }
    }

    /// Load a HF model directory (`config.json` + `model.safetensors` or a sharded
    /// `model.safetensors.index.json`).
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self, ModelError> {
        let config = ModelConfig::from_dir(dir)?;
        let model = Transformer::with_init(config, device, kind, 0.0);
        super::weights::load_into(&model.base, dir, model.config.tie_word_embeddings)?;
        Ok(model)
    }

    pub fn device(&self) -> Device {
        self.base.device()
    }

    pub fn kind(&self) -> Kind {
        self.embed_tokens.kind()
    }

    pub fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Hidden states for `input_ids` `[batch, seq]` at `positions` `[batch, seq]`.
    ///
    /// `mask` (`[batch, 1, seq, seen + seq]`, true = may attend) is needed only when
    /// some rows are padded on the left; without it attention is plainly causal.
    /// With `cache`, keys and values are appended to it and attention covers them.
    // Residual adds build new tensors: an in-place `h +=` would overwrite a value
    // RMSNorm saved for its backward pass.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        train: bool,
    ) -> Tensor {
        let c = &self.config;
        let (b, t) = (input_ids.size()[0], input_ids.size()[1]);
        let kind = self.kind();
        let mut h = Tensor::embedding(&self.embed_tokens, input_ids, -1, false, false);

        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * &self.inv_freq;
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        let (cos, sin) = (emb.cos().to_kind(kind), emb.sin().to_kind(kind));
        let groups = c.num_heads / c.num_kv_heads;

        for (i, layer) in self.layers.iter().enumerate() {
            let x = rms_norm(&h, &layer.input_layernorm, c.rms_norm_eps);
            let q = layer
                .q_proj
                .forward(&x, train)
                .view([b, t, c.num_heads, c.head_dim])
                .transpose(1, 2);
            let k = layer
                .k_proj
                .forward(&x, train)
                .view([b, t, c.num_kv_heads, c.head_dim])
                .transpose(1, 2);
            let v = layer
                .v_proj
                .forward(&x, train)
                .view([b, t, c.num_kv_heads, c.head_dim])
                .transpose(1, 2);
            let q = &q * &cos + rotate_half(&q) * &sin;
            let mut k = &k * &cos + rotate_half(&k) * &sin;
            let mut v = v;
            if let Some(cache) = cache.as_deref_mut() {
                if let Some((pk, pv)) = &cache.layers[i] {
                    k = Tensor::cat(&[pk, &k], 2);
                    v = Tensor::cat(&[pv, &v], 2);
                }
                cache.layers[i] = Some((k.shallow_clone(), v.shallow_clone()));
            }
            let (k, v) = if groups > 1 {
                let s = k.size();
                let expand = |x: &Tensor| {
                    x.unsqueeze(2)
                        .expand([s[0], s[1], groups, s[2], s[3]], false)
                        .reshape([s[0], s[1] * groups, s[2], s[3]])
                };
                (expand(&k), expand(&v))
            } else {
                (k, v)
            };
            let causal = mask.is_none() && t > 1;
            let attn =
                Tensor::scaled_dot_product_attention(&q, &k, &v, mask, 0.0, causal, None, false);
            let attn = attn
                .transpose(1, 2)
                .reshape([b, t, c.num_heads * c.head_dim]);
            h = h + layer.o_proj.forward(&attn, train);

            let x = rms_norm(&h, &layer.post_attention_layernorm, c.rms_norm_eps);
            let gate = layer.gate_proj.forward(&x, train).silu();
            let up = layer.up_proj.forward(&x, train);
            h = h + layer.down_proj.forward(&(gate * up), train);
        }
        rms_norm(&h, &self.norm, c.rms_norm_eps)
    }

    /// Vocabulary logits for hidden states.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        hidden.linear::<Tensor>(self.lm_head.as_ref().unwrap_or(&self.embed_tokens), None)
    }

    /// Logits for right-padded or unpadded sequences, positions `0..seq`.
    pub fn forward_logits(&self, input_ids: &Tensor, train: bool) -> Tensor {
        let (b, t) = (input_ids.size()[0], input_ids.size()[1]);
        let positions = Tensor::arange(t, (Kind::Int64, self.device()))
            .unsqueeze(0)
            .expand([b, t], false);
        let hidden = self.forward(input_ids, &positions, None, None, train);
        self.logits(&hidden)
    }
}
