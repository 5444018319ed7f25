//! Support for the durability test: the Redis resources with redelivery shortened so a crash is
//! recovered from within seconds, dev tokens, and a dump of the email ledger for failures. The
//! run itself is [`e2e::System`], killed with [`e2e::System::kill9`].

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use e2e::Binaries;

/// Rewrites the pub/sub component in `resources` so that an entry left pending by a killed
/// consumer is claimed again after `processing_timeout`, checked every `redeliver_interval`
/// (deploy/local/redis uses 180 s / 10 s).
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

/// How many outbox entry keys task-api has in Redis: none once every change the killed and the
/// running instances committed is published and projected into the index (the killed ones'
/// once their leases expired and a running instance drained them).
pub fn outbox_keys(redis_port: u16) -> usize {
    Command::new("redis-cli")
        .args(["-p", &redis_port.to_string()])
        .args(["--scan", "--pattern", "task-api||outbox:*"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(usize::MAX)
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
