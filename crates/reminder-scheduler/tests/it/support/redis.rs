//! A `redis-server` owned by one test (random port, no persistence, killed on drop) and a
//! resources folder whose `todo-state` is `state.redis` on it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MISSING: &str = "redis-server not found; install it (apt-get install redis-server)";

pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    pub fn start() -> Self {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free port");
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
            let dir = std::env::temp_dir().join(format!(
                "reminder-scheduler-redis-{}-{port}",
                std::process::id()
            ));
            let mut server = Self { child, port, dir };
            if server.wait_ready() {
                server.write_resources();
                return server;
            }
        }
        panic!("redis-server did not answer PING after 5 attempts");
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

    fn write_resources(&self) {
        std::fs::create_dir_all(&self.dir).expect("resources dir");
        let state = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-state\n\
             spec:\n  type: state.redis\n  version: v1\n  metadata:\n    - name: redisHost\n      \
             value: \"127.0.0.1:{}\"\n",
            self.port
        );
        std::fs::write(self.dir.join("statestore.yaml"), state).expect("statestore.yaml");
        let pubsub = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: todo-pubsub\n\
                      spec:\n  type: pubsub.in-memory\n  version: v1\n  metadata: []\n";
        std::fs::write(self.dir.join("pubsub.yaml"), pubsub).expect("pubsub.yaml");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder to give `Cluster::from_resources`.
    pub fn resources(&self) -> PathBuf {
        self.dir.clone()
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
