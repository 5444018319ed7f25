//! Durability with the Redis components (`dapr.redis.yaml`), and with production's Kafka
//! component and Redis state (`dapr.kafka.yaml`): tasks are created in a steady stream
//! through task-api while the whole run (the sidecar runner and every app) is killed with SIGKILL,
//! then started again on the same Redis. Every task whose creation was acknowledged produces
//! exactly one "New task" email and exactly one `task-created` audit entry; a creation whose
//! outcome the client never learnt produces at most one email, and exactly one if the task exists.
//! "One email" means one Message-ID: the email-worker's one documented duplicate window (the mail
//! server accepted, the process died before the sent mark) may put the same message on the wire
//! twice, and the test allows that only for a first copy sent before the kill.
//!
//! Needs `cargo build --workspace --bins` first, `redis-server`/`redis-cli` on the PATH, and tansu
//! (`scripts/test.sh` builds it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::durability_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durability_support::{shorten_redelivery, token};
use e2e::System;
use e2e::{Binaries, KafkaBroker, RedisServer, RunFile, SmtpSink, kafka_resources, poll_until};
use serde_json::{Value, json};

const TASK_API: &str = "task-api";
const EMAIL_WORKER: &str = "email-worker";
const AUDIT_LOGGER: &str = "audit-logger";
/// Acknowledged creations before the kill, and in total.
const BEFORE_KILL: usize = 25;
const TOTAL: usize = 60;
/// The email-worker's claim lifetime: how long a send the kill interrupted blocks a resend.
const CLAIM_TTL: &str = "5s";

/// What the client learnt of one creation.
#[derive(Debug, Clone)]
enum Outcome {
    /// 201 with the task's id.
    Created { title: String, id: String },
    /// The connection was refused: the request never reached task-api.
    Refused { title: String },
    /// Sent, but no 201 came back (the process died mid-request, or an error status).
    Unknown { title: String, error: String },
}

/// The `Message-ID` header of a received email.
fn message_id(mail: &e2e::Received) -> String {
    mail.parsed()
        .and_then(|m| m.message_id().map(str::to_owned))
        .expect("every email has a Message-ID")
}

fn created(outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Created { .. }))
        .count()
}

/// The base URL of each task-api instance of `run`.
fn task_api_urls(run: &System) -> Vec<String> {
    run.instances(TASK_API)
        .iter()
        .map(|a| format!("http://127.0.0.1:{}", a.app_port))
        .collect()
}

/// Creates tasks one after another until `stop`, recording each outcome; `api` is read before
/// each request, as it changes when the instance restarts on another port.
async fn create_stream(
    api: Arc<Mutex<String>>,
    bearer: String,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let run = &uuid::Uuid::new_v4().to_string()[..8];
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let title = format!("durable {run} #{n}");
        let api = api.lock().unwrap().clone();
        let result = http
            .post(format!("{api}/api/tasks"))
            .header("authorization", &bearer)
            .json(&json!({"title": title, "priority": "low"}))
            .send()
            .await;
        let outcome = match result {
            Ok(r) if r.status() == 201 => match r.json::<Value>().await {
                Ok(task) => Outcome::Created {
                    title,
                    id: task["id"].as_str().unwrap().to_owned(),
                },
                Err(e) => Outcome::Unknown {
                    title,
                    error: format!("201 without a body: {e}"),
                },
            },
            Ok(r) => Outcome::Unknown {
                title,
                error: format!("status {}", r.status()),
            },
            Err(e) if e.is_connect() => Outcome::Refused { title },
            Err(e) => Outcome::Unknown {
                title,
                error: e.to_string(),
            },
        };
        let failed = !matches!(outcome, Outcome::Created { .. });
        outcomes.lock().unwrap().push(outcome);
        if failed {
            // task-api is down or restarting: do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// Dapr's Redis state store (and the local sidecar, which copies it) saves an item with a TTL as two
// commands, the write and then EXPIRE, so a kill between them can leave email-worker's claim with
// no expiry. The worker takes such a claim over once it is older than CLAIM_TTL; this test kills
// often enough to hit that path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_and_doubles_nothing() {
    sigkill_run(1).await;
}

// Two task-api replicas sharing one state store (the same app id, so the same keys), each taking
// half of the stream, and two email-worker replicas competing in one consumer group: a change
// committed by one while the other writes too, the shards of both killed task-api replicas, and a
// send claimed by one killed worker and retried by either, still give every acknowledged task
// exactly one email and one audit entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_two_task_api_and_two_email_worker_replicas_loses_and_doubles_nothing() {
    sigkill_run(2).await;
}

