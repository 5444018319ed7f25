//! From a trigger event to a ready-to-send email: who gets it, what the templates see, and the
//! multipart (text + HTML) message itself.

use chrono::{DateTime, Utc};
use events::{Envelope, TaskCreated, TaskDueSoon};
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};
use serde::Serialize;
use uuid::Uuid;

use crate::templates::{EmailKind, Templates};

/// What every template can use. Dates are pre-formatted so templates stay simple.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EmailContext {
    pub kind: &'static str,
    pub task_id: String,
    pub title: String,
    pub description: String,
    pub priority: Option<&'static str>,
    /// e.g. `Sat, 28 Nov 2026 09:00 UTC`.
    pub due_date: Option<String>,
    /// RFC 3339.
    pub due_date_iso: Option<String>,
    /// How long after the event the task falls due, e.g. `2 hours 5 minutes`.
    pub due_in: Option<String>,
    pub recipient: String,
}

/// One email to send, taken from a trigger event.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub kind: EmailKind,
    pub trigger_event_id: Uuid,
    pub correlation_id: String,
    pub task_id: Uuid,
    pub user_id: Uuid,
    /// As the event gave it; validated by [`Composer::compose`].
    pub recipient: String,
    pub context: EmailContext,
}

impl Notification {
    pub fn task_created(event: &Envelope<TaskCreated>) -> Self {
        let task = &event.data.task;
        Self {
            kind: EmailKind::TaskCreated,
            trigger_event_id: event.event_id,
            correlation_id: event.correlation_id.clone(),
            task_id: task.task_id,
            user_id: task.user_id,
            recipient: task.user_email.clone(),
            context: EmailContext {
                kind: EmailKind::TaskCreated.as_str(),
                task_id: task.task_id.to_string(),
                title: task.title.clone(),
                description: task.description.clone(),
                priority: Some(task.priority.as_str()),
                due_date: task.due_date.map(human_date),
                due_date_iso: task.due_date.map(|d| d.to_rfc3339()),
                due_in: task.due_date.and_then(|d| due_in(event.timestamp, d)),
                recipient: task.user_email.clone(),
            },
        }
    }

    pub fn task_due_soon(event: &Envelope<TaskDueSoon>) -> Self {
        let due = &event.data;
        Self {
            kind: EmailKind::TaskDueSoon,
            trigger_event_id: event.event_id,
            correlation_id: event.correlation_id.clone(),
            task_id: due.task_id,
            user_id: due.user_id,
            recipient: due.user_email.clone(),
            context: EmailContext {
                kind: EmailKind::TaskDueSoon.as_str(),
                task_id: due.task_id.to_string(),
                title: due.title.clone(),
                description: String::new(),
                priority: None,
                due_date: Some(human_date(due.due_date)),
                due_date_iso: Some(due.due_date.to_rfc3339()),
                due_in: due_in(event.timestamp, due.due_date),
                recipient: due.user_email.clone(),
            },
        }
    }
}

fn human_date(d: DateTime<Utc>) -> String {
    d.format("%a, %d %b %Y %H:%M UTC").to_string()
}

/// The time from `now` to `due` in words (largest two units), or `None` if it is already due.
fn due_in(now: DateTime<Utc>, due: DateTime<Utc>) -> Option<String> {
    let minutes = (due - now).num_minutes();
    if minutes < 1 {
        return None;
    }
    let units = [(24 * 60, "day"), (60, "hour"), (1, "minute")];
    let mut left = minutes;
    let mut words = Vec::new();
    for (size, name) in units {
        let n = left / size;
        left %= size;
        if n > 0 && words.len() < 2 {
            words.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
        }
    }
    Some(words.join(" "))
}

/// A composed email.
#[derive(Debug, Clone)]
pub struct Email {
    pub recipient: Address,
    pub subject: String,
    pub message: Message,
}

