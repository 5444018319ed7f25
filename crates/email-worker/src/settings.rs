//! Settings: built-in defaults < optional `CONFIG_FILE` < environment (see the crate README for
//! the table). The keys every service shares (listen address, app id, components, tokens, body
//! limit, the sidecar's address) are `service_kit::CommonSettings`, flattened in.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use secrecy::SecretString;
use serde::Deserialize;
use service_kit::{CommonSettings, LayeredSettings, ServiceSettings};

use crate::Error;

/// The defaults, in TOML; every key can be overridden by the upper-case environment variable.
/// The body limit is daprd's own default (4 MiB), so no delivery daprd accepts is refused here.
pub const DEFAULTS_TOML: &str = r#"
app_port = 8081
app_id = "email-worker"
max_body_size = 4194304
mail_from = "Tasks <no-reply@localhost>"
smtp_timeout = "10s"
max_concurrent_sends = 16
claim_ttl = "1m"
sent_ttl = "14days"
max_event_age = "6h"
subject_max_chars = 150
smtp_allow_plaintext_auth = false
"#;

/// Where `MAIL_DIR` points when neither it nor `SMTP_URL` is set.
pub const DEFAULT_MAIL_DIR: &str = "./.local/mail";

/// Everything the service reads from its configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Listen address, app id (consumer group, state key prefix, `source` of announcements),
    /// components, tokens, body limit and the sidecar's address.
    #[serde(flatten)]
    pub common: CommonSettings,
    /// The sender, `Name <address>` or a bare address.
    pub mail_from: String,
    /// lettre connection URL: `smtp://host:port`, `smtp://host?tls=required`, `smtps://host`,
    /// optionally with `user:password@`.
    #[serde(default)]
    pub smtp_url: Option<SecretString>,
    #[serde(default)]
    pub smtp_username: Option<String>,
    #[serde(default)]
    pub smtp_password: Option<SecretString>,
    /// A mounted secret file holding the SMTP password (trailing newline ignored).
    #[serde(default)]
    pub smtp_password_file: Option<PathBuf>,
    /// `SMTP_ALLOW_PLAINTEXT_AUTH`: send SMTP credentials on a session without TLS. Accepted for
    /// loopback relays only (local development), where the credentials never leave the machine.
    pub smtp_allow_plaintext_auth: bool,
    /// Per-operation SMTP timeout (connect, each command).
    #[serde(with = "humantime_serde")]
    pub smtp_timeout: Duration,
    /// Folder for the file transport (one `.eml` per message); used when `SMTP_URL` is unset.
    #[serde(default)]
    pub mail_dir: Option<PathBuf>,
    /// Folder whose templates override the compiled-in ones, file by file.
    #[serde(default)]
    pub template_dir: Option<PathBuf>,
    /// At most this many emails in flight at once (also the SMTP connection pool size).
    pub max_concurrent_sends: usize,
    /// How long an in-flight claim on an event blocks other attempts (crash recovery time).
    #[serde(with = "humantime_serde")]
    pub claim_ttl: Duration,
    /// How long a "sent" mark is kept to recognise redeliveries.
    #[serde(with = "humantime_serde")]
    pub sent_ttl: Duration,
    /// A trigger older than this (by its envelope timestamp) is acknowledged without an email:
    /// a first deployment replays the topics' retained history.
    #[serde(with = "humantime_serde")]
    pub max_event_age: Duration,
    pub subject_max_chars: usize,
}

/// Which transport the settings select.
#[derive(Debug, Clone)]
pub enum TransportChoice {
    Smtp {
        url: SecretString,
        username: Option<String>,
        password: Option<SecretString>,
    },
    File {
        dir: PathBuf,
    },
}

impl Settings {
    /// The sender mailbox.
    pub fn sender(&self) -> Result<Mailbox, Error> {
        self.mail_from.parse().map_err(|e| Error::Settings {
            name: "MAIL_FROM",
            reason: format!("`{}` is not a mailbox: {e}", self.mail_from),
        })
    }

    /// Checks the settings and decides the transport: SMTP when `SMTP_URL` is set, else files.
    pub fn transport(&self) -> Result<TransportChoice, Error> {
        use secrecy::ExposeSecret;
        let set = |s: &Option<SecretString>| {
            s.as_ref()
                .filter(|v| !v.expose_secret().trim().is_empty())
                .cloned()
        };
        let url = set(&self.smtp_url);
        let username = self.smtp_username.clone().filter(|u| !u.is_empty());
        let inline = set(&self.smtp_password);
        let file = self
            .smtp_password_file
            .clone()
            .filter(|p| !p.as_os_str().is_empty());
        let Some(url) = url else {
            if username.is_some() || inline.is_some() || file.is_some() {
                return Err(invalid(
                    "SMTP_URL",
                    "SMTP credentials are set but SMTP_URL is not",
                ));
            }
            let dir = self
                .mail_dir
                .clone()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_MAIL_DIR));
            return Ok(TransportChoice::File { dir });
        };
        if self
            .mail_dir
            .as_ref()
            .is_some_and(|p| !p.as_os_str().is_empty())
        {
            return Err(invalid(
                "MAIL_DIR",
                "set either SMTP_URL or MAIL_DIR, not both: exactly one transport is active",
            ));
        }
        let password = match (inline, file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "SMTP_PASSWORD_FILE",
                    "set SMTP_PASSWORD or SMTP_PASSWORD_FILE, not both",
                ));
            }
            (Some(p), None) => Some(p),
            (None, Some(path)) => Some(read_password_file(&path)?),
            (None, None) => None,
        };
        if username.is_some() != password.is_some() {
            return Err(invalid(
                "SMTP_USERNAME",
                "SMTP_USERNAME needs SMTP_PASSWORD or SMTP_PASSWORD_FILE, and the other way round",
            ));
        }
        Ok(TransportChoice::Smtp {
            url,
            username,
            password,
        })
    }
}

