//! The run file as written: lenient scalar strings, one struct for app and `common` keys, and the
//! key lists used to warn about keys the Dapr CLI would ignore.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A YAML scalar read as a string, as Go's yaml.v2 does for string fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Scalar(pub(super) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or other scalar")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::default())
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawFile {
    pub(super) version: Option<i64>,
    pub(super) name: Option<Scalar>,
    #[serde(default)]
    pub(super) common: Option<RawApp>,
    #[serde(default)]
    pub(super) apps: Option<Vec<RawApp>>,
    /// The runner's console (not a Dapr CLI key: `dapr run -f` ignores it).
    #[serde(default)]
    pub(super) console: Option<RawConsole>,
}

/// `console: {port, enabled, address}`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsole {
    pub(super) port: Option<i64>,
    pub(super) enabled: Option<bool>,
    pub(super) address: Option<Scalar>,
}

/// Per-app and shared keys in one struct: `common` uses the same shape (the CLI ignores per-app keys
/// there, and so do we, with a warning).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawApp {
    #[serde(rename = "appID")]
    pub(super) app_id: Option<Scalar>,
    pub(super) app_dir_path: Option<Scalar>,
    pub(super) app_port: Option<i64>,
    #[serde(rename = "daprHTTPPort")]
    pub(super) dapr_http_port: Option<i64>,
    #[serde(rename = "daprGRPCPort")]
    pub(super) dapr_grpc_port: Option<i64>,
    pub(super) metrics_port: Option<i64>,
    pub(super) command: Option<Vec<Scalar>>,
    pub(super) app_channel_address: Option<Scalar>,
    pub(super) unix_domain_socket: Option<Scalar>,
    // shared keys
    pub(super) config_file_path: Option<Scalar>,
    pub(super) resources_paths: Option<Vec<Scalar>>,
    pub(super) resources_path: Option<Scalar>,
    pub(super) env: Option<BTreeMap<String, Scalar>>,
    pub(super) log_level: Option<Scalar>,
    pub(super) app_protocol: Option<Scalar>,
    #[serde(rename = "appSSL")]
    pub(super) app_ssl: Option<bool>,
    pub(super) api_listen_addresses: Option<Scalar>,
    pub(super) max_body_size: Option<Scalar>,
    pub(super) enable_app_health_check: Option<bool>,
    pub(super) app_health_check_path: Option<Scalar>,
    pub(super) app_health_probe_interval: Option<Scalar>,
    pub(super) app_health_probe_timeout: Option<Scalar>,
    pub(super) app_health_threshold: Option<Scalar>,
}

const TOP_KEYS: &[&str] = &["version", "name", "common", "apps", "console"];
const APP_ONLY_KEYS: &[&str] = &[
    "appID",
    "appDirPath",
    "appPort",
    "appChannelAddress",
    "daprHTTPPort",
    "daprGRPCPort",
    "daprInternalGRPCPort",
    "metricsPort",
    "profilePort",
    "unixDomainSocket",
    "command",
    "containerImage",
    "containerImagePullPolicy",
    "createService",
];
const SHARED_KEYS: &[&str] = &[
    "configFilePath",
    "resourcesPaths",
    "resourcesPath",
    "runtimePath",
    "env",
    "appProtocol",
    "appSSL",
    "apiListenAddresses",
    "logLevel",
    "enableApiLogging",
    "enableProfiling",
    "appMaxConcurrency",
    "placementHostAddress",
    "schedulerHostAddress",
    "maxBodySize",
    "readBufferSize",
    "enableAppHealthCheck",
    "appHealthCheckPath",
    "appHealthProbeInterval",
    "appHealthProbeTimeout",
    "appHealthThreshold",
    "daprdLogDestination",
    "appLogDestination",
];
/// Known keys that only concern daprd processes, ports or log files this runner does not create.
const IGNORED_KEYS: &[&str] = &[
    "runtimePath",
    "enableApiLogging",
    "enableProfiling",
    "profilePort",
    "placementHostAddress",
    "schedulerHostAddress",
    "readBufferSize",
    "daprdLogDestination",
    "appLogDestination",
    "daprInternalGRPCPort",
    "containerImage",
    "containerImagePullPolicy",
    "createService",
    "appMaxConcurrency",
];

pub(super) fn unknown_key_warnings(value: &yaml_serde::Value) -> Vec<String> {
    let mut warnings = Vec::new();
    let keys = |v: &yaml_serde::Value| -> Vec<String> {
        v.as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let known_app = |k: &str| APP_ONLY_KEYS.contains(&k) || SHARED_KEYS.contains(&k);
    for k in keys(value) {
        if !TOP_KEYS.contains(&k.as_str()) {
            warnings.push(format!("unknown key `{k}` is ignored"));
        }
    }
    if let Some(common) = value.get("common") {
        for k in keys(common) {
            if APP_ONLY_KEYS.contains(&k.as_str()) {
                warnings.push(format!(
                    "`common.{k}` is a per-app key; it is ignored in common"
                ));
            } else if !known_app(&k) {
                warnings.push(format!("unknown key `common.{k}` is ignored"));
            } else if IGNORED_KEYS.contains(&k.as_str()) {
                warnings.push(format!("`common.{k}` has no effect on this runner"));
            }
        }
    }
    if let Some(apps) = value.get("apps").and_then(|a| a.as_sequence()) {
        for (i, app) in apps.iter().enumerate() {
            for k in keys(app) {
                if !known_app(&k) {
                    warnings.push(format!("unknown key `apps[{i}].{k}` is ignored"));
                } else if IGNORED_KEYS.contains(&k.as_str()) {
                    warnings.push(format!("`apps[{i}].{k}` has no effect on this runner"));
                }
            }
        }
    }
    warnings
}
