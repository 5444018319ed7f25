//! Dedupe markers: one per entry id, whatever the number of trails the entry goes to, under a
//! short key, holding for each of those trails the first chunk the entry may be in.
//!
//! * Key: `ev:{id}` with the 16 bytes of a UUID entry id (event ids are UUIDs) in unpadded
//!   base64url, 22 characters; `ek:{entry_id}` for any other id (`dead-letter:...`,
//!   `replay:...`). The two prefixes keep the mapping one-to-one.
//! * Value: `{"t": chunk, "u": chunk, "d": chunk}`, one slot per trail kind ([`slot`]); an entry
//!   goes to at most one trail of each kind.
//!
//! A slot is written before any attempt to append the entry to that trail and never changes
//! afterwards (a marker only gains slots, by an etag-checked rewrite), which is all
//! [`crate::trail`]'s argument needs from it.
//!
//! Migration: data written before this layout has one marker per trail and entry,
//! `{trail}:event:{entry_id}` = `{from_chunk}` ([`TrailId::marker_key`]). A slot the new
//! marker lacks is taken from that marker when it exists (read in the same bulk read), so an
//! entry appended under the old layout and redelivered now is still found. Chunks and heads
//! kept their layout.

use std::collections::{BTreeMap, HashMap};

use dapr_http::SaveItem;
use serde_json::Value;

use crate::error::Error;
use crate::trail::{TrailId, TrailStore};

/// The marker of an entry: trail slot -> first chunk the entry may be in.
pub type Marker = BTreeMap<String, u64>;

/// The marker key of `entry_id`.
pub fn event_marker_key(entry_id: &str) -> String {
    match uuid::Uuid::try_parse(entry_id) {
        Ok(id) if id.hyphenated().to_string() == entry_id => {
            format!("ev:{}", base64url(id.as_bytes()))
        }
        _ => format!("ek:{entry_id}"),
    }
}

/// The slot of `trail` in a marker.
pub fn slot(trail: &TrailId) -> &'static str {
    match trail {
        TrailId::Task(_) => "t",
        TrailId::User(_) => "u",
        TrailId::DeadLetters => "d",
    }
}

/// Unpadded base64url.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=group.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// One entry to claim: its id and the trails it goes to.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub entry_id: &'a str,
    pub trails: &'a [TrailId],
}

