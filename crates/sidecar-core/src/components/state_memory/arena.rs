//! Where `state.in-memory` keeps its slots: large chunks of bytes of its own, compacted as keys
//! are overwritten, deleted and expire.
//!
//! Why not one allocation per slot: the store's keys live as long as their tasks, while the
//! requests and deliveries around them allocate and free blocks of the same sizes by the
//! thousand. In a general-purpose allocator the long-lived blocks end up scattered over pages
//! that were filled at the peak of a load run, and a page goes back to the OS only once every
//! block on it is free; after a run the runner kept about 2 KB per task beyond the store's own
//! bytes. Slots packed into 256 KiB chunks (the allocator's large objects, each in pages of its
//! own) leave the small-object pages to short-lived data, which frees them whole.
//!
//! A freed slot leaves a hole in its chunk. A chunk whose slots are all gone is freed at once;
//! the others are compacted: [`Arena::sparsest`] names the emptiest chunks, the store moves their
//! live slots to the chunk being filled ([`Arena::relocate`]) and the emptied chunks are freed.
//! A slot of [`OWN_CHUNK_FROM`] bytes or more gets a chunk of its own, exactly its size, freed
//! with it.

/// Bytes per shared chunk: above the allocator's medium-object limit (128 KiB in mimalloc), so
/// each chunk is a large object with pages of its own, given back whole when it is freed.
pub(super) const CHUNK: usize = 256 * 1024;
/// Slots this large get a chunk of their own, so one large value neither wastes the rest of a
/// shared chunk nor is copied by compaction. The services' values are a few hundred bytes; the
/// limit also lets a shared slot's length fit in [`LEN_BITS`].
pub(super) const OWN_CHUNK_FROM: usize = 1 << LEN_BITS;
/// Bits of a shared slot's length in its handle; the other 18 of the 32 hold its offset, which
/// is under [`CHUNK`] (2^18).
const LEN_BITS: u32 = 14;
/// Bytes of holes tolerated on top of a sixty-fourth of the live ones before compaction is due: below
/// a few chunks' worth, compaction would only move bytes back and forth.
const SLACK: usize = 4 * CHUNK;
/// A chunk at least this full is not worth moving: it would free too little. Above the
/// sixty-fourth that compaction aims for, so a store whose chunks are all this full rests.
const MOVE_BELOW_PERCENT: usize = 98;

/// Where one slot's bytes are, in 8 bytes (the table holds one per key): its chunk, and its
/// offset and length packed in one word. Valid until the slot is freed or relocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Handle {
    chunk: u32,
    span: u32,
}

impl Handle {
    /// `None` when the span does not fit its 32 bits (never for a slot of a shared chunk).
    fn new(chunk: u32, offset: usize, len: usize) -> Option<Self> {
        if len >= OWN_CHUNK_FROM || offset >= CHUNK {
            return None;
        }
        let span = u32::try_from(offset << LEN_BITS | len).ok()?;
        Some(Self { chunk, span })
    }

    fn offset(self) -> usize {
        (self.span >> LEN_BITS) as usize
    }

    fn len(self) -> usize {
        (self.span & ((1 << LEN_BITS) - 1)) as usize
    }
}

#[derive(Debug)]
struct Chunk {
    bytes: Vec<u8>,
    /// Bytes of the slots still held in it.
    live: usize,
    /// Holds exactly one slot, which is all of `bytes`.
    own: bool,
}

/// The chunks and what they hold.
#[derive(Debug, Default)]
pub(super) struct Arena {
    chunks: Vec<Option<Chunk>>,
    /// Indexes of `chunks` that hold no chunk, reused before `chunks` grows.
    vacant: Vec<u32>,
    /// The shared chunk new slots are appended to.
    filling: Option<u32>,
    live: usize,
    reserved: usize,
}

