//! One trace from `POST /api/tasks` to the SMTP send: the four services and their sidecars
//! export to an OTLP/HTTP receiver of the test's own (services through the `OTEL_*` variables,
//! sidecars through their Configuration's `spec.tracing`), and the spans of the creation's trace
//! link task-api's handler, its publish, the sidecars' publish and deliveries, email-worker's
//! handler and SMTP send, audit-logger's append and the reminder's publish, each under the
//! right parent.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{Binaries, OtlpReceiver, ReceivedSpan, RunFile, SmtpSink, System, poll_until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(45);
const SIDECAR_SCOPE: &str = "dapr-sidecar";

/// The spans of one trace, by span id.
struct Trace(BTreeMap<String, ReceivedSpan>);

impl Trace {
    fn find(&self, service: &str, name: &str) -> Option<&ReceivedSpan> {
        self.0
            .values()
            .find(|s| s.service == service && s.name == name)
    }

    fn all(&self, service: &str, name: &str) -> Vec<&ReceivedSpan> {
        self.0
            .values()
            .filter(|s| s.service == service && s.name == name)
            .collect()
    }

    /// `span`'s parent, when it was exported.
    fn parent(&self, span: &ReceivedSpan) -> Option<&ReceivedSpan> {
        self.0.get(span.parent_span_id.as_ref()?)
    }

    /// Whether `ancestor` is on `span`'s chain of parents.
    fn descends(&self, span: &ReceivedSpan, ancestor: &ReceivedSpan) -> bool {
        let mut current = self.parent(span);
        while let Some(parent) = current {
            if parent.span_id == ancestor.span_id {
                return true;
            }
            current = self.parent(parent);
        }
        false
    }

    /// Spans whose parent is neither exported nor the test's own root.
    fn orphans(&self, root_parent: &str) -> Vec<&ReceivedSpan> {
        self.0
            .values()
            .filter(|s| match &s.parent_span_id {
                Some(parent) => parent != root_parent && !self.0.contains_key(parent),
                None => true,
            })
            .collect()
    }
}

