//! JSON as daprd's Go code reads and writes it around a publish.
//!
//! components-contrib decodes payloads with `unmarshalPrecise` (`pubsub/envelope.go`): a
//! `json.Decoder` with `UseNumber`, which takes the first JSON value of the input, ignores what
//! follows it and keeps every number as the literal it was written as. daprd then marshals the
//! envelope with `encoding/json`, which sorts object keys, drops whitespace and escapes `<`, `>`,
//! `&`, U+2028 and U+2029. Going through `serde_json::Value` would turn `1.10` into `1.1` and
//! `12345678901234567890` into a float, so payloads are carried as canonical raw JSON text.

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The first JSON value of `text`, as `json.Decoder.Decode` reads it (trailing input ignored).
pub fn first_value(text: &str) -> Option<&RawValue> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<&RawValue>()
        .next()?
        .ok()
}

/// `raw` re-encoded as Go writes the value it decodes with `UseNumber`: objects with sorted keys
/// (the last of duplicate keys wins), no whitespace, strings re-escaped, numbers, `true`,
/// `false` and `null` exactly as written.
pub fn canonical(raw: &RawValue) -> Result<Box<RawValue>, serde_json::Error> {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'{') => {
            let members: BTreeMap<String, &RawValue> = serde_json::from_str(text)?;
            let members = members
                .into_iter()
                .map(|(k, v)| Ok((k, canonical(v)?)))
                .collect::<Result<BTreeMap<_, _>, serde_json::Error>>()?;
            serde_json::value::to_raw_value(&members)
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            let items = items
                .into_iter()
                .map(canonical)
                .collect::<Result<Vec<_>, _>>()?;
            serde_json::value::to_raw_value(&items)
        }
        Some(b'"') => {
            let s: String = serde_json::from_str(text)?;
            serde_json::value::to_raw_value(&s)
        }
        _ => RawValue::from_string(text.to_owned()),
    }
}

/// A JSON string as raw JSON.
pub fn raw_string(s: &str) -> Box<RawValue> {
    // Serialising a string cannot fail; `null` keeps the signature total.
    serde_json::value::to_raw_value(s).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// Sorts object keys at every level (independent of serde_json's `preserve_order`).
pub fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let ordered: BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(ordered.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Go's HTML-safe escapes over compact JSON text.
pub fn escape_html(text: &str) -> Vec<u8> {
    // '<', '>', '&' and U+2028/9 can only occur inside JSON strings, so a plain replace is exact.
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
        .into_bytes()
}

/// Serialises like Go's `encoding/json`: sorted keys, HTML-safe escapes.
pub fn to_go_json(ce: Map<String, Value>) -> Vec<u8> {
    escape_html(&sorted(Value::Object(ce)).to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn canon(text: &str) -> String {
        canonical(first_value(text).unwrap())
            .unwrap()
            .get()
            .to_owned()
    }

    #[test]
    fn numbers_keep_their_literals_and_keys_are_sorted() {
        assert_eq!(
            canon(r#" { "b" : [1.10, 12345678901234567890, -0, 1e400], "a" : "\u00e9" } "#),
            r#"{"a":"é","b":[1.10,12345678901234567890,-0,1e400]}"#
        );
        assert_eq!(canon(r#"{"k":1,"k":2}"#), r#"{"k":2}"#);
    }

    #[test]
    fn only_the_first_value_counts() {
        assert_eq!(canon(r#"{"a":1} trailing"#), r#"{"a":1}"#);
        assert_eq!(canon("[1] [2]"), "[1]");
        assert!(first_value("").is_none());
        assert!(first_value("{not json").is_none());
    }
}
