//! The minijinja environment every `tw` template renders in (`render`,
//! `represent`, `tw trace`): strict undefined variables, trailing newlines
//! kept, and the helpers the trace and prompt templates use.
//!
//! Helpers (filters unless noted):
//! - `compress(items, threshold=3, keep_first=2)`: a list longer than
//!   `threshold` becomes its first `keep_first` items, the string `"..."`, and
//!   its last item (NExT's loop compression).
//! - `by_line(states)`: states grouped per source line, ascending: a list of
//!   `{line, init, locals, ends, all}` where `ends` holds returns and exceptions.
//! - `attach(code, notes, sep=" #")`: append each `[line, text]` of `notes` to
//!   that 1-based line of `code` (notes for lines outside the code are dropped).
//! - `pyrepr(s)`: Python's `repr` of a string; `pylist(items)`: of a list of strings.
//! - `cut(s, n)`: PySnooper's middle cut to `n` characters.
//! - `wrap_first(s, width=100)`: the first line of `textwrap.wrap(s, width)`.
//! - `token_count(s, tokenizer="cl100k_base")` (filter and function).
//! - `extract_code(text, language="python")`: the code of a model reply (see `reply.rs`).
//! - `chat_adapter(...)`: see `reply.rs`, DSPy's ChatAdapter messages (function).
//! - `to_json(v)`: compact JSON with non-ASCII kept (minijinja's `tojson`
//!   escapes `<`, `>`, `&` and `'` for HTML, which prompts must not contain).
//! - `from_json(s)`: parse JSON text (a `messages` column, a list of rounds).
//! - `head(s, n)`: the first `n` characters (the seed's `safe_str` cut).
//! - `fail(message)` (function): stop rendering with this error.
//! - `cruxeval_answer(reply, task, cot=false)`: the answer CRUXEval's own
//!   harness extracts from a completion (`task`: `input` or `output`).

use crate::llm::reply;
use crate::python::pyvalue;
use crate::text::tokens::Tokenizer;
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use std::collections::BTreeMap;

/// A fresh environment with `tw`'s settings and helpers.
pub fn environment() -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let mut syntax = minijinja::syntax::SyntaxConfig::builder();
    syntax.keep_trailing_newline(true);
    env.set_syntax(syntax.build()?);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_filter("compress", compress);
    env.add_filter("by_line", by_line);
    env.add_filter("attach", attach);
    env.add_filter("pyrepr", |s: String| pyvalue::py_str_repr(&s));
    env.add_filter("pylist", pylist);
    env.add_filter("cut", |s: String, n: usize| pyvalue::middle_cut(&s, n));
    env.add_filter("wrap_first", |s: String, width: Option<usize>| {
        pyvalue::wrap_first_line(&s, width.unwrap_or(100))
    });
    env.add_filter("token_count", token_count);
    env.add_function("token_count", token_count);
    env.add_filter("extract_code", |text: String, language: Option<String>| {
        reply::extract_code(&text, language.as_deref().unwrap_or("python"))
    });
    env.add_function("chat_adapter", reply::chat_adapter_function);
    env.add_function("fail", |message: String| -> Result<Value, Error> {
        Err(invalid(message))
    });
    env.add_filter("to_json", to_json);
    env.add_filter("from_json", from_json);
    env.add_filter("head", |s: String, n: usize| {
        s.chars().take(n).collect::<String>()
    });
    env.add_filter("cruxeval_answer", cruxeval_answer);
    env.add_filter("cwm_trace", cwm_trace);
    Ok(env)
}

