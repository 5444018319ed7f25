//! Gathering one page of a user's index: a merge of the user's 16 bucket chains (each a head
//! and its sealed segments, newest first, see [`crate::repository::index`]) that reads a sealed
//! segment only when the page reaches it.
//!
//! A chain's unread segments are all older than what it has buffered, so the newest buffered
//! summary over all chains is the next one of the page as long as no chain has run dry while
//! it still has segments: [`PageMerge::wanted`] names those segments (read in one bulk request
//! per round) before [`PageMerge::pop`] goes on. A page of `limit` items after a cursor reads
//! the 16 heads, the segment of each bucket that holds the cursor, and the few segments the
//! page runs into; never the whole index.
//!
//! The index is projected after a change commits (`crate::repository::projection`), so a list
//! lays this process's unprojected changes over it ([`PageMerge::overlay`]): a client sees its
//! own changes at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;

use events::TaskStatus;
use uuid::Uuid;

use crate::repository::{IndexSegment, SealedRef, TaskSummary, UserIndex};

/// One bucket's summaries older than the cursor, newest first.
#[derive(Debug)]
struct Chain {
    bucket: u32,
    buffer: VecDeque<TaskSummary>,
    /// Segments not read yet, newest first.
    pending: VecDeque<SealedRef>,
}

/// The bucket number of the chain of changes not yet in the index ([`PageMerge::overlay`]).
const OVERLAY: u32 = u32::MAX;

/// The merge of a user's chains below a cursor.
#[derive(Debug)]
pub struct PageMerge {
    chains: Vec<Chain>,
    after: Option<Uuid>,
    /// Tasks whose index summaries are superseded by the overlay.
    hidden: HashSet<Uuid>,
    /// Summaries taken from the store so far (heads and segments), for tests and metrics.
    pub loaded: usize,
}

