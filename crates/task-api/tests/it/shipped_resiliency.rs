//! The shipped Resiliency policy (`deploy/dapr/resiliency.yaml`, applied by the sidecar as daprd
//! applies it) does not turn ordinary write races into errors: two task-api replicas creating
//! and updating the same tasks for 30 s never answer 5xx (503 included), and no circuit breaker opens.

use crate::support::{TaskApi as _, TestApp, settings};
use serde_json::json;
use service_testing::{AppBuilder, Cluster};
use std::path::Path;
use std::time::{Duration, Instant};

const RUN_FOR: Duration = Duration::from_secs(30);
const WORKERS: usize = 8;

/// The local in-memory components with production's resiliency file.
fn shipped_resources() -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("deploy/local/in-memory/pubsub.yaml", "pubsub.yaml"),
        ("deploy/local/in-memory/statestore.yaml", "statestore.yaml"),
        ("deploy/dapr/resiliency.yaml", "resiliency.yaml"),
    ] {
        std::fs::copy(root.join(from), dir.path().join(to)).unwrap();
    }
    dir
}

async fn sidecar_metrics(app: &TestApp) -> String {
    app.client
        .get(format!("{}/metrics", app.sidecar.http_endpoint()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_racing_on_the_same_tasks_never_fail_and_open_no_breaker() {
    let resources = shipped_resources();
    let cluster = Cluster::from_resources(&[resources.path()]).await.unwrap();
    let replicas = [
        AppBuilder::new(settings(&[])).on(&cluster).start().await,
        AppBuilder::new(settings(&[])).on(&cluster).start().await,
    ];
    let user = replicas[0].user();
    let mut ids = Vec::new();
    for n in 0..4 {
        let task = replicas[n % 2]
            .create_ok(&user, &format!("shared-{n}"))
            .await;
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    let started = Instant::now();
    let workers = (0..WORKERS).map(|w| {
        let (replicas, user, ids) = (&replicas, &user, &ids);
        async move {
            let mut statuses = Vec::new();
            let mut i = 0usize;
            while started.elapsed() < RUN_FOR {
                let app = &replicas[(w + i) % 2];
                let status = if i % 10 == 9 {
                    app.create(user, json!({ "title": format!("new-{w}-{i}") }))
                        .await
                        .status()
                } else {
                    let id = &ids[i % ids.len()];
                    app.patch(user, id, json!({ "title": format!("t-{w}-{i}") }), None)
                        .await
                        .status()
                };
                statuses.push(status.as_u16());
                i += 1;
            }
            statuses
        }
    });
    let statuses: Vec<u16> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        statuses.len() > 100,
        "the replicas were exercised: {} calls",
        statuses.len()
    );
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s >= 500).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed: {failed:?}",
        failed.len(),
        statuses.len()
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 201),
        "{statuses:?}"
    );
    for app in &replicas {
        let m = sidecar_metrics(app).await;
        assert!(
            !m.contains("status=\"open\"} 1") && !m.contains("status=\"half-open\"} 1"),
            "{m}"
        );
    }
    for app in replicas {
        app.stop().await;
    }
}
