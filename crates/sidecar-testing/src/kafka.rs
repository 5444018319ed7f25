//! A Kafka-protocol broker owned by one test: `tansu` on a free loopback port with in-memory
//! storage, and its topics created the way production creates them (`tansu topic create`, which
//! speaks the Kafka admin protocol), since it does not create topics on first use.
//!
//! The binary is `$TANSU_BIN`, else the copy `scripts/test.sh` builds into
//! `${XDG_CACHE_HOME:-$HOME/.cache}/todo-dapr/tansu-0.6.0/bin/tansu`, else `tansu` on the `PATH`.
//! Dropping the broker kills it; its data goes with it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The tansu version the scripts install.
pub const TANSU_VERSION: &str = "0.6.0";
/// How many free ports to try when another process takes the one just reserved.
const PORTS_TRIED: usize = 5;
/// How long a fresh broker may take to accept connections.
const STARTUP: Duration = Duration::from_secs(10);

/// A running tansu broker, killed on drop.
#[derive(Debug)]
pub struct KafkaBroker {
    child: Child,
    port: u16,
    binary: PathBuf,
}

/// Where the tansu binary is, or why it is not.
pub fn tansu_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("TANSU_BIN={} is not a file", path.display()))
        };
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(cache) = cache {
        let cached = cache
            .join("todo-dapr")
            .join(format!("tansu-{TANSU_VERSION}"))
            .join("bin")
            .join("tansu");
        if cached.is_file() {
            return Ok(cached);
        }
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "tansu not found: run scripts/test.sh (it builds tansu {TANSU_VERSION} once), or set TANSU_BIN"
            )
        })
}

impl KafkaBroker {
    /// Starts a broker and waits until it accepts connections (another port is tried when the
    /// reserved one was taken meanwhile).
    ///
    /// # Panics
    /// When tansu is missing or does not come up: no Kafka test can run then.
    pub fn start() -> Self {
        Self::launched(false)
    }

    /// Starts a broker that requires SASL (SCRAM) authentication of every client. It has no
    /// users: tansu creates them through an authenticated client and keeps them in its storage,
    /// which is memory here, so every login is refused as an unknown user. That is enough to see
    /// what a client sends.
    ///
    /// # Panics
    /// As [`KafkaBroker::start`].
    pub fn start_with_authentication() -> Self {
        Self::launched(true)
    }

    fn launched(authentication: bool) -> Self {
        let binary = tansu_binary().unwrap_or_else(|why| panic!("{why}"));
        for _ in 0..PORTS_TRIED {
            let port = free_port();
            let mut broker = Self {
                child: launch(&binary, port, authentication),
                port,
                binary: binary.clone(),
            };
            if broker.accepts() {
                return broker;
            }
        }
        panic!("tansu did not start on a free port in {PORTS_TRIED} attempts");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`: a component's `brokers`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Secret `todo-kafka` as the production pub/sub component (`deploy/dapr/pubsub.yaml`) reads
    /// it, for this broker without authentication: every key the component names (an absent key
    /// is an error), the unused ones empty; `overrides` replace keys (e.g. `auth-type`).
    pub fn production_secret(&self, overrides: &[(&str, &str)]) -> serde_json::Value {
        let mut secret = serde_json::json!({
            "brokers": self.brokers(),
            "auth-type": "none",
            "sasl-mechanism": "",
            "username": "",
            "password": "",
            "disable-tls": "",
            "ca.crt": "",
        });
        for (key, value) in overrides {
            secret[*key] = serde_json::Value::from(*value);
        }
        serde_json::json!({ "todo-kafka": secret })
    }

    /// Creates `topic` with `partitions` partitions.
    ///
    /// # Panics
    /// When the broker refuses it.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let output = Command::new(&self.binary)
            .args(["topic", "create", topic, "--partitions"])
            .arg(partitions.to_string())
            .arg("--broker")
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {} topic create: {e}", self.binary.display()));
        assert!(
            output.status.success(),
            "tansu topic create {topic} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Creates every topic of `count` partitions.
    pub fn create_topics(&self, topics: &[&str], partitions: u32) {
        for topic in topics {
            self.create_topic(topic, partitions);
        }
    }

    /// Creates the topics listed in a `topics.conf` (`name partitions retention-ms` per line,
    /// `#` comments), e.g. `deploy/redpanda/topics.conf`.
    ///
    /// # Panics
    /// When the file cannot be read or a line is malformed.
    pub fn create_topics_from(&self, conf: &Path) {
        let text = std::fs::read_to_string(conf)
            .unwrap_or_else(|e| panic!("reading {}: {e}", conf.display()));
        for (name, partitions) in
            parse_topics_conf(&text).unwrap_or_else(|e| panic!("{}: {e}", conf.display()))
        {
            self.create_topic(&name, partitions);
        }
    }

    fn accepts(&mut self) -> bool {
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn launch(binary: &Path, port: u16, authentication: bool) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut command = Command::new(binary);
    command
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"]);
    if authentication {
        command.arg("--authentication");
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()))
}

/// `(name, partitions)` of every topic line of a `topics.conf`.
pub fn parse_topics_conf(text: &str) -> Result<Vec<(String, u32)>, String> {
    text.lines()
        .enumerate()
        .map(|(n, line)| (n + 1, line.split('#').next().unwrap_or("").trim()))
        .filter(|(_, line)| !line.is_empty())
        .map(|(n, line)| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [name, partitions, _] | [name, partitions] => partitions
                    .parse::<u32>()
                    .ok()
                    .filter(|p| *p > 0)
                    .map(|p| ((*name).to_owned(), p))
                    .ok_or_else(|| format!("line {n}: {partitions:?} is not a partition count")),
                _ => Err(format!("line {n}: expected `name partitions retention-ms`")),
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn topics_conf_lines_and_errors() {
        let topics = parse_topics_conf("# c\ntask-created 3 604800000\n\n dl  1 5 # x\n").unwrap();
        assert_eq!(
            topics,
            [("task-created".to_owned(), 3), ("dl".to_owned(), 1)]
        );
        assert!(parse_topics_conf("t x 1").unwrap_err().contains("line 1"));
        assert!(parse_topics_conf("t").is_err());
    }
}
