//! How `state.in-memory` holds a key's text: the app prefix (`{appID}||`) as a one-byte index
//! into the store's table of prefixes, and each UUID in its canonical text form (36 lowercase
//! characters) as its 16 bytes.
//!
//! Every key of an app repeats its prefix, and most keys the services write name a task, an
//! event or a user by UUID, so these two take 30-odd bytes from a typical key of 60. The
//! encoding is exact: a key reads back byte for byte (upper-case or unhyphenated UUIDs are left
//! as text), and one key always encodes the same way, so lookups compare encoded bytes. The
//! markers are bytes that never occur in UTF-8 text.
//!
//! A prefix is given its index the first time a key with it is written and keeps it; once
//! [`MAX_PREFIXES`] are known, new prefixes stay as text.
//!
//! Also here: a key's family ([`family`]), which usage figures and the value dictionary's
//! samples group keys by.

use std::collections::HashMap;

/// Followed by the 16 bytes of a UUID.
const UUID: u8 = 0xFF;
/// Followed by the index of a prefix; only at the start of a key.
const PREFIX: u8 = 0xFE;
/// Most prefixes given an index.
pub(super) const MAX_PREFIXES: usize = 256;
use crate::metadata::KEY_SEPARATOR as SEPARATOR;
const UUID_LEN: usize = 36;

/// The prefixes of one store.
#[derive(Debug, Default)]
pub(super) struct KeyCodec {
    prefixes: Vec<Box<str>>,
    index: HashMap<Box<str>, u8>,
}

impl KeyCodec {
    /// `key` as it is held, giving its prefix an index if it has none yet.
    pub(super) fn encode(&mut self, key: &str) -> Vec<u8> {
        if let Some((prefix, _)) = split_prefix(key)
            && !self.index.contains_key(prefix)
            && self.prefixes.len() < MAX_PREFIXES
            && let Ok(n) = u8::try_from(self.prefixes.len())
        {
            self.prefixes.push(prefix.into());
            self.index.insert(prefix.into(), n);
        }
        self.encode_known(key)
    }

    /// `key` as it would be held, without changing the table (for lookups).
    pub(super) fn encode_known(&self, key: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(key.len());
        let rest = match split_prefix(key) {
            Some((prefix, rest)) => match self.index.get(prefix) {
                Some(&n) => {
                    out.extend_from_slice(&[PREFIX, n]);
                    rest
                }
                None => key,
            },
            None => key,
        };
        let bytes = rest.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            if let Some(id) = bytes.get(at..at + UUID_LEN).and_then(parse_uuid) {
                out.push(UUID);
                out.extend_from_slice(&id);
                at += UUID_LEN;
            } else {
                out.push(bytes[at]);
                at += 1;
            }
        }
        out
    }

    /// The key's text.
    pub(super) fn decode(&self, held: &[u8]) -> String {
        let mut out = String::with_capacity(held.len() + 40);
        let mut at = 0;
        if held.first() == Some(&PREFIX)
            && let Some(prefix) = held.get(1).and_then(|&n| self.prefixes.get(usize::from(n)))
        {
            out.push_str(prefix);
            at = 2;
        }
        let mut text = Vec::with_capacity(held.len());
        while at < held.len() {
            if held[at] == UUID
                && let Some(id) = held.get(at + 1..at + 17)
            {
                text.extend_from_slice(format_uuid(id).as_bytes());
                at += 17;
            } else {
                text.push(held[at]);
                at += 1;
            }
        }
        out.push_str(&String::from_utf8_lossy(&text));
        out
    }
}

/// `(prefix with its separator, rest)` of a key that has an app prefix.
fn split_prefix(key: &str) -> Option<(&str, &str)> {
    let end = key.find(SEPARATOR)? + SEPARATOR.len();
    Some((&key[..end], &key[end..]))
}

/// The 16 bytes of `text` when it is a UUID in canonical form (lowercase, hyphenated).
fn parse_uuid(text: &[u8]) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let mut nibbles = 0;
    for (i, &c) in text.iter().enumerate() {
        let hyphen = matches!(i, 8 | 13 | 18 | 23);
        if hyphen {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        out[nibbles / 2] |= if nibbles % 2 == 0 { v << 4 } else { v };
        nibbles += 1;
    }
    (nibbles == 32).then_some(out)
}

fn format_uuid(id: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(UUID_LEN);
    for (i, b) in id.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// Segments this long are ids even without a digit (base64 or hex ids).
const ID_LEN: usize = 16;

/// The family of `key` (already without its app prefix).
/// A segment looks like an id when it holds a digit or is [`ID_LEN`] characters or longer.
pub(super) fn family(key: &str) -> String {
    let mut out = String::with_capacity(key.len().min(64));
    for (i, segment) in key.split(':').enumerate() {
        if i > 0 {
            out.push(':');
        }
        let id_like = segment.len() >= ID_LEN || segment.bytes().any(|b| b.is_ascii_digit());
        out.push_str(if id_like { "*" } else { segment });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn keys_read_back_exactly_and_ids_and_prefixes_shrink() {
        let mut codec = KeyCodec::default();
        let key = "audit-logger||trail:task:01a24f50-9144-7442-99ec-e616b93481d1:head";
        let held = codec.encode(key);
        assert_eq!(held.len(), key.len() - "audit-logger||".len() + 2 - 19);
        assert_eq!(codec.decode(&held), key);
        assert_eq!(codec.encode_known(key), held, "a lookup encodes alike");
        for key in [
            "",
            "k",
            "plain key without prefix",
            "task-api||task:01A24F50-9144-7442-99EC-E616B93481D1",
            "task-api||01a24f509144744299ece616b93481d1",
            "task-api||01a24f50-9144-7442-99ec-e616b93481d",
            "task-api||01a24f50-9144-7442-99ec-e616b93481d1-0190c1a2-0000-7000-8000-000000000001",
            "task-api||x||01a24f50-9144-7442-99ec-e616b93481d1",
            "app||ünïcödé ✓ 01a24f50-9144-7442-99ec-e616b93481d1",
            "||",
            "a|b||c",
        ] {
            let held = codec.encode(key);
            assert_eq!(codec.decode(&held), key, "{key}");
        }
        // Two different keys never encode alike.
        assert_ne!(
            codec.encode_known("task-api||a"),
            codec.encode_known("audit-logger||a")
        );
    }

    #[test]
    fn a_full_prefix_table_leaves_new_prefixes_as_text() {
        let mut codec = KeyCodec::default();
        for n in 0..MAX_PREFIXES {
            codec.encode(&format!("app{n}||k"));
        }
        let key = "one-more||k";
        assert_eq!(codec.encode(key), key.as_bytes());
        assert_eq!(codec.decode(&codec.encode_known(key)), key);
        assert_eq!(codec.encode("app7||k"), vec![PREFIX, 7, b'k']);
    }

    #[test]
    fn ids_collapse_and_names_stay() {
        assert_eq!(
            family("trail:task:0190c1a2-0000-7000-8000-000000000001:head"),
            "trail:task:*:head"
        );
        assert_eq!(family("trail:user:u1:12"), "trail:user:*:*");
        assert_eq!(family("ev:AZDBogAAcACAAAAAAAAAAQ"), "ev:*");
        assert_eq!(family("trail:dead-letters:0"), "trail:dead-letters:*");
        assert_eq!(family("outbox"), "outbox");
    }
}
