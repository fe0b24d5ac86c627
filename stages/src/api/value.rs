//! Spanned spec values: the one tree that YAML and TOML specs both parse into.
//!
//! Every node keeps the byte span it came from, so a problem found anywhere (a
//! param of the wrong type, an unknown field three levels down) can be reported
//! at `file:line:col`. Stage params are deserialized straight from this tree
//! through [`ValueDeserializer`], whose errors carry the span of the offending
//! key or value.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use std::fmt;

/// A byte range in one source file. `file` indexes the engine's source table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Span {
    pub file: u32,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(file: u32, start: usize, end: usize) -> Self {
        Span { file, start, end }
    }
}

/// A map key with its own span (errors about a key point at the key, not the value).
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Value>),
    /// Insertion order is kept: it is the order the user wrote.
    Map(Vec<(Key, Value)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

impl Value {
    pub fn new(kind: ValueKind, span: Span) -> Self {
        Value { kind, span }
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ValueKind::Null => "null",
            ValueKind::Bool(_) => "a boolean",
            ValueKind::Int(_) => "an integer",
            ValueKind::Float(_) => "a float",
            ValueKind::Str(_) => "a string",
            ValueKind::Seq(_) => "a list",
            ValueKind::Map(_) => "a map",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            ValueKind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Value)]> {
        match &self.kind {
            ValueKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// Plain JSON, spans dropped (for hashing and for handing params to templates).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.kind {
            ValueKind::Null => serde_json::Value::Null,
            ValueKind::Bool(b) => serde_json::Value::Bool(*b),
            ValueKind::Int(i) => serde_json::Value::from(*i),
            ValueKind::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            ValueKind::Str(s) => serde_json::Value::String(s.clone()),
            ValueKind::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            ValueKind::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Scalar rendered for string interpolation (`${seed}` inside a longer string).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            ValueKind::Null => Some("null".into()),
            ValueKind::Bool(b) => Some(b.to_string()),
            ValueKind::Int(i) => Some(i.to_string()),
            ValueKind::Float(f) => Some(f.to_string()),
            ValueKind::Str(s) => Some(s.clone()),
            ValueKind::Seq(_) | ValueKind::Map(_) => None,
        }
    }
}

/// Why deserializing params failed, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    pub message: String,
    pub span: Option<Span>,
    /// Dotted path from the params root (`retry.max_attempts`), empty at the root.
    pub path: Vec<String>,
    pub kind: Box<ParamErrorKind>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ParamErrorKind {
    UnknownField {
        field: String,
        expected: Vec<&'static str>,
    },
    MissingField {
        field: &'static str,
    },
    Invalid,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParamError {}

impl de::Error for ParamError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ParamError {
            message: msg.to_string(),
            span: None,
            path: Vec::new(),
            kind: Box::new(ParamErrorKind::Invalid),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        ParamError {
            message: format!("unknown param `{field}`"),
            span: None,
            path: Vec::new(),
            kind: Box::new(ParamErrorKind::UnknownField {
                field: field.to_string(),
                expected: expected.to_vec(),
            }),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        ParamError {
            message: format!("missing required param `{field}`"),
            span: None,
            path: Vec::new(),
            kind: Box::new(ParamErrorKind::MissingField { field }),
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        de::Error::custom(format_args!("expected {exp}, found {}", unexpected(unexp)))
    }
}

fn unexpected(u: de::Unexpected<'_>) -> String {
    match u {
        de::Unexpected::Str(s) => format!("string {s:?}"),
        de::Unexpected::Signed(i) => format!("integer {i}"),
        de::Unexpected::Unsigned(i) => format!("integer {i}"),
        de::Unexpected::Float(f) => format!("float {f}"),
        de::Unexpected::Bool(b) => format!("boolean {b}"),
        de::Unexpected::Seq => "a list".into(),
        de::Unexpected::Map => "a map".into(),
        de::Unexpected::Unit | de::Unexpected::Option => "null".into(),
        other => other.to_string(),
    }
}

impl ParamError {
    fn at(mut self, span: Span) -> Self {
        if self.span.is_none() {
            self.span = Some(span);
        }
        self
    }

    fn under(mut self, segment: &str) -> Self {
        self.path.insert(0, segment.to_string());
        self
    }
}

/// Deserializes any serde type from a spanned [`Value`].
pub struct ValueDeserializer<'a> {
    value: &'a Value,
}

impl<'a> ValueDeserializer<'a> {
    pub fn new(value: &'a Value) -> Self {
        ValueDeserializer { value }
    }
}

/// Deserialize `T` from `value`; the error carries the span of the offending node.
pub fn from_value<T: de::DeserializeOwned>(value: &Value) -> Result<T, ParamError> {
    T::deserialize(ValueDeserializer::new(value)).map_err(|e| e.at(value.span))
}

impl<'de, 'a> de::Deserializer<'de> for ValueDeserializer<'a> {
    type Error = ParamError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        let span = self.value.span;
        let result = match &self.value.kind {
            ValueKind::Null => visitor.visit_unit(),
            ValueKind::Bool(b) => visitor.visit_bool(*b),
            ValueKind::Int(i) => visitor.visit_i64(*i),
            ValueKind::Float(f) => visitor.visit_f64(*f),
            ValueKind::Str(s) => visitor.visit_str(s),
            ValueKind::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
                index: 0,
            }),
            ValueKind::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                current: None,
            }),
        };
        result.map_err(|e| e.at(span))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        match self.value.kind {
            ValueKind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        let span = self.value.span;
        match &self.value.kind {
            ValueKind::Str(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: ParamError| e.at(span)),
            ValueKind::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                visitor
                    .visit_enum(EnumAccess { key, value })
                    .map_err(|e| e.at(span))
            }
            _ => Err(<ParamError as de::Error>::custom(format_args!(
                "expected a variant name or a one-key map, found {}",
                self.value.type_name()
            ))
            .at(span)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct SeqAccess<'a> {
    items: std::slice::Iter<'a, Value>,
    index: usize,
}

impl<'de, 'a> de::SeqAccess<'de> for SeqAccess<'a> {
    type Error = ParamError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ParamError> {
        match self.items.next() {
            None => Ok(None),
            Some(item) => {
                let index = self.index;
                self.index += 1;
                seed.deserialize(ValueDeserializer::new(item))
                    .map(Some)
                    .map_err(|e| e.at(item.span).under(&index.to_string()))
            }
        }
    }
}

struct MapAccess<'a> {
    entries: std::slice::Iter<'a, (Key, Value)>,
    current: Option<&'a (Key, Value)>,
}

