//! The per-user limit on open tasks (`MAX_OPEN_TASKS_PER_USER`): a task is open until it is
//! completed or deleted, so completing or deleting one frees a slot, and reopening a completed
//! one (a `PATCH` of its status) takes one again.
//!
//! # Slots: exact across replicas, with no read and no turn
//!
//! A user has `max` **slots**, `user:{u}:open:{n}` for `n` in `0..max`. An open task holds one:
//! a create writes its slot in its own transaction, a reopen with a save of its own just before
//! its transaction, each with the etag `-1`, which an absent key accepts and an existing key refuses (every stored
//! version counts up from 1; the in-memory store and Redis both check it inside a transaction,
//! unlike `first-write`, components-contrib `state/redis/redis.go`, `StateStore.Multi`). The
//! slot's value is the task's id and the record names its slot ([`TaskRecord::slot`]). Two
//! changes cannot both take one slot, so at most `max` slots exist and **a user never has more
//! than `max` open tasks, whatever the number of replicas**, with no key every change of the
//! user races on and no read before the write.
//!
//! A change picks a slot at random, except that each process hands out one user's slots
//! consecutively from a random start ([`SlotHints`]), so one process's burst of creates for one
//! user never collides with itself; a random slot, with `k` of `max` taken, collides with
//! probability `k / max`. A create's collision is a failed transaction whose task write applied
//! (the store does not roll back, see [the repository](super)): the writer reads back, finds the
//! slot held by another task, takes its create back ([`TaskRepository::undo_change`]: nobody
//! else knows a fresh task's id) and tries another slot. A reopen's collision is a refused save
//! before its transaction, so its task is never written: taking back a write of an existing task
//! would restore an older version over one others may have seen. A reopen also treats a slot key
//! naming its own task as taken: that key is left over from the task's close (or an earlier
//! attempt) and its release may delete it at any moment. After
//! [`RANDOM_PICKS`] collisions it reads all of the user's slots in one bulk read and picks among
//! the free ones, and answers 409 `open-task-limit` when none is free. A user whose last such
//! read (in this process) found fewer than half the slots free goes to that read at once
//! ([`SlotHints::crowded`]): near the limit a random pick would mostly collide, each collision
//! a write, a read and an undo.
//!
//! A completion or deletion does not touch the slot in its transaction: a delete of a key
//! cannot be made conditional on its value, and a close whose record write lost its race would
//! still free a slot another task may have taken since. The cleaner releases it once the change
//! is known committed ([`TaskRepository::release_slots`]): a slot is deleted, against the etag
//! it was read with, only when it names a task whose record (read after the slot) no longer
//! holds it. The same rule frees a slot written by a change that did not commit. Until then
//! the slot counts, so the limit only errs on the safe side for a moment (one cleaner period);
//! a create of this process that finds no free slot first releases this process's pending
//! ones, so a client that completed a task can create the next one at once.
//!
//! The bound can be passed by one task per occurrence only when a create whose slot collided
//! cannot be taken back: its task changed again in between, or its writer died (or lost the
//! store's answer) between the failed transaction and the undo; that create stands, logged. A
//! client hanging up does not stop the undo: the write and its judging run in a task of their
//! own (`crate::outbox::Outbox::commit`).
//! Tasks written before slots existed hold none and are not counted until they are next
//! reopened.
//!
//! Memory: one key per open task, its value a quoted UUID (38 bytes), about 110 bytes with the
//! key in the in-memory store.
//!
//! [`TaskRecord::slot`]: crate::model::TaskRecord::slot
//! [`TaskRepository::undo_change`]: super::TaskRepository::undo_change
//! [`TaskRepository::release_slots`]: super::TaskRepository::release_slots

use std::collections::{HashMap, HashSet};

use rand::Rng as _;
use uuid::Uuid;

use crate::error::ApiError;
use crate::model::TaskRecord;

/// Random picks before a change reads the user's slots to find a free one.
pub const RANDOM_PICKS: usize = 3;

/// `MAX_OPEN_TASKS_PER_USER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenTaskLimit {
    max: u32,
}

impl OpenTaskLimit {
    pub fn new(max: u32) -> Self {
        Self { max }
    }

    /// The setting.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// The refusal a change that would open one task too many gets.
    pub fn reached(&self) -> ApiError {
        metrics::counter!("task_api_open_task_limit_total").increment(1);
        ApiError::OpenTaskLimit { limit: self.max }
    }
}

