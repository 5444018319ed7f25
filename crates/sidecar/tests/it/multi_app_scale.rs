//! `sidecar run -f --scale APP=N`: N instances of one app, each with its own process, sidecar and
//! ports and the same app id, so they compete for the app's messages while other apps still get
//! every message; invocation of the app id reaches each instance in turn.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::multi_app::{healthz, workspace};
use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use nix::sys::signal::Signal;
use serde_json::Value;
use support::*;

const TEST_APP: &str = env!("CARGO_BIN_EXE_dapr-test-app");

fn run_scaled(file: &Path, scales: &[&str]) -> Proc {
    let mut args = vec![
        "run".to_owned(),
        "-f".to_owned(),
        file.display().to_string(),
        "--shutdown-grace-seconds".to_owned(),
        "3".to_owned(),
    ];
    for s in scales {
        args.push("--scale".to_owned());
        args.push((*s).to_owned());
    }
    Proc::spawn(&args, &[])
}

/// The runner's table of instances: instance label -> its whitespace-separated cells.
fn table(out: &str) -> BTreeMap<String, Vec<String>> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("APP "));
    let header = lines.next().expect("a table header");
    assert!(
        header.contains("DAPR HTTP PORT") && header.ends_with("PID"),
        "{header}"
    );
    lines
        .take_while(|l| !l.starts_with("== APP") && !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
            (cells[0].clone(), cells)
        })
        .collect()
}

/// `received n=<n>` lines per instance label.
fn received(out: &str) -> Vec<(String, u64)> {
    out.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("== APP - ")?;
            let (label, rest) = rest.split_once(" == received n=")?;
            let n = rest.split_whitespace().next()?.parse().ok()?;
            Some((label.to_owned(), n))
        })
        .collect()
}

fn env_of(out: &str, label: &str, var: &str) -> String {
    let prefix = format!("== APP - {label} == env {var}=");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {var} for {label} in\n{out}"))
        .to_owned()
}