/// The email cannot be composed.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The event's address is not a plain `user@domain` address; the same event can never succeed.
    #[error("invalid recipient address `{address}`: {reason}")]
    InvalidRecipient { address: String, reason: String },
    /// A template failed to render (usually an overriding template with an error: fixable
    /// without losing the event, so it is retried).
    #[error("template error: {0}")]
    Template(#[from] minijinja::Error),
    #[error("the message cannot be built: {0}")]
    Message(#[from] lettre::error::Error),
}

/// Builds emails from notifications.
#[derive(Debug)]
pub struct Composer {
    templates: Templates,
    from: Mailbox,
}

impl Composer {
    pub fn new(templates: Templates, from: Mailbox) -> Self {
        Self { templates, from }
    }

    pub fn compose(&self, n: &Notification) -> Result<Email, ComposeError> {
        // Only a bare address is accepted (no display name, no list, no header text), so the
        // event cannot add recipients or headers.
        let recipient: Address =
            n.recipient
                .trim()
                .parse()
                .map_err(
                    |e: lettre::address::AddressError| ComposeError::InvalidRecipient {
                        address: n.recipient.clone(),
                        reason: e.to_string(),
                    },
                )?;
        let rendered = self.templates.render(n.kind, &n.context)?;
        // The same Message-ID for every attempt of one trigger, so that even a duplicate from the
        // crash window (see `process`) threads as one message in most mail clients.
        let message_id = format!(
            "<{}.{}@{}>",
            n.trigger_event_id,
            n.kind.as_str(),
            self.from.email.domain()
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, recipient.clone()))
            .subject(rendered.subject.clone())
            .message_id(Some(message_id))
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ))?;
        Ok(Email {
            recipient,
            subject: rendered.subject,
            message,
        })
    }

    /// Renders every kind once with sample data, so a broken overriding template stops the
    /// service at start-up instead of failing every event.
    pub fn check_templates(&self) -> Result<(), ComposeError> {
        let now = Utc::now();
        let sample = EmailContext {
            kind: "sample",
            task_id: Uuid::nil().to_string(),
            title: "Sample task".into(),
            description: "Sample description".into(),
            priority: Some("medium"),
            due_date: Some(human_date(now)),
            due_date_iso: Some(now.to_rfc3339()),
            due_in: Some("1 hour".into()),
            recipient: "someone@example.com".into(),
        };
        for kind in EmailKind::ALL {
            self.templates.render(kind, &sample)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use events::{Priority, TaskSnapshot, TaskStatus};

    fn created(email: &str, title: &str) -> Envelope<TaskCreated> {
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
        Envelope::new(
            "task-api",
            "corr-1",
            TaskCreated {
                task: TaskSnapshot {
                    task_id: Uuid::now_v7(),
                    user_id: Uuid::now_v7(),
                    user_email: email.into(),
                    title: title.into(),
                    description: "desc".into(),
                    priority: Priority::High,
                    due_date: Some(now + chrono::Duration::minutes(26 * 60 + 5)),
                    status: TaskStatus::Open,
                    version: 1,
                    created_at: now,
                    updated_at: now,
                },
            },
        )
    }

    fn composer() -> Composer {
        Composer::new(
            Templates::new(None, 150),
            "Tasks <no-reply@tasks.example>".parse().unwrap(),
        )
    }

    #[test]
    fn composes_a_multipart_message_to_the_task_owner() {
        let n = Notification::task_created(&created("ann@example.com", "Pay rent"));
        let email = composer().compose(&n).unwrap();
        assert_eq!(email.recipient.to_string(), "ann@example.com");
        assert_eq!(email.subject, "New task: Pay rent");
        let raw = String::from_utf8(email.message.formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        assert!(raw.contains(&format!(
            "Message-ID: <{}.task-created@tasks.example>",
            n.trigger_event_id
        )));
        assert_eq!(
            email
                .message
                .envelope()
                .to()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["ann@example.com"]
        );
    }

    #[test]
    fn a_header_injection_in_the_title_adds_nothing() {
        let n = Notification::task_created(&created(
            "ann@example.com",
            "Hi\r\nBcc: someone@example.com",
        ));
        let email = composer().compose(&n).unwrap();
        let raw = String::from_utf8(email.message.formatted()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(
            !headers
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc")),
            "{headers}"
        );
        assert_eq!(email.message.envelope().to().len(), 1);
    }

    #[test]
    fn invalid_recipients_are_rejected() {
        for bad in [
            "",
            "not-an-address",
            "a@b.com\r\nBcc: x@y.com",
            "a@b.com, c@d.com",
            "Ann <a@b.com>",
        ] {
            let n = Notification::task_created(&created(bad, "x"));
            assert!(
                matches!(
                    composer().compose(&n),
                    Err(ComposeError::InvalidRecipient { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn due_in_words() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let m = |n| t + chrono::Duration::minutes(n);
        assert_eq!(due_in(t, m(0)), None);
        assert_eq!(due_in(t, m(1)).as_deref(), Some("1 minute"));
        assert_eq!(due_in(t, m(125)).as_deref(), Some("2 hours 5 minutes"));
        assert_eq!(due_in(t, m(26 * 60 + 5)).as_deref(), Some("1 day 2 hours"));
        let n = Notification::task_created(&created("a@b.com", "x"));
        assert_eq!(n.context.priority, Some("high"));
    }

    #[test]
    fn default_templates_pass_the_check() {
        composer().check_templates().unwrap();
    }
}