/// The slots one change has tried, and what it knows of the free ones.
#[derive(Debug, Default)]
pub struct SlotPicker {
    collided: HashSet<u32>,
    /// The free slots as last read, once random picks are used up.
    free: Option<Vec<u32>>,
    /// Skip the hint and the random picks: most of the user's slots were taken at the last
    /// read ([`SlotHints::crowded`]).
    read_first: bool,
}

/// What [`SlotPicker::next`] answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    /// Try this slot.
    Slot(u32),
    /// Read the free slots and [`SlotPicker::feed`] them first.
    ReadFree,
}

impl SlotPicker {
    /// The next slot to try; `hint` is this process's next slot for the user
    /// ([`SlotHints`]), tried first.
    pub fn next(&mut self, limit: OpenTaskLimit, hint: Option<u32>) -> Pick {
        let max = limit.max();
        if let Some(n) = hint.filter(|n| *n < max && !self.collided.contains(n))
            && self.collided.is_empty()
            && !self.read_first
        {
            return Pick::Slot(n);
        }
        if !self.read_first
            && self.collided.len() < RANDOM_PICKS
            && (self.collided.len() as u64) < u64::from(max)
        {
            let mut rng = rand::rng();
            loop {
                let n = rng.random_range(0..max.max(1));
                if !self.collided.contains(&n) {
                    return Pick::Slot(n);
                }
            }
        }
        match &mut self.free {
            None => Pick::ReadFree,
            // Read since the last collision (each collision drops the list), so every slot in it
            // is worth a try, one that collided before the read included.
            Some(free) => {
                if free.is_empty() {
                    self.free = None;
                    return Pick::ReadFree;
                }
                let at = rand::rng().random_range(0..free.len());
                Pick::Slot(free.swap_remove(at))
            }
        }
    }

    /// Goes to the read of the free slots at once: a random pick would likely collide.
    pub fn read_first(&mut self) {
        self.read_first = true;
    }

    /// Whether nothing was tried yet.
    pub fn is_fresh(&self) -> bool {
        self.collided.is_empty()
    }

    /// The free slots just read; `false` when there are none (the limit is reached).
    pub fn feed(&mut self, free: Vec<u32>) -> bool {
        let any = !free.is_empty();
        self.free = Some(free);
        any
    }

    /// Slot `n` was taken by another task.
    pub fn collided(&mut self, n: u32) {
        self.collided.insert(n);
        // Whoever took it may have taken others the list still shows as free.
        self.free = None;
    }
}

/// Where this process takes each user's next slot: consecutive slots from a random start, so
/// its own creates of one user never collide with each other until they wrap around, and
/// replicas start far apart. A collision moves the user's start to a random slot. Bounded:
/// past [`SlotHints::USERS`] users it starts over (a forgotten user gets a random start).
#[derive(Debug, Default)]
pub struct SlotHints {
    next: std::sync::Mutex<HashMap<Uuid, u32>>,
    /// Users whose last read of their slots found fewer than half of them free (none, at the
    /// limit): a random pick would more likely collide (a write, a read and an undo) than not,
    /// so their next change reads the free slots first. A read that finds more free forgets
    /// the user. Bounded like `next`.
    crowded: std::sync::Mutex<HashSet<Uuid>>,
}

impl SlotHints {
    /// How many users' starts are remembered.
    pub const USERS: usize = 65_536;

