//! LLaMA-Factory's ShareGPT datasets: the `dataset_info.json` entry that
//! describes one, and which dataset names are safe as file names. `export_sft`
//! writes such datasets; the `sft` kind's LLaMA-Factory backend trains on them.

use serde_json::{Value, json};

/// LLaMA-Factory's `dataset_info.json` entry for a ShareGPT file whose records
/// hold `messages` as `{role, content}` turns, as the study registered its
/// datasets; with `system_tag`, a leading `system` turn is the system prompt.
pub fn sharegpt_dataset_info(file_name: &str, system_tag: bool) -> Value {
    let mut tags = json!({
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant"
    });
    if system_tag && let Some(t) = tags.as_object_mut() {
        t.insert("system_tag".into(), Value::String("system".into()));
    }
    json!({
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": { "messages": "messages" },
        "tags": tags
    })
}

/// Letters, digits and `_-.`: safe in a file name and a LLaMA-Factory dataset name.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
