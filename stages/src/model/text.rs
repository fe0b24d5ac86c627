//! Text in and out of a model: its `tokenizer.json` (the `tokenizers` crate) and
//! the chat template that turns messages into a prompt.

use super::ModelError;
use crate::llm::Message;
use crate::text::templates;
use std::path::{Path, PathBuf};

/// How chat messages become prompt text.
pub enum ChatFormat {
    /// The model's own Jinja template from `tokenizer_config.json`, rendered by
    /// minijinja with Python string methods (`.strip()`, `.startswith()`...).
    Hf {
        env: minijinja::Environment<'static>,
        bos_token: String,
        eos_token: String,
    },
    /// A `tw` chat format file (`templates/chat/chatml.j2`: LLaMA-Factory's formats).
    File {
        env: minijinja::Environment<'static>,
        name: String,
    },
}

impl std::fmt::Debug for ChatFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChatFormat::Hf { .. } => write!(f, "ChatFormat::Hf"),
            ChatFormat::File { name, .. } => write!(f, "ChatFormat::File({name})"),
        }
    }
}

impl ChatFormat {
    /// `hf` for the model's template, otherwise a path to a chat format file.
    pub fn open(spec: &str, model_dir: &Path) -> Result<Self, ModelError> {
        if spec == "hf" {
            let path = model_dir.join("tokenizer_config.json");
            let cfg = read_json(&path)?;
            let template = match cfg.get("chat_template") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Array(named)) => named
                    .iter()
                    .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                    .and_then(|t| t.get("template").and_then(|s| s.as_str()))
                    .map(String::from)
                    .ok_or_else(|| ModelError::Config {
                        path: path.clone(),
                        message: "no `default` chat template".into(),
                    })?,
                _ => {
                    return Err(ModelError::Config {
                        path,
                        message: "no `chat_template`; name a chat format file instead \
                                  (templates/chat/chatml.j2)"
                            .into(),
                    });
                }
            };
            let mut env = minijinja::Environment::new();
            env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
            env.add_function(
                "raise_exception",
                |m: String| -> Result<String, minijinja::Error> {
                    Err(minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        m,
                    ))
                },
            );
            env.add_template_owned("chat", template)
                .map_err(|e| ModelError::Config {
                    path: path.clone(),
                    message: format!("chat_template: {e}"),
                })?;
            let token = |k: &str| -> String {
                match cfg.get(k) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v) => v
                        .get("content")
                        .and_then(|c| c.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    None => String::new(),
                }
            };
            return Ok(ChatFormat::Hf {
                env,
                bos_token: token("bos_token"),
                eos_token: token("eos_token"),
            });
        }
        let path = PathBuf::from(spec);
        let (env, name) = templates::load_templates(&path).map_err(|e| ModelError::Config {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(ChatFormat::File { env, name })
    }

    /// The prompt for `messages`; with `add_generation_prompt`, ready for the
    /// assistant's reply.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        let err = |e: minijinja::Error| ModelError::Invalid(format!("chat template: {e}"));
        match self {
            ChatFormat::Hf {
                env,
                bos_token,
                eos_token,
            } => env
                .get_template("chat")
                .and_then(|t| {
                    t.render(minijinja::context! {
                        messages => minijinja::Value::from(minijinja::value::Serde(messages)),
                        add_generation_prompt => add_generation_prompt,
                        bos_token => bos_token,
                        eos_token => eos_token,
                    })
                })
                .map_err(err),
            // LLaMA-Factory formats end a user turn with the assistant header, so a
            // conversation ending with a user message is already a generation prompt.
            ChatFormat::File { env, name } => env
                .get_template(name)
                .and_then(|t| {
                    t.render(minijinja::context! {
                        messages => minijinja::Value::from(minijinja::value::Serde(messages)),
                        vars => minijinja::context! {},
                    })
                })
                .map_err(err),
        }
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, ModelError> {
    let text = fs_err::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A model's tokenizer and the ids that end generation.
pub struct Codec {
    tokenizer: tokenizers::Tokenizer,
    /// Prepend BOS to raw (non-chat) prompts (`add_bos_token`).
    pub add_bos: bool,
    pub bos_id: Option<i64>,
    pub eos_ids: Vec<i64>,
    pub pad_id: i64,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Codec(eos={:?})", self.eos_ids)
    }
}

impl Codec {
    /// `tokenizer.json`, plus `tokenizer_config.json` / `generation_config.json`
    /// and the config's ids for BOS, EOS and padding.
    pub fn open(dir: &Path, config: &super::ModelConfig) -> Result<Self, ModelError> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(ModelError::Config {
                path,
                message: "missing: the model directory needs its tokenizer.json".into(),
            });
        }
        let tokenizer =
            tokenizers::Tokenizer::from_file(&path).map_err(|e| ModelError::Config {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let mut eos_ids = config.eos_token_ids.clone();
        let mut add_bos = false;
        let mut pad_id = None;
        let tc_path = dir.join("tokenizer_config.json");
        if tc_path.is_file() {
            let tc = read_json(&tc_path)?;
            add_bos = tc
                .get("add_bos_token")
                .and_then(|b| b.as_bool())
                .unwrap_or(false);
            let token_id = |k: &str| {
                let name = match tc.get(k) {
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(v) => v.get("content").and_then(|c| c.as_str()).map(String::from),
                    None => None,
                };
                name.and_then(|n| tokenizer.token_to_id(&n)).map(i64::from)
            };
            eos_ids.extend(token_id("eos_token"));
            pad_id = token_id("pad_token");
        }
        let gc_path = dir.join("generation_config.json");
        if gc_path.is_file() {
            let gc = read_json(&gc_path)?;
            match gc.get("eos_token_id") {
                Some(serde_json::Value::Number(n)) => eos_ids.extend(n.as_i64()),
                Some(serde_json::Value::Array(a)) => {
                    eos_ids.extend(a.iter().filter_map(|x| x.as_i64()))
                }
                _ => {}
            }
        }
        eos_ids.sort_unstable();
        eos_ids.dedup();
        let pad_id = pad_id.or(eos_ids.first().copied()).unwrap_or(0);
        Ok(Codec {
            tokenizer,
            add_bos,
            bos_id: config.bos_token_id,
            eos_ids,
            pad_id,
        })
    }

    /// A codec with the tiny fixture vocabulary and the given end and padding ids,
    /// for benchmarks on random weights (ids outside the vocabulary decode to nothing).
    pub fn for_benchmark(eos_id: i64, pad_id: i64) -> Self {
        let json = super::fixture::tiny_tokenizer_json();
        let tokenizer = json
            .parse::<tokenizers::Tokenizer>()
            .expect("the fixture tokenizer parses");
        Codec {
            tokenizer,
            add_bos: false,
            bos_id: None,
            eos_ids: vec![eos_id],
            pad_id,
        }
    }

    /// Token ids of `text`; special tokens written in the text (`<|im_start|>`) are
    /// recognised, and nothing is added around it.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, ModelError> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::Invalid(format!("tokenizer: {e}")))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// A raw prompt's ids, with BOS when the model wants it.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<i64>, ModelError> {
        let mut ids = self.encode(text)?;
        if self.add_bos
            && let Some(bos) = self.bos_id
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    /// Text of generated ids, special tokens dropped.
    pub fn decode(&self, ids: &[i64]) -> Result<String, ModelError> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.tokenizer
            .decode(&ids, true)
            .map_err(|e| ModelError::Invalid(format!("tokenizer: {e}")))
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }
}
