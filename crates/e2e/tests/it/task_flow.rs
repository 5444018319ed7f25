//! The whole system, end to end, with the real binaries in a multi-app run derived from the
//! repository's `dapr.yaml` (and `dapr.redis.yaml`, `dapr.kafka.yaml`): a task created through task-api produces
//! exactly one "new task" email, a reminder and exactly one "due soon" email, and an audit trail
//! that records every step in order and verifies. Stopping the run (SIGINT, as Ctrl-C) leaves no
//! process behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use e2e::{
    Binaries, KafkaBroker, RedisServer, RunFile, SmtpSink, System, kafka_resources, poll_until,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const TASK_API: &str = "task-api";
const EMAIL_WORKER: &str = "email-worker";
const REMINDER_SCHEDULER: &str = "reminder-scheduler";
const AUDIT_LOGGER: &str = "audit-logger";

fn binaries() -> Binaries {
    Binaries::locate().unwrap_or_else(|e| panic!("{e}"))
}

/// A development token from the real `task-api token` command, signed with `secret`.
fn token(bins: &Binaries, secret: &str, user_id: &str, email: &str) -> String {
    let out = std::process::Command::new(bins.path("task-api"))
        .args([
            "token",
            "--user-id",
            user_id,
            "--email",
            email,
            "--ttl",
            "1h",
        ])
        .env("JWT_SECRET", secret)
        .env_remove("CONFIG_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "task-api token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn event_types(trail: &Value) -> Vec<String> {
    trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_yaml_a_task_is_emailed_reminded_completed_and_audited() {
    let bins = binaries();
    let dir = tempfile::tempdir().unwrap();
    let run_file = RunFile::from_file(&bins.workspace().join("dapr.yaml")).unwrap();
    task_flow(
        &bins,
        run_file,
        dir.path(),
        &["pubsub.in-memory", "state.in-memory"],
    )
    .await;
}

/// The same flow with `dapr.redis.yaml`: Redis Streams pub/sub and Redis state (a server of the
/// test's own instead of localhost:6379).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_redis_yaml_a_task_is_emailed_reminded_completed_and_audited() {
    let bins = binaries();
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path()).unwrap();
    let resources = dir.path().join("resources");
    redis
        .resources_copy(&bins.workspace().join("deploy/local/redis"), &resources)
        .unwrap();
    let run_file = RunFile::from_file(&bins.workspace().join("dapr.redis.yaml"))
        .unwrap()
        .common_resources(&resources);
    task_flow(
        &bins,
        run_file,
        dir.path(),
        &["pubsub.redis", "state.redis"],
    )
    .await;
}

/// The same flow with `dapr.kafka.yaml`: production's Kafka pub/sub component file on a tansu
/// broker of the test's own (topics from `deploy/redpanda/topics.conf`, as production creates
/// them), its broker list through the same `secretKeyRef`, and Redis state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_kafka_yaml_a_task_is_emailed_reminded_completed_and_audited() {
    let bins = binaries();
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path()).unwrap();
    let broker = KafkaBroker::start();
    let resources = dir.path().join("resources");
    kafka_resources(bins.workspace(), &redis, &broker, &resources).unwrap();
    let run_file = RunFile::from_file(&bins.workspace().join("dapr.kafka.yaml"))
        .unwrap()
        .common_resources(&resources);
    task_flow(
        &bins,
        run_file,
        dir.path(),
        &["pubsub.kafka", "state.redis"],
    )
    .await;
}

