//! Email templates, so wording changes need no code change.
//!
//! Each kind of email has three files named after its topic: `<topic>.subject.txt`,
//! `<topic>.txt` (the plain-text part) and `<topic>.html` (the HTML part, which may extend
//! `base.html`). The files in `templates/` are compiled in as defaults; a file of the same name in
//! `TEMPLATE_DIR` replaces its default, so an operator can reword one email without shipping the
//! others.
//!
//! Escaping is chosen by file extension: `.html` output escapes every value (task titles and
//! descriptions are user content), `.txt` output does not. The subject is plain text that ends up
//! in a mail header, so after rendering it loses every control character (no CR/LF header
//! injection) and is cut to a maximum length.

use std::path::{Component, Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior, Value, context};
use serde::Serialize;

/// The kinds of email the worker sends; each is triggered by one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmailKind {
    TaskCreated,
    TaskDueSoon,
}

impl EmailKind {
    pub const ALL: [EmailKind; 2] = [EmailKind::TaskCreated, EmailKind::TaskDueSoon];

    /// The trigger topic; also the template file prefix and the metrics label.
    pub const fn topic(self) -> events::Topic {
        match self {
            EmailKind::TaskCreated => events::Topic::TaskCreated,
            EmailKind::TaskDueSoon => events::Topic::TaskDueSoon,
        }
    }

    pub const fn as_str(self) -> &'static str {
        self.topic().as_str()
    }
}

/// The default templates, compiled in.
const EMBEDDED: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    (
        "task-created.subject.txt",
        include_str!("../templates/task-created.subject.txt"),
    ),
    (
        "task-created.txt",
        include_str!("../templates/task-created.txt"),
    ),
    (
        "task-created.html",
        include_str!("../templates/task-created.html"),
    ),
    (
        "task-due-soon.subject.txt",
        include_str!("../templates/task-due-soon.subject.txt"),
    ),
    (
        "task-due-soon.txt",
        include_str!("../templates/task-due-soon.txt"),
    ),
    (
        "task-due-soon.html",
        include_str!("../templates/task-due-soon.html"),
    ),
];

/// The rendered parts of one email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The template set, loaded lazily (and then cached) from `TEMPLATE_DIR` or the defaults.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    subject_max_chars: usize,
}

impl Templates {
    /// Templates from `dir` where it has them, the compiled-in defaults otherwise.
    pub fn new(dir: Option<PathBuf>, subject_max_chars: usize) -> Self {
        let mut env = Environment::new();
        // A misspelt variable in an overriding template fails the start-up check instead of
        // silently rendering as empty.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_loader(move |name| load(dir.as_deref(), name));
        Self {
            env,
            subject_max_chars,
        }
    }

    /// Renders the three parts of `kind` for `ctx`.
    pub fn render<C: Serialize>(
        &self,
        kind: EmailKind,
        ctx: &C,
    ) -> Result<Rendered, minijinja::Error> {
        let base = Value::from_serialize(ctx);
        let raw_subject = self.part(&format!("{}.subject.txt", kind.as_str()), &base)?;
        let subject = sanitize_subject(&raw_subject, self.subject_max_chars);
        let ctx = context! { subject => subject.clone(), ..base };
        let text = self.part(&format!("{}.txt", kind.as_str()), &ctx)?;
        let html = self.part(&format!("{}.html", kind.as_str()), &ctx)?;
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }

    fn part(&self, name: &str, ctx: &Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }
}

fn load(dir: Option<&Path>, name: &str) -> Result<Option<String>, minijinja::Error> {
    if let Some(dir) = dir {
        // Template names come from this crate and from `{% extends %}` in trusted templates; still,
        // never let one reach outside the directory.
        let plain = Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if plain {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => return Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("cannot read template {}", path.display()),
                    )
                    .with_source(e));
                }
            }
        }
    }
    Ok(EMBEDDED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| (*text).to_owned()))
}

