//! `--scale APP=N`: run N instances of one app of a run file, as N pods of one Deployment.
//!
//! Scaling is a flag, not a run-file key, so the file stays in the Dapr CLI's format and keeps
//! working with `dapr run -f`. Every instance gets its own app process, its own sidecar and its
//! own ports, and keeps the app id: the instances of one app share its consumer groups (they
//! compete for its messages) and its state keys, and service invocation of the app id reaches one
//! of them. The first instance keeps the ports the file gives; the others get free ones, and
//! values of the app's `env` that carry one of the file's ports get the instance's port instead.

use std::collections::BTreeMap;

pub use crate::cli::{MAX_REPLICAS, Scale, ScaleFlagError};
use crate::runfile::{AppPlan, RunPlan};

/// A `--scale` flag that does not fit the run file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaleError {
    #[error("--scale {app_id}: no app {app_id:?} in the run file (its apps: {known})")]
    UnknownApp { app_id: String, known: String },
    #[error("--scale {app_id}: given more than once")]
    Repeated { app_id: String },
}

/// Sets the instance count of each app named by `scales`; apps not named keep one instance.
pub fn apply(plan: &mut RunPlan, scales: &[Scale]) -> Result<(), ScaleError> {
    let mut seen = BTreeMap::new();
    for scale in scales {
        if seen.insert(scale.app_id.as_str(), ()).is_some() {
            return Err(ScaleError::Repeated {
                app_id: scale.app_id.clone(),
            });
        }
        let known = plan
            .apps
            .iter()
            .map(|a| a.app_id.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let app = plan
            .apps
            .iter_mut()
            .find(|a| a.app_id == scale.app_id)
            .ok_or_else(|| ScaleError::UnknownApp {
                app_id: scale.app_id.clone(),
                known,
            })?;
        app.replicas = scale.replicas;
    }
    Ok(())
}

/// The ports one instance runs with. `dapr_http_port` 0 means "any free port" (the sidecar binds
/// it and reports the port it got).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstancePorts {
    pub app_port: Option<u16>,
    pub dapr_http_port: u16,
    pub dapr_grpc_port: u16,
    pub metrics_port: u16,
}

/// One instance of an app: which one, and under which name its output and logs appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// 1-based.
    pub index: usize,
    /// `app-id` for an app with one instance (as the Dapr CLI names it), `app-id#index` otherwise.
    pub label: String,
}

/// The instances of `app`, in order.
pub fn instances(app: &AppPlan) -> Vec<Instance> {
    let n = app.replicas.max(1);
    (1..=n)
        .map(|index| Instance {
            index,
            label: if n == 1 {
                app.app_id.clone()
            } else {
                format!("{}#{index}", app.app_id)
            },
        })
        .collect()
}

/// The ports of instance `index` of `app`: the file's for the first, free ones for the others
/// (`free` picks one; an app without an app port gets none).
pub fn ports(app: &AppPlan, index: usize, mut free: impl FnMut() -> u16) -> InstancePorts {
    if index <= 1 {
        return InstancePorts {
            app_port: app.app_port,
            dapr_http_port: app.dapr_http_port.unwrap_or(0),
            dapr_grpc_port: app.dapr_grpc_port.unwrap_or_else(&mut free),
            metrics_port: app.metrics_port.unwrap_or_else(&mut free),
        };
    }
    InstancePorts {
        app_port: app.app_port.map(|_| free()),
        dapr_http_port: 0,
        dapr_grpc_port: free(),
        metrics_port: free(),
    }
}

/// The file's `env` for one instance. For any instance but the first, every whole number in a
/// value that is one of the ports the file gives the app becomes the instance's own port
/// (`PORT: "8080"`, `SELF_URL: http://127.0.0.1:8080/`): copied unchanged, every instance would
/// listen on, or talk to, the first one's port.
pub fn instance_env(
    app: &AppPlan,
    index: usize,
    ports: &InstancePorts,
    dapr_http_port: u16,
) -> BTreeMap<String, String> {
    if index <= 1 {
        return app.env.clone();
    }
    let mut swaps: BTreeMap<u16, u16> = BTreeMap::new();
    let pairs = [
        (app.app_port, ports.app_port),
        (app.dapr_http_port, Some(dapr_http_port)),
        (app.dapr_grpc_port, Some(ports.dapr_grpc_port)),
        (app.metrics_port, Some(ports.metrics_port)),
    ];
    for (from, to) in pairs {
        if let (Some(from), Some(to)) = (from, to) {
            swaps.insert(from, to);
        }
    }
    app.env
        .iter()
        .map(|(k, v)| (k.clone(), swap_ports(v, &swaps)))
        .collect()
}

/// Replaces each maximal run of digits that is a key of `swaps` by its value.
fn swap_ports(value: &str, swaps: &BTreeMap<u16, u16>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        match digits.parse::<u16>().ok().and_then(|p| swaps.get(&p)) {
            Some(to) => out.push_str(&to.to_string()),
            None => out.push_str(digits),
        }
        digits.clear();
    };
    for c in value.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
