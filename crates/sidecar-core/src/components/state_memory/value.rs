//! How `state.in-memory` holds a value: as it is, or zstd-compressed when that saves at least
//! an eighth, with a dictionary made of the store's own first values.
//!
//! The services keep many small JSON documents (a task record, a reminder entry, an email
//! record, a task's audit chunk of two entries) that repeat the same field names, enum words and
//! timestamps' shape. Alone, a document of a few hundred bytes hardly compresses: a frame only
//! finds repeats inside itself. With a dictionary that holds documents of the same kinds, each
//! one compresses to little more than its ids and hashes. The store samples the values written
//! to it, a few of each key family ([`super::keys::family`]) cut at [`SAMPLE_PREFIX`] bytes,
//! and once [`SAMPLE_VALUES`] values were written it joins samples of every family, in turns,
//! into one raw-content dictionary of at most [`DICT_SIZE`] bytes (zstd takes any bytes as a
//! dictionary of content to match against). Every later value is compressed with it. Values
//! written before keep their form; each value's form is recorded with it. Until the dictionary
//! exists, values of [`COMPRESS_FROM`] bytes or more are compressed alone.
//!
//! Frames carry no checksum, content size or dictionary id: the store keeps the length and the
//! form beside the frame, and has a single dictionary.

use bytes::Bytes;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use zstd::zstd_safe::CParameter;

/// Without a dictionary, values shorter than this are kept uncompressed.
pub const COMPRESS_FROM: usize = 256;
/// With the dictionary, values shorter than this are kept uncompressed (a frame's header
/// would eat the gain).
const DICT_COMPRESS_FROM: usize = 32;
/// Values written before the dictionary is made.
pub const SAMPLE_VALUES: usize = 2_000;
/// Samples kept of each key family.
const SAMPLES_PER_FAMILY: usize = 8;
/// Bytes of a value taken as a sample: a long value's start says what its kind looks like.
pub const SAMPLE_PREFIX: usize = 2_048;
/// Largest dictionary: the services' documents have few shapes.
pub const DICT_SIZE: usize = 32 * 1024;
/// zstd's fastest level: long values are rewritten on every append, so speed matters more
/// than the last few percent.
const LEVEL: i32 = 1;

/// How a dictionary in zstd's own format begins (little-endian `0xEC30A437`).
const DICT_MAGIC: [u8; 4] = [0x37, 0xA4, 0x30, 0xEC];
/// Tells dictionaries apart in the per-thread contexts (several stores may share a thread).
static NEXT_DICT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    // A compression context holds hundreds of kilobytes of tables; one per thread, reused,
    // instead of one allocated and freed per write. The dictionary contexts are kept for the
    // dictionary they were made with.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
    static DICT_COMPRESSOR: RefCell<Option<(u64, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DICT_DECOMPRESSOR: RefCell<Option<(u64, zstd::bulk::Decompressor<'static>)>> =
        const { RefCell::new(None) };
}

/// The form a value is held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    Plain = 0,
    Zstd = 1,
    ZstdDict = 2,
}

impl Form {
    pub(super) fn from_bits(bits: u8) -> Self {
        match bits {
            1 => Self::Zstd,
            2 => Self::ZstdDict,
            _ => Self::Plain,
        }
    }
}

/// A value in the form it is held in, with its length before compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Encoded {
    form: Form,
    bytes: Vec<u8>,
    raw_len: usize,
}

impl Encoded {
    pub(super) fn plain(value: &[u8]) -> Self {
        Self {
            form: Form::Plain,
            bytes: value.to_vec(),
            raw_len: value.len(),
        }
    }

    pub(super) fn from_parts(form: Form, bytes: &[u8], raw_len: usize) -> Self {
        Self {
            form,
            bytes: bytes.to_vec(),
            raw_len,
        }
    }

    pub(super) fn form(&self) -> Form {
        self.form
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(super) fn raw_len(&self) -> usize {
        self.raw_len
    }
}

/// The dictionary.
#[derive(Debug)]
struct Dictionary {
    id: u64,
    bytes: Vec<u8>,
}

/// Samples gathered for the dictionary.
#[derive(Debug, Default)]
struct Samples {
    /// Values written so far.
    seen: usize,
    by_family: BTreeMap<String, Vec<Vec<u8>>>,
}

/// Compresses and decompresses the values of one store, and makes its dictionary.
#[derive(Debug)]
pub(super) struct Codec {
    dictionary: OnceLock<Dictionary>,
    /// Samples gathered so far; `None` once the dictionary is made (or sampling is off).
    samples: Mutex<Option<Samples>>,
    /// Whether samples are still wanted: spares the lock once they are not.
    sampling: AtomicBool,
    sample_values: usize,
}

impl Default for Codec {
    fn default() -> Self {
        Self::new(SAMPLE_VALUES)
    }
}

impl Codec {
    /// A codec that makes its dictionary after `sample_values` values (0: never).
    pub(super) fn new(sample_values: usize) -> Self {
        Self {
            dictionary: OnceLock::new(),
            samples: Mutex::new((sample_values > 0).then(Samples::default)),
            sampling: AtomicBool::new(sample_values > 0),
            sample_values,
        }
    }

