//! Small accessors over `yaml_serde::Value`.

use yaml_serde::Value;

/// The value at a path of mapping keys.
pub fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

/// A string or number at a path, as text (YAML writes ports both ways).
pub fn text_at(value: &Value, path: &[&str]) -> Option<String> {
    at(value, path).and_then(text)
}

/// A scalar as text.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The sequence at a path, empty when absent.
pub fn seq_at<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The document's `kind`.
pub fn kind(doc: &Value) -> Option<&str> {
    doc.get("kind").and_then(Value::as_str)
}

/// A Dapr component's metadata item value by name (`spec.metadata[].value`).
pub fn component_metadata(doc: &Value, name: &str) -> Option<String> {
    seq_at(doc, &["spec", "metadata"])
        .iter()
        .find(|item| item.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|item| item.get("value"))
        .and_then(text)
}

/// `scopes` as strings.
pub fn scopes(doc: &Value) -> Vec<String> {
    seq_at(doc, &["scopes"]).iter().filter_map(text).collect()
}
