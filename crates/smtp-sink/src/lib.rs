//! A real SMTP server on loopback (mailin-embedded, on its own threads) that records every
//! message it accepts, so tests and load runs see exactly what the email-worker put on the wire.
//!
//! It can also misbehave on purpose: refuse a recipient for good (550) or for the next few
//! attempts (451), or take its time over every message like a slow relay, and it tracks how many
//! mail transactions were open at once, so a test can check the worker's concurrency cap from the
//! server's side. [`PlaintextAuthFront`] puts a front before it that offers AUTH without TLS,
//! to check that a client does not hand its credentials over in clear.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mailin_embedded::{Handler, Response, Server, SslConfig, response};

mod auth_front;
pub use auth_front::PlaintextAuthFront;

/// Worker threads of the server. mailin-embedded gives each connection a thread for as long as
/// it is open, and the email-worker keeps a pool of idle connections, so this must exceed the
/// pool size or new connections queue behind idle ones.
const DEFAULT_THREADS: u32 = 96;

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope sender (MAIL FROM), lower case, without angle brackets.
    pub from: String,
    /// The envelope recipients (RCPT TO), lower case, without angle brackets.
    pub to: Vec<String>,
    /// The message as sent: headers and body.
    pub data: Vec<u8>,
    /// When the server accepted it (end of DATA).
    pub at: Instant,
}

impl Received {
    /// The message parsed as MIME, or `None` when it does not parse.
    pub fn parsed(&self) -> Option<mail_parser::Message<'_>> {
        mail_parser::MessageParser::default().parse(&self.data)
    }

    /// The `Subject` header, decoded.
    pub fn subject(&self) -> Option<String> {
        self.parsed()?.subject().map(str::to_owned)
    }

    /// The first `text/plain` part, decoded.
    pub fn text(&self) -> Option<String> {
        self.parsed()?.body_text(0).map(|t| t.into_owned())
    }

    /// The raw header block, as sent (no decoding), for checks on header syntax itself.
    pub fn raw_headers(&self) -> String {
        let text = String::from_utf8_lossy(&self.data);
        text.split("\r\n\r\n").next().unwrap_or_default().to_owned()
    }
}

#[derive(Debug, Default)]
struct State {
    received: Vec<Received>,
    rejected: HashSet<String>,
    /// Recipients refused with 451 (try again later) this many more times.
    tempfails: HashMap<String, usize>,
    /// Mail transactions (MAIL FROM to end of DATA) in progress, and the most seen at once.
    active: usize,
    max_active: usize,
    /// How long the reply to the end of each message waits.
    reply_delay: Duration,
}

/// The running server; clones share its record. It serves until the process ends.
#[derive(Debug, Clone)]
pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl SmtpSink {
    /// Starts on a free loopback port.
    pub fn start() -> std::io::Result<Self> {
        Self::start_on(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
    }

    /// Starts on `addr` (port 0 for any): a fixed port is for "the relay comes back" tests and
    /// for load runs whose email-worker was configured before the sink started.
    pub fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            std::io::Error::new(e.kind(), format!("SMTP sink cannot listen on {addr}: {e}"))
        })?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let mut server = Server::new(Recorder {
            state: Arc::clone(&state),
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        });
        server
            .with_name("smtp-sink.test")
            .with_ssl(SslConfig::None)
            .map_err(|e| std::io::Error::other(format!("SMTP sink: {e}")))?
            .with_num_threads(DEFAULT_THREADS)
            .with_tcp_listener(listener);
        // `serve` blocks for good; the thread ends with the process.
        std::thread::Builder::new()
            .name("smtp-sink".into())
            .spawn(move || {
                if let Err(e) = server.serve() {
                    eprintln!("SMTP sink stopped: {e}");
                }
            })?;
        Ok(Self { addr, state })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The URL for the email-worker's `SMTP_URL` (plain SMTP, no TLS).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Refuses `address` at RCPT with 550 (no such mailbox) from now on.
    pub fn reject(&self, address: &str) {
        self.lock().rejected.insert(bare(address));
    }

    /// Refuses `address` at RCPT with 451 (try again later) the next `times` times.
    pub fn tempfail(&self, address: &str, times: usize) {
        self.lock().tempfails.insert(bare(address), times);
    }

    /// How many 451 refusals for `address` are still to come.
    pub fn tempfails_left(&self, address: &str) -> usize {
        self.lock()
            .tempfails
            .get(&bare(address))
            .copied()
            .unwrap_or(0)
    }

    /// From now on, answers the end of every message only after `delay` (zero: at once), as a
    /// slow or busy relay would; the message counts as accepted when the answer goes out.
    pub fn slow_down(&self, delay: Duration) {
        self.lock().reply_delay = delay;
    }

    /// The most mail transactions that were in progress at once.
    pub fn max_concurrent(&self) -> usize {
        self.lock().max_active
    }

    /// How many messages were accepted so far.
    pub fn count(&self) -> usize {
        self.lock().received.len()
    }

    /// Everything accepted so far, in order of acceptance.
    pub fn received(&self) -> Vec<Received> {
        self.received_since(0)
    }

    /// The messages accepted after the first `skip`: lets a caller that polls often (a load
    /// run) take only what is new instead of copying the whole record each time.
    pub fn received_since(&self, skip: usize) -> Vec<Received> {
        self.lock()
            .received
            .get(skip..)
            .unwrap_or_default()
            .to_vec()
    }

    /// Waits until at least `n` messages were accepted and returns them all; `Err` with what
    /// did arrive when `timeout` passes first.
    pub async fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Received>, Vec<Received>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return Ok(got);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(got);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock (in a test thread) leaves the record intact.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The per-connection handler mailin-embedded clones for each session.
