//! Service invocation access control as daprd applies it on the called app's side: with the
//! shipped Configuration (`deploy/dapr/configuration.yaml`, default deny, no policy) no app can
//! invoke audit-logger's admin API, audit-logger's own sidecar still can, and a policy opens
//! exactly the operations and verbs it names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{TestApp, assert_error, http};
use serde_json::json;
use sidecar_core::acl::AccessControl;
use std::path::PathBuf;

fn shipped_access_control() -> AccessControl {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/dapr/configuration.yaml");
    AccessControl::from_configuration(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .expect("the shipped Configuration has an accessControl")
}

async fn invoke(endpoint: &str, verb: reqwest::Method, method: &str) -> reqwest::Response {
    http()
        .request(
            verb,
            format!("{endpoint}/v1.0/invoke/audit-logger/method/{method}"),
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_shipped_configuration_denies_every_other_app_and_not_the_app_itself() {
    let cluster = sidecar_testing::Cluster::in_memory().await.unwrap();
    let audit = TestApp::start(json!([])).await;
    let own = cluster
        .sidecar("audit-logger")
        .app_port(audit.port)
        .access_control(shipped_access_control())
        .start()
        .await
        .unwrap();
    let task_api = cluster.sidecar("task-api").start().await.unwrap();

    let denied = invoke(
        &task_api.http_endpoint(),
        reqwest::Method::GET,
        "audit/tasks/t1",
    )
    .await;
    let body = assert_error(denied, 403, "ERR_DIRECT_INVOKE").await;
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(
            "access control policy has denied access to id: spiffe://public/ns/default/task-api"
        ) && message.contains("operation: audit/tasks/t1 verb: GET"),
        "{message}"
    );
    let replay = invoke(
        &task_api.http_endpoint(),
        reqwest::Method::POST,
        "audit/dead-letters/e1/replay",
    )
    .await;
    assert_error(replay, 403, "ERR_DIRECT_INVOKE").await;
    assert!(
        audit.received_on("/audit/tasks/t1").is_empty(),
        "the app was reached"
    );

    let allowed = invoke(&own.http_endpoint(), reqwest::Method::GET, "audit/tasks/t1").await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(audit.wait_for("/audit/tasks/t1", 1).await.len(), 1);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_policy_allows_exactly_its_operations_and_verbs() {
    let acl = AccessControl::from_configuration(
        r#"
kind: Configuration
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
      - appId: operator
        defaultAction: deny
        trustDomain: public
        namespace: default
        operations:
          - name: /audit/tasks/*
            httpVerb: ["GET"]
            action: allow
"#,
    )
    .unwrap()
    .unwrap();
    let cluster = sidecar_testing::Cluster::in_memory().await.unwrap();
    let audit = TestApp::start(json!([])).await;
    cluster
        .sidecar("audit-logger")
        .app_port(audit.port)
        .access_control(acl)
        .start()
        .await
        .unwrap();
    let operator = cluster.sidecar("operator").start().await.unwrap();
    let other = cluster.sidecar("reminder-scheduler").start().await.unwrap();
    let ep = operator.http_endpoint();

    assert_eq!(
        invoke(&ep, reqwest::Method::GET, "audit/tasks/t1")
            .await
            .status(),
        200
    );
    let wrong_verb = invoke(&ep, reqwest::Method::DELETE, "audit/tasks/t1").await;
    assert_error(wrong_verb, 403, "ERR_DIRECT_INVOKE").await;
    let too_deep = invoke(&ep, reqwest::Method::GET, "audit/tasks/t1/verify").await;
    assert_error(too_deep, 403, "ERR_DIRECT_INVOKE").await;
    let not_listed = invoke(
        &other.http_endpoint(),
        reqwest::Method::GET,
        "audit/tasks/t1",
    )
    .await;
    assert_error(not_listed, 403, "ERR_DIRECT_INVOKE").await;
    assert_eq!(audit.received_on("/audit/tasks/t1").len(), 1);
    cluster.shutdown().await;
}
