//! App identity: Kubernetes Deployments and ConfigMaps, and the local run files.

use std::collections::BTreeMap;

use yaml_serde::Value;

use crate::expected::{Expected, Service};
use crate::manifests::{Manifests, RUN_FILES};
use crate::violation::{Rule, Violation};
use crate::yaml::{at, kind, seq_at, text, text_at};

/// `deploy/k8s/base/<app>/deployment.yaml` of every service: Dapr annotations, container port,
/// and the ConfigMap's `APP_PORT`/`APP_ID` beside it.
pub fn deployments(manifests: &Manifests, expected: &Expected) -> Vec<Violation> {
    let mut found = Vec::new();
    for service in &expected.services {
        let file = format!("deploy/k8s/base/{}/deployment.yaml", service.app_id);
        let deployment = manifests
            .docs(&file)
            .and_then(|docs| docs.iter().find(|d| kind(d) == Some("Deployment")));
        let Some(deployment) = deployment else {
            found.push(Violation::new(
                &file,
                Rule::DeploymentPresent,
                format!("service {} has no Deployment in this file", service.app_id),
            ));
            continue;
        };
        check_deployment(&file, deployment, service, &mut found);

        let configmap = format!("deploy/k8s/base/{}/configmap.yaml", service.app_id);
        for doc in manifests.docs(&configmap).unwrap_or(&[]) {
            if kind(doc) == Some("ConfigMap") {
                check_configmap(&configmap, doc, service, &mut found);
            }
        }
    }
    found
}

fn check_deployment(file: &str, doc: &Value, service: &Service, found: &mut Vec<Violation>) {
    let annotations = ["spec", "template", "metadata", "annotations"];
    let annotation = |name: &str| {
        at(doc, &annotations)
            .and_then(|a| a.get(name))
            .and_then(text)
    };

    match annotation("dapr.io/app-id") {
        Some(id) if id == service.app_id => {}
        other => found.push(Violation::new(
            file,
            Rule::DaprAppId,
            format!(
                "dapr.io/app-id is {}, the service's app id is {}",
                shown(other.as_deref()),
                service.app_id
            ),
        )),
    }
    let port = service.app_port.to_string();
    match annotation("dapr.io/app-port") {
        Some(p) if p == port => {}
        other => found.push(Violation::new(
            file,
            Rule::DaprAppPort,
            format!(
                "dapr.io/app-port is {}, {} listens on {port} (APP_PORT default)",
                shown(other.as_deref()),
                service.app_id
            ),
        )),
    }

    let containers = seq_at(doc, &["spec", "template", "spec", "containers"]);
    let container = containers
        .iter()
        .find(|c| text_at(c, &["name"]).as_deref() == Some(service.app_id.as_str()))
        .or_else(|| containers.first());
    let exposed: Vec<String> = container
        .map(|c| {
            seq_at(c, &["ports"])
                .iter()
                .filter_map(|p| text_at(p, &["containerPort"]))
                .collect()
        })
        .unwrap_or_default();
    if !exposed.contains(&port) {
        found.push(Violation::new(
            file,
            Rule::ContainerPort,
            format!(
                "container {} exposes ports [{}], not the app port {port}",
                service.app_id,
                exposed.join(", ")
            ),
        ));
    }
}

fn check_configmap(file: &str, doc: &Value, service: &Service, found: &mut Vec<Violation>) {
    // Unset is fine (the service's default applies); set must agree.
    let port = service.app_port.to_string();
    if let Some(p) = text_at(doc, &["data", "APP_PORT"])
        && p != port
    {
        found.push(Violation::new(
            file,
            Rule::ConfigMapEnv,
            format!(
                "APP_PORT is {p}, but dapr.io/app-port must be {port} for {}",
                service.app_id
            ),
        ));
    }
    if let Some(id) = text_at(doc, &["data", "APP_ID"])
        && id != service.app_id
    {
        found.push(Violation::new(
            file,
            Rule::ConfigMapEnv,
            format!("APP_ID is {id}, the service's app id is {}", service.app_id),
        ));
    }
}

/// `dapr.yaml` and `dapr.redis.yaml`: exactly the services, each once, on its own port.
pub fn run_files(manifests: &Manifests, expected: &Expected) -> Vec<Violation> {
    let mut found = Vec::new();
    for file in RUN_FILES {
        let Some(doc) = manifests.docs(file).and_then(<[Value]>::first) else {
            continue;
        };
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for app in seq_at(doc, &["apps"]) {
            let id = text_at(app, &["appID"]).unwrap_or_default();
            *seen.entry(id.clone()).or_default() += 1;
            let Some(service) = expected.service(&id) else {
                found.push(Violation::new(
                    file,
                    Rule::RunFileApps,
                    format!("appID {} is not one of the services", shown(Some(&id))),
                ));
                continue;
            };
            let port = text_at(app, &["appPort"]);
            if port.as_deref() != Some(service.app_port.to_string().as_str()) {
                found.push(Violation::new(
                    file,
                    Rule::RunFileApps,
                    format!(
                        "appPort of {id} is {}, the service listens on {}",
                        shown(port.as_deref()),
                        service.app_port
                    ),
                ));
            }
        }
        for service in &expected.services {
            match seen.get(&service.app_id) {
                Some(1) => {}
                Some(n) => found.push(Violation::new(
                    file,
                    Rule::RunFileApps,
                    format!("appID {} appears {n} times", service.app_id),
                )),
                None => found.push(Violation::new(
                    file,
                    Rule::RunFileApps,
                    format!("service {} is missing from apps", service.app_id),
                )),
            }
        }
    }
    found
}

fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "missing".to_owned(), |v| format!("\"{v}\""))
}
