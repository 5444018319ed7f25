//! A `redis-server` owned by one test (random port, no persistence, killed on drop) and the
//! components that put `todo-state` (`state.redis`) and `todo-pubsub` (`pubsub.redis`, Redis
//! Streams) on it.

use std::io::{Read, Write};
use std::net::TcpStream;
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
            if ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// A folder with `todo-state` and `todo-pubsub` on this server.
    pub fn components(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (file, name, kind) in [
            ("statestore.yaml", "todo-state", "state.redis"),
            ("pubsub.yaml", "todo-pubsub", "pubsub.redis"),
        ] {
            let yaml = format!(
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n\
                 spec:\n  type: {kind}\n  version: v1\n  metadata:\n  - name: redisHost\n    \
                 value: \"127.0.0.1:{}\"\n",
                self.port
            );
            std::fs::write(dir.path().join(file), yaml).unwrap();
        }
        dir
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
