//! BERT / RoBERTa encoders as code embedders (all-MiniLM-L6-v2, UniXcoder).
//!
//! Reads an HF directory (`config.json`, `model.safetensors`, `tokenizer.json`),
//! runs the encoder without gradients and mean-pools the last hidden states
//! over the real tokens only (padding is masked out of both the attention and
//! the mean), then L2-normalises, as sentence-transformers does.

use super::{ModelError, guard, parse_device};
use crate::api::StageError;
use crate::text::embed::Embedder;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub struct BertEmbedder {
    dir: PathBuf,
    device: Device,
    tokenizer: tokenizers::Tokenizer,
    weights: HashMap<String, Tensor>,
    hidden: i64,
    heads: i64,
    layers: usize,
    eps: f64,
    roberta: bool,
    pad_id: i64,
    max_tokens: usize,
    fingerprint: String,
}

#[derive(serde::Deserialize)]
struct BertConfig {
    hidden_size: i64,
    num_attention_heads: i64,
    num_hidden_layers: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    model_type: String,
    #[serde(default)]
    pad_token_id: i64,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default)]
    hidden_act: Option<String>,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_positions() -> usize {
    512
}

/// Texts per forward pass: bounded so a long program cannot pad a huge batch.
const BATCH: usize = 16;

impl BertEmbedder {
    pub fn load(dir: &Path, device: &str, max_tokens: usize) -> Result<Self, ModelError> {
        let device = parse_device(device)?;
        let config_path = dir.join("config.json");
        let config: BertConfig = serde_json::from_str(&fs_err::read_to_string(&config_path)?)
            .map_err(|e| ModelError::Config {
                path: config_path.clone(),
                message: e.to_string(),
            })?;
        if let Some(act) = config.hidden_act.as_deref().filter(|a| *a != "gelu") {
            return Err(ModelError::Config {
                path: config_path,
                message: format!("hidden_act `{act}` is not supported (only `gelu`)"),
            });
        }
        let roberta = config.model_type == "roberta";
        // RoBERTa numbers positions from pad_token_id + 1.
        let offset = if roberta {
            config.pad_token_id as usize + 1
        } else {
            0
        };
        let max_tokens = max_tokens.min(config.max_position_embeddings - offset);
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer =
            tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| ModelError::Config {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| ModelError::Config {
                path: tokenizer_path,
                message: e.to_string(),
            })?;
        let files = super::weights::weight_files(dir)?;
        let mut weights = HashMap::new();
        guard(|| {
            for file in &files {
                let named = Tensor::read_safetensors(file).map_err(|e| ModelError::Checkpoint {
                    path: file.clone(),
                    message: e.to_string(),
                })?;
                for (name, tensor) in named {
                    let name = name
                        .strip_prefix("bert.")
                        .or_else(|| name.strip_prefix("roberta."))
                        .or_else(|| name.strip_prefix("model."))
                        .unwrap_or(&name)
                        .to_string();
                    weights.insert(name, tensor.to_kind(Kind::Float).to_device(device));
                }
            }
            Ok(())
        })?;
        let fingerprint = super::fingerprint(&[dir])?;
        let embedder = BertEmbedder {
            dir: dir.to_path_buf(),
            device,
            tokenizer,
            weights,
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            layers: config.num_hidden_layers,
            eps: config.layer_norm_eps,
            roberta,
            pad_id: config.pad_token_id,
            max_tokens,
            fingerprint,
        };
        for name in embedder.required_names() {
            if !embedder.weights.contains_key(&name) {
                return Err(ModelError::Checkpoint {
                    path: dir.to_path_buf(),
                    message: format!("no tensor `{name}`: is this a BERT/RoBERTa encoder?"),
                });
            }
        }
        Ok(embedder)
    }

    fn required_names(&self) -> Vec<String> {
        let mut names = vec![
            "embeddings.word_embeddings.weight".to_string(),
            "embeddings.position_embeddings.weight".into(),
            "embeddings.LayerNorm.weight".into(),
        ];
        for i in 0..self.layers {
            for part in [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "attention.output.LayerNorm",
                "intermediate.dense",
                "output.dense",
                "output.LayerNorm",
            ] {
                names.push(format!("encoder.layer.{i}.{part}.weight"));
            }
        }
        names
    }

