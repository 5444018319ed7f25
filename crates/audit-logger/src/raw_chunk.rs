//! A trail chunk as the appends handle it: each entry left as the JSON text it was stored as.
//!
//! An append reads the tail chunk, looks for the entry ids it is about to add, takes the last
//! entry's position and hash, and writes the chunk back with the new entries. A user's chunk
//! holds up to `TRAIL_CHUNK_SIZE` entries (a hundred, about 100 KB of JSON, when this was
//! written); building them all as typed entries and printing them again on every append was
//! most of audit-logger's work under load (its
//! allocator alone was over a quarter of its CPU). Here only the few fields an append needs are
//! read from the text, and the old entries are written back as they were. Reads for the API
//! and for verification still decode whole [`crate::trail::Chunk`]s: both shapes are the same
//! JSON.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::entry::Entry;
use crate::error::Error;

/// A stored chunk, entries as text.
#[derive(Debug, Serialize, Deserialize)]
pub struct RawChunk {
    pub capacity: usize,
    pub entries: Vec<Box<RawValue>>,
}

/// What an append reads of an entry.
#[derive(Deserialize)]
struct Place<'a> {
    seq: u64,
    #[serde(borrow)]
    entry_id: Cow<'a, str>,
}

/// An entry's id and hash: enough to tell whether a write of it landed.
#[derive(Deserialize)]
struct Sealed<'a> {
    #[serde(borrow)]
    entry_id: Cow<'a, str>,
    #[serde(borrow)]
    hash: Cow<'a, str>,
}

/// What the next entry's link needs of the last one.
#[derive(Deserialize)]
struct Link {
    seq: u64,
    hash: String,
}

impl RawChunk {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Vec::new(),
        }
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.capacity
    }

    /// The position of every entry by entry id; `key` names the chunk in an error.
    pub fn places(&self, key: &str) -> Result<HashMap<Cow<'_, str>, u64>, Error> {
        self.entries
            .iter()
            .map(|raw| {
                let place: Place<'_> = serde_json::from_str(raw.get()).map_err(corrupt(key))?;
                Ok((place.entry_id, place.seq))
            })
            .collect()
    }

    /// The position of the entry with `entry_id`, if the chunk holds it.
    pub fn find(&self, key: &str, entry_id: &str) -> Result<Option<u64>, Error> {
        for raw in &self.entries {
            let place: Place<'_> = serde_json::from_str(raw.get()).map_err(corrupt(key))?;
            if place.entry_id == entry_id {
                return Ok(Some(place.seq));
            }
        }
        Ok(None)
    }

    /// The hash of the entry with `entry_id`, if the chunk holds it.
    pub fn hash_of(&self, key: &str, entry_id: &str) -> Result<Option<String>, Error> {
        for raw in &self.entries {
            let sealed: Sealed<'_> = serde_json::from_str(raw.get()).map_err(corrupt(key))?;
            if sealed.entry_id == entry_id {
                return Ok(Some(sealed.hash.into_owned()));
            }
        }
        Ok(None)
    }

    /// Position and hash of the last entry.
    pub fn last(&self, key: &str) -> Result<Option<(u64, String)>, Error> {
        let Some(raw) = self.entries.last() else {
            return Ok(None);
        };
        let link: Link = serde_json::from_str(raw.get()).map_err(corrupt(key))?;
        Ok(Some((link.seq, link.hash)))
    }

    /// Adds `entry` at the end.
    pub fn push(&mut self, key: &str, entry: &Entry) -> Result<(), Error> {
        self.entries
            .push(serde_json::value::to_raw_value(entry).map_err(corrupt(key))?);
        Ok(())
    }
}

fn corrupt(key: &str) -> impl Fn(serde_json::Error) -> Error + '_ {
    move |error| Error::Corrupt {
        key: key.to_owned(),
        reason: format!("an entry of the chunk does not read or write as JSON: {error}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::canonical::GENESIS_HASH;
    use crate::chain_key::ChainKey;
    use crate::entry::EntryDraft;
    use crate::entry::tests::{test_draft, test_key};
    use crate::trail::Chunk;

    fn entry(key: &ChainKey, seq: u64, prev: &str) -> Entry {
        EntryDraft {
            detail: Some("quote \" and \\ and é".into()),
            payload: r#"{"task":{"title":"a \"b\""}}"#.into(),
            ..test_draft(seq)
        }
        .seal(key, "trail:task:t1", seq, prev)
    }

    #[test]
    fn a_chunk_appended_as_text_reads_back_as_typed_entries() {
        let key = test_key();
        let first = entry(&key, 0, GENESIS_HASH);
        let typed = Chunk {
            capacity: 3,
            entries: vec![first.clone()],
        };
        let stored = serde_json::to_string(&typed).unwrap();

        let mut raw: RawChunk = serde_json::from_str(&stored).unwrap();
        assert_eq!(raw.find("k", "e0").unwrap(), Some(0));
        assert_eq!(raw.find("k", "e1").unwrap(), None);
        let (seq, hash) = raw.last("k").unwrap().unwrap();
        assert_eq!((seq, hash.as_str()), (0, first.hash.as_str()));
        let second = entry(&key, seq + 1, &hash);
        raw.push("k", &second).unwrap();
        assert!(!raw.is_full());
        assert_eq!(raw.places("k").unwrap().get("e1"), Some(&1));
        assert_eq!(raw.hash_of("k", "e1").unwrap(), Some(second.hash.clone()));
        assert_eq!(raw.hash_of("k", "e2").unwrap(), None);

        let back: Chunk = serde_json::from_str(&serde_json::to_string(&raw).unwrap()).unwrap();
        assert_eq!(back.entries, vec![first, second]);
        assert_eq!(back.capacity, 3);
    }

    #[test]
    fn an_entry_without_its_position_is_named_corrupt() {
        let raw: RawChunk =
            serde_json::from_str(r#"{"capacity":2,"entries":[{"entry_id":"e0"}]}"#).unwrap();
        assert!(
            matches!(raw.find("trail:task:t1:0", "e0"), Err(Error::Corrupt { key, .. }) if key == "trail:task:t1:0")
        );
        assert!(matches!(raw.last("k"), Err(Error::Corrupt { .. })));
    }
}
