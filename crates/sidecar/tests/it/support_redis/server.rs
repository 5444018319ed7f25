//! A `redis-server` process owned by one test: random free port, no persistence, killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    port: u16,
    password: Option<String>,
}

const MISSING: &str = "redis-server not found; run scripts/test.sh or apt-get install redis-server";

impl RedisServer {
    /// Starts a server and waits until it answers (10 s deadline).
    pub fn start() -> RedisServer {
        Self::start_with_password(None)
    }

    /// Starts a server that requires `password` (`--requirepass`) when given.
    pub fn start_with_password(password: Option<&str>) -> RedisServer {
        // A port that was free a moment ago; retried if another process takes it first.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap();
            let mut cmd = Command::new("redis-server");
            if let Some(p) = password {
                cmd.args(["--requirepass", p]);
            }
            let child = match cmd
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{MISSING}"),
                Err(e) => panic!("cannot start redis-server: {e}"),
            };
            let mut server = RedisServer {
                child,
                port,
                password: password.map(String::from),
            };
            if server.wait_ready() {
                return server;
            }
        }
        panic!("redis-server did not answer PING on a free port after 5 attempts");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false; // exited, e.g. the port was taken meanwhile
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

    /// Kills the server and starts a fresh one (empty: nothing is persisted) on the same port.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut cmd = Command::new("redis-server");
            if let Some(p) = &self.password {
                cmd.args(["--requirepass", p]);
            }
            self.child = cmd
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{MISSING} ({e})"));
            if self.wait_ready() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.port
            );
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the `redisHost` value.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::Client {
        let auth = self
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        redis::Client::open(format!("redis://{auth}127.0.0.1:{}/", self.port)).unwrap()
    }

    /// A plain synchronous connection, for checking what is stored.
    pub fn con(&self) -> redis::Connection {
        self.client().get_connection().unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