    fn w(&self, name: &str) -> &Tensor {
        &self.weights[name]
    }

    fn linear(&self, x: &Tensor, prefix: &str) -> Tensor {
        x.linear(
            self.w(&format!("{prefix}.weight")),
            self.weights.get(&format!("{prefix}.bias")),
        )
    }

    fn layer_norm(&self, x: &Tensor, prefix: &str) -> Tensor {
        x.layer_norm(
            [self.hidden],
            Some(self.w(&format!("{prefix}.weight"))),
            self.weights.get(&format!("{prefix}.bias")),
            self.eps,
            false,
        )
    }

    /// Token ids of each text, truncated to `max_tokens`.
    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<i64>>, ModelError> {
        texts
            .iter()
            .map(|t| {
                self.tokenizer
                    .encode(*t, true)
                    .map(|e| e.get_ids().iter().map(|&i| i as i64).collect())
                    .map_err(|e| ModelError::Invalid(format!("tokenizing: {e}")))
            })
            .collect()
    }

    fn forward(&self, batch: &[Vec<i64>]) -> Tensor {
        let rows = batch.len() as i64;
        let width = batch.iter().map(Vec::len).max().unwrap_or(1).max(1) as i64;
        let mut ids = vec![self.pad_id; (rows * width) as usize];
        let mut mask = vec![0f32; (rows * width) as usize];
        for (r, seq) in batch.iter().enumerate() {
            for (c, &id) in seq.iter().enumerate() {
                ids[r * width as usize + c] = id;
                mask[r * width as usize + c] = 1.0;
            }
        }
        let ids = Tensor::from_slice(&ids)
            .view([rows, width])
            .to_device(self.device);
        let mask = Tensor::from_slice(&mask)
            .view([rows, width])
            .to_device(self.device);
        let positions = if self.roberta {
            (mask.cumsum(1, Kind::Int64) * mask.to_kind(Kind::Int64)) + self.pad_id
        } else {
            Tensor::arange(width, (Kind::Int64, self.device))
                .unsqueeze(0)
                .expand([rows, width], false)
        };
        let mut x = Tensor::embedding(
            self.w("embeddings.word_embeddings.weight"),
            &ids,
            -1,
            false,
            false,
        ) + Tensor::embedding(
            self.w("embeddings.position_embeddings.weight"),
            &positions,
            -1,
            false,
            false,
        );
        if let Some(types) = self.weights.get("embeddings.token_type_embeddings.weight") {
            x += types.get(0);
        }
        x = self.layer_norm(&x, "embeddings.LayerNorm");
        let head_dim = self.hidden / self.heads;
        // 0 where attending is allowed, a large negative number at padding.
        let bias = ((mask.ones_like() - &mask) * -1e9).view([rows, 1, 1, width]);
        let split = |t: Tensor| t.view([rows, width, self.heads, head_dim]).transpose(1, 2);
        for i in 0..self.layers {
            let p = format!("encoder.layer.{i}");
            let q = split(self.linear(&x, &format!("{p}.attention.self.query")));
            let k = split(self.linear(&x, &format!("{p}.attention.self.key")));
            let v = split(self.linear(&x, &format!("{p}.attention.self.value")));
            let scores = q.matmul(&k.transpose(-1, -2)) / (head_dim as f64).sqrt() + &bias;
            let context = scores
                .softmax(-1, Kind::Float)
                .matmul(&v)
                .transpose(1, 2)
                .contiguous()
                .view([rows, width, self.hidden]);
            let attended = self.linear(&context, &format!("{p}.attention.output.dense"));
            x = self.layer_norm(&(attended + &x), &format!("{p}.attention.output.LayerNorm"));
            let inner = self
                .linear(&x, &format!("{p}.intermediate.dense"))
                .gelu("none");
            let out = self.linear(&inner, &format!("{p}.output.dense"));
            x = self.layer_norm(&(out + &x), &format!("{p}.output.LayerNorm"));
        }
        let weights = mask.unsqueeze(-1);
        let summed = (x * &weights).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let counts = weights
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
            .clamp_min(1.0);
        let mean = summed / counts;
        let norm = mean
            .norm_scalaropt_dim(2, [1i64].as_slice(), true)
            .clamp_min(1e-12);
        mean / norm
    }

