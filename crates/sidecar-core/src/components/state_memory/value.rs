//! How `state.in-memory` holds a value: in an allocation of exactly its length, and compressed
//! (zstd) when it is long enough to gain from it.
//!
//! The services keep JSON documents that repeat their field names and ids (an audit trail chunk
//! holds up to a hundred entries of one user), so compression takes most of a long value's
//! memory away; short values are kept as they are, where a frame's header would eat the gain.
//! A value arrives as a buffer that grew by doubling while it was serialized, so holding the
//! request's own buffer would keep up to twice the value's length for as long as the key
//! lives: a stored value is always a fresh, exact-size copy.

use bytes::Bytes;
use std::cell::RefCell;

/// Values shorter than this are kept uncompressed.
pub const COMPRESS_FROM: usize = 256;
/// zstd's fastest level: long values are rewritten on every append, so speed matters more
/// than the last few percent.
const LEVEL: i32 = 1;

thread_local! {
    // A compression context holds hundreds of kilobytes of tables; one per thread, reused,
    // instead of one allocated and freed per write.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StoredValue {
    Plain(Box<[u8]>),
    /// A zstd frame of a value `len` bytes long.
    Compressed {
        frame: Box<[u8]>,
        len: u32,
    },
}

impl StoredValue {
    /// The form `value` is kept in: compressed when that saves at least an eighth.
    pub(super) fn encode(value: &[u8]) -> Self {
        if value.len() >= COMPRESS_FROM
            && let Ok(len) = u32::try_from(value.len())
            && let Some(frame) = compress(value)
            && frame.len() <= value.len() - value.len() / 8
        {
            return Self::Compressed {
                frame: frame.into_boxed_slice(),
                len,
            };
        }
        Self::Plain(value.into())
    }

    /// The value as it was stored; `None` if a frame does not decompress to its length.
    pub(super) fn into_bytes(self) -> Option<Bytes> {
        match self {
            Self::Plain(bytes) => Some(Bytes::from(bytes)),
            Self::Compressed { frame, len } => decompress(&frame, len as usize).map(Bytes::from),
        }
    }

    /// Bytes held for the value itself.
    pub(super) fn held(&self) -> usize {
        match self {
            Self::Plain(bytes) => bytes.len(),
            Self::Compressed { frame, .. } => frame.len(),
        }
    }
}

fn compress(value: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::new(LEVEL).ok();
        }
        slot.as_mut()?.compress(value).ok()
    })
}

fn decompress(frame: &[u8], len: usize) -> Option<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Decompressor::new().ok();
        }
        let value = slot.as_mut()?.decompress(frame, len).ok()?;
        (value.len() == len).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn chunk(entries: usize) -> Vec<u8> {
        let entries: Vec<serde_json::Value> = (0..entries)
            .map(|i| {
                serde_json::json!({
                    "seq": i,
                    "entry_id": format!("01a24e1e-6174-76f3-a85a-{i:012}"),
                    "user_id": "60038350-b215-4c2d-a07d-5d520c3fb5a8",
                    "payload": format!("{{\"task\":{{\"title\":\"Load test {i}\"}}}}"),
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "capacity": 100, "entries": entries })).unwrap()
    }

    #[test]
    fn long_values_are_compressed_and_read_back_unchanged() {
        let value = chunk(50);
        let stored = StoredValue::encode(&value);
        assert!(matches!(stored, StoredValue::Compressed { .. }));
        assert!(
            stored.held() * 3 < value.len(),
            "{} of {}",
            stored.held(),
            value.len()
        );
        assert_eq!(stored.into_bytes(), Some(Bytes::from(value)));
    }

    #[test]
    fn short_and_incompressible_values_are_kept_as_they_are() {
        let short = br#"{"from_chunk":0}"#;
        assert_eq!(
            StoredValue::encode(short),
            StoredValue::Plain(short.as_slice().into())
        );
        // Bytes with no repetition: a frame would be longer than the value.
        let mut state = 7u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                // SplitMix64: no structure a compressor could use.
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z ^ (z >> 31)) as u8
            })
            .collect();
        let stored = StoredValue::encode(&noise);
        assert!(matches!(stored, StoredValue::Plain(_)));
        assert_eq!(stored.into_bytes(), Some(Bytes::from(noise)));
        assert_eq!(StoredValue::encode(b"").into_bytes(), Some(Bytes::new()));
    }
}