impl TrailStore {
    /// Makes sure the marker of each claim holds a slot for each of its trails (one bulk read,
    /// at most one write per round); answers each claim's bounds, in the order of its trails.
    pub async fn claim_all(&self, claims: &[Claim<'_>]) -> Result<Vec<Vec<u64>>, Error> {
        // Copies of an entry id share one marker: their trails are claimed together.
        let mut wanted: Vec<(&str, Vec<&TrailId>)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for claim in claims {
            let i = *index.entry(claim.entry_id).or_insert_with(|| {
                wanted.push((claim.entry_id, Vec::new()));
                wanted.len() - 1
            });
            for trail in claim.trails {
                if !wanted[i].1.contains(&trail) {
                    wanted[i].1.push(trail);
                }
            }
        }
        let mut settled: HashMap<&str, Marker> = HashMap::new();
        let mut attempts = 0u32;
        while settled.len() < wanted.len() {
            attempts += 1;
            let open: Vec<&(&str, Vec<&TrailId>)> = wanted
                .iter()
                .filter(|(id, _)| !settled.contains_key(id))
                .collect();
            let writes = self.complete(&open).await?;
            let mut items = Vec::new();
            for (id, marker, etag, complete) in &writes {
                if *complete {
                    continue;
                }
                let item = SaveItem::new(event_marker_key(id), marker)?;
                items.push(match etag {
                    Some(etag) => item.etag(Some(etag.as_str())).first_write(),
                    None => item.first_write(),
                });
            }
            let saved = if items.is_empty() {
                Ok(())
            } else {
                self.dapr.save_state(&self.store, &items).await
            };
            match saved {
                Ok(()) => {
                    for (id, marker, _, _) in writes {
                        settled.insert(id, marker);
                    }
                }
                // Written one by one: a concurrent delivery may have created or extended some
                // markers first. Only complete markers are taken; the next round reads again.
                Err(error) => {
                    for (id, marker, _, complete) in writes {
                        if complete {
                            settled.insert(id, marker);
                        }
                    }
                    if attempts >= self.max_attempts {
                        return Err(error.into());
                    }
                    tokio::time::sleep(crate::locks::backoff(attempts)).await;
                }
            }
        }
        claims
            .iter()
            .map(|claim| {
                let marker = settled.get(claim.entry_id);
                claim
                    .trails
                    .iter()
                    .map(|trail| {
                        marker
                            .and_then(|m| m.get(slot(trail)).copied())
                            .ok_or_else(|| Error::Corrupt {
                                key: event_marker_key(claim.entry_id),
                                reason: format!("no bound for {} after claiming it", trail.name()),
                            })
                    })
                    .collect()
            })
            .collect()
    }

    /// Reads the markers of `open` (with the old-layout markers and the heads a missing slot
    /// may need, in the same bulk read) and fills their missing slots: per entry, the marker
    /// with every slot, its etag (`None`: absent), and whether it was complete already.
    async fn complete<'a>(
        &self,
        open: &[&(&'a str, Vec<&TrailId>)],
    ) -> Result<Vec<(&'a str, Marker, Option<String>, bool)>, Error> {
        let mut keys: Vec<String> = Vec::new();
        for (id, trails) in open {
            keys.push(event_marker_key(id));
            keys.extend(trails.iter().map(|t| t.marker_key(id)));
        }
        let mut heads_needed: Vec<&TrailId> = Vec::new();
        for (_, trails) in open {
            for trail in trails {
                if self.known_tail(&trail.name()).is_none() && !heads_needed.contains(trail) {
                    heads_needed.push(trail);
                    keys.push(trail.head_key());
                }
            }
        }
        let items = self
            .dapr
            .get_bulk_state::<Value>(&self.store, &keys)
            .await?;
        let mut found: HashMap<String, (Value, Option<String>)> = HashMap::new();
        for item in items {
            if let Some(reason) = item.error {
                return Err(Error::Corrupt {
                    key: item.key,
                    reason,
                });
            }
            if let Some(value) = item.value {
                found.insert(item.key, (value, item.etag));
            }
        }
        let number = |key: &str, field: &str| -> Result<Option<u64>, Error> {
            match found.get(key) {
                None => Ok(None),
                Some((value, _)) => value
                    .get(field)
                    .and_then(Value::as_u64)
                    .map(Some)
                    .ok_or_else(|| Error::Corrupt {
                        key: key.to_owned(),
                        reason: format!("no `{field}` number in {value}"),
                    }),
            }
        };
        let mut out = Vec::with_capacity(open.len());
        for (id, trails) in open {
            let key = event_marker_key(id);
            let (mut marker, etag) = match found.get(&key) {
                Some((value, etag)) => (
                    serde_json::from_value::<Marker>(value.clone()).map_err(|e| {
                        Error::Corrupt {
                            key: key.clone(),
                            reason: e.to_string(),
                        }
                    })?,
                    etag.clone(),
                ),
                None => (Marker::new(), None),
            };
            let mut complete = true;
            for trail in trails {
                if marker.contains_key(slot(trail)) {
                    continue;
                }
                complete = false;
                let bound = match number(&trail.marker_key(id), "from_chunk")? {
                    Some(old) => old,
                    None => match self.known_tail(&trail.name()) {
                        Some(chunk) => chunk,
                        None => number(&trail.head_key(), "chunk")?.unwrap_or(0),
                    },
                };
                marker.insert(slot(trail).to_owned(), bound);
            }
            out.push((*id, marker, etag, complete));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_get_short_keys_and_other_ids_keep_theirs() {
        assert_eq!(
            event_marker_key("0190c1a2-0000-7000-8000-000000000001"),
            "ev:AZDBogAAcACAAAAAAAAAAQ"
        );
        assert_eq!(
            event_marker_key("ffffffff-ffff-ffff-ffff-ffffffffffff"),
            "ev:_____________________w"
        );
        // Not the canonical form: kept as it is, so two spellings never share a marker.
        assert_eq!(
            event_marker_key("0190C1A2-0000-7000-8000-000000000001"),
            "ek:0190C1A2-0000-7000-8000-000000000001"
        );
        assert_eq!(event_marker_key("replay:r1"), "ek:replay:r1");
        assert_eq!(base64url(b"Man"), "TWFu");
        assert_eq!(base64url(b"Ma"), "TWE");
        assert_eq!(base64url(b"M"), "TQ");
    }
}