impl Arena {
    /// Writes a slot of about `len` bytes with `write` (which appends to the buffer it is given)
    /// and returns where it is.
    pub(super) fn alloc(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) -> Handle {
        if len >= OWN_CHUNK_FROM {
            return self.alloc_own(len, write);
        }
        let id = match self.filling {
            Some(id) if self.chunk(id).is_some_and(|c| c.bytes.len() + len <= CHUNK) => id,
            _ => {
                let id = self.place(Chunk {
                    bytes: Vec::with_capacity(CHUNK),
                    live: 0,
                    own: false,
                });
                self.reserved += CHUNK;
                self.filling = Some(id);
                id
            }
        };
        let Some(Some(chunk)) = self.chunks.get_mut(id as usize) else {
            // Not reached: the filling chunk was just looked up or placed.
            return self.alloc_own(len, write);
        };
        let offset = chunk.bytes.len();
        write(&mut chunk.bytes);
        let written = chunk.bytes.len() - offset;
        let fits = offset + written <= CHUNK;
        match Handle::new(id, offset, written).filter(|_| fits) {
            Some(h) => {
                chunk.live += written;
                self.live += written;
                h
            }
            None => {
                // `write` wrote more than `len` said: the slot goes to a chunk of its own.
                let bytes = chunk.bytes.split_off(offset);
                chunk.bytes.shrink_to(CHUNK);
                self.alloc_own(bytes.len(), |out| out.extend_from_slice(&bytes))
            }
        }
    }

    /// A slot in a chunk of its own, exactly its size.
    fn alloc_own(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) -> Handle {
        let mut bytes = Vec::with_capacity(len);
        write(&mut bytes);
        bytes.shrink_to_fit();
        let written = bytes.len();
        self.live += written;
        self.reserved += bytes.capacity();
        let chunk = self.place(Chunk {
            bytes,
            live: written,
            own: true,
        });
        // The slot of an own chunk is the whole chunk; the span is not read.
        Handle { chunk, span: 0 }
    }

    /// The bytes of the slot at `h`.
    pub(super) fn get(&self, h: Handle) -> &[u8] {
        match self.chunk(h.chunk) {
            Some(c) if c.own => &c.bytes,
            Some(c) => {
                let (at, len) = (h.offset(), h.len());
                c.bytes.get(at..at + len).unwrap_or_default()
            }
            None => &[],
        }
    }

    /// Gives back the slot at `h`; its chunk goes once it holds nothing.
    pub(super) fn free(&mut self, h: Handle) {
        let filling = self.filling;
        let Some(Some(chunk)) = self.chunks.get_mut(h.chunk as usize) else {
            return;
        };
        let len = if chunk.own {
            chunk.bytes.len()
        } else {
            h.len()
        };
        chunk.live = chunk.live.saturating_sub(len);
        self.live = self.live.saturating_sub(len);
        if chunk.live > 0 {
            return;
        }
        if filling == Some(h.chunk) {
            // Nothing left in it: fill it again from the start.
            chunk.bytes.clear();
        } else {
            self.release(h.chunk);
        }
    }

    /// Copies the slot at `h` to the filling chunk and frees it where it was.
    /// A slot in a chunk of its own, or in the filling chunk, stays where it is.
    pub(super) fn relocate(&mut self, h: Handle) -> Handle {
        if self.filling == Some(h.chunk) {
            return h;
        }
        let Some(Some(from)) = self.chunks.get_mut(h.chunk as usize) else {
            return h;
        };
        if from.own {
            return h;
        }
        // Taken out for the copy, so the filling chunk can be borrowed meanwhile.
        let bytes = std::mem::take(&mut from.bytes);
        let (at, len) = (h.offset(), h.len());
        let slot = bytes.get(at..at + len).unwrap_or_default();
        let moved = self.alloc(slot.len(), |out| out.extend_from_slice(slot));
        if let Some(Some(from)) = self.chunks.get_mut(h.chunk as usize) {
            from.bytes = bytes;
        }
        self.free(h);
        moved
    }

    /// The shared chunks worth compacting now, emptiest first, holding together at most
    /// `budget` live bytes (at least one chunk when any is due); none while the holes (bytes of
    /// freed slots) are within a sixty-fourth of those chunks' live bytes plus a few chunks. The services
    /// rewrite most keys within seconds of creating them (a claim becomes a sent record, a trail
    /// chunk gets its second entry), so the holes gather in the recent chunks, which are the
    /// emptiest and the cheapest to move.
    ///
    /// Only holes count, not the unused end of a chunk that the next slot did not fit in:
    /// moving slots packs them without holes, so every batch removes holes and compaction
    /// ends, where counting the ends would move chunks of large slots again and again.
    pub(super) fn sparsest(&self, budget: usize) -> Vec<u32> {
        // Against the shared chunks' live bytes: values in chunks of their own have no holes
        // and must not raise what the shared ones may waste.
        let (holes, live) = self.closed().fold((0, 0), |(h, l), (_, c)| {
            (h + c.bytes.len() - c.live, l + c.live)
        });
        if holes <= live / 64 + SLACK {
            return Vec::new();
        }
        let mut candidates: Vec<(usize, u32)> = self
            .closed()
            .filter(|(_, c)| c.live * 100 < c.bytes.len() * MOVE_BELOW_PERCENT)
            .map(|(id, c)| (c.live, id))
            .collect();
        candidates.sort_unstable();
        let mut moved = 0;
        let mut out = Vec::new();
        for (live, id) in candidates {
            if !out.is_empty() && moved + live > budget {
                break;
            }
            moved += live;
            out.push(id);
        }
        out
    }

