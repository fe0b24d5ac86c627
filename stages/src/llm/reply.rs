//! DSPy's ChatAdapter message format (the paper's appendix E prompts) and the
//! readers for model replies: fields between `[[ ## name ## ]]` markers, and
//! the code inside a reply.
//!
//! The format follows DSPy 2.6's `ChatAdapter`: a system message that lists
//! the input and output fields, shows the structure with `{name}`
//! placeholders and states the objective; a user message with each input
//! field under its marker and the request to answer field by field, ending
//! with `[[ ## completed ## ]]`.
//!
//! Code extraction differs from the seed on purpose: its `post_process_code`
//! turned a reply with an unterminated ```` ```python ```` fence into the
//! fence's first character. Here an unterminated fence yields everything after
//! it, so code is never cut to a letter.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One field of a signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: String,
    #[serde(default = "str_type", rename = "type")]
    pub type_name: String,
    #[serde(default)]
    pub desc: String,
}

fn str_type() -> String {
    "str".into()
}

/// A DSPy signature: input fields, output fields, instructions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub inputs: Vec<Field>,
    pub outputs: Vec<Field>,
    /// Defaults to DSPy's "Given the fields `a`, produce the fields `b`."
    #[serde(default)]
    pub instructions: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

fn quoted(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| format!("`{}`", f.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(fields: &[Field]) -> String {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut s = format!("{}. `{}` ({})", i + 1, f.name, f.type_name);
            if !f.desc.is_empty() {
                s.push_str(": ");
                s.push_str(&f.desc);
            }
            s
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn with_values<'a>(fields: impl Iterator<Item = (&'a str, String)>) -> String {
    fields
        .map(|(name, value)| format!("[[ ## {name} ## ]]\n{value}"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

impl Signature {
    /// The instructions, or DSPy's default built from the non-reasoning fields.
    pub fn objective(&self) -> String {
        self.instructions.clone().unwrap_or_else(|| {
            let outputs: Vec<Field> = self
                .outputs
                .iter()
                .filter(|f| f.name != "reasoning")
                .cloned()
                .collect();
            format!(
                "Given the fields {}, produce the fields {}.",
                quoted(&self.inputs),
                quoted(&outputs)
            )
        })
    }

    pub fn system_message(&self) -> String {
        let placeholders = |fields: &[Field]| {
            with_values(
                fields
                    .iter()
                    .map(|f| (f.name.as_str(), format!("{{{}}}", f.name))),
            )
        };
        let structure = [
            "All interactions will be structured in the following way, with the appropriate values filled in."
                .to_string(),
            placeholders(&self.inputs),
            placeholders(&self.outputs),
            "[[ ## completed ## ]]".to_string(),
        ]
        .join("\n\n");
        let objective: String = self
            .objective()
            .lines()
            .map(|l| format!("\n        {l}"))
            .collect();
        [
            format!(
                "Your input fields are:\n{}\n\nYour output fields are:\n{}",
                describe(&self.inputs),
                describe(&self.outputs)
            ),
            structure,
            format!("In adhering to this structure, your objective is: {objective}"),
        ]
        .join("\n\n")
    }

    pub fn user_message(&self, values: &BTreeMap<String, String>) -> Result<String, ReplyError> {
        let mut parts = Vec::new();
        for f in &self.inputs {
            let value = values
                .get(&f.name)
                .ok_or_else(|| ReplyError::MissingInput(f.name.clone()))?;
            parts.push(with_values(std::iter::once((
                f.name.as_str(),
                value.clone(),
            ))));
        }
        let order: Vec<String> = self
            .outputs
            .iter()
            .map(|f| format!("`[[ ## {} ## ]]`", f.name))
            .collect();
        parts.push(format!(
            "Respond with the corresponding output fields, starting with the field {}, and then ending with the marker for `[[ ## completed ## ]]`.",
            order.join(", then ")
        ));
        Ok(parts.join("\n\n"))
    }

    /// An assistant turn in the format (for few-shot demos and SFT targets).
    pub fn assistant_message(&self, values: &BTreeMap<String, String>) -> String {
        let body = with_values(self.outputs.iter().map(|f| {
            (
                f.name.as_str(),
                values.get(&f.name).cloned().unwrap_or_default(),
            )
        }));
        format!("{body}\n\n[[ ## completed ## ]]\n")
    }

    pub fn messages(&self, values: &BTreeMap<String, String>) -> Result<Vec<Message>, ReplyError> {
        Ok(vec![
            Message {
                role: "system".into(),
                content: self.system_message(),
            },
            Message {
                role: "user".into(),
                content: self.user_message(values)?,
            },
        ])
    }

    /// The output fields of a reply. Every output field must be present.
    pub fn parse_reply(&self, reply: &str) -> Result<BTreeMap<String, String>, ReplyError> {
        let sections = split_sections(reply);
        let mut fields = BTreeMap::new();
        for (name, text) in sections {
            if let Some(name) = name
                && self.outputs.iter().any(|f| f.name == name)
                && !fields.contains_key(&name)
            {
                fields.insert(name, text);
            }
        }
        let missing: Vec<String> = self
            .outputs
            .iter()
            .filter(|f| !fields.contains_key(&f.name))
            .map(|f| f.name.clone())
            .collect();
        if missing.is_empty() {
            Ok(fields)
        } else {
            Err(ReplyError::MissingFields {
                missing,
                found: fields.keys().cloned().collect(),
            })
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReplyError {
    #[error("the reply lacks the field(s) {missing:?} (it has {found:?})")]
    MissingFields {
        missing: Vec<String>,
        found: Vec<String>,
    },
    #[error("no value for the input field `{0}`")]
    MissingInput(String),
}

/// `(field, text)` sections of a reply split at `[[ ## name ## ]]` lines; text
/// before the first marker has no name.
fn split_sections(reply: &str) -> Vec<(Option<String>, String)> {
    let mut sections: Vec<(Option<String>, Vec<&str>)> = vec![(None, Vec::new())];
    for line in reply.lines() {
        let trimmed = line.trim();
        if let Some((name, rest)) = marker(trimmed) {
            sections.push((Some(name.to_string()), Vec::new()));
            if !rest.is_empty()
                && let Some(last) = sections.last_mut()
            {
                last.1.push(rest);
            }
        } else if let Some(last) = sections.last_mut() {
            last.1.push(line);
        }
    }
    sections
        .into_iter()
        .map(|(k, v)| (k, v.join("\n").trim().to_string()))
        .collect()
}

/// `[[ ## name ## ]] rest` at the start of a line: the name (word characters)
/// and what follows.
fn marker(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("[[ ## ")?;
    let end = rest.find(" ## ]]")?;
    let name = &rest[..end];
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some((name, rest[end + 6..].trim()))
}

/// The text of field `name` in a reply: the first section under a
/// `[[ ## name ## ]]` marker line, by DSPy's own splitting ([`Signature::parse_reply`]
/// reads the same sections); `None` when the reply has no such marker.
pub fn field(reply: &str, name: &str) -> Option<String> {
    split_sections(reply)
        .into_iter()
        .find(|(n, _)| n.as_deref() == Some(name))
        .map(|(_, text)| text)
}

/// Field `name`, or the whole reply when it has no such marker (a model that
/// answered in plain text).
pub fn field_or_all(reply: &str, name: &str) -> String {
    field(reply, name).unwrap_or_else(|| reply.to_string())
}

/// A reply read as DSPy output fields (`[[ ## code ## ]]`), or as plain text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    pub reasoning: String,
    pub code: String,
}

/// The `reasoning` and the program of a reply. Code is the content of the
/// `code` field when the reply has DSPy markers, else the whole reply; in
/// both, the last complete fenced block wins and an unterminated fence keeps
/// its whole body (never its first character, the seed's bug).
pub fn parse_reply(text: &str) -> Reply {
    Reply {
        reasoning: field(text, "reasoning").unwrap_or_default(),
        code: extract_code(&field_or_all(text, "code"), "python"),
    }
}

/// A judge's answer: the first integer in its `field` (or in the whole reply
/// when it has no such marker).
pub fn parse_index(reply: &str, field: &str) -> Option<i64> {
    static INTEGER: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = INTEGER.get_or_init(|| regex::Regex::new(r"-?\d+").expect("valid regex"));
    re.find(&field_or_all(reply, field))
        .and_then(|m| m.as_str().parse().ok())
}

/// The code in a model reply: the last complete fenced block tagged
/// `language` (or untagged); else the body of an unterminated fence; else the
/// reply itself, trimmed.
pub fn extract_code(reply: &str, language: &str) -> String {
    let lines: Vec<&str> = reply.lines().collect();
    let mut blocks: Vec<String> = Vec::new();
    let mut open: Option<(usize, bool)> = None;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if let Some(tag) = t.strip_prefix("```") {
            match open {
                None => {
                    let tag = tag.trim().to_ascii_lowercase();
                    let wanted = tag.is_empty()
                        || tag == language
                        || (language == "python" && (tag == "py" || tag == "python3"));
                    open = Some((i + 1, wanted));
                }
                Some((start, wanted)) if tag.trim().is_empty() => {
                    if wanted {
                        blocks.push(lines[start..i].join("\n"));
                    }
                    open = None;
                }
                Some(_) => {}
            }
        }
    }
    if let Some(last) = blocks.pop() {
        return last;
    }
    if let Some((start, true)) = open {
        return lines[start..].join("\n").trim_end().to_string();
    }
    reply.trim().to_string()
}

/// The first JSON object in a reply (prose around it, or a `{` that starts
/// no JSON before it, passed over).
pub fn first_json_object(reply: &str) -> Option<serde_json::Value> {
    reply.match_indices('{').find_map(|(start, _)| {
        serde_json::Deserializer::from_str(&reply[start..])
            .into_iter::<serde_json::Value>()
            .next()
            .and_then(Result::ok)
            .filter(serde_json::Value::is_object)
    })
}

/// The first word of a reply that is `yes` or `no`, any case.
pub fn first_yes_no(reply: &str) -> Option<&'static str> {
    reply.split(|c: char| !c.is_alphanumeric()).find_map(|w| {
        match w.to_ascii_lowercase().as_str() {
            "yes" => Some("yes"),
            "no" => Some("no"),
            _ => None,
        }
    })
}

/// Which CRUXEval task a completion answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CruxTask {
    Input,
    Output,
}

/// The answer CRUXEval's harness (`inference/tasks/*_prediction.py`,
/// `postprocess_generation`) takes from a completion that follows its prompt:
/// with CoT the text after the first `[ANSWER]`; then for output prediction
/// what follows the first `==`, for input prediction what precedes it, less
/// the `assert`. Python's `split(sep)[1]` takes the piece up to the next
/// separator, so that is kept too.
pub fn cruxeval_answer(reply: &str, task: CruxTask, cot: bool) -> String {
    let mut text = reply.to_string();
    if cot && text.contains("[ANSWER]") {
        text = text
            .split("[ANSWER]")
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_string();
    }
    if text.contains("==") {
        let mut parts = text.split("==");
        text = match task {
            CruxTask::Output => parts.nth(1),
            CruxTask::Input => parts.next(),
        }
        .unwrap_or("")
        .trim()
        .to_string();
    }
    if task == CruxTask::Input && text.contains("assert") {
        text = text.split("assert").nth(1).unwrap_or("").trim().to_string();
    }
    text.trim().to_string()
}

/// Template function: `chat_adapter(signature, values)` -> messages.
pub fn chat_adapter_function(
    signature: minijinja::Value,
    values: minijinja::Value,
) -> Result<minijinja::Value, minijinja::Error> {
    let bad = |e: String| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e);
    let signature: Signature = serde_json::to_value(&signature)
        .and_then(serde_json::from_value)
        .map_err(|e| bad(format!("chat_adapter: not a signature: {e}")))?;
    let values: BTreeMap<String, String> = serde_json::to_value(&values)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            bad(format!(
                "chat_adapter: values must map field names to text: {e}"
            ))
        })?;
    let messages = signature
        .messages(&values)
        .map_err(|e| bad(format!("chat_adapter: {e}")))?;
    Ok(minijinja::Value::from(minijinja::value::Serde(&messages)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_give_their_code_field_or_their_last_block() {
        let r = parse_reply(
            "[[ ## reasoning ## ]]\nloop\n\n[[ ## code ## ]]\n```python\ndef f():\n    return 1\n```\n\n[[ ## completed ## ]]",
        );
        assert_eq!(r.reasoning, "loop");
        assert_eq!(r.code, "def f():\n    return 1");
        // An unterminated fence keeps its body (the seed kept its first character).
        assert_eq!(
            parse_reply("```python\ndef g(): pass").code,
            "def g(): pass"
        );
    }

    fn self_debug() -> Signature {
        Signature {
            inputs: vec![Field { name: "prompt".into(), type_name: "str".into(), desc: String::new() }],
            outputs: vec![
                Field { name: "reasoning".into(), type_name: "str".into(), desc: String::new() },
                Field {
                    name: "code".into(),
                    type_name: "str".into(),
                    desc: "Here is the past history of your code and the test case feedback. Please reason why your code fail in the last round, and correct the code. Do not write non-code content in the code field.".into(),
                },
            ],
            instructions: None,
        }
    }

    #[test]
    fn cruxeval_answers_are_cut_like_the_benchmark_harness() {
        let out = "assert f(\"hi\") == \"bhihia\"\n[/ANSWER]";
        // Without CoT the completion starts right after `[ANSWER]\n`; the stop
        // word `[/ANSWER]` is usually cut by the server, but not always.
        assert_eq!(
            cruxeval_answer(out, CruxTask::Output, false),
            "\"bhihia\"\n[/ANSWER]"
        );
        assert_eq!(
            cruxeval_answer("assert f(\"hi\") == \"bhihia\"", CruxTask::Output, false),
            "\"bhihia\""
        );
        let cot = "Let's execute: s becomes \"hihi\".\n[/THOUGHT]\n[ANSWER]\nassert f(\"hi\") == \"bhihia\"\n";
        assert_eq!(cruxeval_answer(cot, CruxTask::Output, true), "\"bhihia\"");
        assert_eq!(
            cruxeval_answer("assert f(16) == 17", CruxTask::Input, false),
            "f(16)"
        );
        assert_eq!(
            cruxeval_answer(
                "think\n[ANSWER]\nassert f([1, 2]) == 3\n",
                CruxTask::Input,
                true
            ),
            "f([1, 2])"
        );
        // No `==`: the whole (trimmed) text.
        assert_eq!(cruxeval_answer(" 42 ", CruxTask::Output, false), "42");
    }

    #[test]
    fn parses_fields_and_requires_all_outputs() {
        let reply = "[[ ## reasoning ## ]]\nOff by one.\n\n[[ ## code ## ]]\n```python\ndef f(x):\n    return x + 1\n```\n\n[[ ## completed ## ]]\n";
        let fields = self_debug().parse_reply(reply).unwrap();
        assert_eq!(fields["reasoning"], "Off by one.");
        assert_eq!(
            extract_code(&fields["code"], "python"),
            "def f(x):\n    return x + 1"
        );
        let err = self_debug()
            .parse_reply("[[ ## reasoning ## ]]\nonly this")
            .unwrap_err();
        assert_eq!(
            err,
            ReplyError::MissingFields {
                missing: vec!["code".into()],
                found: vec!["reasoning".into()]
            }
        );
    }

    #[test]
    fn an_unterminated_fence_keeps_all_its_code() {
        // The seed's post_process_code returned "d" here (its Fig. 9 NameError).
        let reply = "```python\ndef solve():\n    n = int(input())\n    print(n * 2)\nsolve()";
        assert_eq!(
            extract_code(reply, "python"),
            "def solve():\n    n = int(input())\n    print(n * 2)\nsolve()"
        );
        // The last complete python block wins; other languages are skipped.
        let two = "```text\nignore\n```\n```python\na = 1\n```\nthen\n```py\nb = 2\n```";
        assert_eq!(extract_code(two, "python"), "b = 2");
        assert_eq!(extract_code("  x = 1  \n", "python"), "x = 1");
    }
}
