//! What `state.in-memory` holds, by key family: the figures a load run needs to tell which of
//! the services' keys its memory goes to (`GET /metrics`, [`crate::api`]).
//!
//! A family is a key with its app prefix removed and every segment that looks like an id (it
//! holds a digit, or is 16 characters or longer) replaced by `*`, so the keys of one kind
//! (`trail:task:{id}:head` of every task) count together while the kinds stay apart.

use super::entries::Entries;
use crate::components::KeyFamily;
use crate::metadata::KEY_SEPARATOR;
use std::collections::HashMap;
use std::time::Instant;

/// Segments this long are ids even without a digit (base64 or hex ids).
const ID_LEN: usize = 16;

/// The family of `key` (already without its app prefix).
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

/// The live keys under `prefix` (every key for `None`) by family, largest first.
pub(super) fn by_family(entries: &Entries, prefix: Option<&str>, now: Instant) -> Vec<KeyFamily> {
    let mut families: HashMap<String, (u64, u64)> = HashMap::new();
    let now = entries.millis(now);
    for slot in entries.iter().filter(|s| s.meta().live(now)) {
        let key = entries.key_of(slot);
        let rest = match prefix {
            Some(p) => match key
                .strip_prefix(p)
                .and_then(|k| k.strip_prefix(KEY_SEPARATOR))
            {
                Some(rest) => rest,
                None => continue,
            },
            None => &key,
        };
        let held = slot.held() as u64;
        let counts = families.entry(family(rest)).or_default();
        counts.0 += 1;
        counts.1 += held;
    }
    let mut out: Vec<KeyFamily> = families
        .into_iter()
        .map(|(family, (keys, bytes))| KeyFamily {
            family,
            keys,
            bytes,
        })
        .collect();
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.family.cmp(&b.family)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