impl ServiceSettings for Settings {
    fn common(&self) -> &CommonSettings {
        &self.common
    }

    fn common_mut(&mut self) -> &mut CommonSettings {
        &mut self.common
    }
}

impl LayeredSettings for Settings {
    const DEFAULTS_TOML: &'static str = DEFAULTS_TOML;
    type Error = Error;

    /// Checks the values that have no type of their own.
    fn validate(&self) -> Result<(), Error> {
        self.sender()?;
        self.transport()?;
        if self.max_concurrent_sends == 0 {
            return Err(invalid("MAX_CONCURRENT_SENDS", "must be at least 1"));
        }
        if self.subject_max_chars < 10 {
            return Err(invalid("SUBJECT_MAX_CHARS", "must be at least 10"));
        }
        if self.max_event_age.is_zero() {
            return Err(invalid("MAX_EVENT_AGE", "must be longer than zero"));
        }
        if self.claim_ttl < Duration::from_secs(1) || self.sent_ttl <= self.claim_ttl {
            return Err(invalid(
                "SENT_TTL",
                "CLAIM_TTL must be at least 1s and SENT_TTL longer than CLAIM_TTL",
            ));
        }
        Ok(())
    }
}

fn read_password_file(path: &std::path::Path) -> Result<SecretString, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Settings {
        name: "SMTP_PASSWORD_FILE",
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    Ok(SecretString::from(text.trim_end_matches(['\r', '\n'])))
}

fn invalid(name: &'static str, reason: &str) -> Error {
    Error::Settings {
        name,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, Error> {
        Settings::load_from(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_select_the_file_transport() {
        let s = load(&[]).unwrap();
        assert_eq!(s.common.app_port, 8081);
        assert_eq!(s.common.max_body_size, 4 * 1024 * 1024);
        assert_eq!(s.max_concurrent_sends, 16);
        assert_eq!(s.sent_ttl, Duration::from_secs(14 * 86_400));
        assert_eq!(s.max_event_age, Duration::from_secs(6 * 3600));
        match s.transport().unwrap() {
            TransportChoice::File { dir } => assert_eq!(dir, PathBuf::from(DEFAULT_MAIL_DIR)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn smtp_url_selects_smtp_with_credentials_from_env_or_file() {
        let s = load(&[("SMTP_URL", "smtp://mail:2525"), ("SMTP_TIMEOUT", "3s")]).unwrap();
        assert_eq!(s.smtp_timeout, Duration::from_secs(3));
        assert!(matches!(
            s.transport().unwrap(),
            TransportChoice::Smtp {
                username: None,
                password: None,
                ..
            }
        ));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let path = file.to_string_lossy().to_string();
        let s = load(&[
            ("SMTP_URL", "smtp://mail:2525"),
            ("SMTP_USERNAME", "bot"),
            ("SMTP_PASSWORD_FILE", &path),
        ])
        .unwrap();
        match s.transport().unwrap() {
            TransportChoice::Smtp {
                username, password, ..
            } => {
                assert_eq!(username.as_deref(), Some("bot"));
                assert_eq!(password.unwrap().expose_secret(), "s3cret");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn contradictions_are_refused_with_the_variable_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("SMTP_URL", "smtp://m"), ("MAIL_DIR", "/tmp/x")],
                "MAIL_DIR",
            ),
            (&[("SMTP_PASSWORD", "x")], "SMTP_URL"),
            (
                &[("SMTP_URL", "smtp://m"), ("SMTP_USERNAME", "u")],
                "SMTP_USERNAME",
            ),
            (
                &[
                    ("SMTP_URL", "smtp://m"),
                    ("SMTP_PASSWORD", "p"),
                    ("SMTP_PASSWORD_FILE", "/x"),
                ],
                "SMTP_PASSWORD_FILE",
            ),
            (&[("MAIL_FROM", "not a mailbox")], "MAIL_FROM"),
            (&[("MAX_CONCURRENT_SENDS", "0")], "MAX_CONCURRENT_SENDS"),
            (&[("MAX_EVENT_AGE", "0s")], "MAX_EVENT_AGE"),
        ];
        for (env, var) in cases {
            let err = load(env).unwrap_err().to_string();
            assert!(err.contains(var), "{env:?}: {err}");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let s = load(&[
            ("SMTP_URL", "smtp://u:hunter2@m"),
            ("SMTP_PASSWORD", "hunter3"),
            ("SMTP_USERNAME", "u"),
        ])
        .unwrap();
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("hunter3"),
            "{debug}"
        );
    }
}
