//! The `traceparent` header (<https://www.w3.org/TR/trace-context/#traceparent-header>):
//! `version-traceid-parentid-flags` in lowercase hex.
//!
//! * version `ff` is invalid; `00` has exactly four fields; a later version may append fields
//!   after the flags, which a version-00 reader ignores (section 4.3, "Versioning of traceparent").
//! * an all-zero trace id or parent id is invalid.
//! * of the flags only `sampled` (bit 0) is defined; the others are not passed on.

use std::fmt;

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use rand::RngCore as _;

/// A header that is not a usable `traceparent`; the W3C rule is to start a new trace then, not
/// to fail the request, so callers usually only log this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    #[error("traceparent needs four `-`-separated fields (version-traceid-parentid-flags)")]
    Fields,
    #[error("traceparent {field} must be {len} lowercase hex digits, not `{value}`")]
    Hex {
        field: &'static str,
        len: usize,
        value: String,
    },
    #[error("traceparent version ff is invalid")]
    Version,
    #[error("traceparent version 00 has exactly four fields")]
    TrailingFields,
    #[error("traceparent {0} must not be all zeros")]
    Zero(&'static str),
}

/// A parsed `traceparent`: the trace, the caller's span, and whether the caller sampled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub sampled: bool,
}

impl TraceParent {
    /// Reads a header value by the W3C rules (surrounding blanks allowed).
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        let mut fields = value.trim().split('-');
        let (Some(version), Some(trace), Some(parent), Some(flags)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(TraceParentError::Fields);
        };
        hex("version", version, 2)?;
        if version == "ff" {
            return Err(TraceParentError::Version);
        }
        if version == "00" && fields.next().is_some() {
            return Err(TraceParentError::TrailingFields);
        }
        let trace_id = TraceId::from_bytes(u128::to_be_bytes(hex("trace-id", trace, 32)?));
        let parent_id = SpanId::from_bytes(u64::to_be_bytes(
            u64::try_from(hex("parent-id", parent, 16)?).map_err(|_| TraceParentError::Fields)?,
        ));
        let flags = hex("trace-flags", flags, 2)?;
        if trace_id == TraceId::INVALID {
            return Err(TraceParentError::Zero("trace-id"));
        }
        if parent_id == SpanId::INVALID {
            return Err(TraceParentError::Zero("parent-id"));
        }
        Ok(Self {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The header value, when it is a valid `traceparent`.
    pub fn from_header(value: Option<&str>) -> Option<Self> {
        value.and_then(|value| Self::parse(value).ok())
    }

    /// A new span of this trace (the same sampled flag), named as the parent of what follows.
    pub fn child(&self) -> Self {
        Self {
            parent_id: new_span_id(),
            ..*self
        }
    }

    /// A new root: a fresh trace id and span id.
    pub fn root(sampled: bool) -> Self {
        Self {
            trace_id: new_trace_id(),
            parent_id: new_span_id(),
            sampled,
        }
    }

    /// The span context this header names, remote, with `tracestate` attached.
    pub fn to_span_context(&self, tracestate: TraceState) -> SpanContext {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(self.trace_id, self.parent_id, flags, true, tracestate)
    }

    /// The `traceparent` naming `context` as the parent; `None` for an invalid context.
    pub fn of(context: &SpanContext) -> Option<Self> {
        context.is_valid().then(|| Self {
            trace_id: context.trace_id(),
            parent_id: context.span_id(),
            sampled: context.is_sampled(),
        })
    }
}

/// Always written as version 00.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.parent_id,
            u8::from(self.sampled)
        )
    }
}

/// `tracestate` as received, when it is a valid list (the spec's list-member rules, checked by
/// [`TraceState`]'s parser); an invalid one is dropped, as the spec allows. Nothing is added:
/// neither the services nor the sidecar keep vendor state.
pub fn tracestate(value: Option<&str>) -> TraceState {
    value
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .and_then(|value| value.parse::<TraceState>().ok())
        .unwrap_or_default()
}

