//! The whole system with every service scaled (`sidecar run -f ... --scale APP=N`), on the
//! in-memory, the Redis and the Kafka components (on Kafka the instances of an app share its
//! consumer group and split the partitions): each created task gets exactly one "New task" email and,
//! when due soon, exactly one "Due soon" email; every trail holds exactly one entry per event and
//! verifies; the reminders are published once in all (one scanner holds the lease). The work is
//! counted per instance from each instance's `/metrics`, and the sums must match the totals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::durability_support::token;
use e2e::{
    Binaries, KafkaBroker, RedisServer, RunFile, SmtpSink, System, kafka_resources, poll_until,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const TASK_API: &str = "task-api";
const EMAIL_WORKER: &str = "email-worker";
const REMINDER_SCHEDULER: &str = "reminder-scheduler";
const AUDIT_LOGGER: &str = "audit-logger";
const SCALES: [(&str, usize); 4] = [
    (TASK_API, 2),
    (EMAIL_WORKER, 3),
    (REMINDER_SCHEDULER, 2),
    (AUDIT_LOGGER, 3),
];
/// Tasks created; every other one is due within the reminder window.
const TASKS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_yaml_every_service_scaled_keeps_every_guarantee() {
    let bins = Binaries::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let run_file = RunFile::from_file(&bins.workspace().join("dapr.yaml")).unwrap();
    scaled_flow(&bins, run_file, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_redis_yaml_every_service_scaled_keeps_every_guarantee() {
    let bins = Binaries::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path()).unwrap();
    let resources = dir.path().join("resources");
    redis
        .resources_copy(&bins.workspace().join("deploy/local/redis"), &resources)
        .unwrap();
    let run_file = RunFile::from_file(&bins.workspace().join("dapr.redis.yaml"))
        .unwrap()
        .common_resources(&resources);
    scaled_flow(&bins, run_file, dir.path()).await;
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_kafka_yaml_every_service_scaled_keeps_every_guarantee() {
    let bins = Binaries::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path()).unwrap();
    let broker = KafkaBroker::start();
    let resources = dir.path().join("resources");
    kafka_resources(bins.workspace(), &redis, &broker, &resources).unwrap();
    let run_file = RunFile::from_file(&bins.workspace().join("dapr.kafka.yaml"))
        .unwrap()
        .common_resources(&resources);
    scaled_flow(&bins, run_file, dir.path()).await;
    drop(broker);
    drop(redis);
}

/// Sum of every series of counter `name` in a Prometheus text page.
fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        // Not `sum()`: an empty float sum is -0.0, which prints as such.
        .fold(0.0, |a, b| a + b)
}

/// Counter `name` of each instance of `app_id`, by instance index.
async fn per_instance(system: &System, app_id: &str, name: &str) -> BTreeMap<usize, f64> {
    let http = reqwest::Client::new();
    let mut out = BTreeMap::new();
    for app in system.instances(app_id) {
        let page = http
            .get(format!("http://127.0.0.1:{}/metrics", app.app_port))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        out.insert(app.instance, counter(&page, name));
    }
    out
}

fn event_types(trail: &Value) -> Vec<String> {
    trail["entries"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|e| e["event_type"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn scaled_flow(bins: &Binaries, run_file: RunFile, dir: &Path) {
    let smtp = SmtpSink::start().unwrap();
    let secret = run_file.setting(TASK_API, "JWT_SECRET").unwrap();
    let admin = run_file.setting(AUDIT_LOGGER, "AUDIT_ADMIN_TOKEN").unwrap();
    let (file, apps) = run_file
        .remove_env(EMAIL_WORKER, "MAIL_DIR")
        .env(EMAIL_WORKER, "SMTP_URL", smtp.url())
        .env(REMINDER_SCHEDULER, "REMINDER_LEAD_TIME", "1h")
        .env(REMINDER_SCHEDULER, "SCAN_INTERVAL", "1s")
        .write(dir, bins.workspace(), bins)
        .unwrap();
    let mut system = System::start_scaled(bins, &file, apps, dir.join("run.log"), &SCALES).unwrap();
    system.wait_ready(Duration::from_secs(90)).await.unwrap();
    for (app, n) in SCALES {
        let instances = system.instances(app);
        assert_eq!(instances.len(), n, "{app}: {instances:?}");
        let mut ports: Vec<u16> = instances.iter().map(|a| a.app_port).collect();
        ports.extend(instances.iter().map(|a| a.dapr_http_port));
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(
            ports.len(),
            2 * n,
            "{app}: every instance has its own ports"
        );
    }
    assert_eq!(system.app_processes().len(), 10, "one process per instance");
    let output = system.output();
    for label in [
        "email-worker#3",
        "audit-logger#2",
        "task-api#2",
        "reminder-scheduler#2",
    ] {
        assert!(
            output.contains(&format!("== APP - {label} == ")),
            "no output prefixed {label}"
        );
    }

    // Tasks created through both task-api instances in turn; the odd ones due in 10 minutes.
    let http = reqwest::Client::new();
    let user = uuid::Uuid::new_v4().to_string();
    let email = format!("scaled-{}@example.com", &user[..8]);
    let bearer = format!("Bearer {}", token(bins, &secret, &user, &email).unwrap());
    let apis: Vec<String> = system
        .instances(TASK_API)
        .iter()
        .map(|a| format!("http://127.0.0.1:{}", a.app_port))
        .collect();
    let mut tasks: Vec<(String, String, bool)> = Vec::new();
    for i in 0..TASKS {
        let due_soon = i % 2 == 1;
        let title = format!("scaled #{i}");
        let mut body = json!({"title": title, "priority": "medium"});
        if due_soon {
            body["due_date"] = (chrono::Utc::now() + chrono::Duration::minutes(10))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .into();
        }
        let r = http
            .post(format!("{}/api/tasks", apis[i % apis.len()]))
            .header("authorization", &bearer)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{title}");
        let task: Value = r.json().await.unwrap();
        tasks.push((title, task["id"].as_str().unwrap().to_owned(), due_soon));
    }
    let due = tasks.iter().filter(|t| t.2).count();
    let expected_mails = TASKS + due;

    poll_until("every email", WAIT, || {
        let n = smtp.received().len();
        async move { (n >= expected_mails).then_some(()) }
    })
    .await
    .unwrap();

    // Complete every task through the other instance than the one that created it.
    for (i, (title, id, _)) in tasks.iter().enumerate() {
        let r = http
            .post(format!(
                "{}/api/tasks/{id}/complete",
                apis[(i + 1) % apis.len()]
            ))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{title}");
    }

    // Every trail, read through audit-logger's sidecar (which reaches one of its instances).
    let dapr = format!(
        "http://127.0.0.1:{}",
        system.app(AUDIT_LOGGER).unwrap().dapr_http_port
    );
    let trail_url = |id: &str| format!("{dapr}/v1.0/invoke/{AUDIT_LOGGER}/method/audit/tasks/{id}");
    let read = |url: String| {
        let request = http.get(url).bearer_auth(&admin);
        async move {
            let r = request.send().await.ok()?;
            if !r.status().is_success() {
                return None;
            }
            r.json::<Value>().await.ok()
        }
    };
    for (title, id, due_soon) in &tasks {
        let want = if *due_soon { 5 } else { 3 };
        let trail = poll_until(&format!("the whole trail of {title}"), WAIT, || async {
            let trail = read(trail_url(id)).await?;
            (event_types(&trail).contains(&"task-completed".to_owned())
                && event_types(&trail).len() >= want)
                .then_some(trail)
        })
        .await
        .unwrap();
        let types = event_types(&trail);
        let count = |t: &str| types.iter().filter(|x| *x == t).count();
        assert_eq!(count("task-created"), 1, "{title}: {types:?}");
        assert_eq!(count("task-completed"), 1, "{title}: {types:?}");
        assert_eq!(
            count("task-due-soon"),
            usize::from(*due_soon),
            "{title}: {types:?}"
        );
        assert_eq!(
            count("notification-sent"),
            1 + usize::from(*due_soon),
            "{title}: {types:?}"
        );
        assert_eq!(types.len(), want, "{title}: {types:?}");
        let verify = read(format!("{}/verify", trail_url(id))).await.unwrap();
        assert_eq!(verify["valid"], true, "{title}: {verify}");
        assert_eq!(verify["entries"], want, "{title}: {verify}");
    }

    // One email of each kind per task, by subject.
    let mails = smtp.received();
    for (title, _, due_soon) in &tasks {
        let count = |subject: String| {
            mails
                .iter()
                .filter(|m| m.subject().as_deref() == Some(subject.as_str()))
                .count()
        };
        assert_eq!(count(format!("New task: {title}")), 1, "{title}");
        assert_eq!(
            count(format!("Due soon: {title}")),
            usize::from(*due_soon),
            "{title}"
        );
    }
    assert_eq!(mails.len(), expected_mails);

    // The work, per instance: the sums are the totals, so no instance did another's work again.
    let sent = per_instance(&system, EMAIL_WORKER, "emails_sent_total").await;
    let reminders = per_instance(&system, REMINDER_SCHEDULER, "reminders_published_total").await;
    let appended = per_instance(&system, AUDIT_LOGGER, "audit_entries_total").await;
    eprintln!(
        "scaled run: emails sent per email-worker instance {sent:?}; reminders published per \
         reminder-scheduler instance {reminders:?}; audit entries per audit-logger instance \
         {appended:?}"
    );
    assert_eq!(
        sent.values().sum::<f64>(),
        expected_mails as f64,
        "{sent:?}"
    );
    assert_eq!(reminders.values().sum::<f64>(), due as f64, "{reminders:?}");
    assert!(
        reminders.values().filter(|n| **n > 0.0).count() <= 1,
        "only the lease holder scans: {reminders:?}"
    );
    assert!(appended.values().sum::<f64>() > 0.0, "{appended:?}");

    let status = system.stop(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "runner exit status {status}");
}
