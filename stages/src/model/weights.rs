//! Reading and writing HF safetensors checkpoints, name for name.

use super::ModelError;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tch::Tensor;
use tch::nn::VarStore;

/// The weight files of a model directory: one `model.safetensors`, or the shards
/// a `model.safetensors.index.json` lists.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = fs_err::read_to_string(&index)?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::Checkpoint {
                path: index.clone(),
                message: e.to_string(),
            })?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| ModelError::Checkpoint {
                path: index.clone(),
                message: "no `weight_map` object".into(),
            })?;
        let shards: BTreeSet<&str> = map.values().filter_map(|s| s.as_str()).collect();
        return Ok(shards.into_iter().map(|s| dir.join(s)).collect());
    }
    Err(ModelError::Checkpoint {
        path: dir.to_path_buf(),
        message: "no model.safetensors or model.safetensors.index.json here".into(),
    })
}

/// Copy every tensor of the checkpoint in `dir` into the variables of `vs`.
/// Every variable must be filled; shapes must match; extra tensors are an error
/// except rotary caches and a redundant `lm_head` of a tied model.
pub fn load_into(vs: &VarStore, dir: &Path, tied: bool) -> Result<(), ModelError> {
    let vars = vs.variables();
    let mut filled: BTreeSet<String> = BTreeSet::new();
    let mut unexpected: Vec<String> = Vec::new();
    for file in weight_files(dir)? {
        if !file.is_file() {
            return Err(ModelError::Checkpoint {
                path: file,
                message: "shard listed in the index is missing".into(),
            });
        }
        let tensors = Tensor::read_safetensors(&file).map_err(|e| ModelError::Checkpoint {
            path: file.clone(),
            message: e.to_string(),
        })?;
        copy_named(
            &vars,
            tensors,
            &file,
            &mut filled,
            &mut unexpected,
            |name| name.ends_with("rotary_emb.inv_freq") || (tied && name == "lm_head.weight"),
        )?;
    }
    finish(&vars, &filled, &unexpected, dir)
}

pub(crate) fn copy_named(
    vars: &HashMap<String, Tensor>,
    tensors: Vec<(String, Tensor)>,
    file: &Path,
    filled: &mut BTreeSet<String>,
    unexpected: &mut Vec<String>,
    ignorable: impl Fn(&str) -> bool,
) -> Result<(), ModelError> {
    let _guard = tch::no_grad_guard();
    for (name, tensor) in tensors {
        match vars.get(&name) {
            Some(var) => {
                if var.size() != tensor.size() {
                    return Err(ModelError::Checkpoint {
                        path: file.to_path_buf(),
                        message: format!(
                            "tensor `{name}` has shape {:?}, the model expects {:?}",
                            tensor.size(),
                            var.size()
                        ),
                    });
                }
                let mut var = var.shallow_clone();
                var.f_copy_(&tensor.to_kind(var.kind()))
                    .map_err(|e| ModelError::Checkpoint {
                        path: file.to_path_buf(),
                        message: format!("tensor `{name}`: {e}"),
                    })?;
                filled.insert(name);
            }
            None if ignorable(&name) => {}
            None => unexpected.push(name),
        }
    }
    Ok(())
}

pub(crate) fn finish(
    vars: &HashMap<String, Tensor>,
    filled: &BTreeSet<String>,
    unexpected: &[String],
    dir: &Path,
) -> Result<(), ModelError> {
    let missing: Vec<&String> = vars.keys().filter(|k| !filled.contains(*k)).collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        let mut missing: Vec<&String> = missing;
        missing.sort();
        let show = |v: &[&String]| {
            let mut s = v
                .iter()
                .take(4)
                .map(|x| format!("`{x}`"))
                .collect::<Vec<_>>()
                .join(", ");
            if v.len() > 4 {
                s.push_str(&format!(" and {} more", v.len() - 4));
            }
            s
        };
        let unexpected: Vec<&String> = unexpected.iter().collect();
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing {}", show(&missing)));
        }
        if !unexpected.is_empty() {
            parts.push(format!("unexpected {}", show(&unexpected)));
        }
        return Err(ModelError::Checkpoint {
            path: dir.to_path_buf(),
            message: format!(
                "the checkpoint does not match config.json: {}",
                parts.join("; ")
            ),
        });
    }
    Ok(())
}

/// Write `tensors` as one safetensors file, sorted by name, via a temporary file
/// so a crash never leaves a truncated checkpoint behind.
pub fn write(tensors: BTreeMap<String, Tensor>, path: &Path) -> Result<(), ModelError> {
    let tmp = path.with_extension("safetensors.partial");
    let list: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(k, t)| (k, t.to_device(tch::Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&list, &tmp).map_err(|e| ModelError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    fs_err::rename(&tmp, path)?;
    Ok(())
}
