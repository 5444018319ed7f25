//! Pooled SMTP connections whose sockets send without delay (`TCP_NODELAY`).
//!
//! Why not lettre's own pooled transport: lettre 0.11 opens its sockets with Nagle's algorithm
//! on and writes a message's body and its end-of-data terminator (`CRLF . CRLF`) in two writes.
//! Nagle holds the 5-byte terminator until the relay acknowledges the body, and relays delay that
//! ACK (40 ms on Linux), so each message waits ~40 ms for nothing and one connection tops out
//! near 22 messages/s. Here lettre still speaks SMTP (EHLO, STARTTLS, AUTH, the transaction),
//! but over a `TcpStream` we connected and configured ourselves.
//!
//! Plain (`smtp://`) and STARTTLS (`smtp://…?tls=required|opportunistic`) connections go through
//! this pool. Implicit TLS (`smtps://`) needs the TLS handshake before the greeting, which lettre
//! only performs on sockets it opens; that scheme stays on lettre's transport.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::error::SendError;

/// An idle connection older than this is checked with NOOP before it carries a message: relays
/// close idle sessions (Postfix after 300 s), and a message sent into a closed session fails
/// only after it was written.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(2);
/// Idle connections older than this are closed rather than checked.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Whether and how a session is encrypted.
#[derive(Clone)]
pub enum Security {
    /// No TLS (`smtp://host`).
    Plain,
    /// STARTTLS after the greeting; `required` refuses a relay that does not offer it.
    StartTls {
        parameters: TlsParameters,
        required: bool,
    },
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plain => f.write_str("Plain"),
            Self::StartTls { required, .. } => f
                .debug_struct("StartTls")
                .field("required", required)
                .finish_non_exhaustive(),
        }
    }
}

/// Where and how to connect: what an `smtp://` URL says.
#[derive(Clone)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub hello: ClientId,
    pub credentials: Option<Credentials>,
    /// Whether credentials may be sent on a session that is not encrypted (loopback relays
    /// only; [`SmtpTarget::check_auth_security`]).
    pub allow_plaintext_auth: bool,
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Whether there are credentials, never what they are.
        f.debug_struct("SmtpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("hello", &self.hello)
            .field("authenticated", &self.credentials.is_some())
            .field("allow_plaintext_auth", &self.allow_plaintext_auth)
            .finish()
    }
}

