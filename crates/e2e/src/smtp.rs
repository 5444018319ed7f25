//! A real SMTP server on 127.0.0.1 (mailin-embedded, on its own threads) that records every message
//! it accepts, so a test sees exactly what the email-worker sent over the wire.

use std::net::TcpListener;
use std::sync::{Arc, Mutex, PoisonError};

use mailin_embedded::{Handler, Response, Server, SslConfig, response};

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope sender (MAIL FROM), lower case, without angle brackets.
    pub from: String,
    /// The envelope recipients (RCPT TO), lower case, without angle brackets.
    pub to: Vec<String>,
    /// The message as sent (headers and body).
    pub data: Vec<u8>,
}

impl Received {
    /// The `Subject` header, decoded.
    pub fn subject(&self) -> Option<String> {
        let message = mail_parser::MessageParser::default().parse(&self.data)?;
        message.subject().map(str::to_owned)
    }

    /// The first `text/plain` part, decoded.
    pub fn text(&self) -> Option<String> {
        let message = mail_parser::MessageParser::default().parse(&self.data)?;
        message.body_text(0).map(|t| t.into_owned())
    }
}

/// The running server; clones share the recorded messages.
#[derive(Debug, Clone)]
pub struct SmtpSink {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

#[derive(Clone)]
struct Recorder {
    received: Arc<Mutex<Vec<Received>>>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

fn bare(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_ascii_lowercase()
}

impl Handler for Recorder {
    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.from = bare(from);
        self.to = to.iter().map(|t| bare(t)).collect();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let message = Received {
            from: std::mem::take(&mut self.from),
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.data),
        };
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(message);
        response::OK
    }
}

impl SmtpSink {
    /// Starts the server on a free loopback port. It serves until the test process ends.
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut server = Server::new(Recorder {
            received: Arc::clone(&received),
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        });
        server
            .with_name("sink.e2e.test")
            .with_ssl(SslConfig::None)
            .map_err(|e| anyhow::anyhow!("SMTP sink: {e}"))?
            // Each pooled SMTP connection of the worker holds one thread while idle.
            .with_num_threads(32)
            .with_tcp_listener(listener);
        std::thread::Builder::new()
            .name("smtp-sink".into())
            .spawn(move || {
                if let Err(e) = server.serve() {
                    eprintln!("SMTP sink stopped: {e}");
                }
            })?;
        Ok(Self { port, received })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL for the email-worker's `SMTP_URL` (plain SMTP, no TLS).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Everything accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
