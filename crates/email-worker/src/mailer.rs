//! The one active mail transport: SMTP (pooled, with timeouts; see [`crate::smtp_pool`] for why
//! plain and STARTTLS sessions use our own pool) or a folder of `.eml` files for local runs.
//! Send failures are classified here, once: an SMTP 5xx reply is permanent (the same message
//! will be refused again); everything else (4xx, refused connection, timeout, TLS or I/O trouble)
//! is transient and worth a retry.

use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use tracing::Instrument as _;

use crate::Error;
pub use crate::error::SendError;
use crate::settings::{Settings, TransportChoice};
use crate::smtp_pool::{SmtpPool, SmtpTarget};

#[derive(Debug)]
enum Transport {
    /// `smtp://`: sessions on sockets without Nagle's delay.
    Pooled(Box<SmtpPool>),
    /// `smtps://`: lettre's own pooled transport (implicit TLS).
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(AsyncFileTransport<Tokio1Executor>),
}

impl Transport {
    /// The transport's kind, for the send span.
    fn kind(&self) -> &'static str {
        match self {
            Self::Pooled(_) => "smtp",
            Self::Smtp(_) => "smtps",
            Self::File(_) => "file",
        }
    }
}

/// Sends composed messages.
#[derive(Debug)]
pub struct Mailer {
    transport: Transport,
    description: String,
}

impl Mailer {
    /// Builds the transport the settings select (inside a Tokio runtime: the SMTP pool spawns its
    /// reaper task). Nothing secret ends up in
    /// [`Mailer::description`].
    pub fn from_settings(s: &Settings) -> Result<Self, Error> {
        match s.transport()? {
            TransportChoice::File { dir } => {
                std::fs::create_dir_all(&dir).map_err(|e| Error::Settings {
                    name: "MAIL_DIR",
                    reason: format!("cannot create {}: {e}", dir.display()),
                })?;
                Ok(Self {
                    description: format!(
                        "file transport, one .eml per message in {}",
                        dir.display()
                    ),
                    transport: Transport::File(AsyncFileTransport::new(dir)),
                })
            }
            TransportChoice::Smtp {
                url,
                username,
                password,
            } => {
                let redacted = redact_url(url.expose_secret());
                let unusable = |reason: String| Error::Settings {
                    name: "SMTP_URL",
                    reason: format!("`{redacted}` is not a usable SMTP URL: {reason}"),
                };
                if let Some(mut target) =
                    SmtpTarget::from_url(url.expose_secret()).map_err(unusable)?
                {
                    if let (Some(user), Some(password)) = (username.clone(), password.clone()) {
                        target.credentials =
                            Some(Credentials::new(user, password.expose_secret().to_owned()));
                    }
                    target.allow_plaintext_auth = s.smtp_allow_plaintext_auth;
                    target
                        .check_auth_security()
                        .map_err(|reason| Error::Settings {
                            name: "SMTP_URL",
                            reason: format!("`{redacted}`: {reason}"),
                        })?;
                    return Ok(Self {
                        description: format!("SMTP transport to {redacted}"),
                        transport: Transport::Pooled(Box::new(SmtpPool::new(
                            target,
                            s.max_concurrent_sends,
                            s.smtp_timeout,
                        ))),
                    });
                }
                let mut builder =
                    AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                        .map_err(|e| Error::Settings {
                            name: "SMTP_URL",
                            reason: format!("`{redacted}` is not a usable SMTP URL: {e}"),
                        })?
                        .timeout(Some(s.smtp_timeout))
                        .pool_config(
                            PoolConfig::new().max_size(
                                u32::try_from(s.max_concurrent_sends).unwrap_or(u32::MAX),
                            ),
                        );
                if let (Some(user), Some(password)) = (username, password) {
                    builder = builder
                        .credentials(Credentials::new(user, password.expose_secret().to_owned()));
                }
                Ok(Self {
                    description: format!("SMTP transport to {redacted}"),
                    transport: Transport::Smtp(builder.build()),
                })
            }
        }
    }

