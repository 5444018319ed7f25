//! No lost email without any Resiliency policy: the resources folder holds only the in-memory
//! pub/sub and state store, so the sidecars follow daprd's default (no delivery retries; a failed
//! delivery goes to the subscriber's dead-letter topic at once). While tasks are created in a
//! steady stream, email-worker alone is killed with SIGKILL and started again within two seconds;
//! its sidecar, and the rest of the run, keep going. Every acknowledged task still gets exactly
//! one "New task" email (one Message-ID; the worker's documented crash window may put that
//! message on the wire twice, and only a first copy sent before the kill may have a second).
//!
//! Needs `cargo build --workspace --bins` first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::durability_support::token;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::processes::is_running;
use e2e::{Binaries, LaunchSpec, RunFile, SmtpSink, System, poll_until};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::json;

const TASK_API: &str = "task-api";
const EMAIL_WORKER: &str = "email-worker";
/// Acknowledged creations before the kill, and in total.
const BEFORE_KILL: usize = 40;
const TOTAL: usize = 160;
/// Creations to let through while email-worker is down (if the stream manages them in time).
const WHILE_DOWN: usize = 15;
/// The longest email-worker may stay down.
const MAX_DOWNTIME: Duration = Duration::from_secs(2);

/// Creates tasks one after another until `stop`; task-api is never down in this test, so every
/// creation must be acknowledged.
async fn create_stream(
    api: String,
    bearer: String,
    created: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let run = &uuid::Uuid::new_v4().to_string()[..8];
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let title = format!("crash {run} #{n}");
        let response = http
            .post(format!("{api}/api/tasks"))
            .header("authorization", &bearer)
            .json(&json!({"title": title, "priority": "low"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "creating {title}");
        let task: serde_json::Value = response.json().await.unwrap();
        let id = task["id"].as_str().unwrap().to_owned();
        created.lock().unwrap().push((title, id));
    }
}

fn count(created: &Mutex<Vec<(String, String)>>) -> usize {
    created.lock().unwrap().len()
}

/// The resources of `deploy/local/in-memory` without its Resiliency resource.
fn resources_without_resiliency(bins: &Binaries, into: &std::path::Path) {
    std::fs::create_dir_all(into).unwrap();
    let source = bins.workspace().join("deploy/local/in-memory");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if text.lines().any(|l| l.trim() == "kind: Resiliency") {
            continue;
        }
        std::fs::write(into.join(path.file_name().unwrap()), text).unwrap();
    }
    for entry in std::fs::read_dir(into).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains("kind: Resiliency"), "a policy was left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_worker_killed_and_restarted_without_a_resiliency_policy_loses_no_email() {
    let t0 = Instant::now();
    let bins = Binaries::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("resources");
    resources_without_resiliency(&bins, &resources);
    let smtp = SmtpSink::start().unwrap();
    let run_file = RunFile::from_file(&bins.workspace().join("dapr.yaml"))
        .unwrap()
        .common_resources(&resources);
    let secret = run_file.setting(TASK_API, "JWT_SECRET").unwrap();
    let (file, apps) = run_file
        .remove_env(EMAIL_WORKER, "MAIL_DIR")
        .env(EMAIL_WORKER, "SMTP_URL", smtp.url())
        // A send the kill interrupted holds its claim this long before another attempt may send.
        .env(EMAIL_WORKER, "CLAIM_TTL", "5s")
        .write(dir.path(), bins.workspace(), &bins)
        .unwrap();
    let log = dir.path().join("run.log");
    let mut run = System::start(&bins, &file, apps.clone(), log.clone()).unwrap();
    run.wait_ready(Duration::from_secs(60)).await.unwrap();
    let api = format!("http://127.0.0.1:{}", run.app(TASK_API).unwrap().app_port);
    let worker_port = run.app(EMAIL_WORKER).unwrap().app_port;

    let user = uuid::Uuid::new_v4().to_string();
    let email = format!("crash-{}@example.com", &user[..8]);
    let bearer = format!("Bearer {}", token(&bins, &secret, &user, &email).unwrap());
    let created = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let creator = tokio::spawn(create_stream(
        api.clone(),
        bearer,
        Arc::clone(&created),
        Arc::clone(&stop),
    ));
    poll_until("tasks before the kill", Duration::from_secs(60), || {
        let n = count(&created);
        async move { (n >= BEFORE_KILL).then_some(()) }
    })
    .await
    .unwrap();

    let worker = run
        .app_processes()
        .iter()
        .find(|p| p.program.ends_with(EMAIL_WORKER))
        .cloned()
        .unwrap();
    let launch = LaunchSpec::of(worker.pid).unwrap();
    assert_eq!(
        launch.var("APP_PORT"),
        Some(worker_port.to_string().as_str())
    );
    let _ = killpg(Pid::from_raw(worker.pid), Signal::SIGKILL);
    let killed_at = Instant::now();
    poll_until("email-worker to be gone", Duration::from_secs(5), || {
        let gone = !is_running(worker.pid);
        async move { gone.then_some(()) }
    })
    .await
    .unwrap();
    // Its connections are closed: what the sink has now was sent before the kill.
    let emails_at_kill = smtp.received().len();
    let created_at_kill = count(&created);
    // Let events arrive while the worker is down (its sidecar keeps delivering to a closed port).
    let _ = poll_until(
        "creations while email-worker is down",
        MAX_DOWNTIME.saturating_sub(killed_at.elapsed() + Duration::from_millis(300)),
        || {
            let n = count(&created);
            async move { (n >= created_at_kill + WHILE_DOWN).then_some(()) }
        },
    )
    .await;
    let mut replacement = launch.spawn(&log).unwrap();
    let downtime = killed_at.elapsed();
    assert!(downtime < MAX_DOWNTIME, "restarted after {downtime:?}");
    let created_while_down = count(&created) - created_at_kill;
    let http = reqwest::Client::new();
    poll_until("the new email-worker", Duration::from_secs(30), || {
        let http = http.clone();
        async move {
            let ready = http
                .get(format!("http://127.0.0.1:{worker_port}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            ready.then_some(())
        }
    })
    .await
    .unwrap();

    poll_until("the rest of the tasks", Duration::from_secs(60), || {
        let n = count(&created);
        async move { (n >= TOTAL).then_some(()) }
    })
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    creator.await.unwrap();
    let created = created.lock().unwrap().clone();
    let stream_done = Instant::now();

    let subject = |title: &str| format!("New task: {title}");
    let without_email = || {
        let subjects: BTreeSet<String> = smtp
            .received()
            .iter()
            .filter_map(e2e::Received::subject)
            .collect();
        created
            .iter()
            .filter(|(title, _)| !subjects.contains(&subject(title)))
            .map(|(title, _)| title.clone())
            .collect::<Vec<_>>()
    };
    let all_sent = poll_until(
        "a New task email for every acknowledged task",
        Duration::from_secs(45),
        || {
            let missing = without_email();
            async move { missing.is_empty().then_some(()) }
        },
    )
    .await;
    if let Err(e) = all_sent {
        let missing = without_email();
        panic!(
            "{e}: {} of {} acknowledged tasks have no email ({created_at_kill} created before \
             the kill, {created_while_down} while email-worker was down for {downtime:?}): \
             {missing:?}",
            missing.len(),
            created.len()
        );
    }
    let all_delivered = stream_done.elapsed();

    let mails = smtp.received();
    let mut doubled = 0;
    for (title, id) in &created {
        let copies: Vec<(usize, &e2e::Received)> = mails
            .iter()
            .enumerate()
            .filter(|(_, m)| m.subject().as_deref() == Some(subject(title).as_str()))
            .collect();
        let ids: BTreeSet<String> = copies
            .iter()
            .map(|(_, m)| m.parsed().unwrap().message_id().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 1, "distinct emails for {title}: {ids:?}");
        assert!(copies[0].1.text().unwrap().contains(id.as_str()), "{title}");
        if copies.len() > 1 {
            assert_eq!(copies.len(), 2, "{title} sent {} times", copies.len());
            assert!(
                copies[0].0 < emails_at_kill,
                "{title}: a resend outside the crash window"
            );
            doubled += 1;
        }
    }
    eprintln!(
        "subscriber crash without a policy: {} tasks, {created_at_kill} before the SIGKILL, \
         {created_while_down} while email-worker was down ({downtime:?}); every email \
         {all_delivered:?} after the last creation; {doubled} resent from the crash window; \
         total {:?}",
        created.len(),
        t0.elapsed()
    );
    let _ = kill(
        Pid::from_raw(i32::try_from(replacement.id()).unwrap()),
        Signal::SIGTERM,
    );
    let _ = replacement.wait();
    drop(run);
}
