//! Golden fixtures pin the wire format: each fixture must deserialise into the typed envelope
//! built in code, and that value must serialise to the fixture (compared as parsed JSON), so a
//! renamed, retyped, added or removed field breaks here first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeSet;
use std::fmt::Debug;

use events::{Envelope, EventPayload, Topic};
use serde_json::Value;
use support::*;

fn check_fixture<T: EventPayload + PartialEq + Debug>(expected: Envelope<T>) {
    let topic = T::TOPIC;
    let text = fixture_text(topic);

    let read: Envelope<T> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{topic}.json does not deserialise: {e}"));
    assert_eq!(read, expected, "{topic}.json read back differently");

    let written = serde_json::to_value(&expected).unwrap();
    let golden: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        written, golden,
        "{topic}: the writer no longer produces the fixture"
    );

    assert_eq!(golden["event_type"], topic.as_str());
    assert_eq!(golden["schema_version"], T::SCHEMA_VERSION);
}

#[test]
fn task_created_fixture() {
    check_fixture(task_created());
}

#[test]
fn task_updated_fixture() {
    check_fixture(task_updated());
}

#[test]
fn task_completed_fixture() {
    check_fixture(task_completed());
}

#[test]
fn task_deleted_fixture() {
    check_fixture(task_deleted());
}

#[test]
fn task_due_soon_fixture() {
    check_fixture(task_due_soon());
}

#[test]
fn notification_sent_fixture() {
    check_fixture(notification_sent());
}

#[test]
fn notification_failed_fixture() {
    check_fixture(notification_failed());
}

#[test]
fn there_is_exactly_one_fixture_per_topic() {
    let files: BTreeSet<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = Topic::ALL.iter().map(|t| format!("{t}.json")).collect();
    assert_eq!(files, expected);
}

#[test]
fn timestamps_are_written_with_exactly_six_fractional_digits() {
    let written = serde_json::to_value(task_due_soon()).unwrap();
    assert_eq!(written["timestamp"], "2026-03-20T16:00:00.250000Z");
    assert_eq!(written["data"]["due_date"], "2026-03-20T17:00:00.000000Z");
}

#[test]
fn partition_key_is_the_task_id() {
    let task = TASK_ID.to_string();
    assert_eq!(task_created().partition_key(), Some(task.clone()));
    assert_eq!(task_due_soon().partition_key(), Some(task.clone()));
    assert_eq!(notification_failed().partition_key(), Some(task));
}
