//! One key of `state.in-memory` as it is held: one run of bytes holding the key's text, its
//! version, first-write mark and expiry, and its value (in the form [`super::value`] chose).
//!
//! A map of `String` keys to a struct of fields costs a table slot of 70-odd bytes, the key's
//! own allocation and the value's, for every key, on top of the bytes the key and value need.
//! The services keep several keys per task, for as long as the task lives, so that bookkeeping
//! was most of the store's memory per task: here a key costs its table slot (an 8-byte
//! [`super::arena::Handle`]) plus `header + key + value` bytes in the store's arena, with the
//! numbers in the header as LEB128 varints (a version or a length of under 128 is one byte).
//!
//! Layout: `flags (1) | key length | key | version | expiry + 1 (0: never) | [raw length] |
//! value`;
//! the raw length is there only when the value is compressed.

use super::value::{Encoded, Form};

const FIRST_WRITE: u8 = 1;
const FORM_SHIFT: u32 = 1;
const FORM_MASK: u8 = 0b110;

/// A key's version, first-write mark and expiry (milliseconds since the store's epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    pub(super) version: u64,
    pub(super) first_write: bool,
    pub(super) expires_at: Option<u64>,
}

impl Meta {
    pub(super) fn live(&self, now_ms: u64) -> bool {
        self.expires_at.is_none_or(|at| at > now_ms)
    }
}

/// A held key with its value: a view of its bytes in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot<'a>(&'a [u8]);

/// Where the parts of a slot are.
struct Parsed {
    key: std::ops::Range<usize>,
    meta: Meta,
    form: Form,
    raw_len: usize,
    value: usize,
}

impl<'a> Slot<'a> {
    /// The slot held in `bytes`, as [`Slot::write`] wrote them.
    pub(super) fn at(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    /// How many bytes [`Slot::write`] writes for these parts.
    pub(super) fn encoded_len(key: &[u8], meta: Meta, value: &Encoded) -> usize {
        let raw_len = if value.form() == Form::Plain {
            0
        } else {
            varint_len(value.raw_len() as u64)
        };
        1 + varint_len(key.len() as u64)
            + key.len()
            + varint_len(meta.version)
            + varint_len(expiry_field(meta))
            + raw_len
            + value.bytes().len()
    }

    /// Appends the slot of `key` (as [`super::keys`] encodes it), `meta` and `value` to `out`.
    pub(super) fn write(out: &mut Vec<u8>, key: &[u8], meta: Meta, value: &Encoded) {
        let form = value.form();
        out.push(u8::from(meta.first_write) | ((form as u8) << FORM_SHIFT));
        put_varint(out, key.len() as u64);
        out.extend_from_slice(key);
        put_varint(out, meta.version);
        put_varint(out, expiry_field(meta));
        if form != Form::Plain {
            put_varint(out, value.raw_len() as u64);
        }
        out.extend_from_slice(value.bytes());
    }

    fn parse(&self) -> Parsed {
        let bytes = self.0;
        let flags = bytes.first().copied().unwrap_or(0);
        let mut at = 1;
        let key_len = get_varint(bytes, &mut at) as usize;
        let key = at..(at + key_len).min(bytes.len());
        at = key.end;
        let version = get_varint(bytes, &mut at);
        let expiry = get_varint(bytes, &mut at);
        let form = Form::from_bits((flags & FORM_MASK) >> FORM_SHIFT);
        let raw_len = if form == Form::Plain {
            0
        } else {
            get_varint(bytes, &mut at) as usize
        };
        let value = at.min(bytes.len());
        Parsed {
            key,
            meta: Meta {
                version,
                first_write: flags & FIRST_WRITE != 0,
                expires_at: expiry.checked_sub(1),
            },
            form,
            raw_len: if form == Form::Plain {
                bytes.len() - value
            } else {
                raw_len
            },
            value,
        }
    }

    /// The key's bytes, as encoded.
    pub(super) fn key_bytes(&self) -> &'a [u8] {
        let bytes = self.0;
        let mut at = 1;
        let len = get_varint(bytes, &mut at) as usize;
        &bytes[at.min(bytes.len())..(at + len).min(bytes.len())]
    }

    pub(super) fn meta(&self) -> Meta {
        self.parse().meta
    }

    /// The value as held, for decoding after the store's lock is released.
    pub(super) fn value(&self) -> Encoded {
        let parsed = self.parse();
        Encoded::from_parts(parsed.form, &self.0[parsed.value..], parsed.raw_len)
    }

    /// Bytes of the key and of the value as held (the figure usage reports; the header's few
    /// bytes and the allocation come on top).
    pub(super) fn held(&self) -> usize {
        let parsed = self.parse();
        parsed.key.len() + (self.0.len() - parsed.value)
    }

    /// Bytes of the whole slot.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The expiry as held: one up, so that 0 is "never" and even an expiry at the epoch's first
/// millisecond is kept.
fn expiry_field(meta: Meta) -> u64 {
    meta.expires_at.map_or(0, |at| at.saturating_add(1))
}

fn varint_len(n: u64) -> usize {
    // 7 bits per byte, at least one byte.
    (64 - n.leading_zeros() as usize).div_ceil(7).max(1)
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a varint at `*at`; a truncated one (never written by [`put_varint`]) reads as what
/// was there.
fn get_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut n = 0u64;
    let mut shift = 0;
    while let Some(&b) = bytes.get(*at) {
        *at += 1;
        if shift < 64 {
            n |= u64::from(b & 0x7f) << shift;
        }
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    n
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn every_part_reads_back() {
        let key = "audit-logger||trail:task:01a24f50-9144-7442-99ec-e616b93481d1:0";
        for (meta, value) in [
            (
                Meta {
                    version: 1,
                    first_write: false,
                    expires_at: None,
                },
                Encoded::plain(b"{}"),
            ),
            (
                Meta {
                    version: u64::MAX,
                    first_write: true,
                    expires_at: Some(1_209_600_000),
                },
                Encoded::from_parts(Form::Zstd, &[1, 2, 3], 300),
            ),
            (
                Meta {
                    version: 200,
                    first_write: true,
                    expires_at: Some(0),
                },
                Encoded::from_parts(Form::ZstdDict, &[], 0),
            ),
        ] {
            let mut bytes = vec![0xAA];
            Slot::write(&mut bytes, key.as_bytes(), meta, &value);
            assert_eq!(
                bytes.len() - 1,
                Slot::encoded_len(key.as_bytes(), meta, &value)
            );
            let slot = Slot::at(&bytes[1..]);
            assert_eq!(slot.key_bytes(), key.as_bytes());
            assert_eq!(slot.meta(), meta);
            assert_eq!(slot.value(), value);
            assert_eq!(slot.held(), key.len() + value.bytes().len());
        }
        // A one-byte version and no expiry: the header is four bytes.
        let meta = Meta {
            version: 3,
            first_write: false,
            expires_at: None,
        };
        let mut small = Vec::new();
        Slot::write(&mut small, b"k", meta, &Encoded::plain(b"v"));
        assert_eq!(Slot::at(&small).len(), 4 + 1 + 1);
        let mut empty = Vec::new();
        Slot::write(&mut empty, b"", meta, &Encoded::plain(b""));
        assert_eq!(Slot::at(&empty).key_bytes(), b"");
    }

    #[test]
    fn varint_lengths_match_what_is_written() {
        for n in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            assert_eq!(out.len(), varint_len(n), "{n}");
            let mut at = 0;
            assert_eq!(get_varint(&out, &mut at), n);
        }
    }
}