    /// Embeddings as a `[texts, hidden]` tensor (for tests against the reference).
    pub fn embed_tensor(&self, texts: &[&str]) -> Result<Tensor, ModelError> {
        let ids = self.encode(texts)?;
        guard(|| {
            let _no_grad = tch::no_grad_guard();
            let parts: Vec<Tensor> = ids.chunks(BATCH).map(|chunk| self.forward(chunk)).collect();
            Ok(Tensor::cat(&parts, 0).to_device(Device::Cpu))
        })
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }
}

impl Embedder for BertEmbedder {
    fn identity(&self) -> String {
        format!("bert:{}:{}", self.dir.display(), self.fingerprint)
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, StageError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let t = self
            .embed_tensor(texts)
            .map_err(|e| StageError::failed(e.to_string()))?;
        let flat: Vec<f32> = Vec::<f32>::try_from(t.flatten(0, -1))
            .map_err(|e| StageError::failed(e.to_string()))?;
        Ok(flat
            .chunks(self.hidden as usize)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::embed;

    fn minilm() -> Option<PathBuf> {
        crate::testing::env_path(crate::testing::Need::Models, "TW_MINILM")
    }

    fn texts() -> Vec<&'static str> {
        vec![
            "def add(a, b):\n    return a + b\n",
            "def add(a, b):\n    return a - b\n",
            "import heapq\n\ndef top_k(xs, k):\n    return heapq.nlargest(k, xs)  # the k largest, in order\n",
        ]
    }

    #[test]
    #[ignore = "needs all-MiniLM-L6-v2 and the HF reference: scripts/setup-models.sh, scripts/setup-torch.sh --with-hf (TW_REQUIRE_MODELS)"]
    fn minilm_mean_pooling_ignores_padding_and_matches_sentence_transformers() {
        let Some(dir) = minilm() else { return };
        let embedder = BertEmbedder::load(&dir, "cpu", 256).expect("load all-MiniLM-L6-v2");
        let batch = embedder.embed(&texts()).unwrap();
        // Alone, the short text has no padding; in the batch it is padded to the long one.
        let alone = embedder.embed(&texts()[..1]).unwrap();
        let drift = batch[0]
            .iter()
            .zip(&alone[0])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(drift < 1e-5, "padding changed the embedding by {drift}");
        for v in &batch {
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5);
        }
        let Some(python) =
            crate::testing::env_path(crate::testing::Need::Models, "TW_TORCH_PYTHON")
        else {
            return;
        };
        // The reference: transformers' BertModel, sentence-transformers' mean pooling and Normalize.
        let script = r#"
import json, sys, torch
from transformers import AutoModel, AutoTokenizer
d, texts = sys.argv[1], json.loads(sys.stdin.read())
tok = AutoTokenizer.from_pretrained(d)
model = AutoModel.from_pretrained(d).eval()
enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
with torch.no_grad():
    h = model(**enc).last_hidden_state
m = enc["attention_mask"].unsqueeze(-1).float()
e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1)
print(json.dumps(e.tolist()))
"#;
        let mut child = std::process::Command::new(python)
            .args(["-c", script])
            .arg(&dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the reference");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(serde_json::to_string(&texts()).unwrap().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "reference failed");
        let reference: Vec<Vec<f32>> = serde_json::from_slice(&out.stdout).unwrap();
        let worst = batch
            .iter()
            .flatten()
            .zip(reference.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "max |Δ| against transformers: {worst}");
        // The embedding ranks the one-operator edit closer than the unrelated program.
        let sim = |a: &[f32], b: &[f32]| embed::cosine(a, b);
        assert!(sim(&batch[0], &batch[1]) > sim(&batch[0], &batch[2]));
    }
}
