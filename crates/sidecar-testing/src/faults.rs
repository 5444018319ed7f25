//! Fault injection shared by every sidecar of a cluster; the hooks around the cluster's pub/subs
//! and state stores apply it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Faults the next operations will suffer.
#[derive(Debug, Default)]
pub struct Faults {
    fail_publishes: AtomicUsize,
    fail_state_ops: AtomicUsize,
    duplicate_deliveries: AtomicBool,
    delay_deliveries: Mutex<Duration>,
}

fn take(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl Faults {
    /// The next `n` publishes fail: an API publish or bulk entry answers 500
    /// `ERR_PUBSUB_PUBLISH_MESSAGE`, a dead-letter copy goes back to the broker for redelivery.
    pub fn fail_next_publishes(&self, n: usize) -> &Self {
        self.fail_publishes.store(n, Ordering::SeqCst);
        self
    }

    /// The next `n` state API calls fail with the operation's 500 error.
    pub fn fail_next_state_ops(&self, n: usize) -> &Self {
        self.fail_state_ops.store(n, Ordering::SeqCst);
        self
    }

    /// Every message the sidecar has handled is handed to it once more, as a broker that
    /// redelivers would (at-least-once duplicates).
    pub fn duplicate_deliveries(&self, on: bool) -> &Self {
        self.duplicate_deliveries.store(on, Ordering::SeqCst);
        self
    }

    /// Every delivery waits this long before it is sent to the app.
    pub fn delay_deliveries(&self, delay: Duration) -> &Self {
        *self
            .delay_deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = delay;
        self
    }

    /// Clears every fault.
    pub fn reset(&self) -> &Self {
        self.fail_next_publishes(0)
            .fail_next_state_ops(0)
            .duplicate_deliveries(false)
            .delay_deliveries(Duration::ZERO)
    }

    pub(crate) fn take_publish_failure(&self) -> bool {
        take(&self.fail_publishes)
    }

    pub(crate) fn take_state_failure(&self) -> bool {
        take(&self.fail_state_ops)
    }

    pub(crate) fn duplicates(&self) -> bool {
        self.duplicate_deliveries.load(Ordering::SeqCst)
    }

    pub(crate) fn delivery_delay(&self) -> Duration {
        *self
            .delay_deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
