//! The production Kafka component (`deploy/dapr/pubsub.yaml`) takes its authentication from
//! Secret `todo-kafka` as well as its broker list: with a secrets file saying `password`, the
//! sidecar logs in with SASL SCRAM using the credentials and the mechanism written there, a
//! broker's refusal names the cause in the sidecar's log and in a failed publish's error, and
//! the password appears in neither. A Secret lacking one of the keys the file names is refused
//! at start, naming the entry and the key. (tansu keeps SASL users in its storage and creates
//! them only through an authenticated client, so a test broker with authentication has no user
//! to log in as: the proof is the SCRAM exchange and the broker's answer to it. That `none`
//! still works is `deploy_scopes`, which publishes through the same file.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{Proc, Sidecar, SidecarSpec, free_port, resources_dir};
use sidecar_testing::KafkaBroker;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

const PASSWORD: &str = "pw-never-logged-7f3a9c";

/// The production pub/sub file and a `kubernetes` file secret store holding `secret`.
fn production_with(secret: &serde_json::Value) -> (tempfile::TempDir, tempfile::TempDir) {
    let production = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/dapr/pubsub.yaml"),
    )
    .unwrap();
    let secrets_dir = tempfile::tempdir().unwrap();
    let secrets = secrets_dir.path().join("secrets.json");
    std::fs::write(&secrets, secret.to_string()).unwrap();
    let store = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: kubernetes\nspec:\n  \
         type: secretstores.local.file\n  version: v1\n  metadata:\n    - name: secretsFile\n      \
         value: \"{}\"\n    - name: multiValued\n      value: \"true\"\n",
        secrets.display()
    );
    let resources = resources_dir(&[("pubsub.yaml", &production), ("secrets.yaml", &store)]);
    (resources, secrets_dir)
}

fn output(proc: &Proc) -> String {
    format!("{}{}", proc.stdout.text(), proc.stderr.text())
}

/// Waits until the sidecar's output contains `needle`.
async fn wait_for_output(proc: &Proc, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !output(proc).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the sidecar's output:\n{}",
            output(proc)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn password_auth_from_the_secret_logs_in_with_scram_and_a_refusal_is_named() {
    let broker = KafkaBroker::start_with_authentication();
    let secret = broker.production_secret(&[
        ("auth-type", "password"),
        ("sasl-mechanism", "SHA-512"),
        ("username", "todo-svc"),
        ("password", PASSWORD),
        ("disable-tls", "true"),
    ]);
    let (resources, _secrets) = production_with(&secret);
    let sidecar = Sidecar::start(SidecarSpec {
        app_id: "reminder-scheduler".into(),
        resources: vec![resources.path().to_path_buf()],
        ..SidecarSpec::default()
    })
    .await;
    // The broker took part in a SCRAM exchange and refused the user the secret names.
    wait_for_output(
        &sidecar.proc,
        "SASL SCRAM authentication failed: broker responded with unknown-user",
    )
    .await;

    // A publish meanwhile fails (librdkafka keeps retrying the login until the message times
    // out), and says why.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap();
    let refused = client
        .post(sidecar.url("/v1.0/publish/todo-pubsub/task-due-soon"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 500);
    let body = refused.text().await.unwrap();
    assert!(body.contains("ERR_PUBSUB_PUBLISH_MESSAGE"), "{body}");
    assert!(
        body.contains("the broker refused the client's authentication")
            && body.contains("SASL authentication error"),
        "{body}"
    );
    assert!(!body.contains(PASSWORD), "{body}");
    assert!(
        !output(&sidecar.proc).contains(PASSWORD),
        "the password reached the sidecar's log"
    );
}

#[tokio::test]
async fn password_auth_against_a_broker_without_sasl_fails_naming_the_mechanism() {
    let broker = KafkaBroker::start();
    let secret = broker.production_secret(&[
        ("auth-type", "password"),
        ("sasl-mechanism", "SHA-256"),
        ("username", "todo-svc"),
        ("password", PASSWORD),
        ("disable-tls", "true"),
    ]);
    let (resources, _secrets) = production_with(&secret);
    let sidecar = Sidecar::start(SidecarSpec {
        app_id: "reminder-scheduler".into(),
        resources: vec![resources.path().to_path_buf()],
        ..SidecarSpec::default()
    })
    .await;
    // The mechanism is the secret's (SHA-256 selects SCRAM-SHA-256), and the client speaks SASL
    // over plaintext as `disable-tls` says.
    wait_for_output(&sidecar.proc, "sasl_plaintext://127.0.0.1:").await;
    wait_for_output(
        &sidecar.proc,
        "SASL SCRAM-SHA-256 mechanism handshake failed",
    )
    .await;
    assert!(!output(&sidecar.proc).contains(PASSWORD));
}

#[tokio::test]
async fn a_secret_lacking_a_key_the_file_names_is_refused_naming_the_entry_and_the_key() {
    let broker = KafkaBroker::start();
    let mut secret = broker.production_secret(&[]);
    secret["todo-kafka"]
        .as_object_mut()
        .unwrap()
        .remove("password");
    let (resources, _secrets) = production_with(&secret);
    let args = vec![
        "--app-id".to_owned(),
        "reminder-scheduler".into(),
        "--dapr-http-port".into(),
        free_port().to_string(),
        "--resources-path".into(),
        resources.path().display().to_string(),
    ];
    let mut proc = Proc::spawn(&args, &[]);
    let status = proc.wait_exit().await;
    assert!(!status.success());
    let err = proc.stderr.text();
    assert!(
        err.contains("pubsub.yaml")
            && err.contains("spec.metadata.saslPassword.secretKeyRef")
            && err.contains("no key `password`"),
        "{err}"
    );
}
