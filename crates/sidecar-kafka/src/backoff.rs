//! The component's own retry of a message the app did not accept, from the `backOff*` metadata
//! (dapr/kit `retry.DecodeConfigWithPrefix(.., "backOff")`, used by components-contrib
//! `common/component/kafka/kafka.go Init`): the prefix `backOff` is case-sensitive, the rest of
//! the key is not, and bare numbers are milliseconds. The default retries every 5 s forever,
//! which blocks the message's partition until the app accepts it.

use crate::reader::Reader;
use sidecar_core::resources::ResourceError;
use std::time::Duration;

/// `backOffPolicy` and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum BackoffKind {
    Constant {
        interval: Duration,
    },
    Exponential {
        initial: Duration,
        randomization: f64,
        multiplier: f64,
        max_interval: Duration,
        /// Zero = no limit.
        max_elapsed: Duration,
    },
}

/// A retry policy: the kind, and `backOffMaxRetries` (`None` = unlimited).
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    pub kind: BackoffKind,
    pub max_retries: Option<u64>,
}

impl Default for BackoffPolicy {
    /// dapr/kit's `retry.DefaultConfig`: constant 5 s, unlimited.
    fn default() -> Self {
        Self {
            kind: BackoffKind::Constant {
                interval: Duration::from_secs(5),
            },
            max_retries: None,
        }
    }
}

const MILLI: Duration = Duration::from_millis(1);

impl BackoffPolicy {
    pub(crate) fn from_metadata(r: &Reader<'_>) -> Result<Self, ResourceError> {
        // Case-sensitive prefix, case-insensitive rest.
        let find = |suffix: &str| {
            r.spec
                .metadata
                .iter()
                .find(|(k, _)| {
                    k.strip_prefix("backOff")
                        .is_some_and(|rest| rest.eq_ignore_ascii_case(suffix))
                })
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let duration = |suffix: &str, default: Duration| {
            let key = format!("backOff{suffix}");
            r.duration(&key, find(suffix), MILLI)
                .map(|d| d.unwrap_or(default))
        };
        let float = |suffix: &str, default: f64| {
            let key = format!("backOff{suffix}");
            r.parse::<f64>(&key, find(suffix))
                .map(|f| f.unwrap_or(default))
        };
        let max_retries: i64 = r
            .parse("backOffMaxRetries", find("MaxRetries"))?
            .unwrap_or(-1);
        let kind = match find("Policy").map(str::to_ascii_lowercase).as_deref() {
            None | Some("constant") => BackoffKind::Constant {
                interval: duration("Duration", Duration::from_secs(5))?,
            },
            Some("exponential") => BackoffKind::Exponential {
                initial: duration("InitialInterval", Duration::from_millis(500))?,
                randomization: float("RandomizationFactor", 0.5)?,
                multiplier: float("Multiplier", 1.5)?,
                max_interval: duration("MaxInterval", Duration::from_secs(60))?,
                max_elapsed: duration("MaxElapsedTime", Duration::from_secs(15 * 60))?,
            },
            Some(other) => {
                return Err(r.error(
                    "backOffPolicy",
                    format!("{other:?} is not valid (constant or exponential)"),
                ));
            }
        };
        Ok(Self {
            kind,
            max_retries: u64::try_from(max_retries).ok(),
        })
    }

    /// A fresh schedule for one message.
    pub fn start(&self) -> Schedule {
        Schedule {
            policy: self.clone(),
            retries: 0,
            current: match self.kind {
                BackoffKind::Constant { interval } => interval,
                BackoffKind::Exponential { initial, .. } => initial,
            },
            elapsed: Duration::ZERO,
        }
    }
}

/// The delays between the attempts of one message.
#[derive(Debug)]
pub struct Schedule {
    policy: BackoffPolicy,
    retries: u64,
    current: Duration,
    elapsed: Duration,
}

impl Schedule {
    /// The wait before the next attempt; `None` once the retries are used up.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self
            .policy
            .max_retries
            .is_some_and(|max| self.retries >= max)
        {
            return None;
        }
        self.retries += 1;
        let delay = match &self.policy.kind {
            BackoffKind::Constant { interval } => *interval,
            BackoffKind::Exponential {
                randomization,
                multiplier,
                max_interval,
                max_elapsed,
                ..
            } => {
                if !max_elapsed.is_zero() && self.elapsed >= *max_elapsed {
                    return None;
                }
                let base = self.current;
                self.current = base.mul_f64(multiplier.max(1.0)).min(*max_interval);
                let spread = base.as_secs_f64() * randomization.clamp(0.0, 1.0);
                let jitter = (rand::random::<f64>() * 2.0 - 1.0) * spread;
                Duration::from_secs_f64((base.as_secs_f64() + jitter).max(0.0))
            }
        };
        self.elapsed += delay;
        Some(delay)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use sidecar_core::resources::ComponentSpec;

    fn policy(pairs: &[(&str, &str)]) -> Result<BackoffPolicy, ResourceError> {
        let spec = pairs.iter().fold(
            ComponentSpec::new("todo-pubsub", "pubsub.kafka"),
            |s, (k, v)| s.with_metadata(k, v),
        );
        BackoffPolicy::from_metadata(&Reader { spec: &spec })
    }

    #[test]
    fn default_is_every_five_seconds_forever() {
        let mut s = policy(&[]).unwrap().start();
        for _ in 0..1000 {
            assert_eq!(s.next_delay(), Some(Duration::from_secs(5)));
        }
    }

    #[test]
    fn bare_numbers_are_milliseconds_and_retries_run_out() {
        let mut s = policy(&[("backOffDuration", "200"), ("backOffMaxRetries", "2")])
            .unwrap()
            .start();
        assert_eq!(s.next_delay(), Some(Duration::from_millis(200)));
        assert_eq!(s.next_delay(), Some(Duration::from_millis(200)));
        assert_eq!(s.next_delay(), None);
    }

    #[test]
    fn prefix_is_case_sensitive_and_the_rest_is_not() {
        let p = policy(&[("backOffduration", "1s"), ("backoffMaxRetries", "0")]).unwrap();
        assert_eq!(
            p.kind,
            BackoffKind::Constant {
                interval: Duration::from_secs(1)
            }
        );
        assert_eq!(p.max_retries, None);
    }

    #[test]
    fn exponential_grows_to_its_cap() {
        let mut s = policy(&[
            ("backOffPolicy", "exponential"),
            ("backOffInitialInterval", "100ms"),
            ("backOffMultiplier", "2"),
            ("backOffRandomizationFactor", "0"),
            ("backOffMaxInterval", "300ms"),
        ])
        .unwrap()
        .start();
        let delays: Vec<_> = (0..4)
            .map(|_| s.next_delay().unwrap().as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 300, 300]);
        let e = policy(&[("backOffPolicy", "linear")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec.metadata.backOffPolicy"), "{e}");
    }
}
