//! Where traces go must agree between the services and the sidecars: the services read the
//! `otel-exporter` ConfigMap of `deploy/k8s/base/tracing` (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_TRACES_SAMPLER_ARG`), the sidecars the `todo-config` Configuration (`spec.tracing`). A
//! trace half exported, or sampled at two rates, reads as a broken trace. So:
//!
//! * the Configuration patch of `deploy/k8s/base/tracing` names the ConfigMap's collector
//!   (`host:port`), and the shipped Configuration's `samplingRate` is the ConfigMap's rate (the
//!   dev overlay's pair likewise);
//! * every service's Deployment loads the ConfigMap;
//! * every other copy of the Configuration (docker-compose's) differs from the shipped one in
//!   `spec.tracing` only.

use yaml_serde::Value;

use crate::expected::Expected;
use crate::manifests::Manifests;
use crate::violation::{Rule, Violation};
use crate::yaml::{at, kind, seq_at, text_at};

/// The shipped Configuration.
pub const CONFIGURATION: &str = "deploy/dapr/configuration.yaml";
/// The one place where traces go in a cluster.
pub const COMPONENT: &str = "deploy/k8s/base/tracing/kustomization.yaml";
/// Its Configuration patch.
pub const PATCH: &str = "deploy/k8s/base/tracing/configuration-otel.yaml";
/// The dev overlay and its sampling patch.
pub const DEV_OVERLAY: &str = "deploy/k8s/overlays/dev/kustomization.yaml";
pub const DEV_PATCH: &str = "deploy/k8s/overlays/dev/patches/dev-tracing.yaml";
/// The ConfigMap the services read.
pub const CONFIG_MAP: &str = "otel-exporter";

/// The rule's checks, in the order of the module docs.
pub fn settings_agree(manifests: &Manifests, expected: &Expected) -> Vec<Violation> {
    let mut found = Vec::new();
    let violation =
        |file: &str, message: String| Violation::new(file, Rule::TracingSettings, message);
    let literals = generator_literals(manifests, COMPONENT);
    let Some(endpoint) = literals
        .iter()
        .find_map(|(k, v)| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then_some(v))
    else {
        return vec![violation(
            COMPONENT,
            format!("no `{CONFIG_MAP}` ConfigMap with OTEL_EXPORTER_OTLP_ENDPOINT"),
        )];
    };
    let collector = endpoint
        .split_once("://")
        .map_or(endpoint.as_str(), |(_, rest)| rest)
        .trim_end_matches('/');
    let patched = first(manifests, PATCH)
        .and_then(|d| text_at(d, &["spec", "tracing", "otel", "endpointAddress"]));
    if patched.as_deref() != Some(collector) {
        found.push(violation(PATCH, format!("spec.tracing.otel.endpointAddress is {patched:?}, the services export to {collector:?} ({COMPONENT})")));
    }
    let rate = |file: &str| {
        first(manifests, file).and_then(|d| text_at(d, &["spec", "tracing", "samplingRate"]))
    };
    let arg = |pairs: &[(String, String)]| {
        pairs
            .iter()
            .find_map(|(k, v)| (k == "OTEL_TRACES_SAMPLER_ARG").then(|| v.clone()))
    };
    for (config, generator, pairs) in [
        (CONFIGURATION, COMPONENT, literals.clone()),
        (
            DEV_PATCH,
            DEV_OVERLAY,
            generator_literals(manifests, DEV_OVERLAY),
        ),
    ] {
        if let (Some(rate), Some(arg)) = (rate(config), arg(&pairs))
            && !same_number(&rate, &arg)
        {
            found.push(violation(
                generator,
                format!("OTEL_TRACES_SAMPLER_ARG is {arg}, the sidecars sample {rate} ({config})"),
            ));
        }
    }
    for service in &expected.services {
        let file = format!("deploy/k8s/base/{}/deployment.yaml", service.app_id);
        let Some(deployment) = manifests
            .docs(&file)
            .and_then(|docs| docs.iter().find(|d| kind(d) == Some("Deployment")))
        else {
            continue;
        };
        let loads = seq_at(deployment, &["spec", "template", "spec", "containers"])
            .iter()
            .flat_map(|c| seq_at(c, &["envFrom"]))
            .any(|e| text_at(e, &["configMapRef", "name"]).as_deref() == Some(CONFIG_MAP));
        if !loads {
            found.push(violation(&file, format!("the containers do not load the `{CONFIG_MAP}` ConfigMap (envFrom): the service would not export its spans")));
        }
    }
    if let Some(shipped) = first(manifests, CONFIGURATION) {
        for (file, doc) in manifests.all().filter(|(f, d)| {
            *f != CONFIGURATION
                && kind(d) == Some("Configuration")
                && at(d, &["spec", "accessControl"]).is_some()
        }) {
            if without_tracing(doc) != without_tracing(shipped) {
                found.push(violation(file, format!("differs from {CONFIGURATION} outside spec.tracing; keep the copies identical but for where traces go")));
            }
        }
    }
    found
}

fn first<'a>(manifests: &'a Manifests, file: &str) -> Option<&'a Value> {
    manifests.docs(file).and_then(|docs| docs.first())
}

/// `KEY=value` literals of the `otel-exporter` generator in the kustomization `file`.
fn generator_literals(manifests: &Manifests, file: &str) -> Vec<(String, String)> {
    let Some(doc) = first(manifests, file) else {
        return Vec::new();
    };
    seq_at(doc, &["configMapGenerator"])
        .iter()
        .filter(|g| text_at(g, &["name"]).as_deref() == Some(CONFIG_MAP))
        .flat_map(|g| seq_at(g, &["literals"]))
        .filter_map(|l| l.as_str()?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn same_number(a: &str, b: &str) -> bool {
    matches!((a.trim().parse::<f64>(), b.trim().parse::<f64>()), (Ok(x), Ok(y)) if (x - y).abs() < 1e-12)
}

/// The document without `spec.tracing` and without the comments a copy adds.
fn without_tracing(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(spec) = doc.get_mut("spec").and_then(Value::as_mapping_mut) {
        spec.remove("tracing");
    }
    doc
}