impl PageMerge {
    /// Starts from the heads (in bucket order). Segments that cannot hold a summary older than
    /// `after`, or none of `status` (their counts say so), are never read.
    pub fn new(heads: Vec<UserIndex>, after: Option<Uuid>, status: Option<TaskStatus>) -> Self {
        let mut loaded = 0;
        let chains = heads
            .into_iter()
            .zip(0u32..)
            .map(|(head, bucket)| {
                loaded += head.tasks.len();
                let buffer = head
                    .tasks
                    .into_iter()
                    .filter(|s| after.is_none_or(|after| s.id < after))
                    .collect();
                // Segment i holds ids up to sealed[i].newest and above sealed[i + 1].newest.
                let sealed = &head.sealed;
                let pending = sealed
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| {
                        after.is_none_or(|after| sealed.get(i + 1).is_none_or(|o| o.newest < after))
                    })
                    .map(|(_, entry)| entry)
                    .filter(|entry| match status {
                        None => entry.len > 0,
                        Some(TaskStatus::Completed) => entry.len > entry.open,
                        Some(_) => entry.open > 0,
                    })
                    .cloned()
                    .collect();
                Chain {
                    bucket,
                    buffer,
                    pending,
                }
            })
            .collect();
        Self {
            chains,
            after,
            hidden: HashSet::new(),
            loaded,
        }
    }

    /// Shows `changes` (task id and latest summary, `None`: deleted) over the index: changes
    /// committed but not projected yet. Their index summaries, if any, are skipped, and the
    /// summaries are merged in as one more chain, so order and cursors stay as they are.
    pub fn overlay(mut self, changes: HashMap<Uuid, Option<TaskSummary>>) -> Self {
        if changes.is_empty() {
            return self;
        }
        let after = self.after;
        let mut buffer: Vec<TaskSummary> = Vec::new();
        for (id, summary) in changes {
            self.hidden.insert(id);
            buffer.extend(summary.filter(|s| after.is_none_or(|after| s.id < after)));
        }
        // Superseded summaries leave the buffers here, not in `pop`: a chain they empty then
        // names its next segment in `wanted` before the merge goes past it.
        let hidden = &self.hidden;
        for chain in &mut self.chains {
            chain.buffer.retain(|s| !hidden.contains(&s.id));
        }
        buffer.sort_unstable_by_key(|s| std::cmp::Reverse(s.id));
        self.chains.push(Chain {
            bucket: OVERLAY,
            buffer: buffer.into(),
            pending: VecDeque::new(),
        });
        self
    }

    /// The segments `(bucket, segment)` to read before [`Self::pop`]: the next one of each
    /// chain that has nothing buffered.
    pub fn wanted(&self) -> Vec<(u32, Uuid)> {
        self.chains
            .iter()
            .filter(|chain| chain.buffer.is_empty())
            .filter_map(|chain| chain.pending.front().map(|s| (chain.bucket, s.segment)))
            .collect()
    }

    /// Takes the segments [`Self::wanted`] named, in that order.
    pub fn feed(&mut self, wanted: &[(u32, Uuid)], segments: Vec<IndexSegment>) {
        for ((bucket, segment), mut loaded) in wanted.iter().zip(segments) {
            let Some(chain) = self.chains.iter_mut().find(|c| c.bucket == *bucket) else {
                continue;
            };
            if chain.pending.front().is_none_or(|s| s.segment != *segment) {
                continue;
            }
            chain.pending.pop_front();
            self.loaded += loaded.tasks.len();
            let after = self.after;
            let hidden = &self.hidden;
            loaded
                .tasks
                .retain(|s| after.is_none_or(|after| s.id < after) && !hidden.contains(&s.id));
            loaded
                .tasks
                .sort_unstable_by_key(|s| std::cmp::Reverse(s.id));
            chain.buffer.extend(loaded.tasks);
        }
    }

    /// The next summary, newest first; `None` when every chain is done. Only meaningful once
    /// [`Self::wanted`] is empty.
    pub fn pop(&mut self) -> Option<TaskSummary> {
        self.chains
            .iter_mut()
            .filter(|chain| !chain.buffer.is_empty())
            .max_by_key(|chain| chain.buffer.front().map(|s| s.id))?
            .buffer
            .pop_front()
    }

    /// Up to `limit` summaries that pass `keep`, and whether another one follows; `load` reads
    /// the segments a round needs.
    pub async fn page<E, F, Fut>(
        mut self,
        limit: usize,
        keep: impl Fn(&TaskSummary) -> bool,
        mut load: F,
    ) -> Result<(Vec<TaskSummary>, bool, usize), E>
    where
        F: FnMut(Vec<(u32, Uuid)>) -> Fut,
        Fut: Future<Output = Result<Vec<IndexSegment>, E>>,
    {
        let mut page = Vec::with_capacity(limit);
        loop {
            let wanted = self.wanted();
            if !wanted.is_empty() {
                let segments = load(wanted.clone()).await?;
                self.feed(&wanted, segments);
                continue;
            }
            match self.pop() {
                None => return Ok((page, false, self.loaded)),
                Some(summary) if keep(&summary) => {
                    if page.len() == limit {
                        return Ok((page, true, self.loaded));
                    }
                    page.push(summary);
                }
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;

    use events::{Priority, TaskSnapshot};

    use super::*;
    use crate::model::TaskRecord;
    use crate::repository::{INDEX_BUCKETS, bucket_of};

    fn record(id: Uuid, status: TaskStatus) -> TaskRecord {
        let now = chrono::Utc::now();
        TaskRecord {
            task: TaskSnapshot {
                task_id: id,
                user_id: Uuid::nil(),
                user_email: "a@example.com".into(),
                title: "t".into(),
                description: String::new(),
                priority: Priority::Low,
                due_date: None,
                status,
                version: 1,
                created_at: now,
                updated_at: now,
            },
            deleted: false,
            recent_events: Vec::new(),
            slot: None,
        }
    }

    /// A user's index of `n` tasks as the change path builds it, one in five completed.
    fn index(n: usize) -> (Vec<Uuid>, Vec<UserIndex>, HashMap<Uuid, IndexSegment>) {
        let mut heads = vec![UserIndex::default(); INDEX_BUCKETS as usize];
        let mut segments = HashMap::new();
        let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
        for (i, id) in ids.iter().enumerate() {
            let status = if i % 5 == 0 {
                TaskStatus::Completed
            } else {
                TaskStatus::Open
            };
            let head = &mut heads[bucket_of(*id, INDEX_BUCKETS) as usize];
            head.reconcile(&record(*id, status));
            if let Some((segment, sealed)) = head.seal(64, 48) {
                segments.insert(segment, sealed);
            }
        }
        (ids, heads, segments)
    }

    async fn run(
        heads: &[UserIndex],
        segments: &HashMap<Uuid, IndexSegment>,
        after: Option<Uuid>,
        status: Option<TaskStatus>,
        limit: usize,
    ) -> (Vec<Uuid>, bool, usize) {
        let merge = PageMerge::new(heads.to_vec(), after, status);
        let (page, more, loaded) = merge
            .page(
                limit,
                |s| status.is_none_or(|status| s.status == status),
                |wanted| async move {
                    Ok::<_, ()>(wanted.iter().map(|(_, s)| segments[s].clone()).collect())
                },
            )
            .await
            .unwrap();
        (page.iter().map(|s| s.id).collect(), more, loaded)
    }

    #[tokio::test]
    async fn pages_follow_creation_order_and_read_a_bounded_part_of_the_index() {
        let n = 10_000;
        let (ids, heads, segments) = index(n);
        let newest_first: Vec<Uuid> = ids.iter().rev().copied().collect();
        let heads_total: usize = heads.iter().map(|h| h.tasks.len()).sum();
        assert!(heads_total <= 16 * 64, "{heads_total}");

        let (first, more, loaded) = run(&heads, &segments, None, None, 50).await;
        assert_eq!(first, newest_first[..50]);
        assert!(more);
        assert_eq!(loaded, heads_total, "the first page needs no segment");

        // A deep page: the heads, and about one segment per bucket.
        let cursor = newest_first[5_000];
        let (deep, more, loaded) = run(&heads, &segments, Some(cursor), None, 50).await;
        assert_eq!(deep, newest_first[5_001..5_051]);
        assert!(more);
        assert!(
            loaded <= heads_total + 2 * 16 * 48,
            "loaded {loaded} of {n} summaries"
        );

        // Walking every page with a cursor sees every task once, in order.
        let mut seen: Vec<Uuid> = Vec::new();
        let mut after = None;
        loop {
            let (page, more, _) = run(&heads, &segments, after, None, 200).await;
            seen.extend(&page);
            if !more {
                break;
            }
            after = page.last().copied();
        }
        assert_eq!(seen, newest_first);

        // A status filter skips the segments whose counts rule them out.
        let completed: Vec<Uuid> = ids
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, _)| i % 5 == 0)
            .map(|(_, id)| *id)
            .collect();
        let (page, _, _) = run(&heads, &segments, None, Some(TaskStatus::Completed), 100).await;
        assert_eq!(page, completed[..100]);
    }

    #[tokio::test]
    async fn the_overlay_shows_unprojected_changes_in_order_and_hides_what_they_supersede() {
        let (ids, heads, segments) = index(500);
        let mut newest_first: Vec<Uuid> = ids.iter().rev().copied().collect();
        // A create not projected yet, a deletion of the newest task, and a completion of an
        // old one (its summary lives in a sealed segment).
        let created = Uuid::now_v7();
        let old = newest_first[400];
        let mut changes = HashMap::new();
        changes.insert(
            created,
            Some(TaskSummary::from(&record(created, TaskStatus::Open))),
        );
        changes.insert(newest_first[0], None);
        changes.insert(
            old,
            Some(TaskSummary::from(&record(old, TaskStatus::Completed))),
        );
        let page = |after: Option<Uuid>, status: Option<TaskStatus>, limit: usize| {
            let merge = PageMerge::new(heads.clone(), after, status).overlay(changes.clone());
            let segments = &segments;
            async move {
                let (page, more, _) = merge
                    .page(
                        limit,
                        |s| status.is_none_or(|status| s.status == status),
                        |wanted| async move {
                            Ok::<_, ()>(wanted.iter().map(|(_, s)| segments[s].clone()).collect())
                        },
                    )
                    .await
                    .unwrap();
                (page.iter().map(|s| s.id).collect::<Vec<_>>(), more)
            }
        };
        newest_first.remove(0);
        newest_first.insert(0, created);
        let mut seen: Vec<Uuid> = Vec::new();
        let mut after = None;
        loop {
            let (items, more) = page(after, None, 37).await;
            seen.extend(&items);
            if !more {
                break;
            }
            after = items.last().copied();
        }
        assert_eq!(seen, newest_first, "every task once, in order, as changed");
        let (completed, _) = page(None, Some(TaskStatus::Completed), 500).await;
        assert!(
            completed.contains(&old),
            "the completion shows before it is projected"
        );
        let (open, _) = page(None, Some(TaskStatus::Open), 500).await;
        assert!(!open.contains(&old) && open.contains(&created));
    }

    /// `n` fresh ids, each in `bucket`.
    fn ids_in(bucket: u32, n: usize) -> Vec<Uuid> {
        std::iter::repeat_with(Uuid::now_v7)
            .filter(|id| bucket_of(*id, INDEX_BUCKETS) == bucket)
            .take(n)
            .collect()
    }

    #[tokio::test]
    async fn a_chain_emptied_by_the_overlay_reads_its_next_segment_before_older_buckets_go_on() {
        // Bucket 5 holds one task older than everything in bucket 3; bucket 3 holds a sealed
        // segment under a head whose every summary the overlay supersedes (deleted here).
        let older = ids_in(5, 1)[0];
        let bucket3 = ids_in(3, 65);
        let mut heads = vec![UserIndex::default(); INDEX_BUCKETS as usize];
        let mut segments = HashMap::new();
        heads[5].reconcile(&record(older, TaskStatus::Open));
        for id in &bucket3 {
            heads[3].reconcile(&record(*id, TaskStatus::Open));
            if let Some((segment, sealed)) = heads[3].seal(64, 48) {
                segments.insert(segment, sealed);
            }
        }
        assert_eq!(heads[3].sealed.len(), 1, "bucket 3 has a sealed segment");
        let changes: HashMap<Uuid, Option<TaskSummary>> =
            heads[3].tasks.iter().map(|s| (s.id, None)).collect();
        let mut expected: Vec<Uuid> = bucket3
            .iter()
            .filter(|id| !changes.contains_key(id))
            .rev()
            .copied()
            .collect();
        expected.push(older);

        let mut seen: Vec<Uuid> = Vec::new();
        let mut after = None;
        loop {
            let merge = PageMerge::new(heads.clone(), after, None).overlay(changes.clone());
            let segments = &segments;
            let (page, more, _) = merge
                .page(
                    5,
                    |_| true,
                    |wanted| async move {
                        Ok::<_, ()>(wanted.iter().map(|(_, s)| segments[s].clone()).collect())
                    },
                )
                .await
                .unwrap();
            seen.extend(page.iter().map(|s| s.id));
            if !more {
                break;
            }
            after = page.last().map(|s| s.id);
        }
        assert_eq!(seen, expected, "every task once, newest first");
    }
}
