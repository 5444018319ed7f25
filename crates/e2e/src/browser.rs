//! The browser tests of the console (`crates/e2e/browser`): node scripts that drive headless
//! Chromium, from Debian's `chromium` package, through `playwright-core` from npm. This module
//! checks that the three are in place (`scripts/test.sh` installs what is missing) and runs a
//! script with a deadline, its output kept for the failure message.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

/// Where the browser tests expect Chromium; `CHROMIUM_PATH` overrides it (the scripts read it too).
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// Something the browser tests need is not installed.
#[derive(Debug, thiserror::Error)]
pub enum BrowserSetupError {
    #[error(
        "node not found on PATH: the console's browser tests run on Node.js (apt-get install nodejs npm)"
    )]
    NoNode,
    #[error("playwright-core is not installed in {dir}: run `npm ci` there (scripts/test.sh does)")]
    NoPlaywright { dir: PathBuf },
    #[error(
        "Chromium not found at {path}: install Debian's package (apt-get install chromium; \
         scripts/test.sh does when run as root) or set CHROMIUM_PATH"
    )]
    NoChromium { path: PathBuf },
}

/// The browser test folder, checked to be ready to run.
#[derive(Debug, Clone)]
pub struct BrowserTests {
    dir: PathBuf,
    node: PathBuf,
}

/// What a script printed and how it ended.
#[derive(Debug)]
pub struct ScriptRun {
    pub success: bool,
    pub output: String,
}

impl BrowserTests {
    /// The folder `crates/e2e/browser` of `workspace`, once node, its `node_modules` and Chromium
    /// are found.
    pub fn locate(workspace: &Path) -> Result<Self, BrowserSetupError> {
        let dir = workspace.join("crates/e2e/browser");
        let node = find_on_path("node").ok_or(BrowserSetupError::NoNode)?;
        if !dir
            .join("node_modules/playwright-core/package.json")
            .is_file()
        {
            return Err(BrowserSetupError::NoPlaywright { dir });
        }
        let chromium = std::env::var_os("CHROMIUM_PATH")
            .map_or_else(|| PathBuf::from(DEFAULT_CHROMIUM), PathBuf::from);
        if !chromium.is_file() {
            return Err(BrowserSetupError::NoChromium { path: chromium });
        }
        Ok(Self { dir, node })
    }

    /// The folder of the scripts.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `node ARGS` in the folder with `env` added; killed when `timeout` passes.
    pub async fn run(
        &self,
        args: &[&str],
        env: &[(&str, String)],
        timeout: Duration,
    ) -> anyhow::Result<ScriptRun> {
        let mut cmd = tokio::process::Command::new(&self.node);
        cmd.args(args)
            .current_dir(&self.dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(timeout, cmd.output())
            .await
            .with_context(|| format!("node {} did not finish within {timeout:?}", args.join(" ")))?
            .with_context(|| format!("running node {}", args.join(" ")))?;
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(ScriptRun {
            success: out.status.success(),
            output,
        })
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}