impl SmtpTarget {
    /// Reads an `smtp://` URL: port 25 without `tls`, 587 with `tls=required` or
    /// `tls=opportunistic`; `user:password@` (percent-encoded) gives credentials; a path names
    /// the EHLO domain. `Ok(None)` for `smtps://`, which this pool does not serve. The error
    /// never contains the password.
    pub fn from_url(url: &str) -> Result<Option<Self>, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if parsed.scheme() == "smtps" {
            return Ok(None);
        }
        if parsed.scheme() != "smtp" {
            return Err(format!(
                "the scheme must be smtp or smtps, not `{}`",
                parsed.scheme()
            ));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("no host")?
            .trim_matches(['[', ']'])
            .to_owned();
        let tls = parsed
            .query_pairs()
            .find(|(key, _)| key == "tls")
            .map(|(_, value)| value.into_owned());
        let tls_for = |required| {
            TlsParameters::new(host.clone())
                .map(|parameters| Security::StartTls {
                    parameters,
                    required,
                })
                .map_err(|e| format!("TLS set-up for {host}: {e}"))
        };
        let (security, default_port) = match tls.as_deref() {
            None => (Security::Plain, 25),
            Some("required") => (tls_for(true)?, 587),
            Some("opportunistic") => (tls_for(false)?, 587),
            Some(other) => {
                return Err(format!(
                    "tls must be `required` or `opportunistic`, not `{other}`"
                ));
            }
        };
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| "the user or password is not valid percent-encoded UTF-8".to_owned())
        };
        let credentials = match parsed.password() {
            Some(password) => Some(Credentials::new(
                decode(parsed.username())?,
                decode(password)?,
            )),
            None => None,
        };
        let path = parsed.path().trim_matches('/');
        let hello = if path.is_empty() {
            ClientId::default()
        } else {
            ClientId::Domain(path.to_owned())
        };
        Ok(Some(Self {
            port: parsed.port().unwrap_or(default_port),
            host,
            security,
            hello,
            credentials,
            allow_plaintext_auth: false,
        }))
    }

    /// Whether the host is this machine (an IP loopback address or `localhost`).
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Refuses, at start-up, a set-up that would send credentials in clear: credentials on a
    /// plain `smtp://` session, unless plaintext AUTH is explicitly allowed for a loopback relay.
    /// (`tls=opportunistic` is checked per session: without STARTTLS no AUTH is sent.)
    pub fn check_auth_security(&self) -> Result<(), String> {
        if self.allow_plaintext_auth && !self.is_loopback() {
            return Err(format!(
                "SMTP_ALLOW_PLAINTEXT_AUTH=true is accepted only for a loopback relay \
                 (127.0.0.1, ::1, localhost), not {}: credentials sent to another host without \
                 TLS can be read on the way; use tls=required or smtps://",
                self.host
            ));
        }
        let plain = matches!(self.security, Security::Plain);
        if plain && self.credentials.is_some() && !self.allow_plaintext_auth {
            return Err(
                "SMTP credentials would be sent without TLS: use smtp://…?tls=required or \
                 smtps://, or, for a loopback development relay only, set \
                 SMTP_ALLOW_PLAINTEXT_AUTH=true"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

struct Idle {
    connection: AsyncSmtpConnection,
    since: Instant,
}

/// At most `max_size` sessions, open ones kept for the next message.
pub struct SmtpPool {
    target: SmtpTarget,
    timeout: Duration,
    /// One permit per session in use: the relay never sees more than `max_size` at once.
    permits: Semaphore,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for SmtpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No credentials here, ever.
        f.debug_struct("SmtpPool")
            .field("host", &self.target.host)
            .field("port", &self.target.port)
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl SmtpPool {
    /// `timeout` bounds each connect and each message.
    pub fn new(target: SmtpTarget, max_size: usize, timeout: Duration) -> Self {
        Self {
            target,
            timeout,
            permits: Semaphore::new(max_size.max(1)),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends one message (`raw` as formatted by lettre) and returns the relay's reply.
    pub async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<Response, SendError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SendError::Transient("the SMTP pool is closed".into()))?;
        let mut connection = match self.reusable().await {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        match tokio::time::timeout(self.timeout, connection.send(envelope, raw)).await {
            Ok(Ok(response)) => {
                self.put_back(connection);
                Ok(response)
            }
            // lettre has already closed the session (any error aborts it).
            Ok(Err(error)) => Err(classify(&error)),
            Err(_) => {
                connection.abort().await;
                Err(SendError::Transient(format!(
                    "no reply from {}:{} within {:?}",
                    self.target.host, self.target.port, self.timeout
                )))
            }
        }
    }

    /// An idle session still worth using, if any.
    async fn reusable(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let idle = self.lock_idle().pop()?;
            let age = idle.since.elapsed();
            let mut connection = idle.connection;
            if age > MAX_IDLE {
                connection.abort().await;
                continue;
            }
            if age > CHECK_IDLE_AFTER
                && !tokio::time::timeout(self.timeout, connection.test_connected())
                    .await
                    .unwrap_or(false)
            {
                connection.abort().await;
                continue;
            }
            return Some(connection);
        }
    }

    fn put_back(&self, connection: AsyncSmtpConnection) {
        if !connection.has_broken() {
            self.lock_idle().push(Idle {
                connection,
                since: Instant::now(),
            });
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new session: TCP without Nagle, greeting and EHLO, STARTTLS, AUTH.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let target = &self.target;
        let open = async {
            let stream = TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(|e| {
                    SendError::Transient(format!(
                        "cannot connect to {}:{}: {e}",
                        target.host, target.port
                    ))
                })?;
            stream
                .set_nodelay(true)
                .map_err(|e| SendError::Transient(format!("TCP_NODELAY: {e}")))?;
            let mut connection =
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &target.hello)
                    .await
                    .map_err(|e| classify(&e))?;
            if let Security::StartTls {
                parameters,
                required,
            } = &target.security
            {
                if connection.can_starttls() {
                    connection
                        .starttls(parameters.clone(), &target.hello)
                        .await
                        .map_err(|e| classify(&e))?;
                } else if *required {
                    connection.abort().await;
                    return Err(SendError::Transient(format!(
                        "{} does not offer STARTTLS, which tls=required demands",
                        target.host
                    )));
                }
            }
            if let Some(credentials) = &target.credentials {
                // The relay may not have offered STARTTLS (tls=opportunistic), or someone on the
                // way removed the offer: the password stays with us then.
                if !connection.is_encrypted() && !target.allow_plaintext_auth {
                    connection.abort().await;
                    return Err(SendError::Transient(format!(
                        "refusing to send SMTP credentials to {} without TLS: the session was \
                         not encrypted (no STARTTLS)",
                        target.host
                    )));
                }
                connection
                    .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                    .await
                    .map_err(|e| classify(&e))?;
            }
            Ok(connection)
        };
        tokio::time::timeout(self.timeout, open)
            .await
            .unwrap_or_else(|_| {
                Err(SendError::Transient(format!(
                    "connecting to {}:{} took longer than {:?}",
                    target.host, target.port, self.timeout
                )))
            })
    }
}

/// A 5xx reply is permanent (the same message would be refused again); everything else may pass
/// on a later attempt.
fn classify(error: &lettre::transport::smtp::Error) -> SendError {
    if error.is_permanent() {
        SendError::Permanent(error.to_string())
    } else {
        SendError::Transient(error.to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn target(url: &str) -> SmtpTarget {
        SmtpTarget::from_url(url).unwrap().unwrap()
    }

    #[test]
    fn ports_and_security_follow_the_url() {
        let plain = target("smtp://mail.example");
        assert_eq!((plain.host.as_str(), plain.port), ("mail.example", 25));
        assert!(matches!(plain.security, Security::Plain));
        assert!(plain.credentials.is_none());

        let required = target("smtp://mail.example?tls=required");
        assert_eq!(required.port, 587);
        assert!(matches!(
            required.security,
            Security::StartTls { required: true, .. }
        ));

        let opportunistic = target("smtp://mail.example:2587?tls=opportunistic");
        assert_eq!(opportunistic.port, 2587);
        assert!(matches!(
            opportunistic.security,
            Security::StartTls {
                required: false,
                ..
            }
        ));
    }

    #[test]
    fn credentials_and_hello_name_come_from_the_url() {
        let t = target("smtp://bot%40corp:p%2Fss@127.0.0.1:2525/sender.example");
        let expected = Credentials::new("bot@corp".into(), "p/ss".into());
        assert!(t.credentials == Some(expected));
        assert!(t.hello == ClientId::Domain("sender.example".into()));
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 2525));
    }

    #[test]
    fn smtps_is_left_to_lettre_and_bad_urls_are_named_without_secrets() {
        assert!(SmtpTarget::from_url("smtps://mail:465").unwrap().is_none());
        let err = SmtpTarget::from_url("smtp://u:hunter2@mail?tls=sometimes")
            .err()
            .unwrap();
        assert!(
            err.contains("sometimes") && !err.contains("hunter2"),
            "{err}"
        );
        let err = SmtpTarget::from_url("ftp://u:hunter2@mail").err().unwrap();
        assert!(err.contains("ftp") && !err.contains("hunter2"), "{err}");
    }
}
