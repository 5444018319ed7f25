//! One app process of a multi-app run: spawned in its own process group, output prefixed, stopped
//! with SIGTERM → grace period → SIGKILL sent to the whole group.
//!
//! The own process group matters twice: Ctrl-C in a terminal signals the foreground group, so
//! without it every app would get SIGINT at the same moment as the runner and race its orderly
//! shutdown; and signalling the group reaches whatever the app started (`cargo run` → the service,
//! `sh -c` → its children), so nothing is left behind.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::{mpsc, watch};

/// What to start.
#[derive(Debug, Clone)]
pub struct AppCommand {
    pub app_id: String,
    /// Program and arguments; must not be empty.
    pub command: Vec<String>,
    pub cwd: PathBuf,
    /// Added to (and overriding) the runner's own environment.
    pub env: BTreeMap<String, String>,
    /// Also gets every output line (the console's log view).
    pub lines: Option<LineSink>,
}

/// Receives each output line of an app (without its prefix): `(from stderr, line)`. Called on
/// the output threads; it must not block.
#[derive(Clone)]
pub struct LineSink(pub std::sync::Arc<LineFn>);

/// The callback of a [`LineSink`].
pub type LineFn = dyn Fn(bool, &str) + Send + Sync;

impl std::fmt::Debug for LineSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineSink")
    }
}

/// An app that exited while the run was going on.
#[derive(Debug, Clone)]
pub struct Exited {
    pub app_id: String,
    pub status: ExitStatus,
}

/// A running (or finished) app process.
#[derive(Debug)]
pub struct AppProcess {
    app_id: String,
    pid: u32,
    status: watch::Receiver<Option<ExitStatus>>,
}

impl AppProcess {
    /// Spawns the command. Its stdout/stderr lines are copied to ours with the Dapr CLI's
    /// `== APP - <id> == ` prefix; its exit is reported on `exits`.
    pub fn spawn(
        spec: &AppCommand,
        exits: mpsc::UnboundedSender<Exited>,
    ) -> std::io::Result<AppProcess> {
        let (program, args) = spec.command.split_first().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command")
        })?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(&spec.cwd)
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // A last resort if the runner is dropped without `terminate` (e.g. a panic).
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("child exited before its pid was read"))?;

        let prefix = format!("== APP - {} == ", spec.app_id);
        if let Some(out) = child.stdout.take() {
            pump(
                out.into_owned_fd()?,
                prefix.clone(),
                false,
                spec.lines.clone(),
            );
        }
        if let Some(err) = child.stderr.take() {
            pump(err.into_owned_fd()?, prefix, true, spec.lines.clone());
        }

        let (tx, rx) = watch::channel(None);
        let app_id = spec.app_id.clone();
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) => {
                    let _ = tx.send(Some(status));
                    let _ = exits.send(Exited { app_id, status });
                }
                Err(error) => tracing::error!(%app_id, %error, "cannot wait for app process"),
            }
        });
        Ok(AppProcess {
            app_id: spec.app_id.clone(),
            pid,
            status: rx,
        })
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// Process id of the app, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status, once the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.status.borrow()
    }

    /// A watch of the exit status that outlives this handle.
    pub fn status_receiver(&self) -> watch::Receiver<Option<ExitStatus>> {
        self.status.clone()
    }

    /// Stops the whole process group: SIGTERM, then SIGKILL for whatever is left after `grace`.
    /// Returns the app's exit status when it is known.
    pub async fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let Ok(raw) = i32::try_from(self.pid) else {
            return self.exit_status();
        };
        let group = Pid::from_raw(raw);
        if !signal_group(group, Signal::SIGTERM) {
            return self.wait_exit(Duration::from_secs(1)).await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        // The leader may exit before its children; the group is gone only when all of them are.
        loop {
            if !group_alive(group) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(app_id = %self.app_id, "app did not stop within {grace:?}; killing it");
                signal_group(group, Signal::SIGKILL);
                // SIGKILL is asynchronous: give the kernel a moment to finish the processes.
                let killed_by = tokio::time::Instant::now() + Duration::from_secs(2);
                while group_alive(group) && tokio::time::Instant::now() < killed_by {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.wait_exit(Duration::from_secs(5)).await
    }

    async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let waited = tokio::time::timeout(limit, self.status.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(status)) => *status,
            _ => None,
        }
    }
}