/// Makes a rendered subject safe for a mail header: every control character (CR, LF, TAB, NUL,
/// DEL, C1) and Unicode line/paragraph separator becomes a space, runs of whitespace collapse to
/// one space, and the result is cut to `max_chars` characters (never inside a character), ending
/// with `…` when cut.
pub fn sanitize_subject(raw: &str, max_chars: usize) -> String {
    let mut clean = String::with_capacity(raw.len());
    let mut pending_space = false;
    for c in raw.chars() {
        if c.is_control() || c.is_whitespace() || c == '\u{2028}' || c == '\u{2029}' {
            pending_space = !clean.is_empty();
            continue;
        }
        if pending_space {
            clean.push(' ');
            pending_space = false;
        }
        clean.push(c);
    }
    if clean.chars().count() <= max_chars {
        return clean;
    }
    let mut cut: String = clean.chars().take(max_chars.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> serde_json::Value {
        json!({
            "kind": "task-created", "task_id": "t-1", "title": "Buy <b>milk</b> & eggs",
            "description": "<script>alert(1)</script>", "priority": "high",
            "due_date": "Sat, 28 Nov 2026 09:00 UTC", "due_date_iso": "2026-11-28T09:00:00Z",
            "due_in": "2 hours", "recipient": "a@example.com",
        })
    }

    #[test]
    fn html_escapes_user_content_and_text_does_not() {
        let t = Templates::new(None, 150);
        let r = t.render(EmailKind::TaskCreated, &sample()).unwrap();
        assert!(
            r.html
                .contains("Buy &lt;b&gt;milk&lt;&#x2f;b&gt; &amp; eggs"),
            "{}",
            r.html
        );
        assert!(r.html.contains("&lt;script&gt;"), "{}", r.html);
        assert!(!r.html.contains("<script>"));
        assert!(r.text.contains("Buy <b>milk</b> & eggs"));
        assert!(r.text.contains("<script>alert(1)</script>"));
        assert_eq!(r.subject, "New task: Buy <b>milk</b> & eggs");
    }

    #[test]
    fn every_kind_renders_with_defaults() {
        let t = Templates::new(None, 150);
        for kind in EmailKind::ALL {
            let r = t.render(kind, &sample()).unwrap();
            assert!(r.text.contains("Task id: t-1"), "{kind:?}: {}", r.text);
            assert!(r.html.contains("<!DOCTYPE html>"), "{kind:?}");
            assert!(!r.subject.is_empty());
        }
    }

    #[test]
    fn a_template_dir_overrides_one_file_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("task-due-soon.subject.txt"),
            "Reminder — {{ title }} is due {{ due_date }}",
        )
        .unwrap();
        let t = Templates::new(Some(dir.path().to_owned()), 150);
        let r = t.render(EmailKind::TaskDueSoon, &sample()).unwrap();
        assert_eq!(
            r.subject,
            "Reminder — Buy <b>milk</b> & eggs is due Sat, 28 Nov 2026 09:00 UTC"
        );
        assert!(r.text.contains("about to fall due"));
    }

    #[test]
    fn an_unknown_variable_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("task-created.txt"), "{{ titel }}").unwrap();
        let t = Templates::new(Some(dir.path().to_owned()), 150);
        assert!(t.render(EmailKind::TaskCreated, &sample()).is_err());
    }

    #[test]
    fn path_traversal_names_fall_back_to_defaults() {
        assert!(
            load(Some(Path::new("/")), "../etc/passwd")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn subject_loses_control_characters() {
        let s = sanitize_subject("Hi\r\nBcc: someone@example.com\u{0}\t\u{85}x\u{2028}y", 150);
        assert_eq!(s, "Hi Bcc: someone@example.com x y");
        assert!(!s.chars().any(char::is_control));
    }

    #[test]
    fn subject_is_cut_on_a_char_boundary() {
        let long = "é".repeat(400);
        let s = sanitize_subject(&long, 150);
        assert_eq!(s.chars().count(), 150);
        assert!(s.ends_with('…'));
        assert_eq!(sanitize_subject("  short  ", 150), "short");
    }
}