#[tokio::test]
async fn instances_compete_within_an_app_and_every_app_gets_every_message() {
    let ws = workspace(&["publisher", "subscriber", "auditor"]);
    let (sub_port, sub_dapr) = (free_port(), free_port());
    let file = write_run_file(
        ws.path(),
        &format!(
            r#"version: 1
common:
  resourcesPaths: ["./resources"]
  env: {{ TOPIC: greetings }}
apps:
  - appID: subscriber
    appDirPath: ./apps/subscriber
    appPort: {sub_port}
    daprHTTPPort: {sub_dapr}
    command: ["{TEST_APP}"]
    env: {{ ROLE: subscriber, FROM_FILE: "http://127.0.0.1:{sub_port}/" }}
  - appID: auditor
    appDirPath: ./apps/auditor
    appPort: {}
    command: ["{TEST_APP}"]
    env: {{ ROLE: subscriber }}
  - appDirPath: ./apps/publisher
    command: ["{TEST_APP}"]
    env: {{ ROLE: publisher }}
"#,
            free_port()
        ),
    );
    let mut runner = run_scaled(&file, &["subscriber=3"]);
    let out = runner
        .stdout
        .wait_for("== APP - auditor == received n=")
        .await;

    let rows = table(&out);
    let labels: BTreeSet<&str> = rows.keys().map(String::as_str).collect();
    assert_eq!(
        labels,
        BTreeSet::from([
            "auditor",
            "publisher",
            "subscriber#1",
            "subscriber#2",
            "subscriber#3"
        ]),
        "{out}"
    );
    assert_eq!(
        rows["subscriber#1"][1],
        sub_port.to_string(),
        "the first keeps the file's ports"
    );
    assert_eq!(rows["subscriber#1"][2], sub_dapr.to_string());

    // Each instance has its own ports, told to it in its environment, and the file's env that
    // named the app port names the instance's own.
    let mut app_ports = BTreeSet::new();
    let mut dapr_ports = BTreeSet::new();
    for i in 1..=3 {
        let label = format!("subscriber#{i}");
        assert_eq!(env_of(&out, &label, "APP_ID"), "subscriber");
        let app_port = env_of(&out, &label, "APP_PORT");
        let dapr_port = env_of(&out, &label, "DAPR_HTTP_PORT");
        assert_eq!(rows[&label][1], app_port, "{label}");
        assert_eq!(rows[&label][2], dapr_port, "{label}");
        assert_eq!(
            env_of(&out, &label, "FROM_FILE"),
            format!("http://127.0.0.1:{app_port}/")
        );
        assert_eq!(
            healthz(dapr_port.parse().unwrap()).await,
            Some(204),
            "{label}'s sidecar"
        );
        app_ports.insert(app_port);
        dapr_ports.insert(dapr_port);
    }
    assert_eq!(app_ports.len(), 3, "{app_ports:?}");
    assert_eq!(dapr_ports.len(), 3, "{dapr_ports:?}");

    // Competing consumers: each message once to one of the subscriber's instances; fan-out:
    // each message to the auditor as well. Messages published before both apps had subscribed
    // are nobody's (the publisher starts at once), so the window starts at the first message both
    // received, and ends 15 messages later, which the auditor receiving 3 more proves published.
    const WINDOW: u64 = 15;
    let first = |got: &[(String, u64)], app: &str| {
        got.iter()
            .filter(|(l, _)| l.split('#').next() == Some(app))
            .map(|(_, n)| *n)
            .min()
    };
    let (got, start) = eventually("a window of messages both apps received", || {
        let got = received(&runner.stdout.text());
        async move {
            let start = first(&got, "auditor")?.max(first(&got, "subscriber")?);
            got.iter()
                .any(|(l, n)| l == "auditor" && *n >= start + WINDOW + 3)
                .then_some((got, start))
        }
    })
    .await;
    let out = runner.stdout.text();
    let window = start..=start + WINDOW;
    let audited: BTreeSet<u64> = got
        .iter()
        .filter(|(l, _)| l == "auditor")
        .map(|(_, n)| *n)
        .collect();
    let mut by_n: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (label, n) in &got {
        if label.starts_with("subscriber#") && window.contains(n) {
            by_n.entry(*n).or_default().push(label.clone());
        }
    }
    for n in window {
        assert!(audited.contains(&n), "auditor missed n={n}\n{out}");
        let who = by_n.get(&n).cloned().unwrap_or_default();
        assert_eq!(
            who.len(),
            1,
            "n={n} went to {who:?}, not to exactly one instance\n{out}"
        );
    }
    let sharing: BTreeSet<&String> = by_n.values().flatten().collect();
    assert!(
        sharing.len() >= 2,
        "the instances share the work: {sharing:?}"
    );

    // Invocation of the app id reaches every instance in turn.
    let pids: BTreeSet<String> = (1..=3)
        .map(|i| rows[&format!("subscriber#{i}")][5].clone())
        .collect();
    let mut answered = BTreeSet::new();
    for _ in 0..6 {
        let who: Value = http()
            .get(format!(
                "http://127.0.0.1:{sub_dapr}/v1.0/invoke/subscriber/method/whoami"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answered.insert(who["pid"].to_string());
    }
    assert_eq!(answered, pids, "six calls reach all three instances");

    runner.signal(Signal::SIGINT);
    let status = runner.wait_exit().await;
    assert!(status.success(), "{status:?}\n{}", runner.stderr.text());
}

#[tokio::test]
async fn a_scale_for_an_unknown_app_or_a_bad_count_is_a_clear_error() {
    let ws = workspace(&["a"]);
    let file = write_run_file(
        ws.path(),
        "version: 1\ncommon: {resourcesPaths: [./resources]}\napps:\n  - {appID: a, appDirPath: apps/a}\n",
    );
    let mut runner = run_scaled(&file, &["nobody=2"]);
    assert!(!runner.wait_exit().await.success());
    runner
        .stderr
        .wait_for("--scale nobody: no app \"nobody\" in the run file (its apps: a)")
        .await;

    let mut runner = run_scaled(&file, &["a=0"]);
    assert!(!runner.wait_exit().await.success());
    runner
        .stderr
        .wait_for("--scale \"a=0\": the instance count \"0\" is not a whole number from 1 to 64")
        .await;
}
