//! YAML and TOML into one spanned [`Value`] tree.
//!
//! Both formats produce the same tree, so everything after parsing (schema
//! checks, matrix expansion, params) is format-blind, and a YAML spec and its
//! TOML twin give identical keys.

use crate::diag::{Code, Diagnostic};
use crate::source::{SourceFile, Span};
use tw_stages::api::value::{Key, Value, ValueKind};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Spec formats, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Toml,
}

impl Format {
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }
}

pub fn parse(format: Format, file: &SourceFile, file_id: u32) -> Result<Value, Vec<Diagnostic>> {
    match format {
        Format::Yaml => parse_yaml(file, file_id),
        Format::Toml => parse_toml(file, file_id),
    }
}

/// Aliases may not expand a spec past this many nodes (a "billion laughs" guard).
const MAX_NODES: usize = 1_000_000;

enum Frame {
    Seq {
        items: Vec<Value>,
        start: usize,
        anchor: usize,
    },
    Map {
        entries: Vec<(Key, Value)>,
        pending_key: Option<Key>,
        start: usize,
        anchor: usize,
    },
}

struct Builder<'a> {
    file: &'a SourceFile,
    file_id: u32,
    stack: Vec<Frame>,
    root: Option<Value>,
    documents: usize,
    anchors: std::collections::HashMap<usize, Value>,
    nodes: usize,
    errors: Vec<Diagnostic>,
}

impl Builder<'_> {
    fn offset(&self, mark: &Marker) -> usize {
        self.file.offset(mark.line(), mark.col())
    }

    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file_id, start, end.max(start))
    }

    fn push_value(&mut self, value: Value) {
        self.nodes += 1;
        match self.stack.last_mut() {
            None => {
                self.documents += 1;
                if self.documents > 1 {
                    self.errors.push(
                        Diagnostic::new(Code::Syntax, "a spec file holds one YAML document")
                            .at(value.span)
                            .help("remove the `---` separator and merge the documents"),
                    );
                }
                self.root = Some(value);
            }
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => {
                    let name = match &value.kind {
                        ValueKind::Str(s) => s.clone(),
                        other => match value.scalar_text() {
                            Some(t) => t,
                            None => {
                                self.errors.push(
                                    Diagnostic::new(
                                        Code::WrongType,
                                        format!(
                                            "map keys must be scalars, found {}",
                                            type_of(other)
                                        ),
                                    )
                                    .at(value.span),
                                );
                                String::new()
                            }
                        },
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                        let (line, _) = self.file.line_col(first.span.start);
                        self.errors.push(
                            Diagnostic::new(
                                Code::DuplicateKey,
                                format!("key `{name}` appears twice"),
                            )
                            .at(value.span)
                            .label("second occurrence")
                            .help(format!("the first is on line {line}; keep one")),
                        );
                    }
                    *pending_key = Some(Key {
                        name,
                        span: value.span,
                    });
                }
                Some(key) => entries.push((key, value)),
            },
        }
    }
}

fn type_of(kind: &ValueKind) -> &'static str {
    Value::new(kind.clone(), Span::default()).type_name()
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.nodes > MAX_NODES {
            return;
        }
        let at = self.offset(&mark);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let width = text.chars().count()
                    + match style {
                        TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => 2,
                        _ => 0,
                    };
                let end = self.file.offset(mark.line(), mark.col() + width.max(1));
                let span = self.span(at, end);
                let forced_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let kind = if style == TScalarStyle::Plain && !forced_str {
                    resolve_plain(&text)
                } else {
                    ValueKind::Str(text)
                };
                let value = Value::new(kind, span);
                if anchor > 0 {
                    self.anchors.insert(anchor, value.clone());
                }
                self.push_value(value);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                items: Vec::new(),
                start: at,
                anchor,
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                entries: Vec::new(),
                pending_key: None,
                start: at,
                anchor,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (kind, start, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        items,
                        start,
                        anchor,
                    }) => (ValueKind::Seq(items), start, anchor),
                    Some(Frame::Map {
                        entries,
                        start,
                        anchor,
                        ..
                    }) => {
                        // A block map's start event comes after its first key; point at that key.
                        let start = entries
                            .first()
                            .map_or(start, |(k, _)| start.min(k.span.start));
                        (ValueKind::Map(entries), start, anchor)
                    }
                    None => return,
                };
                let value = Value::new(kind, self.span(start, start + 1));
                if anchor > 0 {
                    self.anchors.insert(anchor, value.clone());
                }
                self.push_value(value);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(value) => {
                    self.nodes += count_nodes(&value);
                    if self.nodes > MAX_NODES {
                        self.errors.push(
                            Diagnostic::new(
                                Code::Syntax,
                                "aliases expand this spec past 1,000,000 nodes",
                            )
                            .at(self.span(at, at + 1)),
                        );
                        return;
                    }
                    self.push_value(value);
                }
                None => self.errors.push(
                    Diagnostic::new(Code::Syntax, "alias to an unknown anchor")
                        .at(self.span(at, at + 1)),
                ),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

fn count_nodes(v: &Value) -> usize {
    1 + match &v.kind {
        ValueKind::Seq(items) => items.iter().map(count_nodes).sum(),
        ValueKind::Map(entries) => entries.iter().map(|(_, v)| count_nodes(v)).sum(),
        _ => 0,
    }
}

/// YAML 1.2 core schema resolution of an unquoted scalar.
fn resolve_plain(text: &str) -> ValueKind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return ValueKind::Null,
        "true" | "True" | "TRUE" => return ValueKind::Bool(true),
        "false" | "False" | "FALSE" => return ValueKind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return ValueKind::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return ValueKind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return ValueKind::Float(f64::NAN),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = text.parse::<i64>()
    {
        return ValueKind::Int(i);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return ValueKind::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return ValueKind::Int(i);
    }
    let looks_numeric = digits
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().any(|b| b.is_ascii_digit())
        && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if looks_numeric && let Ok(f) = text.parse::<f64>() {
        return ValueKind::Float(f);
    }
    ValueKind::Str(text.to_string())
}

