//! The SMTP sink: a real SMTP server (`smtp-sink`) and the arrival time of each request's email,
//! matched by the request's marker in the message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Arrival times by request number, plus counts of what did not match.
#[derive(Debug, Default)]
pub struct Arrivals {
    pub first: HashMap<u64, Instant>,
    pub duplicates: u64,
    pub unmatched: u64,
}

/// The marker put in each task title: `lg<nonce>n<seq>`; the nonce keeps other mail out.
#[derive(Debug, Clone)]
pub struct Marker {
    prefix: String,
}

impl Marker {
    pub fn new(nonce: u32) -> Self {
        Self {
            prefix: format!("lg{nonce:08x}n"),
        }
    }

    pub fn of(&self, seq: u64) -> String {
        format!("{}{seq}", self.prefix)
    }

    /// The request number in a message, if its marker is there.
    pub fn find(&self, data: &[u8]) -> Option<u64> {
        let text = String::from_utf8_lossy(data);
        let start = text.find(&self.prefix)? + self.prefix.len();
        let digits: String = text[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }
}

/// What has been matched so far, and how much of the server's record that covers.
#[derive(Debug, Default)]
struct Tally {
    arrivals: Arrivals,
    seen: usize,
}

/// The running sink: a real SMTP server plus the tally of its messages by marker. It serves
/// until the process ends.
#[derive(Debug, Clone)]
pub struct SmtpSink {
    server: smtp_sink::SmtpSink,
    marker: Marker,
    tally: Arc<Mutex<Tally>>,
}

impl SmtpSink {
    pub fn start(addr: &SocketAddr) -> anyhow::Result<Self> {
        let server = smtp_sink::SmtpSink::start_on(*addr)?;
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0);
        Ok(Self {
            server,
            marker: Marker::new(nonce),
            tally: Arc::default(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn marker(&self) -> &Marker {
        &self.marker
    }

    /// How many requests have their email.
    pub fn matched(&self) -> usize {
        self.tally().arrivals.first.len()
    }

    /// Arrival time of a request's email.
    pub fn arrival(&self, seq: u64) -> Option<Instant> {
        self.tally().arrivals.first.get(&seq).copied()
    }

    /// (duplicates, unmatched) emails.
    pub fn strays(&self) -> (u64, u64) {
        let tally = self.tally();
        (tally.arrivals.duplicates, tally.arrivals.unmatched)
    }

    /// The tally, brought up to date with what the server accepted since the last look (only
    /// the new messages are copied and matched).
    fn tally(&self) -> MutexGuard<'_, Tally> {
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        let new = self.server.received_since(tally.seen);
        tally.seen += new.len();
        for message in new {
            let arrivals = &mut tally.arrivals;
            match self.marker.find(&message.data) {
                Some(seq) if arrivals.first.contains_key(&seq) => arrivals.duplicates += 1,
                Some(seq) => {
                    arrivals.first.insert(seq, message.at);
                }
                None => arrivals.unmatched += 1,
            }
        }
        tally
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;

    use super::*;

    /// Sends one message over plain SMTP, reading each reply before the next command.
    fn send(addr: SocketAddr, body: &str) {
        let stream = TcpStream::connect(addr).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut reply = |expect: &str| {
            let mut line = String::new();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                // Multi-line replies continue with `250-`.
                if line.as_bytes().get(3) != Some(&b'-') {
                    break;
                }
            }
            assert!(line.starts_with(expect), "expected {expect}, got {line}");
        };
        reply("220");
        for (command, expect) in [
            ("EHLO test\r\n", "250"),
            ("MAIL FROM:<a@example.com>\r\n", "250"),
            ("RCPT TO:<b@example.com>\r\n", "250"),
            ("DATA\r\n", "354"),
        ] {
            writer.write_all(command.as_bytes()).unwrap();
            reply(expect);
        }
        writer.write_all(body.as_bytes()).unwrap();
        writer.write_all(b"\r\n.\r\n").unwrap();
        reply("250");
        writer.write_all(b"QUIT\r\n").unwrap();
    }

    #[test]
    fn the_sink_records_the_first_arrival_per_marker_and_counts_the_rest() {
        let sink = SmtpSink::start(&"127.0.0.1:0".parse().unwrap()).unwrap();
        let subject = format!("Subject: New task: {}\r\n\r\nhi", sink.marker().of(7));
        send(sink.addr(), &subject);
        send(sink.addr(), &subject);
        send(sink.addr(), "Subject: unrelated\r\n\r\nhi");
        assert_eq!(sink.matched(), 1);
        assert!(sink.arrival(7).is_some());
        assert_eq!(sink.strays(), (1, 1));
    }

    #[test]
    fn the_marker_is_found_in_a_subject_and_only_with_its_nonce() {
        let marker = Marker::new(0xabc);
        let mail = format!("Subject: New task: load {}\r\n\r\nbody", marker.of(42));
        assert_eq!(marker.find(mail.as_bytes()), Some(42));
        assert_eq!(Marker::new(0xabd).find(mail.as_bytes()), None);
    }
}
