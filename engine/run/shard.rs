//! Sharded nodes: split a row-mapped input into chunks, run each chunk as its
//! own cached unit, and gather the units' outputs into the node's artifact.
//!
//! A shard's key is the node's pre-image with the row-mapped input replaced
//! by its chunk's content hash and the chunk's first row index (kinds number
//! rows with it). So after 20 problems are appended to a benchmark, every
//! full chunk before them keeps its key and only the new chunks run; a shard
//! that failed is the only one a rerun retries.

use super::commit::{Produced, cached, cached_or_commit};
use super::executor::Executor;
use super::unit::{Unit, UnitDone};
use crate::plan::PreImage;
use crate::spec::placement::ShardSpec;
use crate::spec::{Node, Spec};
use crate::store::{OutputRecord, Store};
use arrow::array::{Array, RecordBatch, UInt32Array};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tw_stages::api::{Progress, artifact};

/// Run a sharded node: cut its row-mapped input into parts, run the parts
/// that are not cached with `executor`, and gather their outputs into the
/// node's artifact, committed under the node's key (`unit`). Returns the
/// result and, when it ran, (shards, shards run now).
#[allow(clippy::too_many_arguments)]
pub fn run_sharded(
    spec: &Spec,
    store: &Store,
    node_index: usize,
    unit: &Unit,
    shard: &ShardSpec,
    executor: &Executor,
    progress: &dyn Progress,
    log: &(dyn Fn(String) + Sync),
) -> Result<(UnitDone, Option<(usize, usize)>), String> {
    let node = &spec.nodes()[node_index];
    let mut counts = None;
    let done = cached_or_commit(store, spec, node_index, unit, |staging| {
        let parts =
            split(store, node, shard, &unit.pre_image, &unit.inputs).map_err(|e| e.to_string())?;
        let units: Vec<Unit> = parts
            .iter()
            .map(|p| Unit {
                node: node.id.clone(),
                shard: Some(p.index),
                key: p.key.clone(),
                pre_image: p.pre.clone(),
                inputs: p.inputs.clone(),
                row_offset: p.offset,
                forced: unit.forced,
            })
            .collect();
        let mut done: Vec<Option<UnitDone>> = units
            .iter()
            .map(|u| {
                cached(store, &u.key, node.cache_policy, u.forced, None).map(|m| UnitDone {
                    outputs: m.outputs,
                    notes: m.notes,
                    seconds: 0.0,
                    cached: true,
                })
            })
            .collect();
        let todo: Vec<usize> = (0..units.len()).filter(|&k| done[k].is_none()).collect();
        log(format!(
            "  shards  {}  {} shard{} of up to {} rows: {} cached, {} to run",
            node.id,
            units.len(),
            if units.len() == 1 { "" } else { "s" },
            shard.rows,
            units.len() - todo.len(),
            todo.len()
        ));
        let todo_units: Vec<Unit> = todo.iter().map(|&k| units[k].clone()).collect();
        let results = executor.run_units(spec, store, node_index, &todo_units, progress, log);
        let mut failures = Vec::new();
        for (&k, result) in todo.iter().zip(results) {
            match result {
                Ok(d) => done[k] = Some(d),
                Err(e) => failures.push(format!(
                    "shard {k} (rows {}..{}): {e}",
                    parts[k].offset,
                    parts[k].offset + parts[k].rows
                )),
            }
        }
        if !failures.is_empty() {
            return Err(format!(
                "{} of {} shards failed; the {} that finished are cached, so a rerun runs only the failed ones: {}",
                failures.len(),
                units.len(),
                units.len() - failures.len(),
                failures.join("; ")
            ));
        }
        let done: Vec<UnitDone> = done
            .into_iter()
            .map(|d| d.expect("every shard done"))
            .collect();
        let gathered: Vec<(Part, BTreeMap<String, OutputRecord>)> = parts
            .iter()
            .cloned()
            .zip(done.iter().map(|d| d.outputs.clone()))
            .collect();
        let outputs =
            gather(store, &node.outputs, &gathered, staging).map_err(|e| e.to_string())?;
        let ran = done.iter().filter(|d| !d.cached).count();
        let mut notes = merge_notes(&done.iter().map(|d| d.notes.clone()).collect::<Vec<_>>());
        // Calls made now: a cached shard's calls were paid by an earlier run.
        if notes.contains_key("llm_calls") {
            let now: u64 = done
                .iter()
                .filter(|d| !d.cached)
                .filter_map(|d| d.notes.get("llm_calls").and_then(|v| v.as_u64()))
                .sum();
            notes.insert("llm_calls".into(), now.into());
        }
        notes.insert("shards".into(), units.len().into());
        notes.insert("shards_ran".into(), ran.into());
        notes.insert(
            "shard_keys".into(),
            units
                .iter()
                .map(|u| u.key.clone())
                .collect::<Vec<_>>()
                .into(),
        );
        counts = Some((units.len(), ran));
        Ok(Produced { outputs, notes })
    })?;
    Ok((done, counts))
}