/// The spans of the creation's trace, once every expected one arrived and no parent is missing
/// (spans are exported in batches, so both take a moment).
async fn wait_for_trace(
    receiver: &OtlpReceiver,
    trace_id: &str,
    root_parent: &str,
) -> anyhow::Result<Trace> {
    poll_until("the spans of the creation's trace", WAIT, || {
        let trace = Trace(
            receiver
                .trace(trace_id)
                .into_iter()
                .map(|s| (s.span_id.clone(), s))
                .collect(),
        );
        let expected = [
            ("task-api", "POST /api/tasks"),
            ("task-api", "publish todo-pubsub"),
            ("task-api", "/v1.0/publish/todo-pubsub/task-created"),
            ("email-worker", "pubsub/task-created"),
            ("email-worker", "deliver task-created"),
            ("email-worker", "smtp send"),
            ("audit-logger", "pubsub/task-created"),
            ("audit-logger", "audit append"),
            ("reminder-scheduler", "deliver task-created"),
            ("reminder-scheduler", "reminder publish"),
            ("email-worker", "pubsub/task-due-soon"),
        ];
        let complete = expected
            .iter()
            .all(|(service, name)| trace.find(service, name).is_some())
            // Both emails: the new task's and the reminder's.
            && trace.all("email-worker", "smtp send").len() >= 2
            && trace.orphans(root_parent).is_empty();
        async move { complete.then_some(trace) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_links_the_request_the_sidecars_the_handlers_and_the_smtp_send() {
    let bins = Binaries::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let repo = bins.workspace().to_path_buf();
    let receiver = OtlpReceiver::start().await.unwrap();
    let smtp = SmtpSink::start().unwrap();

    // The shipped Configuration with its tracing pointed at the receiver, sampling everything.
    let shipped = std::fs::read_to_string(repo.join("deploy/dapr/configuration.yaml")).unwrap();
    let mut config: yaml_serde::Value = yaml_serde::from_str(&shipped).unwrap();
    config["spec"]["tracing"] = yaml_serde::from_str(&format!(
        "{{samplingRate: \"1\", otel: {{endpointAddress: \"{}\", isSecure: false, protocol: http}}}}",
        receiver.address()
    ))
    .unwrap();
    let config_path = dir.path().join("configuration.yaml");
    std::fs::write(&config_path, yaml_serde::to_string(&config).unwrap()).unwrap();

    let mut run_file = RunFile::from_file(&repo.join("dapr.yaml"))
        .unwrap()
        .common_config(&config_path)
        .remove_env("email-worker", "MAIL_DIR")
        .env("email-worker", "SMTP_URL", smtp.url())
        .env("email-worker", "MAIL_FROM", "Tasks <tasks@todo.test>")
        .env("reminder-scheduler", "REMINDER_LEAD_TIME", "1h")
        .env("reminder-scheduler", "SCAN_INTERVAL", "1s");
    for app in run_file.app_ids() {
        run_file = run_file
            .env(&app, "OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
            .env(&app, "OTEL_TRACES_SAMPLER", "parentbased_always_on")
            // Export every 200 ms instead of every 5 s: the test polls for the spans.
            .env(&app, "OTEL_BSP_SCHEDULE_DELAY", "200")
            .env(&app, "LOG_FORMAT", "json");
    }
    let secret = run_file.setting("task-api", "JWT_SECRET").unwrap();
    let (file, apps) = run_file.write(dir.path(), &repo, &bins).unwrap();
    let mut system = System::start(&bins, &file, apps, dir.path().join("run.log")).unwrap();
    system.wait_ready(Duration::from_secs(60)).await.unwrap();

    let user_id = uuid::Uuid::new_v4().to_string();
    let email = format!("traces-{}@example.com", &user_id[..8]);
    let token = std::process::Command::new(bins.path("task-api"))
        .args([
            "token",
            "--user-id",
            &user_id,
            "--email",
            &email,
            "--ttl",
            "1h",
        ])
        .env("JWT_SECRET", &secret)
        .env_remove("CONFIG_FILE")
        .output()
        .unwrap();
    assert!(token.status.success());
    let bearer = format!("Bearer {}", String::from_utf8(token.stdout).unwrap().trim());
    let api = format!(
        "http://127.0.0.1:{}",
        system.app("task-api").unwrap().app_port
    );

    // A caller that did not sample its trace: no process builds a span of it. It goes first,
    // so by the time the sampled trace below is complete, each process has exported (in the
    // order the spans ended) whatever it had of this one.
    let unsampled_trace = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let http = reqwest::Client::new();
    let unsampled = http
        .post(format!("{api}/api/tasks"))
        .header("authorization", &bearer)
        .header(
            "traceparent",
            format!("00-{unsampled_trace}-{:016x}-00", rand_u64()),
        )
        .json(&json!({"title": "Do not trace me", "priority": "low"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unsampled.status(), 201);

    // The test is the trace's root: its own trace id and span id, sampled.
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let root_span = format!("{:016x}", rand_u64());
    let due = (chrono::Utc::now() + chrono::Duration::minutes(10))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let response = http
        .post(format!("{api}/api/tasks"))
        .header("authorization", &bearer)
        .header("traceparent", format!("00-{trace_id}-{root_span}-01"))
        .json(&json!({"title": "Trace me", "priority": "high", "due_date": due}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let task: serde_json::Value = response.json().await.unwrap();
    let task_id = task["id"].as_str().unwrap().to_owned();

    let trace = wait_for_trace(&receiver, &trace_id, &root_span)
        .await
        .unwrap_or_else(|e| {
            let got: Vec<String> = receiver
                .trace(&trace_id)
                .iter()
                .map(|s| format!("{}: {} ({})", s.service, s.name, s.kind))
                .collect();
            panic!("{e}; spans of the trace: {got:#?}")
        });
    let span = |service: &str, name: &str| trace.find(service, name).unwrap();
    let leaked: Vec<String> = receiver
        .trace(&unsampled_trace)
        .iter()
        .map(|s| format!("{}: {}", s.service, s.name))
        .collect();
    assert!(leaked.is_empty(), "spans of an unsampled trace: {leaked:?}");

    // task-api: the handler continues the caller's trace; the publish is its child; the
    // sidecar's span of the publish call is the publish's child.
    let handler = span("task-api", "POST /api/tasks");
    assert_eq!(handler.kind, "server");
    assert_eq!(handler.parent_span_id.as_deref(), Some(root_span.as_str()));
    assert_ne!(handler.scope, SIDECAR_SCOPE);
    let publish = trace
        .all("task-api", "publish todo-pubsub")
        .into_iter()
        .find(|p| {
            trace
                .parent(p)
                .is_some_and(|parent| parent.span_id == handler.span_id)
        })
        .expect("a publish under the handler");
    assert_eq!(publish.kind, "client");
    let sidecar_publish = trace
        .all("task-api", "/v1.0/publish/todo-pubsub/task-created")
        .into_iter()
        .find(|s| s.parent_span_id.as_deref() == Some(publish.span_id.as_str()))
        .expect("the sidecar's span of that publish");
    assert_eq!(sidecar_publish.scope, SIDECAR_SCOPE);
    assert_eq!(sidecar_publish.kind, "client");
    assert_eq!(
        sidecar_publish.attributes["messaging.destination.name"],
        "task-created"
    );
    assert_eq!(
        sidecar_publish.attributes["dapr.api"],
        "POST /v1.0/publish/todo-pubsub/task-created"
    );

    // email-worker's sidecar delivers under the publish (the event carries its context). The
    // worker takes its triggers in batches, so each event's handling continues the trace of
    // its own entry (the sidecar's delivery span), not the batch request's; the SMTP send runs
    // under that handling.
    let delivery = trace
        .all("email-worker", "pubsub/task-created")
        .into_iter()
        .find(|d| d.parent_span_id.as_deref() == Some(sidecar_publish.span_id.as_str()))
        .expect("email-worker's sidecar delivers the publish");
    assert_eq!(delivery.scope, SIDECAR_SCOPE);
    assert_eq!(delivery.attributes["messaging.system"], "pubsub");
    let email_handler = trace
        .all("email-worker", "deliver task-created")
        .into_iter()
        .find(|h| h.parent_span_id.as_deref() == Some(delivery.span_id.as_str()))
        .expect("email-worker's handling under its entry's delivery");
    assert_eq!(email_handler.kind, "consumer");
    let new_task_mail = trace
        .all("email-worker", "smtp send")
        .into_iter()
        .find(|s| trace.descends(s, email_handler))
        .expect("an SMTP send under email-worker's handler");
    assert_eq!(new_task_mail.kind, "client");
    assert!(!new_task_mail.failed);

    // audit-logger appends under its own delivery of the same publish.
    let audit_delivery = trace
        .all("audit-logger", "pubsub/task-created")
        .into_iter()
        .find(|d| d.parent_span_id.as_deref() == Some(sidecar_publish.span_id.as_str()))
        .expect("audit-logger's sidecar delivers the publish");
    assert!(
        trace
            .all("audit-logger", "audit append")
            .iter()
            .any(|a| trace.descends(a, audit_delivery)),
        "no append under audit-logger's delivery"
    );

    // The reminder: published by a later scan, yet a child of the span that handled the task's
    // creation in reminder-scheduler, linked to the scan that found it due; its delivery to
    // email-worker and that SMTP send stay in the task's trace.
    let reminder = span("reminder-scheduler", "reminder publish");
    let scheduled_in = trace.parent(reminder).unwrap();
    assert_eq!(scheduled_in.service, "reminder-scheduler");
    assert!(trace.descends(reminder, sidecar_publish));
    let scans: Vec<ReceivedSpan> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.service == "reminder-scheduler" && s.name == "reminder scan")
        .collect();
    let (link_trace, link_span) = reminder.links.first().expect("a link to the scan");
    assert!(
        scans
            .iter()
            .any(|s| &s.trace_id == link_trace && &s.span_id == link_span),
        "the reminder's link names no exported scan"
    );
    let due_soon = span("email-worker", "pubsub/task-due-soon");
    assert!(trace.descends(due_soon, reminder));
    assert!(
        trace
            .all("email-worker", "smtp send")
            .iter()
            .any(|s| trace.descends(s, due_soon)),
        "no SMTP send under the reminder's delivery"
    );

    // Every span of the trace hangs off the test's root through exported parents.
    assert!(trace.orphans(&root_span).is_empty());

    // The audit entry names the trace, and the JSON logs carry trace and span ids.
    let admin = format!(
        "Bearer {}",
        RunFile::from_file(&repo.join("dapr.yaml"))
            .unwrap()
            .setting("audit-logger", "AUDIT_ADMIN_TOKEN")
            .unwrap()
    );
    let dapr = system.app("audit-logger").unwrap().dapr_http_port;
    let trail: serde_json::Value = poll_until("the task's trail", WAIT, || {
        let request = http
            .get(format!(
                "http://127.0.0.1:{dapr}/v1.0/invoke/audit-logger/method/audit/tasks/{task_id}"
            ))
            .header("authorization", &admin);
        async move {
            let response = request.send().await.ok()?;
            let trail: serde_json::Value = response.json().await.ok()?;
            let entries = trail["entries"].as_array()?;
            entries
                .iter()
                .any(|e| e["event_type"] == "task-created")
                .then_some(trail)
        }
    })
    .await
    .unwrap();
    // Batched delivery keeps no order across topics, so the task-created entry need not be
    // first: the notification may be recorded before it. Wait for that entry itself.
    let created = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "task-created")
        .unwrap();
    assert_eq!(created["trace_id"], trace_id.as_str());
    let output = system.output();
    assert!(
        output
            .lines()
            .any(|l| l.contains(&format!("\"trace_id\":\"{trace_id}\"")) && l.contains("span_id")),
        "no JSON log line names the trace"
    );

    let status = system.stop(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "runner exit status {status}");
}

fn rand_u64() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_be_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ]) | 1
}
