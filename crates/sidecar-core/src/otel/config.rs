//! `spec.tracing` of a sidecar's Configuration (`--config`, run-file `configFilePath`), read the
//! way daprd reads it (`pkg/config/configuration.go` `TracingSpec`, `OtelSpec`, `ZipkinSpec`):
//!
//! ```yaml
//! spec:
//!   tracing:
//!     samplingRate: "1"        # a float as a string; "0" turns tracing off
//!     otel:
//!       endpointAddress: "collector:4318"
//!       isSecure: false
//!       protocol: http
//!     zipkin:
//!       endpointAddress: "http://zipkin:9411/api/v2/spans"
//! ```
//!
//! The sampler is daprd's `NewDaprTraceSampler` (`pkg/diagnostics/tracing_sampler.go`): parent
//! based, trace-id ratio at `samplingRate` for new traces, with daprd's default rate of 1e-4
//! when the rate is missing or not a number (`pkg/diagnostics/utils/trace_utils.go`
//! `GetTraceSamplingRate`). As daprd (`pkg/runtime/runtime.go` `setupTracing`), each endpoint
//! configured gets an exporter: OTLP over HTTP, and Zipkin at its full URL, both at once when
//! both are set.

use serde::Deserialize;

/// daprd's sampling rate when none (or no number) is configured.
pub const DEFAULT_SAMPLING_RATE: f64 = 1e-4;

/// A `spec.tracing` section that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TracingConfigError {
    #[error("the Configuration is not valid YAML: {0}")]
    Yaml(String),
    #[error("spec.tracing.otel.protocol `{0}` is not supported by this sidecar: use `http`")]
    Protocol(String),
    #[error("spec.tracing.otel.endpointAddress `{0}` is not a host:port address")]
    Endpoint(String),
    #[error("spec.tracing.zipkin.endpointAddress `{0}` is not an http:// or https:// URL")]
    Zipkin(String),
}

/// Where and how much this sidecar traces.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingOptions {
    /// Ratio of new traces sampled, 0 < rate (1 and above: all).
    pub sampling_rate: f64,
    /// The OTLP/HTTP traces URL (`http[s]://host:port/v1/traces`), when `otel` names one.
    pub otlp_traces_url: Option<String>,
    /// The Zipkin v2 spans URL (`http[s]://host:port/api/v2/spans`), when `zipkin` names one.
    pub zipkin_url: Option<String>,
}

// The rate is never NaN (`sampling_rate` keeps finite numbers only), so equality is total.
impl Eq for TracingOptions {}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTracing {
    #[serde(default)]
    sampling_rate: String,
    #[serde(default)]
    otel: Option<RawOtel>,
    #[serde(default)]
    zipkin: Option<RawZipkin>,
    #[serde(default)]
    stdout: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOtel {
    #[serde(default)]
    endpoint_address: String,
    /// Secure unless set to false (`OtelSpec.GetIsSecure`).
    #[serde(default)]
    is_secure: Option<bool>,
    #[serde(default)]
    protocol: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawZipkin {
    #[serde(default)]
    endpoint_address: String,
}

/// What a Configuration's `spec.tracing` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSection {
    /// `Some` when spans are exported: an OTLP or Zipkin endpoint and a rate other than "0".
    pub options: Option<TracingOptions>,
    /// Parts of the section this sidecar does not act on (`stdout`), to log.
    pub ignored: Vec<String>,
}

impl TracingOptions {
    /// Reads `spec.tracing` of a Configuration document.
    pub fn from_configuration(yaml: &str) -> Result<TracingSection, TracingConfigError> {
        let doc: serde_json::Value =
            yaml_serde::from_str(yaml).map_err(|e| TracingConfigError::Yaml(e.to_string()))?;
        let raw = match doc.pointer("/spec/tracing") {
            Some(raw) if !raw.is_null() => serde_json::from_value::<RawTracing>(raw.clone())
                .map_err(|e| TracingConfigError::Yaml(format!("spec.tracing: {e}")))?,
            _ => RawTracing::default(),
        };
        let mut ignored = Vec::new();
        if raw.stdout {
            ignored.push(
                "spec.tracing.stdout: this sidecar exports over OTLP and Zipkin only".to_owned(),
            );
        }
        let rate = sampling_rate(&raw.sampling_rate);
        let otel = raw.otel.filter(|o| !o.endpoint_address.trim().is_empty());
        let zipkin = raw.zipkin.filter(|z| !z.endpoint_address.trim().is_empty());
        if rate <= 0.0 || (otel.is_none() && zipkin.is_none()) {
            return Ok(TracingSection {
                options: None,
                ignored,
            });
        }
        let otlp_traces_url = match otel {
            Some(otel) => {
                let protocol = otel.protocol.trim().to_ascii_lowercase();
                if !protocol.is_empty() && protocol != "http" {
                    return Err(TracingConfigError::Protocol(otel.protocol));
                }
                Some(traces_url(
                    otel.endpoint_address.trim(),
                    otel.is_secure.unwrap_or(true),
                )?)
            }
            None => None,
        };
        let zipkin_url = match zipkin {
            Some(zipkin) => Some(zipkin_url(zipkin.endpoint_address.trim())?),
            None => None,
        };
        Ok(TracingSection {
            options: Some(Self {
                sampling_rate: rate,
                otlp_traces_url,
                zipkin_url,
            }),
            ignored,
        })
    }
}

/// daprd hands the address to the Zipkin exporter as is (`zipkin.New`), which posts to it: a
/// full URL with its path.
fn zipkin_url(address: &str) -> Result<String, TracingConfigError> {
    let valid = ["http://", "https://"].iter().any(|scheme| {
        address
            .strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
    }) && !address.contains(char::is_whitespace);
    if valid {
        Ok(address.to_owned())
    } else {
        Err(TracingConfigError::Zipkin(address.to_owned()))
    }
}

/// daprd's reading of `samplingRate`: a float, the default rate otherwise.
fn sampling_rate(text: &str) -> f64 {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => rate,
        _ => DEFAULT_SAMPLING_RATE,
    }
}

