//! Catching records a broker skipped when a partition's fetching resumed in the middle of a
//! record batch.
//!
//! Resuming a paused partition makes librdkafka fetch again from the record after the last one
//! the consumer polled (`rdkafka_partition.c rd_kafka_toppar_pause_resume`: the pause saves the
//! application position as the next fetch start and purges what was fetched beyond it). That
//! offset is usually inside a record batch: a producer batches what it sends together. Kafka
//! answers such a fetch with the whole batch and the client drops the records before the offset;
//! tansu 0.6.0 (the local and test broker) answers with the batches that *start* at or after it
//! (`tansu-storage dynostore.rs fetch`), so the rest of that batch would never be delivered and
//! the partition's offsets would move past it.
//!
//! A [`Track`] per partition worker watches the offsets the dispatcher queues. When the first
//! record after a resume is further on than the next expected one, it asks for one refetch from
//! the first offset received since fetching last started, which is the start of a batch on any
//! broker (a fetch answer starts with a batch), so the batch holding the expected record comes
//! again; records queued already are left out. If the gap is still there after the refetch it is
//! a real one (a compacted topic, transaction markers) and the partition goes on from there.
//! When the skipped records were the partition's last, no later record shows the gap: a resumed
//! partition from which nothing has come for a while ([`Track::idle_after_resume`]) is fetched
//! again the same way.

/// What the dispatcher does with a record, per [`Track::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Queue it on the partition's worker.
    Queue,
    /// Already queued (fetched again by a refetch): leave it out.
    Skip,
    /// Records before it were skipped: seek the partition to this offset and leave it out.
    Refetch(i64),
}

/// The offsets of one partition worker's records, as the dispatcher queued them.
#[derive(Debug, Default)]
pub(crate) struct Track {
    /// The offset after the last record queued.
    next: Option<i64>,
    /// The first offset queued since fetching last started (assignment, resume or refetch).
    fetch_start: Option<i64>,
    /// Fetching was resumed and no record has come since.
    resumed: bool,
    /// A refetch was asked for and the expected record has not come yet.
    refetching: bool,
    /// Checks for a stall made since the resume without a record coming.
    idle_checks: u32,
}

impl Track {
    /// Notes that fetching of the partition was resumed.
    pub(crate) fn resumed(&mut self) {
        self.resumed = true;
        self.idle_checks = 0;
    }

    /// Called once per check period: when fetching was resumed and no record has come by the
    /// second check, the offset to fetch again from (once per resume). The records the broker
    /// skipped may have been the partition's last, so no later record shows the gap; on a
    /// partition that only went quiet the refetch brings records queued already, left out.
    pub(crate) fn idle_after_resume(&mut self) -> Option<i64> {
        if !self.resumed || self.refetching {
            return None;
        }
        self.idle_checks += 1;
        if self.idle_checks < 2 {
            return None;
        }
        let from = self.fetch_start?;
        self.resumed = false;
        self.refetching = true;
        Some(from)
    }

    /// Decides about the record at `offset`, the next one the consumer polled for this partition.
    pub(crate) fn admit(&mut self, offset: i64) -> Admit {
        let Some(next) = self.next else {
            self.next = Some(offset + 1);
            self.fetch_start = Some(offset);
            return Admit::Queue;
        };
        if offset < next {
            return Admit::Skip;
        }
        if std::mem::take(&mut self.resumed) {
            if offset > next
                && !self.refetching
                && let Some(from) = self.fetch_start
            {
                self.refetching = true;
                return Admit::Refetch(from);
            }
            self.fetch_start = Some(offset);
        }
        self.refetching = false;
        self.next = Some(offset + 1);
        Admit::Queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_records_are_queued() {
        let mut t = Track::default();
        assert_eq!(t.admit(40), Admit::Queue);
        assert_eq!(t.admit(41), Admit::Queue);
        t.resumed();
        assert_eq!(t.admit(42), Admit::Queue, "resumed where it left off");
        assert_eq!(t.admit(43), Admit::Queue);
    }

    #[test]
    fn a_gap_after_a_resume_refetches_from_where_fetching_last_started() {
        let mut t = Track::default();
        for offset in 10..=20 {
            assert_eq!(t.admit(offset), Admit::Queue);
        }
        t.resumed();
        // 21..=24 were the rest of a batch the broker skipped.
        assert_eq!(t.admit(25), Admit::Refetch(10));
        for offset in 10..=20 {
            assert_eq!(t.admit(offset), Admit::Skip, "{offset} is queued already");
        }
        for offset in 21..=26 {
            assert_eq!(t.admit(offset), Admit::Queue);
        }
        // The next resume refetches from the start of the fetch that the last one began.
        t.resumed();
        assert_eq!(t.admit(27), Admit::Queue);
        assert_eq!(t.admit(28), Admit::Queue);
        t.resumed();
        assert_eq!(t.admit(31), Admit::Refetch(27));
    }

    #[test]
    fn a_gap_still_there_after_the_refetch_is_taken_as_real() {
        let mut t = Track::default();
        assert_eq!(t.admit(0), Admit::Queue);
        assert_eq!(t.admit(1), Admit::Queue);
        t.resumed();
        assert_eq!(t.admit(5), Admit::Refetch(0));
        assert_eq!(t.admit(0), Admit::Skip);
        assert_eq!(t.admit(1), Admit::Skip);
        assert_eq!(t.admit(5), Admit::Queue, "offsets 2..=4 do not exist");
        assert_eq!(t.admit(6), Admit::Queue);
    }

    #[test]
    fn a_resumed_partition_that_gets_nothing_is_refetched_once() {
        let mut t = Track::default();
        assert_eq!(t.idle_after_resume(), None, "not resumed");
        for offset in 3..=7 {
            assert_eq!(t.admit(offset), Admit::Queue);
        }
        t.resumed();
        assert_eq!(
            t.idle_after_resume(),
            None,
            "the first check only starts the wait"
        );
        assert_eq!(t.idle_after_resume(), Some(3));
        assert_eq!(t.idle_after_resume(), None, "asked once");
        assert_eq!(t.admit(3), Admit::Skip);
        assert_eq!(t.admit(8), Admit::Queue);
        // A record after the resume means the partition is flowing.
        t.resumed();
        assert_eq!(t.admit(9), Admit::Queue);
        assert_eq!(t.idle_after_resume(), None);
        assert_eq!(t.idle_after_resume(), None);
    }

    #[test]
    fn a_gap_without_a_resume_is_left_alone() {
        let mut t = Track::default();
        assert_eq!(t.admit(0), Admit::Queue);
        assert_eq!(t.admit(3), Admit::Queue, "a compacted topic has gaps");
    }
}