/// One chunk of a sharded node: a unit of work with its own key.
#[derive(Debug, Clone)]
pub struct Part {
    pub index: usize,
    /// Rows of the whole input before this chunk.
    pub offset: usize,
    pub rows: usize,
    pub key: String,
    pub pre: PreImage,
    /// The node's input paths with the row-mapped slot bound to the chunk.
    pub inputs: BTreeMap<String, Vec<PathBuf>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("cannot read input `{slot}` to shard it: {message}")]
    Read { slot: String, message: String },
    #[error("input `{slot}` has no column `{column}`, which keeps a group's rows in one shard")]
    NoGroupColumn { slot: String, column: String },
    #[error("cannot write a shard's chunk: {0}")]
    Write(String),
    #[error(
        "shard {index}'s output `{output}` is missing from the cache (deleted while gathering?); run again"
    )]
    MissingPart { index: usize, output: String },
    #[error("cannot gather output `{output}`: {message}")]
    Gather { output: String, message: String },
}

/// Split `node`'s row-mapped input into parts keyed from the node's `pre`.
pub fn split(
    store: &Store,
    node: &Node,
    shard: &ShardSpec,
    pre: &PreImage,
    inputs: &BTreeMap<String, Vec<PathBuf>>,
) -> Result<Vec<Part>, ShardError> {
    let map = node
        .stage_impl
        .row_map(&node.params)
        .expect("only row-mapped kinds validate with `shard`");
    let slot = map.slot.to_string();
    let path = inputs
        .get(&slot)
        .and_then(|paths| paths.first())
        .ok_or_else(|| ShardError::Read {
            slot: slot.clone(),
            message: "not bound".into(),
        })?;
    let table = artifact::read_table(path).map_err(|e| ShardError::Read {
        slot: slot.clone(),
        message: e.to_string(),
    })?;
    let chunks = match &map.group {
        None => contiguous(table.num_rows(), shard.rows),
        Some(column) => {
            grouped(&table, column, shard.rows).ok_or_else(|| ShardError::NoGroupColumn {
                slot: slot.clone(),
                column: column.clone(),
            })?
        }
    };
    let mut parts = Vec::with_capacity(chunks.len());
    let mut offset = 0;
    for (index, rows) in chunks.into_iter().enumerate() {
        let indices = UInt32Array::from(rows.iter().map(|&r| r as u32).collect::<Vec<_>>());
        let chunk = arrow::compute::take_record_batch(&table, &indices)
            .map_err(|e| ShardError::Write(e.to_string()))?;
        let (hash, chunk_path) = store
            .put_chunk(&chunk)
            .map_err(|e| ShardError::Write(e.to_string()))?;
        let mut part_pre = pre.clone();
        part_pre.inputs.insert(slot.clone(), vec![hash]);
        part_pre.shard = Some(serde_json::json!({ "offset": offset }));
        let mut part_inputs = inputs.clone();
        part_inputs.insert(slot.clone(), vec![chunk_path]);
        parts.push(Part {
            index,
            offset,
            rows: rows.len(),
            key: part_pre.key(),
            pre: part_pre,
            inputs: part_inputs,
        });
        offset += rows.len();
    }
    Ok(parts)
}