/// The durability run on `dapr.redis.yaml` with `replicas` instances of task-api and of
/// email-worker, all in one run (`--scale`), as replicas of one Deployment.
async fn sigkill_run(replicas: usize) {
    let t0 = Instant::now();
    let bins = Binaries::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path()).unwrap();
    let resources = dir.path().join("resources");
    redis
        .resources_copy(&bins.workspace().join("deploy/local/redis"), &resources)
        .unwrap();
    // A consumer killed mid-delivery leaves its entry pending; claim it again after 3 s.
    shorten_redelivery(&resources, "3s", "1s").unwrap();
    let run = Run {
        t0,
        bins: &bins,
        dir: dir.path(),
        redis: &redis,
        run_file: "dapr.redis.yaml",
        resources: &resources,
    };
    sigkill_mid_stream(run, replicas).await;
}

/// The same on `dapr.kafka.yaml`: production's Kafka component on a tansu broker that outlives
/// the killed run. Events delivered but not yet committed when the run died come again to the
/// restarted consumers; the services' idempotence keeps them to one email and one audit entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_sigkill_mid_stream_loses_and_doubles_nothing() {
    let t0 = Instant::now();
    let bins = Binaries::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path()).unwrap();
    let broker = KafkaBroker::start();
    let resources = dir.path().join("resources");
    kafka_resources(bins.workspace(), &redis, &broker, &resources).unwrap();
    let run = Run {
        t0,
        bins: &bins,
        dir: dir.path(),
        redis: &redis,
        run_file: "dapr.kafka.yaml",
        resources: &resources,
    };
    sigkill_mid_stream(run, 1).await;
}

/// What a durability run starts from: the test's clock, binaries, directory, Redis, the run file
/// at the workspace root and its prepared resources.
struct Run<'a> {
    t0: Instant,
    bins: &'a Binaries,
    dir: &'a Path,
    redis: &'a RedisServer,
    run_file: &'a str,
    resources: &'a Path,
}