impl<'de, 'a> de::MapAccess<'de> for MapAccess<'a> {
    type Error = ParamError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ParamError> {
        match self.entries.next() {
            None => Ok(None),
            Some(entry) => {
                self.current = Some(entry);
                let key = &entry.0;
                seed.deserialize(key.name.as_str().into_deserializer())
                    .map(Some)
                    .map_err(|e: ParamError| e.at(key.span))
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ParamError> {
        let (key, value) = self
            .current
            .ok_or_else(|| <ParamError as de::Error>::custom("value requested before key"))?;
        seed.deserialize(ValueDeserializer::new(value))
            .map_err(|e| e.at(value.span).under(&key.name))
    }
}

struct EnumAccess<'a> {
    key: &'a Key,
    value: &'a Value,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAccess<'a> {
    type Error = ParamError;
    type Variant = VariantAccess<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), ParamError> {
        let variant = seed
            .deserialize(self.key.name.as_str().into_deserializer())
            .map_err(|e: ParamError| e.at(self.key.span))?;
        Ok((variant, VariantAccess { value: self.value }))
    }
}

struct VariantAccess<'a> {
    value: &'a Value,
}

impl<'de, 'a> de::VariantAccess<'de> for VariantAccess<'a> {
    type Error = ParamError;

    fn unit_variant(self) -> Result<(), ParamError> {
        match self.value.kind {
            ValueKind::Null => Ok(()),
            _ => Err(
                <ParamError as de::Error>::custom("this variant takes no value")
                    .at(self.value.span),
            ),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, ParamError> {
        seed.deserialize(ValueDeserializer::new(self.value))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        de::Deserializer::deserialize_any(ValueDeserializer::new(self.value), visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        de::Deserializer::deserialize_any(ValueDeserializer::new(self.value), visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn s(start: usize) -> Span {
        Span::new(0, start, start + 1)
    }

    fn map(entries: Vec<(&str, usize, Value)>) -> Value {
        Value::new(
            ValueKind::Map(
                entries
                    .into_iter()
                    .map(|(k, at, v)| {
                        (
                            Key {
                                name: k.into(),
                                span: s(at),
                            },
                            v,
                        )
                    })
                    .collect(),
            ),
            s(0),
        )
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct P {
        k: u32,
        #[serde(default)]
        temperature: f64,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Fast,
        Slow,
    }

    #[test]
    fn deserializes_typed_params_with_int_to_float() {
        let v = map(vec![
            ("k", 1, Value::new(ValueKind::Int(3), s(2))),
            ("temperature", 3, Value::new(ValueKind::Int(1), s(4))),
            ("mode", 5, Value::new(ValueKind::Str("slow".into()), s(6))),
        ]);
        let p: P = from_value(&v).unwrap();
        assert_eq!(
            p,
            P {
                k: 3,
                temperature: 1.0,
                mode: Some(Mode::Slow)
            }
        );
    }

    #[test]
    fn unknown_field_points_at_the_key_and_lists_expected() {
        let v = map(vec![
            ("k", 1, Value::new(ValueKind::Int(3), s(2))),
            ("tempreature", 30, Value::new(ValueKind::Int(1), s(40))),
        ]);
        let err = from_value::<P>(&v).unwrap_err();
        assert_eq!(err.span, Some(s(30)));
        match *err.kind {
            ParamErrorKind::UnknownField { field, expected } => {
                assert_eq!(field, "tempreature");
                assert!(expected.contains(&"temperature"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn type_error_points_at_the_value_with_path() {
        let v = map(vec![(
            "k",
            1,
            Value::new(ValueKind::Str("three".into()), s(7)),
        )]);
        let err = from_value::<P>(&v).unwrap_err();
        assert_eq!(err.span, Some(s(7)));
        assert_eq!(err.path, vec!["k".to_string()]);
        assert!(
            err.message.contains("found string \"three\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn negative_into_unsigned_is_an_error() {
        let v = map(vec![("k", 1, Value::new(ValueKind::Int(-1), s(9)))]);
        let err = from_value::<P>(&v).unwrap_err();
        assert_eq!(err.span, Some(s(9)));
    }

    #[test]
    fn missing_field_points_at_the_map() {
        let v = map(vec![]);
        let err = from_value::<P>(&v).unwrap_err();
        assert_eq!(*err.kind, ParamErrorKind::MissingField { field: "k" });
        assert_eq!(err.span, Some(s(0)));
    }
}
