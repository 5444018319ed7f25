//! A front for the sink that offers `AUTH PLAIN LOGIN` on an unencrypted session, as a relay
//! with a careless configuration does, or a man in the middle who stripped `STARTTLS`: the
//! worker's credentials would cross the network in clear. The front records every `AUTH`
//! command it receives (accepting it with 235, since only the attempt matters) and forwards
//! everything else to the sink, so a test sees both whether credentials were sent and whether
//! the mail arrived.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};

/// The running front; clones share its record.
#[derive(Debug, Clone)]
pub struct PlaintextAuthFront {
    addr: SocketAddr,
    auth_commands: Arc<Mutex<Vec<String>>>,
}

impl PlaintextAuthFront {
    /// Listens on a free loopback port and forwards each session to `relay`.
    pub fn start(relay: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))?;
        let addr = listener.local_addr()?;
        let auth_commands = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&auth_commands);
        std::thread::Builder::new()
            .name("smtp-auth-front".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    let record = Arc::clone(&record);
                    // One thread per session, like the sink itself.
                    let _ = std::thread::Builder::new()
                        .name("smtp-auth-front-session".into())
                        .spawn(move || {
                            if let Err(e) = session(client, relay, &record) {
                                eprintln!("SMTP auth front: session ended: {e}");
                            }
                        });
                }
            })?;
        Ok(Self {
            addr,
            auth_commands,
        })
    }

    /// The URL for `SMTP_URL`, with `user:password@` and the given query (e.g.
    /// `tls=opportunistic`).
    pub fn url_with_credentials(&self, user: &str, password: &str, query: &str) -> String {
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        format!("smtp://{user}:{password}@{}{query}", self.addr)
    }

    /// Every `AUTH` command received so far, as sent (it carries the credentials).
    pub fn auth_commands(&self) -> Vec<String> {
        self.auth_commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Relays one session line by line, adding AUTH to the EHLO reply and answering AUTH itself.
fn session(
    client: TcpStream,
    relay: SocketAddr,
    record: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let server = TcpStream::connect(relay)?;
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let mut from_server = BufReader::new(server.try_clone()?);
    let mut to_server = server;
    let mut line = String::new();
    // Greeting.
    copy_reply(&mut from_server, &mut to_client, false)?;
    let mut in_data = false;
    loop {
        line.clear();
        if from_client.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        if in_data {
            to_server.write_all(line.as_bytes())?;
            if line == ".\r\n" {
                in_data = false;
                copy_reply(&mut from_server, &mut to_client, false)?;
            }
            continue;
        }
        if upper.starts_with("AUTH") {
            record
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line.trim_end().to_owned());
            to_client.write_all(b"235 2.7.0 Authentication succeeded\r\n")?;
            continue;
        }
        to_server.write_all(line.as_bytes())?;
        let ehlo = upper.starts_with("EHLO");
        copy_reply(&mut from_server, &mut to_client, ehlo)?;
        if upper.starts_with("DATA") {
            in_data = true;
        }
        if upper.starts_with("QUIT") {
            return Ok(());
        }
    }
}

/// Copies one (possibly multi-line) reply; with `offer_auth`, adds `AUTH PLAIN LOGIN` to it.
fn copy_reply(
    from: &mut BufReader<TcpStream>,
    to: &mut TcpStream,
    offer_auth: bool,
) -> std::io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if from.read_line(&mut line)? == 0 {
            return Ok(());
        }
        // `250-text` continues a reply, `250 text` ends it.
        let last = line.as_bytes().get(3) != Some(&b'-');
        if last && offer_auth && line.starts_with("250") {
            to.write_all(format!("250-{}", line.get(4..).unwrap_or("\r\n")).as_bytes())?;
            to.write_all(b"250 AUTH PLAIN LOGIN\r\n")?;
        } else {
            to.write_all(line.as_bytes())?;
        }
        if last {
            return Ok(());
        }
    }
}