/// Runs the run file with `replicas` instances of task-api and of email-worker (`--scale`),
/// creates tasks in a stream, kills everything with SIGKILL after [`BEFORE_KILL`] acknowledged creations,
/// starts it all again and checks every task's email and audit entry.
async fn sigkill_mid_stream(run: Run<'_>, replicas: usize) {
    let Run {
        t0,
        bins,
        dir,
        redis,
        run_file: run_file_name,
        resources,
    } = run;
    let bins = bins.clone();
    let resources = resources.to_path_buf();
    let smtp = SmtpSink::start().unwrap();
    let run_file = RunFile::from_file(&bins.workspace().join(run_file_name))
        .unwrap()
        .common_resources(&resources);
    let secret = run_file.setting(TASK_API, "JWT_SECRET").unwrap();
    let admin = run_file.setting(AUDIT_LOGGER, "AUDIT_ADMIN_TOKEN").unwrap();
    let (file, apps) = run_file
        // Outbox entries whose publish the kill cut off are relayed within seconds, and the
        // restarted processes take over the killed ones' shards once their leases expire.
        .env(TASK_API, "OUTBOX_RELAY_INTERVAL", "1s")
        .env(TASK_API, "OUTBOX_GRACE_PERIOD", "2s")
        .env(TASK_API, "OUTBOX_LEASE_TTL", "3s")
        .remove_env(EMAIL_WORKER, "MAIL_DIR")
        .env(EMAIL_WORKER, "SMTP_URL", smtp.url())
        // A send the kill interrupted leaves its claim; another attempt may send once the claim
        // expires. The default (10 min) outlasts the delivery retries of deploy/local/redis, so
        // the event would be dead-lettered and its email never sent.
        .env(EMAIL_WORKER, "CLAIM_TTL", CLAIM_TTL)
        .write(dir, bins.workspace(), &bins)
        .unwrap();
    let log = dir.join("run.log");

    let scales: Vec<(&str, usize)> = if replicas > 1 {
        vec![(TASK_API, replicas), (EMAIL_WORKER, replicas)]
    } else {
        Vec::new()
    };
    // Every app process: four services, plus the extra instances of the two scaled ones.
    let processes = apps.len() + scales.iter().map(|(_, n)| n - 1).sum::<usize>();
    let start = || System::start_scaled(&bins, &file, apps.clone(), log.clone(), &scales).unwrap();
    let mut run = start();
    run.wait_ready(Duration::from_secs(90)).await.unwrap();
    assert_eq!(run.app_processes().len(), processes);
    let first_ready = t0.elapsed();
    let api = format!("http://127.0.0.1:{}", run.app(TASK_API).unwrap().app_port);
    // Through audit-logger's own sidecar, as the shipped access control requires.
    let dapr = format!(
        "http://127.0.0.1:{}",
        run.app(AUDIT_LOGGER).unwrap().dapr_http_port
    );

    let user = uuid::Uuid::new_v4().to_string();
    let email = format!("durable-{}@example.com", &user[..8]);
    let bearer = format!("Bearer {}", token(&bins, &secret, &user, &email).unwrap());
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    // One stream per task-api instance; a restarted instance other than the first listens on a
    // new port, which its stream is told.
    let targets: Vec<Arc<Mutex<String>>> = task_api_urls(&run)
        .into_iter()
        .map(|u| Arc::new(Mutex::new(u)))
        .collect();
    let creators: Vec<_> = targets
        .iter()
        .map(|target| {
            tokio::spawn(create_stream(
                Arc::clone(target),
                bearer.clone(),
                Arc::clone(&outcomes),
                Arc::clone(&stop),
            ))
        })
        .collect();

    poll_until("tasks before the kill", Duration::from_secs(60), || {
        let n = created(&outcomes.lock().unwrap());
        async move { (n >= BEFORE_KILL).then_some(()) }
    })
    .await
    .unwrap();
    let killed_at = Instant::now();
    let pids = run.kill9().unwrap();
    assert_eq!(pids.len(), processes + 1, "runner and every app: {pids:?}");
    let created_at_kill = created(&outcomes.lock().unwrap());

    let mut run = start();
    run.wait_ready(Duration::from_secs(90)).await.unwrap();
    for (target, url) in targets.iter().zip(task_api_urls(&run)) {
        *target.lock().unwrap() = url;
    }
    let downtime = killed_at.elapsed();
    // Everything the killed run sent is recorded by now (its connections closed long ago), and
    // nothing the new run sends can be a resend yet: that waits for a claim to expire.
    let emails_at_restart = smtp.received().len();

    poll_until("tasks after the restart", Duration::from_secs(60), || {
        let n = created(&outcomes.lock().unwrap());
        async move { (n >= TOTAL).then_some(()) }
    })
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    for creator in creators {
        creator.await.unwrap();
    }
    let outcomes = outcomes.lock().unwrap().clone();
    let stream_done = Instant::now();
    // The index is projected after a change commits; a change the kill cut off before its
    // projection is projected when a running instance drains the killed one's outbox, once
    // its lease (3 s here) has expired. Lists show every change from then on.
    poll_until(
        "the outbox drained and projected",
        Duration::from_secs(60),
        || {
            let left = durability_support::outbox_keys(redis.port());
            async move { (left == 0).then_some(()) }
        },
    )
    .await
    .unwrap();

    // The tasks that exist, by title (one page holds them all).
    let http = reqwest::Client::new();
    let page: Value = http
        .get(format!("{api}/api/tasks?limit=200"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(page["next_cursor"].is_null(), "more than one page: {page}");
    let existing: Vec<(String, String)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["title"].as_str().unwrap().to_owned(),
                t["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let id_of = |title: &str| {
        let ids: Vec<&String> = existing
            .iter()
            .filter(|(t, _)| t == title)
            .map(|(_, id)| id)
            .collect();
        assert!(ids.len() <= 1, "{title} exists {} times", ids.len());
        ids.first().map(|id| (*id).clone())
    };

    // Every task that must have its email and trail: the acknowledged ones, and the unknown
    // outcomes that turned out to exist.
    let mut expected: Vec<(String, String)> = Vec::new();
    let mut refused = Vec::new();
    let mut unknown = Vec::new();
    for outcome in &outcomes {
        match outcome {
            Outcome::Created { title, id } => {
                assert_eq!(id_of(title).as_deref(), Some(id.as_str()), "{title}");
                expected.push((title.clone(), id.clone()));
            }
            Outcome::Refused { title } => {
                assert_eq!(id_of(title), None, "a refused request created {title}");
                refused.push(title.clone());
            }
            Outcome::Unknown { title, error } => {
                eprintln!("outcome unknown for {title}: {error}");
                match id_of(title) {
                    Some(id) => expected.push((title.clone(), id)),
                    None => unknown.push(title.clone()),
                }
            }
        }
    }
    assert_eq!(existing.len(), expected.len(), "tasks nobody asked for");

    let subject = |title: &str| format!("New task: {title}");
    let mails_for = |title: &str| {
        smtp.received()
            .into_iter()
            .filter(|m| m.subject().as_deref() == Some(subject(title).as_str()))
            .collect::<Vec<_>>()
    };
    let trail_url = |id: &str| format!("{dapr}/v1.0/invoke/{AUDIT_LOGGER}/method/audit/tasks/{id}");
    let created_entries = |trail: &Value| {
        trail["entries"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter(|e| e["event_type"] == "task-created")
                    .count()
            })
            .unwrap_or(0)
    };

    // Wait until every expected task has its email and its audit entry.
    let missing = |http: reqwest::Client, expected: Vec<(String, String)>, admin: String| async move {
        let mut missing = Vec::new();
        for (title, id) in &expected {
            if mails_for(title).is_empty() {
                missing.push(format!("email for {title}"));
            }
            let trail = match http.get(trail_url(id)).bearer_auth(&admin).send().await {
                Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                _ => None,
            };
            if trail.as_ref().map_or(0, created_entries) == 0 {
                missing.push(format!("audit entry for {title}"));
            }
        }
        missing
    };
    let delivered = poll_until(
        "an email and a task-created audit entry for every task",
        Duration::from_secs(45),
        || {
            let check = missing(http.clone(), expected.clone(), admin.clone());
            async move { check.await.is_empty().then_some(()) }
        },
    )
    .await;
    if let Err(e) = delivered {
        let left = missing(http.clone(), expected.clone(), admin.clone()).await;
        eprintln!(
            "email-worker's ledger:\n{}",
            durability_support::ledger_dump(redis.port())
        );
        panic!("{e}; still missing: {left:#?}");
    }
    let all_delivered = stream_done.elapsed();

    // Exactly one email per task, by Message-ID (the worker gives every attempt for one event the
    // same id). The same message twice over the wire is allowed only from the worker's one
    // documented window: the server accepted it, then the kill came before the worker stored its
    // sent mark, so the first copy arrived before the kill and the resend after the claim expired.
    let all_mails = smtp.received();
    let mut doubled = Vec::new();
    for (title, id) in &expected {
        let copies: Vec<(usize, &e2e::Received)> = all_mails
            .iter()
            .enumerate()
            .filter(|(_, m)| m.subject().as_deref() == Some(subject(title).as_str()))
            .collect();
        let ids: BTreeSet<String> = copies.iter().map(|(_, m)| message_id(m)).collect();
        assert_eq!(ids.len(), 1, "distinct emails for {title}: {ids:?}");
        assert!(copies[0].1.text().unwrap().contains(id.as_str()), "{title}");
        assert_eq!(copies[0].1.to, vec![email.clone()]);
        if copies.len() > 1 {
            assert_eq!(copies.len(), 2, "{title} sent {} times", copies.len());
            assert!(
                copies[0].0 < emails_at_restart && copies[1].0 >= emails_at_restart,
                "{title}: a resend outside the crash window (copies #{} and #{} of the sink, \
                 {emails_at_restart} before the restart)",
                copies[0].0,
                copies[1].0
            );
            doubled.push(title.clone());
        }
        let trail: Value = http
            .get(trail_url(id))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(created_entries(&trail), 1, "{title}: {trail}");
    }
    for title in refused.iter().chain(&unknown) {
        assert!(
            mails_for(title).is_empty(),
            "email for {title}, which does not exist"
        );
    }
    let new_task_mails: BTreeSet<String> = all_mails
        .iter()
        .filter(|m| m.subject().is_some_and(|s| s.starts_with("New task: ")))
        .map(message_id)
        .collect();
    assert_eq!(
        new_task_mails.len(),
        expected.len(),
        "emails for tasks not listed"
    );

    eprintln!(
        "durability ({} task-api and email-worker instances): ready in {first_ready:?}; {created_at_kill} tasks acknowledged at the \
         SIGKILL of {} processes; back up after {downtime:?} ({emails_at_restart} emails by \
         then); {} acknowledged, {} refused, {} unknown (of which {} exist); every email and \
         audit entry {all_delivered:?} after the last creation; {} resent from the crash \
         window; total {:?}",
        replicas,
        pids.len(),
        created(&outcomes),
        refused.len(),
        outcomes.len() - created(&outcomes) - refused.len(),
        expected.len() - created(&outcomes),
        doubled.len(),
        t0.elapsed()
    );
    let pids = run.kill9().unwrap();
    assert_eq!(pids.len(), processes + 1);
}
