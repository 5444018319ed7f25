//! Restarting one app of a run by hand: what `/proc` says about a running app process (its
//! program, arguments, environment and working directory) is enough to start the same app again
//! after it was killed, so a test can crash one service and bring it back while the rest of the
//! run, its sidecar included, keeps going.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// How a process was started, read from `/proc/<pid>`.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
}

fn nul_separated(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

impl LaunchSpec {
    /// Reads the command line, environment and working directory of the live process `pid`.
    pub fn of(pid: i32) -> anyhow::Result<Self> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let args = nul_separated(
            &std::fs::read(proc.join("cmdline")).with_context(|| format!("cmdline of {pid}"))?,
        );
        if args.is_empty() {
            bail!("process {pid} has no command line (a zombie?)");
        }
        let env = nul_separated(
            &std::fs::read(proc.join("environ")).with_context(|| format!("environ of {pid}"))?,
        )
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
        let cwd = std::fs::read_link(proc.join("cwd")).with_context(|| format!("cwd of {pid}"))?;
        Ok(Self { args, env, cwd })
    }

    /// The value of variable `name` in the process' environment.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Starts the same program again, in a process group of its own, with exactly the recorded
    /// environment; its output is appended to `log`.
    pub fn spawn(&self, log: &Path) -> anyhow::Result<Child> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("{}", log.display()))?;
        Command::new(&self.args[0])
            .args(&self.args[1..])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", self.args[0]))
    }
}
