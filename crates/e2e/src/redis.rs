//! A throw-away `redis-server` on a free loopback port (no persistence), and a copy of a Redis
//! resources directory pointed at it instead of `localhost:6379`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use service_testing::free_port;

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts `redis-server` with its working directory in `dir`; waits until it accepts
    /// connections.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context(
                "cannot start redis-server; install it (`sudo apt-get install redis-server`, \
                 or run scripts/test.sh, which does)",
            )?;
        let mut server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!("redis-server exited at start ({status})");
            }
            if Instant::now() >= deadline {
                bail!("redis-server did not listen on {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Copies the component files of `from` into `to` (a link is copied as the file it points
    /// to), with `localhost:6379` replaced by this server's address.
    pub fn resources_copy(&self, from: &Path, to: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(to)?;
        let address = format!("127.0.0.1:{}", self.port);
        for entry in std::fs::read_dir(from).with_context(|| format!("{}", from.display()))? {
            let path = entry?.path();
            if !matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                continue;
            }
            let text = std::fs::read_to_string(&path)?.replace("localhost:6379", &address);
            let name = path.file_name().context("a file without a name")?;
            std::fs::write(to.join(name), text)?;
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