/// Row indices of each chunk: runs of `size` rows; one empty chunk for an
/// empty input, so the node still writes its (empty) outputs.
fn contiguous(rows: usize, size: usize) -> Vec<Vec<usize>> {
    if rows == 0 {
        return vec![Vec::new()];
    }
    (0..rows)
        .step_by(size)
        .map(|start| (start..(start + size).min(rows)).collect())
        .collect()
}

/// Chunks of whole groups (rows with equal `column`), groups in order of
/// first appearance, each group's rows in input order; a chunk closes once it
/// holds `size` rows or more.
fn grouped(table: &RecordBatch, column: &str, size: usize) -> Option<Vec<Vec<usize>>> {
    let array = table.column_by_name(column)?;
    let text = arrow::compute::cast(array, &arrow::datatypes::DataType::Utf8).ok()?;
    let text = text.as_any().downcast_ref::<arrow::array::StringArray>()?;
    let mut order: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<Option<&str>, usize> = HashMap::new();
    for row in 0..text.len() {
        let value = (!text.is_null(row)).then(|| text.value(row));
        let group = *index.entry(value).or_insert_with(|| {
            order.push(Vec::new());
            order.len() - 1
        });
        order[group].push(row);
    }
    let mut chunks: Vec<Vec<usize>> = vec![Vec::new()];
    for group in order {
        let current = chunks.last_mut().expect("at least one chunk");
        if !current.is_empty() && current.len() >= size {
            chunks.push(group);
        } else {
            current.extend(group);
        }
    }
    Some(chunks)
}

/// Concatenate every part's outputs, in part order, into `dir`.
pub fn gather(
    store: &Store,
    outputs: &[String],
    parts: &[(Part, BTreeMap<String, OutputRecord>)],
    dir: &Path,
) -> Result<BTreeMap<String, OutputRecord>, ShardError> {
    let mut records = BTreeMap::new();
    for name in outputs {
        let mut batches = Vec::with_capacity(parts.len());
        for (part, outs) in parts {
            let record = outs.get(name).ok_or_else(|| ShardError::MissingPart {
                index: part.index,
                output: name.clone(),
            })?;
            let path = store.output_path(&part.key, record);
            let batch = artifact::read_table(&path).map_err(|_| ShardError::MissingPart {
                index: part.index,
                output: name.clone(),
            })?;
            batches.push(batch);
        }
        let table = concat(name, batches)?;
        let path = dir.join(format!("{name}.parquet"));
        artifact::write_table(&path, &table).map_err(|e| ShardError::Gather {
            output: name.clone(),
            message: e.to_string(),
        })?;
        let columns = table
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let record =
            OutputRecord::for_file(name, &path, table.num_rows(), columns).map_err(|e| {
                ShardError::Gather {
                    output: name.clone(),
                    message: e.to_string(),
                }
            })?;
        records.insert(name.clone(), record);
    }
    Ok(records)
}

/// Stack the parts' tables. An empty part may carry a narrower schema (a
/// kind infers some columns from its rows), so empty parts only decide the
/// schema when every part is empty.
fn concat(output: &str, batches: Vec<RecordBatch>) -> Result<RecordBatch, ShardError> {
    let non_empty: Vec<&RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).collect();
    let Some(first) = non_empty.first() else {
        return Ok(batches
            .into_iter()
            .next()
            .expect("a sharded node has at least one part"));
    };
    let schema = first.schema();
    for (i, b) in non_empty.iter().enumerate() {
        if b.schema().fields() != schema.fields() {
            return Err(ShardError::Gather {
                output: output.to_string(),
                message: format!(
                    "shards wrote different columns or types (shard with rows #{i} differs from the first); this kind cannot be sharded safely"
                ),
            });
        }
    }
    arrow::compute::concat_batches(&schema, non_empty).map_err(|e| ShardError::Gather {
        output: output.to_string(),
        message: e.to_string(),
    })
}