pub fn parse_yaml(file: &SourceFile, file_id: u32) -> Result<Value, Vec<Diagnostic>> {
    let mut builder = Builder {
        file,
        file_id,
        stack: Vec::new(),
        root: None,
        documents: 0,
        anchors: Default::default(),
        nodes: 0,
        errors: Vec::new(),
    };
    let mut parser = Parser::new_from_str(&file.text);
    if let Err(e) = parser.load(&mut builder, true) {
        let mark = e.marker();
        let at = file.offset(mark.line(), mark.col());
        return Err(vec![
            Diagnostic::new(Code::Syntax, format!("invalid YAML: {}", e.info())).at(Span::new(
                file_id,
                at,
                at + 1,
            )),
        ]);
    }
    if !builder.errors.is_empty() {
        return Err(builder.errors);
    }
    Ok(builder
        .root
        .unwrap_or_else(|| Value::new(ValueKind::Null, Span::new(file_id, 0, 0))))
}

pub fn parse_toml(file: &SourceFile, file_id: u32) -> Result<Value, Vec<Diagnostic>> {
    match toml_span::parse(&file.text) {
        Ok(mut value) => Ok(convert_toml(&mut value, file_id)),
        Err(e) => {
            let message = e.to_string();
            Err(vec![
                Diagnostic::new(Code::Syntax, format!("invalid TOML: {message}")).at(Span::new(
                    file_id,
                    e.span.start,
                    e.span.end,
                )),
            ])
        }
    }
}

fn convert_toml(value: &mut toml_span::Value<'_>, file_id: u32) -> Value {
    use toml_span::value::ValueInner;
    let span = Span::new(file_id, value.span.start, value.span.end);
    let kind = match value.take() {
        ValueInner::String(s) => ValueKind::Str(s.into_owned()),
        ValueInner::Integer(i) => ValueKind::Int(i),
        ValueInner::Float(f) => ValueKind::Float(f),
        ValueInner::Boolean(b) => ValueKind::Bool(b),
        ValueInner::Array(mut items) => {
            ValueKind::Seq(items.iter_mut().map(|v| convert_toml(v, file_id)).collect())
        }
        ValueInner::Table(table) => {
            // toml-span sorts keys; restore the order the user wrote them in.
            let mut entries: Vec<(Key, Value)> = table
                .into_iter()
                .map(|(k, mut v)| {
                    (
                        Key {
                            name: k.name.into_owned(),
                            span: Span::new(file_id, k.span.start, k.span.end),
                        },
                        convert_toml(&mut v, file_id),
                    )
                })
                .collect();
            entries.sort_by_key(|(k, _)| k.span.start);
            ValueKind::Map(entries)
        }
    };
    Value::new(kind, span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<Value, Vec<Diagnostic>> {
        parse_yaml(&SourceFile::new("t.yaml".into(), text.into()), 0)
    }

    #[test]
    fn yaml_scalars_resolve_like_yaml_1_2() {
        let v = yaml("a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: 1e3\ng: v1.0\nh: -2\n").unwrap();
        let kinds: Vec<_> = v
            .as_map()
            .unwrap()
            .iter()
            .map(|(_, v)| v.kind.clone())
            .collect();
        assert_eq!(
            kinds,
            vec![
                ValueKind::Int(1),
                ValueKind::Float(1.5),
                ValueKind::Bool(true),
                ValueKind::Null,
                ValueKind::Str("1".into()),
                ValueKind::Float(1000.0),
                ValueKind::Str("v1.0".into()),
                ValueKind::Int(-2),
            ]
        );
    }

    #[test]
    fn yaml_key_spans_point_at_keys() {
        let text = "stages:\n  load_it:\n    kind: load\n";
        let v = yaml(text).unwrap();
        let stages = v.get("stages").unwrap();
        let (key, inner) = &stages.as_map().unwrap()[0];
        assert_eq!(&text[key.span.start..key.span.end], "load_it");
        let kind = inner.get("kind").unwrap();
        assert_eq!(&text[kind.span.start..kind.span.end], "load");
    }

    #[test]
    fn yaml_duplicate_keys_are_reported() {
        let errs = yaml("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].code, Code::DuplicateKey);
    }

    #[test]
    fn yaml_anchors_expand() {
        let v = yaml("x: &p {a: 1}\ny: *p\n").unwrap();
        assert_eq!(v.get("y").unwrap().to_json(), serde_json::json!({"a": 1}));
    }

    #[test]
    fn yaml_syntax_error_has_location() {
        let errs = yaml("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(errs[0].code, Code::Syntax);
        assert!(errs[0].span.is_some());
    }

    #[test]
    fn toml_and_yaml_give_the_same_tree_modulo_spans() {
        let y = yaml("experiment: e\nstages:\n  b: {kind: load, params: {path: x.jsonl}}\n  a: {kind: load}\n").unwrap();
        let t = parse_toml(
            &SourceFile::new(
                "t.toml".into(),
                "experiment = \"e\"\n[stages.b]\nkind = \"load\"\nparams = { path = \"x.jsonl\" }\n[stages.a]\nkind = \"load\"\n".into(),
            ),
            0,
        )
        .unwrap();
        assert_eq!(y.to_json(), t.to_json());
        let order: Vec<_> = t
            .get("stages")
            .unwrap()
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.name.clone())
            .collect();
        assert_eq!(order, ["b", "a"]);
    }
}
