//! The emails email-worker wrote in this run: the `.eml` files of its file transport's folder,
//! parsed with `mail-parser` (headers with RFC 2047 words decoded, text and HTML parts whatever
//! their transfer encoding). Only plain file names of that folder are ever opened.

use serde::Serialize;
use std::path::{Path, PathBuf};

/// An email in the list.
#[derive(Debug, Clone, Serialize)]
pub struct EmailSummary {
    pub id: String,
    pub to: String,
    pub from: String,
    pub subject: String,
    pub date: Option<String>,
    pub size: u64,
}

/// One email.
#[derive(Debug, Clone, Serialize)]
pub struct EmailJson {
    pub id: String,
    pub headers: Vec<(String, String)>,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// Why an email cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("no email folder in this run (email-worker's MAIL_DIR)")]
    NoFolder,
    #[error("{0:?} is not an email id (a file name ending in .eml)")]
    BadId(String),
    #[error("no email {0:?}")]
    NotFound(String),
    #[error("email {0:?} is larger than the console's limit of {1} bytes")]
    TooLarge(String, u64),
    #[error("email {0:?} is not a parseable message")]
    Unparseable(String),
    #[error("cannot read the email folder: {0}")]
    Io(#[from] std::io::Error),
}

/// Newest first (by modification time), at most `limit`.
pub fn list(dir: &Path, limit: usize, max_bytes: u64) -> Result<Vec<EmailSummary>, EmailError> {
    let mut files: Vec<(std::time::SystemTime, PathBuf, u64)> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // The folder appears with the first email.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        files.push((modified, path, meta.len()));
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut out = Vec::new();
    for (_, path, size) in files.into_iter().take(limit) {
        let Some(id) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let summary = if size > max_bytes {
            None
        } else {
            std::fs::read(&path).ok().and_then(|bytes| {
                let message = mail_parser::MessageParser::default().parse_headers(&bytes)?;
                Some(EmailSummary {
                    id: id.clone(),
                    to: addresses(message.to()),
                    from: addresses(message.from()),
                    subject: message.subject().unwrap_or_default().to_owned(),
                    date: message.date().map(|d| d.to_rfc3339()),
                    size,
                })
            })
        };
        out.push(summary.unwrap_or(EmailSummary {
            id,
            to: String::new(),
            from: String::new(),
            subject: String::new(),
            date: None,
            size,
        }));
    }
    Ok(out)
}

/// One email by id (its file name).
pub fn get(dir: &Path, id: &str, max_bytes: u64) -> Result<EmailJson, EmailError> {
    let plain = !id.is_empty()
        && id.ends_with(".eml")
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !plain {
        return Err(EmailError::BadId(id.to_owned()));
    }
    let path = dir.join(id);
    let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => EmailError::NotFound(id.to_owned()),
        _ => EmailError::Io(e),
    })?;
    if meta.len() > max_bytes {
        return Err(EmailError::TooLarge(id.to_owned(), max_bytes));
    }
    let bytes = std::fs::read(&path)?;
    let message = mail_parser::MessageParser::default()
        .parse(&bytes)
        .ok_or_else(|| EmailError::Unparseable(id.to_owned()))?;
    let headers = message
        .headers_raw()
        .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
        .collect();
    Ok(EmailJson {
        id: id.to_owned(),
        headers,
        text: message.body_text(0).map(|t| t.into_owned()),
        html: message.body_html(0).map(|h| h.into_owned()),
    })
}

fn addresses(address: Option<&mail_parser::Address<'_>>) -> String {
    let Some(address) = address else {
        return String::new();
    };
    address
        .iter()
        .map(|a| match (a.name(), a.address()) {
            (Some(name), Some(addr)) => format!("{name} <{addr}>"),
            (None, Some(addr)) => addr.to_owned(),
            (Some(name), None) => name.to_owned(),
            (None, None) => String::new(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const EML: &str = "From: Tasks <tasks@localhost>\r\nTo: ada@example.com\r\nSubject: =?utf-8?q?New_task_=3Cimg=3E?=\r\nDate: Mon, 7 Dec 2026 04:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello <img src=x onerror=alert(1)>\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello</p>\r\n--b--\r\n";

    #[test]
    fn emails_are_listed_and_parsed_and_only_plain_names_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a1.eml"), EML).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let list = list(dir.path(), 10, 1 << 20).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].subject, "New task <img>");
        assert_eq!(list[0].to, "ada@example.com");
        let email = get(dir.path(), "a1.eml", 1 << 20).unwrap();
        assert!(email.text.unwrap().contains("<img src=x onerror=alert(1)>"));
        assert_eq!(email.html.unwrap().trim(), "<p>Hello</p>");
        assert!(email.headers.iter().any(|(n, _)| n == "Subject"));
        assert!(matches!(
            get(dir.path(), "../a1.eml", 1 << 20),
            Err(EmailError::BadId(_))
        ));
        assert!(matches!(
            get(dir.path(), "zz.eml", 1 << 20),
            Err(EmailError::NotFound(_))
        ));
    }
}