/// `{{ test|cwm_trace(program) }}`: one run in CWM's trace format
/// (context, frames, end marker), from the test's `steps`.
fn cwm_trace(test: Value, program: String) -> Result<String, Error> {
    let steps = test.get_attr("steps")?;
    let json = serde_json::to_value(&steps).map_err(|e| invalid(format!("cwm_trace: {e}")))?;
    let steps: Vec<super::cwm::StepIn> =
        serde_json::from_value(json).map_err(|e| invalid(format!("cwm_trace: steps: {e}")))?;
    Ok(super::cwm::render(&program, &steps))
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

fn compress(items: Vec<Value>, kwargs: Kwargs) -> Result<Vec<Value>, Error> {
    let threshold: Option<usize> = kwargs.get("threshold")?;
    let keep_first: Option<usize> = kwargs.get("keep_first")?;
    kwargs.assert_all_used()?;
    let threshold = threshold.unwrap_or(3);
    let keep_first = keep_first.unwrap_or(2);
    if items.len() <= threshold || items.len() <= keep_first + 1 {
        return Ok(items);
    }
    let mut out: Vec<Value> = items[..keep_first].to_vec();
    out.push(Value::from("..."));
    out.push(items[items.len() - 1].clone());
    Ok(out)
}

fn by_line(states: Vec<Value>) -> Result<Vec<Value>, Error> {
    #[derive(Default)]
    struct Group {
        init: Vec<Value>,
        locals: Vec<Value>,
        ends: Vec<Value>,
        all: Vec<Value>,
    }
    let mut groups: BTreeMap<i64, Group> = BTreeMap::new();
    for state in states {
        let line = state
            .get_attr("line")?
            .as_i64()
            .ok_or_else(|| invalid("by_line: a state without a numeric `line`"))?;
        let kind = state.get_attr("kind")?;
        let group = groups.entry(line).or_default();
        match kind.as_str() {
            Some("init") => group.init.push(state.clone()),
            Some("locals") => group.locals.push(state.clone()),
            Some("return") | Some("exception") => group.ends.push(state.clone()),
            _ => return Err(invalid("by_line: a state of unknown `kind`")),
        }
        group.all.push(state);
    }
    Ok(groups
        .into_iter()
        .map(|(line, g)| {
            minijinja::context! {
                line => line,
                init => g.init,
                locals => g.locals,
                ends => g.ends,
                all => g.all,
            }
        })
        .collect())
}

fn attach(code: String, notes: Vec<Value>, sep: Option<String>) -> Result<String, Error> {
    let sep = sep.unwrap_or_else(|| " #".into());
    let mut lines: Vec<String> = code.split('\n').map(String::from).collect();
    for note in notes {
        let line = note
            .get_item(&Value::from(0))?
            .as_i64()
            .ok_or_else(|| invalid("attach: each note is [line, text]"))?;
        let text = note.get_item(&Value::from(1))?;
        if line >= 1
            && let Some(target) = lines.get_mut((line - 1) as usize)
        {
            target.push_str(&sep);
            target.push_str(&text.to_string());
        }
    }
    Ok(lines.join("\n"))
}

fn pylist(items: Vec<Value>) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|v| pyvalue::py_str_repr(&v.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

fn to_json(value: Value) -> Result<String, Error> {
    serde_json::to_string(&value).map_err(|e| invalid(format!("to_json: {e}")))
}

fn from_json(text: String) -> Result<Value, Error> {
    let parsed: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        let shown: String = text.chars().take(60).collect();
        invalid(format!("from_json: not JSON ({e}): `{shown}`"))
    })?;
    Ok(json_value(&parsed))
}

/// A JSON value as a template value. Going through serde would not do:
/// with serde_json's `arbitrary_precision` (kept so big integers survive) a
/// number serializes as a private one-key map, and `{{ n + 1 }}` would fail.
/// Integers become integers (up to 128 bits), other numbers floats; object
/// keys keep their order.
pub fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            let text = n.to_string();
            match text.parse::<i128>() {
                Ok(i) => Value::from(i),
                Err(_) => Value::from(n.as_f64().unwrap_or(f64::NAN)),
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(json_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), json_value(v)))
                .collect::<indexmap::IndexMap<Value, Value>>(),
        ),
    }
}