/// A random, valid trace id.
pub fn new_trace_id() -> TraceId {
    let mut rng = rand::rng();
    loop {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        let id = TraceId::from_bytes(bytes);
        if id != TraceId::INVALID {
            return id;
        }
    }
}

/// A random, valid span id.
pub fn new_span_id() -> SpanId {
    let mut rng = rand::rng();
    loop {
        let mut bytes = [0u8; 8];
        rng.fill_bytes(&mut bytes);
        let id = SpanId::from_bytes(bytes);
        if id != SpanId::INVALID {
            return id;
        }
    }
}

/// `text` as a number when it is exactly `len` lowercase hex digits (the spec allows no
/// uppercase).
fn hex(field: &'static str, text: &str, len: usize) -> Result<u128, TraceParentError> {
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if text.len() != len || !text.bytes().all(lower_hex) {
        return Err(TraceParentError::Hex {
            field,
            len,
            value: text.to_owned(),
        });
    }
    u128::from_str_radix(text, 16).map_err(|_| TraceParentError::Hex {
        field,
        len,
        value: text.to_owned(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_version_00_header_round_trips() {
        let parsed = TraceParent::parse(GOOD).unwrap();
        assert!(parsed.sampled);
        assert_eq!(
            parsed.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parsed.parent_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(parsed.to_string(), GOOD);
        assert_eq!(TraceParent::parse(&format!("  {GOOD} ")).unwrap(), parsed);
    }

    #[test]
    fn only_the_sampled_flag_is_kept() {
        let unsampled =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.sampled);
        // Unknown flag bits are neither sampled nor passed on.
        let other =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02").unwrap();
        assert!(!other.sampled);
        assert!(other.to_string().ends_with("-00"));
        let both =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03").unwrap();
        assert!(both.sampled);
        assert!(both.to_string().ends_with("-01"));
    }

    #[test]
    fn later_versions_may_append_fields_and_are_written_as_00() {
        let later =
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what")
                .unwrap();
        assert_eq!(later.to_string(), GOOD);
        assert_eq!(
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"),
            Err(TraceParentError::TrailingFields)
        );
    }

    #[test]
    fn invalid_headers_are_refused_with_the_reason() {
        let cases = [
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version ff",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "trace-id must not be all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "parent-id must not be all zeros",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "trace-id must be 32 lowercase hex",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                "trace-flags must be 2",
            ),
            (
                "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version must be 2",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "four",
            ),
            ("garbage", "four"),
        ];
        for (header, reason) in cases {
            let error = TraceParent::parse(header).unwrap_err().to_string();
            assert!(error.contains(reason), "{header}: {error}");
            assert_eq!(TraceParent::from_header(Some(header)), None);
        }
    }

    #[test]
    fn span_contexts_convert_both_ways() {
        let parsed = TraceParent::parse(GOOD).unwrap();
        let state = tracestate(Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
        let context = parsed.to_span_context(state);
        assert!(context.is_remote() && context.is_sampled());
        assert_eq!(
            context.trace_state().header(),
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        );
        assert_eq!(TraceParent::of(&context), Some(parsed));
        assert_eq!(TraceParent::of(&SpanContext::empty_context()), None);
        let child = parsed.child();
        assert_eq!(child.trace_id, parsed.trace_id);
        assert_ne!(child.parent_id, parsed.parent_id);
        assert!(child.sampled);
        let root = TraceParent::root(false);
        assert_ne!(root.trace_id, TraceId::INVALID);
        assert_eq!(TraceParent::parse(&root.to_string()), Ok(root));
    }

    #[test]
    fn tracestate_is_passed_through_when_valid_and_dropped_otherwise() {
        assert_eq!(tracestate(Some("vendor=value")).header(), "vendor=value");
        assert_eq!(tracestate(Some("not a list member")).header(), "");
        assert_eq!(tracestate(Some("")).header(), "");
        assert_eq!(tracestate(None).header(), "");
    }
}
