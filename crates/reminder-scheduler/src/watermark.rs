//! The scanner's persisted position (`scan-watermark`): which buckets a scan reads, and where the
//! next one starts.
//!
//! Two rules keep every due entry in front of the scanner, whatever the length of an outage and
//! whatever `SCAN_LOOKBACK` says:
//!
//! * **Nothing unsettled is passed.** After a scan the watermark is the first bucket that still
//!   holds an entry the scan had to act on and could not (a reminder whose publish or mark
//!   failed, an entry whose removal failed, an entry not due yet), or the window's far edge when
//!   there is none. A broker outage therefore holds the watermark where the first unpublished
//!   reminder is, and the scan after it reads from there: scans read more buckets while an
//!   outage lasts (bulk reads of empty keys), and catch up in one scan when it ends. Entries
//!   whose projection has not caught up with them (`Pending`) do not hold it: their handler
//!   checks the watermark itself once the projection is written (see `filing`).
//! * **Entries filed behind a scan in flight are read by the next one.** A handler that files a
//!   task in bucket `b` and then reads a watermark at or below `b` leaves the entry to the
//!   scanner; a scan that had read `b` just before the entry was written may still move the
//!   watermark past it (its write comes after the handler's read). So each move keeps the
//!   position it replaced (`reread_from`), and every scan starts from the lower of the two: the
//!   scan after the move reads `b` again. A handler that finds the watermark already past `b`
//!   moves the entry up to the watermark instead.
//!
//! `SCAN_LOOKBACK` widens every read by a margin; nothing above relies on it. The one place
//! clocks still matter is a deployment's very first scan, which has no watermark to start from
//! and starts at the bucket of `now` minus that margin: a task filed before it by a replica whose
//! clock is behind the scanner's by more than `REMINDER_LEAD_TIME` plus `SCAN_LOOKBACK` would be
//! behind that start (a handler files at `now + REMINDER_LEAD_TIME` or later).

use serde::{Deserialize, Serialize};

/// The watermark's state key.
pub const WATERMARK_KEY: &str = "scan-watermark";

/// The persisted scan position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// Buckets before this hold nothing a scan still has to act on (except entries filed behind
    /// a scan in flight, which `reread_from` covers).
    pub next_bucket: i64,
    /// The `next_bucket` this one replaced: the next scan starts from the lower of the two.
    /// Absent in watermarks written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reread_from: Option<i64>,
}

/// The buckets one scan reads: every bucket start from `from` to `to`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: i64,
    pub to: i64,
}

impl Span {
    /// The span of a scan whose window ends in bucket `edge`, given the stored watermark.
    /// `first` is where a scan starts when there is no watermark yet (the bucket of `now`).
    pub fn of(mark: Option<&Watermark>, edge: i64, first: i64, lookback_secs: i64) -> Self {
        let (from, to) = match mark {
            Some(w) => {
                let from = w
                    .reread_from
                    .map_or(w.next_bucket, |r| r.min(w.next_bucket));
                // A scanner whose clock is behind the one that wrote the watermark still reads
                // up to it, so an entry there is never skipped because of the clocks.
                (from, edge.max(w.next_bucket))
            }
            None => (first.min(edge), edge),
        };
        Self {
            from: from.saturating_sub(lookback_secs),
            to,
        }
    }
}

/// The watermark to store after a scan that read `span` and found its first unsettled entry in
/// `first_unsettled`; `None` when the stored one (`current`) can stay as it is.
pub fn after_scan(
    current: Option<&Watermark>,
    span: Span,
    first_unsettled: Option<i64>,
) -> Option<Watermark> {
    let next_bucket = first_unsettled.map_or(span.to, |b| b.min(span.to));
    let reread_from = Some(current.map_or(span.from, |w| w.next_bucket));
    match current {
        Some(w) if w.next_bucket == next_bucket => None,
        _ => Some(Watermark {
            next_bucket,
            reread_from,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn mark(next_bucket: i64, reread_from: Option<i64>) -> Watermark {
        Watermark {
            next_bucket,
            reread_from,
        }
    }

    #[test]
    fn a_scan_starts_at_the_lower_of_the_two_positions_and_reads_to_the_edge() {
        assert_eq!(
            Span::of(Some(&mark(600, Some(540))), 660, 0, 0),
            Span { from: 540, to: 660 }
        );
        assert_eq!(
            Span::of(Some(&mark(600, Some(900))), 660, 0, 120),
            Span { from: 480, to: 660 }
        );
        assert_eq!(
            Span::of(Some(&mark(600, None)), 660, 0, 0),
            Span { from: 600, to: 660 }
        );
        // A lagging clock: the edge is behind the watermark; it reads up to the watermark.
        assert_eq!(
            Span::of(Some(&mark(600, Some(540))), 300, 0, 0),
            Span { from: 540, to: 600 }
        );
        // The first scan ever starts at the bucket of now.
        assert_eq!(Span::of(None, 660, 60, 0), Span { from: 60, to: 660 });
    }

    #[test]
    fn the_watermark_stops_at_the_first_unsettled_bucket_and_keeps_what_it_replaced() {
        let span = Span { from: 540, to: 720 };
        let current = mark(600, Some(540));
        assert_eq!(
            after_scan(Some(&current), span, None),
            Some(mark(720, Some(600)))
        );
        assert_eq!(
            after_scan(Some(&current), span, Some(660)),
            Some(mark(660, Some(600)))
        );
        // An unsettled entry below the stored position moves the watermark back to it.
        assert_eq!(
            after_scan(Some(&current), span, Some(540)),
            Some(mark(540, Some(600)))
        );
        // Held where it is: nothing to write.
        assert_eq!(after_scan(Some(&current), span, Some(600)), None);
        assert_eq!(after_scan(None, span, None), Some(mark(720, Some(540))));
    }

    #[test]
    fn watermark_json_is_stable_and_reads_the_old_form() {
        assert_eq!(
            serde_json::to_value(mark(60, Some(0))).unwrap(),
            serde_json::json!({"next_bucket": 60, "reread_from": 0})
        );
        let old: Watermark =
            serde_json::from_value(serde_json::json!({"next_bucket": 60})).unwrap();
        assert_eq!(old, mark(60, None));
    }
}