/// Runs the system described by `run_file` (apps in `dir`), checks its sidecars use
/// `component_types`, and follows one task through it.
async fn task_flow(bins: &Binaries, run_file: RunFile, dir: &Path, component_types: &[&str]) {
    let smtp = SmtpSink::start().unwrap();
    let repo = bins.workspace().to_path_buf();
    let secret = run_file
        .setting(TASK_API, "JWT_SECRET")
        .expect("dapr.yaml sets task-api's JWT_SECRET");
    let admin_token = run_file
        .setting(AUDIT_LOGGER, "AUDIT_ADMIN_TOKEN")
        .expect("dapr.yaml sets audit-logger's AUDIT_ADMIN_TOKEN");
    let (file, apps) = run_file
        // SMTP instead of the mail folder (the worker refuses both at once).
        .remove_env(EMAIL_WORKER, "MAIL_DIR")
        .env(EMAIL_WORKER, "SMTP_URL", smtp.url())
        .env(EMAIL_WORKER, "MAIL_FROM", "Tasks <tasks@todo.test>")
        // A task due within the hour is inside the window: reminded at the first scan, and the
        // scans come every second.
        .env(REMINDER_SCHEDULER, "REMINDER_LEAD_TIME", "1h")
        .env(REMINDER_SCHEDULER, "SCAN_INTERVAL", "1s")
        .write(dir, &repo, bins)
        .unwrap();
    let mut system = System::start(bins, &file, apps, dir.join("run.log")).unwrap();
    system.wait_ready(Duration::from_secs(60)).await.unwrap();

    // The runner started exactly the four services, each from the absolute path in the run file.
    let mut programs: Vec<String> = system
        .app_processes()
        .iter()
        .map(|p| p.program.clone())
        .collect();
    programs.sort();
    let mut expected: Vec<String> = [AUDIT_LOGGER, EMAIL_WORKER, REMINDER_SCHEDULER, TASK_API]
        .iter()
        .map(|b| bins.path(b).display().to_string())
        .collect();
    expected.sort();
    assert_eq!(programs, expected);

    let http = reqwest::Client::new();
    let api = format!(
        "http://127.0.0.1:{}",
        system.app(TASK_API).unwrap().app_port
    );
    // The audit trail is read through audit-logger's own sidecar: the shipped access control
    // denies every other app's sidecar (deploy/dapr/configuration.yaml).
    let dapr = format!(
        "http://127.0.0.1:{}",
        system.app(AUDIT_LOGGER).unwrap().dapr_http_port
    );

    // Each sidecar runs the components of the run file's resources.
    for app in [TASK_API, EMAIL_WORKER, REMINDER_SCHEDULER, AUDIT_LOGGER] {
        let port = system.app(app).unwrap().dapr_http_port;
        let metadata: Value = http
            .get(format!("http://127.0.0.1:{port}/v1.0/metadata"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(metadata["id"], app);
        let mut types: Vec<&str> = metadata["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["type"].as_str())
            .filter(|t| t.starts_with("pubsub.") || t.starts_with("state."))
            .collect();
        types.sort_unstable();
        assert_eq!(types, component_types, "{app}: {metadata}");
    }

    // Create a task due in 10 minutes.
    let user_id = uuid::Uuid::new_v4().to_string();
    let email = format!("e2e-{}@example.com", &user_id[..8]);
    let bearer = format!("Bearer {}", token(bins, &secret, &user_id, &email));
    let due = (chrono::Utc::now() + chrono::Duration::minutes(10))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let response = http
        .post(format!("{api}/api/tasks"))
        .header("authorization", &bearer)
        .json(&json!({"title": "Renew the passport", "priority": "high", "due_date": due}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let task: Value = response.json().await.unwrap();
    let task_id = task["id"].as_str().unwrap().to_owned();

    // Two emails over SMTP to the task owner: "New task" and, after the reminder, "Due soon".
    let mails = poll_until("two emails", WAIT, || {
        let got = smtp.received();
        async move { (got.len() >= 2).then_some(got) }
    })
    .await
    .unwrap();
    let subjects: Vec<String> = mails.iter().map(|m| m.subject().unwrap()).collect();
    assert_eq!(
        subjects
            .iter()
            .filter(|s| *s == "New task: Renew the passport")
            .count(),
        1,
        "{subjects:?}"
    );
    assert_eq!(
        subjects
            .iter()
            .filter(|s| *s == "Due soon: Renew the passport")
            .count(),
        1,
        "{subjects:?}"
    );
    for mail in &mails {
        assert_eq!(mail.to, vec![email.clone()]);
        assert_eq!(mail.from, "tasks@todo.test");
        assert!(mail.text().unwrap().contains(&task_id));
    }

    // The audit trail, read through Dapr service invocation: both notifications are recorded.
    let trail_url = format!("{dapr}/v1.0/invoke/{AUDIT_LOGGER}/method/audit/tasks/{task_id}");
    let read_trail = || {
        let request = http
            .get(&trail_url)
            .header("authorization", format!("Bearer {admin_token}"));
        async move {
            let response = request.send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            response.json::<Value>().await.ok()
        }
    };
    poll_until(
        "created, due-soon and 2 notifications in the trail",
        WAIT,
        || async {
            let trail = read_trail().await?;
            (event_types(&trail).len() >= 4).then_some(())
        },
    )
    .await
    .unwrap();

    // Complete the task; its event closes the trail.
    let response = http
        .post(format!("{api}/api/tasks/{task_id}/complete"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let completed: Value = response.json().await.unwrap();
    assert_eq!(completed["status"], "completed");

    let trail = poll_until("task-completed in the trail", WAIT, || async {
        let trail = read_trail().await?;
        event_types(&trail)
            .contains(&"task-completed".to_owned())
            .then_some(trail)
    })
    .await
    .unwrap();
    let types = event_types(&trail);
    assert_eq!(types.len(), 5, "{types:?}");
    // The trail is in arrival order, which no broker keeps across topics: Kafka orders events
    // only within a partition, and audit-logger takes its topics in batches (up to 20 ms each),
    // so a consequence (task-due-soon, notification-sent) may be recorded before the
    // task-created that caused it on every backend. What holds is that each event is there once
    // and each notification names a trigger that is in the trail.
    assert_eq!(
        types.iter().filter(|t| *t == "task-created").count(),
        1,
        "{types:?}"
    );
    assert_eq!(types.last().map(String::as_str), Some("task-completed"));
    assert_eq!(types.iter().filter(|t| *t == "task-due-soon").count(), 1);
    assert_eq!(
        types.iter().filter(|t| *t == "notification-sent").count(),
        2
    );
    // Each notification names its trigger, which is in the trail.
    let entries = trail["entries"].as_array().unwrap();
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry["seq"].as_u64(), Some(i as u64));
        assert_eq!(entry["task_id"].as_str(), Some(task_id.as_str()));
        if entry["event_type"] == "notification-sent" {
            let trigger = entry["causation_id"].as_str().unwrap();
            assert!(
                entries
                    .iter()
                    .any(|e| e["event_id"].as_str() == Some(trigger)),
                "trigger {trigger} of entry {i} is not in the trail"
            );
            let payload: Value = serde_json::from_str(entry["payload"].as_str().unwrap()).unwrap();
            assert_eq!(payload["recipient"], email.as_str());
        }
    }

    let verify: Value = http
        .get(format!("{trail_url}/verify"))
        .header("authorization", format!("Bearer {admin_token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verify["valid"], true, "{verify}");
    assert_eq!(verify["entries"], 5, "{verify}");

    // Still exactly two emails: nothing was sent twice in the meantime.
    assert_eq!(smtp.received().len(), 2);

    let status = system.stop(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "runner exit status {status}");
    let output = system.output();
    for app in [TASK_API, EMAIL_WORKER, REMINDER_SCHEDULER, AUDIT_LOGGER] {
        assert!(
            output.contains(&format!("== APP - {app} == ")),
            "no output from {app}"
        );
    }
}
