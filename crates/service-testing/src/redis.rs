//! A `redis-server` owned by one test, and resources folders that put the services' components
//! on it.
//!
//! The server listens on a free loopback port and persists nothing; dropping it kills it and
//! removes the folders it wrote. A folder is read when a [`crate::Cluster`] is made from it, so
//! it only has to outlive that call.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{KafkaBroker, free_port};

const MISSING: &str = "redis-server not found; run scripts/test.sh or apt-get install redis-server";
/// How many free ports to try when another process takes the one just reserved.
const PORTS_TRIED: usize = 5;
/// How long a fresh server may take to answer.
const STARTUP: Duration = Duration::from_secs(10);

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    /// Where its resources folders go.
    dir: PathBuf,
    folders: AtomicUsize,
}

impl RedisServer {
    /// Starts a server and waits until it answers as itself (not another process that took the
    /// port first: then another port is tried).
    pub fn start() -> Self {
        for _ in 0..PORTS_TRIED {
            let port = free_port();
            let mut server = Self {
                child: launch(port),
                port,
                dir: std::env::temp_dir().join(format!(
                    "service-testing-redis-{}-{port}",
                    std::process::id()
                )),
                folders: AtomicUsize::new(0),
            };
            if server.answers() {
                return server;
            }
        }
        panic!("redis-server did not answer on a free port in {PORTS_TRIED} attempts");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`: a component's `redisHost`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A new resources folder: `todo-state` (`state.redis`) on this server, `todo-pubsub` in
    /// memory.
    pub fn resources(&self) -> PathBuf {
        self.folder(&[
            self.on_redis(events::STATE_STORE_NAME, "state.redis", &[]),
            component(events::PUBSUB_NAME, "pubsub.in-memory", &[]),
        ])
    }

    /// A new resources folder: `todo-state` (`state.redis`) and `todo-pubsub` (`pubsub.redis`,
    /// Redis Streams) both on this server; `pubsub_meta` is added to the pub/sub's metadata
    /// (`processingTimeout`, `concurrency`, ...).
    pub fn streams(&self, pubsub_meta: &[(&str, &str)]) -> PathBuf {
        self.folder(&[
            self.on_redis(events::STATE_STORE_NAME, "state.redis", &[]),
            self.on_redis(events::PUBSUB_NAME, "pubsub.redis", pubsub_meta),
        ])
    }

    /// A new resources folder as `dapr.kafka.yaml` has it: `todo-state` (`state.redis`) on this
    /// server and `todo-pubsub` (`pubsub.kafka`) on `broker` with production's
    /// `initialOffset: oldest`, so a consumer group created after the first publishes reads the
    /// topics from their start. `broker` needs the production topics
    /// ([`KafkaBroker::create_topics_from`] with `deploy/redpanda/topics.conf`, see
    /// [`crate::production_topics`]).
    pub fn kafka(&self, broker: &KafkaBroker, pubsub_meta: &[(&str, &str)]) -> PathBuf {
        let brokers = broker.brokers();
        let metadata: Vec<(&str, &str)> = [
            ("brokers", brokers.as_str()),
            ("authType", "none"),
            ("initialOffset", "oldest"),
        ]
        .into_iter()
        .chain(pubsub_meta.iter().copied())
        .collect();
        self.folder(&[
            self.on_redis(events::STATE_STORE_NAME, "state.redis", &[]),
            component(events::PUBSUB_NAME, "pubsub.kafka", &metadata),
        ])
    }

    fn on_redis(&self, name: &str, kind: &str, extra: &[(&str, &str)]) -> String {
        let host = self.address();
        let metadata: Vec<(&str, &str)> = [("redisHost", host.as_str())]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        component(name, kind, &metadata)
    }

    fn folder(&self, components: &[String]) -> PathBuf {
        let n = self.folders.fetch_add(1, Ordering::Relaxed);
        let folder = self.dir.join(format!("resources-{n}"));
        std::fs::create_dir_all(&folder)
            .unwrap_or_else(|error| panic!("creating {}: {error}", folder.display()));
        let file = folder.join("components.yaml");
        std::fs::write(&file, components.join("---\n"))
            .unwrap_or_else(|error| panic!("writing {}: {error}", file.display()));
        folder
    }

    /// Whether the server answers within [`STARTUP`], reporting this child's process id.
    fn answers(&mut self) -> bool {
        let own = format!("process_id:{}", self.child.id());
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                // It exited: most likely the port was taken in the meantime.
                return false;
            }
            if let Some(info) = info_server(self.port) {
                return info.lines().any(|line| line.trim() == own);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn launch(port: u16) -> Child {
    let port = port.to_string();
    let options = [
        "--port",
        port.as_str(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ];
    Command::new("redis-server")
        .args(options)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| match error.kind() {
            std::io::ErrorKind::NotFound => panic!("{MISSING}"),
            _ => panic!("cannot start redis-server: {error}"),
        })
}

/// The reply to `INFO server` on `port`, when a Redis answers there.
fn info_server(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    // A bulk string: `$<length>\r\n<text>\r\n`; anything else (`-LOADING ...`) is no answer yet.
    let mut reply = BufReader::new(stream);
    let mut header = String::new();
    reply.read_line(&mut header).ok()?;
    let length: usize = header.strip_prefix('$')?.trim_end().parse().ok()?;
    let mut text = vec![0; length];
    reply.read_exact(&mut text).ok()?;
    String::from_utf8(text).ok()
}

/// One component document; `metadata` as name/value pairs.
fn component(name: &str, kind: &str, metadata: &[(&str, &str)]) -> String {
    let entries: String = metadata
        .iter()
        .map(|(key, value)| format!("    - name: {key}\n      value: \"{value}\"\n"))
        .collect();
    let metadata = if entries.is_empty() {
        " []\n".to_owned()
    } else {
        format!("\n{entries}")
    };
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  \
         type: {kind}\n  version: v1\n  metadata:{metadata}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_lists_its_metadata_or_none() {
        assert_eq!(
            component("todo-pubsub", "pubsub.in-memory", &[]),
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-pubsub\n\
             spec:\n  type: pubsub.in-memory\n  version: v1\n  metadata: []\n"
        );
        assert!(
            component("todo-state", "state.redis", &[("redisHost", "127.0.0.1:1")])
                .ends_with("  metadata:\n    - name: redisHost\n      value: \"127.0.0.1:1\"\n")
        );
    }

    #[tokio::test]
    async fn the_components_load_and_the_folders_go_with_the_server() {
        let redis = RedisServer::start();
        let dir = redis.dir.clone();
        for folder in [redis.resources(), redis.streams(&[("concurrency", "4")])] {
            let cluster = crate::Cluster::from_resources(&[&folder])
                .await
                .unwrap_or_else(|error| panic!("{}: {error}", folder.display()));
            cluster.shutdown().await;
        }
        drop(redis);
        assert!(!dir.exists());
    }
}