/// SIGKILL to the process group led by `pid` (no-op if it is gone).
pub fn kill_group(pid: u32) {
    if let Ok(raw) = i32::try_from(pid) {
        signal_group(Pid::from_raw(raw), Signal::SIGKILL);
    }
}

/// Sends `signal` to the group; false if the group no longer exists.
fn signal_group(group: Pid, signal: Signal) -> bool {
    match killpg(group, signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(error) => {
            tracing::warn!(%group, %error, ?signal, "cannot signal app process group");
            false
        }
    }
}

/// Whether any process of the group still runs. Zombies do not count: an orphaned grandchild is
/// reaped by init whenever init gets to it, and waiting for that would only stretch the shutdown.
pub fn group_alive(group: Pid) -> bool {
    if matches!(killpg(group, None), Err(Errno::ESRCH)) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; comm may contain spaces, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        pgrp == Some(group.as_raw()) && state != "Z" && state != "X"
    })
}

/// Copies lines from a child pipe to our stdout/stderr with `prefix`, on a plain thread so a slow
/// terminal never stalls the async runtime. Each line is written with one locked write, so lines of
/// different apps never interleave mid-line.
fn pump(fd: std::os::fd::OwnedFd, prefix: String, to_stderr: bool, lines: Option<LineSink>) {
    let reader = BufReader::new(std::fs::File::from(fd));
    let spawned = std::thread::Builder::new()
        .name(format!("output {prefix}"))
        .spawn(move || {
            let mut reader = reader;
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&buf);
                        let bare = text.trim_end_matches(['\n', '\r']);
                        if let Some(sink) = &lines {
                            (sink.0)(to_stderr, bare);
                        }
                        let line = format!("{prefix}{bare}\n");
                        let written = if to_stderr {
                            std::io::stderr().lock().write_all(line.as_bytes())
                        } else {
                            let mut out = std::io::stdout().lock();
                            out.write_all(line.as_bytes()).and_then(|()| out.flush())
                        };
                        if written.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start output thread");
    }
}

/// Describes an exit status the way people read it: `exit code 3` or `signal 9 (SIGKILL)`.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exit code {code}")
    } else if let Some(sig) = status.signal() {
        match Signal::try_from(sig) {
            Ok(s) => format!("signal {sig} ({})", s.as_str()),
            Err(_) => format!("signal {sig}"),
        }
    } else {
        status.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn sh(app_id: &str, script: &str) -> AppCommand {
        AppCommand {
            app_id: app_id.into(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            cwd: std::env::temp_dir(),
            env: BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())]),
            lines: None,
        }
    }

    #[tokio::test]
    async fn exit_is_reported_with_status() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let p = AppProcess::spawn(&sh("quitter", "exit 3"), tx).unwrap();
        let exited = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(exited.app_id, "quitter");
        assert_eq!(exited.status.code(), Some(3));
        assert_eq!(describe(exited.status), "exit code 3");
        assert_eq!(p.exit_status().and_then(|s| s.code()), Some(3));
    }

    #[tokio::test]
    async fn terminate_reaches_grandchildren_and_kills_stubborn_ones() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        // The grandchild ignores SIGTERM, so only the SIGKILL after the grace period stops it.
        let script = format!(
            "sh -c 'trap \"\" TERM; echo $$ > {p}.tmp; mv {p}.tmp {p}; while :; do sleep 1; done' & wait",
            p = pidfile.display()
        );
        let mut p = AppProcess::spawn(&sh("stubborn", &script), tx).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !pidfile.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "grandchild never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let group = Pid::from_raw(i32::try_from(p.pid()).unwrap());
        assert!(group_alive(group));
        let started = std::time::Instant::now();
        p.terminate(Duration::from_millis(300)).await;
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "SIGKILL came before the grace period"
        );
        assert!(!group_alive(group), "a process of group {group} survived");
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "grandchild {grandchild} survived: {stat}"
        );
    }

    #[tokio::test]
    async fn terminate_is_graceful_when_the_app_cooperates() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut p = AppProcess::spawn(
            &sh("polite", "trap 'exit 0' TERM; while :; do sleep 0.05; done"),
            tx,
        )
        .unwrap();
        let status = p.terminate(Duration::from_secs(10)).await.unwrap();
        assert!(status.success() || status.code().is_none(), "{status:?}");
    }

    #[tokio::test]
    async fn spawn_failure_is_an_error() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut spec = sh("ghost", "");
        spec.command = vec!["/definitely/not/a/program".into()];
        assert!(AppProcess::spawn(&spec, tx).is_err());
    }
}
