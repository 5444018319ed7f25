//! A `redis-server` owned by one test (random port, no persistence, killed on drop) and the
//! components that put `todo-state` (`state.redis`) and `todo-pubsub` (`pubsub.redis`, Redis
//! Streams) on it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MISSING: &str = "redis-server not found; run scripts/test.sh or apt-get install redis-server";

pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    pub fn start() -> Self {
        // A port that was free a moment ago; tried again if another process takes it first.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap();
            let child = match Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{MISSING}"),
                Err(e) => panic!("cannot start redis-server: {e}"),
            };
            let mut server = Self { child, port };
            if server.wait_ready() {
                return server;
            }
        }
        panic!("redis-server did not answer on a free port after 5 attempts");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            // The server answering must be ours (another process may have taken the port).
            if let Ok(mut con) = self.client().get_connection()
                && let Ok(info) = redis::cmd("INFO").arg("server").query::<String>(&mut con)
            {
                let pid = format!("process_id:{}", self.child.id());
                return info.lines().any(|l| l.trim() == pid);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).unwrap()
    }

    /// A folder with `todo-state` and `todo-pubsub` on this server; `pubsub_meta` adds metadata
    /// to the pub/sub component (`processingTimeout`, `concurrency`, …).
    pub fn components(&self, pubsub_meta: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let component = |name: &str, kind: &str, meta: &[(&str, &str)]| {
            let mut yaml = format!(
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n\
                 spec:\n  type: {kind}\n  version: v1\n  metadata:\n  - name: redisHost\n    \
                 value: \"127.0.0.1:{}\"\n",
                self.port
            );
            for (k, v) in meta {
                yaml.push_str(&format!("  - name: {k}\n    value: \"{v}\"\n"));
            }
            yaml
        };
        let state = component("todo-state", "state.redis", &[]);
        let pubsub = component("todo-pubsub", "pubsub.redis", pubsub_meta);
        std::fs::write(dir.path().join("statestore.yaml"), state).unwrap();
        std::fs::write(dir.path().join("pubsub.yaml"), pubsub).unwrap();
        dir
    }

    /// Entries of `stream` delivered to `group` and not acknowledged yet, with how many times
    /// each was delivered.
    pub fn pending(&self, stream: &str, group: &str) -> Vec<(String, u64)> {
        let mut con = self.client().get_connection().unwrap();
        let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(stream)
            .arg(group)
            .arg("-")
            .arg("+")
            .arg(10_000)
            .query(&mut con)
            .unwrap_or_default();
        rows.into_iter()
            .map(|(id, _consumer, _idle, delivered)| (id, delivered))
            .collect()
    }
}

impl RedisServer {
    /// Whether consumer group `group` has read `stream` to its end and acknowledged every entry.
    pub fn group_done(&self, stream: &str, group: &str) -> bool {
        let mut con = self.client().get_connection().unwrap();
        let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query(&mut con)
            .unwrap_or_default();
        let number = |g: &std::collections::HashMap<String, redis::Value>, key: &str| {
            g.get(key)
                .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
        };
        groups.iter().any(|g| {
            g.get("name")
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                .is_some_and(|name| name == group)
                && number(g, "pending") == Some(0)
                && number(g, "lag") == Some(0)
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
