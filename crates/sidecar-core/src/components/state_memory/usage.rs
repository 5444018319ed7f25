//! What `state.in-memory` holds, by key family: the figures a load run needs to tell which of
//! the services' keys its memory goes to (`GET /metrics`, [`crate::api`]).
//!
//! A family is a key with its app prefix removed and every segment that looks like an id
//! replaced by `*` ([`family`]), so the keys of one kind (`trail:task:{id}:head` of every task)
//! count together while the kinds stay apart.

use super::entries::Entries;
use super::keys::family;
use crate::components::KeyFamily;
use crate::metadata::KEY_SEPARATOR;
use std::collections::HashMap;
use std::time::Instant;

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