/// A gathered node's notes: counts summed over parts, maps merged key by
/// key the same way, values the parts agree on kept, anything else listed
/// per part.
pub fn merge_notes(
    parts: &[BTreeMap<String, serde_json::Value>],
) -> BTreeMap<String, serde_json::Value> {
    let mut keys: Vec<&String> = parts.iter().flat_map(|p| p.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let values: Vec<Option<&serde_json::Value>> =
                parts.iter().map(|p| p.get(key)).collect();
            (key.clone(), merge_values(&values))
        })
        .collect()
}

fn merge_values(values: &[Option<&serde_json::Value>]) -> serde_json::Value {
    use serde_json::Value as J;
    let present: Vec<&J> = values.iter().flatten().copied().collect();
    if present.iter().all(|v| v.as_u64().is_some()) {
        J::from(present.iter().filter_map(|v| v.as_u64()).sum::<u64>())
    } else if present.iter().all(|v| v.is_number()) {
        J::from(present.iter().filter_map(|v| v.as_f64()).sum::<f64>())
    } else if present.iter().all(|v| v.is_object()) {
        let mut keys: Vec<&String> = present
            .iter()
            .flat_map(|v| v.as_object().expect("checked").keys())
            .collect();
        keys.sort();
        keys.dedup();
        J::Object(
            keys.into_iter()
                .map(|k| {
                    let sub: Vec<Option<&J>> = present.iter().map(|v| v.get(k)).collect();
                    (k.clone(), merge_values(&sub))
                })
                .collect(),
        )
    } else if present.len() == values.len() && present.windows(2).all(|w| w[0] == w[1]) {
        present[0].clone()
    } else {
        J::Array(
            values
                .iter()
                .map(|v| v.cloned().unwrap_or(J::Null))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn contiguous_chunks_cover_every_row_once() {
        assert_eq!(
            contiguous(7, 3),
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]
        );
        assert_eq!(contiguous(3, 3), vec![vec![0, 1, 2]]);
        assert_eq!(contiguous(0, 3), vec![Vec::<usize>::new()]);
    }

    #[test]
    fn grouped_chunks_never_split_a_group() {
        let ids = StringArray::from(vec!["a", "a", "b", "c", "c", "c", "a", "d"]);
        let table = RecordBatch::try_from_iter([("id", Arc::new(ids) as _)]).unwrap();
        // `a` has a row after `c`: it still goes with the other `a` rows.
        assert_eq!(
            grouped(&table, "id", 2).unwrap(),
            vec![vec![0, 1, 6], vec![2, 3, 4, 5], vec![7]]
        );
        assert!(grouped(&table, "missing", 2).is_none());
    }

    #[test]
    fn notes_sum_counts_and_keep_agreed_values() {
        let a = BTreeMap::from([
            ("llm_calls".to_string(), json!(3)),
            ("model".to_string(), json!("m")),
            ("dropped".to_string(), json!({"x": 1})),
            ("label".to_string(), json!("a")),
        ]);
        let b = BTreeMap::from([
            ("llm_calls".to_string(), json!(4)),
            ("model".to_string(), json!("m")),
            ("dropped".to_string(), json!({"x": 2, "y": 2})),
            ("label".to_string(), json!("b")),
        ]);
        let merged = merge_notes(&[a, b]);
        assert_eq!(merged["llm_calls"], json!(7));
        assert_eq!(merged["model"], json!("m"));
        assert_eq!(merged["dropped"], json!({"x": 3, "y": 2}));
        assert_eq!(merged["label"], json!(["a", "b"]));
    }
}