    fn next(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, u32>> {
        self.next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The slot to try first for `user_id`, moving the user's cursor past it.
    pub fn take(&self, user_id: Uuid, limit: OpenTaskLimit) -> u32 {
        let max = limit.max().max(1);
        let mut next = self.next();
        if next.len() >= Self::USERS && !next.contains_key(&user_id) {
            next.clear();
        }
        let cursor = next
            .entry(user_id)
            .or_insert_with(|| rand::rng().random_range(0..max));
        let n = *cursor % max;
        *cursor = (n + 1) % max;
        n
    }

    /// Whether `user_id`'s last read of its slots found most of them taken.
    pub fn crowded(&self, user_id: Uuid) -> bool {
        self.crowded_users().contains(&user_id)
    }

    /// A read of `user_id`'s slots found `free` of them free.
    pub fn read_free(&self, user_id: Uuid, free: usize, limit: OpenTaskLimit) {
        let mut crowded = self.crowded_users();
        if (free as u64) * 2 < u64::from(limit.max()) {
            if crowded.len() >= Self::USERS {
                crowded.clear();
            }
            crowded.insert(user_id);
        } else {
            crowded.remove(&user_id);
        }
    }

    fn crowded_users(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.crowded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot of `user_id` was found taken: move the user's cursor somewhere else.
    pub fn collided(&self, user_id: Uuid, limit: OpenTaskLimit) {
        let max = limit.max().max(1);
        self.next()
            .insert(user_id, rand::rng().random_range(0..max));
    }
}

/// Whether writing `next` over `previous` opens a task: a create, or a reopen.
pub fn opens(previous: Option<&TaskRecord>, next: &TaskRecord) -> bool {
    is_open(next) && !previous.is_some_and(is_open)
}

/// Whether writing `next` over `previous` closes a task (a completion, a deletion).
pub fn closes(previous: Option<&TaskRecord>, next: &TaskRecord) -> bool {
    !is_open(next) && previous.is_some_and(is_open)
}

fn is_open(record: &TaskRecord) -> bool {
    !record.deleted && record.task.status != events::TaskStatus::Completed
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn random_picks_then_only_slots_read_free() {
        let limit = OpenTaskLimit::new(10);
        let mut picker = SlotPicker::default();
        let mut seen = HashSet::new();
        for _ in 0..RANDOM_PICKS {
            let Pick::Slot(n) = picker.next(limit, None) else {
                panic!("random picks first")
            };
            assert!(n < 10 && seen.insert(n), "{n} picked again after colliding");
            picker.collided(n);
        }
        assert_eq!(picker.next(limit, None), Pick::ReadFree);
        // A slot that collided before the read and shows free in it was released since: the
        // read is the fresher word (a create found the limit reached while a completion's slot
        // was on its way out).
        let released = *seen.iter().next().unwrap();
        assert!(picker.feed(vec![released]));
        assert_eq!(picker.next(limit, None), Pick::Slot(released));
        let free = released;
        picker.collided(free);
        assert_eq!(picker.next(limit, None), Pick::ReadFree);
        assert!(
            !picker.feed(Vec::new()),
            "no free slot: the limit is reached"
        );
    }

    #[test]
    fn one_process_takes_consecutive_slots_of_a_user_and_jumps_after_a_collision() {
        let limit = OpenTaskLimit::new(1_000);
        let hints = SlotHints::default();
        let user = Uuid::new_v4();
        let first = hints.take(user, limit);
        let taken: Vec<u32> = (0..999).map(|_| hints.take(user, limit)).collect();
        let mut all: HashSet<u32> = taken.iter().copied().collect();
        all.insert(first);
        assert_eq!(
            all.len(),
            1_000,
            "a thousand creates, a thousand slots, no repeat"
        );
        let mut picker = SlotPicker::default();
        assert_eq!(
            picker.next(limit, Some(42)),
            Pick::Slot(42),
            "the hint first"
        );
        picker.collided(42);
        assert_ne!(picker.next(limit, Some(42)), Pick::Slot(42));
    }

    #[test]
    fn a_limit_of_one_never_loops_on_its_only_slot() {
        let limit = OpenTaskLimit::new(1);
        let mut picker = SlotPicker::default();
        assert_eq!(picker.next(limit, None), Pick::Slot(0));
        picker.collided(0);
        assert_eq!(picker.next(limit, None), Pick::ReadFree);
    }

    #[test]
    fn a_user_whose_slots_were_mostly_taken_reads_the_free_ones_first() {
        let limit = OpenTaskLimit::new(10);
        let hints = SlotHints::default();
        let user = Uuid::now_v7();
        assert!(!hints.crowded(user));
        hints.read_free(user, 0, limit);
        assert!(hints.crowded(user), "none free");
        let mut picker = SlotPicker::default();
        picker.read_first();
        assert_eq!(picker.next(limit, Some(3)), Pick::ReadFree);
        assert!(picker.feed(vec![7]));
        assert_eq!(picker.next(limit, None), Pick::Slot(7));
        hints.read_free(user, 4, limit);
        assert!(hints.crowded(user), "four of ten free");
        hints.read_free(user, 5, limit);
        assert!(!hints.crowded(user), "half free");
    }
}
