//! A Python value crossing the sandbox boundary, kept as text.

use serde::{Deserialize, Serialize};

/// A Python value crossing the sandbox boundary (an expected output on its
/// way to the judge, a returned value on its way back), kept as its
/// tagged-JSON text: `tw` mostly carries these, and text is several times
/// smaller than a parsed tree (a list of floats costs a few bytes per item,
/// not a `Value` and a digit string each; HumanEval+'s canonical outputs are
/// 290 MB as text). `value()` parses one for the readers that look inside.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tagged(Box<serde_json::value::RawValue>);

impl Tagged {
    pub fn new(value: &serde_json::Value) -> Tagged {
        Tagged(serde_json::value::to_raw_value(value).expect("a JSON value serializes"))
    }

    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).expect("kept as valid JSON")
    }

    /// The string, when the value is one (stdio output, a JSON reply).
    pub fn as_text(&self) -> Option<String> {
        serde_json::from_str(self.0.get()).ok()
    }
}

impl From<serde_json::Value> for Tagged {
    fn from(value: serde_json::Value) -> Tagged {
        Tagged::new(&value)
    }
}

impl From<&Tagged> for serde_json::Value {
    fn from(tagged: &Tagged) -> serde_json::Value {
        tagged.value()
    }
}

impl PartialEq for Tagged {
    fn eq(&self, other: &Tagged) -> bool {
        self.0.get() == other.0.get()
    }
}

/// A `Tagged` written as a JSON string holding its text (`TestCase::expected`).
pub(super) mod tagged_as_text {
    use super::Tagged;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &Option<Tagged>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(tagged) => s.serialize_str(tagged.0.get()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Tagged>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                serde_json::value::RawValue::from_string(text)
                    .map(Tagged)
                    .map_err(D::Error::custom)
            })
            .transpose()
    }
}