    /// Whether the dictionary is made (values written from now on use it).
    #[cfg(test)]
    pub(super) fn has_dictionary(&self) -> bool {
        self.dictionary.get().is_some()
    }

    /// The form `value` of `key` is kept in: compressed when that saves at least an eighth.
    pub(super) fn encode(&self, key: &str, value: &[u8]) -> Encoded {
        if self.dictionary.get().is_none() {
            self.sample(key, value);
        }
        let dictionary = self.dictionary.get();
        let (form, from) = match dictionary {
            Some(_) => (Form::ZstdDict, DICT_COMPRESS_FROM),
            None => (Form::Zstd, COMPRESS_FROM),
        };
        if value.len() >= from {
            let frame = match dictionary {
                Some(dictionary) => compress_with(dictionary, value),
                None => compress(value),
            };
            if let Some(frame) = frame
                && frame.len() <= value.len() - value.len() / 8
            {
                return Encoded {
                    form,
                    bytes: frame,
                    raw_len: value.len(),
                };
            }
        }
        Encoded::plain(value)
    }

    /// The value as it was stored; `None` if a frame does not decompress to its length (or
    /// names a dictionary this store does not have).
    pub(super) fn decode(&self, value: Encoded) -> Option<Bytes> {
        match value.form {
            Form::Plain => Some(Bytes::from(value.bytes)),
            Form::Zstd => decompress(&value.bytes, value.raw_len).map(Bytes::from),
            Form::ZstdDict => decompress_with(self.dictionary.get()?, &value.bytes, value.raw_len)
                .map(Bytes::from),
        }
    }

    fn sample(&self, key: &str, value: &[u8]) {
        if !self.sampling.load(Ordering::Relaxed) {
            return;
        }
        let mut held = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(samples) = held.as_mut() else {
            return;
        };
        samples.seen += 1;
        let family = samples
            .by_family
            .entry(super::keys::family(key))
            .or_default();
        if family.len() < SAMPLES_PER_FAMILY && !value.is_empty() {
            family.push(value[..value.len().min(SAMPLE_PREFIX)].to_vec());
        }
        if samples.seen < self.sample_values {
            return;
        }
        self.sampling.store(false, Ordering::Relaxed);
        if let Some(samples) = held.take() {
            let mut bytes = join(samples.by_family);
            // Bytes that begin with a zstd dictionary's magic number would be read as a
            // dictionary of that format rather than as content.
            if bytes.starts_with(&DICT_MAGIC) {
                bytes.insert(0, b' ');
            }
            if !bytes.is_empty() {
                let id = NEXT_DICT_ID.fetch_add(1, Ordering::Relaxed);
                let _ = self.dictionary.set(Dictionary { id, bytes });
            }
        }
    }
}

/// Samples of every family in turns (the first of each, then the second, ...) until
/// [`DICT_SIZE`] bytes, so each kind of document is in the dictionary.
fn join(by_family: BTreeMap<String, Vec<Vec<u8>>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(DICT_SIZE);
    let families: Vec<Vec<Vec<u8>>> = by_family.into_values().collect();
    let rounds = families.iter().map(Vec::len).max().unwrap_or(0);
    for round in 0..rounds {
        for sample in families.iter().filter_map(|f| f.get(round)) {
            let room = DICT_SIZE - out.len();
            if room == 0 {
                return out;
            }
            out.extend_from_slice(&sample[..sample.len().min(room)]);
        }
    }
    out
}

fn lean(compressor: &mut zstd::bulk::Compressor<'static>) -> Option<()> {
    // The store keeps the length and the form beside the frame.
    compressor
        .set_parameter(CParameter::ContentSizeFlag(false))
        .ok()?;
    compressor
        .set_parameter(CParameter::ChecksumFlag(false))
        .ok()?;
    compressor.set_parameter(CParameter::DictIdFlag(false)).ok()
}

fn compress(value: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let mut compressor = zstd::bulk::Compressor::new(LEVEL).ok()?;
            lean(&mut compressor)?;
            *slot = Some(compressor);
        }
        slot.as_mut()?.compress(value).ok()
    })
}

fn compress_with(dictionary: &Dictionary, value: &[u8]) -> Option<Vec<u8>> {
    DICT_COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(id, _)| *id != dictionary.id) {
            let mut compressor =
                zstd::bulk::Compressor::with_dictionary(LEVEL, &dictionary.bytes).ok()?;
            lean(&mut compressor)?;
            *slot = Some((dictionary.id, compressor));
        }
        slot.as_mut()?.1.compress(value).ok()
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

fn decompress_with(dictionary: &Dictionary, frame: &[u8], len: usize) -> Option<Vec<u8>> {
    DICT_DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(id, _)| *id != dictionary.id) {
            let decompressor = zstd::bulk::Decompressor::with_dictionary(&dictionary.bytes).ok()?;
            *slot = Some((dictionary.id, decompressor));
        }
        let value = slot.as_mut()?.1.decompress(frame, len).ok()?;
        (value.len() == len).then_some(value)
    })
}

#[cfg(test)]
mod tests;
