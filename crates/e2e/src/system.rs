//! The whole system as one child process: `sidecar run -f <file>` (which starts every app with its
//! sidecar), its output kept in a file, readiness checks, and a clean stop that verifies no app
//! process survives. A run with `--scale APP=N` learns where each instance listens from the table
//! of instances the runner prints once everything has started. Dropping a [`System`] that was not
//! stopped kills everything, and prints the run's output when the test is failing.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::processes::{ProcessInfo, children_of, is_running};
use crate::{AppPorts, Binaries};

/// Variables of the test's own environment that would point the apps elsewhere than the run
/// file says; the runner passes its environment on to the apps, so they are removed.
const SCRUBBED_ENV: &[&str] = &[
    "DAPR_HTTP_ENDPOINT",
    "DAPR_HOST",
    "DAPR_HTTP_PORT",
    "DAPR_API_TOKEN",
    "APP_API_TOKEN",
    "APP_PORT",
    "APP_ID",
    "CONFIG_FILE",
    // The password of the Redis components' secret (deploy/local/redis); test servers have none.
    "TODO_REDIS_PASSWORD",
    // A collector of the test's environment: traces are exported only where a test asks.
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// A running multi-app run.
#[derive(Debug)]
pub struct System {
    child: Child,
    log: PathBuf,
    apps: Vec<AppPorts>,
    /// The app processes, recorded once the run is ready.
    app_processes: Vec<ProcessInfo>,
    stopped: bool,
    /// `--scale` flags given to the runner.
    scales: Vec<String>,
    /// Length of the log when this run started: its table of instances comes after.
    log_start: usize,
}

impl System {
    /// Starts `sidecar run -f run_file` in its own process group, output appended to `log` (so
    /// the runs of one file, before and after a crash, share one log).
    pub fn start(
        bins: &Binaries,
        run_file: &Path,
        apps: Vec<AppPorts>,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        Self::start_scaled(bins, run_file, apps, log, &[])
    }

    /// As [`System::start`], with `(app id, instances)` passed as `--scale APP=N`. The ports of
    /// the instances are known once [`System::wait_ready`] has returned.
    pub fn start_scaled(
        bins: &Binaries,
        run_file: &Path,
        apps: Vec<AppPorts>,
        log: PathBuf,
        scales: &[(&str, usize)],
    ) -> anyhow::Result<Self> {
        let scales: Vec<String> = scales.iter().map(|(a, n)| format!("{a}={n}")).collect();
        let log_start =
            std::fs::metadata(&log).map_or(0, |m| usize::try_from(m.len()).unwrap_or(usize::MAX));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("{}", log.display()))?;
        let mut cmd = Command::new(bins.path("sidecar"));
        cmd.arg("run")
            .arg("-f")
            .arg(run_file)
            .args(["--shutdown-grace-seconds", "5"])
            .args(scales.iter().flat_map(|s| ["--scale", s.as_str()]))
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
            log,
            apps,
            app_processes: Vec::new(),
            stopped: false,
            scales,
            log_start,
        })
    }

    /// The run's output so far (runner and apps, interleaved).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every instance of app `app_id`, in index order.
    pub fn instances(&self, app_id: &str) -> Vec<&AppPorts> {
        self.apps.iter().filter(|a| a.app_id == app_id).collect()
    }

    /// The ports of app `app_id` (its first instance).
    pub fn app(&self, app_id: &str) -> anyhow::Result<&AppPorts> {
        self.apps
            .iter()
            .find(|a| a.app_id == app_id)
            .with_context(|| format!("no app {app_id} in the run"))
    }

    /// The app processes the runner started (known once [`System::wait_ready`] returned).
    pub fn app_processes(&self) -> &[ProcessInfo] {
        &self.app_processes
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }

    /// Waits until every app answers `/readyz` and every sidecar `/v1.0/healthz` (which daprd,
    /// and the local sidecar, report healthy only once the app's subscriptions are registered).
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the runner exited during start-up ({status})");
            }
            // The runner keeps going when an app dies; its log line says so.
            if let Some(line) = self
                .output()
                .lines()
                .find(|l| l.contains("exited on its own"))
            {
                bail!("an app exited during start-up: {line}");
            }
            if !self.scales.is_empty() && self.apps.iter().all(|a| a.pid.is_none()) {
                let output = self.output();
                match instances_table(output.get(self.log_start..).unwrap_or_default()) {
                    Some(instances) => self.apps = instances,
                    None => {
                        if Instant::now() >= deadline {
                            bail!("no table of instances after {timeout:?}");
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
            let mut pending = Vec::new();
            for app in &self.apps {
                let probes = [
                    (format!("http://127.0.0.1:{}/readyz", app.app_port), "app"),
                    (
                        format!("http://127.0.0.1:{}/v1.0/healthz", app.dapr_http_port),
                        "sidecar",
                    ),
                ];
                for (url, what) in probes {
                    let ok = http
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if !ok {
                        pending.push(format!("{}#{} {what}", app.app_id, app.instance));
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

    /// Stops the run as Ctrl-C does (SIGINT to the runner), waits for it to exit, and checks that
    /// every app process it had started is gone.
    pub fn stop(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if self.app_processes.is_empty() {
            self.app_processes = children_of(self.pid());
        }
        kill(Pid::from_raw(self.pid()), Signal::SIGINT).context("signalling the runner")?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                bail!("the runner did not exit within {timeout:?} of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.stopped = true;
        // The runner waits for its apps before exiting; allow a moment for the kernel to reap
        // the re-parented processes before calling anything a survivor.
        let reaped = Instant::now() + Duration::from_secs(5);
        loop {
            let survivors: Vec<_> = self
                .app_processes
                .iter()
                .filter(|p| is_running(p.pid))
                .collect();
            if survivors.is_empty() {
                return Ok(status);
            }
            if Instant::now() >= reaped {
                bail!("processes left after the run stopped: {survivors:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to the runner's process group and, in the same instant, to each app's group (the
    /// runner starts every app in a group of its own): a crash with no chance to clean up.
    /// Returns the pids killed once every one of them is gone.
    pub fn kill9(&mut self) -> anyhow::Result<Vec<i32>> {
        if self.app_processes.is_empty() {
            self.app_processes = children_of(self.pid());
        }
        let mut pids: Vec<i32> = self.app_processes.iter().map(|p| p.pid).collect();
        pids.push(self.pid());
        let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
        for p in &self.app_processes {
            let _ = killpg(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
        self.child.wait().context("reaping the runner")?;
        self.stopped = true;
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

/// The instances in the runner's table (`APP  APP PORT  DAPR HTTP PORT  DAPR GRPC PORT
/// METRICS PORT  PID`, `-` for nothing), or `None` while it is not complete in `output`.
pub fn instances_table(output: &str) -> Option<Vec<AppPorts>> {
    let mut lines = output
        .lines()
        .skip_while(|l| !(l.starts_with("APP ") && l.contains("DAPR HTTP PORT")));
    lines.next()?;
    let mut apps = Vec::new();
    for line in lines {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let [label, app_port, dapr_http_port, _grpc, _metrics, pid] = cells[..] else {
            break;
        };
        let Ok(dapr_http_port) = dapr_http_port.parse() else {
            break;
        };
        let (app_id, instance) = match label.rsplit_once('#') {
            Some((id, n)) => (id, n.parse().ok()?),
            None => (label, 1),
        };
        apps.push(AppPorts {
            app_id: app_id.to_owned(),
            app_port: app_port.parse().unwrap_or(0),
            dapr_http_port,
            instance,
            pid: pid.parse().ok(),
        });
    }
    // The table goes out in one write, but the log is read while it is being written.
    (!apps.is_empty() && output.contains("all apps started")).then_some(apps)
}

impl Drop for System {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== output of the multi-app run ({}) =====\n{}\n===== end of output =====",
                self.log.display(),
                self.output()
            );
        }
        if !self.stopped && self.stop(Duration::from_secs(15)).is_err() {
            let _ = self.kill9();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_every_instance_once_the_run_has_started() {
        let table = "\
== APP - task-api#1 == started
APP           APP PORT  DAPR HTTP PORT  DAPR GRPC PORT  METRICS PORT  PID
task-api#1    8080      3500            40001           40002         11
task-api#2    40003     40004           40005           40006         12
email-worker  8081      3501            40007           40008         13
== APP - task-api#2 == ready
";
        assert_eq!(instances_table(table), None, "not started yet");
        let started = format!("{table}INFO all apps started; Ctrl-C stops the run\n");
        let apps = instances_table(&started).unwrap();
        assert_eq!(apps.len(), 3);
        assert_eq!(
            apps[1],
            AppPorts {
                app_id: "task-api".into(),
                app_port: 40003,
                dapr_http_port: 40004,
                instance: 2,
                pid: Some(12),
            }
        );
        assert_eq!(
            (apps[2].app_id.as_str(), apps[2].instance),
            ("email-worker", 1)
        );
    }
}
