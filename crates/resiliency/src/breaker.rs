//! A circuit breaker as daprd runs one: sony/gobreaker v0.5.0's state machine (`beforeRequest`,
//! `afterRequest`, `currentState`, `toNewGeneration`) with daprd's CEL `trip` expression
//! (`pkg/resiliency/breaker/circuitbreaker.go`).
//!
//! * closed: calls run; after each failure `trip` is evaluated over the counts and opens the
//!   breaker when it is `true` (an evaluation error or a non-boolean never trips). The counts
//!   are cleared on every state change and every `interval` (zero = never).
//! * open: calls are rejected unexecuted; after `timeout` the breaker is half-open.
//! * half-open: `maxRequests` calls are admitted (more are rejected with "too many requests");
//!   a failure reopens, `maxRequests` successes in a row close.
//!
//! A result that arrives after the generation changed (the breaker moved on meanwhile) is not
//! counted. The `*_at` methods take the time as an argument so tests can drive the clock.

use crate::policy::BreakerPolicy;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use tokio::time::Instant;

/// A breaker's state; the numbers are daprd's `cb_state` gauge values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

impl BreakerState {
    /// daprd's status label (`breaker.StateClosed` ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half-open",
            Self::Open => "open",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::HalfOpen,
            2 => Self::Open,
            _ => Self::Closed,
        }
    }
}

/// Why a call was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("circuit breaker is open")]
    Open,
    #[error("too many requests")]
    TooManyRequests,
}

/// gobreaker's `Counts` of the current generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u32,
    pub total_successes: u32,
    pub total_failures: u32,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    generation: u64,
    counts: Counts,
    /// When closed: end of the current interval; when open: end of the open period.
    expiry: Option<Instant>,
}

/// One breaker instance (one component name, or one app + method, of one sidecar).
#[derive(Debug)]
pub struct Breaker {
    policy: Arc<BreakerPolicy>,
    app_id: String,
    target: String,
    inner: Mutex<Inner>,
    state_gauge: AtomicU8,
    rejected: AtomicU64,
    /// State changes into closed, half-open, open.
    activations: [AtomicU64; 3],
}

impl Breaker {
    /// A closed breaker for `target` (daprd's metric target, e.g. `pubsub_todo-pubsub`) of the
    /// sidecar of `app_id`.
    pub fn new(policy: Arc<BreakerPolicy>, app_id: &str, target: String) -> Self {
        let expiry = (!policy.interval.is_zero()).then(|| Instant::now() + policy.interval);
        Self {
            policy,
            app_id: app_id.to_string(),
            target,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                generation: 0,
                counts: Counts::default(),
                expiry,
            }),
            state_gauge: AtomicU8::new(BreakerState::Closed as u8),
            rejected: AtomicU64::new(0),
            activations: Default::default(),
        }
    }

    pub fn policy(&self) -> &BreakerPolicy {
        &self.policy
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// The state as of now (an open breaker whose timeout passed reports half-open).
    pub fn state(&self) -> BreakerState {
        self.state_at(Instant::now())
    }

    pub(crate) fn state_at(&self, now: Instant) -> BreakerState {
        let mut inner = self.lock();
        self.current_state(&mut inner, now);
        inner.state
    }

    /// The state last recorded, without looking at the clock (for metrics).
    pub fn recorded_state(&self) -> BreakerState {
        BreakerState::from_u8(self.state_gauge.load(Ordering::Relaxed))
    }

    /// Calls rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// State changes into `state` so far.
    pub fn activations(&self, state: BreakerState) -> u64 {
        self.activations[state as usize].load(Ordering::Relaxed)
    }

    /// Admits a call, returning its generation, or rejects it.
    pub fn before(&self) -> Result<u64, Rejection> {
        self.before_at(Instant::now())
    }

    pub(crate) fn before_at(&self, now: Instant) -> Result<u64, Rejection> {
        let mut inner = self.lock();
        self.current_state(&mut inner, now);
        let rejection = match inner.state {
            BreakerState::Open => Some(Rejection::Open),
            BreakerState::HalfOpen if inner.counts.requests >= self.policy.max_requests => {
                Some(Rejection::TooManyRequests)
            }
            _ => None,
        };
        if let Some(r) = rejection {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(r);
        }
        inner.counts.requests = inner.counts.requests.saturating_add(1);
        Ok(inner.generation)
    }

    /// Records the result of a call admitted in `generation`.
    pub fn after(&self, generation: u64, success: bool) {
        self.after_at(generation, success, Instant::now());
    }

    pub(crate) fn after_at(&self, generation: u64, success: bool, now: Instant) {
        let mut inner = self.lock();
        self.current_state(&mut inner, now);
        if inner.generation != generation {
            return;
        }
        let c = &mut inner.counts;
        if success {
            c.total_successes = c.total_successes.saturating_add(1);
            c.consecutive_successes = c.consecutive_successes.saturating_add(1);
            c.consecutive_failures = 0;
            if inner.state == BreakerState::HalfOpen
                && inner.counts.consecutive_successes >= self.policy.max_requests
            {
                self.set_state(&mut inner, BreakerState::Closed, now);
            }
        } else {
            c.total_failures = c.total_failures.saturating_add(1);
            c.consecutive_failures = c.consecutive_failures.saturating_add(1);
            c.consecutive_successes = 0;
            match inner.state {
                BreakerState::Closed if self.trips(&inner.counts) => {
                    self.set_state(&mut inner, BreakerState::Open, now);
                }
                BreakerState::HalfOpen => self.set_state(&mut inner, BreakerState::Open, now),
                _ => {}
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The lock guards plain counters: a panic elsewhere cannot leave them inconsistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn trips(&self, counts: &Counts) -> bool {
        let mut ctx = cel::Context::default();
        for (name, value) in [
            ("requests", counts.requests),
            ("totalSuccesses", counts.total_successes),
            ("totalFailures", counts.total_failures),
            ("consecutiveSuccesses", counts.consecutive_successes),
            ("consecutiveFailures", counts.consecutive_failures),
        ] {
            ctx.add_variable_from_value(name, cel::Value::Int(i64::from(value)));
        }
        matches!(
            self.policy.trip.program.execute(&ctx),
            Ok(cel::Value::Bool(true))
        )
    }

    fn current_state(&self, inner: &mut Inner, now: Instant) {
        match inner.state {
            BreakerState::Closed => {
                if inner.expiry.is_some_and(|e| e <= now) {
                    self.new_generation(inner, now);
                }
            }
            BreakerState::Open => {
                if inner.expiry.is_some_and(|e| e <= now) {
                    self.set_state(inner, BreakerState::HalfOpen, now);
                }
            }
            BreakerState::HalfOpen => {}
        }
    }

    fn set_state(&self, inner: &mut Inner, state: BreakerState, now: Instant) {
        if inner.state == state {
            return;
        }
        let previous = inner.state;
        inner.state = state;
        self.new_generation(inner, now);
        self.state_gauge.store(state as u8, Ordering::Relaxed);
        self.activations[state as usize].fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            app_id = %self.app_id,
            target = %self.target,
            breaker = %self.policy.name,
            from = previous.as_str(),
            state = state.as_str(),
            "circuit breaker changed state"
        );
    }

    fn new_generation(&self, inner: &mut Inner, now: Instant) {
        inner.generation = inner.generation.wrapping_add(1);
        inner.counts = Counts::default();
        inner.expiry = match inner.state {
            BreakerState::Closed => {
                (!self.policy.interval.is_zero()).then(|| now + self.policy.interval)
            }
            BreakerState::Open => Some(now + self.policy.timeout),
            BreakerState::HalfOpen => None,
        };
    }
}
