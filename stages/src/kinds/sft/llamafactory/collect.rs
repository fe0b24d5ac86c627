//! After training: the checkpoint, the loss log as a table, and the run's
//! records, read back from what LLaMA-Factory wrote.

use crate::api::StageError;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;

use super::config::{LOG, OUTPUT_DIR};
use crate::llm::checkpoint;

/// Files of the checkpoint that record the run rather than define the model
/// (times, throughput): left out of its fingerprint.
pub(super) const RUN_RECORDS: [&str; 4] = [
    "trainer_state.json",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
];

/// What a finished run left: for the `model` row.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) steps: i64,
    pub(super) final_loss: Option<f64>,
    pub(super) trained_tokens: Option<i64>,
    pub(super) fingerprint: Option<String>,
}

/// Seconds of LLaMA-Factory's `elapsed_time` (`H:MM:SS`, or `N days, H:MM:SS`).
pub(super) fn seconds(text: &str) -> Option<f64> {
    let (days, clock) = match text.split_once(", ") {
        Some((d, c)) => (d.split_whitespace().next()?.parse::<f64>().ok()?, c),
        None => (0.0, text),
    };
    let mut total = 0.0;
    for part in clock.split(':') {
        total = total * 60.0 + part.trim().parse::<f64>().ok()?;
    }
    Some(days * 86400.0 + total)
}

/// The checkpoint, step count and loss curve of a finished run in `dir`.
pub(super) fn collect(dir: &Path) -> Result<(Outcome, Vec<Map<String, Value>>), StageError> {
    let checkpoint = dir.join(OUTPUT_DIR);
    if !checkpoint.is_dir() {
        return Err(StageError::failed(format!(
            "LLaMA-Factory finished without writing {OUTPUT_DIR}/ (its output_dir); see {LOG}"
        )));
    }
    let read_json = |name: &str| -> Option<Value> {
        let text = fs_err::read_to_string(checkpoint.join(name)).ok()?;
        serde_json::from_str(&text).ok()
    };
    let state = read_json("trainer_state.json");
    let history: Vec<Map<String, Value>> = state
        .as_ref()
        .and_then(|s| s.get("log_history"))
        .and_then(Value::as_array)
        .map(|h| h.iter().filter_map(|e| e.as_object().cloned()).collect())
        .unwrap_or_default();
    let step_of = |e: &Map<String, Value>, key: &str| e.get(key).and_then(Value::as_i64);
    let grad_norms: BTreeMap<i64, Value> = history
        .iter()
        .filter_map(|e| Some((step_of(e, "step")?, e.get("grad_norm")?.clone())))
        .collect();

    let log: Vec<Map<String, Value>> = fs_err::read_to_string(checkpoint.join("trainer_log.jsonl"))
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|v| v.as_object().cloned())
                .collect()
        })
        .unwrap_or_default();
    let mut loss = Vec::new();
    let mut last_seconds = 0.0;
    let mut last_tokens: Option<i64> = None;
    if log.is_empty() {
        // No trainer_log.jsonl: the HF trainer's own log history.
        for e in history.iter().filter(|e| e.contains_key("loss")) {
            let field = |k: &str| e.get(k).cloned().unwrap_or(Value::Null);
            loss.push(Map::from_iter([
                ("step".to_string(), field("step")),
                ("epoch".to_string(), field("epoch")),
                ("loss".to_string(), field("loss")),
                ("learning_rate".to_string(), field("learning_rate")),
                ("grad_norm".to_string(), field("grad_norm")),
            ]));
        }
    }
    for e in log.iter().filter(|e| e.contains_key("loss")) {
        let step = step_of(e, "current_steps");
        let mut r = Map::new();
        r.insert("step".into(), step.map(Value::from).unwrap_or(Value::Null));
        r.insert(
            "epoch".into(),
            e.get("epoch").cloned().unwrap_or(Value::Null),
        );
        r.insert("loss".into(), e.get("loss").cloned().unwrap_or(Value::Null));
        r.insert(
            "learning_rate".into(),
            e.get("lr").cloned().unwrap_or(Value::Null),
        );
        r.insert(
            "grad_norm".into(),
            step.and_then(|s| grad_norms.get(&s).cloned())
                .unwrap_or(Value::Null),
        );
        let tokens = e.get("total_tokens").and_then(Value::as_i64);
        r.insert(
            "tokens".into(),
            tokens
                .map(|t| Value::from(t - last_tokens.unwrap_or(0)))
                .unwrap_or(Value::Null),
        );
        if tokens.is_some() {
            last_tokens = tokens;
        }
        let elapsed = e
            .get("elapsed_time")
            .and_then(Value::as_str)
            .and_then(seconds);
        r.insert(
            "seconds".into(),
            elapsed
                .map(|s| json!(s - last_seconds))
                .unwrap_or(Value::Null),
        );
        if let Some(s) = elapsed {
            last_seconds = s;
        }
        loss.push(r);
    }
    let steps = state
        .as_ref()
        .and_then(|s| s.get("global_step"))
        .and_then(Value::as_i64)
        .or_else(|| log.iter().filter_map(|e| step_of(e, "current_steps")).max())
        .unwrap_or(0);
    let final_loss = loss
        .last()
        .and_then(|r| r.get("loss"))
        .and_then(Value::as_f64);
    let trained_tokens = last_tokens.or_else(|| {
        state
            .as_ref()
            .and_then(|s| s.get("num_input_tokens_seen"))
            .and_then(Value::as_i64)
            .filter(|&t| t > 0)
    });
    let fingerprint = fingerprint(&checkpoint)?;
    Ok((
        Outcome {
            steps,
            final_loss,
            trained_tokens,
            fingerprint: Some(fingerprint),
        },
        loss,
    ))
}

/// blake3 over the checkpoint's top-level JSON and safetensors files (names
/// and bytes, sorted), as the `tch` backend's fingerprint, without the files
/// that record the run (times) rather than the model.
pub(super) fn fingerprint(dir: &Path) -> Result<String, StageError> {
    let mut h = blake3::Hasher::new();
    for name in checkpoint::model_files(dir) {
        if RUN_RECORDS.contains(&name.as_str()) {
            continue;
        }
        h.update(name.as_bytes());
        h.update_reader(fs_err::File::open(dir.join(&name))?)?;
    }
    Ok(h.finalize().to_hex().to_string())
}