#[derive(Clone)]
struct Recorder {
    state: Arc<Mutex<State>>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `<Ann@Example.com>` → `ann@example.com`.
fn bare(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_ascii_lowercase()
}

impl Handler for Recorder {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, _from: &str) -> Response {
        let mut state = self.lock();
        state.active += 1;
        state.max_active = state.max_active.max(state.active);
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let mut state = self.lock();
        let to = bare(to);
        if state.rejected.contains(&to) {
            return response::NO_MAILBOX;
        }
        if let Some(left) = state.tempfails.get_mut(&to).filter(|n| **n > 0) {
            *left -= 1;
            return response::INTERNAL_ERROR;
        }
        response::OK
    }

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
        // Each session has its own thread: waiting here holds up only this message.
        let delay = self.lock().reply_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let message = Received {
            from: std::mem::take(&mut self.from),
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.data),
            at: Instant::now(),
        };
        let mut state = self.lock();
        state.active = state.active.saturating_sub(1);
        state.received.push(message);
        response::OK
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;

    use super::*;

    /// Speaks plain SMTP to `addr`, reading each reply before the next command; returns the
    /// reply code to RCPT TO (the message is sent only when it is 250).
    fn send(addr: SocketAddr, to: &str, body: &str) -> String {
        let stream = TcpStream::connect(addr).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut reply = || {
            let mut line = String::new();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                // Multi-line replies continue with `250-`.
                if line.as_bytes().get(3) != Some(&b'-') {
                    return line[..3].to_owned();
                }
            }
        };
        assert_eq!(reply(), "220");
        for command in ["EHLO test\r\n", "MAIL FROM:<Sender@Example.com>\r\n"] {
            writer.write_all(command.as_bytes()).unwrap();
            assert_eq!(reply(), "250", "{command}");
        }
        writer
            .write_all(format!("RCPT TO:<{to}>\r\n").as_bytes())
            .unwrap();
        let rcpt = reply();
        if rcpt == "250" {
            writer.write_all(b"DATA\r\n").unwrap();
            assert_eq!(reply(), "354");
            writer.write_all(body.as_bytes()).unwrap();
            writer.write_all(b"\r\n.\r\n").unwrap();
            assert_eq!(reply(), "250");
        }
        writer.write_all(b"QUIT\r\n").unwrap();
        rcpt
    }

    #[test]
    fn records_envelope_and_message() {
        let sink = SmtpSink::start().unwrap();
        let rcpt = send(
            sink.addr(),
            "Ann@Example.com",
            "Subject: Hello\r\nContent-Type: text/plain\r\n\r\nbody text",
        );
        assert_eq!(rcpt, "250");
        let got = sink.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].from, "sender@example.com");
        assert_eq!(got[0].to, ["ann@example.com"]);
        assert_eq!(got[0].subject().as_deref(), Some("Hello"));
        assert_eq!(got[0].text().as_deref().map(str::trim), Some("body text"));
        assert_eq!(
            got[0].raw_headers(),
            "Subject: Hello\r\nContent-Type: text/plain"
        );
        assert_eq!(sink.max_concurrent(), 1);
        assert_eq!(sink.url(), format!("smtp://127.0.0.1:{}", sink.port()));
    }

    #[test]
    fn refuses_for_good_and_for_a_while() {
        let sink = SmtpSink::start().unwrap();
        sink.reject("gone@example.com");
        sink.tempfail("busy@example.com", 2);
        assert_eq!(send(sink.addr(), "gone@example.com", "x"), "550");
        assert_eq!(send(sink.addr(), "busy@example.com", "x"), "451");
        assert_eq!(sink.tempfails_left("busy@example.com"), 1);
        assert_eq!(send(sink.addr(), "busy@example.com", "x"), "451");
        assert_eq!(send(sink.addr(), "busy@example.com", "x"), "250");
        assert_eq!(sink.tempfails_left("busy@example.com"), 0);
        assert_eq!(sink.count(), 1);
    }

    #[test]
    fn received_since_returns_only_what_is_new() {
        let sink = SmtpSink::start().unwrap();
        send(sink.addr(), "a@example.com", "Subject: one\r\n\r\n1");
        send(sink.addr(), "a@example.com", "Subject: two\r\n\r\n2");
        let new = sink.received_since(1);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].subject().as_deref(), Some("two"));
        assert!(sink.received_since(5).is_empty());
    }

    #[test]
    fn a_slowed_down_sink_answers_each_message_late() {
        let sink = SmtpSink::start().unwrap();
        sink.slow_down(Duration::from_millis(200));
        let started = Instant::now();
        assert_eq!(
            send(sink.addr(), "a@example.com", "Subject: slow\r\n\r\nx"),
            "250"
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
        let got = sink.received();
        assert_eq!(got.len(), 1);
        assert!(got[0].at >= started + Duration::from_millis(200));
        sink.slow_down(Duration::ZERO);
        assert_eq!(
            send(sink.addr(), "a@example.com", "Subject: quick\r\n\r\nx"),
            "250"
        );
        assert_eq!(sink.count(), 2);
    }

    #[tokio::test]
    async fn wait_for_reports_what_arrived_when_it_times_out() {
        let sink = SmtpSink::start().unwrap();
        let addr = sink.addr();
        std::thread::spawn(move || send(addr, "a@example.com", "Subject: late\r\n\r\nx"));
        let got = sink.wait_for(1, Duration::from_secs(10)).await.unwrap();
        assert_eq!(got.len(), 1);
        let short = sink.wait_for(2, Duration::from_millis(50)).await;
        assert_eq!(short.unwrap_err().len(), 1);
    }
}
