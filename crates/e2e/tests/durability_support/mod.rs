//! Support for the durability test: a multi-app run that can be killed with SIGKILL (runner and
//! every app at once, no chance to clean up) and started again on the same run file, and the
//! Redis resources with redelivery shortened so a crash is recovered from within seconds.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::processes::{ProcessInfo, children_of, is_running};
use e2e::{AppPorts, Binaries};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Environment of the test that would point the apps elsewhere than the run file says.
const SCRUBBED_ENV: &[&str] = &[
    "DAPR_HTTP_ENDPOINT",
    "DAPR_HOST",
    "DAPR_HTTP_PORT",
    "DAPR_API_TOKEN",
    "APP_API_TOKEN",
    "APP_PORT",
    "APP_ID",
    "CONFIG_FILE",
    "TODO_REDIS_PASSWORD",
];

/// Rewrites the pub/sub component in `resources` so that an entry left pending by a killed
/// consumer is claimed again after `processing_timeout`, checked every `redeliver_interval`
/// (deploy/local/redis uses 60 s / 10 s).
pub fn shorten_redelivery(
    resources: &Path,
    processing_timeout: &str,
    redeliver_interval: &str,
) -> anyhow::Result<()> {
    let path = resources.join("pubsub.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let replace = |text: &str, name: &str, value: &str| -> anyhow::Result<String> {
        let key = format!("- name: {name}\n");
        let at = text
            .find(&key)
            .with_context(|| format!("no {name} in {}", path.display()))?;
        let rest = &text[at + key.len()..];
        let line_end = rest.find('\n').context("truncated pubsub.yaml")?;
        let line = &rest[..line_end];
        if !line.trim_start().starts_with("value:") {
            bail!("{name} is not followed by its value in {}", path.display());
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        Ok(format!(
            "{}{indent}value: \"{value}\"{}",
            &text[..at + key.len()],
            &rest[line_end..]
        ))
    };
    let text = replace(&text, "processingTimeout", processing_timeout)?;
    let text = replace(&text, "redeliverInterval", redeliver_interval)?;
    std::fs::write(&path, text)?;
    Ok(())
}

/// One start of `sidecar run -f <file>`, in a process group of its own.
#[derive(Debug)]
pub struct Run {
    child: Child,
    apps: Vec<AppPorts>,
    log: PathBuf,
    app_processes: Vec<ProcessInfo>,
    gone: bool,
}

impl Run {
    /// Starts the runner; its output (and the apps') is appended to `log`.
    pub fn start(
        bins: &Binaries,
        run_file: &Path,
        apps: Vec<AppPorts>,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("{}", log.display()))?;
        let mut cmd = Command::new(bins.path("sidecar"));
        cmd.arg("run")
            .arg("-f")
            .arg(run_file)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .env("NO_COLOR", "1")
            .process_group(0);
        for name in SCRUBBED_ENV {
            cmd.env_remove(name);
        }
        let child = cmd.spawn().context("starting the sidecar runner")?;
        Ok(Self {
            child,
            apps,
            log,
            app_processes: Vec::new(),
            gone: false,
        })
    }

    /// The run's output so far, over every start.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }

    /// The ports of `app_id`.
    pub fn app(&self, app_id: &str) -> anyhow::Result<&AppPorts> {
        self.apps
            .iter()
            .find(|a| a.app_id == app_id)
            .with_context(|| format!("no app {app_id} in the run"))
    }

    /// Waits until every app answers `/readyz` and every sidecar `/v1.0/healthz`, then records
    /// the app processes.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the runner exited during start-up ({status})");
            }
            let mut pending = Vec::new();
            for app in &self.apps {
                for (url, what) in [
                    (format!("http://127.0.0.1:{}/readyz", app.app_port), "app"),
                    (
                        format!("http://127.0.0.1:{}/v1.0/healthz", app.dapr_http_port),
                        "sidecar",
                    ),
                ] {
                    let ok = http
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if !ok {
                        pending.push(format!("{} {what}", app.app_id));
                    }
                }
            }
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                bail!("not ready after {timeout:?}: {}", pending.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.app_processes = children_of(self.pid());
        if self.app_processes.len() != self.apps.len() {
            bail!(
                "{} app processes for {} apps: {:?}",
                self.app_processes.len(),
                self.apps.len(),
                self.app_processes
            );
        }
        Ok(())
    }

    /// SIGKILL to the runner's process group and, in the same instant, to each app's group (the
    /// runner starts every app in a group of its own). Returns the pids killed once every one of
    /// them is gone.
    pub fn kill9(&mut self) -> anyhow::Result<Vec<i32>> {
        let mut pids: Vec<i32> = self.app_processes.iter().map(|p| p.pid).collect();
        pids.push(self.pid());
        let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
        for p in &self.app_processes {
            let _ = killpg(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
        self.child.wait().context("reaping the runner")?;
        self.gone = true;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let alive: Vec<i32> = pids.iter().copied().filter(|p| is_running(*p)).collect();
            if alive.is_empty() {
                return Ok(pids);
            }
            if Instant::now() >= deadline {
                bail!("still running 5 s after SIGKILL: {alive:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== output of the multi-app run ({}) =====\n{}\n===== end of output =====",
                self.log.display(),
                self.output()
            );
        }
        if !self.gone {
            if self.app_processes.is_empty() {
                self.app_processes = children_of(self.pid());
            }
            let _ = self.kill9();
        }
    }
}

/// A development token from the real `task-api token` command, signed with `secret`.
pub fn token(bins: &Binaries, secret: &str, user_id: &str, email: &str) -> anyhow::Result<String> {
    let out = Command::new(bins.path("task-api"))
        .args(["token", "--user-id", user_id, "--email", email])
        .args(["--ttl", "1h"])
        .env("JWT_SECRET", secret)
        .env_remove("CONFIG_FILE")
        .output()?;
    if !out.status.success() {
        bail!(
            "task-api token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// The email-worker's claims and sent marks in Redis with their remaining TTL (`-1`: none), for
/// a failure report.
pub fn ledger_dump(redis_port: u16) -> String {
    let cli = |args: &[&str]| {
        Command::new("redis-cli")
            .args(["-p", &redis_port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| format!("redis-cli: {e}"))
    };
    let mut out = String::new();
    for key in cli(&["--scan", "--pattern", "email-worker||email:*"]).lines() {
        let ttl = cli(&["TTL", key]);
        let data = cli(&["HGET", key, "data"]);
        out.push_str(&format!("{key} ttl={} {}\n", ttl.trim(), data.trim()));
    }
    out
}
