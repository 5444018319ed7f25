//! Running one call under its policies in daprd's order, `retry { breaker { timeout { op } } }`
//! (`pkg/resiliency/policy.go NewRunnerWithOptions`):
//!
//! * the timeout bounds each attempt; an attempt that runs out fails like any error;
//! * the breaker sees every attempt, and any error (timeouts, permanent errors, codes that
//!   `matching` excludes) counts as its failure;
//! * a breaker rejection is permanent: the retry loop ends at once;
//! * an error with a status code is retried only if the retry policy's `matching` allows the
//!   code (`pkg/resiliency/retry.go statusCodeNeedRetry`); errors the caller marks permanent are
//!   never retried.
//!
//! With no policy at all a call is the operation itself: no clock, no lock, no allocation.

use crate::backoff::Backoff;
use crate::breaker::{Breaker, Rejection};
use crate::policy::RetryPolicy;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How the retry loop treats an operation's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retried while the policy allows (transport errors, `RETRY` answers, store errors).
    Retriable,
    /// An HTTP status from the app: retried only if `matching.httpStatusCodes` includes it.
    Status(u16),
    /// Never retried (`backoff.Permanent`), e.g. an ETag mismatch on save.
    Permanent,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure<E> {
    /// The operation's own error, from the last attempt.
    #[error("{0}")]
    Op(E),
    /// The last attempt ran out of its time.
    #[error("timed out after {0:?} (resiliency timeout)")]
    Timeout(Duration),
    /// The breaker did not let the call run.
    #[error("{0}")]
    Rejected(Rejection),
}

impl<E> Failure<E> {
    /// Whether the call was refused by an open (or saturated half-open) breaker.
    pub fn is_rejection(&self) -> bool {
        matches!(self, Self::Rejected(_))
    }
}

/// The policies one call runs under, resolved ahead of the call.
#[derive(Debug, Clone, Default)]
pub struct Runner {
    pub timeout: Option<Duration>,
    pub retry: Option<Arc<RetryPolicy>>,
    pub breaker: Option<Arc<Breaker>>,
}

impl Runner {
    /// daprd's built-in behaviour without a policy: one attempt, no timeout, no breaker.
    pub const NONE: Runner = Runner {
        timeout: None,
        retry: None,
        breaker: None,
    };

    pub fn is_none(&self) -> bool {
        self.timeout.is_none() && self.retry.is_none() && self.breaker.is_none()
    }

    /// Runs `op` until it succeeds, the policy gives up, or `cancel` fires during a wait (then
    /// the last failure is returned). `classify` says how each error is retried.
    pub async fn run<T, E, F, Fut, C>(
        &self,
        mut op: F,
        classify: C,
        cancel: Option<&CancellationToken>,
    ) -> Result<T, Failure<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Fn(&E) -> ErrorClass,
    {
        if self.is_none() {
            return op().await.map_err(Failure::Op);
        }
        let mut backoff = self.retry.as_deref().map(Backoff::new);
        loop {
            let failure = match self.attempt(&mut op).await {
                Ok(value) => return Ok(value),
                Err(f) => f,
            };
            let retriable = match &failure {
                Failure::Rejected(_) => false,
                Failure::Timeout(_) => true,
                Failure::Op(e) => match classify(e) {
                    ErrorClass::Retriable => true,
                    ErrorClass::Permanent => false,
                    ErrorClass::Status(code) => {
                        self.retry.as_ref().is_none_or(|r| r.retries_status(code))
                    }
                },
            };
            let delay = match backoff.as_mut() {
                Some(b) if retriable => b.next_delay(),
                _ => None,
            };
            let Some(delay) = delay else {
                return Err(failure);
            };
            match cancel {
                Some(token) => tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = token.cancelled() => return Err(failure),
                },
                None => tokio::time::sleep(delay).await,
            }
        }
    }

    /// One attempt: through the breaker, within the timeout.
    async fn attempt<T, E, F, Fut>(&self, op: &mut F) -> Result<T, Failure<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let generation = match &self.breaker {
            Some(b) => Some(b.before().map_err(Failure::Rejected)?),
            None => None,
        };
        let result = match self.timeout {
            Some(t) => match tokio::time::timeout(t, op()).await {
                Ok(r) => r.map_err(Failure::Op),
                Err(_) => Err(Failure::Timeout(t)),
            },
            None => op().await.map_err(Failure::Op),
        };
        if let (Some(b), Some(generation)) = (&self.breaker, generation) {
            b.after(generation, result.is_ok());
        }
        result
    }
}