    /// Frees the filling chunk if it holds nothing (kept meanwhile so that a busy store does
    /// not allocate a chunk per burst), so an idle store holds only chunks with slots in them.
    pub(super) fn trim(&mut self) {
        if let Some(id) = self.filling
            && self.chunk(id).is_some_and(|c| c.live == 0)
        {
            self.release(id);
        }
    }

    /// Bytes of freed slots in the shared chunks no longer filled.
    pub(super) fn holes(&self) -> usize {
        self.closed().map(|(_, c)| c.bytes.len() - c.live).sum()
    }

    /// The shared chunks other than the one being filled.
    fn closed(&self) -> impl Iterator<Item = (u32, &Chunk)> {
        self.chunks
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((u32::try_from(i).ok()?, c.as_ref()?)))
            .filter(|(id, c)| !c.own && Some(*id) != self.filling)
    }

    /// Whether the slot at `h` is in one of `chunks`.
    pub(super) fn is_in(h: Handle, chunks: &[u32]) -> bool {
        chunks.contains(&h.chunk)
    }

    /// Bytes of the slots held.
    #[cfg(test)]
    pub(super) fn live_bytes(&self) -> usize {
        self.live
    }

    /// Bytes of every chunk, free space included.
    pub(super) fn reserved_bytes(&self) -> usize {
        self.reserved
    }

    fn chunk(&self, id: u32) -> Option<&Chunk> {
        self.chunks.get(id as usize).and_then(Option::as_ref)
    }

    fn place(&mut self, chunk: Chunk) -> u32 {
        match self.vacant.pop() {
            Some(id) => {
                if let Some(at) = self.chunks.get_mut(id as usize) {
                    *at = Some(chunk);
                }
                id
            }
            None => {
                self.chunks.push(Some(chunk));
                // Four billion chunks would be a petabyte: the index always fits.
                u32::try_from(self.chunks.len() - 1).unwrap_or(u32::MAX)
            }
        }
    }

    fn release(&mut self, id: u32) {
        if let Some(at) = self.chunks.get_mut(id as usize)
            && let Some(chunk) = at.take()
        {
            self.reserved = self.reserved.saturating_sub(chunk.bytes.capacity());
            self.vacant.push(id);
        }
        if self.filling == Some(id) {
            self.filling = None;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn put(arena: &mut Arena, bytes: &[u8]) -> Handle {
        arena.alloc(bytes.len(), |out| out.extend_from_slice(bytes))
    }

    #[test]
    fn slots_read_back_and_a_large_one_gets_a_chunk_of_its_own() {
        let mut arena = Arena::default();
        let small: Vec<Handle> = (0..1000u32)
            .map(|i| put(&mut arena, format!("slot {i}").as_bytes()))
            .collect();
        let large = vec![7u8; OWN_CHUNK_FROM];
        let big = put(&mut arena, &large);
        for (i, h) in small.iter().enumerate() {
            assert_eq!(arena.get(*h), format!("slot {i}").as_bytes());
        }
        assert_eq!(arena.get(big), &large[..]);
        assert_eq!(arena.reserved_bytes(), CHUNK + OWN_CHUNK_FROM);
        arena.free(big);
        assert_eq!(
            arena.reserved_bytes(),
            CHUNK,
            "a large slot's chunk goes with it"
        );
    }

    #[test]
    fn a_handle_holds_the_largest_offset_and_length_of_a_shared_chunk() {
        assert_eq!(std::mem::size_of::<Handle>(), 8);
        let h = Handle::new(7, CHUNK - 1, OWN_CHUNK_FROM - 1).unwrap();
        assert_eq!(
            (h.chunk, h.offset(), h.len()),
            (7, CHUNK - 1, OWN_CHUNK_FROM - 1)
        );
        assert!(Handle::new(0, CHUNK, 1).is_none());
        assert!(Handle::new(0, 0, OWN_CHUNK_FROM).is_none());
        // A writer that overshoots its estimate still gets its slot, in a chunk of its own.
        let mut arena = Arena::default();
        let long = vec![9u8; OWN_CHUNK_FROM + 10];
        let h = arena.alloc(10, |out| out.extend_from_slice(&long));
        assert_eq!(arena.get(h), &long[..]);
        let short = put(&mut arena, b"short");
        assert_eq!(arena.get(short), b"short");
    }

    #[test]
    fn chunks_of_large_slots_without_holes_are_never_due() {
        let mut arena = Arena::default();
        // 19 slots fill 250,800 bytes of a chunk; the next does not fit, leaving 4 % unused at
        // each chunk's end: more than compaction tolerates, yet moving them would gain nothing.
        let slot = vec![5u8; 13_200];
        let handles: Vec<Handle> = (0..200 * 19).map(|_| put(&mut arena, &slot)).collect();
        assert!(arena.reserved_bytes() - arena.live_bytes() > arena.live_bytes() / 64 + SLACK);
        assert!(
            arena.sparsest(usize::MAX).is_empty(),
            "no holes, nothing due"
        );
        // Holes are: freeing every other slot makes every chunk due.
        for h in handles.iter().step_by(2) {
            arena.free(*h);
        }
        assert!(!arena.sparsest(usize::MAX).is_empty());
    }

    #[test]
    fn an_emptied_chunk_is_freed_and_the_filling_one_is_reused() {
        let mut arena = Arena::default();
        let slot = vec![1u8; 1000];
        // Three chunks' worth.
        let handles: Vec<Handle> = (0..3 * CHUNK / 1000)
            .map(|_| put(&mut arena, &slot))
            .collect();
        assert_eq!(arena.reserved_bytes(), 3 * CHUNK);
        for h in &handles {
            arena.free(*h);
        }
        assert_eq!(arena.live_bytes(), 0);
        assert_eq!(
            arena.reserved_bytes(),
            CHUNK,
            "only the chunk being filled stays"
        );
        let again = put(&mut arena, b"again");
        assert_eq!(arena.get(again), b"again");
        assert_eq!(arena.reserved_bytes(), CHUNK);
        arena.trim();
        assert_eq!(arena.reserved_bytes(), CHUNK, "it holds a slot");
        arena.free(again);
        arena.trim();
        assert_eq!(arena.reserved_bytes(), 0, "an idle arena holds nothing");
        let last = put(&mut arena, b"last");
        assert_eq!(arena.get(last), b"last");
    }

    #[test]
    fn sparse_chunks_are_named_emptiest_first_and_relocation_frees_them() {
        let mut arena = Arena::default();
        let slot = vec![3u8; 1024];
        let per_chunk = CHUNK / 1024;
        let handles: Vec<Handle> = (0..10 * per_chunk)
            .map(|_| put(&mut arena, &slot))
            .collect();
        assert!(arena.sparsest(usize::MAX).is_empty(), "nothing to compact");
        // Keep one slot in ten: each of the first nine chunks is 10 % full.
        let mut kept = Vec::new();
        for (i, h) in handles.iter().enumerate() {
            if i % 10 == 0 {
                kept.push(*h);
            } else {
                arena.free(*h);
            }
        }
        let due = arena.sparsest(2 * CHUNK / 10);
        assert_eq!(due.len(), 2, "two chunks' live bytes fit the budget");
        let before = arena.reserved_bytes();
        for h in &mut kept {
            if Arena::is_in(*h, &due) {
                *h = arena.relocate(*h);
            }
        }
        // Two chunks freed; their slots went to a new one, the filling chunk being full.
        assert_eq!(arena.reserved_bytes(), before - 2 * CHUNK + CHUNK);
        for h in &kept {
            assert_eq!(arena.get(*h), &slot[..]);
        }
        // All of it, in passes: everything fits in two chunks.
        loop {
            let due = arena.sparsest(usize::MAX);
            if due.is_empty() {
                break;
            }
            for h in &mut kept {
                if Arena::is_in(*h, &due) {
                    *h = arena.relocate(*h);
                }
            }
        }
        assert!(arena.reserved_bytes() <= 2 * CHUNK + SLACK);
        assert_eq!(arena.live_bytes(), kept.len() * 1024);
        for h in &kept {
            assert_eq!(arena.get(*h), &slot[..]);
        }
    }
}
