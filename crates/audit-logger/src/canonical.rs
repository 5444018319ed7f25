//! Canonical JSON and the entry hash.
//!
//! The hash chain must survive a round trip through the state store, which re-encodes values
//! (daprd parses and re-serialises JSON: key order is lost, floats are rounded, integers above
//! 2^53 lose precision). So the hash is computed over a canonical text, not over stored bytes:
//!
//! * no whitespace; object keys sorted by their UTF-8 bytes, recursively; array order kept;
//! * strings and integers written as `serde_json` writes them (minimal escaping, decimal);
//! * entries hold no floats and no integers above 2^53, and event payloads are kept as a
//!   string ([`crate::entry::Entry::payload`]), so nothing in a hashed value can be altered by
//!   the store's re-encoding.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The hash a trail's first entry points back to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Writes `value` in canonical form.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(1024);
    write(value, &mut out);
    // Only whole `&str`s and serde_json's own output went in, so this is valid UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Every entry is hashed once per trail it goes to, so this runs for each append: it writes
/// into one buffer, with serde_json's writer for keys and scalars (the same bytes their
/// `to_string` gives, without a `String` each).
fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, value)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                scalar(key, out);
                out.push(b':');
                write(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        // Scalars: serde_json's own encoding is already unique for them.
        other => scalar(other, out),
    }
}

fn scalar<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing a string, number, bool or null into a `Vec` cannot fail.
    let _ = serde_json::to_writer(out, value);
}

/// SHA-256 of the canonical form, lower-case hex.
pub fn sha256_hex(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value).as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_recursively_without_whitespace() {
        let v = json!({"b": 1, "a": {"z": [3, {"y": null, "x": "é\"\n"}], "m": true}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"m":true,"z":[3,{"x":"é\"\n","y":null}]},"b":1}"#
        );
    }

    #[test]
    fn key_order_of_the_input_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"x":1,"y":{"b":2,"a":3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "y": {"a":3, "b":2}, "x": 1 }"#).unwrap();
        assert_eq!(sha256_hex(&a), sha256_hex(&b));
        assert_ne!(
            sha256_hex(&a),
            sha256_hex(&json!({"x": 2, "y": {"a": 3, "b": 2}}))
        );
    }

    #[test]
    fn strings_and_numbers_are_written_as_serde_json_writes_them() {
        let v = json!({"é\u{1}\"": ["\u{7f}<>&\u{2028}", -0.5, 1e300, u64::MAX, i64::MIN, false]});
        let Value::Object(map) = &v else {
            unreachable!()
        };
        let (key, items) = map.iter().next().unwrap();
        let expected = format!("{{{}:{}}}", Value::String(key.clone()), items);
        assert_eq!(canonical_json(&v), expected);
    }

    #[test]
    fn hash_is_hex_sha256() {
        // sha256("{}")
        assert_eq!(
            sha256_hex(&json!({})),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(GENESIS_HASH.len(), 64);
    }
}
