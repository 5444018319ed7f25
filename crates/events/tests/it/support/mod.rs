//! The fixture events built in code, with fixed ids and times, plus helpers shared by the tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use events::{
    Channel, Envelope, EventPayload, NotificationFailed, NotificationSent, Priority, TaskCompleted,
    TaskCreated, TaskDeleted, TaskDueSoon, TaskSnapshot, TaskStatus, TaskUpdated, Topic,
};
use serde_json::Value;
use uuid::Uuid;

pub const TASK_ID: Uuid = Uuid::from_u128(0x0190f5b2_7c1e_7a3d_9f4e_2b6c8d0e1f23);
pub const USER_ID: Uuid = Uuid::from_u128(0x5f3c1d2e_8a4b_4c6d_9e0f_1a2b3c4d5e6f);

pub fn event_id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190f5b2_8000_7000_8000_000000000000 + n)
}

pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The text of `tests/fixtures/<topic>.json`.
pub fn fixture_text(topic: Topic) -> String {
    let path = fixtures_dir().join(format!("{topic}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixture_value(topic: Topic) -> Value {
    serde_json::from_str(&fixture_text(topic)).unwrap()
}

fn snapshot(version: u64, status: TaskStatus, updated_at: &str) -> TaskSnapshot {
    TaskSnapshot {
        task_id: TASK_ID,
        user_id: USER_ID,
        user_email: "ada@example.com".into(),
        title: "Write the quarterly report".into(),
        description: "Numbers from finance first".into(),
        priority: Priority::High,
        due_date: Some(at("2026-03-20T17:00:00Z")),
        status,
        version,
        created_at: at("2026-03-14T09:26:53.589793Z"),
        updated_at: at(updated_at),
    }
}

fn renamed(mut task: TaskSnapshot) -> TaskSnapshot {
    task.title = "Write the Q1 report".into();
    task.due_date = Some(at("2026-03-21T17:00:00Z"));
    task
}

fn envelope<T: EventPayload>(
    n: u128,
    at_time: &str,
    source: &str,
    correlation: &str,
    data: T,
) -> Envelope<T> {
    Envelope::with_id(event_id(n), at(at_time), source, correlation, data)
}

pub fn task_created() -> Envelope<TaskCreated> {
    let task = snapshot(1, TaskStatus::Open, "2026-03-14T09:26:53.589793Z");
    envelope(
        1,
        "2026-03-14T09:26:53.589793Z",
        "task-api",
        "req-7f3a9c",
        TaskCreated { task },
    )
}

pub fn task_updated() -> Envelope<TaskUpdated> {
    let task = renamed(snapshot(
        2,
        TaskStatus::InProgress,
        "2026-03-15T11:02:07.000412Z",
    ));
    let changed_fields = vec!["title".into(), "due_date".into(), "status".into()];
    envelope(
        2,
        "2026-03-15T11:02:07.000412Z",
        "task-api",
        "req-0b41d2",
        TaskUpdated {
            task,
            changed_fields,
        },
    )
}

pub fn task_completed() -> Envelope<TaskCompleted> {
    let task = renamed(snapshot(
        3,
        TaskStatus::Completed,
        "2026-03-19T16:45:00.123456Z",
    ));
    envelope(
        3,
        "2026-03-19T16:45:00.123456Z",
        "task-api",
        "req-5c9e11",
        TaskCompleted { task },
    )
}

pub fn task_deleted() -> Envelope<TaskDeleted> {
    let mut task = renamed(snapshot(
        4,
        TaskStatus::Completed,
        "2026-03-22T08:00:00.000001Z",
    ));
    task.description = String::new();
    task.due_date = None;
    envelope(
        4,
        "2026-03-22T08:00:00.000001Z",
        "task-api",
        "req-9a7f30",
        TaskDeleted { task },
    )
}

pub fn task_due_soon() -> Envelope<TaskDueSoon> {
    let data = TaskDueSoon {
        task_id: TASK_ID,
        user_id: USER_ID,
        user_email: "ada@example.com".into(),
        title: "Write the quarterly report".into(),
        due_date: at("2026-03-20T17:00:00Z"),
        task_version: 1,
    };
    envelope(
        5,
        "2026-03-20T16:00:00.25Z",
        "reminder-scheduler",
        "req-7f3a9c",
        data,
    )
    .caused_by(event_id(1))
}

pub fn notification_sent() -> Envelope<NotificationSent> {
    let data = NotificationSent {
        trigger_event_id: event_id(5),
        trigger_event_type: "task-due-soon".into(),
        task_id: TASK_ID,
        user_id: USER_ID,
        channel: Channel::Email,
        recipient: "ada@example.com".into(),
        subject: "Due soon: Write the quarterly report".into(),
        sent_at: at("2026-03-20T16:00:01.730512Z"),
    };
    envelope(
        6,
        "2026-03-20T16:00:01.731Z",
        "email-worker",
        "req-7f3a9c",
        data,
    )
    .caused_by(event_id(5))
}

pub fn notification_failed() -> Envelope<NotificationFailed> {
    let data = NotificationFailed {
        trigger_event_id: event_id(1),
        trigger_event_type: "task-created".into(),
        task_id: TASK_ID,
        user_id: USER_ID,
        channel: Channel::Email,
        recipient: "ada@example.com".into(),
        reason: "550 5.1.1 <ada@example.com>: mailbox unavailable".into(),
        failed_at: at("2026-03-14T09:27:04.998877Z"),
    };
    envelope(
        7,
        "2026-03-14T09:27:05.004Z",
        "email-worker",
        "req-7f3a9c",
        data,
    )
    .caused_by(event_id(1))
}

/// A structured CloudEvent as daprd builds it for an `application/json` publish (keys sorted,
/// as Go's encoder writes them), with the envelope under `data`.
pub fn dapr_cloud_event(topic: Topic, envelope: &Value) -> Value {
    let event_id = envelope["event_id"].clone();
    serde_json::json!({
        "data": envelope,
        "datacontenttype": "application/json",
        "id": event_id,
        "pubsubname": "todo-pubsub",
        "source": topic.producer(),
        "specversion": "1.0",
        "time": "2026-03-14T09:26:54Z",
        "topic": topic.as_str(),
        "traceid": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "",
        "type": topic.as_str(),
    })
}
