//! Between the sidecar's [`Message`] and a Kafka record, as components-contrib does it
//! (`common/component/kafka/producer.go Publish`, `consumer.go GetEventMetadata`):
//!
//! * publish: key = metadata `partitionKey`, else `__key`; value = the CloudEvent bytes (a raw
//!   payload of exactly `null` is a tombstone); every metadata entry not matched by
//!   `excludeHeaderMetaRegex` becomes a record header;
//! * consume: the app gets `__key` (when the record has one), `__topic`, `__partition`,
//!   `__offset`, `__timestamp` (ms) and then every record header, a header winning a name clash,
//!   values URL-query-escaped when `escapeHeaders` is on.

use bytes::Bytes;
use rdkafka::Message as _;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use sidecar_core::components::Message;
use std::collections::BTreeMap;

/// The record key of a publish.
pub(crate) fn key_of(metadata: &BTreeMap<String, String>) -> Option<&str> {
    metadata
        .get("partitionKey")
        .or_else(|| metadata.get("__key"))
        .map(String::as_str)
        .filter(|k| !k.is_empty())
}

/// The record value: `None` (a tombstone) for a raw payload of exactly `null`.
pub(crate) fn value_of(msg: &Message) -> Option<&[u8]> {
    let raw = msg
        .metadata
        .get("rawPayload")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    (!(raw && msg.data.as_ref() == b"null")).then_some(msg.data.as_ref())
}

/// The record headers of a publish.
pub(crate) fn headers_of(
    metadata: &BTreeMap<String, String>,
    exclude: Option<&regex::Regex>,
) -> OwnedHeaders {
    metadata
        .iter()
        .filter(|(k, _)| !exclude.is_some_and(|re| re.is_match(k)))
        .fold(
            OwnedHeaders::new_with_capacity(metadata.len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            },
        )
}

/// The message a consumer hands to the sidecar for `record`.
pub(crate) fn message_of(record: &OwnedMessage, escape: bool) -> Message {
    let mut metadata = BTreeMap::new();
    if let Some(key) = record.key() {
        metadata.insert(
            "__key".to_owned(),
            String::from_utf8_lossy(key).into_owned(),
        );
    }
    metadata.insert("__topic".to_owned(), record.topic().to_owned());
    metadata.insert("__partition".to_owned(), record.partition().to_string());
    metadata.insert("__offset".to_owned(), record.offset().to_string());
    if let Some(ms) = record.timestamp().to_millis() {
        metadata.insert("__timestamp".to_owned(), ms.to_string());
    }
    if let Some(headers) = record.headers() {
        for h in headers.iter() {
            let value = h
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            metadata.insert(h.key.to_owned(), value);
        }
    }
    if escape {
        for v in metadata.values_mut() {
            *v = query_escape(v);
        }
    }
    Message {
        topic: record.topic().to_owned(),
        data: Bytes::copy_from_slice(record.payload().unwrap_or_default()),
        metadata,
    }
}

/// Go's `url.QueryEscape`: unreserved bytes stay, a space becomes `+`, the rest `%XX`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn key_prefers_partition_key_and_every_entry_becomes_a_header() {
        let m = meta(&[
            ("partitionKey", "task-1"),
            ("__key", "other"),
            ("ttlInSeconds", "5"),
        ]);
        assert_eq!(key_of(&m), Some("task-1"));
        assert_eq!(key_of(&meta(&[("__key", "k")])), Some("k"));
        assert_eq!(key_of(&meta(&[("partitionKey", "")])), None);
        let all = headers_of(&m, None);
        assert_eq!(all.count(), 3);
        let re = regex::Regex::new("^ttl").unwrap();
        let some = headers_of(&m, Some(&re));
        let names: Vec<_> = some.iter().map(|h| h.key.to_owned()).collect();
        assert_eq!(names, ["__key", "partitionKey"]);
    }

    #[test]
    fn raw_null_is_a_tombstone() {
        let msg = |data: &'static [u8], raw: bool| Message {
            topic: "t".into(),
            data: Bytes::from_static(data),
            metadata: if raw {
                meta(&[("rawPayload", "true")])
            } else {
                BTreeMap::new()
            },
        };
        assert_eq!(value_of(&msg(b"null", true)), None);
        assert_eq!(value_of(&msg(b"null", false)), Some(&b"null"[..]));
        assert_eq!(value_of(&msg(b"{}", true)), Some(&b"{}"[..]));
    }

    #[test]
    fn consumed_records_carry_kafka_metadata_and_headers() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "traceid",
                value: Some("a b/c"),
            })
            .insert(Header {
                key: "__topic",
                value: Some("from-header"),
            });
        let record = OwnedMessage::new(
            Some(b"{\"id\":1}".to_vec()),
            Some(b"task-7".to_vec()),
            "task-created".into(),
            Timestamp::CreateTime(1_700_000_000_123),
            2,
            41,
            Some(headers),
        );
        let m = message_of(&record, false);
        assert_eq!(m.topic, "task-created");
        assert_eq!(m.data.as_ref(), b"{\"id\":1}");
        assert_eq!(m.metadata["__key"], "task-7");
        assert_eq!(m.metadata["__partition"], "2");
        assert_eq!(m.metadata["__offset"], "41");
        assert_eq!(m.metadata["__timestamp"], "1700000000123");
        assert_eq!(
            m.metadata["__topic"], "from-header",
            "a header wins a name clash"
        );
        assert_eq!(m.metadata["traceid"], "a b/c");
        let escaped = message_of(&record, true);
        assert_eq!(escaped.metadata["traceid"], "a+b%2Fc");
    }
}
