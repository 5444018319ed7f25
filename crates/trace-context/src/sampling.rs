//! The head sampling decision, taken where a trace enters a process (a request, a delivery, a
//! job), before any span is built: an unsampled trace then only carries its ids on.
//!
//! The samplers are the SDK ones named by `OTEL_TRACES_SAMPLER`
//! (<https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/#general-sdk-configuration>),
//! and the ratio test is the SDK's `TraceIdRatioBased` (the trace id's low 63 bits against the
//! ratio), so every process deciding on the same trace id agrees. daprd's sampler is the
//! parent-based ratio one (`pkg/diagnostics/tracing_sampler.go` `NewDaprTraceSampler`).

use opentelemetry::trace::TraceId;

use crate::TraceParent;

/// An `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` pair that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error(
        "OTEL_TRACES_SAMPLER `{0}` is not supported: use always_on, always_off, traceidratio or their parentbased_ forms"
    )]
    Sampler(String),
    #[error("OTEL_TRACES_SAMPLER_ARG must be a ratio between 0 and 1, not `{0}`")]
    Ratio(String),
}

/// Which traces are sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// The share of new traces sampled, 0 to 1.
    ratio: f64,
    /// Whether a caller's decision (its `traceparent`'s sampled flag) is followed.
    parent_based: bool,
}

impl Sampling {
    /// Every trace, following the caller's decision: the SDK's default.
    pub const PARENT_BASED_ALWAYS_ON: Self = Self {
        ratio: 1.0,
        parent_based: true,
    };

    /// A parent-based sampler taking `ratio` of new traces (clamped to 0..=1; NaN is 0).
    pub fn parent_based_ratio(ratio: f64) -> Self {
        Self {
            ratio: clamp(ratio),
            parent_based: true,
        }
    }

    /// The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` name (the SDK's default,
    /// parent-based always-on, when the first is unset or blank; a ratio of 1 when the second is).
    pub fn from_env_values(
        sampler: Option<&str>,
        arg: Option<&str>,
    ) -> Result<Self, SamplingError> {
        let sampler = sampler.map(str::trim).unwrap_or_default();
        let ratio = || -> Result<f64, SamplingError> {
            match arg.map(str::trim).filter(|a| !a.is_empty()) {
                None => Ok(1.0),
                Some(text) => text
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| SamplingError::Ratio(text.to_owned())),
            }
        };
        let (ratio, parent_based) = match sampler {
            "" | "parentbased_always_on" => (1.0, true),
            "always_on" => (1.0, false),
            "always_off" => (0.0, false),
            "parentbased_always_off" => (0.0, true),
            "traceidratio" => (ratio()?, false),
            "parentbased_traceidratio" => (ratio()?, true),
            other => return Err(SamplingError::Sampler(other.to_owned())),
        };
        Ok(Self {
            ratio,
            parent_based,
        })
    }

    /// Whether a trace entering here is sampled: the caller's flag when there is a caller and
    /// the sampler is parent-based, the ratio on the trace id otherwise.
    pub fn sampled(&self, parent: Option<&TraceParent>, trace_id: TraceId) -> bool {
        match parent {
            Some(parent) if self.parent_based => parent.sampled,
            _ => self.ratio_keeps(trace_id),
        }
    }

    /// The decision for a trace arriving with `parent` (or none): the context to carry on, with
    /// the sampled flag set to the decision. Without a caller, a new trace id is drawn.
    pub fn decide(&self, parent: Option<&TraceParent>) -> TraceParent {
        match parent {
            Some(parent) => TraceParent {
                sampled: self.sampled(Some(parent), parent.trace_id),
                ..*parent
            },
            None => {
                let mut root = TraceParent::root(false);
                root.sampled = self.sampled(None, root.trace_id);
                root
            }
        }
    }

    /// Whether no trace can ever be sampled (so no span needs building at all).
    pub fn never(&self) -> bool {
        self.ratio <= 0.0 && !self.parent_based
    }

    /// The SDK's `TraceIdRatioBased` test: the low 63 bits of the trace id below the ratio's
    /// share of 2^63.
    fn ratio_keeps(&self, trace_id: TraceId) -> bool {
        if self.ratio >= 1.0 {
            return true;
        }
        let bytes = trace_id.to_bytes();
        let mut low = [0u8; 8];
        low.copy_from_slice(&bytes[8..]);
        // Truncation is the SDK's own rounding of the bound.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let bound = (self.ratio * (1u64 << 63) as f64) as u64;
        (u64::from_be_bytes(low) >> 1) < bound
    }
}

fn clamp(ratio: f64) -> f64 {
    if ratio.is_nan() {
        0.0
    } else {
        ratio.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parent(sampled: bool) -> TraceParent {
        TraceParent {
            sampled,
            ..TraceParent::root(true)
        }
    }

    #[test]
    fn the_environment_names_the_sampler() {
        let default = Sampling::from_env_values(None, None).unwrap();
        assert_eq!(default, Sampling::PARENT_BASED_ALWAYS_ON);
        let ratio =
            Sampling::from_env_values(Some("parentbased_traceidratio"), Some("0.25")).unwrap();
        assert_eq!(ratio, Sampling::parent_based_ratio(0.25));
        assert!(
            Sampling::from_env_values(Some("always_off"), None)
                .unwrap()
                .never()
        );
        let unknown = Sampling::from_env_values(Some("jaeger_remote"), None).unwrap_err();
        assert!(unknown.to_string().contains("`jaeger_remote`"), "{unknown}");
        let bad = Sampling::from_env_values(Some("traceidratio"), Some("2")).unwrap_err();
        assert!(bad.to_string().contains("`2`"), "{bad}");
    }

    #[test]
    fn parent_based_samplers_follow_the_caller_and_others_decide_themselves() {
        let follow = Sampling::parent_based_ratio(0.0);
        assert!(follow.decide(Some(&parent(true))).sampled);
        assert!(
            !Sampling::PARENT_BASED_ALWAYS_ON
                .decide(Some(&parent(false)))
                .sampled
        );
        let own = Sampling::from_env_values(Some("always_on"), None).unwrap();
        let unsampled = parent(false);
        let decided = own.decide(Some(&unsampled));
        assert!(decided.sampled);
        assert_eq!(decided.trace_id, unsampled.trace_id);
        let off = Sampling::from_env_values(Some("always_off"), None).unwrap();
        assert!(!off.decide(Some(&parent(true))).sampled);
        assert!(!off.decide(None).sampled);
    }

    #[test]
    fn the_ratio_is_the_sdks_test_on_the_trace_id() {
        let tenth = Sampling::from_env_values(Some("traceidratio"), Some("0.1")).unwrap();
        // Low 63 bits just under and just over a tenth of 2^63.
        let bound = (0.1 * (1u64 << 63) as f64) as u64;
        let id = |low: u64| {
            let mut bytes = [0u8; 16];
            bytes[0] = 1;
            bytes[8..].copy_from_slice(&(low << 1).to_be_bytes());
            TraceId::from_bytes(bytes)
        };
        assert!(tenth.sampled(None, id(bound - 1)));
        assert!(!tenth.sampled(None, id(bound)));
        let kept = (0..10_000).filter(|_| tenth.decide(None).sampled).count();
        assert!((700..1300).contains(&kept), "{kept} of 10,000 sampled");
    }
}