    /// Which transport is active and where it sends (password redacted).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Sends one message; returns the transport's id or reply for the log. When traces are
    /// exported the send is a client span of its own, failed when the send fails.
    pub async fn send(&self, message: &Message) -> Result<String, SendError> {
        let span = dapr_http::spans::traced(None, || {
            tracing::info_span!(
                "smtp",
                otel.name = "smtp send",
                otel.kind = "client",
                mail.transport = self.transport.kind(),
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            )
        });
        let Some(span) = span else {
            return self.transmit(message).await;
        };
        let sent = self.transmit(message).instrument(span.clone()).await;
        if let Err(SendError::Transient(reason) | SendError::Permanent(reason)) = &sent {
            dapr_http::spans::fail(&span, reason);
        }
        sent
    }

    async fn transmit(&self, message: &Message) -> Result<String, SendError> {
        match &self.transport {
            Transport::Pooled(pool) => pool
                .send(message.envelope(), &message.formatted())
                .await
                .map(|reply| reply.message().collect::<Vec<_>>().join(" ")),
            Transport::Smtp(smtp) => smtp
                .send(message.clone())
                .await
                .map(|reply| reply.message().collect::<Vec<_>>().join(" "))
                .map_err(|e| {
                    if e.is_permanent() {
                        SendError::Permanent(e.to_string())
                    } else {
                        SendError::Transient(e.to_string())
                    }
                }),
            // A full disk or a missing folder may be fixed; retry.
            Transport::File(file) => file
                .send(message.clone())
                .await
                .map_err(|e| SendError::Transient(e.to_string())),
        }
    }
}

/// The URL with any password replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable URL>".to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use service_kit::LayeredSettings as _;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("smtp://mail:25"), "smtp://mail:25");
        assert_eq!(
            redact_url("smtps://bot:p%40ss@mail.example:465?tls=required"),
            "smtps://bot:***@mail.example:465?tls=required"
        );
        assert_eq!(redact_url("smtp://bot@mail"), "smtp://bot:***@mail");
        assert_eq!(redact_url("garbage"), "<unparsable URL>");
    }

    #[tokio::test]
    async fn the_description_never_shows_the_password() {
        let mut s = Settings::load_from(std::iter::empty()).unwrap();
        s.smtp_url = Some(SecretString::from("smtp://bot:hunter2@127.0.0.1:2525"));
        s.smtp_allow_plaintext_auth = true;
        let m = Mailer::from_settings(&s).unwrap();
        assert!(
            m.description()
                .starts_with("SMTP transport to smtp://bot:***@127.0.0.1:2525")
        );
        assert!(!format!("{m:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn a_bad_url_names_the_setting_without_the_password() {
        let mut s = Settings::load_from(std::iter::empty()).unwrap();
        s.smtp_url = Some(SecretString::from("ftp://bot:hunter2@host"));
        let err = Mailer::from_settings(&s).unwrap_err().to_string();
        assert!(
            err.contains("SMTP_URL") && !err.contains("hunter2"),
            "{err}"
        );
    }

    fn smtp(url: &str, allow_plaintext_auth: bool) -> Result<Mailer, Error> {
        let mut s = Settings::load_from(std::iter::empty()).unwrap();
        s.smtp_url = Some(SecretString::from(url.to_owned()));
        s.smtp_allow_plaintext_auth = allow_plaintext_auth;
        Mailer::from_settings(&s)
    }

    #[tokio::test]
    async fn credentials_without_tls_are_refused_at_start() {
        let err = smtp("smtp://bot:hunter2@mail.example:25", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SMTP_URL")
                && err.contains("without TLS")
                && err.contains("SMTP_ALLOW_PLAINTEXT_AUTH")
                && !err.contains("hunter2"),
            "{err}"
        );
        // Also on loopback, until it is explicitly allowed.
        assert!(smtp("smtp://bot:hunter2@127.0.0.1:2525", false).is_err());
        // Without credentials, or with TLS, there is nothing to protect or nothing in clear.
        assert!(smtp("smtp://mail.example:25", false).is_ok());
        assert!(smtp("smtp://bot:hunter2@mail.example?tls=required", false).is_ok());
    }

    #[tokio::test]
    async fn plaintext_auth_is_allowed_for_loopback_relays_only() {
        for host in ["127.0.0.1:2525", "[::1]:2525", "localhost:2525"] {
            let url = format!("smtp://bot:hunter2@{host}");
            assert!(smtp(&url, true).is_ok(), "{url}");
        }
        let err = smtp("smtp://bot:hunter2@mail.example:25", true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SMTP_ALLOW_PLAINTEXT_AUTH=true is accepted only for a loopback relay")
                && err.contains("mail.example")
                && !err.contains("hunter2"),
            "{err}"
        );
    }
}