/// `host:port` (daprd passes it to the OTLP exporter's `WithEndpoint`, which takes no scheme);
/// a scheme given anyway is dropped, `isSecure` decides.
fn traces_url(address: &str, secure: bool) -> Result<String, TracingConfigError> {
    let bare = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .unwrap_or(address)
        .trim_end_matches('/');
    let valid = !bare.is_empty()
        && !bare.contains('/')
        && !bare.contains(char::is_whitespace)
        && bare
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !valid {
        return Err(TracingConfigError::Endpoint(address.to_owned()));
    }
    let scheme = if secure { "https" } else { "http" };
    Ok(format!("{scheme}://{bare}/v1/traces"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn read(spec: &str) -> Result<TracingSection, TracingConfigError> {
        TracingOptions::from_configuration(&format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n{spec}"
        ))
    }

    #[test]
    fn an_otel_endpoint_with_a_rate_turns_tracing_on() {
        let section = read(
            "  tracing:\n    samplingRate: \"0.5\"\n    otel:\n      endpointAddress: collector:4318\n      isSecure: false\n      protocol: http\n",
        )
        .unwrap();
        let options = section.options.unwrap();
        assert_eq!(options.sampling_rate, 0.5);
        assert_eq!(
            options.otlp_traces_url.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(options.zipkin_url, None);
        let secure = read(
            "  tracing:\n    samplingRate: \"1\"\n    otel:\n      endpointAddress: \"http://c.example:4318\"\n      isSecure: true\n",
        )
        .unwrap();
        assert_eq!(
            secure.options.unwrap().otlp_traces_url.as_deref(),
            Some("https://c.example:4318/v1/traces")
        );
    }

    #[test]
    fn a_zero_rate_or_no_endpoint_means_no_tracing() {
        let off = read(
            "  tracing:\n    samplingRate: \"0\"\n    otel:\n      endpointAddress: collector:4318\n",
        )
        .unwrap();
        assert_eq!(off.options, None);
        assert_eq!(
            read("  tracing:\n    samplingRate: \"1\"\n")
                .unwrap()
                .options,
            None
        );
        assert_eq!(read("  accessControl: {}\n").unwrap().options, None);
        // Missing rate: daprd's default, not off.
        // Missing `isSecure`: https, as daprd.
        let default = read("  tracing:\n    otel:\n      endpointAddress: c:4318\n").unwrap();
        let default = default.options.unwrap();
        assert_eq!(default.sampling_rate, DEFAULT_SAMPLING_RATE);
        assert_eq!(
            default.otlp_traces_url.as_deref(),
            Some("https://c:4318/v1/traces")
        );
    }

    #[test]
    fn a_zipkin_endpoint_is_exported_to_as_given_alone_or_with_otel() {
        let zipkin = read(
            "  tracing:\n    samplingRate: \"1\"\n    zipkin:\n      endpointAddress: http://z:9411/api/v2/spans\n",
        )
        .unwrap();
        let options = zipkin.options.unwrap();
        assert_eq!(
            options.zipkin_url.as_deref(),
            Some("http://z:9411/api/v2/spans")
        );
        assert_eq!(options.otlp_traces_url, None);
        assert!(zipkin.ignored.is_empty());
        let both = read(
            "  tracing:\n    samplingRate: \"1\"\n    otel:\n      endpointAddress: c:4318\n      isSecure: false\n    zipkin:\n      endpointAddress: https://z.example/api/v2/spans\n",
        )
        .unwrap()
        .options
        .unwrap();
        assert!(both.otlp_traces_url.is_some() && both.zipkin_url.is_some());
        let off = read(
            "  tracing:\n    samplingRate: \"0\"\n    zipkin:\n      endpointAddress: http://z:9411/api/v2/spans\n",
        )
        .unwrap();
        assert_eq!(off.options, None);
    }

    #[test]
    fn unusable_settings_are_named() {
        let grpc = read(
            "  tracing:\n    samplingRate: \"1\"\n    otel:\n      endpointAddress: c:4317\n      protocol: grpc\n",
        )
        .unwrap_err();
        assert!(grpc.to_string().contains("`grpc`"), "{grpc}");
        let path = read(
            "  tracing:\n    samplingRate: \"1\"\n    otel:\n      endpointAddress: c:4318/v1/traces\n",
        )
        .unwrap_err();
        assert!(path.to_string().contains("c:4318/v1/traces"), "{path}");
        let zipkin = read(
            "  tracing:\n    samplingRate: \"1\"\n    zipkin:\n      endpointAddress: z:9411\n",
        )
        .unwrap_err();
        assert!(zipkin.to_string().contains("`z:9411`"), "{zipkin}");
        let stdout = read("  tracing:\n    stdout: true\n").unwrap();
        assert!(stdout.ignored[0].contains("stdout"));
    }
}