fn cruxeval_answer(reply: String, task: String, kwargs: Kwargs) -> Result<String, Error> {
    let cot: Option<bool> = kwargs.get("cot")?;
    kwargs.assert_all_used()?;
    let task = match task.as_str() {
        "input" => reply::CruxTask::Input,
        "output" => reply::CruxTask::Output,
        other => {
            return Err(invalid(format!(
                "cruxeval_answer: task must be `input` or `output`, not `{other}`"
            )));
        }
    };
    Ok(reply::cruxeval_answer(&reply, task, cot.unwrap_or(false)))
}

fn token_count(text: String, tokenizer: Option<String>) -> Result<usize, Error> {
    let name = tokenizer.unwrap_or_else(|| "cl100k_base".into());
    let tokenizer = Tokenizer::parse(&name).ok_or_else(|| {
        invalid(format!(
            "unknown tokenizer `{name}` (known: {})",
            Tokenizer::NAMES.join(", ")
        ))
    })?;
    Ok(tokenizer.count(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, ctx: Value) -> String {
        let mut env = environment().unwrap();
        env.add_template_owned("t", source.to_string()).unwrap();
        env.get_template("t").unwrap().render(ctx).unwrap()
    }

    #[test]
    fn json_numbers_are_numbers_and_key_order_is_kept() {
        let ctx =
            minijinja::context! { s => r#"{"z": 5, "a": 12345678901234567890123, "f": 0.5}"# };
        assert_eq!(
            render(
                "{% set v = s|from_json %}{{ v.z + 1 }} {{ v.a }} {{ v.f * 2 }} {{ v|list|join(',') }}",
                ctx.clone()
            ),
            "6 12345678901234567890123 1.0 z,a,f"
        );
        assert_eq!(
            render("{{ (s|from_json)|to_json }}", ctx),
            r#"{"z":5,"a":12345678901234567890123,"f":0.5}"#
        );
        let err = {
            let mut env = environment().unwrap();
            env.add_template_owned("t", "{{ 'nope'|from_json }}".to_string())
                .unwrap();
            env.get_template("t").unwrap().render(()).unwrap_err()
        };
        assert!(err.to_string().contains("from_json: not JSON"), "{err}");
    }

    #[test]
    fn compress_keeps_first_entries_an_ellipsis_and_the_last() {
        let ctx = minijinja::context! { xs => (1..=6).collect::<Vec<i64>>() };
        assert_eq!(
            render("{{ xs|compress|join(',') }}", ctx.clone()),
            "1,2,...,6"
        );
        assert_eq!(
            render("{{ xs|compress(threshold=6)|join(',') }}", ctx.clone()),
            "1,2,3,4,5,6"
        );
        assert_eq!(
            render("{{ xs|compress(keep_first=3)|join(',') }}", ctx),
            "1,2,3,...,6"
        );
    }

    #[test]
    fn attach_appends_notes_to_lines_in_order() {
        let ctx = minijinja::context! { code => "a\nb\nc" };
        let out = render(
            "{{ code|attach([[2, 'x'], [0, 'dropped'], [2, 'y'], [9, 'dropped'], [3, 'z']]) }}",
            ctx,
        );
        assert_eq!(out, "a\nb #x #y\nc #z");
    }

    #[test]
    fn python_reprs_and_token_counts() {
        let ctx = minijinja::context! { s => "i = 'l'" };
        assert_eq!(
            render("{{ [s]|pylist }} {{ s|pyrepr }}", ctx),
            "[\"i = 'l'\"] \"i = 'l'\""
        );
        let ctx = minijinja::context! { s => "hello world" };
        assert_eq!(
            render(
                "{{ s|token_count }} {{ token_count(s, 'o200k_base') }}",
                ctx
            ),
            "2 2"
        );
    }

    #[test]
    fn undefined_is_an_error_and_unknown_tokenizer_is_named() {
        let mut env = environment().unwrap();
        env.add_template("t", "{{ missing }}").unwrap();
        assert!(env.get_template("t").unwrap().render(()).is_err());
        env.add_template("u", "{{ 'x'|token_count('gpt2') }}")
            .unwrap();
        let err = env.get_template("u").unwrap().render(()).unwrap_err();
        assert!(
            err.to_string().contains("unknown tokenizer `gpt2`"),
            "{err}"
        );
    }
}
